//! `AuthedClient` against the mock provider and a small test API over real
//! sockets: a fresh token costs no refresh, an expired one exactly one before
//! the call, a 401 exactly one refresh and one retry (never more), cookies
//! stay with the client until `clear()`, and a redirect to another origin
//! does not carry the token. Under `OfflineFirst`, repeatable requests
//! wait out a provider or API outage in a bounded queue and are replayed in
//! order; under the other policies, and when not marked repeatable, they are
//! sent at once.

mod support;

use support::*;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use sessionkit::{
    AccessToken, AccountRegistry, AuthedClient, DropReason, Error, HttpClient, MemoryStore,
    OidcClient, Provider, QueueOptions, RefreshPolicy, RetryPolicy, Session, SessionManager,
    TokenStore,
};
use sessionkit_mock_idp::{Fault, MockIdp};

// ---- support -----------------------------------------------------------

async fn idp() -> MockIdp {
    MockIdp::builder()
        .auto_login("alice")
        .start()
        .await
        .expect("idp")
}

/// A manager that refreshes on demand only, so every refresh in a test is
/// one the test caused.
async fn manager(
    idp: &MockIdp,
    store: Arc<dyn TokenStore>,
    dir: &std::path::Path,
) -> SessionManager {
    builder(idp, store, dir)
        .await
        .build()
        .await
        .expect("manager")
}

async fn builder(
    idp: &MockIdp,
    store: Arc<dyn TokenStore>,
    dir: &std::path::Path,
) -> sessionkit::SessionManagerBuilder {
    let http = HttpClient::with_timeout(Duration::from_secs(5)).expect("http");
    let provider = Provider::discover(idp.issuer(), &http)
        .await
        .expect("discovery");
    let client =
        OidcClient::new(provider, "chat-example").scopes(["openid", "profile", "offline_access"]);
    SessionManager::for_client(client)
        .namespace("authed-test")
        .store(store)
        .registry(AccountRegistry::at(dir.join("accounts.json")))
        .restore(false)
        .policy(RefreshPolicy::OnDemand)
}

/// Alice, signed in with a fresh token.
async fn signed_in(idp: &MockIdp, dir: &std::path::Path) -> (SessionManager, Arc<Session>) {
    let m = manager(idp, Arc::new(MemoryStore::new()), dir).await;
    let account = m
        .login_loopback(play_browser())
        .await
        .expect("sign in")
        .info()
        .clone();
    let session = m.session(&account.key).expect("session");
    (m, session)
}

/// Alice restored from the store with an access token that has expired.
async fn expired(idp: &MockIdp, dir: &std::path::Path) -> (SessionManager, Arc<Session>) {
    let store: Arc<dyn TokenStore> = Arc::new(MemoryStore::new());
    let first = manager(idp, store.clone(), dir).await;
    let account = first
        .login_loopback(play_browser())
        .await
        .expect("sign in")
        .info()
        .clone();
    let mut entry = store.load_session(&account.key).expect("entry");
    entry.expires_at = Some(SystemTime::now() - Duration::from_secs(5));
    store.save_session(&account.key, &entry).expect("save");
    let second = manager(idp, store, dir).await;
    second.restore().await.expect("restore");
    let session = second.session(&account.key).expect("restored");
    (second, session)
}

/// A manager under `policy` whose refreshes retry once, quickly (the
/// offline-queue tests wait on outages, not on the session's backoff).
async fn manager_under(
    idp: &MockIdp,
    store: Arc<dyn TokenStore>,
    dir: &std::path::Path,
    policy: RefreshPolicy,
) -> SessionManager {
    builder(idp, store, dir)
        .await
        .policy(policy)
        .retry(RetryPolicy::new(
            1,
            Duration::from_millis(10),
            Duration::from_millis(50),
        ))
        .build()
        .await
        .expect("manager")
}

/// Alice signed in under `policy`.
async fn signed_in_under(
    idp: &MockIdp,
    dir: &std::path::Path,
    policy: RefreshPolicy,
) -> (SessionManager, Arc<Session>) {
    let m = manager_under(idp, Arc::new(MemoryStore::new()), dir, policy).await;
    let session = m.login_loopback(play_browser()).await.expect("sign in");
    (m, session)
}

