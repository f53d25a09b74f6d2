//! The Secret Service backend (gnome-keyring, KWallet) on the D-Bus session
//! bus, and the probe that decides whether it is there at all.
//!
//! The store crate is built on zbus with `async-io` (feature `crypto-rust`):
//! its blocking calls run their own small executor and never touch tokio, so
//! they are safe from any thread, including tokio's blocking pool. The tokio
//! flavour of the crate panics when called inside a runtime; it is not used.

use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::Duration;

use ::secret_service::EncryptionType;
use keyring_core::CredentialStore;

use super::{KeychainBackend, map_error};
use crate::error::StoreError;

/// How long the service may take to answer the probe. zbus has no timeout of
/// its own, and a bus whose service hangs would otherwise hang the caller.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// A search for this must answer "no such item" (searching never prompts).
const PROBE_SERVICE: &str = "sessionkit-probe";
const PROBE_USER: &str = "absent";

/// Connects and checks, within [`ANSWER_TIMEOUT`], that the service has a
/// default collection and answers a search.
pub(super) fn connect() -> Result<Arc<CredentialStore>, StoreError> {
    let (reply, answer) = mpsc::sync_channel(1);
    thread::Builder::new()
        .name("sessionkit-secret-service-probe".into())
        .spawn(move || {
            let _ = reply.send(probe());
        })
        .map_err(|e| {
            StoreError::Unavailable(format!("secret-service: cannot start the probe: {e}"))
        })?;
    match answer.recv_timeout(ANSWER_TIMEOUT) {
        Ok(result) => result.map_err(|err| match err {
            StoreError::Unavailable(m)
                if std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_none() =>
            {
                StoreError::Unavailable(format!("{m} (DBUS_SESSION_BUS_ADDRESS is not set)"))
            }
            other => other,
        }),
        Err(RecvTimeoutError::Timeout) => Err(StoreError::Unavailable(format!(
            "secret-service: no answer on the D-Bus session bus within {} s",
            ANSWER_TIMEOUT.as_secs()
        ))),
        Err(RecvTimeoutError::Disconnected) => Err(StoreError::Unavailable(
            "secret-service: the probe ended without an answer".into(),
        )),
    }
}

fn probe() -> Result<Arc<CredentialStore>, StoreError> {
    let backend = KeychainBackend::SecretService;
    // A service without a default collection has nowhere to keep items: every
    // write would need a prompt to create one. That is a bus that can merely
    // start gnome-keyring (a server's systemd user bus, a CI job) and not a
    // keychain anyone set up; keyutils serves such a machine better. A
    // default collection that is locked is fine: unlocking is the user's call.
    let service = ::secret_service::blocking::SecretService::connect(EncryptionType::Plain)
        .map_err(|e| StoreError::Unavailable(format!("secret-service: connect failed: {e}")))?;
    match service.get_default_collection() {
        Ok(_) => {}
        Err(::secret_service::Error::NoResult) => {
            return Err(StoreError::Unavailable(
                "secret-service: the service has no default collection (no login keyring)".into(),
            ));
        }
        Err(e) => {
            return Err(StoreError::Unavailable(format!(
                "secret-service: probe failed: {e}"
            )));
        }
    }
    drop(service);
    let store: Arc<CredentialStore> = zbus_secret_service_keyring_store::Store::new()
        .map_err(|e| map_error(backend, "connect", e))?;
    let answer = store
        .build(PROBE_SERVICE, PROBE_USER, None)
        .and_then(|entry| entry.get_secret().map(|_| ()));
    match answer {
        Ok(()) | Err(keyring_core::Error::NoEntry) => Ok(store),
        Err(err) => Err(map_error(backend, "probe", err)),
    }
}
