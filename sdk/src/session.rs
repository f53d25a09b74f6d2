//! Signed-in accounts and what keeps them signed in.
//!
//! [`SessionManager`]: signing in (tokens to the store, the account to the
//! registry), listing, switching the active account, restoring every account
//! at start-up. [`Session`]: one account's tokens, with
//! [`Session::access_token`] — no I/O and no lock while the token is fresh;
//! otherwise one refresh per account at a time (single flight: every waiter
//! gets that refresh's result, an error or a panic included), under a
//! per-account file lock so two processes of one app never spend the same
//! rotating refresh token. The rotated refresh token is written before the
//! new tokens are handed out; if the store fails, the tokens stay in memory
//! and the write is retried.
//!
//! Store calls run in `spawn_blocking`; a store that fails is reported, never
//! taken as "signed out", and nothing is deleted because a read failed.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::accounts::{AccountInfo, AccountRegistry};
use crate::error::{Error, Result, StoreError};
use crate::login::{DevicePrompt, LoopbackOptions, OidcClient};
use crate::logout::{LogoutReport, LogoutStep};
use crate::policy::{MIN_TIMER_WAIT, RefreshPolicy, timer_wait};
use crate::refresh::{FailureKind, RetryPolicy, full_jitter};
use crate::secret::{AccessToken, IdToken, RefreshToken};
use crate::store::{AccountKey, SessionEntry, TokenStore};
use crate::token::TokenSet;

/// Where an account's session stands. Published on a `watch` channel.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionState {
    /// Signed in; the access token expires then.
    SignedIn {
        /// When the access token expires.
        expires_at: Option<SystemTime>,
    },
    /// A refresh is running.
    Refreshing,
    /// The last refresh failed and the session is kept.
    RefreshFailing {
        /// What kind of failure.
        kind: FailureKind,
        /// The error, in words.
        message: String,
    },
    /// The app signed the account out.
    SignedOut,
    /// The provider ended the session (`invalid_grant`): revoked, expired, or a reused refresh token.
    SignedOutByServer,
}

/// Something that happened to a session. Sent on a `broadcast` channel.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionEvent {
    /// The account signed in (or was restored).
    SignedIn,
    /// A refresh started.
    Refreshing,
    /// A refresh succeeded.
    Refreshed {
        /// The new expiry.
        expires_at: Option<SystemTime>,
    },
    /// A refresh attempt failed; `retrying_in` is set when it will be retried.
    RefreshFailed {
        /// What kind of failure.
        kind: FailureKind,
        /// The wait before the next attempt, if there is one.
        retrying_in: Option<Duration>,
    },
    /// The new tokens could not be written to the store; they are kept in memory and the write is retried.
    StoreWriteFailed,
    /// The app signed the account out.
    SignedOutLocally,
    /// The provider ended the session.
    SignedOutByServer,
}

/// The tokens of one account in memory.
#[derive(Debug, Clone)]
struct Tokens {
    access: AccessToken,
    expires_at: Option<SystemTime>,
    /// When these tokens arrived (unknown for tokens read from the store).
    obtained_at: Option<SystemTime>,
    refresh: Option<RefreshToken>,
    id_token: Option<IdToken>,
    sid: Option<String>,
    scopes: Vec<String>,
}

impl Tokens {
    fn scrubbed() -> Self {
        Self {
            access: AccessToken::new(String::new()),
            expires_at: Some(SystemTime::UNIX_EPOCH),
            obtained_at: None,
            refresh: None,
            id_token: None,
            sid: None,
            scopes: Vec::new(),
        }
    }

    fn entry(&self) -> SessionEntry {
        SessionEntry {
            access_token: self.access.clone(),
            expires_at: self.expires_at,
            id_token: self.id_token.clone(),
            scopes: self.scopes.clone(),
            sid: self.sid.clone(),
        }
    }

