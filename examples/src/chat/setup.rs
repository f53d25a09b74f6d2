//! What every command needs: the provider, the session manager over the
//! chosen store, the chat server's URL — and, without `--issuer`, the
//! embedded demo's mock identity provider and chat server.

use std::sync::Arc;

use anyhow::Context as _;
use sessionkit::{
    AccountInfo, AccountRegistry, HttpClient, KeychainStore, LoopbackOptions, MemoryStore,
    OidcClient, Provider, RefreshPolicy, SessionManager, TokenStore,
};
use sessionkit_mock_idp::MockIdp;

use super::{DEFAULT_SCOPE, DEFAULT_SERVER, Options, StoreKind};
use crate::server::{ChatServer, ServerConfig};

/// The provider, the accounts and the chat server a command works with.
pub struct Setup {
    /// The accounts of this app, provider and client.
    pub manager: Arc<SessionManager>,
    /// The HTTP client for provider calls.
    pub http: HttpClient,
    /// The chat servers' WebSocket URLs (one, or the nodes to fail over
    /// between).
    pub servers: Vec<String>,
    /// The embedded demo's servers, when there was no `--issuer`.
    pub embedded: Option<Embedded>,
}

impl std::fmt::Debug for Setup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Setup")
            .field("servers", &self.servers)
            .field("embedded", &self.embedded.is_some())
            .finish_non_exhaustive()
    }
}

impl Setup {
    /// Discovers the provider (starting the embedded one when `options` name
    /// no issuer) and opens the account store.
    pub async fn new(options: &Options) -> anyhow::Result<Self> {
        let http = HttpClient::new().context("cannot build the HTTP client")?;
        let (issuer, embedded) = match &options.issuer {
            Some(issuer) => (issuer.clone(), None),
            None => {
                let embedded = Embedded::start().await?;
                (embedded.idp.issuer().to_owned(), Some(embedded))
            }
        };
        let provider = Provider::discover(&issuer, &http)
            .await
            .with_context(|| format!("cannot reach the provider at {issuer}"))?;
        let client = OidcClient::new(provider, &options.client_id)
            .scopes(DEFAULT_SCOPE.split_whitespace())
            .dpop(options.dpop);
        // The embedded provider lives as long as this process: so do its tokens.
        let kind = if embedded.is_some() {
            StoreKind::Memory
        } else {
            options.store
        };
        let store: Arc<dyn TokenStore> = match kind {
            StoreKind::Auto => Arc::new(KeychainStore::auto()?),
            StoreKind::SecretService => Arc::new(KeychainStore::secret_service()?),
            StoreKind::Keyutils => Arc::new(KeychainStore::keyutils()?),
            StoreKind::Memory => Arc::new(MemoryStore::new()),
        };
        let registry = if kind == StoreKind::Memory {
            // Memory tokens die with the process; so does their account list.
            let dir = std::env::temp_dir().join(format!(
                "{}-{}-{}",
                options.namespace,
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_nanos()
            ));
            AccountRegistry::at(dir.join("accounts.json"))
        } else {
            AccountRegistry::for_namespace(&options.namespace)?
        };
        // A chat keeps its connection through refreshes: the session's one
        // refresh moves the socket to the new token without a gap.
        let manager = Arc::new(
            SessionManager::for_client(client)
                .namespace(&options.namespace)
                .store(store)
                .registry(registry)
                .policy(RefreshPolicy::Background)
                .restore(false)
                .build()
                .await?,
        );
        let servers: Vec<String> = options
            .server
            .iter()
            .map(|url| url.trim().to_owned())
            .filter(|url| !url.is_empty())
            .collect();
        let servers = match (servers.is_empty(), &embedded) {
            (false, _) => servers,
            (true, Some(embedded)) => vec![embedded.server.ws_url()],
            (true, None) => vec![DEFAULT_SERVER.to_owned()],
        };
        Ok(Self {
            manager,
            http,
            servers,
            embedded,
        })
    }

    /// The active account's session, restored from the store; an error that
    /// says how to sign in when there is none.
    pub async fn active_session(&self) -> anyhow::Result<Arc<sessionkit::Session>> {
        for restored in self.manager.restore().await? {
            if let Err(e) = restored.result {
                tracing::warn!(account = %restored.account.name(), error = %e, "cannot restore");
            }
        }
        let Some(active) = self.manager.active()? else {
            anyhow::bail!("not signed in: run `chat login` first");
        };
        self.manager.session(&active.key).with_context(|| {
            format!(
                "the tokens of {} cannot be read from the store; run `chat login` again",
                active.name()
            )
        })
    }
}

/// The embedded demo: a mock identity provider and a chat server in this
/// process, on free loopback ports, wired for back-channel logout.
pub struct Embedded {
    /// The identity provider.
    pub idp: MockIdp,
    /// The chat server (messages in memory).
    pub server: ChatServer,
}

impl Embedded {
    /// Starts both on `127.0.0.1:0`.
    pub async fn start() -> anyhow::Result<Self> {
        let idp = MockIdp::builder()
            .bind("127.0.0.1:0")
            .start()
            .await
            .context("cannot start the embedded identity provider")?;
        let server = ChatServer::start(ServerConfig::new(idp.issuer()))
            .await
            .context("cannot start the embedded chat server")?;
        idp.control()
            .set_backchannel_logout_uri(
                super::DEFAULT_CLIENT_ID,
                Some(&server.backchannel_logout_url()),
            )
            .context("cannot register the back-channel logout URL")?;
        Ok(Self { idp, server })
    }

    /// Signs `user` in through the real authorization-code flow of the
    /// embedded provider: PKCE, the loopback redirect and the ID-token
    /// checks all run; only the browser is replaced by a request that the
    /// provider answers with an automatic login as `user`.
    pub async fn sign_in(
        &self,
        manager: &SessionManager,
        user: &str,
    ) -> anyhow::Result<AccountInfo> {
        let control = self.idp.control();
        control
            .set_auto_login(Some(user))
            .with_context(|| format!("the demo has no user {user:?} (try alice, bob or carol)"))?;
        let browser = reqwest::Client::new();
        let options = LoopbackOptions::with_callback(move |url| {
            let url = url.to_owned();
            tokio::spawn(async move {
                if let Err(e) = browser.get(url).send().await {
                    // Without the URL: after the redirect it holds the code.
                    tracing::warn!(error = %e.without_url(), "the demo's sign-in request failed");
                }
            });
        });
        let result = manager.login_loopback(options).await;
        let _ = control.set_auto_login(None);
        Ok(result?.info().clone())
    }
}
