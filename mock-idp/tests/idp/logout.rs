//! Ending sessions: RP-initiated logout with `id_token_hint` and a registered
//! `post_logout_redirect_uri`, and the question asked without a hint of the
//! browser's user (a cross-site GET signs nobody out); back-channel logout tokens delivered to a
//! receiver that verifies them; the account sessions API listing devices and
//! revoking one. (The account API's audience rule: `account.rs`.)

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use sessionkit_mock_idp::MockIdp;

use crate::support::*;

/// Tokens the account sessions API accepts.
pub(crate) const ACCOUNT_TOKEN_SCOPE: &str = "openid offline_access account_sessions";

/// A back-channel logout receiver on 127.0.0.1:0 that keeps what it got.
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<String>>>,
    _task: tokio::task::JoinHandle<()>,
}

async fn receiver() -> Receiver {
    let got = Arc::new(Mutex::new(Vec::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!(
        "http://{}/backchannel-logout",
        listener.local_addr().expect("addr")
    );
    let store = got.clone();
    let app = axum::Router::new().route(
        "/backchannel-logout",
        axum::routing::post(
            move |axum::Form(form): axum::Form<std::collections::HashMap<String, String>>| {
                let store = store.clone();
                async move {
                    store
                        .lock()
                        .expect("lock")
                        .push(form.get("logout_token").cloned().unwrap_or_default());
                    axum::http::StatusCode::OK
                }
            },
        ),
    );
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.expect("serve");
    });
    Receiver {
        url,
        got,
        _task: task,
    }
}

