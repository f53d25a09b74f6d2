//! [`FileStore`]: a [`TokenStore`] for tests that share tokens between
//! processes the way the keychain does, without needing one: one file per
//! entry in a scratch directory, written atomically (a temporary file per
//! process, then a rename). Tokens in plain files are for tests only; an app
//! never keeps them so.

use std::path::{Path, PathBuf};

use sessionkit::{AccountKey, RefreshToken, SessionEntry, StoreError, TokenStore};

/// Tokens in files under a directory, readable by every process given it.
///
/// ```no_run
/// use std::sync::Arc;
/// use sessionkit_tests::file_store::FileStore;
///
/// let dir = std::env::temp_dir().join("my-test");
/// std::fs::create_dir_all(&dir).expect("scratch directory");
/// let store: Arc<dyn sessionkit::TokenStore> = Arc::new(FileStore::new(&dir));
/// # let _ = store;
/// ```
#[derive(Debug)]
pub struct FileStore(PathBuf);

impl FileStore {
    /// A store in `dir` (which must exist).
    pub fn new(dir: &Path) -> Self {
        Self(dir.to_owned())
    }

    fn path(&self, key: &AccountKey, kind: &str) -> PathBuf {
        self.0
            .join(format!("{}-{kind}", fnv1a(&key.entry_user(kind))))
    }

    fn write(&self, path: &Path, text: &str) -> Result<(), StoreError> {
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, text).map_err(|e| StoreError::Unavailable(e.to_string()))?;
        std::fs::rename(&tmp, path).map_err(|e| StoreError::Unavailable(e.to_string()))
    }

    fn read(&self, path: &Path) -> Result<String, StoreError> {
        match std::fs::read_to_string(path) {
            Ok(t) => Ok(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(StoreError::NotFound),
            Err(e) => Err(StoreError::Unavailable(e.to_string())),
        }
    }
}

/// A file name from an entry's name (FNV-1a, 64 bits).
fn fnv1a(s: &str) -> String {
    s.bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        })
        .to_string()
}

impl TokenStore for FileStore {
    fn save_session(&self, k: &AccountKey, e: &SessionEntry) -> Result<(), StoreError> {
        self.write(&self.path(k, "session"), &e.to_json())
    }
    fn load_session(&self, k: &AccountKey) -> Result<SessionEntry, StoreError> {
        SessionEntry::from_json(&self.read(&self.path(k, "session"))?)
    }
    fn save_refresh(&self, k: &AccountKey, t: &RefreshToken) -> Result<(), StoreError> {
        self.write(&self.path(k, "refresh"), t.secret())
    }
    fn load_refresh(&self, k: &AccountKey) -> Result<RefreshToken, StoreError> {
        self.read(&self.path(k, "refresh")).map(RefreshToken::new)
    }
    fn delete(&self, k: &AccountKey) -> Result<(), StoreError> {
        let _ = std::fs::remove_file(self.path(k, "session"));
        let _ = std::fs::remove_file(self.path(k, "refresh"));
        Ok(())
    }
    fn name(&self) -> &str {
        "file"
    }
}
