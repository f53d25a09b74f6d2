//! Message storage: one [`Backend`] trait with two engines behind it, and
//! the batching writer (group commit) in front of both.
//!
//! - `sqlite`: the embedded default, one file (or memory), one connection
//!   behind a mutex used from `spawn_blocking`, through `rusqlite`.
//! - `postgres`: several chat-server nodes sharing one database, through
//!   `tokio-postgres` with a `deadpool-postgres` pool; the per-room sequence
//!   is a `rooms(room, last_seq)` row incremented inside the inserting
//!   transaction, and every commit sends a `NOTIFY` that the other nodes
//!   `LISTEN` to (see `feed`).
//!
//! Why two drivers rather than sqlx's one code path: sqlx 0.9 (the version
//! whose SQLite driver accepts the `libsqlite3-sys` that our `rusqlite` 0.43
//! links; Cargo allows one `links = "sqlite3"` crate per build) needs Rust
//! 1.94, above this workspace's `rust-version` 1.89, and sqlx 0.8 links an
//! older `libsqlite3-sys`, which would mean replacing the tested SQLite code
//! as well. sqlx would also add its macro and runtime layers for two dozen
//! statements. `rusqlite` stays for SQLite as it was, `tokio-postgres` +
//! `deadpool-postgres` (small, well kept, tokio-native, MSRV 1.85) add
//! PostgreSQL, and the trait keeps the rest of the server engine-agnostic.
//!
//! ## Group commit
//!
//! Every `send` goes through one writer task per node: it takes the first
//! message waiting on its channel and whatever else is queued (up to
//! `ServerConfig::max_batch`, [`MAX_BATCH`] by default), stores them all in one transaction, and answers each
//! sender only after that commit. An fsync is paid per batch instead of
//! per message; the ack still means "durable". A batch that fails for a
//! reason other than the connection (one bad message) is retried message by
//! message, so one message cannot fail the others. A batch that fails
//! because the database cannot be reached is retried (with backoff) for up
//! to [`RETRY_FOR`]: resends are idempotent by `(sender, client id)`, so a
//! retry after a commit whose answer was lost stores nothing twice. Past
//! that, the batch fails and so does every send queued behind it, so that
//! no later message of a sender is stored before an earlier one that failed.
//!
//! (Over 500 lines: the trait, its error and the writer that uses both are
//! one contract; about 170 lines are the writer's unit tests.)

mod postgres;
mod sqlite;

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

pub(crate) use postgres::{FleetLoad, Notice, Postgres, RevocationRow};

use super::config::Database;
use super::error::ServerError;
use super::hub::Hub;
use crate::protocol::ChatMessage;

/// The most messages stored in one transaction, unless configured.
pub(crate) const MAX_BATCH: usize = 256;
/// How many sends may wait for the writer before senders wait for room.
const QUEUE: usize = 4096;
/// How long the writer keeps retrying a batch while the database cannot
/// be reached, before it answers its senders with an error.
pub(crate) const RETRY_FOR: Duration = Duration::from_secs(5);

/// A storage failure while serving (opening has [`ServerError`]).
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum StoreError {
    /// SQLite said no.
    #[error("sqlite: {0}")]
    Sqlite(Arc<rusqlite::Error>),
    /// PostgreSQL said no, or the connection broke.
    #[error("postgres: {0}")]
    Postgres(Arc<tokio_postgres::Error>),
    /// No connection to the database could be had (the pool timed out, the
    /// server refused or is down).
    #[error("the database cannot be reached: {0}")]
    Unavailable(String),
    /// A thread panicked while holding the connection.
    #[error("the database connection was poisoned by a panic")]
    Poisoned,
    /// The blocking task could not run to the end.
    #[error("the database task failed: {0}")]
    Task(String),
    /// A stored value is out of range (a corrupt row).
    #[error("a stored value is out of range")]
    Corrupt,
    /// The writer has stopped (the server is stopping).
    #[error("the message writer has stopped")]
    Stopped,
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Sqlite(Arc::new(e))
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Postgres(Arc::new(e))
    }
}

