//! The fault matrix row "300 ms latency" (see main.rs). PROPOSED: the cells below
//! are the plan; each tested cell still needs its test.

use crate::catalogue::{Cell, Row};

pub const ROW: Row = Row {
    fault: "300 ms latency",
    how: "a userspace delayer (NFQUEUE) holds every packet on the host's veth 300 ms",
    cells: [
        Cell::Tested("login completes"),
        Cell::Tested("refresh completes before expiry"),
        Cell::Tested("connects; no spurious dead-connection detection"),
        Cell::Tested("in order, once; a frame following another not held by Nagle"),
        Cell::Tested("logout completes; revocation confirmed"),
    ],
};
