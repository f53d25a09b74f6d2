//! # sessionkit-examples
//!
//! The example chat client (`chat`) and server (`chat-server`) that show
//! sessionkit working end to end. Being built; see the workspace README.

#![forbid(unsafe_code)]
