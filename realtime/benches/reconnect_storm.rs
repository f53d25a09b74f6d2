//! A reconnect storm: 1,000 clients with the default backoff (250 ms base,
//! full jitter) are connected to one server (a child process: this binary
//! re-run as `server`), which then drops every connection at once (no close
//! frame). The server records when each reconnect's TCP connection arrives.
//! Goal: the busiest 100 ms window holds ≤ 3× the uniform average over the
//! spread (first to last reconnect).
//!
//! Run: `ulimit -n 20000 && cargo bench -p sessionkit-realtime --bench reconnect_storm`
//!
//! `REALTIME_BENCH_CLIENTS` (default 1000) and `REALTIME_BENCH_SETTLE_SECS`
//! (default 11: every client has been up longer than the backoff's 10 s
//! reset, so each one's next delay is the first step's) change the run.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{ServerChild, env_or};
use sessionkit_realtime::{RealtimeClient, State, StaticToken, TokenSource};

async fn wait_open(server: &mut ServerChild, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while server.open().await < n {
        assert!(Instant::now() < deadline, "connections did not come up");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn main() {
    if common::is_server() {
        common::serve();
        return;
    }
    let n = usize::try_from(env_or("REALTIME_BENCH_CLIENTS", 1_000)).expect("count");
    let settle = Duration::from_secs(env_or("REALTIME_BENCH_SETTLE_SECS", 11));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let mut server = ServerChild::spawn().await;
        let source: Arc<dyn TokenSource> = Arc::new(StaticToken::new("bench-token"));
        let clients: Vec<_> = (0..n)
            .map(|_| {
                RealtimeClient::builder(server.url())
                    .build(source.clone())
                    .expect("client")
            })
            .collect();
        wait_open(&mut server, n).await;
        tokio::time::sleep(settle).await;
        assert_eq!(server.open().await, n);

        let before: Vec<State> = clients.iter().map(|(c, _)| c.current_state()).collect();
        assert_eq!(server.command("drop").await, "dropped");
        let dropped = Instant::now();
        // When the last client noticed (left `Connected`).
        let mut noticed = clients.iter().map(|(c, _)| c.state()).collect::<Vec<_>>();
        let mut last_notice = Duration::ZERO;
        for (state, was) in noticed.iter_mut().zip(&before) {
            let _ = state.wait_for(|s| s != was).await;
            last_notice = dropped.elapsed();
        }
        wait_open(&mut server, n).await;
        let all_back = dropped.elapsed();
        let stamps = server.command("stamps").await;
        let mut us: Vec<u64> = stamps
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().expect("stamp"))
            .collect();
        us.sort_unstable();
        let connected = clients
            .iter()
            .filter(|(c, _)| matches!(c.current_state(), State::Connected { .. }))
            .count();

        let (first, last) = (us[0], us[us.len() - 1]);
        let spread_ms = (last - first) as f64 / 1000.0;
        let windows = (spread_ms / 100.0).max(1.0);
        let average = us.len() as f64 / windows;
        // The busiest sliding window [t, t + 100 ms), t at each attempt.
        let mut busiest = 0;
        let mut end = 0;
        for (start, &t) in us.iter().enumerate() {
            while end < us.len() && us[end] < t + 100_000 {
                end += 1;
            }
            busiest = busiest.max(end - start);
        }
        // Fixed windows from the drop.
        let grid: Vec<usize> = (0..=last / 100_000)
            .map(|k| {
                us.iter()
                    .filter(|&&t| t / 100_000 == k)
                    .count()
            })
            .collect();
        println!("clients: {n}; reconnect attempts recorded: {}; connected again: {connected}; all back in {all_back:.2?}", us.len());
        println!(
            "attempts from {:.1} ms to {:.1} ms after the drop (spread {spread_ms:.1} ms)",
            first as f64 / 1000.0,
            last as f64 / 1000.0
        );
        println!("every client had noticed the drop {last_notice:.2?} after the command (an upper bound: checked one after another)");
        println!("per 100 ms from the drop: {grid:?}");
        println!(
            "busiest 100 ms window (sliding): {busiest}; uniform average over the spread: {average:.1}; ratio {:.2} (goal ≤ 3)",
            busiest as f64 / average
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
