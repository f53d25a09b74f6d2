//! The login page, the sign-out question and the device verification page
//! driven by a real headless Chromium over WebDriver: the clicks, typing,
//! form posts and redirects a browser really makes, which plain HTTP tests
//! cannot show. The tiny W3C
//! WebDriver client is shared with the end-to-end tests
//! (`sessionkit_tests::webdriver`, which says where chromedriver and
//! Chromium are taken from). Without chromedriver the tests skip, unless
//! `SESSIONKIT_REQUIRE_BROWSER` is set (as in CI), where they fail.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};
use sessionkit_mock_idp::MockIdp;
use sessionkit_tests::webdriver::{Browser, WAIT};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::support::{self, CLIENT, Pkce};

const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

// ---------------------------------------------------------------------------
// The login page
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn picking_a_user_signs_them_in_and_redirects_with_code_state_and_iss() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let idp = support::idp().await;
    let mut receiver = Receiver::start().await;
    let pkce = support::pkce();

    browser
        .goto(&authorize_url(&idp, &pkce, &receiver.redirect_uri(), &[]))
        .await;
    assert_eq!(browser.text("#scopes").await, "openid profile");
    browser.click("#pick-alice").await;

    let callback = receiver.next().await;
    assert_eq!(
        callback.get("state").map(String::as_str),
        Some("st-123"),
        "{callback:?}"
    );
    assert_eq!(
        callback.get("iss").map(String::as_str),
        Some(idp.issuer()),
        "{callback:?}"
    );
    assert!(!callback.contains_key("error"), "{callback:?}");
    assert!(
        browser
            .current_url()
            .await
            .starts_with(&receiver.redirect_uri()),
        "the browser followed the redirect to the client"
    );
    let claims = redeem(&idp, &callback, &receiver.redirect_uri(), &pkce).await;
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["nonce"], "n-456");
    browser.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_shown_on_the_page_and_the_right_one_signs_in() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let idp = support::idp().await;
    let mut receiver = Receiver::start().await;
    let pkce = support::pkce();

    browser
        .goto(&authorize_url(&idp, &pkce, &receiver.redirect_uri(), &[]))
        .await;
    assert!(
        browser.find("#problem").await.is_err(),
        "no problem shown before a try"
    );
    browser.type_into("#username", "bob").await;
    browser.type_into("#password", "not-bobs-password").await;
    browser.click("#sign-in").await;

    let problem = browser.text("#problem").await;
    assert!(problem.contains("wrong name or password"), "{problem}");
    assert!(
        browser.current_url().await.starts_with(idp.issuer()),
        "the browser stays on the provider"
    );
    receiver.assert_no_callback();

    // The same sign-in request is still open: the right password completes it.
    browser.type_into("#username", "bob").await;
    browser.type_into("#password", "bob").await;
    browser.click("#sign-in").await;

    let callback = receiver.next().await;
    assert_eq!(
        callback.get("state").map(String::as_str),
        Some("st-123"),
        "{callback:?}"
    );
    let claims = redeem(&idp, &callback, &receiver.redirect_uri(), &pkce).await;
    assert_eq!(claims["sub"], "bob");
    receiver.assert_no_callback();
    browser.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_and_deny_redirect_with_access_denied_and_the_state() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let idp = support::idp().await;
    let mut receiver = Receiver::start().await;
    let redirect_uri = receiver.redirect_uri();

    // Cancel on the sign-in form.
    browser
        .goto(&authorize_url(&idp, &support::pkce(), &redirect_uri, &[]))
        .await;
    browser.click("#cancel").await;
    let callback = receiver.next().await;
    assert_denied(&idp, &callback);
    assert!(
        idp.control().sessions(None).is_empty(),
        "cancel signs nobody in"
    );

    // Sign alice in, so the next request with prompt=consent asks her to allow or deny.
    browser
        .goto(&authorize_url(&idp, &support::pkce(), &redirect_uri, &[]))
        .await;
    browser.click("#pick-alice").await;
    assert!(receiver.next().await.contains_key("code"));

    let consent = [("prompt", "consent")];
    browser
        .goto(&authorize_url(
            &idp,
            &support::pkce(),
            &redirect_uri,
            &consent,
        ))
        .await;
    assert_eq!(browser.text("#current-user").await, "alice");
    browser.click("#deny").await;
    let callback = receiver.next().await;
    assert_denied(&idp, &callback);
    browser.quit().await;
}

fn assert_denied(idp: &MockIdp, callback: &HashMap<String, String>) {
    assert_eq!(
        callback.get("error").map(String::as_str),
        Some("access_denied"),
        "{callback:?}"
    );
    assert_eq!(
        callback.get("state").map(String::as_str),
        Some("st-123"),
        "{callback:?}"
    );
    assert_eq!(
        callback.get("iss").map(String::as_str),
        Some(idp.issuer()),
        "{callback:?}"
    );
    assert!(!callback.contains_key("code"), "{callback:?}");
}

