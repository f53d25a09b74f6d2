//! HTML: the page frame, escaping, the landing page and the dashboard of
//! sessions, devices and recent tokens. Tokens are shown decoded, with a
//! fingerprint; a raw token value never appears in a page.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Html;

use crate::state::Shared;

pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

pub(crate) fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\"><title>{t} · mock-idp</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}}\
         .error{{color:#b00020}}code,pre{{background:#f4f4f4;padding:.1rem .3rem}}\
         table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.2rem .5rem;text-align:left;vertical-align:top}}\
         button{{margin:.2rem}}</style></head><body><h1>{t}</h1>{body}</body></html>",
        t = esc(title)
    )
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS UTC` (the proleptic Gregorian
/// calendar; Howard Hinnant's days-to-civil algorithm).
pub(crate) fn readable(unix: i64) -> String {
    let (days, secs) = (unix.div_euclid(86_400), unix.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

pub(crate) async fn index(State(shared): State<Arc<Shared>>) -> Html<String> {
    let i = esc(&shared.issuer);
    Html(page(
        "mock-idp",
        &format!(
            "<p>A strict, scriptable OpenID provider for development. Issuer: <code>{i}</code></p>\
             <ul><li><a href=\"{i}/.well-known/openid-configuration\">Discovery</a></li>\
             <li><a href=\"{i}/jwks\">JWKS</a></li>\
             <li><a href=\"{i}/device\">Connect a device</a></li>\
             <li><a href=\"{i}/_control\">Sessions, devices and recent tokens</a> (loopback only)</li>\
             <li><a href=\"{i}/_control/conformance\">Conformance runs and verdicts</a> (loopback only)</li></ul>"
        ),
    ))
}

pub(crate) fn dashboard(shared: &Shared) -> String {
    let now = shared.clock.now();
    let store = shared.store();
    let mut body = format!(
        "<p>Provider time: {}{}</p><h2>Sessions</h2>",
        readable(now),
        if shared.clock.is_frozen() {
            " (frozen)"
        } else {
            ""
        }
    );
    let mut sessions: Vec<_> = store.sessions.values().collect();
    sessions.sort_by_key(|s| s.created_at);
    if sessions.is_empty() {
        body.push_str("<p id=\"no-sessions\">No one is signed in.</p>");
    } else {
        body.push_str("<table id=\"sessions\"><tr><th>User</th><th>Session</th><th>Device</th><th>Signed in</th><th>Last seen</th><th>Clients</th><th></th></tr>");
        for s in sessions {
            let clients: Vec<&str> = s.clients.iter().map(String::as_str).collect();
            body.push_str(&format!(
                "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
                 <td><form method=\"post\" action=\"{}/_control/sessions/{}/revoke\"><button>Revoke</button></form></td></tr>",
                esc(&s.username),
                esc(&s.sid),
                esc(&s.device_name),
                readable(s.created_at),
                readable(s.last_seen),
                esc(&clients.join(", ")),
                esc(&shared.issuer),
                esc(&s.sid),
            ));
        }
        body.push_str("</table>");
    }
    body.push_str(
        "<h2>Recent tokens</h2><p>Decoded; the fingerprint is a hash, never the token.</p>",
    );
    for t in store.recent_tokens.iter().rev() {
        let header = t
            .header
            .as_ref()
            .map(|h| serde_json::to_string(h).unwrap_or_default())
            .unwrap_or_else(|| "(opaque)".to_owned());
        let claims = serde_json::to_string_pretty(&t.claims).unwrap_or_default();
        body.push_str(&format!(
            "<details><summary>{} <code>{}</code> issued {}</summary><p>Header: <code>{}</code></p><pre>{}</pre></details>",
            t.kind,
            esc(&t.fingerprint),
            readable(t.issued_at),
            esc(&header),
            esc(&claims)
        ));
    }
    page("Sessions, devices and tokens", &body)
}

#[cfg(test)]
mod tests {
    use super::readable;

    #[test]
    fn unix_seconds_read_as_utc_dates() {
        assert_eq!(readable(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(readable(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(readable(1_796_434_578), "2026-12-05 01:36:18 UTC");
        assert_eq!(readable(-1), "1969-12-31 23:59:59 UTC");
    }
}
