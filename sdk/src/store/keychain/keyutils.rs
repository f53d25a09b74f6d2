//! The kernel keyutils backend, and the one thread all its calls run on.
//!
//! Why a thread of its own: the store crate adds each key to the caller's
//! *session* keyring and links it into the user's *persistent* keyring, which
//! is what carries it to later processes. A process that was started without a
//! session keyring (a service, a CI job, a container shell) falls back to the
//! shared user-session keyring, where the link into the persistent keyring is
//! refused: the write fails with "access denied" and leaves a half-written
//! key behind. Asking the kernel for the session keyring *with create*
//! (`KEYCTL_GET_KEYRING_ID` on `KEY_SPEC_SESSION_KEYRING`, create = 1) joins a
//! fresh anonymous session keyring when the thread has none or only the
//! user-session one, and keeps the one a login session gave it otherwise. Key
//! credentials — and with them session keyrings — belong to a *thread* in
//! Linux, not to the process: other threads would not see the join. So every
//! keyutils call of the process goes to one dedicated thread that joined once,
//! and the app's own threads keep their credentials untouched. All of it is
//! safe code: `linux-keyutils` keeps the system calls to itself.

use std::any::Any;
use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, OnceLock};
use std::thread;

use keyring_core::CredentialStore;
use linux_keyutils::{KeyRing, KeyRingIdentifier};

use super::{KeychainBackend, map_error};
use crate::error::StoreError;

type Job = Box<dyn FnOnce() + Send>;

/// The process's keyutils thread: a queue of jobs, or why it could not start.
static WORKER: OnceLock<Result<Sender<Job>, String>> = OnceLock::new();

/// A search for this must answer "no such key" on a working keyring.
const PROBE_SERVICE: &str = "sessionkit-probe";
const PROBE_USER: &str = "absent";

/// Opens the store after checking, on the keyutils thread, that the kernel
/// answers.
pub(super) fn open() -> Result<Arc<CredentialStore>, StoreError> {
    let config = HashMap::from([("service_no_divider", "true")]);
    let store: Arc<CredentialStore> =
        linux_keyutils_keyring_store::Store::new_with_configuration(&config)
            .map_err(|e| map_error(KeychainBackend::Keyutils, "open", e))?;
    let probe = Arc::clone(&store);
    let answer = run(move || {
        probe
            .build(PROBE_SERVICE, PROBE_USER, None)?
            .get_secret()
            .map(|_| ())
    })?;
    match answer {
        Ok(()) | Err(keyring_core::Error::NoEntry) => Ok(store),
        Err(err) => Err(map_error(KeychainBackend::Keyutils, "probe", err)),
    }
}

/// Runs `job` on the keyutils thread and waits for its result.
pub(super) fn run<T: Send + 'static>(
    job: impl FnOnce() -> T + Send + 'static,
) -> Result<T, StoreError> {
    let queue = WORKER
        .get_or_init(start)
        .as_ref()
        .map_err(|why| StoreError::Unavailable(format!("keyutils: {why}")))?;
    let (reply, answer) = mpsc::sync_channel::<thread::Result<T>>(1);
    let wrapped: Job = Box::new(move || {
        // A panic must not end the thread that every later call needs.
        let _ = reply.send(catch_unwind(AssertUnwindSafe(job)));
    });
    queue
        .send(wrapped)
        .map_err(|_| StoreError::Unavailable("keyutils: the keyring thread has stopped".into()))?;
    match answer.recv() {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(panic)) => Err(StoreError::Unavailable(format!(
            "keyutils: the keyring call panicked: {}",
            panic_message(&*panic)
        ))),
        Err(_) => Err(StoreError::Unavailable(
            "keyutils: the keyring thread has stopped".into(),
        )),
    }
}

/// Starts the thread; it joins its session keyring before taking any job.
fn start() -> Result<Sender<Job>, String> {
    let (queue, jobs) = mpsc::channel::<Job>();
    let (ready, started) = mpsc::sync_channel::<Result<(), String>>(1);
    thread::Builder::new()
        .name("sessionkit-keyutils".into())
        .spawn(move || {
            let joined = join_session_keyring();
            let ok = joined.is_ok();
            let _ = ready.send(joined);
            if ok {
                // Runs until the process ends: the sender lives in a static.
                for job in jobs {
                    job();
                }
            }
        })
        .map_err(|e| format!("cannot start the keyring thread: {e}"))?;
    started
        .recv()
        .map_err(|_| "the keyring thread ended before it started".to_owned())??;
    Ok(queue)
}

/// Gives this thread a session keyring it possesses, linked to the user's
/// persistent keyring.
fn join_session_keyring() -> Result<(), String> {
    let session = KeyRing::from_special_id(KeyRingIdentifier::Session, true)
        .map_err(|e| format!("cannot get or join a session keyring: {e}"))?;
    // Links the persistent keyring into the session keyring. Without it keys
    // would die with this process's anonymous session keyring.
    KeyRing::get_persistent(KeyRingIdentifier::Session)
        .map_err(|e| format!("no persistent keyring (keys would not outlive the process): {e}"))?;
    tracing::debug!(
        session_keyring = ?session,
        "keyutils thread joined its session keyring"
    );
    Ok(())
}

fn panic_message(panic: &(dyn Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("unknown panic")
}
