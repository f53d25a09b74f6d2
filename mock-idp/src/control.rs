//! [`Control`]: scripting the provider from Rust tests, the same operations
//! the HTTP control API under `/_control/` offers.
//!
//! Why one file of ~560 lines: every method is one control operation, a thin
//! call into the shared state the HTTP control API makes too; the conformance
//! runs' methods sit here beside the others so that the in-process and HTTP
//! APIs stay one list.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::claims::NextClaims;
use crate::config::{ClientConfig, Lifetimes, User};
use crate::conformance::{RpReport, RunResult};
use crate::error::{Error, Result};
use crate::faults::Fault;
use crate::log::LoggedRequest;
use crate::state::{Delivery, DeviceScript, RegisteredClient, Shared, TokenRecord, resolve_secret};

/// A sign-in session as the control API reports it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SessionInfo {
    /// The session id (`sid` claim).
    pub sid: String,
    /// The user's login name.
    pub username: String,
    /// The user's subject identifier.
    pub sub: String,
    /// The device (or browser) it was made on.
    pub device_name: String,
    /// When it began (provider clock, Unix seconds).
    pub created_at: i64,
    /// When a token was last issued in it.
    pub last_seen: i64,
    /// Clients that got tokens in it.
    pub clients: Vec<String>,
}

/// Scripts a running provider: lifetimes, clock, keys, faults, sessions,
/// device-flow outcomes, and what it logged. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Control {
    shared: Arc<Shared>,
}

impl Control {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// The issuer URL.
    pub fn issuer(&self) -> &str {
        &self.shared.issuer
    }

    /// The audience the account sessions API requires in an access token's
    /// `aud`; tokens issued with the [`ACCOUNT_SCOPE`](crate::config::ACCOUNT_SCOPE)
    /// scope carry it (see [`crate::config::account_audience`]).
    pub fn account_audience(&self) -> String {
        crate::config::account_audience(&self.shared.issuer)
    }

    /// The current lifetimes.
    pub fn lifetimes(&self) -> Lifetimes {
        self.shared.settings().lifetimes
    }

    /// Sets all lifetimes; tokens issued from now on use them.
    pub fn set_lifetimes(&self, lifetimes: Lifetimes) {
        self.shared.update_settings(|s| s.lifetimes = lifetimes);
    }

    /// Sets the access token lifetime in seconds.
    pub fn set_access_token_ttl(&self, secs: u64) {
        self.shared
            .update_settings(|s| s.lifetimes.access_token = secs);
    }

    /// Sets the refresh token lifetime in seconds.
    pub fn set_refresh_token_ttl(&self, secs: u64) {
        self.shared
            .update_settings(|s| s.lifetimes.refresh_token = secs);
    }

    /// Signs this user in on every authorization request without a page
    /// (`None` shows the login page again).
    pub fn set_auto_login(&self, user: Option<&str>) -> Result<()> {
        if let Some(u) = user
            && self.shared.settings().user(u).is_none()
        {
            return Err(Error::Config(format!("unknown user {u:?}")));
        }
        self.shared
            .update_settings(|s| s.auto_login = user.map(str::to_owned));
        Ok(())
    }

    /// Turns refresh-token rotation (and so reuse detection) on or off.
    pub fn set_refresh_token_rotation(&self, rotate: bool) {
        self.shared
            .update_settings(|s| s.rotate_refresh_tokens = rotate);
    }

    /// How long a used refresh token is still accepted (zero, the default:
    /// never — a reuse revokes the grant); see
    /// [`crate::Config::refresh_token_reuse_grace`].
    pub fn set_refresh_token_reuse_grace(&self, grace: Duration) {
        self.shared
            .update_settings(|s| s.refresh_token_reuse_grace = grace.as_secs());
    }

