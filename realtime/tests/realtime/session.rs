//! The realtime client with the SDK's `Session` as its token source, against
//! the mock identity provider.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::support::{Command, WsServer, is_connected, wait_for};
use sessionkit::{
    AccountKey, AccountRegistry, HttpClient, LoopbackOptions, MemoryStore, OidcClient, Provider,
    Session, SessionManager,
};
use sessionkit_mock_idp::MockIdp;
use sessionkit_realtime::{Backoff, CloseReason, RealtimeClient, State, TokenSource};

fn scratch() -> std::path::PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    std::env::temp_dir().join(format!(
        "sk-realtime-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

fn play_browser() -> LoopbackOptions {
    LoopbackOptions::with_callback(|url| {
        let url = url.to_owned();
        tokio::spawn(async move {
            let _ = reqwest::get(url).await;
        });
    })
}

/// Alice signed in at the mock provider; the session and its manager.
async fn signed_in(idp: &MockIdp) -> (SessionManager, AccountKey, Arc<Session>) {
    let http = HttpClient::new().expect("http");
    let provider = Provider::discover(idp.issuer(), &http)
        .await
        .expect("discovery");
    let client =
        OidcClient::new(provider, "chat-example").scopes(["openid", "profile", "offline_access"]);
    let manager = SessionManager::for_client(client)
        .namespace("realtime-test")
        .store(Arc::new(MemoryStore::default()))
        .registry(AccountRegistry::at(scratch().join("accounts.json")))
        .build()
        .await
        .expect("manager");
    let account = manager
        .login_loopback(play_browser())
        .await
        .expect("sign in")
        .info()
        .clone();
    let session = manager.session(&account.key).expect("session");
    (manager, account.key, session)
}

/// A server that accepts the session's current token, and a client using
/// the session as its token source.
async fn connected(session: &Arc<Session>) -> (WsServer, RealtimeClient) {
    let token = TokenSource::token(&**session).await.expect("token");
    let server = WsServer::start(&[token.token.secret()]).await;
    let (client, _incoming) = RealtimeClient::builder(server.url())
        .backoff(Backoff::new(
            Duration::from_millis(10),
            2.0,
            Duration::from_millis(100),
        ))
        .build(session.clone())
        .expect("client");
    wait_for(&mut client.state(), is_connected).await;
    (server, client)
}

#[tokio::test]
async fn close_4003_after_revocation_at_the_provider_closes_as_signed_out() {
    let idp = MockIdp::builder()
        .auto_login("alice")
        .start()
        .await
        .expect("idp");
    let (_manager, _key, session) = signed_in(&idp).await;
    let (server, client) = connected(&session).await;

    assert!(idp.control().revoke_user_sessions("alice") >= 1);
    server.command(Command::Close(4003, "session revoked".to_owned()));
    tokio::time::timeout(Duration::from_secs(10), client.closed())
        .await
        .expect("closed");
    assert_eq!(
        client.current_state(),
        State::Closed(CloseReason::SignedOut)
    );
    assert_eq!(client.running_tasks(), 0);
    assert_eq!(server.accepted().len(), 1);
}

#[tokio::test]
async fn logout_closes_the_client_and_leaves_no_task() {
    let idp = MockIdp::builder()
        .auto_login("alice")
        .start()
        .await
        .expect("idp");
    let (manager, key, session) = signed_in(&idp).await;
    let (_server, client) = connected(&session).await;

    let _report = manager.logout(&key).await;
    tokio::time::timeout(Duration::from_secs(10), client.closed())
        .await
        .expect("closed");
    assert_eq!(
        client.current_state(),
        State::Closed(CloseReason::SignedOut)
    );
    assert_eq!(client.running_tasks(), 0);
}

#[tokio::test]
async fn the_session_gives_its_token_with_its_expiry_and_reuses_a_newer_one_after_a_refusal() {
    let idp = MockIdp::builder()
        .auto_login("alice")
        .start()
        .await
        .expect("idp");
    let (_manager, _key, session) = signed_in(&idp).await;

    let timed = TokenSource::token(&*session).await.expect("token");
    let (cached, expires_at) = session.cached_access_token();
    assert_eq!(timed.token.secret(), cached.secret());
    assert!(expires_at.is_some());
    assert_eq!(timed.expires_at, expires_at);
    // Proactive (the default): connections keep their token until the
    // server closes them; only `Background` moves them while connected.
    assert_eq!(timed.refresh_at, None);

    let refused = timed.token.clone();
    let fresh = TokenSource::rejected(&*session, &refused)
        .await
        .expect("refresh");
    assert_ne!(fresh.token, timed.token);
    assert_eq!(fresh.expires_at, session.cached_access_token().1);
    assert_eq!(idp.control().count("token:refresh_token"), 1);
    // Another connection refused with the same old token: the newer token
    // is reused, not refreshed again.
    let again = TokenSource::rejected(&*session, &refused)
        .await
        .expect("reused");
    assert_eq!(again.token, fresh.token);
    assert_eq!(idp.control().count("token:refresh_token"), 1);
}
