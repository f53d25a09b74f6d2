//! `chat --plain` on two chat-server nodes sharing one PostgreSQL database
//! (a database of its own per test; skipped without `SESSIONKIT_PG_URL`
//! unless `SESSIONKIT_REQUIRE_POSTGRES` is set): alice's node is stopped
//! (in-process shutdown, close 1001) or killed (a `chat-server` process,
//! SIGKILL: no close frame) mid-chat. She resumes on the other node after
//! the last sequence she saw; the lines she typed while moving are stored
//! once; bob, on the surviving node, sees every line of hers in order; both
//! print `[SEQ]` contiguous from 1, nothing twice.

use std::time::Duration;

use sessionkit_examples::server::{ChatServer, Database, ServerConfig};
use sessionkit_mock_idp::MockIdp;
use sessionkit_tests::postgres::TestDatabase;

use crate::support::{
    PATIENCE, Plain, ServerProcess, User, connected_to, connection, messages, plain_landing_on,
};

/// Lines alice types before the stop, while moving, and after the move.
const PER_PHASE: u64 = 5;

async fn idp() -> MockIdp {
    MockIdp::builder()
        .bind("127.0.0.1:0")
        .start()
        .await
        .expect("mock idp")
}

/// alice and bob signed in, each with `chat --plain` on both servers and
/// joined to #general, bob on the node alice is not on; returns them and
/// the index (in `servers`) of alice's node.
async fn alice_and_bob(idp: &MockIdp, servers: [&str; 2]) -> (User, User, Plain, Plain, usize) {
    let alice = User::at("alice", idp.issuer(), servers[0]);
    let bob = User::at("bob", idp.issuer(), servers[0]);
    alice.login(idp).await;
    bob.login(idp).await;
    let a = alice.plain_on_servers(&servers, false);
    a.expect_status("joined #general").await;
    let on = connection(&a, 1).await;
    let index = servers
        .iter()
        .position(|s| *s == on)
        .unwrap_or_else(|| panic!("connected to {on}, not one of {servers:?}"));
    let b = plain_landing_on(&bob, &servers, servers[1 - index]).await;
    (alice, bob, a, b, index)
}

/// alice's lines `from..=to`, typed without waiting.
async fn type_lines(a: &mut Plain, from: u64, to: u64) {
    for i in from..=to {
        a.send(&format!("m{i}")).await;
    }
}

/// Before the stop: alice's first lines, seen by both.
async fn before_the_stop(a: &mut Plain, b: &mut Plain) {
    type_lines(a, 1, PER_PHASE).await;
    let last = format!("[{PER_PHASE}] alice: m{PER_PHASE}");
    b.expect_line(&last).await;
    a.expect_line(&last).await;
}

/// After the stop (alice's node gone): the lines typed while moving, the
/// move to `other`, the lines typed after it; then every check.
/// `alice_exit` bounds how long alice's `chat` may take to exit once her
/// input ends (every line is acknowledged and echoed by then).
async fn after_the_stop(
    db: &TestDatabase,
    (alice, bob, mut a, mut b): (User, User, Plain, Plain),
    other: &str,
    alice_exit: Duration,
) {
    // Typed at once: while alice's client is noticing, or moving.
    type_lines(&mut a, PER_PHASE + 1, 2 * PER_PHASE).await;
    let stopped = tokio::time::Instant::now();
    assert_eq!(connection(&a, 2).await, other, "moved to the other node");
    eprintln!("alice moved {:?} after the stop", stopped.elapsed());
    type_lines(&mut a, 2 * PER_PHASE + 1, 3 * PER_PHASE).await;
    let total = 3 * PER_PHASE;
    let last = format!("[{total}] alice: m{total}");
    b.expect_line(&last).await;
    a.expect_line(&last).await;

    let want: Vec<_> = (1..=total)
        .map(|i| (i, "alice".to_owned(), format!("m{i}")))
        .collect();
    let (status, alice_saw, a_err) = a.finish_within(alice_exit).await;
    assert!(status.success(), "{a_err}");
    assert_eq!(
        messages(&alice_saw),
        want,
        "alice printed each line once, [SEQ] from 1; stderr:\n{a_err}"
    );
    let (status, bob_saw, b_err) = b.finish().await;
    assert!(status.success(), "{b_err}");
    assert_eq!(
        messages(&bob_saw),
        want,
        "bob printed each line once, in order; stderr:\n{b_err}"
    );
    assert_eq!(
        connected_to(&b_err, 2),
        None,
        "bob's node survived: he never moved; stderr:\n{b_err}"
    );

    // Stored once each: one row per line, one client id per row.
    let rows = db
        .client()
        .await
        .query(
            "SELECT seq, user_name, client_id, text FROM messages
             WHERE room = 'general' ORDER BY seq",
            &[],
        )
        .await
        .expect("read messages");
    let stored: Vec<(i64, String, String)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(3)))
        .collect();
    let want_stored: Vec<_> = (1..=total)
        .map(|i| {
            (
                i64::try_from(i).expect("i64"),
                "alice".to_owned(),
                format!("m{i}"),
            )
        })
        .collect();
    assert_eq!(stored, want_stored, "each line stored once, in order");
    let ids: std::collections::HashSet<String> = rows.iter().map(|r| r.get(2)).collect();
    assert_eq!(ids.len(), rows.len(), "no client id stored twice");
    alice.cleanup().await;
    bob.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_shut_down_mid_chat_is_left_for_the_other_with_the_shared_history() {
    shut_down_mid_chat(PATIENCE).await;
}

