//! The `WWW-Authenticate: DPoP` challenge of a handshake answer (RFC 9449
//! §7.1, §9): whether it asks for a nonce, and which algorithms the server
//! takes proofs signed with. Read leniently, as servers write it: in a
//! header of its own or after another scheme's in one header (`Bearer
//! realm="x", DPoP error=…`), parameters separated by commas or spaces,
//! spaces around `=`, quoted strings with escapes, an unquoted `algs` list.
//! (The SDK reads the challenges its HTTP calls get in `sdk/src/dpop.rs`;
//! this crate does not depend on the SDK.)

use tokio_tungstenite::tungstenite::http::{HeaderMap, header::WWW_AUTHENTICATE};

/// What the answer's DPoP challenge says (RFC 9449 §7.1).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Challenge {
    /// Its `error` (`use_dpop_nonce`, `invalid_dpop_proof`, …).
    pub(crate) error: Option<String>,
    /// The algorithms it takes proofs signed with (`algs`), when it says.
    pub(crate) algs: Option<Vec<String>>,
}

impl Challenge {
    /// Whether it asks for a nonce (RFC 9449 §9).
    pub(crate) fn asks_for_nonce(&self) -> bool {
        self.error.as_deref() == Some("use_dpop_nonce")
    }
}

/// Most algorithms of a server's `algs` a refusal reports (all are
/// compared; the list is at most the handshake answer's 16 KiB).
const MAX_ALGS: usize = 16;
/// Longest algorithm name reported (a longer one is cut).
const MAX_ALG_CHARS: usize = 64;

/// `algs` as a refusal reports them: the first [`MAX_ALGS`], each cut to
/// [`MAX_ALG_CHARS`] characters.
pub(crate) fn reported(algs: &[String]) -> Vec<String> {
    algs.iter()
        .take(MAX_ALGS)
        .map(|alg| alg.chars().take(MAX_ALG_CHARS).collect())
        .collect()
}

/// The first `DPoP` challenge among the answer's `WWW-Authenticate` values.
pub(crate) fn challenge(headers: &HeaderMap) -> Option<Challenge> {
    headers
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(read_challenge)
}

fn read_challenge(value: &str) -> Option<Challenge> {
    let mut found: Option<Challenge> = None;
    // Whether the last parameter read was the DPoP challenge's `algs`: an
    // unquoted list goes on in bare words (`algs=ES256 PS256`).
    let mut in_algs = false;
    for Word { text, after_comma } in words(value) {
        let Some((name, value)) = text.split_once('=') else {
            if after_comma || found.is_none() {
                // A scheme (a bare word after a comma, or before any
                // DPoP challenge): the one after a DPoP challenge ends it.
                if found.is_some() {
                    break;
                }
                if text.eq_ignore_ascii_case("dpop") {
                    found = Some(Challenge::default());
                }
            } else if in_algs && let Some(algs) = found.as_mut().and_then(|c| c.algs.as_mut()) {
                algs.push(text);
            }
            continue;
        };
        let Some(challenge) = found.as_mut() else {
            continue;
        };
        in_algs = false;
        if name.eq_ignore_ascii_case("error") {
            challenge.error.get_or_insert_with(|| value.to_owned());
        } else if name.eq_ignore_ascii_case("algs") && challenge.algs.is_none() {
            challenge.algs = Some(value.split_ascii_whitespace().map(str::to_owned).collect());
            in_algs = true;
        }
    }
    found
}

/// A word of a challenge list, and whether a comma came before it.
struct Word {
    text: String,
    after_comma: bool,
}

