//! The accept loop, with the limits that keep idle and half-sent
//! connections from piling up (`axum::serve` sets no timer, so hyper's
//! header-read timeout never fired, and it caps nothing).
//!
//! - **Deadline for a request:** a connection has
//!   [`ConnectionLimits::header_read_timeout`] to send a complete request
//!   head, counted from its opening and again from the end of each response
//!   (so it also bounds idle keep-alive connections); the body must then
//!   arrive within the same time. Past either, the connection is closed.
//! - **Connections in all** ([`ConnectionLimits::max_connections`]), upgraded
//!   WebSockets included: past the cap a new connection is closed as soon as
//!   it is accepted, without a response; the open ones are not touched.
//! - **Half-open connections per address**
//!   ([`ConnectionLimits::max_pending_per_ip`]): connections that have not
//!   yet sent a complete request head. Past the cap the *oldest* such
//!   connection from that address is closed to make way for the new one, so
//!   a flood from one address evicts itself while a real client (which sends
//!   its request at once) still gets in, even from the same address.
//!
//! - **Accept queue:** the listening socket asks the kernel for a backlog of
//!   [`ACCEPT_BACKLOG`] (tokio's `TcpListener::bind` asks for 128): when a
//!   node goes away its clients arrive at the others within the client's
//!   base delay (hundreds in 250 ms), and a handshake the kernel drops
//!   because the queue is full is only retried by the client's kernel 1 s
//!   later.
//!
//! The server speaks HTTP/1.1 only: what WebSocket clients and the
//! provider's back-channel logout requests use (`axum::serve` also took
//! HTTP/2 with prior knowledge, which nothing here needs).
//!
//! A WebSocket, once upgraded, leaves hyper: none of these timeouts applies
//! to it (it has its own ping and idle timeout), but it keeps its place in
//! the connection count until it closes.
//!
//! mock-idp's accept loop (`mock-idp/src/limits.rs`) follows the same rules;
//! the two servers share no crate, so each keeps its own copy.
//!
//! (Over 500 lines: the accept loop and its limits are one concern; about
//! 110 lines at the end are their unit tests.)

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;

/// The accept queue asked for (the kernel caps it at `net.core.somaxconn`,
/// 4096 by default since Linux 5.4).
pub(crate) const ACCEPT_BACKLOG: u32 = 4096;

/// A listener on `addr` with an accept queue of [`ACCEPT_BACKLOG`] (and
/// `SO_REUSEADDR`, as tokio's `TcpListener::bind` sets on Unix, so a node
/// restarted at once gets its port back).
pub(crate) fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(ACCEPT_BACKLOG)
}

/// How long a connection may take to finish once the server stops.
const DRAIN: Duration = Duration::from_secs(5);
/// How long a connection closed for idleness may take to finish writing.
const IDLE_DRAIN: Duration = Duration::from_secs(1);

/// Limits on the connections a chat server holds (see
/// [`ServerConfig::connections`](super::ServerConfig::connections)).
///
/// ```
/// use std::time::Duration;
/// use sessionkit_examples::server::{ConnectionLimits, ServerConfig};
///
/// let mut config = ServerConfig::new("http://127.0.0.1:9090");
/// config.connections = ConnectionLimits {
///     header_read_timeout: Duration::from_secs(5),
///     ..ConnectionLimits::default()
/// };
/// assert_eq!(config.connections.max_pending_per_ip, 64);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// How long a client has to send a complete request head, from the
    /// moment its connection opens and from the end of each response on a
    /// kept-alive connection (so it is also the longest a connection may sit
    /// idle between requests); the request's body must then arrive within
    /// the same time. Default 10 s. Upgraded WebSockets are not affected.
    pub header_read_timeout: Duration,
    /// The most connections open at once, WebSockets included (default
    /// 4096). Past it a new connection is closed at once, unanswered.
    pub max_connections: usize,
    /// The most connections from one IP address that have not sent a
    /// complete request head yet (default 64). Past it the oldest of them is
    /// closed to make way for the new one.
    pub max_pending_per_ip: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            max_connections: 4096,
            max_pending_per_ip: 64,
        }
    }
}

/// Locks a mutex, going on with the data if a panic poisoned it (every
/// change to the counts is a single step).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The counts behind the caps.
#[derive(Debug)]
struct Gate {
    limits: ConnectionLimits,
    state: Mutex<GateState>,
}

#[derive(Debug, Default)]
struct GateState {
    open: usize,
    next_id: u64,
    /// Per address, the connections without a complete request head yet,
    /// oldest first, with what closes each.
    pending: HashMap<IpAddr, VecDeque<(u64, Arc<Notify>)>>,
}

