//! The client: one driver task per client that fetches a token, connects,
//! pumps messages, and decides from how the connection ended whether to
//! reconnect (and when) or stop.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::sync::{Semaphore, TryAcquireError, mpsc, watch};
use tokio::time::{Instant, sleep, sleep_until, timeout};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::backoff::{Backoff, jitter_unit};
use crate::error::{Error, Result, TokenError};
use crate::handshake::{OpenError, Socket, chosen_protocol, open, request};
use crate::state::{CloseReason, ReconnectReason, State};
use crate::token::{BearerToken, BoxFuture, IntoTokenSource, TimedToken, TokenSource};
use crate::unlogged;

/// A message from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Incoming {
    /// A text message.
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
}

/// What [`RealtimeClient::send`] does when the outgoing queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum WhenFull {
    /// Wait until there is room (default).
    #[default]
    Wait,
    /// Fail at once with [`Error::QueueFull`].
    Error,
}

/// Given to the `on_connect` hook: what it sends goes out on the new
/// connection before any queued message.
#[derive(Debug, Clone)]
pub struct Resume {
    generation: u64,
    tx: mpsc::UnboundedSender<String>,
}

impl Resume {
    /// The generation of the connection being set up.
    #[must_use]
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Sends `text` first on the new connection (in call order).
    pub fn send(&self, text: impl Into<String>) {
        let _ = self.tx.send(text.into());
    }
}

type HookFn = dyn Fn(Resume) -> BoxFuture<'static, ()> + Send + Sync;

#[derive(Clone)]
struct Hook(Arc<HookFn>);

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hook")
    }
}

type InBandFn = dyn Fn(&BearerToken) -> String + Send + Sync;
type IdentityFn = dyn Fn(&Incoming) -> Option<String> + Send + Sync;

/// How a connected client moves to the token source's newer token (at the
/// token's [`TimedToken::refresh_at`], or when [`TokenSource::changed`]
/// fires) without a gap.
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum RefreshMode {
    /// Open a second connection with the fresh token; once it is up (and
    /// the `on_connect` hook has run on it) it becomes the connection,
    /// the old one gets a normal close and is read until it has closed
    /// (sending waits meanwhile, so order is kept across the switch).
    /// The state stays [`State::Connected`] (with the next generation).
    /// If the refresh or the second connection fails, the old connection
    /// stays and the switch is tried again at half the current token's
    /// remaining lifetime (no sooner than the backoff's base); once that is
    /// too short, the server's 4001 at expiry leads to a normal reconnect
    /// with a refresh. See [`Builder::message_identity`] for what is
    /// delivered during the overlap.
    #[default]
    MakeBeforeBreak,
    /// Send the text message this hook builds from the fresh token on the
    /// open connection (the server re-authenticates it in place).
    InBand(Arc<InBandFn>),
}

impl std::fmt::Debug for RefreshMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::MakeBeforeBreak => f.write_str("MakeBeforeBreak"),
            Self::InBand(_) => f.write_str("InBand"),
        }
    }
}

/// Where each connection attempt puts the token (see
/// [`Builder::token_transport`]). Every attempt gets a fresh-enough token,
/// a reconnect after a refresh uses the same transport, and a 401 at the
/// handshake counts as a 4001 whichever transport carried the token.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum TokenTransport {
    /// `Authorization: Bearer TOKEN` (default); the header value is marked
    /// sensitive.
    #[default]
    Header,
    /// Two values in `Sec-WebSocket-Protocol`: `PROTOCOL, TOKEN`. The
    /// server must choose `protocol` (never the token) in its handshake
    /// response; any other answer fails the attempt (and is retried with
    /// backoff). The token must be a valid header token (no spaces or
    /// commas; JWTs and opaque base64url tokens are).
    Subprotocol {
        /// The protocol the server is expected to choose, e.g. `"bearer"`.
        protocol: String,
    },
    /// `NAME=TOKEN` appended to the URL's query for that attempt only. The
    /// client's stored URL never holds the token, and the client never logs
    /// a URL with its query.
    QueryParameter {
        /// The parameter's name, e.g. `"access_token"`.
        name: String,
    },
}

impl TokenTransport {
    /// [`TokenTransport::Subprotocol`] with `protocol`.
    pub fn subprotocol(protocol: impl Into<String>) -> Self {
        Self::Subprotocol {
            protocol: protocol.into(),
        }
    }

    /// [`TokenTransport::QueryParameter`] named `name`.
    pub fn query_parameter(name: impl Into<String>) -> Self {
        Self::QueryParameter { name: name.into() }
    }
}

#[derive(Clone)]
struct Identity(Arc<IdentityFn>);

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Identity")
    }
}

/// Settings for a [`RealtimeClient`]; start from [`RealtimeClient::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct Builder {
    url: String,
    backoff: Backoff,
    connect_timeout: Duration,
    ping_interval: Duration,
    pong_timeout: Duration,
    write_timeout: Duration,
    incoming_capacity: usize,
    outgoing_capacity: usize,
    outgoing_bytes: usize,
    when_full: WhenFull,
    on_connect: Option<Hook>,
    first_connect_deadline: Option<Duration>,
    refresh_mode: RefreshMode,
    identity: Option<Identity>,
    token_transport: TokenTransport,
    tls: Option<Arc<rustls::ClientConfig>>,
    read_buffer: usize,
}

impl Builder {
    /// Where the token goes on every connection attempt (default
    /// [`TokenTransport::Header`]).
    ///
    /// ```no_run
    /// use std::sync::Arc;
    /// use sessionkit_realtime::{RealtimeClient, StaticToken, TokenTransport};
    ///
    /// # async fn demo() -> Result<(), sessionkit_realtime::Error> {
    /// let source = Arc::new(StaticToken::new("an-access-token"));
    /// // Browsers' WebSocket API cannot set headers; servers built for them
    /// // often read the token from the subprotocol or the query.
    /// let (client, _incoming) = RealtimeClient::builder("wss://chat.example.com/ws")
    ///     .token_transport(TokenTransport::subprotocol("bearer"))
    ///     .build(source)?;
    /// # drop(client); Ok(()) }
    /// ```
    pub fn token_transport(mut self, transport: TokenTransport) -> Self {
        self.token_transport = transport;
        self
    }

