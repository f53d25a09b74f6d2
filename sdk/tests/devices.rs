//! The account's devices against the mock provider: alice signs in on two
//! devices, one lists both and revokes the other, and the other learns it at
//! its next refresh — signed out by the server, its tokens gone, its work
//! cancelled. A provider without the account API is a configuration error,
//! and the token never goes to a provider that did not issue it.

mod support;

use support::*;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::routing::get;
use sessionkit::{
    AccountRegistry, DEVICE_NOT_FOUND, Error, HttpClient, LoopbackOptions, MemoryStore, OidcClient,
    Provider, RefreshPolicy, Session, SessionManager, SessionState, StoreError, TokenStore,
    list_devices, revoke_device,
};
use sessionkit_mock_idp::MockIdp;

async fn idp() -> MockIdp {
    MockIdp::builder()
        .auto_login("alice")
        .start()
        .await
        .expect("idp")
}

/// One device: its own store and account registry. Refreshes on demand
/// only, so "its next refresh" is the one the test asks for.
async fn device(
    idp: &MockIdp,
    store: Arc<dyn TokenStore>,
    dir: &std::path::Path,
) -> SessionManager {
    device_with(idp, store, dir, true).await
}

/// A device whose client asks for the account sessions scope, or not.
async fn device_with(
    idp: &MockIdp,
    store: Arc<dyn TokenStore>,
    dir: &std::path::Path,
    manage_devices: bool,
) -> SessionManager {
    let http = HttpClient::with_timeout(Duration::from_secs(5)).expect("http");
    let provider = Provider::discover(idp.issuer(), &http)
        .await
        .expect("discovery");
    let client = OidcClient::new(provider, "chat-example");
    // Either order of the two calls asks for the scope.
    let client = if manage_devices {
        client
            .manage_devices()
            .scopes(["openid", "profile", "offline_access"])
    } else {
        client.scopes(["openid", "profile", "offline_access"])
    };
    SessionManager::for_client(client)
        .namespace("devices-test")
        .store(store)
        .registry(AccountRegistry::at(dir.join("accounts.json")))
        .restore(false)
        .policy(RefreshPolicy::OnDemand)
        .build()
        .await
        .expect("manager")
}

/// A browser that signs in and names the device.
fn browser(device_name: &'static str) -> LoopbackOptions {
    LoopbackOptions::with_callback(move |url| {
        let url = format!("{url}&device_name={device_name}");
        tokio::spawn(async move {
            let _ = reqwest::get(url).await;
        });
    })
}

