//! The database: created and migrated at start, reopened as it is, and no
//! acknowledged message lost when the `chat-server` binary is killed with
//! SIGKILL. Also the binary's first line, its exit on SIGTERM and on errors.

use std::collections::BTreeMap;
use std::process::Stdio;

use sessionkit_examples::protocol::ServerFrame;
use sessionkit_examples::server::{ChatServer, Database, ServerConfig};
use sessionkit_mock_idp::MockIdp;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

use crate::support::{Client, TempDir, idp, open, token, within};

/// Starts the binary; returns it and the WebSocket URL from its first line.
async fn spawn(idp: &MockIdp, db: &str) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_chat-server"))
        .args([
            "--bind",
            "127.0.0.1:0",
            "--issuer",
            idp.issuer(),
            "--db",
            db,
        ])
        .args(["--log", "warn"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("chat-server starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    within(
        "the listening line",
        BufReader::new(stdout).read_line(&mut line),
    )
    .await
    .expect("read stdout");
    let url = line
        .trim_end()
        .strip_prefix("chat-server listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    assert!(
        url.starts_with("ws://127.0.0.1:") && url.ends_with("/ws"),
        "{url}"
    );
    (child, url)
}

/// A client of a server known only by its URL.
async fn connect(url: &str, token: &str) -> Client {
    let ws = open(url, Some(token)).await.expect("handshake");
    Client::from_ws(ws).await
}

#[tokio::test]
async fn acknowledged_messages_survive_sigkill() {
    const SENT: usize = 400;
    /// The ack after which the server is killed, while the rest are being written.
    const KILL_AFTER: usize = 25;
    let idp = idp().await;
    let dir = TempDir::new("sigkill");
    let db = dir.0.join("chat.db");
    let db = db.to_str().expect("utf-8 path");
    let alice = token(&idp, "alice").await;

    let (mut child, url) = spawn(&idp, db).await;
    let mut client = connect(&url, &alice).await;
    // Text big enough that the server is still busy writing when it dies.
    let text = |i: usize| format!("text {i} {}", "x".repeat(2_000));
    for i in 0..SENT {
        let room = if i % 3 == 0 { "side" } else { "general" };
        client.post_nowait(room, &format!("m{i}"), &text(i)).await;
    }
    // Kill it in the middle of the stream, right after the N-th ack: every
    // ack read so far must survive, whatever else was or was not written.
    let mut acked: BTreeMap<String, (String, u64)> = BTreeMap::new();
    while acked.len() < KILL_AFTER {
        if let ServerFrame::Ack { room, id, seq } = client.frame().await {
            acked.insert(id, (room, seq));
        }
    }
    child.start_kill().expect("SIGKILL");
    child.wait().await.expect("reaped");
    drop(client);

    let (mut child, url) = spawn(&idp, db).await;
    let mut client = connect(&url, &alice).await;
    let mut stored = 0;
    for room in ["general", "side"] {
        let (history, last) = client.join(room, 0).await;
        let seqs: Vec<u64> = history.iter().map(|m| m.seq).collect();
        assert_eq!(
            seqs,
            (1..=last).collect::<Vec<_>>(),
            "{room}: in order, no gap, no duplicate"
        );
        for m in &history {
            let i: usize = m.id[1..].parse().expect("an id we sent");
            assert_eq!(m.text, text(i), "stored whole");
        }
        stored += history.len();
        for (id, (r, seq)) in acked.iter().filter(|(_, (r, _))| r == room) {
            let found: Vec<_> = history.iter().filter(|m| &m.id == id).collect();
            assert_eq!(found.len(), 1, "{id} stored once");
            assert_eq!(
                (&found[0].room, found[0].seq),
                (r, *seq),
                "{id} keeps its seq"
            );
        }
    }
    assert!(stored >= KILL_AFTER, "{stored} stored");
    // Not asserted (it depends on the machine's speed), but the point of the test:
    // the kill came while messages were still being written.
    eprintln!("{stored} of {SENT} messages were stored when the server was killed");
    // Resending an acknowledged message after the restart is still idempotent.
    let (id, (room, seq)) = acked.iter().next().expect("an ack");
    assert_eq!(client.post(room, id, "again").await, *seq);
    child.kill().await.expect("SIGKILL");
}

#[cfg(unix)]
#[tokio::test]
async fn sigterm_stops_the_binary_with_status_0() {
    let idp = idp().await;
    let (mut child, url) = spawn(&idp, ":memory:").await;
    let mut client = connect(&url, &token(&idp, "alice").await).await;
    client.assert_alive().await;
    let pid = child.id().expect("pid").to_string();
    let kill = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .expect("kill");
    assert!(kill.success());
    let status = within("exit after SIGTERM", child.wait())
        .await
        .expect("wait");
    assert!(status.success(), "{status:?}");
    // Open connections were told the server is going away.
    assert_eq!(client.closed().await.0, 1001);
}

#[tokio::test]
async fn the_binary_reports_errors_on_stderr_with_a_failure_status() {
    let dir = TempDir::new("bad-db");
    let db = dir.0.join("missing-dir").join("chat.db");
    let output = within(
        "chat-server fails",
        Command::new(env!("CARGO_BIN_EXE_chat-server"))
            .args(["--bind", "127.0.0.1:0", "--db"])
            .arg(&db)
            .output(),
    )
    .await
    .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.lines().any(|l| l.starts_with("error: ")), "{stderr}");
    assert!(output.stdout.is_empty(), "no listening line");
}

#[tokio::test]
async fn the_database_file_is_created_migrated_and_reopened() {
    let idp = idp().await;
    let dir = TempDir::new("migrate");
    let path = dir.0.join("chat.db");
    let mut config = ServerConfig::new(idp.issuer());
    config.db = Database::File(path.clone());
    let server = ChatServer::start(config.clone()).await.expect("start");
    assert!(path.exists(), "created at start");
    {
        let conn = rusqlite::Connection::open(&path).expect("open");
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .expect("user_version");
        assert_eq!(version, 2);
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .expect("journal_mode");
        assert_eq!(mode, "wal");
    }
    let alice = token(&idp, "alice").await;
    let mut client = Client::connect(&server, &alice).await;
    assert_eq!(client.post("general", "a", "kept").await, 1);
    drop(client);
    server.shutdown().await;

    let server = ChatServer::start(config.clone()).await.expect("reopen");
    let mut client = Client::connect(&server, &alice).await;
    let (history, last) = client.join("general", 0).await;
    assert_eq!((history.len(), last), (1, 1));
    assert_eq!(history[0].text, "kept");
    assert_eq!(client.post("general", "b", "next").await, 2);
    drop(client);
    server.shutdown().await;

    // A database from a newer server is refused, not damaged.
    {
        let conn = rusqlite::Connection::open(&path).expect("open");
        conn.pragma_update(None, "user_version", 99).expect("set");
    }
    let err = ChatServer::start(config)
        .await
        .expect_err("a newer schema is refused");
    assert!(err.to_string().contains("schema version 99"), "{err}");
}
