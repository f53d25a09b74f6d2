//! The claim checks for access tokens and back-channel logout tokens, as pure
//! functions of the decoded claims and the time, so they are tested without
//! keys or a network. Signatures are checked before these run (see `jwks`).
//!
//! Clock leeway: an access token's `exp` is checked without leeway, because
//! the server closes a connection at its token's `exp` anyway (accepting a
//! token it would close at once helps nobody). Times that must not be in the
//! future (`iat` of a logout token, `nbf`) and a logout token's `exp` get
//! [`FUTURE_LEEWAY_SECS`] for clock skew between the provider and this
//! server. A logout token older than [`LOGOUT_MAX_AGE_SECS`] is refused.

use serde_json::{Map, Value};

/// Leeway, in seconds, for times that must not lie in the future.
pub(crate) const FUTURE_LEEWAY_SECS: i64 = 30;

/// The oldest a logout token's `iat` may be, in seconds.
pub(crate) const LOGOUT_MAX_AGE_SECS: i64 = 300;

/// The JOSE `typ` (normalized, see `jwks::normalize_typ`) of an RFC 9068
/// access token.
pub(crate) const ACCESS_TOKEN_TYP: &str = "at+jwt";

/// The event a back-channel logout token carries (OpenID Back-Channel Logout 1.0 §2.4).
pub(crate) const BACKCHANNEL_LOGOUT_EVENT: &str =
    "http://schemas.openid.net/event/backchannel-logout";

/// Claims = the JSON object in the middle of a JWT.
pub(crate) type Claims = Map<String, Value>;

/// What the server keeps of a valid access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AccessToken {
    /// The subject (`sub`).
    pub(crate) sub: String,
    /// The provider session (`sid`), when the token has one.
    pub(crate) sid: Option<String>,
    /// The display name: `preferred_username`, else `name`, else `sub`.
    pub(crate) user: String,
    /// When it expires (Unix seconds).
    pub(crate) exp: i64,
    /// When it was issued (Unix seconds), when it says.
    pub(crate) iat: Option<i64>,
    /// The thumbprint of the key it is bound to (`cnf.jkt`, RFC 9449 §6),
    /// when it is DPoP-bound.
    pub(crate) jkt: Option<String>,
}

/// What the server keeps of a valid back-channel logout token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LogoutToken {
    /// The session logged out, when given.
    pub(crate) sid: Option<String>,
    /// The subject logged out, when given.
    pub(crate) sub: Option<String>,
    /// When the token was issued (Unix seconds).
    pub(crate) iat: i64,
    /// When it expires (Unix seconds).
    pub(crate) exp: i64,
    /// Its unique id, to recognize a replay.
    pub(crate) jti: String,
}

/// A NumericDate claim (RFC 7519 §2): a JSON number, possibly fractional.
fn numeric_date(claims: &Claims, name: &str) -> Result<Option<i64>, String> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            // A fractional date: whole seconds are precise enough here.
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.is_finite())
                    .map(|f| f.floor() as i64)
            })
            .map(Some)
            .ok_or_else(|| format!("`{name}` is not a usable date")),
        Some(_) => Err(format!("`{name}` is not a number")),
    }
}

fn string_claim<'a>(claims: &'a Claims, name: &str) -> Result<Option<&'a str>, String> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s)),
        Some(_) => Err(format!("`{name}` is not a non-empty string")),
    }
}

fn check_iss(claims: &Claims, issuer: &str) -> Result<(), String> {
    match string_claim(claims, "iss")? {
        Some(iss) if iss == issuer => Ok(()),
        Some(_) => Err("`iss` is not the configured issuer".to_owned()),
        None => Err("no `iss`".to_owned()),
    }
}

/// `aud` is one string or an array of strings (RFC 7519 §4.1.3).
fn check_aud(claims: &Claims, audience: &str) -> Result<(), String> {
    let found = match claims.get("aud") {
        Some(Value::String(aud)) => aud == audience,
        Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(audience)),
        Some(_) => return Err("`aud` is neither a string nor an array".to_owned()),
        None => return Err("no `aud`".to_owned()),
    };
    if found {
        Ok(())
    } else {
        Err(format!("`aud` does not contain {audience:?}"))
    }
}

