//! The fault matrix row "30 % packet loss" (see main.rs): each IPv4 packet
//! between the client and the host of the provider and the chat server
//! dropped with probability 0.3, each way, by nftables (net_support.rs).
//! TCP's retransmissions carry everything through, slower; the SDK's
//! request timeout is 10 s here, an app's choice for a bad network.

use std::time::Duration;

use sessionkit::{RetryPolicy, SessionState};
use sessionkit_realtime::State;
use sessionkit_tests::netns::Impairment;
use tokio::time::Instant;

use crate::catalogue::{Cell, Row};
use crate::net_support::{NetWorld, connected};

pub const ROW: Row = Row {
    fault: "30 % packet loss",
    how: "nftables `numgen random mod 100 < 30 drop` on both ends of the veth to a network namespace holding the provider and chat-server (each way)",
    cells: [
        Cell::Tested(
            "login completes (TCP retransmits; the test's browser reloads a page stuck for 3 s, as a user would)",
        ),
        Cell::Tested("refresh completes: a new access token, the session signed in"),
        Cell::Tested(
            "connects, and stays connected or reconnects by itself; never closed, no spurious sign-out",
        ),
        Cell::Tested("every line acknowledged and stored once, in order"),
        Cell::Tested("logout completes; revocation confirmed"),
    ],
};

const LOSS: Impairment = Impairment::Loss(30);
const TIMEOUT: Duration = Duration::from_secs(10);

async fn world(test: &str) -> Option<NetWorld> {
    NetWorld::start_with(test, TIMEOUT, RetryPolicy::default()).await
}

/// The loss really dropped packets while the operation ran (asserted where
/// it carried enough packets for "none dropped" to be unlikely: at 30 %,
/// 40 packets all pass once in 1.6 million).
fn assert_lossy(world: &NetWorld) {
    let dropped = world.host.dropped();
    eprintln!("packets dropped: {dropped}");
    assert!(dropped > 0, "the loss dropped nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login() {
    let Some(world) = world("loss::login").await else {
        return;
    };
    world.impair(LOSS);
    let started = Instant::now();
    let session = world.sign_in("alice").await.expect("login under loss");
    eprintln!("login under 30 % loss: {:?}", started.elapsed());
    assert_eq!(world.manager.accounts().unwrap().len(), 1);
    assert!(matches!(
        *session.state().borrow(),
        SessionState::SignedIn { .. }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh() {
    let Some(world) = world("loss::refresh").await else {
        return;
    };
    let session = world.sign_in("alice").await.unwrap();
    let (before, _) = session.cached_access_token();
    world.impair(LOSS);
    let started = Instant::now();
    for _ in 0..3 {
        session.force_refresh().await.expect("refresh under loss");
    }
    eprintln!("3 refreshes under 30 % loss: {:?}", started.elapsed());
    assert_ne!(session.cached_access_token().0.secret(), before.secret());
    assert!(matches!(
        *session.state().borrow(),
        SessionState::SignedIn { .. }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect() {
    let Some(world) = world("loss::connect").await else {
        return;
    };
    let session = world.sign_in("alice").await.unwrap();
    world.impair(LOSS);
    let started = Instant::now();
    // Attempts of 3 s, not 10: a new connection whose SYNs are lost waits
    // 1 s, then 2 s, 4 s… for TCP's retries; a fresh attempt does better.
    let chat = world
        .chat_with(&session, |b| b.connect_timeout(Duration::from_secs(3)))
        .await;
    eprintln!(
        "connected and joined under 30 % loss: {:?}",
        started.elapsed()
    );
    // Longer than the default dead-connection bound (8 s): pings cross.
    let mut state = chat.client.state();
    let (mut drops, watch_until) = (0, Instant::now() + Duration::from_secs(9));
    while let Ok(changed) = tokio::time::timeout_at(watch_until, state.changed()).await {
        changed.unwrap();
        let now = state.borrow_and_update().clone();
        assert!(!matches!(now, State::Closed(_)), "{now:?}");
        if matches!(now, State::Reconnecting { .. }) {
            drops += 1;
        }
    }
    eprintln!("reconnects in 9 s of 30 % loss: {drops}");
    chat.state(connected).await;
    assert!(matches!(
        *session.state().borrow(),
        SessionState::SignedIn { .. }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send() {
    let Some(world) = world("loss::send").await else {
        return;
    };
    let session = world.sign_in("alice").await.unwrap();
    let chat = world
        .chat_with(&session, |b| b.connect_timeout(Duration::from_secs(3)))
        .await;
    world.impair(LOSS);
    let ids: Vec<String> = (1..=20).map(|i| format!("a-{i}")).collect();
    let started = Instant::now();
    for id in &ids {
        chat.send(id).await;
    }
    chat.all_acked().await;
    eprintln!(
        "20 lines acknowledged under 30 % loss: {:?}",
        started.elapsed()
    );
    assert_lossy(&world);
    world.assert_history(&session, &ids).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout() {
    let Some(world) = world("loss::logout").await else {
        return;
    };
    let session = world.sign_in("alice").await.unwrap();
    world.impair(LOSS);
    let started = Instant::now();
    let report = world.manager.logout(session.key()).await;
    eprintln!(
        "logout under 30 % loss: {report:?} after {:?}",
        started.elapsed()
    );
    assert!(report.revoked, "revocation confirmed");
    assert!(report.is_complete(), "{:?}", report.failures);
    assert!(world.manager.accounts().unwrap().is_empty());
    assert_eq!(*session.state().borrow(), SessionState::SignedOut);
    assert!(world.host.impairment() == LOSS);
}