    /// The TLS settings for `wss://` URLs (default: the platform's root
    /// certificates, loaded on every attempt). Use it to trust a private CA
    /// or a self-signed server certificate, or to pin one; `ws://` URLs
    /// ignore it. The config's crypto provider is the caller's choice (this
    /// crate enables rustls with aws-lc-rs only).
    ///
    /// ```no_run
    /// use std::sync::Arc;
    /// use sessionkit_realtime::{RealtimeClient, StaticToken, rustls};
    ///
    /// # async fn demo(ca_der: Vec<u8>) -> Result<(), Box<dyn std::error::Error>> {
    /// // The private CA's certificate (DER), e.g. read from a file.
    /// let mut roots = rustls::RootCertStore::empty();
    /// roots.add(rustls::pki_types::CertificateDer::from(ca_der))?;
    /// let tls = rustls::ClientConfig::builder()
    ///     .with_root_certificates(roots)
    ///     .with_no_client_auth();
    /// let source = Arc::new(StaticToken::new("an-access-token"));
    /// let (client, _incoming) = RealtimeClient::builder("wss://chat.internal:8443/ws")
    ///     .tls_config(Arc::new(tls))
    ///     .build(source)?;
    /// # drop(client); Ok(()) }
    /// ```
    pub fn tls_config(mut self, config: Arc<rustls::ClientConfig>) -> Self {
        self.tls = Some(config);
        self
    }

    /// The size of each connection's read buffer and of one read from the
    /// socket (default 8 KiB, at least 1 KiB). A connection that only ever
    /// receives small messages keeps this much; a larger message still
    /// arrives whole, in reads of this size, but the buffer grows for it and
    /// keeps that size until the connection ends. tungstenite's limits
    /// stay: 16 MiB per frame, 64 MiB per message (a larger one ends the
    /// connection). tungstenite's own default buffer (128 KiB) suits bulk
    /// transfers, not many mostly idle connections.
    pub fn read_buffer_size(mut self, bytes: usize) -> Self {
        self.read_buffer = bytes.max(1 << 10);
        self
    }

    /// The reconnect schedule (default: 250 ms, ×2, 30 s, reset after 10 s up).
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// How to re-authenticate while connected (default
    /// [`RefreshMode::MakeBeforeBreak`]).
    pub fn refresh_mode(mut self, mode: RefreshMode) -> Self {
        self.refresh_mode = mode;
        self
    }

    /// Re-authenticate in-band: `hook` builds the text message carrying the
    /// fresh token, sent on the open connection
    /// (shorthand for [`RefreshMode::InBand`]).
    ///
    /// ```no_run
    /// use std::sync::Arc;
    /// use std::time::{Duration, SystemTime};
    /// use sessionkit_realtime::{BearerToken, RealtimeClient, StaticToken, TimedToken};
    ///
    /// # async fn demo() -> Result<(), sessionkit_realtime::Error> {
    /// let source = Arc::new(StaticToken::new("t0"));
    /// let now = SystemTime::now();
    /// source.replace(
    ///     TimedToken::new(BearerToken::new("t0"))
    ///         .expires_at(now + Duration::from_secs(300))
    ///         .refresh_at(now + Duration::from_secs(240)),
    /// );
    /// // Later, `source.set("t1")`: the connection sends it in-band.
    /// let (client, _incoming) = RealtimeClient::builder("wss://chat.example.com/ws")
    ///     .refresh_in_band(|token| format!(r#"{{"type":"auth","token":"{}"}}"#, token.secret()))
    ///     .build(source)?;
    /// # drop(client); Ok(()) }
    /// ```
    pub fn refresh_in_band<F>(mut self, hook: F) -> Self
    where
        F: Fn(&BearerToken) -> String + Send + Sync + 'static,
    {
        self.refresh_mode = RefreshMode::InBand(Arc::new(hook));
        self
    }

    /// The app's message identity (text or binary): during a
    /// make-before-break overlap a message whose identity was already
    /// delivered (from either connection) is dropped, and the old
    /// connection is read until it has closed, so a message the server
    /// sent only there is still delivered. Messages for which the hook
    /// returns `None` are always delivered.
    ///
    /// Without it the client cannot tell copies apart, so it delivers by
    /// connection: until the switch, what arrives on the old connection;
    /// from the switch on, what arrives on the new one (it was held, not
    /// read, while the new connection was being set up). What arrives on
    /// the old connection after the switch is dropped. A server that sends
    /// the same message on both connections during the overlap may thus
    /// have it delivered twice (once from each side of the switch), and one
    /// that sends a message only on the old connection after the switch has
    /// it dropped; servers that cannot avoid either need an identity (or
    /// the app de-duplicates, or use [`RefreshMode::InBand`]).
    ///
    /// ```no_run
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use sessionkit_realtime::{Incoming, RealtimeClient, StaticToken};
    ///
    /// # async fn demo() -> Result<(), sessionkit_realtime::Error> {
    /// let source = Arc::new(StaticToken::new("t0"));
    /// let (client, _incoming) = RealtimeClient::builder("wss://chat.example.com/ws")
    ///     // Messages look like `<id>|<payload>`.
    ///     .message_identity(|message| match message {
    ///         Incoming::Text(text) => text.split_once('|').map(|(id, _)| id.to_owned()),
    ///         _ => None,
    ///     })
    ///     .build(source)?;
    /// # drop(client); Ok(()) }
    /// ```
    pub fn message_identity<F>(mut self, hook: F) -> Self
    where
        F: Fn(&Incoming) -> Option<String> + Send + Sync + 'static,
    {
        self.identity = Some(Identity(Arc::new(hook)));
        self
    }

    /// The limit for TCP connect, TLS and the WebSocket handshake (default 10 s).
    pub fn connect_timeout(mut self, limit: Duration) -> Self {
        self.connect_timeout = limit;
        self
    }

    /// Ping every `interval` (default 15 s); with no frame at all within
    /// `timeout` after a ping (default 10 s) the connection is dead.
    pub fn ping(mut self, interval: Duration, timeout: Duration) -> Self {
        self.ping_interval = interval;
        self.pong_timeout = timeout;
        self
    }