/// Checks an access token's claims: `iss` exactly `issuer`, `aud` contains
/// `audience`, `exp` after `now`, `nbf` (if any) not after `now` plus leeway,
/// and a `sub`. `typ` is the header's (normalized) `typ`: unless it is
/// `at+jwt` (RFC 9068), which an ID token never is, a token with a `nonce`
/// or an `at_hash` is refused as an ID token, whatever its `aud`.
pub(crate) fn check_access(
    claims: &Claims,
    typ: Option<&str>,
    issuer: &str,
    audience: &str,
    now: i64,
) -> Result<AccessToken, String> {
    check_iss(claims, issuer)?;
    check_aud(claims, audience)?;
    if typ != Some(ACCESS_TOKEN_TYP)
        && (claims.contains_key("nonce") || claims.contains_key("at_hash"))
    {
        return Err("an ID token is not an access token".to_owned());
    }
    let exp = numeric_date(claims, "exp")?.ok_or("no `exp`")?;
    if exp <= now {
        return Err("the token has expired".to_owned());
    }
    if let Some(nbf) = numeric_date(claims, "nbf")?
        && nbf > now + FUTURE_LEEWAY_SECS
    {
        return Err("the token is not valid yet (`nbf`)".to_owned());
    }
    let iat = numeric_date(claims, "iat")?;
    let sub = string_claim(claims, "sub")?.ok_or("no `sub`")?.to_owned();
    let sid = string_claim(claims, "sid")?.map(str::to_owned);
    let user = ["preferred_username", "name"]
        .iter()
        .find_map(|name| {
            claims
                .get(*name)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        })
        .unwrap_or(&sub)
        .to_owned();
    let jkt = confirmation(claims)?;
    Ok(AccessToken {
        sub,
        sid,
        user,
        exp,
        iat,
        jkt,
    })
}

/// The key a token is bound to: `cnf.jkt` (RFC 9449 §6.1). A `cnf` of
/// another kind (a certificate binding, RFC 8705) is refused: this server
/// cannot check it, and a bound token must not pass as unbound.
fn confirmation(claims: &Claims) -> Result<Option<String>, String> {
    let Some(cnf) = claims.get("cnf") else {
        return Ok(None);
    };
    match cnf.get("jkt") {
        Some(Value::String(jkt)) if !jkt.is_empty() => Ok(Some(jkt.clone())),
        _ => Err("`cnf` has no `jkt` (only DPoP binding is supported)".to_owned()),
    }
}