async fn wait_for(got: &Arc<Mutex<Vec<String>>>, n: usize) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let tokens = got.lock().expect("lock").clone();
        if tokens.len() >= n || tokio::time::Instant::now() > deadline {
            return tokens;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Checks a logout token as OpenID Connect Back-Channel Logout 1.0 §2.6 says.
async fn check_logout_token(idp: &MockIdp, token: &str, sid: &str) {
    let (header, _) = decode(token);
    assert_eq!(header["typ"], "logout+jwt");
    let claims = verify(idp, token, CLIENT)
        .await
        .expect("logout token verifies");
    assert_eq!(claims["sid"], sid);
    assert!(claims["events"]["http://schemas.openid.net/event/backchannel-logout"].is_object());
    assert!(claims.get("nonce").is_none(), "a logout token has no nonce");
    assert!(claims["jti"].is_string() && claims["iat"].is_i64());
}

#[tokio::test]
async fn rp_initiated_logout_ends_the_session_and_redirects_only_where_registered() {
    let idp = idp_auto("alice").await;
    let rx = receiver().await;
    idp.control()
        .set_backchannel_logout_uri(CLIENT, Some(&rx.url))
        .expect("set");
    let t = consented(&idp).await;
    let id = t["id_token"].as_str().expect("id");
    let sid = decode(id).1["sid"].as_str().expect("sid").to_owned();

    // An unregistered post-logout redirect is refused and ends nothing.
    let bad = http()
        .get(idp.url("/end_session"))
        .query(&[
            ("id_token_hint", id),
            ("post_logout_redirect_uri", "http://127.0.0.1:1/evil"),
        ])
        .send()
        .await
        .expect("get");
    assert_eq!(bad.status(), 400);
    assert_eq!(idp.control().sessions(Some("alice")).len(), 1);
    // A forged hint is refused.
    let forged = format!("{}x", id);
    let bad = http()
        .get(idp.url("/end_session"))
        .query(&[("id_token_hint", forged.as_str())])
        .send()
        .await
        .expect("get");
    assert_eq!(bad.status(), 400);

    let ok = http()
        .get(idp.url("/end_session"))
        .query(&[
            ("id_token_hint", id),
            ("post_logout_redirect_uri", "http://127.0.0.1/logged-out"),
            ("state", "bye"),
        ])
        .send()
        .await
        .expect("get");
    assert_eq!(ok.status(), 303);
    assert_eq!(
        ok.headers()["location"],
        "http://127.0.0.1/logged-out?state=bye"
    );
    assert!(idp.control().sessions(Some("alice")).is_empty());
    assert_eq!(
        refresh(&idp, t["refresh_token"].as_str().expect("rt"))
            .await
            .1["error"],
        "invalid_grant"
    );
    let tokens = wait_for(&rx.got, 1).await;
    assert_eq!(tokens.len(), 1, "one back-channel logout");
    check_logout_token(&idp, &tokens[0], &sid).await;
}

#[tokio::test]
async fn account_api_lists_devices_and_revokes_one_with_backchannel_logout() {
    let idp = idp_auto("bob").await;
    let rx = receiver().await;
    idp.control()
        .set_backchannel_logout_uri(CLIENT, Some(&rx.url))
        .expect("set");
    let laptop = consented_tokens(&idp, ACCOUNT_TOKEN_SCOPE).await;
    let phone = consented_tokens(&idp, ACCOUNT_TOKEN_SCOPE).await;
    let laptop_at = laptop["access_token"].as_str().expect("at");
    let phone_sid = decode(phone["id_token"].as_str().expect("id")).1["sid"]
        .as_str()
        .expect("sid")
        .to_owned();

    let list: Value = http()
        .get(idp.url("/account/sessions"))
        .bearer_auth(laptop_at)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    let sessions = list["sessions"].as_array().expect("sessions");
    assert_eq!(sessions.len(), 2);
    assert_eq!(sessions.iter().filter(|s| s["current"] == true).count(), 1);
    assert!(
        sessions
            .iter()
            .all(|s| s["device_name"].is_string() && s["clients"][0] == CLIENT)
    );

    // Someone else's session is not found; an unauthenticated call is refused.
    let carol_idp_session = "not-a-session";
    let missing = http()
        .delete(idp.url(&format!("/account/sessions/{carol_idp_session}")))
        .bearer_auth(laptop_at)
        .send()
        .await
        .expect("delete");
    assert_eq!(missing.status(), 404);
    let anon = http()
        .delete(idp.url(&format!("/account/sessions/{phone_sid}")))
        .send()
        .await
        .expect("delete");
    assert_eq!(anon.status(), 401);

    let revoke = http()
        .delete(idp.url(&format!("/account/sessions/{phone_sid}")))
        .bearer_auth(laptop_at)
        .send()
        .await
        .expect("delete");
    assert_eq!(revoke.status(), 204);
    assert_eq!(
        refresh(&idp, phone["refresh_token"].as_str().expect("rt"))
            .await
            .1["error"],
        "invalid_grant"
    );
    assert_eq!(
        refresh(&idp, laptop["refresh_token"].as_str().expect("rt"))
            .await
            .0,
        200,
        "the other device stays"
    );
    let tokens = wait_for(&rx.got, 1).await;
    assert_eq!(tokens.len(), 1);
    check_logout_token(&idp, &tokens[0], &phone_sid).await;
    let deliveries = idp.control().deliveries();
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].status, Some(200));
}

#[tokio::test]
async fn control_revokes_a_users_sessions_and_can_send_backchannel_logout_alone() {
    let idp = idp_auto("carol").await;
    let rx = receiver().await;
    idp.control()
        .set_backchannel_logout_uri(CLIENT, Some(&rx.url))
        .expect("set");
    let t = consented(&idp).await;
    let sid = idp.control().sessions(Some("carol"))[0].sid.clone();
    assert_eq!(idp.control().send_backchannel_logout(&sid), 1);
    assert_eq!(wait_for(&rx.got, 1).await.len(), 1);
    assert_eq!(
        refresh(&idp, t["refresh_token"].as_str().expect("rt"))
            .await
            .0,
        200,
        "sending alone ends nothing"
    );
    let t = consented(&idp).await;
    assert_eq!(idp.control().revoke_user_sessions("carol"), 2);
    assert_eq!(
        refresh(&idp, t["refresh_token"].as_str().expect("rt"))
            .await
            .1["error"],
        "invalid_grant"
    );
    assert_eq!(wait_for(&rx.got, 3).await.len(), 3);
}

