//! The fault matrix row "keychain locked" (see main.rs): the SDK on the real
//! gnome-keyring (Secret Service over D-Bus), its collection locked over
//! D-Bus and unlocked again with the master password (no prompt; the
//! password from `SESSIONKIT_KEYRING_PASSWORD`). Locking is the whole D-Bus
//! session's, so these tests take turns ([`keychain::exclusive`]); skipped
//! without a Secret Service unless `SESSIONKIT_REQUIRE_KEYCHAIN=1`.

use std::sync::Arc;
use std::time::Duration;

use sessionkit::{
    Error, KeychainStore, LogoutStep, SessionEvent, SessionManager, SessionState, StoreError,
    TokenStore,
};
use sessionkit_examples::protocol::{ClientFrame, ServerFrame};
use sessionkit_examples::server::{ChatServer, ServerConfig};
use sessionkit_mock_idp::MockIdp;
use sessionkit_realtime::{Incoming, RealtimeClient, State, TokenSource};
use sessionkit_tests::keychain::{self, Locked, PASSWORD_VAR};
use sessionkit_tests::scratch::ScratchDir;

use crate::catalogue::{Cell, Row};
use crate::node_support::{PATIENCE, idp, manager, sign_in};

pub const ROW: Row = Row {
    fault: "keychain locked",
    how: "gnome-keyring's collection locked over D-Bus (Secret Service), the real daemon; unlocked again with its master password",
    cells: [
        Cell::Tested(
            "a typed StoreError::Unavailable; nothing written (no item, no account listed), the unkept grant revoked at the provider; the same login succeeds once unlocked",
        ),
        Cell::Tested(
            "the rotated tokens are not lost: served from memory, StoreWriteFailed emitted, the write retried and stored once unlocked; a restarted app refreshes with the stored rotated token",
        ),
        Cell::Tested(
            "an app started while locked: a typed StoreError::Unavailable per account, still listed, nothing deleted; it restores and connects once unlocked; a reconnect while locked takes the token from memory",
        ),
        Cell::Tested(
            "an open socket keeps sending: the token is already in memory; each message acked",
        ),
        Cell::Tested(
            "signed out locally (state, tokens in memory) and the refresh token revoked at the provider; the entries' deletion reported as a failed step (Unavailable) and done by logging out again once unlocked",
        ),
    ],
};

const REQUIRE_VAR: &str = "SESSIONKIT_REQUIRE_KEYCHAIN";

/// One test's keychain world: its turn at the lock, the Secret Service
/// store, a provider, a random namespace.
struct World {
    _turn: tokio::sync::MutexGuard<'static, ()>,
    store: Arc<KeychainStore>,
    idp: MockIdp,
    dir: ScratchDir,
    namespace: String,
}

impl World {
    async fn start(test: &str) -> Option<Self> {
        let required = std::env::var(REQUIRE_VAR).is_ok_and(|v| v == "1");
        let store = tokio::task::spawn_blocking(KeychainStore::secret_service)
            .await
            .expect("probe");
        let skip = match (&store, keychain::password()) {
            (Err(e), _) => Some(format!("no Secret Service: {e}")),
            (Ok(_), None) => Some(format!(
                "{PASSWORD_VAR} is not set (needed to unlock again)"
            )),
            _ => None,
        };
        if let Some(why) = skip {
            assert!(
                !required,
                "keychain_locked::{test}: {why}, and {REQUIRE_VAR}=1"
            );
            eprintln!("SKIP keychain_locked::{test}: {why} (set {REQUIRE_VAR}=1 to fail)");
            return None;
        }
        let turn = keychain::exclusive().await;
        let dir = ScratchDir::new(&format!("matrix-kc-{test}"));
        let namespace = format!(
            "sk-matrix-kc-{}",
            dir.path()
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or(test)
        );
        Some(Self {
            _turn: turn,
            store: Arc::new(store.expect("checked")),
            idp: idp().await,
            dir,
            namespace,
        })
    }

    async fn manager(&self) -> SessionManager {
        let store: Arc<dyn TokenStore> = self.store.clone();
        manager(&self.idp, store, &self.namespace, &self.dir).await
    }

    /// Items of this test's namespace in the keyring (locked or not).
    fn items(&self) -> usize {
        let service = format!("{}.sessionkit", self.namespace);
        keychain::count_items(&[("service", &service)])
    }
}

