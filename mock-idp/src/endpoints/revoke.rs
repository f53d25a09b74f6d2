//! Revocation (RFC 7009) and introspection (RFC 7662). Revoking a refresh
//! token revokes its grant, and with it every access token of the grant;
//! revoking an access token revokes that token. Either shows at once in
//! introspection and userinfo. DPoP-bound tokens are introspected with
//! their `cnf.jkt` and `token_type: DPoP`; revocation needs no proof (RFC
//! 9449 defines none for it) and ignores one that is sent.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};

use crate::endpoints::no_store_json;
use crate::endpoints::userinfo::check_access_token;
use crate::error::OAuthError;
use crate::params::{Params, authenticate_client};
use crate::state::Shared;

type Body = Result<Bytes, axum::extract::rejection::BytesRejection>;

fn form(headers: &HeaderMap, body: Body) -> Result<Params, OAuthError> {
    let body = body.map_err(|e| OAuthError::new(e.status(), "invalid_request", e.body_text()))?;
    Params::from_form(headers, &body)
}

pub(crate) async fn revoke(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = form(&headers, body).and_then(|params| {
        let settings = shared.settings();
        let client = authenticate_client(&settings, &headers, &params, &shared.assertion_check())?;
        let token = params.required("token")?;
        revoke_token(&shared, &client.config.client_id, token)
    });
    match result {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => e.into_response(),
    }
}

fn revoke_token(shared: &Shared, client_id: &str, token: &str) -> Result<(), OAuthError> {
    let wrong_client = || {
        OAuthError::new(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            "the token was issued to another client",
        )
    };
    let hash = Shared::hash(token);
    let mut store = shared.store();
    if let Some(record) = store.refresh.get(&hash).cloned() {
        let owner = store.grants.get(&record.grant).map(|g| g.client_id.clone());
        if owner.as_deref() != Some(client_id) {
            return Err(wrong_client());
        }
        store.revoke_grant(record.grant);
        return Ok(());
    }
    drop(store);
    // An access token we issued: revoke that token.
    let mut store = shared.store();
    if let Some(record) = store.access.get(&hash).cloned() {
        let owner = store.grants.get(&record.grant).map(|g| g.client_id.clone());
        if owner.as_deref() != Some(client_id) {
            return Err(wrong_client());
        }
        if let Some(record) = store.access.get_mut(&hash) {
            record.revoked = true;
        }
    }
    // RFC 7009 §2.2: an unknown or invalid token is not an error.
    Ok(())
}

pub(crate) async fn introspect(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = form(&headers, body).and_then(|params| {
        let settings = shared.settings();
        let client = authenticate_client(&settings, &headers, &params, &shared.assertion_check())?;
        if client.config.is_public() || !client.config.introspection {
            return Err(OAuthError::new(
                StatusCode::FORBIDDEN,
                "unauthorized_client",
                "this client may not introspect tokens",
            ));
        }
        let token = params.required("token")?;
        Ok(introspect_token(&shared, token))
    });
    match result {
        Ok(body) => no_store_json(&body),
        Err(e) => e.into_response(),
    }
}

fn introspect_token(shared: &Shared, token: &str) -> Value {
    let now = shared.clock.now();
    let settings = shared.settings();
    let username = |g: &crate::state::Grant| {
        g.username
            .as_deref()
            .and_then(|u| settings.user(u))
            .map(|u| u.username.clone())
    };
    {
        let store = shared.store();
        if let Some(record) = store.refresh.get(&Shared::hash(token)) {
            let Some(grant) = store.grants.get(&record.grant) else {
                return json!({"active": false});
            };
            if record.used || grant.revoked || record.expires_at <= now {
                return json!({"active": false});
            }
            let mut answer = json!({
                "active": true,
                "token_type": "refresh_token",
                "scope": grant.scope.join(" "),
                "client_id": grant.client_id,
                "username": username(grant),
                "sub": grant.sub,
                "iss": shared.issuer,
                "exp": record.expires_at,
                "iat": record.issued_at,
                "sid": grant.sid,
            });
            if let Some(jkt) = &record.jkt {
                answer["cnf"] = json!({ "jkt": jkt });
            }
            return answer;
        }
    }
    match check_access_token(shared, token, "introspection") {
        Ok(valid) => {
            let c = &valid.claims;
            let mut answer = json!({
                "active": true,
                // RFC 9449 §6.2: a bound token's type and key.
                "token_type": if valid.jkt.is_some() { "DPoP" } else { "Bearer" },
                "scope": c.get("scope"),
                "client_id": c.get("client_id"),
                "username": username(&valid.grant),
                "sub": c.get("sub"),
                "aud": c.get("aud"),
                "iss": c.get("iss"),
                "exp": c.get("exp"),
                "iat": c.get("iat"),
                "jti": c.get("jti"),
                "sid": c.get("sid"),
            });
            if let Some(jkt) = &valid.jkt {
                answer["cnf"] = json!({ "jkt": jkt });
            }
            answer
        }
        Err(_) => json!({"active": false}),
    }
}
