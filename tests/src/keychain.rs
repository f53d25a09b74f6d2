//! gnome-keyring over D-Bus, for the tests that lock the keychain under the
//! SDK: the default collection, whether it is locked, locking it (the
//! Secret Service's `Lock`), unlocking it again without a prompt, and
//! counting items (which works while locked).
//!
//! Unlocking: the Secret Service's own `Unlock` asks the user through a
//! prompt, which fails on a headless machine; gnome-keyring's
//! `org.gnome.keyring.InternalUnsupportedGuiltRiddenInterface.UnlockWithMasterPassword`
//! takes the password instead. The password comes from
//! [`PASSWORD_VAR`], which whoever started the daemon sets (`.ci/run` does).
//!
//! Locking is global to the D-Bus session: tests that lock must not run
//! beside tests that need the keyring open ([`exclusive`] serializes the
//! tests of one process that lock).

use std::process::Command;
use std::time::{Duration, Instant};

use zbus::zvariant::{ObjectPath, OwnedObjectPath, OwnedValue, Value};

/// The variable holding the password the keyring was unlocked with.
pub const PASSWORD_VAR: &str = "SESSIONKIT_KEYRING_PASSWORD";

const SECRETS: &str = "org.freedesktop.secrets";
const SERVICE_PATH: &str = "/org/freedesktop/secrets";

/// A `dbus-send --session --print-reply` call; its output, or panics.
pub fn dbus_send(dest: &str, path: &str, method: &str, args: &[&str]) -> String {
    let out = Command::new("dbus-send")
        .args([
            "--session",
            "--print-reply",
            &format!("--dest={dest}"),
            path,
            method,
        ])
        .args(args)
        .output()
        .expect("run dbus-send");
    assert!(
        out.status.success(),
        "dbus-send {method} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits until some process owns `org.freedesktop.secrets` on the session bus.
/// `gnome-keyring-daemon --unlock` returns before its daemon has claimed the
/// name; a client that comes too early makes the bus start a second, locked daemon.
pub fn wait_for_secret_service() {
    wait_until("the Secret Service to own its bus name", || {
        dbus_send(
            "org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus.NameHasOwner",
            &["string:org.freedesktop.secrets"],
        )
        .contains("boolean true")
    });
}

/// Polls `ready` every 50 ms for up to 20 s; panics naming `what` after.
pub fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The object path of the Secret Service's default collection.
pub fn default_collection() -> String {
    let out = dbus_send(
        SECRETS,
        SERVICE_PATH,
        "org.freedesktop.Secret.Service.ReadAlias",
        &["string:default"],
    );
    let path = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("object path "))
        .unwrap_or_else(|| panic!("no default collection in {out}"))
        .trim_matches('"')
        .to_owned();
    assert_ne!(path, "/", "the Secret Service has no default collection");
    path
}

/// Whether `collection` is locked.
pub fn collection_locked(collection: &str) -> bool {
    dbus_send(
        SECRETS,
        collection,
        "org.freedesktop.DBus.Properties.Get",
        &["string:org.freedesktop.Secret.Collection", "string:Locked"],
    )
    .contains("boolean true")
}

/// Locks a collection through the Secret Service's own `Lock` method.
pub fn lock_collection(collection: &str) {
    dbus_send(
        SECRETS,
        SERVICE_PATH,
        "org.freedesktop.Secret.Service.Lock",
        &[&format!("array:objpath:{collection}")],
    );
    assert!(collection_locked(collection), "{collection} did not lock");
}

/// The password from [`PASSWORD_VAR`], if set.
pub fn password() -> Option<String> {
    std::env::var(PASSWORD_VAR).ok().filter(|p| !p.is_empty())
}

/// Unlocks `collection` with gnome-keyring's master-password call (no
/// prompt), in a plain-text Secret Service session of its own.
pub fn unlock_collection(collection: &str, password: &str) -> Result<(), zbus::Error> {
    let conn = zbus::blocking::Connection::session()?;
    let service = zbus::blocking::Proxy::new(
        &conn,
        SECRETS,
        SERVICE_PATH,
        "org.freedesktop.Secret.Service",
    )?;
    let (_, session): (OwnedValue, OwnedObjectPath) =
        service.call("OpenSession", &("plain", Value::from("")))?;
    let internal = zbus::blocking::Proxy::new(
        &conn,
        SECRETS,
        SERVICE_PATH,
        "org.gnome.keyring.InternalUnsupportedGuiltRiddenInterface",
    )?;
    // The secret: (session, parameters, value, content type).
    let secret = (
        session.as_ref(),
        Vec::<u8>::new(),
        password.as_bytes().to_vec(),
        "text/plain",
    );
    let path = ObjectPath::try_from(collection).map_err(zbus::Error::from)?;
    internal.call::<_, _, ()>("UnlockWithMasterPassword", &(path, secret))?;
    Ok(())
}

/// How many items (locked or not) carry all of `attributes`. `SearchItems`
/// does not unlock or prompt, so it sees items in a locked collection too.
pub fn count_items(attributes: &[(&str, &str)]) -> usize {
    let dict: Vec<String> = attributes.iter().map(|(k, v)| format!("{k},{v}")).collect();
    dbus_send(
        SECRETS,
        SERVICE_PATH,
        "org.freedesktop.Secret.Service.SearchItems",
        &[&format!("dict:string:string:{}", dict.join(","))],
    )
    .matches("object path \"/org/freedesktop/secrets/collection/")
    .count()
}

/// A lock held by the tests of one process that lock the keyring, so that
/// they take turns (the lock is the whole D-Bus session's).
pub async fn exclusive() -> tokio::sync::MutexGuard<'static, ()> {
    static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    TURN.lock().await
}

/// Locks the default collection for as long as it lives; unlocks it again
/// on drop (also when the test panics), with [`PASSWORD_VAR`]'s password.
///
/// ```no_run
/// use sessionkit_tests::keychain::{Locked, collection_locked};
///
/// # async fn demo() {
/// let _turn = sessionkit_tests::keychain::exclusive().await;
/// let mut locked = Locked::lock();
/// assert!(collection_locked(locked.collection()));
/// // ... the store answers Unavailable ...
/// locked.unlock();
/// # }
/// ```
#[derive(Debug)]
pub struct Locked {
    collection: String,
    password: String,
    unlocked: bool,
}

impl Locked {
    /// Locks the default collection. Panics without [`PASSWORD_VAR`]: a
    /// keyring locked for good would break every later test.
    pub fn lock() -> Self {
        let password = password().unwrap_or_else(|| {
            panic!("{PASSWORD_VAR} must hold the keyring's password to unlock it again")
        });
        let collection = default_collection();
        lock_collection(&collection);
        Self {
            collection,
            password,
            unlocked: false,
        }
    }

    /// The collection it locked.
    pub fn collection(&self) -> &str {
        &self.collection
    }

    /// Unlocks it now (and checks that it is).
    pub fn unlock(&mut self) {
        unlock_collection(&self.collection, &self.password)
            .unwrap_or_else(|e| panic!("unlock {}: {e}", self.collection));
        assert!(
            !collection_locked(&self.collection),
            "{} is still locked",
            self.collection
        );
        self.unlocked = true;
    }
}

impl Drop for Locked {
    fn drop(&mut self) {
        if !self.unlocked
            && let Err(e) = unlock_collection(&self.collection, &self.password)
        {
            eprintln!("could not unlock {} again: {e}", self.collection);
        }
    }
}
