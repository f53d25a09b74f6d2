//! The offline queue's bookkeeping, apart from HTTP: which requests wait,
//! in what order, and whether one more fits — bounded by count, by body
//! bytes and by age. Time comes from `tokio::time::Instant`, so the age
//! rule tests on a paused clock.
//!
//! A request that does not fit is refused, never an older one evicted: the
//! callers already waiting keep their place and their promise.

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use sessionkit_backoff::Backoff;
use tokio::time::Instant;

/// At most this many repeatable requests wait at once (see [`QueueOptions`]).
pub const DEFAULT_MAX_QUEUED_REQUESTS: usize = 64;
/// At most this many body bytes wait at once, all queued requests together (1 MiB).
pub const DEFAULT_MAX_QUEUED_BYTES: usize = 1024 * 1024;
/// A queued request is given up after waiting this long (15 minutes).
pub const DEFAULT_MAX_QUEUE_AGE: Duration = Duration::from_secs(15 * 60);
/// The first wait before queued requests are tried again (unless the
/// session's token changes first); it doubles up to [`DEFAULT_REPLAY_BACKOFF_CAP`].
pub const DEFAULT_REPLAY_BACKOFF_BASE: Duration = Duration::from_millis(500);
/// The longest wait between two replay attempts.
pub const DEFAULT_REPLAY_BACKOFF_CAP: Duration = Duration::from_secs(30);
/// Each replay step is this many times the one before (up to the cap).
const REPLAY_BACKOFF_FACTOR: f64 = 2.0;

/// Why a repeatable request left the offline queue without an answer; the
/// caller gets it as [`crate::Error::Dropped`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DropReason {
    /// The queue already held its maximum count of requests, or its
    /// maximum bytes with this body added.
    Full,
    /// The body alone is larger than the queue's byte bound: it could never wait.
    TooLarge,
    /// It waited the queue's maximum age without being sent.
    Expired,
    /// The account signed out (logout, or the provider ended the session):
    /// nothing of it is sent any more.
    SignedOut,
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DropReason::Full => "the offline queue is full",
            DropReason::TooLarge => "the body is larger than the offline queue holds",
            DropReason::Expired => "it waited longer than the offline queue's maximum age",
            DropReason::SignedOut => "the account signed out",
        })
    }
}

/// Bounds and replay timing of an [`crate::AuthedClient`]'s offline queue
/// (used under [`crate::RefreshPolicy::OfflineFirst`] only).
///
/// The bounds apply to requests that have to wait: while the provider and
/// the API answer, a repeatable request of any size is simply sent.
///
/// ```
/// use std::time::Duration;
/// use sessionkit::QueueOptions;
///
/// let options = QueueOptions::default()
///     .max_requests(20)
///     .max_bytes(256 * 1024)
///     .max_age(Duration::from_secs(120));
/// assert_eq!(options.limits(), (20, 256 * 1024, Duration::from_secs(120)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct QueueOptions {
    max_requests: usize,
    max_bytes: usize,
    max_age: Duration,
    backoff_base: Duration,
    backoff_cap: Duration,
}

impl Default for QueueOptions {
    fn default() -> Self {
        Self {
            max_requests: DEFAULT_MAX_QUEUED_REQUESTS,
            max_bytes: DEFAULT_MAX_QUEUED_BYTES,
            max_age: DEFAULT_MAX_QUEUE_AGE,
            backoff_base: DEFAULT_REPLAY_BACKOFF_BASE,
            backoff_cap: DEFAULT_REPLAY_BACKOFF_CAP,
        }
    }
}

impl QueueOptions {
    /// At most `n` requests wait at once (default [`DEFAULT_MAX_QUEUED_REQUESTS`]).
    pub fn max_requests(mut self, n: usize) -> Self {
        self.max_requests = n;
        self
    }

    /// At most `bytes` of request bodies wait at once (default [`DEFAULT_MAX_QUEUED_BYTES`]).
    pub fn max_bytes(mut self, bytes: usize) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// A request waits at most `age` (default [`DEFAULT_MAX_QUEUE_AGE`]),
    /// counted from the moment it was queued.
    pub fn max_age(mut self, age: Duration) -> Self {
        self.max_age = age;
        self
    }

