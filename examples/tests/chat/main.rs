//! End-to-end tests of the `chat` binary against an in-process mock IdP and
//! chat server, over real sockets, with tokens in the kernel keyring.
//!
//! (Over 500 lines: one file for the `chat` binary's behaviours as a user
//! sees them; the terminal UI, failover and oidc-provider have their own.)

#![allow(missing_docs, unreachable_pub, clippy::unwrap_used)]

mod failover;
mod oidc_provider;
mod shared_history;
mod support;
mod tui;

use std::time::Duration;

use support::{PATIENCE, Stack, User, messages};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_users_chat_in_plain_mode() {
    let stack = Stack::start(None).await;
    let (alice, bob, mut a, mut b) = support::chatting_pair(&stack).await;
    a.send("hello bob").await;
    b.expect_line("[1] alice: hello bob").await;
    b.send("hi alice").await;
    a.expect_line("[2] bob: hi alice").await;

    let (status, seen, stderr) = a.finish().await;
    assert!(status.success(), "{stderr}");
    assert_eq!(
        messages(&seen),
        [
            (1, "alice".to_owned(), "hello bob".to_owned()),
            (2, "bob".to_owned(), "hi alice".to_owned())
        ]
    );
    let (status, _, stderr) = b.finish().await;
    assert!(status.success(), "{stderr}");
    alice.cleanup().await;
    bob.cleanup().await;
}