    /// Valid for longer than the margin from now? The margin is the clock
    /// skew, but at most half the token's lifetime: a token that came back
    /// shorter than the skew is used, not refreshed again at once.
    fn fresh(&self, skew: Duration) -> bool {
        let Some(at) = self.expires_at else {
            return true;
        };
        let margin = match self.obtained_at.and_then(|o| at.duration_since(o).ok()) {
            Some(lifetime) => skew.min(lifetime / 2),
            None => skew,
        };
        at.duration_since(SystemTime::now())
            .is_ok_and(|left| left > margin)
    }

    /// When (Unix ms) the token stops being fresh, as [`Tokens::fresh`] decides it.
    fn fresh_until_ms(&self, skew: Duration) -> u64 {
        let Some(at) = self.expires_at else {
            return u64::MAX;
        };
        let margin = match self.obtained_at.and_then(|o| at.duration_since(o).ok()) {
            Some(lifetime) => skew.min(lifetime / 2),
            None => skew,
        };
        crate::clock::unix_ms(at)
            .saturating_sub(u64::try_from(margin.as_millis()).unwrap_or(u64::MAX))
    }
}

/// An app's cleanup for an account that signs out (user files, caches, databases).
pub type CleanupHook = Arc<dyn Fn(&AccountInfo) -> std::result::Result<(), String> + Send + Sync>;

/// What every session of a manager shares.
struct Shared {
    client: OidcClient,
    store: Arc<dyn TokenStore>,
    registry: AccountRegistry,
    lock_dir: PathBuf,
    retry: RetryPolicy,
    policy: RefreshPolicy,
    hooks: Mutex<Vec<CleanupHook>>,
    sign_out_after: Option<u32>,
}

impl Shared {
    /// Runs the app's cleanup hooks for `account`; returns what they reported.
    fn run_hooks(&self, account: &AccountInfo) -> Vec<String> {
        let hooks = self.hooks.lock().unwrap_or_else(|e| e.into_inner()).clone();
        hooks
            .iter()
            .filter_map(|hook| hook(account).err())
            .collect()
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("client", &self.client)
            .field("store", &self.store.name())
            .field("registry", &self.registry)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// One signed-in account.
pub struct Session {
    info: AccountInfo,
    tokens: ArcSwap<Tokens>,
    /// When the current token stops being fresh (Unix ms): the hot path
    /// compares it with the coarse clock.
    fresh_until_ms: AtomicU64,
    /// Held while a refresh runs: the single flight.
    flight: tokio::sync::Mutex<()>,
    /// Counts finished refresh attempts; a waiter compares it with what it saw.
    finished: AtomicU64,
    last_failure: Mutex<Option<Error>>,
    write_pending: AtomicBool,
    /// Refreshes that failed in a row (each after its retries).
    consecutive_failures: std::sync::atomic::AtomicU32,
    shared: Arc<Shared>,
    state: watch::Sender<SessionState>,
    events: broadcast::Sender<SessionEvent>,
    cancel: CancellationToken,
    /// Set with `cancel`: read on the hot path (the token's own check takes a mutex).
    ended: AtomicBool,
    tasks: TaskTracker,
    on_end: Mutex<Vec<Box<dyn FnOnce() + Send>>>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("info", &self.info)
            .field("state", &*self.state.borrow())
            .field("tasks", &self.tasks.len())
            .finish_non_exhaustive()
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Store(StoreError::Unavailable(format!("store task failed: {e}"))))
}

impl Session {
    fn new(info: AccountInfo, tokens: Tokens, shared: Arc<Shared>) -> Arc<Self> {
        let (state, _) = watch::channel(SessionState::SignedIn {
            expires_at: tokens.expires_at,
        });
        let (events, _) = broadcast::channel(64);
        Arc::new(Self {
            info,
            fresh_until_ms: AtomicU64::new(tokens.fresh_until_ms(shared.client.skew())),
            tokens: ArcSwap::from_pointee(tokens),
            flight: tokio::sync::Mutex::new(()),
            finished: AtomicU64::new(0),
            last_failure: Mutex::new(None),
            write_pending: AtomicBool::new(false),
            consecutive_failures: std::sync::atomic::AtomicU32::new(0),
            shared,
            state,
            events,
            cancel: CancellationToken::new(),
            ended: AtomicBool::new(false),
            tasks: TaskTracker::new(),
            on_end: Mutex::new(Vec::new()),
        })
    }

