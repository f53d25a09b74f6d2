//! Support for the network rows (partitioned, loss, latency): the provider
//! and a `chat-server` process on a test host in a network namespace
//! (`sessionkit_tests::netns`), the SDK and the realtime client here, so
//! every request and frame crosses the veth whose path the test impairs.
//!
//! The provider listens inside the namespace with the issuer
//! `http://localhost:PORT`: chat-server, in there with it, reaches it on
//! its own loopback, untouched by the impairment; the SDK's HTTP client
//! resolves `localhost` to the host's address, so the SDK keeps its rule
//! (plain `http` only to a loopback name) while its requests cross the
//! impaired path. The realtime client dials the host's address with
//! `insecure_plain_ws` (the test network is private).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sessionkit::{
    AccountRegistry, HttpClient, LoopbackOptions, MemoryStore, OidcClient, Provider, RetryPolicy,
    Session, SessionManager,
};
use sessionkit_mock_idp::MockIdp;
use sessionkit_realtime::{Backoff, Builder, RealtimeClient, TokenSource};
use sessionkit_tests::netns::{Impairment, TestHost};
use sessionkit_tests::scratch::ScratchDir;
use tokio::io::AsyncBufReadExt as _;

use tokio::time::Instant;

pub use crate::room_chat::{Chat, connected};

/// The longest any one expected thing may take, impairments included.
pub const PATIENCE: Duration = Duration::from_secs(30);
pub const ROOM: &str = "net";

/// The SDK's limit per provider request in these tests (the default is
/// 30 s; an app on a bad network would choose its own): short, so a
/// partitioned provider gives its typed error quickly.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// A provider and a chat server on a test host, and an SDK here.
pub struct NetWorld {
    pub idp: MockIdp,
    pub manager: SessionManager,
    pub ws_url: String,
    _server: tokio::process::Child,
    browser: reqwest::Client,
    _dir: ScratchDir,
    /// Last, so that the servers in it are stopped first.
    pub host: Arc<TestHost>,
}

impl NetWorld {
    /// The world, or `None` (with a message) where test hosts cannot be made.
    pub async fn start(test: &str) -> Option<Self> {
        Self::start_with(test, REQUEST_TIMEOUT, RetryPolicy::default()).await
    }

    /// [`NetWorld::start`] with the SDK's request timeout and refresh retries.
    pub async fn start_with(test: &str, timeout: Duration, retry: RetryPolicy) -> Option<Self> {
        if !sessionkit_tests::netns::available(test) {
            return None;
        }
        let host = Arc::new(TestHost::new().expect("a test host"));
        let listener = host.listen(0).expect("a listener in the namespace");
        let port = listener.local_addr().unwrap().port();
        let issuer = format!("http://localhost:{port}");
        let idp = MockIdp::builder()
            .listener(listener)
            .issuer(&issuer)
            .start()
            .await
            .expect("mock idp");

        let mut server =
            tokio::process::Command::from(host.command(env!("CARGO_BIN_EXE_chat-server")));
        server
            .args([
                "--bind",
                "0.0.0.0:0",
                "--issuer",
                &issuer,
                "--db",
                ":memory:",
            ])
            .args(["--log", "warn"])
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true);
        let mut server = server.spawn().expect("chat-server");
        let stdout = server.stdout.take().unwrap();
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let first = tokio::time::timeout(PATIENCE, lines.next_line())
            .await
            .expect("chat-server starts in time")
            .unwrap()
            .expect("chat-server prints its address");
        let server_port: u16 = first
            .rsplit(':')
            .next()
            .and_then(|rest| rest.trim_end_matches("/ws").parse().ok())
            .unwrap_or_else(|| panic!("no port in {first:?}"));
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let ws_url = format!("ws://{}:{server_port}/ws", host.addr());

