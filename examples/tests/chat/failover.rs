//! `chat --plain` with several `--server`s (each its own SQLite history, so
//! this checks the failover, not a shared history): a server nobody
//! listens on is skipped, and a server stopped mid-chat (close 1001) makes
//! the client move to the other one, where what it sends arrives.
//!
//! The same failover with a shared history (two nodes on one PostgreSQL
//! database, the node stopped and killed) is in `shared_history.rs`.

use sessionkit_examples::server::{ChatServer, Database, ServerConfig};

use crate::support::{Stack, User, connected_to, messages};

/// A `ws://` URL where nothing listens (a port bound, then let go).
async fn dead_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    format!("ws://{addr}/ws")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_server_in_the_list_is_skipped_in_flags_and_in_the_environment() {
    let stack = Stack::start(None).await;
    let dead = dead_url().await;
    let alice = User::new("alice", &stack);
    alice.login(&stack.idp).await;
    // The start is random: go on until a run has started on the dead one
    // (each run does so with odds 1/2), with flags and with the environment.
    let mut started_dead = [false, false];
    let mut seq = 0;
    // Each mode starts on the dead server with probability 1/2 per round:
    // 20 rounds of each leave 2^-20 to chance (16 in all failed once in CI).
    for round in 0..40 {
        if started_dead == [true, true] {
            break;
        }
        let env = round % 2 == 1;
        let mut a = alice.plain_on_servers(&[&dead, &stack.server_url], env);
        a.expect_status("joined #general").await;
        let text = format!("hello {round}");
        a.send(&text).await;
        seq += 1;
        a.expect_line(&format!("[{seq}] alice: {text}")).await;
        let (status, _, stderr) = a.finish().await;
        assert!(status.success(), "{stderr}");
        assert!(
            stderr.contains(&format!("on {dead}, {}", stack.server_url)),
            "both servers listed: {stderr}"
        );
        assert_eq!(
            connected_to(&stderr, 1).as_deref(),
            Some(stack.server_url.as_str()),
            "{stderr}"
        );
        // A refusal names the server that refused.
        started_dead[usize::from(env)] |= stderr.contains(&format!("({dead}: "));
    }
    assert_eq!(started_dead, [true, true], "40 random starts");
    alice.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_stopped_mid_chat_is_left_for_the_other_one() {
    let mut stack = Stack::start(None).await;
    let mut config = ServerConfig::new(stack.idp.issuer());
    config.db = Database::File(stack.dir.join("second.db"));
    let mut second = Some(ChatServer::start(config).await.expect("second chat server"));
    let second_url = second.as_ref().expect("running").ws_url();
    let first_url = stack.server_url.clone();

    let alice = User::new("alice", &stack);
    alice.login(&stack.idp).await;
    let mut a = alice.plain_on_servers(&[&first_url, &second_url], false);
    a.expect_status("joined #general").await;
    let on = connected_to(&a.stderr(), 1).expect("connected somewhere");
    let other = if on == first_url {
        second_url.clone()
    } else {
        first_url.clone()
    };
    a.send("before the move").await;
    a.expect_line("[1] alice: before the move").await;

    // bob watches the other server.
    let bob = User::new("bob", &stack).on_server(&other);
    bob.login(&stack.idp).await;
    let mut b = bob.plain();
    b.expect_status("joined #general").await;

    // alice's server shuts down (close 1001): she moves to bob's.
    if on == first_url {
        stack.stop_server().await;
    } else if let Some(server) = second.take() {
        server.shutdown().await;
    }
    a.expect_status("1001").await;
    let deadline = tokio::time::Instant::now() + crate::support::PATIENCE;
    while connected_to(&a.stderr(), 2).is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no second connection: {}",
            a.stderr()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(connected_to(&a.stderr(), 2), Some(other.clone()));

    // What alice sends now arrives on the other server, for bob and for her.
    a.send("after the move").await;
    b.expect_line("[1] alice: after the move").await;
    a.expect_line("[1] alice: after the move").await;
    let (status, alice_saw, stderr) = a.finish().await;
    assert!(status.success(), "{stderr}");
    assert_eq!(
        messages(&alice_saw)
            .iter()
            .filter(|(_, _, text)| text == "after the move")
            .count(),
        1,
        "printed once: {alice_saw:?}"
    );
    let (status, seen, stderr) = b.finish().await;
    assert!(status.success(), "{stderr}");
    assert_eq!(
        messages(&seen),
        [(1, "alice".to_owned(), "after the move".to_owned())]
    );
    if let Some(server) = second {
        server.shutdown().await;
    }
    alice.cleanup().await;
    bob.cleanup().await;
}
