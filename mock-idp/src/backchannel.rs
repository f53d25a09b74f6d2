//! Back-channel logout (OpenID Connect Back-Channel Logout 1.0): when a
//! session ends, a signed logout token is POSTed to every client of that
//! session that registered a `backchannel_logout_uri`. Deliveries run as
//! tasks the provider tracks, and their results are kept for the control API.

use std::sync::Arc;

use serde_json::json;

use crate::keys::random_token;
use crate::state::{Delivery, Session, Shared, TokenRecord};

const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// Sends logout tokens for `session` to its clients; returns how many were sent.
pub(crate) fn send(shared: &Arc<Shared>, session: &Session) -> usize {
    let settings = shared.settings();
    let now = shared.clock.now();
    let keys = shared.keys();
    let mut sent = 0;
    for client_id in &session.clients {
        let Some(client) = settings.clients.get(client_id) else {
            continue;
        };
        let Some(uri) = client.config.backchannel_logout_uri.clone() else {
            continue;
        };
        let claims = json!({
            "iss": shared.issuer,
            "aud": client_id,
            "iat": now,
            "exp": now + 120,
            "jti": random_token(16),
            "sub": session.sub,
            "sid": session.sid,
            "events": { EVENT: {} },
        });
        let alg = client
            .config
            .id_token_signed_response_alg
            .unwrap_or(settings.signing_alg);
        let key = keys.active(alg);
        let token = crate::conformance::twist::logout_token(shared, client_id, &claims)
            .unwrap_or_else(|| key.sign_jwt("logout+jwt", &claims));
        shared.store().record_token(TokenRecord {
            kind: "logout_token",
            fingerprint: crate::keys::fingerprint(&token),
            header: Some(json!({"alg": alg.as_str(), "kid": key.kid, "typ": "logout+jwt"})),
            claims,
            issued_at: now,
        });
        let shared2 = shared.clone();
        let (client_id, sid, sub) = (client_id.clone(), session.sid.clone(), session.sub.clone());
        sent += 1;
        shared.tasks.spawn(async move {
            let result = shared2
                .http
                .post(&uri)
                .form(&[("logout_token", token.as_str())])
                .send()
                .await;
            let (status, error) = match result {
                Ok(r) => (Some(r.status().as_u16()), None),
                Err(e) => (None, Some(e.without_url().to_string())),
            };
            crate::conformance::twist::backchannel_answer(
                &shared2,
                &client_id,
                status.ok_or_else(|| error.clone().unwrap_or_default()),
            );
            tracing::info!(%client_id, ?status, "back-channel logout delivered");
            shared2.store().deliveries.push(Delivery {
                client_id,
                uri,
                sid,
                sub,
                status,
                error,
            });
        });
    }
    sent
}
