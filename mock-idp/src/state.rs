//! The provider's memory: sessions, grants, codes, refresh and access tokens,
//! device authorizations — and the operations that change more than one of
//! them at once (ending a session, revoking a grant). One mutex guards it;
//! no signature is ever computed while it is held.
//!
//! Why one file of ~550 lines: the records behind that one mutex, read and
//! written together (ending a session touches sessions, grants and tokens).

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use bytes::Bytes;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::claims::NextClaims;
use crate::clock::Clock;
use crate::config::{Alg, ClientConfig, Config, Lifetimes, SecretSource, User};
use crate::faults::Faults;
use crate::keys::{KeySet, sha256};
use crate::log::RequestLog;

pub(crate) type Hash = [u8; 32];

/// A sign-in of one user in one browser or device.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Session {
    pub(crate) sid: String,
    pub(crate) username: String,
    pub(crate) sub: String,
    pub(crate) device_name: String,
    pub(crate) created_at: i64,
    pub(crate) last_seen: i64,
    /// Clients that got tokens in this session.
    pub(crate) clients: BTreeSet<String>,
}

/// An authorization the user (or, for client credentials, the client) gave.
#[derive(Debug, Clone)]
pub(crate) struct Grant {
    pub(crate) client_id: String,
    pub(crate) sid: Option<String>,
    pub(crate) username: Option<String>,
    pub(crate) sub: String,
    pub(crate) scope: Vec<String>,
    pub(crate) audience: Option<String>,
    pub(crate) auth_time: i64,
    /// The authentication context the login satisfied (`acr`), when asked.
    pub(crate) acr: Option<String>,
    pub(crate) revoked: bool,
}

impl Grant {
    pub(crate) fn has_scope(&self, s: &str) -> bool {
        self.scope.iter().any(|x| x == s)
    }
}

/// An authorization request waiting for the user on the login page.
#[derive(Debug, Clone)]
pub(crate) struct PendingAuth {
    pub(crate) client_id: String,
    pub(crate) redirect_uri: String,
    pub(crate) state: Option<String>,
    pub(crate) nonce: Option<String>,
    pub(crate) scope: Vec<String>,
    pub(crate) code_challenge: String,
    pub(crate) prompt_consent: bool,
    pub(crate) login_hint: Option<String>,
    pub(crate) device_name: String,
    pub(crate) audience: Option<String>,
    /// The `acr` chosen from the request's `acr_values`.
    pub(crate) acr: Option<String>,
    pub(crate) created_at: i64,
    /// The DPoP key the code is bound to (`dpop_jkt`, RFC 9449 §10).
    pub(crate) dpop_jkt: Option<String>,
}

/// An authorization request pushed to the PAR endpoint (RFC 9126), kept
/// until its `request_uri` is used once or expires.
#[derive(Debug, Clone)]
pub(crate) struct PushedRequest {
    pub(crate) client_id: String,
    /// The request's parameters, checked when pushed (client authentication
    /// removed; `dpop_jkt` set from the push's DPoP proof).
    pub(crate) params: crate::params::Params,
    pub(crate) expires_at: i64,
}

/// An issued authorization code.
#[derive(Debug, Clone)]
pub(crate) struct CodeGrant {
    pub(crate) auth: PendingAuth,
    pub(crate) sid: String,
    pub(crate) username: String,
    pub(crate) auth_time: i64,
    pub(crate) expires_at: i64,
    /// Set once redeemed, to the grant it became.
    pub(crate) redeemed: Option<u64>,
}

#[derive(Debug, Clone)]
pub(crate) struct RefreshRecord {
    pub(crate) grant: u64,
    pub(crate) expires_at: i64,
    pub(crate) issued_at: i64,
    pub(crate) used: bool,
    /// When it was first used (seconds; meaningful once `used`).
    pub(crate) used_at: i64,
    /// The DPoP key it is bound to (public clients only, RFC 9449 §5).
    pub(crate) jkt: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct AccessRecord {
    pub(crate) grant: u64,
    pub(crate) expires_at: i64,
    pub(crate) revoked: bool,
    /// The DPoP key it is bound to (its `cnf.jkt`).
    pub(crate) jkt: Option<String>,
    /// Claims a test set for userinfo answers to this token ([`NextClaims`]).
    pub(crate) userinfo: Option<Map<String, Value>>,
}

/// How a device authorization ends, when scripted.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum DeviceOutcome {
    /// The user approves as this user.
    Approve {
        /// The username who approves.
        user: String,
    },
    /// The user denies.
    Deny,
    /// The device code expires.
    Expire,
    /// Answer `slow_down` once, then stay pending.
    SlowDown,
}

