//! The back-channel logout scenarios of mock-idp's conformance catalogue
//! against chat-server's receiver: alice signs in and connects, her session
//! ends at the provider, and the provider sends the scenario's logout token
//! (valid, `alg: none`, no event, with a nonce, HS256, another audience,
//! another event, another issuer). The provider judges by the status the
//! receiver answers; the test also checks what the answer means for the
//! socket (closed with 4003 only for the valid token). The table of verdicts
//! is the one in TESTING.md ("chat-server's back-channel logout receiver").

use sessionkit_examples::protocol::CLOSE_SIGNED_OUT;
use sessionkit_mock_idp::conformance::{
    Expect, Plan, RunResult, SCENARIOS, Scenario, Verdict, check_table_in_file, markdown_table,
};

use crate::support::{Client, idp, server, token, within};

async fn judge(s: &'static Scenario) -> RunResult {
    let idp = idp().await;
    let server = server(&idp).await;
    idp.control()
        .set_backchannel_logout_uri("chat-example", Some(&server.backchannel_logout_url()))
        .expect("register the logout URI");
    idp.control()
        .conformance_start(s.name, "chat-example")
        .expect("start");
    let mut alice = Client::connect(&server, &token(&idp, "alice").await).await;
    assert_eq!(idp.control().revoke_user_sessions("alice"), 1);
    within("the delivery", async {
        while idp.control().deliveries().is_empty() {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await;
    if s.expect == Expect::Status(200) {
        let (code, _) = alice.closed().await;
        assert_eq!(code, CLOSE_SIGNED_OUT, "{}", s.name);
    } else {
        alice.assert_alive().await;
    }
    idp.control()
        .conformance_finish("chat-example", None)
        .expect("an open run")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_back_channel_scenario_passes_and_testing_md_shows_the_table() {
    let mut results = Vec::new();
    for s in SCENARIOS
        .iter()
        .filter(|s| s.plan == Plan::BackChannelLogout)
    {
        results.push(judge(s).await);
    }
    let failed: Vec<String> = results
        .iter()
        .filter(|r| r.verdict != Verdict::Passed)
        .map(|r| format!("{}: {}", r.scenario, r.reason))
        .collect();
    assert!(
        failed.is_empty(),
        "failed scenarios:\n{}",
        failed.join("\n")
    );
    assert_eq!(results.len(), 8);
    let testing_md = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../TESTING.md");
    if let Err(drift) = check_table_in_file(&testing_md, "chat-server", &markdown_table(&results)) {
        panic!("{drift}");
    }
}
