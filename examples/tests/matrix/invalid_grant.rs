//! The fault matrix row "invalid_grant" (see main.rs): the provider answers
//! 400 `invalid_grant` — the code or the refresh token was revoked, expired
//! or used already.

use std::time::Duration;

use sessionkit::{Error, LogoutStep, Session, SessionEvent, SessionState};
use sessionkit_mock_idp::Fault;
use sessionkit_realtime::{CloseReason, State};

use crate::catalogue::{Cell, Row};
use crate::provider_support::{
    PATIENCE, World, login_under, logout_under, status, waiting_for_token,
};

pub const ROW: Row = Row {
    fault: "invalid_grant",
    how: "mock-idp answers 400 invalid_grant (the code or refresh token was revoked or used) at the token or revocation endpoint",
    cells: [
        Cell::Tested(
            "a typed invalid_grant error for the code exchange (the provider's code kept), not retried; nothing stored; a new sign-in succeeds",
        ),
        Cell::Tested(
            "a clean sign-out: one attempt, no retry; the account's tokens deleted from the store, the account forgotten, a signed-out-by-server state and event",
        ),
        Cell::Tested(
            "the token comes due and its refresh is refused: the session ends (tokens deleted) and the client stops as signed out, with nothing of it running and no further attempts",
        ),
        Cell::Tested(
            "the client stops as signed out; the lines the server did not acknowledge stay in the app's unacknowledged list (nothing dropped silently), a later send fails with a typed `Closed`, and the server stored only the acknowledged ones",
        ),
        Cell::Tested(
            "signed out locally at once; the refused revocation (not retried) is reported",
        ),
    ],
};

fn invalid_grant(endpoint: &str) -> Fault {
    Fault::on(endpoint).status(
        400,
        r#"{"error":"invalid_grant","error_description":"grant revoked"}"#,
    )
}

fn is_invalid_grant(error: &Error) -> bool {
    matches!(error, Error::Provider { error, status: Some(400), .. } if error == "invalid_grant")
}

/// Waits until the session has ended as signed out by the provider (the
/// client stops at the first step of the teardown, before the state is
/// published).
async fn signed_out_by_server(session: &Session) {
    let mut state = session.state();
    tokio::time::timeout(
        PATIENCE,
        state.wait_for(|s| *s == SessionState::SignedOutByServer),
    )
    .await
    .expect("signed out by the server")
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login() {
    let (_, exchange) = login_under(None, invalid_grant("token")).await;
    assert!(is_invalid_grant(&exchange), "{exchange:?}");
    assert!(!exchange.is_transient());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh() {
    let world = World::start().await;
    let session = world.sign_in("alice").await;
    let mut events = session.events();
    let requests = world.requests("token");
    world.fault(invalid_grant("token"));
    let error = session.force_refresh().await.unwrap_err();
    assert!(error.is_signed_out(), "{error:?}");
    assert_eq!(world.requests("token") - requests, 1, "no retry");
    assert_eq!(*session.state().borrow(), SessionState::SignedOutByServer);
    assert!(world.stored_nothing(&session));
    assert!(world.manager.session(session.key()).is_none());
    assert!(world.manager.accounts().unwrap().is_empty());
    let mut signed_out = false;
    while let Ok(event) = events.try_recv() {
        signed_out |= event == SessionEvent::SignedOutByServer;
    }
    assert!(signed_out, "a signed-out event");
    assert!(session.access_token().await.unwrap_err().is_signed_out());
    // Nothing keeps trying.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(world.requests("token") - requests, 1);
    assert_eq!(session.running_tasks(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect() {
    let world = World::short_lived().await;
    let session = world.sign_in("alice").await;
    let chat = world.chat(&session).await;
    world.fault(invalid_grant("token"));
    // The token comes due: the refresh is refused and the session ends.
    let (_, end) = chat.state(|s| matches!(s, State::Closed(_))).await;
    assert_eq!(end, State::Closed(CloseReason::SignedOut));
    tokio::time::timeout(PATIENCE, chat.client.closed())
        .await
        .expect("the client stops");
    assert_eq!(chat.client.running_tasks(), 0);
    signed_out_by_server(&session).await;
    assert!(world.stored_nothing(&session));
    world.connections_become(0).await;
    let refused = world.requests("token");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(world.requests("token"), refused, "no further attempts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send() {
    let world = World::short_lived().await;
    let session = world.sign_in("alice").await;
    let chat = world.chat(&session).await;
    chat.send("a-1").await;
    chat.all_acked().await;
    // The provider fails for a while: the token expires, lines queue...
    world.fault(status("token", 503));
    chat.state(waiting_for_token).await;
    chat.send("a-2").await;
    chat.send("a-3").await;
    // ...then it refuses the grant.
    world.heal();
    world.fault(invalid_grant("token"));
    let (_, end) = chat.state(|s| matches!(s, State::Closed(_))).await;
    assert_eq!(end, State::Closed(CloseReason::SignedOut));
    signed_out_by_server(&session).await;
    assert!(world.stored_nothing(&session));
    assert_eq!(chat.unacked.ids(), ["a-2", "a-3"], "handed back as unsent");
    let later = chat.client.send("a-4").await;
    assert_eq!(later, Err(sessionkit_realtime::Error::Closed));
    world.heal();
    world.assert_history(&["a-1"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout() {
    let out = logout_under(invalid_grant("revocation")).await;
    assert!(!out.report.revoked);
    assert!(
        matches!(&out.report.failures[..], [(LogoutStep::RevokeRefreshToken, why)] if why.contains("invalid_grant")),
        "{:?}",
        out.report
    );
    assert_eq!(out.revocations, 1, "not retried");
    assert!(out.total < Duration::from_secs(1), "{:?}", out.total);
}
