//! Start-up and the key file: providers starting together from a cold cache
//! all work, and a corrupt file is replaced, for the binary as for the library.

use std::io::BufRead as _;
use std::path::{Path, PathBuf};

use serde_json::Value;
use sessionkit_mock_idp::MockIdp;

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
