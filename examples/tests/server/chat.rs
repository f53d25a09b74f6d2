//! Rooms: delivery, idempotent resends, resuming without gaps or duplicates,
//! and frame validation.

use std::collections::BTreeSet;

use sessionkit_examples::protocol::{ClientFrame, MAX_ID_BYTES, MAX_TEXT_BYTES, ServerFrame};
use sessionkit_examples::server::ServerConfig;

use crate::support::{Client, Event, idp, server, server_with, token, within};

#[tokio::test]
async fn two_users_chat_in_a_room() {
    let idp = idp().await;
    let server = server(&idp).await;
    let mut alice = Client::connect(&server, &token(&idp, "alice").await).await;
    let mut bob = Client::connect(&server, &token(&idp, "bob").await).await;
    assert!(matches!(&alice.hello, ServerFrame::Hello { user, .. } if user == "alice"));
    assert!(matches!(&bob.hello, ServerFrame::Hello { user, .. } if user == "bob"));
    assert_eq!(server.connections(), 2);

    assert_eq!(alice.join("general", 0).await, (vec![], 0));
    assert_eq!(bob.join("general", 0).await, (vec![], 0));

    assert_eq!(alice.post("general", "a-1", "hi bob").await, 1);
    for client in [&mut alice, &mut bob] {
        let m = client.message("general", 1).await;
        assert_eq!(
            (m.user.as_str(), m.id.as_str(), m.text.as_str()),
            ("alice", "a-1", "hi bob")
        );
    }
    assert_eq!(bob.post("general", "b-1", "hi alice").await, 2);
    for client in [&mut alice, &mut bob] {
        let m = client.message("general", 2).await;
        assert_eq!((m.user.as_str(), m.text.as_str()), ("bob", "hi alice"));
    }

    // Another room is separate, with its own sequence.
    assert_eq!(alice.post("other", "a-2", "elsewhere").await, 1);
    assert_eq!(bob.post("general", "b-2", "still here").await, 3);
    let m = alice.message("general", 3).await;
    assert_eq!(m.text, "still here");
    assert!(
        !alice
            .backlog()
            .iter()
            .any(|f| matches!(f, ServerFrame::Message(m) if m.room == "other")),
        "alice did not join `other`"
    );
}

