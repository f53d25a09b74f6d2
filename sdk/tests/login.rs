//! Login against the mock identity provider over real sockets: discovery and
//! its errors, code + PKCE through the loopback listener (the test plays the
//! browser), the app-handled redirect with its `state` and RFC 9207 checks,
//! the device flow with each outcome, every ID-token check with a forged
//! token, and a JWKS rotation in the middle of a session.
//!
//! (Over 500 lines: one file for sign-in, each flow and each ID-token check
//! a test; the forging helpers are at the top.)

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sessionkit::id_token::{Expectations, verify_with_keys};
use sessionkit::{
    AccessToken, Error, HttpClient, IdToken, IdTokenError, LoopbackOptions, Nonce, OidcClient,
    Provider,
};
use sessionkit_mock_idp::{Alg, DeviceOutcome, DeviceScript, Fault, Lifetimes, MockIdp};
use tokio_util::sync::CancellationToken;

const CLIENT: &str = "chat-example";

fn http() -> HttpClient {
    HttpClient::new().expect("client")
}

async fn client_for(idp: &MockIdp) -> OidcClient {
    let provider = Provider::discover(idp.issuer(), &http())
        .await
        .expect("discovery");
    OidcClient::new(provider, CLIENT).scopes(["openid", "profile", "offline_access"])
}

/// A "browser": follows the provider's redirect to wherever it points.
fn browser() -> reqwest::Client {
    reqwest::Client::builder().build().expect("browser")
}

/// The redirect the provider answers an authorization URL with (not followed).
async fn redirect_of(url: &str) -> String {
    let no_follow = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let response = no_follow.get(url).send().await.expect("authorize");
    assert_eq!(response.status(), 303);
    response.headers()["location"]
        .to_str()
        .expect("ascii")
        .to_owned()
}

fn replace_param(url: &str, name: &str, value: Option<&str>) -> String {
    let mut u = url::Url::parse(url).expect("url");
    let pairs: Vec<(String, String)> = u
        .query_pairs()
        .into_owned()
        .filter(|(k, _)| k != name)
        .collect();
    {
        let mut q = u.query_pairs_mut();
        q.clear();
        for (k, v) in &pairs {
            q.append_pair(k, v);
        }
        if let Some(v) = value {
            q.append_pair(name, v);
        }
    }
    u.to_string()
}

#[tokio::test]
async fn loopback_login_with_pkce_signs_in_and_shows_a_page() {
    let idp = MockIdp::builder()
        .auto_login("alice")
        .start()
        .await
        .expect("idp");
    let client = client_for(&idp).await;
    let (page_tx, page_rx) = tokio::sync::oneshot::channel();
    let options = LoopbackOptions::with_callback(move |url| {
        let url = url.to_owned();
        tokio::spawn(async move {
            assert!(
                url.contains("code_challenge_method=S256") && url.contains("prompt=consent"),
                "{url}"
            );
            // A request that is not the redirect, and one with a wrong state: refused, the wait goes on.
            let wrong = url::Url::parse(&url).expect("url");
            let redirect = wrong
                .query_pairs()
                .find(|(k, _)| k == "redirect_uri")
                .expect("redirect")
                .1
                .into_owned();
            let favicon = browser()
                .get(redirect.replace("/callback", "/favicon.ico"))
                .send()
                .await
                .expect("get");
            assert_eq!(favicon.status(), 404);
            let forged = browser()
                .get(format!("{redirect}?code=stolen&state=guess"))
                .send()
                .await
                .expect("get");
            assert_eq!(forged.status(), 400);
            let page = browser()
                .get(&url)
                .send()
                .await
                .expect("browser")
                .text()
                .await
                .expect("page");
            let _ = page_tx.send(page);
        });
    });
    let tokens = client.login_loopback(options).await.expect("signed in");
    let claims = tokens.claims.as_ref().expect("claims");
    assert_eq!(claims.sub, "alice");
    assert_eq!(claims.display_name, "Alice Example");
    assert!(claims.sid.is_some());
    assert!(
        tokens.refresh_token.is_some(),
        "offline_access with prompt=consent"
    );
    assert!(tokens.expires_at.is_some_and(|t| t > SystemTime::now()));
    let page = page_rx.await.expect("page");
    assert!(page.contains("You can close this tab"), "{page}");
    // The code was redeemed with the verifier: the provider counted one exchange.
    assert_eq!(idp.control().count("token:authorization_code"), 1);
}

