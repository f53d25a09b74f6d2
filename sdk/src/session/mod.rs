//! Signed-in accounts and what keeps them signed in.
//!
//! [`SessionManager`] signs in (tokens to the store, the account to the
//! registry), lists, switches and restores accounts. [`Session`] is one
//! account: [`Session::access_token`] costs no I/O and no lock while the
//! token is fresh; otherwise one refresh per account runs at a time and
//! every consumer — the app, [`crate::AuthedClient`], realtime connections
//! through [`Session::current_token`] and [`Session::token_changes`] — takes
//! its result. The session owns refresh timing (`timing`): one refresh per
//! interval, however many consumers.
//!
//! Layout: `state` (what is published), `tokens` (tokens in memory and
//! their store writes), `flight` (the single-flight refresh, under the
//! cross-process `lock`), `timer` (the proactive refresh), `teardown` (the
//! one way a session ends), `manager` ([`SessionManager`]).
//!
//! Store calls run in `spawn_blocking`; a store that fails is reported, never
//! taken as "signed out", and nothing is deleted because a read failed.

mod builder;
mod flight;
mod lock;
mod manager;
mod state;
mod teardown;
mod timer;
mod tokens;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::accounts::{AccountInfo, AccountRegistry};
use crate::dpop::DpopKey;
use crate::error::{Error, Result};
use crate::login::OidcClient;
use crate::policy::RefreshPolicy;
use crate::refresh::RetryPolicy;
use crate::secret::{AccessToken, IdToken};
use crate::store::{AccountKey, TokenStore};

pub use builder::{DEFAULT_SCOPES, SessionManagerBuilder};
pub use manager::{Restored, SessionManager};
pub use state::{SessionEvent, SessionState};
pub(crate) use teardown::CleanupHook;

use tokens::Tokens;

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
    max_session_age: Option<Duration>,
    /// The time a logout (or an unkept sign-in) gives the revocation.
    revoke_budget: Duration,
    counters: crate::metrics::Counters,
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

impl Shared {
    fn skew(&self) -> Duration {
        self.client.skew()
    }

    /// The time now, by the manager's clock.
    fn now(&self) -> SystemTime {
        self.client.now()
    }
}

/// The access token a consumer should use now, with its timing: when it
/// expires and when the session will replace it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CurrentToken {
    /// The access token.
    pub access_token: AccessToken,
    /// When it expires (`None`: the provider did not say).
    pub expires_at: Option<SystemTime>,
    /// When the session refreshes it (by its timer, or at the next
    /// request after this time); `None` when it never expires.
    pub refresh_at: Option<SystemTime>,
}

/// One signed-in account.
///
/// Shared as `Arc<Session>` (what [`SessionManager::sign_in`] and friends
/// return); the realtime crate takes it as its token source directly.
pub struct Session {
    /// The session itself, for work it hands to tasks of its own.
    me: Weak<Session>,
    info: AccountInfo,
    tokens: ArcSwap<Tokens>,
    /// When the current token is due for refresh (Unix ms): the hot path
    /// compares it with the coarse clock.
    fresh_until_ms: AtomicU64,
    /// The manager's clock is not the system's: the hot path reads it
    /// instead of the coarse clock.
    exact_clock: bool,
    /// Bumped whenever the tokens in memory change.
    version: watch::Sender<u64>,
    /// Held while a refresh runs: the single flight.
    flight: tokio::sync::Mutex<()>,
    /// Counts finished refresh attempts; a waiter compares it with what it saw.
    finished: AtomicU64,
    last_failure: Mutex<Option<Error>>,
    write_pending: AtomicBool,
    /// Refreshes that failed in a row (each after its retries).
    consecutive_failures: AtomicU32,
    /// When the user signed in (for the maximum session age).
    signed_in_at: SystemTime,
    shared: Arc<Shared>,
    state: watch::Sender<SessionState>,
    events: broadcast::Sender<SessionEvent>,
    cancel: CancellationToken,
    /// Set with `cancel`: read on the hot path.
    ended: AtomicBool,
    /// The timer and retried store writes.
    tasks: TaskTracker,
    /// Refreshes (each its own task, so a caller that gives up does not
    /// cancel it for the others).
    refreshes: TaskTracker,
    on_end: Mutex<Vec<Box<dyn FnOnce() + Send>>>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("info", &self.info)
            .field("state", &*self.state.borrow())
            .field("tasks", &self.running_tasks())
            .finish_non_exhaustive()
    }
}

