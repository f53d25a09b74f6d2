//! # sessionkit
//!
//! Keeps a user signed in: OpenID Connect discovery and login (PKCE through a
//! loopback redirect, or the device flow), ID-token checks, tokens per account
//! in the OS keychain, refresh before expiry, thorough logout, and an
//! authenticated HTTP client.
//!
//! ## Layout
//! - `secret`: newtypes for every secret; `Debug` prints `[redacted]`.
//! - `store`: [`TokenStore`], the keychain and in-memory stores.
//! - `error`: [`Error`], with store errors kept apart as [`StoreError`].

#![forbid(unsafe_code)]

pub mod accounts;
mod error;
mod http;
pub mod id_token;
mod login;
mod provider;
mod secret;
mod session;
pub mod store;
mod token;

pub use accounts::{AccountInfo, AccountRegistry};
pub use error::{Error, IdTokenError, Result, StoreError};
pub use http::HttpClient;
pub use login::{AuthorizationRequest, DevicePrompt, LoopbackOptions, OidcClient, OpenUrl};
pub use provider::{ExtraMetadata, Metadata, Provider, check_issuer_url};
pub use secret::{
    AccessToken, AuthorizationCode, ClientSecret, CodeVerifier, IdToken, Nonce, RefreshToken, State,
};
pub use session::{Restored, Session, SessionManager};
pub use store::{AccountKey, MemoryStore, SessionEntry, TokenStore};
pub use token::TokenSet;
