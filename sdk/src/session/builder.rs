//! [`SessionManagerBuilder`]: the one way in. It collects every setting,
//! reports what cannot work from `build()`, and `build()` does the slow
//! parts without blocking the runtime: discovery, opening the keychain (in
//! `spawn_blocking`), restoring every account signed in before.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::accounts::{AccountInfo, AccountRegistry};
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::http::HttpClient;
use crate::login::OidcClient;
use crate::policy::RefreshPolicy;
use crate::provider::Provider;
use crate::refresh::RetryPolicy;
use crate::secret::ClientSecret;
use crate::store::TokenStore;

use super::teardown::CleanupHook;
use super::tokens::blocking;
use super::{SessionManager, Shared};

/// The scopes asked for unless [`SessionManagerBuilder::scopes`] says otherwise.
pub const DEFAULT_SCOPES: [&str; 3] = ["openid", "profile", "offline_access"];

/// Where the OpenID Connect client comes from.
#[derive(Debug)]
enum ClientFrom {
    /// Discover the issuer at `build()`.
    Discover { issuer: String, client_id: String },
    /// The app's own (discovery done by the app).
    Given(Box<OidcClient>),
}

/// Settings for a [`SessionManager`]; start from [`SessionManager::builder`]
/// (or [`SessionManager::for_client`] with a client the app made).
///
/// ```no_run
/// use sessionkit::{RefreshPolicy, SessionManager};
///
/// # async fn demo() -> sessionkit::Result<()> {
/// let sessions = SessionManager::builder("https://id.example.com", "my-app")
///     .namespace("my-app")                 // keychain entries and accounts file
///     .policy(RefreshPolicy::Background)   // a realtime app
///     .build()
///     .await?;                             // discovery, keychain, restore
/// # let _ = sessions; Ok(()) }
/// ```
#[must_use]
pub struct SessionManagerBuilder {
    client: ClientFrom,
    namespace: Option<String>,
    scopes: Option<Vec<String>>,
    manage_devices: bool,
    params: Option<crate::AuthParams>,
    client_auth: Option<crate::ClientAuthMethod>,
    post_logout_redirect: Option<String>,
    dpop: bool,
    secret: Option<ClientSecret>,
    key: Option<crate::ClientKey>,
    skew: Option<Duration>,
    http: Option<HttpClient>,
    store: Option<Arc<dyn TokenStore>>,
    registry: Option<AccountRegistry>,
    retry: RetryPolicy,
    policy: RefreshPolicy,
    sign_out_after: Option<u32>,
    max_session_age: Option<Duration>,
    revoke_budget: Duration,
    hooks: Vec<CleanupHook>,
    restore: bool,
    clock: Option<Clock>,
}