#[tokio::test]
async fn loopback_login_times_out_and_can_be_cancelled() {
    let idp = MockIdp::start().await.expect("idp");
    let client = client_for(&idp).await;
    let mut options = LoopbackOptions::with_callback(|_| {});
    options.timeout = Duration::from_millis(200);
    assert!(matches!(
        client.login_loopback(options).await,
        Err(Error::Timeout(_))
    ));
    let options = LoopbackOptions::with_callback(|_| {});
    let cancel = options.cancel.clone();
    let task = tokio::spawn({
        let client = client.clone();
        async move { client.login_loopback(options).await }
    });
    cancel.cancel();
    assert!(matches!(task.await.expect("join"), Err(Error::Cancelled)));
}

#[tokio::test]
async fn app_handled_redirect_checks_state_iss_and_errors() {
    let idp = MockIdp::builder()
        .auto_login("bob")
        .start()
        .await
        .expect("idp");
    let client = client_for(&idp).await;
    let redirect_uri = "http://127.0.0.1:43210/callback";

    let request = client
        .authorization_request(redirect_uri)
        .await
        .expect("request");
    let back = redirect_of(request.url.as_str()).await;
    for (name, value, expect) in [
        ("state", Some("not-the-state"), "state"),
        ("iss", Some("https://evil.example"), "iss"),
        ("iss", None, "iss"),
    ] {
        match client
            .finish(&request, &replace_param(&back, name, value))
            .await
        {
            Err(Error::AuthorizationResponse(m)) => assert!(m.contains(expect), "{m}"),
            other => panic!("{name}: {other:?}"),
        }
    }
    let tokens = client
        .finish(&request, &back)
        .await
        .expect("the real one works");
    assert_eq!(tokens.claims.expect("claims").sub, "bob");
    // The code is single-use: finishing again fails at the provider.
    assert!(
        matches!(client.finish(&request, &back).await, Err(Error::Provider { error, .. }) if error == "invalid_grant")
    );

    // An error response from the provider comes back typed.
    idp.control().set_auto_login(None).expect("no auto-login");
    let request = client
        .authorization_request(redirect_uri)
        .await
        .expect("request");
    let error_url = format!(
        "{redirect_uri}?error=access_denied&state={}&iss={}",
        url::form_urlencoded::byte_serialize(request_state(&request).as_bytes())
            .collect::<String>(),
        url::form_urlencoded::byte_serialize(idp.issuer().as_bytes()).collect::<String>()
    );
    assert!(matches!(
        client.finish(&request, &error_url).await,
        Err(Error::AccessDenied)
    ));
}

fn request_state(request: &sessionkit::AuthorizationRequest) -> String {
    request
        .url
        .query_pairs()
        .find(|(k, _)| k == "state")
        .expect("state")
        .1
        .into_owned()
}

#[tokio::test]
async fn discovery_errors_are_typed() {
    // Plain http to a non-loopback host is refused before any request.
    match Provider::discover("http://id.example.com", &http()).await {
        Err(Error::Config(m)) => assert!(m.contains("loopback")),
        other => panic!("{other:?}"),
    }
    // Nobody listening.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    assert!(matches!(
        Provider::discover(&format!("http://127.0.0.1:{port}"), &http()).await,
        Err(Error::Network(_))
    ));
    // Malformed and failing discovery documents.
    let idp = MockIdp::start().await.expect("idp");
    idp.control()
        .add_fault(Fault::on("discovery").malformed_json().times(1));
    assert!(matches!(
        Provider::discover(idp.issuer(), &http()).await,
        Err(Error::Parse { .. })
    ));
    idp.control().add_fault(
        Fault::on("discovery")
            .status(503, r#"{"error":"down"}"#)
            .times(1),
    );
    match Provider::discover(idp.issuer(), &http()).await {
        Err(Error::Parse { message, body, .. }) => assert!(
            message.contains("503") && body.contains("down"),
            "{message}"
        ),
        other => panic!("{other:?}"),
    }
    idp.control()
        .add_fault(Fault::on("discovery").drop_connection().times(1));
    assert!(matches!(
        Provider::discover(idp.issuer(), &http()).await,
        Err(Error::Network(_))
    ));
    // An issuer that does not match exactly.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let other = MockIdp::builder()
        .listener(listener)
        .issuer(&format!("http://localhost:{port}"))
        .start()
        .await
        .expect("idp");
    assert_eq!(other.issuer(), format!("http://localhost:{port}"));
    match Provider::discover(&format!("http://127.0.0.1:{port}"), &http()).await {
        Err(Error::Config(m)) => assert!(m.contains("issuer") || m.contains("Issuer"), "{m}"),
        other => panic!("{other:?}"),
    }
    // A warm provider answers from its cache: no further request.
    let provider = Provider::discover(idp.issuer(), &http())
        .await
        .expect("discovery");
    idp.control().reset_requests();
    let _ = (
        provider.metadata().token_endpoint(),
        provider.jwks(),
        provider.extra().clone(),
    );
    assert_eq!(idp.control().requests().len(), 0);
}

