//! panva/oidc-provider (npm `oidc-provider` 9, `tests/oidc-provider`) in a
//! `node` child process on a free loopback port: started and stopped by a
//! test, what it logged, the interop client's refresh by hand, and a
//! scripted user agent that gets through its own login and consent pages.
//! Used by `tests/tests/oidc_provider` and by the `chat` tests in
//! `examples/tests`.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

/// The client `server.mjs` registers: public, native, loopback redirects.
pub const CLIENT: &str = "sessionkit-interop";

/// How long the provider may take to start, and a user to get through its
/// pages (generous: node starts slowly on a loaded CI machine; nothing
/// waits this long when all is well).
pub const START: Duration = Duration::from_secs(60);

/// Where the node project is (`tests/oidc-provider`).
fn project_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("oidc-provider")
}

/// panva/oidc-provider in a `node` child process on a free loopback port,
/// stopped on drop (its stdin closes, and it is killed). Its stderr is kept
/// and shown when the test fails.
pub struct OidcProvider {
    issuer: String,
    child: Child,
    _stdin: ChildStdin,
    stderr: Arc<Mutex<Vec<String>>>,
    http: reqwest::Client,
}

impl OidcProvider {
    /// Starts the provider, or `None` (after saying why) when `node` or the
    /// npm packages are missing and `SESSIONKIT_REQUIRE_OIDC_PROVIDER` is not
    /// set (with it set, as in CI, that panics).
    pub fn start() -> Option<Self> {
        Self::start_with(&[])
    }

    /// [`OidcProvider::start`] with `env` set for `server.mjs` (such as
    /// `SESSIONKIT_REQUIRE_PAR=1`).
    pub fn start_with(env: &[(&str, &str)]) -> Option<Self> {
        let dir = project_dir();
        let node = std::env::var_os("NODE").unwrap_or_else(|| "node".into());
        let installed = dir
            .join("node_modules/oidc-provider/package.json")
            .is_file();
        let node_runs = Command::new(&node)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !installed || !node_runs {
            let why = if node_runs {
                format!(
                    "{} has no node_modules (run `npm ci --prefix {}`)",
                    dir.display(),
                    dir.display()
                )
            } else {
                "node is not installed (or set NODE to it)".to_owned()
            };
            assert!(
                std::env::var_os("SESSIONKIT_REQUIRE_OIDC_PROVIDER").is_none(),
                "SESSIONKIT_REQUIRE_OIDC_PROVIDER is set but {why}"
            );
            eprintln!("skipping oidc-provider test: {why}");
            return None;
        }
        let mut child = Command::new(&node)
            .arg(dir.join("server.mjs"))
            .current_dir(&dir)
            .env("NODE_ENV", "development")
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start node");
        let stdin = child.stdin.take().expect("stdin");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let lines = stderr.clone();
        let err = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                lines.lock().unwrap_or_else(|e| e.into_inner()).push(line);
            }
        });
        let (tx, rx) = std::sync::mpsc::channel();
        let out = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            let mut lines = BufReader::new(out).lines();
            let _ = tx.send(lines.next());
            // Keep reading so the provider never blocks on a full pipe.
            for _ in lines {}
        });
        let first = rx.recv_timeout(START);
        let provider = |issuer: String| Self {
            issuer,
            child,
            _stdin: stdin,
            stderr,
            http: reqwest::Client::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
        };
        match first {
            Ok(Some(Ok(line))) => match line.strip_prefix("oidc-provider listening on ") {
                Some(issuer) => Some(provider(issuer.trim().to_owned())),
                None => panic!("unexpected first line from the provider: {line:?}"),
            },
            other => {
                let provider = provider(String::new());
                panic!(
                    "the provider did not say where it listens within {START:?} ({other:?}):\n{}",
                    provider.stderr_text()
                )
            }
        }
    }

    /// The issuer, `http://127.0.0.1:PORT`.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// A URL at the provider.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }

    fn stderr_text(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .join("\n")
    }

    /// What the provider has logged so far: its events and requests.
    pub async fn log(&self) -> Log {
        let log: Value = self
            .http
            .get(self.url("/_test/log"))
            .send()
            .await
            .expect("log request")
            .json()
            .await
            .expect("log JSON");
        Log(log)
    }

    /// A refresh-token grant sent by hand (as a stolen or stale copy of the
    /// token would be): the status and the OAuth `error`, if any.
    pub async fn refresh_by_hand(&self, refresh_token: &str) -> (u16, Option<String>) {
        let response = self
            .http
            .post(self.url("/token"))
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
                ("client_id", CLIENT),
            ])
            .send()
            .await
            .expect("token request");
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        (status, body["error"].as_str().map(str::to_owned))
    }

    /// `GET /me` (userinfo) with `access_token`: the status.
    pub async fn userinfo_status(&self, access_token: &str) -> u16 {
        self.http
            .get(self.url("/me"))
            .bearer_auth(access_token)
            .send()
            .await
            .expect("userinfo request")
            .status()
            .as_u16()
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("oidc-provider stderr:\n{}", self.stderr_text());
        }
    }
}

