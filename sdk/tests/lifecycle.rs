//! Each refresh policy's timing against the mock provider with short-lived
//! tokens, and a thorough logout: zero store entries, zero tasks, cleared
//! HTTP state, the app's hooks run, the refresh token revoked at the
//! provider — even when the first revocation call fails.

mod support;

use support::*;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;
use sessionkit::{
    AccountInfo, AccountRegistry, HttpClient, LogoutStep, LoopbackOptions, MemoryStore, OidcClient,
    Provider, RefreshPolicy, RetryPolicy, SessionEvent, SessionManager, SessionManagerBuilder,
    SessionState, StoreError, TokenStore,
};
use sessionkit_mock_idp::{Fault, MockIdp};

async fn signed_in(
    idp: &MockIdp,
    policy: RefreshPolicy,
    store: Arc<MemoryStore>,
) -> (SessionManager, Arc<sessionkit::Session>) {
    let provider = Provider::discover(idp.issuer(), &HttpClient::new().expect("http"))
        .await
        .expect("discovery");
    let client =
        OidcClient::new(provider, "chat-example").scopes(["openid", "profile", "offline_access"]);
    let manager = SessionManager::for_client(client)
        .namespace("lifecycle")
        .store(store)
        .registry(AccountRegistry::at(scratch("life").join("a.json")))
        .policy(policy)
        .retry(RetryPolicy::new(
            3,
            Duration::from_millis(20),
            Duration::from_millis(200),
        ))
        .build()
        .await
        .expect("manager");
    let account = manager
        .login_loopback(LoopbackOptions::with_callback(|url| {
            let url = url.to_owned();
            tokio::spawn(async move {
                let _ = reqwest::get(url).await;
            });
        }))
        .await
        .expect("sign in");
    let session = manager.session(account.key()).expect("session");
    (manager, session)
}

