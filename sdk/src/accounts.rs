//! The registry of signed-in accounts and the active-account pointer: a small
//! non-secret JSON file in the platform config directory, mode 0600, written
//! atomically. No credential ever goes here — only issuer, client, `sub` and
//! a display name.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, StoreError};
use crate::store::AccountKey;

/// One signed-in account, as the registry lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountInfo {
    /// Where its tokens are stored.
    pub key: AccountKey,
    /// What to call it (`name`, else `preferred_username`, else `email`, else `sub`).
    pub display_name: String,
    /// A short name the user can type (`preferred_username`, else `email`), if the
    /// ID token had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
}

impl AccountInfo {
    /// The name to type for this account: its username, else its `sub`.
    #[must_use]
    pub fn name(&self) -> &str {
        self.username.as_deref().unwrap_or(&self.key.sub)
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    version: u32,
    #[serde(default)]
    active: Option<AccountKey>,
    #[serde(default)]
    accounts: Vec<AccountInfo>,
}

/// The accounts file. Every method reads or writes the file, so two
/// processes of one app see each other's sign-ins.
#[derive(Debug, Clone)]
pub struct AccountRegistry {
    path: PathBuf,
}

impl AccountRegistry {
    /// The registry at `path`.
    pub fn at(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The registry of the app `namespace` in the platform config directory
    /// (`~/.config/NAMESPACE/accounts.json` on Linux).
    pub fn for_namespace(namespace: &str) -> Result<Self> {
        let dir = dirs::config_dir().ok_or_else(|| {
            Error::Config("the platform has no config directory (is HOME set?)".to_owned())
        })?;
        Ok(Self::at(dir.join(namespace).join("accounts.json")))
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read(&self) -> Result<File> {
        match std::fs::read(&self.path) {
            Ok(bytes) => {
                let file: File = serde_json::from_slice(&bytes).map_err(|e| {
                    StoreError::Corrupt(format!("accounts file {}: {e}", self.path.display()))
                })?;
                if file.version != 1 {
                    return Err(StoreError::Corrupt(format!(
                        "accounts file {} has version {}",
                        self.path.display(),
                        file.version
                    ))
                    .into());
                }
                Ok(file)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(File {
                version: 1,
                ..File::default()
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// Reads, changes with `change` and writes the file, holding its lock
    /// (`accounts.json.lock` beside it) throughout: two writers, in one
    /// process or two, never lose each other's update.
    fn update(&self, change: impl FnOnce(&mut File) -> Result<()>) -> Result<()> {
        let dir = self
            .path
            .parent()
            .ok_or_else(|| Error::Config("the accounts file needs a directory".to_owned()))?;
        create_private_dir(dir)?;
        let lock = lock_file(&self.path.with_extension("json.lock"))?;
        crate::filelock::lock_within(&lock, "accounts file's lock", REGISTRY_LOCK_WAIT)?;
        let mut file = self.read()?;
        change(&mut file)?;
        self.write(dir, &file)
    }

    /// Writes `file` through a temporary file of its own (created, never
    /// reused: unique per process, thread and write) renamed into place.
    fn write(&self, dir: &Path, file: &File) -> Result<()> {
        static WRITES: AtomicU64 = AtomicU64::new(0);
        let tmp = dir.join(format!(
            ".{}.{}.{}.tmp",
            self.path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("accounts"),
            std::process::id(),
            WRITES.fetch_add(1, Ordering::Relaxed)
        ));
        let body = serde_json::to_vec_pretty(file).map_err(|e| Error::Config(e.to_string()))?;
        let written = (|| -> Result<()> {
            use std::io::Write as _;
            let mut f = private_file(&tmp)?;
            f.write_all(&body)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
            Ok(())
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written
    }

    /// Every account, in the order they signed in.
    pub fn list(&self) -> Result<Vec<AccountInfo>> {
        Ok(self.read()?.accounts)
    }

    /// The active account, if one is set and still listed.
    pub fn active(&self) -> Result<Option<AccountInfo>> {
        let file = self.read()?;
        Ok(file
            .active
            .and_then(|key| file.accounts.into_iter().find(|a| a.key == key)))
    }

    /// Adds an account or updates its display name; makes it active if `activate`.
    pub fn upsert(&self, info: AccountInfo, activate: bool) -> Result<()> {
        self.update(|file| {
            match file.accounts.iter_mut().find(|a| a.key == info.key) {
                Some(existing) => {
                    existing.display_name.clone_from(&info.display_name);
                    existing.username.clone_from(&info.username);
                }
                None => file.accounts.push(info.clone()),
            }
            if activate {
                file.active = Some(info.key);
            }
            Ok(())
        })
    }

    /// Makes a listed account the active one. Nothing else changes.
    pub fn switch(&self, key: &AccountKey) -> Result<()> {
        self.update(|file| {
            if !file.accounts.iter().any(|a| &a.key == key) {
                return Err(Error::Config(format!("no signed-in account {:?}", key.sub)));
            }
            file.active = Some(key.clone());
            Ok(())
        })
    }

    /// Removes an account; if it was active, no account is active afterwards
    /// (nothing picks "the first account").
    pub fn remove(&self, key: &AccountKey) -> Result<()> {
        self.update(|file| {
            file.accounts.retain(|a| &a.key != key);
            if file.active.as_ref() == Some(key) {
                file.active = None;
            }
            Ok(())
        })
    }
}

/// How long a registry update waits for another writer (updates take
/// milliseconds; past this the holder is taken to be stuck).
const REGISTRY_LOCK_WAIT: Duration = Duration::from_secs(10);

/// A new private file (never an existing one: `create_new`).
#[cfg(unix)]
fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

/// The registry's lock file (kept; it holds nothing).
#[cfg(unix)]
fn lock_file(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn lock_file(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(sub: &str) -> AccountKey {
        AccountKey {
            namespace: "t".into(),
            issuer: "http://127.0.0.1:1".into(),
            client_id: "c".into(),
            sub: sub.into(),
        }
    }

    fn info(sub: &str) -> AccountInfo {
        AccountInfo {
            key: key(sub),
            display_name: sub.to_uppercase(),
            username: None,
        }
    }

    fn registry() -> (AccountRegistry, PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "sk-accounts-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        (
            AccountRegistry::at(dir.join("app").join("accounts.json")),
            dir,
        )
    }

    fn rand_suffix() -> u64 {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        N.fetch_add(1, Ordering::Relaxed)
    }

    #[test]
    fn sign_in_list_switch_remove_and_no_first_account_fallback() {
        let (reg, dir) = registry();
        assert!(reg.list().expect("empty").is_empty());
        assert_eq!(reg.active().expect("none"), None);
        reg.upsert(info("alice"), true).expect("alice");
        reg.upsert(info("bob"), true).expect("bob");
        assert_eq!(
            reg.active().expect("active").map(|a| a.key.sub),
            Some("bob".into())
        );
        reg.switch(&key("alice")).expect("switch");
        assert_eq!(
            reg.active().expect("active").map(|a| a.key.sub),
            Some("alice".into())
        );
        assert!(reg.switch(&key("carol")).is_err());
        reg.remove(&key("alice")).expect("remove");
        assert_eq!(
            reg.active().expect("active"),
            None,
            "no fallback to the first account"
        );
        assert_eq!(reg.list().expect("list").len(), 1);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[cfg(unix)]
    #[test]
    fn the_file_is_private_and_holds_no_credential_fields() {
        use std::os::unix::fs::PermissionsExt as _;
        let (reg, dir) = registry();
        reg.upsert(info("alice"), true).expect("alice");
        let mode = std::fs::metadata(reg.path())
            .expect("meta")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        let text = std::fs::read_to_string(reg.path()).expect("read");
        for word in ["token", "secret", "password"] {
            assert!(!text.contains(word), "{text}");
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_damaged_file_is_corrupt_and_is_left_alone() {
        let (reg, dir) = registry();
        std::fs::create_dir_all(reg.path().parent().expect("dir")).expect("mkdir");
        std::fs::write(reg.path(), b"{not json").expect("write");
        assert!(matches!(
            reg.list(),
            Err(Error::Store(StoreError::Corrupt(_)))
        ));
        assert!(reg.upsert(info("alice"), true).is_err());
        assert_eq!(std::fs::read(reg.path()).expect("read"), b"{not json");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn concurrent_writers_lose_no_update_and_leave_no_temporary_file() {
        let (reg, dir) = registry();
        let writers: Vec<_> = (0..4)
            .map(|w| {
                let reg = reg.clone();
                std::thread::spawn(move || {
                    for i in 0..25 {
                        reg.upsert(info(&format!("user-{w}-{i}")), i % 2 == 0)
                            .expect("upsert");
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().expect("writer");
        }
        assert_eq!(reg.list().expect("list").len(), 100, "every update kept");
        let leftovers: Vec<_> = std::fs::read_dir(reg.path().parent().expect("dir"))
            .expect("dir")
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
