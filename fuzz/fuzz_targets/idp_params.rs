//! mock-idp's request parameters: query strings and form bodies parsed
//! strictly (a repeated parameter refused, an empty one absent), the form's
//! content type, `scope`, and client authentication (HTTP Basic or the
//! body). Input: one byte choosing the function, then its input; the form
//! and authentication modes take a header value, a NUL byte, and the body.
//!
//! Checked: no panic; the parameters are exactly the non-empty ones, and a
//! refusal means a name was repeated; a form needs the form content type;
//! `scope` has no empty or repeated entries; a confidential client is
//! authenticated only with its secret, a public one only without any; no
//! refusal shows a secret (the registered one, or one presented: that one
//! told from fixed text that happens to contain it by the same request with
//! another secret, see `sessionkit_fuzz::quotes_secret`).
#![no_main]

use std::collections::HashMap;

use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use sessionkit_fuzz::{canary, quotes_secret, shows_secret, split};
use sessionkit_mock_idp::fuzzing::{self, CLIENT_SECRET, CONFIDENTIAL_CLIENT, PUBLIC_CLIENT};

/// The parameters as RFC 6749 §3.1 reads them, or `None` when one repeats.
fn expected(raw: &[u8]) -> Option<Vec<(String, String)>> {
    let mut map = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(raw) {
        if !v.is_empty() && map.insert(k.into_owned(), v.into_owned()).is_some() {
            return None;
        }
    }
    let mut pairs: Vec<(String, String)> = map.into_iter().collect();
    pairs.sort();
    Some(pairs)
}

/// A header value as the server reads it (`HeaderValue::to_str`: visible
/// ASCII, space and tab); it ignores any other.
fn header_text(value: &[u8]) -> Option<&str> {
    if !value
        .iter()
        .all(|b| *b == b'\t' || (0x20..0x7f).contains(b))
    {
        return None;
    }
    std::str::from_utf8(value).ok()
}

/// The client id and secret, as sent (percent-encoded), of an
/// `Authorization: Basic` header.
fn basic_credentials(header: &[u8]) -> Option<(String, String)> {
    let header = header_text(header)?;
    let encoded = header
        .strip_prefix("Basic ")
        .or_else(|| header.strip_prefix("basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((id.to_owned(), secret.to_owned()))
}

/// The secret presented in an `Authorization: Basic` header, if any.
fn basic_secret(header: &[u8]) -> Option<String> {
    let (_, secret) = basic_credentials(header)?;
    let component = format!("x={secret}");
    let (_, secret) = url::form_urlencoded::parse(component.as_bytes()).next()?;
    Some(secret.into_owned())
}

/// The refusal of the same request with the presented secret (from the
/// header or the body) replaced by its canary.
fn refusal_with_canary(header: Option<&[u8]>, body: &[u8], from_header: bool) -> String {
    let (header, body) = if from_header {
        let (id, secret) = header.and_then(basic_credentials).expect("a Basic header");
        let secret = url::form_urlencoded::parse(format!("x={secret}").as_bytes())
            .next()
            .map(|(_, s)| s.into_owned())
            .unwrap_or_default();
        let credentials = format!("{id}:{}", canary(&secret));
        let encoded = base64::engine::general_purpose::STANDARD.encode(credentials);
        (Some(format!("Basic {encoded}").into_bytes()), body.to_vec())
    } else {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in url::form_urlencoded::parse(body) {
            let v = if k == "client_secret" && !v.is_empty() {
                canary(&v).into()
            } else {
                v
            };
            form.append_pair(&k, &v);
        }
        (header.map(<[u8]>::to_vec), form.finish().into_bytes())
    };
    match fuzzing::authenticate(header.as_deref(), &body) {
        Some(Err(shown)) => shown,
        other => panic!("another secret changed a refusal to {other:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 4 {
        0 => {
            assert_eq!(fuzzing::params(rest).ok(), expected(rest));
        }
        1 => {
            let (content_type, body) = split(rest);
            let content_type = (!content_type.is_empty()).then_some(content_type);
            let Some(parsed) = fuzzing::form(content_type, body) else {
                return;
            };
            let mime = content_type.and_then(header_text).map(|c| {
                c.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            });
            if mime.as_deref() == Some("application/x-www-form-urlencoded") {
                assert_eq!(parsed.ok(), expected(body));
            } else {
                assert!(parsed.is_err(), "a form without the form content type");
            }
        }
        2 => {
            let Ok(text) = std::str::from_utf8(rest) else {
                return;
            };
            let scope = fuzzing::scope(text);
            for (i, s) in scope.iter().enumerate() {
                assert!(!s.is_empty() && !s.contains(' '), "{s:?}");
                assert!(!scope[..i].contains(s), "{s:?} repeated");
            }
            let mut words: Vec<&str> = text.split(' ').filter(|s| !s.is_empty()).collect();
            words.dedup();
            assert!(words.iter().all(|w| scope.iter().any(|s| s == w)));
        }
        _ => {
            let (header, body) = split(rest);
            let header = (!header.is_empty()).then_some(header);
            let Some(result) = fuzzing::authenticate(header, body) else {
                return;
            };
            let params: HashMap<String, String> = expected(body)
                .expect("authentication parses the body first")
                .into_iter()
                .collect();
            let from_header = header.and_then(basic_secret);
            let presented_in_header = from_header.is_some();
            let presented = from_header.or_else(|| params.get("client_secret").cloned());
            match result {
                Ok(client) if client == CONFIDENTIAL_CLIENT => {
                    assert_eq!(presented.as_deref(), Some(CLIENT_SECRET));
                }
                Ok(client) => {
                    assert_eq!(client, PUBLIC_CLIENT);
                    assert_eq!(presented, None, "a public client presented a secret");
                }
                Err(shown) => {
                    let public: Vec<&str> = params.keys().map(String::as_str).collect();
                    assert!(
                        !shows_secret(&shown, CLIENT_SECRET, &public),
                        "shows the client's secret: {shown}"
                    );
                    if let Some(secret) = presented.as_deref() {
                        let other = || Some(refusal_with_canary(header, body, presented_in_header));
                        assert!(
                            !quotes_secret(&shown, secret, &public, other),
                            "shows {secret:?}: {shown} (with another secret: {:?})",
                            other()
                        );
                    }
                }
            }
        }
    }
});
