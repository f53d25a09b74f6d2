//! The fault matrix row "provider slower than the client's timeout" (see main.rs). PROPOSED: the cells below
//! are the plan; each tested cell still needs its test.

use crate::catalogue::{Cell, Row};

pub const ROW: Row = Row {
    fault: "provider slower than the client's timeout",
    how: "mock-idp's scripted delay longer than the client's request timeout",
    cells: [
        Cell::Tested("a typed timeout error within the timeout (plus retries); nothing stored"),
        Cell::Tested("the session is kept, a typed timeout error; a later refresh succeeds"),
        Cell::Tested(
            "the reconnect waits for a token with backoff and connects once the provider is fast again",
        ),
        Cell::Tested(
            "nothing lost: lines queued while the token cannot be renewed are stored once",
        ),
        Cell::Tested(
            "signed out locally within the timeout; the revocation reported as not confirmed",
        ),
    ],
};
