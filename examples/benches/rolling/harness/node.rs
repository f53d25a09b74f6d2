//! One chat-server node as a child process (the package's own
//! `chat-server` binary, as deployed): started on a free port, stopped with
//! SIGTERM (graceful: close 1001 to every client) or SIGKILL (no close
//! frame), started again on the same port and database, and its CPU time
//! read from `/proc/PID/stat`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

/// How a node is stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    /// SIGTERM: chat-server closes every connection with 1001 and exits.
    Term,
    /// SIGKILL: the kernel closes the sockets; no close frame.
    Kill,
}

impl Signal {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Term => "SIGTERM",
            Self::Kill => "SIGKILL",
        }
    }
}

/// A running (or stopped) `chat-server` process.
pub(crate) struct Node {
    child: Option<Child>,
    pub(crate) pid: u32,
    pub(crate) url: String,
    port: u16,
    issuer: String,
    db: String,
    /// `--max-pending-per-ip`, when not the server's default.
    pending_cap: Option<usize>,
    log: PathBuf,
}

impl Node {
    /// Starts `chat-server --db DB` for the provider at `issuer` on a free
    /// port (with `--max-pending-per-ip` when `pending_cap` is set); its
    /// stderr goes to `log` (appended to across restarts).
    pub(crate) async fn start(
        issuer: &str,
        db: &str,
        pending_cap: Option<usize>,
        log: &Path,
    ) -> Self {
        let (child, pid, url) = spawn(issuer, db, pending_cap, "127.0.0.1:0", log)
            .await
            .unwrap_or_else(|e| panic!("chat-server does not start: {e}"));
        let port = url::Url::parse(&url)
            .ok()
            .and_then(|u| u.port())
            .unwrap_or_else(|| panic!("no port in {url}"));
        Self {
            child: Some(child),
            pid,
            url,
            port,
            issuer: issuer.to_owned(),
            db: db.to_owned(),
            pending_cap,
            log: log.to_owned(),
        }
    }

    /// Sends `signal`; returns once the process has exited.
    pub(crate) async fn stop(&mut self, signal: Signal) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        match signal {
            Signal::Kill => child.start_kill().expect("SIGKILL"),
            Signal::Term => {
                let status = Command::new("kill")
                    .args(["-TERM", &self.pid.to_string()])
                    .status()
                    .await
                    .expect("run kill");
                assert!(status.success(), "kill -TERM {} failed", self.pid);
            }
        }
        // chat-server waits up to 5 s for its connections to close.
        match tokio::time::timeout(Duration::from_secs(15), child.wait()).await {
            Ok(status) => {
                status.expect("wait for chat-server");
            }
            Err(_) => panic!(
                "chat-server {} still running after {}",
                self.pid,
                signal.name()
            ),
        }
    }

    /// Starts it again on the same port and database (the port may take a
    /// moment to be free).
    pub(crate) async fn restart(&mut self) {
        assert!(self.child.is_none(), "the node is running");
        let bind = format!("127.0.0.1:{}", self.port);
        let mut last = String::new();
        for _ in 0..100 {
            match spawn(&self.issuer, &self.db, self.pending_cap, &bind, &self.log).await {
                Ok((child, pid, url)) => {
                    assert_eq!(url, self.url, "the node came back elsewhere");
                    self.child = Some(child);
                    self.pid = pid;
                    return;
                }
                Err(e) => last = e,
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("chat-server does not start again on {bind}: {last}");
    }

    /// The process's CPU time (user + system, all threads) in clock ticks.
    pub(crate) fn cpu_ticks(&self) -> u64 {
        cpu_ticks(self.pid).unwrap_or(0)
    }
}

/// Spawns one `chat-server`; returns it, its pid and its URL once it printed
/// its listening line, or what it said on the way out.
async fn spawn(
    issuer: &str,
    db: &str,
    pending_cap: Option<usize>,
    bind: &str,
    log: &Path,
) -> Result<(Child, u32, String), String> {
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| format!("open {}: {e}", log.display()))?;
    let mut command = Command::new(env!("CARGO_BIN_EXE_chat-server"));
    command.args([
        "--bind", bind, "--issuer", issuer, "--db", db, "--log", "warn",
    ]);
    if let Some(n) = pending_cap {
        command.args(["--max-pending-per-ip", &n.to_string()]);
    }
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(stderr))
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("spawn chat-server: {e}"))?;
    let pid = child.id().ok_or("chat-server exited at once")?;
    let mut lines = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
    let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .map_err(|_| "no listening line within 30 s".to_owned())?
        .map_err(|e| format!("read stdout: {e}"))?;
    match first
        .as_deref()
        .and_then(|l| l.strip_prefix("chat-server listening on "))
    {
        Some(url) => {
            // Keep reading so that a full pipe never blocks it.
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            Ok((child, pid, url.to_owned()))
        }
        None => {
            let _ = child.wait().await;
            let said = std::fs::read_to_string(log).unwrap_or_default();
            let tail: Vec<&str> = said.lines().rev().take(3).collect();
            Err(format!("exited: {}", tail.join(" | ")))
        }
    }
}

/// User + system CPU time of process `pid` (all its threads), in clock
/// ticks: fields 14 and 15 of `/proc/PID/stat`.
pub(crate) fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// The parent of process `pid` (field 4 of `/proc/PID/stat`).
fn parent(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..]
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The postmaster of the cluster behind `backend` (a backend's parent).
pub(crate) fn postmaster_of(backend: u32) -> Option<u32> {
    parent(backend)
}

/// CPU ticks of a PostgreSQL cluster: its postmaster and every process it
/// started (backends, WAL writer, checkpointer, …), not other clusters
/// that may run on the machine.
pub(crate) fn postgres_ticks(postmaster: u32) -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid == postmaster || parent(pid) == Some(postmaster))
        .filter_map(cpu_ticks)
        .sum()
}

/// The kernel's count of connections dropped because a listening
/// socket's accept queue was full (`TcpExt: ListenOverflows` in
/// `/proc/net/netstat`; for the whole network namespace). A dropped
/// handshake is retried by the client's kernel after 1 s.
pub(crate) fn listen_overflows() -> u64 {
    let Ok(text) = std::fs::read_to_string("/proc/net/netstat") else {
        return 0;
    };
    let mut lines = text.lines();
    while let (Some(names), Some(values)) = (lines.next(), lines.next()) {
        if !names.starts_with("TcpExt:") {
            continue;
        }
        let at = names
            .split_whitespace()
            .position(|n| n == "ListenOverflows");
        return at
            .and_then(|i| values.split_whitespace().nth(i)?.parse().ok())
            .unwrap_or(0);
    }
    0
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on Linux if that fails).
pub(crate) fn ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}
