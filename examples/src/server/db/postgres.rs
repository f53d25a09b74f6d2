//! Message storage in PostgreSQL, shared by any number of chat-server nodes.
//!
//! - Sequence numbers: a `rooms (room, last_seq)` row per room, incremented
//!   with `UPDATE … RETURNING` inside the transaction that inserts the
//!   message. The row stays locked until the commit, so two nodes writing
//!   to one room take turns: numbers have no gap (a transaction that rolls
//!   back gives its number back with it) and no duplicate, and a room's
//!   messages commit in sequence order.
//! - Idempotent resends: `UNIQUE (sender_sub, client_id)`. A resend racing
//!   the original on another node waits for it (`ON CONFLICT DO NOTHING`),
//!   gives back the number it took, and answers with the stored one.
//! - One round trip per batch: the batch goes to the `chat_post` function
//!   as arrays, in room order (so two nodes' batches lock rooms in one
//!   order and cannot deadlock), in one implicit transaction.
//! - Fan-out: `chat_post` calls `pg_notify('chat_messages', …)` for each new
//!   message; PostgreSQL delivers notifications only after the commit, in
//!   commit order. The payload is the message as JSON (the protocol's
//!   `ChatMessage`) when it fits in 7,900 bytes (NOTIFY's limit is 8,000),
//!   otherwise `{"room","seq"}` and the node reads the message. Logouts go
//!   into `revocations` and out on `chat_revocations`.
//! - Migrations: `chat_schema (version)`, applied under an advisory lock so
//!   nodes starting together migrate once.
//! - The nodes' loads, for rebalancing (`server::balance` decides; this
//!   file only stores and sums): `chat_nodes (node, connections, seen_at)`,
//!   created if missing rather than by a migration, so a node of the
//!   version before it still starts on the same database.
//!
//! The pool (`deadpool-postgres`) drops a connection that broke and opens a
//! new one on the next use, so the node recovers by itself when PostgreSQL
//! comes back; every statement has a deadline ([`QUERY_TIMEOUT`]).
//!
//! (Over 500 lines: one concern, what the nodes share in PostgreSQL; about
//! 120 lines are the schema and its batch function in SQL, kept beside the
//! Rust that calls them.)

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use futures_util::future::BoxFuture;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, NoTls, Notification};

use super::{Backend, NewMessage, Revocation, StoreError, Stored};
use crate::protocol::ChatMessage;
use crate::server::config::PostgresUrl;
use crate::server::error::ServerError;

/// The channel new messages are announced on.
pub(crate) const MESSAGES_CHANNEL: &str = "chat_messages";
/// The channel back-channel logouts are announced on.
pub(crate) const REVOCATIONS_CHANNEL: &str = "chat_revocations";
/// The longest a statement (or getting a connection) may take.
pub(crate) const QUERY_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections per node.
const POOL_SIZE: usize = 8;
/// The advisory lock that serializes migrations across nodes.
const MIGRATION_LOCK: i64 = 0x6368_6174_6462; // "chatdb"

