//! Request parameters, parsed strictly (RFC 6749 §3.1): a parameter sent twice
//! is an error (except `resource`, which RFC 8707 lets a client repeat), one
//! sent with an empty value counts as absent. Also client
//! authentication for the endpoints that take it (RFC 6749 §2.3.1, and
//! `private_key_jwt` of RFC 7523 through `client_assertion.rs`).

use std::collections::HashMap;

use axum::http::{HeaderMap, header};
use base64::Engine as _;

use crate::client_assertion::{ASSERTION_TYPE, AssertionCheck, Refusal};
use crate::config::ClientAuthMethod;
use crate::error::OAuthError;
use crate::state::{RegisteredClient, Settings};

#[derive(Debug, Default, Clone)]
pub(crate) struct Params(HashMap<String, String>, Vec<String>);

impl Params {
    pub(crate) fn parse(raw: &[u8]) -> Result<Self, OAuthError> {
        let mut map = HashMap::new();
        let mut resources = Vec::new();
        for (k, v) in url::form_urlencoded::parse(raw) {
            if v.is_empty() {
                continue;
            }
            if k == "resource" {
                resources.push(v.to_string());
                map.entry(k.to_string()).or_insert_with(|| v.to_string());
                continue;
            }
            if map.insert(k.to_string(), v.to_string()).is_some() {
                return Err(OAuthError::invalid_request(format!(
                    "parameter {k:?} is repeated"
                )));
            }
        }
        Ok(Self(map, resources))
    }

    /// Every `resource` (RFC 8707), in order.
    pub(crate) fn resources(&self) -> &[String] {
        &self.1
    }

    /// The audience the `resource` parameters ask for, if any, when `client`
    /// may have each: one URI, or several separated by spaces (URIs hold
    /// none). `Err` names the first it may not have.
    pub(crate) fn audience_for(&self, client: &RegisteredClient) -> Result<Option<String>, String> {
        for resource in self.resources() {
            if client.config.audience.as_deref() != Some(resource.as_str())
                && !client
                    .config
                    .allowed_resources
                    .iter()
                    .any(|r| r == resource)
            {
                return Err(resource.clone());
            }
        }
        Ok((!self.1.is_empty()).then(|| self.1.join(" ")))
    }

    pub(crate) fn from_query(query: Option<&str>) -> Result<Self, OAuthError> {
        Self::parse(query.unwrap_or("").as_bytes())
    }

    /// Parses a form body, checking the content type.
    pub(crate) fn from_form(headers: &HeaderMap, body: &[u8]) -> Result<Self, OAuthError> {
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let mime = content_type.split(';').next().unwrap_or("").trim();
        if !mime.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
            return Err(OAuthError::invalid_request(
                "the body must be application/x-www-form-urlencoded",
            ));
        }
        Self::parse(body)
    }

    /// Every parameter's name (for the fuzz targets).
    #[cfg(feature = "fuzzing")]
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    pub(crate) fn required(&self, name: &str) -> Result<&str, OAuthError> {
        self.get(name)
            .ok_or_else(|| OAuthError::invalid_request(format!("missing parameter {name:?}")))
    }

    pub(crate) fn scope(&self) -> Vec<String> {
        split_scope(self.get("scope").unwrap_or(""))
    }

    /// Sets `name` to `value` (for a parameter the provider fills in, such
    /// as `dpop_jkt` from a PAR request's DPoP proof).
    pub(crate) fn set(&mut self, name: &str, value: String) {
        self.0.insert(name.to_owned(), value);
    }

    /// Is a parameter other than these present?
    pub(crate) fn other_than(&self, allowed: &[&str]) -> Option<&str> {
        self.0
            .keys()
            .map(String::as_str)
            .find(|k| !allowed.contains(k))
    }

    /// Removes `name`.
    pub(crate) fn remove(&mut self, name: &str) {
        self.0.remove(name);
    }
}

pub(crate) fn split_scope(scope: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in scope.split(' ').filter(|s| !s.is_empty()) {
        if !out.iter().any(|x| x == s) {
            out.push(s.to_owned());
        }
    }
    out
}

