//! The fault matrix row "malformed JSON" (see main.rs). PROPOSED: the cells below
//! are the plan; each tested cell still needs its test.

use crate::catalogue::{Cell, Row};

pub const ROW: Row = Row {
    fault: "malformed JSON",
    how: "mock-idp answers 200 with a body that is not JSON (or JSON of the wrong shape)",
    cells: [
        Cell::Tested("a typed malformed-response error naming the endpoint; nothing stored"),
        Cell::Tested("the session is kept (tokens unchanged), a typed error"),
        Cell::Tested(
            "the reconnect waits for a usable token; connects once the provider answers well",
        ),
        Cell::Tested("nothing lost"),
        Cell::Tested("signed out locally; the malformed revocation answer reported"),
    ],
};
