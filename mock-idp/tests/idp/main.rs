//! Integration tests of the mock identity provider over real sockets: plain
//! HTTP for every strictness rule and negative case, the `openidconnect`
//! crate as a standards client, and a real browser for the pages.

mod support;

mod account;
mod authorize;
mod browser;
mod conformance;
mod control;
mod discovery;
mod dpop;
mod limits;
mod logout;
mod oidc_client;
mod par;
mod private_key_jwt;
mod start;
mod tokens;
mod users;
