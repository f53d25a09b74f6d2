//! What every client took against what the database committed: nothing
//! lost (each committed message of a room reached each of its members),
//! nothing doubled (no second copy outside a resume's expected overlap, no
//! message stored twice), every send acknowledged under the sequence number
//! it was committed with.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::Ordering;

use sessionkit_tests::postgres::TestDatabase;

use super::member::{Member, lock, parse_id, room_name};

/// Each room's last sequence number, from the database.
pub(crate) async fn room_heads(db: &TestDatabase) -> HashMap<String, u64> {
    db.client()
        .await
        .query("SELECT room, last_seq FROM rooms", &[])
        .await
        .expect("read rooms")
        .iter()
        .map(|r| {
            let seq: i64 = r.get(1);
            (r.get(0), u64::try_from(seq).unwrap_or(0))
        })
        .collect()
}

/// Every client's messages against the committed rows.
#[derive(Debug, Default, Clone)]
pub(crate) struct Check {
    /// Rows committed.
    pub(crate) committed: usize,
    /// Rooms whose sequence numbers are not exactly 1..=n.
    pub(crate) db_gaps: usize,
    /// A sender's message stored under two sequence numbers.
    pub(crate) stored_twice: usize,
    /// Committed messages a member of the room never took, summed over members.
    pub(crate) lost: usize,
    /// Second copies outside a resume overlap, summed over members.
    pub(crate) duplicates: u64,
    /// A member took a message under a sequence number the database holds
    /// another message (or none) at.
    pub(crate) mismatched: usize,
    /// Messages sent but never acknowledged.
    pub(crate) unacked: u64,
    /// Acknowledged under a sequence number the database does not hold
    /// that message at (acknowledged, then lost).
    pub(crate) acked_not_committed: usize,
    /// Two acknowledgements of one message with different numbers.
    pub(crate) ack_conflicts: u64,
    /// Expected re-deliveries after a resume (see `Seen::overlap`).
    pub(crate) overlap: u64,
    pub(crate) gaps: u64,
    pub(crate) short_history: u64,
    /// Messages sent, and acknowledged.
    pub(crate) sent: u64,
    pub(crate) acked: usize,
    /// `error` frames by code.
    pub(crate) errors: BTreeMap<String, u64>,
}

impl Check {
    pub(crate) async fn run(db: &TestDatabase, members: &[Member]) -> Self {
        let rows = db
            .client()
            .await
            .query(
                "SELECT room, seq, client_id FROM messages ORDER BY room, seq",
                &[],
            )
            .await
            .expect("read messages");
        let mut rooms: HashMap<String, Vec<(u64, String)>> = HashMap::new();
        for r in &rows {
            let seq: i64 = r.get(1);
            rooms
                .entry(r.get(0))
                .or_default()
                .push((u64::try_from(seq).unwrap_or(0), r.get(2)));
        }
        let mut c = Self {
            committed: rows.len(),
            ..Self::default()
        };
        // seq of each committed (sender, k), per room.
        let mut at: HashMap<(usize, u64), u64> = HashMap::new();
        for list in rooms.values() {
            if list
                .iter()
                .enumerate()
                .any(|(i, (seq, _))| *seq != i as u64 + 1)
            {
                c.db_gaps += 1;
            }
            for (seq, id) in list {
                let key = parse_id(id).unwrap_or((usize::MAX, 0));
                if at.insert(key, *seq).is_some() {
                    c.stored_twice += 1;
                }
            }
        }
        for m in members {
            let seen = lock(&m.seen);
            let empty = Vec::new();
            let want = rooms.get(&room_name(m.room)).unwrap_or(&empty);
            let took: HashMap<u64, (usize, u64)> = seen
                .received
                .iter()
                .map(|(seq, s, k)| (*seq, (*s, *k)))
                .collect();
            let committed: HashSet<u64> = want.iter().map(|(seq, _)| *seq).collect();
            c.lost += want
                .iter()
                .filter(|(seq, _)| !took.contains_key(seq))
                .count();
            c.mismatched += want
                .iter()
                .filter(|(seq, id)| took.get(seq).is_some_and(|got| parse_id(id) != Some(*got)))
                .count();
            c.mismatched += took.keys().filter(|seq| !committed.contains(seq)).count();
            c.duplicates += seen.duplicates;
            c.overlap += seen.overlap;
            c.gaps += seen.gaps;
            c.short_history += seen.short_history;
            for (code, n) in &seen.errors {
                *c.errors.entry(code.clone()).or_default() += n;
            }
            drop(seen);
            if let Some(outbox) = &m.outbox {
                let sent = outbox.sent.load(Ordering::Relaxed);
                let acked = lock(&outbox.acked);
                c.sent += sent;
                c.acked += acked.len();
                c.unacked += sent.saturating_sub(acked.len() as u64);
                c.ack_conflicts += outbox.conflicts.load(Ordering::Relaxed);
                c.acked_not_committed += acked
                    .iter()
                    .filter(|(k, seq)| at.get(&(m.index, **k)) != Some(seq))
                    .count();
            }
        }
        c
    }

    /// Nothing lost, nothing doubled, every send acknowledged once.
    pub(crate) fn clean(&self) -> bool {
        self.lost == 0
            && self.duplicates == 0
            && self.stored_twice == 0
            && self.mismatched == 0
            && self.db_gaps == 0
            && self.unacked == 0
            && self.acked_not_committed == 0
            && self.ack_conflicts == 0
            && self.gaps == 0
    }
}
