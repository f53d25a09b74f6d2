//! Two processes of one app refresh the same account at the same moment,
//! against a provider that revokes the whole grant when a rotated refresh
//! token is used twice. The per-account file lock and the re-read of the
//! store after taking it mean one refresh happens, the other process adopts
//! its tokens, and both stay signed in.

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use sessionkit::{
    AccountRegistry, HttpClient, LoopbackOptions, OidcClient, Provider, RefreshPolicy,
    SessionManager, TokenStore,
};
use sessionkit_mock_idp::MockIdp;
use sessionkit_tests::file_store::FileStore;

async fn manager(issuer: &str, dir: &Path) -> SessionManager {
    manager_with(issuer, dir, RefreshPolicy::Proactive).await
}

async fn manager_with(issuer: &str, dir: &Path, policy: RefreshPolicy) -> SessionManager {
    let provider = Provider::discover(issuer, &HttpClient::new().expect("http"))
        .await
        .expect("discovery");
    let client = OidcClient::new(provider, "chat-example").scopes(["openid", "offline_access"]);
    SessionManager::for_client(client)
        .namespace("two-processes")
        .store(Arc::new(FileStore::new(dir)))
        .registry(AccountRegistry::at(dir.join("accounts.json")))
        .restore(false)
        .policy(policy)
        .build()
        .await
        .expect("manager")
}

