//! Pushed authorization requests (RFC 9126): when they are used, and the
//! push itself.

use super::{AuthorizationRequest, OidcClient};
use crate::error::{Error, Result};
use crate::token::{parse_error_response, post_form};

impl OidcClient {
    /// Sends every authorization request through the provider's pushed
    /// authorization request endpoint (RFC 9126), even when it does not
    /// require it: the browser's URL then carries only `client_id` and a
    /// `request_uri`, and the parameters travel authenticated, straight
    /// from the app to the provider. A provider that requires it
    /// (`require_pushed_authorization_requests`) gets pushed requests
    /// without this.
    ///
    /// ```no_run
    /// # async fn demo(provider: sessionkit::Provider) -> sessionkit::Result<()> {
    /// let client = sessionkit::OidcClient::new(provider, "my-app").pushed_authorization(true);
    /// let request = client.authorization_request("com.example.app:/oauth2redirect").await?;
    /// assert!(request.url.query_pairs().any(|(k, _)| k == "request_uri"));
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn pushed_authorization(mut self, on: bool) -> Self {
        self.par = on;
        self
    }

    /// Where authorization requests are pushed, if they are: the app asked
    /// for it or the provider requires it.
    ///
    /// # Errors
    /// [`Error::Config`] when they must be pushed and the provider has no
    /// pushed authorization request endpoint.
    pub(super) fn par_endpoint(&self) -> Result<Option<&str>> {
        let extra = self.provider.extra();
        let required = extra.require_pushed_authorization_requests == Some(true);
        if !(self.par || required) {
            return Ok(None);
        }
        match extra.pushed_authorization_request_endpoint.as_deref() {
            Some(endpoint) => Ok(Some(endpoint)),
            None => Err(Error::Config(format!(
                "{} pushed authorization requests, and the provider has no pushed_authorization_request_endpoint",
                if required {
                    "the provider requires"
                } else {
                    "the client asks for"
                }
            ))),
        }
    }

    /// Pushes `request`'s parameters (RFC 9126 §2) with the client's
    /// authentication and replaces its URL with the one the browser opens:
    /// `client_id` and the `request_uri` the provider answered with.
    pub(super) async fn push(
        &self,
        endpoint: &str,
        request: &mut AuthorizationRequest,
    ) -> Result<()> {
        let pairs: Vec<(String, String)> = request
            .url
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let form: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let answer = post_form(
            &self.provider,
            endpoint,
            &self.client_id,
            self.credential(),
            &form,
            None,
            None,
        )
        .await?;
        if !(200..300).contains(&answer.status) {
            return Err(parse_error_response(answer.status, &answer.body));
        }
        #[derive(serde::Deserialize)]
        struct Pushed {
            request_uri: String,
        }
        let pushed: Pushed = serde_json::from_slice(&answer.body).map_err(|e| Error::Parse {
            message: format!("pushed authorization response: {e}"),
            body: String::new(),
            status: Some(answer.status),
        })?;
        let mut url = self
            .provider
            .metadata()
            .authorization_endpoint()
            .url()
            .clone();
        url.query_pairs_mut()
            .append_pair("client_id", &self.client_id)
            .append_pair("request_uri", &pushed.request_uri);
        request.url = url;
        Ok(())
    }
}
