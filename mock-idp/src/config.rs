//! What the provider knows before it starts: users with their claims, clients
//! with their redirect URIs and grants, lifetimes and the signing algorithm.
//! Read from a TOML file or built in code; [`Config::default`] is the
//! no-arguments set (`alice`, `bob`, `carol`, `chat-example`, `chat-server`).
//!
//! Why one file of ~690 lines: the configuration is one serde tree (users,
//! clients with their authentication and PAR settings, lifetimes) and its
//! checks; a third of it is field documentation and unit tests.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The grant type name of the device authorization grant (RFC 8628).
pub const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// The scope that asks for an access token the account sessions API
/// (`/account/sessions`) accepts: a token issued with it has the account
/// audience ([`account_audience`]) in its `aud`, beside its usual one.
/// Discovery names it as `account_sessions_scope`.
pub const ACCOUNT_SCOPE: &str = "account_sessions";

/// The path, under the issuer, that names the account sessions API as an
/// audience (an `aud` value, not an endpoint).
pub const ACCOUNT_AUDIENCE_PATH: &str = "/account";

/// The audience the account sessions API requires in an access token's
/// `aud`: the issuer followed by [`ACCOUNT_AUDIENCE_PATH`]. Discovery names
/// it as `account_sessions_audience`.
///
/// ```
/// use sessionkit_mock_idp::config::account_audience;
/// assert_eq!(account_audience("http://127.0.0.1:9090"), "http://127.0.0.1:9090/account");
/// ```
pub fn account_audience(issuer: &str) -> String {
    format!("{}{ACCOUNT_AUDIENCE_PATH}", issuer.trim_end_matches('/'))
}

/// A signing algorithm the provider can use for the tokens it issues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum Alg {
    /// RSASSA-PKCS1-v1_5 with SHA-256 over a 2048-bit key (the default).
    #[default]
    RS256,
    /// ECDSA over P-256 with SHA-256.
    ES256,
}

impl Alg {
    /// The JOSE name of the algorithm.
    pub fn as_str(self) -> &'static str {
        match self {
            Alg::RS256 => "RS256",
            Alg::ES256 => "ES256",
        }
    }
}

/// A user who can sign in.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// The login name; also the `sub` unless `sub` is set.
    pub username: String,
    /// The password typed on the login page (development only).
    pub password: String,
    /// The subject identifier; defaults to the username.
    #[serde(default)]
    pub sub: Option<String>,
    /// Extra claims (`name`, `email`, …) returned by userinfo and in ID tokens
    /// for the scopes that ask for them.
    #[serde(default)]
    pub claims: BTreeMap<String, serde_json::Value>,
}

impl User {
    /// A user whose password is its name and whose claims are a display name
    /// and an e-mail address under `example.com`.
    pub fn simple(username: &str) -> Self {
        let mut display = username.to_owned();
        if let Some(first) = display.get_mut(0..1) {
            first.make_ascii_uppercase();
        }
        let mut claims = BTreeMap::new();
        claims.insert(
            "name".to_owned(),
            serde_json::Value::String(format!("{display} Example")),
        );
        claims.insert(
            "preferred_username".to_owned(),
            serde_json::Value::String(username.to_owned()),
        );
        claims.insert(
            "email".to_owned(),
            serde_json::Value::String(format!("{username}@example.com")),
        );
        claims.insert("email_verified".to_owned(), serde_json::Value::Bool(true));
        Self {
            username: username.to_owned(),
            password: username.to_owned(),
            sub: None,
            claims,
        }
    }

    /// The subject identifier of this user.
    pub fn sub(&self) -> &str {
        self.sub.as_deref().unwrap_or(&self.username)
    }
}

/// Where a confidential client's secret comes from. Never written in the
/// repository: an environment variable, a file, or generated at start.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(rename_all = "snake_case")]
pub enum SecretSource {
    /// A public client: no secret, PKCE instead.
    #[default]
    None,
    /// Read from this environment variable at start; generated if unset.
    Env(String),
    /// Read from this file at start (trailing whitespace trimmed).
    File(std::path::PathBuf),
    /// Generated at start; read it through the control API or [`crate::Control`].
    Generated,
    /// Given in code (in-process tests).
    Value(String),
}

