//! The keychain store against the real Linux backends: the kernel keyutils
//! store and gnome-keyring's Secret Service.
//!
//! Tests that need a backend print a `SKIP` line when it is missing, or fail
//! when `SESSIONKIT_REQUIRE_KEYCHAIN=1` (CI runs them inside a private D-Bus
//! session with an unlocked gnome-keyring; see `.ci/run`). Several tests run
//! this binary again as a child process (the ignored `child_process` test with
//! a role in `SESSIONKIT_KEYCHAIN_CHILD`): to prove that tokens written by one
//! process are read by another, to change the environment (no D-Bus, a global
//! tracing subscriber) without touching this process, and to lock a keyring
//! in a private D-Bus session of its own. Every test uses a random namespace
//! and deletes what it wrote.
//!
//! (Over 500 lines: one file for the real keychains, every store behaviour
//! checked on each backend; the helpers live in `keychain/support.rs`.)

#![cfg(target_os = "linux")]

#[path = "keychain/names.rs"]
mod names;
#[path = "keychain/support.rs"]
mod support;

use std::collections::HashMap;
use std::process::Command;
use std::sync::{Arc, Mutex};

use keyring_core::api::CredentialStoreApi as _;
use sessionkit::{ClientKey, KeychainBackend, KeychainStore, RefreshToken, StoreError, TokenStore};
use support::*;

// ---------------------------------------------------------------- both backends

/// `ClientKey::from_keychain_in`: the first call makes and stores a key,
/// later ones find the same key; after a delete a new one is made.
fn client_key_made_once_then_found(store: &KeychainStore) {
    let service = format!("sessionkit-test-{}", &random_hex()[..12]);
    struct Delete<'a>(&'a KeychainStore, &'a str);
    impl Drop for Delete<'_> {
        fn drop(&mut self) {
            let _ = ClientKey::delete_from_keychain(self.0, self.1, "client-key");
        }
    }
    let _cleanup = Delete(store, &service);
    let made = ClientKey::from_keychain_in(store, &service, "client-key").expect("made");
    let found = ClientKey::from_keychain_in(store, &service, "client-key").expect("found");
    assert_eq!(found.thumbprint(), made.thumbprint());
    assert_eq!(found.public_jwk(), made.public_jwk());
    let other = ClientKey::from_keychain_in(store, &service, "another-key").expect("made");
    assert_ne!(other.thumbprint(), made.thumbprint(), "one key per name");
    ClientKey::delete_from_keychain(store, &service, "another-key").expect("delete");
    ClientKey::delete_from_keychain(store, &service, "client-key").expect("delete");
    ClientKey::delete_from_keychain(store, &service, "client-key").expect("absent is fine");
    let fresh = ClientKey::from_keychain_in(store, &service, "client-key").expect("made again");
    assert_ne!(
        fresh.thumbprint(),
        made.thumbprint(),
        "a new key after the delete"
    );
}

#[test]
fn keyutils_client_key() {
    if let Some(store) = open_or_skip("keyutils_client_key", KeychainStore::keyutils) {
        client_key_made_once_then_found(&store);
    }
}

#[test]
fn secret_service_client_key() {
    if let Some(store) = open_or_skip("secret_service_client_key", KeychainStore::secret_service) {
        client_key_made_once_then_found(&store);
    }
}

/// Save, load and delete both entries of an account; each entry on its own.
fn round_trip(store: &KeychainStore) {
    let key = account();
    let _cleanup = Cleanup {
        store,
        key: key.clone(),
    };
    let session = session_entry();
    let refresh = refresh_token();

    store.save_session(&key, &session).expect("save session");
    // Only the session entry exists so far.
    assert_eq!(store.load_refresh(&key), Err(StoreError::NotFound));
    store.save_refresh(&key, &refresh).expect("save refresh");
    assert_eq!(store.load_session(&key), Ok(session.clone()));
    assert_eq!(store.load_refresh(&key), Ok(refresh.clone()));

    // Replacing one entry leaves the other alone.
    let rotated = refresh_token();
    store.save_refresh(&key, &rotated).expect("rotate refresh");
    assert_eq!(store.load_refresh(&key), Ok(rotated));
    assert_eq!(store.load_session(&key), Ok(session));

    // Another account of the same app sees nothing.
    let mut other = key.clone();
    other.sub.push_str("-other");
    assert_eq!(store.load_session(&other), Err(StoreError::NotFound));

    store.delete(&key).expect("delete");
    assert_eq!(store.load_session(&key), Err(StoreError::NotFound));
    assert_eq!(store.load_refresh(&key), Err(StoreError::NotFound));
    store
        .delete(&key)
        .expect("deleting an absent account is fine");
}

