//! The fault matrix row "provider slower than the client's timeout" (see
//! main.rs): the provider waits longer than the SDK's request timeout
//! before it answers.

use std::time::Duration;

use sessionkit::{Error, LogoutStep, SessionState};
use sessionkit_mock_idp::Fault;
use sessionkit_tests::faults::Fault as NetFault;

use crate::catalogue::{Cell, Row};
use crate::provider_support::{
    Expired, HTTP_TIMEOUT, REVOKE_BUDGET, RefreshFailed, SLOW, World, kept, login_under,
    logout_under,
};

pub const ROW: Row = Row {
    fault: "provider slower than the client's timeout",
    how: "mock-idp's scripted delay (3 s; 6 s at revocation) longer than the client's request timeout (500 ms here; the revocation's budget 1.5 s); for refresh also 400 ms each way on the path to the provider (FaultProxy), so that it answers, too late",
    cells: [
        Cell::Tested(
            "a typed timeout error (`is_timeout`) within the timeout, at discovery and at the code exchange; nothing stored; the same sign-in succeeds once the provider is fast again",
        ),
        Cell::Tested(
            "each attempt times out, retried within the bounds, then a typed timeout error; the session is kept (the stored tokens unchanged); a later refresh succeeds. A provider that completes the refresh anyway (its answer lost) has rotated the token: the retries look like reuse, it revokes the grant, and once the path is fast the next refresh is refused — a clean sign-out; a provider with a reuse grace (mock-idp's `refresh_token_reuse_grace`, like Auth0's reuse interval) keeps the session, and the next refresh succeeds",
        ),
        Cell::Tested(
            "the token expires (4001) and the reconnect waits for a token with backoff, never signs out, and connects once the provider is fast again",
        ),
        Cell::Tested(
            "nothing lost: lines queued while the token cannot be renewed are stored once",
        ),
        Cell::Tested(
            "signed out locally at once; the logout returns within the revocation's budget (`revocation_timeout`, 1.5 s here), the revocation reported as timed out",
        ),
    ],
};

fn slow(endpoint: &str) -> Fault {
    Fault::on(endpoint).delay_ms(SLOW.as_millis() as u64)
}

fn timed_out(error: &Error) -> bool {
    matches!(error, Error::Network(n) if n.is_timeout())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login() {
    let (discovery, exchange) = login_under(Some(slow("discovery")), slow("token")).await;
    let discovery = discovery.unwrap();
    assert!(timed_out(&discovery), "{discovery:?}");
    assert!(timed_out(&exchange), "{exchange:?}");
    assert!(exchange.is_transient());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh() {
    let failed = RefreshFailed::under(slow("token")).await;
    assert!(timed_out(&failed.error), "{:?}", failed.error);
    // Three attempts of the timeout each, plus waits under 100 ms.
    assert!(failed.took >= 3 * HTTP_TIMEOUT, "{:?}", failed.took);
    assert!(
        failed.took < 3 * HTTP_TIMEOUT + Duration::from_millis(500),
        "{:?}",
        failed.took
    );
    failed.kept_then_refreshed().await;
    drop(failed);

    // A provider that does answer, too late: 400 ms each way on the path
    // to it, so each answer comes 800 ms after its request, past the
    // 500 ms timeout. The provider rotated the refresh token at the first
    // attempt; the retries sent the old one, which its reuse detection
    // takes for theft: it revoked the grant. Every answer was lost, so the
    // app sees timeouts and the session is kept — until the path is fast
    // again and the next refresh is refused: a clean sign-out.
    let world = World::fronted().await;
    let session = world.sign_in("alice").await;
    let front = world.front.as_ref().unwrap();
    front.set(NetFault::Delay(Duration::from_millis(400)));
    let error = session.force_refresh().await.unwrap_err();
    assert!(timed_out(&error), "{error:?}");
    assert!(kept(&session));
    front.set(NetFault::Pass);
    let error = session.force_refresh().await.unwrap_err();
    eprintln!("once the path is fast: {error}");
    assert!(error.is_signed_out(), "{error:?}");
    assert_eq!(*session.state().borrow(), SessionState::SignedOutByServer);
    assert!(world.stored_nothing(&session));
    assert!(world.manager.accounts().unwrap().is_empty());
    drop(world);

    // The same with a provider that accepts a used refresh token again for
    // a while (a reuse interval): the retries and the next refresh send the
    // rotated-out token within it, so the user stays signed in.
    let world = World::fronted().await;
    world
        .idp
        .control()
        .set_refresh_token_reuse_grace(Duration::from_secs(60));
    let session = world.sign_in("alice").await;
    let before = world.stored_refresh(&session);
    let front = world.front.as_ref().unwrap();
    front.set(NetFault::Delay(Duration::from_millis(400)));
    let error = session.force_refresh().await.unwrap_err();
    assert!(timed_out(&error), "{error:?}");
    assert!(kept(&session));
    front.set(NetFault::Pass);
    session
        .force_refresh()
        .await
        .expect("refreshed within the provider's grace");
    assert!(
        matches!(*session.state().borrow(), SessionState::SignedIn { .. }),
        "{:?}",
        *session.state().borrow()
    );
    assert_ne!(world.stored_refresh(&session), before, "the new one stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect() {
    let expired = Expired::under(slow("token")).await;
    expired.heal().await;
    expired.world.assert_history(&["a-1"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send() {
    let expired = Expired::under(slow("token")).await;
    expired.send_two_then_heal().await;
    expired.world.assert_history(&["a-1", "a-2", "a-3"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout() {
    let out = logout_under(Fault::on("revocation").delay_ms(6_000)).await;
    assert!(!out.report.revoked);
    assert!(
        matches!(
            &out.report.failures[..],
            [(LogoutStep::RevokeRefreshToken, why)] if why.contains("timed out")
        ),
        "{:?}",
        out.report
    );
    assert!(
        out.total >= REVOKE_BUDGET - Duration::from_millis(100),
        "{:?}",
        out.total
    );
    assert!(out.local < Duration::from_secs(1), "{:?}", out.local);
}
