//! Back-channel logout (OpenID Connect Back-Channel Logout 1.0): the provider
//! POSTs a signed logout token when a session ends; the server closes that
//! session's connections with 4003 and refuses its tokens from then on.
//!
//! Logged-out sessions are remembered for [`REMEMBER`] (longer than any
//! access token of theirs lives), at most [`MAX_REMEMBERED`] of them. The
//! memory fails closed: when it is full of unexpired entries and one must
//! go, every token issued until then is refused for [`REMEMBER`] (clients
//! refresh and carry on; the logged-out sessions cannot), so a flood of
//! logout tokens cannot make a revoked token valid again. A
//! logout token that names only a `sub` logs out every session of that
//! subject: its connections and tokens issued up to the logout token's
//! `iat` are closed and refused; later sign-ins are not touched.
//!
//! A logout token must say `typ: logout+jwt`, and have a `jti` and an `exp`.
//! Its `jti` is remembered until its `exp` (plus leeway), so a replay is
//! recognized and answered with a harmless 200 that changes nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::time::Instant;

use super::claims::{self, AccessToken};
use super::db::Revocation;
use super::hub::{Hub, Kick, Target};
use super::jwks::VerifyError;
use super::{App, unix_now};
use crate::protocol::CLOSE_SIGNED_OUT;

/// How long a logged-out session is remembered.
pub(crate) const REMEMBER: Duration = Duration::from_secs(24 * 3600);
/// The most logged-out sessions (and subjects) remembered at once.
pub(crate) const MAX_REMEMBERED: usize = 10_000;

/// The JOSE `typ` a logout token must carry (compared without case and
/// without `application/`); a missing or generic `typ` is refused.
const LOGOUT_TYPS: &[&str] = &["logout+jwt"];

#[derive(Debug, Default)]
struct Remembered {
    /// Logged-out sessions, with when to forget them.
    sids: HashMap<String, Instant>,
    /// Logged-out subjects: tokens issued at or before the first value are
    /// refused until the second.
    subs: HashMap<String, (i64, Instant)>,
    /// The `jti`s of logout tokens handled, with when to forget them (after
    /// their `exp`, when they are refused anyway).
    jtis: HashMap<String, Instant>,
    /// Set when a logged-out session or subject had to be forgotten early:
    /// every token issued at or before the first value is refused until
    /// the second.
    floor: Option<(i64, Instant)>,
}

/// The sessions and subjects logged out recently.
#[derive(Debug, Default)]
pub(crate) struct Revocations {
    inner: Mutex<Remembered>,
}

/// When full, drops the expired entries and, if still full, the one
/// forgotten soonest; true when an unexpired entry had to go.
fn make_room<V>(map: &mut HashMap<String, V>, now: Instant, until: impl Fn(&V) -> Instant) -> bool {
    if map.len() < MAX_REMEMBERED {
        return false;
    }
    map.retain(|_, v| until(v) > now);
    let mut forgot = false;
    while map.len() >= MAX_REMEMBERED {
        forgot = true;
        let Some(oldest) = map
            .iter()
            .min_by_key(|(_, v)| until(v))
            .map(|(k, _)| k.clone())
        else {
            break;
        };
        map.remove(&oldest);
    }
    forgot
}

impl Revocations {
    fn lock(&self) -> std::sync::MutexGuard<'_, Remembered> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Remembers that `sid` was logged out.
    pub(crate) fn revoke_session(&self, sid: &str) {
        let now = Instant::now();
        let mut state = self.lock();
        if !state.sids.contains_key(sid) && make_room(&mut state.sids, now, |until| *until) {
            state.fail_closed(now);
        }
        state.sids.insert(sid.to_owned(), now + REMEMBER);
    }

    /// Remembers that every session of `sub` up to `iat` was logged out.
    pub(crate) fn revoke_subject(&self, sub: &str, iat: i64) {
        let now = Instant::now();
        let mut state = self.lock();
        if !state.subs.contains_key(sub) && make_room(&mut state.subs, now, |(_, until)| *until) {
            state.fail_closed(now);
        }
        let cutoff = state.subs.get(sub).map_or(iat, |(c, _)| (*c).max(iat));
        state.subs.insert(sub.to_owned(), (cutoff, now + REMEMBER));
    }

    /// Remembers the `jti` of a logout token that expires at `exp` (Unix
    /// seconds); `false` if it was seen already (a replay).
    pub(crate) fn first_use(&self, jti: &str, exp: i64) -> bool {
        let now = Instant::now();
        let secs = exp
            .saturating_add(claims::FUTURE_LEEWAY_SECS)
            .saturating_sub(unix_now());
        let until = now + Duration::from_secs(u64::try_from(secs).unwrap_or(0));
        let mut state = self.lock();
        if state.jtis.get(jti).is_some_and(|forget| *forget > now) {
            return false;
        }
        // A forgotten jti lets a replay be handled again: harmless.
        let _ = make_room(&mut state.jtis, now, |until| *until);
        state.jtis.insert(jti.to_owned(), until);
        true
    }

