//! Counters an app can export for one client ([`crate::RealtimeClient::metrics`]);
//! they only grow. Each connection attempt also runs in a `tracing` span
//! `sessionkit.connect` (fields: generation, attempt, outcome — never the
//! token or the URL's query).

use std::sync::atomic::{AtomicU64, Ordering};

/// The live counters, shared by the client and its driver.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) connects: AtomicU64,
    pub(crate) failed_attempts: AtomicU64,
    pub(crate) reconnects: AtomicU64,
    pub(crate) refusals: AtomicU64,
    pub(crate) token_moves: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> Metrics {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Metrics {
            connects: get(&self.connects),
            failed_attempts: get(&self.failed_attempts),
            reconnects: get(&self.reconnects),
            refusals: get(&self.refusals),
            token_moves: get(&self.token_moves),
        }
    }
}

/// What a client did since it was built.
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
}
