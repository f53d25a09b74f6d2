//! The figures of a run and the check against the database.
//!
//! - Loss and duplication: see `check`.
//! - The reconnect storm of each node restart (`Event`): connections opened
//!   from the signal until the node's last client resumed, in 100 ms
//!   windows. **Uniform average** = those connections ÷ the number of
//!   100 ms windows in the base delay (250 ms: 2.5 windows), i.e. what each
//!   window would hold if the moves were spread evenly over the span the
//!   client's backoff allows for them (a going-away close or a lost
//!   connection waits a uniform `[0, base]` before the next node). The
//!   busiest window is the most connections in any sliding 100 ms window.
//!   Defined so, the ratio can never exceed 2.5 (all in one window), so it
//!   cannot fail the ≤ 3× goal; the same ratio in 25 ms windows (average =
//!   connections ÷ 10) can (up to 10×) and is printed beside it.
//! - Latency: send (the sender's app calls `send`; the time is in the
//!   message's text) → the receiving app reads it, other members only, one
//!   clock; by the send time: the steady phase, or a restart's window (from
//!   the signal to 0.5 s after the node's last client resumed).
//! - Deliveries per CPU-second: message frames the clients received during
//!   the steady phase ÷ the chat-server processes' CPU time then (utime +
//!   stime from `/proc/PID/stat`), and ÷ chat-server + PostgreSQL CPU time.

use std::collections::BTreeMap;
use std::time::Duration;

use sessionkit_tests::postgres::TestDatabase;

use super::Config;
use super::check::Check;
use super::member::{Member, lock};
use super::node::Signal;

/// The base delay of the realtime client's default backoff.
pub(crate) const BASE: Duration = Duration::from_millis(250);
/// How long after a restart's last resume its latency window extends.
const WINDOW_TAIL_US: u64 = 500_000;

/// CPU ticks and counters at one moment.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CpuSample {
    pub(crate) at: u64,
    pub(crate) nodes: u64,
    pub(crate) postgres: u64,
    pub(crate) harness: u64,
    pub(crate) deliveries: u64,
    pub(crate) sent: u64,
}

/// One node restart.
#[derive(Debug, Clone)]
pub(crate) struct Event {
    pub(crate) signal: Signal,
    pub(crate) node: usize,
    pub(crate) signalled: u64,
    /// When the last of its clients had resumed elsewhere.
    pub(crate) resumed_all: u64,
    /// When it listened again.
    pub(crate) back: u64,
    /// Its clients' resume delays (µs after the signal), sorted.
    pub(crate) resumes: Vec<u64>,
    /// Where they went: node → clients.
    pub(crate) landed: BTreeMap<usize, usize>,
    /// Connections any client opened in [signal, last resume], µs after
    /// the signal, sorted.
    pub(crate) connects: Vec<u64>,
    /// Connection attempts that failed meanwhile.
    pub(crate) failed_attempts: u64,
    /// Handshakes the kernel dropped meanwhile because an accept queue was
    /// full (see `node::listen_overflows`).
    pub(crate) listen_overflows: u64,
    /// Why clients set out to reconnect in [signal, last resume]: reason →
    /// how many times.
    pub(crate) reasons: BTreeMap<String, usize>,
}

impl Event {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn collect(
        signal: Signal,
        node: usize,
        signalled: u64,
        resumed_all: u64,
        back: u64,
        moving: &[usize],
        members: &[Member],
        failed_attempts: u64,
        listen_overflows: u64,
    ) -> Self {
        let mut resumes = Vec::new();
        let mut landed = BTreeMap::new();
        for &i in moving {
            let seen = lock(&members[i].seen);
            if let Some(at) = seen.resumed_since(signalled) {
                resumes.push(at - signalled);
            }
            if let Some((_, to)) = seen.connects.iter().find(|(at, _)| *at >= signalled) {
                *landed.entry(*to).or_default() += 1;
            }
        }
        resumes.sort_unstable();
        let mut connects: Vec<u64> = members
            .iter()
            .flat_map(|m| {
                lock(&m.seen)
                    .connects
                    .iter()
                    .map(|(at, _)| *at)
                    .filter(|at| (signalled..=resumed_all).contains(at))
                    .map(|at| at - signalled)
                    .collect::<Vec<_>>()
            })
            .collect();
        connects.sort_unstable();
        let mut reasons = BTreeMap::new();
        for m in members {
            for (at, why) in &lock(&m.seen).reasons {
                if (signalled..=resumed_all).contains(at) {
                    *reasons.entry(why.clone()).or_default() += 1;
                }
            }
        }
        Self {
            signal,
            node,
            signalled,
            resumed_all,
            back,
            resumes,
            landed,
            connects,
            failed_attempts,
            listen_overflows,
            reasons,
        }
    }

