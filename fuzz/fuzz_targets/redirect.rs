//! The authorization response: the redirect URL an app hands to
//! `OidcClient::finish`, and the request head the loopback listener reads
//! (which it sorts into "not a redirect", "not found", "another login" and
//! "this login's callback" before `finish` reads it). Input: one byte of
//! flags (1: the provider promises RFC 9207 `iss`; 2: loopback mode), then
//! the URL or the request head.
//!
//! Checked: no panic; a code is taken only from a response with exactly
//! this login's `state`, one `code`, no `error`, and the issuer's `iss`
//! (required when promised); no error shows the `state` or the code (a
//! code told from fixed text that happens to contain it by the same input
//! with another code, see `sessionkit_fuzz::quotes_secret`).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sessionkit::fuzzing::{ISSUER, STATE};
use sessionkit::{AuthorizationCode, AuthorizationRequest, Provider, Result};
use sessionkit_fuzz::{canary, quotes_secret, replace_once, shows_secret};

const PORT: u16 = 4000;

struct Login {
    provider: Provider,
    request: AuthorizationRequest,
}

fn login(iss_parameter: bool) -> &'static Login {
    static LOGINS: OnceLock<[Login; 2]> = OnceLock::new();
    let logins = LOGINS.get_or_init(|| {
        [false, true].map(|iss| {
            let provider = sessionkit::fuzzing::provider(iss).expect("the provider");
            let request = sessionkit::fuzzing::authorization_request(
                &provider,
                &format!("http://127.0.0.1:{PORT}/callback"),
            );
            Login { provider, request }
        })
    });
    &logins[usize::from(iss_parameter)]
}

/// An error as the checks read it.
fn shown_of(result: &Result<AuthorizationCode>) -> Option<String> {
    result.as_ref().err().map(|e| format!("{e} {e:?}"))
}

/// The query's pairs of a redirect URL.
fn pairs_of(url: Option<&url::Url>) -> Vec<(String, String)> {
    url.map(|u| {
        u.query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    })
    .unwrap_or_default()
}

/// Another input read the same way: its redirect URL, if any, and the
/// outcome.
type Again<'a> = dyn Fn(&[u8]) -> Option<(Option<url::Url>, Result<AuthorizationCode>)> + 'a;

/// Checks the outcome for the redirect `url` (`None`: not a URL) read from
/// `raw`; `again` reads another input the same way.
fn check(
    result: &Result<AuthorizationCode>,
    url: Option<&url::Url>,
    iss_parameter: bool,
    raw: &[u8],
    again: &Again<'_>,
) {
    let pairs = pairs_of(url);
    let values = |name: &str| -> Vec<&str> {
        pairs
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    match result {
        Ok(code) => {
            assert_eq!(values("state"), [STATE], "state");
            assert_eq!(values("code"), [code.secret()], "code");
            assert!(
                values("error").is_empty(),
                "a code taken from an error response"
            );
            let iss = values("iss");
            assert!(
                iss.len() <= 1 && iss.iter().all(|i| *i == ISSUER),
                "iss {iss:?}"
            );
            assert!(!iss_parameter || iss.len() == 1, "no iss though promised");
        }
        Err(e) => {
            let shown = format!("{e} {e:?}");
            // What an error may quote: names, and values other than the secrets.
            let public: Vec<&str> = pairs
                .iter()
                .flat_map(|(k, v)| {
                    let secret = k == "state" || k == "code";
                    [Some(k.as_str()), (!secret).then_some(v.as_str())]
                })
                .flatten()
                .collect();
            assert!(
                !shows_secret(&shown, STATE, &public),
                "shows the state: {shown}"
            );
            for secret in values("code") {
                // The same input with this code, and only it, replaced:
                // the one occurrence replaced must be the code's.
                let other = || {
                    let (url, result) = again(&replace_once(raw, secret)?)?;
                    let pairs = pairs_of(url.as_ref());
                    let code = canary(secret);
                    let only_it = pairs.iter().any(|(k, v)| k == "code" && *v == code)
                        && !pairs.iter().any(|(_, v)| v.contains(secret));
                    if only_it { shown_of(&result) } else { None }
                };
                assert!(
                    !quotes_secret(&shown, secret, &public, other),
                    "shows {secret:?}: {shown} (with another code: {:?})",
                    other()
                );
            }
        }
    }
}

/// The URL of a loopback request head: only the request line counts
/// (hyper reads the headers).
fn callback_url(head: &[u8]) -> Option<url::Url> {
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let target = std::str::from_utf8(line)
        .ok()?
        .trim_end_matches('\r')
        .strip_prefix("GET ")?
        .split(' ')
        .next()?;
    url::Url::parse(&format!("http://127.0.0.1:{PORT}{target}")).ok()
}

fuzz_target!(|data: &[u8]| {
    let Some((flags, rest)) = data.split_first() else {
        return;
    };
    let iss_parameter = flags & 1 == 1;
    let Login { provider, request } = login(iss_parameter);
    if flags & 2 == 0 {
        let Ok(text) = std::str::from_utf8(rest) else {
            return;
        };
        let result = sessionkit::fuzzing::redirect(provider, request, text);
        let again = |raw: &[u8]| {
            let text = std::str::from_utf8(raw).ok()?;
            let result = sessionkit::fuzzing::redirect(provider, request, text);
            Some((url::Url::parse(text).ok(), result))
        };
        check(
            &result,
            url::Url::parse(text).ok().as_ref(),
            iss_parameter,
            rest,
            &again,
        );
    } else if let Some(result) =
        sessionkit::fuzzing::loopback_request(provider, request, PORT, rest)
    {
        let url = callback_url(rest).expect("a callback is a GET of a URL");
        assert_eq!(url.path(), "/callback");
        let again = |raw: &[u8]| {
            let result = sessionkit::fuzzing::loopback_request(provider, request, PORT, raw)?;
            Some((callback_url(raw), result))
        };
        check(&result, Some(&url), iss_parameter, rest, &again);
    }
});
