//! Results of stale attempts are ignored, and the corners of the
//! make-before-break switch, against a server the test drives step by step.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sessionkit_realtime::{Backoff, CloseReason, Incoming, RealtimeClient, State};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::timeout;

use crate::support::scripted::{Scripted, accept, refuse};
use crate::support::{Rotating, is_connected, lock, wait_for};

const MS: Duration = Duration::from_millis(1);

/// Any reconnect would show up as `Reconnecting` for an hour.
fn glacial() -> Backoff {
    Backoff::new(Duration::from_secs(3600), 2.0, Duration::from_secs(3600))
}

/// Records every state from now on.
fn record(client: &RealtimeClient) -> (Arc<Mutex<Vec<State>>>, JoinHandle<()>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (mut state, log) = (client.state(), seen.clone());
    let task = tokio::spawn(async move {
        while state.changed().await.is_ok() {
            let now = state.borrow_and_update().clone();
            let closed = matches!(now, State::Closed(_));
            lock(&log).push(now);
            if closed {
                break;
            }
        }
    });
    (seen, task)
}

/// The next incoming message within 5 s.
async fn next(incoming: &mut mpsc::Receiver<Incoming>) -> Incoming {
    timeout(Duration::from_secs(5), incoming.recv())
        .await
        .expect("timed out waiting for a message")
        .expect("incoming closed")
}

fn text(s: &str) -> Incoming {
    Incoming::Text(s.to_owned())
}

#[tokio::test]
async fn a_handshake_still_under_way_at_close_is_abandoned_and_never_used() {
    let mut server = Scripted::start().await;
    let (client, _incoming) = RealtimeClient::builder(server.url())
        .backoff(glacial())
        .build(Rotating::new())
        .expect("client");
    let (seen, recorder) = record(&client);
    // The client is in its handshake; the server does not answer yet.
    let tcp = server.next_tcp().await;
    assert_eq!(client.current_state(), State::Connecting { generation: 1 });

    client.close();
    timeout(Duration::from_secs(1), client.closed())
        .await
        .expect("close waited for the handshake");
    assert_eq!(client.running_tasks(), 0);

    // The handshake completes after the close: nobody is there to use it.
    if let Ok(late) = accept(tcp).await {
        assert!(late.until_client_gone().await.is_empty());
    }
    assert!(server.connection_within(200 * MS).await.is_none());
    recorder.await.expect("recorder");
    let seen = lock(&seen).clone();
    assert!(!seen.iter().any(is_connected), "{seen:?}");
    assert_eq!(seen.last(), Some(&State::Closed(CloseReason::Closed)));
}

#[tokio::test]
async fn a_handshake_that_timed_out_is_not_used_once_a_newer_connection_is_up() {
    let mut server = Scripted::start().await;
    let (client, _incoming) = RealtimeClient::builder(server.url())
        .backoff(Backoff::new(10 * MS, 2.0, 50 * MS))
        .connect_timeout(2_000 * MS)
        .build(Rotating::new())
        .expect("client");
    let (seen, recorder) = record(&client);
    // Attempt 1 hangs in its handshake until the client gives up on it.
    let slow = server.next_tcp().await;
    let mut newer = server.next().await;
    let mut state = client.state();
    assert_eq!(
        wait_for(&mut state, is_connected).await,
        State::Connected { generation: 2 }
    );

    // Attempt 1's handshake completes now, late.
    if let Ok(late) = accept(slow).await {
        assert!(late.until_client_gone().await.is_empty());
    }
    client.send("on the newer one").await.expect("send");
    assert_eq!(newer.recv_text().await, "on the newer one");
    assert_eq!(client.current_state(), State::Connected { generation: 2 });

    client.shutdown().await;
    recorder.await.expect("recorder");
    let seen = lock(&seen).clone();
    assert!(
        !seen.contains(&State::Connected { generation: 1 }),
        "{seen:?}"
    );
}

