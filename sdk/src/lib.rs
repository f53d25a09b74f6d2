//! # sessionkit
//!
//! Keeps a user signed in: OpenID Connect discovery and login (PKCE through a
//! loopback redirect, or the device flow), ID-token checks, tokens per account
//! in the OS keychain, refresh before expiry, thorough logout, and an
//! authenticated HTTP client.
//!
//! ## Quick start
//!
//! ```no_run
//! use sessionkit::{AuthedClient, SessionManager};
//! # #[cfg(feature = "loopback")]
//! use sessionkit::LoopbackOptions;
//!
//! # async fn demo() -> sessionkit::Result<()> {
//! // Discovery, the OS keychain (opened off the runtime), every account signed in before.
//! let sessions = SessionManager::builder("http://127.0.0.1:9090", "chat-example") // `cargo run --bin mock-idp`
//!     .namespace("my-app")
//!     .build()
//!     .await?;
//! # #[cfg(feature = "loopback")]
//! let session = match sessions.active_session()? {
//!     Some(session) => session,
//!     None => sessions.login_loopback(LoopbackOptions::system_browser()).await?,
//! };
//! # #[cfg(not(feature = "loopback"))]
//! # let session = sessions.active_session()?.expect("signed in");
//! let api = AuthedClient::new(session.clone())?; // bearer token; one refresh and retry after a 401
//! let me = api.get("http://127.0.0.1:9090/userinfo").await?;
//! println!("{} is {}", session.info().name(), me.status());
//! let report = sessions.logout(session.key()).await; // thorough: see `LogoutReport`
//! # let _ = report; Ok(()) }
//! ```
//!
//! A realtime connection takes the session as its token source
//! (`RealtimeClient::builder(url).build(session.clone())` in
//! `sessionkit-realtime`): the session's one refresh serves it too.
//!
//! ## Layout
//! - `secret`: newtypes for every secret; `Debug` prints `[redacted]`.
//! - `store`: [`TokenStore`], the keychain and in-memory stores.
//! - `error`: [`Error`], with store errors kept apart as [`StoreError`].
//! - `provider`: discovery and the JWKS cache ([`Provider`]); `http`: the one HTTP client.
//! - [`id_token`]: the ID-token checks, as a pure function and with JWKS refetch;
//!   `jws`: the JWKS parsed once ([`Jwks`]) and the aws-lc-rs signature check.
//! - `login`: [`OidcClient`] — loopback, app-handled redirect and device flows.
//! - [`accounts`] and `session`: the account registry, [`SessionManager`]
//!   (made by [`SessionManagerBuilder`]) and [`Session`] (fresh tokens,
//!   single-flight refresh, policies, one teardown); `timing`: the one rule
//!   for when a token is due.
//! - `authed`: [`AuthedClient`], requests with the bearer token and one retry after a 401.
//! - `devices`: the account's other sessions at the provider ([`list_devices`], [`revoke_device`]).
//!
//! ## Cargo features
//!
//! Both are on by default; an app that brings its own [`TokenStore`] or its
//! own redirect handling turns them off
//! (`sessionkit = { version = "0.1", default-features = false }`) and builds
//! without D-Bus, keyutils, the platform keychain crates or `webbrowser`.
//!
//! - `keychain`: `KeychainStore` and `KeychainBackend`, tokens in the OS
//!   keychain (Secret Service or kernel keyutils on Linux, the Apple
//!   data-protection keychain, Windows Credential Manager), with the
//!   `keyring-core` store crates of each platform. [`MemoryStore`], the
//!   [`TokenStore`] trait, [`AccountKey`] and [`SessionEntry`] are always there.
//! - `loopback`: sign-in through a listener on `127.0.0.1` that opens the
//!   system browser (RFC 8252): `OidcClient::login_loopback`,
//!   `SessionManager::login_loopback`, `LoopbackOptions` and `OpenUrl`, with
//!   `webbrowser`. The app-handled redirect
//!   ([`OidcClient::authorization_request`], [`OidcClient::finish`]) and the
//!   device flow ([`OidcClient::login_device`]) are always there.
//! - `fuzzing` (off by default): entry points for the fuzz targets in the
//!   repository's `fuzz/` folder. Not part of the API; it may change in any
//!   release.

#![forbid(unsafe_code)]

pub mod accounts;
mod authed;
mod client_key;
mod clock;
mod devices;
mod dpop;
mod error;
mod filelock;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod http;
pub mod id_token;
mod jws;
mod login;
mod logout;
mod metrics;
mod policy;
mod provider;
mod refresh;
mod secret;
mod session;
mod sign;
pub mod store;
mod timing;
mod token;

pub use accounts::{AccountInfo, AccountRegistry};
pub use authed::{
    AuthedClient, DEFAULT_MAX_QUEUE_AGE, DEFAULT_MAX_QUEUED_BYTES, DEFAULT_MAX_QUEUED_REQUESTS,
    DEFAULT_REPLAY_BACKOFF_BASE, DEFAULT_REPLAY_BACKOFF_CAP, DropReason, QueueOptions,
};
pub use client_key::ClientKey;
pub use clock::Clock;
pub use devices::{DEVICE_NOT_FOUND, DeviceSession, list_devices, revoke_device};
pub use dpop::DpopKey;
pub use error::{Error, IdTokenError, NetworkError, Result, StoreError};
pub use http::HttpClient;
pub use jws::Jwks;
pub use login::{AuthParams, AuthorizationRequest, DevicePrompt, OidcClient};
#[cfg(feature = "loopback")]
pub use login::{LoopbackOptions, OpenUrl};
pub use logout::{LogoutReport, LogoutStep};
pub use metrics::Metrics;
pub use policy::RefreshPolicy;
pub use provider::{ExtraMetadata, Metadata, Provider, check_issuer_url};
pub use refresh::{FailureKind, RetryPolicy};
pub use secret::{
    AccessToken, AuthorizationCode, ClientSecret, CodeVerifier, IdToken, Nonce, RefreshToken, State,
};
pub use session::{
    CurrentToken, DEFAULT_SCOPES, Restored, Session, SessionEvent, SessionManager,
    SessionManagerBuilder, SessionState,
};
pub use store::{AccountKey, MemoryStore, SessionEntry, TokenStore};
#[cfg(feature = "keychain")]
pub use store::{KeychainBackend, KeychainStore};
pub use token::{ClientAuthMethod, TokenSet};
