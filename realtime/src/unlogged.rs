//! Writing the in-band `auth` message, which holds the token, past
//! tungstenite: tungstenite logs each frame it writes at `log` TRACE with
//! its payload (`Sending frame: {frame:?}`, the payload as text, in
//! `protocol/mod.rs`; `writing frame {frame}`, the payload in hex, in
//! `protocol/frame/mod.rs`). Here the frame is built and masked, then
//! written to the socket underneath tungstenite, between whole frames.

use futures_util::SinkExt;
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::{self, Message};

use crate::handshake::Socket;

/// Sends `text` as one masked text frame that tungstenite never sees.
///
/// A write cut short (by a timeout) leaves half a frame on the socket:
/// the caller drops the connection then.
pub(crate) async fn send_text(socket: &mut Socket, text: String) -> tungstenite::Result<()> {
    // What tungstenite holds (a queued pong, say) goes out first, so the
    // frame below starts where a frame ends; tungstenite writes nothing
    // more while this borrows the socket.
    SinkExt::<Message>::flush(socket).await?;
    let mut mask = [0u8; 4];
    // Client frames are masked with a key from a strong source (RFC 6455 5.3).
    rustls::crypto::aws_lc_rs::default_provider()
        .secure_random
        .fill(&mut mask)
        .map_err(|_| std::io::Error::other("no random mask"))?;
    let mut frame = Frame::message(text.into_bytes(), OpCode::Data(Data::Text), true);
    frame.header_mut().mask = Some(mask);
    let mut bytes = Vec::with_capacity(frame.len());
    frame.format(&mut bytes)?;
    let raw = socket.get_mut();
    raw.write_all(&bytes).await?;
    raw.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;
    use tokio::net::{TcpListener, TcpStream};
    use tokio_tungstenite::MaybeTlsStream;
    use tokio_tungstenite::WebSocketStream;
    use tokio_tungstenite::tungstenite::protocol::Role;

    use super::*;

    /// A server reads the frame, masked as a client's must be, in order
    /// between tungstenite's own frames.
    #[tokio::test]
    async fn the_frame_is_a_masked_text_frame_between_the_others() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.expect("accept");
            let mut ws = WebSocketStream::from_raw_socket(tcp, Role::Server, None).await;
            let mut texts = Vec::new();
            while texts.len() < 3 {
                // A server refuses unmasked frames from a client.
                let message = ws.next().await.expect("open").expect("valid frame");
                if let Message::Text(text) = message {
                    texts.push(text.to_string());
                }
            }
            texts
        });
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let mut socket =
            WebSocketStream::from_raw_socket(MaybeTlsStream::Plain(tcp), Role::Client, None).await;
        socket.send(Message::text("before")).await.expect("send");
        send_text(&mut socket, r#"{"type":"auth","token":"t0k"}"#.to_owned())
            .await
            .expect("send unlogged");
        socket.send(Message::text("after")).await.expect("send");
        let texts = server.await.expect("server");
        assert_eq!(
            texts,
            ["before", r#"{"type":"auth","token":"t0k"}"#, "after"]
        );
    }
}
