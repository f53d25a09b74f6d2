//! [`TestDatabase`]: a fresh PostgreSQL database per test, on the cluster
//! that `SESSIONKIT_PG_URL` names (CI starts a throwaway one with
//! `.ci/with-postgres`), dropped when the test ends. [`Cluster`]: a cluster
//! of a test's own, for the tests that stop and restart PostgreSQL.
//!
//! Without `SESSIONKIT_PG_URL` a test that needs PostgreSQL skips, saying
//! so on stderr, unless `SESSIONKIT_REQUIRE_POSTGRES` is set (as in CI):
//! then it fails. To run them locally, wrap the test command:
//!
//! ```text
//! .ci/with-postgres cargo test -p sessionkit-examples --test server
//! ```

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::scratch::ScratchDir;

use tokio_postgres::{Client, NoTls};

/// The variable that names the cluster (a URL to its `postgres` database,
/// for a user allowed to create databases).
pub const URL_VAR: &str = "SESSIONKIT_PG_URL";
/// When set, a missing cluster fails the tests instead of skipping them.
pub const REQUIRE_VAR: &str = "SESSIONKIT_REQUIRE_POSTGRES";

/// `url` with its database name replaced by `name` (the URL's query, if
/// any, kept).
///
/// ```
/// use sessionkit_tests::postgres::with_database;
///
/// assert_eq!(
///     with_database("postgres://pg@%2Ftmp%2Fpg/postgres?connect_timeout=5", "chat"),
///     "postgres://pg@%2Ftmp%2Fpg/chat?connect_timeout=5"
/// );
/// assert_eq!(with_database("postgres://pg@localhost:5433", "chat"), "postgres://pg@localhost:5433/chat");
/// ```
#[must_use]
pub fn with_database(url: &str, name: &str) -> String {
    let (head, query) = match url.split_once('?') {
        Some((head, query)) => (head, format!("?{query}")),
        None => (url, String::new()),
    };
    let authority_start = head.find("://").map_or(0, |i| i + 3);
    let base = match head[authority_start..].find('/') {
        Some(slash) => &head[..authority_start + slash],
        None => head,
    };
    format!("{base}/{name}{query}")
}

/// Connects to `url`, driving the connection on a task of its own.
pub async fn connect(url: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// A database of its own for one test, dropped (with `FORCE`) on drop.
#[derive(Debug)]
pub struct TestDatabase {
    admin_url: String,
    name: String,
    url: String,
}

/// The cluster URL from `SESSIONKIT_PG_URL`, or `None` after saying why
/// (a failure instead when `SESSIONKIT_REQUIRE_POSTGRES` is set).
fn admin_url_or_skip() -> Option<String> {
    let Some(admin_url) = std::env::var(URL_VAR).ok().filter(|v| !v.is_empty()) else {
        assert!(
            std::env::var_os(REQUIRE_VAR).is_none(),
            "{REQUIRE_VAR} is set but {URL_VAR} is not"
        );
        eprintln!(
            "skipping PostgreSQL test: {URL_VAR} is not set \
             (run the tests under .ci/with-postgres)"
        );
        return None;
    };
    Some(admin_url)
}

impl TestDatabase {
    /// Creates a database named after `prefix` (plus the process, a counter
    /// and the time), or returns `None` after saying why when there is no
    /// cluster and `SESSIONKIT_REQUIRE_POSTGRES` is not set.
    pub async fn create(prefix: &str) -> Option<Self> {
        let admin_url = admin_url_or_skip()?;
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!(
            "{}_{}_{}_{nanos}",
            prefix.replace(|c: char| !c.is_ascii_alphanumeric(), "_"),
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        )
        .to_ascii_lowercase();
        let admin = connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {URL_VAR}: {e}"));
        admin
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .unwrap_or_else(|e| panic!("cannot create database {name}: {e}"));
        let url = with_database(&admin_url, &name);
        Some(Self {
            admin_url,
            name,
            url,
        })
    }

    /// The database's URL, for `chat-server --db`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A new connection to it.
    pub async fn client(&self) -> Client {
        connect(&self.url)
            .await
            .expect("connect to the test database")
    }

    /// Lets connections to the database in, or refuses them (the database
    /// looks down to its clients, the rest of the cluster does not).
    pub async fn allow_connections(&self, allow: bool) {
        let admin = connect(&self.admin_url).await.expect("connect as admin");
        admin
            .batch_execute(&format!(
                "ALTER DATABASE \"{}\" ALLOW_CONNECTIONS {allow}",
                self.name
            ))
            .await
            .expect("ALTER DATABASE");
    }

    /// Ends every connection to the database (`pg_terminate_backend`), as a
    /// restart of PostgreSQL would; returns how many.
    pub async fn terminate_connections(&self) -> u64 {
        let admin = connect(&self.admin_url).await.expect("connect as admin");
        let row = admin
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                 WHERE datname = $1 AND pid <> pg_backend_pid()",
                &[&self.name],
            )
            .await
            .expect("terminate backends");
        u64::try_from(row.get::<_, i64>(0)).unwrap_or(0)
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // A runtime of its own: drop may run inside or outside one.
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let admin = connect(&admin_url).await.ok()?;
                admin
                    .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .await
                    .ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            eprintln!("could not drop test database {}", self.name);
        }
    }
}

