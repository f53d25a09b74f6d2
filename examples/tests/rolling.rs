//! The load harness of `benches/rolling` in its short form, as a test:
//! 60 realtime clients on three `chat-server` processes sharing one
//! PostgreSQL database (skipped without `SESSIONKIT_PG_URL` unless
//! `SESSIONKIT_REQUIRE_POSTGRES` is set), 10 of them sending, one node
//! stopped with SIGTERM and another killed with SIGKILL while they send.
//! Asserts correctness only, never timing: every client's messages are
//! exactly the committed ones of its room, each once, in order; every send
//! is acknowledged under the number it was committed with; every client of
//! a stopped node resumed on another (the harness waits for that and fails
//! otherwise).

#[path = "../benches/rolling/harness/mod.rs"]
mod harness;

use sessionkit_tests::postgres::TestDatabase;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_under_load_loses_and_doubles_nothing() {
    let Some(db) = TestDatabase::create("rolling_short").await else {
        return;
    };
    let config = harness::Config::short();
    let report = harness::run(&config, &db).await;
    let text = report.render();
    eprintln!("{text}");
    let check = &report.check;
    assert!(check.sent > 0 && check.committed > 0, "{text}");
    assert_eq!(check.lost, 0, "lost messages\n{text}");
    assert_eq!(check.duplicates, 0, "duplicated messages\n{text}");
    assert!(check.clean(), "{text}");
    assert_eq!(report.phases.events.len(), 2, "{text}");
    for event in &report.phases.events {
        assert!(
            !event.resumes.is_empty(),
            "the stopped node had clients\n{text}"
        );
        assert_eq!(
            event.resumes.len(),
            event.landed.values().sum::<usize>(),
            "every client of node {} resumed on another\n{text}",
            event.node
        );
        assert!(!event.landed.contains_key(&event.node), "{text}");
    }
}

/// The harness's own counting, on made-up deliveries.
mod counting {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use sessionkit_examples::protocol::ChatMessage;

    use crate::harness::measure::{Event, busiest, quantile};
    use crate::harness::member::{Seen, message_id};
    use crate::harness::node::Signal;

    fn message(seq: u64, id: &str) -> ChatMessage {
        ChatMessage {
            room: "room0".into(),
            seq,
            user: "u1".into(),
            id: id.into(),
            text: "t100 hi".into(),
            sent_at: 0,
        }
    }

    #[test]
    fn a_resume_overlap_is_told_from_a_duplicate() {
        let mut seen = Seen::default();
        seen.on_hello();
        for seq in 1..=5 {
            seen.on_message(&message(seq, &message_id(1, seq)), 200);
        }
        // A resume asked after 3 (its cursor lagged its queue): on the new
        // connection 4 and 5 come again — the expected overlap.
        seen.resuming_after = Some(3);
        seen.on_hello();
        seen.on_message(&message(4, "s1-4"), 300);
        seen.on_message(&message(5, "s1-5"), 300);
        assert_eq!((seen.overlap, seen.duplicates), (2, 0));
        // 5 once more on that connection: a duplicate, resume or not.
        seen.on_message(&message(5, "s1-5"), 300);
        assert_eq!((seen.overlap, seen.duplicates), (2, 1));
        // At or below the cursor the resume asked from: a duplicate.
        seen.on_hello();
        seen.on_message(&message(3, "s1-3"), 300);
        assert_eq!((seen.overlap, seen.duplicates), (2, 2));
        seen.on_joined(5, 300);
        // Outside a resume, a second copy is a duplicate; a skip, a gap.
        seen.on_message(&message(5, "s1-5"), 400);
        seen.on_message(&message(7, "s1-7"), 400);
        assert_eq!((seen.overlap, seen.duplicates, seen.gaps), (2, 3, 1));
        assert_eq!(seen.received.len(), 6);
        assert_eq!(seen.latencies[0], (100, 100));
    }

    #[test]
    fn the_storm_is_the_busiest_sliding_window_against_the_base_delay() {
        let ms = |v: &[u64]| v.iter().map(|x| x * 1000).collect::<Vec<_>>();
        assert_eq!(
            busiest(&ms(&[0, 50, 99, 100, 149, 199]), Duration::from_millis(100)),
            4
        );
        assert_eq!(
            busiest(&ms(&[0, 50, 99, 100, 180, 199]), Duration::from_millis(100)),
            3
        );
        assert_eq!(busiest(&[], Duration::from_millis(100)), 0);
        let worst = Event {
            signal: Signal::Term,
            node: 0,
            signalled: 0,
            resumed_all: 0,
            back: 0,
            resumes: Vec::new(),
            landed: BTreeMap::new(),
            // 250 connections in one millisecond: no spread at all.
            connects: vec![5_000; 250],
            failed_attempts: 0,
            listen_overflows: 0,
            reasons: BTreeMap::new(),
        };
        let (most, average, ratio) = worst.storm(Duration::from_millis(100));
        assert_eq!((most, average), (250, 100.0));
        assert!((ratio - 2.5).abs() < 1e-9, "{ratio}");
        assert!((worst.storm(Duration::from_millis(25)).2 - 10.0).abs() < 1e-9);
        assert_eq!(worst.grid(Duration::from_millis(100)), vec![250]);
        // Spread evenly over the base delay: 1x in either width.
        let even = Event {
            connects: (0..250).map(|i| i * 1000).collect(),
            ..worst
        };
        assert!((even.storm(Duration::from_millis(100)).2 - 1.0).abs() < 1e-9);
        assert!((even.storm(Duration::from_millis(25)).2 - 1.0).abs() < 1e-9);
        assert_eq!(even.grid(Duration::from_millis(100)), vec![100, 100, 50]);
    }

    #[test]
    fn quantiles_take_the_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(
            (quantile(&v, 0.5), quantile(&v, 0.99), quantile(&v, 1.0)),
            (50, 99, 100)
        );
        assert_eq!(quantile(&[], 0.5), 0);
    }
}
