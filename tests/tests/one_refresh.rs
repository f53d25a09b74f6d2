//! One refresh per account serves every consumer: five realtime connections
//! to the chat server, an `AuthedClient` calling the provider's userinfo,
//! and the session's own timer make no more refresh grants than an account
//! with no consumer at all; and two "processes" (two managers sharing one
//! store and one lock directory, as two instances of an app do) make no
//! more between them than one does.

#![allow(missing_docs, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sessionkit::{
    AccountRegistry, AuthedClient, HttpClient, LoopbackOptions, MemoryStore, OidcClient, Provider,
    RefreshPolicy, Session, SessionManager, TokenStore,
};
use sessionkit_examples::server::{ChatServer, ServerConfig};
use sessionkit_mock_idp::MockIdp;
use sessionkit_realtime::{RealtimeClient, State, TokenSource};

/// Access tokens live 4 s; with a 1 s clock skew the session refreshes 1 s
/// before expiry: every 3 s.
const TTL_SECS: u64 = 4;
const INTERVAL: Duration = Duration::from_secs(3);
/// Five token lifetimes.
const WATCH: Duration = Duration::from_secs(5 * TTL_SECS);

fn scratch() -> PathBuf {
    std::env::temp_dir().join(format!(
        "sk-e2e-one-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ))
}

async fn idp(user: &str) -> MockIdp {
    MockIdp::builder()
        .auto_login(user)
        .access_token_ttl(TTL_SECS)
        .start()
        .await
        .unwrap()
}

async fn manager(idp: &MockIdp, store: Arc<dyn TokenStore>, dir: &Path) -> SessionManager {
    let http = HttpClient::new().unwrap();
    let provider = Provider::discover(idp.issuer(), &http).await.unwrap();
    let client = OidcClient::new(provider, "chat-example")
        .scopes(["openid", "profile", "offline_access"])
        .clock_skew(Duration::from_secs(1));
    SessionManager::for_client(client)
        .namespace("sk-e2e-one")
        .store(store)
        .registry(AccountRegistry::at(dir.join("accounts.json")))
        .policy(RefreshPolicy::Background)
        .restore(false)
        .build()
        .await
        .unwrap()
}

async fn signed_in(manager: &SessionManager) -> Arc<Session> {
    let options = LoopbackOptions::with_callback(|url| {
        let url = url.to_owned();
        tokio::spawn(async move {
            let _ = reqwest::get(url).await;
        });
    });
    manager.login_loopback(options).await.unwrap()
}

/// The most refreshes a timer can make in `elapsed`: one per interval.
fn at_most(elapsed: Duration) -> u64 {
    (elapsed.as_millis() / INTERVAL.as_millis()) as u64 + 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_connections_an_authed_client_and_the_timer_share_one_refresh() {
    let (busy_idp, quiet_idp) = (idp("alice").await, idp("bob").await);
    let (busy_dir, quiet_dir) = (scratch(), scratch());
    let busy = manager(&busy_idp, Arc::new(MemoryStore::new()), &busy_dir).await;
    let quiet = manager(&quiet_idp, Arc::new(MemoryStore::new()), &quiet_dir).await;
    let session = signed_in(&busy).await;
    let _quiet_session = signed_in(&quiet).await;
    let server = ChatServer::start(ServerConfig::new(busy_idp.issuer()))
        .await
        .unwrap();

    let clients: Vec<RealtimeClient> = (0..5)
        .map(|_| {
            let source: Arc<dyn TokenSource> = session.clone();
            RealtimeClient::builder(server.ws_url())
                .build(source)
                .unwrap()
                .0
        })
        .collect();
    for client in &clients {
        tokio::time::timeout(
            Duration::from_secs(10),
            client
                .state()
                .wait_for(|s| matches!(s, State::Connected { .. })),
        )
        .await
        .unwrap()
        .unwrap();
    }
    // Any state other than Connected from now on would be a gap.
    let mut gaps = Vec::new();
    for client in &clients {
        let mut state = client.state();
        gaps.push(tokio::spawn(async move {
            while state.changed().await.is_ok() {
                let now = state.borrow_and_update().clone();
                if !matches!(now, State::Connected { .. }) {
                    return Some(now);
                }
            }
            None
        }));
    }
    let api = AuthedClient::new(session.clone()).unwrap();
    let userinfo = format!("{}/userinfo", busy_idp.issuer());
    let started = tokio::time::Instant::now();
    while started.elapsed() < WATCH {
        let response = api.get(&userinfo).await.unwrap();
        assert!(response.status().is_success(), "{}", response.status());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let elapsed = started.elapsed();
    let busy_count = busy_idp.control().count("token:refresh_token");
    let quiet_count = quiet_idp.control().count("token:refresh_token");
    eprintln!(
        "refresh grants in {elapsed:?}: 5 sockets + AuthedClient + timer {busy_count}, timer alone {quiet_count}"
    );
    assert!(
        quiet_count >= 5,
        "the timer refreshed by itself: {quiet_count}"
    );
    assert!(
        busy_count <= quiet_count + 1,
        "five sockets, an API client and the timer: {busy_count} refreshes; alone: {quiet_count}"
    );
    assert!(
        busy_count <= at_most(elapsed),
        "{busy_count} refreshes in {elapsed:?}: more than one per {INTERVAL:?}"
    );
    for client in &clients {
        assert!(matches!(client.current_state(), State::Connected { .. }));
        client.shutdown().await;
    }
    for gap in gaps {
        let gap = gap.await.unwrap();
        assert!(
            matches!(gap, None | Some(State::Closed(_))),
            "a connection left Connected while the session refreshed: {gap:?}"
        );
    }
    let _ = std::fs::remove_dir_all(busy_dir);
    let _ = std::fs::remove_dir_all(quiet_dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_of_one_account_refresh_no_more_than_one() {
    let (shared_idp, single_idp) = (idp("carol").await, idp("carol").await);
    let (shared_dir, single_dir) = (scratch(), scratch());
    // Two instances of the app: one store (the keychain), one lock directory.
    let store: Arc<dyn TokenStore> = Arc::new(MemoryStore::new());
    let first = manager(&shared_idp, store.clone(), &shared_dir).await;
    let first_session = signed_in(&first).await;
    let second = manager(&shared_idp, store.clone(), &shared_dir).await;
    let restored = second.restore().await.unwrap();
    assert!(restored.iter().all(|r| r.result.is_ok()), "{restored:?}");
    let second_session = second.session(first_session.key()).unwrap();
    // The same account in one process only.
    let single = manager(&single_idp, Arc::new(MemoryStore::new()), &single_dir).await;
    let _single_session = signed_in(&single).await;

    let started = tokio::time::Instant::now();
    while started.elapsed() < WATCH {
        // Both instances use their tokens all the time.
        first_session.access_token().await.unwrap();
        second_session.access_token().await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let elapsed = started.elapsed();
    let two = shared_idp.control().count("token:refresh_token");
    let one = single_idp.control().count("token:refresh_token");
    eprintln!("refresh grants in {elapsed:?}: two instances {two}, one instance {one}");
    assert!(one >= 5, "the timer refreshed by itself: {one}");
    assert!(
        two <= one + 1,
        "two processes: {two} refreshes; one process: {one}"
    );
    assert!(two <= at_most(elapsed), "{two} refreshes in {elapsed:?}");
    // Both are still signed in with the same, current token.
    assert_eq!(
        first_session.access_token().await.unwrap(),
        second_session.access_token().await.unwrap()
    );
    let _ = std::fs::remove_dir_all(shared_dir);
    let _ = std::fs::remove_dir_all(single_dir);
}
