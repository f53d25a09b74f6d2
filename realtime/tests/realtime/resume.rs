//! Nothing lost, nothing doubled, across forced disconnects: the app keeps
//! unacknowledged messages ([`Unacked`]), the `on_connect` hook re-sends
//! them, the server drops duplicates by id.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use sessionkit_realtime::{Backoff, Incoming, RealtimeClient, Resume, Unacked};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{sleep, timeout};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::support::{Rotating, lock};

const MESSAGES: u64 = 500;
const DROPS: usize = 20;

/// The server's drop `k` happens when a new message arrives with `7 + 24k`
/// stored (the last after 463 of 500).
fn drop_point(k: usize) -> usize {
    7 + 24 * k
}

/// How the server drops the connection at drop `k`.
#[derive(Debug, Clone, Copy)]
enum Drop {
    /// The message was stored but not acknowledged; TCP reset.
    StoredThenReset,
    /// The message was lost in flight; close frame 1012.
    LostThenClose1012,
    /// The message was stored and acknowledged; FIN without a close frame.
    AckedThenFin,
    /// The message was lost in flight; TCP reset.
    LostThenReset,
    /// The message was stored, not acknowledged; close 4000 with a retry advice.
    StoredThenClose4000,
}

fn drop_kind(k: usize) -> Drop {
    [
        Drop::StoredThenReset,
        Drop::LostThenClose1012,
        Drop::AckedThenFin,
        Drop::LostThenReset,
        Drop::StoredThenClose4000,
    ][k % 5]
}

#[derive(Default)]
struct Ledger {
    seen: HashSet<u64>,
    /// Ids in the order they were stored (the server's sequence).
    stored: Vec<u64>,
    /// Every copy received, duplicates included.
    copies: usize,
    drops: Vec<Drop>,
}

enum Action {
    Ack,
    Drop(Drop),
}

async fn serve(listener: TcpListener, ledger: Arc<Mutex<Ledger>>) {
    while let Ok((tcp, _)) = listener.accept().await {
        tokio::spawn(connection(tcp, ledger.clone()));
    }
}

