//! [`MemoryStore`]: tokens in this process's memory only. For tests, and for
//! apps that want no persistence (a restart means a new login).

use std::collections::HashMap;
use std::sync::Mutex;

use super::{AccountKey, SessionEntry, TokenStore};
use crate::error::StoreError;
use crate::secret::RefreshToken;

/// Keeps tokens in memory; nothing survives the process.
#[derive(Debug, Default)]
pub struct MemoryStore {
    sessions: Mutex<HashMap<AccountKey, SessionEntry>>,
    refresh: Mutex<HashMap<AccountKey, RefreshToken>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many accounts have any entry (tests check logout with it).
    pub fn len(&self) -> usize {
        let sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let refresh = self.refresh.lock().unwrap_or_else(|e| e.into_inner());
        let mut keys: Vec<_> = sessions.keys().chain(refresh.keys()).collect();
        keys.sort();
        keys.dedup();
        keys.len()
    }

    /// Whether the store holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl TokenStore for MemoryStore {
    fn save_session(&self, key: &AccountKey, entry: &SessionEntry) -> Result<(), StoreError> {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.clone(), entry.clone());
        Ok(())
    }

    fn load_session(&self, key: &AccountKey) -> Result<SessionEntry, StoreError> {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
            .ok_or(StoreError::NotFound)
    }

    fn save_refresh(&self, key: &AccountKey, token: &RefreshToken) -> Result<(), StoreError> {
        self.refresh
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.clone(), token.clone());
        Ok(())
    }

    fn load_refresh(&self, key: &AccountKey) -> Result<RefreshToken, StoreError> {
        self.refresh
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
            .ok_or(StoreError::NotFound)
    }

    fn delete(&self, key: &AccountKey) -> Result<(), StoreError> {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
        self.refresh
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
        Ok(())
    }

    fn name(&self) -> &str {
        "memory"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::AccessToken;

    fn key() -> AccountKey {
        AccountKey {
            namespace: "t".into(),
            issuer: "http://127.0.0.1:1".into(),
            client_id: "c".into(),
            sub: "alice".into(),
        }
    }

    #[test]
    fn round_trip_and_not_found_and_delete() {
        let store = MemoryStore::new();
        assert_eq!(store.load_session(&key()), Err(StoreError::NotFound));
        let entry = SessionEntry {
            access_token: AccessToken::new("at"),
            expires_at: None,
            obtained_at: None,
            id_token: None,
            scopes: vec!["openid".into()],
            sid: Some("s".into()),
            dpop_key: None,
            dpop_bound: false,
        };
        store.save_session(&key(), &entry).expect("save");
        store
            .save_refresh(&key(), &RefreshToken::new("rt"))
            .expect("save");
        assert_eq!(store.load_session(&key()), Ok(entry.clone()));
        assert_eq!(
            store.load_refresh(&key()).map(|t| t.secret().to_owned()),
            Ok("rt".into())
        );
        assert_eq!(store.len(), 1);
        store.delete(&key()).expect("delete");
        assert!(store.is_empty());
        store.delete(&key()).expect("absent is fine");
    }

    #[test]
    fn a_corrupt_entry_error_never_quotes_the_value() {
        let text = r#"{"v":1,"access_token":"tok-secret-123","expires_at":"tok-secret-456","id_token":null,"scopes":[],"sid":null}"#;
        match SessionEntry::from_json(text) {
            Err(StoreError::Corrupt(m)) => assert!(!m.contains("tok-secret"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn session_json_round_trips_and_garbage_is_corrupt() {
        let entry = SessionEntry {
            access_token: AccessToken::new("at"),
            expires_at: Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000)),
            obtained_at: Some(
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_699_999_000),
            ),
            id_token: Some(crate::secret::IdToken::new("a.b.c")),
            scopes: vec!["openid".into(), "offline_access".into()],
            sid: None,
            dpop_key: None,
            dpop_bound: false,
        };
        assert_eq!(SessionEntry::from_json(&entry.to_json()), Ok(entry));
        assert!(matches!(
            SessionEntry::from_json("{not json"),
            Err(StoreError::Corrupt(_))
        ));
        assert!(matches!(
            SessionEntry::from_json(
                r#"{"v":9,"access_token":"x","expires_at":null,"id_token":null,"scopes":[],"sid":null}"#
            ),
            Err(StoreError::Corrupt(_))
        ));
        assert!(
            !format!(
                "{:?}",
                SessionEntry::from_json(
                    &SessionEntry {
                        access_token: AccessToken::new("very-secret"),
                        expires_at: None,
                        obtained_at: None,
                        id_token: Some(crate::secret::IdToken::new("id-secret")),
                        scopes: vec![],
                        sid: None,
                        dpop_key: None,
                        dpop_bound: false,
                    }
                    .to_json()
                )
            )
            .contains("secret")
        );
    }
}
