//! Keeping the nodes that share PostgreSQL evenly loaded.
//!
//! A client moves only when it has to: a node going away sends its clients
//! to their next endpoints, and nothing brings them back. After a rolling
//! restart the last node to restart ends with none, and the one restarted
//! first with most (847 / 153 / 0 of 1,000 clients in the load harness).
//! So every node reports its connection count to the `chat_nodes` table
//! every [`Rebalance::interval`] and reads the fleet's: a node holding more
//! than its fair share (the fleet's connections over the live nodes) by
//! more than the tolerance asks some of its clients to move, with close
//! 1012 (service restart), which a realtime client answers by going to its
//! next endpoint at once and resuming there. Only clients that said they
//! know other endpoints ([`sessionkit_realtime::ENDPOINTS_HEADER`]) are
//! asked: one with a single URL would only come back.
//!
//! At most a tenth of the node's connections move per round, so a fleet
//! evens out over a few rounds in a trickle of reconnects rather than a
//! storm; a moved client lands on any other node (its own order), so one
//! may land on another busy node and move again later.
//!
//! Counts that cannot be trusted hold everything still. A node that stops
//! deletes its row; a node that dies leaves its last count behind, while
//! its clients are counted again where they landed: with that row in the
//! sums the share comes out too small, and the survivors would shed to each
//! other. So a node counts only rows reported within an interval and a
//! half; while any row is older than that but not older than three
//! intervals (a node gone or late), no node sheds; and a node whose own
//! count rose by more than the tolerance in its last two rounds (a
//! failover landing on it, which a dead node's row may not show yet) does
//! not shed either. A node that restarts reports under a new name, so its
//! old row holds the fleet still for up to three intervals too.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::db::{FleetLoad, Postgres};
use super::hub::{Hub, Kick};
use crate::protocol::CLOSE_MOVE;

/// How the nodes that share PostgreSQL even out their connections (see
/// [`ServerConfig::rebalance`](super::ServerConfig::rebalance)).
///
/// ```
/// use std::time::Duration;
/// use sessionkit_examples::server::{Rebalance, ServerConfig};
///
/// let mut config = ServerConfig::new("http://127.0.0.1:9090");
/// assert_eq!(config.rebalance.interval, Duration::from_secs(5));
/// // Never ask clients to move:
/// config.rebalance = Rebalance::off();
/// assert!(config.rebalance.is_off());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Rebalance {
    /// How often a node reports its connections and compares them with
    /// the fleet's (default 5 s). Zero: never.
    pub interval: Duration,
    /// How far above its fair share a node may be before it asks clients
    /// to move: this many connections or a tenth of the share, whichever
    /// is more (default 10).
    pub tolerance: usize,
}

impl Default for Rebalance {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(5),
            tolerance: 10,
        }
    }
}

impl Rebalance {
    /// No rebalancing: clients stay where they land.
    pub fn off() -> Self {
        Self {
            interval: Duration::ZERO,
            ..Self::default()
        }
    }

    /// Does it never ask a client to move?
    pub fn is_off(&self) -> bool {
        self.interval.is_zero()
    }
}

/// The close that asks a client to move: 1012 (service restart), which a
/// realtime client of several endpoints answers by going to its next one.
const MOVE: Kick = Kick {
    code: CLOSE_MOVE,
    reason: "rebalancing: reconnect to another node",
};

/// How long a stopping node tries to take itself out of the count.
const FORGET_WITHIN: Duration = Duration::from_secs(1);

/// How many of its `own` connections a node asks to move this round, when
/// `nodes` live nodes (itself included) hold `total` connections in all.
pub(crate) fn to_shed(own: usize, total: usize, nodes: usize, tolerance: usize) -> usize {
    if nodes < 2 {
        return 0;
    }
    // Its own count is fresher than what it reported.
    let total = total.max(own);
    let fair = total.div_ceil(nodes);
    if own <= fair + tolerance.max(fair / 10) {
        return 0;
    }
    (own - fair).min((own / 10).max(1))
}

/// One node's rounds: what it held in its last two, to tell a failover
/// landing on it from a load to even out.
#[derive(Debug, Default)]
pub(crate) struct Rounds {
    /// Its connections one and two rounds ago.
    recent: [Option<usize>; 2],
}

impl Rounds {
    /// This round's decision: how many of its `own` connections to move,
    /// given the fleet's `load` (0 while any count is in doubt).
    pub(crate) fn decide(&mut self, own: usize, load: FleetLoad, tolerance: usize) -> usize {
        let landing = self
            .recent
            .iter()
            .flatten()
            .any(|before| own > before + tolerance);
        self.recent = [Some(own), self.recent[0]];
        if landing || load.silent > 0 {
            return 0;
        }
        let total = usize::try_from(load.connections).unwrap_or(usize::MAX);
        let nodes = usize::try_from(load.nodes).unwrap_or(usize::MAX);
        to_shed(own, total, nodes, tolerance)
    }
}