        // `localhost` is the host, across the veth, for the SDK and the
        // "browser" alike.
        let to_host = SocketAddr::from((host.addr(), port));
        let reqwest = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout)
            .resolve("localhost", to_host)
            .build()
            .unwrap();
        let http = HttpClient::from_reqwest(reqwest);
        let browser = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .resolve("localhost", to_host)
            .timeout(PATIENCE)
            .build()
            .unwrap();
        let provider = Provider::discover(&issuer, &http).await.expect("discovery");
        let client = OidcClient::new(provider, "chat-example").scopes([
            "openid",
            "profile",
            "offline_access",
        ]);
        let dir = ScratchDir::new("sk-net");
        let manager = SessionManager::for_client(client)
            .namespace("sk-net")
            .store(Arc::new(MemoryStore::new()))
            .registry(AccountRegistry::at(dir.path().join("accounts.json")))
            .retry(retry)
            .build()
            .await
            .unwrap();
        Some(Self {
            host,
            idp,
            manager,
            ws_url,
            _server: server,
            browser,
            _dir: dir,
        })
    }

    /// Sets the path's impairment.
    pub fn impair(&self, impairment: Impairment) {
        self.host.impair(impairment).expect("impairment applied");
    }

    /// Signs `user` in through the authorization-code flow.
    pub async fn sign_in(&self, user: &str) -> sessionkit::Result<Arc<Session>> {
        self.sign_in_then(user, None).await
    }

    /// Signs `user` in; `at_callback` is set just before the browser
    /// delivers the authorization response, so that the SDK's token
    /// request (and only it) meets it.
    pub async fn sign_in_then(
        &self,
        user: &str,
        at_callback: Option<Impairment>,
    ) -> sessionkit::Result<Arc<Session>> {
        self.idp.control().set_auto_login(Some(user)).unwrap();
        let (browser, host) = (self.browser.clone(), Arc::clone(&self.host));
        let options = LoopbackOptions::with_callback(move |url| {
            let url = url.to_owned();
            tokio::spawn(async move {
                // The provider signs the user in and redirects (maybe more
                // than once) to the SDK's listener on 127.0.0.1. A request
                // that does not get through in 3 s is sent again, as a user
                // reloads a stuck page (a lost SYN alone costs 1 s, then 2 s…).
                let mut url = url;
                let deadline = Instant::now() + PATIENCE;
                for _ in 0..5 {
                    let callback = url.starts_with("http://127.0.0.1");
                    if callback && let Some(impairment) = at_callback {
                        host.impair(impairment).expect("impairment applied");
                    }
                    let response = loop {
                        let sent = browser.get(&url).timeout(Duration::from_secs(3)).send();
                        match sent.await {
                            Ok(response) => break response,
                            Err(_) if !callback && Instant::now() < deadline => {}
                            Err(_) => return,
                        }
                    };
                    let Some(next) = response
                        .headers()
                        .get(reqwest::header::LOCATION)
                        .and_then(|l| l.to_str().ok())
                    else {
                        return;
                    };
                    url = next.to_owned();
                }
            });
        });
        let options = LoopbackOptions {
            timeout: PATIENCE,
            ..options
        };
        let session = self.manager.login_loopback(options).await;
        self.idp.control().set_auto_login(None).unwrap();
        session
    }

    /// A chat client of `session` in [`ROOM`] with the default liveness
    /// settings (ping after 4 s of silence, dead after 8 s).
    pub async fn chat(&self, session: &Arc<Session>) -> Chat {
        self.chat_with(session, |b| b).await
    }

    /// A chat client whose builder `configure` adjusts (liveness, limits).
    pub async fn chat_with(
        &self,
        session: &Arc<Session>,
        configure: impl FnOnce(Builder) -> Builder,
    ) -> Chat {
        let quick = Backoff::new(Duration::from_millis(100), 2.0, Duration::from_secs(1));
        let builder = RealtimeClient::builder(self.ws_url.clone())
            .insecure_plain_ws(true)
            .backoff(quick);
        let source: Arc<dyn TokenSource> = Arc::clone(session) as _;
        let chat = Chat::start(configure(builder), ROOM, source);
        chat.joined(1).await;
        chat
    }

    /// The room's stored history, read by a fresh client over a clear
    /// path: exactly `ids`, in this order, each once, sequence numbers
    /// 1, 2, 3, … without gaps.
    pub async fn assert_history(&self, session: &Arc<Session>, ids: &[String]) {
        self.impair(Impairment::Clear);
        let mut reader = self.chat(session).await;
        let mut stored = Vec::new();
        while stored.len() < ids.len() {
            stored.push(reader.next().await.1);
        }
        let extra = tokio::time::timeout(Duration::from_millis(500), reader.messages.recv()).await;
        assert!(extra.is_err(), "a message beyond {ids:?}: {extra:?}");
        let seqs: Vec<u64> = stored.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, (1..=ids.len() as u64).collect::<Vec<_>>());
        let stored_ids: Vec<&str> = stored.iter().map(|m| m.id.as_str()).collect();
        let want: Vec<&str> = ids.iter().map(String::as_str).collect();
        assert_eq!(stored_ids, want, "stored in this order, each once");
        assert_eq!(
            stored_ids.iter().collect::<HashSet<_>>().len(),
            ids.len(),
            "no doubles"
        );
        reader.client.shutdown().await;
    }
}
