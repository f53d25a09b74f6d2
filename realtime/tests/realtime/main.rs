//! The realtime client against a real WebSocket server on 127.0.0.1.
//!
//! (Over 500 lines: the client's core behaviours against one real server;
//! each newer concern — DPoP, failover, liveness, logs — has its own module.)

mod dpop;
mod failover;
mod inbox;
mod liveness;
mod logs;
mod refresh;
mod resume;
#[cfg(feature = "sessionkit")]
mod session;
mod stale;
mod support;
mod tls;
mod transport;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use sessionkit_realtime::{
    Backoff, CloseReason, Error, Incoming, RealtimeClient, ReconnectReason, State, TokenSource,
    WhenFull,
};
use support::{Command, Rotating, WsServer, is_connected, wait_for, wait_within};
use tokio::time::Instant;

const MS: Duration = Duration::from_millis(1);

/// Fast retries for tests over real sockets.
fn fast() -> Backoff {
    Backoff::new(10 * MS, 2.0, 100 * MS)
}

/// Retries so slow that a reconnect within a test means "at once".
fn glacial() -> Backoff {
    Backoff::new(Duration::from_secs(3600), 2.0, Duration::from_secs(3600))
}

fn start(
    url: &str,
    backoff: Backoff,
    source: Arc<dyn TokenSource>,
) -> (RealtimeClient, tokio::sync::mpsc::Receiver<Incoming>) {
    RealtimeClient::builder(url)
        .backoff(backoff)
        .build(source)
        .expect("client")
}

#[tokio::test]
async fn connects_with_the_bearer_header_and_exchanges_messages() {
    let server = WsServer::start(&["tok-0"]).await;
    let source = Rotating::new();
    let (client, mut incoming) = start(&server.url(), fast(), source.clone());
    let mut state = client.state();
    assert_eq!(
        wait_for(&mut state, is_connected).await,
        State::Connected { generation: 1 }
    );
    assert_eq!(server.accepted(), ["tok-0"]);
    client.send("hello").await.expect("send");
    assert_eq!(
        incoming.recv().await,
        Some(Incoming::Text("hello".to_owned()))
    );
    assert_eq!(server.received(), ["hello"]);
    assert_eq!(source.refreshes(), 0);
    client.shutdown().await;
}

#[tokio::test]
async fn server_restart_reconnects_with_a_new_token() {
    let mut server = WsServer::start(&["tok-0"]).await;
    let source = Rotating::new();
    let (client, _incoming) = start(&server.url(), fast(), source.clone());
    let mut state = client.state();
    wait_for(&mut state, is_connected).await;

    server.stop().await;
    wait_for(&mut state, |s| matches!(s, State::Reconnecting { .. })).await;
    // While the server is away the old token expires; only the new one works.
    source.rotate();
    server.allow(&["tok-1"]);
    server.restart().await;

    let connected = wait_for(&mut state, is_connected).await;
    assert!(matches!(connected, State::Connected { generation } if generation >= 2));
    assert_eq!(server.accepted(), ["tok-0", "tok-1"]);
    assert_eq!(source.refreshes(), 0);
    client.shutdown().await;
}

#[tokio::test]
async fn close_4001_refreshes_once_and_reconnects_at_once() {
    let server = WsServer::start(&["tok-0", "tok-1"]).await;
    let source = Rotating::new();
    let (client, _incoming) = start(&server.url(), glacial(), source.clone());
    let mut state = client.state();
    wait_for(&mut state, is_connected).await;

    server.command(Command::Close(4001, "token expired".to_owned()));
    let reconnected = wait_for(&mut state, |s| {
        assert!(
            !matches!(s, State::Reconnecting { .. }),
            "backed off: {s:?}"
        );
        matches!(s, State::Connected { generation: 2 })
    })
    .await;
    assert_eq!(reconnected, State::Connected { generation: 2 });
    assert_eq!(source.refreshes(), 1);
    assert_eq!(server.accepted(), ["tok-0", "tok-1"]);
    let metrics = client.metrics();
    assert_eq!(
        (metrics.connects, metrics.refusals, metrics.reconnects),
        (2, 1, 1),
        "{metrics:?}"
    );
    assert_eq!(metrics.failed_attempts, 0);
    client.shutdown().await;
}

#[tokio::test]
async fn handshake_401_refreshes_once_then_connects() {
    let server = WsServer::start(&["tok-1"]).await;
    let source = Rotating::new();
    let (client, _incoming) = start(&server.url(), glacial(), source.clone());
    let mut state = client.state();
    assert_eq!(
        wait_for(&mut state, is_connected).await,
        State::Connected { generation: 2 }
    );
    assert_eq!(source.refreshes(), 1);
    assert_eq!(server.shared.refused.load(Ordering::SeqCst), 1);
    assert_eq!(server.accepted(), ["tok-1"]);
    client.shutdown().await;
}

