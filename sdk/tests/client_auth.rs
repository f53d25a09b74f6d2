//! Client authentication with a secret, `client_secret_basic` and
//! `client_secret_post`, against mock-idp over real sockets: the provider
//! takes either, and its conformance run for `client_secret_basic` tells
//! which one the SDK used.

use std::sync::Arc;

use sessionkit::{
    AccountRegistry, AuthedClient, ClientAuthMethod, ClientSecret, MemoryStore, SessionManager,
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