impl StoreError {
    /// Whether trying again later may work: the database could not be
    /// reached, the connection broke, the server is restarting, or the
    /// transaction lost a deadlock or serialization race.
    pub(crate) fn is_transient(&self) -> bool {
        match self {
            Self::Unavailable(_) => true,
            Self::Postgres(e) => postgres::is_transient(e),
            Self::Sqlite(e) => matches!(
                e.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
            ),
            Self::Poisoned | Self::Task(_) | Self::Corrupt | Self::Stopped => false,
        }
    }
}

/// A message to store.
#[derive(Debug, Clone)]
pub(crate) struct NewMessage {
    pub(crate) room: String,
    pub(crate) sender_sub: String,
    pub(crate) user: String,
    pub(crate) client_id: String,
    pub(crate) text: String,
    pub(crate) sent_at: u64,
}

impl NewMessage {
    /// The stored message, once it has its sequence number.
    pub(crate) fn stored(&self, seq: u64) -> ChatMessage {
        ChatMessage {
            room: self.room.clone(),
            seq,
            user: self.user.clone(),
            id: self.client_id.clone(),
            text: self.text.clone(),
            sent_at: self.sent_at,
        }
    }
}

/// What an insert did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Stored {
    /// Stored now.
    New(ChatMessage),
    /// The sender had already sent this id; nothing was written.
    Existing {
        /// The room it is stored in.
        room: String,
        /// Its sequence number there.
        seq: u64,
    },
    /// The message would create a room, and its sender created as many as
    /// allowed; nothing was written.
    TooManyRooms,
}

/// A logged-out session or subject, as kept in the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Revocation {
    /// Every token of this session.
    Session(String),
    /// Every token of this subject issued at or before `iat`.
    Subject {
        /// The subject.
        sub: String,
        /// The latest `iat` refused.
        iat: i64,
    },
}

/// A storage engine. Each method is one transaction (or one read).
pub(crate) trait Backend: Send + Sync + 'static {
    /// Stores `batch` in one transaction and returns one outcome per
    /// message, in order, only once that transaction has committed. A
    /// message that would create a room past its sender's
    /// `max_rooms_created` is [`Stored::TooManyRooms`]; one whose sender
    /// used its id already is [`Stored::Existing`] (also within the batch).
    fn commit(
        &self,
        batch: Vec<NewMessage>,
        max_rooms_created: u64,
    ) -> BoxFuture<'_, Result<Vec<Stored>, StoreError>>;

    /// The highest sequence number of `room` (0 when empty).
    fn last_seq<'a>(&'a self, room: &'a str) -> BoxFuture<'a, Result<u64, StoreError>>;

    /// Up to `limit` messages of `room` with `after < seq <= upto`, in order.
    fn page<'a>(
        &'a self,
        room: &'a str,
        after: u64,
        upto: u64,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<ChatMessage>, StoreError>>;
}

/// A send waiting for the writer.
struct Job {
    message: NewMessage,
    reply: oneshot::Sender<Result<Stored, StoreError>>,
}

