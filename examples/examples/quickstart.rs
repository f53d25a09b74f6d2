//! The README's quick start on the embedded demo: a mock provider and a
//! chat server in this process, on free ports; the provider signs alice in
//! by itself (it plays the browser). Tokens go to the OS keychain under a
//! namespace of their own and are deleted by the logout at the end.
//!
//! `cargo run -p sessionkit-examples --example quickstart`

use sessionkit::LoopbackOptions;
use sessionkit_examples::quickstart::quickstart;
use sessionkit_examples::server::{ChatServer, ServerConfig};
use sessionkit_mock_idp::MockIdp;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let idp = MockIdp::builder().auto_login("alice").start().await?;
    let server = ChatServer::start(ServerConfig::new(idp.issuer())).await?;
    let browser = LoopbackOptions::with_callback(|url| {
        let url = url.to_owned();
        tokio::spawn(async move {
            let _ = reqwest::get(url).await;
        });
    });
    let namespace = format!("sessionkit-quickstart-{}", std::process::id());
    let seen = quickstart(idp.issuer(), &server.ws_url(), &namespace, browser).await?;
    println!("userinfo: {}", seen.me);
    println!("the chat server said: {:?}", seen.hello);
    println!(
        "logout complete: {} (refresh token revoked: {})",
        seen.report.is_complete(),
        seen.report.revoked
    );
    Ok(())
}