/// A registered client (relying party).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// The `client_id`.
    pub client_id: String,
    /// Where its secret comes from; `none` makes it a public client.
    #[serde(default)]
    pub secret: SecretSource,
    /// Registered redirect URIs, matched exactly, except that the port of a
    /// loopback redirect (`127.0.0.1`, `[::1]`, `localhost`) may be any (RFC 8252 §7.3).
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    /// Allowed `post_logout_redirect_uri` values, matched exactly.
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    /// Grant types it may use.
    #[serde(default = "default_grants")]
    pub grant_types: Vec<String>,
    /// The audience (`aud`) of the access tokens it gets: the API they are for.
    #[serde(default)]
    pub audience: Option<String>,
    /// Other audiences it may ask for with the `resource` parameter (RFC 8707).
    #[serde(default)]
    pub allowed_resources: Vec<String>,
    /// Where back-channel logout tokens are POSTed when a session it took part in ends.
    #[serde(default)]
    pub backchannel_logout_uri: Option<String>,
    /// The algorithm of its ID tokens; the provider's default when unset.
    #[serde(default)]
    pub id_token_signed_response_alg: Option<Alg>,
    /// May it use the introspection endpoint (a resource server)?
    #[serde(default)]
    pub introspection: bool,
    /// A conformance scenario this client always runs (see
    /// [`crate::conformance`]): a run opens at each authorization request
    /// when the client has none open.
    #[serde(default)]
    pub conformance: Option<String>,
    /// Must every token request of this client carry a DPoP proof (RFC 9449
    /// §5.2, client metadata `dpop_bound_access_tokens`)? Then its tokens
    /// are always DPoP-bound. When `false` (the default) a proof is still
    /// honoured when sent, and the tokens bound to its key.
    #[serde(default)]
    pub dpop_bound_access_tokens: bool,
    /// How it authenticates at the token, revocation, introspection, device
    /// authorization and PAR endpoints. Unset: from [`secret`](Self::secret)
    /// (`none` for a public client; either secret method for a confidential
    /// one). [`ClientAuthMethod::PrivateKeyJwt`] needs [`jwks`](Self::jwks)
    /// and no secret.
    #[serde(default)]
    pub token_endpoint_auth_method: Option<ClientAuthMethod>,
    /// Its public keys, a JWK Set (`{"keys": [...]}`), for `private_key_jwt`
    /// (RFC 7523): its client assertions must be signed by one of them. In
    /// TOML an inline table, or the JSON text as a string.
    #[serde(default, deserialize_with = "jwks_from_text_or_table")]
    pub jwks: Option<serde_json::Value>,
    /// Must its authorization requests come through PAR (RFC 9126 §6,
    /// client metadata `require_pushed_authorization_requests`)? Then
    /// `/authorize` refuses one that does not carry a `request_uri` from
    /// the PAR endpoint.
    #[serde(default)]
    pub require_pushed_authorization_requests: bool,
}

/// How a client authenticates (its `token_endpoint_auth_method`, OpenID
/// Connect Dynamic Client Registration §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ClientAuthMethod {
    /// A public client: it names itself with `client_id` only.
    None,
    /// Its secret in HTTP Basic, only.
    ClientSecretBasic,
    /// Its secret in the form body, only.
    ClientSecretPost,
    /// A JWT signed with one of its registered keys (RFC 7523).
    PrivateKeyJwt,
}

impl ClientAuthMethod {
    /// The registered name (`private_key_jwt`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::ClientSecretBasic => "client_secret_basic",
            Self::ClientSecretPost => "client_secret_post",
            Self::PrivateKeyJwt => "private_key_jwt",
        }
    }
}

/// `jwks` as a TOML (or JSON) table, or as JSON text in a string.
fn jwks_from_text_or_table<'de, D>(deserializer: D) -> Result<Option<serde_json::Value>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    match Option::<serde_json::Value>::deserialize(deserializer)? {
        Some(serde_json::Value::String(text)) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| serde::de::Error::custom(format!("jwks is not JSON: {e}"))),
        other => Ok(other),
    }
}

