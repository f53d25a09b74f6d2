//! The login page, the sign-out question and the device verification page
//! driven by a real headless Chromium over WebDriver: the clicks, typing,
//! form posts and redirects a browser really makes, which plain HTTP tests
//! cannot show. A tiny W3C
//! WebDriver client lives at the bottom of this file, so no browser crate is
//! needed.
//!
//! Chromedriver is taken from `CHROMEDRIVER`, else `/usr/bin/chromedriver`
//! (Debian: `apt-get install chromium chromium-driver`); Chromium from
//! `CHROMIUM`, else `/usr/bin/chromium`. Without chromedriver the tests skip,
//! unless `SESSIONKIT_REQUIRE_BROWSER` is set (as in CI), where they fail.
//! Every test starts its own chromedriver on a free port and its own browser
//! with a fresh profile, so they run in parallel with everything else.

use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use sessionkit_mock_idp::MockIdp;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::support::{self, CLIENT, Pkce};

/// How long to wait for an element, a redirect or chromedriver's readiness.
const WAIT: Duration = Duration::from_secs(10);
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

// ---------------------------------------------------------------------------
// A tiny W3C WebDriver client
// ---------------------------------------------------------------------------

const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Where chromedriver is, or `None` (after saying so) when the test should skip.
fn chromedriver_path() -> Option<PathBuf> {
    let path = std::env::var_os("CHROMEDRIVER")
        .map_or_else(|| PathBuf::from("/usr/bin/chromedriver"), PathBuf::from);
    if path.is_file() {
        return Some(path);
    }
    if std::env::var_os("SESSIONKIT_REQUIRE_BROWSER").is_some() {
        panic!(
            "SESSIONKIT_REQUIRE_BROWSER is set but chromedriver is not at {} \
             (install chromium chromium-driver, or point CHROMEDRIVER at it)",
            path.display()
        );
    }
    eprintln!("skipping browser test: chromedriver not found (install chromium chromium-driver)");
    None
}

/// An error answered by chromedriver (`{"value": {"error", "message"}}`).
#[derive(Debug)]
struct WebDriverError {
    error: String,
    message: String,
}

/// A chromedriver process on a free loopback port; killed on drop.
struct Chromedriver {
    child: Child,
    addr: SocketAddr,
}

impl Chromedriver {
    async fn start(path: &Path, http: &reqwest::Client) -> Self {
        // The port is free when we look; should someone take it before
        // chromedriver binds it, chromedriver exits and we try another.
        for _ in 0..3 {
            let addr = {
                let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
                listener.local_addr().expect("local address")
            };
            let child = Command::new(path)
                .arg(format!("--port={}", addr.port()))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("start {}: {e}", path.display()));
            let mut driver = Self { child, addr };
            let deadline = Instant::now() + WAIT;
            loop {
                if let Ok(Some(_exit)) = driver.child.try_wait() {
                    break;
                }
                let status = http.get(format!("http://{addr}/status")).send().await;
                if let Ok(response) = status {
                    let ready = response
                        .json::<Value>()
                        .await
                        .is_ok_and(|v| v["value"]["ready"] == true);
                    if ready {
                        return driver;
                    }
                }
                assert!(
                    Instant::now() < deadline,
                    "chromedriver was not ready within {WAIT:?}"
                );
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }
        panic!("chromedriver exited right after starting, three times")
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh browser profile directory, removed on drop.
struct Profile(PathBuf);

impl Profile {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "sessionkit-browser-{}-{}",
            std::process::id(),
            support::random(12)
        ));
        std::fs::create_dir_all(&dir).expect("create the profile directory");
        Self(dir)
    }
}

impl Drop for Profile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A WebDriver session in a headless Chromium. Dropping it ends the session
/// (closing the browser), then stops chromedriver and removes the profile.
struct Browser {
    http: reqwest::Client,
    session: String,
    ended: bool,
    // Dropped in this order, after `Drop::drop` ended the session.
    driver: Chromedriver,
    _profile: Profile,
}

