//! DPoP at the provider's own endpoints (RFC 9449), on top of the public
//! checks of [`crate::dpop`]:
//! - the token endpoint takes an optional proof (required for clients with
//!   `dpop_bound_access_tokens`); a bad one is a 400 `invalid_dpop_proof`,
//!   a missing or stale nonce a 400 `use_dpop_nonce`;
//! - the resource endpoints (userinfo, the account API) take a token as
//!   `Authorization: Bearer` when it is not DPoP-bound and as
//!   `Authorization: DPoP` with a proof by its key (and `ath`) when it is;
//!   refusals are 401s with a `WWW-Authenticate: DPoP …` challenge.
//!
//! A proof the provider cannot record because its replay cache is full of
//! live ones is answered 503 `temporarily_unavailable` with `Retry-After`
//! at every endpoint: the client is not at fault and should try again.
//!
//! The `DPoP-Nonce` header goes on every answer of these endpoints while
//! nonces are required (`server::observe` adds it), so a client always
//! holds a current one.

use axum::http::{HeaderMap, StatusCode, header};

use crate::dpop::{self, ProofError, ProofRequest, VerifiedProof};
use crate::endpoints::userinfo::{ValidAccess, check_access_token};
use crate::error::OAuthError;
use crate::state::Shared;

/// How far a proof's `iat` may be from the provider's clock, either way.
pub(crate) const PROOF_WINDOW_SECS: u32 = 60;

/// The URL a client addresses `path` (the request's path inside the
/// issuer) at: what its proofs' `htu` must name.
pub(crate) fn request_url(shared: &Shared, path: &str) -> String {
    format!("{}{path}", shared.issuer.trim_end_matches('/'))
}

/// The nonce clients must put in their proofs now, if nonces are required.
pub(crate) fn current_nonce(shared: &Shared) -> Option<String> {
    shared
        .settings()
        .require_dpop_nonce
        .then(|| shared.dpop_nonces.current(shared.clock.now()))
}

/// Checks `proof` for a request with `method` to `path`, with the access
/// token presented beside it (resource endpoints), the nonce when required.
/// With a token bound to a key (`bound`), a proof by another key is refused
/// before it is recorded as seen.
fn verify(
    shared: &Shared,
    method: &str,
    path: &str,
    proof: &str,
    access_token: Option<&str>,
    bound: Option<&str>,
) -> Result<VerifiedProof, ProofError> {
    let url = request_url(shared, path);
    let mut request = ProofRequest::new(method, &url, proof)
        .window(PROOF_WINDOW_SECS)
        // Only the algorithms the provider takes (`Config::dpop_signing_algs`).
        .algs(&shared.dpop_algs);
    if let Some(token) = access_token {
        request = request.access_token(token);
    }
    if let Some(jkt) = bound {
        request = request.bound_to(jkt);
    }
    if shared.settings().require_dpop_nonce {
        request = request.require_nonce(&shared.dpop_nonces);
    }
    let verified = dpop::verify_proof(&request, shared.clock.now(), &shared.dpop_replay);
    if let Err(err) = &verified {
        tracing::debug!(%err, path, "DPoP proof refused");
    }
    verified
}

/// A token endpoint error for a refused proof (RFC 9449 §5, §8): a 400, or
/// a 503 when the provider could not record the proof (full replay cache).
fn token_endpoint_error(err: &ProofError) -> OAuthError {
    match err.retry_after_secs() {
        Some(secs) => OAuthError::temporarily_unavailable(err.to_string(), secs),
        None => OAuthError::new(StatusCode::BAD_REQUEST, err.error_code(), err.to_string()),
    }
}

/// A resource endpoint's error for a refused proof: a 401 with a DPoP
/// challenge, or a 503 when the provider could not record the proof.
fn resource_proof_error(shared: &Shared, err: &ProofError) -> OAuthError {
    match err.retry_after_secs() {
        Some(secs) => OAuthError::temporarily_unavailable(err.to_string(), secs),
        None => dpop_refusal(shared, err.error_code(), err.to_string()),
    }
}

