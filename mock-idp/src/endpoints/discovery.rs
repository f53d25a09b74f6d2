//! Discovery (OpenID Connect Discovery 1.0) and the JWKS. The discovery
//! document is built once, when the socket listens, and advertises exactly
//! what is implemented; it is answered from then on, before the keys exist.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::json;

use crate::config::{ACCOUNT_SCOPE, Alg, DEVICE_CODE_GRANT, account_audience};
use crate::conformance::JwksAnswer;
use crate::state::Shared;

pub(crate) fn document(issuer: &str, require_par: bool, dpop_algs: &[String]) -> Bytes {
    let e = |path: &str| format!("{issuer}{path}");
    let auth_methods = [
        "none",
        "client_secret_basic",
        "client_secret_post",
        "private_key_jwt",
    ];
    let assertion_algs = crate::client_assertion::ALGS;
    let doc = json!({
        "issuer": issuer,
        "authorization_endpoint": e("/authorize"),
        "token_endpoint": e("/token"),
        "userinfo_endpoint": e("/userinfo"),
        "jwks_uri": e("/jwks"),
        "revocation_endpoint": e("/revoke"),
        "introspection_endpoint": e("/introspect"),
        "end_session_endpoint": e("/end_session"),
        "device_authorization_endpoint": e("/device_authorization"),
        "pushed_authorization_request_endpoint": e("/par"),
        "require_pushed_authorization_requests": require_par,
        "account_sessions_endpoint": e("/account/sessions"),
        "account_sessions_scope": ACCOUNT_SCOPE,
        "account_sessions_audience": account_audience(issuer),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", DEVICE_CODE_GRANT, "client_credentials"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
        "userinfo_signing_alg_values_supported": ["none"],
        "token_endpoint_auth_methods_supported": auth_methods,
        "token_endpoint_auth_signing_alg_values_supported": assertion_algs,
        "revocation_endpoint_auth_methods_supported": auth_methods,
        "revocation_endpoint_auth_signing_alg_values_supported": assertion_algs,
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
        "introspection_endpoint_auth_signing_alg_values_supported": assertion_algs,
        "scopes_supported": ["openid", "profile", "email", "offline_access", ACCOUNT_SCOPE],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "at_hash", "sid", "azp", "acr",
            "name", "preferred_username", "email", "email_verified"],
        "code_challenge_methods_supported": ["S256"],
        "dpop_signing_alg_values_supported": dpop_algs,
        "prompt_values_supported": ["none", "login", "consent"],
        "acr_values_supported": crate::endpoints::authorize::ACR_VALUES,
        "backchannel_logout_supported": true,
        "backchannel_logout_session_supported": true,
        "authorization_response_iss_parameter_supported": true,
        "claims_parameter_supported": false,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
    });
    Bytes::from(doc.to_string())
}

fn json_bytes(body: Bytes, cache: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    response
}

/// The answer to a discovery request.
pub(crate) fn document_response(document: Bytes) -> Response {
    json_bytes(document, "public, max-age=300")
}

pub(crate) async fn discovery(State(shared): State<Arc<Shared>>) -> Response {
    match shared
        .conformance
        .on_discovery(&shared.issuer, &shared.discovery)
    {
        Some(changed) => json_bytes(Bytes::from(changed), "no-cache"),
        None => document_response(shared.discovery.clone()),
    }
}

pub(crate) async fn jwks(State(shared): State<Arc<Shared>>) -> Response {
    keys_response(&shared, false)
}

/// The JWKS at the address a conformance scenario moved it to.
pub(crate) async fn moved_jwks(State(shared): State<Arc<Shared>>) -> Response {
    keys_response(&shared, true)
}

fn keys_response(shared: &Shared, moved: bool) -> Response {
    let now = shared.clock.now();
    let keys = shared.keys();
    let body = match shared.conformance.on_jwks(moved) {
        None => return crate::server::not_found_response(),
        Some(JwksAnswer::Usual) => keys.jwks(now),
        Some(JwksAnswer::SingleRsa) => json!({"keys": [keys.active(Alg::RS256).jwk]}),
        Some(JwksAnswer::RsaAnd(decoy)) => {
            json!({"keys": [keys.active(Alg::RS256).jwk, decoy.jwk]})
        }
    };
    json_bytes(Bytes::from(body.to_string()), "no-cache")
}
