//! Entry points for the fuzz targets in `fuzz/` at the repository root
//! (cargo-fuzz): the strict parameter parsing every endpoint starts with —
//! query strings, form bodies with their content type, `scope` — and client
//! authentication, each the function the endpoints call.
//!
//! Compiled only with the non-default `fuzzing` feature and hidden from
//! the documentation: **not part of the API**, it may change in any release.

use std::collections::HashMap;
use std::sync::OnceLock;

use axum::http::{HeaderMap, HeaderValue, header};

use crate::client_assertion::AssertionCheck;
use crate::config::{ClientConfig, Config, SecretSource};
use crate::error::OAuthError;
use crate::params::{Params, authenticate_client, split_scope};
use crate::state::{RegisteredClient, Settings};

/// The public client of [`authenticate`].
pub const PUBLIC_CLIENT: &str = "chat-example";
/// The confidential client of [`authenticate`].
pub const CONFIDENTIAL_CLIENT: &str = "chat-server";
/// The secret of [`CONFIDENTIAL_CLIENT`].
pub const CLIENT_SECRET: &str = "fuzz-client-secret-8d1c7a2f";

/// A refusal as the endpoint would send it: `error` and `error_description`.
fn refused(e: OAuthError) -> String {
    format!("{}: {}", e.error, e.description)
}

/// The parameters, sorted, or the refusal.
fn pairs(params: Result<Params, OAuthError>) -> Result<Vec<(String, String)>, String> {
    let params = params.map_err(refused)?;
    let mut pairs: Vec<(String, String)> = params
        .names()
        .map(|k| (k.to_owned(), params.get(k).unwrap_or_default().to_owned()))
        .collect();
    pairs.sort();
    Ok(pairs)
}

/// A query string (`/authorize`, `/end_session`, the pages) or a form body
/// without its content type.
pub fn params(raw: &[u8]) -> Result<Vec<(String, String)>, String> {
    pairs(Params::parse(raw))
}

/// A form body with its `Content-Type` (`None`: none sent). A header value
/// HTTP cannot carry is refused before parsing, as the server would.
pub fn form(
    content_type: Option<&[u8]>,
    body: &[u8],
) -> Option<Result<Vec<(String, String)>, String>> {
    let mut headers = HeaderMap::new();
    if let Some(value) = content_type {
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_bytes(value).ok()?);
    }
    Some(pairs(Params::from_form(&headers, body)))
}

/// `scope` split as the endpoints split it.
pub fn scope(raw: &str) -> Vec<String> {
    split_scope(raw)
}

fn settings() -> &'static Settings {
    static SETTINGS: OnceLock<Settings> = OnceLock::new();
    SETTINGS.get_or_init(|| {
        let config = Config::default();
        let mut clients = HashMap::new();
        let public = ClientConfig::public(PUBLIC_CLIENT);
        let confidential = ClientConfig::confidential(CONFIDENTIAL_CLIENT, SecretSource::None);
        clients.insert(
            PUBLIC_CLIENT.to_owned(),
            RegisteredClient {
                config: public,
                secret: None,
            },
        );
        clients.insert(
            CONFIDENTIAL_CLIENT.to_owned(),
            RegisteredClient {
                config: confidential,
                secret: Some(CLIENT_SECRET.to_owned()),
            },
        );
        Settings {
            users: config.users,
            clients,
            lifetimes: config.lifetimes,
            signing_alg: config.signing_alg,
            auto_login: None,
            rotate_refresh_tokens: true,
            refresh_token_reuse_grace: 0,
            require_dpop_nonce: false,
            require_pushed_authorization_requests: false,
        }
    })
}

/// Client authentication at the token, revocation, introspection and
/// device endpoints: an `Authorization` header (`None`: none sent) and a
/// form body, with [`PUBLIC_CLIENT`] and [`CONFIDENTIAL_CLIENT`]
/// registered. `Ok` is the client authenticated; `None` when the header or
/// the body would not have reached client authentication.
pub fn authenticate(authorization: Option<&[u8]>, body: &[u8]) -> Option<Result<String, String>> {
    let mut headers = HeaderMap::new();
    if let Some(value) = authorization {
        headers.insert(header::AUTHORIZATION, HeaderValue::from_bytes(value).ok()?);
    }
    let params = Params::parse(body).ok()?;
    static REPLAY: OnceLock<crate::dpop::ReplayCache> = OnceLock::new();
    let assertions = AssertionCheck {
        issuer: "http://127.0.0.1:1",
        token_endpoint: "http://127.0.0.1:1/token".to_owned(),
        now: 1_700_000_000,
        replay: REPLAY.get_or_init(crate::dpop::ReplayCache::default),
    };
    Some(
        authenticate_client(settings(), &headers, &params, &assertions)
            .map(|client| client.config.client_id.clone())
            .map_err(refused),
    )
}
