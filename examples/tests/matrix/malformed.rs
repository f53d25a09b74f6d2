//! The fault matrix row "malformed JSON" (see main.rs): the provider
//! answers 200 with a body cut short, not JSON.

use std::time::Duration;

use sessionkit::Error;
use sessionkit_mock_idp::Fault;

use crate::catalogue::{Cell, Row};
use crate::provider_support::{Expired, RefreshFailed, login_under, logout_under};

pub const ROW: Row = Row {
    fault: "malformed JSON",
    how: "mock-idp answers 200 with a body cut short (`{\"access_token\": \"tr`), not JSON, at the endpoint the operation uses",
    cells: [
        Cell::Tested(
            "a typed, transient parse error (status 200 kept, no body or token in it), at discovery and at the code exchange; nothing stored; the same sign-in succeeds once the provider answers well",
        ),
        Cell::Tested(
            "taken as an answer cut short: retried within the bounds, then a typed parse error; the session is kept (tokens unchanged); the next refresh succeeds",
        ),
        Cell::Tested(
            "the token expires (4001) and the reconnect waits for a usable token; connects once the provider answers well",
        ),
        Cell::Tested("nothing lost: lines queued while refreshes fail are stored once"),
        Cell::Tested(
            "signed out locally; the revocation counts as done (RFC 7009: a 200 is the answer, its body is not read)",
        ),
    ],
};

fn malformed(endpoint: &str) -> Fault {
    Fault::on(endpoint).malformed_json()
}

fn parse_200(error: &Error) -> bool {
    matches!(error, Error::Parse { status: Some(200), body, .. } if !body.contains("tr"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login() {
    let (discovery, exchange) = login_under(Some(malformed("discovery")), malformed("token")).await;
    let discovery = discovery.unwrap();
    assert!(parse_200(&discovery), "{discovery:?}");
    assert!(parse_200(&exchange), "{exchange:?}");
    // A success answer cut short: worth trying again.
    assert!(discovery.is_transient() && exchange.is_transient());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh() {
    let failed = RefreshFailed::under(malformed("token")).await;
    assert!(parse_200(&failed.error), "{:?}", failed.error);
    failed.kept_then_refreshed().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect() {
    let expired = Expired::under(malformed("token")).await;
    expired.heal().await;
    expired.world.assert_history(&["a-1"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send() {
    let expired = Expired::under(malformed("token")).await;
    expired.send_two_then_heal().await;
    expired.world.assert_history(&["a-1", "a-2", "a-3"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout() {
    let out = logout_under(malformed("revocation")).await;
    assert!(out.report.revoked, "{:?}", out.report);
    assert!(out.report.is_complete(), "{:?}", out.report);
    assert_eq!(out.revocations, 1);
    assert!(out.total < Duration::from_secs(1), "{:?}", out.total);
}
