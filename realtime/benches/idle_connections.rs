//! 10,000 idle connections in one process: goal ≤ 64 KiB each, measured
//! from the process's resident memory (VmRSS) before the clients are built
//! and with every connection up (after one ping round, so the buffers a
//! ping and its pong touch are counted). The server runs in a child process
//! (this binary, re-run as `server`), so only the client side is measured.
//!
//! Run (the client needs 10,000 descriptors, the server as many):
//! `ulimit -n 20000 && cargo bench -p sessionkit-realtime --bench idle_connections`
//!
//! `REALTIME_BENCH_CONNECTIONS` (default 10000) and `REALTIME_BENCH_IDLE_SECS`
//! (default 20; an idle connection is pinged after 4 s of silence) change
//! the run.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{ServerChild, env_or, rss_kib};
use sessionkit_realtime::{Incoming, RealtimeClient, State, StaticToken, TokenSource};
use tokio::sync::mpsc;

fn main() {
    if common::is_server() {
        common::serve();
        return;
    }
    let n = usize::try_from(env_or("REALTIME_BENCH_CONNECTIONS", 10_000)).expect("count");
    let idle = Duration::from_secs(env_or("REALTIME_BENCH_IDLE_SECS", 20));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let mut server = ServerChild::spawn().await;
        let source: Arc<dyn TokenSource> = Arc::new(StaticToken::new("bench-token"));
        // One client first, so one-off allocations (runtime, statics) are
        // not charged to the 10,000.
        let (warm, _warm_in) = RealtimeClient::builder(server.url())
            .build(source.clone())
            .expect("client");
        let mut state = warm.state();
        state
            .wait_for(|s| matches!(s, State::Connected { .. }))
            .await
            .expect("warm-up client");
        warm.shutdown().await;
        drop(_warm_in);
        while server.open().await != 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;

        let before = rss_kib();
        let started = Instant::now();
        let mut clients: Vec<(RealtimeClient, mpsc::Receiver<Incoming>)> = Vec::with_capacity(n);
        while clients.len() < n {
            let batch = (n - clients.len()).min(500);
            for _ in 0..batch {
                clients.push(
                    RealtimeClient::builder(server.url())
                        .build(source.clone())
                        .expect("client"),
                );
            }
            let deadline = Instant::now() + Duration::from_secs(60);
            while server.open().await < clients.len() {
                assert!(Instant::now() < deadline, "connections did not come up");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        let connected = clients
            .iter()
            .filter(|(c, _)| matches!(c.current_state(), State::Connected { .. }))
            .count();
        let up_in = started.elapsed();
        let at_up = rss_kib();
        tokio::time::sleep(idle).await;
        let after = rss_kib();
        let still = clients
            .iter()
            .filter(|(c, _)| matches!(c.current_state(), State::Connected { .. }))
            .count();
        let open_at_server = server.open().await;
        let per = |kib: u64| kib.saturating_sub(before) as f64 / n as f64;
        println!("connections: {n} (connected: {connected} when up, {still} after {idle:?} idle; server sees {open_at_server})");
        println!("up in: {up_in:.2?}");
        println!("RSS before: {before} KiB");
        println!("RSS with all up: {at_up} KiB ({:.1} KiB per connection)", per(at_up));
        println!(
            "RSS after {idle:?} idle: {after} KiB ({:.1} KiB per connection; goal ≤ 64)",
            per(after)
        );
        for (client, _) in &clients {
            client.close();
        }
        for (client, _) in &clients {
            client.closed().await;
        }
        server.quit().await;
    });
}