fn default_grants() -> Vec<String> {
    vec!["authorization_code".to_owned(), "refresh_token".to_owned()]
}

impl ClientConfig {
    /// A public client with the given loopback callback paths and the code,
    /// refresh and device grants.
    pub fn public(client_id: &str) -> Self {
        Self {
            client_id: client_id.to_owned(),
            secret: SecretSource::None,
            redirect_uris: vec![
                "http://127.0.0.1/callback".to_owned(),
                "http://[::1]/callback".to_owned(),
            ],
            post_logout_redirect_uris: vec!["http://127.0.0.1/logged-out".to_owned()],
            grant_types: vec![
                "authorization_code".to_owned(),
                "refresh_token".to_owned(),
                DEVICE_CODE_GRANT.to_owned(),
            ],
            audience: None,
            allowed_resources: Vec::new(),
            backchannel_logout_uri: None,
            id_token_signed_response_alg: None,
            introspection: false,
            conformance: None,
            dpop_bound_access_tokens: false,
            token_endpoint_auth_method: None,
            jwks: None,
            require_pushed_authorization_requests: false,
        }
    }

    /// A confidential client with the client credentials grant and
    /// introspection, its secret from `secret`.
    pub fn confidential(client_id: &str, secret: SecretSource) -> Self {
        Self {
            client_id: client_id.to_owned(),
            secret,
            redirect_uris: Vec::new(),
            post_logout_redirect_uris: Vec::new(),
            grant_types: vec!["client_credentials".to_owned()],
            audience: None,
            allowed_resources: Vec::new(),
            backchannel_logout_uri: None,
            id_token_signed_response_alg: None,
            introspection: true,
            conformance: None,
            dpop_bound_access_tokens: false,
            token_endpoint_auth_method: None,
            jwks: None,
            require_pushed_authorization_requests: false,
        }
    }

    /// A client that authenticates with `private_key_jwt` (RFC 7523): the
    /// public client's redirect URIs and grants, no secret, and the public
    /// keys of `jwks` (`{"keys": [...]}`).
    ///
    /// ```
    /// use sessionkit_mock_idp::config::{ClientAuthMethod, ClientConfig};
    ///
    /// let jwks = serde_json::json!({"keys": [{"kty": "EC", "crv": "P-256",
    ///     "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
    ///     "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]});
    /// let client = ClientConfig::private_key_jwt("service", jwks);
    /// assert_eq!(client.token_endpoint_auth_method, Some(ClientAuthMethod::PrivateKeyJwt));
    /// assert!(client.check().is_ok());
    /// ```
    pub fn private_key_jwt(client_id: &str, jwks: serde_json::Value) -> Self {
        Self {
            token_endpoint_auth_method: Some(ClientAuthMethod::PrivateKeyJwt),
            jwks: Some(jwks),
            ..Self::public(client_id)
        }
    }

    /// Is this a public client (no secret, no keys)?
    pub fn is_public(&self) -> bool {
        self.secret == SecretSource::None && !self.uses_private_key_jwt()
    }

    /// Does it authenticate with `private_key_jwt`?
    pub fn uses_private_key_jwt(&self) -> bool {
        self.token_endpoint_auth_method == Some(ClientAuthMethod::PrivateKeyJwt)
    }

