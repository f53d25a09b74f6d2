//! The provider process, what it logged, a manager of the interop client,
//! and a scripted user for its login and consent pages.

use std::path::Path;
use std::sync::Arc;

use sessionkit::{
    AccountRegistry, LoopbackOptions, MemoryStore, RefreshPolicy, Session, SessionManager,
    TokenStore,
};
use sessionkit_tests::scratch::ScratchDir;

pub use sessionkit_tests::oidc_provider::{CLIENT, OidcProvider, START, UserAgent};

/// A provider, a scratch directory and a manager of the interop client
/// with its tokens in memory (`store`): what most tests start from.
pub struct Setup {
    pub op: OidcProvider,
    /// Removed when the test ends: bind it (as `_scratch`) to keep it.
    pub _scratch: ScratchDir,
    pub store: Arc<MemoryStore>,
    pub sessions: SessionManager,
}

impl Setup {
    /// `None` when the provider cannot run here (see [`OidcProvider::start`]).
    pub async fn start(name: &str) -> Option<Self> {
        let op = OidcProvider::start()?;
        let scratch = ScratchDir::new(&format!("sk-oidc-provider-{name}"));
        let store = Arc::new(MemoryStore::new());
        let sessions = manager(
            op.issuer(),
            store.clone(),
            scratch.path(),
            RefreshPolicy::Proactive,
        )
        .await;
        Some(Self {
            op,
            _scratch: scratch,
            store,
            sessions,
        })
    }
}

/// A manager of the interop client at `issuer` (discovered by the SDK),
/// its tokens in `store`, its accounts and refresh locks in `dir`.
pub async fn manager(
    issuer: &str,
    store: Arc<dyn TokenStore>,
    dir: &Path,
    policy: RefreshPolicy,
) -> SessionManager {
    manager_of(CLIENT, issuer, store, dir, policy).await
}

/// [`manager`] for another client of `server.mjs`.
pub async fn manager_of(
    client_id: &str,
    issuer: &str,
    store: Arc<dyn TokenStore>,
    dir: &Path,
    policy: RefreshPolicy,
) -> SessionManager {
    manager_with(client_id, issuer, store, dir, policy, false).await
}

/// [`manager_of`], binding logins to a DPoP key when `dpop`.
pub async fn manager_with(
    client_id: &str,
    issuer: &str,
    store: Arc<dyn TokenStore>,
    dir: &Path,
    policy: RefreshPolicy,
    dpop: bool,
) -> SessionManager {
    SessionManager::builder(issuer, client_id)
        .namespace("sk-oidc-provider")
        .store(store)
        .registry(AccountRegistry::at(dir.join("accounts.json")))
        .policy(policy)
        .dpop(dpop)
        .build()
        .await
        .expect("discovery of oidc-provider and the manager")
}

/// Signs `login` in through the SDK's loopback login, with a scripted user
/// agent (an HTTP client with cookies) that fills in the provider's own login
/// and consent pages — the browser test shows a real browser does the same.
pub async fn sign_in_over_http(manager: &SessionManager, login: &str) -> Arc<Session> {
    let (tx, rx) = tokio::sync::oneshot::channel::<String>();
    let options = LoopbackOptions::with_callback(move |url| {
        let _ = tx.send(url.to_owned());
    });
    let user = async {
        let url = rx.await.expect("the authorization URL");
        UserAgent::new().complete(&url, login).await;
    };
    let (session, ()) = tokio::time::timeout(START, async {
        tokio::join!(manager.login_loopback(options), user)
    })
    .await
    .expect("sign-in within the time limit");
    session.expect("signed in")
}

/// Is `token` a JWT (three dot-separated parts)? Opaque tokens are not.
pub fn looks_like_jwt(token: &str) -> bool {
    token.split('.').count() == 3
}
