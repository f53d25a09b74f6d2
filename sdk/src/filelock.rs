//! Exclusive file locks with a deadline: a process that holds a lock and
//! is stopped (SIGSTOP, a debugger) must not make every other process of
//! the app wait forever.

use std::fs::{File, TryLockError};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// How often a held lock is tried again.
const RETRY_EVERY: Duration = Duration::from_millis(20);

/// Takes `file`'s exclusive lock, trying until `limit` has passed; then
/// [`Error::LockTimeout`] naming `what`. Blocks the calling thread (run it
/// off the async runtime).
pub(crate) fn lock_within(file: &File, what: &'static str, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(()),
            Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(
                    RETRY_EVERY.min(deadline.saturating_duration_since(Instant::now())),
                );
            }
            Err(TryLockError::WouldBlock) => {
                return Err(Error::LockTimeout {
                    what,
                    waited: limit,
                });
            }
            Err(TryLockError::Error(e)) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_times_out_with_a_typed_error_and_is_taken_once_free() {
        let path = std::env::temp_dir().join(format!("sk-filelock-{}", std::process::id()));
        let holder = File::create(&path).expect("create");
        holder.lock().expect("held by the 'other process'");
        let waiter = File::open(&path).expect("open");
        let started = Instant::now();
        match lock_within(&waiter, "test lock", Duration::from_millis(100)) {
            Err(Error::LockTimeout { what, waited }) => {
                assert_eq!((what, waited), ("test lock", Duration::from_millis(100)));
            }
            other => panic!("{other:?}"),
        }
        assert!(started.elapsed() >= Duration::from_millis(100));
        holder.unlock().expect("released");
        lock_within(&waiter, "test lock", Duration::from_millis(100)).expect("free now");
        let _ = std::fs::remove_file(path);
    }
}
