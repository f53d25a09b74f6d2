//! The account's other devices: where the provider offers an account sessions
//! API (discovery field `account_sessions_endpoint`), list the account's
//! sessions — one per device it signed in on — and revoke another device's.
//! The revoked device learns it at its next refresh (`invalid_grant`: signed
//! out by the server, its tokens deleted).
//!
//! Requests go to the provider that issued the session's tokens only, through
//! the provider's HTTP client (no redirects), as an [`AuthedClient`]: a fresh
//! token, one refresh and one retry on a `401`.
//!
//! The API takes only access tokens meant for it (their `aud` names it). A
//! provider that says so in discovery (`account_sessions_scope`) gives such
//! tokens to sign-ins that ask for that scope: build the client with
//! [`OidcClient::manage_devices`](crate::OidcClient::manage_devices). A
//! session without the scope gets [`Error::Config`] and its token is not sent.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::Method;

use crate::authed::AuthedClient;
use crate::error::{Error, Result};
use crate::http::network;
use crate::provider::Provider;
use crate::session::Session;

/// The `error` code of [`Error::Provider`] when the provider knows no such
/// session of this account (HTTP 404).
pub const DEVICE_NOT_FOUND: &str = "not_found";

/// One of the account's sessions at the provider: a device it signed in on.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeviceSession {
    /// The provider's session id (the `sid` claim); pass it to [`revoke_device`].
    pub sid: String,
    /// The device (or browser) name the provider recorded.
    pub device_name: String,
    /// When the session began (the provider's clock).
    pub created_at: Option<SystemTime>,
    /// When a token was last issued in it (the provider's clock).
    pub last_seen: Option<SystemTime>,
    /// Is this the session of the token that asked, i.e. this device?
    pub current: bool,
}

#[derive(serde::Deserialize)]
struct Wire {
    sessions: Vec<WireSession>,
}

#[derive(serde::Deserialize)]
struct WireSession {
    sid: String,
    #[serde(default)]
    device_name: Option<String>,
    #[serde(default)]
    created_at: Option<i64>,
    #[serde(default)]
    last_seen: Option<i64>,
    #[serde(default)]
    current: bool,
}

fn unix(secs: Option<i64>) -> Option<SystemTime> {
    let secs = u64::try_from(secs?).ok()?;
    UNIX_EPOCH.checked_add(Duration::from_secs(secs))
}

impl From<WireSession> for DeviceSession {
    fn from(w: WireSession) -> Self {
        Self {
            sid: w.sid,
            device_name: w.device_name.unwrap_or_default(),
            created_at: unix(w.created_at),
            last_seen: unix(w.last_seen),
            current: w.current,
        }
    }
}

/// The account sessions endpoint of `provider`, after checking that
/// `session`'s tokens come from it (a token is never sent to another
/// provider) and were granted the scope the API asks for, where it names
/// one (a token meant for another API is never sent to this one).
fn endpoint(session: &Session, provider: &Provider) -> Result<url::Url> {
    let endpoint = provider
        .extra()
        .account_sessions_endpoint
        .as_deref()
        .ok_or_else(|| {
            Error::Config(format!(
                "the provider {:?} has no account sessions API (no account_sessions_endpoint \
                 in its discovery document); devices cannot be listed or revoked",
                provider.issuer()
            ))
        })?;
    if session.key().issuer != provider.issuer() {
        return Err(Error::Config(format!(
            "the session was issued by {:?}, not by {:?}; use that provider",
            session.key().issuer,
            provider.issuer()
        )));
    }
    if let Some(scope) = provider.extra().account_sessions_scope.as_deref()
        && !session.scopes().iter().any(|s| s == scope)
    {
        return Err(Error::Config(format!(
            "the provider's account sessions API needs the {scope:?} scope, which this \
             session was not granted; sign in with OidcClient::manage_devices()"
        )));
    }
    url::Url::parse(endpoint)
        .map_err(|e| Error::Config(format!("account_sessions_endpoint is not a URL: {e}")))
}

/// The provider's error for a non-success answer; a 404 is always
/// [`Error::Provider`] with [`DEVICE_NOT_FOUND`].
fn refusal(status: u16, body: &[u8]) -> Error {
    match crate::token::parse_error_response(status, body) {
        Error::Provider { description, .. } if status == 404 => Error::Provider {
            error: DEVICE_NOT_FOUND.to_owned(),
            description,
            status: Some(404),
        },
        _ if status == 404 => Error::Provider {
            error: DEVICE_NOT_FOUND.to_owned(),
            description: None,
            status: Some(404),
        },
        other => other,
    }
}

fn client(session: &Arc<Session>, provider: &Provider) -> AuthedClient {
    AuthedClient::from_reqwest(session.clone(), provider.http().reqwest().clone())
}