/// The message store: reads go to the backend, writes through the batching
/// writer. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Store {
    backend: Arc<dyn Backend>,
    writes: mpsc::Sender<Job>,
    /// The shared database, when there is one (several nodes).
    postgres: Option<Postgres>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("postgres", &self.postgres.is_some())
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating and migrating) the database and starts the writer.
    /// With SQLite, the writer hands each committed message to `hub`; with
    /// PostgreSQL, messages reach the hub through the `feed` (every node's
    /// alike), which the caller starts.
    pub(crate) async fn open(
        db: &Database,
        hub: Arc<Hub>,
        max_rooms_created: u64,
        max_batch: usize,
    ) -> Result<Self, ServerError> {
        let (backend, postgres, publish): (Arc<dyn Backend>, _, _) = match db {
            Database::Postgres(url) => {
                let pg = Postgres::open(url).await?;
                (Arc::new(pg.clone()), Some(pg), None)
            }
            Database::Memory | Database::File(_) => {
                let db = db.clone();
                let sqlite = tokio::task::spawn_blocking(move || sqlite::Sqlite::open(&db))
                    .await
                    .map_err(|e| {
                        ServerError::Config(format!("opening the database failed: {e}"))
                    })??;
                (Arc::new(sqlite), None, Some(hub))
            }
        };
        let (writes, jobs) = mpsc::channel(QUEUE);
        let limits = Limits {
            max_rooms_created,
            max_batch: max_batch.max(1),
        };
        tokio::spawn(write(jobs, backend.clone(), limits, publish));
        Ok(Self {
            backend,
            writes,
            postgres,
        })
    }

    /// The shared PostgreSQL database, if that is the engine.
    pub(crate) fn postgres(&self) -> Option<&Postgres> {
        self.postgres.as_ref()
    }

    /// Stores a message idempotently (see [`Backend::commit`]); resolves
    /// once its batch committed. The future does not borrow the store, so a
    /// connection may keep several in flight.
    ///
    /// Queues `message` for the writer now (waiting for room in the queue:
    /// backpressure), so that one connection's messages reach the writer —
    /// and get their sequence numbers — in the order they were sent; the
    /// returned future is the answer after the commit. (Queueing inside
    /// that future instead let pipelined sends of one connection overtake
    /// each other: the futures of a `FuturesOrdered` run in any order.)
    pub(crate) async fn insert(
        &self,
        message: NewMessage,
    ) -> impl Future<Output = Result<Stored, StoreError>> + Send + 'static {
        let (reply, answer) = oneshot::channel();
        let queued = self.writes.send(Job { message, reply }).await;
        async move {
            queued.map_err(|_| StoreError::Stopped)?;
            answer.await.map_err(|_| StoreError::Stopped)?
        }
    }

    /// The highest sequence number of `room` (0 when empty).
    pub(crate) async fn last_seq(&self, room: &str) -> Result<u64, StoreError> {
        self.backend.last_seq(room).await
    }

    /// Up to `limit` messages of `room` with `after < seq <= upto`, in order.
    pub(crate) async fn page(
        &self,
        room: &str,
        after: u64,
        upto: u64,
        limit: usize,
    ) -> Result<Vec<ChatMessage>, StoreError> {
        self.backend.page(room, after, upto, limit).await
    }
}

/// What the writer is told.
#[derive(Debug, Clone, Copy)]
struct Limits {
    max_rooms_created: u64,
    max_batch: usize,
}

/// Takes what is queued (up to `max_batch`) into a batch; `None` once
/// every sender is gone.
async fn next_batch(jobs: &mut mpsc::Receiver<Job>, max_batch: usize) -> Option<Vec<Job>> {
    let first = jobs.recv().await?;
    let mut batch = Vec::with_capacity(jobs.len().min(max_batch) + 1);
    batch.push(first);
    while batch.len() < max_batch {
        match jobs.try_recv() {
            Ok(job) => batch.push(job),
            Err(_) => break,
        }
    }
    Some(batch)
}

