//! Dead connections noticed within a bound, on tokio's paused clock: with
//! the default settings a connection whose server stops answering (no FIN,
//! no reset: a half-open socket, a partition) is declared dead 8 s after
//! the last frame it carried, while a connection whose server answers its
//! pings stays up however long it is idle.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use sessionkit_realtime::{
    Backoff, DEFAULT_PING_INTERVAL, DEFAULT_PONG_TIMEOUT, RealtimeClient, ReconnectReason, State,
};
use tokio::time::{Instant, timeout};
use tokio_tungstenite::tungstenite::Message;

use crate::support::scripted::Scripted;
use crate::support::{Rotating, is_connected, wait_for, wait_within};

#[tokio::test]
async fn a_silent_server_is_noticed_within_the_timeout_and_an_answering_one_kept() {
    assert_eq!(DEFAULT_PING_INTERVAL, Duration::from_secs(4));
    assert_eq!(DEFAULT_PONG_TIMEOUT, Duration::from_secs(8));
    let mut server = Scripted::start().await;
    let (client, _incoming) = RealtimeClient::builder(server.url())
        .backoff(Backoff::new(
            Duration::from_secs(3600),
            2.0,
            Duration::from_secs(3600),
        ))
        .build(Rotating::new())
        .expect("client");
    let mut conn = server.next().await;
    let mut state = client.state();
    wait_for(&mut state, is_connected).await;
    // Connected over real time; from here on the clock only moves when
    // every task waits for a timer.
    tokio::time::pause();

    // An idle minute with a server that answers: a ping after every 4 s
    // of silence, each answered, and the connection stays.
    let start = Instant::now();
    let mut pings = 0;
    while start.elapsed() < Duration::from_secs(60) {
        let frame = timeout(Duration::from_secs(30), conn.ws.next())
            .await
            .expect("a ping within 30 s");
        match frame {
            Some(Ok(Message::Ping(_))) => {
                pings += 1;
                // tungstenite queued the pong: send it now.
                conn.ws.flush().await.expect("pong");
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(
        (14..=16).contains(&pings),
        "{pings} pings in an idle minute"
    );
    assert_eq!(client.current_state(), State::Connected { generation: 1 });

    // The server stops answering (reads nothing, closes nothing) right
    // after its last pong: the client says so 8 s after that pong.
    let silent_since = Instant::now();
    let dead = wait_within(Duration::from_secs(120), &mut state, |s| {
        matches!(s, State::Reconnecting { .. })
    })
    .await;
    let noticed = silent_since.elapsed();
    assert!(
        matches!(
            dead,
            State::Reconnecting {
                reason: ReconnectReason::Unresponsive,
                ..
            }
        ),
        "{dead:?}"
    );
    assert!(
        noticed >= DEFAULT_PONG_TIMEOUT - Duration::from_millis(5)
            && noticed <= DEFAULT_PONG_TIMEOUT + Duration::from_millis(5),
        "noticed after {noticed:?}"
    );
    drop(conn);
    client.shutdown().await;
}