    /// The limit for one write (default 10 s).
    pub fn write_timeout(mut self, limit: Duration) -> Self {
        self.write_timeout = limit;
        self
    }

    /// How many incoming messages wait for the app before reading pauses
    /// (default 256).
    pub fn incoming_capacity(mut self, n: usize) -> Self {
        self.incoming_capacity = n.max(1);
        self
    }

    /// The outgoing queue's bounds: at most `messages` messages and
    /// `bytes` bytes wait (while connecting or disconnected) before `send`
    /// waits or fails (see [`Builder::when_full`]); defaults 256 and 1 MiB.
    /// One message larger than `bytes` is refused ([`Error::TooLarge`]).
    pub fn outgoing_limits(mut self, messages: usize, bytes: usize) -> Self {
        self.outgoing_capacity = messages.max(1);
        self.outgoing_bytes = bytes.min(u32::MAX as usize);
        self
    }

    /// A hook run on every new connection before queued messages go out
    /// (resume a stream, re-subscribe): what it sends through [`Resume`]
    /// goes first. It runs under the write timeout; if it takes longer,
    /// the connection counts as lost. It also runs on a make-before-break
    /// connection, before the switch; the old connection is not read while
    /// the hook runs, so the hook must not wait for a message from the
    /// server. To lose nothing across reconnects, re-send
    /// the unacknowledged messages here ([`crate::Unacked::resend`]).
    ///
    /// Order on a new connection: what the hook sent, then a message whose
    /// write failed on the previous connection (if any), then the queue.
    pub fn on_connect<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(Resume) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.on_connect = Some(Hook(Arc::new(move |resume| Box::pin(hook(resume)))));
        self
    }

    /// Gives up with [`CloseReason::DeadlineExceeded`] unless a first
    /// connection is up within `limit` (default: no limit). The first
    /// connect uses the same backoff as reconnects; once connected, the
    /// deadline no longer applies.
    pub fn first_connect_deadline(mut self, limit: Duration) -> Self {
        self.first_connect_deadline = Some(limit);
        self
    }

    /// What `send` does when the outgoing queue is full (default: wait).
    pub fn when_full(mut self, when_full: WhenFull) -> Self {
        self.when_full = when_full;
        self
    }

    /// Starts the client (it connects in the background). Must be called
    /// inside a tokio runtime.
    ///
    /// # Errors
    /// [`Error::InvalidUrl`] unless the URL is `ws://` or `wss://`.
    pub fn build(
        self,
        source: impl IntoTokenSource,
    ) -> Result<(RealtimeClient, mpsc::Receiver<Incoming>)> {
        let source = source.into_token_source();
        let parsed = url::Url::parse(&self.url).map_err(|e| Error::InvalidUrl(format!("{e}")))?;
        if !matches!(parsed.scheme(), "ws" | "wss") || parsed.host_str().is_none() {
            return Err(Error::InvalidUrl(redact_url(&parsed)));
        }
        let (state_tx, state_rx) = watch::channel(State::Connecting { generation: 1 });
        let (in_tx, in_rx) = mpsc::channel(self.incoming_capacity);
        let (out_tx, out_rx) = mpsc::channel(self.outgoing_capacity);
        let stop = CancellationToken::new();
        let tracker = TaskTracker::new();
        let bytes = Arc::new(Semaphore::new(self.outgoing_bytes));
        let (max_bytes, when_full) = (self.outgoing_bytes, self.when_full);
        let driver = Driver {
            deadline: self.first_connect_deadline.map(|d| Instant::now() + d),
            logout: source.cancellation(),
            source,
            cfg: self,
            state: state_tx,
            incoming: in_tx,
            outgoing: out_rx,
            outgoing_open: true,
            bytes: bytes.clone(),
            pending: None,
            stop: stop.clone(),
        };
        tracker.spawn(driver.run());
        tracker.close();
        let client = RealtimeClient {
            state: state_rx,
            outgoing: out_tx,
            bytes,
            max_bytes,
            when_full,
            stop,
            tracker,
        };
        Ok((client, in_rx))
    }
}

/// A WebSocket client that reconnects by itself with a fresh token.
///
/// Dropping it closes it (like [`RealtimeClient::close`]).
#[derive(Debug)]
pub struct RealtimeClient {
    state: watch::Receiver<State>,
    outgoing: mpsc::Sender<String>,
    /// One permit per queued byte; the driver gives them back once written.
    bytes: Arc<Semaphore>,
    max_bytes: usize,
    when_full: WhenFull,
    stop: CancellationToken,
    tracker: TaskTracker,
}

impl RealtimeClient {
    /// Settings for a client of `url` (`ws://` or `wss://`).
    pub fn builder(url: impl Into<String>) -> Builder {
        Builder {
            url: url.into(),
            backoff: Backoff::default(),
            connect_timeout: Duration::from_secs(10),
            ping_interval: Duration::from_secs(15),
            pong_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
            incoming_capacity: 256,
            outgoing_capacity: 256,
            outgoing_bytes: 1 << 20,
            when_full: WhenFull::Wait,
            on_connect: None,
            first_connect_deadline: None,
            refresh_mode: RefreshMode::MakeBeforeBreak,
            identity: None,
            token_transport: TokenTransport::Header,
            tls: None,
            read_buffer: 8 << 10,
        }
    }

    /// The state, as a `watch` receiver.
    #[must_use]
    pub fn state(&self) -> watch::Receiver<State> {
        self.state.clone()
    }

    /// The state now.
    #[must_use]
    pub fn current_state(&self) -> State {
        self.state.borrow().clone()
    }

