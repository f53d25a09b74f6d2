//! The incoming queue's byte bound against a real server: a slow app and
//! large messages. The clock is paused once the client is connected, so
//! each of the app's pauses ends only when every task waits: the client
//! has then read all it may, and the queue is as full as it gets.

use std::time::Duration;

use sessionkit_realtime::{Incoming, RealtimeClient, State};

use crate::fast;
use crate::support::{Rotating, WsServer, is_connected, wait_for};

const SIZE: usize = 64 << 10;
const BOUND: usize = 4 * SIZE + SIZE / 2;
const MESSAGES: usize = 40;

#[tokio::test]
async fn a_slow_app_keeps_queued_bytes_under_the_bound_and_loses_nothing() {
    let server = WsServer::start(&["tok-0"]).await;
    let (client, mut incoming) = RealtimeClient::builder(server.url())
        .backoff(fast())
        .incoming_bytes(BOUND)
        .build(Rotating::new())
        .expect("client");
    wait_for(&mut client.state(), is_connected).await;
    tokio::time::pause();
    // The server echoes each one: 40 large messages for an app that is slow.
    for i in 0..MESSAGES {
        client
            .send(format!("{i:04}{}", "x".repeat(SIZE - 4)))
            .await
            .expect("send");
    }
    let mut most = 0;
    for i in 0..MESSAGES {
        // The app is busy; the client reads on while the queue has room.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let queued = incoming.len();
        assert!(
            queued * SIZE <= BOUND,
            "{queued} messages ({} KiB) queued, bound {} KiB",
            (queued * SIZE) >> 10,
            BOUND >> 10
        );
        most = most.max(queued);
        match incoming.recv().await.expect("open") {
            Incoming::Text(text) => {
                assert_eq!(text.len(), SIZE);
                assert_eq!(text[..4], format!("{i:04}"), "in order, none lost");
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(most, BOUND / SIZE, "the queue did fill up to the bound");
    assert_eq!(
        client.current_state(),
        State::Connected { generation: 1 },
        "backpressure, not a reconnect"
    );
    client.shutdown().await;
}
