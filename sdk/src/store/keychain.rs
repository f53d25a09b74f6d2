//! [`KeychainStore`]: tokens in the operating system's keychain, the default
//! [`TokenStore`]. It speaks to the platform through `keyring-core` and one
//! store crate per platform, always through a store object of its own (never
//! `keyring-core`'s process-wide default store), so several stores can live
//! side by side in one process.
//!
//! | platform | backend | protection |
//! | --- | --- | --- |
//! | Linux, desktop | Secret Service (gnome-keyring, KWallet) over the D-Bus session bus | the collection's lock |
//! | Linux, headless | kernel keyutils: the user's persistent keyring | kernel memory, until reboot or the keyring's expiry (3 days unused by default) |
//! | macOS, iOS | the data-protection keychain | session entry `after-first-unlock-this-device-only` (it may hold the DPoP key), refresh entry `when-unlocked-this-device-only` |
//! | Windows | Credential Manager | `Local` persistence: never roams with the profile |
//!
//! Every call blocks (D-Bus round trips, keychain prompts, system calls); the
//! SDK makes them from `spawn_blocking`, and so should apps. Nothing here
//! starts or enters an async runtime.
//!
//! Compiled with the `keychain` feature (on by default), which also brings
//! in the platform store crates; without it the SDK has no D-Bus, keyutils or
//! keychain dependency.
//!
//! Why one file of ~680 lines: the platform stores differ only in how an
//! entry is opened; the error mapping, the move from older entry names and
//! the blocking rules they share live here once, with their unit tests at
//! the end (those of the names in `keychain/names_tests.rs`).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use keyring_core::{CredentialStore, Entry};
use zeroize::{Zeroize as _, Zeroizing};

use super::names::Legacy;
use super::{AccountKey, SessionEntry, TokenStore};
use crate::error::StoreError;
use crate::secret::RefreshToken;

#[cfg(target_os = "linux")]
mod keyutils;
#[cfg(all(test, target_os = "linux"))]
mod names_tests;
#[cfg(target_os = "linux")]
mod secret_service;

/// Which keychain a [`KeychainStore`] talks to.
///
/// Available with the `keychain` feature (on by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeychainBackend {
    /// The freedesktop Secret Service on the D-Bus session bus (gnome-keyring, KWallet).
    SecretService,
    /// The Linux kernel's key retention service (the user's persistent keyring).
    Keyutils,
    /// The Apple data-protection keychain (macOS, iOS).
    Apple,
    /// The Windows Credential Manager.
    Windows,
}

impl KeychainBackend {
    /// A short, stable name for logs and errors: `secret-service`, `keyutils`,
    /// `apple` or `windows`.
    pub fn name(self) -> &'static str {
        match self {
            Self::SecretService => "secret-service",
            Self::Keyutils => "keyutils",
            Self::Apple => "apple",
            Self::Windows => "windows",
        }
    }
}

impl fmt::Display for KeychainBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The two entries of an account, and an app's client key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Session,
    Refresh,
    /// A client's private signing key ([`crate::ClientKey::from_keychain`]).
    ClientKey,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Session => "session",
            Self::Refresh => "refresh",
            Self::ClientKey => "client-key",
        }
    }
}

/// Tokens in the OS keychain: two entries per account, service
/// [`AccountKey::service`], users [`AccountKey::entry_user`]`("session")` (the
/// [`SessionEntry::to_json`] text) and `entry_user("refresh")` (the refresh
/// token alone).
///
/// Entry names escape their fields (see [`AccountKey::entry_user`]); versions
/// up to 0.1.0 joined them unescaped, so keys with a `%` or a `|` in the
/// issuer, client id or `sub` had other names then. Reading such a key's
/// entry that exists only under its old name moves it (writes the new name,
/// then deletes the old) when the old name can only be this key's, that is
/// when no field holds a `|`. An old name with a `|` in a field could have
/// been written for another key: it is never read (that account signs in
/// again), and [`TokenStore::delete`] removes it along with the new one, so
/// logout leaves no token behind.
///
/// Errors keep their meaning: [`StoreError::NotFound`] only when the entry is
/// really absent, [`StoreError::Unavailable`] when the keychain cannot be
/// asked (locked, no service, access denied), [`StoreError::Corrupt`] when an
/// entry exists but does not hold tokens. Nothing is ever deleted because a
/// read failed.
///
/// All methods block; call them from `spawn_blocking` in async code.
///
/// Available with the `keychain` feature (on by default).
#[derive(Clone)]
pub struct KeychainStore {
    backend: KeychainBackend,
    /// Shared by clones; replaced when the Secret Service must be reconnected.
    store: Arc<Mutex<Arc<CredentialStore>>>,
}

