//! Client authentication against mock-idp over real sockets: with a secret,
//! `client_secret_basic` and `client_secret_post` (the provider takes
//! either, and its conformance run for `client_secret_basic` tells which
//! one the SDK used); with a key, `private_key_jwt` (RFC 7523), which the
//! provider checks strictly (signature by a registered key, `iss`/`sub`,
//! `aud`, lifetime, `jti` replay).

use std::sync::Arc;

use sessionkit::{
    AccountRegistry, AuthedClient, ClientAuthMethod, ClientKey, ClientSecret, Error, MemoryStore,
    SessionManager,
};
use sessionkit_mock_idp::conformance::Verdict;
use sessionkit_mock_idp::{ClientConfig, MockIdp, SecretSource};

const CLIENT: &str = "confidential-app";
const SECRET: &str = "a-secret-only-this-test-knows";

/// Signs in, calls userinfo, refreshes and logs out with the secret sent
/// `method`'s way (`None`: the SDK's choice); returns the verdict of the
/// provider's `client_secret_basic` run.
async fn sign_in_with(method: Option<ClientAuthMethod>) -> Verdict {
    let idp = MockIdp::builder()
        .auto_login("alice")
        .start()
        .await
        .expect("idp");
    idp.control()
        .register_client(ClientConfig {
            secret: SecretSource::Value(SECRET.into()),
            ..ClientConfig::public(CLIENT)
        })
        .expect("client");
    idp.control()
        .conformance_start("oidcc-client-test-client-secret-basic", CLIENT)
        .expect("run");
    let dir = std::env::temp_dir().join(format!(
        "sk-client-auth-{}-{}",
        std::process::id(),
        method.is_some()
    ));
    let mut builder = SessionManager::builder(idp.issuer(), CLIENT)
        .namespace("client-auth")
        .scopes(["openid", "profile", "offline_access"])
        .client_secret(ClientSecret::new(SECRET.to_owned()))
        .store(Arc::new(MemoryStore::new()))
        .registry(AccountRegistry::at(dir.join("accounts.json")))
        .restore(false);
    if let Some(method) = method {
        builder = builder.client_auth(method);
    }
    let manager = builder.build().await.expect("manager");
    let request = manager
        .client()
        .authorization_request("http://127.0.0.1/callback")
        .await
        .expect("request");
    let back = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("browser")
        .get(request.url.as_str())
        .send()
        .await
        .expect("authorize")
        .headers()["location"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let tokens = manager
        .client()
        .finish(&request, &back)
        .await
        .expect("the provider took the secret");
    let session = manager.sign_in(tokens).await.expect("session");
    AuthedClient::new(session.clone())
        .expect("client")
        .userinfo()
        .await
        .expect("userinfo");
    session
        .force_refresh()
        .await
        .expect("refresh with the secret");
    let report = manager.logout(session.key()).await;
    assert!(report.revoked, "revocation with the secret: {report:?}");
    let _ = std::fs::remove_dir_all(&dir);
    idp.control()
        .conformance_finish(CLIENT, None)
        .expect("run")
        .verdict
}

#[tokio::test]
async fn by_default_the_secret_goes_in_http_basic() {
    assert_eq!(sign_in_with(None).await, Verdict::Passed);
}

#[tokio::test]
async fn client_secret_post_sends_it_in_the_body() {
    // Every call works, and the provider saw no HTTP Basic.
    assert_eq!(
        sign_in_with(Some(ClientAuthMethod::SecretPost)).await,
        Verdict::Failed
    );
    assert_eq!(
        sign_in_with(Some(ClientAuthMethod::SecretBasic)).await,
        Verdict::Passed
    );
}

/// A manager for the `private_key_jwt` client `client_id` that signs with `key`.
async fn key_manager(idp: &MockIdp, client_id: &str, key: ClientKey, dir: &str) -> SessionManager {
    let dir = std::env::temp_dir().join(format!("sk-client-key-{}-{dir}", std::process::id()));
    SessionManager::builder(idp.issuer(), client_id)
        .namespace("client-key")
        .scopes(["openid", "profile", "offline_access"])
        .client_key(key)
        .store(Arc::new(MemoryStore::new()))
        .registry(AccountRegistry::at(dir.join("accounts.json")))
        .restore(false)
        .build()
        .await
        .expect("manager")
}

/// The authorization request of `manager` answered by the provider (auto-login).
async fn authorize(manager: &SessionManager) -> (sessionkit::AuthorizationRequest, String) {
    let request = manager
        .client()
        .authorization_request("http://127.0.0.1/callback")
        .await
        .expect("request");
    let back = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("browser")
        .get(request.url.as_str())
        .send()
        .await
        .expect("authorize")
        .headers()["location"]
        .to_str()
        .expect("ascii")
        .to_owned();
    (request, back)
}

#[tokio::test]
async fn private_key_jwt_signs_in_refreshes_and_revokes_with_es256_and_rs256() {
    let idp = MockIdp::builder()
        .auto_login("alice")
        .start()
        .await
        .expect("idp");
    let rsa_der = aws_lc_rs::encoding::AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(
        &aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("rsa"),
    )
    .expect("pkcs8");
    let keys = [
        ClientKey::generate().expect("p-256").with_kid("ec-1"),
        ClientKey::from_pkcs8_der(rsa_der.as_ref()).expect("rsa key"),
    ];
    for (n, key) in keys.into_iter().enumerate() {
        let client_id = format!("key-app-{n}");
        idp.control()
            .register_client(ClientConfig::private_key_jwt(
                &client_id,
                serde_json::json!({"keys": [key.public_jwk()]}),
            ))
            .expect("client");
        let alg = key.alg();
        let manager = key_manager(&idp, &client_id, key, &n.to_string()).await;
        idp.control().reset_requests();
        let (request, back) = authorize(&manager).await;
        let tokens = manager
            .client()
            .finish(&request, &back)
            .await
            .unwrap_or_else(|e| panic!("{alg}: the provider took the assertion: {e}"));
        let session = manager.sign_in(tokens).await.expect("session");
        session
            .force_refresh()
            .await
            .expect("refresh with a new assertion");
        let report = manager.logout(session.key()).await;
        assert!(report.revoked, "revocation with an assertion: {report:?}");
        // Three assertions (code, refresh, revocation), each accepted once:
        // every request signed a new one.
        let counts = idp.control().counters();
        assert_eq!(counts.get("token").copied(), Some(2), "{counts:?}");
        assert_eq!(counts.get("revocation").copied(), Some(1), "{counts:?}");
        assert!(
            idp.control()
                .requests()
                .iter()
                .filter(|r| r.endpoint == "token" || r.endpoint == "revocation")
                .all(|r| r.status == 200),
            "{:?}",
            idp.control().requests()
        );
    }
}

#[tokio::test]
async fn a_key_the_provider_does_not_know_is_refused_as_invalid_client() {
    let idp = MockIdp::builder()
        .auto_login("alice")
        .start()
        .await
        .expect("idp");
    let registered = ClientKey::generate().expect("key");
    idp.control()
        .register_client(ClientConfig::private_key_jwt(
            "key-app",
            serde_json::json!({"keys": [registered.public_jwk()]}),
        ))
        .expect("client");
    let stranger = ClientKey::generate().expect("another key");
    let manager = key_manager(&idp, "key-app", stranger, "stranger").await;
    let (request, back) = authorize(&manager).await;
    match manager.client().finish(&request, &back).await {
        Err(Error::Provider {
            error,
            description,
            status,
        }) => {
            assert_eq!((error.as_str(), status), ("invalid_client", Some(401)));
            let description = description.unwrap_or_default();
            assert!(description.contains("registered keys"), "{description}");
        }
        other => panic!("expected invalid_client, got {other:?}"),
    }
}

#[tokio::test]
async fn a_method_without_its_key_or_secret_is_refused_at_build() {
    let idp = MockIdp::start().await.expect("idp");
    let result = SessionManager::builder(idp.issuer(), "chat-example")
        .client_auth(ClientAuthMethod::PrivateKeyJwt)
        .store(Arc::new(MemoryStore::new()))
        .registry(AccountRegistry::at(
            std::env::temp_dir().join(format!("sk-nokey-{}/a.json", std::process::id())),
        ))
        .restore(false)
        .build()
        .await;
    assert!(
        matches!(&result, Err(Error::Config(why)) if why.contains("client_key")),
        "{:?}",
        result.err()
    );
}

/// An app that holds a secret and a key uses the key when the provider
/// advertises `private_key_jwt` (mock-idp does, and refuses a secret from
/// a client registered with keys: a sign-in that works used the key).
#[tokio::test]
async fn with_a_secret_and_a_key_the_key_is_used_where_advertised() {
    let idp = MockIdp::builder()
        .auto_login("alice")
        .start()
        .await
        .expect("idp");
    let key = ClientKey::generate().expect("key");
    idp.control()
        .register_client(ClientConfig::private_key_jwt(
            "both-app",
            serde_json::json!({"keys": [key.public_jwk()]}),
        ))
        .expect("client");
    let dir = std::env::temp_dir().join(format!("sk-client-both-{}", std::process::id()));
    let manager = SessionManager::builder(idp.issuer(), "both-app")
        .namespace("client-key")
        .client_key(key)
        .client_secret(ClientSecret::new(
            "a-secret-the-provider-does-not-take".to_owned(),
        ))
        .store(Arc::new(MemoryStore::new()))
        .registry(AccountRegistry::at(dir.join("accounts.json")))
        .restore(false)
        .build()
        .await
        .expect("manager");
    let (request, back) = authorize(&manager).await;
    manager
        .client()
        .finish(&request, &back)
        .await
        .expect("the key was chosen");
    let _ = std::fs::remove_dir_all(&dir);
}
