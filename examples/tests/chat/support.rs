//! The pieces every `chat` test needs: a mock IdP and a chat server on free
//! ports, the `chat` binary with its own HOME and keychain namespace, and a
//! driver for `chat --plain` over pipes.
//!
//! (Over 500 lines: the support of every `chat` test in one place — the
//! stack, the users and the `--plain` driver — so the tests stay short.)

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sessionkit_examples::server::{ChatServer, Database, PostgresUrl, ServerConfig};
use sessionkit_mock_idp::MockIdp;
use sessionkit_tests::postgres::TestDatabase;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// How long any one expected thing may take.
pub const PATIENCE: Duration = Duration::from_secs(30);

pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A fresh directory under the temp dir.
pub fn scratch(prefix: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "sk-chat-{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// How many chat-server nodes a [`Stack`] runs: `SESSIONKIT_CHAT_NODES`
/// (1 by default). With 2 or 3 the nodes share one PostgreSQL database (a
/// database of its own per stack, on `SESSIONKIT_PG_URL`'s cluster), and
/// every user's `chat` gets every node with `--server`, so the same tests
/// run on one node and on several (`.ci/run` does both).
pub fn nodes() -> usize {
    match std::env::var("SESSIONKIT_CHAT_NODES") {
        Err(_) => 1,
        Ok(n) => n
            .parse()
            .ok()
            .filter(|n| (1..=5).contains(n))
            .unwrap_or_else(|| panic!("SESSIONKIT_CHAT_NODES={n}: want 1 to 5")),
    }
}

/// A mock IdP and chat-server nodes (in this process) wired for back-channel
/// logout: one node on SQLite, or [`nodes`] nodes on one PostgreSQL database.
pub struct Stack {
    pub idp: MockIdp,
    servers: Vec<ChatServer>,
    /// The first node's URL.
    pub server_url: String,
    /// Every node's URL.
    pub server_urls: Vec<String>,
    pub dir: PathBuf,
    postgres: Option<TestDatabase>,
    /// Users are spread over the nodes in turn (see [`User::new`]).
    next_user: AtomicUsize,
}

impl Stack {
    /// Access tokens live `ttl` seconds (mock-idp's default without).
    pub async fn start(ttl: Option<u64>) -> Self {
        let mut builder = MockIdp::builder().bind("127.0.0.1:0");
        if let Some(ttl) = ttl {
            builder = builder.access_token_ttl(ttl);
        }
        Self::with_idp(builder.start().await.expect("mock idp")).await
    }

    /// Chat-server nodes for `idp`, wired for back-channel logout (sent to
    /// the first node; the others hear of it through PostgreSQL).
    pub async fn with_idp(idp: MockIdp) -> Self {
        let dir = scratch("stack");
        let count = nodes();
        let postgres = if count > 1 {
            Some(TestDatabase::create("chat_stack").await.unwrap_or_else(|| {
                panic!(
                    "SESSIONKIT_CHAT_NODES={count} needs PostgreSQL: run under .ci/with-postgres"
                )
            }))
        } else {
            None
        };
        let mut stack = Self {
            idp,
            servers: Vec::new(),
            server_url: String::new(),
            server_urls: Vec::new(),
            dir,
            postgres,
            next_user: AtomicUsize::new(0),
        };
        for _ in 0..count {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let server = ChatServer::start_on(listener, stack.config())
                .await
                .expect("chat server");
            stack.server_urls.push(server.ws_url());
            stack.servers.push(server);
        }
        stack.server_url = stack.server_urls[0].clone();
        stack
            .idp
            .control()
            .set_backchannel_logout_uri(
                "chat-example",
                Some(&stack.servers[0].backchannel_logout_url()),
            )
            .expect("back-channel uri");
        stack
    }

    /// The node the next user is given: each in turn, so that with several
    /// nodes two users of a test are on different nodes and every line they
    /// exchange crosses PostgreSQL's fan-out.
    fn next_node(&self) -> String {
        let n = self.next_user.fetch_add(1, Ordering::Relaxed);
        self.server_urls[n % self.server_urls.len()].clone()
    }

    fn config(&self) -> ServerConfig {
        let mut config = ServerConfig::new(self.idp.issuer());
        config.db = match &self.postgres {
            Some(db) => Database::Postgres(PostgresUrl::new(db.url())),
            None => Database::File(self.dir.join("chat.db")),
        };
        config
    }

    /// Stops every chat-server node (their sockets close).
    pub async fn stop_server(&mut self) {
        for server in self.servers.drain(..) {
            server.shutdown().await;
        }
    }

    /// Stops the nodes, empties their database, and starts them again.
    pub async fn reset_server(&mut self) {
        self.stop_server().await;
        if let Some(db) = &self.postgres {
            db.client()
                .await
                .batch_execute("TRUNCATE messages, rooms, revocations")
                .await
                .expect("empty the chat tables");
        }
        for name in ["chat.db", "chat.db-wal", "chat.db-shm"] {
            let _ = std::fs::remove_file(self.dir.join(name));
        }
        self.start_server().await;
    }

    /// Starts the nodes again on the same ports and database.
    pub async fn start_server(&mut self) {
        for url in self.server_urls.clone() {
            let addr = url::Url::parse(&url).expect("url");
            let addr = format!("127.0.0.1:{}", addr.port().expect("port"));
            self.servers.push(self.start_node_on(&addr).await);
        }
    }

    async fn start_node_on(&self, addr: &str) -> ChatServer {
        let mut last = None;
        for _ in 0..50 {
            match tokio::net::TcpListener::bind(addr).await {
                Ok(listener) => {
                    return ChatServer::start_on(listener, self.config())
                        .await
                        .expect("restart");
                }
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("cannot bind {addr} again: {last:?}");
    }
}

/// One user's `chat`: its own HOME (accounts file) and keychain namespace.
pub struct User {
    pub name: String,
    pub home: PathBuf,
    pub namespace: String,
    pub issuer: String,
    /// The chat-server nodes `chat` is given (`--server` each).
    pub servers: Vec<String>,
}

impl User {
    /// A user of `stack`'s provider on one of its nodes (in turn).
    pub fn new(name: &str, stack: &Stack) -> Self {
        let home = scratch(name);
        let namespace = format!(
            "sk-chat-test-{}",
            home.file_name().and_then(|n| n.to_str()).unwrap_or("x")
        );
        Self {
            name: name.to_owned(),
            home,
            namespace,
            issuer: stack.idp.issuer().to_owned(),
            servers: vec![stack.next_node()],
        }
    }

    /// A user of the provider at `issuer` and the chat server at `server_url`.
    pub fn at(name: &str, issuer: &str, server_url: &str) -> Self {
        let home = scratch(name);
        let namespace = format!(
            "sk-chat-test-{}",
            home.file_name().and_then(|n| n.to_str()).unwrap_or("x")
        );
        Self {
            name: name.to_owned(),
            home,
            namespace,
            issuer: issuer.to_owned(),
            servers: vec![server_url.to_owned()],
        }
    }

    /// Another account in the same HOME and namespace as `other`.
    pub fn beside(name: &str, other: &User) -> Self {
        Self {
            name: name.to_owned(),
            home: other.home.clone(),
            namespace: other.namespace.clone(),
            issuer: other.issuer.clone(),
            servers: other.servers.clone(),
        }
    }

    /// The same user on another chat server (that one only).
    pub fn on_server(mut self, url: &str) -> Self {
        self.servers = vec![url.to_owned()];
        self
    }

    /// `chat` with this user's options (issuer, server, keyutils store, namespace).
    pub fn command(&self) -> Command {
        let mut cmd = self.command_without_server();
        for server in &self.servers {
            cmd.args(["--server", server]);
        }
        cmd
    }

    /// `chat` with this user's options but no `--server`.
    pub fn command_without_server(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_chat"));
        cmd.args([
            "--issuer",
            &self.issuer,
            "--store",
            "keyutils",
            "--namespace",
            &self.namespace,
        ])
        .env("HOME", &self.home)
        .env("XDG_CONFIG_HOME", self.home.join(".config"))
        .env_remove("SESSIONKIT_ISSUER")
        .env_remove("SESSIONKIT_SERVER")
        .env_remove("SESSIONKIT_STORE")
        .env_remove("SESSIONKIT_NAMESPACE")
        .env_remove("SESSIONKIT_CLIENT_ID")
        .env_remove("SESSIONKIT_DPOP")
        .env("RUST_LOG", "warn")
        .kill_on_drop(true);
        cmd
    }

    /// Runs `chat ARGS` to the end.
    pub async fn run(&self, args: &[&str]) -> Output {
        let out = tokio::time::timeout(
            PATIENCE,
            self.command().args(args).stdin(Stdio::null()).output(),
        )
        .await
        .expect("chat finishes in time")
        .expect("chat runs");
        Output {
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// `chat login --no-browser`, with the provider logging in as this user
    /// when the printed URL is opened.
    pub async fn login(&self, idp: &MockIdp) {
        self.login_logged(idp, "warn").await;
    }

    /// `login` with `RUST_LOG=filter`; returns everything it printed.
    pub async fn login_logged(&self, idp: &MockIdp, filter: &str) -> String {
        self.login_with(idp, filter, &[], &[]).await
    }

    /// `chat ARGS login --no-browser` with `env` set and `RUST_LOG=filter`;
    /// returns everything it printed.
    pub async fn login_with(
        &self,
        idp: &MockIdp,
        filter: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> String {
        let mut child = self
            .command()
            .env("RUST_LOG", filter)
            .envs(env.iter().copied())
            .args(args)
            .args(["login", "--no-browser"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("chat login");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let first = tokio::time::timeout(PATIENCE, stdout.next_line())
            .await
            .expect("the URL line in time")
            .expect("read")
            .expect("a line");
        let url = first
            .strip_prefix("Open this URL to sign in: ")
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
            .to_owned();
        idp.control()
            .set_auto_login(Some(&self.name))
            .expect("auto login");
        reqwest::get(&url).await.expect("the browser's request");
        idp.control().set_auto_login(None).expect("auto login off");
        let second = tokio::time::timeout(PATIENCE, stdout.next_line())
            .await
            .expect("signed in in time")
            .expect("read");
        let status = child.wait().await.expect("wait");
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            use tokio::io::AsyncReadExt as _;
            let _ = e.read_to_string(&mut err).await;
        }
        assert!(status.success(), "login failed: {err}");
        assert_eq!(
            second.as_deref(),
            Some(format!("Signed in as {}", self.name).as_str())
        );
        let mut rest = String::new();
        while let Ok(Some(line)) = stdout.next_line().await {
            rest.push_str(&line);
            rest.push('\n');
        }
        format!("{first}\n{}\n{rest}{err}", second.unwrap_or_default())
    }

    /// Starts `chat --plain`.
    pub fn plain(&self) -> Plain {
        self.plain_with_log("warn")
    }

    /// Starts `chat --plain` with `RUST_LOG=filter`.
    pub fn plain_with_log(&self, filter: &str) -> Plain {
        self.spawn_plain(filter, &[])
    }

    /// Starts `chat --client-id CLIENT_ID --plain`.
    pub fn plain_as(&self, client_id: &str) -> Plain {
        self.spawn_plain("info", &["--client-id", client_id])
    }

    fn spawn_plain(&self, filter: &str, args: &[&str]) -> Plain {
        let mut cmd = self.command();
        cmd.env("RUST_LOG", filter).args(args);
        spawn_plain(cmd)
    }

    /// `chat --plain` on several chat servers: `--server` once per URL, or
    /// (with `env`) `SESSIONKIT_SERVER` as a comma-separated list.
    pub fn plain_on_servers(&self, servers: &[&str], env: bool) -> Plain {
        let mut cmd = self.command_without_server();
        if env {
            cmd.env("SESSIONKIT_SERVER", servers.join(","));
        } else {
            for server in servers {
                cmd.args(["--server", server]);
            }
        }
        spawn_plain(cmd)
    }

    /// Signs out of every account (keeps the kernel keyring clean).
    pub async fn cleanup(&self) {
        let _ = self.run(&["logout", "--all"]).await;
        let _ = std::fs::remove_dir_all(&self.home);
    }
}

/// Starts `cmd --plain` with its stdio on pipes.
fn spawn_plain(mut cmd: Command) -> Plain {
    let mut child = cmd
        .arg("--plain")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chat --plain");
    let stdin = child.stdin.take();
    let stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let stderr = Arc::new(Mutex::new(String::new()));
    let mut err_lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let sink = stderr.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = err_lines.next_line().await {
            let mut s = lock(&sink);
            s.push_str(&line);
            s.push('\n');
        }
    });
    Plain {
        child,
        stdin,
        stdout,
        seen: Vec::new(),
        stderr,
    }
}

pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn ok(&self) -> &str {
        assert!(
            self.status.success(),
            "chat failed: {}\n{}",
            self.stderr,
            self.stdout
        );
        &self.stdout
    }
}

/// alice and bob signed in, each with `chat --plain` joined to #general.
pub async fn chatting_pair(stack: &Stack) -> (User, User, Plain, Plain) {
    let (alice, bob) = (User::new("alice", stack), User::new("bob", stack));
    alice.login(&stack.idp).await;
    bob.login(&stack.idp).await;
    let (a, b) = (alice.plain(), bob.plain());
    a.expect_status("joined #general").await;
    b.expect_status("joined #general").await;
    (alice, bob, a, b)
}

/// `chat --plain` over pipes.
pub struct Plain {
    pub child: Child,
    stdin: Option<ChildStdin>,
    stdout: Lines<BufReader<ChildStdout>>,
    /// Every stdout line read so far.
    pub seen: Vec<String>,
    stderr: Arc<Mutex<String>>,
}

impl Plain {
    pub async fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .expect("write stdin");
        stdin.flush().await.expect("flush");
    }

    /// Reads stdout until a line equal to `want`.
    pub async fn expect_line(&mut self, want: &str) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while !self.seen.iter().any(|l| l == want) {
            let line = tokio::time::timeout_at(deadline, self.stdout.next_line())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "no line {want:?} in time; stdout so far {:?}; stderr:\n{}",
                        self.seen,
                        self.stderr()
                    )
                })
                .expect("read stdout");
            match line {
                Some(line) => self.seen.push(line),
                None => panic!(
                    "stdout ended before {want:?}; seen {:?}; stderr:\n{}",
                    self.seen,
                    self.stderr()
                ),
            }
        }
    }

    /// Waits until stderr contains `needle`.
    pub async fn expect_status(&self, needle: &str) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while !self.stderr().contains(needle) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no status {needle:?} in time; stderr:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn stderr(&self) -> String {
        lock(&self.stderr).clone()
    }

    /// Closes stdin (end of input).
    pub fn close_input(&mut self) {
        self.stdin = None;
    }

    /// Closes stdin and waits for the exit; the rest of stdout is in `seen`.
    pub async fn finish(mut self) -> (ExitStatus, Vec<String>, String) {
        self.close_input();
        self.exited().await
    }

    /// Closes stdin and waits up to `limit` for the exit.
    pub async fn finish_within(mut self, limit: Duration) -> (ExitStatus, Vec<String>, String) {
        self.close_input();
        self.exited_within(limit).await
    }

    /// Waits for the exit with stdin still open.
    pub async fn exited(self) -> (ExitStatus, Vec<String>, String) {
        self.exited_within(PATIENCE).await
    }

    async fn exited_within(mut self, limit: Duration) -> (ExitStatus, Vec<String>, String) {
        let status = tokio::time::timeout(limit, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("chat --plain did not exit; stderr:\n{}", self.stderr()))
            .expect("wait");
        while let Ok(Ok(Some(line))) =
            tokio::time::timeout(Duration::from_secs(5), self.stdout.next_line()).await
        {
            self.seen.push(line);
        }
        // Let the stderr reader drain.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let stderr = self.stderr();
        (status, self.seen, stderr)
    }
}

