//! The live state shared by connections: who listens to which room, the
//! registry of open connections by subject and session (so a back-channel
//! logout or a shutdown can reach them), and the per-user limits.
//!
//! A room costs nothing until someone joins it and is forgotten when its
//! last listener leaves: it is a map from connection to that connection's
//! own queue, and a message is handed to each listener's queue directly.
//! A queue that is full means its connection cannot keep up: it is told to
//! close with 4008. No operation walks every room or every connection:
//! joins and leaves touch one room, kicks the connections of one subject or
//! session, through indexes kept alongside.
//!
//! (Over 500 lines: the limits live with the registry they count, and about
//! 200 lines are the unit tests of both.)

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::config::UserLimits;
use crate::protocol::{CLOSE_TOO_SLOW, ChatMessage};

/// How many live messages one connection may have queued before it counts
/// as too slow (and is closed with 4008). The queue grows in small blocks
/// as it fills, so an idle connection costs nothing for it.
pub(crate) const OUTBOUND_BUFFER: usize = 1024;

/// A live message for a connection, tagged with the join it is for.
pub(crate) type Outbound = (u64, Arc<ChatMessage>);

/// An order to close a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Kick {
    /// The WebSocket close code.
    pub(crate) code: u16,
    /// The close reason.
    pub(crate) reason: &'static str,
}

const TOO_SLOW: Kick = Kick {
    code: CLOSE_TOO_SLOW,
    reason: "too slow; reconnect and resume",
};

#[derive(Debug)]
struct Entry {
    sid: Option<String>,
    /// The `iat` of the connection's current token, when it has one.
    iat: Option<i64>,
    /// Its client knows other nodes to go to: it may be asked to move.
    movable: bool,
    kick: mpsc::Sender<Kick>,
}

/// Which connections a kick is for.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Target<'a> {
    /// Those whose token has this `sid`.
    Session(&'a str),
    /// Those of this subject whose token was issued at or before
    /// `issued_through` (Unix seconds), or says not when.
    Subject {
        /// The subject.
        sub: &'a str,
        /// The latest `iat` hit.
        issued_through: i64,
    },
}

/// A refused request, against a per-user limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The user has as many connections open as allowed.
    TooManyConnections,
    /// The user listens to as many rooms as allowed.
    TooManyRooms,
    /// The user sent frames too fast; the bucket is full again after this.
    RateLimited(Duration),
}

/// A token bucket: `burst` tokens, refilled at `rate` per second.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(burst: u32, now: Instant) -> Self {
        Self {
            tokens: f64::from(burst),
            at: now,
        }
    }

    fn refill(&mut self, rate: u32, burst: u32, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * f64::from(rate)).min(f64::from(burst));
        self.at = now;
    }

    /// Takes one token, or says how long until the bucket is full again.
    fn take(&mut self, rate: u32, burst: u32, now: Instant) -> Result<(), Duration> {
        self.refill(rate, burst, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        let missing = f64::from(burst) - self.tokens;
        Err(Duration::from_secs_f64(missing / f64::from(rate.max(1))))
    }

    fn is_full(&self, rate: u32, burst: u32, now: Instant) -> bool {
        let mut probe = *self;
        probe.refill(rate, burst, now);
        probe.tokens >= f64::from(burst)
    }
}

/// A user's share of the server.
#[derive(Debug, Default)]
struct User {
    conns: HashSet<u64>,
    /// Rooms joined, over all the user's connections.
    rooms: usize,
}

/// Connections, indexed.
#[derive(Debug, Default)]
struct People {
    conns: HashMap<u64, Entry>,
    users: HashMap<String, User>,
    sessions: HashMap<String, HashSet<u64>>,
    /// Send buckets by subject. Kept after a user's last connection closes
    /// (reconnecting must not refill it); full ones are dropped now and then.
    buckets: HashMap<String, Bucket>,
    /// The bucket count after the last clean-up.
    buckets_kept: usize,
}

