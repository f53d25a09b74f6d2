//! No token in any `log` record from the client's side, at TRACE, with
//! nothing compiled out: tungstenite logs each handshake request it writes
//! and each frame it writes or reads (payload included) at TRACE, so the
//! client keeps its handshakes and its in-band `auth` frames away from it.
//!
//! `log` has one logger per process: this one records only the threads that
//! ask for it (a `#[tokio::test]` runs the client's tasks on its own thread).
//! The test servers run on a runtime of their own, on other threads: a
//! server reads the token, and what it logs is not the client's.

use std::cell::Cell;
use std::sync::{Mutex, OnceLock};
use std::thread::{self, ThreadId};
use std::time::Duration;

use log::LevelFilter;
use sessionkit_realtime::{Backoff, RealtimeClient, State, TokenTransport};

use crate::support::{Command, Rotating, TokenIn, WsServer, lock, wait_for};

/// One `log` record: the thread it came from, its target, its text.
struct Line {
    thread: ThreadId,
    target: String,
    text: String,
}

static LINES: Mutex<Vec<Line>> = Mutex::new(Vec::new());

thread_local! {
    static CAPTURING: Cell<bool> = const { Cell::new(false) };
}

/// Keeps every record (any level) from the threads that capture.
struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        CAPTURING.with(Cell::get)
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            let line = Line {
                thread: thread::current().id(),
                target: record.target().to_owned(),
                text: format!("{} {}: {}", record.level(), record.target(), record.args()),
            };
            lock(&LINES).push(line);
        }
    }

    fn flush(&self) {}
}

/// Records every `log` record from this thread from now on, at TRACE.
fn capture_this_thread() {
    static LOGGER: Capture = Capture;
    static INSTALLED: OnceLock<bool> = OnceLock::new();
    let installed = *INSTALLED.get_or_init(|| log::set_logger(&LOGGER).is_ok());
    assert!(installed, "another `log` logger is installed");
    log::set_max_level(LevelFilter::Trace);
    CAPTURING.with(|on| on.set(true));
}

/// This thread's records so far: (target, text).
fn captured_here() -> Vec<(String, String)> {
    let here = thread::current().id();
    lock(&LINES)
        .iter()
        .filter(|line| line.thread == here)
        .map(|line| (line.target.clone(), line.text.clone()))
        .collect()
}

/// A runtime on its own thread for the servers.
fn server_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("log-test-servers")
        .enable_all()
        .build()
        .expect("server runtime")
}

fn hex(text: &str) -> String {
    use std::fmt::Write;
    text.bytes().fold(String::new(), |mut out, byte| {
        let _ = write!(out, "{byte:02x}");
        out
    })
}

/// Any reconnect would show up as `Reconnecting` for an hour.
fn glacial() -> Backoff {
    Backoff::new(Duration::from_secs(3600), 2.0, Duration::from_secs(3600))
}

#[tokio::test]
async fn no_log_record_holds_a_token_in_any_transport_or_in_band() {
    capture_this_thread();
    // Nothing compiles `log` records out: the app's ceiling is its own.
    assert_eq!(log::STATIC_MAX_LEVEL, LevelFilter::Trace);
    let servers = server_runtime();
    for (transport, token_in) in [
        (TokenTransport::Header, TokenIn::Header),
        (
            TokenTransport::subprotocol("bearer"),
            TokenIn::Subprotocol("bearer".to_owned()),
        ),
        (
            TokenTransport::query_parameter("access_token"),
            TokenIn::Query("access_token".to_owned()),
        ),
    ] {
        // tok-0 is refused (a 401 handshake), tok-1 connects and is replaced
        // in band by tok-2.
        let server = servers
            .spawn(async move {
                let server = WsServer::start(&["tok-1"]).await;
                server.expect_token_in(token_in);
                server.stop_echoing();
                server
            })
            .await
            .expect("server");
        let source = Rotating::expiring(Duration::from_millis(600));
        let (client, mut incoming) = RealtimeClient::builder(server.url())
            .backoff(glacial())
            .token_transport(transport.clone())
            .refresh_in_band(|token| format!(r#"{{"type":"auth","token":"{}"}}"#, token.secret()))
            .build(source.clone())
            .expect("client");
        let mut state = client.state();
        wait_for(&mut state, |s| {
            matches!(s, State::Connected { generation: 2 })
        })
        .await;
        // tok-1 expires (re-authentication in band at ~300 ms); tok-2 does not.
        source.set_lifetime(None);
        client.send("hello").await.expect("send");
        let received = server.received_at_least(2).await;
        assert!(
            received.contains(&r#"{"type":"auth","token":"tok-2"}"#.to_owned()),
            "{transport:?}: {received:?}"
        );
        server.command(Command::Broadcast("welcome".to_owned()));
        assert!(incoming.recv().await.is_some(), "{transport:?}");
        assert_eq!(server.accepted(), ["tok-1"], "{transport:?}");
        client.shutdown().await;
    }
    servers.shutdown_background();

    let records = captured_here();
    let text: Vec<&str> = records.iter().map(|(_, text)| text.as_str()).collect();
    let all = text.join("\n");
    // tungstenite's records reach the logger, frame payloads included: a
    // token in any of them would be seen.
    assert!(
        records
            .iter()
            .any(|(target, _)| target.starts_with("tungstenite::")),
        "no tungstenite record captured:\n{all}"
    );
    assert!(
        all.contains(&hex("hello")),
        "no frame payload captured:\n{all}"
    );
    assert!(
        all.contains("welcome"),
        "no received message captured:\n{all}"
    );
    // Plain (requests, `Debug` of frames) or hex (`Display` of frames).
    let secrets = ["tok-".to_owned(), hex("tok-")];
    let leaks: Vec<&&str> = text
        .iter()
        .filter(|t| secrets.iter().any(|secret| t.contains(secret.as_str())))
        .collect();
    assert!(leaks.is_empty(), "a token in the log records: {leaks:#?}");
}

#[tokio::test]
async fn no_log_record_holds_a_dpop_token_or_proof() {
    capture_this_thread();
    let servers = server_runtime();
    let server = servers
        .spawn(async move {
            let server = WsServer::start(&["tok-dpop"]).await;
            server.expect_token_in(TokenIn::Dpop);
            server
        })
        .await
        .expect("server");
    let source = crate::dpop::Signing::new("tok-dpop");
    let (client, mut incoming) = RealtimeClient::builder(server.url())
        .backoff(glacial())
        .build(source.clone())
        .expect("client");
    let mut state = client.state();
    wait_for(&mut state, |s| matches!(s, State::Connected { .. })).await;
    client.send("hello").await.expect("send");
    assert!(incoming.recv().await.is_some());
    assert_eq!(server.accepted(), ["tok-dpop"]);
    client.shutdown().await;
    servers.shutdown_background();

    let proofs = source.proofs();
    assert_eq!(proofs.len(), 1);
    let records = captured_here();
    let all: Vec<&str> = records.iter().map(|(_, text)| text.as_str()).collect();
    assert!(
        all.iter().any(|t| t.contains(&hex("hello"))),
        "no frame payload captured:\n{all:#?}"
    );
    // The token, and each part of the proof (its header, claims, signature).
    let mut secrets = vec!["tok-dpop".to_owned(), hex("tok-dpop")];
    secrets.extend(proofs[0].split('.').map(str::to_owned));
    let leaks: Vec<&&str> = all
        .iter()
        .filter(|t| secrets.iter().any(|secret| t.contains(secret.as_str())))
        .collect();
    assert!(
        leaks.is_empty(),
        "a token or proof in the log records: {leaks:#?}"
    );
}
