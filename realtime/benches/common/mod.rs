//! Shared by the realtime benchmarks: a WebSocket server that runs as a
//! child process (the bench binary re-run with the argument `server`), so
//! the client process's memory and file descriptors are its own, and the
//! process's resident memory.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures_util::StreamExt;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio_util::sync::CancellationToken;

/// The number in the environment variable `name`, else `default`.
pub(crate) fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The process's resident set size in KiB (`VmRSS` in /proc/self/status).
pub(crate) fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// Whether this run is the child server (`<bench binary> server`).
pub(crate) fn is_server() -> bool {
    std::env::args().nth(1).as_deref() == Some("server")
}

struct Shared {
    open: AtomicUsize,
    /// When the last `drop` happened (or the start).
    epoch: Mutex<Instant>,
    /// TCP accepts since `epoch`, in µs after it.
    stamps: Mutex<Vec<u64>>,
    /// Cancelled by `drop`: every connection open then ends at once.
    cut: Mutex<CancellationToken>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The child: listens on 127.0.0.1:0, prints `listening ADDR`, accepts
/// WebSocket connections (any bearer token) and keeps them open, and
/// answers commands on stdin, one a line: `count` (open connections),
/// `drop` (ends every connection at once, no close frame, and starts
/// recording accept times), `stamps` (the accept times since the drop, µs,
/// comma-separated), `quit`.
pub(crate) fn serve() {
    // Two workers: accepting goes on while a `drop` tears connections down.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let socket = TcpSocket::new_v4().expect("socket");
        socket.set_reuseaddr(true).expect("reuseaddr");
        socket
            .bind("127.0.0.1:0".parse().expect("addr"))
            .expect("bind");
        let listener = socket.listen(4096).expect("listen");
        let shared = Arc::new(Shared {
            open: AtomicUsize::new(0),
            epoch: Mutex::new(Instant::now()),
            stamps: Mutex::new(Vec::new()),
            cut: Mutex::new(CancellationToken::new()),
        });
        let mut out = tokio::io::stdout();
        let line = format!("listening {}\n", listener.local_addr().expect("addr"));
        out.write_all(line.as_bytes()).await.expect("stdout");
        out.flush().await.expect("stdout");
        let accepting = shared.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let at = lock(&accepting.epoch).elapsed();
                lock(&accepting.stamps).push(u64::try_from(at.as_micros()).unwrap_or(u64::MAX));
                let cut = lock(&accepting.cut).clone();
                tokio::spawn(connection(tcp, accepting.clone(), cut));
            }
        });
        let mut lines = BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(command)) = lines.next_line().await {
            let answer = match command.trim() {
                "count" => shared.open.load(Ordering::SeqCst).to_string(),
                "drop" => {
                    let old = std::mem::take(&mut *lock(&shared.cut));
                    lock(&shared.stamps).clear();
                    *lock(&shared.epoch) = Instant::now();
                    old.cancel();
                    "dropped".to_owned()
                }
                "stamps" => lock(&shared.stamps)
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
                "quit" => break,
                other => format!("unknown command {other}"),
            };
            out.write_all(format!("{answer}\n").as_bytes())
                .await
                .expect("stdout");
            out.flush().await.expect("stdout");
        }
    });
}

async fn connection(tcp: TcpStream, shared: Arc<Shared>, cut: CancellationToken) {
    let _ = tcp.set_nodelay(true);
    let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
        return;
    };
    shared.open.fetch_add(1, Ordering::SeqCst);
    loop {
        tokio::select! {
            () = cut.cancelled() => break,
            frame = ws.next() => match frame {
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break,
            },
        }
    }
    shared.open.fetch_sub(1, Ordering::SeqCst);
}

/// The server child, driven through its stdin and stdout.
pub(crate) struct ServerChild {
    child: Child,
    stdin: ChildStdin,
    stdout: tokio::io::Lines<BufReader<ChildStdout>>,
    pub(crate) addr: SocketAddr,
}

impl ServerChild {
    /// Starts this bench binary again as the server.
    pub(crate) async fn spawn() -> Self {
        let exe = std::env::current_exe().expect("current exe");
        let mut child = Command::new(exe)
            .arg("server")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn the server");
        let stdin = child.stdin.take().expect("stdin");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let first = stdout.next_line().await.expect("read").expect("a line");
        let addr = first
            .strip_prefix("listening ")
            .expect("listening line")
            .parse()
            .expect("address");
        Self {
            child,
            stdin,
            stdout,
            addr,
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// Sends a command and returns the answer line.
    pub(crate) async fn command(&mut self, command: &str) -> String {
        self.stdin
            .write_all(format!("{command}\n").as_bytes())
            .await
            .expect("write");
        self.stdin.flush().await.expect("flush");
        self.stdout
            .next_line()
            .await
            .expect("read")
            .expect("answer")
    }

    pub(crate) async fn open(&mut self) -> usize {
        self.command("count").await.parse().expect("count")
    }

    pub(crate) async fn quit(mut self) {
        let _ = self.stdin.write_all(b"quit\n").await;
        let _ = self.child.wait().await;
    }
}
