//! # sessionkit-tests
//!
//! End-to-end tests across the sessionkit crates, with shared support code.
//! Being built: the mock identity provider's own tests live in `mock-idp/tests`.

#![forbid(unsafe_code)]
