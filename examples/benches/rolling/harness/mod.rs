//! The scale-out load harness (issue 13, "Scale, measured"): realtime
//! clients in rooms on several `chat-server` processes sharing one
//! PostgreSQL database, some of them sending, through a steady phase and
//! then node restarts (SIGTERM, SIGKILL), one node at a time; then a check
//! of every client's messages against what the database committed.
//!
//! Shared by the bench (`benches/rolling/main.rs`: 1,000 clients, rolling
//! restarts of three nodes, figures printed) and the CI test
//! (`tests/rolling.rs`: a short run, correctness asserted, timing not).
//!
//! Layout: `node` (a chat-server child process), `member` (one client as
//! an app would write it, plus what it records), `check` (every client
//! against the committed rows), `measure` (the figures and the report).

#![allow(dead_code)] // each of the two users takes a part of it

pub(crate) mod check;
pub(crate) mod measure;
pub(crate) mod member;
pub(crate) mod node;

#[path = "../../common/device_token.rs"]
mod device_token;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use device_token::device_token;
use futures_util::StreamExt as _;
use sessionkit_mock_idp::MockIdp;
use sessionkit_tests::postgres::TestDatabase;
use sessionkit_tests::scratch::ScratchDir;
use tokio_util::sync::CancellationToken;

use check::Check;
use measure::{CpuSample, Event, Report};
use member::{Member, lock, micros};
use node::{Node, Signal};

/// What to run.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) clients: usize,
    /// Members `0..senders` send (spread over the rooms).
    pub(crate) senders: usize,
    /// Member `i` is in room `i % rooms`.
    pub(crate) rooms: usize,
    pub(crate) nodes: usize,
    /// Messages per second per sender.
    pub(crate) rate: f64,
    /// Sending before the steady phase is measured.
    pub(crate) warmup: Duration,
    /// The steady phase: deliveries, CPU and latency measured.
    pub(crate) steady: Duration,
    /// The node restarts, in order: how, and which node.
    pub(crate) restarts: Vec<(Signal, usize)>,
    /// After a restarted node is back, before the next restart.
    pub(crate) gap: Duration,
    /// Clients started at once (then the harness waits for them to join).
    pub(crate) batch: usize,
    /// How long any one expected thing may take.
    pub(crate) patience: Duration,
    /// chat-server's `--max-pending-per-ip` (`None`: its default, 64).
    /// Every client here connects from 127.0.0.1, unlike real clients.
    pub(crate) pending_cap: Option<usize>,
    /// After the restarts, senders still sending: how long to wait for the
    /// nodes to even out (chat-server's rebalancing: every node at most its
    /// share plus the default tolerance). Zero: not waited for.
    pub(crate) settle: Duration,
}

impl Config {
    /// The figures: 1,000 clients in 20 rooms of 50 on three
    /// nodes, 100 senders (5 a room) at 2 messages a second each, a rolling
    /// restart of the three nodes with SIGTERM, then one with SIGKILL.
    pub(crate) fn full() -> Self {
        let mut restarts: Vec<_> = (0..3).map(|n| (Signal::Term, n)).collect();
        restarts.extend((0..3).map(|n| (Signal::Kill, n)));
        Self {
            clients: 1000,
            senders: 100,
            rooms: 20,
            nodes: 3,
            rate: 2.0,
            warmup: Duration::from_secs(3),
            steady: Duration::from_secs(20),
            restarts,
            gap: Duration::from_secs(5),
            batch: 50,
            patience: Duration::from_secs(60),
            pending_cap: None,
            settle: Duration::from_secs(120),
        }
    }

