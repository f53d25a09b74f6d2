//! The token endpoint: authorization code (PKCE S256 required), refresh token
//! (rotated on every use; a reused one revokes the whole grant), device code
//! (RFC 8628) and client credentials. Access tokens are JWTs (RFC 9068,
//! `typ: at+jwt`) for the API they are meant for; ID tokens carry `nonce`,
//! `at_hash`, `sid`; refresh tokens are opaque and stored only as hashes.
//! A token asked for with the account sessions scope also names the account
//! API in `aud`; claims a test set for the client's next token
//! ([`crate::NextClaims`]) are merged in last.
//!
//! DPoP (RFC 9449): with a valid proof (checked first, see `proof.rs`) the
//! access token carries `cnf.jkt` and `token_type` is `DPoP`, and a public
//! client's refresh token is bound to the key; a bound code (`dpop_jkt`) or
//! refresh token presented without a proof by its key is `invalid_grant`.
//!
//! (Over 500 lines: the four grants end in one issuing step, `Issue`, kept
//! beside them so that every grant issues tokens the same way.)

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Map, Value, json};

use crate::config::{ACCOUNT_SCOPE, Alg, DEVICE_CODE_GRANT, account_audience};
use crate::endpoints::no_store_json;
use crate::error::OAuthError;
use crate::keys::{b64, fingerprint, random_token, sha256};
use crate::params::{Params, authenticate_client};
use crate::server::LogNote;
use crate::state::{
    AccessRecord, DeviceOutcome, DeviceStatus, Grant, RefreshRecord, Session, Settings, Shared,
    TokenRecord,
};

pub(crate) async fn token(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let mut grant_type = String::from("invalid");
    let result = match body {
        Err(e) => Err(OAuthError::new(
            e.status(),
            "invalid_request",
            e.body_text(),
        )),
        Ok(body) => Params::from_form(&headers, &body).and_then(|params| {
            grant_type = params.get("grant_type").unwrap_or("missing").to_owned();
            handle(&shared, uri.path(), &headers, &params)
        }),
    };
    let mut response = match result {
        Ok(value) => no_store_json(&value),
        Err(e) => e.into_response(),
    };
    let note = match grant_type.as_str() {
        DEVICE_CODE_GRANT => "device_code".to_owned(),
        g if g.len() <= 32 => g.to_owned(),
        _ => "invalid".to_owned(),
    };
    response.extensions_mut().insert(LogNote(note));
    response
}

fn handle(
    shared: &Arc<Shared>,
    path: &str,
    headers: &HeaderMap,
    params: &Params,
) -> Result<Value, OAuthError> {
    let settings = shared.settings();
    let grant_type = params.required("grant_type")?;
    let known = [
        "authorization_code",
        "refresh_token",
        DEVICE_CODE_GRANT,
        "client_credentials",
    ];
    if !known.contains(&grant_type) {
        return Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            format!("grant type {grant_type:?} is not supported"),
        ));
    }
    let client = authenticate_client(&settings, headers, params, &shared.assertion_check())?;
    if !client.config.allows_grant(grant_type) {
        return Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            format!("this client may not use the {grant_type} grant"),
        ));
    }
    // The proof is checked before the grant is: a code or refresh token is
    // not spent on a request that a nonce challenge makes the client repeat.
    let proof = crate::endpoints::proof::token_request_proof(shared, headers, path)?;
    if proof.is_none() && client.config.dpop_bound_access_tokens {
        return Err(crate::endpoints::proof::proof_required(
            "this client's tokens are DPoP-bound (dpop_bound_access_tokens)",
        ));
    }
    let jkt = proof.map(|p| p.jkt().to_owned());
    let client_id = client.config.client_id.as_str();
    crate::conformance::twist::before_token(shared, client_id, grant_type, headers, params);
    let mut issue = match grant_type {
        "authorization_code" => authorization_code(shared, client_id, params, jkt.as_deref()),
        "refresh_token" => refresh(shared, &settings, client_id, params, jkt.as_deref()),
        "client_credentials" => client_credentials(shared, &settings, client_id, params),
        _ => device_code(shared, &settings, client_id, params),
    }?;
    issue.jkt = jkt;
    let mut response = issue.run(shared, &settings);
    crate::conformance::twist::after_token(shared, client_id, grant_type, &mut response);
    Ok(response)
}

