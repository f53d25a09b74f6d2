//! The authorization endpoint's strictness: PKCE S256 with no downgrade,
//! exact redirect URI match (any port for loopback), `iss` on every response,
//! errors about the client shown and never redirected, `prompt`,
//! `login_hint`, OIDC Core §11 for `offline_access`, and the login form.

use serde_json::Value;
use sessionkit_mock_idp::MockIdp;

use crate::support::*;

fn without(params: &[(String, String)], name: &str) -> Vec<(String, String)> {
    params.iter().filter(|(k, _)| k != name).cloned().collect()
}

fn with(params: &[(String, String)], name: &str, value: &str) -> Vec<(String, String)> {
    let mut p = without(params, name);
    p.push((name.to_owned(), value.to_owned()));
    p
}

async fn error_of(
    idp: &MockIdp,
    params: &[(String, String)],
) -> std::collections::HashMap<String, String> {
    let response = authorize(idp, &http(), params).await;
    assert_eq!(response.status(), 303);
    let q = location_params(&response);
    assert_eq!(
        q.get("iss").map(String::as_str),
        Some(idp.issuer()),
        "iss on error responses too"
    );
    assert_eq!(q.get("state").map(String::as_str), Some("st-123"));
    assert!(!q.contains_key("code"));
    q
}

#[tokio::test]
async fn success_redirects_with_code_state_and_iss_to_any_loopback_port() {
    let idp = idp_auto("alice").await;
    let pkce = pkce();
    for port in ["8123", "50001"] {
        let params = with(
            &auth_params(&pkce, "openid"),
            "redirect_uri",
            &format!("http://127.0.0.1:{port}/callback"),
        );
        let response = authorize(&idp, &http(), &params).await;
        assert_eq!(response.status(), 303);
        let location = response.headers()["location"]
            .to_str()
            .expect("ascii")
            .to_owned();
        assert!(
            location.starts_with(&format!("http://127.0.0.1:{port}/callback?")),
            "{location}"
        );
        let q = location_params(&response);
        assert!(q.get("code").is_some_and(|c| c.len() >= 40));
        assert_eq!(q["state"], "st-123");
        assert_eq!(q["iss"], idp.issuer());
    }
}

#[tokio::test]
async fn pkce_is_required_and_only_s256() {
    let idp = idp_auto("alice").await;
    let base = auth_params(&pkce(), "openid");
    let q = error_of(&idp, &without(&base, "code_challenge")).await;
    assert_eq!(q["error"], "invalid_request");
    assert!(q["error_description"].contains("PKCE"));
    let q = error_of(&idp, &with(&base, "code_challenge_method", "plain")).await;
    assert_eq!(q["error"], "invalid_request");
    let q = error_of(&idp, &without(&base, "code_challenge_method")).await;
    assert_eq!(
        q["error"], "invalid_request",
        "a missing method means plain"
    );
    let q = error_of(&idp, &with(&base, "code_challenge", "too-short")).await;
    assert_eq!(q["error"], "invalid_request");
}

#[tokio::test]
async fn bad_client_or_redirect_uri_is_shown_not_redirected() {
    let idp = idp_auto("alice").await;
    let base = auth_params(&pkce(), "openid");
    for params in [
        with(&base, "client_id", "nobody"),
        without(&base, "client_id"),
        without(&base, "redirect_uri"),
        with(&base, "redirect_uri", "http://127.0.0.1:8123/other"),
        with(
            &base,
            "redirect_uri",
            "http://127.0.0.1.evil.example:8123/callback",
        ),
        with(&base, "redirect_uri", "https://127.0.0.1:8123/callback"),
        with(&base, "redirect_uri", "http://127.0.0.1:8123/callback?x=1"),
    ] {
        let response = authorize(&idp, &http(), &params).await;
        assert_eq!(response.status(), 400, "{params:?}");
        assert!(response.headers().get("location").is_none());
        let html = response.text().await.expect("text");
        assert!(html.contains("class=\"error\""));
    }
}