async fn device_idp() -> MockIdp {
    MockIdp::builder()
        .lifetimes(Lifetimes {
            device_poll_interval: 1,
            ..Lifetimes::default()
        })
        .start()
        .await
        .expect("idp")
}

#[tokio::test]
async fn device_flow_approved_denied_expired_and_cancelled() {
    let idp = device_idp().await;
    let client = client_for(&idp).await;
    let control = idp.control().clone();
    let tokens = client
        .login_device(
            move |p| {
                assert!(
                    p.verification_uri_complete
                        .as_deref()
                        .is_some_and(|u| u.contains(&p.user_code))
                );
                control
                    .approve_device(&p.user_code, "carol")
                    .expect("approve");
            },
            &CancellationToken::new(),
        )
        .await
        .expect("device login");
    assert_eq!(tokens.claims.expect("claims").sub, "carol");

    let control = idp.control().clone();
    let denied = client
        .login_device(
            move |p| control.deny_device(&p.user_code).expect("deny"),
            &CancellationToken::new(),
        )
        .await;
    assert!(matches!(denied, Err(Error::AccessDenied)), "{denied:?}");

    idp.control().script_device(DeviceScript {
        pending_polls: 1,
        then: DeviceOutcome::Expire,
    });
    let expired = client.login_device(|_| {}, &CancellationToken::new()).await;
    assert!(
        matches!(expired, Err(Error::DeviceCodeExpired)),
        "{expired:?}"
    );

    let cancel = CancellationToken::new();
    let c2 = cancel.clone();
    let cancelled = client.login_device(move |_| c2.cancel(), &cancel).await;
    assert!(matches!(cancelled, Err(Error::Cancelled)));
}

#[tokio::test]
async fn device_flow_slows_down_by_five_seconds() {
    let idp = device_idp().await;
    let client = client_for(&idp).await;
    idp.control().script_device(DeviceScript {
        pending_polls: 0,
        then: DeviceOutcome::SlowDown,
    });
    let started = std::time::Instant::now();
    let control = idp.control().clone();
    let tokens = client
        .login_device(
            move |p| {
                let code = p.user_code.clone();
                let control = control.clone();
                tokio::spawn(async move {
                    while control.count("token:device_code") < 1 {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    control.approve_device(&code, "alice").expect("approve");
                });
            },
            &CancellationToken::new(),
        )
        .await
        .expect("device login");
    assert_eq!(tokens.claims.expect("claims").sub, "alice");
    // First poll after 1 s answered slow_down; the next came 1 + 5 s later.
    let polls: Vec<i64> = idp
        .control()
        .requests()
        .iter()
        .filter(|r| r.endpoint == "token")
        .map(|r| r.at_ms)
        .collect();
    assert_eq!(polls.len(), 2, "one slow_down, then success");
    assert!(
        polls[1] - polls[0] >= 5_900,
        "gap {} ms",
        polls[1] - polls[0]
    );
    assert!(started.elapsed() >= Duration::from_secs(7));
}

// ---- ID-token checks with forged tokens ----

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn unsigned(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    )
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("time")
        .as_secs() as i64
}

fn good_claims(idp: &MockIdp) -> Value {
    json!({"iss": idp.issuer(), "sub": "alice", "aud": CLIENT, "exp": now() + 300, "iat": now(), "nonce": "n-1"})
}