    /// Queues a text message. Messages go out in order; those queued while
    /// disconnected go out after the reconnect. When the queue is full this
    /// waits or fails, as set by [`Builder::when_full`].
    ///
    /// # Errors
    /// [`Error::Closed`] once the client is closed; [`Error::QueueFull`]
    /// (with [`WhenFull::Error`]); [`Error::TooLarge`] for a message larger
    /// than the byte bound.
    pub async fn send(&self, text: impl Into<String>) -> Result<()> {
        if self.when_full == WhenFull::Error {
            return self.try_send(text);
        }
        let text = text.into();
        let n = self.check(&text)?;
        let permits = self
            .bytes
            .acquire_many(n)
            .await
            .map_err(|_| Error::Closed)?;
        let reserved = self.outgoing.reserve().await.map_err(|_| Error::Closed)?;
        permits.forget();
        reserved.send(text);
        Ok(())
    }

    /// Queues a text message without waiting.
    ///
    /// # Errors
    /// [`Error::QueueFull`] when the queue is full (by count or bytes),
    /// [`Error::Closed`] once the client is closed, [`Error::TooLarge`] for
    /// a message larger than the byte bound.
    pub fn try_send(&self, text: impl Into<String>) -> Result<()> {
        let text = text.into();
        let n = self.check(&text)?;
        let permits = self.bytes.try_acquire_many(n).map_err(|e| match e {
            TryAcquireError::NoPermits => Error::QueueFull,
            TryAcquireError::Closed => Error::Closed,
        })?;
        let reserved = self.outgoing.try_reserve().map_err(|e| match e {
            mpsc::error::TrySendError::Full(()) => Error::QueueFull,
            mpsc::error::TrySendError::Closed(()) => Error::Closed,
        })?;
        permits.forget();
        reserved.send(text);
        Ok(())
    }

    /// The message's size in permits, or why it cannot be queued.
    fn check(&self, text: &str) -> Result<u32> {
        if matches!(*self.state.borrow(), State::Closed(_)) {
            return Err(Error::Closed);
        }
        if text.len() > self.max_bytes {
            return Err(Error::TooLarge {
                len: text.len(),
                limit: self.max_bytes,
            });
        }
        // max_bytes ≤ u32::MAX (see `outgoing_limits`).
        Ok(u32::try_from(text.len()).unwrap_or(u32::MAX))
    }

    /// Closes the client: the socket gets a normal close frame, timers and
    /// token fetches stop, and messages still in the outgoing queue are
    /// dropped (wait for the app's acknowledgements first to deliver them).
    /// Idempotent; returns at once (see [`RealtimeClient::shutdown`] to wait).
    pub fn close(&self) {
        self.stop.cancel();
    }

    /// Closes the client and waits until its task has ended.
    pub async fn shutdown(&self) {
        self.close();
        self.tracker.wait().await;
    }

    /// Waits until the client has stopped (closed, signed out, terminal code).
    pub async fn closed(&self) {
        self.tracker.wait().await;
    }

    /// How many of the client's tasks are still running (0 once it has stopped).
    #[must_use]
    pub fn running_tasks(&self) -> usize {
        self.tracker.len()
    }
}

impl Drop for RealtimeClient {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

type Sink = SplitSink<Socket, Message>;
type Stream = SplitStream<Socket>;
/// A make-before-break connection being opened.
type Upgrade = BoxFuture<'static, std::result::Result<(Socket, TimedToken), String>>;
/// The source's current token being fetched while connected.
type Fetch = BoxFuture<'static, std::result::Result<TimedToken, TokenError>>;

/// `at` on tokio's clock (`None` stays `None`; a past time is now).
fn at_instant(at: Option<SystemTime>) -> Option<Instant> {
    let wait = at?.duration_since(SystemTime::now()).unwrap_or_default();
    Some(Instant::now() + wait)
}

/// When to try again after a failed re-authentication while connected, the
/// current token expiring at `expires_at`: after half its remaining
/// lifetime, unless that is shorter than `floor` (then the token runs out,
/// the server closes with 4001, and the client reconnects with a refresh).
pub(crate) fn reauth_retry(expires_at: Option<SystemTime>, floor: Duration) -> Option<Instant> {
    let remaining = expires_at?.duration_since(SystemTime::now()).ok()?;
    let wait = remaining / 2;
    (wait >= floor && !wait.is_zero()).then(|| Instant::now() + wait)
}

/// At most this many re-authentication retries per token: past them the
/// token runs out, the server closes with 4001 and the client reconnects
/// with a refresh (a bound even where the clock does not advance).
const MAX_REAUTH_RETRIES: u32 = 8;

/// The next re-authentication retry, or `None` once the token has had
/// [`MAX_REAUTH_RETRIES`].
fn retry_reauth(
    retries: &mut u32,
    expires_at: Option<SystemTime>,
    floor: Duration,
) -> Option<Instant> {
    if *retries >= MAX_REAUTH_RETRIES {
        return None;
    }
    *retries += 1;
    reauth_retry(expires_at, floor)
}

/// How one attempt ended.
enum Attempt {
    Token(TokenError),
    Failed(ReconnectReason),
    Unauthorized,
    Ended { up_for: Duration, end: SessionEnd },
}

/// How an open connection ended.
enum SessionEnd {
    Stopped(CloseReason),
    ServerClosed { code: u16, reason: String },
    Lost(String),
    Unresponsive,
}

/// What to do after an attempt.
enum Next {
    Now(Option<TimedToken>),
    Backoff {
        reason: ReconnectReason,
        advised: Option<Duration>,
    },
    Stop(CloseReason),
}

struct Driver {
    cfg: Builder,
    source: Arc<dyn TokenSource>,
    logout: CancellationToken,
    stop: CancellationToken,
    /// Until the first connection is up: when to give up.
    deadline: Option<Instant>,
    state: watch::Sender<State>,
    incoming: mpsc::Sender<Incoming>,
    outgoing: mpsc::Receiver<String>,
    outgoing_open: bool,
    bytes: Arc<Semaphore>,
    /// A message taken from the queue whose write failed: sent first after
    /// the reconnect (it may have arrived already: at least once).
    pending: Option<String>,
}

impl Driver {
    async fn run(mut self) {
        let reason = self.run_loop().await;
        tracing::debug!(?reason, "realtime client closed");
        // Senders waiting for room get `Error::Closed`.
        self.bytes.close();
        self.state.send_replace(State::Closed(reason));
    }

