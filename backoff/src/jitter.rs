//! The one source of randomness for jitter: a uniform number from std's
//! randomly keyed hasher, so the crate needs no random-number dependency.
//! Jitter only has to spread retries apart, not to be unpredictable.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

/// A uniform number in `[0, 1)`, from std's randomly keyed hasher (good
/// enough to spread retries; not for cryptography).
///
/// ```
/// let unit = sessionkit_backoff::jitter_unit();
/// assert!((0.0..1.0).contains(&unit));
/// ```
#[must_use]
pub fn jitter_unit() -> f64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    // 53 random bits fill an f64's mantissa exactly.
    #[allow(clippy::cast_precision_loss)]
    let unit = (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64;
    unit
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_are_uniform_over_zero_to_one() {
        // About a quarter of 2,000 draws in each tail (500 ± generous slack).
        let draws: Vec<f64> = (0..2000).map(|_| jitter_unit()).collect();
        assert!(draws.iter().all(|u| (0.0..1.0).contains(u)));
        let low = draws.iter().filter(|u| **u < 0.25).count();
        let high = draws.iter().filter(|u| **u > 0.75).count();
        assert!((350..650).contains(&low), "{low}");
        assert!((350..650).contains(&high), "{high}");
    }

    #[test]
    fn units_from_many_threads_differ() {
        let draws: Vec<f64> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8).map(|_| s.spawn(jitter_unit)).collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("no panic"))
                .collect()
        });
        let mut sorted = draws.clone();
        sorted.sort_by(f64::total_cmp);
        sorted.dedup();
        assert_eq!(sorted.len(), draws.len(), "{draws:?}");
    }
}
