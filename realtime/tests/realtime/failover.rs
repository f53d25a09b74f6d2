//! Several endpoints (the nodes of one service) over real sockets: a node
//! that refuses is skipped, a node going away (1001, 1012) is left at once
//! for the next, a fleet that is all down is retried on one backoff
//! schedule for the list, a short outage of refusals is outlasted by at
//! most the base delay, the start is spread over the list, the resume hook
//! runs on the node the client lands on, and a send/ack flow across moves
//! between nodes sharing one store loses and doubles nothing.
//!
//! (Over 500 lines: one file for failover, its scripted servers at the top;
//! liveness and pacing have files of their own.)

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use sessionkit_realtime::{
    Backoff, DEFAULT_REFUSED_PROBE_WINDOW, Incoming, RealtimeClient, ReconnectReason, Resume,
    State, Unacked,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, sleep, timeout};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::support::scripted::Scripted;
use crate::support::{Command, Rotating, WsServer, is_connected, lock, wait_for, wait_within};

const MS: Duration = Duration::from_millis(1);

/// A base of 50 ms and a factor of 1,000: a wait under the base is "at
/// once", and a second round of failures would wait up to 50 s.
fn steep() -> Backoff {
    Backoff::new(50 * MS, 1000.0, Duration::from_secs(3600))
}

/// A `ws://` URL on loopback where nothing listens (bound, then let go).
async fn dead_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    format!("ws://{addr}/ws")
}

/// The connected endpoint's index, once connected.
async fn connected_to(client: &RealtimeClient) -> usize {
    let mut state = client.state();
    wait_for(&mut state, is_connected).await;
    let endpoint = client.endpoint().expect("connected: an endpoint");
    assert_eq!(client.metrics().endpoint, Some(endpoint.index));
    endpoint.index
}

#[tokio::test]
async fn a_refused_endpoint_is_skipped_for_a_live_one() {
    let live = WsServer::start(&["tok-0"]).await;
    let dead = format!("{}?room=secret-room", dead_url().await);
    let dead_name = dead.split('?').next().expect("url").to_owned();
    let mut started_dead = 0;
    for seed in 0..6 {
        let (client, _incoming) = RealtimeClient::builder_multi([dead.clone(), live.url()])
            .backoff(steep())
            .start_seed(seed)
            .build(Rotating::new())
            .expect("client");
        let mut state = client.state();
        let first = wait_for(&mut state, |s| {
            matches!(s, State::Connected { .. } | State::Reconnecting { .. })
        })
        .await;
        if let State::Reconnecting {
            retry_in, reason, ..
        } = first
        {
            started_dead += 1;
            // A refusal is probed again within the base, and names the
            // endpoint without its query.
            assert!(retry_in <= 50 * MS, "{retry_in:?}");
            let ReconnectReason::Transport(why) = reason else {
                panic!("{reason:?}");
            };
            assert!(why.starts_with(&format!("{dead_name}: ")), "{why}");
            assert!(!why.contains("secret-room"), "{why}");
        }
        assert_eq!(connected_to(&client).await, 1);
        assert_eq!(client.endpoint().expect("endpoint").url, live.url());
        client.shutdown().await;
        assert_eq!(client.endpoint(), None, "not connected any more");
    }
    assert!(
        (1..6).contains(&started_dead),
        "seeds 0..6 start on both: {started_dead} on the dead one"
    );
    assert_eq!(live.accepted().len(), 6);
}

