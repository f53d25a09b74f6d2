//! The proactive refresh timer (every policy but `OnDemand`): sleeps until
//! the tokens are due (`timing`), then asks for a refresh like any other
//! consumer — if a request or a realtime connection already refreshed, or
//! another process did, nothing more happens. Never more than one attempt
//! per [`crate::timing::MIN_TIMER_WAIT`].

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::policy::RefreshPolicy;
use crate::refresh::{FailureKind, full_jitter};
use crate::timing::{MIN_TIMER_WAIT, timer_wait};

use super::Session;
use super::state::SessionState;

/// `Background` sleeps in steps of at most this much of the monotonic
/// clock, reading the wall clock between them: after the machine slept
/// (the monotonic clock stands still meanwhile) it refreshes on waking.
const WAKE_CHECK: Duration = Duration::from_secs(15);

/// After a transient failure, policies that keep trying wait from this…
const OFFLINE_RETRY_BASE: Duration = Duration::from_secs(1);
/// …doubling up to this (with full jitter, at least [`OFFLINE_RETRY_FLOOR`]).
const OFFLINE_RETRY_CAP: Duration = Duration::from_secs(60);
const OFFLINE_RETRY_FLOOR: Duration = Duration::from_millis(100);
/// After a failure other policies report and wait at least this long (half
/// the token's remaining life when that is longer).
const FAILURE_PAUSE_FLOOR: Duration = Duration::from_secs(5);

impl Session {
    pub(super) async fn run_timer(self: Arc<Self>) {
        let cancel = self.cancel.child_token();
        let policy = self.shared.policy;
        let mut last: Option<SystemTime> = None;
        let mut backoff = OFFLINE_RETRY_BASE;
        loop {
            let tokens = self.tokens.load_full();
            let due = tokens.due_at(policy, self.shared.skew());
            let end = self
                .shared
                .max_session_age
                .map(|age| self.signed_in_at + age);
            let Some(wake) = due.into_iter().chain(end).min() else {
                return;
            };
            if !sleep_until_wall(self.shared.client.time(), wake, last, policy, &cancel).await {
                return;
            }
            last = Some(self.shared.now());
            let force = self.past_max_age(self.shared.now());
            let outcome = tokio::select! {
                () = cancel.cancelled() => return,
                outcome = self.refresh_shared(force, None) => outcome,
            };
            let Err(error) = outcome else {
                backoff = OFFLINE_RETRY_BASE;
                continue;
            };
            if cancel.is_cancelled() {
                return;
            }
            let transient = matches!(
                &*self.state.borrow(),
                SessionState::RefreshFailing {
                    kind: FailureKind::Transient,
                    ..
                }
            );
            let pause = if transient && policy.retries_until_online() {
                // Keep trying, capped, until the network returns.
                backoff = (backoff * 2).min(OFFLINE_RETRY_CAP);
                full_jitter(backoff).max(OFFLINE_RETRY_FLOOR)
            } else {
                // Reported; tried again later, never in a loop.
                let left = tokens
                    .expires_at
                    .and_then(|e| e.duration_since(self.shared.now()).ok())
                    .unwrap_or_default();
                (left / 2).clamp(FAILURE_PAUSE_FLOOR, OFFLINE_RETRY_CAP)
            };
            tracing::debug!(%error, ?pause, "background refresh failed");
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(pause) => {}
            }
            // The pause counts as the wait before the next attempt.
            last = Some(self.shared.now() - MIN_TIMER_WAIT);
        }
    }
}

/// Sleeps until `wake` by `clock` (and [`MIN_TIMER_WAIT`] after `last`);
/// false when cancelled first.
async fn sleep_until_wall(
    clock: &Clock,
    wake: SystemTime,
    last: Option<SystemTime>,
    policy: RefreshPolicy,
    cancel: &CancellationToken,
) -> bool {
    let now = clock.now();
    let at = now + timer_wait(wake, last, now);
    let step = policy.wakes_after_sleep().then_some(WAKE_CHECK);
    tokio::select! {
        () = cancel.cancelled() => false,
        () = clock.sleep_until(at, step) => true,
    }
}