#[tokio::test]
async fn a_resent_message_is_stored_and_delivered_once() {
    let idp = idp().await;
    let server = server(&idp).await;
    let alice_token = token(&idp, "alice").await;
    let mut alice = Client::connect(&server, &alice_token).await;
    let mut bob = Client::connect(&server, &token(&idp, "bob").await).await;
    bob.join("general", 0).await;

    assert_eq!(alice.post("general", "x", "once").await, 1);
    assert_eq!(
        alice.post("general", "x", "once").await,
        1,
        "the resend gets the same seq"
    );
    // A resend from a new connection (after a reconnect) too.
    let mut again = Client::connect(&server, &alice_token).await;
    assert_eq!(again.post("general", "x", "once").await, 1);
    // Bob's id "x" is his own.
    assert_eq!(bob.post("general", "x", "bob's x").await, 2);
    assert_eq!(
        alice.post("general", "y", "next").await,
        3,
        "no row was added by the resends"
    );

    let mut seen = Vec::new();
    while seen.len() < 3 {
        match bob.frame().await {
            ServerFrame::Message(m) => seen.push((m.seq, m.id)),
            ServerFrame::Ack { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        seen,
        [(1, "x".into()), (2, "x".into()), (3, "y".into())],
        "delivered once each"
    );

    let mut late = Client::connect(&server, &token(&idp, "carol").await).await;
    let (history, last) = late.join("general", 0).await;
    assert_eq!(last, 3);
    let seqs: Vec<_> = history.iter().map(|m| (m.seq, m.user.as_str())).collect();
    assert_eq!(
        seqs,
        [(1, "alice"), (2, "bob"), (3, "alice")],
        "stored once"
    );
}

#[tokio::test]
async fn a_join_resumes_after_the_last_seen_sequence() {
    let idp = idp().await;
    let server = server(&idp).await;
    let mut alice = Client::connect(&server, &token(&idp, "alice").await).await;
    for i in 1..=5 {
        assert_eq!(
            alice
                .post("general", &format!("m{i}"), &format!("text {i}"))
                .await,
            i
        );
    }
    let mut bob = Client::connect(&server, &token(&idp, "bob").await).await;
    let (history, last) = bob.join("general", 2).await;
    assert_eq!(history.iter().map(|m| m.seq).collect::<Vec<_>>(), [3, 4, 5]);
    assert_eq!(history[0].text, "text 3");
    assert_eq!(last, 5);
    assert_eq!(alice.post("general", "m6", "live").await, 6);
    match bob.frame().await {
        ServerFrame::Message(m) => assert_eq!((m.seq, m.text.as_str()), (6, "live")),
        other => panic!("expected the live message, got {other:?}"),
    }
    // Nothing after the end; a join past the end just reports the end.
    assert_eq!(bob.join("general", 6).await, (vec![], 6));
}

/// A cursor past the room's end (the server's database was reset) is told
/// the real end, and every message after that end is delivered, even those
/// numbered up to the old cursor: they are new.
#[tokio::test]
async fn a_join_past_the_end_gets_every_new_message() {
    let idp = idp().await;
    let server = server(&idp).await;
    let mut alice = Client::connect(&server, &token(&idp, "alice").await).await;
    for i in 1..=5 {
        assert_eq!(alice.post("general", &format!("m{i}"), "old").await, i);
    }
    let mut bob = Client::connect(&server, &token(&idp, "bob").await).await;
    assert_eq!(bob.join("general", 9).await, (vec![], 5));
    for i in 6..=11 {
        assert_eq!(alice.post("general", &format!("m{i}"), "new").await, i);
    }
    for seq in 6..=11 {
        match bob.frame().await {
            ServerFrame::Message(m) => assert_eq!((m.seq, m.text.as_str()), (seq, "new")),
            other => panic!("expected message {seq}, got {other:?}"),
        }
    }

    // An empty room too.
    assert_eq!(bob.join("fresh", 2).await, (vec![], 0));
    for i in 1..=3 {
        assert_eq!(alice.post("fresh", &format!("f{i}"), "f").await, i);
    }
    for seq in 1..=3 {
        match bob.frame().await {
            ServerFrame::Message(m) => assert_eq!((m.room.as_str(), m.seq), ("fresh", seq)),
            other => panic!("expected message {seq}, got {other:?}"),
        }
    }
}

/// Joins while another client posts as fast as it can: every join must see
/// each message exactly once, history then live, in order. The joiners are
/// let go by the number of acks the poster has seen, not by the clock; one
/// joins while the poster waits half way, so at least one join certainly
/// lands inside the burst.
#[tokio::test]
async fn joins_during_a_burst_of_posts_have_no_gap_and_no_duplicate() {
    const TOTAL: u64 = 400;
    /// The poster waits here until the joiner gated on it has joined.
    const PAUSE_AT: u64 = 200;
    /// Each joiner's `after`, and how many acks the poster has seen when it joins.
    const JOINERS: [(u64, u64); 4] = [(0, 0), (3, 50), (6, PAUSE_AT), (9, 300)];
    let idp = idp().await;
    // The poster sends far faster than a user may; this test is about order.
    let mut config = ServerConfig::new(idp.issuer());
    config.users.frame_burst = 1_000;
    config.users.frames_per_second = 10_000;
    let server = server_with(config).await;
    let mut poster = Client::connect(&server, &token(&idp, "bob").await).await;
    let alice_token = token(&idp, "alice").await;
    let mut joiners = Vec::new();
    for _ in JOINERS {
        joiners.push(Client::connect(&server, &alice_token).await);
    }
    let (acks_tx, acks_rx) = tokio::sync::watch::channel(0_u64);
    let (resume_tx, resume_rx) = tokio::sync::oneshot::channel::<()>();

    let burst = tokio::spawn(async move {
        let mut acked = BTreeSet::new();
        let mut resume = Some(resume_rx);
        for (from, to) in [(1, PAUSE_AT), (PAUSE_AT + 1, TOTAL)] {
            for i in from..=to {
                poster.post_nowait("busy", &format!("p{i}"), "x").await;
            }
            while acked.len() < to as usize {
                if let ServerFrame::Ack { seq, .. } = poster.frame().await {
                    acked.insert(seq);
                    acks_tx.send_replace(acked.len() as u64);
                }
            }
            if let Some(resume) = resume.take() {
                within("the joiner at the pause", resume)
                    .await
                    .expect("resumed");
            }
        }
        (acked, acks_tx)
    });

    let mut resume_tx = Some(resume_tx);
    let mut checks = Vec::new();
    for (n, ((after, gate), mut joiner)) in JOINERS.into_iter().zip(joiners).enumerate() {
        let mut acks = acks_rx.clone();
        let resume = if gate == PAUSE_AT {
            resume_tx.take()
        } else {
            None
        };
        checks.push(tokio::spawn(async move {
            within("the joiner's turn", acks.wait_for(|acked| *acked >= gate))
                .await
                .expect("the poster is there");
            joiner
                .send(&ClientFrame::Join {
                    room: "busy".into(),
                    after,
                })
                .await;
            let mut seqs = Vec::new();
            let mut joined_at = None;
            let mut resume = resume;
            while joined_at.is_none() || seqs.last().copied() != Some(TOTAL) {
                match joiner.frame().await {
                    ServerFrame::Message(m) => seqs.push(m.seq),
                    ServerFrame::Joined { last_seq, .. } => {
                        // The history ends exactly at `last_seq`.
                        if last_seq > after {
                            assert_eq!(seqs.last().copied(), Some(last_seq), "joiner {n}");
                        } else {
                            assert!(seqs.is_empty(), "joiner {n}");
                        }
                        joined_at = Some(last_seq);
                        if let Some(resume) = resume.take() {
                            resume.send(()).expect("the poster waits");
                        }
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
            let last = joined_at.expect("joined");
            let expected: Vec<u64> = (after.min(last) + 1..=TOTAL).collect();
            if seqs != expected {
                let seen: BTreeSet<u64> = seqs.iter().copied().collect();
                let missing: Vec<_> = expected.iter().filter(|s| !seen.contains(s)).collect();
                let repeated: Vec<_> = seqs
                    .windows(2)
                    .filter(|w| w[0] >= w[1])
                    .map(|w| w[1])
                    .collect();
                panic!("joiner {n}: missing {missing:?}, repeated or out of order {repeated:?}");
            }
            last
        }));
    }
    let (acked, _acks_tx) = burst.await.expect("poster");
    assert_eq!(acked, (1..=TOTAL).collect());
    let mut joined = Vec::new();
    for check in checks {
        joined.push(check.await.expect("joiner"));
    }
    for ((_, gate), last) in JOINERS.into_iter().zip(&joined) {
        assert!(*last >= gate, "joined before its turn: {joined:?}");
    }
    // The join at the pause saw exactly the first half as history, the rest live.
    assert_eq!(joined[2], PAUSE_AT, "{joined:?}");
}

#[tokio::test]
async fn bad_frames_are_refused_and_the_connection_stays() {
    let idp = idp().await;
    let server = server(&idp).await;
    let mut alice = Client::connect(&server, &token(&idp, "alice").await).await;
    let error = |frame: ServerFrame| match frame {
        ServerFrame::Error { code, id, .. } => (code, id),
        other => panic!("expected an error, got {other:?}"),
    };

    alice.send_text("not json").await;
    assert_eq!(error(alice.frame().await), ("bad_frame".into(), None));
    alice.send_text(r#"{"type":"dance","id":"d"}"#).await;
    assert_eq!(
        error(alice.frame().await),
        ("bad_frame".into(), Some("d".into()))
    );
    alice
        .send_text(r#"{"type":"send","room":"general","id":"n"}"#)
        .await;
    assert_eq!(
        error(alice.frame().await),
        ("bad_frame".into(), Some("n".into()))
    );
    alice
        .send(&ClientFrame::Join {
            room: "Bad Room".into(),
            after: 0,
        })
        .await;
    assert_eq!(error(alice.frame().await).0, "bad_room");
    alice.post_nowait("no/slash", "r", "t").await;
    assert_eq!(
        error(alice.frame().await),
        ("bad_room".into(), Some("r".into()))
    );
    alice.post_nowait("general", "", "t").await;
    assert_eq!(error(alice.frame().await).0, "bad_frame");
    alice
        .post_nowait("general", &"i".repeat(MAX_ID_BYTES + 1), "t")
        .await;
    assert_eq!(error(alice.frame().await).0, "too_long");
    alice
        .post_nowait("general", "long", &"t".repeat(MAX_TEXT_BYTES + 1))
        .await;
    assert_eq!(
        error(alice.frame().await),
        ("too_long".into(), Some("long".into()))
    );

    // The limits themselves are fine, and nothing refused was stored.
    let seq = alice
        .post(
            "general",
            &"i".repeat(MAX_ID_BYTES),
            &"t".repeat(MAX_TEXT_BYTES),
        )
        .await;
    assert_eq!(seq, 1);
    // An id reused in another room is refused rather than acked for the wrong room.
    alice
        .post_nowait("other", &"i".repeat(MAX_ID_BYTES), "t")
        .await;
    assert_eq!(error(alice.frame().await).0, "bad_frame");

    // A frame over the size limit ends the connection.
    alice
        .send_text(&format!("{{\"pad\":\"{}\"}}", "x".repeat(100 * 1024)))
        .await;
    assert!(matches!(
        alice.event().await,
        Event::Closed(..) | Event::Ended
    ));
}
