//! `wss://` against a TLS server with a self-signed certificate: trusted
//! through [`sessionkit_realtime::Builder::tls_config`], refused without.

use std::sync::Arc;
use std::time::Duration;

use sessionkit_realtime::rustls::{
    ClientConfig, RootCertStore, ServerConfig,
    pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer},
};
use sessionkit_realtime::{Backoff, Incoming, RealtimeClient, ReconnectReason, State};
use tokio::time::timeout;
use tokio_rustls::TlsAcceptor;

use crate::support::scripted::{Scripted, accept};
use crate::support::{Rotating, is_connected, wait_for};

/// A self-signed certificate for 127.0.0.1 and the acceptor serving it.
fn self_signed() -> (CertificateDer<'static>, TlsAcceptor) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .expect("certificate");
    let cert = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .expect("server config");
    (cert, TlsAcceptor::from(Arc::new(config)))
}

fn trusting(cert: CertificateDer<'static>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(cert).expect("root");
    Arc::new(
        ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

#[tokio::test]
async fn wss_with_a_trusted_self_signed_certificate_connects() {
    let (cert, acceptor) = self_signed();
    let mut server = Scripted::start().await;
    let url = format!("wss://127.0.0.1:{}/ws", server.addr.port());
    let (client, mut incoming) = RealtimeClient::builder(url)
        .backoff(Backoff::new(
            Duration::from_secs(3600),
            2.0,
            Duration::from_secs(3600),
        ))
        .tls_config(trusting(cert))
        .build(Rotating::new())
        .expect("client");

    let tls = acceptor
        .accept(server.next_tcp().await)
        .await
        .expect("TLS handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), None);
    let mut conn = accept(tls).await.expect("WebSocket handshake");
    assert_eq!(conn.token.as_deref(), Some("tok-0"));
    let mut state = client.state();
    assert_eq!(
        wait_for(&mut state, is_connected).await,
        State::Connected { generation: 1 }
    );

    client.send("over TLS").await.expect("send");
    assert_eq!(conn.recv_text().await, "over TLS");
    conn.send_text("back over TLS").await;
    assert_eq!(
        timeout(Duration::from_secs(5), incoming.recv())
            .await
            .expect("message"),
        Some(Incoming::Text("back over TLS".to_owned()))
    );
    client.shutdown().await;
}

#[tokio::test]
async fn wss_with_an_untrusted_certificate_fails_the_attempt() {
    let (_cert, acceptor) = self_signed();
    let other = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()])
        .expect("certificate")
        .cert
        .der()
        .clone();
    let mut server = Scripted::start().await;
    let url = format!("wss://127.0.0.1:{}/ws", server.addr.port());
    // Trusts another certificate only.
    let (client, _incoming) = RealtimeClient::builder(url)
        .backoff(Backoff::new(
            Duration::from_secs(3600),
            2.0,
            Duration::from_secs(3600),
        ))
        .tls_config(trusting(other))
        .build(Rotating::new())
        .expect("client");

    let refused = acceptor.accept(server.next_tcp().await).await;
    assert!(refused.is_err());
    let mut state = client.state();
    let reconnecting = wait_for(&mut state, |s| matches!(s, State::Reconnecting { .. })).await;
    let State::Reconnecting {
        reason: ReconnectReason::Transport(why),
        ..
    } = reconnecting
    else {
        panic!("{reconnecting:?}");
    };
    assert!(why.to_lowercase().contains("certificate"), "{why}");
    client.shutdown().await;
}

/// Without `tls_config` the platform's roots are used (built once, with the
/// aws-lc-rs provider named): a self-signed server is refused cleanly, on
/// every attempt, and the client keeps running.
#[tokio::test]
async fn wss_without_a_tls_config_uses_the_platform_roots_and_refuses_a_self_signed_server() {
    let (_cert, acceptor) = self_signed();
    let mut server = Scripted::start().await;
    let url = format!("wss://127.0.0.1:{}/ws", server.addr.port());
    let (client, _incoming) = RealtimeClient::builder(url)
        .backoff(Backoff::new(
            Duration::from_millis(10),
            2.0,
            Duration::from_millis(20),
        ))
        .build(Rotating::new())
        .expect("client");
    // Every TCP connection gets the TLS handshake of the self-signed server
    // (a machine without root certificates fails before connecting).
    let handshakes = tokio::spawn(async move {
        loop {
            let tcp = server.next_tcp().await;
            assert!(acceptor.accept(tcp).await.is_err());
        }
    });
    let mut state = client.state();
    for attempt in 1..=2 {
        let reconnecting = wait_for(
            &mut state,
            |s| matches!(s, State::Reconnecting { attempt: a, .. } if *a >= attempt),
        )
        .await;
        let State::Reconnecting {
            reason: ReconnectReason::Transport(why),
            ..
        } = reconnecting
        else {
            panic!("{reconnecting:?}");
        };
        let why = why.to_lowercase();
        assert!(
            why.contains("certificate"),
            "refused for its certificate (or for having no roots): {why}"
        );
    }
    client.shutdown().await;
    handshakes.abort();
}