    /// Runs `f` once when the session ends (signed out locally or by the
    /// server) — an HTTP client drops its cookies here, a cache its entries.
    /// If the session already ended, `f` runs now.
    pub fn on_end(&self, f: impl FnOnce() + Send + 'static) {
        if self.cancel.is_cancelled() {
            f();
            return;
        }
        self.on_end
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Box::new(f));
    }

    /// Replaces the tokens in memory, then the freshness deadline.
    fn set_tokens(&self, tokens: Tokens) {
        let deadline = tokens.fresh_until_ms(self.shared.client.skew());
        self.tokens.store(Arc::new(tokens));
        self.fresh_until_ms.store(deadline, Ordering::Release);
    }

    /// Marks the session ended and cancels its work.
    fn end(&self) {
        self.ended.store(true, Ordering::Release);
        self.cancel.cancel();
    }

    fn run_end_hooks(&self) {
        let hooks = std::mem::take(&mut *self.on_end.lock().unwrap_or_else(|e| e.into_inner()));
        for hook in hooks {
            hook();
        }
    }

    /// How many background tasks of this session are running (the refresh
    /// timer, a refresh, a retried store write). Zero once it has ended.
    pub fn running_tasks(&self) -> usize {
        self.tasks.len()
    }

    /// Ends the session's background work and waits for it (up to `limit`).
    async fn stop(&self, limit: Duration) -> bool {
        self.end();
        self.tasks.close();
        tokio::time::timeout(limit, self.tasks.wait()).await.is_ok()
    }

    /// The proactive refresh timer (every policy but `OnDemand`).
    async fn run_timer(self: Arc<Self>) {
        let cancel = self.cancel.child_token();
        let skew = self.shared.client.skew();
        loop {
            let tokens = self.tokens.load_full();
            let Some(expires_at) = tokens.expires_at else {
                return;
            };
            let wait = timer_wait(expires_at, tokens.obtained_at, SystemTime::now(), skew);
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
            let mut backoff = Duration::from_secs(1);
            loop {
                match self.refresh_shared(true, None).await {
                    Ok(_) => break,
                    Err(_) if cancel.is_cancelled() => return,
                    Err(error) => {
                        let transient = matches!(
                            &*self.state.borrow(),
                            SessionState::RefreshFailing {
                                kind: FailureKind::Transient,
                                ..
                            }
                        );
                        let keep_trying = transient && self.shared.policy.retries_until_online();
                        let pause = if keep_trying {
                            // OfflineFirst: keep trying, capped, until the network returns.
                            backoff = (backoff * 2).min(Duration::from_secs(60));
                            full_jitter(backoff).max(Duration::from_millis(100))
                        } else {
                            // Reported; the timer tries again later, never in a loop.
                            let left = expires_at
                                .duration_since(SystemTime::now())
                                .unwrap_or_default();
                            (left / 2).clamp(MIN_TIMER_WAIT, Duration::from_secs(60))
                        };
                        tracing::debug!(%error, ?pause, "background refresh failed");
                        tokio::select! {
                            () = cancel.cancelled() => return,
                            () = tokio::time::sleep(pause) => {}
                        }
                        if !keep_trying {
                            break;
                        }
                    }
                }
            }
        }
    }

    /// The account.
    pub fn info(&self) -> &AccountInfo {
        &self.info
    }

    /// Where its tokens are stored.
    pub fn key(&self) -> &AccountKey {
        &self.info.key
    }

    /// The current access token and its expiry, as cached (no I/O, no refresh).
    pub fn cached_access_token(&self) -> (AccessToken, Option<SystemTime>) {
        let t = self.tokens.load();
        (t.access.clone(), t.expires_at)
    }

