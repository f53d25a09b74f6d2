//! Token endpoint calls and their answers: build the form, authenticate the
//! client, parse the response into a [`TokenSet`] or a typed error. A body is
//! kept for diagnosis only when it is an error response — never a 200, which
//! could carry a token.

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use serde::Deserialize;

use crate::dpop::{DpopKey, Prover, USE_DPOP_NONCE};
use crate::error::{Error, Result};
use crate::id_token::IdClaims;
use crate::provider::Provider;
use crate::secret::{AccessToken, ClientSecret, IdToken, RefreshToken};

/// The tokens a login or refresh produced.
#[derive(Clone)]
#[non_exhaustive]
pub struct TokenSet {
    /// The access token.
    pub access_token: AccessToken,
    /// The refresh token, when the provider issued one.
    pub refresh_token: Option<RefreshToken>,
    /// The ID token, when one came.
    pub id_token: Option<IdToken>,
    /// When the access token expires: `expires_in` counted from when the response arrived.
    pub expires_at: Option<SystemTime>,
    /// The scopes granted (as the provider said, else as asked).
    pub scopes: Vec<String>,
    /// The checked claims of the ID token.
    pub claims: Option<IdClaims>,
    /// The DPoP key the request proved possession of, when the client
    /// uses DPoP: the refresh token may be bound to it (RFC 9449 §5), so
    /// every later refresh and revocation proves it again.
    pub dpop: Option<DpopKey>,
    /// The access token is bound to [`TokenSet::dpop`] (the provider
    /// answered `token_type: DPoP`): API calls send it as `DPoP` with a
    /// proof. `false`: a bearer access token.
    pub dpop_bound: bool,
}

impl std::fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSet")
            .field("access_token", &self.access_token)
            .field("refresh_token", &self.refresh_token)
            .field("id_token", &self.id_token)
            .field("expires_at", &self.expires_at)
            .field("scopes", &self.scopes)
            .field("sub", &self.claims.as_ref().map(|c| c.sub.as_str()))
            .field("dpop", &self.dpop)
            .field("dpop_bound", &self.dpop_bound)
            .finish()
    }
}

/// The longest `expires_in` taken as given (ten years): a larger one (up
/// to `u64::MAX`, which would overflow the clock) is read as this.
pub(crate) const MAX_EXPIRES_IN_SECS: u64 = 10 * 365 * 24 * 3600;

