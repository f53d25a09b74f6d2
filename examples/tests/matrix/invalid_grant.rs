//! The fault matrix row "invalid_grant" (see main.rs). PROPOSED: the cells below
//! are the plan; each tested cell still needs its test.

use crate::catalogue::{Cell, Row};

pub const ROW: Row = Row {
    fault: "invalid_grant",
    how: "mock-idp answers 400 invalid_grant (the code or refresh token was revoked or used)",
    cells: [
        Cell::Tested("a typed invalid_grant error for the code exchange; nothing stored"),
        Cell::Tested(
            "a clean sign-out: the account's tokens deleted, a signed-out event; no retry",
        ),
        Cell::Tested("the client stops with a signed-out reason, makes no further attempts"),
        Cell::Tested("lines not yet acknowledged are handed back as unsent (not dropped silently)"),
        Cell::Tested("signed out locally (the refresh token was already dead)"),
    ],
};