    /// Checks the rules of one client a file cannot express: redirect URIs
    /// that parse and have no fragment, a known conformance scenario, and
    /// an authentication method that fits the secret and keys.
    ///
    /// # Errors
    /// [`Error::Config`] naming the client and the rule.
    pub fn check(&self) -> Result<()> {
        let fail = |why: String| Err(Error::Config(format!("client {:?}: {why}", self.client_id)));
        for uri in self
            .redirect_uris
            .iter()
            .chain(&self.post_logout_redirect_uris)
        {
            match url::Url::parse(uri) {
                Err(e) => return fail(format!("redirect URI {uri:?}: {e}")),
                Ok(parsed) if parsed.fragment().is_some() => {
                    return fail(format!("redirect URI {uri:?} has a fragment"));
                }
                Ok(_) => {}
            }
        }
        if let Some(name) = &self.conformance
            && crate::conformance::scenario(name).is_none()
        {
            return fail(format!("no conformance scenario is called {name:?}"));
        }
        if let Some(jwks) = &self.jwks
            && let Err(why) = crate::client_assertion::check_jwks(jwks)
        {
            return fail(why);
        }
        let has_secret = self.secret != SecretSource::None;
        match self.token_endpoint_auth_method {
            Some(ClientAuthMethod::PrivateKeyJwt) if has_secret => {
                fail("a private_key_jwt client has no secret".to_owned())
            }
            Some(ClientAuthMethod::PrivateKeyJwt) if self.jwks.is_none() => {
                fail("private_key_jwt needs the client's public keys in jwks".to_owned())
            }
            Some(ClientAuthMethod::None) if has_secret => fail(
                "token_endpoint_auth_method \"none\" is for clients without a secret".to_owned(),
            ),
            Some(ClientAuthMethod::ClientSecretBasic | ClientAuthMethod::ClientSecretPost)
                if !has_secret =>
            {
                fail("a client_secret method needs a secret".to_owned())
            }
            _ => Ok(()),
        }
    }

    pub(crate) fn allows_grant(&self, grant: &str) -> bool {
        self.grant_types.iter().any(|g| g == grant)
    }
}

/// Token and code lifetimes, in seconds.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Lifetimes {
    /// Access tokens (default 300).
    pub access_token: u64,
    /// ID tokens (default 300).
    pub id_token: u64,
    /// Refresh tokens, from the time each one is issued (default 86,400).
    pub refresh_token: u64,
    /// Authorization codes (default 60).
    pub code: u64,
    /// Device codes (default 600).
    pub device_code: u64,
    /// The device flow's minimum polling interval (default 5).
    pub device_poll_interval: u64,
    /// How long a rotated-out signing key stays in the JWKS (default 3,600).
    pub key_grace: u64,
}

impl Default for Lifetimes {
    fn default() -> Self {
        Self {
            access_token: 300,
            id_token: 300,
            refresh_token: 86_400,
            code: 60,
            device_code: 600,
            device_poll_interval: 5,
            key_grace: 3_600,
        }
    }
}

