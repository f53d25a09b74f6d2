//! The results as a table: Markdown for terminals, files and the binary's
//! closing summary; HTML for the dashboard.

use super::RunResult;

/// The results as a Markdown table: plan, scenario, expected, observed, verdict.
pub fn markdown_table(results: &[RunResult]) -> String {
    let mut out = String::from(
        "| Plan | Scenario | Expected | Observed | Verdict |\n|---|---|---|---|---|\n",
    );
    for r in results {
        out.push_str(&format!(
            "| {} | `{}` | {} | {} | {} |\n",
            r.plan.label(),
            r.scenario,
            r.expected.label(),
            cell(&r.observed),
            r.verdict.label()
        ));
    }
    out
}

/// The results as an HTML table (the text escaped).
pub(crate) fn html_table(results: &[RunResult]) -> String {
    let mut out = String::from(
        "<table id=\"conformance\"><tr><th>Plan</th><th>Scenario</th><th>Client</th>\
         <th>Expected</th><th>Observed</th><th>RP says</th><th>Verdict</th><th>Why</th></tr>",
    );
    for r in results {
        let rp = r
            .rp_report
            .as_ref()
            .map(|rp| format!("{:?}: {}", rp.outcome, rp.detail))
            .unwrap_or_default();
        out.push_str(&format!(
            "<tr class=\"{}\"><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            r.verdict.label().to_ascii_lowercase(),
            r.plan.label(),
            esc(r.scenario),
            esc(&r.client_id),
            esc(&r.expected.label()),
            esc(&r.observed),
            esc(&rp),
            r.verdict.label(),
            esc(&r.reason)
        ));
    }
    out.push_str("</table>");
    out
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

fn esc(text: &str) -> String {
    crate::endpoints::pages::esc(text)
}

/// Checks that `file` shows `table` between the lines
/// `<!-- conformance:NAME -->` and `<!-- /conformance:NAME -->`, so that a
/// document cannot drift from the runs a test makes. With the environment
/// variable `SESSIONKIT_BLESS=1` it writes the table there instead.
///
/// # Errors
/// What differs (or what is missing), and how to update the file.
pub fn check_table_in_file(file: &std::path::Path, name: &str, table: &str) -> Result<(), String> {
    let start = format!("<!-- conformance:{name} -->\n");
    let end = format!("<!-- /conformance:{name} -->");
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let (Some(a), Some(b)) = (text.find(&start), text.find(&end)) else {
        return Err(format!(
            "{} has no section between {start:?} and {end:?}",
            file.display()
        ));
    };
    let shown = &text[a + start.len()..b];
    if shown == table {
        return Ok(());
    }
    if std::env::var_os("SESSIONKIT_BLESS").is_some_and(|v| v == "1") {
        let updated = format!("{}{table}{}", &text[..a + start.len()], &text[b..]);
        return std::fs::write(file, updated)
            .map_err(|e| format!("cannot write {}: {e}", file.display()));
    }
    Err(format!(
        "{} shows another conformance table for {name}; run the test with \
         SESSIONKIT_BLESS=1 to write this one:\n{table}",
        file.display()
    ))
}
