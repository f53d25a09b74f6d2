//! The fault matrix row "PostgreSQL restarted" (see main.rs): each test owns
//! a cluster ([`Cluster`]: initdb in a scratch directory, a Unix socket
//! there), two chat-server nodes on it, and stops and starts it under
//! them. Skipped without PostgreSQL unless `SESSIONKIT_REQUIRE_POSTGRES` is
//! set (run under `.ci/with-postgres`).

use std::sync::Arc;
use std::time::Duration;

use sessionkit::MemoryStore;
use sessionkit_examples::server::{ChatServer, Database, ServerConfig};
use sessionkit_mock_idp::MockIdp;
use sessionkit_tests::postgres::{Cluster, StopMode};
use sessionkit_tests::scratch::ScratchDir;

use crate::catalogue::{Cell, Row};
use crate::node_support::{
    PATIENCE, User, close_code, connection, handshake, idp, lines_of, messages, newest_sid,
    plain_landing_on, sign_in, stored,
};

pub const ROW: Row = Row {
    fault: "PostgreSQL restarted",
    how: "the test's own cluster stopped (fast or immediate) and started again under two chat-server nodes",
    cells: [
        Cell::NotApplicable("login talks only to the provider, which keeps no state in PostgreSQL"),
        Cell::NotApplicable(
            "refresh talks only to the provider, which keeps no state in PostgreSQL",
        ),
        Cell::Tested(
            "a client that connects while PostgreSQL is down is let in (the token check needs no database); its join, which cannot read the room, is closed with 1013 and retry_after_ms; it comes back and joins once PostgreSQL is back, never signed out",
        ),
        Cell::Tested(
            "lines typed while PostgreSQL is down (immediate stop: a crash) for longer than the node's writer retries (6.5 s > 5 s): the node closes with 1013 rather than store later lines first; the client re-sends, each line acked after its commit, stored once, in order; the other node's user sees them",
        ),
        Cell::Tested(
            "a back-channel logout while PostgreSQL is down: the receiving node closes its sockets with 4003 at once and answers 503; the provider delivers again, and once PostgreSQL is back the other node closes with 4003 too; the token is refused on both",
        ),
    ],
};

/// How long PostgreSQL stays down in these tests.
const OUTAGE: Duration = Duration::from_millis(1500);
/// An outage longer than chat-server's writer retries a batch (5 s): the
/// sender gets a `storage` error frame for what it sent meanwhile.
const LONG_OUTAGE: Duration = Duration::from_millis(6500);

/// A cluster and two chat-server nodes (in this process) on it.
struct World {
    cluster: Cluster,
    idp: MockIdp,
    nodes: Vec<ChatServer>,
}

impl World {
    async fn start(name: &str) -> Option<Self> {
        let cluster = tokio::task::block_in_place(|| Cluster::start(name))?;
        let idp = idp().await;
        let mut nodes = Vec::new();
        for _ in 0..2 {
            let mut config = ServerConfig::new(idp.issuer());
            config.db = Database::from_arg(cluster.url());
            nodes.push(ChatServer::start(config).await.expect("node starts"));
        }
        Some(Self {
            cluster,
            idp,
            nodes,
        })
    }

    fn urls(&self) -> [String; 2] {
        [self.nodes[0].ws_url(), self.nodes[1].ws_url()]
    }

    fn stop(&self, mode: StopMode) {
        tokio::task::block_in_place(|| self.cluster.stop(mode));
    }

    fn start_again(&self) {
        tokio::task::block_in_place(|| self.cluster.start_again());
    }