    /// The send times whose latency counts as "during the restart".
    fn window(&self) -> (u64, u64) {
        (self.signalled, self.resumed_all + WINDOW_TAIL_US)
    }

    /// Connections per `width` from the signal.
    pub(crate) fn grid(&self, width: Duration) -> Vec<usize> {
        let w = u64::try_from(width.as_micros()).unwrap_or(u64::MAX).max(1);
        let last = self.connects.last().copied().unwrap_or(0);
        let mut grid = vec![0; usize::try_from(last / w).unwrap_or(0) + 1];
        for &at in &self.connects {
            grid[usize::try_from(at / w).unwrap_or(0)] += 1;
        }
        grid
    }

    /// The busiest sliding window of `width`, the uniform average over the
    /// base delay in windows of `width`, and their ratio.
    pub(crate) fn storm(&self, width: Duration) -> (usize, f64, f64) {
        let busiest = busiest(&self.connects, width);
        let average = self.connects.len() as f64 / (BASE.as_secs_f64() / width.as_secs_f64());
        let ratio = if average > 0.0 {
            busiest as f64 / average
        } else {
            0.0
        };
        (busiest, average, ratio)
    }
}

/// The most stamps (sorted, µs) in any window `[t, t + width)`.
pub(crate) fn busiest(sorted: &[u64], width: Duration) -> usize {
    let w = u64::try_from(width.as_micros()).unwrap_or(u64::MAX);
    let mut best = 0;
    let mut end = 0;
    for (start, &t) in sorted.iter().enumerate() {
        while end < sorted.len() && sorted[end] < t.saturating_add(w) {
            end += 1;
        }
        best = best.max(end - start);
    }
    best
}

/// The value at quantile `q` of sorted `values` (nearest rank).
pub(crate) fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The pid of the postmaster of `db`'s cluster (same machine), if found.
pub(crate) async fn postmaster(db: &TestDatabase) -> Option<u32> {
    // The connection stays open until the backend's parent is read.
    let client = db.client().await;
    let row = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .ok()?;
    let backend: i32 = row.get(0);
    let postmaster = super::node::postmaster_of(u32::try_from(backend).ok()?);
    drop(client);
    postmaster
}

/// The timeline of a run, as `run` saw it.
#[derive(Debug)]
pub(crate) struct Phases {
    pub(crate) connect_time: Duration,
    /// Clients per node after they all came in, and at the end.
    pub(crate) start_nodes: Vec<usize>,
    pub(crate) end_nodes: Vec<usize>,
    pub(crate) steady: (CpuSample, CpuSample),
    /// Clock ticks per second.
    pub(crate) tick: u64,
    /// The cluster's postmaster, if found (else PostgreSQL's CPU is not
    /// measured).
    pub(crate) postmaster: Option<u32>,
    pub(crate) events: Vec<Event>,
    pub(crate) settle: Settle,
    pub(crate) drain_time: Duration,
}

/// After the restarts: how the clients were spread, and how long the
/// nodes' rebalancing took to bring every node to at most `bound`.
#[derive(Debug, Clone)]
pub(crate) struct Settle {
    pub(crate) after_restarts: Vec<usize>,
    /// Each node's share plus chat-server's default tolerance.
    pub(crate) bound: usize,
    /// `None`: not within `waited` (or not waited for).
    pub(crate) settled_in: Option<Duration>,
    /// Connections opened from the end of the restarts until settled.
    pub(crate) moves: usize,
    pub(crate) waited: Duration,
}

/// Latency percentiles of one set of deliveries, µs.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Latency {
    pub(crate) count: usize,
    pub(crate) p50: u64,
    pub(crate) p99: u64,
    pub(crate) max: u64,
}

impl Latency {
    fn of(mut values: Vec<u64>) -> Self {
        values.sort_unstable();
        Self {
            count: values.len(),
            p50: quantile(&values, 0.50),
            p99: quantile(&values, 0.99),
            max: values.last().copied().unwrap_or(0),
        }
    }
}

