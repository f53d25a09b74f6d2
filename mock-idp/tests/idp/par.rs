//! Pushed authorization requests (RFC 9126) over real sockets: push →
//! authorize → token for a public and a confidential client; a
//! `request_uri` reused, expired (the provider's clock moved), another
//! client's or unknown is refused; clients (or the whole provider) that
//! require PAR refuse a plain authorization request; the push is
//! authenticated and checked like the authorization request itself; a DPoP
//! proof with the push binds the code.

use serde_json::{Value, json};
use sessionkit_mock_idp::{ClientConfig, Config, MockIdp, SecretSource};

use crate::private_key_jwt::Key;
use crate::support::*;

const SECRET: &str = "par-secret-only-this-test-knows";

/// Posts `form` to the PAR endpoint (with `basic` credentials if given).
async fn push(
    idp: &MockIdp,
    form: &[(String, String)],
    basic: Option<(&str, &str)>,
    dpop: Option<&str>,
) -> (u16, Value) {
    let mut request = http().post(idp.url("/par")).form(form);
    if let Some((id, secret)) = basic {
        request = request.basic_auth(id, Some(secret));
    }
    if let Some(proof) = dpop {
        request = request.header("DPoP", proof);
    }
    let response = request.send().await.expect("par");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Pushes the public client's request and returns its `request_uri`.
async fn pushed_uri(idp: &MockIdp, params: &[(String, String)]) -> String {
    let (status, body) = push(idp, params, None, None).await;
    assert_eq!(status, 201, "{body}");
    body["request_uri"]
        .as_str()
        .expect("request_uri")
        .to_owned()
}

/// `/authorize` with only `client_id` and `request_uri`.
async fn authorize_pushed(idp: &MockIdp, client_id: &str, request_uri: &str) -> reqwest::Response {
    let params = [
        ("client_id".to_owned(), client_id.to_owned()),
        ("request_uri".to_owned(), request_uri.to_owned()),
    ];
    authorize(idp, &http(), &params).await
}

/// A refused `request_uri`: a 400 page (never a redirect) that says `why`.
async fn refused_page(response: reqwest::Response, why: &str) {
    assert_eq!(response.status(), 400);
    assert!(response.headers().get("location").is_none());
    let page = response.text().await.expect("page");
    assert!(page.contains(why), "{why:?} not on the page: {page}");
}

#[tokio::test]
async fn discovery_names_the_endpoint_and_par_is_optional_by_default() {
    let idp = idp().await;
    let doc: Value = discovery(&idp).await;
    assert_eq!(
        doc["pushed_authorization_request_endpoint"],
        idp.url("/par")
    );
    assert_eq!(doc["require_pushed_authorization_requests"], false);
}

#[tokio::test]
async fn a_public_client_pushes_authorizes_and_redeems() {
    let idp = idp_auto("alice").await;
    let pkce = pkce();
    let (status, body) = push(&idp, &auth_params(&pkce, "openid profile"), None, None).await;
    assert_eq!(status, 201, "{body}");
    let request_uri = body["request_uri"].as_str().expect("request_uri");
    assert!(
        request_uri.starts_with("urn:ietf:params:oauth:request_uri:") && request_uri.len() > 60,
        "{request_uri}"
    );
    assert_eq!(body["expires_in"], 60);

    let response = authorize_pushed(&idp, CLIENT, request_uri).await;
    assert_eq!(response.status(), 303);
    let answer = location_params(&response);
    // The pushed parameters are the ones in force: state and redirect URI.
    assert_eq!(answer["state"], "st-123");
    assert!(
        response.headers()["location"]
            .to_str()
            .expect("ascii")
            .starts_with(REDIRECT)
    );
    let (status, tokens) = redeem(&idp, &answer["code"], &pkce.verifier).await;
    assert_eq!(status, 200, "{tokens}");
    let (_, claims) = decode(tokens["id_token"].as_str().expect("id token"));
    assert_eq!(claims["nonce"], "n-456", "the pushed nonce");
}

#[tokio::test]
async fn a_confidential_client_pushes_with_its_secret() {
    let idp = idp_auto("bob").await;
    idp.control()
        .register_client(ClientConfig {
            secret: SecretSource::Value(SECRET.into()),
            ..ClientConfig::public("par-app")
        })
        .expect("client");
    let pkce = pkce();
    let mut params = auth_params(&pkce, "openid");
    params.retain(|(k, _)| k != "client_id");
    let (status, body) = push(&idp, &params, Some(("par-app", SECRET)), None).await;
    assert_eq!(status, 201, "{body}");
    let response =
        authorize_pushed(&idp, "par-app", body["request_uri"].as_str().expect("uri")).await;
    let code = location_params(&response)["code"].clone();
    let response = http()
        .post(idp.url("/token"))
        .basic_auth("par-app", Some(SECRET))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &pkce.verifier),
        ])
        .send()
        .await
        .expect("token");
    assert_eq!(response.status(), 200);

    // The wrong secret, or none, at the PAR endpoint: 401 invalid_client.
    let (status, body) = push(&idp, &params, Some(("par-app", "wrong")), None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    let mut with_id = params.clone();
    with_id.push(("client_id".into(), "par-app".into()));
    let (status, body) = push(&idp, &with_id, None, None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    let mut unknown = params;
    unknown.push(("client_id".into(), "nobody".into()));
    assert_eq!(push(&idp, &unknown, None, None).await.0, 401);
}

#[tokio::test]
async fn a_request_uri_is_single_use_expires_and_belongs_to_its_client() {
    let idp = idp_auto("alice").await;
    let pkce = pkce();
    let params = auth_params(&pkce, "openid");

    let used = pushed_uri(&idp, &params).await;
    assert_eq!(authorize_pushed(&idp, CLIENT, &used).await.status(), 303);
    refused_page(
        authorize_pushed(&idp, CLIENT, &used).await,
        "unknown or was used",
    )
    .await;

    let expiring = pushed_uri(&idp, &params).await;
    idp.control()
        .advance_clock(std::time::Duration::from_secs(61));
    refused_page(authorize_pushed(&idp, CLIENT, &expiring).await, "expired").await;

    idp.control()
        .register_client(ClientConfig::public("other-app"))
        .expect("client");
    let theirs = pushed_uri(&idp, &params).await;
    refused_page(
        authorize_pushed(&idp, "other-app", &theirs).await,
        "pushed by another client",
    )
    .await;
    // Still good for its own client afterwards.
    assert_eq!(authorize_pushed(&idp, CLIENT, &theirs).await.status(), 303);

    refused_page(
        authorize_pushed(&idp, CLIENT, "urn:ietf:params:oauth:request_uri:made-up").await,
        "unknown",
    )
    .await;
}

#[tokio::test]
async fn with_a_request_uri_the_front_channel_carries_nothing_else() {
    let idp = idp_auto("alice").await;
    let pkce = pkce();
    let uri = pushed_uri(&idp, &auth_params(&pkce, "openid")).await;
    let params = [
        ("client_id".to_owned(), CLIENT.to_owned()),
        ("request_uri".to_owned(), uri.clone()),
        ("state".to_owned(), "changed-on-the-way".to_owned()),
    ];
    refused_page(
        authorize(&idp, &http(), &params).await,
        "push &quot;state&quot;",
    )
    .await;
}

#[tokio::test]
async fn the_push_is_checked_like_an_authorization_request() {
    let idp = idp().await;
    let pkce = pkce();
    let without_pkce: Vec<_> = auth_params(&pkce, "openid")
        .into_iter()
        .filter(|(k, _)| !k.starts_with("code_challenge"))
        .collect();
    let (status, body) = push(&idp, &without_pkce, None, None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
    assert!(
        body["error_description"]
            .as_str()
            .unwrap_or_default()
            .contains("PKCE"),
        "{body}"
    );

    let mut unregistered = auth_params(&pkce, "openid");
    unregistered[2].1 = "https://evil.example/cb".into();
    let (status, body) = push(&idp, &unregistered, None, None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );

    let mut bad_scope = auth_params(&pkce, "openid");
    bad_scope[3].1 = "openid root".into();
    let (status, body) = push(&idp, &bad_scope, None, None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_scope"))
    );

    let mut token = auth_params(&pkce, "openid");
    token[0].1 = "token".into();
    assert_eq!(
        push(&idp, &token, None, None).await.1["error"],
        "unsupported_response_type"
    );

    let mut nested = auth_params(&pkce, "openid");
    nested.push((
        "request_uri".into(),
        "urn:ietf:params:oauth:request_uri:x".into(),
    ));
    let (status, body) = push(&idp, &nested, None, None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
    assert!(
        body["error_description"]
            .as_str()
            .unwrap_or_default()
            .contains("request_uri")
    );
}

#[tokio::test]
async fn a_client_that_requires_par_is_refused_at_plain_authorize() {
    let idp = idp_auto("alice").await;
    idp.control()
        .register_client(ClientConfig {
            require_pushed_authorization_requests: true,
            ..ClientConfig::public("par-only")
        })
        .expect("client");
    let pkce = pkce();
    let mut params = auth_params(&pkce, "openid");
    params[1].1 = "par-only".into();
    let response = authorize(&idp, &http(), &params).await;
    assert_eq!(response.status(), 303, "sent back to the client");
    let answer = location_params(&response);
    assert_eq!(answer["error"], "invalid_request");
    assert!(answer["error_description"].contains("pushed"), "{answer:?}");
    assert_eq!(answer["state"], "st-123");

    let uri = pushed_uri(&idp, &params).await;
    let response = authorize_pushed(&idp, "par-only", &uri).await;
    assert!(location_params(&response).contains_key("code"));
    // Other clients are not affected.
    assert!(
        location_params(&authorize(&idp, &http(), &auth_params(&pkce, "openid")).await)
            .contains_key("code")
    );
}

#[tokio::test]
async fn a_provider_that_requires_par_says_so_and_refuses_plain_requests() {
    let idp = MockIdp::builder()
        .config(Config {
            require_pushed_authorization_requests: true,
            auto_login: Some("alice".into()),
            ..Config::default()
        })
        .start()
        .await
        .expect("idp");
    let doc: Value = discovery(&idp).await;
    assert_eq!(doc["require_pushed_authorization_requests"], true);
    let pkce = pkce();
    let params = auth_params(&pkce, "openid");
    assert_eq!(
        location_params(&authorize(&idp, &http(), &params).await)["error"],
        "invalid_request"
    );
    let uri = pushed_uri(&idp, &params).await;
    assert!(location_params(&authorize_pushed(&idp, CLIENT, &uri).await).contains_key("code"));
    let toml = Config::from_toml("require_pushed_authorization_requests = true\n[[clients]]\nclient_id = \"a\"\nrequire_pushed_authorization_requests = true\n")
        .expect("toml");
    assert!(
        toml.require_pushed_authorization_requests
            && toml.clients[0].require_pushed_authorization_requests
    );
}

/// A DPoP proof by `key` for a POST to `url`, at the provider's time.
fn proof(idp: &MockIdp, key: &Key, url: &str) -> String {
    key.sign(
        &json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": key.jwk()}),
        &json!({"jti": random(12), "htm": "POST", "htu": url, "iat": idp.control().now()}),
    )
}

#[tokio::test]
async fn a_dpop_proof_with_the_push_binds_the_code_to_its_key() {
    let idp = idp_auto("alice").await;
    let key = Key::ec();
    let pkce = pkce();
    let params = auth_params(&pkce, "openid");
    let (status, body) = push(
        &idp,
        &params,
        None,
        Some(&proof(&idp, &key, &idp.url("/par"))),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let uri = body["request_uri"].as_str().expect("uri").to_owned();
    let code = location_params(&authorize_pushed(&idp, CLIENT, &uri).await)["code"].clone();
    // Without a proof by that key the code is refused; with one it is DPoP.
    let (status, body) = redeem(&idp, &code, &pkce.verifier).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );

    let (status, body) = push(
        &idp,
        &params,
        None,
        Some(&proof(&idp, &key, &idp.url("/par"))),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let uri = body["request_uri"].as_str().expect("uri").to_owned();
    let code = location_params(&authorize_pushed(&idp, CLIENT, &uri).await)["code"].clone();
    let response = http()
        .post(idp.url("/token"))
        .header("DPoP", proof(&idp, &key, &idp.url("/token")))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT),
            ("client_id", CLIENT),
            ("code_verifier", pkce.verifier.as_str()),
        ])
        .send()
        .await
        .expect("token");
    assert_eq!(response.status(), 200);
    let tokens: Value = response.json().await.expect("json");
    assert_eq!(tokens["token_type"], "DPoP");

    // A dpop_jkt that is not the proof's key, and a proof for another URL.
    let mut other = params.clone();
    other.push(("dpop_jkt".into(), "A".repeat(43)));
    let (status, body) = push(
        &idp,
        &other,
        None,
        Some(&proof(&idp, &key, &idp.url("/par"))),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );
    let (status, body) = push(
        &idp,
        &params,
        None,
        Some(&proof(&idp, &key, &idp.url("/token"))),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_dpop_proof")),
        "{body}"
    );
}

#[tokio::test]
async fn a_private_key_jwt_client_pushes_with_an_assertion() {
    use crate::private_key_jwt::{APP, ASSERTION_TYPE, idp_with};
    let key = Key::ec();
    let idp = idp_with(&[&key]).await;
    let pkce = pkce();
    let mut params = auth_params(&pkce, "openid");
    params[1].1 = APP.into();
    let (status, body) = push(&idp, &params, None, None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    params.push(("client_assertion_type".into(), ASSERTION_TYPE.into()));
    params.push(("client_assertion".into(), key.assertion(&idp, &[])));
    let (status, body) = push(&idp, &params, None, None).await;
    assert_eq!(status, 201, "{body}");
    let uri = body["request_uri"].as_str().expect("uri");
    assert!(location_params(&authorize_pushed(&idp, APP, uri).await).contains_key("code"));
    // The same assertion again is a replay.
    assert_eq!(push(&idp, &params, None, None).await.0, 401);
}