/// A script for the next device authorization: answer `authorization_pending`
/// to `pending_polls` polls, then end as `then` says.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, Serialize)]
pub struct DeviceScript {
    /// How many polls get `authorization_pending` first.
    #[serde(default)]
    pub pending_polls: u32,
    /// What happens after that.
    #[serde(flatten)]
    pub then: DeviceOutcome,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum DeviceStatus {
    Pending,
    Approved { username: String, sid: String },
    Denied,
    Redeemed,
}

#[derive(Debug, Clone)]
pub(crate) struct DeviceAuth {
    pub(crate) client_id: String,
    pub(crate) scope: Vec<String>,
    pub(crate) audience: Option<String>,
    pub(crate) expires_at: i64,
    pub(crate) interval: i64,
    pub(crate) last_poll_ms: Option<i64>,
    pub(crate) status: DeviceStatus,
    pub(crate) script: Option<DeviceScript>,
    pub(crate) polls: u32,
}

/// A token the provider issued, as the session page shows it: decoded, never raw.
#[derive(Debug, Clone, Serialize)]
pub struct TokenRecord {
    /// `access_token`, `id_token`, `refresh_token` or `logout_token`.
    pub kind: &'static str,
    /// A short SHA-256 fingerprint of the token, not the token.
    pub fingerprint: String,
    /// The JOSE header (JWTs only).
    pub header: Option<Value>,
    /// The claims (JWTs), or what the provider knows of an opaque token.
    pub claims: Value,
    /// When it was issued (provider clock, Unix seconds).
    pub issued_at: i64,
}

/// One back-channel logout delivery attempt.
#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    /// The client it went to.
    pub client_id: String,
    /// The URI it was POSTed to.
    pub uri: String,
    /// The session it ended.
    pub sid: String,
    /// The user.
    pub sub: String,
    /// The HTTP status the client answered, if it answered.
    pub status: Option<u16>,
    /// The transport error, if it did not.
    pub error: Option<String>,
}

#[derive(Debug, Default)]
pub(crate) struct Store {
    pub(crate) sessions: HashMap<String, Session>,
    pub(crate) pending: HashMap<String, PendingAuth>,
    /// Pushed authorization requests by their `request_uri`.
    pub(crate) pushed: HashMap<String, PushedRequest>,
    pub(crate) codes: HashMap<Hash, CodeGrant>,
    pub(crate) grants: HashMap<u64, Grant>,
    pub(crate) next_grant: u64,
    pub(crate) refresh: HashMap<Hash, RefreshRecord>,
    /// Access tokens by the SHA-256 of their exact bytes: a token the
    /// provider issued is recognised without checking its signature again.
    pub(crate) access: HashMap<Hash, AccessRecord>,
    pub(crate) access_inserts: u64,
    pub(crate) devices: HashMap<Hash, DeviceAuth>,
    pub(crate) user_codes: HashMap<String, Hash>,
    pub(crate) device_scripts: VecDeque<DeviceScript>,
    pub(crate) recent_tokens: VecDeque<TokenRecord>,
    pub(crate) deliveries: Vec<Delivery>,
    /// Claims tests set for the next token responses, per client, in order.
    pub(crate) next_claims: HashMap<String, VecDeque<NextClaims>>,
    /// Sign-out confirmation forms shown: token hash → (session id, expiry).
    pub(crate) logout_confirmations: HashMap<Hash, (String, i64)>,
}

/// The most sign-out confirmation forms open at once.
const LOGOUT_CONFIRMATIONS: usize = 4096;

const RECENT_TOKENS: usize = 50;

impl Store {
    pub(crate) fn new_grant(&mut self, grant: Grant) -> u64 {
        self.next_grant += 1;
        let id = self.next_grant;
        self.grants.insert(id, grant);
        id
    }

    /// One use of the claims set for `client_id`'s next token response, if any.
    pub(crate) fn take_next_claims(&mut self, client_id: &str) -> Option<NextClaims> {
        let queue = self.next_claims.get_mut(client_id)?;
        let taken = crate::claims::take_one(queue);
        if queue.is_empty() {
            self.next_claims.remove(client_id);
        }
        taken
    }

    /// Keeps a sign-out confirmation token (by hash) for session `sid`;
    /// expired ones go, and the oldest when too many are open.
    pub(crate) fn remember_logout_confirmation(
        &mut self,
        token_hash: Hash,
        sid: String,
        expires_at: i64,
        now: i64,
    ) {
        let open = &mut self.logout_confirmations;
        open.retain(|_, (_, exp)| *exp > now);
        if open.len() >= LOGOUT_CONFIRMATIONS
            && let Some(oldest) = open
                .iter()
                .min_by_key(|(_, (_, exp))| *exp)
                .map(|(k, _)| *k)
        {
            open.remove(&oldest);
        }
        open.insert(token_hash, (sid, expires_at));
    }