/// Alice restored under `policy` with an expired access token while the
/// provider's token endpoint suffers `outage` (put in place before the
/// restore, so no refresh gets through first).
async fn expired_during(
    idp: &MockIdp,
    dir: &std::path::Path,
    policy: RefreshPolicy,
    outage: Fault,
) -> (SessionManager, Arc<Session>) {
    let store: Arc<dyn TokenStore> = Arc::new(MemoryStore::new());
    let first = manager(idp, store.clone(), dir).await;
    let account = first
        .login_loopback(play_browser())
        .await
        .expect("sign in")
        .info()
        .clone();
    let mut entry = store.load_session(&account.key).expect("entry");
    entry.expires_at = Some(SystemTime::now() - Duration::from_secs(5));
    store.save_session(&account.key, &entry).expect("save");
    idp.control().add_fault(outage);
    let second = manager_under(idp, store, dir, policy).await;
    second.restore().await.expect("restore");
    let session = second.session(&account.key).expect("restored");
    (second, session)
}

/// A queue that retries quickly (tests run on real sockets).
fn quick() -> QueueOptions {
    QueueOptions::default().replay_backoff(Duration::from_millis(20), Duration::from_millis(200))
}

/// What a repeatable call came to: the status and body, or the error.
type Answer = tokio::task::JoinHandle<Result<(u16, String), Error>>;

/// Sends each body as a repeatable `POST url`, one after the other, each
/// once the one before is queued: they wait in this order.
async fn queue_in_order(client: &AuthedClient, url: &str, bodies: &[&str]) -> Vec<Answer> {
    let mut queued = client.queued_changes();
    let mut answers = Vec::new();
    for (i, body) in bodies.iter().enumerate() {
        let before = *queued.borrow_and_update();
        answers.push(repeatable_post(client, url, body));
        tokio::time::timeout(Duration::from_secs(20), queued.wait_for(|n| *n > before))
            .await
            .unwrap_or_else(|_| panic!("request {i} was not queued"))
            .expect("queue watch");
    }
    answers
}

/// A repeatable `POST url` with `body`, sent on its own task.
fn repeatable_post(client: &AuthedClient, url: &str, body: &str) -> Answer {
    let (client, url, body) = (client.clone(), url.to_owned(), body.to_owned());
    tokio::spawn(async move {
        let response = client
            .send_repeatable(client.request(reqwest::Method::POST, url).body(body))
            .await?;
        let status = response.status().as_u16();
        Ok((status, response.text().await.unwrap_or_default()))
    })
}

async fn answer(answer: Answer) -> Result<(u16, String), Error> {
    tokio::time::timeout(Duration::from_secs(20), answer)
        .await
        .expect("answered in time")
        .expect("join")
}