#[tokio::test]
async fn logs_name_the_endpoint_without_query_or_token() {
    let captured = crate::transport::Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer({
            let captured = captured.clone();
            move || captured.clone()
        })
        .finish();
    // Current-thread runtime: client and server run under this default.
    let _guard = tracing::subscriber::set_default(subscriber);
    tracing::callsite::rebuild_interest_cache();

    let live = WsServer::start(&["tok-0"]).await;
    live.expect_token_in(crate::support::TokenIn::Query("access_token".to_owned()));
    let dead = dead_url().await;
    let urls = [
        format!("{dead}?room=one"),
        format!("{}?room=two", live.url()),
    ];
    // Whatever the start, the dead one is tried once: it comes first in
    // one of the two orders, and the live one closes with 1001 once.
    let (client, _incoming) = RealtimeClient::builder_multi(urls)
        .backoff(steep())
        .token_transport(sessionkit_realtime::TokenTransport::query_parameter(
            "access_token",
        ))
        .build(Rotating::new())
        .expect("client");
    let mut state = client.state();
    connected_to(&client).await;
    live.command(Command::Close(1001, "server shutting down".to_owned()));
    wait_for(&mut state, |s| matches!(s, State::Reconnecting { .. })).await;
    wait_for(&mut state, is_connected).await;
    client.shutdown().await;

    let logs = captured.text();
    assert!(logs.contains(&format!("endpoint={dead}")), "{logs}");
    assert!(logs.contains(&format!("endpoint={}", live.url())), "{logs}");
    assert!(!logs.contains("tok-"), "a token in the logs:\n{logs}");
    assert!(!logs.contains("room="), "a query in the logs:\n{logs}");
    assert!(
        !logs.contains("access_token"),
        "a query in the logs:\n{logs}"
    );
}