fn lock() -> Locked {
    tokio::task::block_in_place(Locked::lock)
}

fn unlock(locked: &mut Locked) {
    tokio::task::block_in_place(|| locked.unlock());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login() {
    let Some(world) = World::start("login").await else {
        return;
    };
    let sessions = world.manager().await;
    let mut locked = lock();
    match sign_in(&world.idp, &sessions, "alice").await {
        Err(Error::Store(StoreError::Unavailable(_))) => {}
        other => panic!("expected a typed Unavailable store error, got {other:?}"),
    }
    assert_eq!(world.items(), 0, "nothing half-written");
    assert_eq!(
        world.idp.control().count("revocation"),
        1,
        "the grant that could not be kept is revoked at the provider"
    );
    assert!(
        sessions.accounts().expect("list").is_empty(),
        "no account listed"
    );
    unlock(&mut locked);
    let session = sign_in(&world.idp, &sessions, "alice")
        .await
        .expect("signed in once unlocked");
    assert_eq!(world.items(), 2, "session and refresh entries");
    let report = sessions.logout(session.key()).await;
    assert!(report.failures.is_empty(), "{:?}", report.failures);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh() {
    let Some(world) = World::start("refresh").await else {
        return;
    };
    let sessions = world.manager().await;
    let session = sign_in(&world.idp, &sessions, "alice").await.expect("in");
    let key = session.key().clone();
    let before = world.store.load_refresh(&key).expect("stored");
    let mut events = session.events();

    let mut locked = lock();
    let token = session
        .force_refresh()
        .await
        .expect("the refresh succeeds at the provider");
    assert!(session.store_write_pending(), "the write is pending");
    let failed = tokio::time::timeout(PATIENCE, async {
        loop {
            if let Ok(SessionEvent::StoreWriteFailed) = events.recv().await {
                return;
            }
        }
    });
    failed.await.expect("StoreWriteFailed emitted");
    // Served from memory, no second refresh (the old refresh token is dead:
    // the provider rotated it).
    assert_eq!(session.access_token().await.expect("from memory"), token);
    assert_eq!(world.idp.control().count("token:refresh_token"), 1);
    assert_eq!(world.items(), 2, "nothing deleted");

    unlock(&mut locked);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while session.store_write_pending() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the write was never retried"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = world.store.load_refresh(&key).expect("stored");
    assert_ne!(
        after, before,
        "the rotated refresh token reached the keychain"
    );

    // The app restarts: what the keychain holds refreshes.
    drop(session);
    drop(sessions);
    let again = world.manager().await;
    let restored = again.restore().await.expect("restore");
    assert!(restored.iter().all(|r| r.result.is_ok()), "restored");
    let session = again.session(&key).expect("its session");
    session
        .force_refresh()
        .await
        .expect("the stored (rotated) refresh token works");
    let report = again.logout(&key).await;
    assert!(report.failures.is_empty(), "{:?}", report.failures);
}

/// A realtime client for `session` on `urls` (started at the first).
fn client(
    session: &Arc<sessionkit::Session>,
    urls: &[String],
) -> (RealtimeClient, tokio::sync::mpsc::Receiver<Incoming>) {
    let source: Arc<dyn TokenSource> = session.clone();
    RealtimeClient::builder_multi(urls.iter().cloned())
        .start_seed(0)
        .build(source)
        .expect("client")
}

async fn connected(client: &RealtimeClient) {
    tokio::time::timeout(
        PATIENCE,
        client
            .state()
            .wait_for(|s| matches!(s, State::Connected { .. })),
    )
    .await
    .expect("connected in time")
    .expect("client running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect() {
    let Some(world) = World::start("connect").await else {
        return;
    };
    let mut servers = Vec::new();
    for _ in 0..2 {
        servers.push(
            ChatServer::start(ServerConfig::new(world.idp.issuer()))
                .await
                .expect("chat server"),
        );
    }
    let urls: Vec<String> = servers.iter().map(ChatServer::ws_url).collect();
    let first = world.manager().await;
    let key = sign_in(&world.idp, &first, "alice")
        .await
        .expect("in")
        .key()
        .clone();
    drop(first);

    // The app starts while the keychain is locked.
    let mut locked = lock();
    let sessions = world.manager().await;
    let restored = sessions.restore().await.expect("restore runs");
    assert_eq!(restored.len(), 1);
    assert!(
        matches!(restored[0].result, Err(StoreError::Unavailable(_))),
        "{:?}",
        restored[0].result
    );
    assert!(
        sessions.session(&key).is_none(),
        "no tokens to connect with"
    );
    assert_eq!(sessions.accounts().expect("list").len(), 1, "still listed");
    assert_eq!(world.items(), 2, "nothing deleted");

    unlock(&mut locked);
    let restored = sessions.restore().await.expect("restore");
    assert!(restored[0].result.is_ok(), "{:?}", restored[0].result);
    let session = sessions.session(&key).expect("restored");
    let (client, _incoming) = client(&session, &urls);
    connected(&client).await;

    // Locked again, the node goes away: the reconnect takes the token
    // from memory.
    let mut locked = lock();
    let on = servers
        .iter()
        .position(|s| s.connections() == 1)
        .expect("on one node");
    servers.remove(on).shutdown().await;
    tokio::time::timeout(
        PATIENCE,
        client
            .state()
            .wait_for(|s| matches!(s, State::Reconnecting { .. } | State::Connecting { .. })),
    )
    .await
    .expect("noticed")
    .expect("running");
    connected(&client).await;
    assert_eq!(servers[0].connections(), 1, "on the other node");
    unlock(&mut locked);
    client.shutdown().await;
    let report = sessions.logout(&key).await;
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    for server in servers {
        server.shutdown().await;
    }
}

fn frame(frame: &ClientFrame) -> String {
    serde_json::to_string(frame).expect("json")
}

/// Reads `incoming` until the ack of `id`; returns its sequence number.
async fn ack(incoming: &mut tokio::sync::mpsc::Receiver<Incoming>, id: &str) -> u64 {
    tokio::time::timeout(PATIENCE, async {
        while let Some(Incoming::Text(text)) = incoming.recv().await {
            if let Ok(ServerFrame::Ack { id: got, seq, .. }) = serde_json::from_str(&text)
                && got == id
            {
                return seq;
            }
        }
        panic!("the client stopped before the ack of {id}");
    })
    .await
    .expect("acked in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send() {
    let Some(world) = World::start("send").await else {
        return;
    };
    let server = ChatServer::start(ServerConfig::new(world.idp.issuer()))
        .await
        .expect("chat server");
    let sessions = world.manager().await;
    let session = sign_in(&world.idp, &sessions, "alice").await.expect("in");
    let (client, mut incoming) = client(&session, &[server.ws_url()]);
    connected(&client).await;

    let mut locked = lock();
    for i in 1..=3 {
        let id = format!("kc-{i}");
        client
            .send(frame(&ClientFrame::Send {
                room: "general".into(),
                id: id.clone(),
                text: format!("m{i}"),
            }))
            .await
            .expect("queued");
        assert_eq!(ack(&mut incoming, &id).await, i, "acked in order");
    }
    unlock(&mut locked);
    client.shutdown().await;
    let report = sessions.logout(session.key()).await;
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout() {
    let Some(world) = World::start("logout").await else {
        return;
    };
    let sessions = world.manager().await;
    let session = sign_in(&world.idp, &sessions, "alice").await.expect("in");
    let key = session.key().clone();
    assert_eq!(world.items(), 2);

    let mut locked = lock();
    let report = sessions.logout(&key).await;
    assert!(
        report.revoked,
        "the refresh token revoked at the provider anyway"
    );
    assert_eq!(
        world.idp.control().count("revocation"),
        1,
        "one revocation request"
    );
    let steps: Vec<_> = report.failures.iter().map(|(step, _)| *step).collect();
    assert_eq!(steps, [LogoutStep::DeleteTokens], "{:?}", report.failures);
    assert_eq!(*session.state().borrow(), SessionState::SignedOut);
    assert_eq!(world.items(), 2, "the entries are still there, locked");

    unlock(&mut locked);
    let again = sessions.logout(&key).await;
    assert!(
        !again
            .failures
            .iter()
            .any(|(step, _)| *step == LogoutStep::DeleteTokens),
        "{:?}",
        again.failures
    );
    assert_eq!(world.items(), 0, "deleted once unlocked");
}