#[tokio::test]
async fn other_request_errors_go_back_to_the_client() {
    let idp = idp_auto("alice").await;
    let base = auth_params(&pkce(), "openid");
    assert_eq!(
        error_of(&idp, &with(&base, "response_type", "token")).await["error"],
        "unsupported_response_type"
    );
    assert_eq!(
        error_of(&idp, &with(&base, "scope", "openid admin")).await["error"],
        "invalid_scope"
    );
    assert_eq!(
        error_of(&idp, &with(&base, "prompt", "none login")).await["error"],
        "invalid_request"
    );
    assert_eq!(
        error_of(&idp, &with(&base, "response_mode", "fragment")).await["error"],
        "invalid_request"
    );
    assert_eq!(
        error_of(&idp, &with(&base, "request", "eyJ.x.y")).await["error"],
        "request_not_supported"
    );
    assert_eq!(
        error_of(&idp, &with(&base, "resource", "https://other.example")).await["error"],
        "invalid_target"
    );
}

#[tokio::test]
async fn repeated_parameters_are_refused() {
    let idp = idp_auto("alice").await;
    let mut params = auth_params(&pkce(), "openid");
    params.push(("client_id".into(), CLIENT.into()));
    let response = authorize(&idp, &http(), &params).await;
    assert_eq!(response.status(), 400);
}

#[tokio::test]
async fn offline_access_needs_prompt_consent() {
    let idp = idp_auto("alice").await;
    // Without prompt=consent, offline_access is ignored: no refresh token.
    let t = tokens(&idp, "openid offline_access").await;
    assert!(t.get("refresh_token").is_none(), "{t}");
    assert_eq!(t["scope"], "openid");
    // With it, the refresh token comes.
    let pkce = pkce();
    let params = with(
        &auth_params(&pkce, "openid offline_access"),
        "prompt",
        "consent",
    );
    let response = authorize(&idp, &http(), &params).await;
    let code = location_params(&response)["code"].clone();
    let (status, body) = token_request(
        &idp,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("client_id", CLIENT),
            ("code_verifier", &pkce.verifier),
        ],
    )
    .await;
    assert_eq!(status, 200);
    assert!(body["refresh_token"].is_string());
    assert_eq!(body["scope"], "openid offline_access");
}