    /// Replay attempts wait a random time between `base` and a step that
    /// starts at `base` and doubles up to `cap` (defaults
    /// [`DEFAULT_REPLAY_BACKOFF_BASE`], [`DEFAULT_REPLAY_BACKOFF_CAP`]); a
    /// change of the session's token cuts the wait short.
    pub fn replay_backoff(mut self, base: Duration, cap: Duration) -> Self {
        self.backoff_base = base;
        self.backoff_cap = cap.max(base);
        self
    }

    /// The bounds: count, bytes, age.
    #[must_use]
    pub fn limits(&self) -> (usize, usize, Duration) {
        (self.max_requests, self.max_bytes, self.max_age)
    }

    /// The waits between replay rounds: a random time between the base and
    /// a step that doubles from the base up to the cap.
    pub(super) fn backoff(&self) -> Backoff {
        Backoff::new(self.backoff_base, REPLAY_BACKOFF_FACTOR, self.backoff_cap)
            .floor(self.backoff_base)
    }
}

/// One waiting item with what the bounds need.
#[derive(Debug)]
pub(super) struct Entry<T> {
    pub(super) id: u64,
    pub(super) bytes: usize,
    pub(super) queued_at: Instant,
    pub(super) item: T,
}

/// The waiting items, oldest first, with their byte total.
#[derive(Debug)]
pub(super) struct Queue<T> {
    entries: VecDeque<Entry<T>>,
    bytes: usize,
    next_id: u64,
    /// Set at the session's end: nothing is admitted any more.
    closed: bool,
}

impl<T> Default for Queue<T> {
    fn default() -> Self {
        Self {
            entries: VecDeque::new(),
            bytes: 0,
            next_id: 0,
            closed: false,
        }
    }
}

impl<T> Queue<T> {
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub(super) fn is_closed(&self) -> bool {
        self.closed
    }

    /// Queues `item` (of `bytes` body bytes) at the back, or hands it back
    /// with the reason it does not fit.
    pub(super) fn admit(
        &mut self,
        item: T,
        bytes: usize,
        now: Instant,
        options: &QueueOptions,
    ) -> Result<u64, (DropReason, T)> {
        if self.closed {
            return Err((DropReason::SignedOut, item));
        }
        if bytes > options.max_bytes {
            return Err((DropReason::TooLarge, item));
        }
        if self.entries.len() >= options.max_requests
            || self.bytes.saturating_add(bytes) > options.max_bytes
        {
            return Err((DropReason::Full, item));
        }
        let id = self.next_id;
        self.next_id += 1;
        self.bytes += bytes;
        self.entries.push_back(Entry {
            id,
            bytes,
            queued_at: now,
            item,
        });
        Ok(id)
    }

    /// The oldest item.
    pub(super) fn front(&self) -> Option<&Entry<T>> {
        self.entries.front()
    }

    /// Takes the item `id` out, wherever it is.
    pub(super) fn take(&mut self, id: u64) -> Option<T> {
        let at = self.entries.iter().position(|e| e.id == id)?;
        let entry = self.entries.remove(at)?;
        self.bytes -= entry.bytes;
        Some(entry.item)
    }

    /// Takes out the items that have waited `max_age` or longer at `now`
    /// (they are at the front: items age in the order they came).
    pub(super) fn expire(&mut self, now: Instant, max_age: Duration) -> Vec<T> {
        let mut out = Vec::new();
        while let Some(front) = self.entries.front()
            && now.saturating_duration_since(front.queued_at) >= max_age
        {
            if let Some(entry) = self.entries.pop_front() {
                self.bytes -= entry.bytes;
                out.push(entry.item);
            }
        }
        out
    }

    /// Takes out every item for which `gone` holds (callers that stopped waiting).
    pub(super) fn remove_where(&mut self, mut gone: impl FnMut(&T) -> bool) -> usize {
        let before = self.entries.len();
        let mut freed = 0;
        self.entries.retain(|e| {
            let keep = !gone(&e.item);
            if !keep {
                freed += e.bytes;
            }
            keep
        });
        self.bytes -= freed;
        before - self.entries.len()
    }

    /// When the oldest item reaches `max_age`.
    pub(super) fn next_expiry(&self, max_age: Duration) -> Option<Instant> {
        self.entries.front().map(|e| e.queued_at + max_age)
    }

