//! What a DPoP verifier remembers between requests: the proofs it has seen
//! ([`ReplayCache`], so that a proof is accepted once) and the nonces it
//! hands out ([`Nonces`], RFC 9449 §8–9).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use aws_lc_rs::hmac;

/// The `jti`s of the proofs accepted within their time window, so that each
/// proof is accepted once (RFC 9449 §11.1). Bounded, and closed when full:
/// an entry is forgotten only once its time is over (its proof would be
/// refused as too old by then anyway); while `capacity` entries are all
/// still live, a new proof is refused ([`ProofError::ReplayCacheFull`],
/// with the time until the first of them ends), since forgetting a live
/// entry would let its proof be replayed. Cheap to share behind an `Arc`;
/// one cache serves every endpoint of a server, since a proof names its URL.
///
/// [`ProofError::ReplayCacheFull`]: crate::dpop::ProofError::ReplayCacheFull
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
    /// When full: the earliest time any entry ends, as of the last sweep of
    /// the whole map (entries have different lifetimes, so the ones whose
    /// time is over are not all at the front of `order`). Until then a
    /// sweep would find nothing: at most one sweep per entry ending.
    full_until: Option<i64>,
}

/// What [`ReplayCache::first_use`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Use {
    /// Not seen within its time: recorded now.
    First,
    /// Seen, and still remembered: a replay.
    Replayed,
    /// Not seen, but every place is taken by an entry whose time is not
    /// over: not recorded, to be refused. The first of them ends in
    /// `retry_after_secs` (at least 1).
    Full {
        /// Seconds until a place frees up.
        retry_after_secs: u64,
    },
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

    /// Records `key` as seen until `until` (Unix seconds), unless it is
    /// remembered already (a replay) or the cache is full of live entries.
    pub(crate) fn first_use(&self, key: [u8; 32], until: i64, now: i64) -> Use {
        let mut seen = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let Seen {
            until: map,
            order,
            full_until,
        } = &mut *seen;
        // The oldest entries first: cheap, and most entries end in the
        // order they came.
        while let Some((oldest, oldest_until)) = order.front().copied() {
            if oldest_until >= now {
                break;
            }
            order.pop_front();
            // Only if this entry is the one in the map (not a later use of the key).
            if map.get(&oldest) == Some(&oldest_until) {
                map.remove(&oldest);
            }
        }
        if map.get(&key).is_some_and(|t| *t >= now) {
            return Use::Replayed;
        }
        if map.len() >= self.capacity {
            if full_until.is_none_or(|t| t < now) {
                map.retain(|_, t| *t >= now);
                order.retain(|(k, t)| map.get(k) == Some(t));
                *full_until = map.values().min().copied();
            }
            if map.len() >= self.capacity {
                let first_end = full_until.unwrap_or(now);
                let retry_after_secs = u64::try_from(first_end - now + 1).unwrap_or(1).max(1);
                return Use::Full { retry_after_secs };
            }
        }
        *full_until = None;
        map.insert(key, until);
        order.push_back((key, until));
        Use::First
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
        assert_eq!(cache.first_use(key(1), 160, 100), Use::First);
        assert_eq!(cache.first_use(key(1), 160, 150), Use::Replayed);
        assert_eq!(cache.first_use(key(2), 170, 150), Use::First);
        // Past its time the entry is forgotten, and the key usable again
        // (its proof would be refused as too old by then anyway).
        assert_eq!(cache.first_use(key(1), 230, 161), Use::First);
        assert_eq!(cache.first_use(key(1), 230, 200), Use::Replayed);
        assert_eq!(cache.len(), 1, "key 2's time is over");
    }

    #[test]
    fn a_full_cache_refuses_new_keys_and_forgets_no_live_one() {
        let cache = ReplayCache::new(3);
        for n in 0..3 {
            assert_eq!(cache.first_use(key(n), 1_000 + i64::from(n), 0), Use::First);
        }
        assert_eq!(
            cache.first_use(key(3), 1_000, 10),
            Use::Full {
                retry_after_secs: 991
            },
            "the first entry ends at 1,000: a place frees up at 1,001"
        );
        assert_eq!(cache.len(), 3);
        for n in 0..3 {
            assert_eq!(
                cache.first_use(key(n), 2_000, 999),
                Use::Replayed,
                "key {n} is still remembered: its replay is refused"
            );
        }
        // Key 0's time is over: its place is free, for one new key.
        assert_eq!(cache.first_use(key(3), 2_000, 1_001), Use::First);
        assert!(matches!(
            cache.first_use(key(4), 2_000, 1_001),
            Use::Full { .. }
        ));
    }

    #[test]
    fn a_full_cache_finds_ended_entries_behind_live_ones() {
        // The entry that came first lives longest: the ended ones behind it
        // are not at the front of the queue.
        let cache = ReplayCache::new(3);
        assert_eq!(cache.first_use(key(0), 5_000, 0), Use::First);
        assert_eq!(cache.first_use(key(1), 100, 0), Use::First);
        assert_eq!(cache.first_use(key(2), 200, 0), Use::First);
        assert_eq!(
            cache.first_use(key(3), 5_000, 50),
            Use::Full {
                retry_after_secs: 51
            }
        );
        assert_eq!(
            cache.first_use(key(3), 5_000, 101),
            Use::First,
            "key 1 ended"
        );
        assert_eq!(cache.first_use(key(0), 5_000, 101), Use::Replayed);
        assert_eq!(
            cache.first_use(key(4), 5_000, 201),
            Use::First,
            "key 2 ended"
        );
        assert_eq!(cache.len(), 3);
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