/// Checks a logout token's claims (OpenID Back-Channel Logout 1.0 §2.6):
/// `iss` exactly `issuer`, `aud` contains `client_id`, `iat` present, not in
/// the future and not older than [`LOGOUT_MAX_AGE_SECS`], `exp` present and
/// not past (leeway allowed both ways), a `jti`, the back-channel logout
/// event, a `sid` or a `sub`, and no `nonce` (which would make it an ID
/// token).
pub(crate) fn check_logout(
    claims: &Claims,
    issuer: &str,
    client_id: &str,
    now: i64,
) -> Result<LogoutToken, String> {
    check_iss(claims, issuer)?;
    check_aud(claims, client_id)?;
    let iat = numeric_date(claims, "iat")?.ok_or("no `iat`")?;
    if iat > now + FUTURE_LEEWAY_SECS {
        return Err("`iat` is in the future".to_owned());
    }
    if iat < now - LOGOUT_MAX_AGE_SECS {
        return Err("the logout token is too old (`iat`)".to_owned());
    }
    let exp = numeric_date(claims, "exp")?.ok_or("no `exp`")?;
    if exp <= now - FUTURE_LEEWAY_SECS {
        return Err("the logout token has expired".to_owned());
    }
    let jti = string_claim(claims, "jti")?.ok_or("no `jti`")?.to_owned();
    let event = claims
        .get("events")
        .and_then(Value::as_object)
        .and_then(|events| events.get(BACKCHANNEL_LOGOUT_EVENT));
    if !event.is_some_and(Value::is_object) {
        return Err("`events` lacks the back-channel logout event".to_owned());
    }
    if claims.contains_key("nonce") {
        return Err("a logout token must not have a `nonce`".to_owned());
    }
    let sid = string_claim(claims, "sid")?.map(str::to_owned);
    let sub = string_claim(claims, "sub")?.map(str::to_owned);
    if sid.is_none() && sub.is_none() {
        return Err("neither `sid` nor `sub`".to_owned());
    }
    Ok(LogoutToken {
        sid,
        sub,
        iat,
        exp,
        jti,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const ISS: &str = "http://127.0.0.1:9090";
    const NOW: i64 = 1_700_000_000;
    const AT: Option<&str> = Some(ACCESS_TOKEN_TYP);

    fn claims(value: Value) -> Claims {
        match value {
            Value::Object(map) => map,
            other => panic!("not an object: {other}"),
        }
    }

    fn access() -> Claims {
        claims(json!({
            "iss": ISS, "aud": "chat-server", "sub": "alice", "sid": "s1",
            "exp": NOW + 60, "iat": NOW, "client_id": "chat-example",
        }))
    }

    fn logout() -> Claims {
        claims(json!({
            "iss": ISS, "aud": "chat-example", "iat": NOW, "exp": NOW + 120, "jti": "j1",
            "sub": "alice", "sid": "s1",
            "events": { BACKCHANNEL_LOGOUT_EVENT: {} },
        }))
    }

    #[test]
    fn a_good_access_token_passes_with_sub_as_the_name() {
        let token = check_access(&access(), AT, ISS, "chat-server", NOW).expect("valid");
        assert_eq!(token.sub, "alice");
        assert_eq!(token.user, "alice");
        assert_eq!(token.sid.as_deref(), Some("s1"));
        assert_eq!(token.exp, NOW + 60);
    }

    #[test]
    fn a_dpop_binding_is_kept_and_other_bindings_are_refused() {
        assert_eq!(
            check_access(&access(), AT, ISS, "chat-server", NOW)
                .expect("valid")
                .jkt,
            None
        );
        let mut c = access();
        c.insert(
            "cnf".into(),
            json!({"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}),
        );
        assert_eq!(
            check_access(&c, AT, ISS, "chat-server", NOW)
                .expect("valid")
                .jkt
                .as_deref(),
            Some("0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I")
        );
        for cnf in [json!({"x5t#S256": "abc"}), json!({"jkt": ""}), json!("jkt")] {
            c.insert("cnf".into(), cnf.clone());
            assert!(
                check_access(&c, AT, ISS, "chat-server", NOW).is_err(),
                "{cnf}"
            );
        }
    }

    #[test]
    fn the_display_name_prefers_preferred_username_then_name() {
        let mut c = access();
        c.insert("name".into(), json!("Alice Example"));
        assert_eq!(
            check_access(&c, AT, ISS, "chat-server", NOW)
                .expect("ok")
                .user,
            "Alice Example"
        );
        c.insert("preferred_username".into(), json!("ally"));
        assert_eq!(
            check_access(&c, AT, ISS, "chat-server", NOW)
                .expect("ok")
                .user,
            "ally"
        );
    }

    #[test]
    fn access_tokens_with_a_wrong_claim_are_refused() {
        let cases: Vec<(&str, Value)> = vec![
            ("iss", json!("http://evil.example")),
            ("iss", json!(ISS.to_owned() + "/")),
            ("aud", json!("chat-example")),
            ("aud", json!(["a", "b"])),
            ("aud", json!(7)),
            ("exp", json!(NOW)),
            ("exp", json!(NOW - 1)),
            ("exp", json!("tomorrow")),
            ("nbf", json!(NOW + FUTURE_LEEWAY_SECS + 1)),
            ("sub", json!("")),
        ];
        for (name, value) in cases {
            let mut c = access();
            c.insert(name.into(), value.clone());
            assert!(
                check_access(&c, AT, ISS, "chat-server", NOW).is_err(),
                "{name} = {value} was accepted"
            );
        }
        for name in ["iss", "aud", "exp", "sub"] {
            let mut c = access();
            c.remove(name);
            assert!(
                check_access(&c, AT, ISS, "chat-server", NOW).is_err(),
                "no {name} was accepted"
            );
        }
    }

    #[test]
    fn an_audience_array_and_fractional_dates_are_fine() {
        let mut c = access();
        c.insert("aud".into(), json!(["other", "chat-server"]));
        c.insert("exp".into(), json!((NOW + 10) as f64 + 0.5));
        c.insert("nbf".into(), json!(NOW + 5));
        let token = check_access(&c, AT, ISS, "chat-server", NOW).expect("valid");
        assert_eq!(token.exp, NOW + 10);
    }

    #[test]
    fn a_good_logout_token_passes() {
        let token = check_logout(&logout(), ISS, "chat-example", NOW).expect("valid");
        assert_eq!(token.sid.as_deref(), Some("s1"));
        assert_eq!(token.sub.as_deref(), Some("alice"));
        assert_eq!((token.jti.as_str(), token.exp), ("j1", NOW + 120));
        let mut only_sub = logout();
        only_sub.remove("sid");
        assert!(check_logout(&only_sub, ISS, "chat-example", NOW).is_ok());
        // Clock skew is tolerated both ways, up to the leeway; five minutes of age too.
        let mut skewed = logout();
        skewed.insert("exp".into(), json!(NOW - FUTURE_LEEWAY_SECS + 1));
        skewed.insert("iat".into(), json!(NOW - LOGOUT_MAX_AGE_SECS));
        assert!(check_logout(&skewed, ISS, "chat-example", NOW).is_ok());
        skewed.insert("iat".into(), json!(NOW + FUTURE_LEEWAY_SECS));
        assert!(check_logout(&skewed, ISS, "chat-example", NOW).is_ok());
    }

    #[test]
    fn logout_tokens_with_a_wrong_claim_are_refused() {
        let cases: Vec<(&str, Value)> = vec![
            ("iss", json!("http://evil.example")),
            ("aud", json!("chat-server")),
            ("iat", json!(NOW + FUTURE_LEEWAY_SECS + 1)),
            ("iat", json!(NOW - LOGOUT_MAX_AGE_SECS - 1)),
            ("exp", json!(NOW - FUTURE_LEEWAY_SECS)),
            ("exp", json!("soon")),
            ("jti", json!("")),
            ("jti", json!(7)),
            ("events", json!({})),
            ("events", json!({ BACKCHANNEL_LOGOUT_EVENT: "yes" })),
            ("events", json!([BACKCHANNEL_LOGOUT_EVENT])),
            ("nonce", json!("n")),
            ("sid", json!(5)),
        ];
        for (name, value) in cases {
            let mut c = logout();
            c.insert(name.into(), value.clone());
            assert!(
                check_logout(&c, ISS, "chat-example", NOW).is_err(),
                "{name} = {value} was accepted"
            );
        }
        for name in ["iss", "aud", "iat", "exp", "jti", "events"] {
            let mut c = logout();
            c.remove(name);
            assert!(
                check_logout(&c, ISS, "chat-example", NOW).is_err(),
                "no {name} was accepted"
            );
        }
        let mut neither = logout();
        neither.remove("sid");
        neither.remove("sub");
        assert!(check_logout(&neither, ISS, "chat-example", NOW).is_err());
    }

    #[test]
    fn id_token_shaped_tokens_need_the_access_token_typ() {
        for name in ["nonce", "at_hash"] {
            let mut c = access();
            c.insert(name.into(), json!("x"));
            for typ in [None, Some("jwt")] {
                assert!(
                    check_access(&c, typ, ISS, "chat-server", NOW).is_err(),
                    "{name} with typ {typ:?} was accepted"
                );
            }
            // An RFC 9068 access token is never an ID token: extra claims are its business.
            assert!(check_access(&c, AT, ISS, "chat-server", NOW).is_ok());
        }
        for typ in [None, Some("jwt")] {
            assert!(check_access(&access(), typ, ISS, "chat-server", NOW).is_ok());
        }
    }
}
