//! The fault matrix row "PostgreSQL restarted" (see main.rs). PROPOSED: the cells below
//! are the plan; each tested cell still needs its test.

use crate::catalogue::{Cell, Row};

pub const ROW: Row = Row {
    fault: "PostgreSQL restarted",
    how: "pg_ctl restart of the test's own cluster under two chat-server nodes",
    cells: [
        Cell::NotApplicable("login talks only to the provider, which keeps no state in PostgreSQL"),
        Cell::NotApplicable(
            "refresh talks only to the provider, which keeps no state in PostgreSQL",
        ),
        Cell::Tested(
            "connections made during the restart succeed or are refused and retried; none signed out",
        ),
        Cell::Tested(
            "each line acked only after commit; lines sent during the restart are acked or retried, stored once",
        ),
        Cell::Tested(
            "a back-channel logout during the restart is answered 503 and redelivered; the session closes with 4003 on every node",
        ),
    ],
};
