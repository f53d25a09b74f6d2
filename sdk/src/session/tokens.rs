//! One account's tokens in memory, and how they reach the store: the
//! rotated refresh token first, then the session entry.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::dpop::DpopKey;
use crate::error::{Error, Result, StoreError};
use crate::policy::RefreshPolicy;
use crate::secret::{AccessToken, IdToken, RefreshToken};
use crate::store::{AccountKey, SessionEntry, TokenStore};
use crate::token::TokenSet;

/// The tokens of one account in memory.
#[derive(Debug, Clone)]
pub(crate) struct Tokens {
    pub(crate) access: AccessToken,
    pub(crate) expires_at: Option<SystemTime>,
    /// When these tokens arrived (unknown for tokens stored by an older version).
    pub(crate) obtained_at: Option<SystemTime>,
    pub(crate) refresh: Option<RefreshToken>,
    pub(crate) id_token: Option<IdToken>,
    pub(crate) sid: Option<String>,
    pub(crate) scopes: Vec<String>,
    /// The DPoP key the provider knows the tokens by.
    pub(crate) dpop: Option<DpopKey>,
    /// The access token is bound to that key (else: a bearer token).
    pub(crate) dpop_bound: bool,
}

impl Tokens {
    /// What a login or refresh brought, arrived at `now`; what the answer
    /// left out (a refresh token, an ID token, `sid`) is kept from `before`.
    pub(crate) fn arrived(set: &TokenSet, before: Option<&Tokens>, now: SystemTime) -> Self {
        Self {
            access: set.access_token.clone(),
            expires_at: set.expires_at,
            obtained_at: Some(now),
            refresh: set
                .refresh_token
                .clone()
                .or_else(|| before.and_then(|b| b.refresh.clone())),
            id_token: set
                .id_token
                .clone()
                .or_else(|| before.and_then(|b| b.id_token.clone())),
            sid: set
                .claims
                .as_ref()
                .and_then(|c| c.sid.clone())
                .or_else(|| before.and_then(|b| b.sid.clone())),
            scopes: set.scopes.clone(),
            dpop: set.dpop.clone(),
            dpop_bound: set.dpop_bound,
        }
    }

    /// Tokens read from the store.
    pub(crate) fn stored(entry: SessionEntry, refresh: Option<RefreshToken>) -> Self {
        Self {
            access: entry.access_token,
            expires_at: entry.expires_at,
            obtained_at: entry.obtained_at,
            refresh,
            id_token: entry.id_token,
            sid: entry.sid,
            scopes: entry.scopes,
            dpop_bound: entry.dpop_bound,
            dpop: entry.dpop_key,
        }
    }

    /// Nothing: what a session holds once it has ended.
    pub(crate) fn scrubbed() -> Self {
        Self {
            access: AccessToken::new(String::new()),
            expires_at: Some(SystemTime::UNIX_EPOCH),
            obtained_at: None,
            refresh: None,
            id_token: None,
            sid: None,
            scopes: Vec::new(),
            dpop: None,
            dpop_bound: false,
        }
    }

    pub(crate) fn entry(&self) -> SessionEntry {
        SessionEntry {
            access_token: self.access.clone(),
            expires_at: self.expires_at,
            obtained_at: self.obtained_at,
            id_token: self.id_token.clone(),
            scopes: self.scopes.clone(),
            sid: self.sid.clone(),
            dpop_key: self.dpop.clone(),
            dpop_bound: self.dpop_bound,
        }
    }

    /// When these tokens are due for refresh (see `timing`); `None`: never.
    pub(crate) fn due_at(&self, policy: RefreshPolicy, skew: Duration) -> Option<SystemTime> {
        crate::timing::due_at(policy, self.expires_at, self.obtained_at, skew)
    }

    /// Not yet due for refresh at `now`?
    pub(crate) fn fresh(&self, policy: RefreshPolicy, skew: Duration, now: SystemTime) -> bool {
        self.due_at(policy, skew).is_none_or(|due| now < due)
    }
}

/// Runs a store call off the async runtime (every store may block).
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Store(StoreError::Unavailable(format!("store task failed: {e}"))))
}

/// Writes `tokens`: the refresh token first (when `rotated`), then the
/// session entry. A policy that keeps tokens in memory writes nothing.
pub(crate) async fn write_tokens(
    store: &Arc<dyn TokenStore>,
    key: &AccountKey,
    tokens: &Tokens,
    policy: RefreshPolicy,
    rotated: bool,
) -> Result<()> {
    if !policy.stores_tokens() {
        return Ok(());
    }
    if rotated && let Some(refresh) = tokens.refresh.clone() {
        let (s, k) = (store.clone(), key.clone());
        blocking(move || s.save_refresh(&k, &refresh)).await??;
    }
    let (s, k, e) = (store.clone(), key.clone(), tokens.entry());
    blocking(move || s.save_session(&k, &e)).await??;
    Ok(())
}
