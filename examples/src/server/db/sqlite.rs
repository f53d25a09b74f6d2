//! Message storage in SQLite (one node).
//!
//! One connection behind a mutex, used from `spawn_blocking`, so SQLite never
//! blocks the async runtime and writes are serialized (the per-room sequence
//! is `max + 1` inside the inserting transaction). A file database uses WAL
//! with `synchronous=FULL`: a commit is on disk before the server acknowledges
//! it, so a server killed right after an ack still has the message. A batch
//! of messages (see the writer in `db`) is one transaction: one fsync.
//!
//! The schema is migrated with `PRAGMA user_version`: each entry of
//! [`MIGRATIONS`] takes the database from version `i` to `i + 1`.

use std::path::Path;
use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

use super::{Backend, NewMessage, StoreError, Stored};
use crate::protocol::ChatMessage;
use crate::server::config::Database;
use crate::server::error::ServerError;

/// The schema steps, in order; the database's `user_version` counts those applied.
const MIGRATIONS: &[&str] = &[
    // 1: messages, with a per-room sequence and idempotent client ids.
    "CREATE TABLE messages (
        room       TEXT    NOT NULL,
        seq        INTEGER NOT NULL,
        sender_sub TEXT    NOT NULL,
        user       TEXT    NOT NULL,
        client_id  TEXT    NOT NULL,
        text       TEXT    NOT NULL,
        sent_at    INTEGER NOT NULL,
        PRIMARY KEY (room, seq),
        UNIQUE (sender_sub, client_id)
    );",
    // 2: the rooms each user created (posted the first message of), counted
    // for the per-user cap without reading the user's every message.
    "CREATE INDEX messages_rooms_created ON messages (sender_sub) WHERE seq = 1;",
];

/// The schema version this server writes.
pub(crate) const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// The SQLite engine. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Sqlite {
    conn: Arc<Mutex<Connection>>,
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt)
}

impl Sqlite {
    /// Opens (creating it if needed) and migrates the database. Blocking.
    pub(crate) fn open(db: &Database) -> Result<Self, ServerError> {
        let path = db.label();
        let sqlite = |source| ServerError::Database {
            path: path.to_owned(),
            source,
        };
        let mut conn = match db {
            Database::Memory => Connection::open_in_memory().map_err(sqlite)?,
            Database::Postgres(_) => {
                return Err(ServerError::Config("not an SQLite database".to_owned()));
            }
            Database::File(file) => {
                let conn = Connection::open(file).map_err(sqlite)?;
                conn.busy_timeout(std::time::Duration::from_secs(5))
                    .map_err(sqlite)?;
                let mode: String = conn
                    .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
                    .map_err(sqlite)?;
                if !mode.eq_ignore_ascii_case("wal") {
                    tracing::warn!(%mode, "the database did not switch to WAL");
                }
                conn.pragma_update(None, "synchronous", "FULL")
                    .map_err(sqlite)?;
                conn
            }
        };
        migrate(&mut conn, &path)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }
}

/// Applies the migrations the database lacks, each in its own transaction.
fn migrate(conn: &mut Connection, path: &Path) -> Result<(), ServerError> {
    let sqlite = |source| ServerError::Database {
        path: path.to_owned(),
        source,
    };
    let found: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(sqlite)?;
    if found > SCHEMA_VERSION {
        return Err(ServerError::SchemaTooNew {
            path: path.to_owned(),
            found,
            known: SCHEMA_VERSION,
        });
    }
    for (version, sql) in (1..)
        .zip(MIGRATIONS)
        .skip(usize::try_from(found).unwrap_or(0))
    {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Exclusive)
            .map_err(sqlite)?;
        tx.execute_batch(sql).map_err(sqlite)?;
        tx.pragma_update(None, "user_version", version)
            .map_err(sqlite)?;
        tx.commit().map_err(sqlite)?;
        tracing::info!(version, path = %path.display(), "migrated the database");
    }
    Ok(())
}

/// Stores `msg` in the open transaction `tx` unless its sender already used
/// its id. A message that would create a room is refused
/// ([`Stored::TooManyRooms`]) when its sender created `max_rooms_created`
/// rooms already.
fn insert_one(
    tx: &Transaction<'_>,
    msg: &NewMessage,
    max_rooms_created: u64,
) -> Result<Stored, StoreError> {
    let existing: Option<(String, i64)> = tx
        .prepare_cached("SELECT room, seq FROM messages WHERE sender_sub = ?1 AND client_id = ?2")?
        .query_row(params![msg.sender_sub, msg.client_id], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .optional()?;
    if let Some((room, seq)) = existing {
        return Ok(Stored::Existing {
            room,
            seq: to_u64(seq)?,
        });
    }
    let seq: i64 = tx
        .prepare_cached("SELECT COALESCE(MAX(seq), 0) + 1 FROM messages WHERE room = ?1")?
        .query_row(params![msg.room], |row| row.get(0))?;
    if seq == 1 {
        let created: i64 = tx
            .prepare_cached("SELECT COUNT(*) FROM messages WHERE sender_sub = ?1 AND seq = 1")?
            .query_row(params![msg.sender_sub], |row| row.get(0))?;
        if to_u64(created)? >= max_rooms_created {
            return Ok(Stored::TooManyRooms);
        }
    }
    tx.prepare_cached(
        "INSERT INTO messages (room, seq, sender_sub, user, client_id, text, sent_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        msg.room,
        seq,
        msg.sender_sub,
        msg.user,
        msg.client_id,
        msg.text,
        to_i64(msg.sent_at)
    ])?;
    Ok(Stored::New(msg.stored(to_u64(seq)?)))
}

