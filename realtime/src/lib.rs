//! # sessionkit-realtime
//!
//! A WebSocket client that reconnects by itself with backoff and jitter,
//! always with a fresh token, and stops when the user logs out.
//!
//! Every connection attempt asks a [`TokenSource`] for a token and sends it
//! (by default) in the `Authorization: Bearer` header (marked sensitive,
//! never logged), or as `Authorization: DPoP` with a fresh proof when the
//! source's tokens are DPoP-bound (see [DPoP](#dpop)).
//! Close codes drive what happens next: 4001 (or a 401 at the handshake)
//! forces one refresh and reconnects at once; 4003 refreshes and ends the
//! client as [`CloseReason::SignedOut`] when the refresh says the account is
//! signed out; other 4000–4499 codes back off; 4500–4999 are terminal. A
//! close reason `{"retry_after_ms": N}` sets the next delay. The state is on
//! a `watch` channel ([`State`]); incoming messages arrive on an `mpsc`
//! receiver ([`Incoming`]), in a queue bounded by count and bytes: when the
//! app falls behind, the client stops reading from the socket (nothing is
//! dropped; [`Builder::incoming_capacity`], [`Builder::incoming_bytes`]).
//!
//! Outgoing messages wait in a queue bounded by count and bytes while the
//! client is disconnected and go out in order after the reconnect.
//!
//! An `on_connect` hook (resume, re-subscribe) runs on every new connection
//! before the queued messages go out.
//!
//! ## Several endpoints
//! [`RealtimeClient::builder_multi`] takes the nodes of one service: the
//! client goes round them in an order of its own, drawn at random (so a
//! node's clients spread over the others when it goes; the start is
//! uniform over the list; [`Builder::start_seed`] pins it), and moves on
//! to the next after a failed attempt, a lost or silent connection, or a
//! server going away (close 1001 or 1012: at once, within one base delay),
//! and backs off on one schedule for the whole list (the ceiling grows once
//! per full round of failures, full jitter on every wait). A refused
//! connection (nothing listens: the node is down or restarting) is probed
//! every `[base/2, base]` for the first 30 s of an outage
//! ([`Builder::refused_probe_window`]), so the client is back within one
//! base delay of the server's return. The `on_connect` hook resumes on
//! whichever node the client lands ([`Resume::endpoint`]); each endpoint
//! keeps its own DPoP nonce; [`RealtimeClient::endpoint`] and
//! [`Metrics::endpoint`] say where it is connected, and logs and
//! [`ReconnectReason::Transport`] name the endpoint (its URL without query).
//!
//! ## Liveness
//! After 4 s without a frame from the server the client pings; after 8 s
//! without any frame the connection is dead and the client reconnects
//! ([`Builder::ping`]): a half-open connection is noticed within 8 s of the
//! last frame it carried. Every socket is opened with `TCP_NODELAY`.
//!
//! The [`TokenSource`] owns refresh timing: the client never refreshes on
//! its own. While connected, it moves to the source's newer token when the
//! source has one ([`TimedToken::refresh_at`], [`TokenSource::changed`];
//! with the SDK's session under `RefreshPolicy::Background`, the session's
//! one refresh serves every connection): by default make-before-break (a
//! second connection with the fresh token, then a switch; the state stays
//! `Connected`; [`Builder::message_identity`] delivers messages seen on both
//! connections once), or in-band ([`Builder::refresh_in_band`]).
//!
//! The token can go in a subprotocol or a query parameter instead of the
//! header ([`Builder::token_transport`], [`TokenTransport`]); a query
//! token is only ever on that attempt's request, never in a log line.
//!
//! ## DPoP
//! Sender-constrained tokens (RFC 9449) work when the [`TokenSource`]
//! implements [`TokenSource::dpop_proof`] (the SDK's session does for an
//! account signed in with DPoP; the trait's docs show a source of one's
//! own). Each connection attempt then asks the source for a new proof for
//! `GET` on the WebSocket URL without query and fragment (`htu`, e.g.
//! `wss://chat.example.com/ws`), with the token's hash (`ath`), and sends
//! `Authorization: DPoP TOKEN` plus `DPoP: PROOF` (both marked
//! sensitive). A proof is never reused: a make-before-break connection and
//! every reconnect get their own. When the server answers 401 with
//! `WWW-Authenticate: DPoP error="use_dpop_nonce"` and a `DPoP-Nonce`, the
//! client signs a new proof with that nonce and tries again at once, once;
//! the latest `DPoP-Nonce` the server sent (on a 101 or a 401) goes in the
//! next attempt's proof. A 401 whose DPoP challenge lists the algorithms
//! the server takes (`algs`) without the one the proof was signed with is
//! no refused token: the client moves to the next endpoint, and stops with
//! [`CloseReason::DpopAlgorithm`] once every endpoint in a row answered
//! so. Any other 401 is a refused token, as with bearer
//! tokens (one forced refresh, then backoff). DPoP needs the header
//! transport: a source that gives a proof to a client configured with
//! [`TokenTransport::Subprotocol`] or [`TokenTransport::QueryParameter`]
//! stops it with [`CloseReason::DpopNeedsHeader`] before anything is sent.
//! The in-band re-authentication hook ([`Builder::refresh_in_band`]) gets
//! only the token: a server that binds tokens decides what it accepts
//! in-band (the example chat-server takes a token bound to the key the
//! connection proved at its handshake).
//!
//! ## Tokens and logs
//! The token is in no log record, of this crate or of tungstenite, at any
//! level, and the app's log levels are its own (nothing is compiled out).
//! tungstenite logs each client handshake request it writes (headers and
//! query included) and each frame it writes or reads (payload included) as
//! `log` TRACE records, so the client does the opening handshake itself and
//! hands tungstenite the socket once the server has switched protocols, and
//! writes the in-band `auth` message ([`Builder::refresh_in_band`]) to the
//! socket under tungstenite. Every other message goes through tungstenite:
//! at TRACE, the `tungstenite` targets show the app's messages, both ways
//! (an app that puts a token in a message itself, in `on_connect` say, or
//! a server that sends one back, should keep `tungstenite` below TRACE).
//!
//! ## Layout
//! - `token`: the [`TokenSource`] trait, [`IntoTokenSource`], [`TimedToken`],
//!   [`StaticToken`], and the impl for `sessionkit::Session` (feature
//!   `sessionkit`, on by default).
//! - `dpop`: [`ProofRequest`], what a source signs for a handshake; the
//!   server's nonce kept between attempts and the `use_dpop_nonce` retry.
//! - `challenge`: a handshake answer's `WWW-Authenticate: DPoP` challenge
//!   (a nonce asked for, the algorithms the server takes).
//! - [`Backoff`]: the reconnect schedule as pure functions, re-exported from
//!   `sessionkit-backoff` (the SDK's retries use the same type).
//! - `endpoints`: [`Endpoint`], the list, the random or seeded start, a
//!   DPoP nonce per endpoint.
//! - `pacing`: the waits before the next attempt (one schedule for the
//!   list, going-away, refused-connection probing, a server's advice).
//! - `state`: [`State`], [`ReconnectReason`], [`CloseReason`].
//! - `options`: [`Incoming`], [`WhenFull`], [`Resume`], [`RefreshMode`], [`TokenTransport`].
//! - `builder`: [`Builder`], the settings with their `DEFAULT_*` values.
//! - `client`: [`RealtimeClient`], the handle an app holds (send, state, close).
//! - `driver`: the task behind a client: attempt, classify the end, back off.
//! - `connection`: one open connection: pump, ping, move to a newer token.
//! - `inbox`: the incoming queue's byte bound (the channel bounds the count).
//! - `handshake`: TCP, TLS and the WebSocket opening handshake (ours, so the
//!   token never reaches tungstenite's logs); `unlogged`: the in-band auth write.
//! - `error`: [`Error`] and [`TokenError`].
//! - `unacked`: [`Unacked`], the messages the server has not acknowledged yet.
//! - `unlogged`: the in-band `auth` message, written past tungstenite's frame logging.
//!
//! ## TLS
//! `wss://` uses rustls (aws-lc-rs) with the platform's root certificates;
//! [`Builder::tls_config`] takes any rustls [`rustls::ClientConfig`] (a
//! private CA, a self-signed certificate, pinning).
//!
//! ## Nothing lost across reconnects
//! The client writes each queued message once, in order, and a message whose
//! write failed again first on the next connection. Whether a message written
//! just before a connection died reached the server, only the server knows:
//! the app keeps each message until the server acknowledges it
//! ([`Unacked`]), and the `on_connect` hook re-sends what is not
//! acknowledged on every new connection, before anything still queued. The
//! server stores a message the first time it sees its id and acknowledges
//! every copy. The server then has every message once, in the order sent
//! (checked across 20 forced disconnects, some abrupt, some with close
//! frames, in `tests/realtime/resume.rs`).
//!
//! ## A complete client
//! A chat client: messages carry an id, the server answers each with
//! `{"ack":ID}`; on every (re)connect the client re-subscribes and re-sends
//! what was not acknowledged.
//! ```no_run
//! use std::sync::Arc;
//! use sessionkit_realtime::{Incoming, RealtimeClient, Resume, State, StaticToken, Unacked};
//!
//! # async fn demo() -> Result<(), sessionkit_realtime::Error> {
//! // With the SDK: `.build(session.clone())` (the `Arc<Session>` sign-in returned).
//! let source = Arc::new(StaticToken::new("an-access-token"));
//! let unacked = Unacked::new();
//! let (client, mut incoming) = RealtimeClient::builder("wss://chat.example.com/ws")
//!     // On every new connection, before queued messages go out: resume.
//!     .on_connect({
//!         let unacked = unacked.clone();
//!         move |resume: Resume| {
//!             resume.send(r#"{"type":"subscribe","room":"general"}"#);
//!             unacked.resend(&resume);
//!             std::future::ready(())
//!         }
//!     })
//!     .build(source)?;
//!
//! // Watch the connection.
//! let mut state = client.state();
//! tokio::spawn(async move {
//!     while state.changed().await.is_ok() {
//!         let now = state.borrow_and_update().clone();
//!         if let State::Closed(why) = now {
//!             eprintln!("closed: {why:?}");
//!             break;
//!         }
//!     }
//! });
//!
//! // Read: acknowledgements end a message's wait; the rest is for the app.
//! let reader = {
//!     let unacked = unacked.clone();
//!     tokio::spawn(async move {
//!         while let Some(message) = incoming.recv().await {
//!             let Incoming::Text(text) = message else { continue };
//!             let value: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
//!             match value.get("ack").and_then(serde_json::Value::as_u64) {
//!                 Some(id) => {
//!                     unacked.ack(&id.to_string());
//!                 }
//!                 None => println!("{text}"),
//!             }
//!         }
//!     })
//! };
//!
//! // Send: each message with its id, recorded until acknowledged.
//! for (id, text) in ["hello", "how are you?"].into_iter().enumerate() {
//!     let message = serde_json::json!({ "id": id, "type": "say", "text": text });
//!     unacked.send(&client, id.to_string(), message.to_string()).await?;
//! }
//!
//! // Queued messages are dropped by shutdown: wait for the acknowledgements first.
//! let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
//! while !unacked.is_empty() && tokio::time::Instant::now() < deadline {
//!     tokio::time::sleep(std::time::Duration::from_millis(50)).await;
//! }
//! client.shutdown().await;
//! let _ = reader.await;
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

