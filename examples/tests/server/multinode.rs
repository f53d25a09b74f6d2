//! Several chat-server nodes on one PostgreSQL database (a database of its
//! own per test, on the cluster `SESSIONKIT_PG_URL` names; skipped without
//! one unless `SESSIONKIT_REQUIRE_POSTGRES` is set): fan-out across nodes
//! in order and once, gap-free sequences under concurrent writers on
//! different nodes, resuming on another node, back-channel logout applied
//! on every node, recovery when the database connections are cut, and the
//! nodes evening out their clients. (The last test, a node whose database
//! cannot be reached, needs no cluster.)
//!
//! (Over 500 lines: one scenario per test, each a few nodes, clients and
//! their checks against the table; the helpers at the top serve them all.)

use std::collections::{BTreeMap, HashMap};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use sessionkit_examples::protocol::{CLOSE_SIGNED_OUT, ChatMessage, ServerFrame};
use sessionkit_examples::server::{ChatServer, Database, Rebalance, ServerConfig, UserLimits};
use sessionkit_mock_idp::{MockIdp, User};
use sessionkit_tests::postgres::TestDatabase;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::Command;

use crate::support::{Client, Event, assert_unauthorized, idp, open, within};

/// A real access token for `user`, added to the provider if it is new.
async fn token(idp: &MockIdp, user: &str) -> String {
    idp.control()
        .put_user(User::simple(user))
        .expect("add the user");
    crate::support::token(idp, user).await
}

/// A node on `db`, with limits loose enough for load.
async fn node(idp: &MockIdp, db: &TestDatabase) -> ChatServer {
    let mut config = ServerConfig::new(idp.issuer());
    config.db = Database::from_arg(db.url());
    config.users = UserLimits {
        frames_per_second: 100_000,
        frame_burst: 100_000,
        ..UserLimits::default()
    };
    ChatServer::start(config).await.expect("node starts")
}

async fn nodes(idp: &MockIdp, db: &TestDatabase, n: usize) -> Vec<ChatServer> {
    let mut nodes = Vec::new();
    for _ in 0..n {
        nodes.push(node(idp, db).await);
    }
    nodes
}

/// Reads `room`'s live messages until `last`; asserts 1..=last, in order,
/// each once, and nothing after.
async fn sees_in_order(client: &mut Client, room: &str, first: u64, last: u64) -> Vec<ChatMessage> {
    let mut got = Vec::new();
    while got.len() < usize::try_from(last + 1 - first).expect("usize") {
        match client.event().await {
            Event::Frame(ServerFrame::Message(m)) if m.room == room => got.push(m),
            Event::Frame(_) => {}
            other => panic!("closed while reading {room}: {other:?}"),
        }
    }
    let seqs: Vec<u64> = got.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, (first..=last).collect::<Vec<_>>(), "in order, once");
    match client.event_within(Duration::from_millis(200)).await {
        Some(Event::Frame(ServerFrame::Message(m))) if m.room == room => {
            panic!("a message after the last: {m:?}")
        }
        _ => {}
    }
    got
}

/// The table's `(room, seq)` pairs and `(sender, id)` pairs, checked for
/// gaps and duplicates; returns the messages per room.
async fn check_table(db: &TestDatabase) -> BTreeMap<String, u64> {
    let client = db.client().await;
    let rows = client
        .query(
            "SELECT room, seq, sender_sub, client_id FROM messages ORDER BY room, seq",
            &[],
        )
        .await
        .expect("read messages");
    let mut per_room: BTreeMap<String, u64> = BTreeMap::new();
    let mut ids = std::collections::HashSet::new();
    for row in &rows {
        let room: String = row.get(0);
        let seq: i64 = row.get(1);
        let expected = per_room.entry(room.clone()).or_insert(0);
        *expected += 1;
        assert_eq!(
            u64::try_from(seq).expect("seq"),
            *expected,
            "{room}: no gap, no duplicate"
        );
        let id: (String, String) = (row.get(2), row.get(3));
        assert!(ids.insert(id.clone()), "{id:?} stored once");
    }
    let last: Vec<(String, i64)> = client
        .query("SELECT room, last_seq FROM rooms ORDER BY room", &[])
        .await
        .expect("read rooms")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let counted: Vec<(String, i64)> = per_room
        .iter()
        .map(|(r, n)| (r.clone(), i64::try_from(*n).expect("i64")))
        .collect();
    assert_eq!(last, counted, "rooms.last_seq is the last message");
    per_room
}