/// Stores `batch` in one transaction; the outcomes exist only once it has
/// committed (a failed commit is an error, and nothing is kept).
fn commit_batch(
    conn: &mut Connection,
    batch: &[NewMessage],
    max_rooms_created: u64,
) -> Result<Vec<Stored>, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let outcomes = batch
        .iter()
        .map(|msg| insert_one(&tx, msg, max_rooms_created))
        .collect::<Result<Vec<_>, _>>()?;
    tx.commit()?;
    Ok(outcomes)
}

fn last_seq(conn: &Connection, room: &str) -> Result<u64, StoreError> {
    let seq: i64 = conn.query_row(
        "SELECT COALESCE(MAX(seq), 0) FROM messages WHERE room = ?1",
        params![room],
        |row| row.get(0),
    )?;
    to_u64(seq)
}

/// Up to `limit` messages of `room` with `after < seq <= upto`, in order.
fn page(
    conn: &Connection,
    room: &str,
    after: u64,
    upto: u64,
    limit: usize,
) -> Result<Vec<ChatMessage>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, user, client_id, text, sent_at FROM messages
         WHERE room = ?1 AND seq > ?2 AND seq <= ?3 ORDER BY seq LIMIT ?4",
    )?;
    let rows = stmt.query_map(
        params![room, to_i64(after), to_i64(upto), to_i64(limit as u64)],
        |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, String>(3)?,
                row.get::<_, i64>(4)?,
            ))
        },
    )?;
    let mut out = Vec::new();
    for row in rows {
        let (seq, user, id, text, sent_at) = row?;
        out.push(ChatMessage {
            room: room.to_owned(),
            seq: to_u64(seq)?,
            user,
            id,
            text,
            sent_at: to_u64(sent_at)?,
        });
    }
    Ok(out)
}

impl Sqlite {
    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().map_err(|_| StoreError::Poisoned)?;
            f(&mut conn)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }
}

