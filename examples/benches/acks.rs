//! Durable, acknowledged messages per second on one chat-server node: N
//! senders (each its own user and WebSocket) post to a few rooms and count
//! the acks they get; an ack comes only after the message's transaction
//! committed (SQLite: a file with WAL and `synchronous=FULL`; PostgreSQL:
//! the default `synchronous_commit=on`).
//!
//! ```text
//! cargo bench -p sessionkit-examples --bench acks                      # SQLite only
//! .ci/with-postgres cargo bench -p sessionkit-examples --bench acks    # and PostgreSQL
//! ```
//!
//! Options (after `--`): `--seconds N` (default 5), `--senders 10,100`,
//! `--window 1,16` (sends each sender keeps unacknowledged: 1 waits for
//! every ack before the next send), `--max-batch N` (messages per
//! transaction; 1 turns group commit off). A plain harness: one line per
//! case.

#![allow(missing_docs)]

#[path = "common/device_token.rs"]
mod device_token;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use device_token::device_token;
use futures_util::{SinkExt as _, StreamExt as _};
use sessionkit_examples::protocol::{ClientFrame, ServerFrame};
use sessionkit_examples::server::{
    ChatServer, ConnectionLimits, Database, ServerConfig, UserLimits,
};
use sessionkit_mock_idp::MockIdp;
use sessionkit_tests::postgres::TestDatabase;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;

struct Options {
    seconds: u64,
    max_batch: Option<usize>,
    senders: Vec<usize>,
    windows: Vec<usize>,
}

fn options() -> Options {
    let mut o = Options {
        seconds: 5,
        max_batch: None,
        senders: vec![10, 100],
        windows: vec![1, 16],
    };
    let args: Vec<String> = std::env::args().collect();
    let list = |v: &str| v.split(',').filter_map(|n| n.parse().ok()).collect();
    for pair in args.windows(2) {
        match pair[0].as_str() {
            "--seconds" => o.seconds = pair[1].parse().unwrap_or(o.seconds),
            "--senders" => o.senders = list(&pair[1]),
            "--window" => o.windows = list(&pair[1]),
            "--max-batch" => o.max_batch = pair[1].parse().ok(),
            _ => {}
        }
    }
    o
}

/// Sends for `seconds` keeping `window` sends unacknowledged; counts acks.
async fn sender(
    url: String,
    token: String,
    n: usize,
    window: usize,
    stop: Instant,
    acks: Arc<AtomicU64>,
) {
    let mut request = url.into_client_request().expect("request");
    request.headers_mut().insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {token}")).expect("header"),
    );
    let (ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("connect");
    let (mut tx, mut rx) = ws.split();
    let mut sent = 0_u64;
    let mut acked = 0_u64;
    let room = format!("room{}", n % 4);
    loop {
        while sent - acked < window as u64 && Instant::now() < stop {
            sent += 1;
            let frame = ClientFrame::Send {
                room: room.clone(),
                id: format!("{n}-{sent}"),
                text: "a message of an ordinary length, about sixty bytes".into(),
            };
            tx.send(Message::text(serde_json::to_string(&frame).expect("JSON")))
                .await
                .expect("send");
        }
        if acked == sent {
            break;
        }
        match rx.next().await {
            Some(Ok(Message::Text(text))) => match serde_json::from_str(text.as_str()) {
                Ok(ServerFrame::Ack { .. }) => {
                    acked += 1;
                    if Instant::now() < stop {
                        acks.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Ok(ServerFrame::Error { code, message, .. }) => panic!("{code}: {message}"),
                _ => {}
            },
            Some(Ok(_)) => {}
            other => panic!("connection ended: {other:?}"),
        }
    }
}

async fn case(
    max_batch: Option<usize>,
    idp: &MockIdp,
    tokens: &[String],
    db: Database,
    senders: usize,
    window: usize,
    seconds: u64,
) -> f64 {
    let mut config = ServerConfig::new(idp.issuer());
    config.db = db;
    if let Some(max_batch) = max_batch {
        config.max_batch = max_batch;
    }
    config.users = UserLimits {
        frames_per_second: 1_000_000,
        frame_burst: 1_000_000,
        ..UserLimits::default()
    };
    // All senders connect at once from one address.
    config.connections = ConnectionLimits {
        max_pending_per_ip: 1_000,
        ..ConnectionLimits::default()
    };
    let server = ChatServer::start(config).await.expect("server");
    let acks = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let stop = start + Duration::from_secs(seconds);
    let tasks: Vec<_> = tokens[..senders]
        .iter()
        .enumerate()
        .map(|(n, t)| {
            tokio::spawn(sender(
                server.ws_url(),
                t.clone(),
                n,
                window,
                stop,
                acks.clone(),
            ))
        })
        .collect();
    for task in tasks {
        task.await.expect("sender");
    }
    server.shutdown().await;
    acks.load(Ordering::Relaxed) as f64 / seconds as f64
}

fn main() {
    let options = options();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let idp = MockIdp::builder().start().await.expect("idp");
        let http = reqwest::Client::new();
        let most = options.senders.iter().copied().max().unwrap_or(0);
        let mut tokens = Vec::new();
        for i in 0..most {
            tokens.push(device_token(&http, &idp, &format!("sender{i}")).await);
        }
        let scratch = sessionkit_tests::scratch::ScratchDir::new("acks-bench");
        let mut pg = TestDatabase::create("acks_bench").await;
        for &senders in &options.senders {
            for &window in &options.windows {
                let file = scratch.path().join(format!("chat-{senders}-{window}.db"));
                let rate = case(options.max_batch, &idp, &tokens, Database::File(file), senders, window, options.seconds).await;
                println!("sqlite (file, WAL, synchronous=FULL)  senders {senders:>3}  window {window:>2}: {rate:>8.0} acked messages/s");
                if pg.is_some() {
                    // A fresh database per case: new rooms, new ids.
                    let fresh = TestDatabase::create("acks_bench").await;
                    let db = Database::from_arg(fresh.as_ref().expect("a cluster").url());
                    pg = fresh;
                    let rate = case(options.max_batch, &idp, &tokens, db, senders, window, options.seconds).await;
                    println!("postgres (synchronous_commit=on)      senders {senders:>3}  window {window:>2}: {rate:>8.0} acked messages/s");
                }
            }
        }
    });
}