/// The authorization URL of `support::auth_params` with our own loopback
/// redirect URI (the registered one matches on any port) and `extra` params.
fn authorize_url(idp: &MockIdp, pkce: &Pkce, redirect_uri: &str, extra: &[(&str, &str)]) -> String {
    let mut params = support::auth_params(pkce, "openid profile");
    for (name, value) in &mut params {
        if name == "redirect_uri" {
            redirect_uri.clone_into(value);
        }
    }
    let mut url = url::Url::parse(&idp.url("/authorize")).expect("issuer is a URL");
    url.query_pairs_mut()
        .extend_pairs(&params)
        .extend_pairs(extra);
    url.into()
}

/// Redeems the code of `callback` at the token endpoint: the ID token's claims.
async fn redeem(
    idp: &MockIdp,
    callback: &HashMap<String, String>,
    redirect_uri: &str,
    pkce: &Pkce,
) -> Value {
    let code = callback
        .get("code")
        .unwrap_or_else(|| panic!("no code in {callback:?}"));
    let (status, body) = support::token_request(
        idp,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("client_id", CLIENT),
            ("code_verifier", &pkce.verifier),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let id_token = body["id_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no id_token in {body}"));
    support::decode(id_token).1
}

// ---------------------------------------------------------------------------
// The device verification page
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_page_prefilled_from_the_complete_uri_approves_a_picked_user() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let idp = support::idp().await;
    let device = device_authorization(&idp).await;
    let device_code = device["device_code"].as_str().expect("device_code");
    let user_code = device["user_code"].as_str().expect("user_code");

    let (status, body) = poll(&idp, device_code).await;
    assert_eq!(
        (status, &body["error"]),
        (400, &json!("authorization_pending")),
        "{body}"
    );

    browser
        .goto(
            device["verification_uri_complete"]
                .as_str()
                .expect("verification_uri_complete"),
        )
        .await;
    assert_eq!(browser.value("#user_code").await, user_code);
    browser.click("#pick-carol").await;
    browser.click("#approve").await;
    let result = browser.text("#result").await;
    assert!(result.starts_with("Approved"), "{result}");

    // The provider's clock drives the polling interval: step past it.
    idp.control().advance_clock(Duration::from_secs(6));
    let (status, body) = poll(&idp, device_code).await;
    assert_eq!(status, 200, "{body}");
    let (_, claims) = support::decode(body["id_token"].as_str().expect("id_token"));
    assert_eq!(claims["sub"], "carol");
    assert!(body["access_token"].is_string(), "{body}");
    assert!(
        body["refresh_token"].is_string(),
        "offline_access gives a refresh token: {body}"
    );
    browser.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_page_deny_makes_the_poll_answer_access_denied() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let idp = support::idp().await;
    let device = device_authorization(&idp).await;
    let device_code = device["device_code"].as_str().expect("device_code");

    browser
        .goto(
            device["verification_uri_complete"]
                .as_str()
                .expect("verification_uri_complete"),
        )
        .await;
    browser.click("#deny").await;
    let result = browser.text("#result").await;
    assert!(result.starts_with("Denied"), "{result}");

    let (status, body) = poll(&idp, device_code).await;
    assert_eq!(
        (status, &body["error"]),
        (400, &json!("access_denied")),
        "{body}"
    );
    assert!(body.get("access_token").is_none(), "{body}");
    browser.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_page_takes_a_hand_typed_code_and_a_password() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let idp = support::idp().await;
    let device = device_authorization(&idp).await;
    let device_code = device["device_code"].as_str().expect("device_code");
    let user_code = device["user_code"].as_str().expect("user_code");
    let typed = user_code.replace('-', "").to_lowercase();

    browser
        .goto(
            device["verification_uri"]
                .as_str()
                .expect("verification_uri"),
        )
        .await;
    assert_eq!(
        browser.value("#user_code").await,
        "",
        "no code without user_code"
    );
    browser.type_into("#user_code", &typed).await;
    browser.type_into("#username", "bob").await;
    browser.type_into("#password", "wrong").await;
    browser.click("#approve").await;

    // A wrong password keeps the page, with the problem shown and the code kept.
    let problem = browser.text("#problem").await;
    assert!(problem.contains("right name and password"), "{problem}");
    let kept = browser.value("#user_code").await;
    assert_eq!(
        kept.replace('-', "").to_uppercase(),
        user_code.replace('-', ""),
        "code kept: {kept}"
    );
    let (status, body) = poll(&idp, device_code).await;
    assert_eq!(
        (status, &body["error"]),
        (400, &json!("authorization_pending")),
        "{body}"
    );

    browser.type_into("#username", "bob").await;
    browser.type_into("#password", "bob").await;
    browser.click("#approve").await;
    let result = browser.text("#result").await;
    assert!(result.starts_with("Approved"), "{result}");

    idp.control().advance_clock(Duration::from_secs(6));
    let (status, body) = poll(&idp, device_code).await;
    assert_eq!(status, 200, "{body}");
    let (_, claims) = support::decode(body["id_token"].as_str().expect("id_token"));
    assert_eq!(claims["sub"], "bob");
    browser.quit().await;
}