    /// The provider's session id (`sid`), when it sent one.
    pub fn sid(&self) -> Option<String> {
        self.tokens.load().sid.clone()
    }

    /// The latest ID token (for an RP-initiated logout's `id_token_hint`).
    pub fn id_token(&self) -> Option<IdToken> {
        self.tokens.load().id_token.clone()
    }

    /// The scopes granted.
    pub fn scopes(&self) -> Vec<String> {
        self.tokens.load().scopes.clone()
    }

    /// The session's state; the receiver sees every change.
    pub fn state(&self) -> watch::Receiver<SessionState> {
        self.state.subscribe()
    }

    /// The session's events from now on.
    pub fn events(&self) -> broadcast::Receiver<SessionEvent> {
        self.events.subscribe()
    }

    /// Cancelled when the account signs out (locally or by the server); take a
    /// `child_token()` for work that must end with the session.
    pub fn cancellation(&self) -> &CancellationToken {
        &self.cancel
    }

    fn emit(&self, event: SessionEvent) {
        let _ = self.events.send(event);
    }

    /// A token valid for longer than the clock skew: the cached one without I/O
    /// or lock when it is, else after one shared refresh.
    ///
    /// ```no_run
    /// # async fn demo(session: std::sync::Arc<sessionkit::Session>) -> sessionkit::Result<()> {
    /// let token = session.access_token().await?;
    /// let response = reqwest::Client::new()
    ///     .get("https://api.example.com/me")
    ///     .bearer_auth(token.secret())
    ///     .send()
    ///     .await;
    /// # let _ = response; Ok(()) }
    /// ```
    pub async fn access_token(self: &Arc<Self>) -> Result<AccessToken> {
        if self.ended.load(Ordering::Acquire) {
            return Err(Error::SignedOut);
        }
        if crate::clock::coarse_now_ms() < self.fresh_until_ms.load(Ordering::Acquire) {
            return Ok(self.tokens.load().access.clone());
        }
        self.refresh_shared(false, None).await
    }

    /// Refreshes now even if the token looks fresh (after a 401), sharing a
    /// refresh already running.
    pub async fn force_refresh(self: &Arc<Self>) -> Result<AccessToken> {
        self.refresh_shared(true, None).await
    }

    /// After a server refused `rejected` (a 401): refreshes, unless the
    /// session already holds another token — checked under the refresh lock,
    /// so many requests refused with one token cause one refresh.
    pub async fn refresh_after_rejection(
        self: &Arc<Self>,
        rejected: &AccessToken,
    ) -> Result<AccessToken> {
        self.refresh_shared(true, Some(rejected)).await
    }

    async fn refresh_shared(
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
        if let Some(rejected) = rejected
            && self.tokens.load().access != *rejected
        {
            return Ok(self.tokens.load().access.clone());
        }
        if !force && self.tokens.load().fresh(self.shared.client.skew()) {
            return Ok(self.tokens.load().access.clone());
        }
        // The refresh runs as its own task: a caller that gives up does not
        // cancel it for the others, and a panic comes back as an error.
        let this = Arc::clone(self);
        let outcome = self
            .tasks
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
        self.state.send_replace(SessionState::Refreshing);
        self.emit(SessionEvent::Refreshing);
        // Across processes: hold the account's file lock, then see whether
        // another process already refreshed.
        let lock = self.cross_process_lock().await?;
        let result = self.refresh_under_file_lock().await;
        drop(lock);
        result
    }

    async fn cross_process_lock(&self) -> Result<std::fs::File> {
        let dir = self.shared.lock_dir.clone();
        let name = format!(
            "{}.lock",
            crate::secret::fingerprint(&format!(
                "{}|{}",
                self.info.key.service(),
                self.info.key.entry_user("lock")
            ))
        );
        blocking(move || -> Result<std::fs::File> {
            std::fs::create_dir_all(&dir)?;
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(dir.join(name))?;
            file.lock()?;
            Ok(file)
        })
        .await?
    }

