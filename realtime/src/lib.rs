//! # sessionkit-realtime
//!
//! A WebSocket client that reconnects by itself with backoff and jitter,
//! always with a fresh token, and stops when the user logs out.
//!
//! Every connection attempt asks a [`TokenSource`] for a token and sends it
//! (by default) in the `Authorization: Bearer` header (marked sensitive,
//! never logged).
//! Close codes drive what happens next: 4001 (or a 401 at the handshake)
//! forces one refresh and reconnects at once; 4003 refreshes and ends the
//! client as [`CloseReason::SignedOut`] when the refresh says the account is
//! signed out; other 4000–4499 codes back off; 4500–4999 are terminal. A
//! close reason `{"retry_after_ms": N}` sets the next delay. The state is on
//! a `watch` channel ([`State`]); incoming messages arrive on an `mpsc`
//! receiver ([`Incoming`]).
//!
//! Outgoing messages wait in a queue bounded by count and bytes while the
//! client is disconnected and go out in order after the reconnect.
//!
//! An `on_connect` hook (resume, re-subscribe) runs on every new connection
//! before the queued messages go out.
//!
//! While connected, the client re-authenticates before the token expires
//! ([`Builder::refresh_margin`], when the [`TokenSource`] knows the expiry
//! through [`TokenSource::timed_token`]): by default make-before-break (a
//! second connection with the fresh token, then a switch; the state stays
//! `Connected`; [`Builder::message_identity`] delivers messages seen on both
//! connections once), or in-band ([`Builder::refresh_in_band`]).
//!
//! The token can go in a subprotocol or a query parameter instead of the
//! header ([`Builder::token_transport`], [`TokenTransport`]); a query
//! token is only ever on that attempt's request, never in a log line.
//!
//! ## Tokens and logs
//! The token is never in a log record of this crate, and the default
//! feature `safe-logs` keeps it out of tungstenite's: tungstenite writes
//! every client handshake request, headers and query included, as a `log`
//! TRACE record. `safe-logs` sets the `log` crate's `max_level_debug`
//! feature, which compiles `log` TRACE records out of the whole program
//! (`tracing`'s own TRACE events are not affected). Without the feature,
//! keep the target `tungstenite::handshake::client` below TRACE.
//!
//! ## Layout
//! - `token`: the [`TokenSource`] trait, [`TimedToken`], [`StaticToken`], and the impl for
//!   `Arc<sessionkit::Session>` (feature `sessionkit`, on by default).
//! - `backoff`: the reconnect schedule as pure functions ([`Backoff`]).
//! - `state`: [`State`], [`ReconnectReason`], [`CloseReason`].
//! - `client`: [`RealtimeClient`], its [`Builder`], [`RefreshMode`] and [`TokenTransport`].
//! - `error`: [`Error`] and [`TokenError`].
//!
//! ## A complete client
//! ```no_run
//! use std::sync::Arc;
//! use sessionkit_realtime::{Incoming, RealtimeClient, Resume, State, StaticToken};
//!
//! # async fn demo() -> Result<(), sessionkit_realtime::Error> {
//! // With the SDK: `let source = Arc::new(session.clone());` (an `Arc<Session>`).
//! let source = Arc::new(StaticToken::new("an-access-token"));
//! let (client, mut incoming) = RealtimeClient::builder("wss://chat.example.com/ws")
//!     // On every (re)connect, before queued messages: resume and re-subscribe.
//!     .on_connect(|resume: Resume| async move {
//!         resume.send(r#"{"type":"resume","after":"last-seen-id"}"#);
//!         resume.send(r#"{"type":"subscribe","room":"general"}"#);
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
//! client.send("hello").await?;
//! while let Some(message) = incoming.recv().await {
//!     if let Incoming::Text(text) = message {
//!         println!("{text}");
//!     }
//! }
//! client.shutdown().await;
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

mod backoff;
mod client;
mod error;
mod state;
mod token;

pub use backoff::Backoff;
pub use client::{
    Builder, Incoming, RealtimeClient, RefreshMode, Resume, TokenTransport, WhenFull,
};
pub use error::{Error, Result, TokenError};
pub use state::{CloseReason, ReconnectReason, State};
pub use token::{BearerToken, BoxFuture, StaticToken, TimedToken, TokenSource};
