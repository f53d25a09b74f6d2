//! The fault matrix row "keychain locked" (see main.rs). PROPOSED: the cells below
//! are the plan; each tested cell still needs its test.

use crate::catalogue::{Cell, Row};

pub const ROW: Row = Row {
    fault: "keychain locked",
    how: "gnome-keyring's collection locked over D-Bus (Secret Service), the real daemon",
    cells: [
        Cell::Tested(
            "a typed store-locked error; nothing half-written; login succeeds after unlock",
        ),
        Cell::Tested(
            "the rotated tokens are not lost: kept in memory and stored once unlocked (or the refresh is not made), a typed error",
        ),
        Cell::Tested("a typed store error; the client retries and connects once unlocked"),
        Cell::Tested("an open socket keeps sending: the token is already in memory; nothing lost"),
        Cell::Tested(
            "a typed store-locked error; the provider-side revocation still made; the entry deleted once unlocked",
        ),
    ],
};
