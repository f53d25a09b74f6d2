//! The fault matrix row "provider 5xx" (see main.rs): the provider answers
//! 502/503 at the endpoint the operation uses.

use std::time::Duration;

use sessionkit::{Error, LogoutStep};
use sessionkit_mock_idp::Fault;
use sessionkit_realtime::{ReconnectReason, State};
use tokio::time::Instant;

use crate::catalogue::{Cell, Row};
use crate::provider_support::{
    Expired, RefreshFailed, World, connected, kept, login_under, logout_under, status,
};

pub const ROW: Row = Row {
    fault: "provider 5xx",
    how: "mock-idp's scripted faults answer 502 (a gateway's HTML page) at discovery and 503 with an OAuth error body at the token, revocation and (for the chat server) discovery and JWKS endpoints",
    cells: [
        Cell::Tested(
            "a typed transient error with the status kept, at discovery and at the code exchange (not retried: a code is single-use); nothing stored, no account listed; the same sign-in succeeds once the provider answers",
        ),
        Cell::Tested(
            "retried within the bounds (1 + 2 attempts; a Retry-After is honoured), then a typed transient error; the session is kept (refresh failing, the stored tokens unchanged); the next refresh after the fault succeeds",
        ),
        Cell::Tested(
            "the token expires (4001) and the reconnect waits with backoff for a token, never signs out, and connects with a fresh token once the provider answers; a chat server that cannot fetch the provider's keys answers the handshake 503, and the client backs off and connects once the provider answers",
        ),
        Cell::Tested(
            "lines sent while refreshes fail are queued and each stored once after the provider answers",
        ),
        Cell::Tested(
            "signed out locally at once (tokens deleted from the store, the chat closed as signed out); the revocation is retried within its budget (1.5 s here) and reported as failed",
        ),
    ],
};

fn unavailable(endpoint: &str) -> Fault {
    status(endpoint, 503)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login() {
    let gateway = Fault::on("discovery").status(502, "<html><body>Bad Gateway</body></html>");
    let (discovery, exchange) = login_under(Some(gateway), unavailable("token")).await;
    let discovery = discovery.unwrap();
    assert!(
        matches!(
            discovery,
            Error::Parse {
                status: Some(502),
                ..
            }
        ),
        "{discovery:?}"
    );
    assert!(discovery.is_transient());
    assert!(
        matches!(&exchange, Error::Provider { error, status: Some(503), .. } if error == "server_error"),
        "{exchange:?}"
    );
    assert!(exchange.is_transient() && !exchange.is_signed_out());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh() {
    let failed = RefreshFailed::under(unavailable("token")).await;
    assert!(
        matches!(
            &failed.error,
            Error::Provider {
                status: Some(503),
                ..
            }
        ),
        "{:?}",
        failed.error
    );
    failed.kept_then_refreshed().await;

    // A 503 with Retry-After: the retry waits as asked (up to six times
    // the retry cap, 600 ms here), then succeeds.
    let RefreshFailed { world, session, .. } = &failed;
    world.fault(unavailable("token").retry_after(1).times(1));
    let started = Instant::now();
    session.force_refresh().await.unwrap();
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(600), "{took:?}");
    assert!(took < Duration::from_millis(1500), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect() {
    let expired = Expired::under(unavailable("token")).await;
    expired.heal().await;
    expired.world.assert_history(&["a-1"]).await;
    drop(expired);

    // The chat server cannot fetch the provider's keys to check the token:
    // it answers the handshake 503; the client backs off and connects
    // once the provider answers.
    let world = World::start().await;
    let session = world.sign_in("alice").await;
    world.fault(unavailable("discovery"));
    world.fault(unavailable("jwks"));
    let chat = world.chat_starting(&session);
    chat.state(|s| {
        matches!(
            s,
            State::Reconnecting {
                reason: ReconnectReason::Handshake { status: 503 },
                ..
            }
        )
    })
    .await;
    assert!(kept(&session));
    world.heal();
    chat.state(connected).await;
    chat.joined(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send() {
    let expired = Expired::under(unavailable("token")).await;
    expired.send_two_then_heal().await;
    expired.chat.send("a-4").await;
    expired.chat.all_acked().await;
    expired
        .world
        .assert_history(&["a-1", "a-2", "a-3", "a-4"])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout() {
    let out = logout_under(unavailable("revocation")).await;
    assert!(!out.report.revoked);
    assert!(
        matches!(&out.report.failures[..], [(LogoutStep::RevokeRefreshToken, why)] if why.contains("server_error")),
        "{:?}",
        out.report
    );
    assert!(out.revocations >= 2, "retried: {}", out.revocations);
    assert!(
        out.local < std::time::Duration::from_secs(1),
        "{:?}",
        out.local
    );
}
