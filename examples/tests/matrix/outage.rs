//! Timing goals on the real network, beside the matrix (not cells of it):
//! a burst of resets from a chat-server host is outlasted by at most the
//! client's base delay, with its default backoff (the issue measured 11.4 s
//! offline after a 10 s burst on the earlier backoff, whose ceiling the
//! quick refusals had pushed to 16 s).

use std::time::Duration;

use sessionkit_realtime::Backoff;
use sessionkit_tests::netns::Impairment;
use tokio::time::Instant;

use crate::net_support::{NetWorld, connected};

/// The default backoff's base delay (250 ms): the goal's bound.
const BASE: Duration = Duration::from_millis(250);
/// What a loaded 2-core machine may add to it (a handshake, a join).
const SLACK: Duration = Duration::from_millis(750);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_burst_of_resets_the_client_is_back_within_its_base_delay() {
    let Some(world) = NetWorld::start("outage::resets").await else {
        return;
    };
    let session = world.sign_in("alice").await.unwrap();
    assert_eq!(
        Backoff::default().ceiling(0),
        BASE,
        "the default base delay"
    );
    // The default backoff and refusal probing; a short liveness bound only
    // so that the reset is met soon (a ping is the next segment).
    let chat = world
        .chat_with(&session, |b| {
            b.backoff(Backoff::default())
                .ping(Duration::from_millis(300), Duration::from_secs(1))
        })
        .await;
    chat.send("a-1").await;
    chat.all_acked().await;

    world.impair(Impairment::Reset);
    chat.state(|s| !connected(s)).await;
    chat.send("a-2").await;
    // Five seconds of resets: every attempt is refused at once.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(!connected(&chat.client.current_state()));
    let healed = Instant::now();
    world.impair(Impairment::Clear);
    let (back, _) = chat.state(connected).await;
    let offline = back - healed;
    eprintln!("back {offline:?} after the resets ended");
    assert!(
        offline < BASE + SLACK,
        "back {offline:?} after the resets ended"
    );
    chat.joined(2).await;
    chat.all_acked().await;
    world
        .assert_history(&session, &["a-1".to_owned(), "a-2".to_owned()])
        .await;
}
