//! The realtime client against the example chat server through the
//! fault-injecting proxy (`sessionkit_tests::faults`): a partitioned node
//! (packets silently dropped), a reset mid-session, a server that refuses
//! connections for a while and 300 ms of latency each way. Every case checks the server's stored history: nothing lost,
//! nothing doubled.

#![allow(missing_docs, unreachable_pub, clippy::unwrap_used)]

#[path = "../../examples/tests/common/room_chat.rs"]
mod room_chat;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use room_chat::{Chat, connected};
use serde_json::json;
use sessionkit_examples::server::{ChatServer, ServerConfig};
use sessionkit_mock_idp::{Alg, MockIdp};
use sessionkit_realtime::{Backoff, RealtimeClient, StaticToken};
use sessionkit_tests::faults::{Fault, FaultProxy};
use tokio::time::Instant;

const ROOM: &str = "faults";
/// The liveness bound under test: ping after 500 ms of silence, dead after 1 s.
const PING: Duration = Duration::from_millis(500);
const DEAD: Duration = Duration::from_secs(1);

struct World {
    idp: MockIdp,
    _server: ChatServer,
    proxy: FaultProxy,
}

impl World {
    async fn start() -> Self {
        let idp = MockIdp::builder()
            .bind("127.0.0.1:0")
            .start()
            .await
            .unwrap();
        let server = ChatServer::start(ServerConfig::new(idp.issuer()))
            .await
            .unwrap();
        let proxy = FaultProxy::start(server.local_addr()).await.unwrap();
        Self {
            idp,
            _server: server,
            proxy,
        }
    }

    /// A good access token for `sub`, signed by the provider's key.
    fn token(&self, sub: &str) -> String {
        let now = self.idp.control().now();
        let claims = json!({
            "iss": self.idp.issuer(),
            "aud": "chat-server",
            "sub": sub,
            "exp": now + 600,
            "iat": now,
            "client_id": "chat-example",
            "scope": "openid profile",
        });
        self.idp.control().sign_jwt(Alg::RS256, "at+jwt", &claims)
    }

    fn url(&self) -> String {
        format!("ws://{}/ws", self.proxy.local_addr())
    }

    /// A chat client through the proxy, joined to [`ROOM`], that resumes
    /// after the last message it saw and re-sends what is unacknowledged.
    async fn chat(&self, sub: &str) -> Chat {
        let quick = Backoff::new(Duration::from_millis(50), 2.0, Duration::from_millis(400));
        self.chat_with(sub, quick).await
    }

    /// [`World::chat`] with this reconnect schedule.
    async fn chat_with(&self, sub: &str, backoff: Backoff) -> Chat {
        let builder = RealtimeClient::builder(self.url())
            .ping(PING, DEAD)
            .connect_timeout(DEAD)
            .backoff(backoff);
        let chat = Chat::start(builder, ROOM, Arc::new(StaticToken::new(self.token(sub))));
        chat.joined(1).await;
        chat
    }
}

