//! The terminal UI in a real terminal: tmux runs `chat`, `send-keys` types,
//! `capture-pane` reads the screen.

use std::time::Duration;

use tokio::process::Command;

use crate::support::{PATIENCE, Stack, User, scratch};

/// A private tmux server (its own socket) with one session running a command.
struct Tmux {
    socket: String,
    target: String,
}

impl Tmux {
    async fn start(script: &std::path::Path) -> Self {
        let socket = format!(
            "sk-chat-{}",
            script
                .parent()
                .and_then(|p| p.file_name())
                .and_then(|n| n.to_str())
                .unwrap_or("t")
        );
        let tmux = Self {
            socket,
            target: "chat".to_owned(),
        };
        let status = Command::new("tmux")
            .args([
                "-L",
                &tmux.socket,
                "-f",
                "/dev/null",
                "new-session",
                "-d",
                "-s",
                &tmux.target,
            ])
            .args(["-x", "84", "-y", "15"])
            .arg(script)
            .status()
            .await
            .expect("tmux runs (apt-get install tmux)");
        assert!(status.success(), "tmux new-session");
        tmux
    }

    async fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket, "capture-pane", "-p", "-t", &self.target])
            .output()
            .await
            .expect("capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    async fn wait_for(&self, needle: &str) -> String {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let screen = self.screen().await;
            if screen.contains(needle) {
                return screen;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the screen never showed {needle:?}; it shows:\n{screen}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn keys(&self, text: &str) {
        let status = Command::new("tmux")
            .args([
                "-L",
                &self.socket,
                "send-keys",
                "-t",
                &self.target,
                "-l",
                text,
            ])
            .status()
            .await
            .expect("send-keys");
        assert!(status.success());
    }

    async fn enter(&self) {
        let status = Command::new("tmux")
            .args(["-L", &self.socket, "send-keys", "-t", &self.target, "Enter"])
            .status()
            .await
            .expect("send-keys");
        assert!(status.success());
    }

    /// Types `/quit` and waits until `chat` has exited.
    async fn quit(&self) {
        self.keys("/quit").await;
        self.enter().await;
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while self.running().await {
            assert!(tokio::time::Instant::now() < deadline, "chat did not quit");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn running(&self) -> bool {
        Command::new("tmux")
            .args(["-L", &self.socket, "has-session", "-t", &self.target])
            .stderr(std::process::Stdio::null())
            .status()
            .await
            .is_ok_and(|s| s.success())
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = std::process::Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// Writes an executable shell script.
fn write_script(path: &std::path::Path, body: &str) {
    std::fs::write(path, body).expect("script");
    let mut perms = std::fs::metadata(path).expect("meta").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(path, perms).expect("chmod");
}

/// A script that runs `chat` (the terminal UI) for `user`.
fn script(user: &User) -> std::path::PathBuf {
    let dir = scratch("tmux");
    let path = dir.join("run-chat.sh");
    let body = format!(
        "#!/bin/sh\nexport HOME='{home}' XDG_CONFIG_HOME='{home}/.config' RUST_LOG=warn\n\
         unset SESSIONKIT_ISSUER SESSIONKIT_SERVER SESSIONKIT_STORE SESSIONKIT_NAMESPACE\n\
         exec '{chat}' --issuer '{issuer}' {servers} --store keyutils --namespace '{ns}'\n",
        home = user.home.display(),
        chat = env!("CARGO_BIN_EXE_chat"),
        issuer = user.issuer,
        servers = user
            .servers
            .iter()
            .map(|s| format!("--server '{s}'"))
            .collect::<Vec<_>>()
            .join(" "),
        ns = user.namespace,
    );
    write_script(&path, &body);
    path
}

/// Whether tmux is here; without it the test says SKIP, unless CI requires it.
fn have_tmux() -> bool {
    if std::process::Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok()
    {
        return true;
    }
    assert!(
        std::env::var_os("SESSIONKIT_REQUIRE_TMUX").is_none(),
        "tmux is required here (apt-get install tmux)"
    );
    println!("SKIP: no tmux on this machine");
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_terminal_ui_shows_the_status_bar_and_a_reconnect() {
    if !have_tmux() {
        return;
    }
    let mut stack = Stack::start(None).await;
    let alice = User::new("alice", &stack);
    alice.login(&stack.idp).await;
    let tmux = Tmux::start(&script(&alice)).await;

    let screen = tmux
        .wait_for("alice │ #general │ connected │ token expires in")
        .await;
    assert!(screen.contains("#general"), "{screen}");
    tmux.keys("hello from a terminal").await;
    tmux.enter().await;
    tmux.wait_for("[1] alice: hello from a terminal").await;

    // The server goes away: the status bar says so and counts down.
    stack.stop_server().await;
    let screen = tmux.wait_for("reconnecting in").await;
    assert!(
        screen.contains("Connection lost: "),
        "the reason is shown: {screen}"
    );
    println!("--- while the server is down ---\n{screen}");
    stack.start_server().await;
    let screen = tmux.wait_for("Reconnected").await;
    assert!(screen.contains("│ connected │"), "{screen}");
    println!("--- after the reconnect ---\n{screen}");

    // Signed out everywhere at the provider: the server closes with 4003,
    // the refresh is refused, and the UI says so in words.
    assert!(stack.idp.control().revoke_user_sessions("alice") > 0);
    let screen = tmux.wait_for("Signed out by the server").await;
    assert!(
        screen.contains(" signed out │"),
        "the status bar too: {screen}"
    );

    tmux.quit().await;
    alice.cleanup().await;
}

/// The README's first command: `chat` with no options starts the embedded
/// provider and server, asks who to sign in as, and chats.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_demo_signs_in_from_the_terminal_ui() {
    if !have_tmux() {
        return;
    }
    let dir = scratch("demo-tui");
    let path = dir.join("run-demo.sh");
    let body = format!(
        "#!/bin/sh\nexport HOME='{home}' RUST_LOG=warn\n\
         unset SESSIONKIT_ISSUER SESSIONKIT_SERVER SESSIONKIT_DEMO_USER\nexec '{chat}'\n",
        home = dir.display(),
        chat = env!("CARGO_BIN_EXE_chat"),
    );
    write_script(&path, &body);
    let tmux = Tmux::start(&path).await;

    tmux.wait_for("Type a name and press Enter to sign in as alice, bob, carol")
        .await;
    tmux.keys("bob").await;
    tmux.enter().await;
    tmux.wait_for("bob │ #general │ connected").await;
    tmux.keys("hello from the demo").await;
    tmux.enter().await;
    tmux.wait_for("[1] bob: hello from the demo").await;
    tmux.keys("/room random").await;
    tmux.enter().await;
    let screen = tmux.wait_for("bob │ #random │ connected").await;
    assert!(
        !screen.contains("hello from the demo"),
        "another room: {screen}"
    );
    // A second account, then back to the first.
    tmux.keys("/login alice").await;
    tmux.enter().await;
    tmux.wait_for("alice │ #random │ connected").await;
    tmux.keys("/switch bob").await;
    tmux.enter().await;
    tmux.wait_for("Switched to bob.").await;
    tmux.wait_for("bob │ #random │ connected").await;
    tmux.quit().await;
    let _ = std::fs::remove_dir_all(dir);
}

/// Short-lived tokens: the notice line says when the token was refreshed,
/// and the connection stays up (make-before-break, no reconnect shown).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_terminal_ui_says_when_the_token_is_refreshed() {
    if !have_tmux() {
        return;
    }
    let stack = Stack::start(Some(5)).await;
    let alice = User::new("alice", &stack);
    alice.login(&stack.idp).await;
    let tmux = Tmux::start(&script(&alice)).await;
    tmux.wait_for("alice │ #general │ connected").await;
    let screen = tmux.wait_for("token refreshed, valid for").await;
    assert!(screen.contains("│ connected │"), "{screen}");
    assert!(!screen.contains("Connection lost"), "{screen}");
    tmux.quit().await;
    alice.cleanup().await;
}
