//! Several accounts on one device: sign in alice and bob through the loopback
//! listener against the mock provider, list, switch, and restore them all
//! in a fresh manager (a new process, as far as the SDK can tell); a store
//! that fails at start-up is reported and nothing is lost.

mod support;

use support::*;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use sessionkit::{
    AccountRegistry, Error, HttpClient, MemoryStore, OidcClient, Provider, SessionManager,
    StoreError, TokenStore,
};
use sessionkit_mock_idp::MockIdp;

async fn manager(
    idp: &MockIdp,
    store: Arc<dyn TokenStore>,
    registry: AccountRegistry,
) -> SessionManager {
    let provider = Provider::discover(idp.issuer(), &HttpClient::new().expect("http"))
        .await
        .expect("discovery");
    let client =
        OidcClient::new(provider, "chat-example").scopes(["openid", "profile", "offline_access"]);
    SessionManager::for_client(client)
        .namespace("accounts-test")
        .store(store)
        .registry(registry)
        .restore(false)
        .build()
        .await
        .expect("manager")
}

#[tokio::test]
async fn two_accounts_sign_in_switch_and_restore_in_a_new_manager() {
    let idp = MockIdp::builder()
        .auto_login("alice")
        .start()
        .await
        .expect("idp");
    let dir = scratch("acc");
    let store: Arc<dyn TokenStore> = Arc::new(MemoryStore::new());
    let registry = AccountRegistry::at(dir.join("accounts.json"));
    let first = manager(&idp, store.clone(), registry.clone()).await;

    let alice = first
        .login_loopback(play_browser())
        .await
        .expect("alice signs in")
        .info()
        .clone();
    idp.control().set_auto_login(Some("bob")).expect("bob next");
    let bob = first
        .login_loopback(play_browser())
        .await
        .expect("bob signs in")
        .info()
        .clone();
    assert_eq!(
        (alice.key.sub.as_str(), bob.key.sub.as_str()),
        ("alice", "bob")
    );
    assert_eq!(alice.display_name, "Alice Example");
    let listed: Vec<String> = first
        .accounts()
        .expect("list")
        .into_iter()
        .map(|a| a.key.sub)
        .collect();
    assert_eq!(listed, ["alice", "bob"]);
    assert_eq!(
        first.active().expect("active").map(|a| a.key.sub),
        Some("bob".into()),
        "the newest sign-in is active"
    );
    assert!(
        first.stored_refresh_token(&alice.key).await.is_ok(),
        "refresh token in its own entry"
    );

    first.switch(&alice.key).expect("switch");
    assert_eq!(
        first
            .active_session()
            .expect("active")
            .map(|s| s.key().sub.clone()),
        Some("alice".into())
    );
    assert_eq!(
        first.find("Bob Example").expect("find").map(|a| a.key.sub),
        Some("bob".into())
    );

    // A new manager (a restart): both accounts come back from the store, alice still active.
    let second = manager(&idp, store.clone(), registry.clone()).await;
    assert!(
        second.session(&alice.key).is_none(),
        "nothing in memory before restore"
    );
    let restored = second.restore().await.expect("restore");
    assert_eq!(restored.len(), 2);
    assert!(restored.iter().all(|r| r.result.is_ok()));
    let session = second.active_session().expect("active").expect("alice");
    assert_eq!(session.key().sub, "alice");
    let (token, expiry) = session.cached_access_token();
    assert!(!token.secret().is_empty() && expiry.is_some());
    assert!(session.sid().is_some());
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_locked_store_at_start_up_is_reported_and_loses_nothing() {
    let idp = MockIdp::builder()
        .auto_login("carol")
        .start()
        .await
        .expect("idp");
    let dir = scratch("acc");
    let store = Arc::new(Lockable::default());
    let registry = AccountRegistry::at(dir.join("accounts.json"));
    let first = manager(&idp, store.clone(), registry.clone()).await;
    let carol = first
        .login_loopback(play_browser())
        .await
        .expect("carol")
        .info()
        .clone();

    store.locked.store(true, Ordering::SeqCst);
    let second = manager(&idp, store.clone(), registry.clone()).await;
    let restored = second.restore().await.expect("restore runs");
    assert_eq!(restored.len(), 1);
    assert!(matches!(
        restored[0].result,
        Err(StoreError::Unavailable(_))
    ));
    assert_eq!(second.accounts().expect("list").len(), 1, "still listed");
    assert_eq!(
        second.active().expect("active").map(|a| a.key.sub),
        Some("carol".into())
    );
    assert_eq!(
        store.deletes.load(Ordering::SeqCst),
        0,
        "nothing deleted because a read failed"
    );
    // Signing in while locked fails with the store's error, typed, and the
    // grant nobody could keep is revoked at the provider.
    assert!(matches!(
        second.login_loopback(play_browser()).await,
        Err(Error::Store(StoreError::Unavailable(_)))
    ));
    assert_eq!(
        idp.control().count("revocation"),
        1,
        "the unkept grant revoked"
    );

    store.locked.store(false, Ordering::SeqCst);
    let third = manager(&idp, store.clone(), registry).await;
    assert!(
        third.restore().await.expect("restore")[0].result.is_ok(),
        "unlocked: it is all there"
    );
    assert!(third.session(&carol.key).is_some());
    let _ = std::fs::remove_dir_all(dir);
}
