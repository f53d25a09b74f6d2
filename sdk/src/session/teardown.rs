//! The one way a session ends, whoever ends it — the user's logout, the
//! provider (`invalid_grant`), repeated failures the app chose to sign out
//! after, or the maximum session age — in one order, every step run even
//! when an earlier one failed:
//!
//! 1. stop background work (timer, in-flight refresh, store retries, and
//!    the realtime connections holding a child of the cancellation token),
//!    then read the tokens to revoke — so no refresh can rotate them after;
//! 2. delete the store entries, the registry entry and the lock file;
//!    forget the tokens in memory; publish the new state;
//! 3. clear HTTP state ([`Session::on_end`] hooks), each hook isolated;
//! 4. run the app's cleanup hooks, each isolated (a panic is a failed step);
//! 5. revoke the refresh token (not after `invalid_grant`: the provider
//!    already ended the grant);
//! 6. report.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::accounts::AccountInfo;
use crate::logout::{LogoutReport, LogoutStep};
use crate::store::AccountKey;

use super::state::{SessionEvent, SessionState};
use super::tokens::{Tokens, blocking};
use super::{Session, Shared, lock};
use crate::metrics::Counters;
use tracing::Instrument as _;

/// An app's cleanup for an account that signs out (user files, caches, databases).
pub(crate) type CleanupHook =
    Arc<dyn Fn(&AccountInfo) -> std::result::Result<(), String> + Send + Sync>;

/// How long a teardown waits for background work to stop.
const STOP_LIMIT: Duration = Duration::from_secs(5);
/// The default time budget for revoking the refresh token
/// ([`super::SessionManagerBuilder::revocation_timeout`]).
pub(super) const REVOKE_BUDGET: Duration = Duration::from_secs(5);

/// Who ended a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ending {
    /// The app's `logout`.
    User,
    /// The provider refused the refresh token (`invalid_grant`, `invalid_client`).
    Server,
    /// Refreshes failed as often as the app (or the policy) allows.
    Failures,
    /// The app's maximum session age has passed.
    MaxAge,
}

impl Session {
    /// Ends the session from its own refresh task (the provider's word,
    /// failures, the maximum age).
    pub(super) async fn end_from_inside(self: &Arc<Self>, ending: Ending) {
        let shared = Arc::clone(&self.shared);
        let report = teardown(&shared, &self.info.key, Some(self), ending).await;
        for (step, why) in &report.failures {
            tracing::warn!(account = %self.info.key.fingerprint(), ?step, %why, "sign-out step failed");
        }
    }

    /// Step 1: cancels the session's work and waits for it (not for the
    /// refresh that is ending the session itself).
    async fn stop(&self, ending: Ending) -> bool {
        self.ended.store(true, Ordering::Release);
        self.cancel.cancel();
        self.tasks.close();
        let own_refresh = ending != Ending::User;
        if !own_refresh {
            self.refreshes.close();
        }
        tokio::time::timeout(STOP_LIMIT, async {
            self.tasks.wait().await;
            if !own_refresh {
                self.refreshes.wait().await;
            }
        })
        .await
        .is_ok()
    }

    /// Step 3: the session's own end hooks, each isolated.
    fn run_end_hooks(&self) -> usize {
        let hooks = std::mem::take(&mut *self.on_end.lock().unwrap_or_else(|e| e.into_inner()));
        hooks
            .into_iter()
            .map(|hook| catch_unwind(AssertUnwindSafe(hook)).is_err())
            .filter(|panicked| *panicked)
            .count()
    }
}

/// Runs the app's cleanup hooks for `account`, each isolated; returns what
/// failed.
fn run_app_hooks(shared: &Shared, account: &AccountInfo) -> Vec<String> {
    let hooks = shared
        .hooks
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    hooks
        .iter()
        .enumerate()
        .filter_map(
            |(i, hook)| match catch_unwind(AssertUnwindSafe(|| hook(account))) {
                Ok(Ok(())) => None,
                Ok(Err(why)) => Some(why),
                Err(_) => Some(format!("cleanup hook {} panicked", i + 1)),
            },
        )
        .collect()
}

/// The teardown of `key`, with its in-memory `session` if there is one.
pub(super) async fn teardown(
    shared: &Arc<Shared>,
    key: &AccountKey,
    session: Option<&Arc<Session>>,
    ending: Ending,
) -> LogoutReport {
    let span = tracing::info_span!(
        "sessionkit.logout",
        account = %key.fingerprint(),
        ending = ?ending,
        outcome = tracing::field::Empty,
    );
    let report = steps(shared, key, session, ending)
        .instrument(span.clone())
        .await;
    span.record(
        "outcome",
        if report.is_complete() {
            "complete"
        } else {
            "partial"
        },
    );
    let counters = &shared.counters;
    Counters::add(if ending == Ending::Server {
        &counters.signed_out_by_server
    } else {
        &counters.sign_outs
    });
    report
}