impl std::fmt::Debug for SessionManagerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionManagerBuilder")
            .field("client", &self.client)
            .field("namespace", &self.namespace)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl SessionManagerBuilder {
    fn new(client: ClientFrom) -> Self {
        Self {
            client,
            namespace: None,
            scopes: None,
            manage_devices: false,
            params: None,
            client_auth: None,
            post_logout_redirect: None,
            dpop: false,
            secret: None,
            key: None,
            skew: None,
            http: None,
            store: None,
            registry: None,
            retry: RetryPolicy::default(),
            policy: RefreshPolicy::default(),
            sign_out_after: None,
            max_session_age: None,
            revoke_budget: super::teardown::REVOKE_BUDGET,
            hooks: Vec::new(),
            restore: true,
            clock: None,
        }
    }

    /// The app's name: its keychain entries and its accounts file carry it
    /// (default: the client id).
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// The scopes to ask for (default [`DEFAULT_SCOPES`]; `openid` is added
    /// if missing). Only with [`SessionManager::builder`]: a client the app
    /// made carries its own, and `build()` says so.
    pub fn scopes<I: IntoIterator<Item = S>, S: Into<String>>(mut self, scopes: I) -> Self {
        self.scopes = Some(scopes.into_iter().map(Into::into).collect());
        self
    }

    /// Also ask for the provider's account-sessions scope (discovery's
    /// `account_sessions_scope`), which the devices API
    /// ([`crate::list_devices`], [`crate::revoke_device`]) needs; see
    /// [`OidcClient::manage_devices`]. Only with [`SessionManager::builder`].
    pub fn manage_devices(mut self) -> Self {
        self.manage_devices = true;
        self
    }

    /// The parameters of every login (`prompt`, `login_hint`, `max_age`,
    /// `acr_values`, `ui_locales`, `resource`, a provider's own): see
    /// [`crate::AuthParams`] and [`OidcClient::auth_params`]. Only with
    /// [`SessionManager::builder`].
    pub fn auth_params(mut self, params: crate::AuthParams) -> Self {
        self.params = Some(params);
        self
    }

    /// Where the provider sends the browser after an RP-initiated logout: see
    /// [`OidcClient::post_logout_redirect_uri`]. Only with [`SessionManager::builder`].
    pub fn post_logout_redirect_uri(mut self, uri: impl Into<String>) -> Self {
        self.post_logout_redirect = Some(uri.into());
        self
    }

    /// How the client proves itself (`client_secret_basic`,
    /// `client_secret_post` or `private_key_jwt`): see
    /// [`OidcClient::client_auth`]. Only with [`SessionManager::builder`];
    /// `build()` refuses a method whose secret or key is not given.
    pub fn client_auth(mut self, method: crate::ClientAuthMethod) -> Self {
        self.client_auth = Some(method);
        self
    }

    /// Binds each new login's tokens to a DPoP key kept with the account:
    /// see [`OidcClient::dpop`]. Accounts signed in before keep what they
    /// have (a key or none). Only with [`SessionManager::builder`].
    ///
    /// Proofs are signed with ES256: when the provider's discovery lists
    /// `dpop_signing_alg_values_supported` without it, `build()` still
    /// succeeds (accounts may be used as they are), but every login fails
    /// at its start, before any request, with
    /// [`Error::DpopAlgorithm`](crate::Error::DpopAlgorithm).
    ///
    /// ```no_run
    /// # async fn demo() -> sessionkit::Result<()> {
    /// let sessions = sessionkit::SessionManager::builder("https://id.example.com", "my-app")
    ///     .dpop(true)
    ///     .build()
    ///     .await?;
    /// # let _ = sessions; Ok(()) }
    /// ```
    pub fn dpop(mut self, on: bool) -> Self {
        self.dpop = on;
        self
    }

    /// A confidential client's secret (from the environment or a file, never
    /// the source). Only with [`SessionManager::builder`].
    pub fn client_secret(mut self, secret: ClientSecret) -> Self {
        self.secret = Some(secret);
        self
    }

    /// The client's private key for `private_key_jwt` (RFC 7523): see
    /// [`OidcClient::client_key`]. Only with [`SessionManager::builder`].
    ///
    /// ```no_run
    /// # async fn demo() -> sessionkit::Result<()> {
    /// use sessionkit::{ClientKey, SessionManager};
    ///
    /// let key = ClientKey::from_pkcs8_der(&std::fs::read("client-key.der")?)?;
    /// let sessions = SessionManager::builder("https://id.example.com", "my-app")
    ///     .client_key(key)
    ///     .build()
    ///     .await?;
    /// # let _ = sessions; Ok(()) }
    /// ```
    pub fn client_key(mut self, key: crate::ClientKey) -> Self {
        self.key = Some(key);
        self
    }

    /// How far clocks may disagree (default 60 s). Only with
    /// [`SessionManager::builder`].
    pub fn clock_skew(mut self, skew: Duration) -> Self {
        self.skew = Some(skew);
        self
    }

    /// The HTTP client for discovery and every provider call (default: a
    /// new one with a 30 s timeout). Only with [`SessionManager::builder`].
    pub fn http(mut self, http: HttpClient) -> Self {
        self.http = Some(http);
        self
    }

    /// Where tokens are kept (default: the OS keychain, opened at `build()`
    /// off the runtime; a [`crate::MemoryStore`] for tests and for apps
    /// that want no persistence; or the app's own [`TokenStore`]).
    pub fn store(mut self, store: Arc<dyn TokenStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// Where the account list lives (default: the platform config dir, per
    /// namespace). Refresh locks live beside it.
    pub fn registry(mut self, registry: AccountRegistry) -> Self {
        self.registry = Some(registry);
        self
    }

    /// How failed refreshes are retried (default: 3 retries, 250 ms base, 10 s cap).
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// How sessions keep their tokens fresh (default [`RefreshPolicy::Proactive`]).
    pub fn policy(mut self, policy: RefreshPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Signs an account out (with cleanup) after `failures` refreshes in a
    /// row have failed, each after its retries. By default a failing
    /// refresh is reported and the session kept; `OfflineFirst` ignores it
    /// (only the provider's word ends its sessions).
    pub fn sign_out_after_failures(mut self, failures: u32) -> Self {
        self.sign_out_after = Some(failures.max(1));
        self
    }

    /// Ends every session this long after its sign-in: the user must sign
    /// in again (checked by the refresh timer and at every refresh).
    pub fn max_session_age(mut self, age: Duration) -> Self {
        self.max_session_age = Some(age);
        self
    }

    /// How long a logout waits for the provider to confirm the refresh
    /// token's revocation (default 5 s, retries included). The local
    /// sign-out does not wait for it: the tokens are gone from the store
    /// before the revocation starts; past the budget the logout returns and
    /// its [`crate::LogoutReport`] says the revocation was not confirmed.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # fn f(builder: sessionkit::SessionManagerBuilder) -> sessionkit::SessionManagerBuilder {
    /// builder.revocation_timeout(Duration::from_secs(2)) // a TV app's quick sign-out
    /// # }
    /// ```
    pub fn revocation_timeout(mut self, budget: Duration) -> Self {
        self.revoke_budget = budget;
        self
    }

    /// A cleanup the app needs when an account signs out, whoever ends the
    /// session (user files, caches, databases). Also
    /// [`SessionManager::on_logout`] later.
    pub fn on_logout(
        mut self,
        hook: impl Fn(&AccountInfo) -> std::result::Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        self.hooks.push(Arc::new(hook));
        self
    }

    /// The clock the sessions and their client read (default
    /// [`Clock::system`]; [`Clock::manual`] for tests that move time by hand).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Whether `build()` restores the accounts signed in before (default
    /// yes; [`SessionManager::restored`] tells how each went).
    pub fn restore(mut self, restore: bool) -> Self {
        self.restore = restore;
        self
    }

    /// Discovers the provider, opens the store off the runtime, and
    /// restores every account signed in before.
    ///
    /// # Errors
    /// Discovery failures, an unusable issuer URL, a keychain that cannot be
    /// opened, an accounts file that cannot be read, and settings that
    /// cannot apply ([`Error::Config`]: client settings given with a client
    /// the app made).
    pub async fn build(self) -> Result<SessionManager> {
        let client = match self.client {
            ClientFrom::Given(client) => {
                if self.scopes.is_some()
                    || self.manage_devices
                    || self.params.is_some()
                    || self.post_logout_redirect.is_some()
                    || self.client_auth.is_some()
                    || self.dpop
                    || self.secret.is_some()
                    || self.key.is_some()
                    || self.skew.is_some()
                    || self.http.is_some()
                {
                    return Err(Error::Config(
                        "scopes, manage_devices, auth_params, post_logout_redirect_uri, client_auth, dpop, client_secret, client_key, clock_skew and http belong to the OidcClient \
                         given to SessionManager::for_client; set them there"
                            .to_owned(),
                    ));
                }
                *client
            }
            ClientFrom::Discover { issuer, client_id } => {
                let http = match self.http {
                    Some(http) => http,
                    None => HttpClient::new()?,
                };
                let provider = Provider::discover(&issuer, &http).await?;
                let mut client = OidcClient::new(provider, &client_id).scopes(
                    self.scopes
                        .unwrap_or_else(|| DEFAULT_SCOPES.map(str::to_owned).to_vec()),
                );
                if self.manage_devices {
                    client = client.manage_devices();
                }
                if let Some(params) = self.params {
                    client = client.auth_params(params);
                }
                if let Some(method) = self.client_auth {
                    client = client.client_auth(method);
                }
                if let Some(uri) = self.post_logout_redirect {
                    client = client.post_logout_redirect_uri(uri);
                }
                if let Some(secret) = self.secret {
                    client = client.client_secret(secret);
                }
                if let Some(key) = self.key {
                    client = client.client_key(key);
                }
                client = client.dpop(self.dpop);
                if let Some(skew) = self.skew {
                    client = client.clock_skew(skew);
                }
                client
            }
        };
        let client = match self.clock {
            Some(clock) => client.clock(clock),
            None => client,
        };
        if let Some(why) = client.credential_missing() {
            return Err(Error::Config(why.to_owned()));
        }
        let namespace = self
            .namespace
            .unwrap_or_else(|| client.client_id().to_owned());
        let store = match self.store {
            Some(store) => store,
            None => default_store().await?,
        };
        let registry = match self.registry {
            Some(registry) => registry,
            None => AccountRegistry::for_namespace(&namespace)?,
        };
        let lock_dir = lock_dir(&registry, &namespace);
        let shared = Arc::new(Shared {
            client,
            store,
            registry,
            lock_dir,
            retry: self.retry,
            policy: self.policy,
            hooks: Mutex::new(self.hooks),
            sign_out_after: self.sign_out_after,
            max_session_age: self.max_session_age,
            revoke_budget: self.revoke_budget,
            counters: crate::metrics::Counters::default(),
        });
        let manager = SessionManager::from_shared(namespace, shared);
        if self.restore {
            let restored = manager.restore().await?;
            *manager.restored.lock().unwrap_or_else(|e| e.into_inner()) = restored;
        }
        Ok(manager)
    }
}

/// The OS keychain, opened off the runtime (the calls block).
#[cfg(feature = "keychain")]
async fn default_store() -> Result<Arc<dyn TokenStore>> {
    let store = blocking(crate::store::KeychainStore::auto).await??;
    Ok(Arc::new(store))
}

#[cfg(not(feature = "keychain"))]
async fn default_store() -> Result<Arc<dyn TokenStore>> {
    let _ = blocking(|| ()).await;
    Err(Error::Config(
        "no token store: enable the `keychain` feature or pass SessionManagerBuilder::store"
            .to_owned(),
    ))
}

/// Refresh locks live beside the registry file.
fn lock_dir(registry: &AccountRegistry, namespace: &str) -> PathBuf {
    registry
        .path()
        .parent()
        .map(|p| p.join("locks"))
        .unwrap_or_else(|| std::env::temp_dir().join(format!("{namespace}-locks")))
}

impl SessionManager {
    /// Settings for the accounts of `client_id` at the provider `issuer`
    /// (discovered at `build()`).
    ///
    /// ```no_run
    /// # #[cfg(feature = "loopback")]
    /// # async fn demo() -> sessionkit::Result<()> {
    /// use sessionkit::{LoopbackOptions, SessionManager};
    ///
    /// let sessions = SessionManager::builder("https://id.example.com", "my-app").build().await?;
    /// let session = match sessions.active_session()? {
    ///     Some(session) => session, // restored from the keychain
    ///     None => sessions.login_loopback(LoopbackOptions::system_browser()).await?,
    /// };
    /// println!("signed in as {}", session.info().name());
    /// # Ok(()) }
    /// ```
    pub fn builder(
        issuer: impl Into<String>,
        client_id: impl Into<String>,
    ) -> SessionManagerBuilder {
        SessionManagerBuilder::new(ClientFrom::Discover {
            issuer: issuer.into(),
            client_id: client_id.into(),
        })
    }

    /// Settings for the accounts of a client the app made itself (it did
    /// the discovery, chose scopes, secret and skew).
    pub fn for_client(client: OidcClient) -> SessionManagerBuilder {
        SessionManagerBuilder::new(ClientFrom::Given(Box::new(client)))
    }
}
