//! The fault matrix row "300 ms latency" (see main.rs): each IPv4 packet
//! between the client and the host of the provider and the chat server
//! held 300 ms, each way (a 600 ms round trip), by a userspace delayer on
//! NFQUEUE (net_support.rs). The SDK's request timeout is 5 s here.

use std::time::Duration;

use sessionkit::{RetryPolicy, SessionState};
use sessionkit_realtime::State;
use sessionkit_tests::netns::Impairment;
use tokio::time::Instant;

use crate::catalogue::{Cell, Row};
use crate::net_support::NetWorld;

pub const ROW: Row = Row {
    fault: "300 ms latency",
    how: "a userspace delayer (NFQUEUE, iptables) holds every IPv4 packet 300 ms on the receiving end of the veth to a network namespace holding the provider and chat-server (each way: 600 ms round trips)",
    cells: [
        Cell::Tested("login completes"),
        Cell::Tested("refresh completes in a few round trips, long before expiry"),
        Cell::Tested(
            "connects; no spurious dead-connection detection with the default liveness (ping after 4 s, dead after 8 s)",
        ),
        Cell::Tested(
            "in order, once; a frame that closely follows another is not held by Nagle (arrives with it, not a round trip later)",
        ),
        Cell::Tested("logout completes; revocation confirmed"),
    ],
};

const DELAY: Duration = Duration::from_millis(300);
const LATENCY: Impairment = Impairment::Delay(DELAY);
const TIMEOUT: Duration = Duration::from_secs(5);

async fn world(test: &str) -> Option<NetWorld> {
    NetWorld::start_with(test, TIMEOUT, RetryPolicy::default()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login() {
    let Some(world) = world("latency::login").await else {
        return;
    };
    world.impair(LATENCY);
    let started = Instant::now();
    let session = world.sign_in("alice").await.expect("login under latency");
    let took = started.elapsed();
    eprintln!("login under 300 ms latency: {took:?}");
    // The token request alone is a round trip (its connection is kept from discovery).
    assert!(took >= 2 * DELAY, "{took:?}: the path was slow");
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert_eq!(world.manager.accounts().unwrap().len(), 1);
    assert!(matches!(
        *session.state().borrow(),
        SessionState::SignedIn { .. }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh() {
    let Some(world) = world("latency::refresh").await else {
        return;
    };
    let session = world.sign_in("alice").await.unwrap();
    let (before, _) = session.cached_access_token();
    world.impair(LATENCY);
    let started = Instant::now();
    let after = session
        .force_refresh()
        .await
        .expect("refresh under latency");
    let took = started.elapsed();
    eprintln!("refresh under 300 ms latency: {took:?}");
    assert!(took >= 2 * DELAY, "{took:?}: the path was slow");
    assert!(took < Duration::from_secs(4), "{took:?}");
    assert_ne!(after.secret(), before.secret());
    let (_, expires) = session.cached_access_token();
    let left = expires
        .expect("an expiry")
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    assert!(left > Duration::from_secs(60), "{left:?} left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect() {
    let Some(world) = world("latency::connect").await else {
        return;
    };
    let session = world.sign_in("alice").await.unwrap();
    world.impair(LATENCY);
    let started = Instant::now();
    let chat = world.chat(&session).await;
    let took = started.elapsed();
    eprintln!("connected and joined under 300 ms latency: {took:?}");
    // TCP, the WebSocket handshake and the join: three round trips.
    assert!(took >= 6 * DELAY, "{took:?}");
    let State::Connected { generation } = chat.client.current_state() else {
        panic!("connected");
    };
    // Past the default dead-connection bound: pings cross, nothing is declared dead.
    let connected = State::Connected { generation };
    let mut state = chat.client.state();
    let left = tokio::time::timeout(Duration::from_secs(9), state.wait_for(|s| *s != connected));
    assert!(left.await.is_err(), "{:?}", *state.borrow());
    assert_eq!(chat.client.current_state(), connected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send() {
    let Some(world) = world("latency::send").await else {
        return;
    };
    let session = world.sign_in("alice").await.unwrap();
    let mut bob = world.chat(&session).await;
    let alice = world.chat(&session).await;
    world.impair(LATENCY);

    // Pairs of lines sent back to back; each crosses to the server, then
    // back out to Bob (two crossings, 600 ms). The second line of a pair is
    // written right after the first on Bob's socket: with Nagle on, it
    // would wait for Bob's ACK of the first (a 600 ms round trip).
    let mut ids = Vec::new();
    let mut gaps = Vec::new();
    for pair in 1..=5 {
        let (first_id, second_id) = (format!("p{pair}-1"), format!("p{pair}-2"));
        let sent = Instant::now();
        alice.send(&first_id).await;
        alice.send(&second_id).await;
        let (first_at, first) = bob.next().await;
        let (second_at, second) = bob.next().await;
        assert_eq!(
            (first.id.as_str(), second.id.as_str()),
            (first_id.as_str(), second_id.as_str())
        );
        let gap = second_at - first_at;
        eprintln!(
            "pair {pair}: first after {:?}, second {:?} after it",
            first_at - sent,
            gap
        );
        assert!(first_at - sent >= 2 * DELAY, "{:?}", first_at - sent);
        gaps.push(gap);
        ids.extend([first_id, second_id]);
        alice.all_acked().await;
    }
    gaps.sort();
    eprintln!(
        "gap between the two frames of a pair at Bob: median {:?}, max {:?}",
        gaps[2], gaps[4]
    );
    // Nagle would hold the second frame a round trip (600 ms); allow a
    // loaded machine 250 ms.
    assert!(gaps[4] < Duration::from_millis(250), "{gaps:?}");
    alice.all_acked().await;
    world.assert_history(&session, &ids).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout() {
    let Some(world) = world("latency::logout").await else {
        return;
    };
    let session = world.sign_in("alice").await.unwrap();
    let chat = world.chat(&session).await;
    world.impair(LATENCY);
    let started = Instant::now();
    let report = world.manager.logout(session.key()).await;
    let took = started.elapsed();
    eprintln!("logout under 300 ms latency: {report:?} after {took:?}");
    assert!(report.revoked, "revocation confirmed");
    assert!(report.is_complete(), "{:?}", report.failures);
    assert!(
        took >= 2 * DELAY,
        "{took:?}: the revocation crossed the path"
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(world.manager.accounts().unwrap().is_empty());
    chat.state(|s| matches!(s, State::Closed(_))).await;
}