struct Forge {
    idp: MockIdp,
    provider: Provider,
    kid: String,
}

async fn forge() -> Forge {
    let idp = MockIdp::start().await.expect("idp");
    let provider = Provider::discover(idp.issuer(), &http())
        .await
        .expect("discovery");
    let kid = idp.control().published_kids()[0].clone();
    Forge { idp, provider, kid }
}

impl Forge {
    fn signed(&self, claims: &Value) -> IdToken {
        IdToken::new(self.idp.control().sign_jwt(Alg::RS256, "JWT", claims))
    }

    fn check(
        &self,
        token: &IdToken,
        nonce: Option<&Nonce>,
        access: Option<&AccessToken>,
    ) -> Result<sessionkit::id_token::IdClaims, IdTokenError> {
        verify_with_keys(
            token,
            &self.provider.jwks(),
            &Expectations {
                issuer: self.idp.issuer(),
                client_id: CLIENT,
                nonce,
                access_token: access,
                previous_sub: None,
                clock_skew: Duration::from_secs(60),
                now: SystemTime::now(),
            },
        )
    }
}

#[tokio::test]
async fn every_id_token_check_refuses_a_forged_token() {
    let f = forge().await;
    let nonce = Nonce::new("n-1");
    let good = f.signed(&good_claims(&f.idp));
    assert_eq!(
        f.check(&good, Some(&nonce), None)
            .expect("the good token passes")
            .sub,
        "alice"
    );

    let with = |patch: Value| {
        let mut c = good_claims(&f.idp);
        for (k, v) in patch.as_object().expect("object") {
            c[k] = v.clone();
        }
        c
    };
    let claim_of = |r: Result<_, IdTokenError>| match r {
        Err(IdTokenError::Claim { claim, .. }) => claim,
        other => panic!("expected a claim error, got {other:?}"),
    };
    assert_eq!(
        claim_of(f.check(
            &f.signed(&with(json!({"iss": "https://evil.example"}))),
            Some(&nonce),
            None
        )),
        "iss"
    );
    assert_eq!(
        claim_of(f.check(
            &f.signed(&with(json!({"aud": "someone-else"}))),
            Some(&nonce),
            None
        )),
        "aud"
    );
    assert_eq!(
        claim_of(f.check(
            &f.signed(&with(json!({"exp": now() - 61}))),
            Some(&nonce),
            None
        )),
        "exp"
    );
    assert!(
        f.check(
            &f.signed(&with(json!({"exp": now() - 30}))),
            Some(&nonce),
            None
        )
        .is_ok(),
        "within the skew"
    );
    assert_eq!(
        claim_of(f.check(
            &f.signed(&with(json!({"iat": now() + 120}))),
            Some(&nonce),
            None
        )),
        "iat"
    );
    assert_eq!(
        claim_of(f.check(
            &f.signed(&with(json!({"nonce": "other"}))),
            Some(&nonce),
            None
        )),
        "nonce"
    );
    let mut no_nonce = good_claims(&f.idp);
    no_nonce.as_object_mut().expect("obj").remove("nonce");
    assert_eq!(
        claim_of(f.check(&f.signed(&no_nonce), Some(&nonce), None)),
        "nonce"
    );
    // Several audiences: azp must name this client.
    let multi = with(json!({"aud": [CLIENT, "other-api"], "azp": "other-api"}));
    assert!(f.check(&f.signed(&multi), Some(&nonce), None).is_err());
    // at_hash must match the access token.
    let at_hash = with(json!({"at_hash": b64(&[0u8; 16])}));
    assert_eq!(
        claim_of(f.check(
            &f.signed(&at_hash),
            Some(&nonce),
            Some(&AccessToken::new("real-access-token"))
        )),
        "at_hash"
    );

    // alg none.
    let none = format!(
        "{}.",
        unsigned(&json!({"alg": "none", "typ": "JWT"}), &good_claims(&f.idp))
    );
    assert!(matches!(
        f.check(&IdToken::new(none), Some(&nonce), None),
        Err(IdTokenError::Signature(_) | IdTokenError::Malformed(_))
    ));
    // HMAC keyed with the public key (the classic confusion).
    let jwks: Value = reqwest::get(f.idp.url("/jwks"))
        .await
        .expect("jwks")
        .json()
        .await
        .expect("json");
    let n = jwks["keys"][0]["n"].as_str().expect("n");
    let signing_input = unsigned(
        &json!({"alg": "HS256", "typ": "JWT", "kid": f.kid}),
        &good_claims(&f.idp),
    );
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, n.as_bytes());
    let tag = aws_lc_rs::hmac::sign(&key, signing_input.as_bytes());
    let hmac = IdToken::new(format!("{signing_input}.{}", b64(tag.as_ref())));
    assert!(matches!(
        f.check(&hmac, Some(&nonce), None),
        Err(IdTokenError::Signature(_))
    ));
    // A key the provider never published, claiming the provider's kid.
    let rogue = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("rsa");
    let input = unsigned(
        &json!({"alg": "RS256", "typ": "JWT", "kid": f.kid}),
        &good_claims(&f.idp),
    );
    let mut sig = vec![0u8; rogue.public_modulus_len()];
    rogue
        .sign(
            &aws_lc_rs::signature::RSA_PKCS1_SHA256,
            &aws_lc_rs::rand::SystemRandom::new(),
            input.as_bytes(),
            &mut sig,
        )
        .expect("sign");
    let wrong_key = IdToken::new(format!("{input}.{}", b64(&sig)));
    assert!(matches!(
        f.check(&wrong_key, Some(&nonce), None),
        Err(IdTokenError::Signature(_))
    ));
    // The same rogue token with a kid nobody published.
    let input = unsigned(
        &json!({"alg": "RS256", "typ": "JWT", "kid": "unknown-kid"}),
        &good_claims(&f.idp),
    );
    assert!(matches!(
        f.check(
            &IdToken::new(format!("{input}.{}", b64(&sig))),
            Some(&nonce),
            None
        ),
        Err(IdTokenError::UnknownKey)
    ));
    // A tampered payload under the real signature.
    let parts: Vec<&str> = good.secret().split('.').collect();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64(with(json!({"sub": "mallory"})).to_string().as_bytes()),
        parts[2]
    );
    assert!(matches!(
        f.check(&IdToken::new(tampered), Some(&nonce), None),
        Err(IdTokenError::Signature(_))
    ));
    // A refreshed ID token for another subject.
    let other_sub = f.signed(&with(json!({"sub": "mallory"})));
    let refreshed = verify_with_keys(
        &other_sub,
        &f.provider.jwks(),
        &Expectations {
            issuer: f.idp.issuer(),
            client_id: CLIENT,
            nonce: None,
            access_token: None,
            previous_sub: Some("alice"),
            clock_skew: Duration::from_secs(60),
            now: SystemTime::now(),
        },
    );
    assert_eq!(claim_of(refreshed), "sub");
}