/// The schema steps, in order; `chat_schema.version` counts those applied.
const MIGRATIONS: &[&str] = &[
    // 1: rooms with their last sequence number, messages, logouts, and the
    // batch insert.
    r"
CREATE TABLE rooms (
    room        TEXT   PRIMARY KEY,
    last_seq    BIGINT NOT NULL,
    creator_sub TEXT   NOT NULL
);
CREATE INDEX rooms_creator ON rooms (creator_sub);
CREATE TABLE messages (
    room       TEXT   NOT NULL,
    seq        BIGINT NOT NULL,
    sender_sub TEXT   NOT NULL,
    user_name  TEXT   NOT NULL,
    client_id  TEXT   NOT NULL,
    text       TEXT   NOT NULL,
    sent_at    BIGINT NOT NULL,
    PRIMARY KEY (room, seq),
    UNIQUE (sender_sub, client_id)
);
CREATE TABLE revocations (
    kind     TEXT   NOT NULL CHECK (kind IN ('sid', 'sub')),
    key      TEXT   NOT NULL,
    cutoff   BIGINT NOT NULL,
    until_at BIGINT NOT NULL,
    PRIMARY KEY (kind, key)
);
CREATE FUNCTION chat_post(
    p_room TEXT[], p_sender TEXT[], p_user TEXT[], p_client TEXT[], p_text TEXT[],
    p_sent BIGINT[], p_max_rooms BIGINT)
RETURNS TABLE (o_outcome TEXT, o_room TEXT, o_seq BIGINT)
LANGUAGE plpgsql AS $$
DECLARE
    k INT;
    v_room TEXT;
    v_seq BIGINT;
    v_created BIGINT;
    v_rows INT;
    v_payload TEXT;
BEGIN
    FOR k IN 1 .. coalesce(array_length(p_room, 1), 0) LOOP
        SELECT m.room, m.seq INTO v_room, v_seq FROM messages m
         WHERE m.sender_sub = p_sender[k] AND m.client_id = p_client[k];
        IF FOUND THEN
            o_outcome := 'existing'; o_room := v_room; o_seq := v_seq;
            RETURN NEXT;
            CONTINUE;
        END IF;
        UPDATE rooms r SET last_seq = r.last_seq + 1 WHERE r.room = p_room[k]
         RETURNING r.last_seq INTO v_seq;
        IF NOT FOUND THEN
            SELECT count(*) INTO v_created FROM rooms r WHERE r.creator_sub = p_sender[k];
            IF v_created >= p_max_rooms THEN
                o_outcome := 'too_many_rooms'; o_room := p_room[k]; o_seq := 0;
                RETURN NEXT;
                CONTINUE;
            END IF;
            INSERT INTO rooms AS r (room, last_seq, creator_sub)
                 VALUES (p_room[k], 1, p_sender[k])
            ON CONFLICT (room) DO UPDATE SET last_seq = r.last_seq + 1
            RETURNING r.last_seq INTO v_seq;
        END IF;
        INSERT INTO messages (room, seq, sender_sub, user_name, client_id, text, sent_at)
             VALUES (p_room[k], v_seq, p_sender[k], p_user[k], p_client[k], p_text[k], p_sent[k])
        ON CONFLICT (sender_sub, client_id) DO NOTHING;
        GET DIAGNOSTICS v_rows = ROW_COUNT;
        IF v_rows = 0 THEN
            -- Stored meanwhile by another node: give the number back (this
            -- transaction holds the room's row since its UPDATE).
            UPDATE rooms r SET last_seq = r.last_seq - 1 WHERE r.room = p_room[k];
            SELECT m.room, m.seq INTO v_room, v_seq FROM messages m
             WHERE m.sender_sub = p_sender[k] AND m.client_id = p_client[k];
            o_outcome := 'existing'; o_room := v_room; o_seq := v_seq;
            RETURN NEXT;
            CONTINUE;
        END IF;
        v_payload := json_build_object('room', p_room[k], 'seq', v_seq, 'user', p_user[k],
            'id', p_client[k], 'text', p_text[k], 'sent_at', p_sent[k])::text;
        IF octet_length(v_payload) > 7900 THEN
            v_payload := json_build_object('room', p_room[k], 'seq', v_seq)::text;
        END IF;
        PERFORM pg_notify('chat_messages', v_payload);
        o_outcome := 'new'; o_room := p_room[k]; o_seq := v_seq;
        RETURN NEXT;
    END LOOP;
END;
$$;
",
];

/// The nodes and how many connections each holds, for rebalancing. Not a
/// migration: created if missing by every node that starts, so a node of the
/// version before it (schema 1, which knows nothing of the table) can still
/// start on a database that has it, in a rolling upgrade or a rollback.
const NODES_TABLE: &str = r"
CREATE TABLE IF NOT EXISTS chat_nodes (
    node        TEXT        PRIMARY KEY,
    connections BIGINT      NOT NULL,
    seen_at     TIMESTAMPTZ NOT NULL
);
";

/// The nodes that reported lately and the connections they hold in all,
/// and how many went silent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FleetLoad {
    /// Nodes that reported within the last interval and a half.
    pub(crate) nodes: u64,
    /// The connections those hold.
    pub(crate) connections: u64,
    /// Nodes whose last report is older than that but not older than three
    /// intervals: gone, or late. Their counts are not to be trusted either
    /// way (a dead node's clients are counted again where they landed).
    pub(crate) silent: u64,
}