impl Browser {
    /// Starts chromedriver and a browser, or `None` when the test should skip.
    async fn start() -> Option<Self> {
        let path = chromedriver_path()?;
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client");
        let driver = Chromedriver::start(&path, &http).await;
        let profile = Profile::new();
        let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
        let capabilities = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "pageLoadStrategy": "normal",
                    "timeouts": { "implicit": 0, "pageLoad": 10_000, "script": 5_000 },
                    "goog:chromeOptions": {
                        "binary": chromium,
                        "args": [
                            "--headless",
                            "--no-sandbox",
                            "--disable-gpu",
                            "--disable-quic",
                            "--no-first-run",
                            "--disable-background-networking",
                            "--disable-component-update",
                            "--disable-sync",
                            "--disable-dev-shm-usage",
                            format!("--user-data-dir={}", profile.0.display()),
                        ],
                    },
                },
            },
        });
        let response = http
            .post(format!("http://{}/session", driver.addr))
            .json(&capabilities)
            .send()
            .await
            .expect("new session request");
        let body: Value = response.json().await.expect("new session JSON");
        let Some(id) = body["value"]["sessionId"].as_str() else {
            panic!("chromedriver could not start {chromium}: {body}");
        };
        Some(Self {
            session: format!("http://{}/session/{id}", driver.addr),
            http,
            ended: false,
            driver,
            _profile: profile,
        })
    }

    async fn command(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, WebDriverError> {
        let mut request = self.http.request(method, format!("{}{path}", self.session));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("webdriver {path}: {e}"));
        let ok = response.status().is_success();
        let body: Value = response
            .json()
            .await
            .unwrap_or_else(|e| panic!("webdriver {path}: {e}"));
        let value = body["value"].clone();
        if ok {
            Ok(value)
        } else {
            Err(WebDriverError {
                error: value["error"]
                    .as_str()
                    .unwrap_or("unknown error")
                    .to_owned(),
                message: value["message"].as_str().unwrap_or_default().to_owned(),
            })
        }
    }

    async fn must(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        match self.command(method, path, body).await {
            Ok(value) => value,
            Err(e) => panic!("webdriver {path}: {}: {}", e.error, e.message),
        }
    }

    async fn goto(&self, url: &str) {
        self.must(Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    async fn current_url(&self) -> String {
        let url = self.must(Method::GET, "/url", None).await;
        url.as_str().expect("URL string").to_owned()
    }

    async fn source(&self) -> String {
        let source = self.must(Method::GET, "/source", None).await;
        source.as_str().unwrap_or_default().to_owned()
    }

    /// The element matching the CSS selector on the current page, now.
    async fn find(&self, css: &str) -> Result<String, WebDriverError> {
        let found = self
            .command(
                Method::POST,
                "/element",
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await?;
        Ok(found[ELEMENT_KEY]
            .as_str()
            .expect("element reference")
            .to_owned())
    }

    /// Runs `action` on the element matching `css`, retrying while the page
    /// is still loading (no such element, stale element) until [`WAIT`].
    async fn on_element<F, Fut>(&self, css: &str, action: F) -> Value
    where
        F: Fn(String) -> Fut,
        Fut: std::future::Future<Output = Result<Value, WebDriverError>>,
    {
        let deadline = Instant::now() + WAIT;
        loop {
            let result = match self.find(css).await {
                Ok(element) => action(element).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(value) => return value,
                Err(e) if Instant::now() < deadline && retryable(&e) => {
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
                Err(e) => panic!(
                    "{css}: {}: {}\nat {}\n{}",
                    e.error,
                    e.message,
                    self.current_url().await,
                    self.source().await
                ),
            }
        }
    }

    async fn click(&self, css: &str) {
        self.on_element(css, |e| async move {
            self.command(
                Method::POST,
                &format!("/element/{e}/click"),
                Some(json!({})),
            )
            .await
        })
        .await;
    }

    /// Clears the field and types `text` into it.
    async fn type_into(&self, css: &str, text: &str) {
        self.on_element(css, |e| async move {
            self.command(
                Method::POST,
                &format!("/element/{e}/clear"),
                Some(json!({})),
            )
            .await?;
            self.command(
                Method::POST,
                &format!("/element/{e}/value"),
                Some(json!({ "text": text })),
            )
            .await
        })
        .await;
    }

    async fn text(&self, css: &str) -> String {
        let text = self
            .on_element(css, |e| async move {
                self.command(Method::GET, &format!("/element/{e}/text"), None)
                    .await
            })
            .await;
        text.as_str().expect("text").to_owned()
    }

    /// The `value` property of a form field.
    async fn value(&self, css: &str) -> String {
        let value = self
            .on_element(css, |e| async move {
                self.command(Method::GET, &format!("/element/{e}/property/value"), None)
                    .await
            })
            .await;
        value.as_str().expect("value").to_owned()
    }

    /// Ends the session and closes the browser (dropping does the same).
    async fn quit(mut self) {
        self.ended = true;
        let _ = self.command(Method::DELETE, "", None).await;
    }

    /// `DELETE /session/{id}` over a plain socket: `Drop` cannot await.
    fn end_session_blocking(&self) {
        let Some(path) = self
            .session
            .strip_prefix(&format!("http://{}", self.driver.addr))
        else {
            return;
        };
        let Ok(mut stream) = TcpStream::connect_timeout(&self.driver.addr, Duration::from_secs(2))
        else {
            return;
        };
        let _ = stream.set_read_timeout(Some(WAIT));
        let _ = stream.set_write_timeout(Some(WAIT));
        let request = format!(
            "DELETE {path} HTTP/1.1\r\nhost: {}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            self.driver.addr
        );
        if stream.write_all(request.as_bytes()).is_err() {
            return;
        }
        // Wait for the answer's first bytes: by then the browser has quit.
        let mut buf = [0u8; 1024];
        let _ = stream.read(&mut buf);
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.ended {
            self.end_session_blocking();
        }
    }
}

fn retryable(e: &WebDriverError) -> bool {
    matches!(
        e.error.as_str(),
        "no such element" | "stale element reference"
    )
}
