//! The client's state, published on a `watch` channel.

use std::time::Duration;

/// Where a [`crate::RealtimeClient`] is.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum State {
    /// An attempt is under way (fetching a token, connecting, handshaking).
    Connecting {
        /// The attempt's number; every attempt gets a new one.
        generation: u64,
    },
    /// The socket is open.
    Connected {
        /// The generation of the attempt that opened it.
        generation: u64,
    },
    /// Waiting before the next attempt.
    Reconnecting {
        /// Consecutive failures so far (1 for the first retry).
        attempt: u32,
        /// How long until the next attempt.
        retry_in: Duration,
        /// Why the last attempt or connection ended.
        reason: ReconnectReason,
    },
    /// The client has stopped for good.
    Closed(CloseReason),
}

/// Why the client is about to reconnect.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReconnectReason {
    /// The server closed the connection with this code and reason.
    ServerClosed {
        /// The close code.
        code: u16,
        /// The close reason.
        reason: String,
    },
    /// The server refused the token (401 at the handshake or close 4001)
    /// again after a refresh.
    Unauthorized,
    /// The handshake was refused with this HTTP status.
    Handshake {
        /// The HTTP status.
        status: u16,
    },
    /// The network failed (connect error, reset, closed without a close frame).
    Transport(String),
    /// No answer to a ping within the timeout.
    Unresponsive,
    /// The token source had no token (a transient failure).
    TokenUnavailable(String),
}

/// Why the client stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// The app called `close()` (or dropped the client).
    Closed,
    /// The account signed out (logout, or a refresh said so).
    SignedOut,
    /// No first connection within the deadline set with
    /// [`crate::Builder::first_connect_deadline`].
    DeadlineExceeded,
    /// The token source gave a DPoP proof ([`crate::TokenSource::dpop_proof`])
    /// but the client sends the token in a subprotocol or the query
    /// ([`crate::TokenTransport`]): DPoP needs `Authorization: DPoP` and the
    /// `DPoP` header, so nothing was sent. Use [`crate::TokenTransport::Header`].
    DpopNeedsHeader,
    /// The server refused the handshake's DPoP proof with a challenge whose
    /// `algs` (RFC 9449 §7.1) does not include the algorithm the token
    /// source signs with: no new proof or token would change that. With
    /// several endpoints the client moves on first and stops only when
    /// each of them in a row answered so (one misconfigured node of a fleet
    /// does not stop it).
    DpopAlgorithm {
        /// The algorithms the server listed (at most 16, each cut to 64
        /// characters).
        accepted: Vec<String>,
        /// The `alg` of the proof it refused.
        signs_with: String,
    },
    /// The server closed with a terminal code (4500–4999).
    Terminal {
        /// The close code.
        code: u16,
        /// The close reason.
        reason: String,
    },
}
