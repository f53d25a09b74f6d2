//! The live state shared by connections: one broadcast channel per room with
//! listeners, and the registry of open connections by subject and session,
//! so a back-channel logout (or a shutdown) can reach them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{broadcast, mpsc};

use crate::protocol::ChatMessage;

/// How many messages a room buffers for its slowest listener before that
/// listener is told it lagged (and its connection closed with 4008).
pub(crate) const ROOM_BUFFER: usize = 1024;

/// An order to close a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Kick {
    /// The WebSocket close code.
    pub(crate) code: u16,
    /// The close reason.
    pub(crate) reason: &'static str,
}

#[derive(Debug)]
struct Entry {
    sub: String,
    sid: Option<String>,
    /// The `iat` of the connection's current token, when it has one.
    iat: Option<i64>,
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

/// Rooms and connections.
#[derive(Debug, Default)]
pub(crate) struct Hub {
    rooms: Mutex<HashMap<String, broadcast::Sender<Arc<ChatMessage>>>>,
    conns: Mutex<HashMap<u64, Entry>>,
    next_id: AtomicU64,
}

/// Locks a mutex, going on with the data if a panic poisoned it (the maps
/// stay consistent: every change is a single insert or remove).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A connection's place in the registry; dropping it unregisters.
#[derive(Debug)]
pub(crate) struct Registration {
    hub: Arc<Hub>,
    id: u64,
}

impl Registration {
    /// Records the session and issue time of a new token (after an in-band `auth`).
    pub(crate) fn set_token(&self, sid: Option<String>, iat: Option<i64>) {
        if let Some(entry) = lock(&self.hub.conns).get_mut(&self.id) {
            entry.sid = sid;
            entry.iat = iat;
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        lock(&self.hub.conns).remove(&self.id);
    }
}

impl Hub {
    /// Starts listening to `room`'s new messages.
    pub(crate) fn subscribe(&self, room: &str) -> broadcast::Receiver<Arc<ChatMessage>> {
        let mut rooms = lock(&self.rooms);
        rooms.retain(|_, tx| tx.receiver_count() > 0);
        rooms
            .entry(room.to_owned())
            .or_insert_with(|| broadcast::channel(ROOM_BUFFER).0)
            .subscribe()
    }

    /// Announces a stored message to its room's listeners.
    pub(crate) fn publish(&self, message: &ChatMessage) {
        let mut rooms = lock(&self.rooms);
        if let Some(tx) = rooms.get(&message.room)
            && tx.send(Arc::new(message.clone())).is_err()
        {
            rooms.remove(&message.room);
        }
    }

    /// Adds a connection (its token's subject, session and issue time);
    /// returns its registration and where kicks arrive.
    pub(crate) fn register(
        self: &Arc<Self>,
        sub: &str,
        sid: Option<String>,
        iat: Option<i64>,
    ) -> (Registration, mpsc::Receiver<Kick>) {
        let (tx, rx) = mpsc::channel(4);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        lock(&self.conns).insert(
            id,
            Entry {
                sub: sub.to_owned(),
                sid,
                iat,
                kick: tx,
            },
        );
        let registration = Registration {
            hub: self.clone(),
            id,
        };
        (registration, rx)
    }

    /// Tells the connections of `target` to close; returns how many.
    pub(crate) fn kick(&self, target: Target<'_>, kick: &Kick) -> usize {
        let conns = lock(&self.conns);
        let mut n = 0;
        for entry in conns.values() {
            let hit = match target {
                Target::Session(sid) => entry.sid.as_deref() == Some(sid),
                Target::Subject {
                    sub,
                    issued_through,
                } => entry.sub == sub && entry.iat.is_none_or(|iat| iat <= issued_through),
            };
            // A full queue means it is closing already.
            if hit && entry.kick.try_send(kick.clone()).is_ok() {
                n += 1;
            }
        }
        n
    }

    /// How many connections are open.
    pub(crate) fn connections(&self) -> usize {
        lock(&self.conns).len()
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

    #[test]
    fn rooms_deliver_to_their_listeners_only() {
        let hub = Hub::default();
        let mut a = hub.subscribe("a");
        let mut b = hub.subscribe("b");
        hub.publish(&message("a", 1));
        assert_eq!(a.try_recv().expect("a gets it").seq, 1);
        assert!(b.try_recv().is_err());
        drop(a);
        hub.publish(&message("a", 2));
        assert_eq!(
            lock(&hub.rooms).len(),
            1,
            "a room without listeners is dropped"
        );
    }

    #[test]
    fn kicks_reach_the_session_or_the_subject_and_registrations_unregister() {
        let hub = Arc::new(Hub::default());
        let (r1, mut k1) = hub.register("alice", Some("s1".into()), Some(10));
        let (r2, mut k2) = hub.register("alice", Some("s2".into()), Some(10));
        let (_r3, mut k3) = hub.register("bob", Some("s3".into()), Some(10));
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
    }
}