impl Backend for Sqlite {
    fn commit(
        &self,
        batch: Vec<NewMessage>,
        max_rooms_created: u64,
    ) -> BoxFuture<'_, Result<Vec<Stored>, StoreError>> {
        Box::pin(self.with(move |conn| commit_batch(conn, &batch, max_rooms_created)))
    }

    fn last_seq<'a>(&'a self, room: &'a str) -> BoxFuture<'a, Result<u64, StoreError>> {
        let room = room.to_owned();
        Box::pin(self.with(move |conn| last_seq(conn, &room)))
    }

    fn page<'a>(
        &'a self,
        room: &'a str,
        after: u64,
        upto: u64,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<ChatMessage>, StoreError>> {
        let room = room.to_owned();
        Box::pin(self.with(move |conn| page(conn, &room, after, upto, limit)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(room: &str, sub: &str, id: &str) -> NewMessage {
        NewMessage {
            room: room.into(),
            sender_sub: sub.into(),
            user: sub.into(),
            client_id: id.into(),
            text: format!("text of {id}"),
            sent_at: 1,
        }
    }

    fn memory() -> Connection {
        let mut conn = Connection::open_in_memory().expect("open");
        migrate(&mut conn, Path::new(":memory:")).expect("migrate");
        conn
    }

    /// Stores one message in a transaction of its own.
    fn insert(conn: &mut Connection, m: &NewMessage, cap: u64) -> Result<Stored, StoreError> {
        let mut out = commit_batch(conn, std::slice::from_ref(m), cap)?;
        Ok(out.pop().expect("one outcome"))
    }

    #[test]
    fn sequences_are_per_room_and_ids_idempotent_per_sender() {
        let mut conn = memory();
        let mut announced = Vec::new();
        let mut put = |conn: &mut Connection, m: NewMessage| {
            let stored = insert(conn, &m, u64::MAX).expect("insert");
            if let Stored::New(c) = &stored {
                announced.push(c.seq);
            }
            stored
        };
        assert!(matches!(put(&mut conn, msg("a", "alice", "1")), Stored::New(m) if m.seq == 1));
        assert!(matches!(put(&mut conn, msg("a", "bob", "1")), Stored::New(m) if m.seq == 2));
        assert!(matches!(put(&mut conn, msg("b", "alice", "2")), Stored::New(m) if m.seq == 1));
        assert_eq!(
            put(&mut conn, msg("a", "alice", "1")),
            Stored::Existing {
                room: "a".into(),
                seq: 1
            }
        );
        assert_eq!(announced, [1, 2, 1], "a resend is not announced");
        assert_eq!(last_seq(&conn, "a").expect("last"), 2);
        assert_eq!(last_seq(&conn, "none").expect("last"), 0);
    }

    #[test]
    fn a_failed_commit_stores_nothing_and_announces_nothing() {
        let mut conn = memory();
        // A deferred foreign key violation: the INSERT succeeds, the COMMIT fails.
        conn.execute_batch(
            "PRAGMA foreign_keys = ON;
             CREATE TABLE parent (id INTEGER PRIMARY KEY);
             CREATE TABLE child (p INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED);
             CREATE TRIGGER fail_commit AFTER INSERT ON messages BEGIN
                 INSERT INTO child VALUES (42);
             END;",
        )
        .expect("set up the failing commit");
        let batch = [msg("a", "alice", "1"), msg("b", "bob", "1")];
        let result = commit_batch(&mut conn, &batch, u64::MAX);
        assert!(
            matches!(result, Err(StoreError::Sqlite(_))),
            "no `Stored` (so no ack) without a commit: {result:?}"
        );
        assert_eq!(last_seq(&conn, "a").expect("last"), 0, "rolled back");
        assert_eq!(last_seq(&conn, "b").expect("last"), 0, "the whole batch");
        // Once commits work again, the same id is stored as new.
        conn.execute_batch("DROP TRIGGER fail_commit;")
            .expect("drop");
        let stored = commit_batch(&mut conn, &batch, u64::MAX).expect("stored");
        assert!(
            matches!(&stored[..], [Stored::New(a), Stored::New(b)] if a.seq == 1 && b.seq == 1)
        );
    }

    #[test]
    fn a_batch_numbers_each_room_in_order_and_sees_its_own_resends() {
        let mut conn = memory();
        let batch = [
            msg("a", "alice", "1"),
            msg("b", "alice", "2"),
            msg("a", "bob", "1"),
            msg("a", "alice", "1"),
            msg("a", "alice", "3"),
        ];
        let out = commit_batch(&mut conn, &batch, u64::MAX).expect("stored");
        let seqs: Vec<_> = out
            .iter()
            .map(|o| match o {
                Stored::New(m) => (m.room.clone(), m.seq),
                Stored::Existing { room, seq } => (format!("{room} again"), *seq),
                Stored::TooManyRooms => panic!("capped"),
            })
            .collect();
        assert_eq!(
            seqs,
            [
                ("a".to_owned(), 1),
                ("b".to_owned(), 1),
                ("a".to_owned(), 2),
                ("a again".to_owned(), 1),
                ("a".to_owned(), 3)
            ]
        );
    }

    #[test]
    fn a_user_creates_only_so_many_rooms_but_posts_anywhere_that_exists() {
        let mut conn = memory();
        let put = |conn: &mut Connection, m: NewMessage| insert(conn, &m, 2).expect("insert");
        assert!(matches!(
            put(&mut conn, msg("a", "alice", "1")),
            Stored::New(_)
        ));
        assert!(matches!(
            put(&mut conn, msg("b", "alice", "2")),
            Stored::New(_)
        ));
        assert_eq!(put(&mut conn, msg("c", "alice", "3")), Stored::TooManyRooms);
        assert_eq!(last_seq(&conn, "c").expect("last"), 0, "nothing stored");
        assert!(
            matches!(put(&mut conn, msg("a", "alice", "4")), Stored::New(m) if m.seq == 2),
            "rooms that exist take more messages"
        );
        assert!(
            matches!(put(&mut conn, msg("c", "bob", "1")), Stored::New(m) if m.seq == 1),
            "the cap is per user"
        );
        assert!(
            matches!(put(&mut conn, msg("c", "alice", "3")), Stored::New(m) if m.seq == 2),
            "bob created c"
        );
    }

    #[test]
    fn pages_are_bounded_on_both_sides() {
        let mut conn = memory();
        for i in 0..10 {
            insert(&mut conn, &msg("a", "alice", &i.to_string()), 1).expect("insert");
        }
        let seqs = |v: Vec<ChatMessage>| v.iter().map(|m| m.seq).collect::<Vec<_>>();
        assert_eq!(
            seqs(page(&conn, "a", 3, 10, 4).expect("page")),
            [4, 5, 6, 7]
        );
        assert_eq!(seqs(page(&conn, "a", 7, 8, 4).expect("page")), [8]);
        assert!(page(&conn, "a", 10, 10, 4).expect("page").is_empty());
        let first = page(&conn, "a", 0, 1, 1).expect("page");
        assert_eq!(first[0].id, "0");
        assert_eq!(first[0].text, "text of 0");
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let mut conn = Connection::open_in_memory().expect("open");
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .expect("set");
        assert!(matches!(
            migrate(&mut conn, Path::new(":memory:")),
            Err(ServerError::SchemaTooNew { .. })
        ));
    }

    #[test]
    fn migrating_twice_is_a_no_op() {
        let mut conn = memory();
        migrate(&mut conn, Path::new(":memory:")).expect("again");
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .expect("version");
        assert_eq!(version, SCHEMA_VERSION);
    }
}