async fn device_authorization(idp: &MockIdp) -> Value {
    let response = support::http()
        .post(idp.url("/device_authorization"))
        .form(&[("client_id", CLIENT), ("scope", "openid offline_access")])
        .send()
        .await
        .expect("device authorization");
    assert_eq!(response.status(), 200);
    response.json().await.expect("device authorization JSON")
}

async fn poll(idp: &MockIdp, device_code: &str) -> (u16, Value) {
    support::token_request(
        idp,
        &[
            ("grant_type", DEVICE_GRANT),
            ("device_code", device_code),
            ("client_id", CLIENT),
        ],
    )
    .await
}

// ---------------------------------------------------------------------------
// Sign-out (RP-initiated logout)
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_link_to_sign_out_asks_first_and_the_button_signs_out() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let idp = support::idp().await;
    let mut receiver = Receiver::start().await;
    let redirect_uri = receiver.redirect_uri();
    browser
        .goto(&authorize_url(&idp, &support::pkce(), &redirect_uri, &[]))
        .await;
    browser.click("#pick-alice").await;
    assert!(receiver.next().await.contains_key("code"));

    // A link any site can show: no id_token_hint.
    let end_session = idp.url("/end_session");
    browser.goto(&end_session).await;
    assert_eq!(
        browser.text("#question").await,
        format!("Sign out of {}?", idp.issuer())
    );
    assert_eq!(browser.text("#current-user").await, "alice");
    assert_eq!(
        idp.control().sessions(Some("alice")).len(),
        1,
        "asking ends nothing"
    );
    // The session cookie still signs in without a page.
    browser
        .goto(&authorize_url(&idp, &support::pkce(), &redirect_uri, &[]))
        .await;
    assert!(receiver.next().await.contains_key("code"));

    // Asked again, the button signs out.
    browser.goto(&end_session).await;
    browser.click("#sign-out").await;
    assert!(
        browser
            .text("#signed-out")
            .await
            .contains("You are signed out"),
        "the form's POST ended the session"
    );
    assert!(idp.control().sessions(Some("alice")).is_empty());
    browser
        .goto(&authorize_url(&idp, &support::pkce(), &redirect_uri, &[]))
        .await;
    assert_eq!(browser.text("#pick-alice").await, "alice", "the login page");
    receiver.assert_no_callback();
    browser.quit().await;
}

// ---------------------------------------------------------------------------
// The client's redirect receiver
// ---------------------------------------------------------------------------

/// A loopback HTTP server standing in for the client's redirect URI: answers
/// every request with `200 ok` and passes on the request lines for `/callback`.
struct Receiver {
    port: u16,
    requests: mpsc::UnboundedReceiver<String>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let port = listener.local_addr().expect("receiver address").port();
        let (tx, requests) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            // Dropping the set (when the task is aborted) aborts the connections.
            let mut connections = JoinSet::new();
            while let Ok((mut stream, _)) = listener.accept().await {
                let tx = tx.clone();
                connections.spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&head);
                    let line = head.lines().next().unwrap_or_default().to_owned();
                    if line.split(' ').nth(1).is_some_and(|target| target.starts_with("/callback")) {
                        let _ = tx.send(line);
                    }
                    let response = "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\
                                    connection: close\r\n\r\nok";
                    let _ = stream.write_all(response.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
                while connections.try_join_next().is_some() {}
            }
        });
        Self {
            port,
            requests,
            task,
        }
    }

    fn redirect_uri(&self) -> String {
        format!("http://127.0.0.1:{}/callback", self.port)
    }

    /// The query parameters of the next redirect to the client.
    async fn next(&mut self) -> HashMap<String, String> {
        let line = tokio::time::timeout(WAIT, self.requests.recv())
            .await
            .unwrap_or_else(|_| panic!("no redirect reached the client within {WAIT:?}"))
            .expect("receiver running");
        let target = line
            .split(' ')
            .nth(1)
            .unwrap_or_else(|| panic!("bad request line {line:?}"));
        let url = url::Url::parse(&format!("http://127.0.0.1{target}")).expect("request target");
        url.query_pairs().into_owned().collect()
    }

    fn assert_no_callback(&mut self) {
        if let Ok(line) = self.requests.try_recv() {
            panic!("unexpected redirect to the client: {line}");
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}
