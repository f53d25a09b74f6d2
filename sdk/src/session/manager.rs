//! [`SessionManager`]: the accounts of one app with one provider and client —
//! signing in, listing, switching, restoring, signing out.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use tokio_util::sync::CancellationToken;

use crate::accounts::AccountInfo;
use crate::error::{Error, Result, StoreError};
use crate::login::{DevicePrompt, OidcClient};
use crate::logout::LogoutReport;
use crate::policy::RefreshPolicy;
use crate::secret::RefreshToken;
use crate::store::{AccountKey, TokenStore};
use crate::token::TokenSet;

use tracing::Instrument as _;

use super::state::SessionEvent;
use super::teardown::{Ending, teardown};
use super::tokens::{Tokens, blocking, write_tokens};
use super::{Session, Shared};

/// What [`SessionManager::restore`] found for one account.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Restored {
    /// The account.
    pub account: AccountInfo,
    /// `Ok` when its session is back in memory; the store's error otherwise
    /// (the account stays listed either way).
    pub result: std::result::Result<(), StoreError>,
}

/// The accounts of one app with one provider and client. Made by
/// [`SessionManager::builder`].
#[derive(Debug)]
pub struct SessionManager {
    namespace: String,
    shared: Arc<Shared>,
    sessions: RwLock<BTreeMap<AccountKey, Arc<Session>>>,
    pub(super) restored: Mutex<Vec<Restored>>,
}

impl SessionManager {
    pub(super) fn from_shared(namespace: String, shared: Arc<Shared>) -> Self {
        Self {
            namespace,
            shared,
            sessions: RwLock::new(BTreeMap::new()),
            restored: Mutex::new(Vec::new()),
        }
    }

    /// What `build()` found for each account signed in before (empty when
    /// it did not restore).
    pub fn restored(&self) -> Vec<Restored> {
        self.restored
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// What the SDK did for this manager's accounts so far (counters an
    /// app can export).
    pub fn metrics(&self) -> crate::metrics::Metrics {
        self.shared.counters.snapshot()
    }

    /// The refresh policy.
    pub fn policy(&self) -> RefreshPolicy {
        self.shared.policy
    }

    /// Registers a cleanup the app needs when an account signs out (locally
    /// or by the server): user files, caches, databases.
    pub fn on_logout(
        &self,
        hook: impl Fn(&AccountInfo) -> std::result::Result<(), String> + Send + Sync + 'static,
    ) {
        self.shared
            .hooks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::new(hook));
    }

    /// The OpenID Connect client.
    pub fn client(&self) -> &OidcClient {
        &self.shared.client
    }

    /// The token store.
    pub fn store(&self) -> &Arc<dyn TokenStore> {
        &self.shared.store
    }

    fn mine(&self, key: &AccountKey) -> bool {
        key.namespace == self.namespace
            && key.issuer == self.shared.client.provider().issuer()
            && key.client_id == self.shared.client.client_id()
    }

    fn install(&self, info: AccountInfo, tokens: Tokens, signed_in_at: SystemTime) -> Arc<Session> {
        let session = Session::new(info.clone(), tokens, signed_in_at, self.shared.clone());
        let old = self
            .sessions
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(info.key, session.clone());
        if let Some(old) = old {
            old.ended.store(true, std::sync::atomic::Ordering::Release);
            old.cancel.cancel();
        }
        if self.shared.policy.has_timer() {
            let timer = session.clone();
            session.tasks.spawn(timer.run_timer());
        }
        session.emit(SessionEvent::SignedIn);
        session
    }

