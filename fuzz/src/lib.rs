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
}
