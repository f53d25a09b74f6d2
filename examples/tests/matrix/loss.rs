//! The fault matrix row "30 % packet loss" (see main.rs). PROPOSED: the cells below
//! are the plan; each tested cell still needs its test.

use crate::catalogue::{Cell, Row};

pub const ROW: Row = Row {
    fault: "30 % packet loss",
    how: "nftables numgen random mod 100 < 30 drop on the host's veth, both directions",
    cells: [
        Cell::Tested("login completes (TCP retransmits)"),
        Cell::Tested("refresh completes"),
        Cell::Tested("connects and stays connected or reconnects; no spurious sign-out"),
        Cell::Tested("every line stored once, in order"),
        Cell::Tested("logout completes; revocation confirmed"),
    ],
};
