//! The device authorization grant (RFC 8628): a code for the user to enter
//! on another device, and the polling of the token endpoint.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{LoginChecks, OidcClient};
use crate::error::{Error, Result};
use crate::token::{TokenSet, parse_error_response, parse_token_response, post_form};

const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// The longest device-code lifetime taken as given (a day): a provider's
/// larger `expires_in` would overflow the deadline.
const MAX_DEVICE_CODE_SECS: u64 = 24 * 3600;

/// What to show the user in the device flow.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DevicePrompt {
    /// The code the user types.
    pub user_code: String,
    /// Where they type it.
    pub verification_uri: String,
    /// A URI with the code in it (for a QR code), when the provider gives one.
    pub verification_uri_complete: Option<String>,
    /// How long the code is valid.
    pub expires_in: Duration,
}

impl OidcClient {
    /// Signs in with the device authorization grant (RFC 8628): asks for a
    /// code, hands it to `on_prompt` for the user, and polls honouring
    /// `interval` and `slow_down` (+5 s) until the user answers, the code
    /// expires, or `cancel` fires.
    ///
    /// ```no_run
    /// # async fn demo(client: sessionkit::OidcClient) -> sessionkit::Result<()> {
    /// let cancel = tokio_util::sync::CancellationToken::new();
    /// let tokens = client
    ///     .login_device(|p| println!("Go to {} and enter {}", p.verification_uri, p.user_code), &cancel)
    ///     .await?;
    /// # let _ = tokens; Ok(()) }
    /// ```
    pub async fn login_device(
        &self,
        on_prompt: impl FnOnce(&DevicePrompt),
        cancel: &CancellationToken,
    ) -> Result<TokenSet> {
        let endpoint = self
            .provider
            .extra()
            .device_authorization_endpoint
            .clone()
            .ok_or_else(|| {
                Error::Config("the provider has no device authorization endpoint".to_owned())
            })?;
        // The key first: a provider that would refuse its proofs is
        // refused before it hands out a code the user would enter in vain.
        let dpop = self.login_key()?;
        let scope = self.scopes.join(" ");
        let extra = self.params.device_pairs()?;
        let mut form = vec![("scope", scope.as_str())];
        form.extend(extra.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let answer = post_form(
            &self.provider,
            &endpoint,
            &self.client_id,
            self.credential(),
            &form,
            None,
            None,
        )
        .await?;
        let body = answer.body;
        if !(200..300).contains(&answer.status) {
            return Err(parse_error_response(answer.status, &body));
        }
        #[derive(serde::Deserialize)]
        struct DeviceWire {
            device_code: String,
            user_code: String,
            verification_uri: String,
            #[serde(default)]
            verification_uri_complete: Option<String>,
            expires_in: u64,
            #[serde(default)]
            interval: Option<u64>,
        }
        let wire: DeviceWire = serde_json::from_slice(&body).map_err(|e| Error::Parse {
            message: format!("device authorization response: {e}"),
            body: String::new(),
            status: None,
        })?;
        let device_code = crate::secret::AuthorizationCode::new(wire.device_code);
        on_prompt(&DevicePrompt {
            user_code: wire.user_code,
            verification_uri: wire.verification_uri,
            verification_uri_complete: wire.verification_uri_complete,
            expires_in: Duration::from_secs(wire.expires_in.min(MAX_DEVICE_CODE_SECS)),
        });
        let mut interval = Duration::from_secs(wire.interval.unwrap_or(5).max(1));
        let deadline = tokio::time::Instant::now()
            + Duration::from_secs(wire.expires_in.min(MAX_DEVICE_CODE_SECS));
        let token_endpoint = self.provider.token_endpoint()?;
        let token_params = self.params.token_pairs(true);
        // max_age and acr_values are not device authorization parameters.
        let checks = LoginChecks::default();
        loop {
            tokio::select! {
                () = cancel.cancelled() => return Err(Error::Cancelled),
                () = tokio::time::sleep(interval) => {}
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::DeviceCodeExpired);
            }
            let mut form = vec![
                ("grant_type", DEVICE_GRANT),
                ("device_code", device_code.secret()),
            ];
            form.extend(token_params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            let answer = post_form(
                &self.provider,
                &token_endpoint,
                &self.client_id,
                self.credential(),
                &form,
                self.prover(dpop.as_ref()),
                None,
            )
            .await?;
            match parse_token_response(answer.status, &answer.body, self.now()) {
                Ok(raw) => return self.checked(raw, None, None, &checks, dpop.as_ref()).await,
                Err(Error::Provider {
                    error,
                    description,
                    status,
                }) => match error.as_str() {
                    "authorization_pending" => {}
                    "slow_down" => interval += Duration::from_secs(5),
                    "access_denied" => return Err(Error::AccessDenied),
                    "expired_token" => return Err(Error::DeviceCodeExpired),
                    _ => {
                        return Err(Error::Provider {
                            error,
                            description,
                            status,
                        });
                    }
                },
                Err(other) => return Err(other),
            }
        }
    }
}
