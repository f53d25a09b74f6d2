//! Opening a connection: TCP, TLS for `wss://`, and the client side of the
//! WebSocket opening handshake (RFC 6455 §4.1), done here rather than by
//! tungstenite: tungstenite writes every handshake request it sends,
//! headers and query included, to a `log` TRACE record
//! (`tungstenite::handshake::client`), and the request carries the token.
//! Here the request goes straight to the socket and into no log record;
//! tungstenite takes the socket over once the server has switched protocols.
//!
//! Why one file of ~720 lines: the request, the answer's checks and the
//! socket handover are one protocol step; a third of the file is their
//! unit tests, one per rule of RFC 6455 §4.1 that the answer must keep.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::http::{
    self, HeaderMap, HeaderName, HeaderValue, StatusCode, Version,
    header::{
        AUTHORIZATION, CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_EXTENSIONS,
        SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_PROTOCOL, UPGRADE,
    },
};
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::dpop;
use crate::driver::scrub;
use crate::error::{Result, TokenError};
use crate::options::TokenTransport;
use crate::token::BearerToken;

/// An open connection.
pub(crate) type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The head of the server's answer to the handshake.
pub(crate) type Response = http::Response<()>;

/// The longest response head read (status line and headers).
const MAX_HEAD: usize = 16 * 1024;

/// The DPoP proof's header (RFC 9449 §4.1).
const DPOP: HeaderName = HeaderName::from_static("dpop");

/// The most response headers parsed.
const MAX_HEADERS: usize = 64;

/// Why [`open`] produced no connection. No variant holds the token.
#[derive(Debug)]
pub(crate) enum OpenError {
    /// The server answered the handshake with this status instead of 101
    /// (401: it refused the token).
    Status {
        /// The HTTP status.
        status: u16,
        /// The answer's `DPoP-Nonce`, if it had a usable one.
        nonce: Option<String>,
        /// Its `WWW-Authenticate: DPoP` challenge, if it had one.
        challenge: Option<crate::challenge::Challenge>,
    },
    /// TCP, TLS and the handshake took longer than the connect limit.
    TimedOut,
    /// The connection failed: TCP, TLS, a read or a write.
    Io(std::io::Error),
    /// The URL cannot be dialled, or the answer is not a WebSocket upgrade.
    Protocol(&'static str),
}

impl OpenError {
    /// The server refused the token (401 at the handshake).
    pub(crate) fn is_unauthorized(&self) -> bool {
        matches!(self, Self::Status { status: 401, .. })
    }

    /// The host refused the TCP connection (a reset in answer to the SYN:
    /// nothing listens on that port).
    pub(crate) fn is_refused(&self) -> bool {
        matches!(self, Self::Io(e) if e.kind() == std::io::ErrorKind::ConnectionRefused)
    }
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Status { status, .. } => {
                write!(f, "the handshake was answered with HTTP {status}")
            }
            Self::TimedOut => f.write_str("connect timed out"),
            Self::Io(e) => write!(f, "{e}"),
            Self::Protocol(why) => f.write_str(why),
        }
    }
}

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

/// Opens one connection within `limit`: TCP without Nagle's delay, TLS for
/// `wss://` (with the app's config, else the platform's roots), the
/// handshake, then a WebSocket reading through `read_buffer` bytes.
pub(crate) async fn open(
    request: Request,
    tls: Option<Arc<rustls::ClientConfig>>,
    config: WebSocketConfig,
    limit: Duration,
) -> std::result::Result<(Socket, Response), OpenError> {
    timeout(limit, connect(request, tls, config))
        .await
        .map_err(|_| OpenError::TimedOut)?
}

async fn connect(
    request: Request,
    tls: Option<Arc<rustls::ClientConfig>>,
    config: WebSocketConfig,
) -> std::result::Result<(Socket, Response), OpenError> {
    let uri = request.uri();
    let secure = match uri.scheme_str() {
        Some("wss") => true,
        Some("ws") => false,
        _ => {
            return Err(OpenError::Protocol(
                "only ws:// and wss:// URLs can be opened",
            ));
        }
    };
    let host = uri
        .host()
        .ok_or(OpenError::Protocol("the URL has no host"))?;
    // `[::1]` in a URL, `::1` for a socket address and a TLS server name.
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
    let tls = match (secure, tls) {
        (false, _) => None,
        (true, Some(tls)) => Some(tls),
        (true, None) => Some(platform_tls().map_err(|e| OpenError::Io(std::io::Error::other(e)))?),
    };
    let (head, accept) = head(&request)?;

    let tcp = TcpStream::connect((host, port))
        .await
        .map_err(OpenError::Io)?;
    tcp.set_nodelay(true).map_err(OpenError::Io)?;
    let mut stream = match tls {
        None => MaybeTlsStream::Plain(tcp),
        Some(config) => {
            let name = rustls::pki_types::ServerName::try_from(host.to_owned())
                .map_err(|_| OpenError::Protocol("the host is not a valid TLS server name"))?;
            let tls = TlsConnector::from(config).connect(name, tcp).await;
            MaybeTlsStream::Rustls(tls.map_err(OpenError::Io)?)
        }
    };
    stream.write_all(&head).await.map_err(OpenError::Io)?;
    stream.flush().await.map_err(OpenError::Io)?;
    let (response, rest) = read_head(&mut stream).await?;
    verify(&response, &accept, &offered(request.headers()))?;
    // Frames the server sent right behind its answer are in `rest`.
    let socket =
        WebSocketStream::from_partially_read(stream, rest, Role::Client, Some(config)).await;
    Ok((socket, response))
}