/// Lists the account's sessions at the provider, one per device, oldest first
/// as the provider orders them; the one of `session` has `current` set.
///
/// `provider` must be the one that issued the session's tokens (the
/// [`OidcClient::provider`](crate::OidcClient::provider) of its manager).
///
/// ```no_run
/// # async fn demo(sessions: sessionkit::SessionManager) -> sessionkit::Result<()> {
/// use sessionkit::{list_devices, revoke_device};
///
/// let session = sessions.active_session()?.expect("signed in");
/// let provider = sessions.client().provider();
/// for device in list_devices(&session, provider).await? {
///     let marker = if device.current { "*" } else { " " };
///     println!("{marker} {} {}", device.sid, device.device_name);
///     if !device.current && device.device_name == "old phone" {
///         revoke_device(&session, provider, &device.sid).await?;
///     }
/// }
/// # Ok(()) }
/// ```
///
/// # Errors
/// [`Error::Config`] when the provider has no account sessions API or did
/// not issue this session; [`Error::Provider`] when it refuses;
/// [`Error::Network`], [`Error::Parse`]; the session's error when no token
/// can be had.
pub async fn list_devices(
    session: &Arc<Session>,
    provider: &Provider,
) -> Result<Vec<DeviceSession>> {
    let url = endpoint(session, provider)?;
    let api = client(session, provider);
    let response = api
        .send(
            api.request(Method::GET, url)
                .header("accept", "application/json"),
        )
        .await?;
    let status = response.status().as_u16();
    let body = response.bytes().await.map_err(network)?;
    if !(200..300).contains(&status) {
        return Err(refusal(status, &body));
    }
    let wire: Wire = serde_json::from_slice(&body).map_err(|e| Error::Parse {
        message: format!("account sessions: {e}"),
        body: String::from_utf8_lossy(&body).chars().take(512).collect(),
        status: None,
    })?;
    Ok(wire.sessions.into_iter().map(DeviceSession::from).collect())
}

/// Revokes one of the account's sessions at the provider (another device's,
/// usually): its refresh tokens stop working, so that device is signed out
/// at its next refresh. Revoking `session`'s own `sid` signs this device out
/// the same way; use logout for that instead.
///
/// # Errors
/// [`Error::Provider`] with `error` [`DEVICE_NOT_FOUND`] and status 404 when
/// the account has no such session (already revoked, or never its own);
/// otherwise as [`list_devices`].
pub async fn revoke_device(session: &Arc<Session>, provider: &Provider, sid: &str) -> Result<()> {
    let mut url = endpoint(session, provider)?;
    url.path_segments_mut()
        .map_err(|()| Error::Config("account_sessions_endpoint cannot take a path".to_owned()))?
        .pop_if_empty()
        .push(sid);
    let api = client(session, provider);
    let response = api
        .send(
            api.request(Method::DELETE, url)
                .header("accept", "application/json"),
        )
        .await?;
    let status = response.status().as_u16();
    if (200..300).contains(&status) {
        tracing::info!(account = %session.key().sub, "revoked another session of the account");
        return Ok(());
    }
    let body = response.bytes().await.map_err(network)?;
    Err(refusal(status, &body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_account_sessions_answer() {
        let wire: Wire = serde_json::from_str(
            r#"{"sessions":[{"sid":"s1","device_name":"laptop","created_at":10,"last_seen":20,"clients":["chat-example"],"current":true},
                            {"sid":"s2","created_at":-1}]}"#,
        )
        .expect("parses");
        let devices: Vec<DeviceSession> = wire.sessions.into_iter().map(Into::into).collect();
        assert_eq!(devices[0].sid, "s1");
        assert_eq!(devices[0].device_name, "laptop");
        assert_eq!(
            devices[0].created_at,
            Some(UNIX_EPOCH + Duration::from_secs(10))
        );
        assert_eq!(
            devices[0].last_seen,
            Some(UNIX_EPOCH + Duration::from_secs(20))
        );
        assert!(devices[0].current);
        assert_eq!(devices[1].device_name, "");
        assert_eq!(devices[1].created_at, None, "a time before 1970 is dropped");
        assert!(!devices[1].current);
    }

    #[test]
    fn a_404_is_always_not_found() {
        for body in [
            &br#"{"error":"not_found","error_description":"no such session"}"#[..],
            br#"{"error":"invalid_request"}"#,
            b"",
            b"<html>",
        ] {
            let err = refusal(404, body);
            assert!(
                matches!(&err, Error::Provider { error, status: Some(404), .. } if error == DEVICE_NOT_FOUND),
                "{err:?}"
            );
        }
        let err = refusal(403, br#"{"error":"insufficient_scope"}"#);
        assert!(
            matches!(&err, Error::Provider { error, status: Some(403), .. } if error == "insufficient_scope"),
            "{err:?}"
        );
    }
}
