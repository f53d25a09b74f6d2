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
//! use std::sync::Arc;
//! use sessionkit::{AccountRegistry, HttpClient, LoopbackOptions, MemoryStore, OidcClient, Provider, SessionManager};
//!
//! # async fn demo() -> sessionkit::Result<()> {
//! let http = HttpClient::new()?;
//! let provider = Provider::discover("http://127.0.0.1:9090", &http).await?; // e.g. `cargo run --bin mock-idp`
//! let client = OidcClient::new(provider, "chat-example").scopes(["openid", "profile", "offline_access"]);
//! let sessions = SessionManager::new(
//!     client,
//!     "my-app",
//!     Arc::new(MemoryStore::new()), // or the OS keychain store
//!     AccountRegistry::for_namespace("my-app")?,
//! );
//! sessions.restore().await?; // every account signed in before
//! if sessions.active()?.is_none() {
//!     let account = sessions.login_loopback(LoopbackOptions::system_browser()).await?;
//!     println!("Signed in as {}", account.display_name);
//! }
//! # Ok(()) }
//! ```
//!
//! ## Layout
//! - `secret`: newtypes for every secret; `Debug` prints `[redacted]`.
//! - `store`: [`TokenStore`], the keychain and in-memory stores.
//! - `error`: [`Error`], with store errors kept apart as [`StoreError`].
//! - `provider`: discovery and the JWKS cache ([`Provider`]); `http`: the one HTTP client.
//! - [`id_token`]: the ID-token checks, as a pure function and with JWKS refetch.
//! - `login`: [`OidcClient`] — loopback, app-handled redirect and device flows.
//! - [`accounts`] and `session`: the account registry, [`SessionManager`] and
//!   [`Session`] (fresh tokens, single-flight refresh, policies, logout).
//! - `authed`: [`AuthedClient`], requests with the bearer token and one retry after a 401.
//! - `devices`: the account's other sessions at the provider ([`list_devices`], [`revoke_device`]).

#![forbid(unsafe_code)]

pub mod accounts;
mod authed;
mod clock;
mod devices;
mod error;
mod http;
pub mod id_token;
mod login;
mod logout;
mod policy;
mod provider;
mod refresh;
mod secret;
mod session;
pub mod store;
mod timing;
mod token;

pub use accounts::{AccountInfo, AccountRegistry};
pub use authed::{
    AuthedClient, DEFAULT_MAX_QUEUE_AGE, DEFAULT_MAX_QUEUED_BYTES, DEFAULT_MAX_QUEUED_REQUESTS,
    DEFAULT_REPLAY_BACKOFF_BASE, DEFAULT_REPLAY_BACKOFF_CAP, DropReason, QueueOptions,
};
pub use devices::{DEVICE_NOT_FOUND, DeviceSession, list_devices, revoke_device};
pub use error::{Error, IdTokenError, Result, StoreError};
pub use http::HttpClient;
pub use login::{AuthorizationRequest, DevicePrompt, LoopbackOptions, OidcClient, OpenUrl};
pub use logout::{LogoutReport, LogoutStep};
pub use policy::RefreshPolicy;
pub use provider::{ExtraMetadata, Metadata, Provider, check_issuer_url};
pub use refresh::{FailureKind, RetryPolicy};
pub use secret::{
    AccessToken, AuthorizationCode, ClientSecret, CodeVerifier, IdToken, Nonce, RefreshToken, State,
};
pub use session::{
    CleanupHook, CurrentToken, Restored, Session, SessionEvent, SessionManager, SessionState,
};
pub use store::{
    AccountKey, KeychainBackend, KeychainStore, MemoryStore, SessionEntry, TokenStore,
};
pub use token::TokenSet;