fn pkce_ok(verifier: &str, challenge: &str) -> bool {
    let well_formed = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    well_formed
        && crate::params::constant_time_eq(
            b64(&sha256(verifier.as_bytes())).as_bytes(),
            challenge.as_bytes(),
        )
}

/// The DPoP binding of a code or refresh token, checked against the key of
/// the request's proof: none, or another key, is `invalid_grant` (the grant
/// is bound; the proof itself was fine or absent).
fn check_binding(bound: Option<&str>, proof: Option<&str>, what: &str) -> Result<(), OAuthError> {
    match (bound, proof) {
        (None, _) => Ok(()),
        (Some(_), None) => Err(OAuthError::invalid_grant(format!(
            "{what} is DPoP-bound: send a DPoP proof signed by its key"
        ))),
        (Some(bound), Some(jkt))
            if crate::params::constant_time_eq(bound.as_bytes(), jkt.as_bytes()) =>
        {
            Ok(())
        }
        (Some(_), Some(_)) => Err(OAuthError::invalid_grant(format!(
            "{what} is bound to another DPoP key than the one that signed this proof"
        ))),
    }
}

fn authorization_code(
    shared: &Arc<Shared>,
    client_id: &str,
    params: &Params,
    jkt: Option<&str>,
) -> Result<Issue, OAuthError> {
    let code = params.required("code")?;
    let redirect_uri = params.required("redirect_uri")?;
    let verifier = params.get("code_verifier");
    let now = shared.clock.now();
    let hash = Shared::hash(code);
    let issue = {
        let mut store = shared.store();
        let Some(record) = store.codes.get(&hash).cloned() else {
            return Err(OAuthError::invalid_grant("unknown authorization code"));
        };
        if let Some(grant) = record.redeemed {
            // RFC 6749 §4.1.2: a code used twice revokes what it granted.
            store.revoke_grant(grant);
            return Err(OAuthError::invalid_grant(
                "authorization code already used; its grant is revoked",
            ));
        }
        if record.expires_at <= now {
            return Err(OAuthError::invalid_grant("authorization code expired"));
        }
        if record.auth.client_id != client_id {
            return Err(OAuthError::invalid_grant(
                "authorization code was issued to another client",
            ));
        }
        if record.auth.redirect_uri != redirect_uri {
            return Err(OAuthError::invalid_grant(
                "redirect_uri does not match the authorization request",
            ));
        }
        // RFC 9449 §10: a code asked for with dpop_jkt is for that key only.
        check_binding(
            record.auth.dpop_jkt.as_deref(),
            jkt,
            "this authorization code (dpop_jkt)",
        )?;
        let Some(verifier) = verifier else {
            return Err(OAuthError::invalid_grant(
                "code_verifier is required (PKCE)",
            ));
        };
        if !pkce_ok(verifier, &record.auth.code_challenge) {
            return Err(OAuthError::invalid_grant(
                "code_verifier does not match the code_challenge",
            ));
        }
        let Some(session) = store.sessions.get_mut(&record.sid) else {
            return Err(OAuthError::invalid_grant(
                "the session this code belongs to has ended",
            ));
        };
        session.clients.insert(client_id.to_owned());
        session.last_seen = now;
        let sub = session.sub.clone();
        let grant = Grant {
            client_id: client_id.to_owned(),
            sid: Some(record.sid.clone()),
            username: Some(record.username.clone()),
            sub,
            scope: record.auth.scope.clone(),
            audience: record.auth.audience.clone(),
            auth_time: record.auth_time,
            acr: record.auth.acr.clone(),
            revoked: false,
        };
        let id = store.new_grant(grant.clone());
        if let Some(c) = store.codes.get_mut(&hash) {
            c.redeemed = Some(id);
        }
        Issue::new(id, grant, record.auth.nonce.clone())
    };
    Ok(issue)
}

