//! Signing in: the authorization code flow with PKCE S256, `state`, `nonce`
//! and the RFC 9207 `iss` check — through a loopback redirect listener
//! (RFC 8252, in `loopback`) or through the app's own redirect handling — and
//! the device authorization grant (RFC 8628) for devices without a browser.
//!
//! Why one file of ~720 lines: `OidcClient`, its settings, the authorization
//! request, the redirect check and the code exchange are one flow; the
//! listener (`loopback`), the parameters (`params`), pushed authorization
//! requests (`par`) and the device flow (`device`) have files of their own.

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use openidconnect::PkceCodeChallenge;

use crate::clock::Clock;
use crate::dpop::{DpopKey, Nonces, Prover};
use crate::error::{Error, Result};
use crate::id_token::{self, Expectations};
use crate::provider::Provider;
use crate::secret::{ClientSecret, CodeVerifier, Nonce, State};
use crate::token::{
    ClientAuthMethod, Credential, RawTokens, TokenSet, parse_token_response, post_form,
};

mod device;
#[cfg(feature = "loopback")]
pub(crate) mod loopback;
mod par;
mod params;

pub use device::DevicePrompt;
#[cfg(feature = "loopback")]
pub use loopback::{LoopbackOptions, OpenUrl};
pub use params::AuthParams;
use params::LoginChecks;

pub(crate) fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    getrandom(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn getrandom(buf: &mut [u8]) {
    // The OS random source failing leaves nothing safe to do.
    #[allow(clippy::expect_used)]
    aws_lc_rs::rand::fill(buf).expect("the system random number generator failed");
}

/// An OpenID Connect client of one provider: what to ask for and how to check it.
#[derive(Debug, Clone)]
pub struct OidcClient {
    provider: Provider,
    client_id: String,
    client_secret: Option<ClientSecret>,
    client_key: Option<crate::ClientKey>,
    scopes: Vec<String>,
    /// Ask for the provider's account sessions scope too ([`OidcClient::manage_devices`]).
    manage_devices: bool,
    params: AuthParams,
    auth_method: Option<ClientAuthMethod>,
    post_logout_redirect: Option<String>,
    clock_skew: Duration,
    clock: Clock,
    /// Bind tokens to a DPoP key made at each login ([`OidcClient::dpop`]).
    dpop: bool,
    /// The DPoP nonces the provider and resource servers gave, by origin.
    nonces: Nonces,
    /// Push authorization requests even when the provider does not require it.
    par: bool,
}

/// An authorization request in flight: the URL to open, and the secrets to
/// check its answer with (memory only; zeroized on drop).
pub struct AuthorizationRequest {
    /// The URL to open in the browser.
    pub url: url::Url,
    /// The redirect URI the answer comes back to.
    pub redirect_uri: String,
    state: State,
    nonce: Nonce,
    verifier: CodeVerifier,
    checks: LoginChecks,
    token_params: Vec<(String, String)>,
    /// The DPoP key the code is bound to (`dpop_jkt`), when the client uses DPoP.
    dpop: Option<DpopKey>,
}

impl AuthorizationRequest {
    /// The SHA-256 of its `state` (what the loopback listener compares).
    #[cfg(feature = "loopback")]
    pub(crate) fn state_digest(&self) -> [u8; 32] {
        crate::secret::sha256(self.state.secret().as_bytes())
    }

    /// A request with known secrets, for the fuzz targets (which must get
    /// past the `state` check to reach the rest).
    #[cfg(feature = "fuzzing")]
    pub(crate) fn fixed(url: url::Url, redirect_uri: &str, state: &str, nonce: &str) -> Self {
        Self {
            url,
            redirect_uri: redirect_uri.to_owned(),
            state: State::new(state.to_owned()),
            nonce: Nonce::new(nonce.to_owned()),
            dpop: None,
            verifier: CodeVerifier::new(random_secret()),
            checks: LoginChecks::default(),
            token_params: Vec::new(),
        }
    }
}

impl std::fmt::Debug for AuthorizationRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthorizationRequest")
            .field("redirect_uri", &self.redirect_uri)
            .finish_non_exhaustive()
    }
}

