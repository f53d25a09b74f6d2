//! # sessionkit-tests
//!
//! End-to-end tests across the sessionkit crates, in one process over real
//! sockets: the SDK's sessions, the realtime client and the example chat
//! server against the mock identity provider (`tests/`). The tests that run
//! the `chat` and `chat-server` binaries live beside them in
//! `examples/tests`, where Cargo builds the binaries for them; each crate's
//! own tests live in that crate.

#![forbid(unsafe_code)]