mod builder;
mod challenge;
mod client;
mod connection;
mod dpop;
mod driver;
mod endpoints;
mod error;
mod handshake;
mod inbox;
mod metrics;
#[cfg(test)]
mod nodelay_tests;
mod options;
mod pacing;
mod state;
mod token;
mod unacked;
mod unlogged;

/// The rustls version [`Builder::tls_config`] takes.
pub use rustls;

// The reconnect schedule: the workspace's one backoff type.
pub use builder::{
    Builder, DEFAULT_CONNECT_TIMEOUT, DEFAULT_INCOMING_BYTES, DEFAULT_INCOMING_CAPACITY,
    DEFAULT_MAX_MESSAGE, DEFAULT_OUTGOING_BYTES, DEFAULT_OUTGOING_CAPACITY, DEFAULT_PING_INTERVAL,
    DEFAULT_PONG_TIMEOUT, DEFAULT_READ_BUFFER, DEFAULT_REFUSED_PROBE_WINDOW, DEFAULT_WRITE_TIMEOUT,
};
pub use client::RealtimeClient;
pub use dpop::{HANDSHAKE_METHOD, ProofRequest};
pub use endpoints::{ENDPOINTS_HEADER, Endpoint};
pub use error::{Error, Result, TokenError};
pub use metrics::Metrics;
pub use options::{Incoming, RefreshMode, Resume, TokenTransport, WhenFull};
pub use sessionkit_backoff::Backoff;
pub use state::{CloseReason, ReconnectReason, State};
pub use token::{BearerToken, BoxFuture, IntoTokenSource, StaticToken, TimedToken, TokenSource};
pub use unacked::Unacked;
