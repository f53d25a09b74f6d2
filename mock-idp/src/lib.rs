//! # sessionkit-mock-idp
//!
//! A strict, scriptable OpenID provider for development and tests. People run
//! it as the `mock-idp` binary in place of a real provider; tests start it
//! in-process on `127.0.0.1:0` and script it through [`Control`].
//!
//! Strict by default: PKCE S256 required with no downgrade, single-use codes,
//! exact redirect URI match (any port for loopback redirects, RFC 8252),
//! refresh tokens rotated on every use with reuse detection that revokes the
//! whole grant, revocation visible at once in introspection and userinfo,
//! RFC 6749 error bodies for every malformed request.
//!
//! ## Quick start
//!
//! ```
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use sessionkit_mock_idp::{MockIdp, Fault};
//!
//! let idp = MockIdp::builder().access_token_ttl(30).auto_login("alice").start().await?;
//! let discovery: serde_json::Value =
//!     reqwest::get(idp.url("/.well-known/openid-configuration")).await?.json().await?;
//! assert_eq!(discovery["issuer"], idp.issuer());
//!
//! // Script the provider: the next two token requests fail with a 503.
//! idp.control().add_fault(Fault::on("token").status(503, "{}").times(2));
//! // Move its clock an hour ahead: every token issued so far has expired.
//! idp.control().advance_clock(std::time::Duration::from_secs(3600));
//! # Ok(()) }
//! # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
//! ```
//!
//! ## Per-test users and claims
//!
//! Users are added, replaced and removed while the provider runs
//! ([`Control::put_user`], [`Control::remove_user`]), and the next token
//! responses of a client can say anything a test needs ([`NextClaims`],
//! [`Control::next_claims`]) — registered claims included, so that a client's
//! refusal of a signed-but-wrong token can be tested. The HTTP control API
//! offers the same under `/_control/users/{name}` and
//! `/_control/clients/{id}/next-claims`.
//!
//! ```
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use sessionkit_mock_idp::{MockIdp, NextClaims, User};
//!
//! let idp = MockIdp::start().await?;
//! let mut dana = User::simple("dana");
//! dana.claims.insert("groups".into(), serde_json::json!(["admins"]));
//! idp.control().put_user(dana)?;
//! // The next two token responses of chat-example: an ID token for another
//! // audience, and userinfo without an e-mail address.
//! idp.control().next_claims(
//!     "chat-example",
//!     NextClaims::new()
//!         .id_token_claim("aud", "someone-else")
//!         .userinfo_claim("email", serde_json::Value::Null)
//!         .times(2),
//! )?;
//! assert_eq!(idp.control().remove_user("dana")?, 0, "she had no sessions");
//! # Ok(()) }
//! # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
//! ```
//!
//! ## DPoP
//!
//! A token request with a `DPoP` proof (RFC 9449) gets tokens bound to the
//! proof's key (`cnf.jkt`, `token_type: DPoP`); userinfo and the account
//! API then take them only as `Authorization: DPoP` with a proof by that
//! key. Clients configured with
//! [`dpop_bound_access_tokens`](ClientConfig::dpop_bound_access_tokens)
//! must send a proof; [`Control::set_dpop_nonce_required`] makes every
//! proof carry the provider's current nonce. [`dpop::verify_proof`] is the
//! check itself, for other servers.
//!
//! ```
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use sessionkit_mock_idp::{ClientConfig, MockIdp};
//!
//! let idp = MockIdp::builder()
//!     .client(ClientConfig {
//!         dpop_bound_access_tokens: true,
//!         ..ClientConfig::public("dpop-app")
//!     })
//!     .start()
//!     .await?;
//! let discovery: serde_json::Value =
//!     reqwest::get(idp.url("/.well-known/openid-configuration")).await?.json().await?;
//! assert!(discovery["dpop_signing_alg_values_supported"]
//!     .as_array()
//!     .is_some_and(|algs| algs.contains(&"ES256".into())));
//! idp.control().set_dpop_nonce_required(true);
//! # Ok(()) }
//! # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
//! ```
//!
//! ## Client authentication and PAR
//!
//! Besides `none` and the two secret methods, a client registered with its
//! public keys ([`ClientConfig::private_key_jwt`]) authenticates with
//! signed client assertions (RFC 7523), checked strictly (`aud`, lifetime,
//! `jti` replay, …). The PAR endpoint `/par` (RFC 9126) takes an
//! authorization request authenticated like a token request and answers a
//! single-use `request_uri`; a client with
//! [`require_pushed_authorization_requests`](ClientConfig::require_pushed_authorization_requests)
//! (or the whole provider, [`Config::require_pushed_authorization_requests`])
//! must use it.
//!
//! ```
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use sessionkit_mock_idp::{ClientConfig, MockIdp};
//!
//! let idp = MockIdp::builder()
//!     .client(ClientConfig {
//!         require_pushed_authorization_requests: true,
//!         ..ClientConfig::public("par-app")
//!     })
//!     .start()
//!     .await?;
//! let answer: serde_json::Value = reqwest::Client::new()
//!     .post(idp.url("/par"))
//!     .form(&[("client_id", "par-app"), ("response_type", "code"),
//!         ("redirect_uri", "http://127.0.0.1:8000/callback"), ("scope", "openid"),
//!         ("code_challenge", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"),
//!         ("code_challenge_method", "S256")])
//!     .send()
//!     .await?
//!     .json()
//!     .await?;
//! assert!(answer["request_uri"].as_str().unwrap().starts_with("urn:ietf:params:oauth:request_uri:"));
//! # Ok(()) }
//! # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
//! ```
//!
//! ## Layout
//! - [`config`]: users, clients and lifetimes (TOML or code), with built-in defaults.
//! - `claims`: [`NextClaims`], per-test claims for a client's next tokens.
//! - `server`: the router, faults and the request log, the accept loop.
//! - `endpoints`: one module per protocol endpoint, the control API and the pages.
//! - `state`: sessions, grants, codes and tokens; `keys`: signing and JWKS.
//! - [`dpop`]: DPoP proof checks (RFC 9449), public so that other servers
//!   check proofs exactly as the provider does.
//! - [`Control`]: everything the control API does, in-process.
//!
//! (Over 500 lines: the crate's front page — its documentation and the
//! `MockIdp` builder; the endpoints, state and control API are modules.)

