//! The scale-out load harness at the issue's size: 1,000 realtime clients
//! (`builder_multi` over three `chat-server` processes sharing one
//! PostgreSQL database) in 20 rooms, 100 of them sending; a steady phase,
//! then a rolling restart of the three nodes with SIGTERM and another with
//! SIGKILL. Prints loss and duplication (checked against the committed
//! rows), the reconnect storm of each restart, delivery latency, deliveries
//! per CPU-second and the time from a node's death to its last client
//! resumed (see `harness/measure.rs` for what each figure means).
//!
//! ```text
//! .ci/with-postgres cargo bench -p sessionkit-examples --bench rolling
//! ```
//!
//! Options (after `--`): `--clients N`, `--senders N`, `--rooms N`,
//! `--rate R` (messages per second per sender), `--steady SECS`,
//! `--gap SECS` (between restarts), `--max-pending-per-ip N` (passed to
//! every chat-server: all the clients here share one address), `--short`
//! (the CI test's sizes).
//! Needs PostgreSQL (`SESSIONKIT_PG_URL`, as `.ci/with-postgres` sets it)
//! and about 2,100 file descriptors.

#![allow(missing_docs)]

mod harness;

use std::time::Duration;

use harness::Config;
use sessionkit_tests::postgres::TestDatabase;

fn options() -> Config {
    let args: Vec<String> = std::env::args().collect();
    let mut config = if args.iter().any(|a| a == "--short") {
        Config::short()
    } else {
        Config::full()
    };
    for pair in args.windows(2) {
        let value = pair[1].as_str();
        match pair[0].as_str() {
            "--clients" => config.clients = value.parse().expect("--clients N"),
            "--senders" => config.senders = value.parse().expect("--senders N"),
            "--rooms" => config.rooms = value.parse().expect("--rooms N"),
            "--rate" => config.rate = value.parse().expect("--rate R"),
            "--steady" => {
                config.steady = Duration::from_secs_f64(value.parse().expect("--steady SECS"))
            }
            "--max-pending-per-ip" => {
                config.pending_cap = Some(value.parse().expect("--max-pending-per-ip N"));
            }
            "--gap" => config.gap = Duration::from_secs_f64(value.parse().expect("--gap SECS")),
            _ => {}
        }
    }
    config.senders = config.senders.min(config.clients);
    config
}

fn main() {
    let config = options();
    // Two workers, as the machine the figures were taken on has two cores.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let Some(db) = TestDatabase::create("rolling_bench").await else {
            return;
        };
        let report = harness::run(&config, &db).await;
        println!("{}", report.render());
        if !report.check.clean() {
            std::process::exit(1);
        }
    });
}
