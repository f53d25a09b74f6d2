//! Opening a connection: TCP, TLS for `wss://`, the WebSocket handshake,
//! and the handshake request that carries the token.

use std::sync::Arc;

use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{
    HeaderValue,
    header::{AUTHORIZATION, SEC_WEBSOCKET_PROTOCOL},
};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::client::{TokenTransport, scrub};
use crate::error::{Result, TokenError};
use crate::token::BearerToken;

/// An open connection.
pub(crate) type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The TLS configuration for `wss://` without [`crate::Builder::tls_config`]: the
/// platform's root certificates and the aws-lc-rs provider, built once per
/// process (not per attempt: a reconnect storm over `wss://` would parse
/// the roots a thousand times). Naming the provider keeps it working in an
/// app whose dependency graph also enables ring.
fn platform_tls() -> std::result::Result<Arc<rustls::ClientConfig>, String> {
    static CONFIG: std::sync::OnceLock<std::result::Result<Arc<rustls::ClientConfig>, String>> =
        std::sync::OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            let found = rustls_native_certs::load_native_certs();
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err("no usable root certificates on this machine".to_owned());
            }
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .with_root_certificates(roots)
                .with_no_client_auth();
            Ok(Arc::new(config))
        })
        .clone()
}

/// Opens one connection: TCP without Nagle's delay, TLS for `wss://`
/// (with the app's config, else the platform's roots), the handshake.
pub(crate) async fn open(
    request: tungstenite::handshake::client::Request,
    tls: Option<Arc<rustls::ClientConfig>>,
    read_buffer: usize,
) -> std::result::Result<(Socket, tungstenite::handshake::client::Response), tungstenite::Error> {
    let tls = match tls {
        Some(tls) => Some(tls),
        None if request.uri().scheme_str() == Some("wss") => {
            Some(platform_tls().map_err(|e| tungstenite::Error::Io(std::io::Error::other(e)))?)
        }
        None => None,
    };
    let connector = tls.map(tokio_tungstenite::Connector::Rustls);
    let config = tungstenite::protocol::WebSocketConfig::default().read_buffer_size(read_buffer);
    tokio_tungstenite::connect_async_tls_with_config(request, Some(config), true, connector).await
}

/// The handshake request for one attempt: the token in the header
/// (`Authorization: Bearer`, marked sensitive), the subprotocol header
/// (`PROTOCOL, TOKEN`, marked sensitive) or the query (`NAME=TOKEN`, on a
/// copy of the URL).
pub(crate) fn request(
    url: &str,
    transport: &TokenTransport,
    token: &BearerToken,
) -> Result<tungstenite::handshake::client::Request, TokenError> {
    let invalid = || TokenError::Unavailable("the token is not a valid header value".to_owned());
    let mut request = match transport {
        TokenTransport::QueryParameter { name } => {
            let mut with_token = url::Url::parse(url)
                .map_err(|e| TokenError::Unavailable(format!("bad request: {e}")))?;
            with_token
                .query_pairs_mut()
                .append_pair(name, token.secret());
            with_token.as_str().into_client_request()
        }
        TokenTransport::Header | TokenTransport::Subprotocol { .. } => url.into_client_request(),
    }
    // The error names the URL without the token (the request was not built).
    .map_err(|e| TokenError::Unavailable(scrub(&format!("bad request: {e}"), token)))?;
    let (name, text) = match transport {
        TokenTransport::Header => (AUTHORIZATION, format!("Bearer {}", token.secret())),
        TokenTransport::Subprotocol { protocol } => {
            let secret = token.secret();
            if secret.is_empty() || secret.contains([',', ' ', '\t']) {
                return Err(invalid());
            }
            (SEC_WEBSOCKET_PROTOCOL, format!("{protocol}, {secret}"))
        }
        TokenTransport::QueryParameter { .. } => return Ok(request),
    };
    let mut value = HeaderValue::from_str(&text).map_err(|_| invalid())?;
    value.set_sensitive(true);
    request.headers_mut().insert(name, value);
    Ok(request)
}

/// With [`TokenTransport::Subprotocol`], the server must have chosen the
/// protocol (tungstenite already checked it chose one of the two values).
pub(crate) fn chosen_protocol(
    transport: &TokenTransport,
    response: &tungstenite::handshake::client::Response,
) -> std::result::Result<(), String> {
    let TokenTransport::Subprotocol { protocol } = transport else {
        return Ok(());
    };
    let chosen = response.headers().get(SEC_WEBSOCKET_PROTOCOL);
    if chosen.is_some_and(|v| v.as_bytes() == protocol.as_bytes()) {
        Ok(())
    } else {
        Err(format!(
            "the server did not choose the subprotocol {protocol:?}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_is_sensitive() {
        let header = TokenTransport::Header;
        let built =
            request("ws://127.0.0.1:1/ws", &header, &BearerToken::new("t0k")).expect("request");
        let value = built.headers().get(AUTHORIZATION).expect("header");
        assert!(value.is_sensitive());
        assert_eq!(value.as_bytes(), b"Bearer t0k");
        assert!(request("ws://127.0.0.1:1/ws", &header, &BearerToken::new("a\nb")).is_err());
    }

    #[test]
    fn the_subprotocol_carries_the_protocol_then_the_token() {
        let transport = TokenTransport::subprotocol("bearer");
        let built =
            request("ws://127.0.0.1:1/ws", &transport, &BearerToken::new("t0k")).expect("request");
        assert!(built.headers().get(AUTHORIZATION).is_none());
        let value = built.headers().get(SEC_WEBSOCKET_PROTOCOL).expect("header");
        assert!(value.is_sensitive());
        assert_eq!(value.as_bytes(), b"bearer, t0k");
        for bad in ["a,b", "a b", ""] {
            assert!(request("ws://127.0.0.1:1/ws", &transport, &BearerToken::new(bad)).is_err());
        }
    }

    #[test]
    fn the_query_parameter_is_added_to_a_copy_of_the_url() {
        let transport = TokenTransport::query_parameter("access_token");
        let url = "ws://127.0.0.1:1/ws?room=a";
        let built = request(url, &transport, &BearerToken::new("t0k+/=")).expect("request");
        assert_eq!(
            built.uri().to_string(),
            "ws://127.0.0.1:1/ws?room=a&access_token=t0k%2B%2F%3D"
        );
        assert!(built.headers().get(AUTHORIZATION).is_none());
    }
}
