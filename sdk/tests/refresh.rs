//! Keeping a session fresh against the mock provider: one refresh for a
//! thousand callers, transient faults retried and recovered, `invalid_grant`
//! ending the session with cleanup, a locked store losing nothing.

mod support;

use support::*;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use sessionkit::{
    AccountKey, AccountRegistry, Error, FailureKind, HttpClient, MemoryStore, OidcClient, Provider,
    RefreshPolicy, RefreshToken, RetryPolicy, SessionEntry, SessionEvent, SessionManager,
    SessionState, StoreError, TokenStore,
};
use sessionkit_mock_idp::{Fault, MockIdp};

fn fast_retries() -> RetryPolicy {
    RetryPolicy::new(3, Duration::from_millis(20), Duration::from_millis(200))
}

async fn manager_with(
    idp: &MockIdp,
    store: Arc<dyn TokenStore>,
    dir: &std::path::Path,
    http: HttpClient,
) -> SessionManager {
    let provider = Provider::discover(idp.issuer(), &http)
        .await
        .expect("discovery");
    let client =
        OidcClient::new(provider, "chat-example").scopes(["openid", "profile", "offline_access"]);
    builder_with(client, store, dir)
        .build()
        .await
        .expect("manager")
}

fn builder_with(
    client: OidcClient,
    store: Arc<dyn TokenStore>,
    dir: &std::path::Path,
) -> sessionkit::SessionManagerBuilder {
    SessionManager::for_client(client)
        .namespace("refresh-test")
        .store(store)
        .registry(AccountRegistry::at(dir.join("accounts.json")))
        .restore(false)
        .retry(fast_retries())
        // On demand: these tests are about what a caller of access_token() sees;
        // the background timer has its own tests (lifecycle.rs).
        .policy(RefreshPolicy::OnDemand)
}

