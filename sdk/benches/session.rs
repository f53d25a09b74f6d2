//! The hot path and the storm.
//!
//! - `access_token()` with a valid token: goal ≤ 100 ns and ≤ 3× an
//!   `Arc<str>` clone measured in the same run (both timed the same way: a
//!   loop of calls inside one task, so the runtime's entry cost is not counted).
//! - 1,000 callers forcing a refresh at once against the mock provider on
//!   loopback: one token request, and every caller served within 1.5× of one
//!   refresh's latency.
//!
//! Run: `cargo bench -p sessionkit --bench session`

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use criterion::{Criterion, criterion_group, criterion_main};
use sessionkit::{
    AccessToken, AccountRegistry, HttpClient, MemoryStore, OidcClient, Provider, RefreshPolicy,
    Session, SessionManager,
};
use sessionkit_mock_idp::MockIdp;

struct Fixture {
    _idp: MockIdp,
    _manager: SessionManager,
    session: Arc<Session>,
    idp_control: sessionkit_mock_idp::Control,
}

fn fixture(rt: &tokio::runtime::Runtime) -> Fixture {
    rt.block_on(async {
        let idp = MockIdp::builder()
            .auto_login("alice")
            .start()
            .await
            .unwrap();
        let provider = Provider::discover(idp.issuer(), &HttpClient::new().unwrap())
            .await
            .unwrap();
        let client = OidcClient::new(provider, "chat-example").scopes(["openid", "offline_access"]);
        let dir = std::env::temp_dir().join(format!("sk-bench-{}", std::process::id()));
        let manager = SessionManager::for_client(client.clone())
            .namespace("bench")
            .store(Arc::new(MemoryStore::new()))
            .registry(AccountRegistry::at(dir.join("a.json")))
            .policy(RefreshPolicy::OnDemand)
            .build()
            .await
            .unwrap();
        // Sign in by the app-handled redirect flow (the provider auto-logs alice in).
        let request = client
            .authorization_request("http://127.0.0.1:1/callback")
            .await
            .unwrap();
        let no_follow = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let response = no_follow.get(request.url.as_str()).send().await.unwrap();
        let back = response.headers()["location"].to_str().unwrap().to_owned();
        let tokens = client.finish(&request, &back).await.unwrap();
        let account = manager.sign_in(tokens).await.unwrap().info().clone();
        let session = manager.session(&account.key).unwrap();
        let idp_control = idp.control().clone();
        Fixture {
            _idp: idp,
            _manager: manager,
            session,
            idp_control,
        }
    })
}

fn hot_path(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let f = fixture(&rt);
    let (token, expires) = f.session.cached_access_token();
    assert!(expires.unwrap() > SystemTime::now() + Duration::from_secs(120));
    let arc: Arc<str> = Arc::from(token.secret());
    let mut group = c.benchmark_group("hot_path");
    group.bench_function("Arc<str> clone", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(Arc::clone(black_box(&arc)));
                }
                start.elapsed()
            })
        })
    });
    group.bench_function("access_token() with a valid token", |b| {
        b.iter_custom(|iters| {
            let session = f.session.clone();
            rt.block_on(async move {
                let start = Instant::now();
                for _ in 0..iters {
                    let t: AccessToken = session.access_token().await.unwrap();
                    black_box(t);
                }
                start.elapsed()
            })
        })
    });
    group.finish();
}

fn storm(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let f = fixture(&rt);
    // One-second tokens: a token is used for half its life, then it is stale,
    // so after a pause every caller finds it expired.
    f.idp_control.set_access_token_ttl(1);
    rt.block_on(f.session.force_refresh()).unwrap();
    let stale = || std::thread::sleep(Duration::from_millis(600));
    let mut group = c.benchmark_group("refresh");
    group.sample_size(10);
    group.bench_function("one caller, expired token", |b| {
        b.iter_custom(|iters| {
            let session = f.session.clone();
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                stale();
                total += rt.block_on(async {
                    let start = Instant::now();
                    session.access_token().await.unwrap();
                    start.elapsed()
                });
            }
            total
        })
    });
    group.bench_function("1000 callers, expired token", |b| {
        b.iter_custom(|iters| {
            let session = f.session.clone();
            let control = f.idp_control.clone();
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                stale();
                let before = control.count("token:refresh_token");
                total += rt.block_on(async {
                    let start = Instant::now();
                    let callers: Vec<_> = (0..1000)
                        .map(|_| {
                            let s = session.clone();
                            tokio::spawn(async move { s.access_token().await })
                        })
                        .collect();
                    for c in callers {
                        c.await.unwrap().unwrap();
                    }
                    start.elapsed()
                });
                assert_eq!(
                    control.count("token:refresh_token") - before,
                    1,
                    "one request per storm"
                );
            }
            total
        })
    });
    group.finish();
}

criterion_group!(benches, hot_path, storm);
criterion_main!(benches);
