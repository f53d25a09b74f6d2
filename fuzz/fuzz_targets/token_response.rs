//! Token endpoint answers (login, device flow, refresh) and OAuth error
//! answers, as the SDK parses them. Input: two bytes of HTTP status, four
//! of arrival time (Unix seconds), then the body.
//!
//! Checked: no panic (a huge `expires_in` once overflowed the clock); a 2xx
//! body is never kept in an error; no access, refresh or ID token shows in
//! an error or in the parsed tokens' `Debug` (a token told from fixed text
//! that happens to contain it by the same body with another token, see
//! `sessionkit_fuzz::quotes_secret`).
#![no_main]

use std::time::{Duration, SystemTime};

use libfuzzer_sys::fuzz_target;
use sessionkit::Error;
use sessionkit_fuzz::{canary, json_strings, quotes_secret, replace_once};

fuzz_target!(|data: &[u8]| {
    let Some((head, body)) = data.split_first_chunk::<6>() else {
        return;
    };
    let status = u16::from_be_bytes([head[0], head[1]]);
    let at = u32::from_be_bytes([head[2], head[3], head[4], head[5]]);
    let received_at = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::from(at));

    let shown_for =
        |body: &[u8]| match sessionkit::fuzzing::token_response(status, body, received_at) {
            Ok(debug) => debug,
            Err(e) => format!("{e} {e:?}"),
        };
    let parsed = sessionkit::fuzzing::token_response(status, body, received_at);
    let shown = match &parsed {
        Ok(debug) => debug.clone(),
        Err(e) => format!("{e} {e:?}"),
    };
    if let Err(Error::Parse { body: kept, .. }) = &parsed {
        assert!(
            !(200..300).contains(&status) || kept.is_empty(),
            "a {status} body was kept in an error"
        );
    }
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) {
        let text = String::from_utf8_lossy(body);
        for field in ["access_token", "refresh_token", "id_token"] {
            if let Some(secret) = value.get(field).and_then(|v| v.as_str()) {
                // A parsed value keeps the last of repeated members: a
                // secret written twice may be quoted from a public one.
                if text.matches(secret).count() > 1 {
                    continue;
                }
                let public = json_strings(&value, Some(field));
                // The same body with this token, and only it, replaced.
                let other = || {
                    let replaced = replace_once(body, secret)?;
                    let value = serde_json::from_slice::<serde_json::Value>(&replaced).ok()?;
                    let code = canary(secret);
                    let only_it = value.get(field).and_then(|v| v.as_str()) == Some(code.as_str())
                        && !String::from_utf8_lossy(&replaced).contains(secret);
                    only_it.then(|| shown_for(&replaced))
                };
                assert!(
                    !quotes_secret(&shown, secret, &public, other),
                    "{field} shows: {shown} (with another value: {:?})",
                    other()
                );
            }
        }
    }

    let error = sessionkit::fuzzing::error_response(status, body);
    let _ = format!("{error} {error:?}");
});
