//! Counters an app can export for one client ([`crate::RealtimeClient::metrics`]),
//! and which endpoint it is connected to. The counters only grow. Each
//! connection attempt also runs in a `tracing` span `sessionkit.connect`
//! (fields: generation, attempt, endpoint — its URL without query — and
//! outcome; never the token or the URL's query).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// No endpoint connected.
const NONE: usize = usize::MAX;

/// The live counters, shared by the client and its driver.
#[derive(Debug)]
pub(crate) struct Counters {
    pub(crate) connects: AtomicU64,
    pub(crate) failed_attempts: AtomicU64,
    pub(crate) reconnects: AtomicU64,
    pub(crate) refusals: AtomicU64,
    pub(crate) token_moves: AtomicU64,
    pub(crate) moves: AtomicU64,
    /// The connected endpoint's index, or [`NONE`].
    endpoint: AtomicUsize,
}

impl Default for Counters {
    fn default() -> Self {
        Self {
            connects: AtomicU64::new(0),
            failed_attempts: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            refusals: AtomicU64::new(0),
            token_moves: AtomicU64::new(0),
            moves: AtomicU64::new(0),
            endpoint: AtomicUsize::new(NONE),
        }
    }
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Connected to the endpoint at this index, or (`None`) not connected.
    pub(crate) fn set_endpoint(&self, index: Option<usize>) {
        self.endpoint.store(index.unwrap_or(NONE), Ordering::SeqCst);
    }

    pub(crate) fn endpoint(&self) -> Option<usize> {
        Some(self.endpoint.load(Ordering::SeqCst)).filter(|i| *i != NONE)
    }

    pub(crate) fn snapshot(&self) -> Metrics {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Metrics {
            connects: get(&self.connects),
            failed_attempts: get(&self.failed_attempts),
            reconnects: get(&self.reconnects),
            refusals: get(&self.refusals),
            token_moves: get(&self.token_moves),
            endpoint_moves: get(&self.moves),
            endpoint: self.endpoint(),
        }
    }
}

/// What a client did since it was built, and where it is connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Metrics {
    /// Connections opened (the handshake succeeded).
    pub connects: u64,
    /// Attempts that failed before a connection was up (network, handshake,
    /// no token).
    pub failed_attempts: u64,
    /// Times the client set out to connect again after a connection or an
    /// attempt ended (with or without a wait).
    pub reconnects: u64,
    /// Tokens the server refused (401 at the handshake, close 4001 or 4003).
    pub refusals: u64,
    /// Live connections moved to a newer token (in-band or
    /// make-before-break) without a gap.
    pub token_moves: u64,
    /// Times the client moved on to the next of its endpoints (after a
    /// failed attempt, a lost connection or a server going away; never
    /// with a single endpoint).
    pub endpoint_moves: u64,
    /// The index (in the builder's list) of the endpoint the client is
    /// connected to; `None` while it is not connected. See
    /// [`crate::RealtimeClient::endpoint`] for its URL.
    pub endpoint: Option<usize>,
}
