//! Signed-in accounts of one app and one provider: signing in (tokens to the
//! store, the account to the registry), listing, switching the active
//! account, and restoring every account at start-up. Store calls run in
//! `spawn_blocking`; a store that fails is reported, never taken as
//! "signed out", and nothing is deleted because a read failed.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use tokio_util::sync::CancellationToken;

use crate::accounts::{AccountInfo, AccountRegistry};
use crate::error::{Error, Result, StoreError};
use crate::login::{DevicePrompt, LoopbackOptions, OidcClient};
use crate::secret::{AccessToken, RefreshToken};
use crate::store::{AccountKey, SessionEntry, TokenStore};
use crate::token::TokenSet;

/// One signed-in account in memory.
#[derive(Debug)]
pub struct Session {
    info: AccountInfo,
    entry: RwLock<SessionEntry>,
}

impl Session {
    /// The account.
    pub fn info(&self) -> &AccountInfo {
        &self.info
    }

    /// Where its tokens are stored.
    pub fn key(&self) -> &AccountKey {
        &self.info.key
    }

    /// The current access token and its expiry (no I/O).
    pub fn cached_access_token(&self) -> (AccessToken, Option<std::time::SystemTime>) {
        let entry = self.entry.read().unwrap_or_else(|e| e.into_inner());
        (entry.access_token.clone(), entry.expires_at)
    }

    /// The provider's session id (`sid`), when it sent one.
    pub fn sid(&self) -> Option<String> {
        self.entry
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .sid
            .clone()
    }

    /// The scopes granted.
    pub fn scopes(&self) -> Vec<String> {
        self.entry
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .scopes
            .clone()
    }
}

/// What [`SessionManager::restore`] found for one account.
#[derive(Debug)]
pub struct Restored {
    /// The account.
    pub account: AccountInfo,
    /// `Ok` when its session is back in memory; the store's error otherwise
    /// (the account stays listed either way).
    pub result: std::result::Result<(), StoreError>,
}

/// The accounts of one app with one provider and client.
#[derive(Debug)]
pub struct SessionManager {
    client: OidcClient,
    namespace: String,
    store: Arc<dyn TokenStore>,
    registry: AccountRegistry,
    sessions: RwLock<BTreeMap<AccountKey, Arc<Session>>>,
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Store(StoreError::Unavailable(format!("store task failed: {e}"))))
}

impl SessionManager {
    /// A manager for the app `namespace` (the name its keychain entries and
    /// accounts file carry), keeping tokens in `store` and the account list in
    /// `registry`.
    pub fn new(
        client: OidcClient,
        namespace: &str,
        store: Arc<dyn TokenStore>,
        registry: AccountRegistry,
    ) -> Self {
        Self {
            client,
            namespace: namespace.to_owned(),
            store,
            registry,
            sessions: RwLock::new(BTreeMap::new()),
        }
    }

    /// The OpenID Connect client.
    pub fn client(&self) -> &OidcClient {
        &self.client
    }

    /// The token store.
    pub fn store(&self) -> &Arc<dyn TokenStore> {
        &self.store
    }

    fn mine(&self, key: &AccountKey) -> bool {
        key.namespace == self.namespace
            && key.issuer == self.client.provider().issuer()
            && key.client_id == self.client.client_id()
    }

