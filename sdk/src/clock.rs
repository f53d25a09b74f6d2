//! Time for the SDK: [`Clock`], the system's or one a test moves by hand
//! (as mock-idp's clock is), and a coarse wall clock for the hot path.
//!
//! The coarse clock: `access_token()` is on every
//! request's path, and reading the system clock costs more than the rest of
//! it; one process-wide thread ticks this clock every 50 ms instead (it
//! sleeps otherwise), so the hot path reads an atomic. Freshness is decided
//! against a deadline a full clock-skew margin ahead of expiry, so 50 ms of
//! coarseness changes nothing. If the thread cannot start, the system
//! clock is read directly.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
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

/// Where sessions read the time and wait for it.
///
/// [`Clock::system`] (the default) is the wall clock. [`Clock::manual`]
/// stands still until [`Clock::advance`] moves it; a session's refresh
/// timer wakes as soon as the clock passes its time. With mock-idp's clock
/// frozen and moved by the same amounts, a test sees an hour of token
/// lifetimes in milliseconds:
///
/// ```
/// use std::time::Duration;
/// use sessionkit::Clock;
///
/// let clock = Clock::manual();
/// let start = clock.now();
/// clock.advance(Duration::from_secs(3300));
/// assert_eq!(clock.now().duration_since(start).unwrap(), Duration::from_secs(3300));
/// ```
#[derive(Clone, Default)]
pub struct Clock {
    manual: Option<Arc<Manual>>,
}

#[derive(Debug)]
struct Manual {
    /// Unix milliseconds.
    now_ms: AtomicU64,
    moved: tokio::sync::watch::Sender<u64>,
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.manual {
            None => f.write_str("Clock::system"),
            Some(m) => write!(f, "Clock::manual({} ms)", m.now_ms.load(Ordering::SeqCst)),
        }
    }
}

impl Clock {
    /// The system's wall clock.
    #[must_use]
    pub fn system() -> Self {
        Self::default()
    }

    /// A clock that starts at the system time and moves only with
    /// [`Clock::advance`] (for tests).
    #[must_use]
    pub fn manual() -> Self {
        Self {
            manual: Some(Arc::new(Manual {
                now_ms: AtomicU64::new(unix_ms(SystemTime::now())),
                moved: tokio::sync::watch::channel(0).0,
            })),
        }
    }

    /// Moves a manual clock forward (a system clock ignores it).
    pub fn advance(&self, by: Duration) {
        if let Some(m) = &self.manual {
            let by = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
            m.now_ms.fetch_add(by, Ordering::SeqCst);
            m.moved.send_modify(|n| *n += 1);
        }
    }

    /// The time now.
    #[must_use]
    pub fn now(&self) -> SystemTime {
        match &self.manual {
            None => SystemTime::now(),
            Some(m) => UNIX_EPOCH + Duration::from_millis(m.now_ms.load(Ordering::SeqCst)),
        }
    }

    /// The system clock? (The hot path then reads the coarse clock.)
    pub(crate) fn is_system(&self) -> bool {
        self.manual.is_none()
    }

    /// Waits until the clock reads `at` or later. The system clock sleeps
    /// on tokio's clock, in steps of at most `step` (when given) with the
    /// wall clock read between them; a manual clock waits for advances.
    pub(crate) async fn sleep_until(&self, at: SystemTime, step: Option<Duration>) {
        match &self.manual {
            None => loop {
                let wait = at.duration_since(SystemTime::now()).unwrap_or_default();
                if wait.is_zero() {
                    return;
                }
                tokio::time::sleep(step.map_or(wait, |s| wait.min(s))).await;
            },
            Some(m) => {
                let mut moved = m.moved.subscribe();
                while self.now() < at {
                    if moved.changed().await.is_err() {
                        std::future::pending::<()>().await;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_manual_clock_wakes_its_sleepers_when_it_passes_their_time() {
        let clock = Clock::manual();
        let at = clock.now() + Duration::from_secs(60);
        let sleeper = tokio::spawn({
            let clock = clock.clone();
            async move { clock.sleep_until(at, None).await }
        });
        clock.advance(Duration::from_secs(59));
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished(), "59 s is not enough");
        clock.advance(Duration::from_secs(1));
        tokio::time::timeout(Duration::from_secs(5), sleeper)
            .await
            .expect("woken at 60 s")
            .expect("joined");
    }

    #[test]
    fn the_coarse_clock_follows_the_wall_clock() {
        let exact = unix_ms(SystemTime::now());
        let coarse = coarse_now_ms();
        assert!(coarse.abs_diff(exact) <= 200, "{coarse} vs {exact}");
        std::thread::sleep(Duration::from_millis(120));
        assert!(coarse_now_ms() > coarse, "it ticks");
    }
}
