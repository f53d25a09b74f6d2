//! The refresh: one at a time per account (single flight: every waiter gets
//! that refresh's result, an error or a panic included), under the
//! account's cross-process file lock, after reading the store again —
//! another process may have refreshed already, and then its tokens are
//! adopted instead. The rotated refresh token is written before the new
//! tokens are handed out; if the store fails, the tokens stay in memory and
//! the write is retried.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use sessionkit_backoff::Backoff;

use crate::error::{Error, Result, StoreError};
use crate::refresh::FailureKind;
use crate::secret::AccessToken;

use super::state::{SessionEvent, SessionState};
use super::teardown::Ending;
use super::tokens::{Tokens, blocking, write_tokens};
use super::{Session, lock};
use crate::metrics::Counters;
use tracing::Instrument as _;

/// A failed store write is tried again after a random wait (full jitter, at
/// least 100 ms) under 500 ms, then under 1 s, 2 s, … up to 30 s, until it
/// succeeds or the session ends. The jitter keeps the sessions of one
/// process (one keychain) from retrying in step.
const STORE_RETRY: Backoff = Backoff::new(Duration::from_millis(500), 2.0, Duration::from_secs(30))
    .floor(Duration::from_millis(100));

impl Session {
    pub(super) async fn refresh_shared(
        self: &Arc<Self>,
        force: bool,
        rejected: Option<&AccessToken>,
    ) -> Result<AccessToken> {
        if self.cancel.is_cancelled() {
            return Err(Error::SignedOut);
        }
        let seen = self.finished.load(Ordering::SeqCst);
        let _flight = tokio::select! {
            guard = self.flight.lock() => guard,
            () = self.cancel.cancelled() => return Err(Error::SignedOut),
        };
        if self.finished.load(Ordering::SeqCst) != seen {
            // Another caller's refresh finished while this one waited: its result is ours.
            if let Some(error) = self
                .last_failure
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
            {
                return Err(error);
            }
            return Ok(self.tokens.load().access.clone());
        }
        let current = self.tokens.load_full();
        if let Some(rejected) = rejected
            && current.access != *rejected
        {
            return Ok(current.access.clone());
        }
        if !force && current.fresh(self.shared.policy, self.shared.skew(), self.shared.now()) {
            return Ok(current.access.clone());
        }
        // The refresh runs as its own task: a caller that gives up does not
        // cancel it for the others, and a panic comes back as an error.
        let this = Arc::clone(self);
        let outcome = self
            .refreshes
            .spawn(async move { this.refresh_locked().await })
            .await
            .unwrap_or_else(|e| Err(Error::Config(format!("the refresh task failed: {e}"))));
        *self.last_failure.lock().unwrap_or_else(|e| e.into_inner()) =
            outcome.as_ref().err().cloned();
        self.finished.fetch_add(1, Ordering::SeqCst);
        outcome
    }

    /// The refresh itself; called with the flight held.
    async fn refresh_locked(self: Arc<Self>) -> Result<AccessToken> {
        let span = tracing::info_span!(
            "sessionkit.refresh",
            account = %self.info.key.fingerprint(),
            attempts = tracing::field::Empty,
            outcome = tracing::field::Empty,
        );
        let result = Arc::clone(&self)
            .refresh_in_span()
            .instrument(span.clone())
            .await;
        if let Err(e) = &result {
            Counters::add(&self.shared.counters.refresh_failures);
            span.record("outcome", super::manager::outcome(e));
        }
        result
    }

    async fn refresh_in_span(self: Arc<Self>) -> Result<AccessToken> {
        if self.past_max_age(self.shared.now()) {
            tracing::info!(account = %self.info.key.fingerprint(), "the session reached its maximum age");
            self.end_from_inside(Ending::MaxAge).await;
            return Err(Error::SignedOut);
        }
        self.state.send_replace(SessionState::Refreshing);
        self.emit(SessionEvent::Refreshing);
        let lock = lock::acquire(&self.shared.lock_dir, &self.info.key).await?;
        let result = self.refresh_under_file_lock().await;
        drop(lock);
        result
    }