impl People {
    fn index_session(&mut self, id: u64, sid: Option<&str>) {
        if let Some(sid) = sid {
            self.sessions.entry(sid.to_owned()).or_default().insert(id);
        }
    }

    fn unindex_session(&mut self, id: u64, sid: Option<&str>) {
        if let Some(sid) = sid
            && let Some(ids) = self.sessions.get_mut(sid)
        {
            ids.remove(&id);
            if ids.is_empty() {
                self.sessions.remove(sid);
            }
        }
    }
}

/// One listener of a room: a connection's queue, and how to close it.
#[derive(Debug)]
struct Listener {
    generation: u64,
    out: mpsc::Sender<Outbound>,
    kick: mpsc::Sender<Kick>,
}

/// Rooms and connections.
#[derive(Debug)]
pub(crate) struct Hub {
    limits: UserLimits,
    rooms: Mutex<HashMap<String, HashMap<u64, Listener>>>,
    people: Mutex<People>,
    next_id: AtomicU64,
}

impl Default for Hub {
    fn default() -> Self {
        Self::new(UserLimits::default())
    }
}

/// Locks a mutex, going on with the data if a panic poisoned it (every
/// change keeps the maps and their indexes consistent before it can panic).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A connection's place in the registry; dropping it unregisters.
#[derive(Debug)]
pub(crate) struct Registration {
    hub: Arc<Hub>,
    id: u64,
    sub: String,
    kick: mpsc::Sender<Kick>,
}

impl Registration {
    /// Records the session and issue time of a new token (after an in-band `auth`).
    pub(crate) fn set_token(&self, sid: Option<String>, iat: Option<i64>) {
        let mut people = lock(&self.hub.people);
        let Some(entry) = people.conns.get_mut(&self.id) else {
            return;
        };
        let old = std::mem::replace(&mut entry.sid, sid.clone());
        entry.iat = iat;
        people.unindex_session(self.id, old.as_deref());
        people.index_session(self.id, sid.as_deref());
    }

    /// Starts handing `room`'s new messages to `out`, tagged `generation`,
    /// unless the user listens to as many rooms as allowed. Dropping the
    /// subscription stops it.
    pub(crate) fn subscribe(
        &self,
        room: &str,
        generation: u64,
        out: mpsc::Sender<Outbound>,
    ) -> Result<Subscription, Refused> {
        {
            let mut people = lock(&self.hub.people);
            let user = people.users.entry(self.sub.clone()).or_default();
            if user.rooms >= self.hub.limits.rooms_joined {
                return Err(Refused::TooManyRooms);
            }
            user.rooms += 1;
        }
        let listener = Listener {
            generation,
            out,
            kick: self.kick.clone(),
        };
        lock(&self.hub.rooms)
            .entry(room.to_owned())
            .or_default()
            .insert(self.id, listener);
        Ok(Subscription {
            hub: self.hub.clone(),
            room: room.to_owned(),
            id: self.id,
            sub: self.sub.clone(),
        })
    }

    /// Takes one frame from the user's rate budget.
    pub(crate) fn take_frame(&self) -> Result<(), Refused> {
        let limits = &self.hub.limits;
        let (rate, burst) = (limits.frames_per_second, limits.frame_burst);
        let now = Instant::now();
        let mut people = lock(&self.hub.people);
        if people.buckets.len() >= 2 * people.buckets_kept.max(64) {
            people.buckets.retain(|_, b| !b.is_full(rate, burst, now));
            people.buckets_kept = people.buckets.len();
        }
        people
            .buckets
            .entry(self.sub.clone())
            .or_insert_with(|| Bucket::full(burst, now))
            .take(rate, burst, now)
            .map_err(Refused::RateLimited)
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut people = lock(&self.hub.people);
        if let Some(entry) = people.conns.remove(&self.id) {
            people.unindex_session(self.id, entry.sid.as_deref());
        }
        if let Some(user) = people.users.get_mut(&self.sub) {
            user.conns.remove(&self.id);
            if user.conns.is_empty() && user.rooms == 0 {
                people.users.remove(&self.sub);
            }
        }
    }
}

