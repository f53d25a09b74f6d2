//! What an app asks of the provider beyond the basics of a login: `prompt`,
//! `login_hint`, `max_age`, `acr_values`, `ui_locales` (OpenID Connect Core
//! §3.1.2.1), `resource` (RFC 8707) and a provider's own parameters (Auth0's
//! `audience`, for one) — and the checks that follow from them: `max_age`
//! needs an `auth_time` recent enough, a required `acr` must be one asked for.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{Error, IdTokenError, Result};

/// Parameters the SDK sets itself: an app cannot give them as extras.
const MANAGED: &[&str] = &[
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "grant_type",
    "code",
    "code_verifier",
    "refresh_token",
    "device_code",
    "client_secret",
    "client_assertion",
    "client_assertion_type",
];

/// The parameters of a login's authorization request (and of the device
/// authorization and token requests, where they apply).
///
/// ```
/// use std::time::Duration;
/// use sessionkit::AuthParams;
///
/// let params = AuthParams::new()
///     .prompt("login")
///     .login_hint("alice@example.com")
///     .max_age(Duration::from_secs(300))
///     .require_acr(["urn:example:mfa"])
///     .ui_locales(["fr-CA", "fr"])
///     .resource("https://api.example.com")
///     .extra("audience", "https://api.example.com");
/// # let _ = params;
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuthParams {
    prompt: Option<String>,
    login_hint: Option<String>,
    max_age: Option<Duration>,
    acr_values: Vec<String>,
    require_acr: bool,
    ui_locales: Vec<String>,
    resources: Vec<String>,
    extra: Vec<(String, String)>,
    token_extra: Vec<(String, String)>,
}

impl AuthParams {
    /// No parameters beyond the basics.
    pub fn new() -> Self {
        Self::default()
    }

    /// `prompt` (`none`, `login`, `consent`, `select_account`, space-separated).
    /// `consent` is added when `offline_access` is asked for (OIDC Core §11),
    /// unless the prompt is `none`.
    #[must_use]
    pub fn prompt(mut self, prompt: impl Into<String>) -> Self {
        self.prompt = Some(prompt.into());
        self
    }

    /// `login_hint`: who is expected to sign in (an email address, a username).
    #[must_use]
    pub fn login_hint(mut self, hint: impl Into<String>) -> Self {
        self.login_hint = Some(hint.into());
        self
    }

