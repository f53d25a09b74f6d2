//! The HTTP client every request of the SDK goes through: our own `reqwest`
//! 0.13 (rustls, one TLS backend), no redirects for OAuth calls, a timeout,
//! and the adapter that lets openidconnect use it.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use openidconnect::{AsyncHttpClient, HttpRequest, HttpResponse};

/// An HTTP client for OAuth and OpenID Connect calls: follows no redirects,
/// times out, and can be shared (cloning is cheap).
#[derive(Debug, Clone)]
pub struct HttpClient {
    inner: reqwest::Client,
}

impl HttpClient {
    /// A client with a 30 s timeout.
    pub fn new() -> crate::Result<Self> {
        Self::with_timeout(Duration::from_secs(30))
    }

    /// A client with the given timeout per request.
    pub fn with_timeout(timeout: Duration) -> crate::Result<Self> {
        let inner = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("sessionkit/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| crate::Error::Config(format!("HTTP client: {e}")))?;
        Ok(Self { inner })
    }

    /// Wraps a client the app built (it should not follow redirects).
    pub fn from_reqwest(inner: reqwest::Client) -> Self {
        Self { inner }
    }

    /// The underlying `reqwest` client.
    pub fn reqwest(&self) -> &reqwest::Client {
        &self.inner
    }
}

impl<'c> AsyncHttpClient<'c> for HttpClient {
    type Error = reqwest::Error;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, reqwest::Error>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(async move {
            let response = self
                .inner
                .execute(reqwest::Request::try_from(request)?)
                .await?;
            let mut out = HttpResponse::new(Vec::new());
            *out.status_mut() = response.status();
            *out.headers_mut() = response.headers().clone();
            *out.body_mut() = response.bytes().await?.to_vec();
            Ok(out)
        })
    }
}

/// Maps a transport error to the crate's error, without the URL's query.
pub(crate) fn network(err: reqwest::Error) -> crate::Error {
    crate::Error::Network(crate::error::NetworkError::from_reqwest(err))
}
