//! # sessionkit-realtime
//!
//! A WebSocket client that reconnects by itself with backoff and jitter,
//! always with a fresh token, refreshes while connected without a gap, queues
//! while offline and stops when the user logs out.
//!
//! This crate is being built; see the workspace README for what works today.

#![forbid(unsafe_code)]
