//! No Nagle delay on the client's side: every socket the client opens, under
//! `ws://` and under `wss://`, has `TCP_NODELAY` set (checked on the very
//! socket `handshake::open` returns), so a small frame that closely follows
//! another is written at once instead of waiting for the peer's ACK (under
//! 300 ms of latency, the difference between ~0.31 s and ~0.6 s).

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::MaybeTlsStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::handshake::{open, request};
use crate::options::TokenTransport;
use crate::token::BearerToken;

const LIMIT: Duration = Duration::from_secs(10);

fn self_signed() -> (CertificateDer<'static>, TlsAcceptor) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).expect("certificate");
    let cert = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .expect("server config");
    (cert, TlsAcceptor::from(Arc::new(config)))
}

fn trusting(cert: CertificateDer<'static>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).expect("root");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

#[tokio::test]
async fn ws_and_wss_sockets_are_opened_without_nagle() {
    // ws://
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        tokio_tungstenite::accept_async(tcp)
            .await
            .expect("handshake")
    });
    let built = request(
        &format!("ws://{addr}/ws"),
        &TokenTransport::Header,
        &BearerToken::new("t"),
        None,
    )
    .expect("request");
    let (socket, _) = open(built, None, WebSocketConfig::default(), LIMIT)
        .await
        .expect("open");
    let MaybeTlsStream::Plain(tcp) = socket.get_ref() else {
        panic!("ws:// is plain TCP");
    };
    assert!(tcp.nodelay().expect("nodelay"), "ws:// without TCP_NODELAY");
    let _server_side = server.await.expect("server");

    // wss://
    let (cert, acceptor) = self_signed();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        let tls = acceptor.accept(tcp).await.expect("TLS");
        tokio_tungstenite::accept_async(tls)
            .await
            .expect("handshake")
    });
    let built = request(
        &format!("wss://127.0.0.1:{port}/ws"),
        &TokenTransport::Header,
        &BearerToken::new("t"),
        None,
    )
    .expect("request");
    let (socket, _) = open(
        built,
        Some(trusting(cert)),
        WebSocketConfig::default(),
        LIMIT,
    )
    .await
    .expect("open");
    let MaybeTlsStream::Rustls(tls) = socket.get_ref() else {
        panic!("wss:// is TLS");
    };
    assert!(
        tls.get_ref().0.nodelay().expect("nodelay"),
        "wss:// without TCP_NODELAY"
    );
    let _server_side = server.await.expect("server");
}