/// The child: restore, say ready, wait for "go", ask for a token, print its fingerprint.
#[tokio::test]
#[ignore = "run by two_processes_refreshing_at_once_both_stay_signed_in as a child process"]
async fn child_refresher() {
    let Ok(dir) = std::env::var("SK_TWO_PROC_DIR") else {
        return;
    };
    let dir = PathBuf::from(dir);
    let issuer = std::env::var("SK_TWO_PROC_ISSUER").expect("issuer");
    let me = std::env::var("SK_TWO_PROC_ME").expect("me");
    let m = manager(&issuer, &dir).await;
    m.restore().await.expect("restore");
    let session = m.active_session().expect("active").expect("a session");
    std::fs::write(dir.join(format!("ready-{me}")), b"").expect("ready");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !dir.join("go").exists() {
        assert!(Instant::now() < deadline, "no go signal");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let token = session.access_token().await.expect("a fresh token");
    println!("TOKEN {}", token.fingerprint());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_refreshing_at_once_both_stay_signed_in() {
    let idp = MockIdp::builder()
        .auto_login("alice")
        .start()
        .await
        .expect("idp");
    let dir = std::env::temp_dir().join(format!("sk-two-proc-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let parent = manager(idp.issuer(), &dir).await;
    let account = parent
        .login_loopback(LoopbackOptions::with_callback(|url| {
            let url = url.to_owned();
            tokio::spawn(async move {
                let _ = reqwest::get(url).await;
            });
        }))
        .await
        .expect("sign in")
        .info()
        .clone();
    // The stored access token has expired: both children must refresh.
    let store = FileStore::new(&dir);
    let mut entry = store.load_session(&account.key).expect("entry");
    entry.expires_at = Some(SystemTime::now() - Duration::from_secs(5));
    store.save_session(&account.key, &entry).expect("save");
    idp.control().reset_requests();

    let exe = std::env::current_exe().expect("exe");
    let children: Vec<_> = ["a", "b"]
        .iter()
        .map(|me| {
            std::process::Command::new(&exe)
                .args([
                    "child_refresher",
                    "--exact",
                    "--ignored",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env("SK_TWO_PROC_DIR", &dir)
                .env("SK_TWO_PROC_ISSUER", idp.issuer())
                .env("SK_TWO_PROC_ME", me)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("spawn child")
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(dir.join("ready-a").exists() && dir.join("ready-b").exists()) {
        assert!(Instant::now() < deadline, "children did not get ready");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    std::fs::write(dir.join("go"), b"").expect("go");
    let outputs: Vec<_> = tokio::task::spawn_blocking(move || {
        children
            .into_iter()
            .map(|c| c.wait_with_output().expect("wait"))
            .collect::<Vec<_>>()
    })
    .await
    .expect("join");
    let mut fingerprints = Vec::new();
    for out in &outputs {
        assert!(out.status.success(), "a child failed");
        let line = out
            .stdout
            .lines()
            .map_while(Result::ok)
            .find_map(|l| {
                l.split("TOKEN ")
                    .nth(1)
                    .map(|t| t.split_whitespace().next().unwrap_or("").to_owned())
            })
            .expect("a token line");
        fingerprints.push(line);
    }
    assert_eq!(
        fingerprints[0], fingerprints[1],
        "both use the one refreshed token"
    );
    assert_eq!(
        idp.control().count("token:refresh_token"),
        1,
        "one refresh, no reuse"
    );
    // The grant is alive: the stored (rotated) refresh token still works.
    let rt = store.load_refresh(&account.key).expect("refresh token");
    let status = reqwest::Client::new()
        .post(idp.url("/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", rt.secret()),
            ("client_id", "chat-example"),
        ])
        .send()
        .await
        .expect("post")
        .status();
    assert_eq!(status, 200, "nobody burned the grant");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A child that uses the account for `SK_TWO_PROC_FOR_MS`: restores it (the
/// proactive timer runs), asks for a token every 50 ms, then exits.
#[tokio::test]
#[ignore = "run by two_processes_of_one_account_refresh_no_more_than_one as a child process"]
async fn child_user() {
    let Ok(dir) = std::env::var("SK_TWO_PROC_DIR") else {
        return;
    };
    let dir = PathBuf::from(dir);
    let issuer = std::env::var("SK_TWO_PROC_ISSUER").expect("issuer");
    let ms: u64 = std::env::var("SK_TWO_PROC_FOR_MS")
        .expect("duration")
        .parse()
        .expect("ms");
    let m = manager(&issuer, &dir).await;
    m.restore().await.expect("restore");
    let session = m.active_session().expect("active").expect("a session");
    let until = Instant::now() + Duration::from_millis(ms);
    while Instant::now() < until {
        session.access_token().await.expect("a token all along");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Signs alice in at `idp` (on demand: the parent itself never refreshes)
/// with her tokens kept in `dir`.
async fn signed_in_for_children(idp: &MockIdp, dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).expect("dir");
    let parent = manager_with(idp.issuer(), dir, RefreshPolicy::OnDemand).await;
    parent
        .login_loopback(LoopbackOptions::with_callback(|url| {
            let url = url.to_owned();
            tokio::spawn(async move {
                let _ = reqwest::get(url).await;
            });
        }))
        .await
        .expect("sign in");
}

fn spawn_user(idp: &MockIdp, dir: &Path, for_ms: u64) -> std::process::Child {
    std::process::Command::new(std::env::current_exe().expect("exe"))
        .args(["child_user", "--exact", "--ignored", "--test-threads=1"])
        .env("SK_TWO_PROC_DIR", dir)
        .env("SK_TWO_PROC_ISSUER", idp.issuer())
        .env("SK_TWO_PROC_FOR_MS", for_ms.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn child")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_of_one_account_refresh_no_more_than_one() {
    // 4 s tokens, refreshed at half-life by each process's timer: 2 s apart.
    const TTL: u64 = 4;
    const FOR_MS: u64 = 4 * TTL * 1000;
    let shared = MockIdp::builder()
        .auto_login("alice")
        .access_token_ttl(TTL)
        .start()
        .await
        .expect("idp");
    let alone = MockIdp::builder()
        .auto_login("alice")
        .access_token_ttl(TTL)
        .start()
        .await
        .expect("idp");
    let base = std::env::temp_dir().join(format!("sk-two-users-{}", std::process::id()));
    let (shared_dir, alone_dir) = (base.join("shared"), base.join("alone"));
    signed_in_for_children(&shared, &shared_dir).await;
    signed_in_for_children(&alone, &alone_dir).await;
    // Two instances of the app on one store, one instance on its own.
    let children = vec![
        spawn_user(&shared, &shared_dir, FOR_MS),
        spawn_user(&shared, &shared_dir, FOR_MS),
        spawn_user(&alone, &alone_dir, FOR_MS),
    ];
    let statuses: Vec<_> = tokio::task::spawn_blocking(move || {
        children
            .into_iter()
            .map(|mut c| c.wait().expect("wait"))
            .collect::<Vec<_>>()
    })
    .await
    .expect("join");
    assert!(
        statuses.iter().all(std::process::ExitStatus::success),
        "{statuses:?}"
    );
    let two = shared.control().count("token:refresh_token");
    let one = alone.control().count("token:refresh_token");
    eprintln!("refresh grants in {FOR_MS} ms: two processes {two}, one process {one}");
    assert!(one >= 4, "the lone process refreshed by its timer: {one}");
    assert!(
        two <= one + 1,
        "two processes of one account: {two} refreshes; one process: {one}"
    );
    let _ = std::fs::remove_dir_all(base);
}