    /// `max_age`: the user must have authenticated within this long; the ID
    /// token's `auth_time` is checked against it (with the clock skew).
    #[must_use]
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = Some(max_age);
        self
    }

    /// `acr_values`, preferred in order; voluntary: the provider may
    /// authenticate otherwise, and the ID token is not checked.
    #[must_use]
    pub fn acr_values<I: IntoIterator<Item = S>, S: Into<String>>(mut self, values: I) -> Self {
        self.acr_values = values.into_iter().map(Into::into).collect();
        self.require_acr = false;
        self
    }

    /// `acr_values`, required: the ID token's `acr` must be one of them, or
    /// the login fails with [`IdTokenError::Claim`] on `acr`.
    #[must_use]
    pub fn require_acr<I: IntoIterator<Item = S>, S: Into<String>>(mut self, values: I) -> Self {
        self.acr_values = values.into_iter().map(Into::into).collect();
        self.require_acr = true;
        self
    }

    /// `ui_locales`, preferred in order (BCP 47 tags).
    #[must_use]
    pub fn ui_locales<I: IntoIterator<Item = S>, S: Into<String>>(mut self, locales: I) -> Self {
        self.ui_locales = locales.into_iter().map(Into::into).collect();
        self
    }

    /// A `resource` (RFC 8707) the tokens are for; repeatable. Sent with the
    /// authorization, device authorization and code exchange requests.
    #[must_use]
    pub fn resource(mut self, resource: impl Into<String>) -> Self {
        self.resources.push(resource.into());
        self
    }

    /// A parameter of the provider's own (Auth0's `audience`, say), sent
    /// with the authorization and device authorization requests. Names the
    /// SDK sets itself (`state`, `nonce`, `redirect_uri`, …) are refused when
    /// the request is made.
    #[must_use]
    pub fn extra(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.extra.push((name.into(), value.into()));
        self
    }

    /// A parameter of the provider's own for the token requests (code
    /// exchange, device polling, refresh).
    #[must_use]
    pub fn token_param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.token_extra.push((name.into(), value.into()));
        self
    }

    /// The `max_age` asked for.
    pub fn requested_max_age(&self) -> Option<Duration> {
        self.max_age
    }

    fn check_names(&self) -> Result<()> {
        for (name, _) in self.extra.iter().chain(&self.token_extra) {
            if MANAGED.contains(&name.as_str()) {
                return Err(Error::Config(format!(
                    "the SDK sets {name:?} itself; it cannot be an extra parameter"
                )));
            }
        }
        Ok(())
    }

    /// The authorization request's own pairs; `offline_access` says whether
    /// `consent` joins the prompt.
    pub(crate) fn authorization_pairs(
        &self,
        offline_access: bool,
    ) -> Result<Vec<(String, String)>> {
        self.check_names()?;
        let mut pairs = Vec::new();
        let mut prompt: Vec<&str> = self
            .prompt
            .as_deref()
            .unwrap_or("")
            .split(' ')
            .filter(|p| !p.is_empty())
            .collect();
        if offline_access && !prompt.contains(&"none") && !prompt.contains(&"consent") {
            prompt.push("consent");
        }
        if !prompt.is_empty() {
            pairs.push(("prompt".into(), prompt.join(" ")));
        }
        if let Some(hint) = &self.login_hint {
            pairs.push(("login_hint".into(), hint.clone()));
        }
        if let Some(max_age) = self.max_age {
            pairs.push(("max_age".into(), max_age.as_secs().to_string()));
        }
        if !self.acr_values.is_empty() {
            pairs.push(("acr_values".into(), self.acr_values.join(" ")));
        }
        if !self.ui_locales.is_empty() {
            pairs.push(("ui_locales".into(), self.ui_locales.join(" ")));
        }
        pairs.extend(self.device_pairs()?);
        Ok(pairs)
    }

    /// `resource` and the provider's own parameters, for the device
    /// authorization request (and the authorization request).
    pub(crate) fn device_pairs(&self) -> Result<Vec<(String, String)>> {
        self.check_names()?;
        let mut pairs: Vec<(String, String)> = self
            .resources
            .iter()
            .map(|r| ("resource".to_owned(), r.clone()))
            .collect();
        pairs.extend(self.extra.iter().cloned());
        Ok(pairs)
    }

    /// The provider's own token-request parameters; with `resource` for the
    /// first token request of a login.
    pub(crate) fn token_pairs(&self, with_resources: bool) -> Vec<(String, String)> {
        let mut pairs: Vec<(String, String)> = if with_resources {
            self.resources
                .iter()
                .map(|r| ("resource".to_owned(), r.clone()))
                .collect()
        } else {
            Vec::new()
        };
        pairs.extend(self.token_extra.iter().cloned());
        pairs
    }

    /// What the ID token of a login with these parameters must show.
    pub(crate) fn checks(&self) -> LoginChecks {
        LoginChecks {
            max_age: self.max_age,
            acr: self.require_acr.then(|| self.acr_values.clone()),
        }
    }
}

/// The checks a login's parameters add to its ID token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LoginChecks {
    max_age: Option<Duration>,
    acr: Option<Vec<String>>,
}

