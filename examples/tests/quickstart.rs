//! The README's quick start runs against the mock provider and the chat
//! server (tokens in the real OS keychain), and the README shows exactly
//! the code that runs.

#![allow(missing_docs, clippy::unwrap_used)]

use sessionkit::LoopbackOptions;
use sessionkit_examples::quickstart::quickstart;
use sessionkit_examples::server::{ChatServer, ServerConfig};
use sessionkit_mock_idp::MockIdp;
use sessionkit_realtime::Incoming;

/// The lines between the markers, without their indentation.
fn between_markers(text: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        if line.contains("README quick start begins") {
            inside = true;
        } else if line.contains("README quick start ends") {
            break;
        } else if inside && !line.starts_with("```") {
            lines.push(line.trim().to_owned());
        }
    }
    lines
}

#[test]
fn the_readme_shows_the_compiled_quick_start() {
    let code = between_markers(include_str!("../src/quickstart.rs"));
    let readme = between_markers(include_str!("../../README.md"));
    assert!(code.len() > 8, "the markers are in quickstart.rs");
    assert_eq!(
        readme, code,
        "README.md's quick start differs from src/quickstart.rs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quick_start_signs_in_calls_connects_and_logs_out() {
    if std::env::var_os("SESSIONKIT_REQUIRE_KEYCHAIN").is_none()
        && sessionkit::KeychainStore::auto().is_err()
    {
        eprintln!("SKIP: no OS keychain here");
        return;
    }
    let idp = MockIdp::builder()
        .auto_login("alice")
        .start()
        .await
        .unwrap();
    let server = ChatServer::start(ServerConfig::new(idp.issuer()))
        .await
        .unwrap();
    let browser = LoopbackOptions::with_callback(|url| {
        let url = url.to_owned();
        tokio::spawn(async move {
            let _ = reqwest::get(url).await;
        });
    });
    let namespace = format!("sk-quickstart-{}", std::process::id());
    let seen = quickstart(idp.issuer(), &server.ws_url(), &namespace, browser)
        .await
        .unwrap();
    let me: serde_json::Value = serde_json::from_str(&seen.me).unwrap();
    assert_eq!(me["preferred_username"], "alice", "{me}");
    match seen.hello {
        Some(Incoming::Text(text)) => assert!(text.contains(r#""type":"hello""#), "{text}"),
        other => panic!("the chat server's first frame: {other:?}"),
    }
    assert!(seen.report.is_complete(), "{:?}", seen.report.failures);
    assert!(seen.report.revoked);
    // Nothing of the account is left in the keychain.
    let store = sessionkit::KeychainStore::auto().unwrap();
    use sessionkit::TokenStore as _;
    let key = seen.report.account.clone();
    assert_eq!(
        store.load_session(&key),
        Err(sessionkit::StoreError::NotFound)
    );
}