    /// Runs `fut` unless the client is closed, the account signs out or the
    /// first-connect deadline passes first.
    async fn or_stop<F: Future>(&self, fut: F) -> Result<F::Output, CloseReason> {
        let deadline = self.deadline;
        tokio::select! {
            biased;
            () = self.stop.cancelled() => Err(CloseReason::Closed),
            () = self.logout.cancelled() => Err(CloseReason::SignedOut),
            () = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                Err(CloseReason::DeadlineExceeded)
            }
            out = fut => Ok(out),
        }
    }

    async fn run_loop(&mut self) -> CloseReason {
        let mut generation = 0u64;
        let mut failures = 0u32;
        let mut auth_retry_used = false;
        let mut token: Option<TimedToken> = None;
        // The token of the last attempt: what the server refused, if it did.
        let mut last = BearerToken::new(String::new());
        loop {
            generation += 1;
            self.state.send_replace(State::Connecting { generation });
            let attempt = match self.attempt(&mut generation, token.take(), &mut last).await {
                Ok(attempt) => attempt,
                Err(reason) => return reason,
            };
            let next = match attempt {
                Attempt::Token(TokenError::SignedOut) => Next::Stop(CloseReason::SignedOut),
                Attempt::Token(e) => Next::Backoff {
                    reason: ReconnectReason::TokenUnavailable(e.to_string()),
                    advised: None,
                },
                Attempt::Failed(reason) => Next::Backoff {
                    reason,
                    advised: None,
                },
                Attempt::Unauthorized => {
                    match self.after_refusal(false, &mut auth_retry_used, &last).await {
                        Ok(next) => next,
                        Err(reason) => return reason,
                    }
                }
                Attempt::Ended { up_for, end } => {
                    if self.cfg.backoff.resets(up_for) {
                        failures = 0;
                        auth_retry_used = false;
                    }
                    match end {
                        SessionEnd::Stopped(reason) => return reason,
                        SessionEnd::ServerClosed { code: 4001, .. } => {
                            match self.after_refusal(false, &mut auth_retry_used, &last).await {
                                Ok(next) => next,
                                Err(reason) => return reason,
                            }
                        }
                        SessionEnd::ServerClosed { code: 4003, .. } => {
                            match self.after_refusal(true, &mut auth_retry_used, &last).await {
                                Ok(next) => next,
                                Err(reason) => return reason,
                            }
                        }
                        SessionEnd::ServerClosed { code, reason }
                            if (4500..=4999).contains(&code) =>
                        {
                            Next::Stop(CloseReason::Terminal { code, reason })
                        }
                        SessionEnd::ServerClosed { code, reason } => Next::Backoff {
                            advised: retry_after(&reason),
                            reason: ReconnectReason::ServerClosed { code, reason },
                        },
                        SessionEnd::Lost(why) => Next::Backoff {
                            reason: ReconnectReason::Transport(why),
                            advised: None,
                        },
                        SessionEnd::Unresponsive => Next::Backoff {
                            reason: ReconnectReason::Unresponsive,
                            advised: None,
                        },
                    }
                }
            };
            match next {
                Next::Stop(reason) => return reason,
                Next::Now(fresh) => token = fresh,
                Next::Backoff { reason, advised } => {
                    let retry_in =
                        advised.unwrap_or_else(|| self.cfg.backoff.delay(failures, jitter_unit()));
                    failures = failures.saturating_add(1);
                    tracing::debug!(
                        attempt = failures,
                        ?retry_in,
                        ?reason,
                        "realtime reconnecting"
                    );
                    self.state.send_replace(State::Reconnecting {
                        attempt: failures,
                        retry_in,
                        reason,
                    });
                    if let Err(reason) = self.or_stop(sleep(retry_in)).await {
                        return reason;
                    }
                }
            }
        }
    }

    /// After the server refused the token (401, 4001) or the session (4003):
    /// one forced refresh and an immediate retry; after that, back off. A
    /// 4003 refreshes every time, so a revoked session ends as signed out.
    async fn after_refusal(
        &self,
        revoked: bool,
        auth_retry_used: &mut bool,
        refused: &BearerToken,
    ) -> Result<Next, CloseReason> {
        if *auth_retry_used && !revoked {
            return Ok(Next::Backoff {
                reason: ReconnectReason::Unauthorized,
                advised: None,
            });
        }
        let first = !*auth_retry_used;
        *auth_retry_used = true;
        Ok(match self.or_stop(self.source.rejected(refused)).await? {
            Ok(fresh) if first => Next::Now(Some(fresh)),
            Ok(_) => Next::Backoff {
                reason: ReconnectReason::Unauthorized,
                advised: None,
            },
            Err(TokenError::SignedOut) => Next::Stop(CloseReason::SignedOut),
            Err(e) => Next::Backoff {
                reason: ReconnectReason::TokenUnavailable(e.to_string()),
                advised: None,
            },
        })
    }

    async fn attempt(
        &mut self,
        generation: &mut u64,
        token: Option<TimedToken>,
        last: &mut BearerToken,
    ) -> Result<Attempt, CloseReason> {
        let token = match token {
            Some(token) => token,
            None => match self.or_stop(self.source.token()).await? {
                Ok(token) => token,
                Err(e) => return Ok(Attempt::Token(e)),
            },
        };
        *last = token.token.clone();
        tracing::trace!(
            generation = *generation,
            url = %redact(&self.cfg.url),
            "realtime connecting"
        );
        let transport = &self.cfg.token_transport;
        let request = match request(&self.cfg.url, transport, &token.token) {
            Ok(request) => request,
            Err(e) => return Ok(Attempt::Token(e)),
        };
        let connect = open(
            request,
            self.cfg.tls.clone(),
            self.cfg.read_buffer,
            self.cfg.connect_timeout,
        );
        let socket = match self.or_stop(connect).await? {
            Err(e) if e.is_unauthorized() => return Ok(Attempt::Unauthorized),
            Err(OpenError::Status(status)) => {
                return Ok(Attempt::Failed(ReconnectReason::Handshake { status }));
            }
            Err(e) => {
                let why = scrub(&e.to_string(), &token.token);
                return Ok(Attempt::Failed(ReconnectReason::Transport(why)));
            }
            Ok((socket, response)) => {
                if let Err(why) = chosen_protocol(transport, &response) {
                    return Ok(Attempt::Failed(ReconnectReason::Transport(why)));
                }
                socket
            }
        };
        tracing::debug!(generation = *generation, "realtime connected");
        self.deadline = None;
        self.state.send_replace(State::Connected {
            generation: *generation,
        });
        let started = Instant::now();
        let end = self.session(generation, socket, token, last).await;
        Ok(Attempt::Ended {
            up_for: started.elapsed(),
            end,
        })
    }