    pub(crate) fn record_token(&mut self, record: TokenRecord) {
        if self.recent_tokens.len() == RECENT_TOKENS {
            self.recent_tokens.pop_front();
        }
        self.recent_tokens.push_back(record);
    }

    pub(crate) fn insert_access(&mut self, token_hash: Hash, record: AccessRecord, now: i64) {
        self.access.insert(token_hash, record);
        self.access_inserts += 1;
        if self.access_inserts.is_multiple_of(4096) {
            self.access.retain(|_, r| r.expires_at > now);
            self.refresh.retain(|_, r| r.expires_at > now);
            self.codes
                .retain(|_, c| c.expires_at > now || c.redeemed.is_some());
        }
    }

    /// Revokes a grant and every refresh token of it. Access tokens of the grant
    /// become inactive too (they are checked against the grant).
    pub(crate) fn revoke_grant(&mut self, id: u64) {
        if let Some(grant) = self.grants.get_mut(&id) {
            grant.revoked = true;
        }
    }

    /// Removes a session and revokes its grants. Returns it, with the
    /// clients that were signed in through it, for back-channel logout.
    pub(crate) fn end_session(&mut self, sid: &str) -> Option<Session> {
        let session = self.sessions.remove(sid)?;
        for grant in self.grants.values_mut() {
            if grant.sid.as_deref() == Some(sid) {
                grant.revoked = true;
            }
        }
        Some(session)
    }
}

/// The clients as the provider runs them: configuration plus resolved secrets.
#[derive(Debug, Clone)]
pub(crate) struct RegisteredClient {
    pub(crate) config: ClientConfig,
    pub(crate) secret: Option<String>,
}

/// What can change while running (through the control API) besides the store.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) users: Vec<User>,
    pub(crate) clients: HashMap<String, RegisteredClient>,
    pub(crate) lifetimes: Lifetimes,
    pub(crate) signing_alg: Alg,
    pub(crate) auto_login: Option<String>,
    pub(crate) rotate_refresh_tokens: bool,
    pub(crate) refresh_token_reuse_grace: u64,
    pub(crate) require_dpop_nonce: bool,
    pub(crate) require_pushed_authorization_requests: bool,
}

impl Settings {
    pub(crate) fn user(&self, username: &str) -> Option<&User> {
        self.users.iter().find(|u| u.username == username)
    }
}

/// Resolves where a secret comes from into its value; `None` for public clients.
pub(crate) fn resolve_secret(source: &SecretSource) -> crate::error::Result<Option<String>> {
    Ok(match source {
        SecretSource::None => None,
        SecretSource::Env(var) => {
            Some(std::env::var(var).unwrap_or_else(|_| crate::keys::random_token(24)))
        }
        SecretSource::File(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|source| crate::error::Error::ConfigRead {
                    path: path.clone(),
                    source,
                })?
                .trim_end()
                .to_owned(),
        ),
        SecretSource::Generated => Some(crate::keys::random_token(24)),
        SecretSource::Value(v) => Some(v.clone()),
    })
}

/// What a provider has from the moment its socket listens, before its keys
/// and client secrets exist: enough to answer (and log) discovery, which
/// needs neither (see `server::Gate`).
#[derive(Debug, Clone)]
pub(crate) struct Listening {
    pub(crate) issuer: String,
    pub(crate) discovery: Bytes,
    pub(crate) clock: Arc<Clock>,
    pub(crate) log: Arc<RequestLog>,
    pub(crate) tasks: tokio_util::task::TaskTracker,
}

impl Listening {
    /// `require_par`: discovery says `require_pushed_authorization_requests`;
    /// `dpop_algs`: its `dpop_signing_alg_values_supported`.
    pub(crate) fn new(issuer: String, require_par: bool, dpop_algs: &[String]) -> Self {
        Self {
            discovery: crate::endpoints::discovery::document(&issuer, require_par, dpop_algs),
            issuer,
            clock: Arc::new(Clock::new()),
            log: Arc::new(RequestLog::default()),
            tasks: tokio_util::task::TaskTracker::new(),
        }
    }
}

