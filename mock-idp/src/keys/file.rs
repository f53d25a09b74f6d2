//! The development key cache on disk: the provider's signing keys as
//! PKCS#8 in a JSON file of mode 0600, loaded when usable and otherwise
//! replaced through a private temporary file and a rename (processes
//! starting at the same moment read either the old file or a whole new one).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::{KeySet, SigningKey, b64};
use crate::config::Alg;
use crate::error::Result;

/// The key file's contents: each private key as base64 PKCS#8.
#[derive(serde::Serialize, serde::Deserialize)]
struct KeyFile {
    #[serde(rename = "RS256")]
    rs256: String,
    #[serde(rename = "ES256")]
    es256: String,
}

/// Where a provider's first keys came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyOrigin {
    /// Read from the key file.
    Loaded,
    /// Generated and written to the key file, which did not exist.
    Created,
    /// Generated and written over a key file that could not be used (why).
    Replaced(String),
    /// Generated, but the key file could not be written (why): the next
    /// start generates again.
    NotSaved(String),
}

/// The development key cache: `sessionkit-mock-idp/signing-keys.json` in the
/// user's cache directory (`$XDG_CACHE_HOME`, else `~/.cache`, on Linux), or
/// `None` when there is no cache directory.
pub(crate) fn default_keys_file() -> Option<PathBuf> {
    dirs::cache_dir().map(|d| d.join("sessionkit-mock-idp").join("signing-keys.json"))
}

/// Logs where a provider's first keys came from.
pub(crate) fn log_origin(path: &Path, origin: &KeyOrigin) {
    let path = path.display();
    match origin {
        KeyOrigin::Loaded => tracing::debug!(%path, "signing keys loaded from the key file"),
        KeyOrigin::Created => tracing::info!(
            %path,
            "signing keys generated and saved for the next start (development keys: \
             whoever reads this file can sign tokens this provider's clients accept)"
        ),
        KeyOrigin::Replaced(why) => tracing::warn!(
            %path,
            %why,
            "the key file could not be used: new signing keys were generated and saved over it"
        ),
        KeyOrigin::NotSaved(why) => tracing::warn!(
            %path,
            %why,
            "signing keys generated, but they could not be saved: the next start generates again"
        ),
    }
}

/// Why a key file gave no keys: it does not exist, or it cannot be used.
enum Unusable {
    Missing,
    Bad(String),
}

#[cfg(unix)]
fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

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

/// Why keys in a file that others can read are not used: they may have leaked.
#[cfg(unix)]
fn readable_by_others(file: &std::fs::File) -> Option<String> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = file.metadata().ok()?.permissions().mode();
    (mode & 0o077 != 0).then(|| {
        format!(
            "mode {:o} lets others read the private keys, so they are not used",
            mode & 0o777
        )
    })
}

#[cfg(not(unix))]
fn readable_by_others(_file: &std::fs::File) -> Option<String> {
    None
}

impl KeySet {
    /// The keys in the file at `path`; or, when it is missing or cannot be
    /// used (unreadable, not a key file, readable by others), new keys
    /// written there (mode 0600, its directory created 0700) through a
    /// private temporary file and a rename, so that a provider starting at
    /// the same moment reads either the old file or a complete new one.
    /// Fails only when keys cannot be generated: a file that cannot be
    /// written is reported in the [`KeyOrigin`].
    pub(crate) fn load_or_create(path: &Path) -> Result<(Self, KeyOrigin)> {
        let replaced = match Self::load(path) {
            Ok(keys) => return Ok((keys, KeyOrigin::Loaded)),
            Err(Unusable::Missing) => None,
            Err(Unusable::Bad(why)) => Some(why),
        };
        let keys = Self::generate()?;
        let origin = match keys.save(path) {
            Ok(()) => replaced.map_or(KeyOrigin::Created, KeyOrigin::Replaced),
            Err(why) => KeyOrigin::NotSaved(match replaced {
                Some(bad) => format!("{bad}; and {why}"),
                None => why,
            }),
        };
        Ok((keys, origin))
    }

