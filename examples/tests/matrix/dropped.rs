//! The fault matrix row "connection dropped" (see main.rs). PROPOSED: the cells below
//! are the plan; each tested cell still needs its test.

use crate::catalogue::{Cell, Row};

pub const ROW: Row = Row {
    fault: "connection dropped",
    how: "the provider closes the connection without an answer (mock-idp drop_connection), or the chat server's socket is reset",
    cells: [
        Cell::Tested("a typed transport error; nothing stored; a retry succeeds"),
        Cell::Tested(
            "the session is kept; retried within the bounds; a typed error if every try drops",
        ),
        Cell::Tested("a reset chat socket reconnects with a fresh token; nothing lost"),
        Cell::Tested("a line in flight when the socket drops is resent and stored once"),
        Cell::Tested("signed out locally; the revocation reported as not confirmed"),
    ],
};
