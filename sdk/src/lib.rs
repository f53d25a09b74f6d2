//! # sessionkit
//!
//! Keeps a user signed in: OpenID Connect discovery and login (PKCE through a
//! loopback redirect, or the device flow), ID-token checks, tokens per account
//! in the OS keychain, refresh before expiry, thorough logout, and an
//! authenticated HTTP client.
//!
//! This crate is being built; see the workspace README for what works today.
//! Development and tests run against [`sessionkit-mock-idp`], the bundled
//! OpenID provider.
//!
//! [`sessionkit-mock-idp`]: https://docs.rs/sessionkit-mock-idp

#![forbid(unsafe_code)]
