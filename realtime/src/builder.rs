//! [`Builder`]: a client's settings, with their defaults as named
//! constants, and `build()`, which starts the driver task.
//!
//! (Over 500 lines: every setting is one short method, most of the length
//! is their rustdoc examples; splitting the settings would scatter one
//! builder.)

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use sessionkit_backoff::Backoff;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::client::RealtimeClient;
use crate::driver::Driver;
use crate::endpoints::{Endpoint, Endpoints, loggable, round_order};
use crate::error::{Error, Result};
use crate::inbox::Inbox;
use crate::options::{Hook, Identity, Incoming, RefreshMode, Resume, TokenTransport, WhenFull};
use crate::state::State;
use crate::token::{BearerToken, IntoTokenSource};
#[allow(unused_imports)] // rustdoc links
use crate::token::{TimedToken, TokenSource};

/// The limit for TCP connect, TLS and the WebSocket handshake.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// After how long without a frame from the server a connection is pinged
/// (and pinged again at this interval while it stays silent).
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(4);
/// How long a connection may go without any frame from the server (a pong,
/// a message, a ping) before it counts as dead: a half-open connection
/// (no FIN, no RST) is noticed within this long of its last frame.
pub const DEFAULT_PONG_TIMEOUT: Duration = Duration::from_secs(8);
/// For how long into an outage refused connections are probed at the base
/// delay rather than backed off (see [`Builder::refused_probe_window`]).
pub const DEFAULT_REFUSED_PROBE_WINDOW: Duration = Duration::from_secs(30);
/// The limit for one write.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How many incoming messages wait for the app before reading pauses.
pub const DEFAULT_INCOMING_CAPACITY: usize = 256;
/// How many bytes of incoming messages wait for the app before reading pauses.
pub const DEFAULT_INCOMING_BYTES: usize = 4 << 20;
/// How many outgoing messages may wait while disconnected.
pub const DEFAULT_OUTGOING_CAPACITY: usize = 256;
/// How many bytes of outgoing messages may wait while disconnected.
pub const DEFAULT_OUTGOING_BYTES: usize = 1 << 20;
/// Each connection's read buffer.
pub const DEFAULT_READ_BUFFER: usize = 8 << 10;
/// The largest message (and frame) accepted from the server.
pub const DEFAULT_MAX_MESSAGE: usize = 1 << 20;

/// Settings for a [`RealtimeClient`]; start from [`RealtimeClient::builder`]
/// (one URL) or [`RealtimeClient::builder_multi`] (several endpoints).
#[derive(Debug, Clone)]
#[must_use]
pub struct Builder {
    pub(crate) urls: Vec<String>,
    pub(crate) start_seed: Option<u64>,
    pub(crate) refused_probe_window: Duration,
    pub(crate) backoff: Backoff,
    pub(crate) connect_timeout: Duration,
    pub(crate) ping_interval: Duration,
    pub(crate) pong_timeout: Duration,
    pub(crate) write_timeout: Duration,
    pub(crate) incoming_capacity: usize,
    pub(crate) incoming_bytes: usize,
    pub(crate) outgoing_capacity: usize,
    pub(crate) outgoing_bytes: usize,
    pub(crate) when_full: WhenFull,
    pub(crate) on_connect: Option<Hook>,
    pub(crate) first_connect_deadline: Option<Duration>,
    pub(crate) refresh_mode: RefreshMode,
    pub(crate) identity: Option<Identity>,
    pub(crate) token_transport: TokenTransport,
    pub(crate) tls: Option<Arc<rustls::ClientConfig>>,
    pub(crate) read_buffer: usize,
    pub(crate) insecure_plain_ws: bool,
    pub(crate) max_message: usize,
}