#[tokio::test]
async fn a_make_before_break_handshake_outlived_by_its_connection_is_not_used() {
    let mut server = Scripted::start().await;
    let source = Rotating::expiring(1_000 * MS);
    let (client, _incoming) = RealtimeClient::builder(server.url())
        .backoff(Backoff::new(10 * MS, 2.0, 50 * MS))
        .build(source.clone())
        .expect("client");
    let (seen, recorder) = record(&client);
    let mut old = server.next().await;
    let mut state = client.state();
    wait_for(&mut state, is_connected).await;
    source.set_lifetime(None);

    // The second connection's handshake hangs; meanwhile the first ends.
    let upgrade = server.next_tcp().await;
    old.close(1012, "restarting").await;
    let mut newer = server.next().await;
    assert_eq!(newer.token.as_deref(), Some("tok-1"));
    assert_eq!(
        wait_for(&mut state, |s| s != &State::Connected { generation: 1 }
            && is_connected(s))
        .await,
        State::Connected { generation: 2 }
    );

    // The abandoned handshake completes late: it never becomes the connection.
    if let Ok(late) = accept(upgrade).await {
        assert!(late.until_client_gone().await.is_empty());
    }
    client.send("on the newer one").await.expect("send");
    assert_eq!(newer.recv_text().await, "on the newer one");
    assert_eq!(client.current_state(), State::Connected { generation: 2 });
    client.shutdown().await;
    recorder.await.expect("recorder");
    let seen = lock(&seen).clone();
    assert!(
        !seen.contains(&State::Connected { generation: 3 }),
        "{seen:?}"
    );
}

#[tokio::test]
async fn without_an_identity_hook_the_old_connection_is_ignored_after_the_switch() {
    let mut server = Scripted::start().await;
    // tok-0 lives 1 s: re-authentication at ~500 ms (half its lifetime).
    let source = Rotating::expiring(1_000 * MS);
    let (client, mut incoming) = RealtimeClient::builder(server.url())
        .backoff(glacial())
        .build(source.clone())
        .expect("client");
    let mut old = server.next().await;
    assert_eq!(old.token.as_deref(), Some("tok-0"));
    let mut state = client.state();
    wait_for(&mut state, is_connected).await;
    source.set_lifetime(None);

    // Before the switch, the old connection is the connection.
    old.send_text("before").await;
    assert_eq!(next(&mut incoming).await, text("before"));

    let mut new = server.next().await;
    assert_eq!(new.token.as_deref(), Some("tok-1"));
    assert_eq!(
        wait_for(&mut state, |s| s != &State::Connected { generation: 1 }).await,
        State::Connected { generation: 2 }
    );

    // After the switch, a message on the old connection is dropped: without
    // an identity the client cannot tell whether it also came on the new one.
    old.send_text("late on the old one").await;
    old.close(1000, "").await;
    // The client has read the old connection to its end and let it go.
    old.until_client_gone().await;
    new.send_text("after").await;
    assert_eq!(next(&mut incoming).await, text("after"));
    assert!(incoming.try_recv().is_err());
    assert_eq!(source.refreshes(), 1);
    client.shutdown().await;
}