    /// Hands a message to the app, waiting while its queue is full, unless
    /// the client stops meanwhile (the message is then dropped).
    async fn deliver(&self, message: Incoming) {
        tokio::select! {
            biased;
            () = self.stop.cancelled() => {}
            () = self.logout.cancelled() => {}
            _ = self.incoming.send(message) => {}
        }
    }

    /// Hands a message to the app unless, during a make-before-break
    /// overlap, a message with the same identity was already delivered.
    async fn deliver_once(&self, message: Incoming, overlap: &mut Option<HashSet<String>>) {
        if let (Some(seen), Some(Identity(identity))) = (overlap.as_mut(), &self.cfg.identity)
            && let Some(id) = identity(&message)
            && !seen.insert(id)
        {
            return;
        }
        self.deliver(message).await;
    }

    /// Runs the `on_connect` hook on a new connection and sends what it
    /// sent, then (with `pending`) the message whose write failed.
    async fn prepare(
        &mut self,
        generation: u64,
        sink: &mut Sink,
        pending: bool,
    ) -> Result<(), SessionEnd> {
        let write_timeout = self.cfg.write_timeout;
        if let Some(Hook(hook)) = self.cfg.on_connect.clone() {
            let (tx, mut rx) = mpsc::unbounded_channel();
            let ran = self
                .or_stop(timeout(write_timeout, hook(Resume { generation, tx })))
                .await;
            match ran {
                Err(reason) => return Err(SessionEnd::Stopped(reason)),
                Ok(Err(_)) => {
                    return Err(SessionEnd::Lost("the on_connect hook timed out".to_owned()));
                }
                Ok(Ok(())) => {}
            }
            while let Ok(text) = rx.try_recv() {
                let sent = timeout(write_timeout, sink.send(Message::text(text))).await;
                if !matches!(sent, Ok(Ok(()))) {
                    return Err(SessionEnd::Lost("write failed".to_owned()));
                }
            }
        }
        if !pending {
            return Ok(());
        }
        if let Some(text) = self.pending.take() {
            let sent = timeout(write_timeout, sink.send(Message::text(text.clone()))).await;
            if !matches!(sent, Ok(Ok(()))) {
                self.pending = Some(text);
                return Err(SessionEnd::Lost("write failed".to_owned()));
            }
            self.bytes.add_permits(text.len());
        }
        Ok(())
    }

    /// Asks the source for its current token (bounded by the connect
    /// limit: a refresh that hangs must not leave the connection without a
    /// retry).
    fn fetch(&self) -> Fetch {
        let source = self.source.clone();
        let limit = self.cfg.connect_timeout;
        Box::pin(async move {
            match timeout(limit, source.token()).await {
                Ok(result) => result,
                Err(_) => Err(TokenError::Unavailable(
                    "the token source timed out".to_owned(),
                )),
            }
        })
    }

