//! The fault matrix row "chat node SIGKILLed" (see main.rs). PROPOSED: the cells below
//! are the plan; each tested cell still needs its test.

use crate::catalogue::{Cell, Row};

pub const ROW: Row = Row {
    fault: "chat node SIGKILLed",
    how: "a chat-server process (one of two on one PostgreSQL) killed with SIGKILL: no close frame",
    cells: [
        Cell::NotApplicable("login talks only to the provider, never to a chat node"),
        Cell::NotApplicable(
            "refresh talks only to the provider; a refresh while the node dies is the reconnect case",
        ),
        Cell::Tested(
            "the client moves to the other node within the base delay and resumes after its last sequence",
        ),
        Cell::Tested(
            "nothing lost or doubled: the lines typed while moving are stored once, in order",
        ),
        Cell::Tested(
            "signed out while the node is dead: the back-channel logout reaches the other node, which closes with 4003",
        ),
    ],
};