impl Builder {
    /// The defaults (the `DEFAULT_*` constants, [`Backoff::default`]).
    pub(crate) fn new(urls: Vec<String>) -> Self {
        Self {
            urls,
            start_seed: None,
            refused_probe_window: DEFAULT_REFUSED_PROBE_WINDOW,
            backoff: Backoff::default(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            ping_interval: DEFAULT_PING_INTERVAL,
            pong_timeout: DEFAULT_PONG_TIMEOUT,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            incoming_capacity: DEFAULT_INCOMING_CAPACITY,
            incoming_bytes: DEFAULT_INCOMING_BYTES,
            outgoing_capacity: DEFAULT_OUTGOING_CAPACITY,
            outgoing_bytes: DEFAULT_OUTGOING_BYTES,
            when_full: WhenFull::Wait,
            on_connect: None,
            first_connect_deadline: None,
            refresh_mode: RefreshMode::MakeBeforeBreak,
            identity: None,
            token_transport: TokenTransport::Header,
            tls: None,
            read_buffer: DEFAULT_READ_BUFFER,
            insecure_plain_ws: false,
            max_message: DEFAULT_MAX_MESSAGE,
        }
    }

    /// The WebSocket settings of each connection.
    pub(crate) fn ws_config(&self) -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
        tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .read_buffer_size(self.read_buffer)
            .max_message_size(Some(self.max_message))
            .max_frame_size(Some(self.max_message))
    }

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
    /// keeps that size until the connection ends (messages are bounded by
    /// [`Builder::max_message_size`]). tungstenite's own default buffer (128 KiB) suits bulk
    /// transfers, not many mostly idle connections.
    pub fn read_buffer_size(mut self, bytes: usize) -> Self {
        self.read_buffer = bytes.max(1 << 10);
        self
    }

    /// Allows `ws://` (no TLS: the token travels in clear text) to hosts
    /// other than loopback — a TLS-terminating proxy on a private network,
    /// say. By default `build` refuses such a URL; `ws://` to
    /// `127.0.0.0/8`, `[::1]` and `localhost` is always allowed.
    pub fn insecure_plain_ws(mut self, allow: bool) -> Self {
        self.insecure_plain_ws = allow;
        self
    }