impl fmt::Debug for KeychainStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeychainStore")
            .field("backend", &self.backend.name())
            .finish_non_exhaustive()
    }
}

impl KeychainStore {
    /// The platform's keychain.
    ///
    /// - Linux: the Secret Service when the D-Bus session bus offers one that
    ///   answers (within a few seconds) and has a default collection (a login
    ///   keyring; a bus that can merely start gnome-keyring on a server does
    ///   not count); else the kernel keyutils store (the
    ///   process joins a session keyring of its own on a dedicated thread, so
    ///   this works in services, containers and CI without any setup); else
    ///   [`StoreError::Unavailable`] naming what was tried and why it failed.
    ///   A Secret Service that answers but is locked is still chosen: its
    ///   calls then fail with `Unavailable` (the tokens are there, just not
    ///   readable now) rather than silently reading another keychain.
    /// - macOS and iOS: the data-protection keychain.
    /// - Windows: the Credential Manager.
    ///
    /// Blocks while it probes; call it from `spawn_blocking` in async code.
    ///
    /// ```no_run
    /// use sessionkit::{KeychainStore, TokenStore};
    ///
    /// let store = KeychainStore::auto()?;
    /// println!("tokens are kept in {}", store.backend()); // e.g. "secret-service"
    /// assert_eq!(store.name(), store.backend().name());
    /// # Ok::<(), sessionkit::StoreError>(())
    /// ```
    pub fn auto() -> Result<Self, StoreError> {
        Self::auto_impl()
    }

    #[cfg(target_os = "linux")]
    fn auto_impl() -> Result<Self, StoreError> {
        let secret_service_error = match Self::secret_service() {
            Ok(store) => return Ok(store),
            Err(err) => err,
        };
        match Self::keyutils() {
            Ok(store) => {
                tracing::info!(
                    backend = "keyutils",
                    secret_service = %secret_service_error,
                    "no usable Secret Service; keeping tokens in the kernel keyring"
                );
                Ok(store)
            }
            Err(keyutils_error) => Err(StoreError::Unavailable(format!(
                "no keychain: tried the Secret Service ({}) and the kernel keyutils store ({})",
                detail(&secret_service_error),
                detail(&keyutils_error)
            ))),
        }
    }

    #[cfg(any(target_os = "macos", target_os = "ios"))]
    fn auto_impl() -> Result<Self, StoreError> {
        let store: Arc<CredentialStore> = apple_native_keyring_store::protected::Store::new()
            .map_err(|e| map_error(KeychainBackend::Apple, "open", e))?;
        Ok(Self::with_store(KeychainBackend::Apple, store))
    }

    #[cfg(target_os = "windows")]
    fn auto_impl() -> Result<Self, StoreError> {
        let store: Arc<CredentialStore> = windows_native_keyring_store::Store::new()
            .map_err(|e| map_error(KeychainBackend::Windows, "open", e))?;
        Ok(Self::with_store(KeychainBackend::Windows, store))
    }

