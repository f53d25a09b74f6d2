//! Where the endpoints meet the runs: each function records what the RP did
//! and, when the client's open run says so, changes what the provider answers.

use std::sync::Arc;

use axum::http::{HeaderMap, header};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use super::catalog::{Expect, IdTwist, LogoutTwist, Twist};
use crate::config::Alg;
use crate::keys::{b64, decode_unverified};
use crate::params::Params;
use crate::state::Shared;

/// How long keys retired by a scenario's rotation stay published.
const ROTATION_GRACE_SECS: i64 = 3600;

/// An authorization request of `client_id` arrived. A client configured for
/// a scenario gets a new run when it has none open.
pub(crate) fn on_authorize(shared: &Shared, client_id: &str) {
    let configured = shared
        .settings()
        .clients
        .get(client_id)
        .and_then(|c| c.config.conformance.clone());
    if shared
        .conformance
        .with_run(client_id, |run| run.saw_authorize())
        .is_none()
        && let Some(scenario) = configured.as_deref().and_then(super::scenario)
    {
        shared
            .conformance
            .start(scenario, client_id, decoy_for(scenario));
    }
}

/// The extra RSA key of the scenarios whose JWKS holds two (RSA-2048
/// generation: 50–200 ms).
pub(crate) fn decoy_for(
    scenario: &'static super::Scenario,
) -> Option<Arc<crate::keys::SigningKey>> {
    (scenario.twist == Twist::IdToken(IdTwist::KidAbsentMultiple))
        .then(|| {
            crate::keys::SigningKey::generate(Alg::RS256)
                .ok()
                .map(Arc::new)
        })
        .flatten()
}

/// The authorization response to `client_id`: changes `state` or `iss` as
/// the run says.
pub(crate) fn auth_response(
    shared: &Shared,
    client_id: &str,
    state: &mut Option<String>,
    iss: &mut Option<String>,
) {
    shared.conformance.with_run(client_id, |run| {
        match run.scenario.twist {
            Twist::AuthIssInvalid => *iss = Some(format!("{}/other-issuer", shared.issuer)),
            Twist::AuthIssMissing => *iss = None,
            Twist::AuthStateInvalid => *state = Some("not-the-state-the-client-sent".to_owned()),
            _ => return,
        }
        run.showed_auth_response();
    });
}

/// A token request of `client_id`, before it is answered: records it, and
/// rotates the keys when the run rotates them before signing.
pub(crate) fn before_token(
    shared: &Shared,
    client_id: &str,
    grant_type: &str,
    headers: &HeaderMap,
    params: &Params,
) {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.get(..6).is_some_and(|s| s.eq_ignore_ascii_case("basic ")));
    let refresh = (grant_type == "refresh_token")
        .then(|| params.get("refresh_token").map(Shared::hash))
        .flatten();
    let rotate = shared
        .conformance
        .with_run(client_id, |run| {
            run.saw_token_request(grant_type, basic, refresh);
            let due = match run.scenario.twist {
                Twist::RotateBeforeSigning => grant_type == "authorization_code",
                Twist::RotateMidSession => grant_type == "refresh_token",
                _ => false,
            };
            let rotate = due && !run.rotated;
            run.rotated |= rotate;
            rotate
        })
        .unwrap_or(false);
    if rotate {
        let now = shared.clock.now();
        match shared.keys().rotated(now, ROTATION_GRACE_SECS) {
            Ok(keys) => shared.set_keys(keys),
            Err(e) => tracing::error!(%e, "conformance: the key rotation failed"),
        }
    }
}

/// A token response to `client_id`: changes it as the run says and
/// records its tokens.
pub(crate) fn after_token(
    shared: &Shared,
    client_id: &str,
    grant_type: &str,
    response: &mut Value,
) {
    let Some(scenario) = shared.conformance.with_run(client_id, |run| run.scenario) else {
        return;
    };
    let refresh_grant = grant_type == "refresh_token";
    let twisted = match scenario.twist {
        Twist::IdToken(t) if grant_type == "authorization_code" => {
            twist_id_token(shared, client_id, t, response)
        }
        Twist::RefreshIdToken(t) if refresh_grant => twist_id_token(shared, client_id, t, response),
        Twist::NoExpiresIn if grant_type == "authorization_code" => {
            response
                .as_object_mut()
                .and_then(|o| o.remove("expires_in"));
            true
        }
        Twist::TokenTypeCase if grant_type == "authorization_code" => {
            response["token_type"] = json!("bEaReR");
            true
        }
        _ => false,
    };
    let tainted = twisted && scenario.expect == Expect::Reject;
    let hashes: Vec<_> = ["access_token", "refresh_token"]
        .iter()
        .filter_map(|k| response.get(*k).and_then(Value::as_str))
        .map(Shared::hash)
        .collect();
    shared.conformance.with_run(client_id, |run| {
        run.issued(&hashes, refresh_grant, tainted);
        if twisted {
            run.showed();
        }
    });
}

