//! The refresh grant: one attempt, its errors classified, and bounded
//! retries with exponential backoff and full jitter ([`RetryPolicy`] is a
//! `sessionkit_backoff::Backoff` with a retry limit: each wait is drawn
//! uniformly from zero to the capped step; a `Retry-After` raises it).
//! `invalid_grant` and `invalid_client` mean the provider ended the
//! session; network errors, timeouts, 5xx, 429 (honouring `Retry-After`)
//! and malformed answers are retried; anything else is reported at once.

use std::time::Duration;

use sessionkit_backoff::{Backoff, Schedule};
use tokio_util::sync::CancellationToken;

use crate::dpop::DpopKey;
use crate::error::{Error, Result};
use crate::login::OidcClient;
use crate::secret::RefreshToken;
use crate::token::{TokenSet, parse_token_response, post_form};

/// What kind of failure a refresh met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailureKind {
    /// Worth retrying: the network, a timeout, 5xx, 429, a malformed answer.
    Transient,
    /// The provider ended the session (`invalid_grant`, `invalid_client`).
    SignedOutByServer,
    /// Anything else (a refused ID token, `invalid_scope`, …): reported, not retried.
    Rejected,
}

impl FailureKind {
    /// The kind of `error`, decided by the error's own predicates (the one
    /// place that says what is transient).
    pub(crate) fn of(error: &Error) -> Self {
        if error.is_signed_out() {
            Self::SignedOutByServer
        } else if error.is_transient() {
            Self::Transient
        } else {
            Self::Rejected
        }
    }
}

/// How a failed refresh is retried: exponential backoff (factor 2) with
/// full jitter, each wait drawn from zero to `min(cap, base · 2ⁿ)` before
/// retry `n + 1`, at most `max_retries` times.
///
/// ```
/// use std::time::Duration;
/// use sessionkit::RetryPolicy;
///
/// let patient = RetryPolicy::new(5, Duration::from_millis(500), Duration::from_secs(30));
/// assert_eq!(patient.max_retries, 5);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Retries after the first attempt (default 3).
    pub max_retries: u32,
    /// The first backoff step (default 250 ms).
    pub base: Duration,
    /// The largest backoff step (default 10 s).
    pub cap: Duration,
}

impl RetryPolicy {
    /// At most `max_retries` retries, waits growing from `base` to `cap`.
    #[must_use]
    pub const fn new(max_retries: u32, base: Duration, cap: Duration) -> Self {
        Self {
            max_retries,
            base,
            cap,
        }
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 3,
            base: Duration::from_millis(250),
            cap: Duration::from_secs(10),
        }
    }
}

/// Each wait grows by this factor.
const RETRY_FACTOR: f64 = 2.0;

/// A provider's `Retry-After` raises a wait up to this many times the
/// policy's cap (with the default cap, 60 s), never further.
const RETRY_AFTER_CAPS: u32 = 6;

impl RetryPolicy {
    /// The waits of one refresh: the policy's steps, its retry limit.
    fn schedule(&self) -> Schedule {
        Backoff::new(self.base, RETRY_FACTOR, self.cap)
            .schedule()
            .limit(self.max_retries)
    }

    /// The wait before the next retry: the schedule's, raised to the
    /// provider's `Retry-After` (at most [`RETRY_AFTER_CAPS`] caps).
    fn wait(&self, jittered: Duration, retry_after: Option<Duration>) -> Duration {
        let advised = retry_after.unwrap_or_default();
        jittered.max(advised.min(self.cap.saturating_mul(RETRY_AFTER_CAPS)))
    }
}

/// A failed attempt with what the retry loop needs to know.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    pub(crate) error: Error,
    pub(crate) kind: FailureKind,
    pub(crate) retry_after: Option<Duration>,
}

