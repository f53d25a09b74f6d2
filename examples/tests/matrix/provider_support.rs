//! Support for the provider-fault rows (5xx, slow, dropped, malformed,
//! invalid_grant): a [`World`] per test — the in-process mock IdP with its
//! scripted faults, the example chat server, and a `SessionManager` whose
//! tokens live in a real store (files in a scratch directory) — and a
//! [`Chat`]: the realtime client with the SDK session as its token source,
//! joined to one room, re-sending what the server has not acknowledged.
//!
//! Timing: every test runs on real time. The provider, the chat server and
//! the clients talk over real loopback sockets in the test's runtime, and a
//! paused tokio clock advances whenever the runtime waits for a socket, so
//! request timeouts would fire before any answer arrived. Instead, the
//! clients are set short: provider requests time out after
//! [`HTTP_TIMEOUT`], refreshes retry twice within 100 ms, reconnects back
//! off from 50 ms to 400 ms, and access tokens live [`SHORT_TTL`] seconds
//! where a test needs one to expire.
//!
//! (Over 500 lines: the five provider rows share one world and four
//! scenarios — [`login_under`], [`RefreshFailed`], [`Expired`] for connect
//! and send, [`logout_under`] — so each row's tests stay a few lines of
//! what is particular to its fault.)

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use sessionkit::{
    AccountRegistry, HttpClient, LogoutReport, LogoutStep, LoopbackOptions, RetryPolicy, Session,
    SessionManager, SessionState, StoreError,
};
use sessionkit_examples::server::{ChatServer, ServerConfig};
use sessionkit_mock_idp::{Alg, Fault, MockIdp};
use sessionkit_realtime::{
    Backoff, Builder, CloseReason, RealtimeClient, ReconnectReason, State, StaticToken, TokenSource,
};
use sessionkit_tests::faults::FaultProxy;
use sessionkit_tests::file_store::FileStore;
use sessionkit_tests::scratch::ScratchDir;
use tokio::time::Instant;

pub use crate::room_chat::{Chat, connected};

/// How long any one expected thing may take.
pub const PATIENCE: Duration = Duration::from_secs(10);
/// The SDK's timeout per provider request.
pub const HTTP_TIMEOUT: Duration = Duration::from_millis(500);
/// A provider delay well beyond [`HTTP_TIMEOUT`].
pub const SLOW: Duration = Duration::from_secs(3);
/// Retries after a failed refresh attempt ([`World::retry`]).
pub const RETRIES: u32 = 2;
/// Access-token lifetime (seconds) for tests that need a token to expire:
/// the session's timer refreshes it after half of it, the chat server
/// closes the connection with 4001 when it expires.
pub const SHORT_TTL: u64 = 2;
/// The time a logout gives the revocation here
/// (`SessionManagerBuilder::revocation_timeout`; the default is 5 s).
pub const REVOKE_BUDGET: Duration = Duration::from_millis(1500);
/// The count a fault without one is given ([`World::fault`]).
pub const UNTIL_HEALED: u32 = 100_000;
/// The room every chat of these tests joins.
pub const ROOM: &str = "matrix";

/// The mock IdP, the chat server and one app's session manager.
pub struct World {
    pub idp: MockIdp,
    /// In front of the provider, when the world was started with
    /// [`World::fronted`] (the issuer is then the proxy's address): a
    /// network path whose latency the tests can raise.
    pub front: Option<FaultProxy>,
    pub server: ChatServer,
    /// Between the chats and the chat server (the history reader goes
    /// direct): a socket the tests can reset.
    pub proxy: FaultProxy,
    pub manager: SessionManager,
    pub store: Arc<FileStore>,
    dir: ScratchDir,
}

impl World {
    /// Access tokens with mock-idp's default lifetime.
    pub async fn start() -> Self {
        Self::build(None, false).await
    }

    /// Access tokens that live [`SHORT_TTL`] seconds.
    pub async fn short_lived() -> Self {
        Self::build(Some(SHORT_TTL), false).await
    }

    /// The provider behind [`World::front`]: every client reaches it
    /// through the proxy, whose issuer URL it is.
    pub async fn fronted() -> Self {
        Self::build(None, true).await
    }