impl OidcClient {
    /// A public client (PKCE, no secret) asking for `openid` only; add scopes with [`OidcClient::scopes`].
    pub fn new(provider: Provider, client_id: &str) -> Self {
        Self {
            provider,
            client_id: client_id.to_owned(),
            client_secret: None,
            client_key: None,
            scopes: vec!["openid".to_owned()],
            manage_devices: false,
            params: AuthParams::new(),
            auth_method: None,
            post_logout_redirect: None,
            clock_skew: Duration::from_secs(60),
            clock: Clock::system(),
            dpop: false,
            nonces: Nonces::default(),
            par: false,
        }
    }

    /// Binds the tokens of each login to a new DPoP key (RFC 9449): the
    /// authorization code through `dpop_jkt`, every token, refresh and
    /// revocation request with a proof, and every [`crate::AuthedClient`]
    /// call with `Authorization: DPoP` and a proof carrying `ath`. The key
    /// is kept with the account's tokens (in the keychain) and deleted at
    /// logout; a stolen token is of no use without it. A provider that
    /// answers with bearer tokens anyway gets no proofs after the login.
    ///
    /// Proofs are signed with ES256 ([`DpopKey::ALG`]). When the provider's
    /// discovery document lists `dpop_signing_alg_values_supported`
    /// (RFC 9449 §5.1) without ES256, every login of this client fails at
    /// its start — before the authorization URL is made or any request is
    /// sent — with [`Error::DpopAlgorithm`], which names the algorithms the
    /// provider lists; refreshes and revocations with a key from an earlier
    /// login fail the same way instead of sending a proof. A provider that
    /// does not list them is taken to accept ES256. A resource server
    /// whose `401` challenge lists `algs` without ES256 gets the same error
    /// from [`crate::AuthedClient`] (and no refresh).
    ///
    /// ```no_run
    /// # async fn demo(provider: sessionkit::Provider) -> sessionkit::Result<()> {
    /// let client = sessionkit::OidcClient::new(provider, "chat-example").dpop(true);
    /// let tokens = client
    ///     .login_device(|p| println!("{} {}", p.verification_uri, p.user_code), &Default::default())
    ///     .await?;
    /// assert!(tokens.dpop.is_some(), "bound to {:?}", tokens.dpop);
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn dpop(mut self, on: bool) -> Self {
        self.dpop = on;
        self
    }

    /// Does the client bind new logins to a DPoP key?
    pub fn uses_dpop(&self) -> bool {
        self.dpop
    }

    /// The prover of requests with `key`, if there is a key.
    pub(crate) fn prover<'a>(&'a self, key: Option<&'a DpopKey>) -> Option<Prover<'a>> {
        key.map(|key| Prover {
            key,
            provider: &self.provider,
            nonces: &self.nonces,
            now: self.now(),
        })
    }

    /// The DPoP nonces kept by origin.
    pub(crate) fn nonces(&self) -> &Nonces {
        &self.nonces
    }

    /// A new DPoP key for a login, when the client uses DPoP — once the
    /// provider's metadata has shown it takes proofs signed as the SDK
    /// signs them. Every login (browser, app redirect, device) asks for its
    /// key before its first request, so a provider that would refuse the
    /// proofs gets none.
    fn login_key(&self) -> Result<Option<DpopKey>> {
        if !self.dpop {
            return Ok(None);
        }
        self.provider.check_dpop_algs()?;
        DpopKey::generate().map(Some)
    }

    /// The clock token times are read from (default [`Clock::system`];
    /// [`crate::SessionManagerBuilder::clock`] sets it for a manager's
    /// client and sessions alike).
    #[must_use]
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The time now, by the client's clock.
    pub(crate) fn now(&self) -> SystemTime {
        self.clock.now()
    }

    /// The client's clock.
    pub(crate) fn time(&self) -> &Clock {
        &self.clock
    }

    /// The scopes to ask for (`openid` is added if missing).
    #[must_use]
    pub fn scopes<I: IntoIterator<Item = S>, S: Into<String>>(mut self, scopes: I) -> Self {
        let mut list: Vec<String> = scopes.into_iter().map(Into::into).collect();
        if !list.iter().any(|s| s == "openid") {
            list.insert(0, "openid".to_owned());
        }
        self.scopes = list;
        self.add_account_sessions_scope();
        self
    }