/// Waits (bounded) until the client's replay task has ended.
async fn no_task_left(client: &AuthedClient) {
    tokio::time::timeout(Duration::from_secs(5), async {
        while client.running_tasks() > 0 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the replay task ended");
}

/// A server on `127.0.0.1:0`, stopped on drop.
struct Server {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn start(app: Router) -> Self {
        Self::start_after(app, None).await
    }

    /// With `up`: hangs up on every connection, without answering, until
    /// `up` fires; then serves `app` on the same address.
    async fn start_after(app: Router, up: Option<tokio::sync::oneshot::Receiver<()>>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            if let Some(mut up) = up {
                loop {
                    tokio::select! {
                        _ = &mut up => break,
                        accepted = listener.accept() => drop(accepted),
                    }
                }
            }
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, task }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What the test API saw: requests per path, and the headers of each.
#[derive(Default)]
struct Seen {
    hits: Mutex<HashMap<String, u64>>,
    authorization: Mutex<Vec<Option<String>>>,
    cookies: Mutex<Vec<Option<String>>>,
}

impl Seen {
    fn record(&self, path: &str, headers: &HeaderMap) {
        *self
            .hits
            .lock()
            .expect("lock")
            .entry(path.to_owned())
            .or_default() += 1;
        let text = |name| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        self.authorization
            .lock()
            .expect("lock")
            .push(text(header::AUTHORIZATION));
        self.cookies
            .lock()
            .expect("lock")
            .push(text(header::COOKIE));
    }

    fn hits(&self, path: &str) -> u64 {
        self.hits
            .lock()
            .expect("lock")
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    fn authorizations(&self) -> Vec<Option<String>> {
        self.authorization.lock().expect("lock").clone()
    }

    fn cookies(&self) -> Vec<Option<String>> {
        self.cookies.lock().expect("lock").clone()
    }
}

/// The app's API: checks bearer tokens with the provider's introspection
/// endpoint as the confidential client `chat-server` (so a revoked token is
/// refused at once), and answers 401 to anything not active.
struct Api {
    seen: Seen,
    introspection: String,
    secret: String,
    http: reqwest::Client,
    /// Where `/redirect` and `/redirect-401` send the client.
    elsewhere: String,
    /// `/journal` answers 503 while set.
    down: AtomicBool,
    /// Bodies that reached `/journal`, and those it accepted.
    arrivals: Mutex<Vec<String>>,
    accepted: Mutex<Vec<String>>,
    /// How many bodies have arrived, for tests to wait on.
    arrived: tokio::sync::watch::Sender<usize>,
}

impl Api {
    async fn active(&self, headers: &HeaderMap) -> bool {
        let Some(token) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        else {
            return false;
        };
        let Ok(answer) = self
            .http
            .post(&self.introspection)
            .basic_auth("chat-server", Some(&self.secret))
            .form(&[("token", token)])
            .send()
            .await
        else {
            return false;
        };
        answer
            .json::<serde_json::Value>()
            .await
            .is_ok_and(|v| v["active"] == true)
    }
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer error=\"invalid_token\"")],
        "",
    )
        .into_response()
}

async fn me(State(api): State<Arc<Api>>, headers: HeaderMap) -> Response {
    api.seen.record("/me", &headers);
    if api.active(&headers).await {
        (StatusCode::OK, "alice").into_response()
    } else {
        unauthorized()
    }
}

async fn echo(State(api): State<Arc<Api>>, headers: HeaderMap, body: String) -> Response {
    api.seen.record("/echo", &headers);
    if api.active(&headers).await {
        (StatusCode::OK, body).into_response()
    } else {
        unauthorized()
    }
}

/// Records each body in order; 503 while the API is down.
async fn journal(State(api): State<Arc<Api>>, headers: HeaderMap, body: String) -> Response {
    api.seen.record("/journal", &headers);
    api.arrivals.lock().expect("lock").push(body.clone());
    api.arrived.send_modify(|n| *n += 1);
    if api.down.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "down").into_response();
    }
    if !api.active(&headers).await {
        return unauthorized();
    }
    api.accepted.lock().expect("lock").push(body.clone());
    (StatusCode::OK, body).into_response()
}

async fn always_401(State(api): State<Arc<Api>>, headers: HeaderMap) -> Response {
    api.seen.record("/always-401", &headers);
    unauthorized()
}

async fn set_cookie(State(api): State<Arc<Api>>, headers: HeaderMap) -> Response {
    api.seen.record("/cookie/set", &headers);
    (
        StatusCode::OK,
        [(header::SET_COOKIE, "visit=1; Path=/; HttpOnly")],
        "",
    )
        .into_response()
}

async fn show_cookie(State(api): State<Arc<Api>>, headers: HeaderMap) -> Response {
    api.seen.record("/cookie/show", &headers);
    let cookie = headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (StatusCode::OK, cookie).into_response()
}

async fn redirect(State(api): State<Arc<Api>>, headers: HeaderMap) -> Response {
    api.seen.record("/redirect", &headers);
    (
        StatusCode::FOUND,
        [(header::LOCATION, format!("{}/landing", api.elsewhere))],
    )
        .into_response()
}

async fn redirect_401(State(api): State<Arc<Api>>, headers: HeaderMap) -> Response {
    api.seen.record("/redirect-401", &headers);
    (
        StatusCode::FOUND,
        [(header::LOCATION, format!("{}/deny", api.elsewhere))],
    )
        .into_response()
}

/// Another origin (another port): records what arrives.
async fn elsewhere(seen: Arc<Seen>) -> Server {
    let landing = {
        let seen = seen.clone();
        move |headers: HeaderMap| async move {
            seen.record("/landing", &headers);
            (StatusCode::OK, "landed")
        }
    };
    let deny = move |headers: HeaderMap| async move {
        seen.record("/deny", &headers);
        unauthorized()
    };
    Server::start(
        Router::new()
            .route("/landing", get(landing))
            .route("/deny", get(deny)),
    )
    .await
}

struct TestApi {
    api: Arc<Api>,
    server: Server,
    other: Arc<Seen>,
    _other_server: Server,
}

impl TestApi {
    async fn start(idp: &MockIdp) -> Self {
        Self::start_after(idp, None).await
    }

