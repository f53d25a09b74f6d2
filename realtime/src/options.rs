//! The option types of a client: what arrives ([`Incoming`]), what a full
//! queue does ([`WhenFull`]), what the `on_connect` hook gets ([`Resume`]),
//! how a connection moves to a newer token ([`RefreshMode`]) and where the
//! token goes ([`TokenTransport`]).

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::endpoints::Endpoint;
use crate::token::{BearerToken, BoxFuture};
#[allow(unused_imports)] // rustdoc links
use crate::token::{TimedToken, TokenSource};
#[allow(unused_imports)] // rustdoc links
use crate::{Builder, RealtimeClient};

/// A message from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Incoming {
    /// A text message.
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
}

/// What [`RealtimeClient::send`] does when the outgoing queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum WhenFull {
    /// Wait until there is room (default).
    #[default]
    Wait,
    /// Fail at once with [`crate::Error::QueueFull`].
    Error,
}

/// Given to the `on_connect` hook: what it sends goes out on the new
/// connection before any queued message.
#[derive(Debug, Clone)]
pub struct Resume {
    pub(crate) generation: u64,
    pub(crate) endpoint: Endpoint,
    pub(crate) tx: mpsc::UnboundedSender<String>,
}

impl Resume {
    /// The generation of the connection being set up.
    #[must_use]
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The endpoint of the connection being set up (with several
    /// endpoints, the node the client landed on: resume there as anywhere).
    #[must_use]
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Sends `text` first on the new connection (in call order).
    pub fn send(&self, text: impl Into<String>) {
        let _ = self.tx.send(text.into());
    }
}

pub(crate) type HookFn = dyn Fn(Resume) -> BoxFuture<'static, ()> + Send + Sync;

#[derive(Clone)]
pub(crate) struct Hook(pub(crate) Arc<HookFn>);

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hook")
    }
}

pub(crate) type InBandFn = dyn Fn(&BearerToken) -> String + Send + Sync;
pub(crate) type IdentityFn = dyn Fn(&Incoming) -> Option<String> + Send + Sync;

/// How a connected client moves to the token source's newer token (at the
/// token's [`TimedToken::refresh_at`], or when [`TokenSource::changed`]
/// fires) without a gap.
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum RefreshMode {
    /// Open a second connection with the fresh token; once it is up (and
    /// the `on_connect` hook has run on it) it becomes the connection,
    /// the old one gets a normal close and is read until it has closed
    /// (sending waits meanwhile, so order is kept across the switch).
    /// The state stays [`crate::State::Connected`] (with the next generation).
    /// If the refresh or the second connection fails, the old connection
    /// stays and the switch is tried again at half the current token's
    /// remaining lifetime (no sooner than the backoff's base); once that is
    /// too short, the server's 4001 at expiry leads to a normal reconnect
    /// with a refresh. See [`Builder::message_identity`] for what is
    /// delivered during the overlap.
    #[default]
    MakeBeforeBreak,
    /// Send the text message this hook builds from the fresh token on the
    /// open connection (the server re-authenticates it in place).
    InBand(Arc<InBandFn>),
}

impl std::fmt::Debug for RefreshMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::MakeBeforeBreak => f.write_str("MakeBeforeBreak"),
            Self::InBand(_) => f.write_str("InBand"),
        }
    }
}

/// Where each connection attempt puts the token (see
/// [`Builder::token_transport`]). Every attempt gets a fresh-enough token,
/// a reconnect after a refresh uses the same transport, and a 401 at the
/// handshake counts as a 4001 whichever transport carried the token.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum TokenTransport {
    /// `Authorization: Bearer TOKEN` (default); the header value is marked
    /// sensitive.
    #[default]
    Header,
    /// Two values in `Sec-WebSocket-Protocol`: `PROTOCOL, TOKEN`. The
    /// server must choose `protocol` (never the token) in its handshake
    /// response; any other answer fails the attempt (and is retried with
    /// backoff). The token must be a valid header token (no spaces or
    /// commas; JWTs and opaque base64url tokens are).
    Subprotocol {
        /// The protocol the server is expected to choose, e.g. `"bearer"`.
        protocol: String,
    },
    /// `NAME=TOKEN` appended to the URL's query for that attempt only. The
    /// client's stored URL never holds the token, and the client never logs
    /// a URL with its query.
    QueryParameter {
        /// The parameter's name, e.g. `"access_token"`.
        name: String,
    },
}

impl TokenTransport {
    /// [`TokenTransport::Subprotocol`] with `protocol`.
    pub fn subprotocol(protocol: impl Into<String>) -> Self {
        Self::Subprotocol {
            protocol: protocol.into(),
        }
    }

    /// [`TokenTransport::QueryParameter`] named `name`.
    pub fn query_parameter(name: impl Into<String>) -> Self {
        Self::QueryParameter { name: name.into() }
    }
}

#[derive(Clone)]
pub(crate) struct Identity(pub(crate) Arc<IdentityFn>);

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Identity")
    }
}