/// A regression test for `chat --plain` (examples/src/chat/plain.rs, the
/// `Message` and `Acked` arms): when the echo of a line arrived before its
/// ack — as happens for lines re-sent after a move — the ack put the id
/// into `awaiting_echo` after the echo had been printed, nothing removed
/// it, and at the end of input `chat` waited the whole `ECHO_WAIT` (5 s)
/// for an echo it had printed. Intermittent (it depends on the order in
/// which the node answers), hence three rounds with a 3 s exit limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_move_chat_exits_without_waiting_for_an_echo_it_printed() {
    for _ in 0..3 {
        shut_down_mid_chat(Duration::from_secs(3)).await;
    }
}

async fn shut_down_mid_chat(alice_exit: Duration) {
    let Some(db) = TestDatabase::create("chat_shutdown").await else {
        return;
    };
    let idp = idp().await;
    let mut nodes = Vec::new();
    for _ in 0..2 {
        let mut config = ServerConfig::new(idp.issuer());
        config.db = Database::from_arg(db.url());
        nodes.push(Some(ChatServer::start(config).await.expect("node starts")));
    }
    let urls: Vec<String> = nodes.iter().flatten().map(ChatServer::ws_url).collect();
    let servers = [urls[0].as_str(), urls[1].as_str()];
    let (alice, bob, mut a, mut b, on) = alice_and_bob(&idp, servers).await;
    before_the_stop(&mut a, &mut b).await;

    // SIGTERM's in-process equivalent: close 1001 ("going away").
    nodes[on].take().expect("running").shutdown().await;
    a.expect_status("1001").await;
    after_the_stop(&db, (alice, bob, a, b), servers[1 - on], alice_exit).await;
    for node in nodes.into_iter().flatten() {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_chat_is_left_for_the_other_with_the_shared_history() {
    let Some(db) = TestDatabase::create("chat_sigkill").await else {
        return;
    };
    let idp = idp().await;
    let mut nodes = [
        ServerProcess::start_on(idp.issuer(), db.url()).await,
        ServerProcess::start_on(idp.issuer(), db.url()).await,
    ];
    let urls = [nodes[0].url.clone(), nodes[1].url.clone()];
    let servers = [urls[0].as_str(), urls[1].as_str()];
    let (alice, bob, mut a, mut b, on) = alice_and_bob(&idp, servers).await;
    before_the_stop(&mut a, &mut b).await;

    // SIGKILL: no close frame; the kernel closes the process's sockets.
    let killed = tokio::time::Instant::now();
    nodes[on].kill().await;
    after_the_stop(&db, (alice, bob, a, b), servers[1 - on], PATIENCE).await;
    eprintln!("moved and checked {:?} after the kill", killed.elapsed());
}
