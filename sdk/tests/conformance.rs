//! The OpenID RP conformance scenarios mock-idp serves, run with the SDK as
//! the relying party: every applicable scenario of the catalogue, each
//! against its own provider, judged by the provider from what the SDK did.
//! The table of verdicts is the one in TESTING.md (section "Conformance");
//! `SESSIONKIT_BLESS=1` writes it there after a change to the catalogue.
//!
//! The SDK plays an app: it discovers the provider, signs in through the
//! app-handled redirect (the test plays the browser, the provider signs
//! alice in by itself), asks userinfo for the user's claims, refreshes where
//! the scenario is about refreshing, and logs out where it is about logging
//! out (with a post-logout redirect and `state`, or without). Whatever the SDK refuses ends the app's attempt, as it would in an app.
//! Back-channel logout scenarios judge a logout-token receiver; the SDK has
//! none (chat-server's runs them: examples/tests/server/conformance.rs).

use std::sync::Arc;

use sessionkit::{
    AccountRegistry, AuthedClient, ClientSecret, MemoryStore, SessionManager, TokenStore,
};
use sessionkit_mock_idp::conformance::{
    Plan, RpReport, RunResult, SCENARIOS, Scenario, Verdict, check_table_in_file, markdown_table,
};
use sessionkit_mock_idp::{ClientConfig, MockIdp, SecretSource};

mod support;

const PUBLIC: &str = "chat-example";
const CONFIDENTIAL: &str = "conformance-confidential";
const SECRET: &str = "a-client-secret-for-basic-auth";
const REDIRECT: &str = "http://127.0.0.1/callback";
const LOGGED_OUT: &str = "http://127.0.0.1/logged-out";

/// The scenarios an app with the SDK can be judged by.
fn applicable(s: &Scenario) -> bool {
    s.plan != Plan::BackChannelLogout
}

async fn provider() -> MockIdp {
    let idp = MockIdp::builder()
        .auto_login("alice")
        .start()
        .await
        .expect("idp");
    idp.control()
        .register_client(ClientConfig {
            secret: SecretSource::Value(SECRET.into()),
            ..ClientConfig::public(CONFIDENTIAL)
        })
        .expect("client");
    idp
}

/// The redirect the provider answers an authorization URL with (the
/// browser's next stop), not followed.
async fn redirect_of(url: &str) -> Option<String> {
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let response = browser.get(url).send().await.ok()?;
    Some(
        response
            .headers()
            .get("location")?
            .to_str()
            .ok()?
            .to_owned(),
    )
}

/// What the app did: the SDK refusing any step is a rejection with its error.
async fn play(idp: &MockIdp, s: &Scenario, client_id: &str) -> RpReport {
    match app(idp, s, client_id).await {
        Ok(()) => RpReport::accepted(),
        Err(e) => RpReport::rejected(e.to_string()),
    }
}

/// The logout scenario with `state` is the one with a post-logout redirect.
fn with_redirect(s: &Scenario) -> bool {
    s.plan == Plan::RpInitiatedLogout && !s.name.ends_with("no-state")
}

async fn app(idp: &MockIdp, s: &Scenario, client_id: &str) -> Result<(), sessionkit::Error> {
    let dir = support::scratch("conformance");
    let store: Arc<dyn TokenStore> = Arc::new(MemoryStore::new());
    let mut builder = SessionManager::builder(idp.issuer(), client_id)
        .namespace("conformance")
        .scopes(["openid", "profile", "email", "offline_access"])
        .store(store)
        .registry(AccountRegistry::at(dir.join("accounts.json")))
        .restore(false);
    if client_id == CONFIDENTIAL {
        builder = builder.client_secret(ClientSecret::new(SECRET.to_owned()));
    }
    if with_redirect(s) {
        builder = builder.post_logout_redirect_uri(LOGGED_OUT);
    }
    let manager = builder.build().await?;
    let request = manager.client().authorization_request(REDIRECT).await?;
    let back = redirect_of(request.url.as_str())
        .await
        .ok_or_else(|| sessionkit::Error::Config("the provider did not redirect".into()))?;
    let tokens = manager.client().finish(&request, &back).await?;
    let session = manager.sign_in(tokens).await?;
    let api = AuthedClient::new(session.clone())?;
    api.userinfo().await?;
    if s.plan == Plan::Refresh || s.name == "oidcc-client-test-signing-key-rotation" {
        session.force_refresh().await?;
        api.userinfo().await?;
    }
    if s.plan == Plan::RpInitiatedLogout {
        let report = manager.logout(session.key()).await;
        let url = report
            .end_session_url
            .clone()
            .ok_or_else(|| sessionkit::Error::Config("no end-session URL".into()))?;
        let back = redirect_of(url.as_str()).await.unwrap_or_default();
        // With a post-logout redirect the provider comes back with our
        // state; without one it shows its own page.
        let fine = if with_redirect(s) {
            back.starts_with(LOGGED_OUT) && report.is_logout_redirect(&back)
        } else {
            back.is_empty() && report.end_session_state.is_none()
        };
        if !fine {
            return Err(sessionkit::Error::Config(format!(
                "the provider redirected to {back:?}"
            )));
        }
    }
    Ok(())
}