#[tokio::test]
async fn a_receiver_that_is_down_is_recorded_not_fatal_and_tried_again() {
    let idp = idp_auto("alice").await;
    idp.control()
        .set_backchannel_logout_uri(CLIENT, Some("http://127.0.0.1:9/down"))
        .expect("set");
    consented(&idp).await;
    assert_eq!(idp.control().revoke_user_sessions("alice"), 1);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while idp.control().deliveries().len() < 2 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let d = idp.control().deliveries();
    assert!(d.len() >= 2, "tried again after no answer: {d:?}");
    assert!(d.iter().all(|d| d.status.is_none() && d.error.is_some()));
}

/// A receiver that answers 503 (a chat node whose database is down cannot
/// record the logout) gets the same logout token again until it takes it;
/// a 4xx is not retried.
#[tokio::test]
async fn a_delivery_answered_503_is_delivered_again_until_taken() {
    let idp = idp_auto("alice").await;
    let answers = Arc::new(Mutex::new(vec![503_u16, 503, 200, 200]));
    let got = Arc::new(Mutex::new(Vec::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/bcl", listener.local_addr().expect("addr"));
    let (a, g) = (answers.clone(), got.clone());
    let app = axum::Router::new().route(
        "/bcl",
        axum::routing::post(
            move |axum::Form(form): axum::Form<std::collections::HashMap<String, String>>| {
                let (a, g) = (a.clone(), g.clone());
                async move {
                    g.lock()
                        .expect("lock")
                        .push(form.get("logout_token").cloned().unwrap_or_default());
                    let status = a.lock().expect("lock").remove(0);
                    axum::http::StatusCode::from_u16(status).expect("status")
                }
            },
        ),
    );
    let _server = tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    idp.control()
        .set_backchannel_logout_uri(CLIENT, Some(&url))
        .expect("set");
    consented(&idp).await;
    assert_eq!(idp.control().revoke_user_sessions("alice"), 1);
    let tokens = wait_for(&got, 3).await;
    assert_eq!(tokens.len(), 3, "two 503s, then taken");
    assert!(
        tokens.iter().all(|t| *t == tokens[0]),
        "the same logout token each time"
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(got.lock().expect("lock").len(), 3, "nothing after the 200");
    let statuses: Vec<_> = idp
        .control()
        .deliveries()
        .iter()
        .map(|d| d.status)
        .collect();
    assert_eq!(statuses, [Some(503), Some(503), Some(200)]);
}

#[tokio::test]
async fn a_delivery_refused_with_400_is_not_retried() {
    let idp = idp_auto("alice").await;
    let got = Arc::new(Mutex::new(0_usize));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/bcl", listener.local_addr().expect("addr"));
    let g = got.clone();
    let app = axum::Router::new().route(
        "/bcl",
        axum::routing::post(move || {
            let g = g.clone();
            async move {
                *g.lock().expect("lock") += 1;
                axum::http::StatusCode::BAD_REQUEST
            }
        }),
    );
    let _server = tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    idp.control()
        .set_backchannel_logout_uri(CLIENT, Some(&url))
        .expect("set");
    consented(&idp).await;
    assert_eq!(idp.control().revoke_user_sessions("alice"), 1);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while idp.control().deliveries().is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(*got.lock().expect("lock"), 1);
    assert_eq!(idp.control().deliveries().len(), 1);
}

/// The hidden fields of the first form in `html` (values without escapes).
fn hidden_fields(html: &str) -> Vec<(String, String)> {
    html.split("<input type=\"hidden\" name=\"")
        .skip(1)
        .filter_map(|rest| {
            let (name, rest) = rest.split_once('"')?;
            let value = rest.split("value=\"").nth(1)?.split('"').next()?;
            Some((name.to_owned(), value.to_owned()))
        })
        .collect()
}

/// Signs `user` in through the login page in `browser` (a cookie jar):
/// the token response, with a refresh token.
async fn browser_sign_in(idp: &MockIdp, browser: &reqwest::Client, user: &str) -> Value {
    let pkce = pkce();
    let mut params = auth_params(&pkce, "openid offline_access");
    params.push(("prompt".into(), "consent".into()));
    let answer = sign_in_on_page(idp, browser, &params, user, user).await;
    assert_eq!(answer.status(), 303);
    let (status, body) = redeem(idp, &location_params(&answer)["code"], &pkce.verifier).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Does the browser's session cookie still sign it in without a page?
async fn cookie_still_signs_in(idp: &MockIdp, browser: &reqwest::Client) -> bool {
    let answer = authorize(idp, browser, &auth_params(&pkce(), "openid")).await;
    answer.status() == 303 && location_params(&answer).contains_key("code")
}

#[tokio::test]
async fn a_cross_site_get_without_a_hint_asks_and_only_the_forms_post_signs_out() {
    let idp = idp().await;
    let browser = cookie_http();
    let t = browser_sign_in(&idp, &browser, "alice").await;

    // A link on another site: a top-level GET with the (SameSite=Lax) cookie.
    let asked = browser
        .get(idp.url("/end_session"))
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .expect("get");
    assert_eq!(asked.status(), 200);
    assert!(
        asked.headers().get("set-cookie").is_none(),
        "the cookie stays"
    );
    assert_eq!(asked.headers()["x-frame-options"], "DENY");
    let html = asked.text().await.expect("html");
    assert!(
        html.contains(&format!("Sign out of <code>{}</code>?", idp.issuer())),
        "{html}"
    );
    assert!(html.contains("<form method=\"post\""), "{html}");
    let form = hidden_fields(&html);
    assert!(
        form.iter().any(|(k, v)| k == "confirm" && v.len() >= 32),
        "{form:?}"
    );
    // Nothing ended: the cookie still signs in, the refresh token still works.
    assert_eq!(idp.control().sessions(Some("alice")).len(), 1);
    assert!(cookie_still_signs_in(&idp, &browser).await);
    let (status, t) = refresh(&idp, t["refresh_token"].as_str().expect("rt")).await;
    assert_eq!(status, 200);

    // An auto-submitted form of another site, without the token or with a
    // wrong one, gets the question again.
    for confirm in [None, Some("forged-token")] {
        let mut post = vec![("client_id", CLIENT)];
        post.extend(confirm.map(|c| ("confirm", c)));
        let again = browser
            .post(idp.url("/end_session"))
            .form(&post)
            .send()
            .await
            .expect("post");
        assert_eq!(again.status(), 200);
        assert!(
            again
                .text()
                .await
                .expect("html")
                .contains("id=\"sign-out\"")
        );
    }
    // Another browser's token does not sign this one out.
    let other = cookie_http();
    browser_sign_in(&idp, &other, "bob").await;
    let bobs = hidden_fields(
        &other
            .get(idp.url("/end_session"))
            .send()
            .await
            .expect("get")
            .text()
            .await
            .expect("html"),
    );
    let not_ours = browser
        .post(idp.url("/end_session"))
        .form(&bobs)
        .send()
        .await
        .expect("post");
    assert!(
        not_ours
            .text()
            .await
            .expect("html")
            .contains("id=\"sign-out\""),
        "asked again"
    );
    assert_eq!(idp.control().sessions(None).len(), 2);
    assert!(cookie_still_signs_in(&idp, &browser).await);

    // The form itself signs out.
    let done = browser
        .post(idp.url("/end_session"))
        .form(&form)
        .send()
        .await
        .expect("post");
    assert_eq!(done.status(), 200);
    assert!(
        done.text()
            .await
            .expect("html")
            .contains("You are signed out")
    );
    assert!(idp.control().sessions(Some("alice")).is_empty());
    assert_eq!(idp.control().sessions(Some("bob")).len(), 1, "bob stays");
    assert!(!cookie_still_signs_in(&idp, &browser).await);
    assert_eq!(
        refresh(&idp, t["refresh_token"].as_str().expect("rt"))
            .await
            .1["error"],
        "invalid_grant"
    );
}

#[tokio::test]
async fn a_hint_for_the_browsers_user_signs_out_at_once_and_one_for_another_user_asks() {
    let idp = idp().await;
    let browser = cookie_http();
    browser_sign_in(&idp, &browser, "alice").await;
    let bob = browser_sign_in(&idp, &cookie_http(), "bob").await;

    // Bob's ID token in alice's browser: not this session's user, so ask.
    let asked = browser
        .get(idp.url("/end_session"))
        .query(&[
            ("id_token_hint", bob["id_token"].as_str().expect("id")),
            ("post_logout_redirect_uri", "http://127.0.0.1/logged-out"),
            ("state", "asked"),
        ])
        .send()
        .await
        .expect("get");
    assert_eq!(asked.status(), 200);
    let html = asked.text().await.expect("html");
    assert!(html.contains("id=\"sign-out\""), "{html}");
    assert_eq!(idp.control().sessions(None).len(), 2, "nothing ended");
    // Confirmed, it ends the browser's session (not bob's, elsewhere) and
    // goes back where the request said, with its state.
    let confirmed = browser
        .post(idp.url("/end_session"))
        .form(&hidden_fields(&html))
        .send()
        .await
        .expect("post");
    assert_eq!(confirmed.status(), 303);
    assert_eq!(
        confirmed.headers()["location"],
        "http://127.0.0.1/logged-out?state=asked"
    );
    assert!(idp.control().sessions(Some("alice")).is_empty());
    assert_eq!(idp.control().sessions(Some("bob")).len(), 1);

    // Alice's own hint: signed out at once, back to the registered URI with the state.
    let alice = browser_sign_in(&idp, &browser, "alice").await;
    let done = browser
        .get(idp.url("/end_session"))
        .query(&[
            ("id_token_hint", alice["id_token"].as_str().expect("id")),
            ("post_logout_redirect_uri", "http://127.0.0.1/logged-out"),
            ("state", "bye"),
        ])
        .send()
        .await
        .expect("get");
    assert_eq!(done.status(), 303);
    assert_eq!(
        done.headers()["location"],
        "http://127.0.0.1/logged-out?state=bye"
    );
    assert!(idp.control().sessions(Some("alice")).is_empty());
    assert_eq!(idp.control().sessions(Some("bob")).len(), 1);
    assert!(!cookie_still_signs_in(&idp, &browser).await);

    // An access token is no ID token hint.
    let refused = http()
        .get(idp.url("/end_session"))
        .query(&[("id_token_hint", bob["access_token"].as_str().expect("at"))])
        .send()
        .await
        .expect("get");
    assert_eq!(refused.status(), 400);
}

#[tokio::test]
async fn a_sign_out_form_older_than_ten_minutes_asks_again() {
    let idp = idp().await;
    let browser = cookie_http();
    browser_sign_in(&idp, &browser, "carol").await;
    let page = |browser: reqwest::Client| {
        let url = idp.url("/end_session");
        async move {
            browser
                .get(url)
                .send()
                .await
                .expect("get")
                .text()
                .await
                .expect("html")
        }
    };
    let old_form = hidden_fields(&page(browser.clone()).await);
    idp.control()
        .advance_clock(std::time::Duration::from_secs(601));
    let late = browser
        .post(idp.url("/end_session"))
        .form(&old_form)
        .send()
        .await
        .expect("post");
    assert!(
        late.text().await.expect("html").contains("id=\"sign-out\""),
        "asked again"
    );
    assert_eq!(idp.control().sessions(Some("carol")).len(), 1);
    // A fresh form works, once.
    let form = hidden_fields(&page(browser.clone()).await);
    for expected in ["You are signed out", "There was no session to end"] {
        let answer = browser
            .post(idp.url("/end_session"))
            .form(&form)
            .send()
            .await
            .expect("post");
        assert!(answer.text().await.expect("html").contains(expected));
    }
    assert!(idp.control().sessions(Some("carol")).is_empty());
}
