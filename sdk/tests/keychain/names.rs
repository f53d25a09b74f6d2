//! Entry names against the real backends: keys whose fields joined to one
//! name (before the fields were escaped) keep separate entries, an entry an
//! older version stored under its unescaped name is moved on first read when
//! that name can only be this key's, and one whose old name is ambiguous is
//! never read but is gone after logout. `raw` is the same keychain seen
//! through the store crate directly, as an older version wrote it.

use std::sync::Arc;

use keyring_core::CredentialStore;
use sessionkit::{AccountKey, KeychainStore, StoreError, TokenStore};

use super::support::{Cleanup, account, refresh_token, session_entry};

/// The unescaped name versions up to 0.1.0 wrote.
fn legacy(key: &AccountKey, kind: &str) -> String {
    format!("{}|{}|{}|{kind}", key.issuer, key.client_id, key.sub)
}

fn raw_value(raw: &Arc<CredentialStore>, key: &AccountKey, user: &str) -> Option<String> {
    let entry = raw.build(&key.service(), user, None).expect("entry");
    match entry.get_password() {
        Ok(value) => Some(value),
        Err(keyring_core::Error::NoEntry) => None,
        Err(err) => panic!("raw read of {user:?}: {err}"),
    }
}

fn plant(raw: &Arc<CredentialStore>, key: &AccountKey, user: &str, value: &str) {
    raw.build(&key.service(), user, None)
        .expect("entry")
        .set_password(value)
        .expect("raw write");
}

/// Deletes raw entries when dropped (the store's cleanup may not know them).
struct RawCleanup<'a> {
    raw: &'a Arc<CredentialStore>,
    key: AccountKey,
    users: Vec<String>,
}

impl Drop for RawCleanup<'_> {
    fn drop(&mut self) {
        for user in &self.users {
            if let Ok(entry) = self.raw.build(&self.key.service(), user, None) {
                let _ = entry.delete_credential();
            }
        }
    }
}

pub(crate) fn keys_that_shared_a_name_keep_their_own_entries(store: &KeychainStore) {
    let base = account();
    let a = AccountKey {
        client_id: format!("{}|x", base.client_id),
        ..base.clone()
    };
    let b = AccountKey {
        sub: format!("x|{}", base.sub),
        ..base
    };
    assert_eq!(
        legacy(&a, "session"),
        legacy(&b, "session"),
        "the old collision"
    );
    let _cleanup = (
        Cleanup {
            store,
            key: a.clone(),
        },
        Cleanup {
            store,
            key: b.clone(),
        },
    );
    let (session_a, session_b) = (session_entry(), session_entry());
    let (refresh_a, refresh_b) = (refresh_token(), refresh_token());
    store.save_session(&a, &session_a).expect("save a");
    store.save_refresh(&a, &refresh_a).expect("save a");
    store.save_session(&b, &session_b).expect("save b");
    store.save_refresh(&b, &refresh_b).expect("save b");
    assert_eq!(store.load_session(&a), Ok(session_a));
    assert_eq!(store.load_refresh(&a), Ok(refresh_a));
    assert_eq!(store.load_session(&b), Ok(session_b.clone()));
    assert_eq!(store.load_refresh(&b), Ok(refresh_b.clone()));
    store.delete(&a).expect("logout a");
    assert_eq!(store.load_session(&a), Err(StoreError::NotFound));
    assert_eq!(store.load_session(&b), Ok(session_b), "b keeps its tokens");
    assert_eq!(store.load_refresh(&b), Ok(refresh_b));
}

pub(crate) fn a_legacy_entry_is_moved_on_first_read(
    store: &KeychainStore,
    raw: &Arc<CredentialStore>,
) {
    let mut key = account();
    // A `sub` with a `%` (no `|`): its old name can only be this key's.
    key.sub = key.sub.replace('@', "%40");
    let _cleanup = Cleanup {
        store,
        key: key.clone(),
    };
    let _raw_cleanup = RawCleanup {
        raw,
        key: key.clone(),
        users: vec![legacy(&key, "session"), legacy(&key, "refresh")],
    };
    let session = session_entry();
    let refresh = refresh_token();
    plant(raw, &key, &legacy(&key, "session"), &session.to_json());
    plant(raw, &key, &legacy(&key, "refresh"), refresh.secret());

    assert_eq!(store.load_session(&key), Ok(session.clone()));
    assert_eq!(store.load_refresh(&key), Ok(refresh.clone()));
    for (kind, value) in [
        ("session", session.to_json()),
        ("refresh", refresh.secret().to_owned()),
    ] {
        assert_eq!(raw_value(raw, &key, &key.entry_user(kind)), Some(value));
        assert_eq!(
            raw_value(raw, &key, &legacy(&key, kind)),
            None,
            "{kind} moved"
        );
    }
    let rotated = refresh_token();
    store.save_refresh(&key, &rotated).expect("save");
    assert_eq!(store.load_refresh(&key), Ok(rotated));
    store.delete(&key).expect("logout");
    assert_eq!(store.load_session(&key), Err(StoreError::NotFound));
}

pub(crate) fn an_ambiguous_legacy_entry_is_not_read_and_gone_after_logout(
    store: &KeychainStore,
    raw: &Arc<CredentialStore>,
) {
    let mut key = account();
    // Auth0-style: `auth0|…`. The old name is also that of (client `…|auth0`, sub `…`).
    key.sub = format!("auth0|{}", key.sub);
    let _cleanup = Cleanup {
        store,
        key: key.clone(),
    };
    let _raw_cleanup = RawCleanup {
        raw,
        key: key.clone(),
        users: vec![legacy(&key, "refresh")],
    };
    let stale = refresh_token();
    plant(raw, &key, &legacy(&key, "refresh"), stale.secret());
    assert_eq!(store.load_refresh(&key), Err(StoreError::NotFound));
    assert_eq!(
        raw_value(raw, &key, &legacy(&key, "refresh")).as_deref(),
        Some(stale.secret()),
        "not read, not moved, not deleted by a read"
    );
    let fresh = refresh_token();
    store.save_refresh(&key, &fresh).expect("sign in again");
    assert_eq!(store.load_refresh(&key), Ok(fresh));
    store.delete(&key).expect("logout");
    assert_eq!(
        raw_value(raw, &key, &legacy(&key, "refresh")),
        None,
        "no refresh token left after logout"
    );
    assert_eq!(store.load_refresh(&key), Err(StoreError::NotFound));
}
