//! [`ServerConfig`] and [`Database`]: what a chat server is told at start.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use super::balance::Rebalance;
use super::serve::ConnectionLimits;

/// Where the chat server keeps its messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// In memory: lost when the server stops (tests, the embedded demo).
    Memory,
    /// An SQLite file, created and migrated at start, written with WAL and
    /// `synchronous=FULL` so an acknowledged message survives a crash.
    File(PathBuf),
    /// A PostgreSQL database that several chat-server nodes may share
    /// (migrated at start): sequence numbers come from the database, and
    /// messages and back-channel logouts reach every node through
    /// `LISTEN`/`NOTIFY`.
    Postgres(PostgresUrl),
}

impl Database {
    /// `postgres://…` or `postgresql://…` is [`Database::Postgres`];
    /// `":memory:"` (or `sqlite::memory:`) is [`Database::Memory`]; anything
    /// else, with or without a `sqlite:` prefix, an SQLite file path.
    ///
    /// ```
    /// use sessionkit_examples::server::Database;
    ///
    /// assert!(matches!(Database::from_arg("postgres://chat@db:5432/chat"), Database::Postgres(_)));
    /// assert_eq!(Database::from_arg("sqlite:chat.db"), Database::File("chat.db".into()));
    /// assert_eq!(Database::from_arg(":memory:"), Database::Memory);
    /// ```
    #[must_use]
    pub fn from_arg(arg: &str) -> Self {
        if arg.starts_with("postgres://") || arg.starts_with("postgresql://") {
            return Self::Postgres(PostgresUrl(arg.to_owned()));
        }
        let path = arg.strip_prefix("sqlite:").unwrap_or(arg);
        if path == ":memory:" {
            Self::Memory
        } else {
            Self::File(PathBuf::from(path))
        }
    }

    /// What to call it in messages: the path (`:memory:` for the in-memory
    /// database), or the URL without its password.
    pub(crate) fn label(&self) -> PathBuf {
        match self {
            Self::Memory => PathBuf::from(":memory:"),
            Self::File(path) => path.clone(),
            Self::Postgres(url) => PathBuf::from(url.redacted()),
        }
    }
}

/// A `postgres://USER[:PASSWORD]@HOST[:PORT]/DB[?…]` URL (as libpq and
/// `tokio-postgres` read it; `?host=/run/dir` reaches a Unix socket). Its
/// `Debug` hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresUrl(String);

impl PostgresUrl {
    /// Wraps a URL (checked when the server starts).
    #[must_use]
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The URL, password included.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with any password replaced by `***`.
    #[must_use]
    pub fn redacted(&self) -> String {
        match url::Url::parse(&self.0) {
            Ok(mut url) if url.password().is_some() => {
                let _ = url.set_password(Some("***"));
                url.to_string()
            }
            Ok(url) => url.to_string(),
            Err(_) => "postgres://(unparsable URL)".to_owned(),
        }
    }
}

impl std::fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("PostgresUrl")
            .field(&self.redacted())
            .finish()
    }
}

/// How a [`ChatServer`](super::ChatServer) is set up. Start from
/// [`ServerConfig::new`] and change the fields you need.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerConfig {
    /// The address to listen on (default `127.0.0.1:0`, a free port).
    pub bind: SocketAddr,
    /// The OpenID provider whose access tokens are accepted; its discovery
    /// document names the JWKS. Compared exactly with the tokens' `iss`.
    pub issuer: String,
    /// The `aud` an access token must contain (default `chat-server`).
    pub audience: String,
    /// The client id the provider addresses back-channel logout tokens to
    /// (their `aud`; default `chat-example`, the chat client).
    pub backchannel_client_id: String,
    /// Where messages are stored (default [`Database::Memory`]).
    pub db: Database,
    /// The most messages stored in one transaction (default 256): sends
    /// that arrive while a transaction commits are stored together in the
    /// next one (group commit), each acknowledged after that commit. 1
    /// stores every message in a transaction of its own.
    pub max_batch: usize,
    /// The shortest time between two JWKS fetch attempts (default 10 s),
    /// failed or not, so tokens with forged key ids cannot make the server
    /// hammer the provider, even while it fails. The first fetch is never
    /// delayed; after a failed one, tokens get 503 until the next may start.
    pub jwks_refetch_interval: Duration,
    /// How long fetched keys are trusted (default 10 min): the first token
    /// checked after that makes the server fetch the set again, so a key the
    /// provider stopped publishing stops being accepted. (While the provider
    /// cannot be reached, the keys it published last stay in use.)
    pub jwks_max_age: Duration,
    /// How long a connection may stay silent (no frame at all, not even a
    /// pong) before the server drops it as dead (default 60 s). The server
    /// pings every half of it, so a client that reads its socket stays up.
    pub idle_timeout: Duration,
    /// With [`Database::Postgres`]: how the nodes even out their
    /// connections (default every 5 s, tolerance 10; see [`Rebalance`]). A
    /// node over its fair share asks some clients that know other nodes to
    /// move (close 1012). Without PostgreSQL there is one node: unused.
    pub rebalance: Rebalance,
    /// Limits on connections before they become WebSockets: the time to
    /// send a request, how many may be open, how many half-open ones one
    /// address may hold (see [`ConnectionLimits`]).
    pub connections: ConnectionLimits,
    /// Limits per user (by the token's `sub`): connections, rooms, sends
    /// (see [`UserLimits`]).
    pub users: UserLimits,
    /// Require the server's nonce in every DPoP proof (RFC 9449 §9;
    /// default `false`): a proof without it is answered 401
    /// `use_dpop_nonce` with a `DPoP-Nonce` header (`chat-server
    /// --dpop-nonce`). Bearer tokens are not affected.
    pub require_dpop_nonce: bool,
    /// How far (seconds) a DPoP proof's `iat` may be from the server's
    /// clock, either way (default 60).
    pub dpop_window_secs: u32,
    /// The WebSocket URLs clients dial (`chat-server --public-url`,
    /// repeatable), such as `wss://chat.example/ws` behind a TLS proxy: a
    /// DPoP proof's `htu` must be one of them. The `Host` header only
    /// picks which; it never adds a URL. Empty (the default): the bound
    /// address's `ws://ADDR/ws`, and `ws://localhost:PORT/ws` as well when
    /// bound to loopback.
    pub public_urls: Vec<String>,
}