/// The steady phase: its length, rates, and CPU seconds used.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Steady {
    pub(crate) secs: f64,
    /// Message frames received by the clients, per second.
    pub(crate) deliveries_per_s: f64,
    pub(crate) sends_per_s: f64,
    /// CPU seconds of the chat-server processes, PostgreSQL, and this
    /// process (the clients and the provider).
    pub(crate) nodes_cpu: f64,
    pub(crate) postgres_cpu: f64,
    pub(crate) harness_cpu: f64,
}

impl Steady {
    /// Deliveries per chat-server CPU-second, and per chat-server +
    /// PostgreSQL CPU-second.
    pub(crate) fn per_cpu_second(&self) -> (f64, f64) {
        let deliveries = self.deliveries_per_s * self.secs;
        (
            deliveries / self.nodes_cpu.max(1e-9),
            deliveries / (self.nodes_cpu + self.postgres_cpu).max(1e-9),
        )
    }
}

/// Everything a run measured.
#[derive(Debug)]
pub(crate) struct Report {
    pub(crate) config: Config,
    pub(crate) phases: Phases,
    pub(crate) check: Check,
    pub(crate) steady_latency: Latency,
    pub(crate) term_latency: Latency,
    pub(crate) kill_latency: Latency,
}

impl Report {
    pub(crate) fn new(config: &Config, members: &[Member], phases: Phases, check: Check) -> Self {
        let (from, to) = (phases.steady.0.at, phases.steady.1.at);
        let windows = |signal: Signal| -> Vec<(u64, u64)> {
            phases
                .events
                .iter()
                .filter(|e| e.signal == signal)
                .map(Event::window)
                .collect()
        };
        let (term, kill) = (windows(Signal::Term), windows(Signal::Kill));
        let (mut steady, mut during_term, mut during_kill) = (Vec::new(), Vec::new(), Vec::new());
        let inside = |w: &[(u64, u64)], t: u64| w.iter().any(|(a, b)| (*a..=*b).contains(&t));
        for m in members {
            for &(sent, latency) in &lock(&m.seen).latencies {
                if (from..=to).contains(&sent) {
                    steady.push(latency);
                } else if inside(&term[..], sent) {
                    during_term.push(latency);
                } else if inside(&kill[..], sent) {
                    during_kill.push(latency);
                }
            }
        }
        Self {
            config: config.clone(),
            phases,
            check,
            steady_latency: Latency::of(steady),
            term_latency: Latency::of(during_term),
            kill_latency: Latency::of(during_kill),
        }
    }

    /// The steady phase's rates and CPU times.
    pub(crate) fn steady(&self) -> Steady {
        let (a, b) = self.phases.steady;
        let secs = (b.at - a.at) as f64 / 1e6;
        let tick = self.phases.tick as f64;
        Steady {
            secs,
            deliveries_per_s: (b.deliveries - a.deliveries) as f64 / secs,
            sends_per_s: (b.sent - a.sent) as f64 / secs,
            nodes_cpu: (b.nodes - a.nodes) as f64 / tick,
            postgres_cpu: b.postgres.saturating_sub(a.postgres) as f64 / tick,
            harness_cpu: (b.harness - a.harness) as f64 / tick,
        }
    }