    /// Requires (or stops requiring) a server-provided nonce in every DPoP
    /// proof (RFC 9449 §8–9). While required, a proof without the current
    /// nonce is refused with `use_dpop_nonce` — a 400 at the token endpoint,
    /// a 401 with `WWW-Authenticate: DPoP error="use_dpop_nonce"` at userinfo
    /// and the account API — and every answer of those endpoints carries the
    /// current nonce in a `DPoP-Nonce` header. Nonces rotate every five
    /// minutes of the provider's clock; the previous one is still accepted.
    ///
    /// ```
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use sessionkit_mock_idp::MockIdp;
    ///
    /// let idp = MockIdp::start().await?;
    /// idp.control().set_dpop_nonce_required(true);
    /// let answer = reqwest::Client::new()
    ///     .post(idp.url("/token"))
    ///     .form(&[("grant_type", "refresh_token"), ("refresh_token", "x"), ("client_id", "chat-example")])
    ///     .send()
    ///     .await?;
    /// assert_eq!(
    ///     answer.headers()["dpop-nonce"].to_str()?,
    ///     idp.control().dpop_nonce().expect("required, so there is one")
    /// );
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
    /// ```
    pub fn set_dpop_nonce_required(&self, required: bool) {
        self.shared
            .update_settings(|s| s.require_dpop_nonce = required);
    }

    /// Are DPoP nonces required now?
    pub fn dpop_nonce_required(&self) -> bool {
        self.shared.settings().require_dpop_nonce
    }

    /// The DPoP nonce proofs must carry now, while nonces are required.
    pub fn dpop_nonce(&self) -> Option<String> {
        crate::endpoints::proof::current_nonce(&self.shared)
    }

    /// The user named `username`, as the provider knows them now.
    pub fn user(&self, username: &str) -> Option<User> {
        self.shared.settings().user(username).cloned()
    }

    /// Every user, in the order they were added.
    pub fn users(&self) -> Vec<User> {
        self.shared.settings().users.clone()
    }

    /// Adds a user, or replaces the one with the same `username`, without a
    /// restart. Returns whether one was replaced.
    ///
    /// The user can sign in at once (login page, `login_hint`, auto-login,
    /// device flow). What the replaced user's live sessions see:
    /// - same `sub` (the usual case: new claims or a new password): the
    ///   sessions go on; tokens issued from now on — a refresh included —
    ///   carry the new claims, and userinfo answers with them at once, even
    ///   for access tokens issued before. Tokens already issued are not
    ///   changed (they are signed).
    /// - another `sub`: it is another identity, so the user's sessions are
    ///   ended first as by [`revoke_user_sessions`](Self::revoke_user_sessions)
    ///   (grants revoked, back-channel logout sent).
    ///
    /// ```
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use sessionkit_mock_idp::{MockIdp, User};
    ///
    /// let idp = MockIdp::start().await?;
    /// let mut dana = User::simple("dana");
    /// dana.claims.insert("groups".into(), serde_json::json!(["admins"]));
    /// assert!(!idp.control().put_user(dana)?, "a new user");
    /// assert_eq!(idp.control().user("dana").map(|u| u.claims["groups"].clone()),
    ///            Some(serde_json::json!(["admins"])));
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
    /// ```
    ///
    /// # Errors
    /// [`Error::Config`] for an empty username, or a `sub` another user has.
    pub fn put_user(&self, user: User) -> Result<bool> {
        if user.username.is_empty() {
            return Err(Error::Config("a user needs a username".to_owned()));
        }
        let mut outcome = Ok((false, false));
        self.shared.update_settings(|s| {
            if let Some(other) = s
                .users
                .iter()
                .find(|u| u.username != user.username && u.sub() == user.sub())
            {
                outcome = Err(Error::Config(format!(
                    "user {:?} already has the sub {:?}",
                    other.username,
                    user.sub()
                )));
                return;
            }
            match s.users.iter_mut().find(|u| u.username == user.username) {
                Some(existing) => {
                    let new_sub = existing.sub() != user.sub();
                    *existing = user.clone();
                    outcome = Ok((true, new_sub));
                }
                None => s.users.push(user.clone()),
            }
        });
        let (replaced, new_sub) = outcome?;
        if new_sub {
            self.shared.end_user_sessions(&user.username);
        }
        Ok(replaced)
    }

