//! Start-up: discovery is answered from the moment the socket listens, while
//! the keys and client secrets are still being made; every other request
//! waits for them and is answered, never refused. The key file: providers
//! starting together from a cold cache all work, and a corrupt file is
//! replaced, for the binary as for the library.

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use sessionkit_mock_idp::{Config, MockIdp, SecretSource};

use crate::support::*;

/// A path in a new scratch directory (not created).
fn scratch(what: &str) -> PathBuf {
    std::env::temp_dir()
        .join(format!(
            "mock-idp-{what}-{}-{}",
            std::process::id(),
            random(6)
        ))
        .join("signing-keys.json")
}

async fn kids(issuer: &str) -> Vec<String> {
    let response = http()
        .get(format!("{issuer}/jwks"))
        .send()
        .await
        .expect("jwks");
    assert_eq!(response.status(), 200);
    let jwks: Value = response.json().await.expect("json");
    jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| k["kid"].as_str().expect("kid").to_owned())
        .collect()
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).expect("meta").permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_is_answered_while_the_keys_are_still_loading_and_the_rest_waits() {
    let (listening_tx, listening) = tokio::sync::oneshot::channel();
    let started = tokio::spawn(
        MockIdp::builder()
            .auto_login("alice")
            .delay_readiness_for_tests(Duration::from_secs(2))
            .on_listening(move |issuer| {
                let _ = listening_tx.send(issuer.to_owned());
            })
            .start(),
    );
    let issuer = listening.await.expect("listening");
    // Asked first, answered only once the keys are there: it waits, it does not fail.
    let jwks = tokio::spawn({
        let issuer = issuer.clone();
        async move { kids(&issuer).await }
    });
    let response = http()
        .get(format!("{issuer}/.well-known/openid-configuration"))
        .send()
        .await
        .expect("discovery");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["cache-control"],
        "public, max-age=300",
        "the same answer as once started"
    );
    let doc: Value = response.json().await.expect("json");
    assert_eq!(doc["issuer"], issuer);
    assert_eq!(doc["jwks_uri"], format!("{issuer}/jwks"));
    assert!(
        !started.is_finished() && !jwks.is_finished(),
        "discovery was answered before start-up completed"
    );

    let idp = started.await.expect("task").expect("starts");
    assert_eq!(jwks.await.expect("task"), idp.control().published_kids());
    tokens(&idp, "openid").await;
    // The early answer is in the request log like any other.
    let discovery: Vec<_> = idp
        .control()
        .requests()
        .into_iter()
        .filter(|r| r.endpoint == "discovery")
        .collect();
    assert_eq!(discovery.len(), 1, "{discovery:?}");
    assert_eq!(discovery[0].status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_that_fails_after_listening_answers_waiting_requests_and_stops() {
    let config = Config {
        control_secret: SecretSource::File(scratch("missing-secret")),
        ..Config::default()
    };
    let (listening_tx, listening) = tokio::sync::oneshot::channel();
    let started = tokio::spawn(
        MockIdp::builder()
            .config(config)
            .delay_readiness_for_tests(Duration::from_millis(300))
            .on_listening(move |issuer| {
                let _ = listening_tx.send(issuer.to_owned());
            })
            .start(),
    );
    let issuer = listening.await.expect("listening");
    let waiting = http()
        .get(format!("{issuer}/jwks"))
        .send()
        .await
        .expect("answered");
    assert_eq!(waiting.status(), 503);
    let body: Value = waiting.json().await.expect("json");
    assert_eq!(body["error"], "temporarily_unavailable");
    let err = started
        .await
        .expect("task")
        .expect_err("the secret file is missing");
    assert!(err.to_string().contains("missing-secret"), "{err}");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        http().get(format!("{issuer}/jwks")).send().await.is_err(),
        "no longer listening"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn providers_started_together_from_a_cold_key_file_both_work() {
    let path = scratch("cold-keys");
    let start = || {
        MockIdp::builder()
            .auto_login("alice")
            .keys_file(&path)
            .start()
    };
    let (a, b) = tokio::join!(start(), start());
    let (a, b) = (a.expect("first starts"), b.expect("second starts"));
    for idp in [&a, &b] {
        let t = tokens(idp, "openid").await;
        verify(idp, t["id_token"].as_str().expect("id token"), CLIENT)
            .await
            .expect("its ID token verifies with its own JWKS");
    }
    // The file holds one of the two key pairs, whole: a third provider loads it.
    let c = MockIdp::builder()
        .keys_file(&path)
        .start()
        .await
        .expect("third");
    let loaded = c.control().published_kids();
    assert!(
        loaded == a.control().published_kids() || loaded == b.control().published_kids(),
        "the file is one provider's keys"
    );
    #[cfg(unix)]
    assert_eq!(mode(&path), 0o600);
    let _ = std::fs::remove_dir_all(path.parent().expect("dir"));
}

#[tokio::test]
async fn a_corrupt_key_file_is_replaced_and_the_provider_starts() {
    let path = scratch("corrupt-keys");
    std::fs::create_dir_all(path.parent().expect("dir")).expect("dir");
    std::fs::write(&path, r#"{"RS256": "trunc"#).expect("write");
    let idp = MockIdp::builder()
        .auto_login("alice")
        .keys_file(&path)
        .start()
        .await
        .expect("starts with new keys");
    tokens(&idp, "openid").await;
    let again = MockIdp::builder()
        .keys_file(&path)
        .start()
        .await
        .expect("again");
    assert_eq!(
        again.control().published_kids(),
        idp.control().published_kids(),
        "the new keys were saved over the corrupt file"
    );
    #[cfg(unix)]
    assert_eq!(mode(&path), 0o600);
    let _ = std::fs::remove_dir_all(path.parent().expect("dir"));
}

/// Starts the binary with `--keys-file path`; returns it and its issuer.
fn binary(path: &Path) -> (std::process::Child, String) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mock-idp"))
        .args(["--bind", "127.0.0.1:0", "--keys-file"])
        .arg(path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("line");
    let issuer = line
        .trim()
        .strip_prefix("mock-idp listening on ")
        .expect("the first line announces the issuer")
        .to_owned();
    (child, issuer)
}

fn stop(mut child: std::process::Child) {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    assert!(child.wait().expect("wait").success(), "clean exit");
}

#[test]
fn binaries_started_together_on_a_cold_or_corrupt_key_file_all_serve() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let path = scratch("binary-keys");
    for cold_or_corrupt in ["cold", "corrupt"] {
        if cold_or_corrupt == "corrupt" {
            std::fs::write(&path, "not keys").expect("write");
        }
        let (first, first_issuer) = binary(&path);
        let (second, second_issuer) = binary(&path);
        let first_kids = runtime.block_on(kids(&first_issuer));
        let second_kids = runtime.block_on(kids(&second_issuer));
        stop(first);
        stop(second);
        let (third, third_issuer) = binary(&path);
        let third_kids = runtime.block_on(kids(&third_issuer));
        stop(third);
        assert!(
            third_kids == first_kids || third_kids == second_kids,
            "{cold_or_corrupt}: the file holds one of the two key pairs, whole"
        );
        #[cfg(unix)]
        assert_eq!(mode(&path), 0o600, "{cold_or_corrupt}");
    }
    let _ = std::fs::remove_dir_all(path.parent().expect("dir"));
}
