//! [`RealtimeClient`]: the handle an app holds — send (queued while
//! disconnected, bounded by count and bytes), watch the state, close.

use std::sync::Arc;
use tokio::sync::{Semaphore, TryAcquireError, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::builder::Builder;
use crate::endpoints::Endpoint;
use crate::error::{Error, Result};
use crate::options::WhenFull;
use crate::state::State;

/// A WebSocket client that reconnects by itself with a fresh token.
///
/// Dropping it closes it (like [`RealtimeClient::close`]).
#[derive(Debug)]
pub struct RealtimeClient {
    pub(crate) state: watch::Receiver<State>,
    pub(crate) outgoing: mpsc::Sender<String>,
    /// One permit per queued byte; the driver gives them back once written.
    pub(crate) bytes: Arc<Semaphore>,
    pub(crate) max_bytes: usize,
    pub(crate) when_full: WhenFull,
    pub(crate) stop: CancellationToken,
    pub(crate) tracker: TaskTracker,
    pub(crate) counters: Arc<crate::metrics::Counters>,
    pub(crate) endpoints: Arc<[Endpoint]>,
}

impl RealtimeClient {
    /// Settings for a client of `url` (`ws://` or `wss://`).
    pub fn builder(url: impl Into<String>) -> Builder {
        Builder::new(vec![url.into()])
    }

    /// Settings for a client of several endpoints: the nodes of one service
    /// (`ws://` or `wss://` each), as Ably's fallback hosts. The client
    /// goes round them in an order of its own, drawn at random (so a
    /// node's clients spread over the other nodes when it goes; its start
    /// is uniform over the list; [`Builder::start_seed`] pins it), and
    /// moves on to the next when an attempt fails, a connection is lost or
    /// stops answering, or the server goes away (close 1001 or 1012: then
    /// at once, within one base delay). It stays on its endpoint for
    /// token matters (401, 4001, 4003) and the application's own close
    /// codes (4000–4499). One backoff schedule serves the whole list: its
    /// ceiling grows once per full round of failures, and every wait has
    /// full jitter. Every new connection runs the `on_connect` hook
    /// ([`Builder::on_connect`]) on whichever node it lands: resume there
    /// as after any reconnect. Each endpoint keeps its own DPoP nonce.
    /// Every handshake says how many endpoints the client has
    /// ([`crate::ENDPOINTS_HEADER`]), so that a server balancing its nodes
    /// asks only clients that can go elsewhere to move (close 1012).
    /// [`RealtimeClient::endpoint`] and [`crate::Metrics::endpoint`] say
    /// where the client is connected; logs and
    /// [`crate::ReconnectReason::Transport`] name the endpoint by its URL
    /// without query.
    ///
    /// An empty list is refused by [`Builder::build`] ([`Error::NoEndpoints`]).
    ///
    /// ```no_run
    /// use std::sync::Arc;
    /// use sessionkit_realtime::{RealtimeClient, Resume, StaticToken};
    ///
    /// # async fn demo() -> Result<(), sessionkit_realtime::Error> {
    /// let source = Arc::new(StaticToken::new("an-access-token"));
    /// let (client, _incoming) = RealtimeClient::builder_multi([
    ///     "wss://chat-1.example.com/ws",
    ///     "wss://chat-2.example.com/ws",
    ///     "wss://chat-3.example.com/ws",
    /// ])
    /// // Resume on whichever node the client lands.
    /// .on_connect(|resume: Resume| {
    ///     resume.send(r#"{"type":"join","room":"general","after":41}"#);
    ///     std::future::ready(())
    /// })
    /// .build(source)?;
    /// let mut state = client.state();
    /// state.wait_for(|s| matches!(s, sessionkit_realtime::State::Connected { .. })).await.ok();
    /// if let Some(endpoint) = client.endpoint() {
    ///     println!("connected to node {} at {endpoint}", endpoint.index);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn builder_multi<I, S>(urls: I) -> Builder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Builder::new(urls.into_iter().map(Into::into).collect())
    }

    /// The endpoint the client is connected to, or `None` while it is not
    /// connected (set before the state says [`State::Connected`]).
    #[must_use]
    pub fn endpoint(&self) -> Option<Endpoint> {
        self.counters
            .endpoint()
            .and_then(|i| self.endpoints.get(i).cloned())
    }

    /// The client's endpoints, in the builder's order.
    #[must_use]
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// What the client did so far (counters an app can export).
    #[must_use]
    pub fn metrics(&self) -> crate::metrics::Metrics {
        self.counters.snapshot()
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
    pub(crate) fn check(&self, text: &str) -> Result<u32> {
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