    /// The report, as printed by the bench.
    pub(crate) fn render(&self) -> String {
        use std::fmt::Write as _;
        let c = &self.config;
        let p = &self.phases;
        let k = &self.check;
        let mut out = String::new();
        let ms = |us: u64| us as f64 / 1000.0;
        let _ = writeln!(
            out,
            "{} clients in {} rooms on {} chat-server processes (one PostgreSQL); {} senders at {}/s each; chat-server --max-pending-per-ip {}",
            c.clients,
            c.rooms,
            c.nodes,
            c.senders,
            c.rate,
            c.pending_cap
                .map_or("64 (default)".to_owned(), |n| n.to_string())
        );
        let _ = writeln!(
            out,
            "all connected and joined in {:.2?}; clients per node at the start {:?}, at the end {:?}",
            p.connect_time, p.start_nodes, p.end_nodes
        );
        let st = &p.settle;
        let _ = match (st.waited.is_zero(), st.settled_in) {
            (true, _) => writeln!(
                out,
                "after the restarts {:?} (rebalancing not waited for)",
                st.after_restarts
            ),
            (false, Some(t)) => writeln!(
                out,
                "after the restarts {:?}; every node at most {} (share + tolerance) {:.1?} later, {} connections opened meanwhile",
                st.after_restarts, st.bound, t, st.moves
            ),
            (false, None) => writeln!(
                out,
                "after the restarts {:?}; NOT every node at most {} within {:?} ({} connections opened meanwhile)",
                st.after_restarts, st.bound, st.waited, st.moves
            ),
        };
        let _ = writeln!(
            out,
            "\n== loss and duplication (checked against the committed rows) =="
        );
        let _ = writeln!(
            out,
            "messages sent {}, acknowledged {}, committed {}; unacknowledged {}",
            k.sent, k.acked, k.committed, k.unacked
        );
        let _ = writeln!(
            out,
            "lost {} | duplicated {} | stored twice {} | taken at a wrong seq {} | acked but not committed {} | ack conflicts {} | gaps {} | rooms with seq gaps {}",
            k.lost,
            k.duplicates,
            k.stored_twice,
            k.mismatched,
            k.acked_not_committed,
            k.ack_conflicts,
            k.gaps,
            k.db_gaps
        );
        let _ = writeln!(
            out,
            "resume overlaps dropped by the seq check (expected): {}; joined below the cursor: {}; error frames: {:?}; drain {:.2?}",
            k.overlap, k.short_history, k.errors, p.drain_time
        );
        let _ = writeln!(
            out,
            "verdict: {}",
            if k.clean() {
                "nothing lost, nothing doubled"
            } else {
                "NOT CLEAN"
            }
        );

        let st = self.steady();
        let (secs, per_s, sends) = (st.secs, st.deliveries_per_s, st.sends_per_s);
        let (node_cpu, pg_cpu, harness_cpu) = (st.nodes_cpu, st.postgres_cpu, st.harness_cpu);
        let _ = writeln!(out, "\n== steady phase ({secs:.1} s) ==");
        let _ = writeln!(
            out,
            "{sends:.0} messages/s sent, {per_s:.0} deliveries/s; chat-server CPU {node_cpu:.2} s ({:.2} cores), PostgreSQL {pg_cpu:.2} s ({:.2} cores), harness (clients) {harness_cpu:.2} s ({:.2} cores)",
            node_cpu / secs,
            pg_cpu / secs,
            harness_cpu / secs
        );
        if p.postmaster.is_none() {
            let _ = writeln!(
                out,
                "(PostgreSQL's CPU not measured: its postmaster was not found)"
            );
        }
        let (per_node_cpu, per_all_cpu) = st.per_cpu_second();
        let _ = writeln!(
            out,
            "deliveries per chat-server CPU-second: {per_node_cpu:.0}; per (chat-server + PostgreSQL) CPU-second: {per_all_cpu:.0}  (Centrifugo: ~12,500 per core; main's single SQLite node: ~42,000)"
        );
        let l = self.steady_latency;
        let _ = writeln!(
            out,
            "latency send → other members, steady: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} deliveries)",
            ms(l.p50),
            ms(l.p99),
            ms(l.max),
            l.count
        );
        for (name, l) in [
            ("SIGTERM", self.term_latency),
            ("SIGKILL", self.kill_latency),
        ] {
            let _ = writeln!(
                out,
                "latency during {name} restarts (sent from the signal to 0.5 s after the last resume): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} deliveries)",
                ms(l.p50),
                ms(l.p99),
                ms(l.max),
                l.count
            );
        }

        let _ = writeln!(out, "\n== node restarts (times from the signal) ==");
        for e in &p.events {
            let (b100, avg100, r100) = e.storm(Duration::from_millis(100));
            let (b25, avg25, r25) = e.storm(Duration::from_millis(25));
            let _ = writeln!(
                out,
                "{} node {}: {} clients moved to {:?}; resumed p50 {:.0} ms, last {:.0} ms; node listening again after {:.0} ms; failed attempts {}; listen queue overflows {}",
                e.signal.name(),
                e.node,
                e.resumes.len(),
                e.landed,
                ms(quantile(&e.resumes, 0.5)),
                ms(e.resumes.last().copied().unwrap_or(0)),
                ms(e.back - e.signalled),
                e.failed_attempts,
                e.listen_overflows
            );
            let _ = writeln!(
                out,
                "  connections opened per 100 ms: {:?}; busiest 100 ms {b100} vs uniform average {avg100:.1} = {r100:.2}x; busiest 25 ms {b25} vs {avg25:.1} = {r25:.2}x (goal <= 3x)",
                e.grid(Duration::from_millis(100))
            );
            let _ = writeln!(out, "  reconnect reasons: {:?}", e.reasons);
        }
        out
    }
}