/// The provider's log (`GET /_test/log`): `{"events": [...], "requests": [...]}`.
#[derive(Debug, Clone)]
pub struct Log(Value);

impl Log {
    fn list(&self, which: &str) -> &[Value] {
        self.0[which].as_array().map_or(&[], Vec::as_slice)
    }

    /// How many events named `event` carry `grant_type` (any, when `None`).
    pub fn events(&self, event: &str, grant_type: Option<&str>) -> usize {
        self.list("events")
            .iter()
            .filter(|e| e["event"] == event)
            .filter(|e| grant_type.is_none_or(|g| e["grant_type"] == g))
            .count()
    }

    /// The `error` codes of `grant.error` events for `grant_type`.
    pub fn grant_errors(&self, grant_type: &str) -> Vec<String> {
        self.list("events")
            .iter()
            .filter(|e| e["event"] == "grant.error" && e["grant_type"] == grant_type)
            .map(|e| e["error"].as_str().unwrap_or("?").to_owned())
            .collect()
    }

    /// How many requests were `method path`.
    pub fn requests(&self, method: &str, path: &str) -> usize {
        self.list("requests")
            .iter()
            .filter(|r| r["method"] == method && r["path"] == path)
            .count()
    }

    /// The log with the first entries of `earlier` left out: what happened since.
    pub fn since(&self, earlier: &Log) -> Log {
        let mut out = self.0.clone();
        for which in ["events", "requests"] {
            let skip = earlier.list(which).len();
            if let Some(list) = out[which].as_array_mut() {
                list.drain(..skip.min(list.len()));
            }
        }
        Log(out)
    }
}

/// Follows redirects and submits the provider's forms, as a person would.
pub struct UserAgent {
    http: reqwest::Client,
}

impl Default for UserAgent {
    fn default() -> Self {
        Self::new()
    }
}

impl UserAgent {
    /// A user agent with a cookie jar of its own, following no redirect by itself.
    pub fn new() -> Self {
        Self {
            http: reqwest::Client::builder()
                .no_proxy()
                .cookie_store(true)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
        }
    }

    /// From the authorization URL to the app's loopback listener.
    pub async fn complete(&self, authorization_url: &str, login: &str) {
        let mut response = self
            .http
            .get(authorization_url)
            .send()
            .await
            .expect("authorize");
        for _ in 0..12 {
            let url = response.url().clone();
            if let Some(location) = response.headers().get("location") {
                let next = url
                    .join(location.to_str().expect("location"))
                    .expect("location URL");
                response = self.http.get(next).send().await.expect("redirect");
                continue;
            }
            let status = response.status();
            let html = response.text().await.expect("page");
            // The path only: a redirect's query holds the code.
            let at = url.path();
            assert!(status.is_success(), "{at} answered {status}: {html}");
            let Some(form) = Form::parse(&html) else {
                // No form: the app's listener answered ("Signed in").
                assert!(html.contains("Signed in"), "{at}: {html}");
                return;
            };
            let mut fields = form.hidden;
            if form.names.iter().any(|n| n == "login") {
                fields.push(("login".to_owned(), login.to_owned()));
                fields.push(("password".to_owned(), "any password".to_owned()));
            }
            let action = url.join(&form.action).expect("form action");
            response = self
                .http
                .post(action)
                .form(&fields)
                .send()
                .await
                .expect("form post");
        }
        panic!("the sign-in did not reach the app within 12 steps");
    }
}

/// The first form of a page: its action, hidden fields and field names.
struct Form {
    action: String,
    hidden: Vec<(String, String)>,
    names: Vec<String>,
}

impl Form {
    fn parse(html: &str) -> Option<Self> {
        let start = html.find("<form")?;
        let end = html[start..]
            .find("</form>")
            .map_or(html.len(), |e| start + e);
        let form = &html[start..end];
        let action = attribute(form, "action")?;
        let mut hidden = Vec::new();
        let mut names = Vec::new();
        for input in form.split("<input").skip(1) {
            let tag = &input[..input.find('>').unwrap_or(input.len())];
            let Some(name) = attribute(tag, "name") else {
                continue;
            };
            if attribute(tag, "type").as_deref() == Some("hidden") {
                hidden.push((name.clone(), attribute(tag, "value").unwrap_or_default()));
            }
            names.push(name);
        }
        Some(Self {
            action: action.replace("&amp;", "&"),
            hidden,
            names,
        })
    }
}

/// The value of `name="..."` in a tag.
fn attribute(tag: &str, name: &str) -> Option<String> {
    let needle = format!("{name}=\"");
    let start = tag.find(&needle)? + needle.len();
    let len = tag[start..].find('"')?;
    Some(tag[start..start + len].to_owned())
}
