//! Refresh while connected, before the token expires: make-before-break and
//! in-band, over real sockets with real (short) token lifetimes.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use sessionkit_realtime::{
    Backoff, BearerToken, Incoming, RealtimeClient, State, StaticToken, TimedToken,
};
use tokio::time::{Instant, sleep, timeout};

use crate::support::{Command, Rotating, WsServer, is_connected, lock, wait_for};

const MS: Duration = Duration::from_millis(1);

/// Any reconnect would show up as `Reconnecting` for an hour.
fn glacial() -> Backoff {
    Backoff::new(Duration::from_secs(3600), 2.0, Duration::from_secs(3600))
}

const TOKENS: [&str; 4] = ["tok-0", "tok-1", "tok-2", "tok-3"];

/// Polls `check` every 5 ms for up to 5 s.
async fn eventually(mut check: impl FnMut() -> bool) -> bool {
    for _ in 0..1000 {
        if check() {
            return true;
        }
        sleep(5 * MS).await;
    }
    false
}

#[tokio::test]
async fn make_before_break_switches_without_a_gap_and_delivers_once() {
    let server = WsServer::start(&TOKENS).await;
    // tok-0 lives 600 ms; the 60 s margin is capped at half: re-auth at ~300 ms.
    let source = Rotating::expiring(3_000 * MS);
    let (client, mut incoming) = RealtimeClient::builder(server.url())
        .backoff(glacial())
        .message_identity(|m| match m {
            Incoming::Text(text) => Some(text.clone()),
            _ => None,
        })
        // Holds the new connection before the switch: both are open meanwhile.
        .on_connect(|resume| async move {
            if resume.generation() > 1 {
                sleep(150 * MS).await;
            }
        })
        .build(source.clone())
        .expect("client");
    let mut state = client.state();
    assert_eq!(
        wait_for(&mut state, is_connected).await,
        State::Connected { generation: 1 }
    );
    let connected_at = Instant::now();
    // Only tok-0 expires; the next token's expiry is unknown (one switch).
    source.set_lifetime(None);

    // Every state from now on.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let recorder = {
        let (mut state, seen) = (client.state(), seen.clone());
        tokio::spawn(async move {
            while state.changed().await.is_ok() {
                let now = state.borrow_and_update().clone();
                let closed = matches!(now, State::Closed(_));
                lock(&seen).push(now);
                if closed {
                    break;
                }
            }
        })
    };

    // The client sends across the switch.
    let sent: Vec<String> = (0..40).map(|i| format!("c{i:02}")).collect();
    let sender = {
        let sent = sent.clone();
        let client = Arc::new(client);
        let handle = client.clone();
        (
            handle,
            tokio::spawn(async move {
                for text in sent {
                    client.send(text).await.expect("send");
                    sleep(15 * MS).await;
                }
            }),
        )
    };
    let (client, sender) = sender;

    // The overlap: both connections open at the server; it sends the same
    // message on both.
    assert!(eventually(|| server.shared.open.load(Ordering::SeqCst) == 2).await);
    assert!(
        connected_at.elapsed() < 3_000 * MS,
        "re-auth after expiry: {:?}",
        connected_at.elapsed()
    );
    server.command(Command::Broadcast("b1".to_owned()));

    assert_eq!(
        wait_for(&mut state, |s| !matches!(
            s,
            State::Connected { generation: 1 }
        ))
        .await,
        State::Connected { generation: 2 }
    );
    sender.await.expect("sender");

    // The old connection is closed; the new one used the new token.
    assert!(eventually(|| server.shared.open.load(Ordering::SeqCst) == 1).await);
    assert_eq!(server.accepted(), ["tok-0", "tok-1"]);
    assert_eq!(source.refreshes(), 1);

    // The server got every client message once, in order.
    assert_eq!(server.received_at_least(sent.len()).await, sent);

    // The app got every echo and the broadcast once.
    let mut got = Vec::new();
    while let Ok(Some(message)) = timeout(500 * MS, incoming.recv()).await {
        got.push(message);
    }
    let texts: Vec<String> = got
        .into_iter()
        .map(|m| match m {
            Incoming::Text(text) => text,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(texts.iter().filter(|t| *t == "b1").count(), 1, "{texts:?}");
    let echoes: Vec<&String> = texts.iter().filter(|t| t.starts_with('c')).collect();
    assert_eq!(echoes.len(), sent.len(), "{texts:?}");
    for text in &sent {
        assert_eq!(texts.iter().filter(|t| *t == text).count(), 1, "{text}");
    }

    client.shutdown().await;
    recorder.await.expect("recorder");
    let seen = lock(&seen).clone();
    let (last, before) = seen.split_last().expect("states");
    assert!(matches!(last, State::Closed(_)));
    assert!(
        before.iter().all(is_connected),
        "left Connected during the switch: {seen:?}"
    );
}

#[tokio::test]
async fn in_band_sends_the_new_token_on_the_same_connection() {
    let server = WsServer::start(&TOKENS).await;
    let source = Rotating::expiring(3_000 * MS);
    let (client, _incoming) = RealtimeClient::builder(server.url())
        .backoff(glacial())
        .refresh_in_band(|token| format!("auth:{}", token.secret()))
        .build(source.clone())
        .expect("client");
    let mut state = client.state();
    wait_for(&mut state, is_connected).await;
    let connected_at = Instant::now();
    source.set_lifetime(None);

    assert_eq!(server.received_at_least(1).await, ["auth:tok-1"]);
    let after = connected_at.elapsed();
    // Due at half the remaining life (1.5 s): well before expiry, not at once.
    assert!(after < 3_000 * MS, "re-auth after expiry: {after:?}");
    assert!(after >= 750 * MS, "re-auth too early: {after:?}");
    assert_eq!(server.accepted(), ["tok-0"]);
    assert_eq!(server.shared.open.load(Ordering::SeqCst), 1);
    assert_eq!(client.current_state(), State::Connected { generation: 1 });
    assert_eq!(source.refreshes(), 1);
    client.shutdown().await;
}

#[tokio::test]
async fn a_source_without_a_newer_token_is_asked_again_bounded_not_in_a_loop() {
    for in_band in [false, true] {
        let server = WsServer::start(&["fixed"]).await;
        // A source that keeps giving the same short-lived token.
        let source = Arc::new(StaticToken::new("fixed"));
        let now = SystemTime::now();
        source.replace(
            TimedToken::new(BearerToken::new("fixed"))
                .expires_at(now + 300 * MS)
                .refresh_at(now + 150 * MS),
        );
        let mut builder = RealtimeClient::builder(server.url()).backoff(glacial());
        if in_band {
            builder = builder.refresh_in_band(|token| format!("auth:{}", token.secret()));
        }
        let (client, _incoming) = builder.build(source.clone()).expect("client");
        let mut state = client.state();
        wait_for(&mut state, is_connected).await;
        sleep(500 * MS).await;
        assert_eq!(server.accepted(), ["fixed"]);
        // The same token again is not sent again, and nothing was refreshed.
        assert!(server.received().is_empty());
        assert_eq!(source.rejections(), 0);
        assert_eq!(client.current_state(), State::Connected { generation: 1 });
        client.shutdown().await;
    }
}

/// A source that says "signed out" when asked again at its refresh time,
/// without ending its cancellation token (a custom provider): the client
/// must end as signed out by itself.
struct SignsOutOnRefresh {
    asked: std::sync::atomic::AtomicUsize,
    cancel: tokio_util::sync::CancellationToken,
}

impl sessionkit_realtime::TokenSource for SignsOutOnRefresh {
    fn token(
        &self,
    ) -> sessionkit_realtime::BoxFuture<'_, Result<TimedToken, sessionkit_realtime::TokenError>>
    {
        Box::pin(async {
            if self.asked.fetch_add(1, Ordering::SeqCst) > 0 {
                return Err(sessionkit_realtime::TokenError::SignedOut);
            }
            let now = SystemTime::now();
            Ok(TimedToken::new(BearerToken::new("tok-0"))
                .expires_at(now + Duration::from_secs(2))
                .refresh_at(now + Duration::from_secs(1)))
        })
    }

    fn rejected<'a>(
        &'a self,
        _rejected: &'a BearerToken,
    ) -> sessionkit_realtime::BoxFuture<'a, Result<TimedToken, sessionkit_realtime::TokenError>>
    {
        Box::pin(async { Err(sessionkit_realtime::TokenError::SignedOut) })
    }

    fn cancellation(&self) -> tokio_util::sync::CancellationToken {
        self.cancel.clone()
    }
}

#[tokio::test]
async fn a_signed_out_refresh_while_connected_ends_the_client_in_either_mode() {
    for in_band in [false, true] {
        let server = WsServer::start(&TOKENS).await;
        let source = Arc::new(SignsOutOnRefresh {
            asked: std::sync::atomic::AtomicUsize::new(0),
            cancel: tokio_util::sync::CancellationToken::new(),
        });
        let mut builder = RealtimeClient::builder(server.url()).backoff(glacial());
        if in_band {
            builder = builder.refresh_in_band(|token| format!("auth {}", token.secret()));
        }
        let (client, _incoming) = builder.build(source.clone()).expect("client");
        let mut state = client.state();
        wait_for(&mut state, is_connected).await;
        // Re-authentication at ~1 s (its refresh time): the source says signed out.
        let end = wait_for(&mut state, |s| matches!(s, State::Closed(_))).await;
        assert_eq!(
            end,
            State::Closed(sessionkit_realtime::CloseReason::SignedOut),
            "in band: {in_band}"
        );
        assert_eq!(source.asked.load(Ordering::SeqCst), 2, "in band: {in_band}");
        timeout(Duration::from_secs(5), client.closed())
            .await
            .expect("stops");
        assert_eq!(client.running_tasks(), 0);
    }
}
