//! The per-account file lock that keeps two processes of one app from
//! spending the same rotating refresh token: held for the whole refresh,
//! and the store is read again once it is held.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::Result;
use crate::store::AccountKey;

use super::tokens::blocking;

/// The lock file of `key` in `dir` (its name is a fingerprint: no account
/// detail in a file name).
pub(crate) fn path(dir: &Path, key: &AccountKey) -> PathBuf {
    let name = crate::secret::fingerprint(&format!("{}|{}", key.service(), key.entry_user("lock")));
    dir.join(format!("{name}.lock"))
}

/// How long a refresh waits for another process's: a refresh takes a
/// round trip or a few retries; past this the holder is taken to be stuck.
pub(crate) const REFRESH_LOCK_WAIT: Duration = Duration::from_secs(30);

/// Takes the lock of `key` (waits while another process holds it, up to
/// [`REFRESH_LOCK_WAIT`]). Released when the file is dropped.
pub(crate) async fn acquire(dir: &Path, key: &AccountKey) -> Result<std::fs::File> {
    let (dir, file) = (dir.to_owned(), path(dir, key));
    blocking(move || -> Result<std::fs::File> {
        std::fs::create_dir_all(&dir)?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(file)?;
        crate::filelock::lock_within(&file, "account's refresh lock", REFRESH_LOCK_WAIT)?;
        Ok(file)
    })
    .await?
}

/// Removes the lock file of `key` (at logout). A missing file is fine.
pub(crate) fn remove(dir: &Path, key: &AccountKey) -> std::io::Result<()> {
    match std::fs::remove_file(path(dir, key)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