    /// Removes a user without a restart: their sessions end now (grants
    /// revoked, so their access and refresh tokens stop working;
    /// back-channel logout sent), they can no longer sign in, and
    /// auto-login stops if it named them. Returns how many sessions ended.
    ///
    /// # Errors
    /// [`Error::Config`] when there is no such user.
    pub fn remove_user(&self, username: &str) -> Result<usize> {
        let mut found = false;
        self.shared.update_settings(|s| {
            let before = s.users.len();
            s.users.retain(|u| u.username != username);
            found = s.users.len() != before;
            if found && s.auto_login.as_deref() == Some(username) {
                s.auto_login = None;
            }
        });
        if !found {
            return Err(Error::Config(format!("unknown user {username:?}")));
        }
        Ok(self.shared.end_user_sessions(username))
    }

    /// Sets extra claims for the next token response(s) of `client_id`
    /// (see [`NextClaims`]: any claim may be replaced or removed, registered
    /// ones included, to forge tokens a client must refuse). Queued after
    /// what is already set for that client; other clients are not affected.
    ///
    /// ```
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use sessionkit_mock_idp::{MockIdp, NextClaims};
    ///
    /// let idp = MockIdp::start().await?;
    /// // The next ID token of chat-example names another issuer.
    /// idp.control().next_claims(
    ///     "chat-example",
    ///     NextClaims::new().id_token_claim("iss", "https://evil.example"),
    /// )?;
    /// assert_eq!(idp.control().pending_next_claims("chat-example").len(), 1);
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
    /// ```
    ///
    /// # Errors
    /// [`Error::Config`] for an unknown client or `times` = 0.
    pub fn next_claims(&self, client_id: &str, claims: NextClaims) -> Result<()> {
        if !self.shared.settings().clients.contains_key(client_id) {
            return Err(Error::Config(format!("unknown client {client_id:?}")));
        }
        if claims.times == 0 {
            return Err(Error::Config("times must be at least 1".to_owned()));
        }
        self.shared
            .store()
            .next_claims
            .entry(client_id.to_owned())
            .or_default()
            .push_back(claims);
        Ok(())
    }

    /// What is still set for `client_id`'s next token responses, in order
    /// (each with the `times` left).
    pub fn pending_next_claims(&self, client_id: &str) -> Vec<NextClaims> {
        self.shared
            .store()
            .next_claims
            .get(client_id)
            .map(|q| q.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Drops what is set for `client_id`'s next token responses; returns
    /// how many entries there were.
    pub fn clear_next_claims(&self, client_id: &str) -> usize {
        self.shared
            .store()
            .next_claims
            .remove(client_id)
            .map_or(0, |q| q.len())
    }

    /// Ends every session of `username` now: grants revoked, back-channel logout sent.
    /// Returns how many sessions there were.
    pub fn revoke_user_sessions(&self, username: &str) -> usize {
        self.shared.end_user_sessions(username)
    }

    /// Ends one session now. Returns whether it existed.
    pub fn end_session(&self, sid: &str) -> bool {
        self.shared.end_session(sid)
    }

    /// Sends back-channel logout for a session now, without ending it
    /// (to test a receiver). Returns how many logout tokens were sent.
    pub fn send_backchannel_logout(&self, sid: &str) -> usize {
        let session = self.shared.store().sessions.get(sid).cloned();
        session.map_or(0, |s| crate::backchannel::send(&self.shared, &s))
    }

    /// The sessions, oldest first (of one user, or of all with `None`).
    pub fn sessions(&self, username: Option<&str>) -> Vec<SessionInfo> {
        let store = self.shared.store();
        let mut out: Vec<SessionInfo> = store
            .sessions
            .values()
            .filter(|s| username.is_none_or(|u| u == s.username))
            .map(|s| SessionInfo {
                sid: s.sid.clone(),
                username: s.username.clone(),
                sub: s.sub.clone(),
                device_name: s.device_name.clone(),
                created_at: s.created_at,
                last_seen: s.last_seen,
                clients: s.clients.iter().cloned().collect(),
            })
            .collect();
        out.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.sid.cmp(&b.sid)));
        out
    }