#![forbid(unsafe_code)]

mod backchannel;
mod claims;
mod client_assertion;
mod clock;
pub mod config;
pub mod conformance;
mod control;
pub mod dpop;
mod endpoints;
mod error;
mod faults;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod keys;
mod limits;
mod log;
mod params;
mod server;
mod state;
mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use claims::NextClaims;
pub use config::{Alg, ClientAuthMethod, ClientConfig, Config, Lifetimes, SecretSource, User};
pub use control::{Control, SessionInfo};
pub use error::{Error, Result};
pub use faults::{ENDPOINTS, Fault};
pub use limits::ConnectionLimits;
pub use log::LoggedRequest;
pub use state::{Delivery, DeviceOutcome, DeviceScript, TokenRecord};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A running mock identity provider. Dropping it stops the server.
#[derive(Debug)]
pub struct MockIdp {
    issuer: String,
    addr: SocketAddr,
    control: Control,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    tls_cert_pem: Option<String>,
}

impl MockIdp {
    /// A builder with the default configuration, bound to `127.0.0.1:0`.
    pub fn builder() -> MockIdpBuilder {
        MockIdpBuilder {
            config: Config::default(),
            bind: "127.0.0.1:0".to_owned(),
            listener: None,
            tls: false,
            on_listening: None,
            keys: KeySource::Shared,
            readiness_delay: None,
            limits: ConnectionLimits::default(),
        }
    }

    /// Starts the default configuration on a free loopback port.
    pub async fn start() -> Result<Self> {
        Self::builder().start().await
    }

    /// The issuer URL (also the base URL of every endpoint).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The issuer joined with `path` (`"/token"` → `http://127.0.0.1:PORT/token`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.issuer.trim_end_matches('/'), path)
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The self-signed certificate (PEM) when serving HTTPS, for clients to trust.
    pub fn tls_certificate_pem(&self) -> Option<&str> {
        self.tls_cert_pem.as_deref()
    }

    /// The in-process control API.
    pub fn control(&self) -> &Control {
        &self.control
    }