/// Everything the handlers share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) issuer: String,
    pub(crate) clock: Arc<Clock>,
    pub(crate) settings: RwLock<Arc<Settings>>,
    pub(crate) keys: RwLock<Arc<KeySet>>,
    pub(crate) store: Mutex<Store>,
    pub(crate) faults: Faults,
    pub(crate) conformance: crate::conformance::Conformance,
    pub(crate) log: Arc<RequestLog>,
    pub(crate) discovery: Bytes,
    pub(crate) cookie_name: String,
    pub(crate) control_secret: Option<String>,
    pub(crate) control_remote: bool,
    pub(crate) http: reqwest::Client,
    pub(crate) max_body_bytes: usize,
    pub(crate) tasks: tokio_util::task::TaskTracker,
    /// The DPoP proofs accepted lately, at every endpoint.
    pub(crate) dpop_replay: crate::dpop::ReplayCache,
    /// The DPoP nonces handed out when nonces are required.
    pub(crate) dpop_nonces: crate::dpop::Nonces,
    /// The algorithms DPoP proofs may be signed with (as discovery says).
    pub(crate) dpop_algs: Vec<String>,
    /// The client assertions (`private_key_jwt`) accepted lately, by `jti`.
    pub(crate) assertion_replay: crate::dpop::ReplayCache,
}

impl Shared {
    /// Resolves the client secrets (generating the ones to generate) and
    /// builds the HTTP client of back-channel logout: a blocking call the
    /// first time in a process, as the random generator seeds itself.
    pub(crate) fn new(
        config: &Config,
        listening: Listening,
        keys: KeySet,
    ) -> crate::error::Result<Self> {
        let Listening {
            issuer,
            discovery,
            clock,
            log,
            tasks,
        } = listening;
        let mut clients = HashMap::new();
        for c in &config.clients {
            clients.insert(
                c.client_id.clone(),
                RegisteredClient {
                    secret: resolve_secret(&c.secret)?,
                    config: c.clone(),
                },
            );
        }
        let settings = Settings {
            users: config.users.clone(),
            clients,
            lifetimes: config.lifetimes,
            signing_alg: config.signing_alg,
            auto_login: config.auto_login.clone(),
            rotate_refresh_tokens: config.rotate_refresh_tokens,
            refresh_token_reuse_grace: config.refresh_token_reuse_grace,
            require_dpop_nonce: config.require_dpop_nonce,
            require_pushed_authorization_requests: config.require_pushed_authorization_requests,
        };
        let cookie_name = format!("mockidp_session_{}", crate::keys::fingerprint(&issuer));
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(5))
            .build()
            .map_err(|e| crate::error::Error::Config(format!("HTTP client: {e}")))?;
        Ok(Self {
            issuer,
            clock,
            settings: RwLock::new(Arc::new(settings)),
            keys: RwLock::new(Arc::new(keys)),
            store: Mutex::new(Store::default()),
            faults: Faults::default(),
            conformance: crate::conformance::Conformance::default(),
            log,
            discovery,
            cookie_name,
            control_secret: resolve_secret(&config.control_secret)?,
            control_remote: config.control_remote,
            http,
            max_body_bytes: config.max_body_bytes,
            tasks,
            dpop_replay: crate::dpop::ReplayCache::new(config.replay_cache_capacity),
            dpop_nonces: crate::dpop::Nonces::default(),
            assertion_replay: crate::dpop::ReplayCache::new(config.replay_cache_capacity),
            dpop_algs: config.dpop_signing_algs.clone(),
        })
    }

    /// What client assertions are checked against now.
    pub(crate) fn assertion_check(&self) -> crate::client_assertion::AssertionCheck<'_> {
        crate::client_assertion::AssertionCheck {
            issuer: &self.issuer,
            token_endpoint: crate::endpoints::proof::request_url(self, "/token"),
            now: self.clock.now(),
            replay: &self.assertion_replay,
        }
    }

    pub(crate) fn store(&self) -> MutexGuard<'_, Store> {
        // A panic while holding the lock leaves plain data behind; keep serving.
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn settings(&self) -> Arc<Settings> {
        self.settings
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn update_settings(&self, f: impl FnOnce(&mut Settings)) {
        let mut guard = self.settings.write().unwrap_or_else(|e| e.into_inner());
        let mut next = (**guard).clone();
        f(&mut next);
        *guard = Arc::new(next);
    }

    pub(crate) fn keys(&self) -> Arc<KeySet> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn set_keys(&self, keys: KeySet) {
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
    }

    /// Ends a session: revokes its grants and sends back-channel logout to
    /// every client that took part in it. Returns whether it existed.
    pub(crate) fn end_session(self: &Arc<Self>, sid: &str) -> bool {
        let ended = self.store().end_session(sid);
        match ended {
            Some(session) => {
                crate::backchannel::send(self, &session);
                true
            }
            None => false,
        }
    }

    /// Ends every session of a user; returns how many there were.
    pub(crate) fn end_user_sessions(self: &Arc<Self>, username: &str) -> usize {
        let sids: Vec<String> = self
            .store()
            .sessions
            .values()
            .filter(|s| s.username == username)
            .map(|s| s.sid.clone())
            .collect();
        sids.iter().filter(|sid| self.end_session(sid)).count()
    }

    pub(crate) fn hash(secret: &str) -> Hash {
        sha256(secret.as_bytes())
    }
}