    /// An API that hangs up on every connection until `up` fires.
    async fn hanging_up(idp: &MockIdp) -> (Self, tokio::sync::oneshot::Sender<()>) {
        let (up, when) = tokio::sync::oneshot::channel();
        (Self::start_after(idp, Some(when)).await, up)
    }

    async fn start_after(idp: &MockIdp, up: Option<tokio::sync::oneshot::Receiver<()>>) -> Self {
        let other = Arc::new(Seen::default());
        let other_server = elsewhere(other.clone()).await;
        let api = Arc::new(Api {
            seen: Seen::default(),
            introspection: idp.url("/introspect"),
            secret: idp
                .control()
                .client_secret("chat-server")
                .expect("chat-server secret"),
            http: reqwest::Client::new(),
            elsewhere: other_server.url(""),
            down: AtomicBool::new(false),
            arrivals: Mutex::new(Vec::new()),
            accepted: Mutex::new(Vec::new()),
            arrived: tokio::sync::watch::channel(0).0,
        });
        let app = Router::new()
            .route("/me", get(me))
            .route("/echo", post(echo))
            .route("/always-401", get(always_401))
            .route("/cookie/set", get(set_cookie))
            .route("/cookie/show", get(show_cookie))
            .route("/redirect", get(redirect))
            .route("/redirect-401", get(redirect_401))
            .route("/journal", post(journal))
            .with_state(api.clone());
        Self {
            api,
            server: Server::start_after(app, up).await,
            other,
            _other_server: other_server,
        }
    }

    fn url(&self, path: &str) -> String {
        self.server.url(path)
    }

    fn hits(&self, path: &str) -> u64 {
        self.api.seen.hits(path)
    }

    fn set_down(&self, down: bool) {
        self.api.down.store(down, Ordering::SeqCst);
    }

    fn arrivals(&self) -> Vec<String> {
        self.api.arrivals.lock().expect("lock").clone()
    }

    fn accepted(&self) -> Vec<String> {
        self.api.accepted.lock().expect("lock").clone()
    }
}

/// Revokes one access token at the provider (RFC 7009, as the public client).
async fn revoke_access_token(idp: &MockIdp, token: &AccessToken) {
    let status = reqwest::Client::new()
        .post(idp.url("/revoke"))
        .form(&[("token", token.secret()), ("client_id", "chat-example")])
        .send()
        .await
        .expect("revoke")
        .status();
    assert_eq!(status, 200);
}

