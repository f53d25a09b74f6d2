//! The proactive refresh timer (every policy but `OnDemand`): sleeps until
//! the tokens are due (`timing`), then asks for a refresh like any other
//! consumer — if a request or a realtime connection already refreshed, or
//! another process did, nothing more happens. Never more than one attempt
//! per [`crate::timing::MIN_TIMER_WAIT`].

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sessionkit_backoff::Backoff;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::policy::RefreshPolicy;
use crate::refresh::FailureKind;
use crate::timing::{MIN_TIMER_WAIT, timer_wait};

use super::Session;
use super::state::SessionState;

/// `Background` sleeps in steps of at most this much of the monotonic
/// clock, reading the wall clock between them: after the machine slept
/// (the monotonic clock stands still meanwhile) it refreshes on waking.
const WAKE_CHECK: Duration = Duration::from_secs(15);

/// After transient failures, policies that keep trying until the network
/// returns wait a random time (full jitter, at least 100 ms) under 2 s after
/// the first, then under 4 s, 8 s, … up to 60 s; a success starts over.
const OFFLINE_RETRY: Backoff = Backoff::new(Duration::from_secs(2), 2.0, Duration::from_secs(60))
    .floor(Duration::from_millis(100));
/// After a failure other policies report and wait at least this long (half
/// the token's remaining life when that is longer, at most
/// [`OFFLINE_RETRY`]'s cap).
const FAILURE_PAUSE_FLOOR: Duration = Duration::from_secs(5);

impl Session {
    pub(super) async fn run_timer(self: Arc<Self>) {
        let cancel = self.cancel.child_token();
        let policy = self.shared.policy;
        let mut last: Option<SystemTime> = None;
        let mut offline_retries = OFFLINE_RETRY.schedule();
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
                offline_retries.reset();
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
                offline_retries.next_delay()
            } else {
                // Reported; tried again later, never in a loop.
                let left = tokens
                    .expires_at
                    .and_then(|e| e.duration_since(self.shared.now()).ok())
                    .unwrap_or_default();
                (left / 2).clamp(FAILURE_PAUSE_FLOOR, OFFLINE_RETRY.max)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offline_retries_double_from_two_seconds_to_a_minute_above_a_floor() {
        let s = Duration::from_secs(1);
        let highest: Vec<Duration> = OFFLINE_RETRY.schedule().jitter(|| 1.0).take(7).collect();
        assert_eq!(
            highest,
            [2 * s, 4 * s, 8 * s, 16 * s, 32 * s, 60 * s, 60 * s]
        );
        let lowest: Vec<Duration> = OFFLINE_RETRY.schedule().jitter(|| 0.0).take(7).collect();
        assert_eq!(lowest, [Duration::from_millis(100); 7]);
        assert!(FAILURE_PAUSE_FLOOR < OFFLINE_RETRY.max);
    }
}