async fn next_refreshed(
    events: &mut tokio::sync::broadcast::Receiver<SessionEvent>,
    limit: Duration,
) -> Option<Instant> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Ok(SessionEvent::Refreshed { .. })) => return Some(Instant::now()),
            Ok(Ok(_)) => continue,
            _ => return None,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proactive_refreshes_before_expiry_at_most_once_per_half_life_and_on_demand_never_by_itself()
 {
    let proactive_idp = MockIdp::builder()
        .auto_login("alice")
        .access_token_ttl(8)
        .start()
        .await
        .expect("idp");
    let on_demand_idp = MockIdp::builder()
        .auto_login("bob")
        .access_token_ttl(8)
        .start()
        .await
        .expect("idp");
    let (_p, proactive) = signed_in(
        &proactive_idp,
        RefreshPolicy::Proactive,
        Arc::new(MemoryStore::new()),
    )
    .await;
    let (_o, on_demand) = signed_in(
        &on_demand_idp,
        RefreshPolicy::OnDemand,
        Arc::new(MemoryStore::new()),
    )
    .await;
    assert_eq!(proactive.running_tasks(), 1, "the timer");
    assert_eq!(on_demand.running_tasks(), 0, "no timer");
    let started = Instant::now();
    let (_, first_expiry) = proactive.cached_access_token();
    let mut events = proactive.events();
    // An 8 s token: the margin would be the 60 s skew, so half its life (4 s)
    // is the margin: the refresh comes about 4 s after the token arrived
    // (a little less after `started`, which follows the sign-in's writes),
    // 4 s before expiry; the next one half the next token's life later.
    let first = next_refreshed(&mut events, Duration::from_secs(10))
        .await
        .expect("refreshed in the background");
    assert!(
        SystemTime::now() < first_expiry.expect("expiry"),
        "before the token expired"
    );
    assert!(
        first - started >= Duration::from_secs(3),
        "not early: {:?}",
        first - started
    );
    let second = next_refreshed(&mut events, Duration::from_secs(10))
        .await
        .expect("and again");
    assert!(
        second - first >= Duration::from_millis(3_500),
        "no loop: {:?}",
        second - first
    );
    assert_eq!(proactive_idp.control().count("token:refresh_token"), 2);
    assert_eq!(
        on_demand_idp.control().count("token:refresh_token"),
        0,
        "on demand: nothing without a caller"
    );
    let token = on_demand
        .access_token()
        .await
        .expect("on demand refreshes for its caller");
    assert!(!token.secret().is_empty());
    assert_eq!(on_demand_idp.control().count("token:refresh_token"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn high_security_keeps_the_refresh_token_out_of_the_store() {
    let idp = MockIdp::builder()
        .auto_login("carol")
        .access_token_ttl(8)
        .start()
        .await
        .expect("idp");
    let store = Arc::new(MemoryStore::new());
    let (_m, session) = signed_in(&idp, RefreshPolicy::HighSecurity, store.clone()).await;
    assert_eq!(store.load_refresh(session.key()), Err(StoreError::NotFound));
    assert_eq!(
        store.load_session(session.key()),
        Err(StoreError::NotFound),
        "the access token stays in memory too"
    );
    let mut events = session.events();
    next_refreshed(&mut events, Duration::from_secs(10))
        .await
        .expect("refreshes from memory");
    assert_eq!(
        store.load_refresh(session.key()),
        Err(StoreError::NotFound),
        "still not stored after a rotation"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_first_keeps_retrying_until_the_network_returns() {
    let idp = MockIdp::builder()
        .auto_login("alice")
        .access_token_ttl(8)
        .start()
        .await
        .expect("idp");
    let (_m, session) = signed_in(
        &idp,
        RefreshPolicy::OfflineFirst,
        Arc::new(MemoryStore::new()),
    )
    .await;
    // More failures than the bounded retries (3): only OfflineFirst gets through them by itself.
    idp.control()
        .add_fault(Fault::on("token").drop_connection().times(7));
    let mut events = session.events();
    next_refreshed(&mut events, Duration::from_secs(20))
        .await
        .expect("refreshed once the faults ran out");
    assert!(idp.control().count("token") >= 8);
    assert!(matches!(
        *session.state().borrow(),
        SessionState::SignedIn { .. }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_is_thorough_and_survives_a_failing_revocation_call() {
    let idp = MockIdp::builder()
        .auto_login("alice")
        .start()
        .await
        .expect("idp");
    let store = Arc::new(MemoryStore::new());
    let (manager, session) = signed_in(&idp, RefreshPolicy::Proactive, store.clone()).await;
    let refresh = manager
        .stored_refresh_token(session.key())
        .await
        .expect("refresh token");
    let cleared = Arc::new(AtomicUsize::new(0));
    let c = cleared.clone();
    session.on_end(move || {
        c.fetch_add(1, Ordering::SeqCst);
    });
    let hooked = Arc::new(AtomicUsize::new(0));
    let h = hooked.clone();
    manager.on_logout(move |account: &AccountInfo| {
        assert_eq!(account.key.sub, "alice");
        h.fetch_add(1, Ordering::SeqCst);
        Ok(())
    });
    manager.on_logout(|_| Err("the cache directory is read-only".to_owned()));
    let child = session.cancellation().child_token();
    assert_eq!(session.running_tasks(), 1);
    idp.control()
        .add_fault(Fault::on("revocation").status(503, "{}").times(1));

    let report = manager.logout(session.key()).await;
    assert!(
        report.revoked,
        "revoked on the second try: {:?}",
        report.failures
    );
    assert_eq!(report.failures.len(), 1, "{:?}", report.failures);
    assert_eq!(
        report.failures[0].0,
        LogoutStep::CleanupHooks,
        "the failing hook is reported, the rest ran"
    );
    assert!(store.is_empty(), "zero store entries");
    assert_eq!(session.running_tasks(), 0, "zero tasks");
    assert!(
        child.is_cancelled(),
        "work holding a child token (realtime) is told"
    );
    assert_eq!(cleared.load(Ordering::SeqCst), 1, "HTTP state cleared");
    assert_eq!(hooked.load(Ordering::SeqCst), 1);
    assert_eq!(*session.state().borrow(), SessionState::SignedOut);
    assert!(manager.accounts().expect("list").is_empty());
    assert!(manager.session(session.key()).is_none());
    assert!(matches!(
        session.access_token().await,
        Err(sessionkit::Error::SignedOut)
    ));
    // The provider agrees: the refresh token is dead.
    let secret = idp.control().client_secret("chat-server").expect("secret");
    let introspection: Value = reqwest::Client::new()
        .post(idp.url("/introspect"))
        .basic_auth("chat-server", Some(secret))
        .form(&[("token", refresh.secret())])
        .send()
        .await
        .expect("introspect")
        .json()
        .await
        .expect("json");
    assert_eq!(introspection["active"], false);
    let url = report.end_session_url.expect("end session URL");
    assert!(url.as_str().starts_with(&idp.url("/end_session")));
    assert!(url.query_pairs().any(|(k, _)| k == "id_token_hint"));
    // Nothing of the account runs afterwards: no refresh in the next seconds.
    idp.control().reset_requests();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(idp.control().count("token"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_reports_a_provider_that_is_down_and_still_cleans_up() {
    let idp = MockIdp::builder()
        .auto_login("bob")
        .start()
        .await
        .expect("idp");
    let store = Arc::new(MemoryStore::new());
    let (manager, session) = signed_in(&idp, RefreshPolicy::Proactive, store.clone()).await;
    idp.control()
        .add_fault(Fault::on("revocation").drop_connection());
    let report = manager.logout(session.key()).await;
    assert!(!report.revoked);
    assert_eq!(
        report.failures.iter().map(|f| f.0).collect::<Vec<_>>(),
        [LogoutStep::RevokeRefreshToken]
    );
    assert!(store.is_empty());
    assert_eq!(session.running_tasks(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_refreshes_ahead_and_tells_listeners() {
    let idp = MockIdp::builder()
        .auto_login("bob")
        .access_token_ttl(8)
        .start()
        .await
        .expect("idp");
    let (_m, session) = signed_in(
        &idp,
        RefreshPolicy::Background,
        Arc::new(MemoryStore::new()),
    )
    .await;
    let (before, expiry) = session.cached_access_token();
    // What a realtime connection does: listen for Refreshed and take the new token.
    let mut events = session.events();
    next_refreshed(&mut events, Duration::from_secs(10))
        .await
        .expect("told of the refresh");
    assert!(
        SystemTime::now() < expiry.expect("expiry"),
        "before the old token expired"
    );
    let (after, _) = session.cached_access_token();
    assert_ne!(before, after);
}

#[cfg(feature = "keychain")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_leaves_zero_entries_in_the_real_keychain() {
    let store = match sessionkit::KeychainStore::auto() {
        Ok(s) => Arc::new(s),
        Err(e) if std::env::var_os("SESSIONKIT_REQUIRE_KEYCHAIN").is_some() => {
            panic!("no keychain: {e}")
        }
        Err(e) => {
            eprintln!("SKIP logout_leaves_zero_entries_in_the_real_keychain: no keychain ({e})");
            return;
        }
    };
    let idp = MockIdp::builder()
        .auto_login("carol")
        .start()
        .await
        .expect("idp");
    let provider = Provider::discover(idp.issuer(), &HttpClient::new().expect("http"))
        .await
        .expect("discovery");
    let client = OidcClient::new(provider, "chat-example").scopes(["openid", "offline_access"]);
    let namespace = format!(
        "sk-logout-{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .expect("time")
            .as_nanos()
    );
    let dir = scratch("life");
    let manager = SessionManager::for_client(client)
        .namespace(&namespace)
        .store(store.clone())
        .registry(AccountRegistry::at(dir.join("a.json")))
        .build()
        .await
        .expect("manager");
    let account = manager
        .login_loopback(LoopbackOptions::with_callback(|url| {
            let url = url.to_owned();
            tokio::spawn(async move {
                let _ = reqwest::get(url).await;
            });
        }))
        .await
        .expect("sign in")
        .info()
        .clone();
    let key = account.key.clone();
    let probe = store.clone();
    let (session, refresh) =
        tokio::task::spawn_blocking(move || (probe.load_session(&key), probe.load_refresh(&key)))
            .await
            .expect("join");
    assert!(
        session.is_ok() && refresh.is_ok(),
        "both entries are in the {} keychain",
        store.name()
    );
    let report = manager.logout(&account.key).await;
    assert!(report.is_complete(), "{:?}", report.failures);
    let key = account.key.clone();
    let probe = store.clone();
    let (session, refresh) =
        tokio::task::spawn_blocking(move || (probe.load_session(&key), probe.load_refresh(&key)))
            .await
            .expect("join");
    assert_eq!(session.err(), Some(StoreError::NotFound));
    assert_eq!(refresh.err(), Some(StoreError::NotFound));
    let _ = std::fs::remove_dir_all(dir);
}

/// A manager whose registry (and refresh locks) live in `dir`, configured by
/// `configure`, with the account signed in.
async fn signed_in_at(
    idp: &MockIdp,
    store: Arc<MemoryStore>,
    dir: &std::path::Path,
    configure: impl FnOnce(SessionManagerBuilder) -> SessionManagerBuilder,
) -> (SessionManager, Arc<sessionkit::Session>) {
    let provider = Provider::discover(idp.issuer(), &HttpClient::new().expect("http"))
        .await
        .expect("discovery");
    let client =
        OidcClient::new(provider, "chat-example").scopes(["openid", "profile", "offline_access"]);
    let manager = configure(
        SessionManager::for_client(client)
            .namespace("lifecycle")
            .store(store)
            .registry(AccountRegistry::at(dir.join("accounts.json"))),
    )
    .build()
    .await
    .expect("manager");
    let session = manager
        .login_loopback(play_browser())
        .await
        .expect("sign in");
    (manager, session)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn high_security_deletes_an_earlier_refresh_token_and_never_reads_one() {
    let idp = MockIdp::builder()
        .auto_login("alice")
        .start()
        .await
        .expect("idp");
    let store = Arc::new(MemoryStore::new());
    // Signed in before under another policy: its refresh token is stored.
    let (_earlier, earlier) = signed_in_at(&idp, store.clone(), &scratch("hs"), |m| {
        m.policy(RefreshPolicy::OnDemand)
    })
    .await;
    assert!(store.load_refresh(earlier.key()).is_ok());
    let (_m, secure) = signed_in_at(&idp, store.clone(), &scratch("hs"), |m| {
        m.policy(RefreshPolicy::HighSecurity)
    })
    .await;
    assert_eq!(
        store.load_refresh(secure.key()),
        Err(StoreError::NotFound),
        "deleted at sign-in"
    );
    // Whatever appears in the store later is never read: two refreshes in
    // a row rotate the in-memory token (presenting a stored one twice would
    // be reuse, which revokes the grant).
    store
        .save_refresh(secure.key(), &sessionkit::RefreshToken::new("planted"))
        .expect("plant");
    for _ in 0..2 {
        secure.force_refresh().await.expect("refreshes from memory");
    }
    assert!(matches!(
        *secure.state().borrow(),
        SessionState::SignedIn { .. }
    ));
    assert_eq!(
        store
            .load_refresh(secure.key())
            .expect("untouched")
            .secret(),
        "planted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn high_security_signs_out_on_the_first_refused_refresh_and_others_keep_the_session() {
    for policy in [RefreshPolicy::HighSecurity, RefreshPolicy::Proactive] {
        let idp = MockIdp::builder()
            .auto_login("bob")
            .start()
            .await
            .expect("idp");
        let store = Arc::new(MemoryStore::new());
        let (_m, session) = signed_in_at(&idp, store, &scratch("hs"), |m| m.policy(policy)).await;
        idp.control().add_fault(
            Fault::on("token")
                .status(400, r#"{"error":"invalid_request"}"#)
                .times(1),
        );
        assert!(session.force_refresh().await.is_err());
        let signed_out = session.cancellation().is_cancelled();
        assert_eq!(
            signed_out,
            policy == RefreshPolicy::HighSecurity,
            "{policy:?}"
        );
        if signed_out {
            assert_eq!(*session.state().borrow(), SessionState::SignedOut);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_maximum_session_age_ends_the_session_without_a_refresh() {
    let idp = MockIdp::builder()
        .auto_login("carol")
        .access_token_ttl(60)
        .start()
        .await
        .expect("idp");
    let (_m, session) = signed_in_at(&idp, Arc::new(MemoryStore::new()), &scratch("age"), |m| {
        m.policy(RefreshPolicy::HighSecurity)
            .max_session_age(Duration::from_secs(2))
    })
    .await;
    let mut state = session.state();
    tokio::time::timeout(
        Duration::from_secs(10),
        state.wait_for(|s| *s == SessionState::SignedOut),
    )
    .await
    .expect("ended at its age")
    .expect("state");
    assert!(matches!(
        session.access_token().await,
        Err(sessionkit::Error::SignedOut)
    ));
    assert_eq!(idp.control().count("token:refresh_token"), 0);
    // The refresh call that ended it finishes right after.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while session.running_tasks() > 0 {
        assert!(std::time::Instant::now() < deadline, "tasks left");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Every `*.lock` file under `dir`.
fn lock_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir.join("locks"))
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "lock"))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_ending_runs_the_same_steps_past_panicking_hooks() {
    for by_server in [false, true] {
        let idp = MockIdp::builder()
            .auto_login("alice")
            .start()
            .await
            .expect("idp");
        let store = Arc::new(MemoryStore::new());
        let dir = scratch("teardown");
        let (manager, session) = signed_in_at(&idp, store.clone(), &dir, |m| m).await;
        // A refresh leaves the account's lock file behind.
        session.force_refresh().await.expect("refresh");
        assert_eq!(lock_files(&dir).len(), 1);
        let ran = Arc::new(AtomicUsize::new(0));
        manager.on_logout(|_| panic!("a broken cleanup hook"));
        let r = ran.clone();
        manager.on_logout(move |_| {
            r.fetch_add(1, Ordering::SeqCst);
            Ok(())
        });
        session.on_end(|| panic!("a broken end hook"));
        let r = ran.clone();
        session.on_end(move || {
            r.fetch_add(1, Ordering::SeqCst);
        });
        if by_server {
            idp.control().revoke_user_sessions("alice");
            assert!(session.force_refresh().await.is_err());
            assert_eq!(*session.state().borrow(), SessionState::SignedOutByServer);
        } else {
            let report = manager.logout(session.key()).await;
            let steps: Vec<LogoutStep> = report.failures.iter().map(|(s, _)| *s).collect();
            assert_eq!(
                steps,
                [LogoutStep::ClearHttp, LogoutStep::CleanupHooks],
                "{:?}",
                report.failures
            );
            assert!(report.revoked, "revoked after the panics");
            assert_eq!(*session.state().borrow(), SessionState::SignedOut);
        }
        assert_eq!(
            ran.load(Ordering::SeqCst),
            2,
            "the hooks after the panics ran"
        );
        assert!(store.is_empty(), "by server: {by_server}");
        assert!(manager.accounts().expect("list").is_empty());
        assert!(lock_files(&dir).is_empty(), "the lock file is gone");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while session.running_tasks() > 0 {
            assert!(std::time::Instant::now() < deadline, "tasks left");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Every span the SDK opens, with its fields as recorded, as text.
#[derive(Clone, Default)]
struct Spans(Arc<std::sync::Mutex<Vec<String>>>);

struct Fields<'a>(&'a mut String);

impl tracing::field::Visit for Fields<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write as _;
        let _ = write!(self.0, " {}={:?}", field.name(), value);
    }
}

impl<S> tracing_subscriber::Layer<S> for Spans
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut line = format!("{}#{}", attrs.metadata().name(), id.into_u64());
        attrs.record(&mut Fields(&mut line));
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(line);
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut line = format!("record#{}", id.into_u64());
        values.record(&mut Fields(&mut line));
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(line);
    }
}

#[tokio::test(flavor = "current_thread")]
async fn spans_and_counters_tell_what_happened_and_never_a_secret() {
    use tracing_subscriber::layer::SubscriberExt as _;
    let spans = Spans::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(spans.clone()));
    let idp = MockIdp::builder()
        .auto_login("alice")
        .start()
        .await
        .expect("idp");
    let (manager, session) =
        signed_in(&idp, RefreshPolicy::OnDemand, Arc::new(MemoryStore::new())).await;
    let first = session.cached_access_token().0;
    session.force_refresh().await.expect("refresh");
    // Two refused attempts, then the third gets through.
    idp.control()
        .add_fault(Fault::on("token").status(503, "{}").times(2));
    session
        .force_refresh()
        .await
        .expect("refresh after retries");
    let last = session.cached_access_token().0;
    let refresh = manager
        .stored_refresh_token(session.key())
        .await
        .expect("refresh token");
    let report = manager.logout(session.key()).await;
    assert!(report.is_complete(), "{:?}", report.failures);

    let m = manager.metrics();
    assert_eq!(
        (m.sign_ins, m.refreshes, m.refresh_failures, m.sign_outs),
        (1, 2, 0, 1),
        "{m:?}"
    );
    assert_eq!(m.signed_out_by_server, 0);
    let text = spans.0.lock().expect("spans").join("\n");
    let fingerprint = session.key().fingerprint();
    for expected in [
        "sessionkit.login#".to_owned(),
        "flow=\"loopback\"".to_owned(),
        "outcome=\"signed_in\"".to_owned(),
        "sessionkit.refresh#".to_owned(),
        "attempts=3".to_owned(),
        "outcome=\"refreshed\"".to_owned(),
        "sessionkit.logout#".to_owned(),
        "outcome=\"complete\"".to_owned(),
        format!("account={fingerprint}"),
    ] {
        assert!(text.contains(&expected), "{expected} not in:\n{text}");
    }
    for secret in [first.secret(), last.secret(), refresh.secret()] {
        assert!(!text.contains(secret), "a token in a span:\n{text}");
    }
    assert!(
        !text.contains("alice"),
        "the account is a fingerprint:\n{text}"
    );
}

/// Moves the SDK's manual clock and the provider's frozen clock together.
fn advance(clock: &sessionkit::Clock, idp: &MockIdp, by: Duration) {
    idp.control().advance_clock(by);
    clock.advance(by);
}

/// A session under `policy` on a manual clock, with hour-long tokens from a
/// provider whose clock is frozen.
async fn on_a_manual_clock(
    policy: RefreshPolicy,
) -> (
    MockIdp,
    sessionkit::Clock,
    SessionManager,
    Arc<sessionkit::Session>,
) {
    let idp = MockIdp::builder()
        .auto_login("alice")
        .access_token_ttl(3600)
        .start()
        .await
        .expect("idp");
    idp.control().freeze_clock();
    let clock = sessionkit::Clock::manual();
    let c = clock.clone();
    let (manager, session) = signed_in_at(
        &idp,
        Arc::new(MemoryStore::new()),
        &scratch("clock"),
        move |m| m.policy(policy).clock(c),
    )
    .await;
    (idp, clock, manager, session)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_manual_clock_each_policy_refreshes_at_its_own_time() {
    const HOUR: Duration = Duration::from_secs(3600);
    for (policy, margin) in [
        (RefreshPolicy::Proactive, Duration::from_secs(300)),
        (RefreshPolicy::Background, Duration::from_secs(300)),
        (RefreshPolicy::OfflineFirst, Duration::from_secs(300)),
        (RefreshPolicy::HighSecurity, HOUR / 2),
        (RefreshPolicy::OnDemand, Duration::from_secs(60)),
    ] {
        let (idp, clock, _manager, session) = on_a_manual_clock(policy).await;
        let current = session.current_token().await.expect("token");
        let expires = current.expires_at.expect("expires");
        assert_eq!(
            current.refresh_at,
            Some(expires - margin),
            "{policy:?}: due {margin:?} before expiry"
        );
        let mut events = session.events();
        // Five token lifetimes in a few milliseconds.
        for round in 1..=5u64 {
            let due = session
                .current_token()
                .await
                .expect("token")
                .refresh_at
                .expect("due");
            advance(
                &clock,
                &idp,
                due.duration_since(clock.now()).expect("ahead"),
            );
            if policy == RefreshPolicy::OnDemand {
                assert_eq!(session.running_tasks(), 0, "no timer: nothing refreshes");
                assert_eq!(idp.control().count("token:refresh_token"), round - 1);
                session
                    .access_token()
                    .await
                    .expect("refreshed for its caller");
            } else {
                next_refreshed(&mut events, Duration::from_secs(10))
                    .await
                    .unwrap_or_else(|| {
                        panic!("{policy:?}: refreshed by the timer in round {round}")
                    });
            }
            assert_eq!(
                idp.control().count("token:refresh_token"),
                round,
                "{policy:?}: one refresh per interval"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_offline_first_outlasts_the_apps_failure_limit() {
    for policy in [RefreshPolicy::OfflineFirst, RefreshPolicy::Proactive] {
        let idp = MockIdp::builder()
            .auto_login("carol")
            .start()
            .await
            .expect("idp");
        let (_m, session) = signed_in_at(
            &idp,
            Arc::new(MemoryStore::new()),
            &scratch("outage"),
            |m| {
                m.policy(policy)
                    .sign_out_after_failures(1)
                    .retry(RetryPolicy::new(
                        0,
                        Duration::from_millis(10),
                        Duration::from_millis(10),
                    ))
            },
        )
        .await;
        // The provider is down (503 without an OAuth body): a long outage.
        idp.control()
            .add_fault(Fault::on("token").status(503, "<html>down</html>"));
        assert!(session.force_refresh().await.is_err());
        assert_eq!(
            session.cancellation().is_cancelled(),
            policy != RefreshPolicy::OfflineFirst,
            "{policy:?}: only the provider's word ends an OfflineFirst session"
        );
        // The provider's word does.
        idp.control().clear_faults();
        if policy == RefreshPolicy::OfflineFirst {
            idp.control().revoke_user_sessions("carol");
            assert!(session.force_refresh().await.is_err());
            assert_eq!(*session.state().borrow(), SessionState::SignedOutByServer);
        }
    }
}