    /// Stops accepting connections, lets open ones finish (up to 5 s), and
    /// waits for every task the provider started, back-channel deliveries included.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

impl Drop for MockIdp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Called with the issuer as soon as the socket listens.
type OnListening = Box<dyn FnOnce(&str) + Send>;

/// Where a provider's first signing keys come from.
#[derive(Debug, Clone)]
enum KeySource {
    /// The process's shared keys, from the development key cache.
    Shared,
    /// Keys generated for this provider alone.
    Fresh,
    /// Keys kept in this file between runs.
    File(PathBuf),
}

impl KeySource {
    /// Blocks: may read a file, generate RSA keys and seed the random generator.
    fn load(self) -> Result<keys::KeySet> {
        let keys = match self {
            KeySource::Shared => keys::KeySet::shared_initial()?,
            KeySource::Fresh => keys::KeySet::generate()?,
            KeySource::File(path) => {
                let (keys, origin) = keys::KeySet::load_or_create(&path)?;
                keys::log_origin(&path, &origin);
                keys
            }
        };
        keys::warm_up_random();
        Ok(keys)
    }
}

/// Configures and starts a [`MockIdp`].
#[must_use]
pub struct MockIdpBuilder {
    config: Config,
    bind: String,
    listener: Option<std::net::TcpListener>,
    tls: bool,
    on_listening: Option<OnListening>,
    keys: KeySource,
    readiness_delay: Option<Duration>,
    limits: ConnectionLimits,
}

impl std::fmt::Debug for MockIdpBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockIdpBuilder")
            .field("config", &self.config)
            .field("bind", &self.bind)
            .field("tls", &self.tls)
            .field("keys", &self.keys)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl MockIdpBuilder {
    /// Replaces the whole configuration.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }
    /// The address to bind (default `127.0.0.1:0`).
    pub fn bind(mut self, addr: &str) -> Self {
        addr.clone_into(&mut self.bind);
        self
    }
    /// Serves on an already bound listener instead.
    pub fn listener(mut self, listener: std::net::TcpListener) -> Self {
        self.listener = Some(listener);
        self
    }
    /// Sets the issuer URL (by default `http://{bound address}`).
    pub fn issuer(mut self, issuer: &str) -> Self {
        self.config.issuer = Some(issuer.to_owned());
        self
    }
    /// Adds a user, replacing one with the same name.
    pub fn user(mut self, user: User) -> Self {
        self.config.users.retain(|u| u.username != user.username);
        self.config.users.push(user);
        self
    }
    /// Adds a client, replacing one with the same id.
    pub fn client(mut self, client: ClientConfig) -> Self {
        self.config
            .clients
            .retain(|c| c.client_id != client.client_id);
        self.config.clients.push(client);
        self
    }
    /// Access token lifetime in seconds.
    pub fn access_token_ttl(mut self, secs: u64) -> Self {
        self.config.lifetimes.access_token = secs;
        self
    }
    /// All lifetimes.
    pub fn lifetimes(mut self, lifetimes: Lifetimes) -> Self {
        self.config.lifetimes = lifetimes;
        self
    }
    /// Serves HTTPS with a self-signed certificate for `127.0.0.1`, `::1` and
    /// `localhost` (see [`MockIdp::tls_certificate_pem`]); the issuer is `https://…`.
    pub fn tls(mut self) -> Self {
        self.tls = true;
        self
    }
    /// Calls `f` with the issuer as soon as the socket listens, before the
    /// signing keys and client secrets are ready. From then on discovery is
    /// answered at once (it needs neither); every other request waits, and
    /// is answered, once start-up completes, which is when
    /// [`start`](Self::start) returns. The binary prints its
    /// `mock-idp listening on URL` line from here.
    pub fn on_listening(mut self, f: impl FnOnce(&str) + Send + 'static) -> Self {
        self.on_listening = Some(Box::new(f));
        self
    }
    /// Signs this user in without a login page.
    pub fn auto_login(mut self, user: &str) -> Self {
        self.config.auto_login = Some(user.to_owned());
        self
    }
    /// The signing algorithm of access tokens and (by default) ID tokens.
    pub fn signing_alg(mut self, alg: Alg) -> Self {
        self.config.signing_alg = alg;
        self
    }

    /// Generates this provider's own first signing keys instead of taking the
    /// ones every provider in the process shares.
    ///
    /// By default the first provider in a process loads an RSA-2048 and a
    /// P-256 key from the development key cache, the file the `mock-idp`
    /// binary keeps its keys in (`sessionkit-mock-idp/signing-keys.json` in
    /// the user's cache directory, mode 0600), or generates them (50–200 ms)
    /// and saves them there when there is none yet or it cannot be used; every
    /// later provider in the process starts with the same two keys at no cost.
    /// They are distinct providers all the same: their issuers differ, each
    /// keeps its own record of the tokens it issued, and
    /// [`Control::rotate_keys`] gives one of them new keys without touching
    /// the others. Ask for fresh keys when a test needs two providers whose
    /// signatures differ, e.g. a token from one that must fail the other's
    /// signature check. Fresh keys are never written anywhere.
    ///
    /// The cached keys are development keys: anyone who can read the file can
    /// sign tokens that providers using it accept. Never use this provider,
    /// or its keys, for anything real.
    pub fn fresh_keys(mut self) -> Self {
        self.keys = KeySource::Fresh;
        self
    }

    /// Keeps the first signing keys in the file at `path` instead of the
    /// development key cache (see [`fresh_keys`](Self::fresh_keys)): loads
    /// them when the file holds keys, else generates them and writes the file
    /// (mode 0600, its directory 0700) for the next start. A file that cannot
    /// be used — unreadable, not a key file, or readable by others (its keys
    /// may have leaked) — is replaced by new keys, with a warning; a file
    /// that cannot be written leaves the new keys unsaved, with a warning.
    /// New files are written whole and renamed into place, so providers
    /// starting at the same moment never read half a file.
    ///
    /// The file holds the *private* keys of a development provider: anyone
    /// who can read it can sign tokens that this provider's clients accept.
    pub fn keys_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.keys = KeySource::File(path.into());
        self
    }

