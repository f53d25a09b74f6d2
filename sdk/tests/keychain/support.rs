//! Helpers for the keychain tests: random accounts, cleanup guards, the
//! "skip here, fail in CI" rule, child processes (this test binary run again
//! with a role); the D-Bus tools used to inspect and lock gnome-keyring are
//! the support crate's (`sessionkit_tests::keychain`).

use std::hash::{BuildHasher as _, RandomState};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use sessionkit::{
    AccessToken, AccountKey, IdToken, KeychainStore, RefreshToken, SessionEntry, StoreError,
    TokenStore,
};

/// Set to `1` (CI does) and a missing keychain fails the tests instead of skipping them.
pub(crate) const REQUIRE_ENV: &str = "SESSIONKIT_REQUIRE_KEYCHAIN";
/// Names the role of a child process (see `child_process` in `keychain.rs`).
pub(crate) const CHILD_ENV: &str = "SESSIONKIT_KEYCHAIN_CHILD";
/// The test harness arguments that run only the `child_process` test.
pub(crate) const CHILD_ARGS: [&str; 5] = [
    "child_process",
    "--exact",
    "--ignored",
    "--nocapture",
    "--test-threads=1",
];

pub(crate) fn required() -> bool {
    std::env::var(REQUIRE_ENV).is_ok_and(|v| v == "1")
}

/// A backend is missing: fail when the keychain is required, else say so and skip.
pub(crate) fn missing(test: &str, what: &str) {
    assert!(
        !required(),
        "{test}: {what}, and {REQUIRE_ENV}=1 says the keychain must be there"
    );
    eprintln!("SKIP {test}: {what} (set {REQUIRE_ENV}=1 to make this a failure)");
}

/// Opens a backend, or skips (returns `None`) / fails per [`missing`].
pub(crate) fn open_or_skip(
    test: &str,
    open: fn() -> Result<KeychainStore, StoreError>,
) -> Option<KeychainStore> {
    match open() {
        Ok(store) => Some(store),
        Err(err) => {
            missing(test, &format!("keychain unavailable: {err}"));
            None
        }
    }
}

pub(crate) fn random_hex() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let seed = (
        SystemTime::now(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
    );
    format!(
        "{:016x}{:016x}",
        RandomState::new().hash_one(seed),
        RandomState::new().hash_one(seed)
    )
}

/// A fresh account in a random namespace, so runs never see each other's entries.
pub(crate) fn account() -> AccountKey {
    let id = random_hex();
    AccountKey {
        namespace: format!("sessionkit-test-{}", &id[..12]),
        issuer: "https://idp.example.test/realms/t".into(),
        client_id: "keychain-tests".into(),
        sub: format!("user-{}@example.test", &id[12..20]),
    }
}

/// An account whose namespace and `sub` came from a parent process.
pub(crate) fn account_from(namespace: &str, sub: &str) -> AccountKey {
    AccountKey {
        namespace: namespace.into(),
        issuer: "https://idp.example.test/realms/t".into(),
        client_id: "keychain-tests".into(),
        sub: sub.into(),
    }
}

/// A session entry with random (recognisable) token values.
pub(crate) fn session_entry() -> SessionEntry {
    let mut entry = SessionEntry::new(AccessToken::new(format!("at-{}", random_hex())));
    entry.expires_at = Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_900_000_000));
    entry.obtained_at = Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_899_996_400));
    entry.id_token = Some(IdToken::new(format!("idt.{}.sig", random_hex())));
    entry.scopes = vec!["openid".into(), "offline_access".into()];
    entry.sid = Some(format!("sid-{}", &random_hex()[..8]));
    // A DPoP key too: the private key lives in the entry (the keychain).
    entry.dpop_key = Some(sessionkit::DpopKey::generate().expect("key"));
    entry.dpop_bound = true;
    entry
}

pub(crate) fn refresh_token() -> RefreshToken {
    RefreshToken::new(format!("rt-{}", random_hex()))
}

/// Deletes the account's entries when dropped, even when the test panics.
pub(crate) struct Cleanup<'a> {
    pub(crate) store: &'a KeychainStore,
    pub(crate) key: AccountKey,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        if let Err(err) = self.store.delete(&self.key) {
            eprintln!("cleanup of {:?} failed: {err}", self.key.namespace);
        }
    }
}

/// Runs this test binary again, running only [`CHILD_TEST`] with `role`.
pub(crate) fn child(role: &str, envs: &[(&str, &str)]) -> Command {
    let exe = std::env::current_exe().expect("test binary path");
    let mut cmd = Command::new(exe);
    cmd.args(CHILD_ARGS)
        .env(CHILD_ENV, role)
        .stdin(Stdio::null());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd
}

/// Runs a child to its end; panics with its output unless it succeeded.
pub(crate) fn run_child(role: &str, envs: &[(&str, &str)]) -> String {
    let out = child(role, envs).output().expect("start child");
    let stdout = check(&format!("child {role}"), &out);
    let count = stdout.matches("1 passed").count();
    assert_eq!(count, 1, "child {role} did not run its test:\n{stdout}");
    stdout
}

/// The stdout of a finished process; panics with all its output unless it succeeded.
pub(crate) fn check(what: &str, out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{what} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    stdout
}

/// The value of the line `KEY=value` that a child printed.
pub(crate) fn reported(stdout: &str, key: &str) -> String {
    // libtest prints `test child_process ... ` on the line the child's output starts.
    let prefix = format!("{key}=");
    stdout
        .lines()
        .find_map(|line| {
            let at = line.find(&prefix)?;
            (at == 0 || line[..at].ends_with(' ')).then(|| &line[at + prefix.len()..])
        })
        .unwrap_or_else(|| panic!("no {key}= line in:\n{stdout}"))
        .trim()
        .to_owned()
}

/// Whether `program` can be run (found on `PATH`).
pub(crate) fn have(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// A scratch directory removed on drop.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("sessionkit-{tag}-{}", random_hex()));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        Self(dir)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(crate) use sessionkit_tests::keychain::{
    collection_locked, default_collection, lock_collection, wait_for_secret_service, wait_until,
};

/// How many items (locked or not) carry these attributes (see
/// [`sessionkit_tests::keychain::count_items`]).
pub(crate) fn count_items(service: &str, username: &str) -> usize {
    sessionkit_tests::keychain::count_items(&[("service", service), ("username", username)])
}
