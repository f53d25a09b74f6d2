//! Helpers the SDK's integration tests share: scratch directories, a test
//! that plays the browser for the loopback login, and a store that can be
//! locked.

#![allow(dead_code, unreachable_pub)]

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use sessionkit::{
    AccountKey, LoopbackOptions, MemoryStore, RefreshToken, SessionEntry, StoreError, TokenStore,
};

/// A fresh directory path under the temp dir, unique in this process.
pub fn scratch(prefix: &str) -> std::path::PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    std::env::temp_dir().join(format!(
        "sk-{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Plays the browser: follows the authorization URL (and the provider's
/// redirect) to the loopback listener.
pub fn play_browser() -> LoopbackOptions {
    LoopbackOptions::with_callback(|url| {
        let url = url.to_owned();
        tokio::spawn(async move {
            let _ = reqwest::get(url).await;
        });
    })
}

/// A store that can be locked: every call then fails with Unavailable, as
/// a locked keychain does. Counts delete calls.
#[derive(Debug, Default)]
pub struct Lockable {
    pub inner: MemoryStore,
    pub locked: AtomicBool,
    pub deletes: AtomicUsize,
}

impl Lockable {
    fn check(&self) -> Result<(), StoreError> {
        if self.locked.load(Ordering::SeqCst) {
            Err(StoreError::Unavailable("the keychain is locked".into()))
        } else {
            Ok(())
        }
    }
}

impl TokenStore for Lockable {
    fn save_session(&self, k: &AccountKey, e: &SessionEntry) -> Result<(), StoreError> {
        self.check()?;
        self.inner.save_session(k, e)
    }
    fn load_session(&self, k: &AccountKey) -> Result<SessionEntry, StoreError> {
        self.check()?;
        self.inner.load_session(k)
    }
    fn save_refresh(&self, k: &AccountKey, t: &RefreshToken) -> Result<(), StoreError> {
        self.check()?;
        self.inner.save_refresh(k, t)
    }
    fn load_refresh(&self, k: &AccountKey) -> Result<RefreshToken, StoreError> {
        self.check()?;
        self.inner.load_refresh(k)
    }
    fn delete(&self, k: &AccountKey) -> Result<(), StoreError> {
        self.deletes.fetch_add(1, Ordering::SeqCst);
        self.check()?;
        self.inner.delete(k)
    }
    fn name(&self) -> &str {
        "lockable"
    }
}
