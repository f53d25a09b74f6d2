//! A reconnecting WebSocket client with a fixed token (`StaticToken`): it
//! survives a server crash, backs off while the server is down, and loses no
//! message across the reconnect (`Unacked` + `on_connect`).
//!
//! The server is a small axum WebSocket echo server in this process, on a
//! free port. It checks the bearer token, answers each `{"id":N,"text":…}`
//! with `{"ack":N,"echo":…}`, and stores each id once. Once, when message 3
//! arrives, it "crashes": it drops every connection without acknowledging
//! message 3 and refuses new ones (503) for a second. The client moves
//! through `Reconnecting` with growing, jittered delays, reconnects, and its
//! `on_connect` hook re-sends what is unacknowledged (3, and 4 and 5, sent
//! meanwhile) before the queue goes out.
//!
//! Delivery is at least once: a message sent while no connection is up (1,
//! sent at once; 4 and 5) is both queued and re-sent by the hook, so the
//! server sees it twice; it acknowledges every copy and stores each id once.
//! The example prints the client's state changes, what the server sees, and
//! the acknowledgements.
//!
//! `cargo run -p sessionkit-realtime --example echo`

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::State as AxumState;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header::AUTHORIZATION};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sessionkit_realtime::{Backoff, Incoming, RealtimeClient, Resume, State, StaticToken, Unacked};
use tokio::sync::broadcast;
use tokio::time::Instant;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The token this server accepts (an API key, say: it never changes).
const API_KEY: &str = "example-api-key-0123456789";

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();

    let started = Instant::now();
    let at = move || format!("{:4.1} s", started.elapsed().as_secs_f32());
    let server = EchoServer::start(at).await?;
    println!("{}  echo server at {}", at(), server.url);

    let unacked = Unacked::new();
    let source = Arc::new(StaticToken::new(API_KEY));
    let (client, mut incoming) = RealtimeClient::builder(&server.url)
        // Reconnect delays: full jitter under 200 ms, 400 ms, 800 ms, … 5 s.
        .backoff(Backoff::new(
            Duration::from_millis(200),
            2.0,
            Duration::from_secs(5),
        ))
        // On every new connection, before anything queued: what the server
        // has not acknowledged yet.
        .on_connect({
            let unacked = unacked.clone();
            move |resume: Resume| {
                let resent = unacked.resend(&resume);
                if resent > 0 {
                    println!(
                        "{}  connection {}: re-sending {resent} unacknowledged",
                        at(),
                        resume.generation()
                    );
                }
                std::future::ready(())
            }
        })
        .build(source)?;

    // The client's state, as it changes.
    let mut state = client.state();
    let watcher = tokio::spawn(async move {
        loop {
            let now = state.borrow_and_update().clone();
            match &now {
                State::Reconnecting {
                    attempt,
                    retry_in,
                    reason,
                } => println!(
                    "{}  state: reconnecting (attempt {attempt}, in {} ms): {reason:?}",
                    at(),
                    retry_in.as_millis()
                ),
                other => println!("{}  state: {other:?}", at()),
            }
            if matches!(now, State::Closed(_)) || state.changed().await.is_err() {
                break;
            }
        }
    });

    // Acknowledgements end a message's wait; echoes are printed.
    let reader = {
        let unacked = unacked.clone();
        tokio::spawn(async move {
            while let Some(message) = incoming.recv().await {
                let Incoming::Text(text) = message else {
                    continue;
                };
                let value: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                if let Some(id) = value.get("ack").and_then(serde_json::Value::as_u64)
                    && unacked.ack(&id.to_string())
                {
                    println!("{}  acknowledged {id}: {}", at(), value["echo"]);
                }
            }
        })
    };

    for id in 1..=5_u64 {
        let message = serde_json::json!({ "id": id, "text": format!("message {id}") });
        unacked
            .send(&client, id.to_string(), message.to_string())
            .await?;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }

    // Everything acknowledged, then a clean shutdown (queued messages would
    // be dropped by it: wait first).
    let deadline = Instant::now() + Duration::from_secs(10);
    while !unacked.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("{}  unacknowledged: {:?}", at(), unacked.ids());
    client.shutdown().await;
    let _ = watcher.await;
    let _ = reader.await;
    println!("server stored, in order: {:?}", server.stored());
    println!("client tasks left: {}", client.running_tasks());
    Ok(())
}

/// The echo server: shared by its connections.
struct Shared {
    /// Ids stored, in order, each once.
    stored: Mutex<Vec<u64>>,
    /// The id at which the server crashes, once.
    crash_at: Mutex<Option<u64>>,
    /// Refuses handshakes until then (down after the crash).
    down_until: Mutex<Option<Instant>>,
    /// Tells every connection to drop.
    crash: broadcast::Sender<()>,
    /// The example's clock, for the log lines.
    at: Box<dyn Fn() -> String + Send + Sync>,
}

struct EchoServer {
    url: String,
    shared: Arc<Shared>,
}

impl EchoServer {
    async fn start(at: impl Fn() -> String + Send + Sync + 'static) -> Result<Self, BoxError> {
        let shared = Arc::new(Shared {
            stored: Mutex::default(),
            crash_at: Mutex::new(Some(3)),
            down_until: Mutex::default(),
            crash: broadcast::channel(1).0,
            at: Box::new(at),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("ws://{}/ws", listener.local_addr()?);
        let app = Router::new()
            .route("/ws", get(upgrade))
            .with_state(shared.clone());
        // Ends with the example's runtime.
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Self { url, shared })
    }

    fn stored(&self) -> Vec<u64> {
        lock(&self.shared.stored).clone()
    }
}

async fn upgrade(
    AxumState(shared): AxumState<Arc<Shared>>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    if lock(&shared.down_until).is_some_and(|until| Instant::now() < until) {
        println!("{}    server: still down, 503", (shared.at)());
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let bearer = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if bearer != Some(API_KEY) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    println!("{}    server: connection accepted", (shared.at)());
    upgrade.on_upgrade(move |socket| echo(shared, socket))
}

async fn echo(shared: Arc<Shared>, mut socket: WebSocket) {
    let mut crash = shared.crash.subscribe();
    loop {
        let text = tokio::select! {
            _ = crash.recv() => return,
            message = socket.recv() => match message {
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                Some(Ok(_)) => continue,
            },
        };
        let value: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        let Some(id) = value.get("id").and_then(serde_json::Value::as_u64) else {
            continue;
        };
        if lock(&shared.crash_at).take_if(|at| *at == id).is_some() {
            println!(
                "{}    server: got {id} and crashes: every connection dropped, down for 1 s",
                (shared.at)()
            );
            *lock(&shared.down_until) = Some(Instant::now() + Duration::from_secs(1));
            let _ = shared.crash.send(());
            return;
        }
        {
            let mut stored = lock(&shared.stored);
            if stored.contains(&id) {
                println!(
                    "{}    server: {id} again (a duplicate; acknowledged)",
                    (shared.at)()
                );
            } else {
                stored.push(id);
            }
        }
        let ack = serde_json::json!({ "ack": id, "echo": value["text"] });
        if socket
            .send(Message::Text(ack.to_string().into()))
            .await
            .is_err()
        {
            return;
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