#[tokio::test]
async fn binary_messages_are_delivered_once_across_the_switch_by_their_identity() {
    let mut server = Scripted::start().await;
    let source = Rotating::expiring(1_000 * MS);
    let (client, mut incoming) = RealtimeClient::builder(server.url())
        .backoff(glacial())
        // Binary messages carry their id in the first two bytes.
        .message_identity(|message| match message {
            Incoming::Binary(bytes) => bytes.get(..2).map(|id| format!("{id:?}")),
            _ => None,
        })
        .build(source.clone())
        .expect("client");
    let mut old = server.next().await;
    let mut state = client.state();
    wait_for(&mut state, is_connected).await;
    source.set_lifetime(None);
    let bin = |id: u8, payload: u8| vec![id, 0, payload];

    // The overlap: both connections open; the server sends each message on
    // both (before and after the client switches).
    let mut new = server.next().await;
    old.send_binary(&bin(1, b'a')).await;
    new.send_binary(&bin(1, b'a')).await;
    old.send_binary(&bin(2, b'b')).await;
    new.send_binary(&bin(2, b'b')).await;
    assert_eq!(
        wait_for(&mut state, |s| s != &State::Connected { generation: 1 }).await,
        State::Connected { generation: 2 }
    );
    new.send_binary(&bin(3, b'c')).await;
    old.send_binary(&bin(3, b'c')).await;
    old.send_binary(&bin(4, b'd')).await;
    new.send_binary(&bin(4, b'd')).await;
    old.close(1000, "").await;
    old.until_client_gone().await;
    new.send_text("end").await;

    let mut got = Vec::new();
    loop {
        match next(&mut incoming).await {
            Incoming::Binary(bytes) => got.push(bytes),
            Incoming::Text(end) => {
                assert_eq!(end, "end");
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    got.sort();
    assert_eq!(
        got,
        [bin(1, b'a'), bin(2, b'b'), bin(3, b'c'), bin(4, b'd')]
    );
    client.shutdown().await;
}

#[tokio::test]
async fn a_failed_second_connection_keeps_the_old_one_and_is_tried_again() {
    let mut server = Scripted::start().await;
    // tok-0 lives 1.2 s: the switch is tried at ~600 ms, and after it fails,
    // again at half the remaining lifetime (~300 ms later).
    let source = Rotating::expiring(1_200 * MS);
    let (client, _incoming) = RealtimeClient::builder(server.url())
        // A reconnect would be quick, and would show as `Reconnecting`.
        .backoff(Backoff::new(10 * MS, 2.0, 50 * MS))
        .build(source.clone())
        .expect("client");
    let (seen, recorder) = record(&client);
    let mut old = server.next().await;
    let mut state = client.state();
    wait_for(&mut state, is_connected).await;

    // The second connection (tok-1) is refused.
    refuse(server.next_tcp().await).await;
    source.set_lifetime(None);
    // The old one is still the connection.
    client.send("still here").await.expect("send");
    assert_eq!(old.recv_text().await, "still here");
    assert_eq!(client.current_state(), State::Connected { generation: 1 });

    // Tried again before tok-0 expires, with the same fresh token: the
    // source refreshed once, and a failed connection is no reason to
    // refresh again.
    let mut new = server.next().await;
    assert_eq!(new.token.as_deref(), Some("tok-1"));
    assert_eq!(
        wait_for(&mut state, |s| s != &State::Connected { generation: 1 }).await,
        State::Connected { generation: 2 }
    );
    old.until_client_gone().await;
    client.send("on the new one").await.expect("send");
    assert_eq!(new.recv_text().await, "on the new one");
    assert_eq!(source.refreshes(), 1);

    client.shutdown().await;
    recorder.await.expect("recorder");
    let seen = lock(&seen).clone();
    let up = seen.iter().position(is_connected).expect("connected");
    assert!(
        seen[up..]
            .iter()
            .all(|s| is_connected(s) || matches!(s, State::Closed(_))),
        "left Connected: {seen:?}"
    );
}

#[tokio::test]
async fn when_the_second_connection_keeps_failing_the_expiry_4001_reconnects_normally() {
    let mut server = Scripted::start().await;
    let source = Rotating::expiring(600 * MS);
    let (client, _incoming) = RealtimeClient::builder(server.url())
        // The base is far above the token's life: no second try in time.
        .backoff(glacial())
        .build(source.clone())
        .expect("client");
    let mut old = server.next().await;
    let mut state = client.state();
    wait_for(&mut state, is_connected).await;
    source.set_lifetime(None);
    refuse(server.next_tcp().await).await;
    assert!(server.connection_within(400 * MS).await.is_none());
    assert_eq!(client.current_state(), State::Connected { generation: 1 });

    // tok-0 has expired: the server says so; the source already has a newer
    // token (tok-1), which is reused at once without another refresh.
    old.close(4001, "token expired").await;
    let new = server.next().await;
    assert_eq!(new.token.as_deref(), Some("tok-1"));
    assert_eq!(
        wait_for(&mut state, |s| s != &State::Connected { generation: 1 }
            && is_connected(s))
        .await,
        State::Connected { generation: 2 }
    );
    assert_eq!(source.refreshes(), 1);
    client.shutdown().await;
}
