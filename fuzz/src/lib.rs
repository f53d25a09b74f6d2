//! What the fuzz targets share: the chat protocol (compiled from the
//! examples crate's own file), splitting an input in two, and the check
//! that a secret does not show in an error or a `Debug`.
//!
//! No `#![forbid(unsafe_code)]` here: libfuzzer-sys's `fuzz_target!`
//! exports an `extern "C"` entry point, which that lint refuses. The code
//! under test keeps its own `forbid`.

/// The chat frames, from `examples/src/protocol.rs` itself: the same source
/// as the server and the client, without the examples crate's SQLite,
/// terminal and WebSocket dependencies (which would double the fuzz build).
/// That file depends on `serde` and `serde_json` only, and says so.
#[path = "../../examples/src/protocol.rs"]
#[allow(dead_code, missing_docs)]
pub mod protocol;

/// Splits `data` at its first NUL byte: JSON and URLs hold none, so seeds
/// stay readable. No NUL: all of it is the first part.
pub fn split(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

/// The shortest secret the leak checks look for: a shorter one could show
/// up in a message by chance.
pub const MIN_SECRET: usize = 12;

/// Whether `shown` (an error's `Display` or `Debug`, a `Debug` of tokens)
/// shows `secret`, which the input carries only where it is secret: a
/// secret the input also puts somewhere public (`public`: the parts an
/// error may quote, such as a parameter's name or the `iss` value) is not
/// counted.
pub fn shows_secret(shown: &str, secret: &str, public: &[&str]) -> bool {
    secret.len() >= MIN_SECRET
        && shown.contains(secret)
        && !public.iter().any(|p| p.contains(secret))
}

/// A stand-in for `secret`: as many ASCII letters as it has bytes, each
/// unlike the byte it replaces, so a message that quotes the secret quotes
/// this instead, at the same offsets, and one that does not is unchanged.
pub fn canary(secret: &str) -> String {
    secret
        .bytes()
        .map(|b| if b == b'q' { 'x' } else { 'q' })
        .collect()
}

/// `raw` with its one occurrence of `secret` replaced by [`canary`]; `None`
/// when the secret is not in `raw` exactly once as it is (an encoded one) or
/// the canary is already there.
pub fn replace_once(raw: &[u8], secret: &str) -> Option<Vec<u8>> {
    let (secret, canary) = (secret.as_bytes(), canary(secret));
    let find = |needle: &[u8], from: usize| {
        (from..=raw.len().checked_sub(needle.len())?).find(|i| raw[*i..].starts_with(needle))
    };
    if secret.is_empty() || find(canary.as_bytes(), 0).is_some() {
        return None;
    }
    let at = find(secret, 0)?;
    if find(secret, at + 1).is_some() {
        return None;
    }
    let mut out = raw.to_vec();
    out[at..at + secret.len()].copy_from_slice(canary.as_bytes());
    Some(out)
}

/// Whether a message quotes `secret` from the input. `shown` is the message
/// for the input; `with_canary` makes the message for the same input with
/// the secret replaced by its [`canary`] (asked only when `shown` has the
/// secret; `None` where no such input could be made). The secret counts as
/// quoted when `shown` has it more often than that message: fixed text
/// that merely contains the secret (a secret `client authentication`
/// refused with "client authentication failed", which the fuzzer builds by
/// comparing its way through the message) is there in both. Otherwise
/// [`shows_secret`] decides.
pub fn quotes_secret(
    shown: &str,
    secret: &str,
    public: &[&str],
    with_canary: impl FnOnce() -> Option<String>,
) -> bool {
    shows_secret(shown, secret, public)
        && with_canary()
            .is_none_or(|other| shown.matches(secret).count() > other.matches(secret).count())
}

/// Every string (keys and values) in a JSON value except the value of the
/// top-level member `skip`, for [`shows_secret`]'s `public`.
pub fn json_strings<'a>(value: &'a serde_json::Value, skip: Option<&str>) -> Vec<&'a str> {
    fn walk<'a>(v: &'a serde_json::Value, out: &mut Vec<&'a str>) {
        match v {
            serde_json::Value::String(s) => out.push(s),
            serde_json::Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    out.push(k);
                    walk(v, out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                out.push(k.as_str());
                if Some(k.as_str()) != skip {
                    walk(v, &mut out);
                }
            }
        }
        other => walk(other, &mut out),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_counts_only_where_it_is_secret() {
        let secret = "s3cret-value-123";
        assert!(shows_secret(&format!("bad: {secret}"), secret, &[]));
        assert!(!shows_secret(&format!("bad: {secret}"), secret, &[secret]));
        assert!(!shows_secret("bad", secret, &[]));
        assert!(!shows_secret("bad: short", "short", &[]));
        let v = serde_json::json!({"access_token": secret, "scope": "a b"});
        assert_eq!(
            json_strings(&v, Some("access_token")),
            ["access_token", "scope", "a b"]
        );
    }

    #[test]
    fn a_secret_in_the_fixed_text_does_not_count_and_a_quoted_one_does() {
        let secret = "client authentication";
        let fixed = "invalid_client: client authentication failed";
        assert!(shows_secret(fixed, secret, &[]));
        assert!(!quotes_secret(fixed, secret, &[], || Some(
            fixed.to_owned()
        )));
        let quoted = |s: &str| format!("bad secret {s:?}");
        let with_canary = || Some(quoted(&canary(secret)));
        assert!(quotes_secret(&quoted(secret), secret, &[], with_canary));
        assert!(quotes_secret(fixed, secret, &[], || None));
        // A message only the secret itself brings out still counts.
        assert!(quotes_secret(&quoted(secret), secret, &[], || Some(
            "fine".into()
        )));
        // Fixed text with the secret that also quotes it: once more than
        // with the canary.
        let both = |s: &str| format!("{fixed}: {s:?}");
        assert!(quotes_secret(&both(secret), secret, &[], || Some(both(
            &canary(secret)
        ))));
        // Not asked for when the message does not have the secret.
        assert!(!quotes_secret("fine", secret, &[], || panic!("asked")));
    }

    #[test]
    fn the_canary_replaces_the_one_occurrence_byte_for_byte() {
        let secret = "s3cret-value-123";
        assert_eq!(canary("aqé"), "qxqq");
        let raw = format!("x={secret}&y=1");
        let replaced = replace_once(raw.as_bytes(), secret).expect("once");
        assert_eq!(replaced.len(), raw.len());
        assert_eq!(replaced, format!("x={}&y=1", canary(secret)).as_bytes());
        assert_eq!(
            replace_once(format!("{secret}{secret}").as_bytes(), secret),
            None
        );
        assert_eq!(replace_once(b"x=s3cret%2Dvalue", "s3cret-value"), None);
        assert_eq!(replace_once(b"", ""), None);
        let with = format!("{secret} {}", canary(secret));
        assert_eq!(replace_once(with.as_bytes(), secret), None);
    }
}