    /// Forgets a logout token's `jti`, so the provider's retry of a
    /// delivery that failed (503) is handled again.
    pub(crate) fn forget_jti(&self, jti: &str) {
        self.lock().jtis.remove(jti);
    }

    /// Remembers `revocation` and closes the connections it hits on this
    /// node with `kick`; returns how many.
    pub(crate) fn apply(&self, revocation: &Revocation, hub: &Hub, kick: Kick) -> usize {
        match revocation {
            Revocation::Session(sid) => {
                self.revoke_session(sid);
                hub.kick(Target::Session(sid), &kick)
            }
            Revocation::Subject { sub, iat } => {
                self.revoke_subject(sub, *iat);
                hub.kick(
                    Target::Subject {
                        sub,
                        issued_through: *iat,
                    },
                    &kick,
                )
            }
        }
    }

    /// Whether `token` belongs to a session (or subject) logged out.
    pub(crate) fn is_revoked(&self, token: &AccessToken) -> bool {
        let now = Instant::now();
        let state = self.lock();
        let sid_out = token
            .sid
            .as_ref()
            .and_then(|sid| state.sids.get(sid))
            .is_some_and(|until| *until > now);
        let sub_out = state.subs.get(&token.sub).is_some_and(|(cutoff, until)| {
            *until > now && token.iat.is_none_or(|iat| iat <= *cutoff)
        });
        let below_floor = state.floor.is_some_and(|(cutoff, until)| {
            until > now && token.iat.is_none_or(|iat| iat <= cutoff)
        });
        sid_out || sub_out || below_floor
    }
}

impl Remembered {
    /// A logged-out entry was forgotten early: refuse every token issued
    /// until now, for as long as the entry would have been remembered.
    fn fail_closed(&mut self, now: Instant) {
        tracing::warn!(
            remembered = MAX_REMEMBERED,
            "back-channel logout memory full: refusing every token issued until now"
        );
        self.floor = Some((unix_now(), now + REMEMBER));
    }
}

/// The close for connections of a logged-out session: 4003.
pub(crate) fn kick_for() -> Kick {
    Kick {
        code: CLOSE_SIGNED_OUT,
        reason: "signed out",
    }
}

/// The RFC 6749-style error body; the detail stays in the log.
fn error(status: StatusCode, code: &str, description: &str) -> Response {
    let body = serde_json::json!({"error": code, "error_description": description});
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(body),
    )
        .into_response()
}

/// The `logout_token` field of a form body.
fn logout_token(headers: &HeaderMap, body: &[u8]) -> Result<String, &'static str> {
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !form {
        return Err("the body must be application/x-www-form-urlencoded");
    }
    let mut tokens = url::form_urlencoded::parse(body).filter(|(k, _)| k == "logout_token");
    match (tokens.next(), tokens.next()) {
        (Some((_, token)), None) if !token.is_empty() => Ok(token.into_owned()),
        (Some(_), Some(_)) => Err("more than one logout_token"),
        _ => Err("no logout_token"),
    }
}