/// The schema version this server writes.
pub(crate) const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Whether a PostgreSQL error may go away by itself: no answer from the
/// server (the connection broke or could not be made), or a SQLSTATE of
/// class 08 (connection), 57P01–57P03 (shutting down, restarting), 53300
/// (too many connections), 55000 (the database does not take connections
/// now: `ALLOW_CONNECTIONS false`), 40001 / 40P01 (serialization,
/// deadlock).
pub(crate) fn is_transient(e: &tokio_postgres::Error) -> bool {
    match e.as_db_error() {
        None => true,
        Some(db) => {
            let code = db.code().code();
            code.starts_with("08")
                || matches!(
                    code,
                    "57P01" | "57P02" | "57P03" | "53300" | "55000" | "40001" | "40P01"
                )
        }
    }
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt)
}

/// A notification from the other nodes (or this one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Notice {
    /// A message committed, whole.
    Message(ChatMessage),
    /// A message committed that was too big to announce: read it.
    Pointer {
        /// Its room.
        room: String,
        /// Its sequence number.
        seq: u64,
    },
    /// A session or subject was logged out.
    Revoked(Revocation),
}

#[derive(serde::Deserialize)]
struct PointerJson {
    room: String,
    seq: u64,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct RevocationJson {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sub: Option<String>,
    #[serde(default)]
    iat: i64,
}

impl Notice {
    /// Reads a notification; `None` for one of another channel or one that
    /// does not parse (logged).
    pub(crate) fn parse(channel: &str, payload: &str) -> Option<Self> {
        let notice = match channel {
            MESSAGES_CHANNEL => serde_json::from_str::<ChatMessage>(payload)
                .map(Self::Message)
                .or_else(|_| {
                    serde_json::from_str::<PointerJson>(payload).map(|p| Self::Pointer {
                        room: p.room,
                        seq: p.seq,
                    })
                })
                .ok(),
            REVOCATIONS_CHANNEL => match serde_json::from_str::<RevocationJson>(payload) {
                Ok(RevocationJson { sid: Some(sid), .. }) => {
                    Some(Self::Revoked(Revocation::Session(sid)))
                }
                Ok(RevocationJson {
                    sub: Some(sub),
                    iat,
                    ..
                }) => Some(Self::Revoked(Revocation::Subject { sub, iat })),
                _ => None,
            },
            _ => None,
        };
        if notice.is_none() {
            tracing::warn!(
                channel,
                len = payload.len(),
                "a notification that does not parse"
            );
        }
        notice
    }
}

/// A logout kept in `revocations`, with when it stops mattering (Unix seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RevocationRow {
    pub(crate) revocation: Revocation,
    pub(crate) until: i64,
}

/// The PostgreSQL engine. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Postgres {
    pool: Pool,
    config: tokio_postgres::Config,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Postgres")
            .field("hosts", &self.config.get_hosts())
            .field("dbname", &self.config.get_dbname())
            .finish_non_exhaustive()
    }
}

/// Runs `fut` with the [`QUERY_TIMEOUT`].
async fn timed<T>(
    what: &str,
    fut: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    tokio::time::timeout(QUERY_TIMEOUT, fut)
        .await
        .map_err(|_| {
            StoreError::Unavailable(format!("{what} took longer than {QUERY_TIMEOUT:?}"))
        })?
}

