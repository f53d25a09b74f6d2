//! The fault matrix row "provider 5xx" (see main.rs). PROPOSED: the cells below
//! are the plan; each tested cell still needs its test.

use crate::catalogue::{Cell, Row};

pub const ROW: Row = Row {
    fault: "provider 5xx",
    how: "mock-idp's scripted faults answer 500/503 at the endpoint the operation uses",
    cells: [
        Cell::Tested(
            "a typed provider error after the bounded retries; nothing stored; the same login succeeds once the provider answers",
        ),
        Cell::Tested(
            "the session is kept (the stored tokens unchanged), a typed error; the next refresh after the fault succeeds",
        ),
        Cell::Tested(
            "a reconnect that needs a fresh token waits with backoff, never signs out, and connects once the provider answers",
        ),
        Cell::Tested(
            "lines sent while refreshes fail are queued and each stored once after the provider answers",
        ),
        Cell::Tested(
            "signed out locally anyway (tokens deleted from the store, socket closed); the unconfirmed revocation is reported",
        ),
    ],
};
