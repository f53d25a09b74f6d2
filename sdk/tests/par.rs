//! Pushed authorization requests (RFC 9126) through the SDK against
//! mock-idp over real sockets: a provider or client that requires them gets
//! them without the app asking; the app can ask for them anyway; the
//! browser's URL then carries only `client_id` and `request_uri`; public,
//! secret, `private_key_jwt` and DPoP clients all push.

use std::sync::Arc;

use sessionkit::{
    AccountRegistry, ClientKey, ClientSecret, Error, LoopbackOptions, MemoryStore, SessionManager,
};
use sessionkit_mock_idp::{ClientConfig, Config, MockIdp, SecretSource};

const REDIRECT: &str = "http://127.0.0.1/callback";

fn scratch(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!(
        "sk-par-{name}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0)
    ))
}

async fn idp(config: Config) -> MockIdp {
    MockIdp::builder()
        .config(config)
        .auto_login("alice")
        .start()
        .await
        .expect("idp")
}

fn builder(
    idp: &MockIdp,
    client_id: &str,
    dir: &std::path::Path,
) -> sessionkit::SessionManagerBuilder {
    SessionManager::builder(idp.issuer(), client_id)
        .namespace("par")
        .store(Arc::new(MemoryStore::new()))
        .registry(AccountRegistry::at(dir.join("accounts.json")))
        .restore(false)
}

/// The browser's leg: follow the authorization URL to the redirect.
async fn redirect_of(url: &url::Url) -> String {
    let answer = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("browser")
        .get(url.as_str())
        .send()
        .await
        .expect("authorize");
    answer
        .headers()
        .get("location")
        .unwrap_or_else(|| panic!("no redirect: {}", answer.status()))
        .to_str()
        .expect("ascii")
        .to_owned()
}

fn names(url: &url::Url) -> Vec<String> {
    url.query_pairs().map(|(k, _)| k.into_owned()).collect()
}

fn pushes(idp: &MockIdp) -> usize {
    idp.control()
        .requests()
        .iter()
        .filter(|r| r.endpoint == "par" && r.status == 201)
        .count()
}

/// Signs in through the app-handled redirect; returns the URL the browser opened.
async fn sign_in(manager: &SessionManager) -> url::Url {
    let request = manager
        .client()
        .authorization_request(REDIRECT)
        .await
        .expect("request");
    let back = redirect_of(&request.url).await;
    let tokens = manager
        .client()
        .finish(&request, &back)
        .await
        .expect("tokens");
    let session = manager.sign_in(tokens).await.expect("session");
    assert!(manager.logout(session.key()).await.revoked);
    request.url
}

