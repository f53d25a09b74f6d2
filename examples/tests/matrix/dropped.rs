//! The fault matrix row "connection dropped" (see main.rs): the provider
//! closes the connection without an answer.

use std::time::Duration;

use sessionkit::{Error, LogoutStep, SessionState};
use sessionkit_mock_idp::Fault;

use sessionkit_tests::faults::Fault as NetFault;

use crate::catalogue::{Cell, Row};
use crate::provider_support::{
    Expired, RefreshFailed, World, connected, login_under, logout_under,
};

pub const ROW: Row = Row {
    fault: "connection dropped",
    how: "the provider closes the connection without an answer (mock-idp drop_connection) at the endpoint the operation uses; for connect and send, then also the chat socket reset (sessionkit_tests::faults::FaultProxy)",
    cells: [
        Cell::Tested(
            "a typed network error, at discovery and at the code exchange; nothing stored; the same sign-in succeeds once the provider answers",
        ),
        Cell::Tested(
            "one dropped attempt is retried and the refresh succeeds; if every try drops, a typed network error after the bounded retries and the session is kept (the stored tokens unchanged)",
        ),
        Cell::Tested(
            "the token expires (4001) and the reconnect waits for a token with backoff, never signs out, and connects with a fresh token once the provider answers; a reset chat socket reconnects with the session's token",
        ),
        Cell::Tested(
            "lines sent while the provider drops every refresh are queued and each stored once after it answers; a line in flight when the chat socket is reset, and one sent while it is down, are re-sent and stored once",
        ),
        Cell::Tested(
            "signed out locally at once; the revocation is retried within its budget (1.5 s here) and reported as failed",
        ),
    ],
};

fn drop_on(endpoint: &str) -> Fault {
    Fault::on(endpoint).drop_connection()
}

fn network(error: &Error) -> bool {
    matches!(error, Error::Network(n) if !n.is_timeout())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login() {
    let (discovery, exchange) = login_under(Some(drop_on("discovery")), drop_on("token")).await;
    let discovery = discovery.unwrap();
    assert!(network(&discovery), "{discovery:?}");
    assert!(network(&exchange), "{exchange:?}");
    assert!(exchange.is_transient());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh() {
    // Once: the retry succeeds and the app sees nothing but the new token.
    let world = World::start().await;
    let session = world.sign_in("alice").await;
    let before = world.stored_refresh(&session);
    let requests = world.requests("token");
    world.fault(drop_on("token").times(1));
    session.force_refresh().await.unwrap();
    assert_eq!(
        world.requests("token") - requests,
        2,
        "dropped, then retried"
    );
    assert!(matches!(
        *session.state().borrow(),
        SessionState::SignedIn { .. }
    ));
    assert_ne!(world.stored_refresh(&session), before);
    drop(world);

    // Every time: a typed error, the session kept.
    let failed = RefreshFailed::under(drop_on("token")).await;
    assert!(network(&failed.error), "{:?}", failed.error);
    failed.kept_then_refreshed().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect() {
    let expired = Expired::under(drop_on("token")).await;
    expired.heal().await;

    // The chat socket reset: the client connects again with the session's token.
    let Expired { world, chat, .. } = &expired;
    world.proxy.set(NetFault::Reset);
    chat.state(|s| !connected(s)).await;
    world.proxy.set(NetFault::Pass);
    chat.state(connected).await;
    chat.joined(3).await;
    assert!(matches!(
        *expired.session.state().borrow(),
        SessionState::SignedIn { .. }
    ));
    world.assert_history(&["a-1"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send() {
    let expired = Expired::under(drop_on("token")).await;
    expired.send_two_then_heal().await;

    // A line in flight as the chat socket is reset, one sent while it is
    // down: each re-sent on the new connection and stored once.
    let Expired { world, chat, .. } = &expired;
    chat.send("a-4").await;
    world.proxy.set(NetFault::Reset);
    chat.state(|s| !connected(s)).await;
    chat.send("a-5").await;
    world.proxy.set(NetFault::Pass);
    chat.state(connected).await;
    chat.all_acked().await;
    world
        .assert_history(&["a-1", "a-2", "a-3", "a-4", "a-5"])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout() {
    let out = logout_under(drop_on("revocation")).await;
    assert!(!out.report.revoked);
    assert!(
        matches!(
            &out.report.failures[..],
            [(LogoutStep::RevokeRefreshToken, _)]
        ),
        "{:?}",
        out.report
    );
    assert!(out.revocations >= 2, "retried: {}", out.revocations);
    assert!(out.local < Duration::from_secs(1), "{:?}", out.local);
}