    /// Lets this client's sessions use the provider's account sessions API
    /// ([`list_devices`](crate::list_devices), [`revoke_device`](crate::revoke_device)):
    /// sign-ins also ask for the scope the provider names as
    /// `account_sessions_scope` in its discovery document, so that their
    /// access tokens carry the API's audience. Without it such a provider
    /// refuses the tokens (they are meant for the app's own API), and the
    /// devices calls fail with [`Error::Config`](crate::Error::Config)
    /// before sending anything. Does nothing when the provider names no
    /// scope. Works in either order with [`OidcClient::scopes`]; sessions
    /// signed in before need a new sign-in.
    ///
    /// ```no_run
    /// # async fn demo(provider: sessionkit::Provider) {
    /// use sessionkit::OidcClient;
    ///
    /// let client = OidcClient::new(provider, "my-app")
    ///     .scopes(["openid", "profile", "offline_access"])
    ///     .manage_devices();
    /// # let _ = client; }
    /// ```
    #[must_use]
    pub fn manage_devices(mut self) -> Self {
        self.manage_devices = true;
        self.add_account_sessions_scope();
        self
    }

    fn add_account_sessions_scope(&mut self) {
        if !self.manage_devices {
            return;
        }
        if let Some(scope) = self.provider.extra().account_sessions_scope.as_deref()
            && !self.scopes.iter().any(|s| s == scope)
        {
            self.scopes.push(scope.to_owned());
        }
    }

    /// The parameters of every login of this client (`prompt`, `login_hint`,
    /// `max_age`, `acr_values`, `ui_locales`, `resource`, a provider's own):
    /// see [`AuthParams`]. [`OidcClient::authorization_request_with`] takes
    /// others for one login.
    ///
    /// ```no_run
    /// # async fn demo(provider: sessionkit::Provider) {
    /// use sessionkit::{AuthParams, OidcClient};
    ///
    /// // Auth0 issues a JWT access token only for an `audience` it knows.
    /// let client = OidcClient::new(provider, "my-app")
    ///     .scopes(["openid", "profile", "offline_access"])
    ///     .auth_params(AuthParams::new().extra("audience", "https://api.example.com"));
    /// # let _ = client; }
    /// ```
    #[must_use]
    pub fn auth_params(mut self, params: AuthParams) -> Self {
        self.params = params;
        self
    }

    /// The parameters of every login of this client.
    pub fn params(&self) -> &AuthParams {
        &self.params
    }

    /// Where the provider sends the browser after an RP-initiated logout
    /// (registered with the provider): the logout URL then carries it and a
    /// fresh `state` ([`crate::LogoutReport::end_session_state`]).
    ///
    /// ```no_run
    /// # async fn demo(provider: sessionkit::Provider) {
    /// let client = sessionkit::OidcClient::new(provider, "my-app")
    ///     .post_logout_redirect_uri("com.example.app:/signed-out");
    /// # let _ = client; }
    /// ```
    #[must_use]
    pub fn post_logout_redirect_uri(mut self, uri: impl Into<String>) -> Self {
        self.post_logout_redirect = Some(uri.into());
        self
    }

    pub(crate) fn post_logout_redirect(&self) -> Option<&str> {
        self.post_logout_redirect.as_deref()
    }

    /// A confidential client's secret (from the environment or a file, never the source).
    #[must_use]
    pub fn client_secret(mut self, secret: ClientSecret) -> Self {
        self.client_secret = Some(secret);
        self
    }

    /// The client's private key, for `private_key_jwt` client
    /// authentication (RFC 7523): every token, revocation and device
    /// authorization request then carries a fresh assertion signed with it
    /// (`iss` and `sub` the client id, `aud` the provider's issuer, a random
    /// `jti`, valid for 60 s by the client's clock). The provider must have
    /// the key's [`public_jwk`](crate::ClientKey::public_jwk). With a key,
    /// the key is used unless [`OidcClient::client_auth`] names a secret method.
    ///
    /// ```no_run
    /// # async fn demo(provider: sessionkit::Provider) -> sessionkit::Result<()> {
    /// use sessionkit::{ClientKey, OidcClient};
    ///
    /// let pem = std::fs::read_to_string("/etc/my-service/client-key.pem")?;
    /// let client = OidcClient::new(provider, "my-service")
    ///     .client_key(ClientKey::from_pkcs8_pem(&pem)?.with_kid("2026-11"));
    /// # let _ = client; Ok(()) }
    /// ```
    #[must_use]
    pub fn client_key(mut self, key: crate::ClientKey) -> Self {
        self.client_key = Some(key);
        self
    }