    /// Waits for the source's next token change.
    fn changed(&self) -> BoxFuture<'static, ()> {
        let source = self.source.clone();
        Box::pin(async move { source.changed().await })
    }

    /// Opens the make-before-break connection with the source's newer token.
    fn upgrade(&self, fresh: TimedToken) -> Upgrade {
        let url = self.cfg.url.clone();
        let transport = self.cfg.token_transport.clone();
        let limit = self.cfg.connect_timeout;
        let tls = self.cfg.tls.clone();
        let read_buffer = self.cfg.read_buffer;
        Box::pin(async move {
            let request = request(&url, &transport, &fresh.token).map_err(|e| e.to_string())?;
            let (socket, response) = open(request, tls, read_buffer, limit)
                .await
                .map_err(|e| scrub(&e.to_string(), &fresh.token))?;
            chosen_protocol(&transport, &response)?;
            Ok((socket, fresh))
        })
    }

    /// Pumps one open connection until it ends. When the source has a newer
    /// token (its `changed` fires, or the current token's `refresh_at`
    /// comes) the connection moves to it, in-band or make-before-break (a
    /// switch moves `generation` on); `last` follows the token in use.
    #[allow(clippy::too_many_lines)]
    async fn session(
        &mut self,
        generation: &mut u64,
        socket: Socket,
        token: TimedToken,
        last: &mut BearerToken,
    ) -> SessionEnd {
        let (mut sink, mut stream) = socket.split();
        let write_timeout = self.cfg.write_timeout;
        if let Err(end) = self.prepare(*generation, &mut sink, true).await {
            return end;
        }
        let follows = token.refresh_at.is_some();
        let mut reauth = at_instant(token.refresh_at);
        // Failed re-authentications of the current token, bounded.
        let mut reauth_retries = 0u32;
        let mut current_expiry = token.expires_at;
        *last = token.token;
        // A failed re-authentication is tried again while the token lives
        // (at half its remaining lifetime, no sooner than the backoff's base).
        let floor = self.cfg.backoff.base.max(Duration::from_millis(10));
        let mut changed: Option<BoxFuture<'static, ()>> = follows.then(|| self.changed());
        let mut fetch: Option<Fetch> = None;
        // Whether the running fetch was asked for by `refresh_at` (a same
        // token then counts as a failed re-authentication).
        let mut fetch_due = false;
        let mut upgrade: Option<Upgrade> = None;
        // The old connection after a switch, read until it has closed.
        let mut draining: Option<(Stream, Instant)> = None;
        // Identities delivered during a make-before-break overlap.
        let mut overlap: Option<HashSet<String>> = None;
        let mut next_ping = Instant::now() + self.cfg.ping_interval;
        let mut dead_at: Option<Instant> = None;
        loop {
            let drain_until = draining.as_ref().map(|(_, until)| *until);
            let busy = fetch.is_some() || upgrade.is_some();
            tokio::select! {
                biased;
                () = self.stop.cancelled() => {
                    let frame = CloseFrame { code: CloseCode::Normal, reason: "".into() };
                    let _ = timeout(write_timeout, sink.send(Message::Close(Some(frame)))).await;
                    return SessionEnd::Stopped(CloseReason::Closed);
                }
                () = self.logout.cancelled() => {
                    let frame = CloseFrame { code: CloseCode::Normal, reason: "signed out".into() };
                    let _ = timeout(write_timeout, sink.send(Message::Close(Some(frame)))).await;
                    return SessionEnd::Stopped(CloseReason::SignedOut);
                }
                frame = stream.next() => {
                    dead_at = None;
                    match frame {
                        None => return SessionEnd::Lost("closed without a close frame".to_owned()),
                        Some(Err(e)) => return SessionEnd::Lost(e.to_string()),
                        Some(Ok(Message::Close(frame))) => {
                            let (code, reason) = frame.map_or((1005, String::new()), |f| {
                                (u16::from(f.code), f.reason.to_string())
                            });
                            return SessionEnd::ServerClosed { code, reason };
                        }
                        // A stop while the app is not reading is handled by
                        // the stop arms on the next turn.
                        Some(Ok(Message::Text(text))) => {
                            self.deliver_once(Incoming::Text(text.to_string()), &mut overlap).await;
                        }
                        Some(Ok(Message::Binary(bytes))) => {
                            self.deliver_once(Incoming::Binary(bytes.to_vec()), &mut overlap).await;
                        }
                        Some(Ok(Message::Ping(_))) => {
                            // tungstenite queued the pong; push it out now.
                            let _ = timeout(write_timeout, sink.flush()).await;
                        }
                        Some(Ok(_)) => {}
                    }
                }
                frame = async { draining.as_mut().map(|(old, _)| old).expect("draining").next().await },
                    if draining.is_some() => match frame {
                    Some(Ok(Message::Text(text))) if self.cfg.identity.is_some() => {
                        self.deliver_once(Incoming::Text(text.to_string()), &mut overlap).await;
                    }
                    Some(Ok(Message::Binary(bytes))) if self.cfg.identity.is_some() => {
                        self.deliver_once(Incoming::Binary(bytes.to_vec()), &mut overlap).await;
                    }
                    Some(Ok(Message::Close(_)) | Err(_)) | None => {
                        draining = None;
                        overlap = None;
                    }
                    Some(Ok(_)) => {}
                },
                () = sleep_until(drain_until.unwrap_or_else(Instant::now)), if drain_until.is_some() => {
                    draining = None;
                    overlap = None;
                }
                () = async { changed.as_mut().expect("changed").await }, if changed.is_some() => {
                    // The source refreshed on its own: take its token, unless
                    // a move is already under way (it takes the newest).
                    changed = Some(self.changed());
                    if !busy {
                        fetch = Some(self.fetch());
                        fetch_due = false;
                    }
                }
                () = sleep_until(reauth.unwrap_or_else(Instant::now)), if reauth.is_some() && !busy => {
                    // Due: asking the source joins its refresh (or starts the
                    // one refresh its policy allows); never one of our own.
                    reauth = None;
                    fetch = Some(self.fetch());
                    fetch_due = true;
                }
                fetched = async { fetch.as_mut().expect("fetch").await }, if fetch.is_some() => {
                    fetch = None;
                    match fetched {
                        Ok(fresh) if fresh.token != *last => match self.cfg.refresh_mode.clone() {
                            RefreshMode::MakeBeforeBreak => {
                                tracing::debug!(generation = *generation, "realtime make-before-break switch");
                                upgrade = Some(self.upgrade(fresh));
                                overlap = self.cfg.identity.is_some().then(HashSet::new);
                            }
                            RefreshMode::InBand(hook) => {
                                let text = hook(&fresh.token);
                                // Past tungstenite, which logs what it writes.
                                let mut socket = sink.reunite(stream).expect("the halves of one socket");
                                let sent = timeout(write_timeout, unlogged::send_text(&mut socket, text)).await;
                                if !matches!(sent, Ok(Ok(()))) {
                                    return SessionEnd::Lost("write failed".to_owned());
                                }
                                (sink, stream) = socket.split();
                                tracing::debug!(generation = *generation, "realtime in-band re-authentication");
                                reauth = at_instant(fresh.refresh_at);
                                reauth_retries = 0;
                                *last = fresh.token;
                                current_expiry = fresh.expires_at;
                            }
                        },
                        Ok(_) if !fetch_due => {}
                        Ok(_) => {
                            tracing::debug!("re-authentication: the source has no newer token yet");
                            reauth = retry_reauth(&mut reauth_retries, current_expiry, floor);
                        }
                        Err(e) if e.is_terminal() => {
                            let frame = CloseFrame { code: CloseCode::Normal, reason: "signed out".into() };
                            let _ = timeout(write_timeout, sink.send(Message::Close(Some(frame)))).await;
                            return SessionEnd::Stopped(CloseReason::SignedOut);
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, "re-authentication: no token");
                            reauth = retry_reauth(&mut reauth_retries, current_expiry, floor);
                        }
                    }
                }
                done = async { upgrade.as_mut().expect("upgrade").await }, if upgrade.is_some() => {
                    upgrade = None;
                    match done {
                        Err(why) => {
                            tracing::debug!(%why, "make-before-break: the new connection failed; keeping the old one");
                            overlap = None;
                            reauth = retry_reauth(&mut reauth_retries, current_expiry, floor);
                        }
                        Ok((socket, fresh)) => {
                            let (mut new_sink, new_stream) = socket.split();
                            match self.prepare(*generation + 1, &mut new_sink, false).await {
                                Err(SessionEnd::Stopped(reason)) => return SessionEnd::Stopped(reason),
                                Err(_) => {
                                    tracing::debug!("make-before-break: the new connection failed; keeping the old one");
                                    overlap = None;
                                    reauth = retry_reauth(&mut reauth_retries, current_expiry, floor);
                                }
                                Ok(()) => {
                                    let frame = CloseFrame { code: CloseCode::Normal, reason: "re-authenticated".into() };
                                    let _ = timeout(write_timeout, sink.send(Message::Close(Some(frame)))).await;
                                    let old_stream = std::mem::replace(&mut stream, new_stream);
                                    sink = new_sink;
                                    draining = Some((old_stream, Instant::now() + write_timeout));
                                    *generation += 1;
                                    tracing::debug!(generation = *generation, "realtime switched connections");
                                    self.state.send_replace(State::Connected { generation: *generation });
                                    reauth = at_instant(fresh.refresh_at);
                                    reauth_retries = 0;
                                    *last = fresh.token;
                                    current_expiry = fresh.expires_at;
                                    next_ping = Instant::now() + self.cfg.ping_interval;
                                    dead_at = None;
                                }
                            }
                        }
                    }
                }
                // While the old connection drains, sending waits: what went
                // out on it reaches the server before what goes on the new one.
                out = self.outgoing.recv(), if self.outgoing_open && draining.is_none() => match out {
                    None => self.outgoing_open = false,
                    Some(text) => {
                        let sent = timeout(write_timeout, sink.send(Message::text(text.clone()))).await;
                        if !matches!(sent, Ok(Ok(()))) {
                            self.pending = Some(text);
                            return SessionEnd::Lost("write failed".to_owned());
                        }
                        self.bytes.add_permits(text.len());
                    }
                },
                () = sleep_until(next_ping) => {
                    next_ping = Instant::now() + self.cfg.ping_interval;
                    let sent = timeout(write_timeout, sink.send(Message::Ping(Default::default()))).await;
                    if !matches!(sent, Ok(Ok(()))) {
                        return SessionEnd::Lost("ping write failed".to_owned());
                    }
                    dead_at.get_or_insert(Instant::now() + self.cfg.pong_timeout);
                }
                () = sleep_until(dead_at.unwrap_or_else(Instant::now)), if dead_at.is_some() => {
                    return SessionEnd::Unresponsive;
                }
            }
        }
    }
}