fn missing_account_is_not_found(store: &KeychainStore) {
    let key = account();
    assert_eq!(store.load_session(&key), Err(StoreError::NotFound));
    assert_eq!(store.load_refresh(&key), Err(StoreError::NotFound));
    store.delete(&key).expect("nothing to delete is fine");
}

/// Only one of the two entries exists: delete removes it and is happy.
fn delete_with_one_entry_absent(store: &KeychainStore) {
    let key = account();
    let _cleanup = Cleanup {
        store,
        key: key.clone(),
    };
    store
        .save_refresh(&key, &refresh_token())
        .expect("save refresh");
    store.delete(&key).expect("delete");
    assert_eq!(store.load_refresh(&key), Err(StoreError::NotFound));
}

/// Calls from tokio's blocking pool, several at once, and a store opened there.
fn from_spawn_blocking(open: fn() -> Result<KeychainStore, StoreError>) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let store = tokio::task::spawn_blocking(open)
            .await
            .expect("open did not panic")
            .expect("open");
        let store = Arc::new(store);
        // Blocking inside async code is a misuse, but it must not panic either
        // (the zbus store's tokio flavour does: "Cannot start a runtime from
        // within a runtime"; only the async-io flavour may be compiled in).
        assert_eq!(store.load_session(&account()), Err(StoreError::NotFound));
        let mut tasks = Vec::new();
        for _ in 0..6 {
            let store = Arc::clone(&store);
            tasks.push(tokio::task::spawn_blocking(move || {
                let key = account();
                let _cleanup = Cleanup {
                    store: &store,
                    key: key.clone(),
                };
                let session = session_entry();
                let refresh = refresh_token();
                store.save_session(&key, &session)?;
                store.save_refresh(&key, &refresh)?;
                assert_eq!(store.load_session(&key)?, session);
                assert_eq!(store.load_refresh(&key)?, refresh);
                store.delete(&key)?;
                assert_eq!(store.load_session(&key), Err(StoreError::NotFound));
                Ok::<_, StoreError>(())
            }));
        }
        for task in tasks {
            task.await
                .expect("no panic on a blocking thread")
                .expect("store calls");
        }
    });
}

/// Writes in one process, reads in a second and deletes in a third: the
/// tokens travel through the keychain only (the parent sees fingerprints).
fn across_processes(test: &str, backend: &str) {
    let key = account();
    let envs = [
        ("SK_BACKEND", backend),
        ("SK_NAMESPACE", key.namespace.as_str()),
        ("SK_SUB", key.sub.as_str()),
    ];
    let written = run_child("write", &envs);
    let read = run_child("read", &envs);
    for fp in ["ACCESS_FP", "ID_FP", "REFRESH_FP", "SID"] {
        assert_eq!(reported(&written, fp), reported(&read, fp), "{test}: {fp}");
    }
    run_child("delete", &envs);
    let after = run_child("read", &envs);
    assert_eq!(reported(&after, "SESSION"), "not-found", "{test}");
    assert_eq!(reported(&after, "REFRESH"), "not-found", "{test}");
}

// ---------------------------------------------------------------- keyutils

#[test]
fn keyutils_round_trip() {
    if let Some(store) = open_or_skip("keyutils_round_trip", KeychainStore::keyutils) {
        assert_eq!(store.backend(), KeychainBackend::Keyutils);
        assert_eq!(store.name(), "keyutils");
        round_trip(&store);
    }
}

#[test]
fn keyutils_missing_account_is_not_found() {
    if let Some(store) = open_or_skip("keyutils_missing", KeychainStore::keyutils) {
        missing_account_is_not_found(&store);
        delete_with_one_entry_absent(&store);
    }
}