fn refresh(
    shared: &Arc<Shared>,
    settings: &Settings,
    client_id: &str,
    params: &Params,
    jkt: Option<&str>,
) -> Result<Issue, OAuthError> {
    let token = params.required("refresh_token")?;
    let requested = params.get("scope").map(crate::params::split_scope);
    let now = shared.clock.now();
    let hash = Shared::hash(token);
    let issue = {
        let mut store = shared.store();
        let Some(record) = store.refresh.get(&hash).cloned() else {
            return Err(OAuthError::invalid_grant("unknown refresh token"));
        };
        let Some(grant) = store.grants.get(&record.grant).cloned() else {
            return Err(OAuthError::invalid_grant("unknown grant"));
        };
        if grant.client_id != client_id {
            return Err(OAuthError::invalid_grant(
                "refresh token was issued to another client",
            ));
        }
        // RFC 9449 §5: a public client's refresh token is bound to its key.
        // Checked before reuse detection: without the key, a stolen token
        // cannot even revoke the grant.
        check_binding(record.jkt.as_deref(), jkt, "this refresh token")?;
        let grace = i64::try_from(settings.refresh_token_reuse_grace).unwrap_or(i64::MAX);
        if record.used && !grant.revoked && grace > 0 && now - record.used_at <= grace {
            // A reuse within the provider's grace: answered like a first use
            // (the tokens issued at the first use stay valid too).
            tracing::info!(
                grant = record.grant,
                "refresh token reused within the grace period; answered"
            );
        } else if record.used {
            store.revoke_grant(record.grant);
            tracing::warn!(
                grant = record.grant,
                "refresh token reuse detected; grant revoked"
            );
            return Err(OAuthError::invalid_grant(
                "refresh token was already used; the grant is revoked",
            ));
        }
        if grant.revoked {
            return Err(OAuthError::invalid_grant("the grant was revoked"));
        }
        if record.expires_at <= now {
            return Err(OAuthError::invalid_grant("refresh token expired"));
        }
        let mut grant = grant;
        if let Some(requested) = requested {
            if let Some(extra) = requested.iter().find(|s| !grant.has_scope(s)) {
                return Err(OAuthError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_scope",
                    format!("scope {extra:?} was not granted"),
                ));
            }
            grant.scope = requested;
        }
        let rotate = settings.rotate_refresh_tokens;
        if rotate
            && let Some(r) = store.refresh.get_mut(&hash)
            && !r.used
        {
            r.used = true;
            r.used_at = now;
        }
        if let Some(sid) = &grant.sid
            && let Some(s) = store.sessions.get_mut(sid)
        {
            s.last_seen = now;
        }
        let mut issue = Issue::new(record.grant, grant, None);
        // Without rotation the client keeps using the token it has (RFC 6749 §6).
        issue.new_refresh_token = rotate;
        issue
    };
    Ok(issue)
}

fn client_credentials(
    shared: &Arc<Shared>,
    settings: &Settings,
    client_id: &str,
    params: &Params,
) -> Result<Issue, OAuthError> {
    let Some(client) = settings.clients.get(client_id) else {
        return Err(OAuthError::invalid_client("unknown client", false));
    };
    if client.config.is_public() {
        return Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            "a public client cannot use client credentials",
        ));
    }
    let scope = params.scope();
    if scope
        .iter()
        .any(|s| s == "openid" || s == "offline_access" || s == ACCOUNT_SCOPE)
    {
        return Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            format!("openid, offline_access and {ACCOUNT_SCOPE} need a user"),
        ));
    }
    let audience = match params.audience_for(client) {
        Ok(asked) => asked.or_else(|| client.config.audience.clone()),
        Err(_) => {
            return Err(OAuthError::new(
                StatusCode::BAD_REQUEST,
                "invalid_target",
                "this client may not ask for that resource",
            ));
        }
    };
    let now = shared.clock.now();
    let grant = Grant {
        client_id: client_id.to_owned(),
        sid: None,
        username: None,
        sub: client_id.to_owned(),
        scope,
        audience,
        auth_time: now,
        acr: None,
        revoked: false,
    };
    let id = shared.store().new_grant(grant.clone());
    Ok(Issue::new(id, grant, None))
}

