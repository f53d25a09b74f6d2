//! The fault matrix: every fault a user meets × every operation a session
//! makes, each cell a named test here (or a reason why it cannot apply),
//! against real parts — mock-idp's scripted faults, the OS keychain, chat-server
//! processes on PostgreSQL, and a real network path in a namespace.
//!
//! Each fault is a module holding its [`Row`] and its tests; a test is named
//! after its operation (`provider_5xx::login`, …). [`the_matrix_in_testing_md_is_this_one`]
//! checks that every named test exists and that TESTING.md shows this
//! catalogue (`SESSIONKIT_BLESS=1` rewrites it).

#![allow(missing_docs, unreachable_pub, clippy::unwrap_used)]

mod catalogue;
mod net_support;
mod node_support;
mod provider_support;
#[path = "../common/room_chat.rs"]
mod room_chat;

mod dropped;
mod invalid_grant;
mod keychain_locked;
mod latency;
mod loss;
mod malformed;
mod node_killed;
mod outage;
mod partitioned;
mod postgres_restart;
mod provider_5xx;
mod provider_slow;

use catalogue::Row;

/// The rows in the order TESTING.md shows them.
pub const ROWS: &[(&str, &Row)] = &[
    ("provider_5xx", &provider_5xx::ROW),
    ("provider_slow", &provider_slow::ROW),
    ("dropped", &dropped::ROW),
    ("malformed", &malformed::ROW),
    ("invalid_grant", &invalid_grant::ROW),
    ("keychain_locked", &keychain_locked::ROW),
    ("node_killed", &node_killed::ROW),
    ("partitioned", &partitioned::ROW),
    ("loss", &loss::ROW),
    ("latency", &latency::ROW),
    ("postgres_restart", &postgres_restart::ROW),
];

#[test]
fn the_matrix_in_testing_md_is_this_one() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut problems = Vec::new();
    for (module, row) in ROWS {
        let path = dir.join("tests/matrix").join(format!("{module}.rs"));
        let source = std::fs::read_to_string(&path).unwrap();
        problems.extend(catalogue::check_module(module, row, &source));
    }
    let testing_md = dir.join("../TESTING.md");
    let table = catalogue::markdown(ROWS);
    let drift =
        sessionkit_mock_idp::conformance::check_table_in_file(&testing_md, "fault-matrix", &table)
            .err();
    assert!(
        problems.is_empty() && drift.is_none(),
        "{}\n{}",
        problems.join("\n"),
        drift.unwrap_or_default()
    );
}