    async fn build(ttl: Option<u64>, fronted: bool) -> Self {
        let mut builder = MockIdp::builder();
        let mut front = None;
        if fronted {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let proxy = FaultProxy::start(listener.local_addr().unwrap())
                .await
                .unwrap();
            builder = builder
                .listener(listener)
                .issuer(&format!("http://{}", proxy.local_addr()));
            front = Some(proxy);
        } else {
            builder = builder.bind("127.0.0.1:0");
        }
        if let Some(ttl) = ttl {
            builder = builder.access_token_ttl(ttl);
        }
        let idp = builder.start().await.unwrap();
        let mut config = ServerConfig::new(idp.issuer());
        // After a failed key fetch, the chat server tries again this soon.
        config.jwks_refetch_interval = Duration::from_millis(200);
        let server = ChatServer::start(config).await.unwrap();
        let proxy = FaultProxy::start(server.local_addr()).await.unwrap();
        let dir = ScratchDir::new("sk-matrix-provider");
        let store = Arc::new(FileStore::new(dir.path()));
        let manager = Self::manager(&idp, &dir, &store).await.unwrap();
        Self {
            idp,
            front,
            server,
            proxy,
            manager,
            store,
            dir,
        }
    }

    /// The app's session manager: discovery, a store and an accounts file
    /// in the scratch directory, short timeouts and retries.
    async fn manager(
        idp: &MockIdp,
        dir: &ScratchDir,
        store: &Arc<FileStore>,
    ) -> sessionkit::Result<SessionManager> {
        SessionManager::builder(idp.issuer(), "chat-example")
            .scopes(["openid", "profile", "offline_access"])
            .namespace("sk-matrix")
            .http(HttpClient::with_timeout(HTTP_TIMEOUT)?)
            .store(Arc::clone(store) as Arc<dyn sessionkit::TokenStore>)
            .registry(AccountRegistry::at(dir.path().join("accounts.json")))
            .retry(Self::retry())
            .revocation_timeout(REVOKE_BUDGET)
            .build()
            .await
    }

    /// Building another manager for the same provider and store, as an app
    /// does at start: its discovery meets the faults set now.
    pub async fn build_manager(&self) -> sessionkit::Result<SessionManager> {
        Self::manager(&self.idp, &self.dir, &self.store).await
    }

    /// Quick retries: twice, waits under 20 ms then 40 ms.
    pub fn retry() -> RetryPolicy {
        RetryPolicy::new(
            RETRIES,
            Duration::from_millis(20),
            Duration::from_millis(100),
        )
    }

    /// Scripts `fault` at the provider; without a count, until
    /// [`World::heal`] (counted down from [`UNTIL_HEALED`], so that
    /// [`World::faulted`] can tell how many requests met it).
    pub fn fault(&self, fault: Fault) {
        let fault = match fault.times {
            Some(_) => fault,
            None => fault.times(UNTIL_HEALED),
        };
        self.idp.control().add_fault(fault);
    }

    /// The provider answers normally again.
    pub fn heal(&self) {
        self.idp.control().clear_faults();
    }

    /// Requests the provider's `endpoint` has seen (faulted ones included).
    pub fn requests(&self, endpoint: &str) -> u64 {
        self.idp.control().count(endpoint)
    }

    /// Requests at `endpoint` that met a fault set without a count (see
    /// [`World::fault`]), counted as they arrive — the provider's request
    /// log only shows a request once answered, and a request the client
    /// gave up on during a delay never is.
    pub fn faulted(&self, endpoint: &str) -> u64 {
        self.idp
            .control()
            .faults()
            .iter()
            .filter(|f| f.endpoint == endpoint)
            .map(|f| u64::from(UNTIL_HEALED - f.times.unwrap_or(UNTIL_HEALED)))
            .sum()
    }

    /// Signs `user` in through the browser flow with `manager` (the
    /// provider logs the user in when the URL is requested).
    pub async fn sign_in_with(
        &self,
        manager: &SessionManager,
        user: &str,
    ) -> sessionkit::Result<Arc<Session>> {
        self.idp.control().set_auto_login(Some(user)).unwrap();
        let options = LoopbackOptions::with_callback(|url| {
            let url = url.to_owned();
            tokio::spawn(async move {
                let _ = reqwest::get(url).await;
            });
        });
        let session = manager.login_loopback(options).await;
        self.idp.control().set_auto_login(None).unwrap();
        session
    }

    /// Signs `user` in with the world's manager.
    pub async fn sign_in(&self, user: &str) -> Arc<Session> {
        self.sign_in_with(&self.manager, user).await.unwrap()
    }

    /// Whether the store holds nothing at all for `session`'s account.
    pub fn stored_nothing(&self, session: &Session) -> bool {
        use sessionkit::TokenStore as _;
        matches!(
            self.store.load_refresh(session.key()),
            Err(StoreError::NotFound)
        ) && matches!(
            self.store.load_session(session.key()),
            Err(StoreError::NotFound)
        )
    }