    /// How the client proves itself. Without a choice here: with a
    /// [`ClientKey`](crate::ClientKey), `private_key_jwt`; with a secret,
    /// HTTP Basic when the provider's `token_endpoint_auth_methods_supported`
    /// lists `client_secret_basic` (or lists nothing), else
    /// `client_secret_post` when it lists that. A method whose key or
    /// secret the client lacks sends no credential (and the provider refuses).
    ///
    /// ```no_run
    /// # async fn demo(provider: sessionkit::Provider, secret: sessionkit::ClientSecret) {
    /// use sessionkit::{ClientAuthMethod, OidcClient};
    /// let client = OidcClient::new(provider, "my-service")
    ///     .client_secret(secret)
    ///     .client_auth(ClientAuthMethod::SecretPost);
    /// # let _ = client; }
    /// ```
    #[must_use]
    pub fn client_auth(mut self, method: ClientAuthMethod) -> Self {
        self.auth_method = Some(method);
        self
    }

    /// How far clocks may disagree in ID-token time checks (default 60 s).
    #[must_use]
    pub fn clock_skew(mut self, skew: Duration) -> Self {
        self.clock_skew = skew;
        self
    }

    /// The provider.
    pub fn provider(&self) -> &Provider {
        &self.provider
    }

    /// The client id.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The configured clock skew.
    pub fn skew(&self) -> Duration {
        self.clock_skew
    }