/// Authenticates the client of a token, revocation, introspection, device
/// authorization or PAR request. A public client names itself with
/// `client_id`; a confidential one uses HTTP Basic or `client_secret` in
/// the body, never both; a `private_key_jwt` client sends a
/// `client_assertion` (checked against `assertions`), and only that.
pub(crate) fn authenticate_client<'a>(
    settings: &'a Settings,
    headers: &HeaderMap,
    params: &Params,
    assertions: &AssertionCheck<'_>,
) -> Result<&'a RegisteredClient, OAuthError> {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Basic ")
                .or_else(|| v.strip_prefix("basic "))
        });
    if params.get("client_assertion").is_some() || params.get("client_assertion_type").is_some() {
        if basic.is_some() || params.get("client_secret").is_some() {
            return Err(OAuthError::invalid_request(
                "use one client authentication method, not two",
            ));
        }
        return authenticate_assertion(settings, params, assertions);
    }
    let (client_id, secret, used_basic) = match basic {
        Some(encoded) => {
            if params.get("client_secret").is_some() {
                return Err(OAuthError::invalid_request(
                    "use one client authentication method, not two",
                ));
            }
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| OAuthError::invalid_client("malformed Basic credentials", true))?;
            let (id, secret) = decoded
                .split_once(':')
                .ok_or_else(|| OAuthError::invalid_client("malformed Basic credentials", true))?;
            let id = decode_component(id)?;
            let secret = decode_component(secret)?;
            if let Some(body_id) = params.get("client_id")
                && body_id != id
            {
                return Err(OAuthError::invalid_request(
                    "client_id does not match the credentials",
                ));
            }
            (id, Some(secret), true)
        }
        None => (
            params.required("client_id")?.to_owned(),
            params.get("client_secret").map(str::to_owned),
            false,
        ),
    };
    let client = settings
        .clients
        .get(&client_id)
        .ok_or_else(|| OAuthError::invalid_client("unknown client", used_basic))?;
    let refuse = |why: &str| Err(OAuthError::invalid_client(why, used_basic));
    match client.config.token_endpoint_auth_method {
        Some(ClientAuthMethod::PrivateKeyJwt) => {
            return refuse(
                "this client authenticates with private_key_jwt: send a client_assertion signed with its key",
            );
        }
        Some(ClientAuthMethod::ClientSecretBasic) if !used_basic && secret.is_some() => {
            return refuse(
                "this client authenticates with client_secret_basic: send the secret in HTTP Basic",
            );
        }
        Some(ClientAuthMethod::ClientSecretPost) if used_basic => {
            return refuse(
                "this client authenticates with client_secret_post: send the secret in the body",
            );
        }
        _ => {}
    }
    match (&client.secret, secret) {
        (None, None) => Ok(client),
        (None, Some(_)) => refuse("a public client has no secret to present"),
        (Some(_), None) => refuse("client authentication required"),
        (Some(expected), Some(given)) => {
            if constant_time_eq(expected.as_bytes(), given.as_bytes()) {
                Ok(client)
            } else {
                refuse("client authentication failed")
            }
        }
    }
}

/// `private_key_jwt`: the client named by `client_id` (or, without one, by
/// the assertion's `iss`) must be registered for it, and its assertion pass
/// every check of `client_assertion.rs`.
fn authenticate_assertion<'a>(
    settings: &'a Settings,
    params: &Params,
    assertions: &AssertionCheck<'_>,
) -> Result<&'a RegisteredClient, OAuthError> {
    let refuse = |why: String| OAuthError::invalid_client(why, false);
    if params.get("client_assertion_type") != Some(ASSERTION_TYPE) {
        return Err(refuse(format!(
            "client_assertion_type must be {ASSERTION_TYPE:?}"
        )));
    }
    let assertion = params
        .get("client_assertion")
        .ok_or_else(|| refuse("client_assertion is missing".to_owned()))?;
    let client_id = match params.get("client_id") {
        Some(id) => id.to_owned(),
        None => crate::client_assertion::claimed_client(assertion)
            .map_err(|why| refuse(format!("client assertion refused: {why}")))?,
    };
    let client = settings
        .clients
        .get(&client_id)
        .ok_or_else(|| refuse("unknown client".to_owned()))?;
    let jwks = match (&client.config.jwks, client.config.uses_private_key_jwt()) {
        (Some(jwks), true) => jwks,
        _ => {
            return Err(refuse(
                "this client is not registered for private_key_jwt: it cannot use a client_assertion"
                    .to_owned(),
            ));
        }
    };
    crate::client_assertion::verify(assertion, &client_id, jwks, assertions).map_err(
        |refusal| match refusal {
            Refusal::Invalid(why) => refuse(format!("client assertion refused: {why}")),
            Refusal::Busy { retry_after_secs } => OAuthError::temporarily_unavailable(
                "the provider remembers as many client assertions as it can until older ones expire; try again",
                retry_after_secs,
            ),
        },
    )?;
    Ok(client)
}

fn decode_component(s: &str) -> Result<String, OAuthError> {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .ok_or_else(|| OAuthError::invalid_client("malformed Basic credentials", true))
}

pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let (a, b) = (crate::keys::sha256(a), crate::keys::sha256(b));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_parameters_are_refused_and_empty_ones_ignored() {
        assert!(Params::parse(b"a=1&a=2").is_err());
        let p = Params::parse(b"a=&b=2").expect("parses");
        assert_eq!(p.get("a"), None);
        assert_eq!(p.get("b"), Some("2"));
    }

    #[test]
    fn scope_is_split_and_deduplicated() {
        assert_eq!(
            split_scope(" openid  profile openid"),
            ["openid", "profile"]
        );
    }
}
