//! Reconnect after a 4001, including the refresh, vs a bare connect +
//! handshake on loopback (goal: ≤ 3×).
//!
//! - `bare connect + handshake`: TCP connect (no Nagle) and the WebSocket
//!   handshake with a bearer header, tokio-tungstenite directly; the socket
//!   is dropped outside the timed part.
//! - `reconnect after 4001 / mock IdP refresh`: a connected client whose
//!   token source is the SDK's `Session` signed in at the in-process mock
//!   IdP; the server closes with 4001; timed from the server's close to the
//!   client's next `Connected` state: reading the close, a real refresh
//!   (refresh-token grant over HTTP on loopback, the IdP signs a new RS256
//!   access token and ID token), the new connection and its handshake.
//! - `reconnect after 4001 / instant refresh`: the same with a
//!   `StaticToken` source (its refresh returns at once): the client's own
//!   cost.
//! - `mock IdP refresh alone`: `Session`'s forced refresh, for reference.
//!
//! Run: `cargo bench -p sessionkit-realtime --bench reconnect`

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::{SinkExt, StreamExt};
use sessionkit::{
    AccountRegistry, HttpClient, LoopbackOptions, MemoryStore, OidcClient, Provider, RefreshPolicy,
    Session, SessionManager,
};
use sessionkit_mock_idp::MockIdp;
use sessionkit_realtime::{Backoff, RealtimeClient, State, StaticToken, TokenSource};
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// A server that accepts any bearer token and closes every open connection
/// with 4001 when told to.
async fn server() -> (String, broadcast::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/ws", listener.local_addr().unwrap());
    let (close, _) = broadcast::channel(16);
    let closer = close.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let mut told = closer.subscribe();
            tokio::spawn(async move {
                let _ = tcp.set_nodelay(true);
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                loop {
                    tokio::select! {
                        _ = told.recv() => {
                            let frame = CloseFrame { code: CloseCode::from(4001), reason: "token expired".into() };
                            let _ = ws.send(Message::Close(Some(frame))).await;
                            return;
                        }
                        frame = ws.next() => match frame {
                            Some(Ok(_)) => {}
                            _ => return,
                        },
                    }
                }
            });
        }
    });
    (url, close)
}

async fn signed_in(idp: &MockIdp) -> (SessionManager, Arc<Session>) {
    let provider = Provider::discover(idp.issuer(), &HttpClient::new().unwrap())
        .await
        .unwrap();
    let client = OidcClient::new(provider, "chat-example").scopes(["openid", "offline_access"]);
    let dir = std::env::temp_dir().join(format!("sk-realtime-bench-{}", std::process::id()));
    let manager = SessionManager::for_client(client)
        .namespace("realtime-bench")
        .store(Arc::new(MemoryStore::new()))
        .registry(AccountRegistry::at(dir.join("accounts.json")))
        .policy(RefreshPolicy::OnDemand)
        .build()
        .await
        .unwrap();
    let browser = LoopbackOptions::with_callback(|url| {
        let url = url.to_owned();
        tokio::spawn(async move {
            let _ = reqwest::get(url).await;
        });
    });
    let account = manager
        .login_loopback(browser)
        .await
        .unwrap()
        .info()
        .clone();
    let session = manager.session(&account.key).unwrap();
    (manager, session)
}

/// Times `iters` reconnects after a 4001.
async fn reconnects(
    client: &RealtimeClient,
    close: &broadcast::Sender<()>,
    iters: u64,
) -> Duration {
    let mut state = client.state();
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let State::Connected { generation } = state.borrow_and_update().clone() else {
            panic!("not connected");
        };
        let started = Instant::now();
        close.send(()).unwrap();
        tokio::time::timeout(
            Duration::from_secs(10),
            state.wait_for(|s| matches!(s, State::Connected { generation: g } if *g > generation)),
        )
        .await
        .expect("reconnected in time")
        .expect("state");
        total += started.elapsed();
    }
    total
}

fn connected(url: &str, source: Arc<dyn TokenSource>) -> RealtimeClient {
    let (client, incoming) = RealtimeClient::builder(url)
        // A 4001 refreshes and reconnects at once only once per stable
        // connection (10 s up by default); here every connection counts as
        // stable, so each iteration takes the at-once path.
        .backoff(Backoff::default().reset_after(Duration::ZERO))
        .build(source)
        .unwrap();
    std::mem::forget(incoming);
    client
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (url, close, idp, _manager, session) = rt.block_on(async {
        let (url, close) = server().await;
        // SESSIONKIT_BENCH_ALG=ES256: the IdP signs with P-256 instead of RSA.
        let alg = match std::env::var("SESSIONKIT_BENCH_ALG").as_deref() {
            Ok("ES256") => sessionkit_mock_idp::Alg::ES256,
            _ => sessionkit_mock_idp::Alg::RS256,
        };
        let idp = MockIdp::builder()
            .auto_login("alice")
            .signing_alg(alg)
            .start()
            .await
            .unwrap();
        let (manager, session) = signed_in(&idp).await;
        (url, close, idp, manager, session)
    });
    let mut group = c.benchmark_group("realtime");
    group.sample_size(50);
    group.measurement_time(Duration::from_secs(8));

    group.bench_function("bare connect + handshake", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let mut request = url.as_str().into_client_request().unwrap();
                    request.headers_mut().insert(
                        "authorization",
                        HeaderValue::from_static("Bearer bench-token"),
                    );
                    let started = Instant::now();
                    let (ws, _) =
                        tokio_tungstenite::connect_async_tls_with_config(request, None, true, None)
                            .await
                            .unwrap();
                    total += started.elapsed();
                    drop(ws);
                }
                total
            })
        });
    });

    let guard = rt.enter();
    let instant = connected(&url, Arc::new(StaticToken::new("bench-token")));
    rt.block_on(async {
        let mut state = instant.state();
        state
            .wait_for(|s| matches!(s, State::Connected { .. }))
            .await
            .unwrap();
    });
    group.bench_function("reconnect after 4001 / instant refresh", |b| {
        b.iter_custom(|iters| rt.block_on(reconnects(&instant, &close, iters)));
    });
    rt.block_on(instant.shutdown());

    let with_idp = connected(&url, session.clone());
    rt.block_on(async {
        let mut state = with_idp.state();
        state
            .wait_for(|s| matches!(s, State::Connected { .. }))
            .await
            .unwrap();
    });
    group.bench_function("reconnect after 4001 / mock IdP refresh", |b| {
        b.iter_custom(|iters| rt.block_on(reconnects(&with_idp, &close, iters)));
    });
    rt.block_on(with_idp.shutdown());

    group.bench_function("mock IdP refresh alone", |b| {
        b.iter(|| {
            rt.block_on(async {
                let current = TokenSource::token(&*session).await.unwrap();
                TokenSource::rejected(&*session, &current.token)
                    .await
                    .unwrap()
            })
        });
    });
    group.finish();
    drop(guard);
    drop(idp);
}

criterion_group!(benches, bench);
criterion_main!(benches);
