//! The refresh grant: one attempt, its errors classified, and bounded
//! retries with exponential backoff and full jitter (backon computes the
//! capped exponential schedule; each wait is drawn uniformly from zero to
//! it). `invalid_grant` and `invalid_client` mean the provider ended the
//! session; network errors, timeouts, 5xx, 429 (honouring `Retry-After`)
//! and malformed answers are retried; anything else is reported at once.

use std::time::Duration;

use backon::{BackoffBuilder as _, ExponentialBuilder};
use tokio_util::sync::CancellationToken;

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

/// How a failed refresh is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (default 3).
    pub max_retries: u32,
    /// The first backoff step (default 250 ms).
    pub base: Duration,
    /// The largest backoff step (default 10 s).
    pub cap: Duration,
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

/// A failed attempt with what the retry loop needs to know.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    pub(crate) error: Error,
    pub(crate) kind: FailureKind,
    pub(crate) retry_after: Option<Duration>,
}

/// Uniform in `[0, max]`.
pub(crate) fn full_jitter(max: Duration) -> Duration {
    let mut bytes = [0u8; 8];
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        return max;
    }
    let unit = u64::from_le_bytes(bytes) as f64 / u64::MAX as f64;
    max.mul_f64(unit)
}

impl OidcClient {
    /// One refresh-grant attempt. The new ID token, if any, must name the same
    /// `sub` as before (`previous_sub`).
    pub(crate) async fn refresh_once(
        &self,
        token: &RefreshToken,
        previous_sub: Option<&str>,
    ) -> Result<TokenSet, Failure> {
        let endpoint = self.provider().token_endpoint().map_err(|error| Failure {
            error,
            kind: FailureKind::Rejected,
            retry_after: None,
        })?;
        let answer = match post_form(
            self.provider(),
            &endpoint,
            self.client_id(),
            self.secret(),
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", token.secret()),
            ],
        )
        .await
        {
            Ok(a) => a,
            Err(error) => {
                return Err(Failure {
                    error,
                    kind: FailureKind::Transient,
                    retry_after: None,
                });
            }
        };
        let status = answer.status;
        match parse_token_response(status, &answer.body, self.now()) {
            Ok(raw) => self
                .checked(raw, None, previous_sub)
                .await
                .map_err(|error| Failure {
                    kind: match error {
                        Error::Network(_) => FailureKind::Transient,
                        _ => FailureKind::Rejected,
                    },
                    error,
                    retry_after: None,
                }),
            Err(error) => {
                let kind = match &error {
                    _ if status == 429 || status >= 500 => FailureKind::Transient,
                    Error::Provider { error: code, .. }
                        if code == "invalid_grant" || code == "invalid_client" =>
                    {
                        FailureKind::SignedOutByServer
                    }
                    Error::Parse { .. } if (200..300).contains(&status) => FailureKind::Transient,
                    _ => FailureKind::Rejected,
                };
                Err(Failure {
                    error,
                    kind,
                    retry_after: answer.retry_after,
                })
            }
        }
    }

    /// Refreshes, retrying transient failures as `policy` says; `on_retry` is
    /// told of each failure that will be retried, with the wait.
    pub(crate) async fn refresh_with_retries(
        &self,
        token: &RefreshToken,
        previous_sub: Option<&str>,
        policy: RetryPolicy,
        cancel: &CancellationToken,
        mut on_retry: impl FnMut(&Failure, Duration),
    ) -> Result<TokenSet, Failure> {
        let mut schedule = ExponentialBuilder::default()
            .with_min_delay(policy.base)
            .with_max_delay(policy.cap)
            .with_factor(2.0)
            .with_max_times(policy.max_retries as usize)
            .build();
        loop {
            let failure = match self.refresh_once(token, previous_sub).await {
                Ok(tokens) => return Ok(tokens),
                Err(f) => f,
            };
            if failure.kind != FailureKind::Transient {
                return Err(failure);
            }
            let Some(step) = schedule.next() else {
                return Err(failure);
            };
            let wait =
                full_jitter(step).max(failure.retry_after.unwrap_or_default().min(policy.cap * 6));
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

    #[test]
    fn full_jitter_stays_within_the_step_and_spreads() {
        let step = Duration::from_millis(1000);
        let draws: Vec<Duration> = (0..2000).map(|_| full_jitter(step)).collect();
        assert!(draws.iter().all(|d| *d <= step));
        let low = draws
            .iter()
            .filter(|d| **d < Duration::from_millis(250))
            .count();
        let high = draws
            .iter()
            .filter(|d| **d > Duration::from_millis(750))
            .count();
        // Uniform: about a quarter in each tail (500 ± generous slack).
        assert!((350..650).contains(&low), "{low}");
        assert!((350..650).contains(&high), "{high}");
    }
}