/// Limits per user, counted by the access token's `sub` across all of the
/// user's connections (see the protocol's "Limits" section in
/// [`crate::protocol`]).
///
/// ```
/// use sessionkit_examples::server::{ServerConfig, UserLimits};
///
/// let mut config = ServerConfig::new("http://127.0.0.1:9090");
/// config.users = UserLimits { connections: 4, ..UserLimits::default() };
/// assert_eq!(config.users.frames_per_second, 10);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserLimits {
    /// WebSocket connections open at once (default 16). One more is refused
    /// at the handshake with HTTP 429.
    pub connections: usize,
    /// Rooms joined at once, across the user's connections (default 256;
    /// one connection may join at most 64). One more `join` gets an `error`
    /// frame `too_many_rooms`.
    pub rooms_joined: usize,
    /// Rooms the user may create, i.e. post the first message of (default
    /// 1,000, counted in the database, so a restart does not reset it).
    /// Past it a post to a new room gets an `error` frame `too_many_rooms`
    /// and is not stored.
    pub rooms_created: u64,
    /// Frames per second a user may send, sustained, over all the user's
    /// connections (default 10): every frame counts (`send`, `join`,
    /// `leave`, `auth`, malformed ones) but pings and pongs. They go through
    /// a token bucket of [`frame_burst`](Self::frame_burst). The first frame
    /// over it is not acted on (a `send` is not stored) and the connection
    /// is closed with 4029 and the close reason `{"retry_after_ms": N}`, N
    /// being the time until the bucket is full again; a client re-sends what
    /// was not acknowledged after reconnecting. Reconnecting does not refill
    /// the bucket.
    pub frames_per_second: u32,
    /// How many frames may come at once before the rate applies (default 50).
    pub frame_burst: u32,
}

impl Default for UserLimits {
    fn default() -> Self {
        Self {
            connections: 16,
            rooms_joined: 256,
            rooms_created: 1000,
            frames_per_second: 10,
            frame_burst: 50,
        }
    }
}

impl ServerConfig {
    /// The defaults for `issuer`: `127.0.0.1:0`, audience `chat-server`,
    /// back-channel logout client `chat-example`, an in-memory database, a
    /// JWKS refetch at most every 10 s, keys trusted for 10 min, silent
    /// connections dropped after 60 s, the default [`ConnectionLimits`]
    /// and [`UserLimits`], and DPoP proofs without nonces, within 60 s.
    pub fn new(issuer: impl Into<String>) -> Self {
        Self {
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            issuer: issuer.into(),
            audience: "chat-server".to_owned(),
            backchannel_client_id: "chat-example".to_owned(),
            db: Database::Memory,
            max_batch: crate::server::db::MAX_BATCH,
            jwks_refetch_interval: Duration::from_secs(10),
            jwks_max_age: Duration::from_secs(600),
            idle_timeout: Duration::from_secs(60),
            connections: ConnectionLimits::default(),
            users: UserLimits::default(),
            require_dpop_nonce: false,
            dpop_window_secs: 60,
            public_urls: Vec::new(),
            rebalance: Rebalance::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_mock_idp_defaults() {
        let config = ServerConfig::new("http://127.0.0.1:9090");
        assert_eq!(config.bind.to_string(), "127.0.0.1:0");
        assert_eq!(config.audience, "chat-server");
        assert_eq!(config.backchannel_client_id, "chat-example");
        assert_eq!(config.db, Database::Memory);
        assert_eq!(config.jwks_max_age, Duration::from_secs(600));
    }

    #[test]
    fn a_postgres_password_stays_out_of_debug() {
        let db = Database::from_arg("postgres://chat:hunter2@db.example:5433/chat");
        let shown = format!("{db:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("db.example:5433/chat"), "{shown}");
        assert_eq!(
            db.label(),
            PathBuf::from("postgres://chat:***@db.example:5433/chat")
        );
    }

    #[test]
    fn memory_is_spelled_like_sqlite() {
        assert_eq!(Database::from_arg(":memory:"), Database::Memory);
        assert_eq!(
            Database::from_arg("chat.db"),
            Database::File(PathBuf::from("chat.db"))
        );
    }
}
