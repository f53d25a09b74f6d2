//! A tiny W3C WebDriver client for tests that drive a real headless
//! Chromium: the clicks, typing, form posts and redirects a browser really
//! makes, which plain HTTP tests cannot show. No browser crate is needed.
//!
//! Chromedriver is taken from `CHROMEDRIVER`, else `/usr/bin/chromedriver`
//! (Debian: `apt-get install chromium chromium-driver`); Chromium from
//! `CHROMIUM`, else `/usr/bin/chromium`. Without chromedriver
//! [`Browser::start`] says so and returns `None` (the test skips), unless
//! `SESSIONKIT_REQUIRE_BROWSER` is set (as in CI), where it panics. Every
//! browser has its own chromedriver on a free port and a fresh profile, so
//! tests run in parallel with everything else.
//!
//! ```no_run
//! # async fn demo() {
//! use sessionkit_tests::webdriver::Browser;
//!
//! let Some(browser) = Browser::start().await else {
//!     return; // no chromedriver here: skip
//! };
//! browser.goto("http://127.0.0.1:8080/").await;
//! browser.type_into("input[name=login]", "alice").await;
//! browser.click("button[type=submit]").await;
//! println!("now at {}", browser.current_url().await);
//! browser.quit().await;
//! # }
//! ```

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::scratch::ScratchDir;

/// How long to wait for an element, a redirect or chromedriver's readiness.
pub const WAIT: Duration = Duration::from_secs(10);

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
pub struct WebDriverError {
    /// The W3C error code (`no such element`, ...).
    pub error: String,
    /// Chromedriver's message.
    pub message: String,
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

/// A WebDriver session in a headless Chromium. Dropping it ends the session
/// (closing the browser), then stops chromedriver and removes the profile.
pub struct Browser {
    http: reqwest::Client,
    session: String,
    ended: bool,
    // Dropped in this order, after `Drop::drop` ended the session.
    driver: Chromedriver,
    _profile: ScratchDir,
}

impl Browser {
    /// Starts chromedriver and a browser, or `None` when the test should skip.
    pub async fn start() -> Option<Self> {
        let path = chromedriver_path()?;
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client");
        let driver = Chromedriver::start(&path, &http).await;
        let profile = ScratchDir::new("sessionkit-browser");
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
                            format!("--user-data-dir={}", profile.path().display()),
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

    /// Sends a WebDriver command of this session (`path` after
    /// `/session/{id}`): its `value`, or the error chromedriver answered.
    pub async fn command(
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

    /// [`Browser::command`] that must succeed (else the test panics).
    pub async fn must(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        match self.command(method, path, body).await {
            Ok(value) => value,
            Err(e) => panic!("webdriver {path}: {}: {}", e.error, e.message),
        }
    }

    /// Navigates to `url` and waits for the page to load.
    pub async fn goto(&self, url: &str) {
        self.must(Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    /// The URL the browser is at now.
    pub async fn current_url(&self) -> String {
        let url = self.must(Method::GET, "/url", None).await;
        url.as_str().expect("URL string").to_owned()
    }

    /// The current page's HTML.
    pub async fn source(&self) -> String {
        let source = self.must(Method::GET, "/source", None).await;
        source.as_str().unwrap_or_default().to_owned()
    }

    /// The element matching the CSS selector on the current page, now.
    pub async fn find(&self, css: &str) -> Result<String, WebDriverError> {
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
    pub async fn on_element<F, Fut>(&self, css: &str, action: F) -> Value
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

    /// Clicks the element matching `css` (waiting for it up to [`WAIT`]).
    pub async fn click(&self, css: &str) {
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
    pub async fn type_into(&self, css: &str, text: &str) {
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

    /// The visible text of the element matching `css`.
    pub async fn text(&self, css: &str) -> String {
        let text = self
            .on_element(css, |e| async move {
                self.command(Method::GET, &format!("/element/{e}/text"), None)
                    .await
            })
            .await;
        text.as_str().expect("text").to_owned()
    }

    /// The `value` property of a form field.
    pub async fn value(&self, css: &str) -> String {
        let value = self
            .on_element(css, |e| async move {
                self.command(Method::GET, &format!("/element/{e}/property/value"), None)
                    .await
            })
            .await;
        value.as_str().expect("value").to_owned()
    }

    /// Ends the session and closes the browser (dropping does the same).
    pub async fn quit(mut self) {
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

/// Errors that mean the page is still loading.
fn retryable(e: &WebDriverError) -> bool {
    matches!(
        e.error.as_str(),
        "no such element" | "stale element reference"
    ) || (e.error == "unknown error"
        // Chromium's way of saying "stale" when the page navigated between
        // finding the element and acting on it.
        && e.message.contains("does not belong to the document"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(error: &str, message: &str) -> WebDriverError {
        WebDriverError {
            error: error.to_owned(),
            message: message.to_owned(),
        }
    }

    #[test]
    fn a_page_still_loading_or_navigating_is_retried_other_errors_are_not() {
        assert!(retryable(&error("no such element", "")));
        assert!(retryable(&error("stale element reference", "")));
        assert!(retryable(&error(
            "unknown error",
            r#"unknown error: unhandled inspector error: {"code":-32000,"message":"Node with given id does not belong to the document"}"#
        )));
        assert!(!retryable(&error("unknown error", "chrome not reachable")));
        assert!(!retryable(&error("invalid selector", "")));
    }
}