/// The request as it goes on the wire, and the `Sec-WebSocket-Accept`
/// value that answers its key. Header names are written in their usual
/// case (`Sec-WebSocket-Key`), for servers that compare them with case.
fn head(request: &Request) -> std::result::Result<(Vec<u8>, String), OpenError> {
    let key = request
        .headers()
        .get(SEC_WEBSOCKET_KEY)
        .ok_or(OpenError::Protocol("the request has no Sec-WebSocket-Key"))?;
    let accept = derive_accept_key(key.as_bytes());
    let target = request
        .uri()
        .path_and_query()
        .map_or("/", http::uri::PathAndQuery::as_str);
    let mut head = Vec::with_capacity(512);
    head.extend_from_slice(b"GET ");
    head.extend_from_slice(target.as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in request.headers() {
        head.extend_from_slice(usual_case(name).as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    Ok((head, accept))
}

/// `sec-websocket-key` as `Sec-WebSocket-Key`, `host` as `Host`, `dpop`
/// as `DPoP`.
fn usual_case(name: &HeaderName) -> String {
    let words: Vec<String> = name
        .as_str()
        .split('-')
        .map(|word| match word {
            "websocket" => "WebSocket".to_owned(),
            "dpop" => "DPoP".to_owned(),
            _ => {
                let mut chars = word.chars();
                chars.next().map_or_else(String::new, |first| {
                    first.to_ascii_uppercase().to_string() + chars.as_str()
                })
            }
        })
        .collect();
    words.join("-")
}

/// Reads the server's answer up to the end of its head (a 101 has no body;
/// any other status ends the attempt). Returns the head and the bytes read
/// past it.
async fn read_head<S: AsyncRead + Unpin>(
    stream: &mut S,
) -> std::result::Result<(Response, Vec<u8>), OpenError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await.map_err(OpenError::Io)?;
        if n == 0 {
            return Err(OpenError::Protocol(
                "the server closed the connection during the handshake",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some((len, response)) = parse_head(&buf)? {
            return Ok((response, buf.split_off(len)));
        }
        if buf.len() > MAX_HEAD {
            return Err(OpenError::Protocol(
                "the handshake response head is too long",
            ));
        }
    }
}

/// The response head at the start of `buf` and its length, or `None`
/// while it is incomplete.
fn parse_head(buf: &[u8]) -> std::result::Result<Option<(usize, Response)>, OpenError> {
    let bad = OpenError::Protocol("the handshake response is not valid HTTP/1.1");
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut headers);
    let len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(OpenError::Protocol(
                "the handshake response has too many headers",
            ));
        }
        Err(_) => return Err(bad),
    };
    let status = parsed.code.and_then(|code| StatusCode::from_u16(code).ok());
    let mut response = Response::new(());
    *response.status_mut() = status.ok_or(bad)?;
    *response.version_mut() = match parsed.version {
        Some(1) => Version::HTTP_11,
        _ => Version::HTTP_10,
    };
    for header in parsed.headers.iter() {
        let name = HeaderName::from_bytes(header.name.as_bytes());
        let value = HeaderValue::from_bytes(header.value);
        let (Ok(name), Ok(value)) = (name, value) else {
            return Err(OpenError::Protocol(
                "the handshake response has an invalid header",
            ));
        };
        response.headers_mut().append(name, value);
    }
    Ok(Some((len, response)))
}

/// The subprotocols the request offers.
fn offered(headers: &HeaderMap) -> Vec<&str> {
    headers
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect()
}

/// Checks the server's answer as RFC 6455 §4.1 asks of a client: 101,
/// `Upgrade: websocket`, `Connection: Upgrade`, the accept key, no
/// extension (none is offered), a subprotocol only among those `offered`.
/// No error names a header's value (a subprotocol may be the token).
fn verify(
    response: &Response,
    accept: &str,
    offered: &[&str],
) -> std::result::Result<(), OpenError> {
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Err(OpenError::Status {
            status: response.status().as_u16(),
            nonce: dpop::nonce_of(response.headers()),
            challenge: crate::challenge::challenge(response.headers()),
        });
    }
    if response.version() != Version::HTTP_11 {
        return Err(OpenError::Protocol(
            "the handshake response is not HTTP/1.1",
        ));
    }
    let headers = response.headers();
    if !has_token(headers, &UPGRADE, "websocket") {
        return Err(OpenError::Protocol(
            "the handshake response lacks Upgrade: websocket",
        ));
    }
    if !has_token(headers, &CONNECTION, "upgrade") {
        return Err(OpenError::Protocol(
            "the handshake response lacks Connection: Upgrade",
        ));
    }
    if headers.get(SEC_WEBSOCKET_ACCEPT).map(HeaderValue::as_bytes) != Some(accept.as_bytes()) {
        return Err(OpenError::Protocol(
            "the Sec-WebSocket-Accept does not match the key",
        ));
    }
    if headers.contains_key(SEC_WEBSOCKET_EXTENSIONS) {
        return Err(OpenError::Protocol(
            "the server chose an extension that was not offered",
        ));
    }
    let mut chosen = headers.get_all(SEC_WEBSOCKET_PROTOCOL).iter();
    match (chosen.next(), chosen.next()) {
        (None, _) => Ok(()),
        (Some(one), None) if offered.iter().any(|o| o.as_bytes() == one.as_bytes()) => Ok(()),
        _ => Err(OpenError::Protocol(
            "the server chose a subprotocol that was not offered",
        )),
    }
}

