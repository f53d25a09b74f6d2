//! # sessionkit-tests
//!
//! End-to-end tests across the sessionkit crates, in one process over real
//! sockets: the SDK's sessions, the realtime client and the example chat
//! server against the mock identity provider, and the SDK against a provider
//! we did not write, panva/oidc-provider (`tests/`). The tests that run the
//! `chat` and `chat-server` binaries live beside them in `examples/tests`,
//! where Cargo builds the binaries for them; each crate's own tests live in
//! that crate.
//!
//! The library is the support code those tests share across crates (a
//! dev-dependency only, never published):
//! - [`webdriver`]: a tiny W3C WebDriver client for headless Chromium;
//! - [`file_store`]: a token store in files, shared between processes;
//! - [`scratch`]: a temporary directory per test, removed when dropped;
//! - [`oidc_provider`]: panva/oidc-provider in a child process, and a
//!   scripted user for its pages;
//! - [`postgres`]: a PostgreSQL database of its own per test, on the
//!   cluster `SESSIONKIT_PG_URL` names, or a cluster of its own to restart;
//! - [`faults`]: a fault-injecting TCP proxy (latency, a blackholed
//!   partition, resets, refusals) that a test controls at run time;
//! - [`keychain`]: gnome-keyring over D-Bus (the Secret Service): find,
//!   lock and unlock its collection, count its items;
//! - [`netns`]: test hosts in network namespaces on veth pairs, whose path
//!   a test partitions, makes lossy or delays (nftables, NFQUEUE; root only).

#![forbid(unsafe_code)]

pub mod faults;
pub mod file_store;
pub mod keychain;
pub mod netns;
pub mod oidc_provider;
pub mod postgres;
pub mod scratch;
pub mod webdriver;
