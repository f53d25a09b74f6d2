//! The fault matrix row "chat node SIGKILLed" (see main.rs): two
//! `chat-server` processes on one PostgreSQL database (a database of its
//! own per test; skipped without `SESSIONKIT_PG_URL` unless
//! `SESSIONKIT_REQUIRE_POSTGRES` is set), one killed with SIGKILL — no close
//! frame, no shutdown. The moves themselves (lines typed after the kill,
//! history shared) are `chat`'s shared_history tests; these cells look at
//! what those do not: how soon the move is made, lines in flight at the
//! kill, and a logout while a node is dead.

use std::time::{Duration, Instant};

use sessionkit::MemoryStore;
use sessionkit_tests::postgres::TestDatabase;
use sessionkit_tests::scratch::ScratchDir;

use crate::catalogue::{Cell, Row};
use crate::node_support::chat::ServerProcess;
use crate::node_support::{
    PATIENCE, User, backchannel_url, close_code, connection, handshake, idp, lines_of, manager,
    messages, newest_sid, plain_landing_on, sign_in, stored,
};

pub const ROW: Row = Row {
    fault: "chat node SIGKILLed",
    how: "a chat-server process (one of two on one PostgreSQL) killed with SIGKILL: no close frame",
    cells: [
        Cell::NotApplicable("login talks only to the provider, never to a chat node"),
        Cell::NotApplicable(
            "refresh talks only to the provider; a refresh while the node dies is the reconnect case",
        ),
        Cell::Tested(
            "the client is on the other node within the base delay (250 ms; measured 57–158 ms, asserted < 1 s) and resumes after its last sequence: a line sent meanwhile shown once, nothing twice",
        ),
        Cell::Tested(
            "lines in flight at the kill (stored or not, unacked) are sent again on the other node and stored once, in order",
        ),
        Cell::Tested(
            "signed out while the node is dead: the back-channel logout reaches the other node, which closes with 4003; the token is refused there and by the killed node once it is back",
        ),
    ],
};

/// Two `chat-server` processes on `db`.
async fn two_nodes(issuer: &str, db: &TestDatabase) -> [ServerProcess; 2] {
    [
        ServerProcess::start_on(issuer, db.url()).await,
        ServerProcess::start_on(issuer, db.url()).await,
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect() {
    let Some(db) = TestDatabase::create("matrix_kill_connect").await else {
        return;
    };
    let idp = idp().await;
    let mut nodes = two_nodes(idp.issuer(), &db).await;
    let servers = [nodes[0].url.as_str(), nodes[1].url.as_str()];
    let (alice, bob) = (
        User::at("alice", idp.issuer(), servers[0]),
        User::at("bob", idp.issuer(), servers[0]),
    );
    alice.login(&idp).await;
    bob.login(&idp).await;
    let mut a = alice.plain_on_servers(&servers, false);
    a.expect_status("joined #general").await;
    let first = connection(&a, 1).await;
    let on = servers
        .iter()
        .position(|s| *s == first)
        .expect("one of the two");
    let other = servers[1 - on].to_owned();
    let mut b = plain_landing_on(&bob, &servers, &other).await;
    a.send("m1").await;
    a.expect_line("[1] alice: m1").await;

    let killed = Instant::now();
    nodes[on].kill().await;
    // bob writes on the surviving node while alice is moving.
    b.send("from bob").await;
    assert_eq!(connection(&a, 2).await, other, "moved to the other node");
    let moved = killed.elapsed();
    eprintln!("alice was on the other node {moved:?} after the kill");
    assert!(moved < Duration::from_secs(1), "moved after {moved:?}");
    a.expect_line("[2] bob: from bob").await;

    let (status, seen, stderr) = a.finish().await;
    assert!(status.success(), "{stderr}");
    assert_eq!(
        messages(&seen),
        [
            (1, "alice".to_owned(), "m1".to_owned()),
            (2, "bob".to_owned(), "from bob".to_owned())
        ],
        "resumed after [1]: each message shown once; stderr:\n{stderr}"
    );
    assert!(!stderr.contains("signed out"), "{stderr}");
    let _ = b.finish().await;
    alice.cleanup().await;
    bob.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send() {
    let Some(db) = TestDatabase::create("matrix_kill_send").await else {
        return;
    };
    let idp = idp().await;
    let mut nodes = two_nodes(idp.issuer(), &db).await;
    let servers = [nodes[0].url.as_str(), nodes[1].url.as_str()];
    let alice = User::at("alice", idp.issuer(), servers[0]);
    alice.login(&idp).await;
    let mut a = alice.plain_on_servers(&servers, false);
    a.expect_status("joined #general").await;
    let first = connection(&a, 1).await;
    let on = servers
        .iter()
        .position(|s| *s == first)
        .expect("one of the two");

    // Typed, and the node killed at once: some lines reached it (stored,
    // maybe acked), some are on the wire, some still queued in the client.
    for i in 1..=4 {
        a.send(&format!("m{i}")).await;
    }
    nodes[on].kill().await;
    for i in 5..=6 {
        a.send(&format!("m{i}")).await;
    }
    a.expect_line("[6] alice: m6").await;
    let (status, seen, stderr) = a.finish().await;
    assert!(status.success(), "{stderr}");
    assert_eq!(
        messages(&seen),
        lines_of("alice", 1, 6),
        "each line echoed once, in order; stderr:\n{stderr}"
    );
    let (rows, ids) = stored(&db.client().await).await;
    assert_eq!(
        rows,
        lines_of("alice", 1, 6),
        "each line stored once, in order"
    );
    assert_eq!(ids, rows.len(), "no client id stored twice");
    alice.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout() {
    let Some(db) = TestDatabase::create("matrix_kill_logout").await else {
        return;
    };
    let idp = idp().await;
    let mut nodes = two_nodes(idp.issuer(), &db).await;
    let urls = [nodes[0].url.clone(), nodes[1].url.clone()];
    // The provider knows one back-channel URL, as it would know a load
    // balancer's: with node 0 dead, it routes to node 1.
    idp.control()
        .set_backchannel_logout_uri("chat-example", Some(&backchannel_url(&urls[1])))
        .expect("back-channel uri");
    let dir = ScratchDir::new("matrix-kill-logout");
    let sessions = manager(
        &idp,
        std::sync::Arc::new(MemoryStore::new()),
        "matrix-kill",
        &dir,
    )
    .await;
    let session = sign_in(&idp, &sessions, "alice").await.expect("signed in");
    let token = session.access_token().await.expect("token");
    let mut socket = handshake(&urls[1], token.secret())
        .await
        .expect("accepted on node 1");

    nodes[0].kill().await;
    assert!(idp.control().end_session(&newest_sid(&idp, "alice")));
    assert_eq!(
        close_code(&mut socket, PATIENCE).await,
        Some(4003),
        "node 1 closes the session's socket with 4003"
    );
    assert_eq!(
        handshake(&urls[1], token.secret()).await.err(),
        Some(401),
        "node 1 refuses the logged-out token"
    );
    // The killed node, back on the same database, refuses it too.
    nodes[0].restart().await;
    assert_eq!(
        handshake(&urls[0], token.secret()).await.err(),
        Some(401),
        "the restarted node 0 refuses the logged-out token"
    );
    let statuses: Vec<_> = idp
        .control()
        .deliveries()
        .iter()
        .map(|d| d.status)
        .collect();
    assert_eq!(statuses, [Some(200)], "delivered once, taken");
}