/// Commits `batch`, retrying while the database cannot be reached (for up
/// to [`RETRY_FOR`]).
async fn commit_retrying(
    backend: &dyn Backend,
    batch: &[NewMessage],
    max_rooms_created: u64,
) -> Result<Vec<Stored>, StoreError> {
    let started = Instant::now();
    let mut wait = Duration::from_millis(25);
    loop {
        match backend.commit(batch.to_vec(), max_rooms_created).await {
            Err(e) if e.is_transient() && started.elapsed() + wait < RETRY_FOR => {
                tracing::warn!(error = %e, messages = batch.len(), ?wait, "storing a batch failed; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_millis(500));
            }
            other => return other,
        }
    }
}

/// Answers every send already waiting behind a batch that could not be
/// stored (the database unreachable for [`RETRY_FOR`]) with the same error.
/// Stored now — the database may be back — a sender's later message would
/// take a sequence number before the earlier one it is about to send again
/// (the connection closes with 1013; the client re-sends what was not
/// acknowledged, in order).
fn fail_waiting(jobs: &mut mpsc::Receiver<Job>, error: &StoreError) {
    let mut failed = 0_usize;
    while let Ok(job) = jobs.try_recv() {
        let _ = job.reply.send(Err(error.clone()));
        failed += 1;
    }
    if failed > 0 {
        tracing::warn!(
            failed,
            "failed the sends waiting behind a batch that could not be stored"
        );
    }
}

/// The writer task: one transaction per batch, every sender answered after
/// its commit; with `publish`, committed messages go to the hub in order.
async fn write(
    mut jobs: mpsc::Receiver<Job>,
    backend: Arc<dyn Backend>,
    limits: Limits,
    publish: Option<Arc<Hub>>,
) {
    let max_rooms_created = limits.max_rooms_created;
    while let Some(batch) = next_batch(&mut jobs, limits.max_batch).await {
        let messages: Vec<NewMessage> = batch.iter().map(|j| j.message.clone()).collect();
        let outcomes = match commit_retrying(&*backend, &messages, max_rooms_created).await {
            Ok(outcomes) => outcomes.into_iter().map(Ok).collect(),
            Err(e) if messages.len() > 1 && !e.is_transient() => {
                // One message may be the cause: store each on its own.
                tracing::warn!(error = %e, "a batch failed; storing its messages one by one");
                let mut outcomes = Vec::with_capacity(messages.len());
                for message in &messages {
                    let one = commit_retrying(
                        &*backend,
                        std::slice::from_ref(message),
                        max_rooms_created,
                    )
                    .await
                    .and_then(|mut v| v.pop().ok_or(StoreError::Corrupt));
                    outcomes.push(one);
                }
                outcomes
            }
            Err(e) => {
                tracing::error!(error = %e, messages = messages.len(), "cannot store a batch");
                if e.is_transient() {
                    fail_waiting(&mut jobs, &e);
                }
                vec![Err(e); messages.len()]
            }
        };
        if let Some(hub) = &publish {
            for outcome in &outcomes {
                if let Ok(Stored::New(message)) = outcome {
                    hub.publish(message);
                }
            }
        }
        for (job, outcome) in batch.into_iter().zip(outcomes) {
            // A sender that went away needs no answer.
            let _ = job.reply.send(outcome);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A backend that stores in memory and counts its transactions.
    #[derive(Default)]
    struct Counting {
        commits: std::sync::Mutex<Vec<usize>>,
        fail_first: std::sync::atomic::AtomicU32,
        /// A transaction holding a message with this id fails for good.
        poison: Option<String>,
    }

    impl Backend for Counting {
        fn commit(
            &self,
            batch: Vec<NewMessage>,
            _max: u64,
        ) -> BoxFuture<'_, Result<Vec<Stored>, StoreError>> {
            Box::pin(async move {
                use std::sync::atomic::Ordering;
                if self
                    .fail_first
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok()
                {
                    return Err(StoreError::Unavailable("down".into()));
                }
                if batch
                    .iter()
                    .any(|m| Some(&m.client_id) == self.poison.as_ref())
                {
                    return Err(StoreError::Corrupt);
                }
                let mut commits = self.commits.lock().expect("lock");
                let base: usize = commits.iter().sum();
                commits.push(batch.len());
                Ok(batch
                    .iter()
                    .enumerate()
                    .map(|(i, m)| Stored::New(m.stored((base + i + 1) as u64)))
                    .collect())
            })
        }

        fn last_seq<'a>(&'a self, _room: &'a str) -> BoxFuture<'a, Result<u64, StoreError>> {
            Box::pin(async { Ok(0) })
        }

        fn page<'a>(
            &'a self,
            _room: &'a str,
            _after: u64,
            _upto: u64,
            _limit: usize,
        ) -> BoxFuture<'a, Result<Vec<ChatMessage>, StoreError>> {
            Box::pin(async { Ok(Vec::new()) })
        }
    }

    fn message(i: usize) -> NewMessage {
        NewMessage {
            room: "a".into(),
            sender_sub: "alice".into(),
            user: "alice".into(),
            client_id: i.to_string(),
            text: "hi".into(),
            sent_at: 0,
        }
    }

    fn store(backend: Arc<Counting>) -> Store {
        let (writes, jobs) = mpsc::channel(QUEUE);
        let limits = Limits {
            max_rooms_created: u64::MAX,
            max_batch: MAX_BATCH,
        };
        tokio::spawn(write(jobs, backend.clone(), limits, None));
        Store {
            backend,
            writes,
            postgres: None,
        }
    }

    #[tokio::test]
    async fn queued_sends_share_a_transaction_and_each_is_answered_after_it() {
        let backend = Arc::new(Counting::default());
        let store = store(backend.clone());
        // Queued one after the other as a connection does (the writer runs
        // when the queue is full: a current-thread runtime).
        let mut sends = Vec::new();
        for i in 0..300 {
            sends.push(store.insert(message(i)).await);
        }
        let outcomes = futures_util::future::join_all(sends).await;
        let seqs: Vec<u64> = outcomes
            .into_iter()
            .enumerate()
            .map(|(i, o)| match o.expect("stored") {
                Stored::New(m) if m.id == i.to_string() => m.seq,
                other => panic!("send {i} got {other:?}"),
            })
            .collect();
        assert_eq!(
            seqs,
            (1..=300).collect::<Vec<_>>(),
            "each stored once, numbered in the order queued"
        );
        let commits = backend.commits.lock().expect("lock").clone();
        assert_eq!(commits.iter().sum::<usize>(), 300);
        assert!(
            commits.len() < 10 && commits.iter().all(|n| *n <= MAX_BATCH),
            "batched: {commits:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_is_retried_while_the_database_is_unreachable() {
        let backend = Arc::new(Counting::default());
        backend
            .fail_first
            .store(3, std::sync::atomic::Ordering::SeqCst);
        let store = store(backend.clone());
        let stored = store
            .insert(message(1))
            .await
            .await
            .expect("stored after retries");
        assert!(matches!(stored, Stored::New(m) if m.seq == 1));
        assert_eq!(*backend.commits.lock().expect("lock"), [1]);
        // Down for longer than RETRY_FOR: the sender gets the typed error.
        backend
            .fail_first
            .store(1_000, std::sync::atomic::Ordering::SeqCst);
        let err = store.insert(message(2)).await.await.expect_err("gave up");
        assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
        assert!(err.is_transient());
    }

    #[tokio::test(start_paused = true)]
    async fn sends_waiting_behind_a_batch_that_gave_up_fail_with_it() {
        let backend = Arc::new(Counting::default());
        backend
            .fail_first
            .store(1_000, std::sync::atomic::Ordering::SeqCst);
        let store = store(backend.clone());
        let first = store.insert(message(1)).await;
        // The writer takes the first alone and retries it; two more wait.
        tokio::task::yield_now().await;
        let behind = [
            store.insert(message(2)).await,
            store.insert(message(3)).await,
        ];
        assert!(first.await.expect_err("gave up").is_transient());
        // The database is back now; what waited must not be stored ahead
        // of the message its sender will send again.
        backend
            .fail_first
            .store(0, std::sync::atomic::Ordering::SeqCst);
        for waiting in behind {
            assert!(waiting.await.expect_err("failed with it").is_transient());
        }
        assert!(backend.commits.lock().expect("lock").is_empty());
        let again = store.insert(message(1)).await.await.expect("stored");
        assert!(matches!(again, Stored::New(m) if m.seq == 1 && m.id == "1"));
    }

    #[tokio::test]
    async fn one_bad_message_fails_alone_not_its_whole_batch() {
        let backend = Arc::new(Counting {
            poison: Some("1".into()),
            ..Counting::default()
        });
        let store = store(backend.clone());
        let mut sends = Vec::new();
        for i in 0..3 {
            sends.push(store.insert(message(i)).await);
        }
        let outcomes = futures_util::future::join_all(sends).await;
        assert!(matches!(&outcomes[0], Ok(Stored::New(m)) if m.id == "0"));
        assert!(
            matches!(&outcomes[1], Err(StoreError::Corrupt)),
            "{:?}",
            outcomes[1]
        );
        assert!(matches!(&outcomes[2], Ok(Stored::New(m)) if m.id == "2"));
        assert_eq!(
            *backend.commits.lock().expect("lock"),
            [1, 1],
            "retried one by one"
        );
    }

    #[test]
    fn errors_are_send_and_sync() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<StoreError>();
    }
}