fn device_code(
    shared: &Arc<Shared>,
    settings: &Settings,
    client_id: &str,
    params: &Params,
) -> Result<Issue, OAuthError> {
    let code = params.required("device_code")?;
    let hash = Shared::hash(code);
    let now_ms = shared.clock.now_ms();
    let now = now_ms.div_euclid(1000);
    let pending = |e: &'static str, d: &str| OAuthError::new(StatusCode::BAD_REQUEST, e, d);
    let issue = {
        let mut store = shared.store();
        let Some(device) = store.devices.get_mut(&hash) else {
            return Err(OAuthError::invalid_grant("unknown device code"));
        };
        if device.client_id != client_id {
            return Err(OAuthError::invalid_grant(
                "device code was issued to another client",
            ));
        }
        if device.status == DeviceStatus::Redeemed {
            return Err(OAuthError::invalid_grant("device code already used"));
        }
        if device.expires_at <= now {
            return Err(pending("expired_token", "the device code has expired"));
        }
        let last = device.last_poll_ms.replace(now_ms);
        if let Some(last) = last
            && now_ms - last < device.interval * 1000
        {
            device.interval += 5;
            return Err(pending(
                "slow_down",
                "polling too fast; the interval grew by 5 seconds",
            ));
        }
        device.polls += 1;
        if let Some(script) = device.script.clone() {
            if device.polls <= script.pending_polls {
                return Err(pending(
                    "authorization_pending",
                    "the user has not answered yet",
                ));
            }
            device.script = None;
            match script.then {
                DeviceOutcome::Approve { user } => {
                    let Some(u) = settings.user(&user) else {
                        return Err(pending("access_denied", "scripted user is unknown"));
                    };
                    let sid = random_token(16);
                    device.status = DeviceStatus::Approved {
                        username: u.username.clone(),
                        sid: sid.clone(),
                    };
                    let session = Session {
                        sid: sid.clone(),
                        username: u.username.clone(),
                        sub: u.sub().to_owned(),
                        device_name: format!("device flow ({client_id})"),
                        created_at: now,
                        last_seen: now,
                        clients: Default::default(),
                    };
                    store.sessions.insert(sid, session);
                }
                DeviceOutcome::Deny => device.status = DeviceStatus::Denied,
                DeviceOutcome::Expire => {
                    device.expires_at = now;
                    return Err(pending("expired_token", "the device code has expired"));
                }
                DeviceOutcome::SlowDown => {
                    device.interval += 5;
                    return Err(pending(
                        "slow_down",
                        "polling too fast; the interval grew by 5 seconds",
                    ));
                }
            }
        }
        let Some(device) = store.devices.get_mut(&hash) else {
            return Err(OAuthError::invalid_grant("unknown device code"));
        };
        let (username, sid) = match &device.status {
            DeviceStatus::Pending => {
                return Err(pending(
                    "authorization_pending",
                    "the user has not answered yet",
                ));
            }
            DeviceStatus::Denied => {
                return Err(pending("access_denied", "the user denied the request"));
            }
            DeviceStatus::Redeemed => {
                return Err(OAuthError::invalid_grant("device code already used"));
            }
            DeviceStatus::Approved { username, sid } => (username.clone(), sid.clone()),
        };
        device.status = DeviceStatus::Redeemed;
        let (scope, audience) = (device.scope.clone(), device.audience.clone());
        let Some(session) = store.sessions.get_mut(&sid) else {
            return Err(OAuthError::invalid_grant("the session has ended"));
        };
        session.clients.insert(client_id.to_owned());
        let grant = Grant {
            client_id: client_id.to_owned(),
            sid: Some(sid),
            username: Some(username),
            sub: session.sub.clone(),
            scope,
            audience,
            auth_time: session.created_at,
            acr: None,
            revoked: false,
        };
        let id = store.new_grant(grant.clone());
        Issue::new(id, grant, None)
    };
    Ok(issue)
}