    /// Generates new signing keys now; the old ones stay in the JWKS for the
    /// key grace period. Returns the new key ids (RS256, ES256).
    pub async fn rotate_keys(&self) -> Result<(String, String)> {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || {
            let grace = i64::try_from(shared.settings().lifetimes.key_grace).unwrap_or(3600);
            let next = shared.keys().rotated(shared.clock.now(), grace)?;
            let kids = (next.active_rs.kid.clone(), next.active_es.kid.clone());
            shared.set_keys(next);
            Ok(kids)
        })
        .await
        .map_err(|e| Error::Key(e.to_string()))?
    }

    /// Signs `claims` with the provider's current key for `alg`, as a compact
    /// JWS with header `typ`. For tests of clients: a token that is signed
    /// right but says something wrong (a foreign `aud`, an `iat` in the
    /// future) must still be refused by the client's own checks.
    pub fn sign_jwt(
        &self,
        alg: crate::config::Alg,
        typ: &str,
        claims: &serde_json::Value,
    ) -> String {
        self.shared.keys().active(alg).sign_jwt(typ, claims)
    }

    /// The key ids in the JWKS now.
    pub fn published_kids(&self) -> Vec<String> {
        let jwks = self.shared.keys().jwks(self.shared.clock.now());
        jwks["keys"]
            .as_array()
            .map(|keys| {
                keys.iter()
                    .filter_map(|k| k["kid"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The provider's time, Unix seconds.
    pub fn now(&self) -> i64 {
        self.shared.clock.now()
    }

    /// Moves the provider's clock forward.
    pub fn advance_clock(&self, by: Duration) {
        self.shared
            .clock
            .advance_ms(i64::try_from(by.as_millis()).unwrap_or(i64::MAX / 2));
    }

    /// Moves the provider's clock back.
    pub fn rewind_clock(&self, by: Duration) {
        self.shared
            .clock
            .advance_ms(-i64::try_from(by.as_millis()).unwrap_or(i64::MAX / 2));
    }

    /// Stops the provider's clock.
    pub fn freeze_clock(&self) {
        self.shared.clock.freeze();
    }

    /// Lets the provider's clock run again.
    pub fn unfreeze_clock(&self) {
        self.shared.clock.unfreeze();
    }

    /// Adds a scripted fault. Faults are matched in the order they were added.
    pub fn add_fault(&self, fault: Fault) {
        self.shared.faults.add(fault);
    }

    /// Removes every fault.
    pub fn clear_faults(&self) {
        self.shared.faults.clear();
    }

    /// The faults still in force.
    pub fn faults(&self) -> Vec<Fault> {
        self.shared.faults.list()
    }

    /// Scripts the next device authorization.
    pub fn script_device(&self, script: DeviceScript) {
        self.shared.store().device_scripts.push_back(script);
    }

    /// Approves a pending device authorization as `username`.
    pub fn approve_device(&self, user_code: &str, username: &str) -> Result<()> {
        crate::endpoints::device::answer(&self.shared, user_code, Some(username))
            .map(|_| ())
            .map_err(Error::Config)
    }

    /// Denies a pending device authorization.
    pub fn deny_device(&self, user_code: &str) -> Result<()> {
        crate::endpoints::device::answer(&self.shared, user_code, None)
            .map(|_| ())
            .map_err(Error::Config)
    }

    /// The last requests (up to 1,000), oldest first.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.shared.log.entries()
    }

    /// Requests per endpoint (`token`), and per endpoint and note (`token:refresh_token`).
    pub fn counters(&self) -> BTreeMap<String, u64> {
        self.shared.log.counters()
    }

    /// How many requests `key` (as in [`Control::counters`]) has seen.
    pub fn count(&self, key: &str) -> u64 {
        self.counters().get(key).copied().unwrap_or(0)
    }

    /// Clears the request log and the counters.
    pub fn reset_requests(&self) {
        self.shared.log.reset();
    }

    /// Back-channel logout deliveries so far, one per attempt (a delivery
    /// that got no answer or a 5xx is tried again a few times).
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.shared.store().deliveries.clone()
    }

    /// The last tokens issued (up to 50), decoded, newest last.
    pub fn recent_tokens(&self) -> Vec<TokenRecord> {
        self.shared.store().recent_tokens.iter().cloned().collect()
    }

    /// Registers a client (or replaces one with the same id); returns its secret, if any.
    ///
    /// # Errors
    /// [`Error::Config`] when the client breaks a rule of
    /// [`ClientConfig::check`] (a `private_key_jwt` client without keys, …).
    pub fn register_client(&self, client: ClientConfig) -> Result<Option<String>> {
        client.check()?;
        let secret = resolve_secret(&client.secret)?;
        let registered = RegisteredClient {
            config: client,
            secret: secret.clone(),
        };
        self.shared.update_settings(|s| {
            s.clients
                .insert(registered.config.client_id.clone(), registered);
        });
        Ok(secret)
    }

    /// Sets (or clears) where a client's back-channel logout tokens go.
    pub fn set_backchannel_logout_uri(&self, client_id: &str, uri: Option<&str>) -> Result<()> {
        let mut found = false;
        self.shared.update_settings(|s| {
            if let Some(c) = s.clients.get_mut(client_id) {
                c.config.backchannel_logout_uri = uri.map(str::to_owned);
                found = true;
            }
        });
        if found {
            Ok(())
        } else {
            Err(Error::Config(format!("unknown client {client_id:?}")))
        }
    }

    /// The secret of a confidential client.
    pub fn client_secret(&self, client_id: &str) -> Option<String> {
        self.shared
            .settings()
            .clients
            .get(client_id)
            .and_then(|c| c.secret.clone())
    }

    /// Opens a run of the conformance scenario `scenario` for `client_id`
    /// (finishing the client's open run, if any); returns the run's id. See
    /// [`crate::conformance`] for what the provider does and how it judges.
    ///
    /// ```
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use sessionkit_mock_idp::conformance::{RpReport, Verdict};
    /// use sessionkit_mock_idp::MockIdp;
    ///
    /// let idp = MockIdp::start().await?;
    /// idp.control().conformance_start("oidcc-client-test-invalid-iss", "chat-example")?;
    /// // … the RP signs in with client `chat-example` and refuses the ID token …
    /// let result = idp
    ///     .control()
    ///     .conformance_finish("chat-example", Some(RpReport::rejected("iss mismatch")))
    ///     .expect("an open run");
    /// // This RP never signed in, so the provider never showed it the bad token.
    /// assert_eq!(result.verdict, Verdict::Failed);
    /// println!("{}", idp.control().conformance_table());
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
    /// ```
    pub fn conformance_start(&self, scenario: &str, client_id: &str) -> Result<u64> {
        let scenario = crate::conformance::scenario(scenario).ok_or_else(|| {
            Error::Config(format!("no conformance scenario is called {scenario:?}"))
        })?;
        if !self.shared.settings().clients.contains_key(client_id) {
            return Err(Error::Config(format!("unknown client {client_id:?}")));
        }
        let decoy = crate::conformance::twist::decoy_for(scenario);
        Ok(self.shared.conformance.start(scenario, client_id, decoy))
    }

    /// Finishes the open run of `client_id`, with what the RP says it did;
    /// `None` when it has no open run.
    pub fn conformance_finish(
        &self,
        client_id: &str,
        report: Option<RpReport>,
    ) -> Option<RunResult> {
        self.shared.conformance.finish(client_id, report)
    }

    /// Every run so far (up to the last 1,000), oldest first, with its verdict.
    pub fn conformance_results(&self) -> Vec<RunResult> {
        self.shared.conformance.results()
    }

    /// The runs so far as a Markdown table.
    pub fn conformance_table(&self) -> String {
        crate::conformance::markdown_table(&self.conformance_results())
    }
}
