//! The fault matrix row "node partitioned" (see main.rs). PROPOSED: the cells below
//! are the plan; each tested cell still needs its test.

use crate::catalogue::{Cell, Row};

pub const ROW: Row = Row {
    fault: "node partitioned",
    how: "nftables drops every packet of the host's veth in a network namespace (a half-open socket)",
    cells: [
        Cell::Tested(
            "the provider partitioned: a typed timeout error within the client's timeout; nothing stored",
        ),
        Cell::Tested("the provider partitioned: the session kept, a typed timeout error"),
        Cell::Tested(
            "the dead connection noticed within 8 s; the client moves to another node (or back once passing)",
        ),
        Cell::Tested("lines sent into the partition are resent and stored once"),
        Cell::Tested(
            "the provider partitioned: signed out locally within the timeout; revocation reported as not confirmed",
        ),
    ],
};
