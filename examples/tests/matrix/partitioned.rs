//! The fault matrix row "node partitioned" (see main.rs): every packet
//! between the client and the host of the provider and the chat server
//! silently dropped, both ways, by nftables (net_support.rs).

use std::time::Duration;

use sessionkit::{Error, LogoutStep, RetryPolicy, SessionState};
use sessionkit_realtime::{Backoff, State};
use sessionkit_tests::netns::Impairment;
use tokio::time::Instant;

use crate::catalogue::{Cell, Row};
use crate::net_support::{NetWorld, REQUEST_TIMEOUT, connected};

pub const ROW: Row = Row {
    fault: "node partitioned",
    how: "nftables drops every IPv4 packet on both ends of the veth to a network namespace holding the provider and chat-server (half-open sockets)",
    cells: [
        Cell::Tested(
            "the token request into the partition: a typed network timeout within the client's request timeout; nothing stored",
        ),
        Cell::Tested(
            "a typed network timeout after the bounded retries; the session kept (refresh failing) and refreshed once the path heals",
        ),
        Cell::Tested(
            "with the client's defaults: the dead connection noticed within 8 s; attempts time out while partitioned; reconnected within 2 s of healing (the pending attempt's SYN gets through), the session kept",
        ),
        Cell::Tested(
            "lines sent into the partition and while cut off are resent after it heals and stored once, in order",
        ),
        Cell::Tested(
            "signed out locally within the 5 s revocation budget; the revocation reported as not confirmed",
        ),
    ],
};

const SLACK: Duration = Duration::from_millis(1500);

fn is_timeout(err: &Error) -> bool {
    matches!(err, Error::Network(n) if n.is_timeout())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login() {
    let Some(world) = NetWorld::start("partitioned::login").await else {
        return;
    };
    let started = Instant::now();
    let err = world
        .sign_in_then("alice", Some(Impairment::Partition))
        .await
        .expect_err("no login through a partition");
    let took = started.elapsed();
    eprintln!("login into the partition: {err} after {took:?}");
    assert!(is_timeout(&err), "a network timeout, not {err:?}");
    assert!(err.is_transient());
    assert!(took < REQUEST_TIMEOUT + SLACK, "{took:?}");
    assert!(
        world.manager.accounts().unwrap().is_empty(),
        "nothing stored"
    );
    assert!(world.manager.active().unwrap().is_none());

    // Healed, the same user signs in.
    world.impair(Impairment::Clear);
    world.sign_in("alice").await.expect("login once healed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh() {
    let retry = RetryPolicy::new(2, Duration::from_millis(100), Duration::from_millis(400));
    let timeout = Duration::from_secs(1);
    let Some(world) = NetWorld::start_with("partitioned::refresh", timeout, retry).await else {
        return;
    };
    let session = world.sign_in("alice").await.unwrap();
    let (before, _) = session.cached_access_token();
    world.impair(Impairment::Partition);
    let started = Instant::now();
    let err = session.force_refresh().await.expect_err("no refresh");
    let took = started.elapsed();
    eprintln!("refresh into the partition: {err} after {took:?}");
    assert!(is_timeout(&err), "a network timeout, not {err:?}");
    // Three attempts of 1 s, two pauses under 400 ms.
    assert!(took >= 3 * timeout, "{took:?}: every attempt waited");
    assert!(
        took < 3 * timeout + Duration::from_millis(800) + SLACK,
        "{took:?}"
    );
    assert!(
        matches!(
            *session.state().borrow(),
            SessionState::RefreshFailing { .. }
        ),
        "{:?}",
        *session.state().borrow()
    );
    assert!(world.manager.session(session.key()).is_some(), "kept");
    assert_eq!(session.cached_access_token().0.secret(), before.secret());

    world.impair(Impairment::Clear);
    let after = session
        .force_refresh()
        .await
        .expect("refreshed once healed");
    assert_ne!(after.secret(), before.secret());
    assert!(matches!(
        *session.state().borrow(),
        SessionState::SignedIn { .. }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect() {
    let Some(world) = NetWorld::start("partitioned::connect").await else {
        return;
    };
    let session = world.sign_in("alice").await.unwrap();
    // The realtime client's defaults: ping after 4 s of silence, dead after
    // 8 s, connect attempts of 10 s, backoff 250 ms ×2 up to 30 s.
    let chat = world
        .chat_with(&session, |b| b.backoff(Backoff::default()))
        .await;
    let State::Connected { generation } = chat.client.current_state() else {
        panic!("connected");
    };
    world.impair(Impairment::Partition);
    let cut = Instant::now();
    let noticed = chat.state(|s| !connected(s)).await.0 - cut;
    eprintln!("partition noticed after {noticed:?} (default: dead after 8 s of silence)");
    assert!(noticed <= Duration::from_secs(8) + SLACK, "{noticed:?}");

    // Still partitioned: attempts time out, nothing connects.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!connected(&chat.client.current_state()));

    world.impair(Impairment::Clear);
    let healed = Instant::now();
    chat.state(connected).await;
    let back = healed.elapsed();
    eprintln!("reconnected {back:?} after the partition healed");
    assert!(back < Duration::from_secs(2) + SLACK, "{back:?}");
    let State::Connected { generation: now } = chat.client.current_state() else {
        panic!("connected");
    };
    assert!(now > generation, "a new connection");
    assert!(
        matches!(*session.state().borrow(), SessionState::SignedIn { .. }),
        "the session kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send() {
    let Some(world) = NetWorld::start("partitioned::send").await else {
        return;
    };
    let session = world.sign_in("alice").await.unwrap();
    // A short liveness bound, for speed (`connect` holds the default).
    let (ping, dead) = (Duration::from_millis(500), Duration::from_secs(1));
    let chat = world
        .chat_with(&session, |b| b.ping(ping, dead).connect_timeout(dead))
        .await;
    chat.send("a-1").await;
    chat.all_acked().await;

    world.impair(Impairment::Partition);
    chat.send("a-2").await;
    chat.send("a-3").await;
    chat.state(|s| !connected(s)).await;
    chat.send("a-4").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!connected(&chat.client.current_state()));
    assert_eq!(chat.unacked.ids().len(), 3, "{:?}", chat.unacked.ids());

    world.impair(Impairment::Clear);
    chat.state(connected).await;
    chat.all_acked().await;
    chat.send("a-5").await;
    chat.all_acked().await;
    let ids: Vec<String> = (1..=5).map(|i| format!("a-{i}")).collect();
    world.assert_history(&session, &ids).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout() {
    let Some(world) = NetWorld::start("partitioned::logout").await else {
        return;
    };
    let session = world.sign_in("alice").await.unwrap();
    let chat = world.chat(&session).await;
    world.impair(Impairment::Partition);
    let started = Instant::now();
    let report = world.manager.logout(session.key()).await;
    let took = started.elapsed();
    eprintln!("logout into the partition: {report:?} after {took:?}");
    assert!(took < Duration::from_secs(5) + SLACK, "{took:?}");
    assert!(!report.revoked, "not confirmed");
    assert_eq!(
        report
            .failures
            .iter()
            .map(|(step, _)| *step)
            .collect::<Vec<_>>(),
        [LogoutStep::RevokeRefreshToken],
        "only the revocation failed"
    );
    assert!(world.manager.accounts().unwrap().is_empty());
    assert!(world.manager.session(session.key()).is_none());
    assert_eq!(*session.state().borrow(), SessionState::SignedOut);
    chat.state(|s| matches!(s, State::Closed(_))).await;
}
