//! `chat --dpop` against a provider we did not write: panva/oidc-provider
//! (see `tests/oidc-provider/server.mjs`), with DPoP-bound tokens required
//! for the chat client, its nonces required, and JWT access tokens for the
//! chat server (RFC 8707 resource, RFC 9068 format) that live 8 s. alice
//! and bob sign in through the provider's own login and consent pages
//! (a scripted user agent), chat across several refreshes, and alice logs
//! out (her refresh token revoked). Skipped like the other oidc-provider
//! tests when node or its packages are missing, unless
//! `SESSIONKIT_REQUIRE_OIDC_PROVIDER` is set (as in CI).

use std::process::Stdio;

use sessionkit_examples::server::{ChatServer, Database, ServerConfig};
use sessionkit_tests::oidc_provider::{OidcProvider, UserAgent};
use tokio::io::{AsyncBufReadExt as _, BufReader};

use crate::support::{PATIENCE, User, messages, scratch};

const CLIENT: &str = "sessionkit-interop-chat";

/// `chat --client-id CLIENT --dpop login --no-browser`, with the provider's
/// pages filled in as `user.name`.
async fn login(user: &User) {
    let mut child = user
        .command()
        .args(["--client-id", CLIENT, "--dpop", "login", "--no-browser"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chat login");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first = tokio::time::timeout(PATIENCE, stdout.next_line())
        .await
        .expect("the URL line in time")
        .expect("read")
        .expect("a line");
    let url = first
        .strip_prefix("Open this URL to sign in: ")
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .to_owned();
    UserAgent::new().complete(&url, &user.name).await;
    let second = tokio::time::timeout(PATIENCE, stdout.next_line())
        .await
        .expect("signed in in time")
        .expect("read");
    let status = child.wait().await.expect("wait");
    let output = child.wait_with_output().await.expect("output");
    assert!(
        status.success(),
        "login failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        second.as_deref(),
        Some(format!("Signed in as {}", user.name).as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dpop_user_chats_refreshes_and_logs_out_against_oidc_provider() {
    let Some(op) = OidcProvider::start_with(&[("SESSIONKIT_ACCESS_TOKEN_TTL", "8")]) else {
        return;
    };
    let dir = scratch("oidc-provider-chat");
    let mut config = ServerConfig::new(op.issuer());
    config.db = Database::File(dir.join("chat.db"));
    let server = ChatServer::start(config).await.expect("chat server");
    let alice = User::at("alice", op.issuer(), &server.ws_url());
    let bob = User::at("bob", op.issuer(), &server.ws_url());
    login(&alice).await;
    login(&bob).await;

    // Every later command uses the account's key by itself (no --dpop).
    let (mut a, mut b) = (alice.plain_as(CLIENT), bob.plain_as(CLIENT));
    a.expect_status("joined #general").await;
    b.expect_status("joined #general").await;
    // 12 s of conversation: more than one 8 s token.
    for i in 1..=12 {
        a.send(&format!("tick {i}")).await;
        b.expect_line(&format!("[{i}] alice: tick {i}")).await;
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    let (status, _, a_err) = a.finish().await;
    let (_, seen, _) = b.finish().await;
    assert!(status.success(), "{a_err}");
    assert!(a_err.contains("token refreshed"), "{a_err}");
    let want: Vec<_> = (1..=12)
        .map(|i| (i, "alice".to_owned(), format!("tick {i}")))
        .collect();
    assert_eq!(messages(&seen), want);
    let stats = server.handshake_stats();
    assert!(stats.dpop_accepted >= 2, "{stats:?}");

    let log = op.log().await;
    assert!(
        log.events("grant.success", Some("refresh_token")) >= 2,
        "refreshed with proofs: {log:?}"
    );
    let out = alice.run(&["--client-id", CLIENT, "logout"]).await;
    out.ok();
    let after = op.log().await.since(&log);
    assert_eq!(after.events("revocation.error", None), 0);
    assert_eq!(after.requests("POST", "/token/revocation"), 1);
    bob.run(&["--client-id", CLIENT, "logout"]).await.ok();
    alice.cleanup().await;
    bob.cleanup().await;
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
