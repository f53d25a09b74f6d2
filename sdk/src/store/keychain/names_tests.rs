//! Escaped entry names and the move from older versions' names, on an
//! in-memory `keyring-core` store standing in for the keychain (the real
//! backends run the same cases in `tests/keychain/names.rs`).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use keyring_core::CredentialStore;

use super::{KeychainBackend, KeychainStore};
use crate::error::StoreError;
use crate::secret::{AccessToken, RefreshToken};
use crate::store::{AccountKey, SessionEntry, TokenStore};

/// The store under test, and the same memory seen raw.
fn stores() -> (KeychainStore, Arc<CredentialStore>) {
    let raw: Arc<CredentialStore> = keyring_core::sample::Store::new().expect("sample store");
    // The Secret Service's path: no modifiers, no keyutils thread.
    let store = KeychainStore::with_store(KeychainBackend::SecretService, Arc::clone(&raw));
    (store, raw)
}

fn key(client_id: &str, sub: &str) -> AccountKey {
    AccountKey {
        namespace: "names-test".into(),
        issuer: "https://id.example".into(),
        client_id: client_id.into(),
        sub: sub.into(),
    }
}

fn entry(access: &str) -> SessionEntry {
    SessionEntry {
        access_token: AccessToken::new(access),
        expires_at: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_900_000_000)),
        obtained_at: None,
        id_token: None,
        scopes: vec!["openid".into()],
        sid: None,
        dpop_key: None,
        dpop_bound: false,
    }
}

/// The raw value under `user` in `key`'s service, or `None`.
fn raw_value(raw: &Arc<CredentialStore>, key: &AccountKey, user: &str) -> Option<String> {
    let entry = raw.build(&key.service(), user, None).expect("entry");
    match entry.get_password() {
        Ok(value) => Some(value),
        Err(keyring_core::Error::NoEntry) => None,
        Err(err) => panic!("raw read: {err}"),
    }
}

fn plant(raw: &Arc<CredentialStore>, key: &AccountKey, user: &str, value: &str) {
    raw.build(&key.service(), user, None)
        .expect("entry")
        .set_password(value)
        .expect("raw write");
}

/// The unescaped name versions up to 0.1.0 wrote.
fn legacy(key: &AccountKey, kind: &str) -> String {
    format!("{}|{}|{}|{kind}", key.issuer, key.client_id, key.sub)
}

#[test]
fn keys_that_shared_a_name_keep_their_own_entries() {
    let (store, _raw) = stores();
    let a = key("app|x", "y");
    let b = key("app", "x|y");
    assert_eq!(
        legacy(&a, "session"),
        legacy(&b, "session"),
        "the old collision"
    );
    store.save_session(&a, &entry("at-a")).expect("save a");
    store.save_session(&b, &entry("at-b")).expect("save b");
    store
        .save_refresh(&a, &RefreshToken::new("rt-a"))
        .expect("save a");
    store
        .save_refresh(&b, &RefreshToken::new("rt-b"))
        .expect("save b");
    assert_eq!(store.load_session(&a), Ok(entry("at-a")));
    assert_eq!(store.load_session(&b), Ok(entry("at-b")));
    assert_eq!(store.load_refresh(&a), Ok(RefreshToken::new("rt-a")));
    assert_eq!(store.load_refresh(&b), Ok(RefreshToken::new("rt-b")));
    store.delete(&a).expect("delete a");
    assert_eq!(store.load_session(&a), Err(StoreError::NotFound));
    assert_eq!(
        store.load_session(&b),
        Ok(entry("at-b")),
        "b keeps its tokens"
    );
}

