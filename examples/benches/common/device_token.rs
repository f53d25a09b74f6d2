//! An access token for a user of the embedded mock-idp, through the device
//! flow as a real client gets one — for the benches' many users (shared by
//! source, `#[path]`, between the acks bench and the rolling-restart
//! harness, which its short test also includes).

use serde_json::Value;
use sessionkit_mock_idp::{MockIdp, User};

/// An access token for `user` (added to the provider).
pub(crate) async fn device_token(http: &reqwest::Client, idp: &MockIdp, user: &str) -> String {
    idp.control()
        .put_user(User::simple(user))
        .expect("add user");
    let device: Value = http
        .post(idp.url("/device_authorization"))
        .form(&[("client_id", "chat-example"), ("scope", "openid profile")])
        .send()
        .await
        .expect("device authorization")
        .json()
        .await
        .expect("JSON");
    idp.control()
        .approve_device(device["user_code"].as_str().expect("user_code"), user)
        .expect("approve");
    let tokens: Value = http
        .post(idp.url("/token"))
        .form(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("device_code", device["device_code"].as_str().expect("code")),
            ("client_id", "chat-example"),
        ])
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("JSON");
    tokens["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}