/// A name for this node in `chat_nodes`: unique among the nodes sharing
/// the database (its address, process, start time and a random part, for
/// replicas that share all three).
pub(crate) fn node_name(addr: std::net::SocketAddr) -> String {
    use std::hash::{BuildHasher as _, Hasher as _};

    let started = super::unix_millis();
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    format!("{addr}/{}/{started}/{random:016x}", std::process::id())
}

/// Reports the node's load every interval and sheds what is over its share,
/// until `cancel`; then takes the node out of the count.
pub(crate) async fn run(
    pg: Postgres,
    hub: Arc<Hub>,
    node: String,
    config: Rebalance,
    cancel: CancellationToken,
) {
    let mut ticks = tokio::time::interval(config.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut rounds = Rounds::default();
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            _ = ticks.tick() => {}
        }
        let own = hub.connections();
        let load = tokio::select! {
            () = cancel.cancelled() => break,
            load = pg.report_load(&node, own, config.interval) => load,
        };
        match load {
            Ok(load) => {
                let n = rounds.decide(own, load, config.tolerance);
                // (Nothing moved: every client over the share has one URL.)
                let moved = if n > 0 { hub.shed(n, &MOVE) } else { 0 };
                if moved > 0 {
                    tracing::info!(
                        own,
                        total = load.connections,
                        nodes = load.nodes,
                        moved,
                        "rebalancing: asked connections to move to other nodes"
                    );
                }
            }
            Err(e) => tracing::debug!(%e, "rebalancing: cannot report this node's load"),
        }
    }
    // Briefly: a stopping node does not wait on a database that is down
    // (its row then goes silent, and out of the count in three intervals).
    match tokio::time::timeout(FORGET_WITHIN, pg.forget_node(&node)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(%e, "rebalancing: cannot take this node out of the count"),
        Err(_) => tracing::debug!(
            "rebalancing: the database did not answer in time to take this node out of the count"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_within_its_share_and_the_tolerance_keeps_everyone() {
        assert_eq!(to_shed(0, 0, 3, 10), 0);
        assert_eq!(to_shed(40, 100, 3, 10), 0, "share 34, up to 44 kept");
        assert_eq!(to_shed(44, 100, 3, 10), 0);
        assert_eq!(to_shed(1000, 1000, 1, 10), 0, "alone: nowhere to go");
        // Past a share of 100 the tolerance is a tenth of it.
        assert_eq!(to_shed(367, 1000, 3, 10), 0, "share 334, up to 367");
        assert_eq!(to_shed(368, 1000, 3, 10), 34);
    }

    #[test]
    fn a_node_over_sheds_a_tenth_per_round_and_never_below_its_share() {
        // 847 / 153 / 0 after a rolling restart: share 334.
        assert_eq!(to_shed(847, 1000, 3, 10), 84);
        assert_eq!(to_shed(47, 60, 3, 2), 4, "a tenth of 47");
        assert_eq!(to_shed(24, 60, 3, 2), 2, "share 20; a tenth of 24");
        assert_eq!(to_shed(22, 60, 3, 2), 0, "within 20 + 2");
        assert_eq!(to_shed(5, 6, 3, 0), 1, "at least one");
        // The node's own count beats a stale, smaller total.
        assert_eq!(to_shed(90, 10, 3, 10), 9);
    }

    fn load(nodes: u64, connections: u64, silent: u64) -> FleetLoad {
        FleetLoad {
            nodes,
            connections,
            silent,
        }
    }

    #[test]
    fn nothing_moves_while_a_node_is_silent_or_a_failover_lands() {
        let mut rounds = Rounds::default();
        // First round: nothing known of before; 847 of 1,000, 3 nodes.
        assert_eq!(rounds.decide(847, load(3, 1000, 0), 10), 84);
        // A node went silent (dead or late): its count is in doubt.
        assert_eq!(rounds.decide(763, load(2, 1000, 1), 10), 0);
        assert_eq!(rounds.decide(763, load(3, 1000, 0), 10), 76);

        // 333 each; node C dies and its clients land on A and B, whose
        // rows still sum C's old count: the share reads 445, not 500.
        let mut a = Rounds::default();
        assert_eq!(a.decide(333, load(3, 999, 0), 10), 0);
        assert_eq!(a.decide(500, load(3, 1333, 0), 10), 0, "landing");
        assert_eq!(a.decide(500, load(3, 1333, 0), 10), 0, "landed a round ago");
        // Two rounds on, C's row is silent (or gone): still nothing.
        assert_eq!(a.decide(500, load(2, 1000, 1), 10), 0);
        assert_eq!(a.decide(500, load(2, 1000, 0), 10), 0, "500 is the share");
        // C is back, empty: A sheds toward it.
        assert_eq!(a.decide(500, load(3, 1000, 0), 10), 50);
        // A rise within the tolerance over two rounds is no landing.
        let mut b = Rounds::default();
        assert_eq!(b.decide(20, load(3, 60, 0), 2), 0, "share 20, up to 22");
        assert_eq!(b.decide(22, load(3, 60, 0), 2), 0);
        assert_eq!(b.decide(22, load(3, 60, 0), 2), 0);
        assert_eq!(b.decide(23, load(3, 60, 0), 2), 2);
    }
}