    /// The largest message the server may send (default
    /// [`DEFAULT_MAX_MESSAGE`], 1 MiB; tungstenite's own is 64 MiB): a
    /// larger one ends the connection (and the client reconnects) instead
    /// of being buffered.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message = bytes.max(1 << 10);
        self
    }

    /// The reconnect schedule (default: 250 ms, ×2, 30 s, reset after 10 s
    /// up). With several endpoints it serves the whole list: the ceiling
    /// grows once per full round of failures.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Draws the client's round of the endpoints (where it starts, and in
    /// which order it moves on) from `seed` instead of at random: the same
    /// seed, the same round; seeds spread clients uniformly over the list.
    /// For tests, or to keep a user on one node across restarts (a hash of
    /// the user's id as the seed). No effect with one endpoint.
    ///
    /// ```no_run
    /// use std::sync::Arc;
    /// use sessionkit_realtime::{RealtimeClient, StaticToken};
    ///
    /// # async fn demo() -> Result<(), sessionkit_realtime::Error> {
    /// let source = Arc::new(StaticToken::new("an-access-token"));
    /// let (client, _incoming) =
    ///     RealtimeClient::builder_multi(["wss://a.example.com/ws", "wss://b.example.com/ws"])
    ///         .start_seed(42)
    ///         .build(source)?;
    /// # drop(client); Ok(()) }
    /// ```
    pub fn start_seed(mut self, seed: u64) -> Self {
        self.start_seed = Some(seed);
        self
    }

    /// For how long into an outage a refused connection (the host answered
    /// with a reset: nothing listens, the server is down or restarting) is
    /// retried every `[base/2, base]` of the backoff instead of backing
    /// off (default [`DEFAULT_REFUSED_PROBE_WINDOW`], 30 s;
    /// `Duration::ZERO` turns it off). A refusal costs the server's host a
    /// reset and its process nothing, and the client is back within one
    /// base delay of the server's return for outages up to the window
    /// (with the default backoff, within 250 ms; with exponential backoff
    /// alone, a 10 s outage left clients away up to 16 s longer). Past the
    /// window, refusals count as failures and the schedule grows. Timeouts,
    /// lost connections and error statuses always back off.
    pub fn refused_probe_window(mut self, window: Duration) -> Self {
        self.refused_probe_window = window;
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

    /// Liveness: after `interval` without any frame from the server
    /// (default 4 s) the client pings, and again every `interval` while the
    /// connection stays silent (at most every `timeout / 2`); after
    /// `timeout` without any frame (default 8 s) the connection is dead and
    /// the client reconnects (to the next endpoint, with several). A
    /// half-open connection (the peer gone without a FIN or a reset, a
    /// network path that drops everything) is thus noticed within `timeout`
    /// of the last frame it carried. A busy connection is not pinged.
    /// `timeout − interval` is how late a pong may be: keep it above the
    /// worst round trip (the defaults allow 4 s). The defaults cost an idle
    /// client 15 pings a minute (a 6-byte frame each way); phones that
    /// must let their radio sleep may prefer e.g. 25 s and 50 s.
    ///
    /// ```no_run
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use sessionkit_realtime::{RealtimeClient, StaticToken};
    ///
    /// # async fn demo() -> Result<(), sessionkit_realtime::Error> {
    /// let source = Arc::new(StaticToken::new("an-access-token"));
    /// let (client, _incoming) = RealtimeClient::builder("wss://chat.example.com/ws")
    ///     .ping(Duration::from_secs(25), Duration::from_secs(50))
    ///     .build(source)?;
    /// # drop(client); Ok(()) }
    /// ```
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
    /// (default 256; see also [`Builder::incoming_bytes`]).
    pub fn incoming_capacity(mut self, n: usize) -> Self {
        self.incoming_capacity = n.max(1);
        self
    }

    /// How many bytes of incoming messages (text as UTF-8, binary as is)
    /// wait for the app before reading pauses (default
    /// [`DEFAULT_INCOMING_BYTES`], 4 MiB). Like the count bound
    /// ([`Builder::incoming_capacity`]), a full queue drops nothing: the
    /// client stops reading from the socket until the app has taken enough
    /// messages, and the server's writes back up through TCP. A message
    /// larger than this bound (up to [`Builder::max_message_size`]) waits
    /// until the queue is empty and then goes in alone. Besides the queue,
    /// the client holds at most the one message waiting to go in and the
    /// connection's read buffer.
    ///
    /// ```no_run
    /// use std::sync::Arc;
    /// use sessionkit_realtime::{RealtimeClient, StaticToken};
    ///
    /// # async fn demo() -> Result<(), sessionkit_realtime::Error> {
    /// let source = Arc::new(StaticToken::new("an-access-token"));
    /// // Large documents, read by a slow consumer: at most 16 MiB wait.
    /// let (client, mut incoming) = RealtimeClient::builder("wss://docs.example.com/ws")
    ///     .max_message_size(8 << 20)
    ///     .incoming_bytes(16 << 20)
    ///     .build(source)?;
    /// while let Some(message) = incoming.recv().await {
    ///     // ... the client reads on only as the app takes messages.
    /// #   let _ = message;
    /// }
    /// # drop(client); Ok(()) }
    /// ```
    pub fn incoming_bytes(mut self, bytes: usize) -> Self {
        self.incoming_bytes = bytes;
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

    /// Gives up with [`crate::CloseReason::DeadlineExceeded`] unless a first
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
    /// [`Error::InvalidUrl`] unless every URL is `ws://` (loopback, or
    /// with [`Builder::insecure_plain_ws`]) or `wss://` (with several
    /// endpoints, the message says which); [`Error::NoEndpoints`] for an
    /// empty list.
    pub fn build(
        self,
        source: impl IntoTokenSource,
    ) -> Result<(RealtimeClient, mpsc::Receiver<Incoming>)> {
        let source = source.into_token_source();
        let names = self.checked_endpoints()?;
        let order = round_order(names.len(), self.start_seed);
        let endpoints = Endpoints::new(self.urls.clone(), names.clone(), order);
        let (state_tx, state_rx) = watch::channel(State::Connecting { generation: 1 });
        let (in_tx, in_rx) = mpsc::channel(self.incoming_capacity);
        let incoming = Inbox::new(in_tx, self.incoming_bytes);
        let (out_tx, out_rx) = mpsc::channel(self.outgoing_capacity);
        let stop = CancellationToken::new();
        let tracker = TaskTracker::new();
        let bytes = Arc::new(Semaphore::new(self.outgoing_bytes));
        let (max_bytes, when_full) = (self.outgoing_bytes, self.when_full);
        let counters = Arc::new(crate::metrics::Counters::default());
        let driver = Driver {
            counters: counters.clone(),
            deadline: self.first_connect_deadline.map(|d| Instant::now() + d),
            logout: source.cancellation(),
            source,
            cfg: self,
            state: state_tx,
            incoming,
            outgoing: out_rx,
            outgoing_open: true,
            bytes: bytes.clone(),
            pending: None,
            stop: stop.clone(),
            endpoints,
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
            counters,
            endpoints: names.into(),
        };
        Ok((client, in_rx))
    }

    /// Every endpoint parsed and checked, with its name.
    fn checked_endpoints(&self) -> Result<Vec<Endpoint>> {
        if self.urls.is_empty() {
            return Err(Error::NoEndpoints);
        }
        let several = self.urls.len() > 1;
        let which = |index: usize, why: String| {
            if several {
                Error::InvalidUrl(format!("endpoint {index}: {why}"))
            } else {
                Error::InvalidUrl(why)
            }
        };
        let mut names = Vec::with_capacity(self.urls.len());
        for (index, url) in self.urls.iter().enumerate() {
            let parsed = url::Url::parse(url).map_err(|e| which(index, format!("{e}")))?;
            if !matches!(parsed.scheme(), "ws" | "wss") || parsed.host_str().is_none() {
                return Err(which(index, loggable(&parsed)));
            }
            if parsed.scheme() == "ws" && !self.insecure_plain_ws && !is_loopback(&parsed) {
                return Err(which(
                    index,
                    format!(
                        "{}: plain ws:// would send the token in clear text; use wss:// \
                         (ws:// is for loopback, or Builder::insecure_plain_ws)",
                        loggable(&parsed)
                    ),
                ));
            }
            names.push(Endpoint::new(index, &parsed));
        }
        Ok(names)
    }
}

/// Is the URL's host this machine (`127.0.0.0/8`, `::1`, `localhost`)?
fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[tokio::test]
    async fn every_endpoint_is_checked_and_an_empty_list_refused() {
        let source: Arc<dyn TokenSource> = Arc::new(crate::StaticToken::new("t"));
        let none: [&str; 0] = [];
        assert!(matches!(
            RealtimeClient::builder_multi(none).build(source.clone()),
            Err(Error::NoEndpoints)
        ));
        let bad = RealtimeClient::builder_multi([
            "wss://a.example.com/ws",
            "ws://b.example.com/ws?access_token=secret",
        ])
        .build(source.clone());
        match bad {
            Err(Error::InvalidUrl(why)) => {
                assert!(
                    why.starts_with("endpoint 1: ws://b.example.com/ws:"),
                    "{why}"
                );
                assert!(!why.contains("secret"), "{why}");
            }
            other => panic!("{:?}", other.map(|_| ())),
        }
        let (client, _incoming) =
            RealtimeClient::builder_multi(["wss://a.example.com/ws", "ws://127.0.0.1:9/ws?room=x"])
                .build(source)
                .expect("both fine");
        let names: Vec<String> = client.endpoints().iter().map(ToString::to_string).collect();
        assert_eq!(names, ["wss://a.example.com/ws", "ws://127.0.0.1:9/ws"]);
        assert_eq!(client.endpoints()[1].index, 1);
    }

    #[tokio::test]
    async fn plain_ws_goes_only_to_loopback_unless_allowed() {
        let source: Arc<dyn TokenSource> = Arc::new(crate::StaticToken::new("t"));
        for remote in ["ws://chat.example.com/ws", "ws://10.0.0.7:9000/ws"] {
            assert!(matches!(
                RealtimeClient::builder(remote).build(source.clone()),
                Err(Error::InvalidUrl(_))
            ));
            let allowed = RealtimeClient::builder(remote)
                .insecure_plain_ws(true)
                .build(source.clone());
            assert!(allowed.is_ok(), "{remote}");
        }
        for local in [
            "ws://127.0.0.1:1/ws",
            "ws://[::1]:1/ws",
            "ws://localhost:1/ws",
        ] {
            assert!(
                RealtimeClient::builder(local).build(source.clone()).is_ok(),
                "{local}"
            );
        }
        assert!(
            RealtimeClient::builder("wss://chat.example.com/ws")
                .build(source)
                .is_ok()
        );
    }
}