async fn judge(s: &'static Scenario) -> RunResult {
    let idp = provider().await;
    let client = if s.name.ends_with("client-secret-basic") {
        CONFIDENTIAL
    } else {
        PUBLIC
    };
    idp.control()
        .conformance_start(s.name, client)
        .expect("start");
    let report = play(&idp, s, client).await;
    idp.control()
        .conformance_finish(client, Some(report))
        .expect("an open run")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_applicable_scenario_passes_and_testing_md_shows_the_table() {
    let mut results = Vec::new();
    for s in SCENARIOS.iter().filter(|s| applicable(s)) {
        results.push(judge(s).await);
    }
    let failed: Vec<String> = results
        .iter()
        .filter(|r| r.verdict != Verdict::Passed)
        .map(|r| format!("{}: {} ({:?})", r.scenario, r.reason, r.rp_report))
        .collect();
    assert!(
        failed.is_empty(),
        "failed scenarios:\n{}",
        failed.join("\n")
    );
    let testing_md = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../TESTING.md");
    if let Err(drift) = check_table_in_file(&testing_md, "sdk", &markdown_table(&results)) {
        panic!("{drift}");
    }
}

/// The judge can fail: an app that uses a token it should have refused, or
/// never uses one it should have accepted, gets FAILED.
#[tokio::test]
async fn a_careless_rp_fails_the_scenarios_it_would_get_wrong() {
    let idp = provider().await;
    idp.control()
        .conformance_start("oidcc-client-test-invalid-iss", PUBLIC)
        .expect("start");
    // A careless app: takes the token response without checking the ID token.
    let pkce_verifier = "v".repeat(43);
    let challenge = {
        use base64::Engine as _;
        let digest =
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, pkce_verifier.as_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref())
    };
    let authorize = format!(
        "{}/authorize?response_type=code&client_id={PUBLIC}&redirect_uri={}&scope=openid&state=s&nonce=n&code_challenge={challenge}&code_challenge_method=S256",
        idp.issuer(),
        urlencode(REDIRECT),
    );
    let back = redirect_of(&authorize).await.expect("redirect");
    let code = url::Url::parse(&back)
        .expect("url")
        .query_pairs()
        .find(|(k, _)| k == "code")
        .expect("code")
        .1
        .into_owned();
    let tokens: serde_json::Value = reqwest::Client::new()
        .post(idp.url("/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("client_id", PUBLIC),
            ("code_verifier", &pkce_verifier),
        ])
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("json");
    let access = tokens["access_token"].as_str().expect("access token");
    let userinfo = reqwest::Client::new()
        .get(idp.url("/userinfo"))
        .bearer_auth(access)
        .send()
        .await
        .expect("userinfo");
    assert!(userinfo.status().is_success());
    let result = idp
        .control()
        .conformance_finish(PUBLIC, Some(RpReport::accepted()))
        .expect("run");
    assert_eq!(result.verdict, Verdict::Failed, "{result:?}");
    assert!(result.reason.contains("userinfo"), "{}", result.reason);

    // An RP that never uses what it got fails an accept scenario.
    idp.control()
        .conformance_start("oidcc-client-test", PUBLIC)
        .expect("start");
    let result = idp.control().conformance_finish(PUBLIC, None).expect("run");
    assert_eq!(result.verdict, Verdict::Failed, "{result:?}");
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