    /// Keeps the tokens of a finished login: the refresh token first, then the
    /// session entry, then the account in the registry as the active one.
    pub async fn sign_in(&self, tokens: TokenSet) -> Result<AccountInfo> {
        let claims = tokens.claims.as_ref().ok_or_else(|| {
            Error::Config("a sign-in needs an ID token (ask for the openid scope)".to_owned())
        })?;
        let key = AccountKey {
            namespace: self.namespace.clone(),
            issuer: self.client.provider().issuer().to_owned(),
            client_id: self.client.client_id().to_owned(),
            sub: claims.sub.clone(),
        };
        let info = AccountInfo {
            key: key.clone(),
            display_name: claims.display_name.clone(),
        };
        let entry = SessionEntry {
            access_token: tokens.access_token.clone(),
            expires_at: tokens.expires_at,
            id_token: tokens.id_token.clone(),
            scopes: tokens.scopes.clone(),
            sid: claims.sid.clone(),
        };
        if let Some(refresh) = tokens.refresh_token.clone() {
            let (store, k) = (self.store.clone(), key.clone());
            blocking(move || store.save_refresh(&k, &refresh)).await??;
        }
        let (store, k, e) = (self.store.clone(), key.clone(), entry.clone());
        blocking(move || store.save_session(&k, &e)).await??;
        let (registry, i) = (self.registry.clone(), info.clone());
        blocking(move || registry.upsert(i, true)).await??;
        tracing::info!(account = %info.key.sub, store = self.store.name(), "signed in");
        self.sessions
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                key,
                Arc::new(Session {
                    info: info.clone(),
                    entry: RwLock::new(entry),
                }),
            );
        Ok(info)
    }

    /// Signs in through the browser (see [`OidcClient::login_loopback`]) and keeps the account.
    pub async fn login_loopback(&self, options: LoopbackOptions) -> Result<AccountInfo> {
        let tokens = self.client.login_loopback(options).await?;
        self.sign_in(tokens).await
    }

    /// Signs in with the device flow (see [`OidcClient::login_device`]) and keeps the account.
    pub async fn login_device(
        &self,
        on_prompt: impl FnOnce(&DevicePrompt),
        cancel: &CancellationToken,
    ) -> Result<AccountInfo> {
        let tokens = self.client.login_device(on_prompt, cancel).await?;
        self.sign_in(tokens).await
    }

    /// The accounts of this app, provider and client, in sign-in order.
    pub fn accounts(&self) -> Result<Vec<AccountInfo>> {
        Ok(self
            .registry
            .list()?
            .into_iter()
            .filter(|a| self.mine(&a.key))
            .collect())
    }

    /// The active account, if one is set. Never "the first account" by default.
    pub fn active(&self) -> Result<Option<AccountInfo>> {
        Ok(self.registry.active()?.filter(|a| self.mine(&a.key)))
    }

    /// Finds a listed account by `sub` or display name.
    pub fn find(&self, name: &str) -> Result<Option<AccountInfo>> {
        let accounts = self.accounts()?;
        Ok(accounts
            .iter()
            .find(|a| a.key.sub == name)
            .or_else(|| accounts.iter().find(|a| a.display_name == name))
            .cloned())
    }

    /// Makes another signed-in account the active one; nothing else changes.
    pub fn switch(&self, key: &AccountKey) -> Result<()> {
        self.registry.switch(key)
    }

    /// The in-memory session of an account (after [`SessionManager::sign_in`] or [`SessionManager::restore`]).
    pub fn session(&self, key: &AccountKey) -> Option<Arc<Session>> {
        self.sessions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
    }

    /// The active account's session, if it is in memory.
    pub fn active_session(&self) -> Result<Option<Arc<Session>>> {
        Ok(self.active()?.and_then(|a| self.session(&a.key)))
    }

    /// Loads every listed account's session from the store. Accounts whose
    /// entries cannot be read stay listed, with the store's error reported.
    pub async fn restore(&self) -> Result<Vec<Restored>> {
        let mut out = Vec::new();
        for account in self.accounts()? {
            let (store, key) = (self.store.clone(), account.key.clone());
            let loaded = blocking(move || store.load_session(&key)).await?;
            let result = match loaded {
                Ok(entry) => {
                    self.sessions
                        .write()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(
                            account.key.clone(),
                            Arc::new(Session {
                                info: account.clone(),
                                entry: RwLock::new(entry),
                            }),
                        );
                    Ok(())
                }
                Err(e) => {
                    tracing::warn!(account = %account.key.sub, error = %e, "could not restore an account");
                    Err(e)
                }
            };
            out.push(Restored { account, result });
        }
        Ok(out)
    }

    /// The refresh token of an account, from the store.
    pub async fn stored_refresh_token(&self, key: &AccountKey) -> Result<RefreshToken> {
        let (store, key) = (self.store.clone(), key.clone());
        Ok(blocking(move || store.load_refresh(&key)).await??)
    }
}