    /// Has the session outlived the app's maximum session age at `now`?
    pub(super) fn past_max_age(&self, now: SystemTime) -> bool {
        self.shared
            .max_session_age
            .is_some_and(|age| now.duration_since(self.signed_in_at).unwrap_or_default() >= age)
    }

    /// Tokens another process stored after refreshing, if they are newer
    /// than ours and fresh; and the stored refresh token with the DPoP key
    /// stored beside it (another process may have signed in again, with a
    /// new key: a refresh token is only ever sent with its own key).
    async fn adoptable(&self, current: &Tokens) -> Result<(Option<Tokens>, Option<StoredRefresh>)> {
        if !self.shared.policy.stores_tokens() || self.write_pending.load(Ordering::SeqCst) {
            // Nothing of ours is in the store, or the store is behind us.
            return Ok((None, None));
        }
        let (store, k) = (self.shared.store.clone(), self.info.key.clone());
        let (entry, refresh) =
            blocking(move || (store.load_session(&k), store.load_refresh(&k))).await?;
        let refresh = refresh.ok();
        let stored = refresh.clone().map(|token| StoredRefresh {
            token,
            dpop: match &entry {
                Ok(entry) => entry.dpop_key.clone(),
                // The entry cannot be read: the key in memory is the best guess.
                Err(_) => current.dpop.clone(),
            },
        });
        let adopted = match entry {
            Ok(entry) if entry.access_token != current.access => {
                let tokens = Tokens::stored(entry, refresh.clone().or(current.refresh.clone()));
                let now = self.shared.now();
                tokens
                    .fresh(self.shared.policy, self.shared.skew(), now)
                    .then_some(tokens)
            }
            Ok(_) | Err(StoreError::NotFound) => None,
            Err(e) => {
                tracing::debug!(account = %self.info.key.fingerprint(), error = %e, "store unreadable before refresh");
                None
            }
        };
        Ok((adopted, stored))
    }

    async fn refresh_under_file_lock(self: &Arc<Self>) -> Result<AccessToken> {
        let key = self.info.key.clone();
        let current = self.tokens.load_full();
        let (adopted, stored_refresh) = self.adoptable(&current).await?;
        if let Some(adopted) = adopted {
            tracing::debug!(account = %key.fingerprint(), "another process refreshed; adopting its tokens");
            let access = adopted.access.clone();
            let expires_at = adopted.expires_at;
            self.set_tokens(adopted);
            Counters::add(&self.shared.counters.adopted);
            tracing::Span::current().record("outcome", "adopted");
            self.state
                .send_replace(SessionState::SignedIn { expires_at });
            self.emit(SessionEvent::Refreshed { expires_at });
            return Ok(access);
        }
        let (refresh, dpop) = match stored_refresh {
            Some(stored) => (Some(stored.token), stored.dpop),
            None => (current.refresh.clone(), current.dpop.clone()),
        };
        let Some(refresh) = refresh else {
            let error =
                Error::Config("no refresh token for this account; sign in again".to_owned());
            self.fail(FailureKind::Rejected, &error);
            return Err(error);
        };
        let events = self.events.clone();
        let attempts = std::sync::atomic::AtomicU32::new(1);
        // A logout during the request aborts it: nothing of the account runs afterwards.
        let request = self.shared.client.refresh_with_retries(
            &refresh,
            Some(key.sub.as_str()),
            dpop.as_ref(),
            self.shared.retry,
            &self.cancel,
            |f, wait| {
                attempts.fetch_add(1, Ordering::Relaxed);
                let _ = events.send(SessionEvent::RefreshFailed {
                    kind: f.kind,
                    retrying_in: Some(wait),
                });
            },
        );
        let result = tokio::select! {
            result = request => result,
            () = self.cancel.cancelled() => return Err(Error::Cancelled),
        };
        tracing::Span::current().record("attempts", attempts.load(Ordering::Relaxed));
        match result {
            Ok(set) => {
                let mut next = Tokens::arrived(&set, Some(&current), self.shared.now());
                if next.refresh.is_none() {
                    next.refresh = Some(refresh);
                }
                self.persist(&next, set.refresh_token.is_some()).await;
                let expires_at = next.expires_at;
                let access = next.access.clone();
                self.set_tokens(next);
                self.consecutive_failures.store(0, Ordering::SeqCst);
                Counters::add(&self.shared.counters.refreshes);
                tracing::Span::current().record("outcome", "refreshed");
                self.state
                    .send_replace(SessionState::SignedIn { expires_at });
                self.emit(SessionEvent::Refreshed { expires_at });
                tracing::debug!(account = %key.fingerprint(), "refreshed");
                Ok(access)
            }
            Err(failure) => {
                if failure.kind == FailureKind::SignedOutByServer {
                    tracing::info!(account = %key.fingerprint(), "the provider ended the session");
                    self.end_from_inside(Ending::Server).await;
                } else {
                    self.fail(failure.kind, &failure.error);
                    let failed = self.consecutive_failures.fetch_add(1, Ordering::SeqCst) + 1;
                    let refused = failure.kind == FailureKind::Rejected
                        && self.shared.policy.signs_out_on_refusal();
                    let limit = !self.shared.policy.survives_outages()
                        && self.shared.sign_out_after.is_some_and(|l| failed >= l);
                    if refused || limit {
                        tracing::info!(account = %key.fingerprint(), failed, refused, "signing out after a failed refresh, as the policy says");
                        self.end_from_inside(Ending::Failures).await;
                    }
                }
                Err(failure.error)
            }
        }
    }