/// Replaces the response's ID token with one changed by `twist`. Returns
/// whether it did.
fn twist_id_token(shared: &Shared, client_id: &str, twist: IdTwist, response: &mut Value) -> bool {
    let Some(decoded) = response
        .get("id_token")
        .and_then(Value::as_str)
        .and_then(decode_unverified)
    else {
        return false;
    };
    let mut claims = decoded.claims;
    let keys = shared.keys();
    let alg = decoded
        .header
        .get("alg")
        .and_then(Value::as_str)
        .and_then(|a| match a {
            "ES256" => Some(Alg::ES256),
            "RS256" => Some(Alg::RS256),
            _ => None,
        })
        .unwrap_or(Alg::RS256);
    let rsa = keys.active(Alg::RS256);
    let usual = keys.active(alg);
    let token = match twist {
        IdTwist::InvalidIss => {
            claims["iss"] = json!(format!("{}/other-issuer", shared.issuer));
            usual.sign_jwt("JWT", &claims)
        }
        IdTwist::MissingSub => {
            claims.as_object_mut().map(|o| o.remove("sub"));
            usual.sign_jwt("JWT", &claims)
        }
        IdTwist::InvalidAud => {
            claims["aud"] = json!("another-client");
            usual.sign_jwt("JWT", &claims)
        }
        IdTwist::MissingIat => {
            claims.as_object_mut().map(|o| o.remove("iat"));
            usual.sign_jwt("JWT", &claims)
        }
        IdTwist::KidAbsentSingle | IdTwist::KidAbsentMultiple => {
            rsa.sign_with_header(&json!({"alg": "RS256", "typ": "JWT"}), &claims)
        }
        IdTwist::SigRs256 => rsa.sign_jwt("JWT", &claims),
        IdTwist::SigNone => format!(
            "{}.{}.",
            b64(json!({"alg": "none", "typ": "JWT"}).to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        ),
        IdTwist::InvalidSig => {
            let signed = rsa.sign_jwt("JWT", &claims);
            let (head, sig) = signed.rsplit_once('.').unwrap_or((&signed, ""));
            let mut sig = URL_SAFE_NO_PAD.decode(sig).unwrap_or_default();
            if let Some(last) = sig.last_mut() {
                *last ^= 0x01;
            }
            format!("{head}.{}", b64(&sig))
        }
        IdTwist::NonceInvalid => {
            claims["nonce"] = json!("not-the-nonce-the-client-sent");
            usual.sign_jwt("JWT", &claims)
        }
        IdTwist::AudArray => {
            claims["aud"] = json!([client_id]);
            usual.sign_jwt("JWT", &claims)
        }
        IdTwist::OtherSub => {
            claims["sub"] = json!("someone-else");
            usual.sign_jwt("JWT", &claims)
        }
    };
    response["id_token"] = json!(token);
    true
}

/// A userinfo answer to `client_id`: changes `sub` when the run says so and
/// records how many claims it holds.
pub(crate) fn userinfo(shared: &Shared, client_id: &str, body: &mut Value) {
    shared.conformance.with_run(client_id, |run| {
        if run.scenario.twist == Twist::UserinfoSub {
            body["sub"] = json!("someone-else");
            run.showed();
        }
        run.userinfo_answered(body.as_object().map_or(0, serde_json::Map::len));
    });
}

/// An RP-initiated logout request of `client_id`.
pub(crate) fn end_session(shared: &Shared, client_id: &str, hint_valid: bool, state: bool) {
    shared
        .conformance
        .with_run(client_id, |run| run.saw_logout(hint_valid, state));
}

/// The logout token for `client_id`: `None` when its run does not change it,
/// else the token to send instead of the one signed from `claims`.
pub(crate) fn logout_token(shared: &Shared, client_id: &str, claims: &Value) -> Option<String> {
    let Some(Twist::LogoutToken(twist)) = shared.conformance.twist(client_id) else {
        return None;
    };
    let keys = shared.keys();
    let key = keys.active(Alg::RS256);
    let mut claims = claims.clone();
    let token = match twist {
        LogoutTwist::Valid => key.sign_jwt("logout+jwt", &claims),
        LogoutTwist::AlgNone => format!(
            "{}.{}.",
            b64(json!({"alg": "none", "typ": "logout+jwt"})
                .to_string()
                .as_bytes()),
            b64(claims.to_string().as_bytes())
        ),
        LogoutTwist::NoEvent => {
            claims.as_object_mut().map(|o| o.remove("events"));
            key.sign_jwt("logout+jwt", &claims)
        }
        LogoutTwist::WithNonce => {
            claims["nonce"] = json!("a-nonce");
            key.sign_jwt("logout+jwt", &claims)
        }
        LogoutTwist::WrongAlg => {
            // HS256 under the kid of the RSA key: an RP that lets the token
            // pick its algorithm would check it against the public key bytes.
            let header = json!({"alg": "HS256", "kid": key.kid, "typ": "logout+jwt"});
            let signing = format!(
                "{}.{}",
                b64(header.to_string().as_bytes()),
                b64(claims.to_string().as_bytes())
            );
            let mac_key =
                aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key.kid.as_bytes());
            let tag = aws_lc_rs::hmac::sign(&mac_key, signing.as_bytes());
            format!("{signing}.{}", b64(tag.as_ref()))
        }
        LogoutTwist::WrongAud => {
            claims["aud"] = json!("another-client");
            key.sign_jwt("logout+jwt", &claims)
        }
        LogoutTwist::WrongEvent => {
            claims["events"] = json!({"http://schemas.openid.net/event/another-event": {}});
            key.sign_jwt("logout+jwt", &claims)
        }
        LogoutTwist::WrongIss => {
            claims["iss"] = json!(format!("{}/other-issuer", shared.issuer));
            key.sign_jwt("logout+jwt", &claims)
        }
    };
    shared.conformance.with_run(client_id, |run| run.showed());
    Some(token)
}

/// What the RP's back-channel receiver answered.
pub(crate) fn backchannel_answer(shared: &Shared, client_id: &str, answer: Result<u16, String>) {
    shared.conformance.with_run(client_id, |run| {
        if matches!(run.scenario.twist, Twist::LogoutToken(_)) {
            run.saw_backchannel(answer);
        }
    });
}