#[tokio::test]
async fn login_page_form_session_cookie_prompt_and_login_hint() {
    let idp = idp().await;
    let browser = cookie_http();
    let pkce = pkce();
    let params = auth_params(&pkce, "openid");

    // prompt=none without a session: login_required.
    let q = error_of(&idp, &with(&params, "prompt", "none")).await;
    assert_eq!(q["error"], "login_required");

    // The login page lists the users.
    let page = authorize(&idp, &browser, &params).await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("html");
    for user in ["alice", "bob", "carol"] {
        assert!(html.contains(&format!("id=\"pick-{user}\"")), "{user}");
    }
    let request_id = html
        .split("name=\"request_id\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("request id")
        .to_owned();
    let login = |form: Vec<(&'static str, String)>| {
        let browser = browser.clone();
        let url = idp.url("/authorize/login");
        async move { browser.post(url).form(&form).send().await.expect("post") }
    };

    // A wrong password shows the page again with the problem.
    let wrong = login(vec![
        ("request_id", request_id.clone()),
        ("username", "alice".into()),
        ("password", "bob".into()),
        ("action", "allow".into()),
    ])
    .await;
    assert_eq!(wrong.status(), 200);
    assert!(
        wrong
            .text()
            .await
            .expect("html")
            .contains("wrong name or password")
    );

    // The right one signs in and redirects with a code.
    let ok = login(vec![
        ("request_id", request_id.clone()),
        ("username", "alice".into()),
        ("password", "alice".into()),
        ("action", "allow".into()),
    ])
    .await;
    assert_eq!(ok.status(), 303);
    assert!(location_params(&ok).contains_key("code"));

    // The request cannot be completed twice.
    let again = login(vec![("request_id", request_id), ("user", "alice".into())]).await;
    assert_eq!(again.status(), 400);

    // With the session cookie, the next request signs in without a page…
    let sso = authorize(&idp, &browser, &params).await;
    assert_eq!(sso.status(), 303);
    assert!(location_params(&sso).contains_key("code"));
    // …and prompt=none works too.
    let none = authorize(&idp, &browser, &with(&params, "prompt", "none")).await;
    assert!(location_params(&none).contains_key("code"));
    // prompt=login shows the page again, and so does a login_hint for someone else.
    assert_eq!(
        authorize(&idp, &browser, &with(&params, "prompt", "login"))
            .await
            .status(),
        200
    );
    let hinted = authorize(&idp, &browser, &with(&params, "login_hint", "bob")).await;
    assert_eq!(hinted.status(), 200);
    assert!(
        hinted.text().await.expect("html").contains("value=\"bob\""),
        "the hint fills the name field"
    );
    // One login, one session.
    assert_eq!(idp.control().sessions(Some("alice")).len(), 1);
}

#[tokio::test]
async fn denying_on_the_login_page_redirects_with_access_denied() {
    let idp = idp().await;
    let params = auth_params(&pkce(), "openid");
    let html = authorize(&idp, &http(), &params)
        .await
        .text()
        .await
        .expect("html");
    let request_id = html
        .split("name=\"request_id\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("id");
    let response = http()
        .post(idp.url("/authorize/login"))
        .form(&[("request_id", request_id), ("action", "deny")])
        .send()
        .await
        .expect("post");
    let q = location_params(&response);
    assert_eq!(q["error"], "access_denied");
    assert_eq!(q["iss"], idp.issuer());
}

#[tokio::test]
async fn auto_login_honours_a_known_login_hint() {
    let idp = idp_auto("alice").await;
    let pkce = pkce();
    let params = with(&auth_params(&pkce, "openid"), "login_hint", "carol");
    let code = location_params(&authorize(&idp, &http(), &params).await)["code"].clone();
    let (_, body) = token_request(
        &idp,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("client_id", CLIENT),
            ("code_verifier", &pkce.verifier),
        ],
    )
    .await;
    let (_, claims) = decode(body["id_token"].as_str().expect("id"));
    assert_eq!(claims["sub"], "carol");
    let _: &Value = &claims;
}

#[tokio::test]
async fn max_age_makes_an_older_session_sign_in_again() {
    let idp = idp().await;
    let browser = cookie_http();
    let with_max_age = |age: &str| {
        let mut p = auth_params(&pkce(), "openid");
        p.push(("max_age".into(), age.into()));
        p
    };
    let first = sign_in_on_page(
        &idp,
        &browser,
        &auth_params(&pkce(), "openid"),
        "alice",
        "alice",
    )
    .await;
    assert_eq!(first.status(), 303, "signed in");
    let young = authorize(&idp, &browser, &with_max_age("3600")).await;
    assert_eq!(young.status(), 303, "the session is young enough");
    idp.control()
        .advance_clock(std::time::Duration::from_secs(3601));
    let old = authorize(&idp, &browser, &with_max_age("3600")).await;
    assert_eq!(old.status(), 200, "the login page again");
    let plain = authorize(&idp, &browser, &auth_params(&pkce(), "openid")).await;
    assert_eq!(
        plain.status(),
        303,
        "without max_age the session still serves"
    );
    let bad = authorize(&idp, &browser, &with_max_age("soon")).await;
    assert_eq!(
        location_params(&bad).get("error").map(String::as_str),
        Some("invalid_request")
    );
}

#[tokio::test]
async fn acr_values_choose_the_acr_of_the_id_token() {
    let idp = idp_auto("alice").await;
    for (asked, got) in [
        (
            Some("urn:other urn:mock-idp:acr:mfa"),
            Some("urn:mock-idp:acr:mfa"),
        ),
        (Some("urn:other"), Some("urn:mock-idp:acr:password")),
        (None, None),
    ] {
        let pkce = pkce();
        let mut p = auth_params(&pkce, "openid");
        if let Some(a) = asked {
            p.push(("acr_values".into(), a.into()));
        }
        let answer = authorize(&idp, &http(), &p).await;
        let code = location_params(&answer)["code"].clone();
        let (status, body) = redeem(&idp, &code, &pkce.verifier).await;
        assert_eq!(status, 200, "{body}");
        let claims = decode(body["id_token"].as_str().expect("id token")).1;
        assert_eq!(
            claims.get("acr").and_then(serde_json::Value::as_str),
            got,
            "{asked:?}"
        );
    }
}
