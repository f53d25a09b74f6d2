//! The chat server: an axum WebSocket server that lets in only holders of a
//! valid access token from the configured issuer (a bearer token, or a
//! DPoP-bound one with a proof of its key for the handshake), keeps rooms of messages in
//! SQLite or in a PostgreSQL database shared by several nodes, and closes a connection when its token expires (4001) or its
//! session is logged out at the provider (4003). The `chat-server` binary is
//! a thin wrapper; tests and the embedded demo start it in-process.
//!
//! ```no_run
//! # async fn demo() -> Result<(), sessionkit_examples::server::ServerError> {
//! use sessionkit_examples::server::{ChatServer, Database, ServerConfig};
//!
//! let mut config = ServerConfig::new("http://127.0.0.1:9090");
//! config.db = Database::File("chat.db".into());
//! let server = ChatServer::start(config).await?;
//! println!("chat-server listening on {}", server.ws_url());
//! server.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! ## Layout
//! - `config`: [`ServerConfig`], [`Database`]; `error`: [`ServerError`].
//! - `jwks`: signatures against the issuer's keys; `claims`: the claim checks;
//!   `dpop`: DPoP proofs and token binding at the handshake (RFC 9449), and
//!   the handshake's counters ([`HandshakeStats`]).
//! - `serve`: the accept loop and its [`ConnectionLimits`]; `ws`: the
//!   handshake and the connection task; `hub`: rooms, the registry of
//!   connections and the per-user limits ([`UserLimits`]).
//! - `backchannel`: the back-channel logout endpoint and the sessions it ended.
//! - `db`: the storage trait, its SQLite and PostgreSQL engines and their
//!   migrations, and the batching writer (group commit).
//! - `feed`: with PostgreSQL, the `LISTEN` connection that brings every
//!   node's messages and logouts to this node; `balance`: the nodes' loads
//!   compared, and clients over a node's share asked to move ([`Rebalance`]).
//!
//! ## Several nodes
//!
//! With [`Database::Postgres`], any number of servers share one database:
//! a message sent to one node reaches the subscribers of every node, in
//! sequence order and once; a client may resume on any node; a
//! back-channel logout posted to any node closes the session's sockets on
//! every node (4003) and its tokens are refused everywhere. The nodes keep
//! their connections even ([`ServerConfig::rebalance`]): one over its share
//! asks clients that know other nodes to move there.
//!
//! The wire format is [`crate::protocol`].

mod backchannel;
mod balance;
mod claims;
mod config;
mod db;
mod dpop;
mod error;
mod feed;
mod hub;
mod jwks;
mod serve;
mod ws;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use balance::Rebalance;
pub use config::{Database, PostgresUrl, ServerConfig, UserLimits};
pub use dpop::HandshakeStats;
pub use error::ServerError;
pub use serve::ConnectionLimits;

use crate::protocol::{BACKCHANNEL_PATH, WS_PATH};

/// How long [`ChatServer::shutdown`] waits for connections to close.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Timeout of each request to the identity provider.
const IDP_TIMEOUT: Duration = Duration::from_secs(10);

/// The state every handler shares.
pub(crate) struct App {
    pub(crate) config: ServerConfig,
    pub(crate) verifier: jwks::Verifier,
    pub(crate) store: db::Store,
    pub(crate) hub: Arc<hub::Hub>,
    pub(crate) revocations: Arc<backchannel::Revocations>,
    /// DPoP proofs seen, nonces, and the handshake's counters.
    pub(crate) dpop: dpop::Verifier,
    /// Cancelled when the server stops.
    pub(crate) cancel: CancellationToken,
    /// The accept loop and every connection.
    pub(crate) tracker: TaskTracker,
}

/// Now, in Unix seconds.
pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Now, in Unix milliseconds.
pub(crate) fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The routes: the WebSocket and the back-channel logout endpoint.
fn router(app: Arc<App>) -> Router {
    Router::new()
        .route(WS_PATH, get(ws::handler))
        .route(BACKCHANNEL_PATH, post(backchannel::handler))
        .layer(DefaultBodyLimit::max(ws::MAX_FRAME_BYTES))
        .with_state(app)
}

/// A running chat server. Dropping it stops accepting connections and
/// closes the open ones; [`ChatServer::shutdown`] also waits for that.
pub struct ChatServer {
    addr: SocketAddr,
    app: Arc<App>,
}

