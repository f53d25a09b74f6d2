//! What a DPoP verifier remembers between requests: the proofs it has seen
//! ([`ReplayCache`], so that a proof is accepted once) and the nonces it
//! hands out ([`Nonces`], RFC 9449 §8–9).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use aws_lc_rs::hmac;

/// The `jti`s of the proofs accepted within their time window, so that each
/// proof is accepted once (RFC 9449 §11.1). Bounded: past `capacity`
/// entries the oldest is forgotten (an entry is useless anyway once its
/// proof's `iat` is out of the window). Cheap to share behind an `Arc`; one
/// cache serves every endpoint of a server, since a proof names its URL.
#[derive(Debug)]
pub struct ReplayCache {
    capacity: usize,
    inner: Mutex<Seen>,
}

#[derive(Debug, Default)]
struct Seen {
    /// Key → the time (Unix seconds) after which its proof is too old anyway.
    until: HashMap<[u8; 32], i64>,
    /// Keys in the order they came, to forget the oldest first.
    order: VecDeque<([u8; 32], i64)>,
}

impl Default for ReplayCache {
    /// A cache of 100,000 proofs.
    fn default() -> Self {
        Self::new(100_000)
    }
}

impl ReplayCache {
    /// A cache that remembers at most `capacity` proofs (at least 1).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            inner: Mutex::new(Seen::default()),
        }
    }

    /// Records `key` as seen until `until`; `false` when it was seen already
    /// and is still remembered (a replay).
    pub(crate) fn first_use(&self, key: [u8; 32], until: i64, now: i64) -> bool {
        let mut seen = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let Seen { until: map, order } = &mut *seen;
        while let Some((oldest, oldest_until)) = order.front().copied() {
            let full = map.len() >= self.capacity;
            if oldest_until >= now && !full {
                break;
            }
            order.pop_front();
            // Only if this entry is the one in the map (not a later use of the key).
            if map.get(&oldest) == Some(&oldest_until) {
                map.remove(&oldest);
            }
        }
        match map.get(&key) {
            Some(t) if *t >= now => false,
            _ => {
                map.insert(key, until);
                order.push_back((key, until));
                true
            }
        }
    }

    /// How many proofs it remembers now.
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .until
            .len()
    }

    /// Does it remember none?
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Server-provided DPoP nonces (RFC 9449 §8 and §9) that rotate by
/// themselves: the nonce of a period is an HMAC of the period's number
/// under a random key, so nothing is stored. A proof's nonce is accepted
/// when it is the current period's or the one before it: a nonce lives
/// between one and two periods.
///
/// ```
/// use sessionkit_mock_idp::dpop::Nonces;
///
/// let nonces = Nonces::new(300);
/// let now = 1_700_000_000;
/// let nonce = nonces.current(now);
/// assert!(nonces.accepts(&nonce, now + 299));
/// assert!(!nonces.accepts(&nonce, now + 900), "rotated away");
/// assert_ne!(nonces.current(now + 900), nonce);
/// ```
pub struct Nonces {
    key: hmac::Key,
    period: i64,
}

impl std::fmt::Debug for Nonces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nonces")
            .field("period", &self.period)
            .finish_non_exhaustive()
    }
}

impl Default for Nonces {
    /// Nonces that rotate every five minutes.
    fn default() -> Self {
        Self::new(300)
    }
}

impl Nonces {
    /// Nonces that rotate every `period_secs` seconds (at least 1), under a
    /// new random key.
    pub fn new(period_secs: u32) -> Self {
        let mut key = [0u8; 32];
        // The system RNG only fails when the OS has no entropy source.
        #[allow(clippy::expect_used)]
        aws_lc_rs::rand::fill(&mut key).expect("the system random number generator failed");
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, &key),
            period: i64::from(period_secs.max(1)),
        }
    }

    fn of_period(&self, period: i64) -> String {
        let tag = hmac::sign(&self.key, &period.to_be_bytes());
        crate::keys::b64(&tag.as_ref()[..18])
    }

    /// The nonce to hand out at `now` (Unix seconds).
    pub fn current(&self, now: i64) -> String {
        self.of_period(now.div_euclid(self.period))
    }

    /// Is `nonce` the current one or the previous one?
    pub fn accepts(&self, nonce: &str, now: i64) -> bool {
        let period = now.div_euclid(self.period);
        [period, period - 1].iter().any(|p| {
            crate::params::constant_time_eq(self.of_period(*p).as_bytes(), nonce.as_bytes())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> [u8; 32] {
        [n; 32]
    }

    #[test]
    fn a_key_is_accepted_once_until_it_expires() {
        let cache = ReplayCache::new(10);
        assert!(cache.first_use(key(1), 160, 100));
        assert!(!cache.first_use(key(1), 160, 150));
        assert!(cache.first_use(key(2), 170, 150));
        // Past its time the entry is forgotten, and the key usable again
        // (its proof would be refused as too old by then anyway).
        assert!(cache.first_use(key(1), 230, 161));
        assert!(!cache.first_use(key(1), 230, 200));
        assert_eq!(cache.len(), 1, "key 2's time is over");
    }

    #[test]
    fn the_cache_is_bounded_and_forgets_the_oldest_first() {
        let cache = ReplayCache::new(3);
        for n in 0..5 {
            assert!(cache.first_use(key(n), 1_000, 0));
        }
        assert_eq!(cache.len(), 3);
        assert!(!cache.first_use(key(4), 1_000, 0), "recent ones are kept");
        assert!(
            cache.first_use(key(0), 1_000, 0),
            "the oldest was forgotten"
        );
    }

    #[test]
    fn nonces_rotate_with_the_clock_and_the_previous_one_still_counts() {
        let nonces = Nonces::new(60);
        let first = nonces.current(120);
        assert_eq!(nonces.current(179), first);
        let second = nonces.current(180);
        assert_ne!(second, first);
        assert!(nonces.accepts(&first, 180), "the previous period's");
        assert!(!nonces.accepts(&first, 240), "two periods on");
        assert!(!nonces.accepts("made-up", 180));
        assert!(!Nonces::new(60).accepts(&first, 120), "another key");
    }
}