#[derive(Deserialize)]
struct Wire {
    access_token: String,
    token_type: String,
    #[serde(default)]
    expires_in: Option<u64>,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    id_token: Option<String>,
    #[serde(default)]
    scope: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct ErrorWire {
    pub(crate) error: String,
    #[serde(default)]
    pub(crate) error_description: Option<String>,
}

/// A token endpoint answer before the ID token is checked (secrets print redacted).
#[derive(Debug)]
pub(crate) struct RawTokens {
    pub(crate) access_token: AccessToken,
    pub(crate) refresh_token: Option<RefreshToken>,
    pub(crate) id_token: Option<IdToken>,
    pub(crate) expires_at: Option<SystemTime>,
    pub(crate) scopes: Option<Vec<String>>,
    /// `token_type` was `DPoP`: the access token is bound to the proof's key.
    pub(crate) dpop_bound: bool,
}

impl RawTokens {
    /// Whether the access token is bound to `key`, the one the request's
    /// proof was signed with (`token_type: DPoP`). A `Bearer` answer to a
    /// request with a proof is a bearer access token — the provider may
    /// still have bound the refresh token to the key (RFC 9449 §5), so the
    /// caller keeps the key for the provider either way.
    pub(crate) fn bound_to(&self, key: Option<&DpopKey>) -> Result<bool> {
        match (self.dpop_bound, key) {
            (true, None) => Err(Error::Parse {
                message: "token_type DPoP for a request sent without a DPoP proof".to_owned(),
                body: String::new(),
                status: None,
            }),
            (bound, _) => Ok(bound),
        }
    }
}

/// Parses a token endpoint answer.
pub(crate) fn parse_token_response(
    status: u16,
    body: &[u8],
    received_at: SystemTime,
) -> Result<RawTokens> {
    if !(200..300).contains(&status) {
        return Err(parse_error_response(status, body));
    }
    let wire: Wire = serde_json::from_slice(body).map_err(|e| Error::Parse {
        message: format!("token response ({} bytes) is not valid: {e}", body.len()),
        body: String::new(),
        status: Some(status),
    })?;
    let dpop_bound = wire.token_type.eq_ignore_ascii_case("dpop");
    if !dpop_bound && !wire.token_type.eq_ignore_ascii_case("bearer") {
        return Err(Error::Parse {
            message: format!(
                "token_type {:?} is neither Bearer nor DPoP",
                wire.token_type
            ),
            body: String::new(),
            status: Some(status),
        });
    }
    Ok(RawTokens {
        access_token: AccessToken::new(wire.access_token),
        refresh_token: wire.refresh_token.map(RefreshToken::new),
        id_token: wire.id_token.map(IdToken::new),
        expires_at: wire
            .expires_in
            .map(|s| received_at + Duration::from_secs(s.min(MAX_EXPIRES_IN_SECS))),
        scopes: wire.scope.map(|s| {
            s.split(' ')
                .filter(|x| !x.is_empty())
                .map(str::to_owned)
                .collect()
        }),
        dpop_bound,
    })
}

/// An OAuth error answer: the provider's `error` code, or a parse error that keeps the body.
pub(crate) fn parse_error_response(status: u16, body: &[u8]) -> Error {
    match serde_json::from_slice::<ErrorWire>(body) {
        Ok(e) => Error::Provider {
            error: e.error,
            description: e.error_description,
            status: Some(status),
        },
        Err(_) => Error::Parse {
            message: format!("the provider answered {status} without an OAuth error body"),
            body: diagnostic_body(body),
            status: Some(status),
        },
    }
}

/// Token members whose names, anywhere in a body, keep it out of an error.
const TOKEN_MEMBERS: [&str; 3] = ["access_token", "refresh_token", "id_token"];

/// The start of an error answer's body, kept for diagnosis — unless it
/// names a token member (as written, or behind JSON escapes): a provider
/// or proxy that sends tokens with an error status must not have them
/// copied into an error that apps log.
fn diagnostic_body(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let unescaped = serde_json::from_slice::<serde_json::Value>(body)
        .map(|v| v.to_string())
        .unwrap_or_default();
    if TOKEN_MEMBERS
        .iter()
        .any(|m| text.contains(m) || unescaped.contains(m))
    {
        return "[withheld: the body names a token]".to_owned();
    }
    text.chars().take(512).collect()
}

/// A form's fields: names, and values borrowed or made here (an assertion).
pub(crate) type Fields<'a> = Vec<(&'a str, Cow<'a, str>)>;

/// Client authentication for a form POST (RFC 6749 §2.3.1): a confidential
/// client uses HTTP Basic with id and secret form-urlencoded first, or the
/// secret in the form (`client_secret_post`), or a fresh client assertion
/// signed with its key (`private_key_jwt`, RFC 7523); a public client names
/// itself with `client_id` in the form.
pub(crate) fn authenticate<'a>(
    request: reqwest::RequestBuilder,
    form: &[(&'a str, &'a str)],
    client_id: &'a str,
    credential: Option<Credential<'a>>,
) -> Result<(reqwest::RequestBuilder, Fields<'a>)> {
    let mut fields: Fields<'a> = form.iter().map(|(k, v)| (*k, Cow::Borrowed(*v))).collect();
    let request = match credential {
        Some(Credential::Secret {
            secret,
            method: ClientAuthMethod::SecretPost,
        }) => {
            fields.push(("client_id", client_id.into()));
            fields.push(("client_secret", secret.secret().into()));
            request
        }
        Some(Credential::Secret { secret, .. }) => {
            let enc =
                |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            request.basic_auth(enc(client_id), Some(enc(secret.secret())))
        }
        Some(Credential::Key {
            key,
            audience,
            clock,
        }) => {
            // Signing fails only when the system's random generator or the
            // crypto library does: a typed error, the request not sent.
            let assertion = key.assertion(client_id, audience, clock.now())?;
            fields.push(("client_id", client_id.into()));
            fields.push((
                "client_assertion_type",
                crate::client_key::ASSERTION_TYPE.into(),
            ));
            fields.push(("client_assertion", assertion.into()));
            request
        }
        None => {
            fields.push(("client_id", client_id.into()));
            request
        }
    };
    Ok((request, fields))
}

