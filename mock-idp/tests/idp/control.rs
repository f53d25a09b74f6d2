//! Scripting the provider: faults per endpoint (status, delay, dropped
//! connection, malformed JSON; once or N times) that change nothing at the
//! provider, the HTTP control API and its guard, the request log and
//! counters, the dashboard, and the binary's start and clean stop.

use std::io::BufRead as _;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sessionkit_mock_idp::{Config, Fault, MockIdp, SecretSource};

use crate::support::*;

#[tokio::test]
async fn faults_answer_before_the_endpoint_and_consume_nothing() {
    let idp = idp_auto("alice").await;
    let t = consented(&idp).await;
    let rt = t["refresh_token"].as_str().expect("rt");
    idp.control().add_fault(
        Fault::on("token")
            .status(503, r#"{"error":"temporarily_unavailable"}"#)
            .times(2),
    );
    for _ in 0..2 {
        let (status, body) = refresh(&idp, rt).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (503, Some("temporarily_unavailable"))
        );
    }
    // The refresh token was not rotated by the faulted requests.
    let (status, _) = refresh(&idp, rt).await;
    assert_eq!(status, 200);
    assert!(
        idp.control().faults().is_empty(),
        "a counted fault runs out"
    );
}

#[tokio::test]
async fn dropped_connections_malformed_json_and_delays() {
    let idp = idp().await;
    let url = idp.url("/.well-known/openid-configuration");
    idp.control()
        .add_fault(Fault::on("discovery").drop_connection().times(1));
    let err = http()
        .get(&url)
        .send()
        .await
        .expect_err("the connection is dropped");
    assert!(
        err.is_request() || err.is_connect() || err.is_body(),
        "{err:?}"
    );
    assert!(
        http()
            .get(&url)
            .send()
            .await
            .expect("next one works")
            .status()
            .is_success()
    );

    idp.control()
        .add_fault(Fault::on("discovery").malformed_json().times(1));
    let response = http().get(&url).send().await.expect("answer");
    assert_eq!(response.status(), 200);
    assert!(
        response.json::<Value>().await.is_err(),
        "the body is not JSON"
    );

    idp.control()
        .add_fault(Fault::on("jwks").delay_ms(300).times(1));
    let started = Instant::now();
    let response = http().get(idp.url("/jwks")).send().await.expect("answer");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(
        response.status(),
        200,
        "a delay alone lets the endpoint answer"
    );

    idp.control()
        .add_fault(Fault::on("jwks").delay_ms(5_000).status(500, "{}"));
    let short = reqwest::Client::builder()
        .timeout(Duration::from_millis(200))
        .build()
        .expect("client");
    assert!(
        short
            .get(idp.url("/jwks"))
            .send()
            .await
            .expect_err("times out")
            .is_timeout()
    );
    idp.control().clear_faults();
    assert_eq!(
        http()
            .get(idp.url("/jwks"))
            .send()
            .await
            .expect("ok")
            .status(),
        200
    );
    assert!(idp.control().count("discovery:fault") >= 2);
}