    /// The refresh token the store holds for `session`'s account.
    pub fn stored_refresh(&self, session: &Session) -> String {
        use sessionkit::TokenStore as _;
        self.store
            .load_refresh(session.key())
            .unwrap()
            .secret()
            .to_owned()
    }

    /// A chat for `session` through [`World::proxy`], joined to [`ROOM`];
    /// waits until it has joined.
    pub async fn chat(&self, session: &Arc<Session>) -> Chat {
        let chat = self.chat_starting(session);
        chat.joined(1).await;
        chat
    }

    /// [`World::chat`] without waiting for anything.
    pub fn chat_starting(&self, session: &Arc<Session>) -> Chat {
        let source: Arc<dyn TokenSource> = Arc::clone(session) as Arc<dyn TokenSource>;
        let url = format!("ws://{}/ws", self.proxy.local_addr());
        Chat::start(chat_builder(url), ROOM, source)
    }

    /// The room's stored history, read by a fresh client: exactly `ids`,
    /// each once and in this order, with sequence numbers 1, 2, 3, …
    /// without gaps.
    pub async fn assert_history(&self, ids: &[&str]) {
        let now = self.idp.control().now();
        let claims = json!({
            "iss": self.idp.issuer(),
            "aud": "chat-server",
            "sub": "history-reader",
            "exp": now + 600,
            "iat": now,
            "client_id": "chat-example",
            "scope": "openid profile",
        });
        let token = self.idp.control().sign_jwt(Alg::RS256, "at+jwt", &claims);
        let mut reader = Chat::start(
            chat_builder(self.server.ws_url()),
            ROOM,
            Arc::new(StaticToken::new(token)),
        );
        reader.joined(1).await;
        let mut stored = Vec::new();
        while let Ok(Some(m)) =
            tokio::time::timeout(Duration::from_millis(300), reader.messages.recv()).await
        {
            stored.push(m.1);
        }
        let seqs: Vec<u64> = stored.iter().map(|m| m.seq).collect();
        assert_eq!(
            seqs,
            (1..=ids.len() as u64).collect::<Vec<_>>(),
            "{stored:?}"
        );
        let stored_ids: Vec<&str> = stored.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(stored_ids, ids, "{stored:?}");
        reader.client.shutdown().await;
    }