    fn load(path: &Path) -> std::result::Result<Self, Unusable> {
        let mut file = match std::fs::File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Unusable::Missing),
            Err(e) => return Err(Unusable::Bad(format!("cannot open it: {e}"))),
        };
        if let Some(why) = readable_by_others(&file) {
            return Err(Unusable::Bad(why));
        }
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut file, &mut bytes)
            .map_err(|e| Unusable::Bad(format!("cannot read it: {e}")))?;
        let bad = |e: &dyn std::fmt::Display| Unusable::Bad(format!("not a key file: {e}"));
        let file: KeyFile = serde_json::from_slice(&bytes).map_err(|e| bad(&e))?;
        let key = |alg, text: &str| {
            let der = URL_SAFE_NO_PAD.decode(text).map_err(|e| bad(&e))?;
            SigningKey::from_pkcs8(alg, &der).map_err(|e| bad(&e))
        };
        Ok(Self::with_active(
            Arc::new(key(Alg::RS256, &file.rs256)?),
            Arc::new(key(Alg::ES256, &file.es256)?),
        ))
    }

    /// Writes the active keys to `path` (see [`KeySet::load_or_create`]).
    fn save(&self, path: &Path) -> std::result::Result<(), String> {
        /// Tells apart the temporary files of one process's threads.
        static NEXT_TMP: AtomicU64 = AtomicU64::new(0);
        let file = KeyFile {
            rs256: b64(&self.active_rs.to_pkcs8().map_err(|e| e.to_string())?),
            es256: b64(&self.active_es.to_pkcs8().map_err(|e| e.to_string())?),
        };
        let json = serde_json::to_vec_pretty(&file).map_err(|e| e.to_string())?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            private_dir(dir).map_err(|e| format!("cannot create its directory: {e}"))?;
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        // Unique per process and thread, and created new (never an old file
        // reused with another mode), in the same directory for the rename.
        let (tmp, mut out) = loop {
            let tmp = path.with_file_name(format!(
                ".{name}.{}.{}.tmp",
                std::process::id(),
                NEXT_TMP.fetch_add(1, Ordering::Relaxed)
            ));
            match private_file(&tmp) {
                Ok(out) => break (tmp, out),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(format!("cannot create {}: {e}", tmp.display())),
            }
        };
        let written = out
            .write_all(&json)
            .and_then(|()| out.sync_all())
            .map_err(|e| format!("cannot write {}: {e}", tmp.display()))
            .and_then(|()| {
                std::fs::rename(&tmp, path).map_err(|e| format!("cannot rename into place: {e}"))
            });
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::random_token;
    use serde_json::json;

    /// A new empty directory under the system's temporary directory.
    fn scratch_dir(what: &str) -> PathBuf {
        std::env::temp_dir().join(format!(
            "mock-idp-{what}-{}-{}",
            std::process::id(),
            random_token(6)
        ))
    }

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::metadata(path).expect("meta").permissions().mode() & 0o777
    }

    fn kids(keys: &KeySet) -> [String; 2] {
        [keys.active_rs.kid.clone(), keys.active_es.kid.clone()]
    }

    #[test]
    fn a_key_file_is_created_private_then_loaded_with_the_same_keys() {
        let dir = scratch_dir("keys");
        let path = dir.join("nested").join("keys.json");
        let (created, origin) = KeySet::load_or_create(&path).expect("create");
        assert_eq!(origin, KeyOrigin::Created);
        let (loaded, origin) = KeySet::load_or_create(&path).expect("load");
        assert_eq!(origin, KeyOrigin::Loaded);
        for alg in [Alg::RS256, Alg::ES256] {
            assert_eq!(loaded.active(alg).kid, created.active(alg).kid);
            // A token signed by the loaded key verifies with the created one.
            let token = loaded.active(alg).sign_jwt("JWT", &json!({"sub": "alice"}));
            assert!(created.verify(&token, 0).is_some());
        }
        #[cfg(unix)]
        {
            assert_eq!(mode(&path), 0o600);
            assert_eq!(mode(path.parent().expect("dir")), 0o700);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_corrupt_or_world_readable_key_file_is_replaced_by_new_private_keys() {
        let dir = scratch_dir("bad-keys");
        let path = dir.join("keys.json");
        let (first, _) = KeySet::load_or_create(&path).expect("create");
        let mut bad_contents: Vec<&[u8]> =
            vec![b"", b"not keys", br#"{"RS256":"AAAA","ES256":"AAAA"}"#];
        // Cut off in the middle, as a file half-written by an older version would be.
        let whole = std::fs::read(&path).expect("read");
        bad_contents.push(&whole[..whole.len() / 2]);
        let mut previous = kids(&first);
        for bad in bad_contents {
            let _ = std::fs::remove_file(&path);
            std::fs::write(&path, bad).expect("write");
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt as _;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                    .expect("chmod");
            }
            let (keys, origin) = KeySet::load_or_create(&path).expect("regenerated");
            assert!(
                matches!(&origin, KeyOrigin::Replaced(why) if why.contains("not a key file")),
                "{origin:?}"
            );
            let (again, origin) = KeySet::load_or_create(&path).expect("load");
            assert_eq!(origin, KeyOrigin::Loaded, "the replacement is a key file");
            assert_eq!(kids(&again), kids(&keys));
            assert_ne!(kids(&keys), previous);
            previous = kids(&keys);
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            // Keys others could read may have leaked: they are not used.
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
            let (keys, origin) = KeySet::load_or_create(&path).expect("regenerated");
            assert!(
                matches!(&origin, KeyOrigin::Replaced(why) if why.contains("644")),
                "{origin:?}"
            );
            assert_ne!(kids(&keys), previous);
            assert_eq!(mode(&path), 0o600, "the replacement is private");
        }
        let left: Vec<_> = std::fs::read_dir(&dir)
            .expect("dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(left, ["keys.json"], "no temporary file is left behind");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn providers_creating_one_key_file_at_the_same_moment_all_get_working_keys() {
        let dir = scratch_dir("racing-keys");
        let path = dir.join("keys.json");
        let barrier = std::sync::Barrier::new(4);
        let results: Vec<(KeySet, KeyOrigin)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        KeySet::load_or_create(&path).expect("keys")
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("thread"))
                .collect()
        });
        for (keys, origin) in &results {
            assert!(
                matches!(origin, KeyOrigin::Created | KeyOrigin::Loaded),
                "{origin:?}"
            );
            let token = keys.active(Alg::RS256).sign_jwt("JWT", &json!({}));
            assert!(keys.verify(&token, 0).is_some());
        }
        // The file is whole: one of the racers' keys, loaded as they were written.
        let (on_disk, origin) = KeySet::load_or_create(&path).expect("load");
        assert_eq!(origin, KeyOrigin::Loaded);
        assert!(results.iter().any(|(k, _)| kids(k) == kids(&on_disk)));
        #[cfg(unix)]
        assert_eq!(mode(&path), 0o600);
        let left = std::fs::read_dir(&dir).expect("dir").count();
        assert_eq!(left, 1, "no temporary file is left behind");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