async fn sign_in(manager: &SessionManager, device_name: &'static str) -> Arc<Session> {
    let account = manager
        .login_loopback(browser(device_name))
        .await
        .expect("sign in")
        .info()
        .clone();
    manager.session(&account.key).expect("session")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_another_device_signs_it_out_at_its_next_refresh() {
    let idp = idp().await;
    let (laptop_dir, phone_dir) = (scratch("devices"), scratch("devices"));
    let laptop = device(&idp, Arc::new(MemoryStore::new()), &laptop_dir).await;
    let laptop_session = sign_in(&laptop, "laptop").await;

    // The phone signs in, then its access token is made expired, and it
    // starts again from its store: its next token call must refresh.
    let phone_store: Arc<dyn TokenStore> = Arc::new(MemoryStore::new());
    let first = device(&idp, phone_store.clone(), &phone_dir).await;
    let phone_sid = sign_in(&first, "phone").await.sid().expect("a sid");
    let key = first.accounts().expect("accounts")[0].key.clone();
    let mut entry = phone_store.load_session(&key).expect("entry");
    entry.expires_at = Some(SystemTime::now() - Duration::from_secs(5));
    phone_store.save_session(&key, &entry).expect("save");
    drop(first);
    let phone = device(&idp, phone_store.clone(), &phone_dir).await;
    phone.restore().await.expect("restore");
    let phone_session = phone.session(&key).expect("restored");

    // The laptop sees both devices, itself marked current.
    let provider = laptop.client().provider();
    let devices = list_devices(&laptop_session, provider)
        .await
        .expect("listed");
    assert_eq!(devices.len(), 2, "{devices:?}");
    let current: Vec<_> = devices.iter().filter(|d| d.current).collect();
    assert_eq!(current.len(), 1, "exactly one current: {devices:?}");
    assert_eq!(Some(&current[0].sid), laptop_session.sid().as_ref());
    assert_eq!(current[0].device_name, "laptop");
    let other = devices.iter().find(|d| !d.current).expect("the other");
    assert_eq!(other.sid, phone_sid);
    assert_eq!(other.device_name, "phone");
    assert!(other.created_at.is_some() && other.last_seen.is_some());

    revoke_device(&laptop_session, provider, &other.sid)
        .await
        .expect("revoked");
    let left = list_devices(&laptop_session, provider)
        .await
        .expect("listed");
    assert_eq!(left.len(), 1);
    assert!(left[0].current);

    // The phone learns it at its next refresh.
    let err = phone_session
        .access_token()
        .await
        .expect_err("the session was revoked");
    assert!(
        matches!(&err, Error::Provider { error, .. } if error == "invalid_grant"),
        "{err:?}"
    );
    assert_eq!(
        *phone_session.state().borrow(),
        SessionState::SignedOutByServer
    );
    assert!(phone_session.cancellation().is_cancelled());
    assert!(matches!(
        phone_store.load_session(&key),
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        phone_store.load_refresh(&key),
        Err(StoreError::NotFound)
    ));
    assert!(phone.accounts().expect("accounts").is_empty());

    // The laptop is untouched.
    assert!(!laptop_session.cancellation().is_cancelled());
    assert_eq!(
        list_devices(&laptop_session, provider)
            .await
            .expect("listed")
            .len(),
        1
    );
    let _ = std::fs::remove_dir_all(laptop_dir);
    let _ = std::fs::remove_dir_all(phone_dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_an_unknown_session_is_not_found() {
    let idp = idp().await;
    let dir = scratch("devices");
    let manager = device(&idp, Arc::new(MemoryStore::new()), &dir).await;
    let session = sign_in(&manager, "laptop").await;
    let provider = manager.client().provider();

    let err = revoke_device(&session, provider, "no-such-sid")
        .await
        .expect_err("unknown");
    assert!(
        matches!(&err, Error::Provider { error, status: Some(404), .. } if error == DEVICE_NOT_FOUND),
        "{err:?}"
    );
    // A sid with characters that mean something in a path stays one segment.
    let err = revoke_device(&session, provider, "../../token?x=1")
        .await
        .expect_err("unknown");
    assert!(
        matches!(
            &err,
            Error::Provider {
                status: Some(404),
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        idp.control().count("token"),
        1,
        "only the sign-in; no refresh"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// A provider that looks like the mock's but lives elsewhere: its discovery
/// document is the mock's with `issuer` changed, and the account sessions
/// endpoint removed or kept.
async fn lookalike(
    idp: &MockIdp,
    keep_account_api: bool,
) -> (Provider, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let issuer = format!("http://{}", listener.local_addr().expect("addr"));
    let mut doc: serde_json::Value = reqwest::get(idp.url("/.well-known/openid-configuration"))
        .await
        .expect("discovery")
        .json()
        .await
        .expect("json");
    doc["issuer"] = serde_json::Value::String(issuer.clone());
    if !keep_account_api {
        doc.as_object_mut()
            .expect("object")
            .remove("account_sessions_endpoint");
    }
    let app = Router::new().route(
        "/.well-known/openid-configuration",
        get(move || {
            let doc = doc.clone();
            async move { axum::Json(doc) }
        }),
    );
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let http = HttpClient::with_timeout(Duration::from_secs(5)).expect("http");
    let provider = Provider::discover(&issuer, &http).await.expect("discovery");
    (provider, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_without_the_account_api_is_a_configuration_error() {
    let idp = idp().await;
    let dir = scratch("devices");
    let manager = device(&idp, Arc::new(MemoryStore::new()), &dir).await;
    let session = sign_in(&manager, "laptop").await;

    let (provider, task) = lookalike(&idp, false).await;
    assert!(provider.extra().account_sessions_endpoint.is_none());
    for err in [
        list_devices(&session, &provider).await.expect_err("no API"),
        revoke_device(&session, &provider, "x")
            .await
            .expect_err("no API"),
    ] {
        assert!(
            matches!(&err, Error::Config(m) if m.contains("no account sessions API")),
            "{err:?}"
        );
    }
    task.abort();
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_never_goes_to_a_provider_that_did_not_issue_it() {
    let idp = idp().await;
    let dir = scratch("devices");
    let manager = device(&idp, Arc::new(MemoryStore::new()), &dir).await;
    let session = sign_in(&manager, "laptop").await;
    idp.control().reset_requests();

    // Its account endpoint is the mock's: a request would reach it.
    let (provider, task) = lookalike(&idp, true).await;
    let err = list_devices(&session, &provider)
        .await
        .expect_err("another issuer");
    assert!(
        matches!(&err, Error::Config(m) if m.contains("issued by")),
        "{err:?}"
    );
    assert_eq!(idp.control().count("account"), 0, "nothing was sent");
    task.abort();
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_account_api_gets_tokens_for_it_and_a_session_without_the_scope_sends_none() {
    let idp = idp().await;
    let dir = scratch("devices");

    // With manage_devices(): the granted scopes and the token's audiences.
    let manager = device(&idp, Arc::new(MemoryStore::new()), &dir).await;
    let session = sign_in(&manager, "laptop").await;
    assert!(
        session.scopes().iter().any(|s| s == "account_sessions"),
        "{:?}",
        session.scopes()
    );
    let token = session.access_token().await.expect("token");
    let payload = token.secret().split('.').nth(1).expect("a JWT");
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
            .expect("base64url"),
    )
    .expect("json");
    assert_eq!(
        claims["aud"],
        serde_json::json!(["chat-server", idp.control().account_audience()]),
        "chat-server's audience stays"
    );
    assert_eq!(
        list_devices(&session, manager.client().provider())
            .await
            .expect("listed")
            .len(),
        1
    );

    // Without: a typed error, and the token is not sent.
    let other_dir = scratch("devices");
    let plain = device_with(&idp, Arc::new(MemoryStore::new()), &other_dir, false).await;
    let session = sign_in(&plain, "phone").await;
    idp.control().reset_requests();
    for err in [
        list_devices(&session, plain.client().provider())
            .await
            .expect_err("no scope"),
        revoke_device(&session, plain.client().provider(), "x")
            .await
            .expect_err("no scope"),
    ] {
        assert!(
            matches!(&err, Error::Config(m) if m.contains("account_sessions") && m.contains("manage_devices")),
            "{err:?}"
        );
    }
    assert_eq!(idp.control().count("account"), 0, "nothing was sent");
    assert_eq!(idp.control().count("token"), 0, "and nothing refreshed");
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_dir_all(other_dir);
}

#[tokio::test]
async fn the_session_manager_builder_asks_for_the_account_sessions_scope_when_told() {
    let idp = idp().await;
    let dir = scratch("devices-builder");
    for (manage, expected) in [(true, true), (false, false)] {
        let mut builder = SessionManager::builder(idp.issuer(), "chat-example")
            .namespace("devices-test")
            .store(Arc::new(sessionkit::MemoryStore::new()))
            .registry(AccountRegistry::at(dir.join("accounts.json")))
            .restore(false);
        if manage {
            builder = builder.manage_devices();
        }
        let manager = builder.build().await.expect("manager");
        let request = manager
            .client()
            .authorization_request("http://127.0.0.1:1/callback")
            .await
            .expect("request");
        let scope = request
            .url
            .query_pairs()
            .find(|(k, _)| k == "scope")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        assert_eq!(
            scope.split(' ').any(|s| s == "account_sessions"),
            expected,
            "{scope}"
        );
    }
}
