//! Where tokens live between runs. [`TokenStore`] is the seam: the OS
//! keychain (`KeychainStore`, with the `keychain` feature) is the default,
//! [`MemoryStore`] keeps nothing across processes, and an app can bring its own.
//!
//! Each account has two entries, kept apart so a platform can protect them
//! differently: the *session* entry (access token, expiry, ID token, scopes,
//! `sid`) and the *refresh* entry (the refresh token alone). Codes, verifiers,
//! nonces and `state` are never stored.

#[cfg(feature = "keychain")]
mod keychain;
mod memory;
mod names;

#[cfg(feature = "keychain")]
pub use keychain::{KeychainBackend, KeychainStore};
pub use memory::MemoryStore;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::dpop::DpopKey;
use crate::error::StoreError;
use crate::secret::{AccessToken, IdToken, RefreshToken};

/// Names one account's entries: the app's namespace, the issuer, the client
/// and the account (the issuer's `sub`). Two apps or two issuers never collide.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AccountKey {
    /// The app's name (tests use a random one).
    pub namespace: String,
    /// The issuer URL, exactly as discovered.
    pub issuer: String,
    /// The OAuth client id.
    pub client_id: String,
    /// The account: the ID token's `sub`.
    pub sub: String,
}

impl AccountKey {
    /// The keychain "service" of this account's entries.
    pub fn service(&self) -> String {
        format!("{}.sessionkit", self.namespace)
    }

    /// The keychain "user" of one entry (`kind` is `session` or `refresh`):
    /// the issuer, the client id, the `sub` and `kind`, each with `%` and
    /// `|` escaped (`%25`, `%7C`), joined with `|`; when escaping changed a
    /// field, a last field `%` marks the name as escaped. Two keys never
    /// share a name, and the name decodes back to the fields. Fields without
    /// `%` or `|` give the name versions up to 0.1.0 used; entries those
    /// versions stored under other names are moved on first read where the
    /// old name can only be this key's (see the keychain store).
    ///
    /// ```
    /// use sessionkit::AccountKey;
    ///
    /// let mut key = AccountKey {
    ///     namespace: "chat".into(),
    ///     issuer: "https://id.example".into(),
    ///     client_id: "chat-app".into(),
    ///     sub: "alice".into(),
    /// };
    /// assert_eq!(key.entry_user("session"), "https://id.example|chat-app|alice|session");
    /// key.sub = "auth0|42".into();
    /// assert_eq!(key.entry_user("session"), "https://id.example|chat-app|auth0%7C42|session|%");
    /// ```
    pub fn entry_user(&self, kind: &str) -> String {
        names::entry_user([&self.issuer, &self.client_id, &self.sub, kind])
    }

    /// What versions up to 0.1.0 named the entry of `kind`.
    #[cfg_attr(not(feature = "keychain"), allow(dead_code))]
    pub(crate) fn legacy_entry_user(&self, kind: &str) -> names::Legacy {
        names::legacy_entry_user([&self.issuer, &self.client_id, &self.sub, kind])
    }

    /// A short, stable name for this account in logs and metrics: the
    /// first 12 hex digits of a SHA-256 over the whole key (no personal
    /// data, nothing secret).
    pub fn fingerprint(&self) -> String {
        crate::secret::fingerprint(&format!("{}|{}", self.service(), self.entry_user("")))
    }
}

/// The session entry of an account: everything but the refresh token.
///
/// The SDK writes and reads these through [`TokenStore`]; a store of the
/// app's own keeps them as it likes ([`SessionEntry::to_json`] and
/// [`SessionEntry::from_json`] give a string form). The struct is
/// `#[non_exhaustive]`: fields are added as the SDK learns to keep more,
/// so code outside the crate builds one with [`SessionEntry::new`] and sets
/// the public fields it knows, and keeps compiling when fields are added.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use sessionkit::{AccessToken, SessionEntry};
///
/// let now = SystemTime::now();
/// let mut entry = SessionEntry::new(AccessToken::new("an access token"));
/// entry.obtained_at = Some(now);
/// entry.expires_at = Some(now + Duration::from_secs(300));
/// entry.scopes = vec!["openid".into(), "offline_access".into()];
/// assert_eq!(SessionEntry::from_json(&entry.to_json()).unwrap().scopes, entry.scopes);
/// assert!(!format!("{entry:?}").contains("an access token"));
/// ```
///
/// A struct literal, even one naming every field there is today, does not
/// compile outside the crate:
///
/// ```compile_fail
/// # use sessionkit::{AccessToken, SessionEntry};
/// let entry = SessionEntry {
///     access_token: AccessToken::new("at"),
///     expires_at: None,
///     obtained_at: None,
///     id_token: None,
///     scopes: Vec::new(),
///     sid: None,
///     dpop_key: None,
///     dpop_bound: false,
/// };
/// ```
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionEntry {
    /// The access token.
    pub access_token: AccessToken,
    /// When the access token expires (computed from `expires_in` when it arrived).
    pub expires_at: Option<SystemTime>,
    /// When the access token arrived, so that every process of the app
    /// computes the same refresh time (`None` in entries of older versions).
    pub obtained_at: Option<SystemTime>,
    /// The latest ID token.
    pub id_token: Option<IdToken>,
    /// The scopes granted.
    pub scopes: Vec<String>,
    /// The provider's session id (`sid`), for logout and device lists.
    pub sid: Option<String>,
    /// The DPoP key the provider knows the tokens by (its private key is
    /// stored with the entry, so the entry is as secret as the tokens are).
    pub dpop_key: Option<DpopKey>,
    /// The access token is bound to that key (`token_type: DPoP`).
    pub dpop_bound: bool,
}

