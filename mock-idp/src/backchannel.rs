//! Back-channel logout (OpenID Connect Back-Channel Logout 1.0): when a
//! session ends, a signed logout token is POSTed to every client of that
//! session that registered a `backchannel_logout_uri`. Deliveries run as
//! tasks the provider tracks, and their results are kept for the control API.
//!
//! A delivery the client could not take — no answer, or a 5xx (a chat node
//! that cannot write the logout to its database answers 503) — is tried
//! again a bounded number of times ([`RETRY_WAITS`], about 6 s in all, well
//! inside the token's two minutes), as the specification allows ("the OP
//! MAY retry"): dropped at the first failure, a logout would leave the
//! session's sockets open and its tokens accepted until they expire. A 4xx
//! is the client's final word (a token it refuses) and is not retried.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::keys::random_token;
use crate::state::{Delivery, Session, Shared, TokenRecord};

const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// The waits before the second, third, … attempt of a delivery that failed.
pub(crate) const RETRY_WAITS: [Duration; 5] = [
    Duration::from_millis(200),
    Duration::from_millis(400),
    Duration::from_millis(800),
    Duration::from_millis(1600),
    Duration::from_millis(3200),
];

/// Whether an answer (a status, or none) calls for another attempt.
fn retry(status: Option<u16>) -> bool {
    status.is_none_or(|s| s >= 500)
}

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
            let mut waits = RETRY_WAITS.iter();
            loop {
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
                let again = retry(status).then(|| waits.next()).flatten();
                tracing::info!(%client_id, ?status, retry_in = ?again, "back-channel logout delivered");
                shared2.store().deliveries.push(Delivery {
                    client_id: client_id.clone(),
                    uri: uri.clone(),
                    sid: sid.clone(),
                    sub: sub.clone(),
                    status,
                    error,
                });
                match again {
                    Some(wait) => tokio::time::sleep(*wait).await,
                    None => break,
                }
            }
        });
    }
    sent
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_answer_and_5xx_are_retried_within_the_tokens_lifetime_4xx_is_final() {
        assert!(retry(None));
        assert!(retry(Some(503)));
        assert!(retry(Some(500)));
        assert!(!retry(Some(200)));
        assert!(!retry(Some(400)));
        let total: Duration = RETRY_WAITS.iter().sum();
        assert!(total < Duration::from_secs(120 / 4), "{total:?}");
    }
}