    /// Keeps the tokens of a finished login: the refresh token first, then the
    /// session entry, then the account in the registry as the active one.
    ///
    /// When the store cannot take them (a locked keychain:
    /// [`StoreError::Unavailable`]), that error is returned, nothing is
    /// listed, and the refresh token is revoked at the provider (best
    /// effort), so no grant outlives a sign-in that was not kept.
    pub async fn sign_in(&self, tokens: TokenSet) -> Result<Arc<Session>> {
        let claims = tokens.claims.as_ref().ok_or_else(|| {
            Error::Config("a sign-in needs an ID token (ask for the openid scope)".to_owned())
        })?;
        let key = AccountKey {
            namespace: self.namespace.clone(),
            issuer: self.shared.client.provider().issuer().to_owned(),
            client_id: self.shared.client.client_id().to_owned(),
            sub: claims.sub.clone(),
        };
        let info = AccountInfo {
            key: key.clone(),
            display_name: claims.display_name.clone(),
            username: claims.username.clone(),
        };
        let now = self.shared.now();
        let mem = Tokens::arrived(&tokens, None, now);
        let policy = self.shared.policy;
        if !policy.stores_tokens() {
            // Nothing of this account may stay in the store, an earlier
            // sign-in's refresh token least of all.
            let (store, k) = (self.shared.store.clone(), key.clone());
            blocking(move || store.delete(&k)).await??;
        }
        if let Err(error) = write_tokens(&self.shared.store, &key, &mem, policy, true).await {
            // The provider granted tokens that cannot be kept (the keychain
            // is locked, say): revoke the grant rather than leave a live
            // refresh token that nobody holds. Best effort; the store's
            // error is what the caller hears.
            if let Some(refresh) = &mem.refresh {
                let revoked = crate::logout::revoke(
                    &self.shared.client,
                    refresh,
                    mem.dpop.as_ref(),
                    self.shared.revoke_budget,
                )
                .await;
                tracing::info!(account = %key.fingerprint(), %error, revoked = revoked.is_ok(), "sign-in not kept: the tokens could not be stored");
            }
            return Err(error);
        }
        let (registry, i) = (self.shared.registry.clone(), info.clone());
        blocking(move || registry.upsert(i, true)).await??;
        tracing::info!(account = %info.key.fingerprint(), store = self.shared.store.name(), "signed in");
        crate::metrics::Counters::add(&self.shared.counters.sign_ins);
        Ok(self.install(info, mem, now))
    }

    /// Signs in through the browser (see [`OidcClient::login_loopback`]),
    /// keeps the account as the active one, and returns its session.
    ///
    /// Available with the `loopback` feature (on by default).
    #[cfg(feature = "loopback")]
    pub async fn login_loopback(
        &self,
        options: crate::login::LoopbackOptions,
    ) -> Result<Arc<Session>> {
        let span = login_span("loopback");
        let signed_in = async {
            let tokens = self.shared.client.login_loopback(options).await?;
            self.sign_in(tokens).await
        }
        .instrument(span.clone())
        .await;
        record_login(&span, &signed_in);
        signed_in
    }

    /// Signs in with the device flow (see [`OidcClient::login_device`]),
    /// keeps the account as the active one, and returns its session.
    pub async fn login_device(
        &self,
        on_prompt: impl FnOnce(&DevicePrompt),
        cancel: &CancellationToken,
    ) -> Result<Arc<Session>> {
        let span = login_span("device");
        let signed_in = async {
            let tokens = self.shared.client.login_device(on_prompt, cancel).await?;
            self.sign_in(tokens).await
        }
        .instrument(span.clone())
        .await;
        record_login(&span, &signed_in);
        signed_in
    }

    /// The accounts of this app, provider and client, in sign-in order.
    pub fn accounts(&self) -> Result<Vec<AccountInfo>> {
        Ok(self
            .shared
            .registry
            .list()?
            .into_iter()
            .filter(|a| self.mine(&a.key))
            .collect())
    }

    /// The active account, if one is set. Never "the first account" by default.
    pub fn active(&self) -> Result<Option<AccountInfo>> {
        Ok(self.shared.registry.active()?.filter(|a| self.mine(&a.key)))
    }

    /// Finds a listed account by `sub`, username or display name.
    pub fn find(&self, name: &str) -> Result<Option<AccountInfo>> {
        let accounts = self.accounts()?;
        Ok(accounts
            .iter()
            .find(|a| a.key.sub == name)
            .or_else(|| {
                accounts
                    .iter()
                    .find(|a| a.username.as_deref() == Some(name))
            })
            .or_else(|| accounts.iter().find(|a| a.display_name == name))
            .cloned())
    }

    /// Makes another signed-in account the active one; nothing else changes.
    pub fn switch(&self, key: &AccountKey) -> Result<()> {
        self.shared.registry.switch(key)
    }

    /// The in-memory session of an account (after [`SessionManager::sign_in`] or [`SessionManager::restore`]).
    pub fn session(&self, key: &AccountKey) -> Option<Arc<Session>> {
        self.sessions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .filter(|s| !s.cancel.is_cancelled())
            .cloned()
    }

    /// The active account's session, if it is in memory.
    pub fn active_session(&self) -> Result<Option<Arc<Session>>> {
        Ok(self.active()?.and_then(|a| self.session(&a.key)))
    }

