//! Integration tests of the chat server over real sockets on `127.0.0.1:0`,
//! with the mock IdP in-process and real tokens from it.

mod backchannel;
mod chat;
mod conformance;
mod dpop;
mod durability;
mod expiry;
mod handshake;
mod limits;
mod multinode;
#[path = "../common/room_chat.rs"]
#[allow(dead_code, unreachable_pub, clippy::unwrap_used)]
mod room_chat;
mod support;