/// How [`Cluster::stop`] stops the server (`pg_ctl stop -m`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// `fast`: connections are ended, the server shuts down cleanly.
    Fast,
    /// `immediate`: every process is killed at once; the next start
    /// recovers from the WAL, as after a crash.
    Immediate,
}

/// A PostgreSQL cluster of a test's own, which the test may stop and
/// start: initdb in a scratch directory, a Unix socket there only (no TCP
/// port), trusted local connections, run as the `postgres` user when this
/// process is root (initdb refuses root), as `.ci/with-postgres` does.
/// Stopped and removed on drop.
///
/// It needs PostgreSQL's binaries (`PG_BINDIR`, else the newest
/// `/usr/lib/postgresql/*/bin`); they are there when `SESSIONKIT_PG_URL` is
/// (`.ci/with-postgres` sets it), so a test skips or fails by the same rule
/// as [`TestDatabase`].
///
/// ```no_run
/// use sessionkit_tests::postgres::{Cluster, StopMode};
///
/// let Some(cluster) = Cluster::start("my-test") else { return }; // skipped
/// // ... chat-server --db cluster.url() ...
/// cluster.stop(StopMode::Immediate); // a crash: connections fail now
/// cluster.start_again(); // recovers from the WAL, accepts connections
/// ```
#[derive(Debug)]
pub struct Cluster {
    dir: ScratchDir,
    bindir: PathBuf,
    as_postgres: bool,
    url: String,
}

impl Cluster {
    /// Creates and starts the cluster (about a second), or returns `None`
    /// after saying why when there is no PostgreSQL and
    /// `SESSIONKIT_REQUIRE_POSTGRES` is not set.
    pub fn start(prefix: &str) -> Option<Self> {
        admin_url_or_skip()?;
        let bindir = pg_bindir().unwrap_or_else(|| {
            panic!("no PostgreSQL binaries: set PG_BINDIR or apt-get install postgresql")
        });
        let dir = ScratchDir::new(&format!("sk-pg-{prefix}"));
        let as_postgres = is_root();
        if as_postgres {
            let uid_gid = postgres_ids();
            std::os::unix::fs::chown(dir.path(), Some(uid_gid.0), Some(uid_gid.1))
                .expect("chown the cluster directory to postgres");
        }
        let socket_dir = dir.path().to_string_lossy().replace('/', "%2F");
        let cluster = Self {
            url: format!("postgres://postgres@{socket_dir}/postgres"),
            bindir,
            as_postgres,
            dir,
        };
        let data = cluster.data();
        cluster.run(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
                "--auth-local=trust",
                "--auth-host=reject",
                "--no-sync",
            ],
        );
        cluster.start_again();
        Some(cluster)
    }

    /// The URL of its `postgres` database (user `postgres`), for
    /// `chat-server --db`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Stops the server; connections to it fail until [`Cluster::start_again`].
    pub fn stop(&self, mode: StopMode) {
        let mode = match mode {
            StopMode::Fast => "fast",
            StopMode::Immediate => "immediate",
        };
        self.run("pg_ctl", &["-D", &self.data(), "-m", mode, "-w", "stop"]);
    }

    /// Starts the server again (after a crash stop it recovers from the
    /// WAL first); returns once it accepts connections.
    pub fn start_again(&self) {
        let options = format!(
            "-c listen_addresses='' -c unix_socket_directories='{}' -c max_connections=100 \
             -c shared_buffers=16MB",
            self.dir.path().display()
        );
        let log = self.dir.path().join("postgres.log");
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-l",
                &log.to_string_lossy(),
                "-w",
                "-t",
                "30",
                "-o",
                &options,
                "start",
            ],
        );
    }

    fn data(&self) -> String {
        self.dir.path().join("data").to_string_lossy().into_owned()
    }

    /// One of PostgreSQL's programs, to run as the cluster's owner.
    fn command(&self, program: &str) -> Command {
        let exe = self.bindir.join(program);
        if self.as_postgres {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(&exe);
            cmd
        } else {
            Command::new(&exe)
        }
    }

    /// Runs one of PostgreSQL's programs as the cluster's owner; panics with
    /// its output (and the server log) when it fails.
    fn run(&self, program: &str, args: &[&str]) {
        let exe = self.bindir.join(program);
        let out = self
            .command(program)
            .args(args)
            .current_dir(self.dir.path())
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", exe.display()));
        if !out.status.success() {
            let log =
                std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default();
            panic!(
                "{program} {args:?} failed ({}):\n{}{}\n--- postgres.log\n{log}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Stopped before its directory goes; `-m immediate`: nothing to keep.
        let _ = self
            .command("pg_ctl")
            .args(["-D", &self.data(), "-m", "immediate", "stop"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// `PG_BINDIR`, else the newest `/usr/lib/postgresql/*/bin` with initdb.
fn pg_bindir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("PG_BINDIR").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

/// Whether this process runs as root (`id -u`; no libc call needed).
fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    // /proc/self is owned by the process's effective user.
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// The `postgres` user's uid and gid (Debian's package creates it).
fn postgres_ids() -> (u32, u32) {
    let id = |flag: &str| {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .expect("run id");
        assert!(
            out.status.success(),
            "no postgres user (as root, the cluster runs as postgres; useradd --system postgres)"
        );
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("a numeric id")
    };
    (id("-u"), id("-g"))
}