/// How a confidential client proves itself at the provider's token,
/// revocation and device authorization endpoints (RFC 6749 §2.3.1, RFC 7523).
///
/// ```no_run
/// # async fn demo(provider: sessionkit::Provider, secret: sessionkit::ClientSecret) {
/// use sessionkit::{ClientAuthMethod, OidcClient};
/// let client = OidcClient::new(provider, "my-service")
///     .client_secret(secret)
///     .client_auth(ClientAuthMethod::SecretPost);
/// # let _ = client; }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientAuthMethod {
    /// `client_secret_basic`: the id and secret in HTTP Basic (the default
    /// for a secret when the provider lists it, or lists nothing).
    SecretBasic,
    /// `client_secret_post`: the id and secret in the form body.
    SecretPost,
    /// `private_key_jwt`: a JWT signed with the client's
    /// [`ClientKey`](crate::ClientKey) (the default when the client has one).
    PrivateKeyJwt,
}

impl ClientAuthMethod {
    /// The secret method for a provider that advertises `supported`
    /// (discovery's `token_endpoint_auth_methods_supported`; `None` when it
    /// says nothing, which means Basic, OIDC Discovery §3).
    pub(crate) fn for_provider(supported: Option<&[&str]>) -> Self {
        match supported {
            Some(methods)
                if !methods.contains(&"client_secret_basic")
                    && methods.contains(&"client_secret_post") =>
            {
                ClientAuthMethod::SecretPost
            }
            _ => ClientAuthMethod::SecretBasic,
        }
    }
}

/// How a confidential client proves itself: its secret and how it is sent,
/// or its key, with the audience and clock of its assertions.
#[derive(Clone, Copy)]
pub(crate) enum Credential<'a> {
    Secret {
        secret: &'a ClientSecret,
        method: ClientAuthMethod,
    },
    Key {
        key: &'a crate::ClientKey,
        /// The provider's issuer identifier (the assertions' `aud`).
        audience: &'a str,
        clock: &'a crate::Clock,
    },
}

/// A raw answer of the token endpoint.
pub(crate) struct Answer {
    pub(crate) status: u16,
    /// Zeroized when dropped: a success answer holds the tokens.
    pub(crate) body: zeroize::Zeroizing<Vec<u8>>,
    /// `Retry-After` in seconds, when sent (429, 503).
    pub(crate) retry_after: Option<Duration>,
}