    pub(super) fn fail(&self, kind: FailureKind, error: &Error) {
        tracing::warn!(account = %self.info.key.fingerprint(), ?kind, %error, "refresh failed");
        self.state.send_replace(SessionState::RefreshFailing {
            kind,
            message: error.to_string(),
        });
        self.emit(SessionEvent::RefreshFailed {
            kind,
            retrying_in: None,
        });
    }

    /// Writes the rotated refresh token first, then the session entry. If the
    /// store fails, the tokens stay in memory and a task retries the write.
    async fn persist(self: &Arc<Self>, tokens: &Tokens, rotated: bool) {
        let (store, key, policy) = (&self.shared.store, &self.info.key, self.shared.policy);
        match write_tokens(store, key, tokens, policy, rotated).await {
            Ok(()) => self.write_pending.store(false, Ordering::SeqCst),
            Err(error) => {
                tracing::warn!(account = %self.info.key.fingerprint(), %error, "could not store the new tokens; keeping them in memory");
                self.write_pending.store(true, Ordering::SeqCst);
                self.emit(SessionEvent::StoreWriteFailed);
                let this = Arc::clone(self);
                self.tasks.spawn(async move { this.retry_write().await });
            }
        }
    }

    async fn retry_write(self: Arc<Self>) {
        let mut waits = STORE_RETRY.schedule();
        while self.write_pending.load(Ordering::SeqCst) {
            tokio::select! {
                () = self.cancel.cancelled() => return,
                () = tokio::time::sleep(waits.next_delay()) => {}
            }
            let tokens = self.tokens.load_full();
            let (store, key, policy) = (&self.shared.store, &self.info.key, self.shared.policy);
            if write_tokens(store, key, &tokens, policy, true)
                .await
                .is_ok()
            {
                self.write_pending.store(false, Ordering::SeqCst);
                tracing::info!(account = %self.info.key.fingerprint(), "stored the tokens after an earlier failure");
            }
        }
    }
}

/// The refresh token in the store and the DPoP key its session entry holds.
struct StoredRefresh {
    token: crate::RefreshToken,
    dpop: Option<crate::DpopKey>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_retries_double_from_half_a_second_to_thirty_above_a_floor() {
        let ms = Duration::from_millis(1);
        let highest: Vec<Duration> = STORE_RETRY.schedule().jitter(|| 1.0).take(8).collect();
        assert_eq!(
            highest,
            [500, 1000, 2000, 4000, 8000, 16_000, 30_000, 30_000].map(|n| n * ms)
        );
        let lowest: Vec<Duration> = STORE_RETRY.schedule().jitter(|| 0.0).take(3).collect();
        assert_eq!(lowest, [100 * ms; 3]);
    }
}