impl Session {
    fn new(
        info: AccountInfo,
        tokens: Tokens,
        signed_in_at: SystemTime,
        shared: Arc<Shared>,
    ) -> Arc<Self> {
        let (state, _) = watch::channel(SessionState::SignedIn {
            expires_at: tokens.expires_at,
        });
        let (events, _) = broadcast::channel(64);
        let due = tokens.due_at(shared.policy, shared.skew());
        Arc::new_cyclic(|me| Self {
            me: me.clone(),
            info,
            fresh_until_ms: AtomicU64::new(due.map_or(u64::MAX, crate::clock::unix_ms)),
            tokens: ArcSwap::from_pointee(tokens),
            version: watch::channel(0).0,
            exact_clock: !shared.client.time().is_system(),
            flight: tokio::sync::Mutex::new(()),
            finished: AtomicU64::new(0),
            last_failure: Mutex::new(None),
            write_pending: AtomicBool::new(false),
            consecutive_failures: AtomicU32::new(0),
            signed_in_at,
            shared,
            state,
            events,
            cancel: CancellationToken::new(),
            ended: AtomicBool::new(false),
            tasks: TaskTracker::new(),
            refreshes: TaskTracker::new(),
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

    /// Replaces the tokens in memory, then the freshness deadline, then
    /// tells whoever watches [`Session::token_changes`].
    fn set_tokens(&self, tokens: Tokens) {
        let due = tokens.due_at(self.shared.policy, self.shared.skew());
        self.tokens.store(Arc::new(tokens));
        self.fresh_until_ms.store(
            due.map_or(u64::MAX, crate::clock::unix_ms),
            Ordering::Release,
        );
        self.version.send_modify(|v| *v += 1);
    }

    /// How many background tasks of this session are running (the refresh
    /// timer, a refresh, a retried store write). Zero once it has ended.
    pub fn running_tasks(&self) -> usize {
        self.tasks.len() + self.refreshes.len()
    }

    /// The provider client the session refreshes with (its discovery and settings).
    pub fn client(&self) -> &OidcClient {
        &self.shared.client
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

    /// The account's DPoP key (`None` without DPoP): made at the login,
    /// proved at every token, refresh and revocation request, kept with the
    /// tokens, deleted at logout. The access token is bound to it unless
    /// the provider answered with a bearer token ([`Session::dpop_bound`]).
    ///
    /// ```no_run
    /// # fn demo(session: std::sync::Arc<sessionkit::Session>) {
    /// if let Some(key) = session.dpop_key() {
    ///     println!("tokens bound to {}", key.thumbprint()); // the cnf.jkt
    /// }
    /// # }
    /// ```
    pub fn dpop_key(&self) -> Option<DpopKey> {
        self.tokens.load().dpop.clone()
    }

    /// Is the access token bound to [`Session::dpop_key`] (sent as
    /// `Authorization: DPoP` with a proof)? `false` for a bearer token.
    pub fn dpop_bound(&self) -> bool {
        let tokens = self.tokens.load();
        tokens.dpop_bound && tokens.dpop.is_some()
    }

    /// A DPoP proof for sending `token` with `method url` — `None` when the
    /// account's tokens are bearer tokens. `nonce` is the one the server
    /// just asked for; without one, the last nonce `url`'s origin gave (see
    /// [`Session::keep_dpop_nonce`]) is used. [`crate::AuthedClient`] does
    /// all this itself; this is for requests made another way.
    ///
    /// ```no_run
    /// # async fn demo(session: std::sync::Arc<sessionkit::Session>) -> sessionkit::Result<()> {
    /// let url = "https://api.example.com/me";
    /// let token = session.access_token().await?;
    /// let mut request = reqwest::Client::new().get(url);
    /// request = match session.dpop_proof("GET", url, &token, None)? {
    ///     Some(proof) => request
    ///         .header("authorization", format!("DPoP {}", token.secret()))
    ///         .header("dpop", proof),
    ///     None => request.bearer_auth(token.secret()),
    /// };
    /// let response = request.send().await;
    /// # if let Ok(r) = &response { session.keep_dpop_nonce(url, r.headers()); }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::Config`] when `url` is not absolute.
    pub fn dpop_proof(
        &self,
        method: &str,
        url: &str,
        token: &AccessToken,
        nonce: Option<&str>,
    ) -> Result<Option<String>> {
        let Some(key) = self.dpop_key().filter(|_| self.dpop_bound()) else {
            return Ok(None);
        };
        let kept = match nonce {
            Some(_) => None,
            None => self.shared.client.nonces().get(url),
        };
        key.proof(
            method,
            url,
            Some(token),
            nonce.or(kept.as_deref()),
            self.shared.now(),
        )
        .map(Some)
    }

    /// Keeps the `DPoP-Nonce` a server answered `url` with, for the next
    /// proofs to that origin; returns it. Does nothing for bearer tokens.
    pub fn keep_dpop_nonce(
        &self,
        url: &str,
        headers: &reqwest::header::HeaderMap,
    ) -> Option<String> {
        self.dpop_key()?;
        self.shared.client.nonces().keep(url, headers)
    }

    /// The scopes granted.
    pub fn scopes(&self) -> Vec<String> {
        self.tokens.load().scopes.clone()
    }

    /// The refresh policy the session follows.
    pub fn policy(&self) -> RefreshPolicy {
        self.shared.policy
    }

    /// The session's state; the receiver sees every change.
    pub fn state(&self) -> watch::Receiver<SessionState> {
        self.state.subscribe()
    }

    /// The session's events from now on.
    pub fn events(&self) -> broadcast::Receiver<SessionEvent> {
        self.events.subscribe()
    }

    /// A receiver that changes whenever the session's tokens do (a refresh,
    /// tokens adopted from another process, the end of the session): a
    /// consumer that holds a token moves to [`Session::current_token`] then.
    pub fn token_changes(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// Cancelled when the account signs out (locally or by the server); take a
    /// `child_token()` for work that must end with the session.
    pub fn cancellation(&self) -> &CancellationToken {
        &self.cancel
    }

    fn emit(&self, event: SessionEvent) {
        let _ = self.events.send(event);
    }

    /// A token that is not yet due for refresh: the cached one without I/O
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
        let now_ms = if self.exact_clock {
            crate::clock::unix_ms(self.shared.now())
        } else {
            crate::clock::coarse_now_ms()
        };
        if now_ms < self.fresh_until_ms.load(Ordering::Acquire) {
            return Ok(self.tokens.load().access.clone());
        }
        self.refresh_shared(false, None).await
    }

    /// Like [`Session::access_token`], with the token's expiry and the time
    /// the session will refresh it, read together (one read of the cache).
    /// Decided with the exact clock: a consumer that asks at `refresh_at`
    /// gets the refreshed token (joining the session's refresh, never
    /// starting a second one).
    pub async fn current_token(self: &Arc<Self>) -> Result<CurrentToken> {
        if self.ended.load(Ordering::Acquire) {
            return Err(Error::SignedOut);
        }
        let (policy, skew) = (self.shared.policy, self.shared.skew());
        let mut tokens = self.tokens.load_full();
        if !tokens.fresh(policy, skew, self.shared.now()) {
            self.refresh_shared(false, None).await?;
            tokens = self.tokens.load_full();
        }
        Ok(CurrentToken {
            access_token: tokens.access.clone(),
            expires_at: tokens.expires_at,
            refresh_at: tokens.due_at(policy, skew),
        })
    }

    /// Refreshes now even if the token looks fresh, sharing a refresh
    /// already running. Prefer [`Session::refresh_after_rejection`] after a
    /// server refused a token: it does not refresh again when a newer token
    /// is already there.
    pub async fn force_refresh(self: &Arc<Self>) -> Result<AccessToken> {
        self.refresh_shared(true, None).await
    }

    /// After a server refused `rejected` (a 401, a WebSocket close 4001):
    /// refreshes, unless the session already holds another token — checked
    /// under the refresh lock, so many requests refused with one token cause
    /// one refresh.
    pub async fn refresh_after_rejection(
        self: &Arc<Self>,
        rejected: &AccessToken,
    ) -> Result<AccessToken> {
        self.refresh_shared(true, Some(rejected)).await
    }

    /// The session as an `Arc` (it always lives in one).
    fn arc(&self) -> Result<Arc<Self>> {
        self.me.upgrade().ok_or(Error::SignedOut)
    }

    /// [`Session::current_token`] through `&self` (for trait impls that
    /// only get a reference).
    pub async fn current(&self) -> Result<CurrentToken> {
        self.arc()?.current_token().await
    }

    /// [`Session::refresh_after_rejection`] through `&self`, with the
    /// current token afterwards.
    pub async fn after_rejection(&self, rejected: &AccessToken) -> Result<CurrentToken> {
        let me = self.arc()?;
        me.refresh_after_rejection(rejected).await?;
        me.current_token().await
    }

    /// Is a store write of the latest tokens still pending?
    pub fn store_write_pending(&self) -> bool {
        self.write_pending.load(Ordering::SeqCst)
    }
}