/// POSTs a form to the token endpoint with client authentication, and a
/// DPoP proof when `prover` is given: a `use_dpop_nonce` answer (RFC 9449
/// §8) is sent once more with the provider's nonce, and every nonce the
/// provider sends is kept for the next proof.
pub(crate) async fn post_form(
    provider: &Provider,
    url: &str,
    client_id: &str,
    secret: Option<Credential<'_>>,
    form: &[(&str, &str)],
    prover: Option<Prover<'_>>,
    timeout: Option<Duration>,
) -> Result<Answer> {
    let mut nonce: Option<String> = None;
    loop {
        let mut request = provider
            .http()
            .reqwest()
            .post(url)
            .header("accept", "application/json");
        if let Some(timeout) = timeout {
            request = request.timeout(timeout);
        }
        if let Some(prover) = prover {
            request = request.header(
                crate::dpop::DPOP,
                prover.proof("POST", url, nonce.as_deref())?,
            );
        }
        let (request, mut fields) = authenticate(request, form, client_id, secret)?;
        // A form that names the client itself (a pushed authorization
        // request, RFC 9126 §2.1) keeps one `client_id`.
        let mut named = false;
        fields.retain(|(k, _)| *k != "client_id" || !std::mem::replace(&mut named, true));
        let response = request
            .form(&fields)
            .send()
            .await
            .map_err(crate::http::network)?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let given = prover.and_then(|p| p.nonces.keep(url, response.headers()));
        let body = zeroize::Zeroizing::new(
            response
                .bytes()
                .await
                .map_err(crate::http::network)?
                .to_vec(),
        );
        let challenged = status == 400
            && nonce.is_none()
            && serde_json::from_slice::<ErrorWire>(&body).is_ok_and(|e| e.error == USE_DPOP_NONCE);
        match given {
            Some(given) if challenged => {
                tracing::debug!("the provider asked for a DPoP nonce; sending once more with it");
                nonce = Some(given);
            }
            _ => {
                return Ok(Answer {
                    status,
                    body,
                    retry_after,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_goes_in_basic_unless_the_provider_takes_only_post() {
        use ClientAuthMethod::{SecretBasic, SecretPost};
        assert_eq!(ClientAuthMethod::for_provider(None), SecretBasic);
        assert_eq!(
            ClientAuthMethod::for_provider(Some(&["client_secret_basic", "client_secret_post"])),
            SecretBasic
        );
        assert_eq!(
            ClientAuthMethod::for_provider(Some(&["none", "client_secret_post"])),
            SecretPost
        );
        assert_eq!(
            ClientAuthMethod::for_provider(Some(&["private_key_jwt"])),
            SecretBasic
        );
    }

    #[test]
    fn parses_tokens_and_computes_expiry_from_arrival() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let t = parse_token_response(
            200,
            br#"{"access_token":"a","token_type":"Bearer","expires_in":300,"refresh_token":"r","scope":"openid offline_access"}"#,
            at,
        )
        .expect("parses");
        assert_eq!(t.expires_at, Some(at + Duration::from_secs(300)));
        assert_eq!(
            t.scopes.as_deref(),
            Some(&["openid".to_owned(), "offline_access".to_owned()][..])
        );
    }

    #[test]
    fn a_huge_expires_in_is_clamped_not_a_panic() {
        let at = SystemTime::now();
        let body = format!(
            r#"{{"access_token":"a","token_type":"Bearer","expires_in":{}}}"#,
            u64::MAX
        );
        let t = parse_token_response(200, body.as_bytes(), at).expect("parses");
        assert_eq!(
            t.expires_at,
            Some(at + Duration::from_secs(MAX_EXPIRES_IN_SECS))
        );
    }

    #[test]
    fn errors_are_typed_and_a_200_body_is_never_kept() {
        match parse_token_response(
            400,
            br#"{"error":"invalid_grant","error_description":"reused"}"#,
            SystemTime::now(),
        ) {
            Err(Error::Provider { error, status, .. }) => {
                assert_eq!((error.as_str(), status), ("invalid_grant", Some(400)))
            }
            other => panic!("{other:?}"),
        }
        match parse_token_response(200, br#"{"access_token": "secret-tok"#, SystemTime::now()) {
            Err(Error::Parse { body, message, .. }) => {
                assert!(body.is_empty());
                assert!(!message.contains("secret-tok"));
            }
            other => panic!("{other:?}"),
        }
        match parse_token_response(502, b"<html>bad gateway</html>", SystemTime::now()) {
            Err(Error::Parse { body, .. }) => assert!(body.contains("bad gateway")),
            other => panic!("{other:?}"),
        }
        match parse_token_response(400, br#"{"error":"x" "#, SystemTime::now()) {
            Err(Error::Parse { body, .. }) => assert_eq!(body, r#"{"error":"x" "#),
            other => panic!("{other:?}"),
        }
        assert!(
            parse_token_response(
                200,
                br#"{"access_token":"a","token_type":"mac"}"#,
                SystemTime::now()
            )
            .is_err()
        );
    }

    /// Found by the `token_response` fuzz target: a non-2xx answer that
    /// carries tokens (here with status 11976, as in the crash) was kept
    /// whole in the error.
    #[test]
    fn an_error_status_with_tokens_in_the_body_keeps_no_body() {
        let bodies: [&[u8]; 3] = [
            br#"{"access_token": "at-0123456789ab", "token_type": "Bearer", "exzires_in": 300, "refresh_token": "rt-0123456789ab", "id_token": "a.b.c", "scope": "openid o_fline_accsse"}"#,
            br#"{"acc\u0065ss_token": "at-0123456789ab", "token_type": "Bearer"}"#,
            br#"{"refresh_token": "rt-0123456789ab", "#,
        ];
        for status in [11976, 400, 500, 302] {
            for body in bodies {
                let error =
                    parse_token_response(status, body, SystemTime::now()).expect_err("not a 2xx");
                let shown = format!("{error} {error:?}");
                assert!(
                    !shown.contains("0123456789ab"),
                    "{status}: a token shows: {shown}"
                );
                match error {
                    Error::Parse { body, .. } => assert!(body.contains("withheld"), "{body}"),
                    other => panic!("{other:?}"),
                }
            }
        }
    }
}