impl Gate {
    /// A place for a connection from `ip`, or `None` past the total cap.
    /// Past the per-address cap, the oldest pending connection from `ip` is
    /// told to close.
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Slot> {
        let mut state = lock(&self.state);
        if state.open >= self.limits.max_connections {
            return None;
        }
        state.open += 1;
        let id = state.next_id;
        state.next_id += 1;
        let evict = Arc::new(Notify::new());
        let queue = state.pending.entry(ip).or_default();
        while queue.len() >= self.limits.max_pending_per_ip.max(1) {
            if let Some((_, oldest)) = queue.pop_front() {
                oldest.notify_one();
            }
        }
        queue.push_back((id, evict.clone()));
        Some(Slot {
            gate: self.clone(),
            id,
            ip,
            evict,
        })
    }

    fn unpend(&self, ip: IpAddr, id: u64) {
        let mut state = lock(&self.state);
        if let Some(queue) = state.pending.get_mut(&ip) {
            queue.retain(|(i, _)| *i != id);
            if queue.is_empty() {
                state.pending.remove(&ip);
            }
        }
    }
}

/// A connection's place in the counts; dropping it gives the place back.
#[derive(Debug)]
struct Slot {
    gate: Arc<Gate>,
    id: u64,
    ip: IpAddr,
    /// Notified when the connection must close to make way.
    evict: Arc<Notify>,
}

impl Slot {
    /// The connection sent a complete request head: it is no longer pending.
    fn served(&self) {
        self.gate.unpend(self.ip, self.id);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.gate.unpend(self.ip, self.id);
        let mut state = lock(&self.gate.state);
        state.open = state.open.saturating_sub(1);
    }
}

/// A connection's place in the count, carried by its requests so an
/// upgraded WebSocket keeps it until it closes.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionSlot(#[allow(dead_code)] Arc<Slot>);

/// What the idle watchdog watches: requests in flight, and since when none is.
#[derive(Debug, Clone, Copy)]
struct Activity {
    in_flight: usize,
    idle_since: Instant,
}

/// Counts a request in flight until dropped.
struct InFlight(Arc<watch::Sender<Activity>>);

