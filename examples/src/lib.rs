//! # sessionkit-examples
//!
//! The example chat client (`chat`) and server (`chat-server`) that show
//! sessionkit working end to end: sign-in with the SDK, tokens in the OS
//! keychain, a WebSocket that stays up across token refreshes, server
//! restarts and dropped connections, and a server that refuses bad tokens
//! and closes a signed-out session's sockets.
//!
//! - [`server`]: the chat server as a library ([`server::ChatServer`]); the
//!   `chat-server` binary is a thin wrapper.
//! - [`chat`]: the client — command line, the embedded demo, the plain
//!   (script) mode and the terminal UI; the `chat` binary calls [`chat::main`].
//! - [`protocol`]: the JSON frames both sides speak.
//! - [`quickstart`]: the README's quick start, compiled and tested.

#![forbid(unsafe_code)]

pub mod chat;
pub mod protocol;
pub mod quickstart;
pub mod server;