impl std::fmt::Debug for SessionEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionEntry")
            .field("access_token", &self.access_token)
            .field("expires_at", &self.expires_at)
            .field("obtained_at", &self.obtained_at)
            .field("id_token", &self.id_token.as_ref().map(|_| "[redacted]"))
            .field("scopes", &self.scopes)
            .field("sid", &self.sid)
            .field("dpop_key", &self.dpop_key)
            .field("dpop_bound", &self.dpop_bound)
            .finish()
    }
}

#[derive(Serialize, Deserialize)]
struct SessionWire {
    v: u32,
    access_token: String,
    expires_at: Option<u64>,
    /// Unix milliseconds; absent in entries written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    obtained_at_ms: Option<u64>,
    id_token: Option<String>,
    scopes: Vec<String>,
    sid: Option<String>,
    /// base64url PKCS#8 of the DPoP private key; absent for bearer tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dpop_key: Option<String>,
    /// The access token is bound to the key; absent: bound when there is a key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dpop_bound: Option<bool>,
}

impl SessionEntry {
    /// An entry holding `access_token` and nothing else: no expiry or
    /// arrival time, no ID token, no scopes, no `sid`, no DPoP key (a
    /// bearer token). Set the other fields after.
    ///
    /// ```
    /// let entry = sessionkit::SessionEntry::new(sessionkit::AccessToken::new("at"));
    /// assert_eq!(entry.expires_at, None);
    /// assert!(entry.dpop_key.is_none() && !entry.dpop_bound);
    /// ```
    #[must_use]
    pub fn new(access_token: AccessToken) -> Self {
        Self {
            access_token,
            expires_at: None,
            obtained_at: None,
            id_token: None,
            scopes: Vec::new(),
            sid: None,
            dpop_key: None,
            dpop_bound: false,
        }
    }

    /// Serializes the entry for a store that keeps strings.
    pub fn to_json(&self) -> String {
        let wire = SessionWire {
            v: 1,
            access_token: self.access_token.secret().to_owned(),
            expires_at: self
                .expires_at
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(|d| d.as_secs()),
            obtained_at_ms: self
                .obtained_at
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .and_then(|d| u64::try_from(d.as_millis()).ok()),
            id_token: self.id_token.as_ref().map(|t| t.secret().to_owned()),
            scopes: self.scopes.clone(),
            sid: self.sid.clone(),
            dpop_key: self.dpop_key.as_ref().map(|k| k.to_stored().to_string()),
            dpop_bound: self.dpop_key.as_ref().map(|_| self.dpop_bound),
        };
        // Serializing plain strings and numbers cannot fail.
        serde_json::to_string(&wire).unwrap_or_default()
    }

    /// Parses what [`SessionEntry::to_json`] wrote; anything else is [`StoreError::Corrupt`].
    pub fn from_json(text: &str) -> Result<Self, StoreError> {
        // serde's message can quote the offending value, which may be a token:
        // report only what kind of error it was and where.
        let wire: SessionWire = serde_json::from_str(text).map_err(|e| {
            StoreError::Corrupt(format!(
                "session entry: {:?} error at line {} column {}",
                e.classify(),
                e.line(),
                e.column()
            ))
        })?;
        if wire.v != 1 {
            return Err(StoreError::Corrupt(format!(
                "session entry version {}",
                wire.v
            )));
        }
        let dpop_key = match wire.dpop_key.as_deref() {
            Some(text) => Some(
                DpopKey::from_stored(text)
                    .map_err(|_| StoreError::Corrupt("session entry: the DPoP key".to_owned()))?,
            ),
            None => None,
        };
        Ok(Self {
            access_token: AccessToken::new(wire.access_token),
            expires_at: wire.expires_at.map(|s| UNIX_EPOCH + Duration::from_secs(s)),
            obtained_at: wire
                .obtained_at_ms
                .and_then(|ms| UNIX_EPOCH.checked_add(Duration::from_millis(ms))),
            id_token: wire.id_token.map(IdToken::new),
            scopes: wire.scopes,
            sid: wire.sid,
            dpop_bound: wire.dpop_bound.unwrap_or(dpop_key.is_some()) && dpop_key.is_some(),
            dpop_key,
        })
    }
}

/// Keeps tokens per account. Methods may block (a keychain call does): the
/// SDK calls them off the async runtime, in `spawn_blocking`.
///
/// Rules every implementation keeps: [`StoreError::NotFound`] only when the
/// entry is really absent; [`StoreError::Unavailable`] when the store cannot be
/// asked; never delete anything because a read failed.
pub trait TokenStore: Send + Sync + std::fmt::Debug + 'static {
    /// Writes (or replaces) the session entry.
    fn save_session(&self, key: &AccountKey, entry: &SessionEntry) -> Result<(), StoreError>;
    /// Reads the session entry.
    fn load_session(&self, key: &AccountKey) -> Result<SessionEntry, StoreError>;
    /// Writes (or replaces) the refresh token.
    fn save_refresh(&self, key: &AccountKey, token: &RefreshToken) -> Result<(), StoreError>;
    /// Reads the refresh token.
    fn load_refresh(&self, key: &AccountKey) -> Result<RefreshToken, StoreError>;
    /// Deletes both entries of the account. Absent entries are not an error.
    fn delete(&self, key: &AccountKey) -> Result<(), StoreError>;
    /// A short name for logs and errors (`keyutils`, `secret-service`, `memory`).
    fn name(&self) -> &str;
}