impl InFlight {
    fn start(tx: &Arc<watch::Sender<Activity>>) -> Self {
        tx.send_modify(|a| a.in_flight += 1);
        Self(tx.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.send_modify(|a| {
            a.in_flight = a.in_flight.saturating_sub(1);
            a.idle_since = Instant::now();
        });
    }
}

/// Resolves once no request has been in flight for `timeout`.
async fn idle_for(rx: &mut watch::Receiver<Activity>, timeout: Duration) {
    loop {
        let activity = *rx.borrow_and_update();
        if activity.in_flight > 0 {
            if rx.changed().await.is_err() {
                return std::future::pending().await;
            }
            continue;
        }
        tokio::select! {
            () = tokio::time::sleep_until(activity.idle_since + timeout) => return,
            changed = rx.changed() => if changed.is_err() {
                return std::future::pending().await;
            },
        }
    }
}

/// A request body that must arrive whole by a deadline.
pub(crate) struct DeadlineBody<B> {
    inner: B,
    deadline: Pin<Box<Sleep>>,
}

impl<B> DeadlineBody<B> {
    pub(crate) fn new(inner: B, deadline: Instant) -> Self {
        Self {
            inner,
            deadline: Box::pin(tokio::time::sleep_until(deadline)),
        }
    }
}

/// Why a request body was cut short.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
pub(crate) struct BodyTimeout;

impl<B> hyper::body::Body for DeadlineBody<B>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|f| f.map_err(Into::into))),
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(BodyTimeout.into()))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Accepts connections until `cancel`, each served under `limits`; open
/// connections then get 5 s to finish.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    let timeout = limits.header_read_timeout;
    let gate = Arc::new(Gate {
        limits,
        state: Mutex::default(),
    });
    loop {
        let (stream, peer) = tokio::select! {
            () = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    // Out of file descriptors, most likely: let some close.
                    tracing::warn!(%err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let Some(slot) = gate.admit(peer.ip()) else {
            tracing::warn!(%peer, "connection refused: too many connections open");
            drop(stream);
            continue;
        };
        no_delay(&stream);
        tracker.spawn(connection(
            stream,
            Arc::new(slot),
            router.clone(),
            timeout,
            cancel.clone(),
        ));
    }
}

/// Turns Nagle's algorithm off on an accepted socket: a frame that closely
/// follows another (an ack, then the message) must not wait for the
/// client's ACK of the first (a round trip, 300 ms on a slow link).
fn no_delay(stream: &TcpStream) {
    if let Err(err) = stream.set_nodelay(true) {
        tracing::debug!(%err, "cannot set TCP_NODELAY");
    }
}

/// Serves one connection until it ends, idles or stalls past `timeout`, is
/// evicted, or the server stops.
async fn connection(
    stream: TcpStream,
    slot: Arc<Slot>,
    router: Router,
    timeout: Duration,
    cancel: CancellationToken,
) {
    let evict = slot.evict.clone();
    let activity = Arc::new(watch::Sender::new(Activity {
        in_flight: 0,
        idle_since: Instant::now(),
    }));
    let mut idle = activity.subscribe();
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        slot.served();
        let in_flight = InFlight::start(&activity);
        let deadline = Instant::now() + timeout;
        let mut request = request.map(|body| Body::new(DeadlineBody::new(body, deadline)));
        request
            .extensions_mut()
            .insert(ConnectionSlot(slot.clone()));
        let router = router.clone();
        async move {
            let response = router.oneshot(request).await;
            drop(in_flight);
            response.map_err(|never: Infallible| match never {})
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(timeout);
    let connection = builder
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(err) = result {
                tracing::debug!(%err, "connection ended with an error");
            }
        }
        () = evict.notified() => {
            tracing::debug!("half-open connection closed to make way for a newer one");
        }
        () = idle_for(&mut idle, timeout) => {
            tracing::debug!("connection closed: no request within the timeout");
            connection.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(IDLE_DRAIN, connection).await;
        }
        () = cancel.cancelled() => {
            connection.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(DRAIN, connection).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(max_connections: usize, max_pending_per_ip: usize) -> Arc<Gate> {
        Arc::new(Gate {
            limits: ConnectionLimits {
                max_connections,
                max_pending_per_ip,
                ..ConnectionLimits::default()
            },
            state: Mutex::default(),
        })
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    /// 300 connections wait in the accept queue while nothing accepts (a
    /// node busy with a failover's arrivals): with tokio's default backlog
    /// (128) the kernel drops the handshakes past it and those connects
    /// hang until the SYN is retried a second later.
    #[tokio::test]
    async fn the_accept_queue_holds_a_failovers_arrivals() {
        let listener = bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut held = Vec::new();
        for n in 0..300 {
            let connected =
                tokio::time::timeout(Duration::from_millis(500), TcpStream::connect(addr))
                    .await
                    .unwrap_or_else(|_| panic!("connection {n} waited: the accept queue is full"));
            held.push(connected.expect("connect"));
        }
        drop(listener);
    }

    #[tokio::test]
    async fn accepted_sockets_have_nagle_turned_off() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let _client = TcpStream::connect(addr).await.expect("connect");
        let (stream, _) = listener.accept().await.expect("accept");
        assert!(!stream.nodelay().expect("read"), "off by default");
        no_delay(&stream);
        assert!(stream.nodelay().expect("read"), "TCP_NODELAY set");
    }

    #[test]
    fn past_the_total_cap_the_newest_is_refused_until_one_closes() {
        let gate = gate(2, 10);
        let a = gate.admit(ip(1)).expect("first");
        let _b = gate.admit(ip(2)).expect("second");
        assert!(gate.admit(ip(3)).is_none(), "third refused");
        drop(a);
        assert!(gate.admit(ip(3)).is_some(), "room again");
    }

    #[tokio::test]
    async fn past_the_pending_cap_the_oldest_of_that_address_is_evicted() {
        let gate = gate(100, 2);
        let first = gate.admit(ip(1)).expect("first");
        let second = gate.admit(ip(1)).expect("second");
        let other = gate.admit(ip(2)).expect("another address");
        second.served();
        // `second` is no longer pending: a third from .1 fits beside `first`.
        let third = gate.admit(ip(1)).expect("third");
        let fourth = gate.admit(ip(1)).expect("fourth");
        // `first` was the oldest pending one of 127.0.0.1.
        tokio::time::timeout(Duration::from_secs(1), first.evict.notified())
            .await
            .expect("the oldest is evicted");
        for kept in [&second, &other, &third, &fourth] {
            assert!(
                tokio::time::timeout(Duration::from_millis(20), kept.evict.notified())
                    .await
                    .is_err(),
                "only the oldest"
            );
        }
        assert_eq!(
            lock(&gate.state).open,
            5,
            "an evicted one counts until it closes"
        );
        drop((first, second, other, third, fourth));
        let state = lock(&gate.state);
        assert_eq!(state.open, 0);
        assert!(state.pending.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn the_watchdog_waits_for_requests_in_flight_then_for_the_timeout() {
        let start = Instant::now();
        let tx = Arc::new(watch::Sender::new(Activity {
            in_flight: 0,
            idle_since: start,
        }));
        let mut rx = tx.subscribe();
        let request = InFlight::start(&tx);
        let watchdog = tokio::spawn(async move {
            idle_for(&mut rx, Duration::from_secs(10)).await;
            Instant::now()
        });
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(!watchdog.is_finished(), "a request in flight is not idle");
        drop(request);
        let fired = watchdog.await.expect("watchdog");
        assert_eq!(fired - start, Duration::from_secs(70));
    }
}
