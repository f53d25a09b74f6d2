//! The matrix's shape: a [`Row`] per fault, a [`Cell`] per operation, and
//! the checks that keep the named tests and TESTING.md in step with it.

/// The operations, in the order of [`Row::cells`].
pub const OPERATIONS: [&str; 5] = ["login", "refresh", "connect/reconnect", "send", "logout"];

/// The test function names for each operation, in the same order.
pub const TEST_NAMES: [&str; 5] = ["login", "refresh", "connect", "send", "logout"];

/// One fault and what each operation does under it.
pub struct Row {
    /// The fault as TESTING.md names it.
    pub fault: &'static str,
    /// How the test makes it happen (which real part fails, and how).
    pub how: &'static str,
    /// login, refresh, connect/reconnect, send, logout.
    pub cells: [Cell; 5],
}

/// One fault × one operation.
pub enum Cell {
    /// A test named after the operation (see [`TEST_NAMES`]) in the fault's
    /// module shows this outcome.
    Tested(&'static str),
    /// The combination cannot happen, for this reason.
    NotApplicable(&'static str),
}

/// Whether `source` holds a test function `name` (a `#[test]` or
/// `#[tokio::test…]` attribute within the three lines before `fn name(`).
fn has_test(source: &str, name: &str) -> bool {
    let lines: Vec<&str> = source.lines().collect();
    lines.iter().enumerate().any(|(i, line)| {
        let line = line.trim_start();
        let declares = line.starts_with(&format!("async fn {name}("))
            || line.starts_with(&format!("fn {name}("));
        declares
            && lines[i.saturating_sub(3)..i].iter().any(|l| {
                l.trim_start().starts_with("#[test]") || l.trim_start().starts_with("#[tokio::test")
            })
    })
}

/// What is wrong with `module`'s file against its row: a tested cell
/// without its test, or a test for a cell said not to apply.
pub fn check_module(module: &str, row: &Row, source: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for (cell, name) in row.cells.iter().zip(TEST_NAMES) {
        match (cell, has_test(source, name)) {
            (Cell::Tested(_), false) => {
                problems.push(format!(
                    "{module}::{name}: the matrix says it is tested; no such test"
                ));
            }
            (Cell::NotApplicable(_), true) => problems.push(format!(
                "{module}::{name}: the matrix says it cannot apply, yet there is a test"
            )),
            _ => {}
        }
    }
    problems
}

/// TESTING.md's matrix: a grid (✓ tested, n/a), then every cell with its
/// test and expected outcome, or why it cannot apply.
pub fn markdown(rows: &[(&str, &Row)]) -> String {
    let mut out = String::from("| fault | ");
    out.push_str(&OPERATIONS.join(" | "));
    out.push_str(" |\n| --- |");
    out.push_str(&" --- |".repeat(OPERATIONS.len()));
    out.push('\n');
    for (module, row) in rows {
        out.push_str(&format!("| {} |", row.fault));
        for (cell, name) in row.cells.iter().zip(TEST_NAMES) {
            match cell {
                Cell::Tested(_) => out.push_str(&format!(" `{module}::{name}` |")),
                Cell::NotApplicable(_) => out.push_str(" n/a |"),
            }
        }
        out.push('\n');
    }
    for (module, row) in rows {
        out.push_str(&format!("\n**{}** — {}\n\n", row.fault, row.how));
        for ((cell, op), name) in row.cells.iter().zip(OPERATIONS).zip(TEST_NAMES) {
            match cell {
                Cell::Tested(expect) => {
                    out.push_str(&format!("- {op} (`{module}::{name}`): {expect}\n"));
                }
                Cell::NotApplicable(why) => out.push_str(&format!("- {op}: n/a — {why}\n")),
            }
        }
    }
    out
}