    /// The key or secret and how to send it: the app's choice
    /// ([`OidcClient::client_auth`]), else the key when there is one, else
    /// the secret as the provider advertises.
    pub(crate) fn credential(&self) -> Option<Credential<'_>> {
        let supported: Option<Vec<&str>> = self
            .provider
            .metadata()
            .token_endpoint_auth_methods_supported()
            .map(|m| m.iter().map(|m| m.as_ref()).collect());
        let use_key = match self.auth_method {
            Some(ClientAuthMethod::PrivateKeyJwt) => true,
            Some(_) => false,
            // A key alone is used; with a secret as well, the key when the
            // provider advertises private_key_jwt, else the secret.
            None => {
                self.client_key.is_some()
                    && (self.client_secret.is_none()
                        || supported
                            .as_deref()
                            .is_some_and(|m| m.contains(&"private_key_jwt")))
            }
        };
        if use_key {
            return self.client_key.as_ref().map(|key| Credential::Key {
                key,
                audience: self.provider.issuer(),
                clock: &self.clock,
            });
        }
        let secret = self.client_secret.as_ref()?;
        let method = self
            .auth_method
            .filter(|m| *m != ClientAuthMethod::PrivateKeyJwt)
            .unwrap_or_else(|| ClientAuthMethod::for_provider(supported.as_deref()));
        Some(Credential::Secret { secret, method })
    }

    /// Does the client have what its chosen method needs?
    pub(crate) fn credential_missing(&self) -> Option<&'static str> {
        match self.auth_method {
            Some(ClientAuthMethod::PrivateKeyJwt) if self.client_key.is_none() => {
                Some("client_auth(PrivateKeyJwt) needs a client_key")
            }
            Some(ClientAuthMethod::SecretBasic | ClientAuthMethod::SecretPost)
                if self.client_secret.is_none() =>
            {
                Some("a client_secret method needs a client_secret")
            }
            _ => None,
        }
    }

    /// Builds an authorization request for apps with their own redirect
    /// handling: open `url`, then hand the redirect URL to [`OidcClient::finish`].
    /// `prompt=consent` is added when `offline_access` is asked for (OIDC Core §11).
    /// When the provider requires pushed authorization requests (or the
    /// client asks for them, [`OidcClient::pushed_authorization`]), the
    /// parameters are pushed first (RFC 9126) and `url` carries the
    /// `request_uri` the provider gave; open it before it expires (about
    /// a minute at most providers).
    ///
    /// ```no_run
    /// # async fn demo(client: sessionkit::OidcClient, wait_for_redirect: impl std::future::Future<Output = String>) -> sessionkit::Result<()> {
    /// // An app that owns a redirect URI (a custom scheme, a claimed https link, ...).
    /// let request = client.authorization_request("com.example.app:/oauth2redirect").await?;
    /// println!("open {}", request.url);
    /// let redirect_url: String = wait_for_redirect.await; // however the app receives it
    /// let tokens = client.finish(&request, &redirect_url).await?;
    /// # let _ = tokens; Ok(()) }
    /// ```
    pub async fn authorization_request(&self, redirect_uri: &str) -> Result<AuthorizationRequest> {
        self.authorization_request_with(redirect_uri, &self.params)
            .await
    }

    /// [`OidcClient::authorization_request`] with other parameters for this
    /// login (instead of the client's): `max_age` and a required `acr` are
    /// then checked by [`OidcClient::finish`].
    ///
    /// # Errors
    /// [`Error::Config`] when an extra parameter is one the SDK sets itself;
    /// when pushing: the errors of the push ([`Error::Provider`] for the
    /// provider's refusal, [`Error::Network`], [`Error::Parse`]).
    pub async fn authorization_request_with(
        &self,
        redirect_uri: &str,
        params: &AuthParams,
    ) -> Result<AuthorizationRequest> {
        let mut request = self.prepare_authorization(redirect_uri, params)?;
        if let Some(endpoint) = self.par_endpoint()? {
            self.push(endpoint, &mut request).await?;
        }
        Ok(request)
    }

    /// The authorization request with every parameter in its URL.
    pub(crate) fn prepare_authorization(
        &self,
        redirect_uri: &str,
        params: &AuthParams,
    ) -> Result<AuthorizationRequest> {
        let offline = self.scopes.iter().any(|s| s == "offline_access");
        let pairs = params.authorization_pairs(offline)?;
        let endpoint = self
            .provider
            .metadata()
            .authorization_endpoint()
            .url()
            .clone();
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let state = State::new(random_secret());
        let nonce = Nonce::new(random_secret());
        let dpop = self.login_key()?;
        let mut url = endpoint;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("response_type", "code");
            q.append_pair("client_id", &self.client_id);
            q.append_pair("redirect_uri", redirect_uri);
            q.append_pair("scope", &self.scopes.join(" "));
            q.append_pair("state", state.secret());
            q.append_pair("nonce", nonce.secret());
            q.append_pair("code_challenge", challenge.as_str());
            q.append_pair("code_challenge_method", "S256");
            for (k, v) in &pairs {
                q.append_pair(k, v);
            }
            if let Some(key) = &dpop {
                q.append_pair("dpop_jkt", key.thumbprint());
            }
        }
        Ok(AuthorizationRequest {
            url,
            redirect_uri: redirect_uri.to_owned(),
            state,
            nonce,
            verifier: CodeVerifier::new(verifier.secret().to_owned()),
            checks: params.checks(),
            token_params: params.token_pairs(true),
            dpop,
        })
    }

    /// Checks the redirect the browser came back with (`state`, RFC 9207 `iss`,
    /// an error), redeems the code and checks the ID token.
    pub async fn finish(
        &self,
        request: &AuthorizationRequest,
        redirect_url: &str,
    ) -> Result<TokenSet> {
        let code = parse_redirect(&self.provider, request, redirect_url)?.code;
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code.secret()),
            ("redirect_uri", &request.redirect_uri),
            ("code_verifier", request.verifier.secret()),
        ];
        form.extend(
            request
                .token_params
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
        let answer = post_form(
            &self.provider,
            &self.provider.token_endpoint()?,
            &self.client_id,
            self.credential(),
            &form,
            self.prover(request.dpop.as_ref()),
            None,
        )
        .await?;
        let raw = parse_token_response(answer.status, &answer.body, self.now())?;
        self.checked(
            raw,
            Some(&request.nonce),
            None,
            &request.checks,
            request.dpop.as_ref(),
        )
        .await
    }

    /// Checks the ID token of a token response and builds the [`TokenSet`].
    pub(crate) async fn checked(
        &self,
        raw: RawTokens,
        nonce: Option<&Nonce>,
        previous_sub: Option<&str>,
        checks: &LoginChecks,
        dpop: Option<&DpopKey>,
    ) -> Result<TokenSet> {
        let dpop_bound = raw.bound_to(dpop)?;
        let dpop = dpop.cloned();
        let claims = match &raw.id_token {
            Some(id) => Some(
                id_token::verify(
                    &self.provider,
                    id,
                    &Expectations {
                        issuer: self.provider.issuer(),
                        client_id: &self.client_id,
                        nonce,
                        access_token: Some(&raw.access_token),
                        previous_sub,
                        clock_skew: self.clock_skew,
                        now: self.now(),
                    },
                )
                .await?,
            ),
            None if nonce.is_some() && self.scopes.iter().any(|s| s == "openid") => {
                return Err(Error::Parse {
                    message: "the provider sent no ID token for an openid login".to_owned(),
                    body: String::new(),
                    status: None,
                });
            }
            None => None,
        };
        if let Some(claims) = &claims {
            checks.check(&claims.all, self.now(), self.clock_skew)?;
        } else if *checks != LoginChecks::default() {
            return Err(Error::Parse {
                message: "the provider sent no ID token to check max_age or acr with".to_owned(),
                body: String::new(),
                status: None,
            });
        }
        Ok(TokenSet {
            access_token: raw.access_token,
            refresh_token: raw.refresh_token,
            id_token: raw.id_token,
            expires_at: raw.expires_at,
            scopes: raw.scopes.unwrap_or_else(|| self.scopes.clone()),
            claims,
            dpop,
            dpop_bound,
        })
    }
}