/// Everything the provider is started with.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The issuer URL. When unset it is `http://{the bound address}`.
    pub issuer: Option<String>,
    /// Users who can sign in.
    pub users: Vec<User>,
    /// Registered clients.
    pub clients: Vec<ClientConfig>,
    /// Lifetimes.
    pub lifetimes: Lifetimes,
    /// The algorithm of access tokens and, unless a client says otherwise, ID tokens.
    pub signing_alg: Alg,
    /// Sign this user in without showing the login page (headless use).
    pub auto_login: Option<String>,
    /// Rotate refresh tokens on every use, with reuse detection (default
    /// `true`). Turn it off to play a provider whose refresh tokens stay
    /// the same; a refresh then returns no new refresh token.
    pub rotate_refresh_tokens: bool,
    /// With rotation: how many seconds a refresh token, once used, is
    /// still accepted (default 0: never; a reuse revokes the grant). Plays a
    /// provider with a reuse interval or grace period (Auth0, Okta), where a
    /// client whose answer was lost may send the same token again: each
    /// reuse within the grace gets fresh tokens and the grant stays.
    pub refresh_token_reuse_grace: u64,
    /// A bearer secret that the control API requires; without one the control
    /// API answers loopback peers only.
    pub control_secret: SecretSource,
    /// Answer the control API from non-loopback peers too (needs `control_secret`).
    pub control_remote: bool,
    /// The largest request body accepted, in bytes (default 64 KiB).
    pub max_body_bytes: usize,
    /// Require a server-provided nonce in every DPoP proof (RFC 9449 §8–9):
    /// a proof without the current one is answered `use_dpop_nonce` with a
    /// fresh `DPoP-Nonce` header (default `false`; switchable at run time).
    pub require_dpop_nonce: bool,
    /// Require every authorization request to come through the PAR
    /// endpoint (RFC 9126 §5; advertised in discovery as
    /// `require_pushed_authorization_requests`). Default `false`; a client
    /// can require it for itself
    /// ([`ClientConfig::require_pushed_authorization_requests`]).
    pub require_pushed_authorization_requests: bool,
    /// How many DPoP proofs, and apart from them how many client assertions
    /// (`private_key_jwt`), the provider remembers while they are live, to
    /// refuse replays (default 100,000 each). When that many are live, a
    /// new one is answered 503 `temporarily_unavailable` with `Retry-After`
    /// (when the first of them expires) rather than forgetting a live one,
    /// which would let it be replayed.
    pub replay_cache_capacity: usize,
    /// The algorithms DPoP proofs may be signed with, advertised in
    /// discovery as `dpop_signing_alg_values_supported` (RFC 9449 §5.1)
    /// and in the `algs` of the resource endpoints' `DPoP` challenges
    /// (§7.1); a proof signed with another is refused (`invalid_dpop_proof`).
    /// Default: every algorithm the provider can verify,
    /// [`crate::dpop::SUPPORTED_ALGS`]; a list must be a non-empty part of
    /// those. Narrow it to play a provider that, say, takes no ES256:
    ///
    /// ```
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use sessionkit_mock_idp::{Config, MockIdp};
    ///
    /// let idp = MockIdp::builder()
    ///     .config(Config {
    ///         dpop_signing_algs: vec!["RS256".to_owned(), "PS256".to_owned()],
    ///         ..Config::default()
    ///     })
    ///     .start()
    ///     .await?;
    /// let discovery: serde_json::Value =
    ///     reqwest::get(idp.url("/.well-known/openid-configuration")).await?.json().await?;
    /// assert_eq!(discovery["dpop_signing_alg_values_supported"], serde_json::json!(["RS256", "PS256"]));
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
    /// ```
    pub dpop_signing_algs: Vec<String>,
}

/// The back-channel logout URL of the built-in `chat-example` client: the
/// default address of the example `chat-server`.
pub const DEFAULT_CHAT_BACKCHANNEL_URI: &str = "http://127.0.0.1:9091/backchannel-logout";

impl Default for Config {
    fn default() -> Self {
        let mut chat = ClientConfig::public("chat-example");
        chat.audience = Some("chat-server".to_owned());
        // Where `chat-server` listens by default, so that a revoked session's
        // chat sockets close (4003) with both binaries on their defaults.
        chat.backchannel_logout_uri = Some(DEFAULT_CHAT_BACKCHANNEL_URI.to_owned());
        let server = ClientConfig::confidential(
            "chat-server",
            SecretSource::Env("MOCK_IDP_CHAT_SERVER_SECRET".to_owned()),
        );
        Self {
            issuer: None,
            users: ["alice", "bob", "carol"]
                .iter()
                .map(|u| User::simple(u))
                .collect(),
            clients: vec![chat, server],
            lifetimes: Lifetimes::default(),
            signing_alg: Alg::RS256,
            auto_login: None,
            rotate_refresh_tokens: true,
            refresh_token_reuse_grace: 0,
            control_secret: SecretSource::None,
            control_remote: false,
            max_body_bytes: 64 * 1024,
            require_dpop_nonce: false,
            require_pushed_authorization_requests: false,
            replay_cache_capacity: 100_000,
            dpop_signing_algs: crate::dpop::SUPPORTED_ALGS
                .iter()
                .map(|a| (*a).to_owned())
                .collect(),
        }
    }
}