/// With `SESSIONKIT_CHAT_NODES=N` (`.ci/run` runs this suite with 2 and 3),
/// the stack runs N nodes and its users are on different ones, so the lines
/// of every two-user test cross PostgreSQL's fan-out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_users_of_a_stack_are_spread_over_its_nodes() {
    let stack = Stack::start(None).await;
    let nodes = support::nodes();
    assert_eq!(stack.server_urls.len(), nodes);
    let (alice, bob, mut a, mut b) = support::chatting_pair(&stack).await;
    assert_eq!(
        support::connected_to(&a.stderr(), 1).as_deref(),
        Some(stack.server_urls[0].as_str())
    );
    assert_eq!(
        support::connected_to(&b.stderr(), 1).as_deref(),
        Some(stack.server_urls[1 % nodes].as_str())
    );
    a.send("across the nodes").await;
    b.expect_line("[1] alice: across the nodes").await;
    for plain in [a, b] {
        let (status, _, stderr) = plain.finish().await;
        assert!(status.success(), "{stderr}");
    }
    alice.cleanup().await;
    bob.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_mode_exits_only_after_every_line_is_acknowledged() {
    let stack = Stack::start(None).await;
    let (alice, bob) = (User::new("alice", &stack), User::new("bob", &stack));
    alice.login(&stack.idp).await;
    bob.login(&stack.idp).await;
    let mut b = bob.plain();
    b.expect_status("joined #general").await;

    // 200 lines and the end of input at once: the client must not exit
    // before the server has stored all of them.
    let mut a = alice.plain();
    for i in 1..=200 {
        a.send(&format!("line {i}")).await;
    }
    // The server's per-user limit (a burst of 50, then 10 frames/s) closes
    // the socket with 4029 and a 5 s `retry_after_ms` about every 50 lines,
    // which the client honours plus jitter: four rounds of 5–7.5 s.
    let (status, alice_saw, stderr) = a.finish_within(Duration::from_secs(60)).await;
    assert!(status.success(), "{stderr}");
    let want: Vec<_> = (1..=200)
        .map(|i| (i, "alice".to_owned(), format!("line {i}")))
        .collect();
    assert_eq!(
        messages(&alice_saw),
        want,
        "alice printed every line before exiting"
    );
    b.expect_line("[200] alice: line 200").await;
    assert_eq!(messages(&b.seen), want);
    let _ = b.finish().await;
    alice.cleanup().await;
    bob.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_mid_conversation_loses_and_doubles_nothing() {
    let stack = Stack::start(None).await;
    let mut server = support::ServerProcess::start(&stack).await;
    let alice = User::new("alice", &stack).on_server(&server.url);
    let bob = User::new("bob", &stack).on_server(&server.url);
    alice.login(&stack.idp).await;
    bob.login(&stack.idp).await;
    let mut a = alice.plain();
    let mut b = bob.plain();
    a.expect_status("joined #general").await;
    b.expect_status("joined #general").await;

    for i in 1..=20 {
        a.send(&format!("m{i}")).await;
    }
    b.expect_line("[20] alice: m20").await;
    server.kill().await;
    a.expect_status("reconnecting").await;
    // Sent while the server is down: queued, then re-sent after the restart.
    for i in 21..=40 {
        a.send(&format!("m{i}")).await;
    }
    server.restart().await;
    b.expect_line("[40] alice: m40").await;
    let (status, alice_saw, stderr) = a.finish().await;
    assert!(status.success(), "{stderr}");
    let want: Vec<_> = (1..=40)
        .map(|i| (i, "alice".to_owned(), format!("m{i}")))
        .collect();
    assert_eq!(
        messages(&alice_saw),
        want,
        "alice saw each message once, in order"
    );
    let (status, seen, stderr) = b.finish().await;
    assert!(status.success(), "{stderr}");
    assert_eq!(messages(&seen), want, "bob saw each message once, in order");
    assert!(stderr.contains("connected"), "{stderr}");
    alice.cleanup().await;
    bob.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_expiring_mid_conversation_is_replaced_without_a_gap() {
    // 6 s access tokens; the chat server closes a socket (4001) when its token expires.
    let stack = Stack::start(Some(6)).await;
    let (alice, bob, mut a, mut b) = support::chatting_pair(&stack).await;
    // 15 s of conversation: more than two token lifetimes.
    for i in 1..=15 {
        a.send(&format!("tick {i}")).await;
        b.expect_line(&format!("[{i}] alice: tick {i}")).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let (status, _, a_err) = a.finish().await;
    let (_, seen, b_err) = b.finish().await;
    assert!(status.success(), "{a_err}");
    let want: Vec<_> = (1..=15)
        .map(|i| (i, "alice".to_owned(), format!("tick {i}")))
        .collect();
    assert_eq!(messages(&seen), want);
    for stderr in [&a_err, &b_err] {
        assert!(
            stderr.contains("token refreshed"),
            "the token was refreshed:\n{stderr}"
        );
        assert!(
            !stderr.contains("reconnecting"),
            "no reconnect was visible:\n{stderr}"
        );
    }
    alice.cleanup().await;
    bob.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_revoked_elsewhere_signs_the_client_out() {
    let stack = Stack::start(None).await;
    let (alice, bob, a, mut b) = support::chatting_pair(&stack).await;

    // "Sign out everywhere" for alice at the provider: back-channel logout
    // reaches the chat server, which closes alice's socket with 4003.
    assert!(stack.idp.control().revoke_user_sessions("alice") > 0);
    let (status, _, stderr) = a.exited().await;
    assert!(!status.success(), "alice's client ends: {stderr}");
    assert!(stderr.contains("signed out by the server"), "{stderr}");
    assert!(stderr.contains("error: signed out"), "{stderr}");
    // Bob is not affected.
    b.send("still here").await;
    b.expect_line("[1] bob: still here").await;
    let (status, _, stderr) = b.finish().await;
    assert!(status.success(), "{stderr}");
    alice.cleanup().await;
    bob.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_signs_in_lists_switches_and_signs_out() {
    let stack = Stack::start(None).await;
    let alice = User::new("alice", &stack);
    let bob = User::beside("bob", &alice);
    alice.login(&stack.idp).await;
    bob.login(&stack.idp).await;

    assert_eq!(alice.run(&["accounts"]).await.ok(), "  alice\n* bob\n");
    assert_eq!(
        alice.run(&["switch", "alice"]).await.ok(),
        "Switched to alice\n"
    );
    assert_eq!(alice.run(&["accounts"]).await.ok(), "* alice\n  bob\n");

    let whoami: serde_json::Value =
        serde_json::from_str(alice.run(&["whoami"]).await.ok()).expect("whoami prints JSON");
    assert_eq!(whoami["sub"], "alice");
    // A userinfo answer about someone else is refused, not printed
    // (conformance test rp-userinfo-bad-sub-claim).
    stack.idp.control().add_fault(
        sessionkit_mock_idp::Fault::on("userinfo")
            .status(200, r#"{"sub":"mallory","name":"Mallory"}"#)
            .times(1),
    );
    let forged = alice.run(&["whoami"]).await;
    assert!(!forged.status.success());
    assert!(
        forged.stderr.contains("another subject"),
        "{}",
        forged.stderr
    );
    assert!(!forged.stdout.contains("Mallory"), "{}", forged.stdout);

    let missing = alice.run(&["switch", "nobody"]).await;
    assert!(!missing.status.success());
    assert!(missing.stderr.starts_with("error: "), "{}", missing.stderr);

    assert_eq!(
        alice.run(&["logout", "bob"]).await.ok(),
        "Signed out of bob\n"
    );
    assert_eq!(alice.run(&["accounts"]).await.ok(), "* alice\n");
    // Bob's refresh token was revoked at the provider.
    assert!(stack.idp.control().count("revocation") >= 1);
    assert_eq!(
        alice.run(&["logout", "--all"]).await.ok(),
        "Signed out of alice\n"
    );
    assert_eq!(alice.run(&["accounts"]).await.ok(), "");
    let whoami = alice.run(&["whoami"]).await;
    assert!(!whoami.status.success());
    assert!(
        whoami.stderr.contains("error: not signed in"),
        "{}",
        whoami.stderr
    );
    alice.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subcommands_without_an_issuer_say_what_is_missing() {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_chat"))
        .arg("accounts")
        .env_remove("SESSIONKIT_ISSUER")
        .output()
        .await
        .expect("chat runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("error: `chat accounts` needs --issuer"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_login_prints_the_code_and_signs_in() {
    use tokio::io::AsyncBufReadExt as _;
    let stack = Stack::start(None).await;
    let carol = User::new("carol", &stack);
    let mut child = carol
        .command()
        .args(["login", "--device"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("chat login --device");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first = tokio::time::timeout(PATIENCE, lines.next_line())
        .await
        .expect("prompt in time")
        .expect("read")
        .expect("a line");
    let code = first
        .rsplit_once(" and enter the code ")
        .map(|(_, code)| code.to_owned())
        .unwrap_or_else(|| panic!("unexpected prompt {first:?}"));
    assert!(
        first.starts_with("To sign in, open http://127.0.0.1:"),
        "{first}"
    );
    stack
        .idp
        .control()
        .approve_device(&code, "carol")
        .expect("approve");
    let mut rest = Vec::new();
    while let Ok(Ok(Some(line))) = tokio::time::timeout(PATIENCE, lines.next_line()).await {
        rest.push(line);
    }
    let status = child.wait().await.expect("wait");
    assert!(status.success());
    assert_eq!(
        rest.last().map(String::as_str),
        Some("Signed in as carol"),
        "{rest:?}"
    );
    carol.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_demo_needs_no_setup() {
    use tokio::io::AsyncWriteExt as _;
    let home = support::scratch("demo");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_chat"))
        .arg("--plain")
        .env("HOME", &home)
        .env("SESSIONKIT_DEMO_USER", "bob")
        .env_remove("SESSIONKIT_ISSUER")
        .env_remove("SESSIONKIT_SERVER")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("chat");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(b"hello from the demo\n")
        .await
        .expect("write");
    drop(stdin);
    let out = tokio::time::timeout(PATIENCE, child.wait_with_output())
        .await
        .expect("the demo exits in time")
        .expect("output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout, "[1] bob: hello from the demo\n", "{stderr}");
    assert!(
        stderr.contains("embedded demo, signed in as bob"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(home);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_reaches_any_output_at_trace_level() {
    // Login → refresh → reconnect → logout, every process at TRACE.
    let mut stack = Stack::start(Some(4)).await;
    let alice = User::new("alice", &stack);
    let mut outputs = alice.login_logged(&stack.idp, "trace").await;
    assert!(outputs.contains("TRACE"), "the login ran at TRACE");
    let mut a = alice.plain_with_log("trace");
    a.expect_status("joined #general").await;
    a.send("before").await;
    a.expect_line("[1] alice: before").await;
    a.expect_status("token refreshed").await;
    stack.stop_server().await;
    a.expect_status("reconnecting").await;
    stack.start_server().await;
    a.send("after").await;
    a.expect_line("[2] alice: after").await;
    let (status, seen, stderr) = a.finish().await;
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("TRACE"), "the log ran at TRACE");
    outputs.push_str(&seen.join("\n"));
    outputs.push_str(&stderr);
    let out = alice
        .command()
        .env("RUST_LOG", "trace")
        .args(["logout", "--all"])
        .output()
        .await
        .expect("logout");
    assert!(out.status.success());
    outputs.push_str(&String::from_utf8_lossy(&out.stdout));
    outputs.push_str(&String::from_utf8_lossy(&out.stderr));

    let issued: Vec<_> = stack
        .idp
        .control()
        .recent_tokens()
        .into_iter()
        .filter(|t| t.kind != "logout_token")
        .collect();
    assert!(
        issued.iter().any(|t| t.kind == "refresh_token"),
        "refresh tokens were issued"
    );
    assert!(issued.len() >= 4, "a login and at least one refresh");
    if let Some(at) = outputs.find("eyJ") {
        let start = outputs[..at].rfind('\n').map_or(0, |i| i + 1);
        let end = outputs[at..].find('\n').map_or(outputs.len(), |i| at + i);
        panic!("a JWT in the output: {}", &outputs[start..end]);
    }
    for word in outputs.split(|c: char| !(c.is_ascii_alphanumeric() || "-_.~+/=".contains(c))) {
        if word.len() < 16 {
            continue;
        }
        let print = support::fingerprint(word);
        assert!(
            !issued.iter().any(|t| t.fingerprint == print),
            "a {} appeared in the output",
            issued
                .iter()
                .find(|t| t.fingerprint == print)
                .map_or("token", |t| t.kind)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_the_server_refuses_makes_plain_mode_fail() {
    let stack = Stack::start(None).await;
    let alice = User::new("alice", &stack);
    alice.login(&stack.idp).await;
    let mut a = alice.plain();
    a.send("fine").await;
    a.send(&"x".repeat(5000)).await;
    let (status, seen, stderr) = a.finish().await;
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains("error: 1 messages were refused by the server"),
        "{stderr}"
    );
    assert_eq!(
        messages(&seen),
        [(1, "alice".to_owned(), "fine".to_owned())]
    );
    alice.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_whose_history_was_reset_is_followed_from_its_new_end() {
    let mut stack = Stack::start(None).await;
    let (alice, bob, mut a, mut b) = support::chatting_pair(&stack).await;
    for i in 1..=3 {
        a.send(&format!("old {i}")).await;
    }
    b.expect_line("[3] alice: old 3").await;
    // The database is gone: sequence numbers start again at 1, below what
    // both clients saw. They must show the new messages, not skip them.
    stack.reset_server().await;
    b.expect_status("joined #general (last message 0)").await;
    a.send("after the reset").await;
    b.expect_line("[1] alice: after the reset").await;
    let (status, alice_saw, stderr) = a.finish().await;
    assert!(status.success(), "{stderr}");
    assert!(
        alice_saw.contains(&"[1] alice: after the reset".to_owned()),
        "{alice_saw:?}"
    );
    let _ = b.finish().await;
    alice.cleanup().await;
    bob.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_passes_prompt_login_hint_and_max_age_to_the_provider() {
    use tokio::io::AsyncBufReadExt as _;
    let stack = Stack::start(None).await;
    let user = User::new("alice", &stack);
    let mut child = user
        .command()
        .args([
            "login",
            "--no-browser",
            "--prompt",
            "login",
            "--login-hint",
            "bob",
            "--max-age",
            "60",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("chat login");
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first = stdout.next_line().await.expect("read").expect("a line");
    let url = url::Url::parse(first.trim_start_matches("Open this URL to sign in: ")).expect("url");
    let param = |name: &str| {
        url.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    assert_eq!(param("prompt").as_deref(), Some("login consent"));
    assert_eq!(param("login_hint").as_deref(), Some("bob"));
    assert_eq!(param("max_age").as_deref(), Some("60"));
    // The provider signs in the hinted user (auto-login honours a known hint).
    stack
        .idp
        .control()
        .set_auto_login(Some("alice"))
        .expect("auto login");
    reqwest::get(url.as_str()).await.expect("the browser");
    let second = stdout.next_line().await.expect("read");
    assert_eq!(second.as_deref(), Some("Signed in as bob"));
    assert!(child.wait().await.expect("wait").success());
    user.cleanup().await;
}

/// `chat --dpop` (here as `SESSIONKIT_DPOP=1`, at the login only): alice's
/// tokens are bound to a key kept with her account in the kernel keyring,
/// and every later command proves possession of it by itself — `whoami`,
/// the chat's handshakes (chat-server refuses a bound token sent as a
/// bearer token), the refreshes while chatting (6 s tokens; the provider
/// requires its DPoP nonces and refuses a bound refresh token without a
/// proof), and the logout's revocation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dpop_user_signs_in_chats_refreshes_and_logs_out() {
    let stack = Stack::start(Some(6)).await;
    stack.idp.control().set_dpop_nonce_required(true);
    let alice = User::new("alice", &stack);
    let bob = User::new("bob", &stack);
    alice
        .login_with(&stack.idp, "warn", &[], &[("SESSIONKIT_DPOP", "1")])
        .await;
    bob.login(&stack.idp).await;
    let alice_sub = stack
        .idp
        .control()
        .user("alice")
        .expect("alice")
        .sub()
        .to_owned();
    let bound_tokens = || {
        stack
            .idp
            .control()
            .recent_tokens()
            .into_iter()
            .filter(|t| t.kind == "access_token" && t.claims["sub"] == alice_sub.as_str())
            .map(|t| t.claims["cnf"]["jkt"].as_str().map(str::to_owned))
            .collect::<Vec<_>>()
    };
    let at_login = bound_tokens();
    let jkt = at_login
        .last()
        .cloned()
        .flatten()
        .expect("alice's access token is DPoP-bound");

    // Without --dpop: the account's key is used all the same.
    let me = alice.run(&["whoami"]).await;
    assert!(me.ok().contains(&alice_sub), "{}", me.stdout);

    let (mut a, mut b) = (alice.plain(), bob.plain());
    a.expect_status("joined #general").await;
    b.expect_status("joined #general").await;
    for i in 1..=8 {
        a.send(&format!("tick {i}")).await;
        b.expect_line(&format!("[{i}] alice: tick {i}")).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    b.send("bye alice").await;
    a.expect_line("[9] bob: bye alice").await;
    let (status, _, a_err) = a.finish().await;
    assert!(status.success(), "{a_err}");
    assert!(a_err.contains("token refreshed"), "{a_err}");
    let _ = b.finish().await;
    let later = bound_tokens();
    assert!(later.len() > at_login.len(), "refreshed while chatting");
    assert!(
        later.iter().all(|j| j.as_deref() == Some(jkt.as_str())),
        "every token of alice is bound to the one key: {later:?}"
    );

    let out = alice.run(&["logout"]).await;
    out.ok();
    assert!(
        stack
            .idp
            .control()
            .requests()
            .iter()
            .any(|r| r.endpoint == "revocation" && r.status == 200),
        "the logout revoked"
    );
    let after = alice.run(&["whoami"]).await;
    assert!(!after.status.success(), "signed out: {}", after.stdout);
    alice.cleanup().await;
    bob.cleanup().await;
}

/// A provider that takes pushed authorization requests only (RFC 9126):
/// `chat login` pushes by itself, and the URL it prints carries only
/// `client_id` and `request_uri`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_login_pushes_its_request_when_the_provider_requires_it() {
    let idp = sessionkit_mock_idp::MockIdp::builder()
        .bind("127.0.0.1:0")
        .config(sessionkit_mock_idp::Config {
            require_pushed_authorization_requests: true,
            ..sessionkit_mock_idp::Config::default()
        })
        .start()
        .await
        .expect("mock idp");
    let stack = Stack::with_idp(idp).await;
    let carol = User::new("carol", &stack);
    let printed = carol.login_logged(&stack.idp, "warn").await;
    let url = printed
        .lines()
        .find_map(|l| l.strip_prefix("Open this URL to sign in: "))
        .expect("the URL line");
    let url = url::Url::parse(url).expect("url");
    let names: Vec<_> = url.query_pairs().map(|(k, _)| k.into_owned()).collect();
    assert_eq!(names, ["client_id", "request_uri"]);
    assert_eq!(
        stack
            .idp
            .control()
            .requests()
            .iter()
            .filter(|r| r.endpoint == "par" && r.status == 201)
            .count(),
        1
    );
    assert!(carol.run(&["whoami"]).await.ok().contains("carol"));
    carol.cleanup().await;
}