/// The lines of `seen` that are messages, as `(seq, user, text)`.
pub fn messages(seen: &[String]) -> Vec<(u64, String, String)> {
    seen.iter()
        .filter_map(|l| {
            let rest = l.strip_prefix('[')?;
            let (seq, rest) = rest.split_once("] ")?;
            let (user, text) = rest.split_once(": ")?;
            Some((seq.parse().ok()?, user.to_owned(), text.to_owned()))
        })
        .collect()
}

/// The mock IdP's fingerprint of a token: the first 6 bytes of its SHA-256, in hex.
pub fn fingerprint(word: &str) -> String {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, word.as_bytes()).as_ref()[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The `chat-server` binary as a child process, killed with SIGKILL and
/// restarted on the same port and database.
pub struct ServerProcess {
    child: Option<Child>,
    pub url: String,
    port: u16,
    db: OsString,
    issuer: String,
}

impl ServerProcess {
    pub async fn start(stack: &Stack) -> Self {
        Self::start_on(stack.idp.issuer(), stack.dir.join("process.db")).await
    }

    /// `chat-server --db DB` for the provider at `issuer`, `db` being an
    /// SQLite path or a `postgres://` URL (several nodes may share one).
    pub async fn start_on(issuer: &str, db: impl Into<OsString>) -> Self {
        let db = db.into();
        let (child, url) = Self::spawn(issuer, "127.0.0.1:0", &db)
            .await
            .expect("chat-server starts");
        let port = url::Url::parse(&url).expect("url").port().expect("port");
        Self {
            child: Some(child),
            url,
            port,
            db,
            issuer: issuer.to_owned(),
        }
    }

    async fn spawn(issuer: &str, bind: &str, db: &OsStr) -> Result<(Child, String), String> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_chat-server"))
            .args(["--bind", bind, "--issuer", issuer, "--log", "warn", "--db"])
            .arg(db)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn chat-server");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let first = tokio::time::timeout(PATIENCE, lines.next_line())
            .await
            .expect("listening line in time")
            .expect("read");
        match first
            .as_deref()
            .and_then(|l| l.strip_prefix("chat-server listening on "))
        {
            Some(url) => {
                // Keep reading its output so that a full pipe never blocks it.
                let mut stderr = BufReader::new(child.stderr.take().expect("stderr")).lines();
                tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
                tokio::spawn(async move { while let Ok(Some(_)) = stderr.next_line().await {} });
                Ok((child, url.to_owned()))
            }
            None => {
                let out = child.wait_with_output().await.expect("output");
                Err(String::from_utf8_lossy(&out.stderr).into_owned())
            }
        }
    }

    /// SIGKILL: no close frames, no shutdown.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("kill");
        }
    }

    /// Starts it again on the same port and database.
    pub async fn restart(&mut self) {
        let bind = format!("127.0.0.1:{}", self.port);
        let mut last = String::new();
        for _ in 0..50 {
            match Self::spawn(&self.issuer, &bind, &self.db).await {
                Ok((child, url)) => {
                    assert_eq!(url, self.url);
                    self.child = Some(child);
                    return;
                }
                Err(e) => last = e,
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("chat-server does not start again on {bind}: {last}");
    }
}

/// The URL `chat --plain` printed its `nth` (from 1) "connected to" for.
pub fn connected_to(stderr: &str, nth: usize) -> Option<String> {
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix("chat: connected to "))
        .nth(nth - 1)
        .map(|url| url.trim().to_owned())
}

/// Waits until `plain` has connected `nth` times (from 1); returns where.
pub async fn connection(plain: &Plain, nth: usize) -> String {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(url) = connected_to(&plain.stderr(), nth) {
            return url;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no connection #{nth}: {}",
            plain.stderr()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `user`'s `chat --plain` on `servers`, started again until its (random)
/// first pick is `want`; joined to #general.
pub async fn plain_landing_on(user: &User, servers: &[&str], want: &str) -> Plain {
    for _ in 0..30 {
        let plain = user.plain_on_servers(servers, false);
        plain.expect_status("joined #general").await;
        if connection(&plain, 1).await == want {
            return plain;
        }
        let (status, _, stderr) = plain.finish().await;
        assert!(status.success(), "{stderr}");
    }
    panic!("30 random starts, none on {want}");
}