impl OidcClient {
    /// One refresh-grant attempt. The new ID token, if any, must name the same
    /// `sub` as before (`previous_sub`).
    pub(crate) async fn refresh_once(
        &self,
        token: &RefreshToken,
        previous_sub: Option<&str>,
        dpop: Option<&DpopKey>,
    ) -> Result<TokenSet, Failure> {
        let endpoint = self.provider().token_endpoint().map_err(|error| Failure {
            error,
            kind: FailureKind::Rejected,
            retry_after: None,
        })?;
        let extra = self.params().token_pairs(false);
        let mut form = vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", token.secret()),
        ];
        form.extend(extra.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let answer = match post_form(
            self.provider(),
            &endpoint,
            self.client_id(),
            self.credential(),
            &form,
            self.prover(dpop),
            None,
        )
        .await
        {
            Ok(a) => a,
            Err(error) => {
                return Err(Failure {
                    kind: FailureKind::of(&error),
                    error,
                    retry_after: None,
                });
            }
        };
        let status = answer.status;
        match parse_token_response(status, &answer.body, self.now()) {
            Ok(raw) => self
                .checked(raw, None, previous_sub, &Default::default(), dpop)
                .await
                .map_err(|error| Failure {
                    kind: FailureKind::of(&error),
                    error,
                    retry_after: None,
                }),
            Err(error) => Err(Failure {
                kind: FailureKind::of(&error),
                error,
                retry_after: answer.retry_after,
            }),
        }
    }

    /// Refreshes, retrying transient failures as `policy` says; `on_retry` is
    /// told of each failure that will be retried, with the wait.
    pub(crate) async fn refresh_with_retries(
        &self,
        token: &RefreshToken,
        previous_sub: Option<&str>,
        dpop: Option<&DpopKey>,
        policy: RetryPolicy,
        cancel: &CancellationToken,
        mut on_retry: impl FnMut(&Failure, Duration),
    ) -> Result<TokenSet, Failure> {
        let mut schedule = policy.schedule();
        loop {
            let failure = match self.refresh_once(token, previous_sub, dpop).await {
                Ok(tokens) => return Ok(tokens),
                Err(f) => f,
            };
            if failure.kind != FailureKind::Transient {
                return Err(failure);
            }
            let Some(jittered) = schedule.next() else {
                return Err(failure);
            };
            let wait = policy.wait(jittered, failure.retry_after);
            on_retry(&failure, wait);
            tokio::select! {
                () = cancel.cancelled() => return Err(Failure { error: Error::Cancelled, kind: FailureKind::Rejected, retry_after: None }),
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_default_policy_retries_three_times_under_doubling_caps() {
        let waits: Vec<Duration> = RetryPolicy::default().schedule().jitter(|| 1.0).collect();
        assert_eq!(waits, [250 * MS, 500 * MS, 1000 * MS]);
    }

    #[test]
    fn steps_stop_at_the_cap_and_the_retries_at_the_limit() {
        let policy = RetryPolicy {
            max_retries: 5,
            base: 20 * MS,
            cap: 50 * MS,
        };
        let waits: Vec<Duration> = policy.schedule().jitter(|| 1.0).collect();
        assert_eq!(waits, [20 * MS, 40 * MS, 50 * MS, 50 * MS, 50 * MS]);
        let none = RetryPolicy {
            max_retries: 0,
            ..policy
        };
        assert_eq!(none.schedule().next(), None);
    }

    #[test]
    fn waits_are_fully_jittered() {
        let policy = RetryPolicy::default();
        let mut low = 0;
        for _ in 0..200 {
            for (n, wait) in policy.schedule().enumerate() {
                let step = [250 * MS, 500 * MS, 1000 * MS][n];
                assert!(wait <= step, "{wait:?} above {step:?}");
                low += usize::from(wait < step / 4);
            }
        }
        // A quarter of 600 draws fall in the lowest quarter; none without jitter.
        assert!((75..225).contains(&low), "{low}");
    }

    #[test]
    fn retry_after_raises_a_wait_up_to_six_caps() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.wait(100 * MS, None), 100 * MS);
        assert_eq!(policy.wait(100 * MS, Some(Duration::ZERO)), 100 * MS);
        assert_eq!(policy.wait(100 * MS, Some(MS)), 100 * MS, "never lowers");
        assert_eq!(
            policy.wait(100 * MS, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
        assert_eq!(
            policy.wait(100 * MS, Some(Duration::from_secs(3600))),
            Duration::from_secs(60)
        );
    }
}