// ---- tests ---------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_token_costs_one_api_request_and_no_token_request() {
    let idp = idp().await;
    let dir = scratch("authed");
    let (_m, session) = signed_in(&idp, &dir).await;
    let api = TestApi::start(&idp).await;
    idp.control().reset_requests();

    let client = AuthedClient::new(session.clone()).expect("client");
    let response = client.get(api.url("/me")).await.expect("sent");
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.expect("body"), "alice");
    assert_eq!(api.hits("/me"), 1);
    assert_eq!(idp.control().count("token"), 0, "no token request at all");

    // Every request reuses the cached token: still no refresh.
    let echoed = client
        .post_json(api.url("/echo"), &serde_json::json!({"text": "hi"}))
        .await
        .expect("sent");
    assert_eq!(echoed.status(), 200);
    assert_eq!(
        echoed.json::<serde_json::Value>().await.expect("json")["text"],
        "hi"
    );
    assert_eq!(idp.control().count("token"), 0);
    let (token, _) = session.cached_access_token();
    assert!(
        api.api
            .seen
            .authorizations()
            .iter()
            .all(|a| a.as_deref() == Some(format!("Bearer {}", token.secret()).as_str())),
        "every request carried the session's token"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_refreshed_once_before_the_request() {
    let idp = idp().await;
    let dir = scratch("authed");
    let (_m, session) = expired(&idp, &dir).await;
    let (stale, _) = session.cached_access_token();
    let api = TestApi::start(&idp).await;
    assert_eq!(idp.control().count("token:refresh_token"), 0);

    let client = AuthedClient::new(session.clone()).expect("client");
    let response = client.get(api.url("/me")).await.expect("sent");
    assert_eq!(response.status(), 200);
    assert_eq!(idp.control().count("token:refresh_token"), 1, "one refresh");
    assert_eq!(api.hits("/me"), 1, "one API request, with the new token");
    let (fresh, _) = session.cached_access_token();
    assert_ne!(fresh, stale);
    assert_eq!(
        api.api.seen.authorizations(),
        vec![Some(format!("Bearer {}", fresh.secret()))]
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_costs_one_refresh_and_one_retry() {
    let idp = idp().await;
    let dir = scratch("authed");
    let (_m, session) = signed_in(&idp, &dir).await;
    let api = TestApi::start(&idp).await;
    let (revoked, _) = session.cached_access_token();
    revoke_access_token(&idp, &revoked).await;
    idp.control().reset_requests();

    let client = AuthedClient::new(session.clone()).expect("client");
    let response = client.get(api.url("/me")).await.expect("sent");
    assert_eq!(response.status(), 200, "the retry succeeded");
    assert_eq!(idp.control().count("token:refresh_token"), 1, "one refresh");
    assert_eq!(api.hits("/me"), 2, "the request and one retry");
    let (fresh, _) = session.cached_access_token();
    assert_ne!(fresh, revoked);
    assert_eq!(
        api.api.seen.authorizations(),
        vec![
            Some(format!("Bearer {}", revoked.secret())),
            Some(format!("Bearer {}", fresh.secret())),
        ]
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_requests_hitting_401_together_share_one_refresh() {
    let idp = idp().await;
    let dir = scratch("authed");
    let (_m, session) = signed_in(&idp, &dir).await;
    let api = TestApi::start(&idp).await;
    let (revoked, _) = session.cached_access_token();
    revoke_access_token(&idp, &revoked).await;
    idp.control().reset_requests();

    let client = AuthedClient::new(session.clone()).expect("client");
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let (client, url) = (client.clone(), api.url("/me"));
        tasks.spawn(async move { client.get(url).await.map(|r| r.status()) });
    }
    while let Some(done) = tasks.join_next().await {
        assert_eq!(done.expect("join").expect("sent"), 200);
    }
    assert_eq!(
        idp.control().count("token:refresh_token"),
        1,
        "one refresh for all"
    );
    assert!(api.hits("/me") <= 32, "at most one retry each");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_401_is_returned_after_exactly_one_retry() {
    let idp = idp().await;
    let dir = scratch("authed");
    let (_m, session) = signed_in(&idp, &dir).await;
    let api = TestApi::start(&idp).await;
    idp.control().reset_requests();

    let client = AuthedClient::new(session.clone()).expect("client");
    let response = client.get(api.url("/always-401")).await.expect("sent");
    assert_eq!(response.status(), 401, "the caller gets the second 401");
    assert_eq!(
        api.hits("/always-401"),
        2,
        "the request and one retry, no more"
    );
    assert_eq!(idp.control().count("token:refresh_token"), 1, "one refresh");

    // The next call starts over: again at most one refresh and one retry.
    let again = client.get(api.url("/always-401")).await.expect("sent");
    assert_eq!(again.status(), 401);
    assert_eq!(api.hits("/always-401"), 4);
    assert_eq!(idp.control().count("token:refresh_token"), 2);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookies_stay_with_the_account_until_cleared() {
    let idp = idp().await;
    let dir = scratch("authed");
    let (_m, session) = signed_in(&idp, &dir).await;
    let api = TestApi::start(&idp).await;

    let client = AuthedClient::new(session.clone()).expect("client");
    let set = client.get(api.url("/cookie/set")).await.expect("sent");
    assert_eq!(set.status(), 200);
    let shown = client.get(api.url("/cookie/show")).await.expect("sent");
    assert_eq!(shown.text().await.expect("body"), "visit=1");

    // Another client (another jar) does not see them.
    let other = AuthedClient::new(session.clone()).expect("client");
    let shown = other.get(api.url("/cookie/show")).await.expect("sent");
    assert_eq!(shown.text().await.expect("body"), "");

    client.clear();
    let shown = client.get(api.url("/cookie/show")).await.expect("sent");
    assert_eq!(
        shown.text().await.expect("body"),
        "",
        "no cookie after clear()"
    );
    assert_eq!(api.api.seen.cookies().last(), Some(&None));
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_to_another_origin_carries_no_token() {
    let idp = idp().await;
    let dir = scratch("authed");
    let (_m, session) = signed_in(&idp, &dir).await;
    let api = TestApi::start(&idp).await;
    let client = AuthedClient::new(session.clone()).expect("client");
    idp.control().reset_requests();

    let response = client.get(api.url("/redirect")).await.expect("sent");
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.expect("body"), "landed");
    assert_eq!(api.hits("/redirect"), 1);
    assert_eq!(api.other.hits("/landing"), 1);
    let (token, _) = session.cached_access_token();
    assert_eq!(
        api.api.seen.authorizations().last(),
        Some(&Some(format!("Bearer {}", token.secret()))),
        "the API itself got the token"
    );
    assert_eq!(
        api.other.authorizations(),
        vec![None],
        "the other origin got no Authorization"
    );

    // A 401 from the other origin is not the API refusing the token: no
    // refresh, no retry, the 401 comes back.
    let denied = client.get(api.url("/redirect-401")).await.expect("sent");
    assert_eq!(denied.status(), 401);
    assert_eq!(api.hits("/redirect-401"), 1);
    assert_eq!(api.other.hits("/deny"), 1);
    assert_eq!(idp.control().count("token"), 0, "no refresh");
    assert_eq!(api.other.authorizations(), vec![None, None]);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_out_session_sends_nothing() {
    let idp = idp().await;
    let dir = scratch("authed");
    let (manager, session) = signed_in(&idp, &dir).await;
    let api = TestApi::start(&idp).await;
    let client = AuthedClient::new(session.clone()).expect("client");
    client.get(api.url("/cookie/set")).await.expect("sent");

    let _report = manager.logout(session.key()).await;
    let err = client
        .get(api.url("/me"))
        .await
        .expect_err("refused after sign-out");
    assert!(matches!(err, Error::SignedOut), "{err:?}");
    assert_eq!(api.hits("/me"), 0, "nothing was sent");
    let err = client
        .get(api.url("/always-401"))
        .await
        .expect_err("refused after sign-out");
    assert!(matches!(err, Error::SignedOut), "{err:?}");
    assert_eq!(api.hits("/always-401"), 0, "nothing was sent");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transport_failures_are_network_errors() {
    let idp = idp().await;
    let dir = scratch("authed");
    let (_m, session) = signed_in(&idp, &dir).await;
    // A server that hangs up on every connection without answering.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let hang_up = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            drop(stream);
        }
    });
    let client = AuthedClient::with_timeout(session, Duration::from_secs(2)).expect("client");
    let err = client
        .get(format!("http://{addr}/me"))
        .await
        .expect_err("nothing there");
    assert!(matches!(err, Error::Network(_)), "{err:?}");
    hang_up.abort();
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn logout_leaves_zero_cookies() {
    let idp = idp().await;
    let dir = scratch("authed");
    let (manager, session) = signed_in(&idp, &dir).await;
    let api = TestApi::start(&idp).await;
    let client = AuthedClient::new(session.clone()).expect("client");
    assert_eq!(
        client
            .get(api.url("/cookie/set"))
            .await
            .expect("sent")
            .status(),
        200
    );
    let url = url::Url::parse(&api.url("/cookie/show")).expect("url");
    assert!(client.holds_cookies_for(&url), "the API set a cookie");
    let report = manager.logout(session.key()).await;
    assert!(report.is_complete(), "{:?}", report.failures);
    assert!(!client.holds_cookies_for(&url), "logout emptied the jar");
    let _ = std::fs::remove_dir_all(dir);
}

// ---- the offline queue (OfflineFirst) ---------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_down_queues_repeatable_requests_and_replays_them_in_order() {
    let idp = idp().await;
    let dir = scratch("authed");
    // The token expired and the provider answers 503 without an OAuth body.
    let outage = Fault::on("token").status(503, "{}");
    let (_m, session) = expired_during(&idp, &dir, RefreshPolicy::OfflineFirst, outage).await;
    let api = TestApi::start(&idp).await;
    let client = AuthedClient::new(session.clone())
        .expect("client")
        .with_queue_options(quick());

    let waiting = queue_in_order(&client, &api.url("/journal"), &["a", "b", "c"]).await;
    assert_eq!(client.queued(), 3);
    assert_eq!(client.running_tasks(), 1, "one replay task");
    assert!(api.arrivals().is_empty(), "nothing sent without a token");
    let (stale, _) = session.cached_access_token();

    idp.control().clear_faults();
    for (waiting, body) in waiting.into_iter().zip(["a", "b", "c"]) {
        assert_eq!(
            answer(waiting).await.expect("answered"),
            (200, body.to_owned())
        );
    }
    assert_eq!(
        api.accepted(),
        ["a", "b", "c"],
        "replayed in the order queued"
    );
    assert_eq!(api.arrivals(), ["a", "b", "c"], "each sent exactly once");
    let (fresh, _) = session.cached_access_token();
    assert_ne!(fresh, stale, "replayed with a refreshed token");
    assert_eq!(client.queued(), 0);
    no_task_left(&client).await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_answering_503_queues_and_replays_when_it_returns() {
    let idp = idp().await;
    let dir = scratch("authed");
    let (_m, session) = signed_in_under(&idp, &dir, RefreshPolicy::OfflineFirst).await;
    let api = TestApi::start(&idp).await;
    let client = AuthedClient::new(session.clone())
        .expect("client")
        .with_queue_options(quick());
    api.set_down(true);

    let waiting = queue_in_order(&client, &api.url("/journal"), &["a", "b", "c"]).await;
    // The replay keeps knocking with the oldest request only.
    let mut arrived = api.api.arrived.subscribe();
    tokio::time::timeout(Duration::from_secs(20), arrived.wait_for(|n| *n >= 3))
        .await
        .expect("replayed while down")
        .expect("watch");
    api.set_down(false);
    for (waiting, body) in waiting.into_iter().zip(["a", "b", "c"]) {
        assert_eq!(
            answer(waiting).await.expect("answered"),
            (200, body.to_owned())
        );
    }
    assert_eq!(api.accepted(), ["a", "b", "c"], "in order, each once");
    let arrivals = api.arrivals();
    let (before, after) = arrivals.split_at(arrivals.len() - 2);
    assert_eq!(after, ["b", "c"]);
    assert!(
        before.iter().all(|b| b == "a"),
        "no request overtook the oldest: {arrivals:?}"
    );
    no_task_left(&client).await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_hanging_up_queues_and_replays_when_it_answers() {
    let idp = idp().await;
    let dir = scratch("authed");
    let (_m, session) = signed_in_under(&idp, &dir, RefreshPolicy::OfflineFirst).await;
    let (api, up) = TestApi::hanging_up(&idp).await;
    let client = AuthedClient::with_timeout(session.clone(), Duration::from_secs(2))
        .expect("client")
        .with_queue_options(quick());

    let waiting = queue_in_order(&client, &api.url("/journal"), &["a", "b"]).await;
    assert!(api.arrivals().is_empty());
    up.send(()).expect("serve");
    for (waiting, body) in waiting.into_iter().zip(["a", "b"]) {
        assert_eq!(
            answer(waiting).await.expect("answered"),
            (200, body.to_owned())
        );
    }
    assert_eq!(api.arrivals(), ["a", "b"], "each sent once, in order");
    no_task_left(&client).await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_refuses_the_newcomer_and_keeps_the_rest() {
    let idp = idp().await;
    let dir = scratch("authed");
    let (_m, session) = signed_in_under(&idp, &dir, RefreshPolicy::OfflineFirst).await;
    let api = TestApi::start(&idp).await;
    let client = AuthedClient::new(session.clone())
        .expect("client")
        .with_queue_options(quick().max_requests(2));
    api.set_down(true);

    let waiting = queue_in_order(&client, &api.url("/journal"), &["a", "b"]).await;
    let refused = answer(repeatable_post(&client, &api.url("/journal"), "c")).await;
    assert!(
        matches!(refused, Err(Error::Dropped(DropReason::Full))),
        "{refused:?}"
    );
    assert_eq!(client.queued(), 2, "the two before it kept their places");
    api.set_down(false);
    for (waiting, body) in waiting.into_iter().zip(["a", "b"]) {
        assert_eq!(
            answer(waiting).await.expect("answered"),
            (200, body.to_owned())
        );
    }
    assert_eq!(api.accepted(), ["a", "b"]);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_byte_bound_refuses_a_body_too_large_and_fills_up() {
    let idp = idp().await;
    let dir = scratch("authed");
    let (_m, session) = signed_in_under(&idp, &dir, RefreshPolicy::OfflineFirst).await;
    let api = TestApi::start(&idp).await;
    let client = AuthedClient::new(session.clone())
        .expect("client")
        .with_queue_options(quick().max_bytes(64));
    api.set_down(true);
    let url = api.url("/journal");

    let huge = answer(repeatable_post(&client, &url, &"h".repeat(100))).await;
    assert!(
        matches!(huge, Err(Error::Dropped(DropReason::TooLarge))),
        "{huge:?}"
    );
    assert_eq!(client.queued(), 0);
    let waiting = queue_in_order(&client, &url, &[&"a".repeat(40)]).await;
    let second = answer(repeatable_post(&client, &url, &"b".repeat(40))).await;
    assert!(
        matches!(second, Err(Error::Dropped(DropReason::Full))),
        "40 + 40 bytes exceed 64: {second:?}"
    );
    api.set_down(false);
    for waiting in waiting {
        assert_eq!(answer(waiting).await.expect("answered").0, 200);
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_waits_past_the_age_bound_expires() {
    let idp = idp().await;
    let dir = scratch("authed");
    let (_m, session) = signed_in_under(&idp, &dir, RefreshPolicy::OfflineFirst).await;
    let api = TestApi::start(&idp).await;
    let client = AuthedClient::new(session.clone())
        .expect("client")
        .with_queue_options(quick().max_age(Duration::from_millis(300)));
    api.set_down(true);

    let expired = answer(repeatable_post(&client, &api.url("/journal"), "a")).await;
    assert!(
        matches!(expired, Err(Error::Dropped(DropReason::Expired))),
        "{expired:?}"
    );
    assert_eq!(client.queued(), 0);
    no_task_left(&client).await;
    assert!(api.accepted().is_empty());
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_drops_the_queue_as_signed_out_and_leaves_no_task() {
    let idp = idp().await;
    let dir = scratch("authed");
    let (manager, session) = signed_in_under(&idp, &dir, RefreshPolicy::OfflineFirst).await;
    let api = TestApi::start(&idp).await;
    let client = AuthedClient::new(session.clone())
        .expect("client")
        .with_queue_options(quick());
    api.set_down(true);

    let waiting = queue_in_order(&client, &api.url("/journal"), &["a", "b"]).await;
    assert_eq!(client.running_tasks(), 1);
    let report = manager.logout(session.key()).await;
    assert!(report.is_complete(), "{:?}", report.failures);
    for waiting in waiting {
        let dropped = answer(waiting).await;
        assert!(
            matches!(dropped, Err(Error::Dropped(DropReason::SignedOut))),
            "{dropped:?}"
        );
        assert!(dropped.expect_err("dropped").is_signed_out());
    }
    assert_eq!(client.queued(), 0);
    no_task_left(&client).await;
    assert_eq!(session.running_tasks(), 0);
    api.set_down(false);
    let after = answer(repeatable_post(&client, &api.url("/journal"), "c")).await;
    assert!(matches!(after, Err(Error::SignedOut)), "{after:?}");
    assert!(api.accepted().is_empty(), "nothing was replayed");
    assert_eq!(client.running_tasks(), 0);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_proactive_repeatable_requests_fail_fast_and_nothing_queues() {
    let idp = idp().await;
    let dir = scratch("authed");
    let outage = Fault::on("token").drop_connection();
    let (_m, session) = expired_during(&idp, &dir, RefreshPolicy::Proactive, outage).await;
    let api = TestApi::start(&idp).await;
    let client = AuthedClient::new(session.clone()).expect("client");

    let err = answer(repeatable_post(&client, &api.url("/journal"), "a"))
        .await
        .expect_err("no token");
    assert!(err.is_transient(), "{err:?}");
    assert_eq!(client.queued(), 0);
    assert_eq!(client.running_tasks(), 0);

    idp.control().clear_faults();
    api.set_down(true);
    let answered = answer(repeatable_post(&client, &api.url("/journal"), "b"))
        .await
        .expect("the API's answer");
    assert_eq!(answered.0, 503, "returned as is");
    assert_eq!(client.queued(), 0);
    assert_eq!(api.arrivals(), ["b"]);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_not_marked_repeatable_are_never_queued() {
    let idp = idp().await;
    let dir = scratch("authed");
    let outage = Fault::on("token").drop_connection();
    let (_m, session) = expired_during(&idp, &dir, RefreshPolicy::OfflineFirst, outage).await;
    let api = TestApi::start(&idp).await;
    let client = AuthedClient::new(session.clone()).expect("client");
    let post = |body: &str| {
        client
            .request(reqwest::Method::POST, api.url("/journal"))
            .body(body.to_owned())
    };

    let err = client.send(post("a")).await.expect_err("no token");
    assert!(err.is_transient(), "{err:?}");
    assert_eq!(client.queued(), 0);

    idp.control().clear_faults();
    api.set_down(true);
    let response = client.send(post("b")).await.expect("the API's answer");
    assert_eq!(response.status(), 503);
    assert_eq!(client.queued(), 0);
    assert_eq!(client.running_tasks(), 0);
    assert_eq!(api.arrivals(), ["b"]);
    let _ = std::fs::remove_dir_all(dir);
}