/// Whether a comma-separated header holds `token`, in any case.
fn has_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// The handshake request for one attempt: the token in the header
/// (`Authorization: Bearer`, marked sensitive), the subprotocol header
/// (`PROTOCOL, TOKEN`, marked sensitive) or the query (`NAME=TOKEN`, on a
/// copy of the URL). With a DPoP `proof` (header transport only; the
/// caller refuses the others): `Authorization: DPoP TOKEN` and
/// `DPoP: PROOF`, both marked sensitive.
pub(crate) fn request(
    url: &str,
    transport: &TokenTransport,
    token: &BearerToken,
    proof: Option<&str>,
) -> Result<Request, TokenError> {
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
    let (name, text) = match (transport, proof) {
        (TokenTransport::Header, None) => (AUTHORIZATION, format!("Bearer {}", token.secret())),
        (TokenTransport::Header, Some(proof)) => {
            let mut value = HeaderValue::from_str(proof).map_err(|_| {
                TokenError::Unavailable("the DPoP proof is not a valid header value".to_owned())
            })?;
            value.set_sensitive(true);
            request.headers_mut().insert(DPOP, value);
            (AUTHORIZATION, format!("DPoP {}", token.secret()))
        }
        (TokenTransport::Subprotocol { .. } | TokenTransport::QueryParameter { .. }, Some(_)) => {
            return Err(TokenError::Unavailable(
                "a DPoP proof needs the Authorization header (TokenTransport::Header)".to_owned(),
            ));
        }
        (TokenTransport::Subprotocol { protocol }, None) => {
            let secret = token.secret();
            if secret.is_empty() || secret.contains([',', ' ', '\t']) {
                return Err(invalid());
            }
            (SEC_WEBSOCKET_PROTOCOL, format!("{protocol}, {secret}"))
        }
        (TokenTransport::QueryParameter { .. }, None) => return Ok(request),
    };
    let mut value = HeaderValue::from_str(&text).map_err(|_| invalid())?;
    value.set_sensitive(true);
    request.headers_mut().insert(name, value);
    Ok(request)
}