impl LoginChecks {
    /// Checks `auth_time` against `max_age` and `acr` against the required values.
    pub(crate) fn check(
        &self,
        claims: &serde_json::Value,
        now: SystemTime,
        skew: Duration,
    ) -> std::result::Result<(), IdTokenError> {
        let claim_err = |claim: &'static str, reason: String| IdTokenError::Claim { claim, reason };
        if let Some(max_age) = self.max_age {
            let Some(auth_time) = claims.get("auth_time").and_then(serde_json::Value::as_i64)
            else {
                return Err(claim_err(
                    "auth_time",
                    "missing, though max_age was asked for".into(),
                ));
            };
            let now = now
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
            let allowed =
                i64::try_from(max_age.as_secs().saturating_add(skew.as_secs())).unwrap_or(i64::MAX);
            if now.saturating_sub(auth_time) > allowed {
                return Err(claim_err(
                    "auth_time",
                    format!(
                        "the user authenticated {} s ago, more than max_age {} s",
                        now.saturating_sub(auth_time),
                        max_age.as_secs()
                    ),
                ));
            }
        }
        if let Some(wanted) = &self.acr {
            match claims.get("acr").and_then(serde_json::Value::as_str) {
                Some(acr) if wanted.iter().any(|w| w == acr) => {}
                Some(acr) => {
                    return Err(claim_err(
                        "acr",
                        format!("{acr:?} is not one of the required {wanted:?}"),
                    ));
                }
                None => return Err(claim_err("acr", "missing, though one is required".into())),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn offline_access_adds_consent_unless_the_prompt_is_none() {
        let p = AuthParams::new().prompt("login");
        assert!(
            p.authorization_pairs(true)
                .expect("pairs")
                .contains(&("prompt".into(), "login consent".into()))
        );
        let p = AuthParams::new().prompt("none");
        assert!(
            p.authorization_pairs(true)
                .expect("pairs")
                .contains(&("prompt".into(), "none".into()))
        );
        let p = AuthParams::new();
        assert!(p.authorization_pairs(false).expect("pairs").is_empty());
    }

    #[test]
    fn parameters_the_sdk_sets_cannot_be_extras() {
        for name in ["state", "nonce", "redirect_uri", "code_verifier"] {
            let p = AuthParams::new().extra(name, "x");
            assert!(
                matches!(p.authorization_pairs(false), Err(Error::Config(_))),
                "{name}"
            );
        }
        let p = AuthParams::new()
            .extra("audience", "https://api")
            .resource("https://a")
            .resource("https://b");
        let pairs = p.device_pairs().expect("pairs");
        assert_eq!(pairs.iter().filter(|(k, _)| k == "resource").count(), 2);
        assert!(pairs.contains(&("audience".into(), "https://api".into())));
    }

    #[test]
    fn max_age_needs_a_recent_enough_auth_time() {
        let checks = AuthParams::new().max_age(Duration::from_secs(300)).checks();
        let skew = Duration::from_secs(60);
        assert!(
            checks
                .check(&json!({"auth_time": 1_000}), at(1_300), skew)
                .is_ok()
        );
        assert!(
            checks
                .check(&json!({"auth_time": 1_000}), at(1_360), skew)
                .is_ok()
        );
        assert!(
            checks
                .check(&json!({"auth_time": 1_000}), at(1_361), skew)
                .is_err()
        );
        assert!(checks.check(&json!({}), at(1_000), skew).is_err());
        assert!(
            AuthParams::new()
                .checks()
                .check(&json!({}), at(1), skew)
                .is_ok()
        );
    }

    #[test]
    fn a_required_acr_must_be_one_asked_for() {
        let skew = Duration::ZERO;
        let checks = AuthParams::new().require_acr(["mfa", "hw"]).checks();
        assert!(checks.check(&json!({"acr": "hw"}), at(1), skew).is_ok());
        assert!(checks.check(&json!({"acr": "pwd"}), at(1), skew).is_err());
        assert!(checks.check(&json!({}), at(1), skew).is_err());
        let voluntary = AuthParams::new().acr_values(["mfa"]).checks();
        assert!(voluntary.check(&json!({"acr": "pwd"}), at(1), skew).is_ok());
    }
}
