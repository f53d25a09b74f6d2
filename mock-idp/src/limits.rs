//! Connection limits for the accept loop in `server.rs`, so idle and
//! half-sent connections cannot pile up (hyper's header-read timeout does
//! nothing without a timer, and nothing capped connections).
//!
//! - **Deadline for a request:** a connection has
//!   [`ConnectionLimits::header_read_timeout`] to send a complete request
//!   head (its TLS handshake included), counted from its opening and again
//!   from the end of each response (so it also bounds idle keep-alive
//!   connections, HTTP/2 ones included); the body must then arrive within
//!   the same time. Past either, the connection is closed.
//! - **Connections in all** ([`ConnectionLimits::max_connections`]): past
//!   the cap a new connection is closed as soon as it is accepted, without a
//!   response; the open ones are not touched.
//! - **Half-open connections per address**
//!   ([`ConnectionLimits::max_pending_per_ip`]): connections that have not
//!   yet sent a complete request head. Past the cap the *oldest* such
//!   connection from that address is closed to make way for the new one, so
//!   a flood from one address evicts itself while a real client (which sends
//!   its request at once) still gets in, even from the same address.
//!
//! The chat server's accept loop (`examples/src/server/serve.rs`) follows
//! the same rules; the two servers share no crate, so each keeps its own copy.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Frame, SizeHint};
use tokio::sync::{Notify, watch};
use tokio::time::{Instant, Sleep};

/// How long a connection closed for idleness may take to finish writing.
pub(crate) const IDLE_DRAIN: Duration = Duration::from_secs(1);

/// Limits on the connections the provider holds (see
/// [`MockIdpBuilder::connection_limits`](crate::MockIdpBuilder::connection_limits)).
///
/// ```
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use sessionkit_mock_idp::{ConnectionLimits, MockIdp};
///
/// let idp = MockIdp::builder()
///     .connection_limits(ConnectionLimits {
///         header_read_timeout: Duration::from_secs(2),
///         ..ConnectionLimits::default()
///     })
///     .start()
///     .await?;
/// # drop(idp); Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// How long a client has to send a complete request head, from the
    /// moment its connection opens and from the end of each response on a
    /// kept-alive connection (so it is also the longest a connection may sit
    /// idle between requests); the request's body must then arrive within
    /// the same time. A TLS handshake must also end within it. Default 10 s.
    pub header_read_timeout: Duration,
    /// The most connections open at once (default 1024). Past it a new
    /// connection is closed at once, unanswered.
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
            max_connections: 1024,
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
pub(crate) struct Gate {
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
    pub(crate) fn new(limits: ConnectionLimits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            state: Mutex::default(),
        })
    }

    /// A place for a connection from `ip`, or `None` past the total cap.
    /// Past the per-address cap, the oldest pending connection from `ip` is
    /// told to close.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Slot> {
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
pub(crate) struct Slot {
    gate: Arc<Gate>,
    id: u64,
    ip: IpAddr,
    /// Notified when the connection must close to make way.
    pub(crate) evict: Arc<Notify>,
}

impl Slot {
    /// The connection sent a complete request head: it is no longer pending.
    pub(crate) fn served(&self) {
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

/// What the idle watchdog watches: requests in flight, and since when none is.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Activity {
    in_flight: usize,
    idle_since: Instant,
}

impl Activity {
    /// Nothing in flight, idle since `since`.
    pub(crate) fn idle_since(since: Instant) -> Self {
        Self {
            in_flight: 0,
            idle_since: since,
        }
    }
}

/// Counts a request in flight until dropped.
pub(crate) struct InFlight(Arc<watch::Sender<Activity>>);

impl InFlight {
    pub(crate) fn start(tx: &Arc<watch::Sender<Activity>>) -> Self {
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
pub(crate) async fn idle_for(rx: &mut watch::Receiver<Activity>, timeout: Duration) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(max_connections: usize, max_pending_per_ip: usize) -> Arc<Gate> {
        Gate::new(ConnectionLimits {
            max_connections,
            max_pending_per_ip,
            ..ConnectionLimits::default()
        })
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
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
        let tx = Arc::new(watch::Sender::new(Activity::idle_since(start)));
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