/// `POST /backchannel-logout`.
pub(crate) async fn handler(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let token = match logout_token(&headers, &body) {
        Ok(token) => token,
        Err(why) => {
            tracing::info!(why, "back-channel logout refused");
            return error(StatusCode::BAD_REQUEST, "invalid_request", why);
        }
    };
    let claims = match app.verifier.verify(&token, LOGOUT_TYPS).await {
        Ok(verified) => verified.claims,
        Err(VerifyError::Unavailable(why)) => {
            tracing::warn!(%why, "back-channel logout: cannot check the token now");
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "the provider's keys are unavailable",
            );
        }
        Err(VerifyError::Invalid(why)) => {
            tracing::info!(%why, len = token.len(), "back-channel logout token refused");
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "invalid logout token",
            );
        }
    };
    let logout = match claims::check_logout(
        &claims,
        &app.config.issuer,
        &app.config.backchannel_client_id,
        unix_now(),
    ) {
        Ok(logout) => logout,
        Err(why) => {
            tracing::info!(%why, "back-channel logout token refused");
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "invalid logout token",
            );
        }
    };
    if !app.revocations.first_use(&logout.jti, logout.exp) {
        tracing::info!(
            sid = logout.sid.as_deref(),
            sub = logout.sub.as_deref(),
            "back-channel logout replayed; nothing to do"
        );
        return (StatusCode::OK, [(header::CACHE_CONTROL, "no-store")]).into_response();
    }
    let revocation = if let Some(sid) = &logout.sid {
        Revocation::Session(sid.clone())
    } else if let Some(sub) = &logout.sub {
        Revocation::Subject {
            sub: sub.clone(),
            iat: logout.iat,
        }
    } else {
        return (StatusCode::OK, [(header::CACHE_CONTROL, "no-store")]).into_response();
    };
    let closed = app.revocations.apply(&revocation, &app.hub, kick_for());
    // Every other node: through the database, which also keeps it for
    // nodes that start later. Until it is there, the provider is asked to
    // deliver it again (this node has applied it already).
    if let Some(pg) = app.store.postgres()
        && let Err(e) = pg.revoke(&super::feed::row_for(revocation)).await
    {
        tracing::warn!(error = %e, closed, "back-channel logout not shared with the other nodes");
        app.revocations.forget_jti(&logout.jti);
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "the logout could not be recorded for every node; deliver it again",
        );
    }
    tracing::info!(
        sid = logout.sid.as_deref(),
        sub = logout.sub.as_deref(),
        closed,
        "back-channel logout"
    );
    (StatusCode::OK, [(header::CACHE_CONTROL, "no-store")]).into_response()
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn token(sub: &str, sid: Option<&str>, iat: Option<i64>) -> AccessToken {
        AccessToken {
            sub: sub.into(),
            sid: sid.map(str::to_owned),
            user: sub.into(),
            exp: i64::MAX,
            iat,
            jkt: None,
        }
    }

    #[test]
    fn a_logged_out_session_is_refused_and_others_are_not() {
        let r = Revocations::default();
        r.revoke_session("s1");
        r.revoke_session("s1");
        assert!(r.is_revoked(&token("alice", Some("s1"), Some(5))));
        assert!(!r.is_revoked(&token("alice", Some("s2"), Some(5))));
        assert!(!r.is_revoked(&token("alice", None, Some(5))));
    }

    #[test]
    fn a_subject_logout_refuses_only_older_tokens() {
        let r = Revocations::default();
        r.revoke_subject("alice", 100);
        assert!(r.is_revoked(&token("alice", Some("s"), Some(100))));
        assert!(r.is_revoked(&token("alice", Some("s"), None)));
        assert!(!r.is_revoked(&token("alice", Some("s"), Some(101))));
        assert!(!r.is_revoked(&token("bob", Some("s"), Some(1))));
    }

    #[test]
    fn a_logout_token_is_used_once_until_it_expires() {
        let r = Revocations::default();
        let exp = unix_now() + 120;
        assert!(r.first_use("j1", exp));
        assert!(!r.first_use("j1", exp), "a replay");
        assert!(r.first_use("j2", exp));
        // Long past its exp (and the leeway) it is forgotten; it is refused anyway by then.
        let old = unix_now() - 2 * claims::FUTURE_LEEWAY_SECS;
        assert!(r.first_use("j3", old));
        assert!(r.first_use("j3", old));
    }

    #[test]
    fn logged_out_sessions_are_remembered_for_a_day() {
        assert!(REMEMBER >= Duration::from_secs(24 * 3600));
    }

    #[test]
    fn the_memory_is_bounded() {
        let mut map = HashMap::new();
        let now = Instant::now();
        for i in 0..MAX_REMEMBERED {
            map.insert(i.to_string(), now + Duration::from_secs(i as u64 + 1));
        }
        assert!(make_room(&mut map, now, |v| *v), "an unexpired entry went");
        assert_eq!(map.len(), MAX_REMEMBERED - 1);
        assert!(!map.contains_key("0"), "the soonest forgotten goes first");
        map.insert("old".into(), now);
        assert!(
            !make_room(&mut map, now, |v| *v),
            "only the expired one went"
        );
        assert!(!map.contains_key("old"), "expired entries go");
    }

    #[test]
    fn a_flood_of_logouts_cannot_make_a_revoked_token_valid_again() {
        let revocations = Revocations::default();
        let now = unix_now();
        let victim = token("victim", Some("victim-sid"), Some(now - 10));
        revocations.revoke_session("victim-sid");
        assert!(revocations.is_revoked(&victim));
        for i in 0..=MAX_REMEMBERED {
            revocations.revoke_session(&format!("flood-{i}"));
        }
        assert!(
            revocations.is_revoked(&victim),
            "the memory fails closed when full"
        );
        // A token issued after the flood (a client that refreshed) works.
        let fresh = token("someone", Some("other-sid"), Some(now + 5));
        assert!(!revocations.is_revoked(&fresh));
    }

    #[test]
    fn the_form_needs_exactly_one_logout_token() {
        let mut headers = HeaderMap::new();
        assert!(
            logout_token(&headers, b"logout_token=abc").is_err(),
            "no content type"
        );
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded; charset=utf-8"),
        );
        assert_eq!(
            logout_token(&headers, b"logout_token=a%2Bb").as_deref(),
            Ok("a+b")
        );
        assert!(logout_token(&headers, b"other=1").is_err());
        assert!(logout_token(&headers, b"logout_token=").is_err());
        assert!(logout_token(&headers, b"logout_token=a&logout_token=b").is_err());
    }
}
