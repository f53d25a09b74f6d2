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
//! may land on another busy node and move again later. A node that stops
//! deletes its row; one that dies stops counting once its row is older than
//! three intervals (until then its stale count only makes the others shed
//! less).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::db::Postgres;
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

/// A name for this node in `chat_nodes`: unique among the nodes sharing
/// the database (its address, process and start time).
pub(crate) fn node_name(addr: std::net::SocketAddr) -> String {
    let started = super::unix_millis();
    format!("{addr}/{}/{started}", std::process::id())
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
    // A node counts as live for three intervals after its last report.
    let live_for = config.interval.saturating_mul(3);
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            _ = ticks.tick() => {}
        }
        let own = hub.connections();
        let load = tokio::select! {
            () = cancel.cancelled() => break,
            load = pg.report_load(&node, own, live_for) => load,
        };
        match load {
            Ok(load) => {
                let total = usize::try_from(load.connections).unwrap_or(usize::MAX);
                let nodes = usize::try_from(load.nodes).unwrap_or(usize::MAX);
                let n = to_shed(own, total, nodes, config.tolerance);
                // (Nothing moved: every client over the share has one URL.)
                let moved = if n > 0 { hub.shed(n, &MOVE) } else { 0 };
                if moved > 0 {
                    tracing::info!(
                        own,
                        total,
                        nodes,
                        moved,
                        "rebalancing: asked connections to move to other nodes"
                    );
                }
            }
            Err(e) => tracing::debug!(%e, "rebalancing: cannot report this node's load"),
        }
    }
    // Briefly: a stopping node does not wait on a database that is down
    // (its row then ages out of the count in three intervals).
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
}