#[tokio::test]
async fn a_message_sent_on_one_node_reaches_every_node_in_order_once() {
    let Some(db) = TestDatabase::create("fanout").await else {
        return;
    };
    let idp = idp().await;
    let [a, b, c]: [ChatServer; 3] = nodes(&idp, &db, 3).await.try_into().expect("3");
    let mut sender = Client::connect(&a, &token(&idp, "alice").await).await;
    let mut on_a = Client::connect(&a, &token(&idp, "bob").await).await;
    let mut on_b = Client::connect(&b, &token(&idp, "carol").await).await;
    let mut on_c = Client::connect(&c, &token(&idp, "dave").await).await;
    for client in [&mut on_a, &mut on_b, &mut on_c] {
        assert_eq!(client.join("general", 0).await, (vec![], 0));
    }
    for i in 1..=30 {
        sender
            .post_nowait("general", &format!("m{i}"), &format!("text {i}"))
            .await;
    }
    for i in 1..=30 {
        assert_eq!(sender.ack(&format!("m{i}")).await, i, "acks in order");
    }
    for client in [&mut on_a, &mut on_b, &mut on_c] {
        let got = sees_in_order(client, "general", 1, 30).await;
        assert_eq!(got[4].text, "text 5");
        assert_eq!(got[4].user, "alice");
    }
    // The other way round: sent on C, seen on A.
    let mut from_c = Client::connect(&c, &token(&idp, "erin").await).await;
    assert_eq!(from_c.post("general", "e1", "from c").await, 31);
    assert_eq!(on_a.message("general", 31).await.text, "from c");
    // A message too big for a NOTIFY payload is read from the table.
    let big = "\n".repeat(4_000) + "end";
    assert_eq!(from_c.post("general", "e2", &big).await, 32);
    for client in [&mut on_a, &mut on_b] {
        assert_eq!(client.message("general", 32).await.text, big);
    }
    check_table(&db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_senders_on_three_nodes_number_rooms_without_gaps_or_duplicates() {
    const PER_NODE: usize = 5;
    const EACH: usize = 200;
    let Some(db) = TestDatabase::create("concurrent").await else {
        return;
    };
    let idp = idp().await;
    let servers = nodes(&idp, &db, 3).await;
    let total = 3 * PER_NODE * EACH;
    // Every node's watcher reads while the senders send. One that falls
    // behind is closed with 4008 and does what a client does: reconnects
    // and resumes after the last number it saw.
    let mut watchers = Vec::new();
    for (n, server) in servers.iter().enumerate() {
        let (url, watcher) = (server.ws_url(), token(&idp, &format!("watch{n}")).await);
        let connect = move |seen: BTreeMap<String, Vec<u64>>| {
            let (url, watcher) = (url.clone(), watcher.clone());
            async move {
                let ws = open(&url, Some(&watcher)).await.expect("handshake");
                let mut w = Client::from_ws(ws).await;
                for room in ["one", "two"] {
                    let after = seen.get(room).and_then(|s| s.last()).copied().unwrap_or(0);
                    w.send(&sessionkit_examples::protocol::ClientFrame::Join {
                        room: room.into(),
                        after,
                    })
                    .await;
                }
                w
            }
        };
        let mut w = connect(BTreeMap::new()).await;
        watchers.push(tokio::spawn(async move {
            let mut seen: BTreeMap<String, Vec<u64>> = BTreeMap::new();
            let mut resumed = 0;
            while seen.values().map(Vec::len).sum::<usize>() < total {
                match w.event().await {
                    Event::Frame(ServerFrame::Message(m)) => {
                        seen.entry(m.room).or_default().push(m.seq);
                    }
                    Event::Frame(_) => {}
                    Event::Closed(4008, _) if resumed < 20 => {
                        resumed += 1;
                        w = connect(seen.clone()).await;
                    }
                    other => panic!("watcher closed: {other:?}"),
                }
            }
            seen
        }));
    }
    let mut senders = Vec::new();
    for (n, server) in servers.iter().enumerate() {
        for s in 0..PER_NODE {
            let user = format!("u{n}x{s}");
            let client = Client::connect(server, &token(&idp, &user).await).await;
            senders.push((user, client));
        }
    }
    let tasks = senders.into_iter().map(|(user, mut client)| {
        tokio::spawn(async move {
            for i in 0..EACH {
                let room = if i % 2 == 0 { "one" } else { "two" };
                client.post_nowait(room, &format!("{user}-{i}"), "hi").await;
            }
            let mut acks = Vec::new();
            for i in 0..EACH {
                acks.push(client.ack(&format!("{user}-{i}")).await);
            }
            (user, acks)
        })
    });
    let mut acked: HashMap<String, Vec<u64>> = HashMap::new();
    for task in futures_util::future::join_all(tasks).await {
        let (user, acks) = task.expect("sender");
        acked.insert(user, acks);
    }
    assert_eq!(acked.values().map(Vec::len).sum::<usize>(), total);
    let per_room = check_table(&db).await;
    assert_eq!(per_room.values().sum::<u64>(), total as u64);
    // A sender's messages to one room got increasing numbers.
    for acks in acked.values() {
        for parity in 0..2 {
            let mine: Vec<u64> = acks.iter().skip(parity).step_by(2).copied().collect();
            assert!(mine.windows(2).all(|w| w[0] < w[1]), "{mine:?}");
        }
    }
    // Every node's watcher saw both rooms whole, in order, once.
    for w in watchers {
        let seen = w.await.expect("watcher");
        for (room, seqs) in &seen {
            assert_eq!(
                seqs,
                &(1..=per_room[room]).collect::<Vec<_>>(),
                "{room}: in order, no gap, no duplicate"
            );
        }
    }
}

#[tokio::test]
async fn a_client_resumes_on_another_node_and_resends_are_idempotent_across_nodes() {
    let Some(db) = TestDatabase::create("resume").await else {
        return;
    };
    let idp = idp().await;
    let [a, b]: [ChatServer; 2] = nodes(&idp, &db, 2).await.try_into().expect("2");
    let alice = token(&idp, "alice").await;
    let mut on_a = Client::connect(&a, &alice).await;
    for i in 1..=5 {
        assert_eq!(on_a.post("general", &format!("m{i}"), "hi").await, i);
    }
    drop(on_a);
    // Alice moves to B, having seen up to 2: she gets 3, 4, 5.
    let mut on_b = Client::connect(&b, &alice).await;
    let (history, last) = on_b.join("general", 2).await;
    assert_eq!(history.iter().map(|m| m.seq).collect::<Vec<_>>(), [3, 4, 5]);
    assert_eq!(last, 5);
    // A resend of an acknowledged message on another node is acked with
    // its number, stored and delivered once.
    assert_eq!(on_b.post("general", "m4", "hi").await, 4);
    assert_eq!(on_b.post("general", "m6", "new").await, 6);
    let m = on_b.message("general", 6).await;
    assert_eq!(m.text, "new");
    if let Some(Event::Frame(ServerFrame::Message(m))) =
        on_b.event_within(Duration::from_millis(300)).await
    {
        panic!("delivered again: {m:?}");
    }
    assert_eq!(check_table(&db).await["general"], 6);
}

#[tokio::test]
async fn a_backchannel_logout_on_one_node_closes_the_session_on_every_node() {
    let Some(db) = TestDatabase::create("logout").await else {
        return;
    };
    let idp = idp().await;
    let [a, b]: [ChatServer; 2] = nodes(&idp, &db, 2).await.try_into().expect("2");
    // The provider knows node A only.
    idp.control()
        .set_backchannel_logout_uri("chat-example", Some(&a.backchannel_logout_url()))
        .expect("register the logout URI");
    let alice = token(&idp, "alice").await;
    let mut alice_on_b = Client::connect(&b, &alice).await;
    let mut bob_on_b = Client::connect(&b, &token(&idp, "bob").await).await;
    alice_on_b.assert_alive().await;

    assert_eq!(idp.control().revoke_user_sessions("alice"), 1);
    let (code, reason) = alice_on_b.closed().await;
    assert_eq!((code, reason.as_str()), (CLOSE_SIGNED_OUT, "signed out"));
    bob_on_b.assert_alive().await;
    // B refuses the token from now on, and so does a node started later.
    assert_unauthorized(&b.ws_url(), Some(&alice), "logged out via A").await;
    let c = node(&idp, &db).await;
    assert_unauthorized(&c.ws_url(), Some(&alice), "a node started after").await;
    // A new sign-in is fine everywhere.
    let fresh = token(&idp, "alice").await;
    for server in [&a, &b, &c] {
        Client::connect(server, &fresh).await.assert_alive().await;
    }
}

#[tokio::test]
async fn nodes_recover_when_the_database_goes_away_and_lose_nothing_acked() {
    let Some(db) = TestDatabase::create("recover").await else {
        return;
    };
    let idp = idp().await;
    let [a, b]: [ChatServer; 2] = nodes(&idp, &db, 2).await.try_into().expect("2");
    let mut watcher = Client::connect(&b, &token(&idp, "watcher").await).await;
    watcher.join("general", 0).await;
    let mut sender = Client::connect(&a, &token(&idp, "alice").await).await;
    assert_eq!(sender.post("general", "before", "hi").await, 1);
    assert_eq!(watcher.message("general", 1).await.id, "before");

    // PostgreSQL "restarts": every connection of both nodes is cut, and
    // none is let in for a while.
    db.allow_connections(false).await;
    assert!(
        db.terminate_connections().await >= 2,
        "the nodes were connected"
    );
    // Sends while it is down wait (the writer retries), then succeed once
    // it is back, or fail with a typed error frame to be sent again.
    for i in 0..10 {
        sender
            .post_nowait("general", &format!("d{i}"), "during")
            .await;
    }
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    db.allow_connections(true).await;
    let mut acked = BTreeMap::new();
    for i in 0..10 {
        let id = format!("d{i}");
        let outcome = sender
            .wait_for(|f| match f {
                ServerFrame::Ack { id: got, seq, .. } if *got == id => Some(Ok(*seq)),
                ServerFrame::Error {
                    id: Some(got),
                    code,
                    ..
                } if *got == id => Some(Err(code.clone())),
                _ => None,
            })
            .await;
        match outcome {
            Ok(seq) => {
                acked.insert(id, seq);
            }
            Err(code) => {
                assert_eq!(code, "storage");
                // Sent again, after the database is back.
                acked.insert(id.clone(), sender.post("general", &id, "during").await);
            }
        }
    }
    // The socket survived; the node serves again.
    assert_eq!(sender.post("general", "after", "hi").await, 12);
    // B's LISTEN connection was cut too: it listens again and its watcher
    // gets everything, in order, once.
    let got = sees_in_order(&mut watcher, "general", 2, 12).await;
    for (id, seq) in &acked {
        assert_eq!(&got[usize::try_from(*seq - 2).expect("index")].id, id);
    }
    assert_eq!(check_table(&db).await["general"], 12);
    // A join on B now reads the room from the database again.
    let mut late = Client::connect(&b, &token(&idp, "late").await).await;
    assert_eq!(late.join("general", 10).await.1, 12);
}

#[tokio::test]
async fn a_crowded_node_moves_clients_that_know_other_nodes_and_they_lose_nothing() {
    use sessionkit_realtime::{Backoff, RealtimeClient, StaticToken, TokenSource};

    use crate::room_chat::{Chat, connected};

    let Some(db) = TestDatabase::create("rebalance").await else {
        return;
    };
    let idp = idp().await;
    // Three nodes' sockets, bound now; only A serves at first. A client
    // that dials B or C meanwhile gets no answer and moves on, so every
    // client lands on A.
    let mut listeners = Vec::new();
    for _ in 0..3 {
        listeners.push(
            tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind"),
        );
    }
    let urls: Vec<String> = listeners
        .iter()
        .map(|l| format!("ws://{}/ws", l.local_addr().expect("addr")))
        .collect();
    let config = || {
        let mut config = ServerConfig::new(idp.issuer());
        config.db = Database::from_arg(db.url());
        config.users = UserLimits {
            connections: 100,
            frames_per_second: 100_000,
            frame_burst: 100_000,
            ..UserLimits::default()
        };
        let mut rebalance = Rebalance::default();
        rebalance.interval = Duration::from_millis(200);
        rebalance.tolerance = 1;
        config.rebalance = rebalance;
        config
    };
    let mut listeners = listeners.into_iter();
    let mut next_listener = || listeners.next().expect("a listener");
    let a = ChatServer::start_on(next_listener(), config())
        .await
        .expect("A starts");
    let source: Arc<dyn TokenSource> = Arc::new(StaticToken::new(token(&idp, "alice").await));
    let quick = Backoff::new(Duration::from_millis(50), 2.0, Duration::from_millis(400));
    // 24 clients of the three nodes, and 3 of A alone (one of them sends).
    let mut movable = Vec::new();
    for _ in 0..24 {
        let builder = RealtimeClient::builder_multi(urls.clone())
            .connect_timeout(Duration::from_millis(300))
            .backoff(quick);
        movable.push(Chat::start(builder, "lobby", source.clone()));
    }
    let mut fixed = Vec::new();
    for _ in 0..3 {
        let builder = RealtimeClient::builder(&urls[0]).backoff(quick);
        fixed.push(Chat::start(builder, "lobby", source.clone()));
    }
    for chat in movable.iter().chain(&fixed) {
        chat.state(connected).await;
        chat.joined(1).await;
    }
    assert_eq!(a.connections(), 27, "every client on A");

    // B and C start while A's sender sends: A sheds down to its share.
    let sender = &fixed[0];
    let b = ChatServer::start_on(next_listener(), config())
        .await
        .expect("B starts");
    let c = ChatServer::start_on(next_listener(), config())
        .await
        .expect("C starts");
    let nodes = [&a, &b, &c];
    let counts = || nodes.map(ChatServer::connections);
    let mut sent = 0;
    let started = tokio::time::Instant::now();
    let deadline = started + Duration::from_secs(20);
    loop {
        sent += 1;
        sender.send(&format!("m{sent}")).await;
        tokio::time::sleep(Duration::from_millis(25)).await;
        let now = counts();
        // The share is 9 each; one over it is tolerated (so no node holds
        // fewer than 7).
        if now.iter().sum::<usize>() == 27 && now.iter().all(|n| *n <= 10) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not even after 20 s: {now:?}"
        );
    }
    eprintln!(
        "even after {:?}: {:?}, {sent} messages sent meanwhile",
        started.elapsed(),
        counts()
    );
    sender.all_acked().await;

    // Every client has every message, in order and once, wherever it went.
    for (i, chat) in movable.iter_mut().chain(fixed.iter_mut()).enumerate() {
        let mut seqs = Vec::new();
        while seqs.len() < sent {
            seqs.push(chat.next().await.1.seq);
        }
        assert_eq!(
            seqs,
            (1..=u64::try_from(sent).expect("u64")).collect::<Vec<_>>(),
            "client {i}"
        );
    }
    // Nothing twice: no client gets anything more (one short wait for all).
    tokio::time::sleep(Duration::from_millis(200)).await;
    for (i, chat) in movable.iter_mut().chain(fixed.iter_mut()).enumerate() {
        assert!(
            chat.messages.try_recv().is_err(),
            "client {i}: nothing twice"
        );
    }
    // Each connected once before B and C started (a dial to a silent node
    // is a failed attempt, not a connection): a second connection is a move.
    let moved = movable
        .iter()
        .filter(|chat| chat.client.metrics().connects > 1)
        .count();
    assert!(moved >= 16, "{moved} of 24 moved; counts {:?}", counts());
    for chat in &fixed {
        assert_eq!(
            chat.client.metrics().connects,
            1,
            "a client of one URL is never asked to move"
        );
    }
    for chat in movable.into_iter().chain(fixed) {
        chat.client.shutdown().await;
    }
}

#[tokio::test]
async fn the_binary_serves_from_postgres() {
    let Some(db) = TestDatabase::create("binary").await else {
        return;
    };
    let idp = idp().await;
    let mut child = Command::new(env!("CARGO_BIN_EXE_chat-server"))
        .args([
            "--bind",
            "127.0.0.1:0",
            "--issuer",
            idp.issuer(),
            "--db",
            db.url(),
        ])
        .args(["--log", "warn"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("chat-server starts");
    let mut line = String::new();
    within(
        "the listening line",
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line),
    )
    .await
    .expect("read stdout");
    let url = line
        .trim_end()
        .strip_prefix("chat-server listening on ")
        .expect("listening line")
        .to_owned();
    let in_process = node(&idp, &db).await;
    let mut watcher = Client::connect(&in_process, &token(&idp, "bob").await).await;
    watcher.join("general", 0).await;
    let ws = open(&url, Some(&token(&idp, "alice").await))
        .await
        .expect("handshake");
    let mut alice = Client::from_ws(ws).await;
    assert_eq!(alice.post("general", "a", "via the binary").await, 1);
    assert_eq!(watcher.message("general", 1).await.text, "via the binary");
    child.kill().await.expect("kill");
}

#[tokio::test]
async fn a_node_whose_database_is_unreachable_does_not_start_and_says_why() {
    // No PostgreSQL needed: nothing listens on port 1.
    let mut config = ServerConfig::new("http://127.0.0.1:9");
    config.db = Database::from_arg("postgres://chat:secret@127.0.0.1:1/chat");
    let err = ChatServer::start(config)
        .await
        .expect_err("no database, no node");
    let shown = err.to_string();
    assert!(
        matches!(
            err,
            sessionkit_examples::server::ServerError::Postgres { .. }
        ),
        "{err:?}"
    );
    assert!(
        shown.starts_with("database postgres://chat:***@127.0.0.1:1/chat: "),
        "{shown}"
    );
    assert!(
        !format!("{err:?}").contains("secret"),
        "no password in {err:?}"
    );
}