    async fn refresh_under_file_lock(self: &Arc<Self>) -> Result<AccessToken> {
        let key = self.info.key.clone();
        let current = self.tokens.load_full();
        // Re-read the store: another process may have rotated the refresh token.
        let (store, k) = (self.shared.store.clone(), key.clone());
        let stored = blocking(move || (store.load_session(&k), store.load_refresh(&k))).await?;
        let mut refresh = current.refresh.clone();
        if !self.write_pending.load(Ordering::SeqCst) {
            if let (Ok(entry), _) = &stored
                && entry.access_token != current.access
            {
                let adopted = Tokens {
                    access: entry.access_token.clone(),
                    expires_at: entry.expires_at,
                    obtained_at: None,
                    refresh: stored.1.as_ref().ok().cloned().or(current.refresh.clone()),
                    id_token: entry.id_token.clone(),
                    sid: entry.sid.clone(),
                    scopes: entry.scopes.clone(),
                };
                if adopted.fresh(self.shared.client.skew()) {
                    tracing::debug!(account = %key.sub, "another process refreshed; adopting its tokens");
                    self.set_tokens(adopted.clone());
                    self.state.send_replace(SessionState::SignedIn {
                        expires_at: adopted.expires_at,
                    });
                    return Ok(adopted.access);
                }
            }
            if let (_, Ok(stored_refresh)) = &stored {
                refresh = Some(stored_refresh.clone());
            }
        }
        let Some(refresh) = refresh else {
            let error =
                Error::Config("no refresh token for this account; sign in again".to_owned());
            self.fail(FailureKind::Rejected, &error);
            return Err(error);
        };
        let previous_sub = Some(key.sub.clone());
        let events = self.events.clone();
        // A logout during the request aborts it: nothing of the account runs afterwards.
        let request = self.shared.client.refresh_with_retries(
            &refresh,
            previous_sub.as_deref(),
            self.shared.retry,
            &self.cancel,
            |f, wait| {
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
        match result {
            Ok(tokens) => {
                let next = Tokens {
                    access: tokens.access_token.clone(),
                    expires_at: tokens.expires_at,
                    obtained_at: Some(SystemTime::now()),
                    refresh: tokens.refresh_token.clone().or(Some(refresh)),
                    id_token: tokens.id_token.clone().or(current.id_token.clone()),
                    sid: tokens
                        .claims
                        .as_ref()
                        .and_then(|c| c.sid.clone())
                        .or(current.sid.clone()),
                    scopes: tokens.scopes.clone(),
                };
                self.persist(&next, tokens.refresh_token.is_some()).await;
                self.set_tokens(next.clone());
                self.consecutive_failures.store(0, Ordering::SeqCst);
                self.state.send_replace(SessionState::SignedIn {
                    expires_at: next.expires_at,
                });
                self.emit(SessionEvent::Refreshed {
                    expires_at: next.expires_at,
                });
                tracing::debug!(account = %key.sub, "refreshed");
                Ok(next.access)
            }
            Err(failure) => {
                if failure.kind == FailureKind::SignedOutByServer {
                    self.signed_out_by_server().await;
                } else {
                    self.fail(failure.kind, &failure.error);
                    let failed = self.consecutive_failures.fetch_add(1, Ordering::SeqCst) + 1;
                    if let Some(limit) = self.shared.sign_out_after
                        && failed >= limit
                    {
                        tracing::info!(account = %key.sub, failed, "signing out after repeated refresh failures, as the app chose");
                        self.end_with_cleanup(false).await;
                    }
                }
                Err(failure.error)
            }
        }
    }

    fn fail(&self, kind: FailureKind, error: &Error) {
        tracing::warn!(account = %self.info.key.sub, ?kind, %error, "refresh failed");
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
        let rotated = rotated && !self.shared.policy.refresh_token_in_memory_only();
        match write_tokens(&self.shared.store, &self.info.key, tokens, rotated).await {
            Ok(()) => self.write_pending.store(false, Ordering::SeqCst),
            Err(error) => {
                tracing::warn!(account = %self.info.key.sub, %error, "could not store the new tokens; keeping them in memory");
                self.write_pending.store(true, Ordering::SeqCst);
                self.emit(SessionEvent::StoreWriteFailed);
                let this = Arc::clone(self);
                self.tasks.spawn(async move { this.retry_write().await });
            }
        }
    }

    async fn retry_write(self: Arc<Self>) {
        let mut wait = Duration::from_millis(500);
        while self.write_pending.load(Ordering::SeqCst) {
            tokio::select! {
                () = self.cancel.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
            let tokens = self.tokens.load_full();
            if write_tokens(
                &self.shared.store,
                &self.info.key,
                &tokens,
                !self.shared.policy.refresh_token_in_memory_only(),
            )
            .await
            .is_ok()
            {
                self.write_pending.store(false, Ordering::SeqCst);
                tracing::info!(account = %self.info.key.sub, "stored the tokens after an earlier failure");
            }
            wait = (wait * 2).min(Duration::from_secs(30));
        }
    }

    async fn signed_out_by_server(&self) {
        tracing::info!(account = %self.info.key.sub, "the provider ended the session");
        self.end_with_cleanup(true).await;
    }

    /// Ends the session and cleans up (store entries, registry, hooks);
    /// `by_server` says who ended it.
    async fn end_with_cleanup(&self, by_server: bool) {
        self.end();
        self.run_end_hooks();
        for e in self.shared.run_hooks(&self.info) {
            tracing::warn!(error = %e, "a cleanup hook failed");
        }
        let (store, key) = (self.shared.store.clone(), self.info.key.clone());
        if let Ok(Err(e)) = blocking(move || store.delete(&key)).await {
            tracing::warn!(%e, "could not delete the ended session's tokens");
        }
        let (registry, key) = (self.shared.registry.clone(), self.info.key.clone());
        if let Ok(Err(e)) = blocking(move || registry.remove(&key)).await {
            tracing::warn!(%e, "could not remove the ended account from the registry");
        }
        self.set_tokens(Tokens::scrubbed());
        if by_server {
            self.state.send_replace(SessionState::SignedOutByServer);
            self.emit(SessionEvent::SignedOutByServer);
        } else {
            self.state.send_replace(SessionState::SignedOut);
            self.emit(SessionEvent::SignedOutLocally);
        }
    }

    /// Is a store write of the latest tokens still pending?
    pub fn store_write_pending(&self) -> bool {
        self.write_pending.load(Ordering::SeqCst)
    }
}

async fn write_tokens(
    store: &Arc<dyn TokenStore>,
    key: &AccountKey,
    tokens: &Tokens,
    rotated: bool,
) -> Result<()> {
    if rotated && let Some(refresh) = tokens.refresh.clone() {
        let (s, k) = (store.clone(), key.clone());
        blocking(move || s.save_refresh(&k, &refresh)).await??;
    }
    let (s, k, e) = (store.clone(), key.clone(), tokens.entry());
    blocking(move || s.save_session(&k, &e)).await??;
    Ok(())
}

/// What [`SessionManager::restore`] found for one account.
#[derive(Debug)]
pub struct Restored {
    /// The account.
    pub account: AccountInfo,
    /// `Ok` when its session is back in memory; the store's error otherwise
    /// (the account stays listed either way).
    pub result: std::result::Result<(), StoreError>,
}

/// The accounts of one app with one provider and client.
#[derive(Debug)]
pub struct SessionManager {
    namespace: String,
    shared: Arc<Shared>,
    sessions: RwLock<BTreeMap<AccountKey, Arc<Session>>>,
}

impl SessionManager {
    /// A manager for the app `namespace` (the name its keychain entries and
    /// accounts file carry), keeping tokens in `store` and the account list in
    /// `registry`. Refresh locks live beside the registry file.
    pub fn new(
        client: OidcClient,
        namespace: &str,
        store: Arc<dyn TokenStore>,
        registry: AccountRegistry,
    ) -> Self {
        let lock_dir = registry
            .path()
            .parent()
            .map(|p| p.join("locks"))
            .unwrap_or_else(|| std::env::temp_dir().join(format!("{namespace}-locks")));
        Self {
            namespace: namespace.to_owned(),
            shared: Arc::new(Shared {
                client,
                store,
                registry,
                lock_dir,
                retry: RetryPolicy::default(),
                policy: RefreshPolicy::default(),
                hooks: Mutex::new(Vec::new()),
                sign_out_after: None,
            }),
            sessions: RwLock::new(BTreeMap::new()),
        }
    }

    /// How failed refreshes are retried (before any session is made).
    #[must_use]
    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> Self {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.retry = retry;
        }
        self
    }

    /// How sessions keep their tokens fresh (before any session is made).
    /// The default is [`RefreshPolicy::Proactive`].
    ///
    /// ```no_run
    /// # fn demo(manager: sessionkit::SessionManager) {
    /// use sessionkit::RefreshPolicy;
    /// // A banking app: short tokens, the refresh token never written to disk.
    /// let manager = manager.with_policy(RefreshPolicy::HighSecurity);
    /// # let _ = manager; }
    /// ```
    #[must_use]
    pub fn with_policy(mut self, policy: RefreshPolicy) -> Self {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.policy = policy;
        }
        self
    }

    /// Signs an account out (locally, with cleanup) after `failures`
    /// refreshes in a row have failed, each after its retries. By default a
    /// failing refresh is reported and the session kept.
    #[must_use]
    pub fn sign_out_after_failures(mut self, failures: u32) -> Self {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.sign_out_after = Some(failures.max(1));
        }
        self
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

    fn install(&self, info: AccountInfo, tokens: Tokens) -> Arc<Session> {
        let session = Session::new(info.clone(), tokens, self.shared.clone());
        let old = self
            .sessions
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(info.key, session.clone());
        if let Some(old) = old {
            old.end();
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
    pub async fn sign_in(&self, tokens: TokenSet) -> Result<AccountInfo> {
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
        let mem = Tokens {
            access: tokens.access_token.clone(),
            expires_at: tokens.expires_at,
            obtained_at: Some(SystemTime::now()),
            refresh: tokens.refresh_token.clone(),
            id_token: tokens.id_token.clone(),
            sid: claims.sid.clone(),
            scopes: tokens.scopes.clone(),
        };
        let keep_refresh = !self.shared.policy.refresh_token_in_memory_only();
        write_tokens(&self.shared.store, &key, &mem, keep_refresh).await?;
        let (registry, i) = (self.shared.registry.clone(), info.clone());
        blocking(move || registry.upsert(i, true)).await??;
        tracing::info!(account = %info.key.sub, store = self.shared.store.name(), "signed in");
        self.install(info.clone(), mem);
        Ok(info)
    }

    /// Signs in through the browser (see [`OidcClient::login_loopback`]) and keeps the account.
    pub async fn login_loopback(&self, options: LoopbackOptions) -> Result<AccountInfo> {
        let tokens = self.shared.client.login_loopback(options).await?;
        self.sign_in(tokens).await
    }

    /// Signs in with the device flow (see [`OidcClient::login_device`]) and keeps the account.
    pub async fn login_device(
        &self,
        on_prompt: impl FnOnce(&DevicePrompt),
        cancel: &CancellationToken,
    ) -> Result<AccountInfo> {
        let tokens = self.shared.client.login_device(on_prompt, cancel).await?;
        self.sign_in(tokens).await
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
            let (store, key) = (self.shared.store.clone(), account.key.clone());
            let loaded =
                blocking(move || (store.load_session(&key), store.load_refresh(&key))).await?;
            let result = match loaded {
                (Ok(entry), refresh) => {
                    let refresh = match refresh {
                        Ok(r) => Some(r),
                        Err(StoreError::NotFound) => None,
                        Err(e) => {
                            tracing::warn!(account = %account.key.sub, error = %e, "refresh token unreadable; it is read again at refresh time");
                            None
                        }
                    };
                    self.install(
                        account.clone(),
                        Tokens {
                            access: entry.access_token,
                            expires_at: entry.expires_at,
                            obtained_at: None,
                            refresh,
                            id_token: entry.id_token,
                            sid: entry.sid,
                            scopes: entry.scopes,
                        },
                    );
                    Ok(())
                }
                (Err(e), _) => {
                    tracing::warn!(account = %account.key.sub, error = %e, "could not restore an account");
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
        let mut failures = Vec::new();
        let session = self
            .sessions
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
        // What the provider calls need, read before anything is deleted.
        let mut refresh = session
            .as_ref()
            .and_then(|s| s.tokens.load().refresh.clone());
        let id_token = session
            .as_ref()
            .and_then(|s| s.tokens.load().id_token.clone());
        // 1. Background work.
        if let Some(s) = &session
            && !s.stop(Duration::from_secs(5)).await
        {
            failures.push((
                LogoutStep::CancelWork,
                "background work did not stop within 5 s".to_owned(),
            ));
        }
        if refresh.is_none() {
            let (store, k) = (self.shared.store.clone(), key.clone());
            refresh = blocking(move || store.load_refresh(&k))
                .await
                .ok()
                .and_then(|r| r.ok());
        }
        let id_token = match id_token {
            Some(t) => Some(t),
            None => {
                let (store, k) = (self.shared.store.clone(), key.clone());
                blocking(move || store.load_session(&k))
                    .await
                    .ok()
                    .and_then(|r| r.ok())
                    .and_then(|e| e.id_token)
            }
        };
        // 2. Tokens: store, memory, registry.
        let (store, k) = (self.shared.store.clone(), key.clone());
        match blocking(move || store.delete(&k)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failures.push((LogoutStep::DeleteTokens, e.to_string())),
            Err(e) => failures.push((LogoutStep::DeleteTokens, e.to_string())),
        }
        let (registry, k) = (self.shared.registry.clone(), key.clone());
        match blocking(move || registry.remove(&k)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) | Err(e) => failures.push((LogoutStep::DeleteTokens, e.to_string())),
        }
        // 3. HTTP clients and other per-session hooks.
        if let Some(s) = &session {
            let result =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| s.run_end_hooks()));
            if result.is_err() {
                failures.push((LogoutStep::ClearHttp, "an on_end hook panicked".to_owned()));
            }
            // Forget the tokens in memory too (their bytes are zeroized once
            // the last clone is dropped).
            s.set_tokens(Tokens::scrubbed());
            s.state.send_replace(SessionState::SignedOut);
            s.emit(SessionEvent::SignedOutLocally);
        }
        // 4. The app's cleanup.
        let info = session
            .as_ref()
            .map(|s| s.info.clone())
            .unwrap_or_else(|| AccountInfo {
                key: key.clone(),
                display_name: key.sub.clone(),
                username: None,
            });
        for e in self.shared.run_hooks(&info) {
            failures.push((LogoutStep::CleanupHooks, e));
        }
        // 5. The provider: revoke, and the browser logout URL.
        let mut revoked = false;
        match &refresh {
            Some(token) => {
                match crate::logout::revoke(&self.shared.client, token, Duration::from_secs(5))
                    .await
                {
                    Ok(()) => revoked = true,
                    Err(e) => failures.push((LogoutStep::RevokeRefreshToken, e.to_string())),
                }
            }
            None => failures.push((
                LogoutStep::RevokeRefreshToken,
                "no refresh token to revoke".to_owned(),
            )),
        }
        let end_session_url =
            crate::logout::end_session_url(&self.shared.client, id_token.as_ref());
        tracing::info!(account = %key.sub, complete = failures.is_empty(), "signed out");
        LogoutReport {
            account: key.clone(),
            end_session_url,
            revoked,
            failures,
        }
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