#[test]
fn a_legacy_entry_of_this_key_alone_is_moved_on_first_read() {
    let (store, raw) = stores();
    let k = key("app", "50%off");
    plant(&raw, &k, &legacy(&k, "session"), &entry("at-old").to_json());
    plant(&raw, &k, &legacy(&k, "refresh"), "rt-old");

    assert_eq!(store.load_session(&k), Ok(entry("at-old")));
    assert_eq!(store.load_refresh(&k), Ok(RefreshToken::new("rt-old")));
    // Moved: under the name now, gone from the old one.
    for (kind, value) in [
        ("session", entry("at-old").to_json()),
        ("refresh", "rt-old".into()),
    ] {
        assert_eq!(raw_value(&raw, &k, &k.entry_user(kind)), Some(value));
        assert_eq!(raw_value(&raw, &k, &legacy(&k, kind)), None, "{kind}");
    }
    // Later reads and writes use the name now.
    store
        .save_refresh(&k, &RefreshToken::new("rt-new"))
        .expect("save");
    assert_eq!(store.load_refresh(&k), Ok(RefreshToken::new("rt-new")));
}

#[test]
fn the_name_now_wins_over_a_legacy_one_and_logout_deletes_both() {
    let (store, raw) = stores();
    let k = key("app", "50%off");
    store
        .save_refresh(&k, &RefreshToken::new("rt-now"))
        .expect("save");
    plant(&raw, &k, &legacy(&k, "refresh"), "rt-stale");
    assert_eq!(store.load_refresh(&k), Ok(RefreshToken::new("rt-now")));
    assert_eq!(
        raw_value(&raw, &k, &legacy(&k, "refresh")).as_deref(),
        Some("rt-stale"),
        "not read, not moved"
    );
    store.delete(&k).expect("logout");
    assert_eq!(raw_value(&raw, &k, &legacy(&k, "refresh")), None);
    assert_eq!(store.load_refresh(&k), Err(StoreError::NotFound));
}

#[test]
fn an_ambiguous_legacy_name_is_never_read_but_is_deleted_at_logout() {
    let (store, raw) = stores();
    // Auth0-style subjects hold a `|`: the old name could be another key's.
    let k = key("app", "auth0|42");
    let other = key("app|auth0", "42");
    assert_eq!(legacy(&k, "refresh"), legacy(&other, "refresh"));
    plant(&raw, &k, &legacy(&k, "refresh"), "rt-whose");
    assert_eq!(store.load_refresh(&k), Err(StoreError::NotFound));
    assert_eq!(store.load_refresh(&other), Err(StoreError::NotFound));
    assert!(
        raw_value(&raw, &k, &legacy(&k, "refresh")).is_some(),
        "kept"
    );
    store.delete(&k).expect("logout");
    assert_eq!(
        raw_value(&raw, &k, &legacy(&k, "refresh")),
        None,
        "no token left behind"
    );
}

#[test]
fn a_legacy_entry_of_another_key_is_not_read_as_this_ones() {
    let (store, raw) = stores();
    // Escaped, `a|b` reads `a%7Cb`: exactly the old name of the key `a%7Cb`.
    let pipe = key("app", "a|b");
    let percent = key("app", "a%7Cb");
    plant(&raw, &percent, &legacy(&percent, "refresh"), "rt-percent");
    assert_eq!(store.load_refresh(&pipe), Err(StoreError::NotFound));
    assert_eq!(
        store.load_refresh(&percent),
        Ok(RefreshToken::new("rt-percent"))
    );
    assert_eq!(store.load_refresh(&pipe), Err(StoreError::NotFound));
}

#[test]
fn a_corrupt_legacy_entry_is_moved_as_it_is_and_reported() {
    let (store, raw) = stores();
    let k = key("app", "50%off");
    plant(&raw, &k, &legacy(&k, "session"), "{not json");
    assert!(matches!(
        store.load_session(&k),
        Err(StoreError::Corrupt(_))
    ));
    // Moved as it was (the move copies text; it does not judge it).
    assert_eq!(
        raw_value(&raw, &k, &k.entry_user("session")).as_deref(),
        Some("{not json")
    );
}