#[tokio::test]
async fn a_key_rotation_mid_session_is_followed_by_one_jwks_fetch() {
    let idp = MockIdp::builder()
        .auto_login("alice")
        .start()
        .await
        .expect("idp");
    let client = client_for(&idp).await;
    idp.control().rotate_keys().await.expect("rotate");
    idp.control().reset_requests();
    let request = client
        .authorization_request("http://127.0.0.1:1/callback")
        .await
        .expect("request");
    let back = redirect_of(request.url.as_str()).await;
    let tokens = client
        .finish(&request, &back)
        .await
        .expect("the new key is fetched");
    assert_eq!(tokens.claims.expect("claims").sub, "alice");
    assert_eq!(idp.control().count("jwks"), 1, "one refetch");
    // A token with a kid nobody knows is refused, and the refetch is rate limited.
    let forged = IdToken::new(format!(
        "{}.{}.sig",
        b64(json!({"alg": "RS256", "kid": "nobody"})
            .to_string()
            .as_bytes()),
        b64(good_claims(&idp).to_string().as_bytes())
    ));
    let result = sessionkit::id_token::verify(
        client.provider(),
        &forged,
        &Expectations {
            issuer: idp.issuer(),
            client_id: CLIENT,
            nonce: None,
            access_token: None,
            previous_sub: None,
            clock_skew: Duration::from_secs(60),
            now: SystemTime::now(),
        },
    )
    .await;
    assert!(matches!(
        result,
        Err(Error::IdToken(IdTokenError::UnknownKey))
    ));
    assert_eq!(
        idp.control().count("jwks"),
        1,
        "no second fetch within the interval"
    );
}