    /// The CI run: 60 clients in 3 rooms on three nodes, 10 senders, one
    /// node restarted with SIGTERM and another with SIGKILL.
    pub(crate) fn short() -> Self {
        Self {
            clients: 60,
            senders: 10,
            rooms: 3,
            nodes: 3,
            rate: 5.0,
            warmup: Duration::from_millis(500),
            steady: Duration::from_secs(2),
            restarts: vec![(Signal::Term, 0), (Signal::Kill, 1)],
            gap: Duration::from_millis(500),
            batch: 30,
            patience: Duration::from_secs(30),
            pending_cap: None,
            settle: Duration::ZERO,
        }
    }
}

/// Waits until `done` holds, polling; panics with `what` after `patience`.
async fn wait_until(patience: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + patience;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The whole run. Panics when something expected does not happen within
/// the patience (a client that never resumes, a node that does not stop);
/// losses and duplicates are counted in the report, not panicked on.
pub(crate) async fn run(config: &Config, db: &TestDatabase) -> Report {
    let epoch = Instant::now();
    let scratch = ScratchDir::new("rolling-harness");
    let idp = MockIdp::builder()
        .bind("127.0.0.1:0")
        .access_token_ttl(3600)
        .start()
        .await
        .expect("mock idp");
    let http = reqwest::Client::new();
    let tokens: Vec<String> = futures_util::stream::iter(0..config.clients)
        .map(|i| {
            let (http, idp) = (&http, &idp);
            async move { device_token(http, idp, &format!("u{i}")).await }
        })
        .buffered(16)
        .collect()
        .await;
    let mut nodes = Vec::new();
    for n in 0..config.nodes {
        let log = scratch.path().join(format!("node{n}.log"));
        nodes.push(Node::start(idp.issuer(), db.url(), config.pending_cap, &log).await);
    }
    let urls: Vec<String> = nodes.iter().map(|n| n.url.clone()).collect();

    // Everyone in, a batch at a time (one address: the nodes cap the
    // connections from one IP that have not sent their request yet).
    let deliveries = Arc::new(AtomicU64::new(0));
    let mut members: Vec<Member> = Vec::with_capacity(config.clients);
    let connect_start = Instant::now();
    for (i, token) in tokens.iter().enumerate() {
        let sender = i < config.senders;
        members.push(Member::start(
            i,
            i % config.rooms,
            sender,
            &urls,
            token,
            epoch,
            deliveries.clone(),
        ));
        if members.len().is_multiple_of(config.batch) || members.len() == config.clients {
            let from = members.len().saturating_sub(config.batch);
            wait_until(config.patience, "a batch of clients joined", || {
                members[from..].iter().all(Member::settled)
            })
            .await;
        }
    }
    let connect_time = connect_start.elapsed();
    let start_nodes: Vec<usize> = (0..config.nodes)
        .map(|n| members.iter().filter(|m| m.node() == Some(n)).count())
        .collect();

    let stop = CancellationToken::new();
    let interval = Duration::from_secs_f64(1.0 / config.rate);
    let senders: Vec<_> = members[..config.senders]
        .iter()
        .map(|m| {
            // Spread evenly over the interval (golden-ratio offsets).
            let phase = interval.mul_f64((m.index as f64 * 0.618_034).fract());
            m.spawn_sender(interval, phase, epoch, stop.clone())
        })
        .collect();
    tokio::time::sleep(config.warmup).await;

    let tick = node::ticks_per_second();
    let postmaster = measure::postmaster(db).await;
    let sample = |nodes: &[Node]| CpuSample {
        at: micros(epoch),
        nodes: nodes.iter().map(Node::cpu_ticks).sum(),
        postgres: postmaster.map_or(0, node::postgres_ticks),
        harness: node::cpu_ticks(std::process::id()).unwrap_or(0),
        deliveries: deliveries.load(Ordering::Relaxed),
        sent: members[..config.senders]
            .iter()
            .filter_map(|m| m.outbox.as_ref())
            .map(|o| o.sent.load(Ordering::Relaxed))
            .sum(),
    };
    let steady_start = sample(&nodes);
    tokio::time::sleep(config.steady).await;
    let steady_end = sample(&nodes);

    let mut events = Vec::new();
    for &(signal, n) in &config.restarts {
        wait_until(config.patience, "every client is connected", || {
            members.iter().all(Member::settled)
        })
        .await;
        let moving: Vec<usize> = members
            .iter()
            .filter(|m| m.node() == Some(n))
            .map(|m| m.index)
            .collect();
        let failed_before: u64 = members
            .iter()
            .map(|m| m.client.metrics().failed_attempts)
            .sum();
        let overflows_before = node::listen_overflows();
        let signalled = micros(epoch);
        let node = &mut nodes[n];
        let stopping = node.stop(signal);
        let waiting = wait_until(config.patience, "the node's clients resumed", || {
            moving
                .iter()
                .all(|&i| lock(&members[i].seen).resumed_since(signalled).is_some())
        });
        let ((), ()) = tokio::join!(stopping, waiting);
        let resumed_all = micros(epoch);
        let failed_after: u64 = members
            .iter()
            .map(|m| m.client.metrics().failed_attempts)
            .sum();
        let overflows = node::listen_overflows().saturating_sub(overflows_before);
        node.restart().await;
        let back = micros(epoch);
        events.push(Event::collect(
            signal,
            n,
            signalled,
            resumed_all,
            back,
            &moving,
            &members,
            failed_after - failed_before,
            overflows,
        ));
        tokio::time::sleep(config.gap).await;
    }

    // Settle: senders still sending, until the nodes even out again (each
    // at most its share plus chat-server's default tolerance), or not.
    let per_node = |members: &[Member]| -> Vec<usize> {
        (0..config.nodes)
            .map(|n| members.iter().filter(|m| m.node() == Some(n)).count())
            .collect()
    };
    let after_restarts = per_node(&members);
    let settle_start = micros(epoch);
    let share = config.clients.div_ceil(config.nodes);
    let bound = share + 10.max(share / 10);
    let mut settled_in = None;
    if !config.settle.is_zero() {
        let deadline = Instant::now() + config.settle;
        while Instant::now() < deadline {
            if per_node(&members).iter().all(|n| *n <= bound) {
                settled_in = Some(Duration::from_micros(micros(epoch) - settle_start));
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let settle_moves = members
        .iter()
        .map(|m| {
            lock(&m.seen)
                .connects
                .iter()
                .filter(|(at, _)| *at >= settle_start)
                .count()
        })
        .sum();
    let settle = measure::Settle {
        after_restarts,
        bound,
        settled_in,
        moves: settle_moves,
        waited: config.settle,
    };

    // Drain: no more sends; every one acknowledged; every client caught up.
    stop.cancel();
    for sender in senders {
        sender.await.expect("sender task");
    }
    let drain_start = Instant::now();
    wait_until(config.patience, "every send was acknowledged", || {
        members
            .iter()
            .filter_map(|m| m.outbox.as_ref())
            .all(|o| o.unacked.is_empty())
    })
    .await;
    let last_seqs = check::room_heads(db).await;
    let caught_up = || {
        members.iter().all(|m| {
            let head = last_seqs
                .get(&member::room_name(m.room))
                .copied()
                .unwrap_or(0);
            lock(&m.seen).cursor >= head
        })
    };
    let deadline = Instant::now() + config.patience;
    while !caught_up() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drain_time = drain_start.elapsed();
    let check = Check::run(db, &members).await;
    let end_nodes: Vec<usize> = (0..config.nodes)
        .map(|n| members.iter().filter(|m| m.node() == Some(n)).count())
        .collect();

    for m in &members {
        m.client.close();
    }
    for m in &members {
        m.client.closed().await;
    }
    for node in &mut nodes {
        node.stop(Signal::Term).await;
    }
    Report::new(
        config,
        &members,
        measure::Phases {
            connect_time,
            start_nodes,
            end_nodes,
            steady: (steady_start, steady_end),
            tick,
            postmaster,
            events,
            settle,
            drain_time,
        },
        check,
    )
}
