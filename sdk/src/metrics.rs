//! Counters an app can export (Prometheus, OpenTelemetry, a status page):
//! what the SDK did for the accounts of one [`crate::SessionManager`].
//! Read them with [`crate::SessionManager::metrics`]; they only grow.
//!
//! Alongside, the SDK opens `tracing` spans around what takes time — named
//! `sessionkit.login`, `sessionkit.refresh`, `sessionkit.logout` (and
//! `sessionkit.connect` in the realtime crate) — whose fields are an
//! account fingerprint, the flow, the attempt and the outcome, never a
//! secret.

use std::sync::atomic::{AtomicU64, Ordering};

/// The live counters (one set per manager).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) sign_ins: AtomicU64,
    pub(crate) refreshes: AtomicU64,
    pub(crate) refresh_failures: AtomicU64,
    pub(crate) adopted: AtomicU64,
    pub(crate) sign_outs: AtomicU64,
    pub(crate) signed_out_by_server: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> Metrics {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Metrics {
            sign_ins: get(&self.sign_ins),
            refreshes: get(&self.refreshes),
            refresh_failures: get(&self.refresh_failures),
            adopted: get(&self.adopted),
            sign_outs: get(&self.sign_outs),
            signed_out_by_server: get(&self.signed_out_by_server),
        }
    }
}

/// What the SDK did since the manager was built.
///
/// ```no_run
/// # async fn demo(sessions: sessionkit::SessionManager) {
/// let m = sessions.metrics();
/// println!(
///     "sessionkit_refreshes_total {}\nsessionkit_refresh_failures_total {}",
///     m.refreshes, m.refresh_failures
/// );
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Metrics {
    /// Accounts signed in (each login; restores are not counted).
    pub sign_ins: u64,
    /// Refresh grants that succeeded.
    pub refreshes: u64,
    /// Refreshes that failed, each after its retries.
    pub refresh_failures: u64,
    /// Refreshes that were not needed: another process of the app had
    /// refreshed, and its tokens were adopted from the store.
    pub adopted: u64,
    /// Sessions ended by the app (logout, failures, maximum age).
    pub sign_outs: u64,
    /// Sessions ended by the provider (`invalid_grant`).
    pub signed_out_by_server: u64,
}