    /// Waits until the chat server holds `n` connections.
    pub async fn connections_become(&self, n: usize) {
        let deadline = Instant::now() + PATIENCE;
        while self.server.connections() != n {
            assert!(
                Instant::now() < deadline,
                "the server has {} connections, not {n}",
                self.server.connections()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The realtime client's settings for these tests: reconnects back off
/// from 50 ms to 400 ms, a connection attempt gives up after 1 s.
fn chat_builder(url: String) -> Builder {
    RealtimeClient::builder(url)
        .backoff(Backoff::new(
            Duration::from_millis(50),
            2.0,
            Duration::from_millis(400),
        ))
        .connect_timeout(Duration::from_secs(1))
}

/// Waiting to reconnect because the session had no token to give.
pub fn waiting_for_token(state: &State) -> bool {
    matches!(
        state,
        State::Reconnecting {
            reason: ReconnectReason::TokenUnavailable(_),
            ..
        }
    )
}

/// The session is still signed in (its last refresh may have failed).
pub fn kept(session: &Session) -> bool {
    matches!(
        *session.state().borrow(),
        SessionState::SignedIn { .. }
            | SessionState::RefreshFailing { .. }
            | SessionState::Refreshing
    )
}

/// The connect and send cells of the rows whose fault is transient: a
/// connected chat whose access token expires while `fault` lasts at the
/// token endpoint. The session's timer fails to refresh, the chat server
/// closes the connection with 4001 when the token expires, and the
/// reconnect finds no token: the client waits, the session is kept. Then
/// [`Expired::heal`].
pub struct Expired {
    pub world: World,
    pub session: Arc<Session>,
    pub chat: Chat,
    first: State,
}

impl Expired {
    /// Up to the moment the client waits for a token under `fault`; `a-1`
    /// was sent and acknowledged before the fault.
    pub async fn under(fault: Fault) -> Self {
        let world = World::short_lived().await;
        let session = world.sign_in("alice").await;
        let chat = world.chat(&session).await;
        chat.send("a-1").await;
        chat.all_acked().await;
        let first = chat.client.current_state();
        assert!(connected(&first), "{first:?}");
        world.fault(fault);
        let before = world.stored_refresh(&session);

        chat.state(waiting_for_token).await;
        assert!(kept(&session), "{:?}", *session.state().borrow());
        assert_eq!(
            world.stored_refresh(&session),
            before,
            "the tokens are kept"
        );
        assert!(world.manager.session(session.key()).is_some());
        Self {
            world,
            session,
            chat,
            first,
        }
    }

    /// The provider answers again: the client connects with a fresh token
    /// and joins again; everything sent is acknowledged.
    /// Sends `a-2` and `a-3` while no token can be had (both queued,
    /// unacknowledged), then [`Expired::heal`]s: both acknowledged.
    pub async fn send_two_then_heal(&self) {
        self.chat.send("a-2").await;
        self.chat.send("a-3").await;
        assert_eq!(self.chat.unacked.ids(), ["a-2", "a-3"]);
        self.heal().await;
    }

    pub async fn heal(&self) {
        assert!(!connected(&self.chat.client.current_state()));
        assert!(kept(&self.session));
        self.world.heal();
        let (_, back) = self.chat.state(connected).await;
        assert_ne!(back, self.first, "a new connection");
        self.chat.joined(2).await;
        assert!(
            matches!(
                *self.session.state().borrow(),
                SessionState::SignedIn { .. }
            ),
            "{:?}",
            *self.session.state().borrow()
        );
        self.chat.all_acked().await;
    }
}

/// What a logout under a fault at the revocation endpoint did.
pub struct LoggedOut {
    pub report: LogoutReport,
    /// From the logout's start until the account was signed out locally
    /// (tokens gone from the store, the chat closed as signed out).
    pub local: Duration,
    /// From the logout's start until it returned.
    pub total: Duration,
    /// Revocation requests the provider saw.
    pub revocations: u64,
}

/// Signs alice in, connects her chat, scripts `fault` at the revocation
/// endpoint and logs her out. Checks the local sign-out, whatever the
/// provider does: tokens gone from the store, the session forgotten and
/// signed out, the chat closed as signed out with nothing of it running.
pub async fn logout_under(fault: Fault) -> LoggedOut {
    let world = World::start().await;
    let session = world.sign_in("alice").await;
    let chat = world.chat(&session).await;
    world.connections_become(1).await;
    world.fault(fault);
    let key = session.key().clone();
    let (access, _) = session.cached_access_token();
    let refresh = world.stored_refresh(&session);
    let id_token = session.id_token().unwrap();
    let start = Instant::now();
    let (report, local) = tokio::join!(world.manager.logout(&key), async {
        let deadline = start + PATIENCE;
        while !(world.stored_nothing(&session)
            && matches!(chat.client.current_state(), State::Closed(_)))
        {
            assert!(Instant::now() < deadline, "no local sign-out");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        start.elapsed()
    });
    let total = start.elapsed();
    assert_eq!(
        chat.client.current_state(),
        State::Closed(CloseReason::SignedOut)
    );
    tokio::time::timeout(PATIENCE, chat.client.closed())
        .await
        .expect("the chat stops");
    assert_eq!(chat.client.running_tasks(), 0);
    assert_eq!(session.running_tasks(), 0);
    assert_eq!(*session.state().borrow(), SessionState::SignedOut);
    assert!(world.stored_nothing(&session));
    assert!(world.manager.session(&key).is_none());
    assert!(world.manager.accounts().unwrap().is_empty());
    world.connections_become(0).await;
    assert!(total < REVOKE_BUDGET + Duration::from_secs(1), "{total:?}");
    let shown = format!("{report:?}");
    for secret in [access.secret(), refresh.as_str(), id_token.secret()] {
        assert!(!shown.contains(secret), "a token in {shown}");
    }
    // Only the provider's step may have failed.
    assert!(
        report
            .failures
            .iter()
            .all(|(step, _)| *step == LogoutStep::RevokeRefreshToken),
        "{report:?}"
    );
    eprintln!(
        "logout: signed out locally after {local:?}, returned after {total:?}, revoked: {}",
        report.revoked
    );
    LoggedOut {
        revocations: world.faulted("revocation"),
        report,
        local,
        total,
    }
}

/// Checks that what a failure shows the app — an error's text and debug
/// form, a state, a report — holds none of `session`'s tokens.
pub fn shows_no_token(session: &Session, refresh: &str, shown: &str) {
    let (access, _) = session.cached_access_token();
    for secret in [access.secret(), refresh] {
        assert!(
            secret.is_empty() || !shown.contains(secret),
            "a token in {shown:?}"
        );
    }
}

/// A fault on `endpoint` that answers `status` with the provider's default
/// RFC 6749 error body (`server_error`).
pub fn status(endpoint: &str, status: u16) -> Fault {
    Fault {
        status: Some(status),
        ..Fault::on(endpoint)
    }
}

/// The login cell: discovery (building the app's manager) under
/// `discovery`, if given, then the code exchange under `exchange`. Checks
/// that each fails within the request timeout (plus a second for the
/// sign-in's own steps), that the failed sign-in left nothing: no account, nothing stored, one
/// exchange request (a code is single-use: it is not retried); then that
/// the same sign-in succeeds once the provider answers. Returns the two
/// errors.
pub async fn login_under(
    discovery: Option<Fault>,
    exchange: Fault,
) -> (Option<sessionkit::Error>, sessionkit::Error) {
    let world = World::start().await;
    let discovery_error = match discovery {
        Some(fault) => {
            world.fault(fault);
            let started = Instant::now();
            let error = world.build_manager().await.unwrap_err();
            let took = started.elapsed();
            eprintln!("discovery failed after {took:?}: {error}");
            assert!(took < HTTP_TIMEOUT + Duration::from_secs(1), "{took:?}");
            world.heal();
            Some(error)
        }
        None => None,
    };
    let manager = world.build_manager().await.unwrap();

    world.fault(exchange);
    let started = Instant::now();
    let error = world.sign_in_with(&manager, "alice").await.unwrap_err();
    let took = started.elapsed();
    eprintln!("the code exchange failed after {took:?}: {error}");
    assert!(took < HTTP_TIMEOUT + Duration::from_secs(1), "{took:?}");
    assert_eq!(world.faulted("token"), 1, "one code exchange");
    assert!(manager.accounts().unwrap().is_empty());
    assert!(manager.active().unwrap().is_none());
    assert!(
        std::fs::read_dir(world.dir.path())
            .unwrap()
            .all(|e| e.unwrap().file_name() == "accounts.json"),
        "nothing stored"
    );

    world.heal();
    let session = world.sign_in_with(&manager, "alice").await.unwrap();
    assert_eq!(manager.accounts().unwrap().len(), 1);
    assert!(!world.stored_refresh(&session).is_empty());
    (discovery_error, error)
}

/// A refresh cell up to the failed refresh: alice signed in, a fault at
/// the token endpoint, one refresh asked for.
pub struct RefreshFailed {
    pub world: World,
    pub session: Arc<Session>,
    pub error: sessionkit::Error,
    /// Refresh requests that met the fault.
    pub attempts: u64,
    /// How long the failed refresh took.
    pub took: Duration,
    /// The refresh token stored before.
    pub before: String,
}

impl RefreshFailed {
    pub async fn under(fault: Fault) -> Self {
        let world = World::start().await;
        let session = world.sign_in("alice").await;
        let before = world.stored_refresh(&session);
        world.fault(fault);
        let started = Instant::now();
        let error = session.force_refresh().await.unwrap_err();
        let took = started.elapsed();
        eprintln!("the refresh failed after {took:?}: {error}");
        let shown = format!("{error} {error:?} {:?}", *session.state().borrow());
        shows_no_token(&session, &before, &shown);
        Self {
            attempts: world.faulted("token"),
            world,
            session,
            error,
            took,
            before,
        }
    }

    /// The rest of a refresh cell for a transient fault: the refresh was
    /// retried within its bounds, the session kept with its stored tokens,
    /// and the next refresh after the fault succeeds (and rotates them).
    pub async fn kept_then_refreshed(&self) {
        let Self {
            world,
            session,
            error,
            attempts,
            before,
            ..
        } = self;
        assert!(error.is_transient(), "{error:?}");
        assert!(!error.is_signed_out());
        assert_eq!(*attempts, 1 + u64::from(RETRIES), "bounded retries");
        assert!(
            matches!(
                &*session.state().borrow(),
                SessionState::RefreshFailing {
                    kind: sessionkit::FailureKind::Transient,
                    ..
                }
            ),
            "{:?}",
            *session.state().borrow()
        );
        assert_eq!(
            world.stored_refresh(session),
            *before,
            "the tokens are kept"
        );
        assert!(world.manager.session(session.key()).is_some());
        world.heal();
        session.force_refresh().await.unwrap();
        assert!(matches!(
            *session.state().borrow(),
            SessionState::SignedIn { .. }
        ));
        assert_ne!(world.stored_refresh(session), *before, "rotated and stored");
    }
}