    /// Limits on connections: the time a client has to send a request (10 s
    /// by default, also the longest a kept-alive connection may idle), how
    /// many connections may be open (1024), and how many half-open ones one
    /// address may hold (64; past it the oldest of them is closed). See
    /// [`ConnectionLimits`].
    pub fn connection_limits(mut self, limits: ConnectionLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Holds start-up back by `delay` after the socket listens, as slow key
    /// loading would: for tests of what is answered meanwhile.
    #[doc(hidden)]
    pub fn delay_readiness_for_tests(mut self, delay: Duration) -> Self {
        self.readiness_delay = Some(delay);
        self
    }

    /// Binds, starts serving discovery, then gets its signing keys (see
    /// [`fresh_keys`](Self::fresh_keys) and [`keys_file`](Self::keys_file))
    /// and client secrets on a blocking thread. Returns once the provider
    /// answers every endpoint and can sign tokens.
    pub async fn start(self) -> Result<MockIdp> {
        self.config.validate()?;
        let listener = match self.listener {
            Some(l) => {
                l.set_nonblocking(true).map_err(|source| Error::Bind {
                    addr: "(given listener)".to_owned(),
                    source,
                })?;
                tokio::net::TcpListener::from_std(l).map_err(|source| Error::Bind {
                    addr: "(given listener)".to_owned(),
                    source,
                })?
            }
            None => tokio::net::TcpListener::bind(&self.bind)
                .await
                .map_err(|source| Error::Bind {
                    addr: self.bind.clone(),
                    source,
                })?,
        };
        let addr = listener.local_addr().map_err(|source| Error::Bind {
            addr: self.bind.clone(),
            source,
        })?;
        let tls = if self.tls {
            Some(tls::self_signed()?)
        } else {
            None
        };
        let issuer = match &self.config.issuer {
            Some(i) => i.trim_end_matches('/').to_owned(),
            None if tls.is_some() => format!("https://{addr}"),
            None => format!("http://{addr}"),
        };

        let listening = state::Listening::new(
            issuer.clone(),
            self.config.require_pushed_authorization_requests,
            &self.config.dpop_signing_algs,
        );
        let tasks = listening.tasks.clone();
        let shutdown = CancellationToken::new();
        // Until the provider is ready, a failed (or dropped) start stops the
        // accept loop; requests waiting for readiness then get a 503.
        let stop_unless_ready = shutdown.clone().drop_guard();
        let (ready_tx, ready_rx) = tokio::sync::watch::channel(None);
        tasks.spawn(server::serve(
            listener,
            server::Gate::new(listening.clone(), ready_rx),
            tls.as_ref().map(|t| t.acceptor.clone()),
            self.limits,
            shutdown.clone(),
            tasks.clone(),
        ));
        if let Some(f) = self.on_listening {
            f(&issuer);
        }
        tracing::info!(%issuer, "mock-idp listening");

        let config = self.config;
        let source = self.keys;
        let delay = self.readiness_delay;
        let inline = delay.is_none()
            && matches!(source, KeySource::Shared)
            && keys::KeySet::shared_initial_ready().is_some();
        let build = move || -> Result<Arc<state::Shared>> {
            if let Some(delay) = delay {
                std::thread::sleep(delay);
            }
            let keys = source.load()?;
            Ok(Arc::new(state::Shared::new(&config, listening, keys)?))
        };
        let shared = if inline {
            // The process's keys are there and its random generator seeded:
            // nothing left that blocks for long.
            build()?
        } else {
            tokio::task::spawn_blocking(build)
                .await
                .map_err(|e| Error::Key(e.to_string()))??
        };
        ready_tx.send_replace(Some(server::router(shared.clone())));
        stop_unless_ready.disarm();
        tracing::debug!(%issuer, "mock-idp ready");
        Ok(MockIdp {
            issuer,
            addr,
            control: Control::new(shared),
            shutdown,
            tasks,
            tls_cert_pem: tls.map(|t| t.cert_pem),
        })
    }
}