impl Postgres {
    /// Connects (checking that the server answers) and migrates.
    pub(crate) async fn open(url: &PostgresUrl) -> Result<Self, ServerError> {
        let database = url.redacted();
        let fail = |source: Box<dyn std::error::Error + Send + Sync>| ServerError::Postgres {
            database: database.clone(),
            source,
        };
        let mut config: tokio_postgres::Config = url
            .expose()
            .parse()
            .map_err(|e: tokio_postgres::Error| fail(Box::new(e)))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        config
            .application_name("chat-server")
            .keepalives_idle(Duration::from_secs(30));
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(QUERY_TIMEOUT))
            .create_timeout(Some(QUERY_TIMEOUT))
            .recycle_timeout(Some(QUERY_TIMEOUT))
            .build()
            .map_err(|e| fail(Box::new(e)))?;
        let pg = Self { pool, config };
        let mut client = pg.pool.get().await.map_err(|e| fail(Box::new(e)))?;
        migrate(&mut client, &database).await?;
        client
            .batch_execute(NODES_TABLE)
            .await
            .map_err(|e| fail(Box::new(e)))?;
        Ok(pg)
    }

    /// The highest sequence number of `room` (0 when empty).
    pub(crate) async fn last_seq_of(&self, room: &str) -> Result<u64, StoreError> {
        Backend::last_seq(self, room).await
    }

    /// Message `seq` of `room`, if stored.
    pub(crate) async fn message(
        &self,
        room: &str,
        seq: u64,
    ) -> Result<Option<ChatMessage>, StoreError> {
        Ok(Backend::page(self, room, seq.saturating_sub(1), seq, 1)
            .await?
            .pop())
    }

    async fn client(&self) -> Result<deadpool_postgres::Client, StoreError> {
        self.pool.get().await.map_err(|e| match e {
            deadpool_postgres::PoolError::Backend(e) => StoreError::from(e),
            other => StoreError::Unavailable(other.to_string()),
        })
    }

    /// Opens a connection of its own that `LISTEN`s to the messages and
    /// revocations channels; its notifications arrive on the receiver,
    /// which ends when the connection does. Keep the client: dropping it
    /// closes the connection.
    pub(crate) async fn listen(
        &self,
    ) -> Result<
        (
            tokio_postgres::Client,
            mpsc::UnboundedReceiver<Notification>,
        ),
        StoreError,
    > {
        let connect = async {
            let (client, mut connection) = self.config.connect(NoTls).await?;
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(async move {
                loop {
                    match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                        Some(Ok(AsyncMessage::Notification(n))) => {
                            if tx.send(n).is_err() {
                                break;
                            }
                        }
                        Some(Ok(_)) => {}
                        Some(Err(e)) => {
                            tracing::warn!(error = %e, "the LISTEN connection failed");
                            break;
                        }
                        None => break,
                    }
                }
            });
            client
                .batch_execute(&format!(
                    "LISTEN {MESSAGES_CHANNEL}; LISTEN {REVOCATIONS_CHANNEL};"
                ))
                .await?;
            Ok((client, rx))
        };
        timed("LISTEN", connect).await
    }

    /// Records a logout and announces it to every node, in one transaction.
    pub(crate) async fn revoke(&self, row: &RevocationRow) -> Result<(), StoreError> {
        let (kind, key, cutoff, payload) = match &row.revocation {
            Revocation::Session(sid) => (
                "sid",
                sid.as_str(),
                0,
                RevocationJson {
                    sid: Some(sid.clone()),
                    sub: None,
                    iat: 0,
                },
            ),
            Revocation::Subject { sub, iat } => (
                "sub",
                sub.as_str(),
                *iat,
                RevocationJson {
                    sid: None,
                    sub: Some(sub.clone()),
                    iat: *iat,
                },
            ),
        };
        let payload = serde_json::to_string(&payload).map_err(|_| StoreError::Corrupt)?;
        timed("recording a logout", async {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            tx.execute(
                "INSERT INTO revocations (kind, key, cutoff, until_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (kind, key) DO UPDATE
                 SET cutoff = greatest(revocations.cutoff, excluded.cutoff),
                     until_at = greatest(revocations.until_at, excluded.until_at)",
                &[&kind, &key, &cutoff, &row.until],
            )
            .await?;
            tx.execute(
                "SELECT pg_notify($1, $2)",
                &[&REVOCATIONS_CHANNEL, &payload],
            )
            .await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// Records that `node` holds `connections` now, and reads the fleet's
    /// load as nodes reporting every `interval` see it ([`FleetLoad`]).
    /// Rows not updated for an hour (nodes gone without saying so) are
    /// deleted.
    pub(crate) async fn report_load(
        &self,
        node: &str,
        connections: usize,
        interval: Duration,
    ) -> Result<FleetLoad, StoreError> {
        let connections = i64::try_from(connections).unwrap_or(i64::MAX);
        let fresh_secs = interval.mul_f64(1.5).as_secs_f64();
        let silent_secs = interval.saturating_mul(3).as_secs_f64();
        timed("reporting the node's load", async {
            let client = self.client().await?;
            client
                .execute(
                    "INSERT INTO chat_nodes (node, connections, seen_at) VALUES ($1, $2, now())
                     ON CONFLICT (node) DO UPDATE
                        SET connections = EXCLUDED.connections, seen_at = EXCLUDED.seen_at",
                    &[&node, &connections],
                )
                .await?;
            client
                .execute(
                    "DELETE FROM chat_nodes WHERE seen_at < now() - interval '1 hour'",
                    &[],
                )
                .await?;
            let row = client
                .query_one(
                    "SELECT count(*) FILTER (WHERE fresh),
                            coalesce(sum(connections) FILTER (WHERE fresh), 0)::BIGINT,
                            count(*) FILTER (WHERE NOT fresh)
                       FROM (SELECT connections,
                                    seen_at > now() - make_interval(secs => $1) AS fresh
                               FROM chat_nodes
                              WHERE seen_at > now() - make_interval(secs => $2)) recent",
                    &[&fresh_secs, &silent_secs],
                )
                .await?;
            Ok(FleetLoad {
                nodes: to_u64(row.get(0))?,
                connections: to_u64(row.get(1))?,
                silent: to_u64(row.get(2))?,
            })
        })
        .await
    }

    /// Removes `node` from the fleet's count (it is stopping).
    pub(crate) async fn forget_node(&self, node: &str) -> Result<(), StoreError> {
        timed("removing the node", async {
            self.client()
                .await?
                .execute("DELETE FROM chat_nodes WHERE node = $1", &[&node])
                .await?;
            Ok(())
        })
        .await
    }

    /// The logouts that still matter at `now` (Unix seconds); older ones
    /// are deleted.
    pub(crate) async fn revocations(&self, now: i64) -> Result<Vec<RevocationRow>, StoreError> {
        timed("reading logouts", async {
            let client = self.client().await?;
            client
                .execute("DELETE FROM revocations WHERE until_at <= $1", &[&now])
                .await?;
            let rows = client
                .query(
                    "SELECT kind, key, cutoff, until_at FROM revocations WHERE until_at > $1",
                    &[&now],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|row| {
                    let kind: &str = row.get(0);
                    let key: String = row.get(1);
                    let revocation = if kind == "sid" {
                        Revocation::Session(key)
                    } else {
                        Revocation::Subject {
                            sub: key,
                            iat: row.get(2),
                        }
                    };
                    RevocationRow {
                        revocation,
                        until: row.get(3),
                    }
                })
                .collect())
        })
        .await
    }

    async fn commit_batch(
        &self,
        batch: Vec<NewMessage>,
        max_rooms_created: u64,
    ) -> Result<Vec<Stored>, StoreError> {
        // Room order (stable: a room's messages keep theirs), so batches of
        // two nodes lock the rooms' rows in one order.
        let mut order: Vec<usize> = (0..batch.len()).collect();
        order.sort_by(|&a, &b| batch[a].room.cmp(&batch[b].room));
        let column = |f: fn(&NewMessage) -> &str| -> Vec<&str> {
            order.iter().map(|&i| f(&batch[i])).collect()
        };
        let rooms = column(|m| &m.room);
        let senders = column(|m| &m.sender_sub);
        let users = column(|m| &m.user);
        let ids = column(|m| &m.client_id);
        let texts = column(|m| &m.text);
        let sent: Vec<i64> = order.iter().map(|&i| to_i64(batch[i].sent_at)).collect();
        let cap = to_i64(max_rooms_created);
        let rows = timed("storing messages", async {
            let client = self.client().await?;
            let statement = client
                .prepare_cached(
                    "SELECT o_outcome, o_room, o_seq FROM chat_post($1, $2, $3, $4, $5, $6, $7)",
                )
                .await?;
            Ok(client
                .query(
                    &statement,
                    &[&rooms, &senders, &users, &ids, &texts, &sent, &cap],
                )
                .await?)
        })
        .await?;
        if rows.len() != batch.len() {
            return Err(StoreError::Corrupt);
        }
        let mut outcomes: Vec<Option<Stored>> = vec![None; batch.len()];
        for (row, &i) in rows.iter().zip(&order) {
            let outcome: &str = row.get(0);
            let room: String = row.get(1);
            let seq = to_u64(row.get(2))?;
            outcomes[i] = Some(match outcome {
                "new" => Stored::New(batch[i].stored(seq)),
                "existing" => Stored::Existing { room, seq },
                "too_many_rooms" => Stored::TooManyRooms,
                _ => return Err(StoreError::Corrupt),
            });
        }
        outcomes
            .into_iter()
            .map(|o| o.ok_or(StoreError::Corrupt))
            .collect()
    }
}

/// Applies the migrations the database lacks, in one transaction under an
/// advisory lock.
async fn migrate(
    client: &mut deadpool_postgres::Client,
    database: &str,
) -> Result<(), ServerError> {
    let fail = |e: tokio_postgres::Error| ServerError::Postgres {
        database: database.to_owned(),
        source: Box::new(e),
    };
    let tx = client.transaction().await.map_err(fail)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(fail)?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS chat_schema (version BIGINT NOT NULL)")
        .await
        .map_err(fail)?;
    let found: i64 = match tx
        .query_opt("SELECT version FROM chat_schema", &[])
        .await
        .map_err(fail)?
    {
        Some(row) => row.get(0),
        None => {
            tx.execute("INSERT INTO chat_schema (version) VALUES (0)", &[])
                .await
                .map_err(fail)?;
            0
        }
    };
    if found > SCHEMA_VERSION {
        return Err(ServerError::SchemaTooNew {
            path: database.into(),
            found,
            known: SCHEMA_VERSION,
        });
    }
    for (version, sql) in (1_i64..)
        .zip(MIGRATIONS)
        .skip(usize::try_from(found).unwrap_or(0))
    {
        tx.batch_execute(sql).await.map_err(fail)?;
        tx.execute("UPDATE chat_schema SET version = $1", &[&version])
            .await
            .map_err(fail)?;
        tracing::info!(version, database, "migrated the database");
    }
    tx.commit().await.map_err(fail)?;
    Ok(())
}

impl Backend for Postgres {
    fn commit(
        &self,
        batch: Vec<NewMessage>,
        max_rooms_created: u64,
    ) -> BoxFuture<'_, Result<Vec<Stored>, StoreError>> {
        Box::pin(self.commit_batch(batch, max_rooms_created))
    }

    fn last_seq<'a>(&'a self, room: &'a str) -> BoxFuture<'a, Result<u64, StoreError>> {
        Box::pin(timed("reading a room", async move {
            let client = self.client().await?;
            let statement = client
                .prepare_cached("SELECT last_seq FROM rooms WHERE room = $1")
                .await?;
            let row = client.query_opt(&statement, &[&room]).await?;
            row.map_or(Ok(0), |row| to_u64(row.get(0)))
        }))
    }

    fn page<'a>(
        &'a self,
        room: &'a str,
        after: u64,
        upto: u64,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<ChatMessage>, StoreError>> {
        Box::pin(timed("reading a room", async move {
            let client = self.client().await?;
            let statement = client
                .prepare_cached(
                    "SELECT seq, user_name, client_id, text, sent_at FROM messages
                     WHERE room = $1 AND seq > $2 AND seq <= $3 ORDER BY seq LIMIT $4",
                )
                .await?;
            let limit = to_i64(limit as u64);
            let rows = client
                .query(&statement, &[&room, &to_i64(after), &to_i64(upto), &limit])
                .await?;
            rows.iter()
                .map(|row| {
                    Ok(ChatMessage {
                        room: room.to_owned(),
                        seq: to_u64(row.get(0))?,
                        user: row.get(1),
                        id: row.get(2),
                        text: row.get(3),
                        sent_at: to_u64(row.get(4))?,
                    })
                })
                .collect()
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_parse_whole_messages_pointers_and_logouts() {
        let m = Notice::parse(
            MESSAGES_CHANNEL,
            r#"{"room":"a","seq":3,"user":"alice","id":"c1","text":"hi","sent_at":5}"#,
        );
        assert!(matches!(m, Some(Notice::Message(m)) if m.seq == 3 && m.text == "hi"));
        assert_eq!(
            Notice::parse(MESSAGES_CHANNEL, r#"{"room":"a","seq":4}"#),
            Some(Notice::Pointer {
                room: "a".into(),
                seq: 4
            })
        );
        assert_eq!(
            Notice::parse(REVOCATIONS_CHANNEL, r#"{"sid":"s1"}"#),
            Some(Notice::Revoked(Revocation::Session("s1".into())))
        );
        assert_eq!(
            Notice::parse(REVOCATIONS_CHANNEL, r#"{"sub":"alice","iat":7}"#),
            Some(Notice::Revoked(Revocation::Subject {
                sub: "alice".into(),
                iat: 7
            }))
        );
        assert_eq!(Notice::parse(MESSAGES_CHANNEL, "nope"), None);
        assert_eq!(Notice::parse("other", "{}"), None);
    }

    #[test]
    fn connection_failures_are_transient() {
        // No server at all: an error without a SQLSTATE.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let err = rt
            .block_on(
                "postgres://nobody@127.0.0.1:1/none"
                    .parse::<tokio_postgres::Config>()
                    .expect("config")
                    .connect(NoTls),
            )
            .map(|_| ())
            .expect_err("nothing listens on port 1");
        assert!(is_transient(&err), "{err}");
        assert!(StoreError::from(err).is_transient());
    }
}