impl std::fmt::Debug for ChatServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatServer")
            .field("addr", &self.addr)
            .field("issuer", &self.app.config.issuer)
            .finish_non_exhaustive()
    }
}

impl ChatServer {
    /// Binds `config.bind`, opens (creating and migrating) the database and
    /// starts serving. The provider is not contacted until the first token
    /// arrives, so it may start later.
    pub async fn start(config: ServerConfig) -> Result<Self, ServerError> {
        let listener = serve::bind(config.bind).map_err(|source| ServerError::Bind {
            addr: config.bind.to_string(),
            source,
        })?;
        Self::start_on(listener, config).await
    }

    /// Like [`ChatServer::start`] on a listener bound already (`config.bind`
    /// is not used).
    pub async fn start_on(
        listener: TcpListener,
        config: ServerConfig,
    ) -> Result<Self, ServerError> {
        if config.issuer.trim().is_empty() {
            return Err(ServerError::Config("the issuer is empty".to_owned()));
        }
        let addr = listener.local_addr().map_err(|source| ServerError::Bind {
            addr: config.bind.to_string(),
            source,
        })?;
        let hub = Arc::new(hub::Hub::new(config.users.clone()));
        let store = db::Store::open(
            &config.db,
            hub.clone(),
            config.users.rooms_created,
            config.max_batch,
        )
        .await?;
        let revocations = Arc::new(backchannel::Revocations::default());
        let cancel = CancellationToken::new();
        let feed = match store.postgres() {
            Some(pg) => Some(
                feed::Feed {
                    pg: pg.clone(),
                    hub: hub.clone(),
                    revocations: revocations.clone(),
                }
                .start(cancel.clone())
                .await?,
            ),
            None => None,
        };
        let http = reqwest::Client::builder()
            .timeout(IDP_TIMEOUT)
            .connect_timeout(IDP_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ServerError::Config(format!("cannot build the HTTP client: {e}")))?;
        let verifier = jwks::Verifier::new(
            &config.issuer,
            http,
            config.jwks_refetch_interval,
            config.jwks_max_age,
        );
        let public_urls = if config.public_urls.is_empty() {
            dpop::default_urls(addr)
        } else {
            config.public_urls.clone()
        };
        let dpop = dpop::Verifier::new(
            config.require_dpop_nonce,
            config.dpop_window_secs,
            &public_urls,
        )?;
        let app = Arc::new(App {
            dpop,
            config,
            verifier,
            store,
            hub,
            revocations,
            cancel,
            tracker: TaskTracker::new(),
        });
        if let Some(feed) = feed {
            app.tracker.spawn(feed);
        }
        if let Some(pg) = app.store.postgres()
            && !app.config.rebalance.is_off()
        {
            app.tracker.spawn(balance::run(
                pg.clone(),
                app.hub.clone(),
                balance::node_name(addr),
                app.config.rebalance,
                app.cancel.clone(),
            ));
        }
        app.tracker.spawn(serve::serve(
            listener,
            router(app.clone()),
            app.config.connections.clone(),
            app.cancel.clone(),
            app.tracker.clone(),
        ));
        tracing::info!(%addr, issuer = %app.config.issuer, "chat-server listening");
        Ok(Self { addr, app })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The WebSocket URL: `ws://HOST:PORT/ws`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}{WS_PATH}", self.addr)
    }

    /// The URL to register as the chat client's `backchannel_logout_uri`.
    pub fn backchannel_logout_url(&self) -> String {
        format!("http://{}{BACKCHANNEL_PATH}", self.addr)
    }

    /// What the WebSocket handshake counted since the start (attempts,
    /// refusals, DPoP proofs accepted, replays, nonce challenges).
    pub fn handshake_stats(&self) -> HandshakeStats {
        self.app.dpop.counters.snapshot()
    }

    /// How many WebSocket connections are open now.
    pub fn connections(&self) -> usize {
        self.app.hub.connections()
    }

    /// Stops accepting, closes every connection with 1001 ("going away"),
    /// and waits (up to 5 s) for them and the accept loop to finish.
    pub async fn shutdown(self) {
        self.app.cancel.cancel();
        self.app.tracker.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, self.app.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("connections still open after the shutdown grace period");
        }
    }
}

impl Drop for ChatServer {
    fn drop(&mut self) {
        self.app.cancel.cancel();
    }
}