/// The words of a challenge list: schemes, `token68`s and `name=value`
/// parameters (quoted values unquoted), split at commas and spaces outside
/// quotes. Linear in the value's length (it is the server's).
fn words(value: &str) -> Vec<Word> {
    let mut words = Vec::new();
    let mut word = String::new();
    let (mut quoted, mut escaped, mut comma) = (false, false, false);
    let mut chars = value.chars().peekable();
    let mut end = |word: &mut String, comma: &mut bool| {
        if !word.is_empty() {
            words.push(Word {
                text: std::mem::take(word),
                after_comma: std::mem::take(comma),
            });
        }
    };
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                _ if escaped => {
                    word.push(c);
                    escaped = false;
                }
                '\\' => escaped = true,
                '"' => quoted = false,
                _ => word.push(c),
            }
            continue;
        }
        match c {
            '"' => quoted = true,
            ' ' | '\t' => {
                while chars.next_if(|c| matches!(c, ' ' | '\t')).is_some() {}
                // Spaces around a parameter's `=` belong to it.
                if !(word.ends_with('=') || chars.peek() == Some(&'=')) {
                    end(&mut word, &mut comma);
                }
            }
            ',' => {
                end(&mut word, &mut comma);
                comma = true;
            }
            _ => word.push(c),
        }
    }
    end(&mut word, &mut comma);
    words
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use tokio_tungstenite::tungstenite::http::HeaderValue;

    /// A header map of `(name, value)` pairs, for the handshake's tests.
    pub(crate) fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn the_nonce_challenge_is_recognised() {
        let asks = |pairs| challenge(&headers(pairs)).is_some_and(|c| c.asks_for_nonce());
        assert!(asks(&[(
            "www-authenticate",
            r#"DPoP error="use_dpop_nonce", error_description="x""#
        )]));
        assert!(asks(&[(
            "www-authenticate",
            r#"Bearer realm="a", dpop algs="ES256" error="use_dpop_nonce""#
        )]));
        assert!(asks(&[
            ("www-authenticate", r#"Bearer realm="a""#),
            ("www-authenticate", "DPoP error = use_dpop_nonce"),
        ]));
        assert!(!asks(&[(
            "www-authenticate",
            r#"DPoP error="invalid_dpop_proof""#
        )]));
        assert!(!asks(&[(
            "www-authenticate",
            r#"Bearer error="use_dpop_nonce""#
        )]));
        assert!(!asks(&[(
            "www-authenticate",
            r#"Bearer error_description="use DPoP error=use_dpop_nonce""#
        )]));
        assert!(!asks(&[]));
    }

    #[test]
    fn the_challenges_algorithms_are_its_own() {
        let algs = |value: &'static str| {
            challenge(&headers(&[("www-authenticate", value)])).and_then(|c| c.algs)
        };
        let list = |names: &[&str]| Some(names.iter().map(|n| (*n).to_owned()).collect());
        assert_eq!(
            algs(r#"DPoP algs="ES256 PS256""#),
            list(&["ES256", "PS256"])
        );
        assert_eq!(
            algs(r#"Bearer algs="RS256", DPoP error="invalid_dpop_proof", algs="EdDSA""#),
            list(&["EdDSA"])
        );
        // A later scheme's parameters are not the DPoP challenge's.
        assert_eq!(algs(r#"DPoP error="x", Bearer algs="ES256""#), None);
        assert_eq!(
            algs(r#"Basic realm="a, DPoP algs=ES256", DPoP algs="PS256""#),
            list(&["PS256"])
        );
        assert_eq!(algs(r#"DPoP algs="""#), list(&[]));
        assert_eq!(algs("DPoP"), None);
        // Unquoted, the list goes on in bare words; a scheme needs a comma.
        assert_eq!(algs("DPoP algs=ES256 PS256"), list(&["ES256", "PS256"]));
        assert_eq!(
            algs("Negotiate abc==, DPoP error=x, algs=RS256 ES256, Basic realm=y"),
            list(&["RS256", "ES256"])
        );
        // Every algorithm counts, however many come first.
        let long = format!("DPoP algs=\"{}ES256\"", "A ".repeat(100));
        let got = challenge(&headers_owned(&long)).and_then(|c| c.algs);
        assert_eq!(got.map(|a| a.len()), Some(101));
        // A long run of spaces is read in one pass.
        let spaces = format!("DPoP{}algs=ES256", " ".repeat(8000));
        let got = challenge(&headers_owned(&spaces)).and_then(|c| c.algs);
        assert_eq!(got, list(&["ES256"]));
    }

    fn headers_owned(challenge: &str) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.append(
            WWW_AUTHENTICATE,
            HeaderValue::from_str(challenge).expect("header"),
        );
        map
    }

    #[test]
    fn a_refusal_reports_sixteen_algorithms_cut_to_sixty_four_characters() {
        let many: Vec<String> = (0..20).map(|i| format!("{i}{}", "x".repeat(100))).collect();
        let shown = reported(&many);
        assert_eq!(shown.len(), 16);
        assert!(shown.iter().all(|a| a.chars().count() == 64));
    }
}