/// With [`TokenTransport::Subprotocol`], the server must have chosen the
/// protocol ([`open`] already checked it chose one of the two values).
pub(crate) fn chosen_protocol(
    transport: &TokenTransport,
    response: &Response,
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
        let built = request(
            "ws://127.0.0.1:1/ws",
            &header,
            &BearerToken::new("t0k"),
            None,
        )
        .expect("request");
        let value = built.headers().get(AUTHORIZATION).expect("header");
        assert!(value.is_sensitive());
        assert_eq!(value.as_bytes(), b"Bearer t0k");
        assert!(
            request(
                "ws://127.0.0.1:1/ws",
                &header,
                &BearerToken::new("a\nb"),
                None
            )
            .is_err()
        );
    }

    #[test]
    fn a_dpop_proof_changes_the_scheme_and_both_headers_are_sensitive() {
        let header = TokenTransport::Header;
        let token = BearerToken::new("t0k");
        let built =
            request("ws://127.0.0.1:1/ws?room=a", &header, &token, Some("p.r.f")).expect("request");
        let authorization = built.headers().get(AUTHORIZATION).expect("authorization");
        assert_eq!(authorization.as_bytes(), b"DPoP t0k");
        assert!(authorization.is_sensitive());
        let proof = built.headers().get("DPoP").expect("proof");
        assert_eq!(proof.as_bytes(), b"p.r.f");
        assert!(proof.is_sensitive());
        assert_eq!(built.headers().get_all("dpop").iter().count(), 1);
        // On the wire with the usual case.
        let (head, _) = head(&built).expect("head");
        let head = String::from_utf8(head).expect("text");
        assert!(head.contains("\r\nAuthorization: DPoP t0k\r\n"), "{head}");
        assert!(head.contains("\r\nDPoP: p.r.f\r\n"), "{head}");
        // A proof that is no header value, and the transports without a header.
        assert!(request("ws://127.0.0.1:1/ws", &header, &token, Some("a\nb")).is_err());
        for transport in [
            TokenTransport::subprotocol("bearer"),
            TokenTransport::query_parameter("access_token"),
        ] {
            assert!(request("ws://127.0.0.1:1/ws", &transport, &token, Some("p")).is_err());
        }
    }

    #[test]
    fn a_refusal_keeps_the_dpop_nonce_and_the_challenge() {
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let accept = derive_accept_key(key.as_bytes());
        let refused = verify(
            &parsed(
                "HTTP/1.1 401 Unauthorized\r\nDPoP-Nonce: n-1\r\n\
                 WWW-Authenticate: DPoP error=\"use_dpop_nonce\"\r\n\r\n",
            ),
            &accept,
            &[],
        );
        match refused {
            Err(OpenError::Status {
                status: 401,
                nonce: Some(nonce),
                challenge: Some(challenge),
            }) => {
                assert_eq!(nonce, "n-1");
                assert!(challenge.asks_for_nonce());
            }
            other => panic!("{other:?}"),
        }
        let other = verify(
            &parsed(
                "HTTP/1.1 401 Unauthorized\r\n\
                 WWW-Authenticate: DPoP error=\"invalid_dpop_proof\"\r\n\r\n",
            ),
            &accept,
            &[],
        );
        assert!(
            matches!(
                other,
                Err(OpenError::Status {
                    status: 401,
                    nonce: None,
                    challenge: Some(ref c),
                }) if !c.asks_for_nonce()
            ),
            "{other:?}"
        );
    }

    #[test]
    fn the_subprotocol_carries_the_protocol_then_the_token() {
        let transport = TokenTransport::subprotocol("bearer");
        let built = request(
            "ws://127.0.0.1:1/ws",
            &transport,
            &BearerToken::new("t0k"),
            None,
        )
        .expect("request");
        assert!(built.headers().get(AUTHORIZATION).is_none());
        let value = built.headers().get(SEC_WEBSOCKET_PROTOCOL).expect("header");
        assert!(value.is_sensitive());
        assert_eq!(value.as_bytes(), b"bearer, t0k");
        for bad in ["a,b", "a b", ""] {
            assert!(
                request(
                    "ws://127.0.0.1:1/ws",
                    &transport,
                    &BearerToken::new(bad),
                    None
                )
                .is_err()
            );
        }
    }

    #[test]
    fn the_query_parameter_is_added_to_a_copy_of_the_url() {
        let transport = TokenTransport::query_parameter("access_token");
        let url = "ws://127.0.0.1:1/ws?room=a";
        let built = request(url, &transport, &BearerToken::new("t0k+/="), None).expect("request");
        assert_eq!(
            built.uri().to_string(),
            "ws://127.0.0.1:1/ws?room=a&access_token=t0k%2B%2F%3D"
        );
        assert!(built.headers().get(AUTHORIZATION).is_none());
    }

    /// The answer a server gives to a request with `key`, with `extra` headers.
    fn answer(key: &str, extra: &str) -> String {
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n{extra}\r\n",
            derive_accept_key(key.as_bytes())
        )
    }

    fn parsed(head: &str) -> Response {
        parse_head(head.as_bytes())
            .expect("valid")
            .expect("complete")
            .1
    }

    #[test]
    fn the_request_goes_on_the_wire_in_the_usual_case() {
        let transport = TokenTransport::Header;
        let built = request(
            "ws://127.0.0.1:1/ws?room=a",
            &transport,
            &BearerToken::new("t0k"),
            None,
        )
        .expect("request");
        let key = built.headers()[SEC_WEBSOCKET_KEY]
            .to_str()
            .expect("key")
            .to_owned();
        let (head, accept) = head(&built).expect("head");
        let head = String::from_utf8(head).expect("text");
        assert!(head.starts_with("GET /ws?room=a HTTP/1.1\r\n"), "{head}");
        for line in [
            "Host: 127.0.0.1:1",
            "Connection: Upgrade",
            "Upgrade: websocket",
            "Sec-WebSocket-Version: 13",
            &format!("Sec-WebSocket-Key: {key}"),
            "Authorization: Bearer t0k",
        ] {
            assert!(head.contains(&format!("\r\n{line}\r\n")), "{line}: {head}");
        }
        assert!(head.ends_with("\r\n\r\n"));
        assert_eq!(accept, derive_accept_key(key.as_bytes()));
    }

    #[test]
    fn the_answer_must_be_a_websocket_upgrade() {
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let accept = derive_accept_key(key.as_bytes());
        let check = |head: &str, offered: &[&str]| verify(&parsed(head), &accept, offered);
        assert!(check(&answer(key, ""), &[]).is_ok());
        // Tokens in any case, among others.
        let relaxed =
            answer(key, "").replace("Connection: Upgrade", "connection: keep-alive, upgrade");
        assert!(check(&relaxed, &[]).is_ok());

        let refused = check("HTTP/1.1 401 Unauthorized\r\n\r\n", &[]);
        assert!(
            refused.as_ref().is_err_and(OpenError::is_unauthorized),
            "{refused:?}"
        );
        let moved = check("HTTP/1.1 302 Found\r\nLocation: /\r\n\r\n", &[]);
        assert!(
            matches!(moved, Err(OpenError::Status { status: 302, .. })),
            "{moved:?}"
        );

        for bad in [
            answer(key, "").replace("Upgrade: websocket\r\n", ""),
            answer(key, "").replace("Connection: Upgrade\r\n", ""),
            answer("b3RoZXIga2V5IDEyMzQ1Ng==", ""),
            answer(key, "Sec-WebSocket-Extensions: permessage-deflate\r\n"),
            answer(key, "Sec-WebSocket-Protocol: chat\r\n"),
            answer(key, "").replace("HTTP/1.1", "HTTP/1.0"),
        ] {
            let checked = check(&bad, &[]);
            assert!(
                matches!(checked, Err(OpenError::Protocol(_))),
                "{checked:?}"
            );
        }

        let chose = answer(key, "Sec-WebSocket-Protocol: bearer\r\n");
        assert!(check(&chose, &["bearer", "t0k"]).is_ok());
        let wrong = check(&chose, &["other", "t0k"]);
        assert!(matches!(wrong, Err(OpenError::Protocol(_))), "{wrong:?}");
    }

    #[tokio::test]
    async fn a_head_is_read_in_pieces_and_an_endless_one_is_refused() {
        assert!(matches!(parse_head(b"HTTP/1.1 101 Switching"), Ok(None)));
        assert!(matches!(
            parse_head(b"not http\r\n\r\n"),
            Err(OpenError::Protocol(_))
        ));
        let endless = [b"HTTP/1.1 101 OK\r\nX: ".as_slice(), &[b'x'; 2 * MAX_HEAD]].concat();
        let (mut client, mut server) = tokio::io::duplex(64);
        let writer = tokio::spawn(async move { server.write_all(&endless).await });
        let read = read_head(&mut client).await;
        assert!(
            matches!(read, Err(OpenError::Protocol(_))),
            "{:?}",
            read.err()
        );
        drop(client);
        let _ = writer.await;
    }

    #[tokio::test]
    async fn frames_right_behind_the_answer_are_not_lost() {
        use futures_util::StreamExt;
        use tokio_tungstenite::tungstenite::Message;

        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let (mut client, mut server) = tokio::io::duplex(4096);
        // The answer and a first frame (unmasked text "hi"), in one write.
        let mut bytes = answer(key, "").into_bytes();
        bytes.extend_from_slice(&[0x81, 0x02, b'h', b'i']);
        server.write_all(&bytes).await.expect("write");
        let (response, rest) = read_head(&mut client).await.expect("head");
        assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
        assert_eq!(rest, [0x81, 0x02, b'h', b'i']);
        let mut socket =
            WebSocketStream::from_partially_read(client, rest, Role::Client, None).await;
        let first = socket.next().await.expect("a message").expect("valid");
        assert_eq!(first, Message::text("hi"));
        drop(server);
    }
}