/// What goes into one token response.
struct Issue {
    grant_id: u64,
    grant: Grant,
    nonce: Option<String>,
    new_refresh_token: bool,
    /// The DPoP key the tokens are bound to (RFC 9449 §5).
    jkt: Option<String>,
}

impl Issue {
    fn new(grant_id: u64, grant: Grant, nonce: Option<String>) -> Self {
        Self {
            grant_id,
            grant,
            nonce,
            new_refresh_token: true,
            jkt: None,
        }
    }

    fn run(self, shared: &Arc<Shared>, settings: &Settings) -> Value {
        let Issue {
            grant_id,
            grant,
            nonce,
            new_refresh_token,
            jkt,
        } = self;
        let now = shared.clock.now();
        let lifetimes = settings.lifetimes;
        let secs = |v: u64| i64::try_from(v).unwrap_or(i64::MAX / 2);
        // What a test asked this client's next token response to say.
        let extra = shared.store().take_next_claims(&grant.client_id);
        let keys = shared.keys();
        let client = settings.clients.get(&grant.client_id);
        let scope = grant.scope.join(" ");
        let jti = random_token(16);
        let aud = grant
            .audience
            .clone()
            .unwrap_or_else(|| grant.client_id.clone());
        // The account sessions API's audience beside the token's own, when asked for.
        let account = account_audience(&shared.issuer);
        // Several resources (RFC 8707) are kept space-separated.
        let mut auds: Vec<&str> = aud.split(' ').collect();
        if grant.has_scope(ACCOUNT_SCOPE) && !auds.contains(&account.as_str()) {
            auds.push(&account);
        }
        let aud = match auds.as_slice() {
            [one] => json!(one),
            many => json!(many),
        };
        let mut access = json!({
            "iss": shared.issuer,
            "sub": grant.sub,
            "aud": aud,
            "exp": now + secs(lifetimes.access_token),
            "iat": now,
            "jti": jti,
            "client_id": grant.client_id,
            "scope": scope,
        });
        if let Some(sid) = &grant.sid {
            access["sid"] = json!(sid);
            access["auth_time"] = json!(grant.auth_time);
        }
        if let Some(jkt) = &jkt {
            access["cnf"] = json!({ "jkt": jkt });
        }
        if let (Some(extra), Value::Object(claims)) = (&extra, &mut access) {
            crate::claims::merge(claims, &extra.access_token);
        }
        let access_key = keys.active(settings.signing_alg);
        let access_token = access_key.sign_jwt("at+jwt", &access);

        let id_token = grant.has_scope("openid").then(|| {
            let at_hash = b64(&sha256(access_token.as_bytes())[..16]);
            let mut claims = Map::new();
            claims.insert("iss".into(), json!(shared.issuer));
            claims.insert("sub".into(), json!(grant.sub));
            claims.insert("aud".into(), json!(grant.client_id));
            claims.insert("exp".into(), json!(now + secs(lifetimes.id_token)));
            claims.insert("iat".into(), json!(now));
            claims.insert("auth_time".into(), json!(grant.auth_time));
            claims.insert("at_hash".into(), json!(at_hash));
            if let Some(sid) = &grant.sid {
                claims.insert("sid".into(), json!(sid));
            }
            if let Some(acr) = &grant.acr {
                claims.insert("acr".into(), json!(acr));
            }
            if let Some(nonce) = &nonce {
                claims.insert("nonce".into(), json!(nonce));
            }
            if let Some(user) = grant.username.as_deref().and_then(|u| settings.user(u)) {
                for (name, value) in user_claims(user, &grant.scope) {
                    claims.entry(name).or_insert(value);
                }
            }
            if let Some(extra) = &extra {
                crate::claims::merge(&mut claims, &extra.id_token);
            }
            let claims = Value::Object(claims);
            let alg: Alg = client
                .and_then(|c| c.config.id_token_signed_response_alg)
                .unwrap_or(settings.signing_alg);
            (keys.active(alg).sign_jwt("JWT", &claims), claims)
        });

        let wants_refresh = new_refresh_token
            && grant.has_scope("offline_access")
            && client.is_some_and(|c| c.config.allows_grant("refresh_token"));
        let refresh_token = wants_refresh.then(|| random_token(32));

        let mut response = json!({
            "access_token": access_token,
            "token_type": if jkt.is_some() { "DPoP" } else { "Bearer" },
            "expires_in": lifetimes.access_token,
            "scope": scope,
        });
        {
            let mut store = shared.store();
            store.insert_access(
                Shared::hash(&access_token),
                AccessRecord {
                    grant: grant_id,
                    expires_at: now + secs(lifetimes.access_token),
                    revoked: false,
                    jkt: jkt.clone(),
                    userinfo: extra
                        .map(|e| e.userinfo)
                        .filter(|claims| !claims.is_empty()),
                },
                now,
            );
            store.record_token(TokenRecord {
                kind: "access_token",
                fingerprint: fingerprint(&access_token),
                header: Some(
                    json!({"alg": access_key.alg.as_str(), "kid": access_key.kid, "typ": "at+jwt"}),
                ),
                claims: access,
                issued_at: now,
            });
            if let Some((token, claims)) = &id_token {
                store.record_token(TokenRecord {
                    kind: "id_token",
                    fingerprint: fingerprint(token),
                    header: crate::keys::decode_unverified(token).map(|d| d.header),
                    claims: claims.clone(),
                    issued_at: now,
                });
            }
            if let Some(token) = &refresh_token {
                let expires_at = now + secs(lifetimes.refresh_token);
                store.refresh.insert(
                    Shared::hash(token),
                    RefreshRecord {
                        grant: grant_id,
                        expires_at,
                        issued_at: now,
                        used: false,
                        used_at: 0,
                        // Confidential clients' refresh tokens are bound to
                        // their client authentication instead (RFC 9449 §5).
                        jkt: jkt
                            .clone()
                            .filter(|_| client.is_some_and(|c| c.config.is_public())),
                    },
                );
                store.record_token(TokenRecord {
                    kind: "refresh_token",
                    fingerprint: fingerprint(token),
                    header: None,
                    claims: json!({"sub": grant.sub, "client_id": grant.client_id, "exp": expires_at, "sid": grant.sid}),
                    issued_at: now,
                });
            }
        }
        if let Some((token, _)) = id_token {
            response["id_token"] = json!(token);
        }
        if let Some(token) = refresh_token {
            response["refresh_token"] = json!(token);
        }
        response
    }
}