#[tokio::test]
async fn the_http_control_api_scripts_the_same_things() {
    let idp = idp_auto("alice").await;
    let c = |path: &str| idp.url(&format!("/_control{path}"));
    let put: Value = http()
        .put(c("/lifetimes"))
        .json(&json!({"access_token": 42}))
        .send()
        .await
        .expect("put")
        .json()
        .await
        .expect("json");
    assert_eq!(put["access_token"], 42);
    assert_eq!(put["refresh_token"], 86_400, "other lifetimes unchanged");
    assert_eq!(tokens(&idp, "openid").await["expires_in"], 42);
    let bad = http()
        .put(c("/lifetimes"))
        .json(&json!({"bogus": 1}))
        .send()
        .await
        .expect("put");
    assert_eq!(bad.status(), 400);

    let before = idp.control().now();
    let moved: Value = http()
        .post(c("/clock"))
        .json(&json!({"advance_secs": 3600}))
        .send()
        .await
        .expect("post")
        .json()
        .await
        .expect("json");
    assert!(moved["now"].as_i64().expect("now") >= before + 3600);

    let fault = http()
        .post(c("/faults"))
        .json(&json!({"endpoint": "userinfo", "status": 500, "times": 1}))
        .send()
        .await
        .expect("post");
    assert_eq!(fault.status(), 201);
    assert_eq!(
        http()
            .get(idp.url("/userinfo"))
            .send()
            .await
            .expect("get")
            .status(),
        500
    );
    let unknown = http()
        .post(c("/faults"))
        .json(&json!({"endpoint": "nowhere"}))
        .send()
        .await
        .expect("post");
    assert_eq!(unknown.status(), 400);

    let rotated: Value = http()
        .post(c("/keys/rotate"))
        .send()
        .await
        .expect("post")
        .json()
        .await
        .expect("json");
    assert!(
        idp.control()
            .published_kids()
            .contains(&rotated["RS256"].as_str().expect("kid").to_owned())
    );

    let t = consented(&idp).await;
    let sid = decode(t["id_token"].as_str().expect("id")).1["sid"]
        .as_str()
        .expect("sid")
        .to_owned();
    let sessions: Value = http()
        .get(c("/sessions"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert!(
        sessions["sessions"]
            .as_array()
            .expect("list")
            .iter()
            .any(|s| s["sid"] == sid.as_str())
    );
    assert_eq!(
        http()
            .post(c(&format!("/sessions/{sid}/revoke")))
            .send()
            .await
            .expect("post")
            .status(),
        200
    );
    assert_eq!(
        refresh(&idp, t["refresh_token"].as_str().expect("rt"))
            .await
            .1["error"],
        "invalid_grant"
    );

    let counters: Value = http()
        .get(c("/counters"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert!(counters["token:authorization_code"].as_u64() >= Some(2));
    assert_eq!(counters["token:refresh_token"], 1);
    let log: Value = http()
        .get(c("/requests"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert!(
        log["requests"]
            .as_array()
            .expect("requests")
            .iter()
            .any(|r| r["endpoint"] == "userinfo" && r["status"] == 500)
    );
    assert_eq!(
        http()
            .delete(c("/requests"))
            .send()
            .await
            .expect("delete")
            .status(),
        204
    );
    assert_eq!(idp.control().count("token"), 0);

    let secret: Value = http()
        .get(c("/clients/chat-server/secret"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(
        secret["client_secret"].as_str(),
        idp.control().client_secret("chat-server").as_deref()
    );
    let reg: Value = http()
        .post(c("/clients"))
        .json(&json!({"client_id": "tv-app", "grant_types": ["urn:ietf:params:oauth:grant-type:device_code"]}))
        .send()
        .await
        .expect("post")
        .json()
        .await
        .expect("json");
    assert_eq!(reg["client_id"], "tv-app");
    let d = http()
        .post(idp.url("/device_authorization"))
        .form(&[("client_id", "tv-app")])
        .send()
        .await
        .expect("post");
    assert_eq!(d.status(), 200, "the registered client works at once");

    assert_eq!(
        http()
            .put(c("/auto-login"))
            .json(&json!({"user": null}))
            .send()
            .await
            .expect("put")
            .status(),
        204
    );
    assert_eq!(
        authorize(&idp, &http(), &auth_params(&pkce(), "openid"))
            .await
            .status(),
        200,
        "login page again"
    );
}

#[tokio::test]
async fn a_control_secret_guards_the_control_api() {
    let config = Config {
        control_secret: SecretSource::Value("let-me-in".into()),
        ..Config::default()
    };
    let idp = MockIdp::builder()
        .config(config)
        .start()
        .await
        .expect("start");
    let url = idp.url("/_control/state");
    assert_eq!(http().get(&url).send().await.expect("get").status(), 401);
    assert_eq!(
        http()
            .get(&url)
            .bearer_auth("wrong")
            .send()
            .await
            .expect("get")
            .status(),
        401
    );
    let ok = http()
        .get(&url)
        .bearer_auth("let-me-in")
        .send()
        .await
        .expect("get");
    assert_eq!(ok.status(), 200);
    let state: Value = ok.json().await.expect("json");
    assert_eq!(state["users"], json!(["alice", "bob", "carol"]));
}

#[tokio::test]
async fn no_token_value_appears_in_the_log_the_dashboard_or_the_control_api() {
    let idp = idp_auto("alice").await;
    let t = consented(&idp).await;
    let (_, r) = refresh(&idp, t["refresh_token"].as_str().expect("rt")).await;
    let secrets: Vec<String> = [&t, &r]
        .iter()
        .flat_map(|v| {
            ["access_token", "refresh_token", "id_token"]
                .map(|k| v[k].as_str().expect("token").to_owned())
        })
        .collect();
    let signatures: Vec<String> = secrets
        .iter()
        .filter_map(|s| s.rsplit('.').next().map(str::to_owned))
        .collect();
    let mut pages = String::new();
    for path in [
        "/_control",
        "/_control/requests",
        "/_control/tokens",
        "/_control/state",
        "/_control/sessions",
    ] {
        pages.push_str(
            &http()
                .get(idp.url(path))
                .send()
                .await
                .expect("get")
                .text()
                .await
                .expect("text"),
        );
    }
    assert!(pages.contains("alice"), "the dashboard shows the session");
    assert!(pages.contains("at+jwt"), "and decoded tokens");
    for s in secrets.iter().chain(&signatures) {
        assert!(
            !pages.contains(s.as_str()),
            "a token (or its signature) leaked into a page"
        );
    }
}

#[tokio::test]
async fn shutdown_stops_serving() {
    let idp = idp().await;
    let url = idp.url("/jwks");
    assert!(http().get(&url).send().await.is_ok());
    idp.shutdown().await;
    assert!(http().get(&url).send().await.is_err());
}

#[test]
fn the_binary_prints_its_issuer_first_and_stops_cleanly_on_sigterm() {
    let exe = env!("CARGO_BIN_EXE_mock-idp");
    let mut child = std::process::Command::new(exe)
        .args([
            "--bind",
            "127.0.0.1:0",
            "--access-token-ttl",
            "17",
            "--auto-login",
            "bob",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let issuer = listening_issuer(&mut child);
    assert!(issuer.starts_with("http://127.0.0.1:"));
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let doc: Value = runtime.block_on(async {
        http()
            .get(format!("{issuer}/_control/state"))
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json")
    });
    assert_eq!(doc["issuer"], issuer);
    assert_eq!(doc["lifetimes"]["access_token"], 17);
    assert_eq!(doc["auto_login"], "bob");
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let exit = child.wait().expect("wait");
    assert!(exit.success(), "clean exit on SIGTERM: {exit:?}");
}

#[test]
fn the_binary_reads_a_config_file_and_reports_bad_ones() {
    let dir = std::env::temp_dir().join(format!("mock-idp-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "users = 3\n").expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mock-idp"))
        .args(["--bind", "127.0.0.1:0", "--config"])
        .arg(&bad)
        .output()
        .expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("error: invalid configuration"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_binary_serves_tls_and_writes_its_certificate() {
    let dir = std::env::temp_dir().join(format!("mock-idp-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let cert = dir.join("cert.pem");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mock-idp"))
        .args(["--bind", "127.0.0.1:0", "--tls", "--tls-cert-out"])
        .arg(&cert)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let issuer = listening_issuer(&mut child);
    assert!(issuer.starts_with("https://127.0.0.1:"), "{issuer}");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let doc: Value = runtime.block_on(async {
        // The certificate file is written once start-up completes; wait for it (bounded).
        let deadline = Instant::now() + Duration::from_secs(10);
        let pem = loop {
            match std::fs::read(&cert) {
                Ok(pem) if !pem.is_empty() => break pem,
                _ if Instant::now() > deadline => panic!("no certificate written"),
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        let client = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("pem"))
            .build()
            .expect("client");
        client
            .get(format!("{issuer}/.well-known/openid-configuration"))
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json")
    });
    assert_eq!(doc["issuer"], issuer);
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn trace_level_logs_carry_no_token() {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mock-idp"))
        .args([
            "--bind",
            "127.0.0.1:0",
            "--auto-login",
            "alice",
            "--log",
            "trace",
        ])
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let issuer = listening_issuer(&mut child);
    let stderr = child.stderr.take().expect("stderr");
    let collected = std::thread::spawn(move || {
        let mut all = String::new();
        let _ = std::io::Read::read_to_string(&mut std::io::BufReader::new(stderr), &mut all);
        all
    });
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let secrets: Vec<String> = runtime.block_on(async {
        let url = |p: &str| format!("{issuer}{p}");
        let pkce = pkce();
        let mut params = auth_params(&pkce, "openid offline_access");
        params.push(("prompt".into(), "consent".into()));
        let response = http()
            .get(url("/authorize"))
            .query(&params)
            .send()
            .await
            .expect("authorize");
        let code = location_params(&response)["code"].clone();
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT),
            ("client_id", CLIENT),
            ("code_verifier", pkce.verifier.as_str()),
        ];
        let t: Value = http()
            .post(url("/token"))
            .form(&form)
            .send()
            .await
            .expect("token")
            .json()
            .await
            .expect("json");
        let rt = t["refresh_token"].as_str().expect("rt");
        let r: Value = http()
            .post(url("/token"))
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", rt),
                ("client_id", CLIENT),
            ])
            .send()
            .await
            .expect("refresh")
            .json()
            .await
            .expect("json");
        // Reuse of the rotated token: the provider logs the detection.
        let _ = http()
            .post(url("/token"))
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", rt),
                ("client_id", CLIENT),
            ])
            .send()
            .await;
        let at = r["access_token"].as_str().expect("at");
        let _ = http().get(url("/userinfo")).bearer_auth(at).send().await;
        let mut secrets = vec![code, pkce.verifier.clone()];
        for v in [&t, &r] {
            for k in ["access_token", "refresh_token", "id_token"] {
                if let Some(s) = v[k].as_str() {
                    secrets.push(s.to_owned());
                    if let Some(sig) = s.rsplit('.').next() {
                        secrets.push(sig.to_owned());
                    }
                }
            }
        }
        secrets
    });
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let log = collected.join().expect("stderr thread");
    assert!(
        log.contains("TRACE") || log.contains("DEBUG") || log.contains("INFO"),
        "the log was captured"
    );
    for s in &secrets {
        assert!(
            !log.contains(s.as_str()),
            "a secret appeared in the trace log"
        );
    }
}

/// The issuer from the binary's first stdout line, `mock-idp listening on URL`.
fn listening_issuer(child: &mut std::process::Child) -> String {
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("line");
    line.trim()
        .strip_prefix("mock-idp listening on ")
        .expect("the first line announces the issuer")
        .to_owned()
}

#[test]
fn sigterm_right_after_the_listening_line_is_a_clean_stop() {
    // The handlers are installed before the line is printed: a signal at once
    // (even while keys are still being generated) is a clean shutdown.
    for _ in 0..5 {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mock-idp"))
            .args(["--bind", "127.0.0.1:0"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn");
        let _issuer = listening_issuer(&mut child);
        let status = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        let exit = child.wait().expect("wait");
        assert!(exit.success(), "clean exit on an early SIGTERM: {exit:?}");
    }
}

#[tokio::test]
async fn the_control_api_refuses_other_sites_pages_and_rebound_names() {
    let idp = idp().await;
    let rotate = idp.url("/_control/keys/rotate");
    let port = url::Url::parse(idp.issuer())
        .expect("issuer")
        .port()
        .expect("port");
    // A page of another site posting through the developer's browser.
    for (name, value) in [
        ("origin", "http://evil.example"),
        ("sec-fetch-site", "cross-site"),
    ] {
        let status = http()
            .post(&rotate)
            .header(name, value)
            .send()
            .await
            .expect("post")
            .status();
        assert_eq!(status, 403, "{name}: {value}");
    }
    // A name rebound to 127.0.0.1.
    let status = http()
        .get(idp.url("/_control/state"))
        .header("host", format!("rebound.example:{port}"))
        .send()
        .await
        .expect("get")
        .status();
    assert_eq!(status, 403, "Host rebound.example");
    // The provider's own dashboard (same origin), and tools without a browser.
    let status = http()
        .post(&rotate)
        .header("origin", idp.issuer())
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .expect("post")
        .status();
    assert!(status.is_success(), "same origin: {status}");
    assert!(
        http()
            .post(&rotate)
            .send()
            .await
            .expect("post")
            .status()
            .is_success()
    );
    assert!(
        idp.control().published_kids().len() >= 2,
        "the keys rotated"
    );
}