#[tokio::test]
async fn a_second_401_after_the_refresh_backs_off() {
    let server = WsServer::start(&[]).await;
    let source = Rotating::new();
    let (client, _incoming) = start(&server.url(), glacial(), source.clone());
    let mut state = client.state();
    let backing_off = wait_for(&mut state, |s| matches!(s, State::Reconnecting { .. })).await;
    assert!(matches!(
        backing_off,
        State::Reconnecting {
            attempt: 1,
            reason: ReconnectReason::Unauthorized,
            ..
        }
    ));
    assert_eq!(source.refreshes(), 1);
    assert_eq!(server.shared.refused.load(Ordering::SeqCst), 2);
    client.shutdown().await;
}

#[tokio::test]
async fn close_4003_after_revocation_closes_as_signed_out() {
    let server = WsServer::start(&["tok-0"]).await;
    let source = Rotating::new();
    let (client, _incoming) = start(&server.url(), fast(), source.clone());
    let mut state = client.state();
    wait_for(&mut state, is_connected).await;

    source.revoke();
    server.command(Command::Close(4003, "session revoked".to_owned()));
    client.closed().await;
    assert_eq!(
        client.current_state(),
        State::Closed(CloseReason::SignedOut)
    );
    assert_eq!(source.refreshes(), 1);
    assert_eq!(client.running_tasks(), 0);
    assert_eq!(server.accepted(), ["tok-0"]);
    assert_eq!(
        client.send("late").await,
        Err(sessionkit_realtime::Error::Closed)
    );
}

#[tokio::test]
async fn close_4500_is_terminal() {
    let server = WsServer::start(&["tok-0"]).await;
    let source = Rotating::new();
    let (client, mut incoming) = start(&server.url(), fast(), source.clone());
    let mut state = client.state();
    wait_for(&mut state, is_connected).await;

    server.command(Command::Close(4500, "banned".to_owned()));
    // The task ending proves that no reconnect can follow.
    client.closed().await;
    assert_eq!(
        client.current_state(),
        State::Closed(CloseReason::Terminal {
            code: 4500,
            reason: "banned".to_owned()
        })
    );
    assert_eq!(client.running_tasks(), 0);
    assert_eq!(server.accepted(), ["tok-0"]);
    assert_eq!(source.refreshes(), 0);
    assert_eq!(incoming.recv().await, None);
}

#[tokio::test]
async fn close_4000_backs_off_and_reconnects() {
    let server = WsServer::start(&["tok-0"]).await;
    let source = Rotating::new();
    let (client, _incoming) = start(&server.url(), fast(), source.clone());
    let mut state = client.state();
    wait_for(&mut state, is_connected).await;

    server.command(Command::Close(4000, "try later".to_owned()));
    wait_for(&mut state, |s| {
        matches!(s, State::Connected { generation: 2 })
    })
    .await;
    assert_eq!(source.refreshes(), 0);
    assert_eq!(server.accepted(), ["tok-0", "tok-0"]);
    client.shutdown().await;
}