    async fn shutdown(self) {
        for node in self.nodes {
            node.shutdown().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect() {
    let Some(world) = World::start("connect").await else {
        return;
    };
    let urls = world.urls();
    let servers = [urls[0].as_str(), urls[1].as_str()];
    let alice = User::at("alice", world.idp.issuer(), servers[0]);
    alice.login(&world.idp).await;

    world.stop(StopMode::Fast);
    let mut a = alice.plain_on_servers(&servers, false);
    connection(&a, 1).await;
    tokio::time::sleep(OUTAGE).await;
    world.start_again();
    a.expect_status("joined #general").await;
    a.send("m1").await;
    a.expect_line("[1] alice: m1").await;
    let (status, seen, stderr) = a.finish().await;
    assert!(status.success(), "{stderr}");
    assert_eq!(messages(&seen), lines_of("alice", 1, 1), "{stderr}");
    assert!(!stderr.contains("signed out"), "{stderr}");
    alice.cleanup().await;
    world.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send() {
    let Some(world) = World::start("send").await else {
        return;
    };
    let urls = world.urls();
    let servers = [urls[0].as_str(), urls[1].as_str()];
    let (alice, bob) = (
        User::at("alice", world.idp.issuer(), servers[0]),
        User::at("bob", world.idp.issuer(), servers[0]),
    );
    alice.login(&world.idp).await;
    bob.login(&world.idp).await;
    let mut a = plain_landing_on(&alice, &servers, servers[0]).await;
    let mut b = plain_landing_on(&bob, &servers, servers[1]).await;
    a.send("m1").await;
    b.expect_line("[1] alice: m1").await;

    // A crash: every PostgreSQL process killed at once, recovery at start.
    world.stop(StopMode::Immediate);
    for i in 2..=4 {
        a.send(&format!("m{i}")).await;
    }
    tokio::time::sleep(LONG_OUTAGE).await;
    world.start_again();
    a.expect_line("[4] alice: m4").await;
    b.expect_line("[4] alice: m4").await;
    let (status, alice_saw, stderr) = a.finish().await;
    assert!(status.success(), "{stderr}");
    assert_eq!(messages(&alice_saw), lines_of("alice", 1, 4), "{stderr}");
    let (_, bob_saw, _) = b.finish().await;
    assert_eq!(messages(&bob_saw), lines_of("alice", 1, 4));
    let db = sessionkit_tests::postgres::connect(world.cluster.url())
        .await
        .expect("connect");
    let (rows, ids) = stored(&db).await;
    assert_eq!(
        rows,
        lines_of("alice", 1, 4),
        "each line stored once, in order"
    );
    assert_eq!(ids, rows.len(), "no client id stored twice");
    alice.cleanup().await;
    bob.cleanup().await;
    world.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout() {
    let Some(world) = World::start("logout").await else {
        return;
    };
    let urls = world.urls();
    world
        .idp
        .control()
        .set_backchannel_logout_uri(
            "chat-example",
            Some(&world.nodes[0].backchannel_logout_url()),
        )
        .expect("back-channel uri");
    let dir = ScratchDir::new("matrix-pg-logout");
    let sessions =
        crate::node_support::manager(&world.idp, Arc::new(MemoryStore::new()), "matrix-pg", &dir)
            .await;
    let session = sign_in(&world.idp, &sessions, "alice")
        .await
        .expect("signed in");
    let token = session.access_token().await.expect("token");
    let mut on_0 = handshake(&urls[0], token.secret()).await.expect("node 0");
    let mut on_1 = handshake(&urls[1], token.secret()).await.expect("node 1");

    world.stop(StopMode::Fast);
    assert!(
        world
            .idp
            .control()
            .end_session(&newest_sid(&world.idp, "alice"))
    );
    assert_eq!(
        close_code(&mut on_0, PATIENCE).await,
        Some(4003),
        "the receiving node closes at once"
    );
    tokio::time::sleep(OUTAGE).await;
    assert_eq!(
        world.idp.control().deliveries()[0].status,
        Some(503),
        "the logout could not be recorded for the other node"
    );
    world.start_again();
    assert_eq!(
        close_code(&mut on_1, PATIENCE).await,
        Some(4003),
        "the other node closes once the redelivered logout is recorded"
    );
    // The node records the revocation (and its NOTIFY closes the socket on
    // the other node) before its 200 reaches the provider: wait for that.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let statuses: Vec<_> = world
            .idp
            .control()
            .deliveries()
            .iter()
            .map(|d| d.status)
            .collect();
        if statuses.last() == Some(&Some(200)) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the redelivery never got a 200: {statuses:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for url in &urls {
        assert_eq!(
            handshake(url, token.secret()).await.err(),
            Some(401),
            "{url} refuses the logged-out token"
        );
    }
    world.shutdown().await;
}