#[tokio::test]
async fn a_server_going_away_is_left_at_once_for_the_next() {
    let servers = [
        WsServer::start(&["tok-0"]).await,
        WsServer::start(&["tok-0"]).await,
    ];
    let (client, _incoming) = RealtimeClient::builder_multi(servers.iter().map(WsServer::url))
        .backoff(steep())
        .build(Rotating::new())
        .expect("client");
    let mut state = client.state();
    let mut on = connected_to(&client).await;
    // 1001 (chat-server's "server shutting down"), then 1012 (restart),
    // then 1001 again: each time the next node, within the base, and the
    // schedule does not grow (a going-away is no failure).
    for (round, code) in [1001u16, 1012, 1001].into_iter().enumerate() {
        servers[on].command(Command::Close(code, "server shutting down".to_owned()));
        let away = wait_for(&mut state, |s| matches!(s, State::Reconnecting { .. })).await;
        let State::Reconnecting {
            retry_in, reason, ..
        } = away
        else {
            unreachable!()
        };
        assert_eq!(
            reason,
            ReconnectReason::ServerClosed {
                code,
                reason: "server shutting down".to_owned()
            }
        );
        assert!(retry_in <= 50 * MS, "{code}: {retry_in:?}");
        let next = connected_to(&client).await;
        assert_eq!(next, 1 - on, "round {round}: moved to the other node");
        on = next;
        assert_eq!(client.metrics().endpoint_moves, round as u64 + 1);
    }
    // An application close code (4000–4499) is the server's own word:
    // the client stays on its node.
    servers[on].command(Command::Close(4000, r#"{"retry_after_ms":0}"#.to_owned()));
    wait_for(&mut state, |s| matches!(s, State::Reconnecting { .. })).await;
    assert_eq!(connected_to(&client).await, on);
    assert_eq!(client.metrics().endpoint_moves, 3);
    client.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_fleet_all_down_is_retried_on_one_schedule_for_the_list() {
    let urls = [dead_url().await, dead_url().await, dead_url().await];
    let backoff = Backoff::default();
    let (client, _incoming) = RealtimeClient::builder_multi(urls.clone())
        .backoff(backoff)
        // Refusals back off like any failure (no probing window).
        .refused_probe_window(Duration::ZERO)
        .build(Rotating::new())
        .expect("client");
    let mut state = client.state();
    let mut tried = Vec::new();
    let mut waits = Vec::new();
    let mut previous: Option<(Instant, Duration)> = None;
    for attempt in 1..=18u32 {
        let now = wait_within(
            Duration::from_secs(3600),
            &mut state,
            |s| matches!(s, State::Reconnecting { attempt: a, .. } if *a == attempt),
        )
        .await;
        let State::Reconnecting {
            retry_in, reason, ..
        } = now
        else {
            unreachable!()
        };
        let ReconnectReason::Transport(why) = reason else {
            panic!("{reason:?}");
        };
        let endpoint = urls
            .iter()
            .position(|u| why.starts_with(&format!("{u}: ")))
            .unwrap_or_else(|| panic!("{why} names no endpoint"));
        tried.push(endpoint);
        // One schedule for the list: the ceiling grows once per round of three.
        let ceiling = backoff.ceiling((attempt - 1) / 3);
        assert!(
            retry_in <= ceiling,
            "attempt {attempt}: {retry_in:?} > {ceiling:?}"
        );
        waits.push(retry_in);
        if let Some((at, waited)) = previous {
            let elapsed = at.elapsed();
            assert!(
                elapsed >= waited && elapsed <= waited + 2 * MS,
                "{elapsed:?} vs {waited:?}"
            );
        }
        previous = Some((Instant::now(), retry_in));
    }
    // Round the list: every three tries cover the three endpoints, in the
    // client's own order, again and again.
    for window in tried.windows(3) {
        let mut sorted = window.to_vec();
        sorted.sort_unstable();
        assert_eq!(sorted, [0, 1, 2], "{tried:?}");
    }
    for k in 3..tried.len() {
        assert_eq!(tried[k], tried[k - 3], "{tried:?}");
    }
    // The schedule grew: rounds 5 and 6 (ceilings 4 s and 8 s) are not all
    // under the third round's ceiling (1 s) unless the jitter drew six
    // times from its bottom eighth to quarter (p < 1e-4).
    assert!(
        waits[12..].iter().any(|w| *w > backoff.ceiling(2)),
        "{waits:?}"
    );
    // Full jitter: waits spread from near zero.
    assert!(waits.iter().any(|w| *w < backoff.ceiling((17) / 3) / 2));
    let metrics = client.metrics();
    assert_eq!(metrics.endpoint, None);
    assert!(metrics.endpoint_moves >= 17, "{metrics:?}");
    client.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_ten_second_outage_of_refusals_is_outlasted_by_at_most_the_base() {
    let mut server = WsServer::start(&["tok-0"]).await;
    let backoff = Backoff::default();
    let (client, _incoming) = RealtimeClient::builder(server.url())
        .backoff(backoff)
        .build(Rotating::new())
        .expect("client");
    let mut state = client.state();
    wait_for(&mut state, is_connected).await;

    // The server goes: its connection drops, then every SYN is refused.
    server.stop().await;
    wait_for(&mut state, |s| matches!(s, State::Reconnecting { .. })).await;
    let before = client.metrics().failed_attempts;
    sleep(Duration::from_secs(10)).await;
    server.restart().await;
    let back = Instant::now();
    wait_within(Duration::from_secs(60), &mut state, is_connected).await;
    let late = back.elapsed();
    assert!(late <= backoff.base, "back {late:?} after the server");
    // The cost: one probe every 125–250 ms of the outage (40 to 80 in 10 s).
    let probes = client.metrics().failed_attempts - before;
    assert!((40..=81).contains(&probes), "{probes} probes");
    assert!(DEFAULT_REFUSED_PROBE_WINDOW >= Duration::from_secs(10));
    client.shutdown().await;
}

#[tokio::test]
async fn seeds_spread_the_start_over_the_endpoints() {
    let servers = [
        WsServer::start(&["tok-0"]).await,
        WsServer::start(&["tok-0"]).await,
        WsServer::start(&["tok-0"]).await,
    ];
    let urls: Vec<String> = servers.iter().map(WsServer::url).collect();
    let mut counts = [0u32; 3];
    for seed in 0..30 {
        let (client, _incoming) = RealtimeClient::builder_multi(urls.clone())
            .start_seed(seed)
            .build(Rotating::new())
            .expect("client");
        let first = connected_to(&client).await;
        counts[first] += 1;
        client.shutdown().await;
        // The same seed, the same start.
        if seed == 7 {
            let (again, _incoming) = RealtimeClient::builder_multi(urls.clone())
                .start_seed(seed)
                .build(Rotating::new())
                .expect("client");
            assert_eq!(connected_to(&again).await, first);
            again.shutdown().await;
        }
    }
    assert!(counts.iter().all(|c| *c >= 5), "{counts:?} of 30");
    let accepted: usize = servers.iter().map(|s| s.accepted().len()).sum();
    assert_eq!(accepted, 31);
}

#[tokio::test]
async fn the_resume_hook_runs_on_the_node_the_client_lands_on() {
    let mut nodes = [Scripted::start().await, Scripted::start().await];
    let urls: Vec<String> = nodes.iter().map(Scripted::url).collect();
    // The app's cursor: the last sequence number it saw.
    let last_seq = Arc::new(AtomicU64::new(0));
    let landed = Arc::new(Mutex::new(Vec::new()));
    let (client, mut incoming) = RealtimeClient::builder_multi(urls)
        .backoff(steep())
        .on_connect({
            let last_seq = last_seq.clone();
            let landed = landed.clone();
            move |resume: Resume| {
                lock(&landed).push(resume.endpoint().index);
                let after = last_seq.load(Ordering::SeqCst);
                resume.send(format!(r#"{{"resume_after":{after}}}"#));
                std::future::ready(())
            }
        })
        .build(Rotating::new())
        .expect("client");
    let reader = {
        let last_seq = last_seq.clone();
        tokio::spawn(async move {
            while let Some(Incoming::Text(text)) = incoming.recv().await {
                let value: serde_json::Value = serde_json::from_str(&text).expect("json");
                last_seq.store(value["seq"].as_u64().expect("seq"), Ordering::SeqCst);
            }
        })
    };
    // The first node is the one the random start picked.
    let (first, tcp) = {
        let [a, b] = &mut nodes;
        tokio::select! {
            tcp = a.next_tcp() => (0, tcp),
            tcp = b.next_tcp() => (1, tcp),
        }
    };
    let mut conn = crate::support::scripted::accept(tcp)
        .await
        .expect("handshake");
    assert_eq!(conn.recv_text().await, r#"{"resume_after":0}"#);
    for seq in 1..=5 {
        conn.send_text(&format!(r#"{{"seq":{seq}}}"#)).await;
    }
    timeout(Duration::from_secs(10), async {
        while last_seq.load(Ordering::SeqCst) < 5 {
            sleep(MS).await;
        }
    })
    .await
    .expect("the app saw 5");
    conn.close(1001, "server shutting down").await;

    // The other node: the hook resumes after 5 there.
    let mut moved = nodes[1 - first].next().await;
    assert_eq!(moved.recv_text().await, r#"{"resume_after":5}"#);
    assert_eq!(*lock(&landed), [first, 1 - first]);
    assert_eq!(client.endpoint().map(|e| e.index), Some(1 - first));
    client.shutdown().await;
    reader.await.expect("reader");
}

/// Nodes sharing one store: a message is stored the first time its id is
/// seen (on any node) and every copy is acknowledged.
#[derive(Default)]
struct Store {
    seen: HashSet<u64>,
    stored: Vec<u64>,
    copies: usize,
    /// Connections per node.
    connections: [usize; 3],
    moves_forced: usize,
}

const MESSAGES: u64 = 300;
/// Every this many stored messages, the node in use goes away, alternately
/// with a close 1001, a reset, or a FIN without a close frame.
const EVERY: usize = 23;

async fn node(index: usize, listener: TcpListener, store: Arc<Mutex<Store>>) {
    while let Ok((tcp, _)) = listener.accept().await {
        tokio::spawn(node_connection(index, tcp, store.clone()));
    }
}

async fn node_connection(index: usize, tcp: TcpStream, store: Arc<Mutex<Store>>) {
    let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
        return;
    };
    lock(&store).connections[index] += 1;
    while let Some(Ok(message)) = ws.next().await {
        let Message::Text(text) = message else {
            continue;
        };
        let value: serde_json::Value = serde_json::from_str(&text).expect("json");
        let id = value["id"].as_u64().expect("id");
        let leave = {
            let mut store = lock(&store);
            store.copies += 1;
            let fresh = store.seen.insert(id);
            if fresh {
                store.stored.push(id);
            }
            let due = fresh && store.stored.len().is_multiple_of(EVERY);
            if due {
                store.moves_forced += 1;
            }
            due.then_some(store.moves_forced % 3)
        };
        match leave {
            // Stored, not acknowledged: the client re-sends it to the next node.
            Some(0) => {
                let frame = CloseFrame {
                    code: CloseCode::Away,
                    reason: "server shutting down".into(),
                };
                let _ = ws.send(Message::Close(Some(frame))).await;
                return;
            }
            Some(1) => {
                let _ = ws.get_ref().set_zero_linger();
                return;
            }
            Some(_) => {
                let _ = ws.send(Message::text(format!(r#"{{"ack":{id}}}"#))).await;
                return;
            }
            None => {
                if ws
                    .send(Message::text(format!(r#"{{"ack":{id}}}"#)))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}

#[tokio::test]
async fn a_send_and_ack_flow_across_moves_between_nodes_loses_and_doubles_nothing() {
    let store = Arc::new(Mutex::new(Store::default()));
    let mut urls = Vec::new();
    let mut tasks = Vec::new();
    for index in 0..3 {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        urls.push(format!("ws://{}/ws", listener.local_addr().expect("addr")));
        tasks.push(tokio::spawn(node(index, listener, store.clone())));
    }
    let unacked = Unacked::new();
    let (client, mut incoming) = RealtimeClient::builder_multi(urls)
        .backoff(Backoff::new(MS, 2.0, 20 * MS))
        .outgoing_limits(16, 64 << 10)
        .on_connect({
            let unacked = unacked.clone();
            move |resume: Resume| {
                unacked.resend(&resume);
                std::future::ready(())
            }
        })
        .build(Rotating::new())
        .expect("client");
    let acker = {
        let unacked = unacked.clone();
        tokio::spawn(async move {
            while let Some(Incoming::Text(text)) = incoming.recv().await {
                let value: serde_json::Value = serde_json::from_str(&text).expect("json");
                unacked.ack(&value["ack"].as_u64().expect("ack").to_string());
            }
        })
    };
    let sent = timeout(Duration::from_secs(30), async {
        for id in 0..MESSAGES {
            let text = format!(r#"{{"id":{id},"body":"message {id}"}}"#);
            unacked
                .send(&client, id.to_string(), text)
                .await
                .expect("send");
        }
        while lock(&store).stored.len() < MESSAGES as usize || !unacked.is_empty() {
            sleep(5 * MS).await;
        }
    })
    .await;
    {
        let store = lock(&store);
        assert!(
            sent.is_ok(),
            "timed out: {} stored, {} unacknowledged",
            store.stored.len(),
            unacked.len()
        );
        // Every message once, in the order sent, across the nodes.
        assert_eq!(store.stored, (0..MESSAGES).collect::<Vec<_>>());
        assert!(
            store.copies > store.stored.len(),
            "re-sent copies were dropped"
        );
        let forced = store.moves_forced;
        assert_eq!(forced, MESSAGES as usize / EVERY);
        assert!(
            store.connections.iter().all(|c| *c >= 2),
            "every node served: {:?}",
            store.connections
        );
        assert!(client.metrics().endpoint_moves >= forced as u64);
    }
    client.shutdown().await;
    acker.await.expect("acker");
    for task in tasks {
        task.abort();
    }
}