/// `text` with every occurrence of the token replaced.
pub(crate) fn scrub(text: &str, token: &BearerToken) -> String {
    if token.secret().is_empty() {
        return text.to_owned();
    }
    text.replace(token.secret(), "[redacted]")
}

/// A URL string for a log line, without credentials or query.
fn redact(url: &str) -> String {
    url::Url::parse(url).map_or_else(|_| "<invalid url>".to_owned(), |u| redact_url(&u))
}

/// The server's advised delay in a close reason: `{"retry_after_ms": N}`.
pub(crate) fn retry_after(reason: &str) -> Option<Duration> {
    #[derive(Deserialize)]
    struct Advice {
        retry_after_ms: u64,
    }
    serde_json::from_str::<Advice>(reason)
        .ok()
        .map(|a| Duration::from_millis(a.retry_after_ms))
}

/// A URL for an error message, without credentials or query.
fn redact_url(url: &url::Url) -> String {
    format!(
        "{}://{}{}",
        url.scheme(),
        url.host_str().unwrap_or(""),
        url.path()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_read_from_the_close_reason() {
        assert_eq!(
            retry_after(r#"{"retry_after_ms": 1500}"#),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            retry_after(r#"{"retry_after_ms":0,"why":"restart"}"#),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after("going away"), None);
        assert_eq!(retry_after(r#"{"retry_after_ms": -1}"#), None);
        assert_eq!(retry_after(""), None);
    }

    #[test]
    fn refresh_times_land_on_the_tokio_clock() {
        let now = Instant::now();
        let at = at_instant(Some(SystemTime::now() + Duration::from_secs(60))).expect("set");
        let lead = at - now;
        assert!(lead > Duration::from_secs(59) && lead < Duration::from_secs(61));
        // A past time is now; an unknown one stays unknown.
        let past = at_instant(Some(SystemTime::now() - Duration::from_secs(5))).expect("set");
        assert!(past - now < Duration::from_secs(1));
        assert_eq!(at_instant(None), None);
    }

    #[test]
    fn a_failed_reauth_is_retried_at_half_the_remaining_life_above_the_floor() {
        let now = Instant::now();
        let soon = |d: Duration| Some(SystemTime::now() + d);
        let at = reauth_retry(soon(Duration::from_secs(10)), Duration::from_millis(250))
            .expect("retried");
        let wait = at - now;
        assert!(wait > Duration::from_millis(4900) && wait < Duration::from_millis(5100));
        // Too close to the expiry, unknown or past: the 4001 path takes over.
        assert_eq!(
            reauth_retry(soon(Duration::from_millis(400)), Duration::from_millis(250)),
            None
        );
        assert_eq!(reauth_retry(None, Duration::from_millis(250)), None);
        assert_eq!(
            reauth_retry(
                Some(SystemTime::now() - Duration::from_secs(1)),
                Duration::ZERO
            ),
            None
        );
    }

    #[test]
    fn re_authentication_retries_are_bounded_per_token() {
        let far = Some(SystemTime::now() + Duration::from_secs(3600));
        let mut retries = 0;
        let scheduled = (0..20)
            .filter(|_| retry_reauth(&mut retries, far, Duration::ZERO).is_some())
            .count();
        assert_eq!(scheduled, 8);
        assert_eq!(retry_reauth(&mut retries, far, Duration::ZERO), None);
    }

    #[test]
    fn urls_and_errors_lose_the_token() {
        assert_eq!(redact("ws://127.0.0.1:1/ws?room=a"), "ws://127.0.0.1/ws");
        assert_eq!(
            scrub("failed ws://x/?access_token=t0k", &BearerToken::new("t0k")),
            "failed ws://x/?access_token=[redacted]"
        );
    }

    #[tokio::test]
    async fn only_ws_urls_are_accepted() {
        let source: Arc<dyn TokenSource> = Arc::new(crate::StaticToken::new("t"));
        for bad in ["http://x/ws", "not a url", "file:///tmp/ws"] {
            assert!(matches!(
                RealtimeClient::builder(bad).build(source.clone()),
                Err(Error::InvalidUrl(_))
            ));
        }
    }
}