pub(crate) struct RedirectParams {
    pub(crate) code: crate::secret::AuthorizationCode,
}

/// Reads the redirect the browser came back with ([`OidcClient::finish`]'s
/// first step, and what the fuzz targets drive).
pub(crate) fn parse_redirect(
    provider: &Provider,
    request: &AuthorizationRequest,
    redirect_url: &str,
) -> Result<RedirectParams> {
    let url = url::Url::parse(redirect_url)
        .map_err(|e| Error::AuthorizationResponse(format!("the redirect is not a URL: {e}")))?;
    check_redirect(provider, request, &url)
}

fn same(a: &[u8], b: &[u8]) -> bool {
    crate::secret::sha256(a) == crate::secret::sha256(b)
}

/// Checks an authorization response: an error, then `state`, then `iss`.
fn check_redirect(
    provider: &Provider,
    request: &AuthorizationRequest,
    url: &url::Url,
) -> Result<RedirectParams> {
    let mut code = None;
    let mut state = None;
    let mut iss = None;
    let mut error = None;
    let mut description = None;
    for (k, v) in url.query_pairs() {
        let slot = match k.as_ref() {
            "code" => &mut code,
            "state" => &mut state,
            "iss" => &mut iss,
            "error" => &mut error,
            "error_description" => &mut description,
            _ => continue,
        };
        if slot.replace(v.into_owned()).is_some() {
            return Err(Error::AuthorizationResponse(format!(
                "parameter {k} is repeated"
            )));
        }
    }
    if !state
        .as_deref()
        .is_some_and(|s| same(s.as_bytes(), request.state.secret().as_bytes()))
    {
        return Err(Error::AuthorizationResponse(
            "state does not match the request".to_owned(),
        ));
    }
    match (&iss, provider.supports_iss_parameter()) {
        (Some(i), _) if i != provider.issuer() => {
            return Err(Error::AuthorizationResponse(format!(
                "iss {i:?} is not the issuer {:?} (RFC 9207: a mix-up attack?)",
                provider.issuer()
            )));
        }
        (None, true) => {
            return Err(Error::AuthorizationResponse(
                "the provider promises an iss parameter (RFC 9207) and sent none".to_owned(),
            ));
        }
        _ => {}
    }
    if let Some(error) = error {
        return Err(if error == "access_denied" {
            Error::AccessDenied
        } else {
            Error::Provider {
                error,
                description,
                status: None,
            }
        });
    }
    let code =
        code.ok_or_else(|| Error::AuthorizationResponse("no code in the response".to_owned()))?;
    Ok(RedirectParams {
        code: crate::secret::AuthorizationCode::new(code),
    })
}