    #[cfg(not(any(
        target_os = "linux",
        target_os = "macos",
        target_os = "ios",
        target_os = "windows"
    )))]
    fn auto_impl() -> Result<Self, StoreError> {
        Err(StoreError::Unavailable(format!(
            "no keychain support for {}",
            std::env::consts::OS
        )))
    }

    /// The Secret Service on the D-Bus session bus, explicitly (Linux only;
    /// elsewhere [`StoreError::Unavailable`]). Fails with `Unavailable` when
    /// there is no session bus, no Secret Service on it, the service has no
    /// default collection, or it does not answer within a few seconds. Blocks
    /// while it probes.
    pub fn secret_service() -> Result<Self, StoreError> {
        #[cfg(target_os = "linux")]
        {
            let store = secret_service::connect()?;
            Ok(Self::with_store(KeychainBackend::SecretService, store))
        }
        #[cfg(not(target_os = "linux"))]
        {
            Err(StoreError::Unavailable(
                "the Secret Service is only used on Linux".into(),
            ))
        }
    }

    /// The kernel keyutils store, explicitly (Linux only; elsewhere
    /// [`StoreError::Unavailable`]).
    ///
    /// Entries live in the user's persistent keyring, which outlives the
    /// process and the login session but not a reboot, and expires after
    /// `/proc/sys/kernel/keys/persistent_keyring_expiry` seconds (3 days by
    /// default) without use. Keyring calls run on one dedicated thread per
    /// process that has joined a session keyring of its own (a process that
    /// has none, such as a service or a CI job, could not otherwise write);
    /// the threads of the app are left untouched.
    pub fn keyutils() -> Result<Self, StoreError> {
        #[cfg(target_os = "linux")]
        {
            let store = keyutils::open()?;
            Ok(Self::with_store(KeychainBackend::Keyutils, store))
        }
        #[cfg(not(target_os = "linux"))]
        {
            Err(StoreError::Unavailable(
                "the kernel keyutils store exists only on Linux".into(),
            ))
        }
    }

    /// Which keychain this store talks to.
    pub fn backend(&self) -> KeychainBackend {
        self.backend
    }

    #[cfg_attr(
        not(any(
            target_os = "linux",
            target_os = "macos",
            target_os = "ios",
            target_os = "windows"
        )),
        allow(dead_code)
    )]
    fn with_store(backend: KeychainBackend, store: Arc<CredentialStore>) -> Self {
        Self {
            backend,
            store: Arc::new(Mutex::new(store)),
        }
    }

    /// Per-entry options of the platform store.
    fn modifiers(&self, kind: Kind) -> &'static [(&'static str, &'static str)] {
        match (self.backend, kind) {
            // Background refresh must read the session entry while the device
            // is locked; it never leaves the device either: it may hold the
            // DPoP private key the tokens are bound to.
            (KeychainBackend::Apple, Kind::Session) => {
                &[("access-policy", "after-first-unlock-this-device-only")]
            }
            // The refresh token never leaves the device (no backup, no sync).
            (KeychainBackend::Apple, Kind::Refresh | Kind::ClientKey) => {
                &[("access-policy", "when-unlocked-this-device-only")]
            }
            // The default (`Enterprise`) roams with the user's profile.
            (KeychainBackend::Windows, _) => &[("persistence", "Local")],
            _ => &[],
        }
    }

    /// Builds the entry named `user` of `key`'s service and runs `op` on it:
    /// on the keyutils thread for that backend, on the calling thread otherwise.
    fn call<T: Send + 'static>(
        &self,
        service: String,
        user: String,
        kind: Kind,
        what: &'static str,
        op: impl Fn(&Entry) -> keyring_core::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let modifiers = self.modifiers(kind);
        let store = self.current();
        let result = match self.backend {
            #[cfg(target_os = "linux")]
            KeychainBackend::Keyutils => {
                keyutils::run(move || attempt(&store, &service, &user, modifiers, &op))?
            }
            #[cfg(target_os = "linux")]
            KeychainBackend::SecretService => {
                match attempt(&store, &service, &user, modifiers, &op) {
                    // The service restarted (its sessions are gone) or the
                    // connection broke: connect again and retry once. A locked
                    // collection is `NoStorageAccess` and is not retried.
                    Err(keyring_core::Error::PlatformFailure(cause)) => {
                        tracing::debug!(backend = "secret-service", %cause, "reconnecting to the Secret Service");
                        match secret_service::connect() {
                            Ok(fresh) => {
                                *self.store.lock().unwrap_or_else(|e| e.into_inner()) =
                                    Arc::clone(&fresh);
                                attempt(&fresh, &service, &user, modifiers, &op)
                            }
                            Err(_) => Err(keyring_core::Error::PlatformFailure(cause)),
                        }
                    }
                    other => other,
                }
            }
            _ => attempt(&store, &service, &user, modifiers, &op),
        };
        match result {
            Ok(value) => {
                tracing::debug!(
                    backend = self.backend.name(),
                    entry = kind.as_str(),
                    what,
                    "keychain call done"
                );
                Ok(value)
            }
            Err(err) => {
                let err = map_error(self.backend, what, err);
                tracing::debug!(backend = self.backend.name(), entry = kind.as_str(), what, error = %err, "keychain call failed");
                Err(err)
            }
        }
    }

    /// Reads the client key entry `user` of `service` (an app's own entry,
    /// not an account's), as text.
    pub(crate) fn read_client_key(
        &self,
        service: &str,
        user: &str,
    ) -> Result<Zeroizing<String>, StoreError> {
        let bytes = Zeroizing::new(self.call(
            service.to_owned(),
            user.to_owned(),
            Kind::ClientKey,
            "read",
            |entry| entry.get_secret(),
        )?);
        match std::str::from_utf8(&bytes) {
            Ok(text) => Ok(Zeroizing::new(text.to_owned())),
            Err(_) => Err(StoreError::Corrupt(format!(
                "{}: client key entry is not UTF-8 text ({} bytes)",
                self.backend.name(),
                bytes.len()
            ))),
        }
    }

    /// Writes the client key entry `user` of `service`.
    pub(crate) fn write_client_key(
        &self,
        service: &str,
        user: &str,
        value: Zeroizing<String>,
    ) -> Result<(), StoreError> {
        self.call(
            service.to_owned(),
            user.to_owned(),
            Kind::ClientKey,
            "write",
            move |entry| entry.set_password(&value),
        )
    }

    /// Deletes the client key entry `user` of `service`; absent is fine.
    pub(crate) fn delete_client_key(&self, service: &str, user: &str) -> Result<(), StoreError> {
        self.call(
            service.to_owned(),
            user.to_owned(),
            Kind::ClientKey,
            "delete",
            |entry| match entry.delete_credential() {
                Ok(()) | Err(keyring_core::Error::NoEntry) => Ok(()),
                Err(err) => Err(err),
            },
        )
    }

    /// The platform store in use now.
    fn current(&self) -> Arc<CredentialStore> {
        Arc::clone(&self.store.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn write(
        &self,
        key: &AccountKey,
        user: String,
        kind: Kind,
        value: Zeroizing<String>,
    ) -> Result<(), StoreError> {
        let len = value.len();
        tracing::trace!(
            backend = self.backend.name(),
            entry = kind.as_str(),
            len,
            "writing keychain entry"
        );
        self.call(key.service(), user, kind, "write", move |entry| {
            entry.set_password(&value)
        })
    }

    /// Reads the entry named `user` as UTF-8 text; anything else is `Corrupt`.
    fn read_named(
        &self,
        key: &AccountKey,
        user: String,
        kind: Kind,
    ) -> Result<Zeroizing<String>, StoreError> {
        let bytes = Zeroizing::new(self.call(key.service(), user, kind, "read", |entry| {
            entry.get_secret()
        })?);
        match std::str::from_utf8(&bytes) {
            Ok(text) => Ok(Zeroizing::new(text.to_owned())),
            Err(_) => Err(StoreError::Corrupt(format!(
                "{}: {} entry is not UTF-8 text ({} bytes)",
                self.backend.name(),
                kind.as_str(),
                bytes.len()
            ))),
        }
    }

    /// Reads an entry; one that only an older version's name holds (and
    /// that name is this key's alone) is moved to its name now first.
    fn read(&self, key: &AccountKey, kind: Kind) -> Result<Zeroizing<String>, StoreError> {
        let user = key.entry_user(kind.as_str());
        match self.read_named(key, user.clone(), kind) {
            Err(StoreError::NotFound) => match key.legacy_entry_user(kind.as_str()) {
                Legacy::Unambiguous(old) => self.migrate(key, kind, user, old),
                Legacy::Same | Legacy::Ambiguous(_) => Err(StoreError::NotFound),
            },
            other => other,
        }
    }

    /// Moves the entry stored under `old` (a legacy name of `key`'s alone)
    /// to `user`: write the new, then delete the old. Whatever fails, the
    /// value read is returned and nothing is lost: a failed write leaves the
    /// old entry for the next read, a failed delete leaves it for logout.
    fn migrate(
        &self,
        key: &AccountKey,
        kind: Kind,
        user: String,
        old: String,
    ) -> Result<Zeroizing<String>, StoreError> {
        let value = self.read_named(key, old.clone(), kind)?;
        // Another process may have moved it meanwhile, and stored a newer
        // value since (a rotated refresh token): the new name wins.
        match self.read_named(key, user.clone(), kind) {
            Err(StoreError::NotFound) => {}
            other => return other,
        }
        let moved = self
            .write(key, user, kind, value.clone())
            .and_then(|()| self.remove(key, old, kind));
        match moved {
            Ok(()) => tracing::info!(
                backend = self.backend.name(),
                entry = kind.as_str(),
                account = %key.fingerprint(),
                "moved a keychain entry to its escaped name"
            ),
            Err(err) => tracing::warn!(
                backend = self.backend.name(),
                entry = kind.as_str(),
                account = %key.fingerprint(),
                error = %err,
                "could not move a keychain entry to its escaped name; trying again at the next read"
            ),
        }
        Ok(value)
    }

    /// Deletes one entry; absent is fine. When several items match (another
    /// program wrote a look-alike), all of them go: logout means no tokens left.
    fn remove(&self, key: &AccountKey, user: String, kind: Kind) -> Result<(), StoreError> {
        self.call(key.service(), user, kind, "delete", |entry| {
            match entry.delete_credential() {
                Ok(()) | Err(keyring_core::Error::NoEntry) => Ok(()),
                Err(keyring_core::Error::Ambiguous(entries)) => {
                    let mut first_error = None;
                    for entry in entries {
                        match entry.delete_credential() {
                            Ok(()) | Err(keyring_core::Error::NoEntry) => {}
                            Err(err) => {
                                first_error.get_or_insert(err);
                            }
                        }
                    }
                    first_error.map_or(Ok(()), Err)
                }
                Err(err) => Err(err),
            }
        })
    }

    /// Deletes an entry under its name now and under an older version's
    /// name (even an ambiguous one: no key reads those any more); both
    /// deletes run, the first failure is reported.
    fn remove_all(&self, key: &AccountKey, kind: Kind) -> Result<(), StoreError> {
        let now = self.remove(key, key.entry_user(kind.as_str()), kind);
        let legacy = match key.legacy_entry_user(kind.as_str()) {
            Legacy::Same => Ok(()),
            Legacy::Unambiguous(old) | Legacy::Ambiguous(old) => self.remove(key, old, kind),
        };
        now.and(legacy)
    }
}

impl TokenStore for KeychainStore {
    fn save_session(&self, key: &AccountKey, entry: &SessionEntry) -> Result<(), StoreError> {
        let user = key.entry_user(Kind::Session.as_str());
        self.write(key, user, Kind::Session, Zeroizing::new(entry.to_json()))
    }

    fn load_session(&self, key: &AccountKey) -> Result<SessionEntry, StoreError> {
        let text = self.read(key, Kind::Session)?;
        SessionEntry::from_json(&text)
    }

    fn save_refresh(&self, key: &AccountKey, token: &RefreshToken) -> Result<(), StoreError> {
        let user = key.entry_user(Kind::Refresh.as_str());
        self.write(
            key,
            user,
            Kind::Refresh,
            Zeroizing::new(token.secret().to_owned()),
        )
    }

    fn load_refresh(&self, key: &AccountKey) -> Result<RefreshToken, StoreError> {
        let text = self.read(key, Kind::Refresh)?;
        if text.is_empty() {
            return Err(StoreError::Corrupt("refresh entry is empty".into()));
        }
        Ok(RefreshToken::new(text.as_str()))
    }

    fn delete(&self, key: &AccountKey) -> Result<(), StoreError> {
        // Both kinds always run; a failure of one is reported after the other.
        let session = self.remove_all(key, Kind::Session);
        let refresh = self.remove_all(key, Kind::Refresh);
        match (session, refresh) {
            (Ok(()), Ok(())) => Ok(()),
            (Err(err), Ok(())) => Err(prefixed(err, "session entry")),
            (Ok(()), Err(err)) => Err(prefixed(err, "refresh entry")),
            (Err(session), Err(refresh)) => Err(combined(&session, &refresh)),
        }
    }

    fn name(&self) -> &str {
        self.backend.name()
    }
}

/// Builds the entry in `store` and runs `op` on it.
fn attempt<T>(
    store: &Arc<CredentialStore>,
    service: &str,
    user: &str,
    modifiers: &[(&str, &str)],
    op: &impl Fn(&Entry) -> keyring_core::Result<T>,
) -> keyring_core::Result<T> {
    let modifiers: HashMap<&str, &str> = modifiers.iter().copied().collect();
    let entry = store.build(service, user, (!modifiers.is_empty()).then_some(&modifiers))?;
    op(&entry)
}

/// The message of a store error without its category prefix.
fn detail(err: &StoreError) -> String {
    match err {
        StoreError::NotFound => "no entry".into(),
        StoreError::Unavailable(m) | StoreError::Corrupt(m) => m.clone(),
    }
}

/// Both deletes failed: one error that names both, `Unavailable` unless both
/// entries were `Corrupt`.
fn combined(session: &StoreError, refresh: &StoreError) -> StoreError {
    let message = format!(
        "session entry: {}; refresh entry: {}",
        detail(session),
        detail(refresh)
    );
    match (session, refresh) {
        (StoreError::Corrupt(_), StoreError::Corrupt(_)) => StoreError::Corrupt(message),
        _ => StoreError::Unavailable(message),
    }
}

/// The same error, its message prefixed with `context`.
fn prefixed(err: StoreError, context: &str) -> StoreError {
    match err {
        StoreError::Unavailable(m) => StoreError::Unavailable(format!("{context}: {m}")),
        StoreError::Corrupt(m) => StoreError::Corrupt(format!("{context}: {m}")),
        other => other,
    }
}

/// Maps a `keyring-core` error to the store's three meanings. Never puts
/// entry contents in a message (`BadEncoding` and `BadDataFormat` carry them).
fn map_error(backend: KeychainBackend, what: &str, err: keyring_core::Error) -> StoreError {
    use keyring_core::Error as E;
    let backend = backend.name();
    match err {
        E::NoEntry => StoreError::NotFound,
        E::BadEncoding(mut data) => {
            let len = data.len();
            data.zeroize();
            StoreError::Corrupt(format!("{backend}: entry is not UTF-8 text ({len} bytes)"))
        }
        E::BadDataFormat(mut data, cause) => {
            data.zeroize();
            StoreError::Corrupt(format!("{backend}: entry data is malformed: {cause}"))
        }
        E::BadStoreFormat(why) => {
            StoreError::Corrupt(format!("{backend}: store is malformed: {why}"))
        }
        E::Ambiguous(entries) => StoreError::Corrupt(format!(
            "{backend}: {} items match this entry (written by another program?)",
            entries.len()
        )),
        E::NoStorageAccess(cause) => StoreError::Unavailable(format!(
            "{backend}: {what}: no access to the keychain (locked or denied): {cause}"
        )),
        E::PlatformFailure(cause) => {
            StoreError::Unavailable(format!("{backend}: {what} failed: {cause}"))
        }
        E::TooLong(field, limit) => StoreError::Unavailable(format!(
            "{backend}: {what}: {field} is longer than the platform limit of {limit}"
        )),
        E::Invalid(field, why) => {
            StoreError::Unavailable(format!("{backend}: {what}: {field} refused: {why}"))
        }
        other => StoreError::Unavailable(format!("{backend}: {what}: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyring_core::Error as E;

    fn boxed(msg: &str) -> keyring_core::error::PlatformError {
        msg.to_owned().into()
    }

    #[test]
    fn errors_map_to_not_found_unavailable_and_corrupt() {
        let b = KeychainBackend::Keyutils;
        assert_eq!(map_error(b, "read", E::NoEntry), StoreError::NotFound);
        for err in [
            E::NoStorageAccess(boxed("AccessDenied")),
            E::PlatformFailure(boxed("dbus went away")),
            E::NoDefaultStore,
            E::NotSupportedByStore("x".into()),
            E::Invalid("description".into(), "bad".into()),
            E::TooLong("secret".into(), 2560),
        ] {
            assert!(
                matches!(map_error(b, "read", err), StoreError::Unavailable(m) if m.starts_with("keyutils: read")),
            );
        }
        for err in [
            E::BadEncoding(b"secret-bytes\xff".to_vec()),
            E::BadDataFormat(b"secret-bytes".to_vec(), boxed("bad padding")),
            E::BadStoreFormat("x".into()),
            E::Ambiguous(vec![]),
        ] {
            match map_error(b, "read", err) {
                StoreError::Corrupt(m) => assert!(!m.contains("secret-bytes"), "{m}"),
                other => panic!("expected Corrupt, got {other:?}"),
            }
        }
    }

    #[test]
    fn backend_names_are_stable() {
        let names: Vec<_> = [
            KeychainBackend::SecretService,
            KeychainBackend::Keyutils,
            KeychainBackend::Apple,
            KeychainBackend::Windows,
        ]
        .iter()
        .map(|b| b.to_string())
        .collect();
        assert_eq!(names, ["secret-service", "keyutils", "apple", "windows"]);
    }

    #[test]
    fn delete_reports_both_failures() {
        let locked = StoreError::Unavailable("locked".into());
        let twice = StoreError::Corrupt("2 items".into());
        assert_eq!(
            combined(&locked, &twice),
            StoreError::Unavailable("session entry: locked; refresh entry: 2 items".into())
        );
        assert!(matches!(combined(&twice, &twice), StoreError::Corrupt(_)));
        assert_eq!(
            prefixed(locked, "refresh entry"),
            StoreError::Unavailable("refresh entry: locked".into())
        );
    }
}