/// Signs alice in, then makes her stored access token expired and restores
/// it in a fresh manager: the session starts with a token that must be refreshed.
async fn expired_session(
    idp: &MockIdp,
    store: Arc<dyn TokenStore>,
    dir: &std::path::Path,
) -> (SessionManager, Arc<sessionkit::Session>) {
    let first = manager_with(idp, store.clone(), dir, HttpClient::new().expect("http")).await;
    let account = first
        .login_loopback(play_browser())
        .await
        .expect("sign in")
        .info()
        .clone();
    let mut entry = store.load_session(&account.key).expect("entry");
    entry.expires_at = Some(SystemTime::now() - Duration::from_secs(5));
    store.save_session(&account.key, &entry).expect("save");
    let second = manager_with(
        idp,
        store,
        dir,
        HttpClient::with_timeout(Duration::from_millis(500)).expect("http"),
    )
    .await;
    second.restore().await.expect("restore");
    let session = second.session(&account.key).expect("restored");
    (second, session)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_callers_on_an_expired_token_cause_one_refresh() {
    let idp = MockIdp::builder()
        .auto_login("alice")
        .start()
        .await
        .expect("idp");
    let dir = scratch("refresh");
    let store: Arc<dyn TokenStore> = Arc::new(MemoryStore::new());
    let (_m, session) = expired_session(&idp, store.clone(), &dir).await;
    let (old, _) = session.cached_access_token();
    idp.control().reset_requests();

    let mut tasks = Vec::new();
    for _ in 0..1000 {
        let s = session.clone();
        tasks.push(tokio::spawn(async move { s.access_token().await }));
    }
    let mut tokens = Vec::new();
    for t in tasks {
        tokens.push(t.await.expect("join").expect("token"));
    }
    assert_eq!(
        idp.control().count("token:refresh_token"),
        1,
        "exactly one refresh"
    );
    assert!(
        tokens.iter().all(|t| t == &tokens[0]),
        "all callers got its result"
    );
    assert_ne!(tokens[0], old);
    // The fresh token is served from memory now: no more requests.
    for _ in 0..100 {
        session.access_token().await.expect("cached");
    }
    assert_eq!(idp.control().count("token"), 1);
    // The rotated refresh token was persisted.
    let stored = store.load_refresh(session.key()).expect("stored");
    assert_eq!(idp.control().count("token:refresh_token"), 1);
    let _ = stored;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_faults_are_retried_and_the_session_kept() {
    let idp = MockIdp::builder()
        .auto_login("alice")
        .start()
        .await
        .expect("idp");
    for fault in [
        Fault::on("token")
            .status(503, r#"{"error":"temporarily_unavailable"}"#)
            .times(2),
        Fault::on("token")
            .status(429, r#"{"error":"slow"}"#)
            .times(1),
        Fault::on("token").drop_connection().times(2),
        Fault::on("token").malformed_json().times(2),
        Fault::on("token")
            .delay_ms(1_500)
            .status(504, "{}")
            .times(1),
    ] {
        let dir = scratch("refresh");
        let store: Arc<dyn TokenStore> = Arc::new(MemoryStore::new());
        let (_m, session) = expired_session(&idp, store.clone(), &dir).await;
        let mut events = session.events();
        idp.control().add_fault(fault.clone());
        let token = session
            .access_token()
            .await
            .unwrap_or_else(|e| panic!("{fault:?}: {e}"));
        assert_eq!(
            store
                .load_session(session.key())
                .expect("stored")
                .access_token,
            token,
            "{fault:?}: stored"
        );
        let mut retried = 0;
        while let Ok(event) = events.try_recv() {
            if matches!(
                event,
                SessionEvent::RefreshFailed {
                    kind: FailureKind::Transient,
                    retrying_in: Some(_)
                }
            ) {
                retried += 1;
            }
        }
        assert!(
            retried >= 1,
            "{fault:?}: the failure was reported before the retry"
        );
        assert!(matches!(
            *session.state().borrow(),
            SessionState::SignedIn { .. }
        ));
        idp.control().clear_faults();
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_are_bounded_then_the_error_is_reported_and_the_session_kept() {
    let idp = MockIdp::builder()
        .auto_login("alice")
        .start()
        .await
        .expect("idp");
    let dir = scratch("refresh");
    let store: Arc<dyn TokenStore> = Arc::new(MemoryStore::new());
    let (_m, session) = expired_session(&idp, store.clone(), &dir).await;
    idp.control().reset_requests();
    idp.control()
        .add_fault(Fault::on("token").status(500, "{}"));
    let result = session.access_token().await;
    assert!(result.is_err());
    assert_eq!(
        idp.control().count("token"),
        4,
        "the first attempt and 3 retries, no more"
    );
    assert!(matches!(
        &*session.state().borrow(),
        SessionState::RefreshFailing {
            kind: FailureKind::Transient,
            ..
        }
    ));
    assert!(store.load_refresh(session.key()).is_ok(), "nothing deleted");
    assert!(!session.cancellation().is_cancelled());
    idp.control().clear_faults();
    assert!(
        session.access_token().await.is_ok(),
        "recovers once the provider does"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_grant_signs_out_with_cleanup() {
    let idp = MockIdp::builder()
        .auto_login("bob")
        .start()
        .await
        .expect("idp");
    let dir = scratch("refresh");
    let store = Arc::new(MemoryStore::new());
    let (manager, session) = expired_session(&idp, store.clone(), &dir).await;
    let mut state = session.state();
    assert_eq!(idp.control().revoke_user_sessions("bob"), 1);
    match session.access_token().await {
        Err(Error::Provider { error, .. }) => assert_eq!(error, "invalid_grant"),
        other => panic!("{other:?}"),
    }
    state.changed().await.expect("state changed");
    assert_eq!(*session.state().borrow(), SessionState::SignedOutByServer);
    assert!(session.cancellation().is_cancelled());
    assert!(store.is_empty(), "its entries are deleted");
    assert!(manager.accounts().expect("list").is_empty());
    assert!(manager.session(session.key()).is_none());
    assert_eq!(
        idp.control().count("token:refresh_token"),
        1,
        "no retry of a terminal error"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_store_during_refresh_loses_nothing() {
    let idp = MockIdp::builder()
        .auto_login("carol")
        .start()
        .await
        .expect("idp");
    let dir = scratch("refresh");
    let store = Arc::new(Lockable::default());
    let (_m, session) = expired_session(&idp, store.clone(), &dir).await;
    let old_refresh = store.load_refresh(session.key()).expect("old");
    store.locked.store(true, Ordering::SeqCst);
    let token = session
        .access_token()
        .await
        .expect("the new tokens work from memory");
    assert!(session.store_write_pending());
    // Served again without a second refresh (the rotated token is in memory).
    assert_eq!(session.access_token().await.expect("cached"), token);
    assert_eq!(idp.control().count("token:refresh_token"), 1);
    store.locked.store(false, Ordering::SeqCst);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while session.store_write_pending() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!session.store_write_pending(), "the write was retried");
    let new_refresh = store.load_refresh(session.key()).expect("new");
    assert_ne!(
        new_refresh, old_refresh,
        "the rotated refresh token reached the store"
    );
    assert_eq!(
        store
            .load_session(session.key())
            .expect("entry")
            .access_token,
        token
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// A store that panics on reads when told to: a bug in an app's own store.
#[derive(Debug, Default)]
struct Panicky {
    inner: MemoryStore,
    panic: AtomicBool,
}

impl TokenStore for Panicky {
    fn save_session(&self, k: &AccountKey, e: &SessionEntry) -> Result<(), StoreError> {
        self.inner.save_session(k, e)
    }
    fn load_session(&self, k: &AccountKey) -> Result<SessionEntry, StoreError> {
        assert!(
            !self.panic.load(Ordering::SeqCst),
            "the app's store panicked"
        );
        self.inner.load_session(k)
    }
    fn save_refresh(&self, k: &AccountKey, t: &RefreshToken) -> Result<(), StoreError> {
        self.inner.save_refresh(k, t)
    }
    fn load_refresh(&self, k: &AccountKey) -> Result<RefreshToken, StoreError> {
        self.inner.load_refresh(k)
    }
    fn delete(&self, k: &AccountKey) -> Result<(), StoreError> {
        self.inner.delete(k)
    }
    fn name(&self) -> &str {
        "panicky"
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_the_refresh_releases_every_waiter() {
    let idp = MockIdp::builder()
        .auto_login("alice")
        .start()
        .await
        .expect("idp");
    let dir = scratch("refresh");
    let store = Arc::new(Panicky::default());
    let (_m, session) = expired_session(&idp, store.clone(), &dir).await;
    store.panic.store(true, Ordering::SeqCst);
    let callers: Vec<_> = (0..100)
        .map(|_| {
            let s = session.clone();
            tokio::spawn(async move { s.access_token().await })
        })
        .collect();
    let results = tokio::time::timeout(Duration::from_secs(10), async {
        let mut out = Vec::new();
        for c in callers {
            out.push(c.await.expect("the caller itself did not panic"));
        }
        out
    })
    .await
    .expect("no waiter hangs");
    assert!(
        results.iter().all(Result::is_err),
        "every waiter got the failure"
    );
    assert_eq!(idp.control().count("token:refresh_token"), 0);
    store.panic.store(false, Ordering::SeqCst);
    assert!(
        session.access_token().await.is_ok(),
        "the next caller refreshes normally"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_with_retry_after_is_honoured() {
    let idp = MockIdp::builder()
        .auto_login("alice")
        .start()
        .await
        .expect("idp");
    let dir = scratch("refresh");
    let store: Arc<dyn TokenStore> = Arc::new(MemoryStore::new());
    let (_m, session) = expired_session(&idp, store, &dir).await;
    idp.control().reset_requests();
    idp.control().add_fault(
        Fault::on("token")
            .status(429, r#"{"error":"slow_down"}"#)
            .retry_after(1)
            .times(1),
    );
    session
        .access_token()
        .await
        .expect("refreshed after waiting");
    let polls: Vec<i64> = idp
        .control()
        .requests()
        .iter()
        .filter(|r| r.endpoint == "token")
        .map(|r| r.at_ms)
        .collect();
    assert_eq!(polls.len(), 2);
    // The backoff alone would wait at most 20 ms here; Retry-After says 1 s.
    assert!(
        polls[1] - polls[0] >= 950,
        "waited {} ms",
        polls[1] - polls[0]
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_can_choose_to_sign_out_after_repeated_failures() {
    let idp = MockIdp::builder()
        .auto_login("carol")
        .start()
        .await
        .expect("idp");
    let dir = scratch("refresh");
    let store = Arc::new(MemoryStore::new());
    let first = manager_with(&idp, store.clone(), &dir, HttpClient::new().expect("http")).await;
    let account = first
        .login_loopback(play_browser())
        .await
        .expect("sign in")
        .info()
        .clone();
    let mut entry = store.load_session(&account.key).expect("entry");
    entry.expires_at = Some(SystemTime::now() - Duration::from_secs(5));
    store.save_session(&account.key, &entry).expect("save");
    let provider = Provider::discover(idp.issuer(), &HttpClient::new().expect("http"))
        .await
        .expect("discovery");
    let client =
        OidcClient::new(provider, "chat-example").scopes(["openid", "profile", "offline_access"]);
    let manager = builder_with(client, store.clone(), &dir)
        .sign_out_after_failures(2)
        .restore(true)
        .build()
        .await
        .expect("manager");
    let session = manager.session(&account.key).expect("session");
    idp.control()
        .add_fault(Fault::on("token").status(503, "{}"));
    assert!(session.access_token().await.is_err());
    assert!(!session.cancellation().is_cancelled(), "one failure: kept");
    assert!(session.access_token().await.is_err());
    assert!(
        session.cancellation().is_cancelled(),
        "two in a row: signed out, as chosen"
    );
    assert_eq!(*session.state().borrow(), SessionState::SignedOut);
    assert!(store.is_empty());
    let _ = std::fs::remove_dir_all(dir);
}