    /// Closes the queue for good and takes everything out, oldest first.
    pub(super) fn close(&mut self) -> Vec<T> {
        self.closed = true;
        self.bytes = 0;
        self.entries.drain(..).map(|e| e.item).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> QueueOptions {
        QueueOptions::default()
            .max_requests(3)
            .max_bytes(100)
            .max_age(Duration::from_secs(60))
    }

    #[test]
    fn replay_waits_lie_between_the_base_and_a_doubling_step() {
        let ms = Duration::from_millis(1);
        let backoff = QueueOptions::default()
            .replay_backoff(100 * ms, 500 * ms)
            .backoff();
        let highest: Vec<Duration> = backoff.schedule().jitter(|| 1.0).take(5).collect();
        assert_eq!(highest, [100 * ms, 200 * ms, 400 * ms, 500 * ms, 500 * ms]);
        let lowest: Vec<Duration> = backoff.schedule().jitter(|| 0.0).take(5).collect();
        assert_eq!(lowest, [100 * ms; 5]);
        // A cap below the base is raised to it: every wait is the base.
        let flat = QueueOptions::default()
            .replay_backoff(100 * ms, ms)
            .backoff();
        assert_eq!(flat.schedule().take(3).collect::<Vec<_>>(), [100 * ms; 3]);
    }

    #[test]
    fn the_count_bound_refuses_the_newcomer_and_keeps_the_rest() {
        let mut q = Queue::default();
        let now = Instant::now();
        for i in 0..3 {
            assert!(q.admit(i, 0, now, &small()).is_ok());
        }
        assert!(matches!(
            q.admit(3, 0, now, &small()),
            Err((DropReason::Full, 3))
        ));
        assert_eq!(q.len(), 3);
        assert_eq!(
            q.front().map(|e| e.item),
            Some(0),
            "the oldest kept its place"
        );
    }

    #[test]
    fn the_byte_bound_tells_too_large_from_full() {
        let mut q = Queue::default();
        let now = Instant::now();
        assert!(matches!(
            q.admit("huge", 101, now, &small()),
            Err((DropReason::TooLarge, "huge"))
        ));
        assert!(q.admit("a", 60, now, &small()).is_ok());
        assert!(matches!(
            q.admit("b", 41, now, &small()),
            Err((DropReason::Full, "b"))
        ));
        assert!(
            q.admit("c", 40, now, &small()).is_ok(),
            "exactly at the bound fits"
        );
        let first = q.front().map(|e| e.id).expect("front");
        assert_eq!(q.take(first), Some("a"));
        assert!(
            q.admit("d", 60, now, &small()).is_ok(),
            "taking one frees its bytes"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn items_expire_oldest_first_at_their_age() {
        let mut q = Queue::default();
        let options = small();
        assert!(q.admit("a", 1, Instant::now(), &options).is_ok());
        tokio::time::advance(Duration::from_secs(30)).await;
        assert!(q.admit("b", 1, Instant::now(), &options).is_ok());
        assert_eq!(
            q.next_expiry(Duration::from_secs(60)),
            q.front().map(|e| e.queued_at + Duration::from_secs(60))
        );
        tokio::time::advance(Duration::from_secs(29)).await;
        assert!(q.expire(Instant::now(), Duration::from_secs(60)).is_empty());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(q.expire(Instant::now(), Duration::from_secs(60)), vec!["a"]);
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(q.expire(Instant::now(), Duration::from_secs(60)), vec!["b"]);
        assert!(q.is_empty());
    }

    #[test]
    fn a_closed_queue_gives_everything_back_and_admits_nothing() {
        let mut q = Queue::default();
        let now = Instant::now();
        assert!(q.admit(1, 10, now, &small()).is_ok());
        assert!(q.admit(2, 10, now, &small()).is_ok());
        assert_eq!(q.close(), vec![1, 2]);
        assert!(q.is_closed());
        assert!(matches!(
            q.admit(3, 0, now, &small()),
            Err((DropReason::SignedOut, 3))
        ));
    }

    #[test]
    fn callers_that_stopped_waiting_free_their_place() {
        let mut q = Queue::default();
        let now = Instant::now();
        for i in 0..3 {
            assert!(q.admit(i, 30, now, &small()).is_ok());
        }
        assert_eq!(q.remove_where(|i| *i == 1), 1);
        assert!(q.admit(3, 30, now, &small()).is_ok());
        let order: Vec<_> = std::iter::from_fn(|| {
            let id = q.front()?.id;
            q.take(id)
        })
        .collect();
        assert_eq!(order, vec![0, 2, 3]);
    }
}