async fn steps(
    shared: &Arc<Shared>,
    key: &AccountKey,
    session: Option<&Arc<Session>>,
    ending: Ending,
) -> LogoutReport {
    let mut failures = Vec::new();
    // 1. Background work, then what the provider calls need.
    if let Some(s) = session
        && !s.stop(ending).await
    {
        failures.push((
            LogoutStep::CancelWork,
            format!("background work did not stop within {STOP_LIMIT:?}"),
        ));
    }
    let memory = session.map(|s| s.tokens.load_full());
    let mut refresh = memory.as_ref().and_then(|t| t.refresh.clone());
    let mut id_token = memory.as_ref().and_then(|t| t.id_token.clone());
    // The DPoP key goes with the refresh token it came with: from memory
    // together, or from the store together.
    let mut dpop = memory.as_ref().and_then(|t| t.dpop.clone());
    if shared.policy.stores_tokens() && (refresh.is_none() || id_token.is_none()) {
        let (store, k) = (shared.store.clone(), key.clone());
        if let Ok((entry, stored_refresh)) =
            blocking(move || (store.load_session(&k), store.load_refresh(&k))).await
        {
            let entry = entry.ok();
            if refresh.is_none() {
                refresh = stored_refresh.ok();
                dpop = entry.as_ref().map_or(dpop, |e| e.dpop_key.clone());
            }
            id_token = id_token.or(entry.and_then(|e| e.id_token));
        }
    }
    // 2. Store entries, registry entry, lock file; memory; state.
    let (store, k) = (shared.store.clone(), key.clone());
    match blocking(move || store.delete(&k)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => failures.push((LogoutStep::DeleteTokens, e.to_string())),
        Err(e) => failures.push((LogoutStep::DeleteTokens, e.to_string())),
    }
    let (registry, k) = (shared.registry.clone(), key.clone());
    match blocking(move || registry.remove(&k)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) | Err(e) => failures.push((LogoutStep::DeleteTokens, e.to_string())),
    }
    let (dir, k) = (shared.lock_dir.clone(), key.clone());
    match blocking(move || lock::remove(&dir, &k)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => failures.push((LogoutStep::DeleteTokens, format!("lock file: {e}"))),
        Err(e) => failures.push((LogoutStep::DeleteTokens, e.to_string())),
    }
    if let Some(s) = session {
        // Forget the tokens in memory (their bytes are zeroized once the
        // last clone is dropped).
        s.set_tokens(Tokens::scrubbed());
        if ending == Ending::Server {
            s.state.send_replace(SessionState::SignedOutByServer);
            s.emit(SessionEvent::SignedOutByServer);
        } else {
            s.state.send_replace(SessionState::SignedOut);
            s.emit(SessionEvent::SignedOutLocally);
        }
    }
    // 3. HTTP clients and other per-session hooks.
    if let Some(s) = session {
        let panicked = s.run_end_hooks();
        if panicked > 0 {
            failures.push((
                LogoutStep::ClearHttp,
                format!("{panicked} on_end hook(s) panicked"),
            ));
        }
    }
    // 4. The app's cleanup.
    let info = session
        .map(|s| s.info.clone())
        .unwrap_or_else(|| AccountInfo {
            key: key.clone(),
            display_name: key.sub.clone(),
            username: None,
        });
    for why in run_app_hooks(shared, &info) {
        failures.push((LogoutStep::CleanupHooks, why));
    }
    // 5. The provider.
    let mut revoked = false;
    match (&refresh, ending) {
        (_, Ending::Server) => {}
        (Some(token), _) => {
            match crate::logout::revoke(&shared.client, token, dpop.as_ref(), shared.revoke_budget)
                .await
            {
                Ok(()) => revoked = true,
                Err(e) => failures.push((LogoutStep::RevokeRefreshToken, e.to_string())),
            }
        }
        (None, _) => failures.push((
            LogoutStep::RevokeRefreshToken,
            "no refresh token to revoke".to_owned(),
        )),
    }
    let (end_session_url, end_session_state) =
        crate::logout::end_session_url(&shared.client, id_token.as_ref());
    tracing::info!(account = %key.fingerprint(), ?ending, complete = failures.is_empty(), "signed out");
    LogoutReport {
        account: key.clone(),
        end_session_url,
        end_session_state,
        revoked,
        failures,
    }
}