#[tokio::test]
async fn a_provider_that_requires_pushed_requests_gets_them_unasked() {
    let idp = idp(Config {
        require_pushed_authorization_requests: true,
        ..Config::default()
    })
    .await;
    let dir = scratch("provider");
    let manager = builder(&idp, "chat-example", &dir)
        .build()
        .await
        .expect("manager");
    let url = sign_in(&manager).await;
    assert_eq!(names(&url), ["client_id", "request_uri"]);
    assert_eq!(pushes(&idp), 1);

    // The loopback login pushes too.
    let session = manager
        .login_loopback(LoopbackOptions::with_callback(|url| {
            let url = url.to_owned();
            tokio::spawn(async move { reqwest::get(url).await });
        }))
        .await
        .expect("loopback login through PAR");
    assert_eq!(pushes(&idp), 2);
    manager.logout(session.key()).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_client_that_must_push_works_once_the_app_asks_and_is_refused_otherwise() {
    let idp = idp(Config::default()).await;
    idp.control()
        .register_client(ClientConfig {
            require_pushed_authorization_requests: true,
            ..ClientConfig::public("par-only")
        })
        .expect("client");
    let dir = scratch("client");
    // Not advertised by the provider (the requirement is the client's):
    // without PAR the provider refuses the request.
    let plain = builder(&idp, "par-only", &dir)
        .build()
        .await
        .expect("manager");
    let request = plain
        .client()
        .authorization_request(REDIRECT)
        .await
        .expect("request");
    let back = redirect_of(&request.url).await;
    match plain.client().finish(&request, &back).await {
        Err(Error::Provider { error, .. }) => assert_eq!(error, "invalid_request"),
        other => panic!("{other:?}"),
    }
    let pushing = SessionManager::for_client(plain.client().clone().pushed_authorization(true))
        .namespace("par")
        .store(Arc::new(MemoryStore::new()))
        .registry(AccountRegistry::at(dir.join("accounts.json")))
        .restore(false)
        .build()
        .await
        .expect("manager");
    let url = sign_in(&pushing).await;
    assert_eq!(names(&url), ["client_id", "request_uri"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn secret_key_and_dpop_clients_push_with_their_credentials() {
    let idp = idp(Config {
        require_pushed_authorization_requests: true,
        ..Config::default()
    })
    .await;
    let dir = scratch("clients");
    // A confidential client (the secret in HTTP Basic: `client_id` stays in the form once).
    idp.control()
        .register_client(ClientConfig {
            secret: SecretSource::Value("par-secret".into()),
            ..ClientConfig::public("par-secret-app")
        })
        .expect("client");
    let manager = builder(&idp, "par-secret-app", &dir)
        .client_secret(ClientSecret::new("par-secret".to_owned()))
        .build()
        .await
        .expect("manager");
    sign_in(&manager).await;

    // private_key_jwt.
    let key = ClientKey::generate().expect("key");
    idp.control()
        .register_client(ClientConfig::private_key_jwt(
            "par-key-app",
            serde_json::json!({"keys": [key.public_jwk()]}),
        ))
        .expect("client");
    let manager = builder(&idp, "par-key-app", &dir)
        .client_key(key)
        .build()
        .await
        .expect("manager");
    sign_in(&manager).await;

    // DPoP: the pushed request carries dpop_jkt, so the code is bound.
    let manager = builder(&idp, "chat-example", &dir)
        .dpop(true)
        .build()
        .await
        .expect("manager");
    let request = manager
        .client()
        .authorization_request(REDIRECT)
        .await
        .expect("request");
    let back = redirect_of(&request.url).await;
    let tokens = manager
        .client()
        .finish(&request, &back)
        .await
        .expect("tokens");
    assert!(tokens.dpop.is_some(), "bound through the pushed request");
    assert_eq!(pushes(&idp), 3);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn asking_for_par_from_a_provider_without_it_is_a_config_error() {
    // A provider whose discovery has no PAR endpoint: mock-idp's document
    // with the member removed, served from a loopback listener of our own.
    let idp = idp(Config::default()).await;
    let mut document: serde_json::Value =
        reqwest::get(format!("{}/.well-known/openid-configuration", idp.issuer()))
            .await
            .expect("discovery")
            .json()
            .await
            .expect("json");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let issuer = format!("http://{}", listener.local_addr().expect("addr"));
    let object = document.as_object_mut().expect("object");
    object.remove("pushed_authorization_request_endpoint");
    object.insert("issuer".into(), issuer.clone().into());
    let served = document.to_string();
    let app = axum::Router::new().route(
        "/.well-known/openid-configuration",
        axum::routing::get(move || async move { ([("content-type", "application/json")], served) }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    let http = sessionkit::HttpClient::new().expect("http");
    let provider = sessionkit::Provider::discover(&issuer, &http)
        .await
        .expect("discovery");
    let client = sessionkit::OidcClient::new(provider, "chat-example").pushed_authorization(true);
    match client.authorization_request(REDIRECT).await {
        Err(Error::Config(why)) => assert!(why.contains("pushed"), "{why}"),
        other => panic!("{other:?}"),
    }
}