    /// Loads every listed account's session from the store. Accounts whose
    /// entries cannot be read stay listed, with the store's error reported.
    pub async fn restore(&self) -> Result<Vec<Restored>> {
        let mut out = Vec::new();
        for account in self.accounts()? {
            if !self.shared.policy.stores_tokens() {
                // Tokens of this policy live in memory only: sign in again.
                out.push(Restored {
                    account,
                    result: Err(StoreError::NotFound),
                });
                continue;
            }
            let (store, key) = (self.shared.store.clone(), account.key.clone());
            let loaded =
                blocking(move || (store.load_session(&key), store.load_refresh(&key))).await?;
            let result = match loaded {
                (Ok(entry), refresh) => {
                    let refresh = match refresh {
                        Ok(r) => Some(r),
                        Err(StoreError::NotFound) => None,
                        Err(e) => {
                            tracing::warn!(account = %account.key.fingerprint(), error = %e, "refresh token unreadable; it is read again at refresh time");
                            None
                        }
                    };
                    // The sign-in time is unknown after a restart: the
                    // maximum age counts from the restore.
                    self.install(
                        account.clone(),
                        Tokens::stored(entry, refresh),
                        self.shared.now(),
                    );
                    Ok(())
                }
                (Err(e), _) => {
                    tracing::warn!(account = %account.key.fingerprint(), error = %e, "could not restore an account");
                    Err(e)
                }
            };
            out.push(Restored { account, result });
        }
        Ok(out)
    }

    /// Signs an account out, thoroughly: cancels its background work (timer,
    /// in-flight refresh, realtime connections holding a child of its
    /// cancellation token) and waits for it, deletes its store entries and
    /// forgets it, runs [`Session::on_end`] hooks (HTTP clients drop cookies
    /// and caches) and the app's [`SessionManager::on_logout`] hooks, revokes
    /// the refresh token (best effort, 5 s), and returns the RP-initiated
    /// logout URL. Every step runs even if an earlier one failed.
    ///
    /// ```no_run
    /// # async fn demo(manager: sessionkit::SessionManager) -> sessionkit::Result<()> {
    /// if let Some(account) = manager.active()? {
    ///     let report = manager.logout(&account.key).await;
    ///     if !report.is_complete() {
    ///         eprintln!("logout: some steps failed: {:?}", report.failures);
    ///     }
    ///     if let Some(url) = report.end_session_url {
    ///         println!("to end the session in the browser too, open {url}");
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn logout(&self, key: &AccountKey) -> LogoutReport {
        let session = self
            .sessions
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
        teardown(&self.shared, key, session.as_ref(), Ending::User).await
    }

    /// Signs every account of this app, provider and client out.
    pub async fn logout_all(&self) -> Result<Vec<LogoutReport>> {
        let mut keys: Vec<AccountKey> = self.accounts()?.into_iter().map(|a| a.key).collect();
        for key in self
            .sessions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
        {
            if !keys.contains(key) {
                keys.push(key.clone());
            }
        }
        let mut reports = Vec::new();
        for key in keys {
            reports.push(self.logout(&key).await);
        }
        Ok(reports)
    }

    /// The refresh token of an account, from the store.
    pub async fn stored_refresh_token(&self, key: &AccountKey) -> Result<RefreshToken> {
        let (store, key) = (self.shared.store.clone(), key.clone());
        Ok(blocking(move || store.load_refresh(&key)).await??)
    }
}

/// The span around a sign-in (`flow`: loopback, device).
fn login_span(flow: &'static str) -> tracing::Span {
    tracing::info_span!(
        "sessionkit.login",
        flow,
        account = tracing::field::Empty,
        outcome = tracing::field::Empty
    )
}

fn record_login(span: &tracing::Span, signed_in: &Result<Arc<Session>>) {
    match signed_in {
        Ok(session) => {
            span.record("account", session.key().fingerprint());
            span.record("outcome", "signed_in");
        }
        Err(e) => {
            span.record("outcome", outcome(e));
        }
    }
}

/// An error as a span's outcome: its kind, never its text.
pub(super) fn outcome(error: &Error) -> &'static str {
    if error.is_signed_out() {
        "signed_out"
    } else if error.is_transient() {
        "transient_failure"
    } else {
        match error {
            Error::Cancelled => "cancelled",
            Error::Timeout(_) => "timed_out",
            Error::AccessDenied => "denied",
            _ => "failed",
        }
    }
}