/// Garbage written straight into the kernel keyring (same descriptions as
/// the store uses) is `Corrupt`, and reading it deletes nothing.
#[test]
fn keyutils_garbage_is_corrupt_and_kept() {
    let Some(store) = open_or_skip("keyutils_garbage", KeychainStore::keyutils) else {
        return;
    };
    let key = account();
    let _cleanup = Cleanup {
        store: &store,
        key: key.clone(),
    };
    // This test thread writes too, so it needs a session keyring of its own.
    linux_keyutils::KeyRing::from_special_id(linux_keyutils::KeyRingIdentifier::Session, true)
        .expect("join a session keyring");
    let raw = linux_keyutils_keyring_store::Store::new_with_configuration(&HashMap::from([(
        "service_no_divider",
        "true",
    )]))
    .expect("raw store");
    let session = raw
        .build(&key.service(), &key.entry_user("session"), None)
        .expect("entry");
    let refresh = raw
        .build(&key.service(), &key.entry_user("refresh"), None)
        .expect("entry");

    session.set_password("{not json").expect("write garbage");
    refresh
        .set_secret(&[0xff, 0xfe, 0x00])
        .expect("write garbage");
    assert!(matches!(
        store.load_session(&key),
        Err(StoreError::Corrupt(_))
    ));
    assert!(matches!(
        store.load_refresh(&key),
        Err(StoreError::Corrupt(_))
    ));

    session.set_secret(&[0xc3, 0x28]).expect("write bad UTF-8");
    match store.load_session(&key) {
        Err(StoreError::Corrupt(m)) => assert!(m.contains("UTF-8"), "{m}"),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    // The garbage is still there: nothing is deleted because a read failed.
    assert_eq!(session.get_secret().expect("still there"), [0xc3, 0x28]);
    assert_eq!(
        refresh.get_secret().expect("still there"),
        [0xff, 0xfe, 0x00]
    );

    store.delete(&key).expect("delete removes garbage too");
    assert!(matches!(
        session.get_secret(),
        Err(keyring_core::Error::NoEntry)
    ));
}

/// Escaped names, and entries of older versions moved or left (see `names`).
#[test]
fn keyutils_entry_names_and_the_move_from_old_names() {
    let Some(store) = open_or_skip("keyutils_entry_names", KeychainStore::keyutils) else {
        return;
    };
    // This test thread writes the old entries, so it needs a session keyring of its own.
    linux_keyutils::KeyRing::from_special_id(linux_keyutils::KeyRingIdentifier::Session, true)
        .expect("join a session keyring");
    let raw: Arc<keyring_core::CredentialStore> =
        linux_keyutils_keyring_store::Store::new_with_configuration(&HashMap::from([(
            "service_no_divider",
            "true",
        )]))
        .expect("raw store");
    names::keys_that_shared_a_name_keep_their_own_entries(&store);
    names::a_legacy_entry_is_moved_on_first_read(&store, &raw);
    names::an_ambiguous_legacy_entry_is_not_read_and_gone_after_logout(&store, &raw);
}

#[test]
fn keyutils_from_spawn_blocking() {
    if open_or_skip("keyutils_spawn_blocking", KeychainStore::keyutils).is_some() {
        from_spawn_blocking(KeychainStore::keyutils);
    }
}

/// The keyutils trap: a process without a session keyring of its own. Each
/// child is a new process; the tokens outlive the writer through the user's
/// persistent keyring.
#[test]
fn keyutils_survives_across_processes() {
    if open_or_skip("keyutils_across_processes", KeychainStore::keyutils).is_some() {
        across_processes("keyutils_across_processes", "keyutils");
    }
}

// ---------------------------------------------------------------- Secret Service

#[test]
fn secret_service_round_trip() {
    if let Some(store) = open_or_skip("secret_service_round_trip", KeychainStore::secret_service) {
        assert_eq!(store.backend(), KeychainBackend::SecretService);
        assert_eq!(store.name(), "secret-service");
        round_trip(&store);
    }
}

#[test]
fn secret_service_missing_account_is_not_found() {
    if let Some(store) = open_or_skip("secret_service_missing", KeychainStore::secret_service) {
        missing_account_is_not_found(&store);
        delete_with_one_entry_absent(&store);
    }
}

/// Two items, one per entry, as `secret-tool` sees them.
#[test]
fn secret_service_entries_are_separate_items() {
    let test = "secret_service_separate_items";
    let Some(store) = open_or_skip(test, KeychainStore::secret_service) else {
        return;
    };
    if !have("secret-tool") {
        return missing(
            test,
            "secret-tool is not installed (package libsecret-tools)",
        );
    }
    let key = account();
    let _cleanup = Cleanup {
        store: &store,
        key: key.clone(),
    };
    let session = session_entry();
    let refresh = refresh_token();
    store.save_session(&key, &session).expect("save");
    store.save_refresh(&key, &refresh).expect("save");

    let lookup = |kind: &str| {
        let out = Command::new("secret-tool")
            .args([
                "lookup",
                "service",
                &key.service(),
                "username",
                &key.entry_user(kind),
            ])
            .output()
            .expect("run secret-tool");
        check("secret-tool lookup", &out)
    };
    assert_eq!(lookup("session"), session.to_json());
    assert_eq!(lookup("refresh"), refresh.secret());

    let out = Command::new("secret-tool")
        .args(["search", "--all", "service", &key.service()])
        .output()
        .expect("run secret-tool");
    let listing = format!(
        "{}{}",
        check("secret-tool search", &out),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        listing.matches("attribute.service = ").count(),
        2,
        "{listing}"
    );
    for kind in ["session", "refresh"] {
        let line = format!("attribute.username = {}", key.entry_user(kind));
        assert!(listing.contains(&line), "no {kind} item in:\n{listing}");
    }
}

/// Escaped names, and entries of older versions moved or left (see `names`).
#[test]
fn secret_service_entry_names_and_the_move_from_old_names() {
    let Some(store) = open_or_skip("secret_service_entry_names", KeychainStore::secret_service)
    else {
        return;
    };
    let raw: Arc<keyring_core::CredentialStore> =
        zbus_secret_service_keyring_store::Store::new().expect("raw store");
    names::keys_that_shared_a_name_keep_their_own_entries(&store);
    names::a_legacy_entry_is_moved_on_first_read(&store, &raw);
    names::an_ambiguous_legacy_entry_is_not_read_and_gone_after_logout(&store, &raw);
}

/// Garbage written by another client is `Corrupt`, and stays.
#[test]
fn secret_service_garbage_is_corrupt_and_kept() {
    let Some(store) = open_or_skip("secret_service_garbage", KeychainStore::secret_service) else {
        return;
    };
    let key = account();
    let _cleanup = Cleanup {
        store: &store,
        key: key.clone(),
    };
    let raw = zbus_secret_service_keyring_store::Store::new().expect("raw store");
    let session = raw
        .build(&key.service(), &key.entry_user("session"), None)
        .expect("entry");
    let refresh = raw
        .build(&key.service(), &key.entry_user("refresh"), None)
        .expect("entry");
    session
        .set_password(r#"{"v":1,"access_token":7}"#)
        .expect("write garbage");
    refresh.set_secret(&[0xff, 0xfe]).expect("write garbage");

    assert!(matches!(
        store.load_session(&key),
        Err(StoreError::Corrupt(_))
    ));
    assert!(matches!(
        store.load_refresh(&key),
        Err(StoreError::Corrupt(_))
    ));
    assert_eq!(refresh.get_secret().expect("still there"), [0xff, 0xfe]);
    assert!(session.get_password().is_ok(), "still there");

    store.delete(&key).expect("delete");
    assert!(matches!(
        session.get_secret(),
        Err(keyring_core::Error::NoEntry)
    ));
    assert!(matches!(
        refresh.get_secret(),
        Err(keyring_core::Error::NoEntry)
    ));
}

#[test]
fn secret_service_from_spawn_blocking() {
    if open_or_skip(
        "secret_service_spawn_blocking",
        KeychainStore::secret_service,
    )
    .is_some()
    {
        from_spawn_blocking(KeychainStore::secret_service);
    }
}

#[test]
fn secret_service_survives_across_processes() {
    let test = "secret_service_across_processes";
    if open_or_skip(test, KeychainStore::secret_service).is_some() {
        across_processes(test, "secret-service");
    }
}

/// A locked collection: every call is `Unavailable` (never `NotFound`), and
/// nothing is deleted. Runs in a private D-Bus session with its own
/// gnome-keyring (HOME and XDG_RUNTIME_DIR in a scratch directory), so
/// locking never disturbs the other tests or a developer's own keyring.
#[test]
fn secret_service_locked_is_unavailable_and_nothing_deleted() {
    let test = "secret_service_locked";
    for tool in ["dbus-run-session", "dbus-send", "gnome-keyring-daemon"] {
        if !have(tool) {
            return missing(test, &format!("{tool} is not installed"));
        }
    }
    let scratch = TempDir::new("locked");
    let exe = std::env::current_exe().expect("test binary");
    // The daemon prints its environment; then the child test runs in the same bus.
    let script = r#"eval "$(printf pw | gnome-keyring-daemon --unlock --components=secrets)" && exec "$0" "$@""#;
    let output = Command::new("dbus-run-session")
        .args(["--", "sh", "-c", script])
        .arg(&exe)
        .args(CHILD_ARGS)
        .stdin(std::process::Stdio::null())
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .env_remove("GNOME_KEYRING_CONTROL")
        // No unlock dialog on a developer's screen: the prompt must fail.
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .env("HOME", scratch.path())
        .env("XDG_RUNTIME_DIR", scratch.path())
        .env(CHILD_ENV, "locked")
        .output()
        .expect("run dbus-run-session");
    let stdout = check("the locked-keyring child", &output);
    // What the locked keyring answered (not the child's whole output: its
    // `test result` line would count as a test of this run).
    for line in stdout.lines().filter(|l| l.contains(": unavailable: ")) {
        eprintln!("{}", line.trim_start_matches("test child_process ... "));
    }
    assert!(stdout.contains("LOCKED=checked"), "{stdout}");
}

// ---------------------------------------------------------------- auto()

/// With a Secret Service that answers, `auto()` takes it; without, keyutils.
#[test]
fn auto_prefers_a_secret_service_that_answers() {
    let store = match KeychainStore::auto() {
        Ok(store) => store,
        Err(err) => return missing("auto", &format!("no keychain at all: {err}")),
    };
    let expected = match KeychainStore::secret_service() {
        Ok(_) => KeychainBackend::SecretService,
        Err(err) => {
            missing(
                "auto_prefers_secret_service",
                &format!("no Secret Service: {err}"),
            );
            KeychainBackend::Keyutils
        }
    };
    assert_eq!(store.backend(), expected);
    round_trip(&store);
}

/// No D-Bus session at all: `secret_service()` says why, `auto()` falls back
/// to keyutils and works.
#[test]
fn without_a_session_bus_auto_falls_back_to_keyutils() {
    if open_or_skip("no_bus_fallback", KeychainStore::keyutils).is_none() {
        return;
    }
    let scratch = TempDir::new("nobus");
    let out = child("no-bus", &[])
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .env("XDG_RUNTIME_DIR", scratch.path())
        .output()
        .expect("start child");
    let stdout = check("the no-bus child", &out);
    assert_eq!(reported(&stdout, "AUTO"), "keyutils");
    assert!(
        reported(&stdout, "SECRET_SERVICE").starts_with("unavailable"),
        "{stdout}"
    );
}

/// A session bus that can merely start gnome-keyring (a server's systemd
/// user bus, a CI job that never unlocked a keyring): the service answers but
/// has no default collection, so every write would need a prompt. `auto()`
/// takes keyutils instead of a keychain that cannot keep anything.
#[test]
fn auto_skips_a_secret_service_without_a_keyring() {
    let test = "auto_skips_secret_service_without_keyring";
    if open_or_skip(test, KeychainStore::keyutils).is_none() {
        return;
    }
    if !have("dbus-run-session") {
        return missing(test, "dbus-run-session is not installed");
    }
    let scratch = TempDir::new("nocollection");
    let exe = std::env::current_exe().expect("test binary");
    let output = Command::new("dbus-run-session")
        .arg("--")
        .arg(&exe)
        .args(CHILD_ARGS)
        .stdin(std::process::Stdio::null())
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .env_remove("GNOME_KEYRING_CONTROL")
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .env("HOME", scratch.path())
        .env("XDG_RUNTIME_DIR", scratch.path())
        .env(CHILD_ENV, "no-collection")
        .output()
        .expect("run dbus-run-session");
    let stdout = check("the no-collection child", &output);
    assert_eq!(reported(&stdout, "AUTO"), "keyutils", "{stdout}");
    let why = reported(&stdout, "SECRET_SERVICE");
    if have("gnome-keyring-daemon") {
        // The bus started gnome-keyring for the probe, and it had no keyring.
        assert!(why.contains("no default collection"), "{why}");
    }
}

/// At TRACE level, with the keyring crates' `log` records bridged in, no
/// token value appears in any output. Runs in a child: the subscriber is
/// global (the keyutils thread and zbus's threads log too).
#[test]
fn no_token_in_trace_output() {
    let out = child("tracing", &[]).output().expect("start child");
    let stdout = check("the tracing child", &out);
    assert_eq!(reported(&stdout, "TRACE_CHECK"), "clean", "{stdout}");
}

// ---------------------------------------------------------------- child processes

#[test]
#[ignore = "run by the other tests in a child process"]
fn child_process() {
    let Ok(role) = std::env::var(CHILD_ENV) else {
        return;
    };
    match role.as_str() {
        "write" | "read" | "delete" => child_account_step(&role),
        "no-bus" => child_no_bus(),
        "tracing" => child_tracing(),
        "locked" => child_locked(),
        "no-collection" => child_no_collection(),
        other => panic!("unknown child role {other}"),
    }
}

fn child_store() -> KeychainStore {
    let backend = std::env::var("SK_BACKEND").expect("SK_BACKEND");
    let store = match backend.as_str() {
        "keyutils" => KeychainStore::keyutils(),
        "secret-service" => KeychainStore::secret_service(),
        other => panic!("unknown backend {other}"),
    }
    .expect("open the keychain in the child");
    assert_eq!(store.name(), backend);
    store
}

fn child_account_step(role: &str) {
    let store = child_store();
    let key = account_from(
        &std::env::var("SK_NAMESPACE").expect("SK_NAMESPACE"),
        &std::env::var("SK_SUB").expect("SK_SUB"),
    );
    match role {
        "write" => {
            let session = session_entry();
            let refresh = refresh_token();
            store.save_session(&key, &session).expect("save session");
            store.save_refresh(&key, &refresh).expect("save refresh");
            print_fingerprints(&session, &refresh);
        }
        "read" => match (store.load_session(&key), store.load_refresh(&key)) {
            (Ok(session), Ok(refresh)) => print_fingerprints(&session, &refresh),
            (Err(StoreError::NotFound), Err(StoreError::NotFound)) => {
                println!("SESSION=not-found\nREFRESH=not-found");
            }
            other => panic!("unexpected read result {other:?}"),
        },
        _ => store.delete(&key).expect("delete"),
    }
}

fn print_fingerprints(session: &sessionkit::SessionEntry, refresh: &RefreshToken) {
    println!("ACCESS_FP={}", session.access_token.fingerprint());
    println!(
        "ID_FP={}",
        session.id_token.as_ref().expect("id token").fingerprint()
    );
    println!("REFRESH_FP={}", refresh.fingerprint());
    println!("SID={}", session.sid.as_deref().unwrap_or("-"));
}

fn child_no_bus() {
    assert!(std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_none());
    match KeychainStore::secret_service() {
        Err(StoreError::Unavailable(why)) => {
            assert!(why.contains("secret-service"), "{why}");
            println!("SECRET_SERVICE=unavailable: {why}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    let store = KeychainStore::auto().expect("auto falls back to keyutils");
    println!("AUTO={}", store.name());
    round_trip(&store);
}

fn child_no_collection() {
    match KeychainStore::secret_service() {
        Err(StoreError::Unavailable(why)) => println!("SECRET_SERVICE=unavailable: {why}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    let store = KeychainStore::auto().expect("auto falls back to keyutils");
    println!("AUTO={}", store.name());
    round_trip(&store);
}

/// The global subscriber's output, shared with the test.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn child_tracing() {
    let capture = Capture::default();
    let writer = capture.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .try_init()
        .expect("install the global subscriber");

    let mut secrets: Vec<String> = Vec::new();
    let mut exercise = |store: &KeychainStore| {
        let key = account();
        let _cleanup = Cleanup {
            store,
            key: key.clone(),
        };
        let session = session_entry();
        let refresh = refresh_token();
        secrets.push(session.access_token.secret().to_owned());
        secrets.push(session.id_token.as_ref().expect("id").secret().to_owned());
        secrets.push(refresh.secret().to_owned());
        store.save_session(&key, &session).expect("save");
        store.save_refresh(&key, &refresh).expect("save");
        assert_eq!(store.load_session(&key), Ok(session));
        assert_eq!(store.load_refresh(&key), Ok(refresh));
        store.delete(&key).expect("delete");
        assert_eq!(store.load_session(&key), Err(StoreError::NotFound));
    };
    exercise(&KeychainStore::keyutils().expect("keyutils"));
    match KeychainStore::secret_service() {
        Ok(store) => exercise(&store),
        Err(err) => missing(
            "no_token_in_trace_output (Secret Service part)",
            &err.to_string(),
        ),
    }

    let text = String::from_utf8_lossy(&capture.0.lock().expect("capture")).into_owned();
    // The capture works: our events and the keyring crates' `log` records are in it.
    assert!(
        text.contains("keychain call done"),
        "no sessionkit events captured"
    );
    assert!(
        text.contains("set password for entry"),
        "no keyring-core records captured"
    );
    for secret in &secrets {
        // The whole value, and its random part alone.
        let random_part = &secret[secret.len() - 32..];
        // As bytes too, the way `{:?}` prints a `&[u8]` (`[114, 116, ...]`).
        let as_bytes = format!("{:?}", &random_part.as_bytes()[..12]);
        let as_bytes = as_bytes.trim_matches(|c| c == '[' || c == ']');
        assert!(
            !text.contains(secret.as_str())
                && !text.contains(random_part)
                && !text.contains(as_bytes),
            "a token value appears in the trace output"
        );
    }
    if let Some(path) = std::env::var_os("SK_TRACE_DUMP") {
        // For a human to read what the stores log: `SK_TRACE_DUMP=/tmp/trace.log`.
        std::fs::write(path, &text).expect("dump the trace");
    }
    println!("TRACE_BYTES={}", text.len());
    println!("TRACE_CHECK=clean");
}

/// In a private bus with an unlocked gnome-keyring (see the parent test).
fn child_locked() {
    wait_for_secret_service();
    let store = KeychainStore::secret_service().expect("Secret Service in the private bus");
    let key = account();
    let session = session_entry();
    let refresh = refresh_token();
    store.save_session(&key, &session).expect("save");
    store.save_refresh(&key, &refresh).expect("save");

    let collection = default_collection();
    lock_collection(&collection);
    let unavailable = |what: &str, result: Result<(), StoreError>| match result {
        Err(StoreError::Unavailable(why)) => println!("{what}: unavailable: {why}"),
        other => panic!("{what} on a locked keyring: expected Unavailable, got {other:?}"),
    };
    unavailable("load_session", store.load_session(&key).map(drop));
    unavailable("load_refresh", store.load_refresh(&key).map(drop));
    unavailable("save_refresh", store.save_refresh(&key, &refresh_token()));
    unavailable("delete", store.delete(&key));
    // `auto()` still picks the (locked) Secret Service: the tokens are there,
    // just not readable now; reading another keychain would look signed out.
    assert_eq!(
        KeychainStore::auto().expect("auto").backend(),
        KeychainBackend::SecretService
    );
    // Both items are still there (searching does not need the lock open).
    for kind in ["session", "refresh"] {
        assert_eq!(
            count_items(&key.service(), &key.entry_user(kind)),
            1,
            "{kind}"
        );
    }

    // Unlock by restarting the daemon with the password; the keyring file
    // on disk still holds both entries, unchanged.
    let restarted = Command::new("sh")
        .args([
            "-c",
            "printf %s \"$SK_PW\" | gnome-keyring-daemon --replace --unlock --components=secrets",
        ])
        .env("SK_PW", "pw")
        .output()
        .expect("restart gnome-keyring-daemon");
    check("gnome-keyring-daemon --replace", &restarted);
    wait_for_secret_service();
    wait_until("the collection to unlock", || {
        !collection_locked(&collection)
    });
    // The same store object keeps working: the daemon's restart dropped its
    // D-Bus session, and the store connects again by itself.
    assert_eq!(store.load_session(&key), Ok(session));
    assert_eq!(store.load_refresh(&key), Ok(refresh));
    store.delete(&key).expect("delete");
    println!("LOCKED=checked");
}
