//! [`TestDatabase`]: a fresh PostgreSQL database per test, on the cluster
//! that `SESSIONKIT_PG_URL` names (CI starts a throwaway one with
//! `.ci/with-postgres`), dropped when the test ends.
//!
//! Without `SESSIONKIT_PG_URL` a test that needs PostgreSQL skips, saying
//! so on stderr, unless `SESSIONKIT_REQUIRE_POSTGRES` is set (as in CI):
//! then it fails. To run them locally, wrap the test command:
//!
//! ```text
//! .ci/with-postgres cargo test -p sessionkit-examples --test server
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

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

impl TestDatabase {
    /// Creates a database named after `prefix` (plus the process, a counter
    /// and the time), or returns `None` after saying why when there is no
    /// cluster and `SESSIONKIT_REQUIRE_POSTGRES` is not set.
    pub async fn create(prefix: &str) -> Option<Self> {
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
