//! The SDK against a provider we did not write: panva/oidc-provider (npm
//! `oidc-provider` 9, in `tests/oidc-provider`), started by each test in a
//! `node` child process on a free loopback port, in development mode with
//! its own login and consent pages.
//!
//! - `browser`: sign-in through those pages in headless Chromium, opaque
//!   access tokens with `AuthedClient` against its userinfo, a refresh, and
//!   a logout that revokes the refresh token;
//! - `rotation`: rotated refresh tokens, and a used one replayed: the
//!   provider revokes the grant and the session ends cleanly (typed error,
//!   no loop);
//! - `algorithms`: ID tokens signed with ES256, EdDSA and Ed25519;
//! - `dpop`: DPoP-bound tokens with the provider's nonces required, and a
//!   provider that takes pushed authorization requests only;
//! - `processes`: several processes of one app refresh the same account at
//!   once: exactly one refresh grant reaches the provider.
//!
//! Without `node` or without `tests/oidc-provider/node_modules` the tests
//! skip, unless `SESSIONKIT_REQUIRE_OIDC_PROVIDER` is set (as in CI), where
//! they fail; the browser test also needs chromedriver (see
//! `sessionkit_tests::webdriver`). `npm ci --prefix tests/oidc-provider`
//! installs the provider.

#![allow(missing_docs, unreachable_pub, clippy::unwrap_used)]

mod support;

mod algorithms;
mod browser;
mod dpop;
mod processes;
mod rotation;