async fn connection(tcp: TcpStream, ledger: Arc<Mutex<Ledger>>) {
    let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
        return;
    };
    while let Some(Ok(message)) = ws.next().await {
        let Message::Text(text) = message else {
            continue;
        };
        let value: serde_json::Value = serde_json::from_str(&text).expect("json");
        let id = value["id"].as_u64().expect("id");
        let action = {
            let mut ledger = lock(&ledger);
            ledger.copies += 1;
            let fresh = !ledger.seen.contains(&id);
            let k = ledger.drops.len();
            if fresh && k < DROPS && ledger.stored.len() == drop_point(k) {
                let kind = drop_kind(k);
                ledger.drops.push(kind);
                if !matches!(kind, Drop::LostThenClose1012 | Drop::LostThenReset) {
                    ledger.seen.insert(id);
                    ledger.stored.push(id);
                }
                Action::Drop(kind)
            } else {
                if fresh {
                    ledger.seen.insert(id);
                    ledger.stored.push(id);
                }
                Action::Ack
            }
        };
        let ack = Message::text(format!(r#"{{"ack":{id}}}"#));
        match action {
            Action::Ack => {
                if ws.send(ack).await.is_err() {
                    return;
                }
            }
            Action::Drop(Drop::StoredThenReset | Drop::LostThenReset) => {
                let _ = ws.get_ref().set_zero_linger();
                return;
            }
            Action::Drop(Drop::AckedThenFin) => {
                let _ = ws.send(ack).await;
                return;
            }
            Action::Drop(kind) => {
                let (code, reason) = match kind {
                    Drop::LostThenClose1012 => (1012, "restarting"),
                    _ => (4000, r#"{"retry_after_ms":0}"#),
                };
                let frame = CloseFrame {
                    code: CloseCode::from(code),
                    reason: reason.into(),
                };
                let _ = ws.send(Message::Close(Some(frame))).await;
                return;
            }
        }
    }
}

#[tokio::test]
async fn five_hundred_messages_across_twenty_forced_disconnects_arrive_once_in_order() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("ws://{}/ws", listener.local_addr().expect("addr"));
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let server = tokio::spawn(serve(listener, ledger.clone()));

    // The app: every message is kept until acknowledged and re-sent by the
    // `on_connect` hook on every new connection.
    let unacked = Unacked::new();
    let (client, mut incoming) = RealtimeClient::builder(url)
        .backoff(Backoff::new(
            Duration::from_millis(1),
            2.0,
            Duration::from_millis(20),
        ))
        // A short queue: the app is still sending while the server drops.
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
            while let Some(message) = incoming.recv().await {
                let Incoming::Text(text) = message else {
                    continue;
                };
                let value: serde_json::Value = serde_json::from_str(&text).expect("json");
                let id = value["ack"].as_u64().expect("an ack");
                unacked.ack(&id.to_string());
            }
        })
    };

    let sent = timeout(Duration::from_secs(20), async {
        for id in 0..MESSAGES {
            let text = format!(r#"{{"id":{id},"body":"message {id}"}}"#);
            unacked
                .send(&client, id.to_string(), text)
                .await
                .expect("send");
        }
        // Until the server stored everything and acknowledged it.
        while lock(&ledger).stored.len() < MESSAGES as usize || !unacked.is_empty() {
            sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    let (stored, copies, drops) = {
        let ledger = lock(&ledger);
        (ledger.stored.clone(), ledger.copies, ledger.drops.clone())
    };
    assert!(
        sent.is_ok(),
        "timed out: {} stored, {} unacknowledged ({:?}…), drops {drops:?}",
        stored.len(),
        unacked.len(),
        unacked.ids().first()
    );
    assert_eq!(drops.len(), DROPS, "{drops:?}");
    assert_eq!(stored, (0..MESSAGES).collect::<Vec<_>>());
    // Re-sent copies reached the server and were dropped there.
    assert!(copies > stored.len(), "{copies} copies");

    client.shutdown().await;
    acker.await.expect("acker");
    server.abort();
}

/// A client waiting for its second connection, and that connection.
struct Offline {
    client: RealtimeClient,
    _incoming: tokio::sync::mpsc::Receiver<Incoming>,
    state: tokio::sync::watch::Receiver<sessionkit_realtime::State>,
    second: TcpStream,
}

/// A client whose on_connect hook re-sends `unacked`, connected once to
/// `server` and dropped by it: it is on its second attempt, whose handshake
/// (returned) is not answered yet, so that attempt's hook has not run.
async fn offline_client(
    server: &mut crate::support::scripted::Scripted,
    unacked: &Unacked,
    queue: usize,
) -> Offline {
    use sessionkit_realtime::{State, StaticToken};

    let (client, incoming) = RealtimeClient::builder(server.url())
        .backoff(Backoff::new(
            Duration::from_millis(1),
            2.0,
            Duration::from_millis(5),
        ))
        .outgoing_limits(queue, 1 << 10)
        .on_connect({
            let unacked = unacked.clone();
            move |resume: Resume| {
                unacked.resend(&resume);
                std::future::ready(())
            }
        })
        .build(Arc::new(StaticToken::new("t")))
        .expect("client");
    let mut state = client.state();
    let mut first = server.next().await;
    crate::support::wait_for(&mut state, crate::support::is_connected).await;
    first.close(4000, r#"{"retry_after_ms":0}"#).await;
    drop(first);
    let second = server.next_tcp().await;
    crate::support::wait_for(&mut state, |s| {
        matches!(s, State::Connecting { generation: 2 })
    })
    .await;
    Offline {
        client,
        _incoming: incoming,
        state,
        second,
    }
}

/// Messages sent while the client waits for a connection go out once, from
/// the hook: queueing them as well would double them on every reconnect (a
/// burst that trips a server's rate limit right after it). A message sent
/// once the hook has run goes out once, from the queue.
#[tokio::test]
async fn messages_sent_while_offline_go_out_once_after_the_reconnect() {
    let mut server = crate::support::scripted::Scripted::start().await;
    let unacked = Unacked::new();
    let Offline {
        client,
        _incoming,
        mut state,
        second,
    } = offline_client(&mut server, &unacked, 64).await;
    for id in 0..10 {
        let text = format!(r#"{{"id":{id}}}"#);
        unacked
            .send(&client, id.to_string(), text)
            .await
            .expect("send");
    }
    let mut second = crate::support::scripted::accept(second)
        .await
        .expect("handshake");
    crate::support::wait_for(&mut state, crate::support::is_connected).await;
    unacked
        .send(&client, "10", r#"{"id":10}"#)
        .await
        .expect("send");
    let mut got = Vec::new();
    for _ in 0..11 {
        got.push(second.recv_text().await);
    }
    let want: Vec<String> = (0..=10).map(|id| format!(r#"{{"id":{id}}}"#)).collect();
    assert_eq!(got, want, "each once, in order");
    // Nothing more: no queued copy follows.
    let extra = timeout(Duration::from_millis(300), second.recv_text()).await;
    assert!(extra.is_err(), "a second copy: {extra:?}");
    assert_eq!(unacked.len(), 11, "kept until acknowledged");
    client.shutdown().await;
}

/// What is left to the hook counts against the queue's limits: past them
/// a message is queued as well and a full queue says so. A message over
/// the byte limit is refused, offline too, and not recorded.
#[tokio::test]
async fn offline_sends_keep_the_queue_limits_and_the_size_check() {
    use sessionkit_realtime::Error;

    let mut server = crate::support::scripted::Scripted::start().await;
    let unacked = Unacked::new();
    let offline = offline_client(&mut server, &unacked, 4).await;
    let client = &offline.client;
    let too_large = unacked.try_send(client, "big", "x".repeat(2 << 10));
    assert!(
        matches!(too_large, Err(Error::TooLarge { .. })),
        "{too_large:?}"
    );
    assert!(unacked.is_empty());
    let mut taken = 0;
    let full = loop {
        match unacked.try_send(client, taken.to_string(), format!(r#"{{"id":{taken}}}"#)) {
            Ok(()) => taken += 1,
            Err(e) => break e,
        }
        assert!(taken <= 8, "no limit");
    };
    // Four left to the hook, four more in the queue.
    assert_eq!(taken, 8);
    assert!(matches!(full, Error::QueueFull), "{full:?}");
    assert_eq!(unacked.len(), 8, "the refused one is not recorded");
    offline.client.shutdown().await;
}
