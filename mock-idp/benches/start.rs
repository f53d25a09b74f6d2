//! Start → first signed token for an embedded `MockIdp` (issue 10: ≤ 10 ms).
//!
//! Timed from just before `MockIdp::start()` to the first `Control::sign_jwt`
//! (RS256) returning; the provider is dropped outside the timed part.
//!
//! - `later MockIdp in the process`: the process's shared first keys already
//!   exist, as for every provider after the first in a test binary.
//! - `first MockIdp in a new process, …`: each sample runs this bench binary
//!   again as a child that starts one provider and reports its time, like the
//!   first provider of any test binary. Process start-up is not in the figure.
//!   The child's `XDG_CACHE_HOME` is a temporary directory, so the user's
//!   development key cache is neither read nor written:
//!   - `cold key cache`: a new empty directory per sample, so the child
//!     generates the keys (RSA-2048 + P-256) and saves them, as the very
//!     first test process on a machine (or in a CI job with a scratch HOME)
//!     does;
//!   - `cached keys`: one directory whose key file a first, uncounted child
//!     wrote, so the child loads the keys, as every later test process does;
//!   - `cached keys, random generator seeded before start`: the same, but
//!     the child has aws-lc seed its random generator (~20 ms of CPU on its
//!     first use in a process) before the clock starts: what is left of the
//!     start itself.
//! - `fresh_keys()`: a provider that asks for its own keys, in this process.
//!
//! Run: `cargo bench -p sessionkit-mock-idp --bench start`

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use serde_json::json;
use sessionkit_mock_idp::{Alg, MockIdp, MockIdpBuilder};

/// Set in the child's environment: start one provider, print nanoseconds,
/// exit. The value `seeded` seeds the random generator before the clock starts.
const CHILD: &str = "SESSIONKIT_BENCH_START_CHILD";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Starts a provider and signs one token; returns the time and the provider.
async fn start_and_sign(builder: MockIdpBuilder) -> (Duration, MockIdp) {
    let t0 = Instant::now();
    let idp = builder.start().await.unwrap();
    let token = idp
        .control()
        .sign_jwt(Alg::RS256, "JWT", &json!({"sub": "alice"}));
    let elapsed = t0.elapsed();
    assert_eq!(token.split('.').count(), 3);
    (elapsed, idp)
}

fn child(mode: &str) {
    if mode == "seeded" {
        let mut byte = [0u8];
        aws_lc_rs::rand::fill(&mut byte).unwrap();
    }
    let (elapsed, idp) = runtime().block_on(start_and_sign(MockIdp::builder()));
    drop(idp);
    println!("{}", elapsed.as_nanos());
}

/// A new temporary directory to be a child's cache directory.
fn cache_dir() -> std::path::PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "mock-idp-bench-cache-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn first_in_new_process(cache: &std::path::Path, mode: &str) -> Duration {
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .env(CHILD, mode)
        .env("XDG_CACHE_HOME", cache)
        .output()
        .unwrap();
    assert!(out.status.success(), "the child failed: {out:?}");
    let nanos: u64 = String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    Duration::from_nanos(nanos)
}

fn bench(c: &mut Criterion) {
    let rt = runtime();
    // Make the shared keys exist, as the first provider of a test binary does.
    drop(rt.block_on(start_and_sign(MockIdp::builder())).1);

    let mut group = c.benchmark_group("mock_idp_start_to_signed_token");
    group.bench_function("later MockIdp in the process (shared keys)", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (elapsed, idp) = rt.block_on(start_and_sign(MockIdp::builder()));
                total += elapsed;
                rt.block_on(idp.shutdown());
            }
            total
        })
    });
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("first MockIdp in a new process, cold key cache", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    let cache = cache_dir();
                    let elapsed = first_in_new_process(&cache, "plain");
                    std::fs::remove_dir_all(&cache).unwrap();
                    elapsed
                })
                .sum()
        })
    });
    let cache = cache_dir();
    first_in_new_process(&cache, "plain"); // writes the key file
    assert!(
        cache
            .join("sessionkit-mock-idp")
            .join("signing-keys.json")
            .exists()
    );
    group.bench_function("first MockIdp in a new process, cached keys", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| first_in_new_process(&cache, "plain"))
                .sum()
        })
    });
    group.bench_function(
        "first MockIdp in a new process, cached keys, random generator seeded before start",
        |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| first_in_new_process(&cache, "seeded"))
                    .sum()
            })
        },
    );
    group.bench_function("fresh_keys()", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (elapsed, idp) = rt.block_on(start_and_sign(MockIdp::builder().fresh_keys()));
                total += elapsed;
                rt.block_on(idp.shutdown());
            }
            total
        })
    });
    group.finish();
    std::fs::remove_dir_all(&cache).unwrap();
}

criterion_group!(benches, bench);

fn main() {
    if let Ok(mode) = std::env::var(CHILD) {
        child(&mode);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