impl Config {
    /// Reads a TOML configuration file. Sections left out keep their defaults;
    /// a `users` or `clients` list replaces the built-in one.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::ConfigRead {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text)
    }

    /// Parses a TOML configuration.
    pub fn from_toml(text: &str) -> Result<Self> {
        let config: Config = toml::from_str(text).map_err(|e| Error::Config(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks the rules a file cannot express: unique names, a known
    /// auto-login user, a secret where remote control is allowed.
    pub fn validate(&self) -> Result<()> {
        let mut seen = std::collections::HashSet::new();
        for user in &self.users {
            if !seen.insert(user.username.as_str()) {
                return Err(Error::Config(format!(
                    "user {:?} is listed twice",
                    user.username
                )));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for client in &self.clients {
            if !seen.insert(client.client_id.as_str()) {
                return Err(Error::Config(format!(
                    "client {:?} is listed twice",
                    client.client_id
                )));
            }
            client.check()?;
        }
        if let Some(user) = &self.auto_login
            && !self.users.iter().any(|u| &u.username == user)
        {
            return Err(Error::Config(format!(
                "auto_login names unknown user {user:?}"
            )));
        }
        if self.replay_cache_capacity == 0 {
            return Err(Error::Config(
                "replay_cache_capacity must be at least 1".to_owned(),
            ));
        }
        if self.dpop_signing_algs.is_empty() {
            return Err(Error::Config(
                "dpop_signing_algs must list at least one algorithm".to_owned(),
            ));
        }
        if let Some(alg) = self
            .dpop_signing_algs
            .iter()
            .find(|a| !crate::dpop::SUPPORTED_ALGS.contains(&a.as_str()))
        {
            return Err(Error::Config(format!(
                "dpop_signing_algs names {alg:?}; use some of {}",
                crate::dpop::SUPPORTED_ALGS.join(", ")
            )));
        }
        if self.control_remote && self.control_secret == SecretSource::None {
            return Err(Error::Config(
                "control_remote needs a control_secret".to_owned(),
            ));
        }
        if let Some(issuer) = &self.issuer {
            let url = url::Url::parse(issuer)
                .map_err(|e| Error::Config(format!("issuer {issuer:?}: {e}")))?;
            if url.query().is_some() || url.fragment().is_some() {
                return Err(Error::Config(
                    "the issuer must have no query or fragment".to_owned(),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_have_the_documented_users_and_clients() {
        let config = Config::default();
        config.validate().expect("defaults validate");
        let names: Vec<_> = config.users.iter().map(|u| u.username.as_str()).collect();
        assert_eq!(names, ["alice", "bob", "carol"]);
        assert!(config.users.iter().all(|u| u.password == u.username));
        let chat = &config.clients[0];
        assert!(chat.is_public());
        assert!(chat.allows_grant(DEVICE_CODE_GRANT));
        assert!(!config.clients[1].is_public());
    }

    #[test]
    fn toml_file_replaces_users_and_keeps_other_defaults() {
        let config = Config::from_toml(
            r#"
            signing_alg = "ES256"
            [lifetimes]
            access_token = 30
            [[users]]
            username = "dave"
            password = "pw"
            claims = { name = "Dave" }
            [[clients]]
            client_id = "app"
            redirect_uris = ["https://app.example/cb"]
            "#,
        )
        .expect("valid");
        assert_eq!(config.signing_alg, Alg::ES256);
        assert_eq!(config.lifetimes.access_token, 30);
        assert_eq!(config.lifetimes.refresh_token, 86_400);
        assert_eq!(config.users.len(), 1);
        assert_eq!(
            config.clients[0].grant_types,
            ["authorization_code", "refresh_token"]
        );
    }

    #[test]
    fn toml_errors_are_reported() {
        assert!(matches!(
            Config::from_toml("users = 3"),
            Err(Error::Config(_))
        ));
        assert!(matches!(
            Config::from_toml("bogus = 1"),
            Err(Error::Config(_))
        ));
        assert!(matches!(
            Config::from_toml("auto_login = \"zed\""),
            Err(Error::Config(_))
        ));
        assert!(matches!(
            Config::from_toml("control_remote = true"),
            Err(Error::Config(_))
        ));
        assert!(matches!(
            Config::from_toml("dpop_signing_algs = []"),
            Err(Error::Config(_))
        ));
        assert!(matches!(
            Config::from_toml(r#"dpop_signing_algs = ["HS256"]"#),
            Err(Error::Config(_))
        ));
        let narrowed = Config::from_toml(r#"dpop_signing_algs = ["PS256"]"#).expect("valid");
        assert_eq!(narrowed.dpop_signing_algs, ["PS256"]);
    }
}
