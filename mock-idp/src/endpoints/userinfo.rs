//! Userinfo, and the access-token check that userinfo, introspection and the
//! account API share: signature by a published key, `typ`, issuer, expiry,
//! and — so that revocation shows at once — the grant still being active.
//! How the token is presented (Bearer, or DPoP with a proof) is checked in
//! `proof.rs`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::endpoints::no_store_json;
use crate::error::OAuthError;
use crate::state::{Grant, Shared};

/// A valid access token: its claims and the grant behind it.
pub(crate) struct ValidAccess {
    pub(crate) claims: Value,
    pub(crate) grant: Grant,
    /// Claims a test set for userinfo answers to this token.
    pub(crate) userinfo: Option<Map<String, Value>>,
    /// The DPoP key the token is bound to (`cnf.jkt`), if it is.
    pub(crate) jkt: Option<String>,
}

/// Checks an access token presented at `endpoint` (named in the
/// conformance runs' findings).
pub(crate) fn check_access_token(
    shared: &Shared,
    token: &str,
    endpoint: &str,
) -> Result<ValidAccess, &'static str> {
    let now = shared.clock.now();
    // Every access token the provider issues is recorded by the hash of its
    // exact bytes, so a match is as good as a signature check (and much
    // cheaper); anything else — forged, tampered, foreign — is unknown.
    let hash = Shared::hash(token);
    let (grant_id, revoked, userinfo, jkt) = {
        let store = shared.store();
        let record = store.access.get(&hash).ok_or("unknown token")?;
        (
            record.grant,
            record.revoked,
            record.userinfo.clone(),
            record.jkt.clone(),
        )
    };
    let decoded = crate::keys::decode_unverified(token).ok_or("malformed token")?;
    if decoded.header.get("typ").and_then(Value::as_str) != Some("at+jwt") {
        return Err("not an access token");
    }
    let claims = decoded.claims;
    if claims.get("iss").and_then(Value::as_str) != Some(shared.issuer.as_str()) {
        return Err("issued by another issuer");
    }
    if claims
        .get("exp")
        .and_then(Value::as_i64)
        .is_none_or(|exp| exp <= now)
    {
        return Err("expired");
    }
    if revoked {
        return Err("revoked");
    }
    let store = shared.store();
    let grant = store.grants.get(&grant_id).ok_or("unknown grant")?;
    if grant.revoked {
        return Err("revoked");
    }
    let grant = grant.clone();
    drop(store);
    shared
        .conformance
        .on_token_use(&grant.client_id, &hash, endpoint);
    Ok(ValidAccess {
        grant,
        claims,
        userinfo,
        jkt,
    })
}

pub(crate) async fn userinfo(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let result = (|| {
        let valid = crate::endpoints::proof::resource_access(
            &shared,
            &headers,
            method.as_str(),
            uri.path(),
            "userinfo",
        )?;
        if !valid.grant.has_scope("openid") {
            let mut e = OAuthError::new(
                StatusCode::FORBIDDEN,
                "insufficient_scope",
                "userinfo needs the openid scope",
            );
            e.www_authenticate =
                Some("Bearer error=\"insufficient_scope\", scope=\"openid\"".to_owned());
            return Err(e);
        }
        let settings = shared.settings();
        let mut body = json!({"sub": valid.grant.sub});
        if let Some(user) = valid
            .grant
            .username
            .as_deref()
            .and_then(|u| settings.user(u))
        {
            for (k, v) in crate::endpoints::token::user_claims(user, &valid.grant.scope) {
                body[k] = v;
            }
        }
        if let (Some(extra), Value::Object(claims)) = (&valid.userinfo, &mut body) {
            crate::claims::merge(claims, extra);
        }
        crate::conformance::twist::userinfo(&shared, &valid.grant.client_id, &mut body);
        Ok(body)
    })();
    match result {
        Ok(body) => no_store_json(&body),
        Err(e) => e.into_response(),
    }
}