/// The room's stored history, read by a fresh client: exactly `ids`, each
/// once, with sequence numbers 1, 2, 3, … without gaps.
async fn assert_history(world: &World, ids: &[&str]) {
    world.proxy.set(Fault::Pass);
    let mut reader = world.chat("reader").await;
    let mut stored = Vec::new();
    while stored.len() < ids.len() {
        stored.push(reader.next().await.1);
    }
    // Nothing more than that: a double would follow at once.
    let extra = tokio::time::timeout(Duration::from_millis(300), reader.messages.recv()).await;
    assert!(extra.is_err(), "a message beyond {ids:?}: {extra:?}");
    let seqs: Vec<u64> = stored.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, (1..=ids.len() as u64).collect::<Vec<_>>());
    let stored_ids: HashSet<&str> = stored.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(stored_ids, ids.iter().copied().collect(), "{stored:?}");
    reader.client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_connection_is_noticed_within_the_liveness_bound_and_loses_nothing() {
    let world = World::start().await;
    let alice = world.chat("alice").await;
    alice.send("a-1").await;
    alice.all_acked().await;

    // Partition: packets silently dropped, nothing closes.
    world.proxy.set(Fault::Blackhole);
    let cut = Instant::now();
    alice.send("a-2").await;
    alice.send("a-3").await;
    let (noticed, _) = alice.state(|s| !connected(s)).await;
    let noticed_after = noticed - cut;
    eprintln!("partition noticed after {noticed_after:?} (ping {PING:?}, dead {DEAD:?})");
    assert!(
        noticed_after <= DEAD + Duration::from_secs(1),
        "noticed after {noticed_after:?}, bound {DEAD:?}"
    );
    // Still partitioned: attempts time out and nothing connects.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!connected(&alice.client.current_state()));
    alice.send("a-4").await;

    // Healed: the client reconnects and re-sends; the frames held in the
    // partition reach the server too, on the old connection.
    world.proxy.set(Fault::Pass);
    let healed = Instant::now();
    let (back, _) = alice.state(connected).await;
    eprintln!("reconnected {:?} after the partition healed", back - healed);
    alice.all_acked().await;
    alice.send("a-5").await;
    alice.all_acked().await;
    assert_history(&world, &["a-1", "a-2", "a-3", "a-4", "a-5"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_mid_session_reconnects_and_loses_nothing() {
    let world = World::start().await;
    let mut bob = world.chat("bob").await;
    let alice = world.chat("alice").await;
    alice.send("a-1").await;
    alice.all_acked().await;

    // One message in flight as both connections are reset.
    alice.send("a-2").await;
    world.proxy.set(Fault::Reset);
    alice.state(|s| !connected(s)).await;
    bob.state(|s| !connected(s)).await;
    alice.send("a-3").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    world.proxy.set(Fault::Pass);
    alice.state(connected).await;
    bob.state(connected).await;
    alice.all_acked().await;
    alice.send("a-4").await;
    alice.all_acked().await;

    // Bob resumed after the last message he saw: each once, in order.
    let mut seen = Vec::new();
    while seen.len() < 4 {
        seen.push(bob.next().await.1.seq);
    }
    assert_eq!(seen, [1, 2, 3, 4]);
    assert_history(&world, &["a-1", "a-2", "a-3", "a-4"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_300_ms_latency_messages_arrive_in_the_path_delay_without_a_nagle_stall() {
    const LATENCY: Duration = Duration::from_millis(300);
    let world = World::start().await;
    let mut bob = world.chat("bob").await;
    let alice = world.chat("alice").await;
    world.proxy.set(Fault::Delay(LATENCY));

    // Alice → proxy → server, then server → proxy → Bob: two crossings.
    let sent = Instant::now();
    alice.send("a-1").await;
    let (at, message) = bob.next().await;
    assert_eq!(message.id, "a-1");
    let took = at - sent;
    eprintln!(
        "one message alice → bob: {took:?} (path delay {:?})",
        2 * LATENCY
    );
    assert!(took >= 2 * LATENCY, "{took:?}");
    assert!(took < 2 * LATENCY + Duration::from_millis(500), "{took:?}");

    // Two frames back to back: the second is not held behind the first.
    let sent = Instant::now();
    alice.send("a-2").await;
    alice.send("a-3").await;
    let (first, one) = bob.next().await;
    let (second, two) = bob.next().await;
    assert_eq!((one.id.as_str(), two.id.as_str()), ("a-2", "a-3"));
    eprintln!(
        "back to back: first after {:?}, second {:?} later",
        first - sent,
        second - first
    );
    assert!(
        second - first < Duration::from_millis(200),
        "{:?}",
        second - first
    );
    alice.all_acked().await;
    assert_history(&world, &["a-1", "a-2", "a-3"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_3_s_of_refused_connections_the_client_is_back_within_its_base_delay() {
    // The default schedule: 250 ms base, ×2, 30 s; refusals within the
    // probe window are retried every 125–250 ms instead of backing off.
    const BASE: Duration = Duration::from_millis(250);
    let world = World::start().await;
    let alice = world
        .chat_with("alice", Backoff::new(BASE, 2.0, Duration::from_secs(30)))
        .await;
    alice.send("a-1").await;
    alice.all_acked().await;

    // The server goes away: its connections reset, then nothing listens.
    world.proxy.set(Fault::Reset);
    alice.state(|s| !connected(s)).await;
    world.proxy.set(Fault::Refuse);
    alice.send("a-2").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!connected(&alice.client.current_state()));

    world.proxy.set(Fault::Pass);
    let back_at = Instant::now();
    let back = alice.state(connected).await.0 - back_at;
    eprintln!("back {back:?} after 3 s of refusals (base {BASE:?})");
    assert!(
        back < BASE + Duration::from_millis(750),
        "back after {back:?}"
    );
    alice.all_acked().await;
    assert_history(&world, &["a-1", "a-2"]).await;
}