#[tokio::test]
async fn retry_after_ms_in_the_close_reason_is_honoured() {
    let server = WsServer::start(&["tok-0"]).await;
    let source = Rotating::new();
    let (client, _incoming) = start(&server.url(), fast(), source.clone());
    let mut state = client.state();
    wait_for(&mut state, is_connected).await;

    let reason = r#"{"retry_after_ms": 400}"#;
    server.command(Command::Close(4000, reason.to_owned()));
    let waiting = wait_for(&mut state, |s| matches!(s, State::Reconnecting { .. })).await;
    let since = Instant::now();
    let State::Reconnecting {
        attempt,
        retry_in,
        reason: why,
    } = waiting
    else {
        panic!("{waiting:?}");
    };
    assert_eq!(attempt, 1);
    assert_eq!(
        why,
        ReconnectReason::ServerClosed {
            code: 4000,
            reason: reason.to_owned()
        }
    );
    // The advice, plus up to half again so that clients spread out.
    assert!((400 * MS..=600 * MS).contains(&retry_in), "{retry_in:?}");
    wait_for(&mut state, is_connected).await;
    // The fast schedule alone would have retried within 10 ms.
    assert!(since.elapsed() >= 390 * MS, "{:?}", since.elapsed());
    client.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn backoff_delays_follow_the_schedule() {
    // No network: the token source is offline, so every attempt fails at
    // once and only the backoff timer spaces the attempts.
    let source = Rotating::unavailable();
    let backoff = Backoff::default();
    let (client, _incoming) = start("ws://127.0.0.1:9/ws", backoff, source.clone());
    let mut state = client.state();
    let mut previous: Option<(Instant, Duration)> = None;
    for attempt in 1..=10u32 {
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
        assert_eq!(
            reason,
            ReconnectReason::TokenUnavailable("no token available right now: offline".to_owned())
        );
        assert!(
            retry_in <= backoff.ceiling(attempt - 1),
            "{attempt}: {retry_in:?}"
        );
        if let Some((at, waited)) = previous {
            let elapsed = at.elapsed();
            assert!(
                elapsed >= waited && elapsed <= waited + 2 * MS,
                "{elapsed:?} vs {waited:?}"
            );
        }
        previous = Some((Instant::now(), retry_in));
    }
    client.shutdown().await;
    assert_eq!(client.current_state(), State::Closed(CloseReason::Closed));
}

#[tokio::test]
async fn logout_closes_the_connected_client_and_leaves_no_task() {
    let server = WsServer::start(&["tok-0"]).await;
    let source = Rotating::new();
    let (client, mut incoming) = start(&server.url(), fast(), source.clone());
    let mut state = client.state();
    wait_for(&mut state, is_connected).await;
    assert_eq!(client.running_tasks(), 1);

    source.logout();
    tokio::time::timeout(Duration::from_secs(10), client.closed())
        .await
        .expect("closed after logout");
    assert_eq!(
        client.current_state(),
        State::Closed(CloseReason::SignedOut)
    );
    assert_eq!(client.running_tasks(), 0);
    assert_eq!(incoming.recv().await, None);
    // The server sees the socket go.
    for _ in 0..500 {
        if server.shared.open.load(Ordering::SeqCst) == 0 {
            break;
        }
        tokio::time::sleep(10 * MS).await;
    }
    assert_eq!(server.shared.open.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn logout_during_backoff_leaves_no_task() {
    let source = Rotating::unavailable();
    let (client, _incoming) = start("ws://127.0.0.1:9/ws", Backoff::default(), source.clone());
    let mut state = client.state();
    wait_for(&mut state, |s| {
        matches!(s, State::Reconnecting { attempt: 3, .. })
    })
    .await;
    source.logout();
    client.closed().await;
    assert_eq!(
        client.current_state(),
        State::Closed(CloseReason::SignedOut)
    );
    assert_eq!(client.running_tasks(), 0);
}

#[tokio::test]
async fn close_is_idempotent_and_stops_everything() {
    let server = WsServer::start(&["tok-0"]).await;
    let source = Rotating::new();
    let (client, _incoming) = start(&server.url(), fast(), source.clone());
    let mut state = client.state();
    wait_for(&mut state, is_connected).await;
    client.close();
    client.close();
    client.shutdown().await;
    client.shutdown().await;
    assert_eq!(client.current_state(), State::Closed(CloseReason::Closed));
    assert_eq!(client.running_tasks(), 0);
    assert_eq!(
        client.try_send("x"),
        Err(sessionkit_realtime::Error::Closed)
    );
}

#[tokio::test]
async fn messages_sent_while_disconnected_go_out_in_order_after_the_reconnect() {
    let mut server = WsServer::start(&["tok-0"]).await;
    let source = Rotating::new();
    let (client, _incoming) = start(&server.url(), fast(), source.clone());
    let mut state = client.state();
    wait_for(&mut state, is_connected).await;
    client.send("m0").await.expect("send");
    assert_eq!(server.received_at_least(1).await, ["m0"]);

    server.stop().await;
    wait_for(&mut state, |s| matches!(s, State::Reconnecting { .. })).await;
    for i in 1..=20 {
        client.send(format!("m{i}")).await.expect("send");
    }
    server.restart().await;
    wait_for(&mut state, is_connected).await;
    let expected: Vec<String> = (0..=20).map(|i| format!("m{i}")).collect();
    assert_eq!(server.received_at_least(21).await, expected);
    client.shutdown().await;
}

#[tokio::test]
async fn a_dropped_connection_reconnects() {
    let server = WsServer::start(&["tok-0"]).await;
    let source = Rotating::new();
    let (client, _incoming) = start(&server.url(), fast(), source.clone());
    let mut state = client.state();
    wait_for(&mut state, is_connected).await;

    server.command(Command::Drop);
    wait_for(&mut state, |s| {
        matches!(s, State::Connected { generation: 2 })
    })
    .await;
    assert_eq!(server.accepted(), ["tok-0", "tok-0"]);
    assert_eq!(source.refreshes(), 0);
    client.shutdown().await;
}

#[tokio::test]
async fn a_half_open_connection_is_detected_within_ping_and_timeout() {
    let server = WsServer::start(&["tok-0"]).await;
    let source = Rotating::new();
    let (client, _incoming) = RealtimeClient::builder(server.url())
        .backoff(glacial())
        .ping(100 * MS, 150 * MS)
        .build(source.clone())
        .expect("client");
    let mut state = client.state();
    wait_for(&mut state, is_connected).await;
    // Pings are answered: the connection stays up over several intervals.
    tokio::time::sleep(500 * MS).await;
    assert_eq!(client.current_state(), State::Connected { generation: 1 });

    let frozen = Instant::now();
    server.command(Command::Freeze);
    let dead = wait_for(&mut state, |s| matches!(s, State::Reconnecting { .. })).await;
    assert!(matches!(
        dead,
        State::Reconnecting {
            reason: ReconnectReason::Unresponsive,
            ..
        }
    ));
    // At most one ping interval plus the timeout (and some scheduling slack).
    assert!(
        frozen.elapsed() < Duration::from_secs(2),
        "{:?}",
        frozen.elapsed()
    );
    client.shutdown().await;
}

/// Starts a client and takes its server away: the client is disconnected.
async fn disconnected(
    when_full: WhenFull,
    messages: usize,
    bytes: usize,
) -> (WsServer, RealtimeClient) {
    let mut server = WsServer::start(&["tok-0"]).await;
    let (client, _incoming) = RealtimeClient::builder(server.url())
        .backoff(fast())
        .outgoing_limits(messages, bytes)
        .when_full(when_full)
        .build(Rotating::new())
        .expect("client");
    let mut state = client.state();
    wait_for(&mut state, is_connected).await;
    server.stop().await;
    wait_for(&mut state, |s| matches!(s, State::Reconnecting { .. })).await;
    (server, client)
}

#[tokio::test]
async fn the_outgoing_queue_is_bounded_by_bytes_and_count() {
    let (mut server, client) = disconnected(WhenFull::Error, 3, 10).await;
    client.send("aaaa").await.expect("4 bytes");
    client.send("bbbb").await.expect("8 bytes");
    assert_eq!(client.send("ccc").await, Err(Error::QueueFull));
    client.send("cc").await.expect("10 bytes");
    assert_eq!(client.try_send(""), Err(Error::QueueFull));
    assert_eq!(
        client.send("x".repeat(11)).await,
        Err(Error::TooLarge { len: 11, limit: 10 })
    );

    server.restart().await;
    assert_eq!(server.received_at_least(3).await, ["aaaa", "bbbb", "cc"]);
    // Written messages free their room.
    client.send("dddddddddd").await.expect("room again");
    assert_eq!(server.received_at_least(4).await[3], "dddddddddd");
    client.shutdown().await;

    let (_server, client) = disconnected(WhenFull::Error, 2, 1000).await;
    client.send("1").await.expect("first");
    client.send("2").await.expect("second");
    assert_eq!(client.send("3").await, Err(Error::QueueFull));
    client.shutdown().await;
}

#[tokio::test]
async fn a_full_queue_makes_send_wait_until_the_reconnect() {
    let (mut server, client) = disconnected(WhenFull::Wait, 2, 1000).await;
    let client = Arc::new(client);
    client.send("1").await.expect("first");
    client.send("2").await.expect("second");
    let waiting = tokio::spawn({
        let client = client.clone();
        async move { client.send("3").await }
    });
    tokio::task::yield_now().await;
    assert!(!waiting.is_finished());
    assert_eq!(client.try_send("4"), Err(Error::QueueFull));

    server.restart().await;
    waiting
        .await
        .expect("join")
        .expect("sent after the reconnect");
    assert_eq!(server.received_at_least(3).await, ["1", "2", "3"]);
    client.shutdown().await;
}

#[tokio::test]
async fn a_waiting_send_fails_when_the_client_closes() {
    let (_server, client) = disconnected(WhenFull::Wait, 1, 1000).await;
    let client = Arc::new(client);
    client.send("1").await.expect("first");
    let waiting = tokio::spawn({
        let client = client.clone();
        async move { client.send("2").await }
    });
    tokio::task::yield_now().await;
    client.shutdown().await;
    assert_eq!(waiting.await.expect("join"), Err(Error::Closed));
}

#[tokio::test]
async fn close_works_while_the_app_is_not_reading() {
    let server = WsServer::start(&["tok-0"]).await;
    let (client, _incoming) = RealtimeClient::builder(server.url())
        .backoff(fast())
        .incoming_capacity(1)
        .build(Rotating::new())
        .expect("client");
    wait_for(&mut client.state(), is_connected).await;
    for i in 0..5 {
        client.send(format!("echo {i}")).await.expect("send");
    }
    // The server echoes all five; the app reads none.
    server.received_at_least(5).await;
    tokio::time::timeout(Duration::from_secs(10), client.shutdown())
        .await
        .expect("close does not wait for the app to read");
    assert_eq!(client.running_tasks(), 0);
}

#[tokio::test]
async fn the_on_connect_hook_runs_before_queued_messages_on_every_connection() {
    let mut server = WsServer::start(&["tok-0"]).await;
    let (client, _incoming) = RealtimeClient::builder(server.url())
        .backoff(fast())
        .on_connect(|resume: sessionkit_realtime::Resume| async move {
            tokio::task::yield_now().await;
            resume.send(format!("resume {}", resume.generation()));
            resume.send("subscribe");
        })
        .build(Rotating::new())
        .expect("client");
    let mut state = client.state();
    wait_for(&mut state, is_connected).await;
    assert_eq!(server.received_at_least(2).await, ["resume 1", "subscribe"]);

    server.stop().await;
    wait_for(&mut state, |s| matches!(s, State::Reconnecting { .. })).await;
    client.send("queued 1").await.expect("send");
    client.send("queued 2").await.expect("send");
    server.restart().await;
    let received = server.received_at_least(6).await;
    assert_eq!(received.len(), 6, "{received:?}");
    assert!(received[2].starts_with("resume "), "{received:?}");
    assert_ne!(received[2], "resume 1");
    assert_eq!(received[3..], ["subscribe", "queued 1", "queued 2"]);
    client.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn the_first_connect_gives_up_at_its_deadline() {
    let source = Rotating::unavailable();
    let started = Instant::now();
    let (client, _incoming) = RealtimeClient::builder("ws://127.0.0.1:9/ws")
        .first_connect_deadline(Duration::from_secs(5))
        .build(source)
        .expect("client");
    client.closed().await;
    assert_eq!(
        client.current_state(),
        State::Closed(CloseReason::DeadlineExceeded)
    );
    assert_eq!(started.elapsed(), Duration::from_secs(5));
    assert_eq!(client.running_tasks(), 0);
}

#[tokio::test]
async fn the_deadline_does_not_apply_once_connected() {
    let mut server = WsServer::start(&["tok-0"]).await;
    let (client, _incoming) = RealtimeClient::builder(server.url())
        .backoff(fast())
        .first_connect_deadline(300 * MS)
        .build(Rotating::new())
        .expect("client");
    let mut state = client.state();
    wait_for(&mut state, is_connected).await;
    server.stop().await;
    // Real sockets, so real time: stay away past the deadline.
    tokio::time::sleep(400 * MS).await;
    assert!(matches!(
        client.current_state(),
        State::Reconnecting { .. } | State::Connecting { .. }
    ));
    server.restart().await;
    wait_for(
        &mut state,
        |s| matches!(s, State::Connected { generation } if *generation >= 2),
    )
    .await;
    client.shutdown().await;
    assert_eq!(client.current_state(), State::Closed(CloseReason::Closed));
}

#[tokio::test]
async fn a_message_over_the_size_limit_ends_the_connection_undelivered() {
    let server = WsServer::start(&["tok-0"]).await;
    let (client, mut incoming) = RealtimeClient::builder(server.url())
        .backoff(fast())
        .max_message_size(4096)
        .build(Rotating::new())
        .expect("client");
    let mut state = client.state();
    wait_for(&mut state, is_connected).await;
    server.command(Command::Broadcast("x".repeat(8192)));
    wait_for(&mut state, |s| {
        matches!(
            s,
            State::Reconnecting {
                reason: ReconnectReason::Transport(_),
                ..
            }
        )
    })
    .await;
    wait_for(&mut state, |s| {
        matches!(s, State::Connected { generation: 2 })
    })
    .await;
    server.command(Command::Broadcast("small".to_owned()));
    let first = tokio::time::timeout(Duration::from_secs(10), incoming.recv())
        .await
        .expect("a message")
        .expect("open");
    assert_eq!(
        first,
        Incoming::Text("small".to_owned()),
        "the large one was never delivered"
    );
    client.shutdown().await;
}
