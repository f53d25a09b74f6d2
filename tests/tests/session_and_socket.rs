//! The SDK's session, the realtime client and the example chat server
//! together, in one process over real sockets: an account's logout closes
//! that account's sockets and nothing of them keeps running; a revocation
//! at the provider ends the client as signed out.

#![allow(missing_docs, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use sessionkit::{
    AccountInfo, AccountRegistry, HttpClient, LoopbackOptions, MemoryStore, OidcClient, Provider,
    SessionManager,
};
use sessionkit_examples::server::{ChatServer, ServerConfig};
use sessionkit_mock_idp::MockIdp;
use sessionkit_realtime::{CloseReason, RealtimeClient, State, TokenSource};
use tokio::sync::watch;

const PATIENCE: Duration = Duration::from_secs(20);

struct World {
    idp: MockIdp,
    server: ChatServer,
    manager: SessionManager,
    dir: std::path::PathBuf,
}

impl World {
    async fn start() -> Self {
        let idp = MockIdp::builder()
            .bind("127.0.0.1:0")
            .start()
            .await
            .unwrap();
        let server = ChatServer::start(ServerConfig::new(idp.issuer()))
            .await
            .unwrap();
        idp.control()
            .set_backchannel_logout_uri("chat-example", Some(&server.backchannel_logout_url()))
            .unwrap();
        let http = HttpClient::new().unwrap();
        let provider = Provider::discover(idp.issuer(), &http).await.unwrap();
        let client = OidcClient::new(provider, "chat-example").scopes([
            "openid",
            "profile",
            "offline_access",
        ]);
        let dir = std::env::temp_dir().join(format!(
            "sk-e2e-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let manager = SessionManager::for_client(client)
            .namespace("sk-e2e")
            .store(Arc::new(MemoryStore::new()))
            .registry(AccountRegistry::at(dir.join("accounts.json")))
            .build()
            .await
            .unwrap();
        Self {
            idp,
            server,
            manager,
            dir,
        }
    }

    /// Signs `user` in through the authorization-code flow; the provider
    /// logs the user in automatically when the URL is requested.
    async fn sign_in(&self, user: &str) -> AccountInfo {
        self.idp.control().set_auto_login(Some(user)).unwrap();
        let options = LoopbackOptions::with_callback(|url| {
            let url = url.to_owned();
            tokio::spawn(async move {
                let _ = reqwest::get(url).await;
            });
        });
        let session = self.manager.login_loopback(options).await.unwrap();
        self.idp.control().set_auto_login(None).unwrap();
        session.info().clone()
    }

    fn connect(&self, account: &AccountInfo) -> RealtimeClient {
        let session = self.manager.session(&account.key).unwrap();
        let source: Arc<dyn TokenSource> = session;
        let (client, _incoming) = RealtimeClient::builder(self.server.ws_url())
            .build(source)
            .unwrap();
        client
    }

    async fn connections_become(&self, n: usize) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while self.server.connections() != n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the server has {} connections, not {n}",
                self.server.connections()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn wait_for(state: &mut watch::Receiver<State>, want: impl Fn(&State) -> bool) -> State {
    tokio::time::timeout(PATIENCE, state.wait_for(|s| want(s)))
        .await
        .expect("the state in time")
        .expect("the client is there")
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_closes_that_accounts_sockets_and_nothing_of_them_runs() {
    let world = World::start().await;
    let alice = world.sign_in("alice").await;
    let bob = world.sign_in("bob").await;
    let (a, b) = (world.connect(&alice), world.connect(&bob));
    wait_for(&mut a.state(), |s| matches!(s, State::Connected { .. })).await;
    wait_for(&mut b.state(), |s| matches!(s, State::Connected { .. })).await;
    world.connections_become(2).await;

    let report = world.manager.logout(&alice.key).await;
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    let end = wait_for(&mut a.state(), |s| matches!(s, State::Closed(_))).await;
    assert!(matches!(end, State::Closed(_)), "{end:?}");
    tokio::time::timeout(PATIENCE, a.closed())
        .await
        .expect("alice's client stops");
    assert_eq!(
        a.running_tasks(),
        0,
        "no timer, token fetch or socket task is left"
    );
    world.connections_become(1).await;
    assert!(
        matches!(b.current_state(), State::Connected { .. }),
        "bob stays connected"
    );
    b.shutdown().await;
    world.connections_become(0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_at_the_provider_ends_the_client_as_signed_out() {
    let world = World::start().await;
    let alice = world.sign_in("alice").await;
    let a = world.connect(&alice);
    wait_for(&mut a.state(), |s| matches!(s, State::Connected { .. })).await;

    // Back-channel logout → the chat server closes with 4003 → the client
    // refreshes, the provider refuses (the grant is revoked) → signed out.
    assert!(world.idp.control().revoke_user_sessions("alice") > 0);
    let end = wait_for(&mut a.state(), |s| matches!(s, State::Closed(_))).await;
    assert_eq!(end, State::Closed(CloseReason::SignedOut));
    tokio::time::timeout(PATIENCE, a.closed())
        .await
        .expect("the client stops");
    assert_eq!(a.running_tasks(), 0);
    world.connections_become(0).await;
    assert_eq!(
        world.idp.control().count("token:refresh_token"),
        1,
        "one refresh attempt, refused"
    );
}