/// A connection listening to a room; dropping it stops that.
#[derive(Debug)]
pub(crate) struct Subscription {
    hub: Arc<Hub>,
    room: String,
    id: u64,
    sub: String,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        {
            let mut rooms = lock(&self.hub.rooms);
            if let Some(listeners) = rooms.get_mut(&self.room) {
                listeners.remove(&self.id);
                if listeners.is_empty() {
                    rooms.remove(&self.room);
                }
            }
        }
        let mut people = lock(&self.hub.people);
        if let Some(user) = people.users.get_mut(&self.sub) {
            user.rooms = user.rooms.saturating_sub(1);
            if user.conns.is_empty() && user.rooms == 0 {
                people.users.remove(&self.sub);
            }
        }
    }
}

impl Hub {
    pub(crate) fn new(limits: UserLimits) -> Self {
        Self {
            limits,
            rooms: Mutex::default(),
            people: Mutex::default(),
            next_id: AtomicU64::new(0),
        }
    }

    /// Hands a stored message to its room's listeners. A listener whose
    /// queue is full is told to close (4008).
    pub(crate) fn publish(&self, message: &ChatMessage) {
        let rooms = lock(&self.rooms);
        let Some(listeners) = rooms.get(&message.room) else {
            return;
        };
        let message = Arc::new(message.clone());
        for listener in listeners.values() {
            match listener
                .out
                .try_send((listener.generation, message.clone()))
            {
                Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    // A full kick queue means it is closing already.
                    let _ = listener.kick.try_send(TOO_SLOW);
                }
            }
        }
    }

    /// Whether any connection of this node listens to `room`.
    pub(crate) fn has_listeners(&self, room: &str) -> bool {
        lock(&self.rooms).contains_key(room)
    }

    /// The rooms some connection of this node listens to.
    pub(crate) fn listened_rooms(&self) -> Vec<String> {
        lock(&self.rooms).keys().cloned().collect()
    }

    /// Adds a connection (its token's subject, session and issue time, and
    /// whether its client knows other nodes: [`Hub::shed`] moves only
    /// those), unless the subject has as many open as allowed; returns its
    /// registration and where kicks arrive.
    pub(crate) fn register(
        self: &Arc<Self>,
        sub: &str,
        sid: Option<String>,
        iat: Option<i64>,
        movable: bool,
    ) -> Result<(Registration, mpsc::Receiver<Kick>), Refused> {
        let (tx, rx) = mpsc::channel(4);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut people = lock(&self.people);
        let user = people.users.entry(sub.to_owned()).or_default();
        if user.conns.len() >= self.limits.connections {
            if user.conns.is_empty() && user.rooms == 0 {
                people.users.remove(sub);
            }
            return Err(Refused::TooManyConnections);
        }
        user.conns.insert(id);
        people.index_session(id, sid.as_deref());
        people.conns.insert(
            id,
            Entry {
                sid,
                iat,
                movable,
                kick: tx.clone(),
            },
        );
        let registration = Registration {
            hub: self.clone(),
            id,
            sub: sub.to_owned(),
            kick: tx,
        };
        Ok((registration, rx))
    }

    /// Tells the connections of `target` to close; returns how many.
    pub(crate) fn kick(&self, target: Target<'_>, kick: &Kick) -> usize {
        let people = lock(&self.people);
        let (ids, issued_through) = match target {
            Target::Session(sid) => (people.sessions.get(sid), None),
            Target::Subject {
                sub,
                issued_through,
            } => (
                people.users.get(sub).map(|u| &u.conns),
                Some(issued_through),
            ),
        };
        let mut n = 0;
        for entry in ids
            .into_iter()
            .flatten()
            .filter_map(|id| people.conns.get(id))
        {
            let hit = issued_through.is_none_or(|t| entry.iat.is_none_or(|iat| iat <= t));
            // A full queue means it is closing already.
            if hit && entry.kick.try_send(kick.clone()).is_ok() {
                n += 1;
            }
        }
        n
    }

    /// Tells up to `n` connections whose clients know other nodes to close
    /// with `kick` (arbitrary ones: the registry's order); returns how many.
    pub(crate) fn shed(&self, n: usize, kick: &Kick) -> usize {
        let people = lock(&self.people);
        let mut shed = 0;
        for entry in people.conns.values().filter(|e| e.movable) {
            if shed == n {
                break;
            }
            // A full queue means it is closing already.
            if entry.kick.try_send(kick.clone()).is_ok() {
                shed += 1;
            }
        }
        shed
    }

    /// How many connections are open.
    pub(crate) fn connections(&self) -> usize {
        lock(&self.people).conns.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(room: &str, seq: u64) -> ChatMessage {
        ChatMessage {
            room: room.into(),
            seq,
            user: "alice".into(),
            id: seq.to_string(),
            text: String::new(),
            sent_at: 0,
        }
    }

    fn limits() -> UserLimits {
        UserLimits {
            connections: 2,
            rooms_joined: 3,
            ..UserLimits::default()
        }
    }

    #[test]
    fn rooms_deliver_to_their_listeners_only_and_vanish_with_them() {
        let hub = Arc::new(Hub::default());
        let (conn, _kicks) = hub.register("alice", None, None, false).expect("register");
        let (tx_a, mut rx_a) = mpsc::channel(8);
        let (tx_b, mut rx_b) = mpsc::channel(8);
        let a = conn.subscribe("a", 1, tx_a).expect("a");
        let b = conn.subscribe("b", 2, tx_b).expect("b");
        hub.publish(&message("a", 1));
        let (generation, got) = rx_a.try_recv().expect("a gets it");
        assert_eq!((generation, got.seq), (1, 1));
        assert!(rx_b.try_recv().is_err());
        assert_eq!(lock(&hub.rooms).len(), 2);
        drop(a);
        assert_eq!(
            lock(&hub.rooms).len(),
            1,
            "a room without listeners is gone"
        );
        hub.publish(&message("a", 2));
        assert!(rx_a.try_recv().is_err());
        drop(b);
        assert!(lock(&hub.rooms).is_empty());
        drop(conn);
        let people = lock(&hub.people);
        assert!(people.users.is_empty() && people.conns.is_empty());
    }

    #[test]
    fn a_full_queue_kicks_its_connection_as_too_slow() {
        let hub = Arc::new(Hub::default());
        let (conn, mut kicks) = hub.register("alice", None, None, false).expect("register");
        let (tx, _rx) = mpsc::channel(2);
        let _sub = conn.subscribe("a", 1, tx).expect("subscribe");
        for seq in 1..=2 {
            hub.publish(&message("a", seq));
        }
        assert!(kicks.try_recv().is_err(), "not full yet");
        hub.publish(&message("a", 3));
        assert_eq!(kicks.try_recv().expect("kicked"), TOO_SLOW);
    }

    #[test]
    fn connections_and_rooms_are_capped_per_user() {
        let hub = Arc::new(Hub::new(limits()));
        let (c1, _k1) = hub.register("alice", None, None, false).expect("first");
        let (c2, _k2) = hub.register("alice", None, None, false).expect("second");
        assert_eq!(
            hub.register("alice", None, None, false).err(),
            Some(Refused::TooManyConnections)
        );
        let (_bob, _kb) = hub
            .register("bob", None, None, false)
            .expect("bob is not alice");
        let (tx, _rx) = mpsc::channel(8);
        let s1 = c1.subscribe("a", 1, tx.clone()).expect("1");
        let _s2 = c1.subscribe("b", 2, tx.clone()).expect("2");
        let _s3 = c2
            .subscribe("c", 3, tx.clone())
            .expect("3: counted across connections");
        assert_eq!(
            c2.subscribe("d", 4, tx.clone()).err(),
            Some(Refused::TooManyRooms)
        );
        drop(s1);
        let _s4 = c2.subscribe("d", 4, tx).expect("room again after a leave");
        drop(c1);
        let (_c3, _k3) = hub
            .register("alice", None, None, false)
            .expect("a place again after a close");
    }

    #[tokio::test(start_paused = true)]
    async fn frames_past_the_burst_wait_for_the_rate_and_reconnecting_does_not_refill() {
        let hub = Arc::new(Hub::new(UserLimits {
            frames_per_second: 2,
            frame_burst: 4,
            ..UserLimits::default()
        }));
        let (conn, _k) = hub.register("alice", None, None, false).expect("register");
        for _ in 0..4 {
            conn.take_frame().expect("within the burst");
        }
        assert_eq!(
            conn.take_frame(),
            Err(Refused::RateLimited(Duration::from_secs(2))),
            "empty: full again in 4 / 2 s"
        );
        drop(conn);
        let (conn, _k) = hub.register("alice", None, None, false).expect("again");
        assert!(
            conn.take_frame().is_err(),
            "a new connection has no new budget"
        );
        tokio::time::advance(Duration::from_millis(500)).await;
        conn.take_frame().expect("one token back after 0.5 s");
        assert!(conn.take_frame().is_err());
        let (bob, _kb) = hub.register("bob", None, None, false).expect("bob");
        bob.take_frame().expect("bob has his own bucket");
    }

    #[test]
    fn kicks_reach_the_session_or_the_subject_and_registrations_unregister() {
        let hub = Arc::new(Hub::default());
        let (r1, mut k1) = hub
            .register("alice", Some("s1".into()), Some(10), false)
            .expect("r1");
        let (r2, mut k2) = hub
            .register("alice", Some("s2".into()), Some(10), false)
            .expect("r2");
        let (_r3, mut k3) = hub
            .register("bob", Some("s3".into()), Some(10), false)
            .expect("r3");
        assert_eq!(hub.connections(), 3);
        let kick = Kick {
            code: 4003,
            reason: "signed out",
        };
        assert_eq!(hub.kick(Target::Session("s1"), &kick), 1);
        assert_eq!(k1.try_recv().expect("kicked"), kick);
        assert!(k2.try_recv().is_err());
        r2.set_token(Some("s1".into()), Some(20));
        assert_eq!(hub.kick(Target::Session("s1"), &kick), 2);
        assert_eq!(hub.kick(Target::Session("s2"), &kick), 0, "s2 left r2");
        let alice_through = |issued_through| Target::Subject {
            sub: "alice",
            issued_through,
        };
        // A subject's logout reaches only tokens issued up to its `iat`.
        assert_eq!(hub.kick(alice_through(9), &kick), 0);
        assert_eq!(hub.kick(alice_through(10), &kick), 1);
        assert_eq!(hub.kick(alice_through(20), &kick), 2);
        assert!(k3.try_recv().is_err());
        drop(r1);
        assert_eq!(hub.connections(), 2);
        drop(k2);
        drop(r2);
        assert!(!lock(&hub.people).sessions.contains_key("s1"));
    }

    #[test]
    fn shedding_moves_only_clients_that_know_other_nodes_and_at_most_n() {
        let hub = Arc::new(Hub::new(UserLimits {
            connections: 100,
            ..limits()
        }));
        let mut movable = Vec::new();
        for _ in 0..5 {
            movable.push(hub.register("alice", None, None, true).expect("movable"));
        }
        let (_fixed, mut fixed_kicks) = hub.register("bob", None, None, false).expect("fixed");
        let kick = Kick {
            code: 1012,
            reason: "rebalancing",
        };
        assert_eq!(hub.shed(3, &kick), 3);
        let kicked = movable
            .iter_mut()
            .map(|(_, kicks)| kicks.try_recv())
            .filter(|got| got.as_ref().is_ok_and(|k| *k == kick))
            .count();
        assert_eq!(kicked, 3);
        assert!(fixed_kicks.try_recv().is_err(), "one URL: left alone");
        // Asked for more than there are: every movable one, no other.
        assert_eq!(hub.shed(100, &kick), 5, "the kicked ones are still open");
        assert!(fixed_kicks.try_recv().is_err());
    }
}