/// The proof of a token request to `path`, checked; `None` when the
/// request carries none.
pub(crate) fn token_request_proof(
    shared: &Shared,
    headers: &HeaderMap,
    path: &str,
) -> Result<Option<VerifiedProof>, OAuthError> {
    let proof = dpop::proof_header(headers).map_err(|e| token_endpoint_error(&e))?;
    match proof {
        None => Ok(None),
        Some(proof) => verify(shared, "POST", path, proof, None, None)
            .map(Some)
            .map_err(|e| token_endpoint_error(&e)),
    }
}

/// The error of a token request without a proof where one is needed.
pub(crate) fn proof_required(why: &str) -> OAuthError {
    OAuthError::new(
        StatusCode::BAD_REQUEST,
        "invalid_dpop_proof",
        format!("a DPoP proof is required: {why}"),
    )
}

/// A 401 of a resource endpoint with a DPoP challenge (naming the
/// algorithms the provider takes).
fn dpop_refusal(
    shared: &Shared,
    error: &'static str,
    description: impl Into<String>,
) -> OAuthError {
    let description = description.into();
    let mut e = OAuthError::new(StatusCode::UNAUTHORIZED, error, description.clone());
    e.www_authenticate = Some(dpop::challenge_with_algs(
        error,
        &description,
        &shared.dpop_algs,
    ));
    e
}

/// A 401 for a request without credentials: both schemes offered.
fn no_credentials(shared: &Shared) -> OAuthError {
    let mut e = OAuthError::new(
        StatusCode::UNAUTHORIZED,
        "invalid_request",
        "an access token is required (Authorization: Bearer, or DPoP with a DPoP proof)",
    );
    e.www_authenticate = Some(format!(
        "Bearer realm=\"mock-idp\", DPoP algs=\"{}\"",
        shared.dpop_algs.join(" ")
    ));
    e
}

/// The access token presented to the resource endpoint at `path` with
/// `method`, checked (see [`check_access_token`]) together with how it is
/// presented: a DPoP-bound token only as `DPoP` with a valid proof by its
/// key, any other only as `Bearer`. `endpoint` names it in conformance findings.
pub(crate) fn resource_access(
    shared: &Shared,
    headers: &HeaderMap,
    method: &str,
    path: &str,
    endpoint: &str,
) -> Result<ValidAccess, OAuthError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| no_credentials(shared))?;
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    let token = token.trim();
    let is = |name: &str| scheme.eq_ignore_ascii_case(name);
    if token.is_empty() || !(is("bearer") || is("dpop")) {
        let mut e = OAuthError::invalid_token(
            "the Authorization header is not a Bearer or DPoP access token",
        );
        e.www_authenticate = no_credentials(shared).www_authenticate;
        return Err(e);
    }
    if is("bearer") {
        let valid =
            check_access_token(shared, token, endpoint).map_err(OAuthError::invalid_token)?;
        if valid.jkt.is_some() {
            // RFC 9449 §7.2: a bound token is no bearer token.
            return Err(dpop_refusal(
                shared,
                "invalid_token",
                "this access token is DPoP-bound: present it as Authorization: DPoP, with a DPoP proof",
            ));
        }
        return Ok(valid);
    }
    let valid = check_access_token(shared, token, endpoint)
        .map_err(|why| dpop_refusal(shared, "invalid_token", why))?;
    let bound = valid.jkt.as_deref();
    dpop::proof_header(headers)
        .and_then(|p| p.ok_or(ProofError::Missing))
        .and_then(|proof| verify(shared, method, path, proof, Some(token), bound))
        .map_err(|e| resource_proof_error(shared, &e))?;
    if bound.is_none() {
        return Err(dpop_refusal(
            shared,
            "invalid_token",
            "this access token is not DPoP-bound: present it as Authorization: Bearer",
        ));
    }
    Ok(valid)
}
