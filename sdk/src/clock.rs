//! A coarse wall clock for the hot path. `access_token()` is on every
//! request's path, and reading the system clock costs more than the rest of
//! it; one process-wide thread ticks this clock every 50 ms instead (it
//! sleeps otherwise), so the hot path reads an atomic. Freshness is decided
//! against a deadline a full clock-skew margin ahead of expiry, so 50 ms of
//! coarseness changes nothing. If the thread cannot start, the system
//! clock is read directly.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const TICK: Duration = Duration::from_millis(50);

static NOW_MS: AtomicU64 = AtomicU64::new(0);
static TICKING: OnceLock<bool> = OnceLock::new();

/// Milliseconds since the Unix epoch, exactly.
pub(crate) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Milliseconds since the Unix epoch, at most one tick old.
pub(crate) fn coarse_now_ms() -> u64 {
    let ticking = *TICKING.get_or_init(|| {
        NOW_MS.store(unix_ms(SystemTime::now()), Ordering::Relaxed);
        std::thread::Builder::new()
            .name("sessionkit-clock".to_owned())
            .spawn(|| {
                loop {
                    std::thread::sleep(TICK);
                    NOW_MS.store(unix_ms(SystemTime::now()), Ordering::Relaxed);
                }
            })
            .is_ok()
    });
    if ticking {
        NOW_MS.load(Ordering::Relaxed)
    } else {
        unix_ms(SystemTime::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_coarse_clock_follows_the_wall_clock() {
        let exact = unix_ms(SystemTime::now());
        let coarse = coarse_now_ms();
        assert!(coarse.abs_diff(exact) <= 200, "{coarse} vs {exact}");
        std::thread::sleep(Duration::from_millis(120));
        assert!(coarse_now_ms() > coarse, "it ticks");
    }
}