/// The claims of `user` that `scope` asks for (OIDC Core §5.4).
pub(crate) fn user_claims(user: &crate::config::User, scope: &[String]) -> Vec<(String, Value)> {
    const PROFILE: &[&str] = &[
        "name",
        "family_name",
        "given_name",
        "middle_name",
        "nickname",
        "preferred_username",
        "profile",
        "picture",
        "website",
        "gender",
        "birthdate",
        "zoneinfo",
        "locale",
        "updated_at",
    ];
    const EMAIL: &[&str] = &["email", "email_verified"];
    let has = |s: &str| scope.iter().any(|x| x == s);
    user.claims
        .iter()
        .filter(|(k, _)| {
            (has("profile") && PROFILE.contains(&k.as_str()))
                || (has("email") && EMAIL.contains(&k.as_str()))
                || (!PROFILE.contains(&k.as_str())
                    && !EMAIL.contains(&k.as_str())
                    && has("profile"))
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::pkce_ok;
    use crate::keys::{b64, sha256};

    #[test]
    fn pkce_needs_the_exact_verifier_in_the_rfc_alphabet() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = b64(&sha256(verifier.as_bytes()));
        assert_eq!(challenge, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
        assert!(pkce_ok(verifier, &challenge));
        assert!(!pkce_ok(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXj",
            &challenge
        ));
        assert!(!pkce_ok(&challenge, &challenge), "plain downgrade");
        assert!(!pkce_ok("short", &b64(&sha256(b"short"))));
    }
}
