//! One open connection: pump messages both ways, ping, and move to the
//! token source's newer token when it has one — in-band, or
//! make-before-break (a second connection, then a switch) — without a gap.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::time::{Instant, sleep_until, timeout};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::dpop::{self, Dial, Failure};
use crate::driver::{Driver, SessionEnd, scrub};
use crate::error::TokenError;
use crate::handshake::{Socket, chosen_protocol};
use crate::metrics::Counters;
use crate::options::{Incoming, RefreshMode};
use crate::state::{CloseReason, State};
use crate::token::{BearerToken, BoxFuture, TimedToken};
use crate::unlogged;

pub(crate) type Sink = SplitSink<Socket, Message>;
pub(crate) type Stream = SplitStream<Socket>;
/// A make-before-break connection being opened.
type Upgrade = BoxFuture<'static, std::result::Result<(Socket, TimedToken), String>>;
/// The source's current token being fetched while connected.
type Fetch = BoxFuture<'static, std::result::Result<TimedToken, TokenError>>;

/// `at` on tokio's clock (`None` stays `None`; a past time is now).
fn at_instant(at: Option<SystemTime>) -> Option<Instant> {
    let wait = at?.duration_since(SystemTime::now()).unwrap_or_default();
    Some(Instant::now() + wait)
}

/// When to try again after a failed re-authentication while connected, the
/// current token expiring at `expires_at`: after half its remaining
/// lifetime, unless that is shorter than `floor` (then the token runs out,
/// the server closes with 4001, and the client reconnects with a refresh).
pub(crate) fn reauth_retry(expires_at: Option<SystemTime>, floor: Duration) -> Option<Instant> {
    let remaining = expires_at?.duration_since(SystemTime::now()).ok()?;
    let wait = remaining / 2;
    (wait >= floor && !wait.is_zero()).then(|| Instant::now() + wait)
}

/// At most this many re-authentication retries per token: past them the
/// token runs out, the server closes with 4001 and the client reconnects
/// with a refresh (a bound even where the clock does not advance).
const MAX_REAUTH_RETRIES: u32 = 8;

/// The next re-authentication retry, or `None` once the token has had
/// [`MAX_REAUTH_RETRIES`].
fn retry_reauth(
    retries: &mut u32,
    expires_at: Option<SystemTime>,
    floor: Duration,
) -> Option<Instant> {
    if *retries >= MAX_REAUTH_RETRIES {
        return None;
    }
    *retries += 1;
    reauth_retry(expires_at, floor)
}

impl Driver {
    /// Asks the source for its current token (bounded by the connect
    /// limit: a refresh that hangs must not leave the connection without a
    /// retry).
    pub(crate) fn fetch(&self) -> Fetch {
        let source = self.source.clone();
        let limit = self.cfg.connect_timeout;
        Box::pin(async move {
            match timeout(limit, source.token()).await {
                Ok(result) => result,
                Err(_) => Err(TokenError::Unavailable(
                    "the token source timed out".to_owned(),
                )),
            }
        })
    }

    /// Waits for the source's next token change.
    pub(crate) fn changed(&self) -> BoxFuture<'static, ()> {
        let source = self.source.clone();
        Box::pin(async move { source.changed().await })
    }

    /// Opens the make-before-break connection with the source's newer token.
    pub(crate) fn upgrade(&self, fresh: TimedToken) -> Upgrade {
        let url = self.endpoints.url().to_owned();
        let transport = self.cfg.token_transport.clone();
        let limit = self.cfg.connect_timeout;
        let tls = self.cfg.tls.clone();
        let config = self.cfg.ws_config();
        let source = self.source.clone();
        let nonces = self.endpoints.nonces().clone();
        let endpoints = self.endpoints.len();
        Box::pin(async move {
            let dial = Dial {
                url: &url,
                transport: &transport,
                tls,
                config,
                limit,
                source: &*source,
                nonces: &nonces,
                endpoints,
            };
            let (socket, response) = dpop::connect(dial, &fresh.token).await.map_err(
                |failure| match failure {
                    Failure::Token(e) => e.to_string(),
                    Failure::DpopNeedsHeader => {
                        "a DPoP proof needs the Authorization header".to_owned()
                    }
                    Failure::DpopAlgorithm {
                        accepted,
                        signs_with,
                    } => format!(
                        "the server takes DPoP proofs signed with {accepted:?}, not {signs_with}"
                    ),
                    Failure::Open(e) => scrub(&e.to_string(), &fresh.token),
                },
            )?;
            chosen_protocol(&transport, &response)?;
            Ok((socket, fresh))
        })
    }

    /// Pumps one open connection until it ends. When the source has a newer
    /// token (its `changed` fires, or the current token's `refresh_at`
    /// comes) the connection moves to it, in-band or make-before-break (a
    /// switch moves `generation` on); `last` follows the token in use.
    #[allow(clippy::too_many_lines)]
    pub(crate) async fn session(
        &mut self,
        generation: &mut u64,
        socket: Socket,
        token: TimedToken,
        last: &mut BearerToken,
    ) -> SessionEnd {
        let (mut sink, mut stream) = socket.split();
        let write_timeout = self.cfg.write_timeout;
        if let Err(end) = self.prepare(*generation, &mut sink, true).await {
            return end;
        }
        let follows = token.refresh_at.is_some();
        let mut reauth = at_instant(token.refresh_at);
        // Failed re-authentications of the current token, bounded.
        let mut reauth_retries = 0u32;
        let mut current_expiry = token.expires_at;
        *last = token.token;
        // A failed re-authentication is tried again while the token lives
        // (at half its remaining lifetime, no sooner than the backoff's base).
        let floor = self.cfg.backoff.base.max(Duration::from_millis(10));
        let mut changed: Option<BoxFuture<'static, ()>> = follows.then(|| self.changed());
        let mut fetch: Option<Fetch> = None;
        // Whether the running fetch was asked for by `refresh_at` (a same
        // token then counts as a failed re-authentication).
        let mut fetch_due = false;
        let mut upgrade: Option<Upgrade> = None;
        // The old connection after a switch, read until it has closed.
        let mut draining: Option<(Stream, Instant)> = None;
        // Identities delivered during a make-before-break overlap.
        let mut overlap: Option<HashSet<String>> = None;
        // Liveness: `heard` is when the server last sent a frame (or when
        // reading last resumed); a ping goes out after `ping_after` of
        // silence (and again every `ping_after`); `silence` of it is death.
        let silence = self.cfg.pong_timeout;
        let ping_after = self.cfg.ping_interval.min(silence / 2);
        let mut heard = Instant::now();
        let mut pinged = heard;
        loop {
            let next_ping = heard.max(pinged) + ping_after;
            let drain_until = draining.as_ref().map(|(_, until)| *until);
            let busy = fetch.is_some() || upgrade.is_some();
            tokio::select! {
                biased;
                () = self.stop.cancelled() => {
                    let frame = CloseFrame { code: CloseCode::Normal, reason: "".into() };
                    let _ = timeout(write_timeout, sink.send(Message::Close(Some(frame)))).await;
                    return SessionEnd::Stopped(CloseReason::Closed);
                }
                () = self.logout.cancelled() => {
                    let frame = CloseFrame { code: CloseCode::Normal, reason: "signed out".into() };
                    let _ = timeout(write_timeout, sink.send(Message::Close(Some(frame)))).await;
                    return SessionEnd::Stopped(CloseReason::SignedOut);
                }
                frame = stream.next() => {
                    heard = Instant::now();
                    match frame {
                        None => return SessionEnd::Lost("closed without a close frame".to_owned()),
                        Some(Err(e)) => return SessionEnd::Lost(e.to_string()),
                        Some(Ok(Message::Close(frame))) => {
                            let (code, reason) = frame.map_or((1005, String::new()), |f| {
                                (u16::from(f.code), f.reason.to_string())
                            });
                            return SessionEnd::ServerClosed { code, reason };
                        }
                        // A stop while the app is not reading is handled by
                        // the stop arms on the next turn.
                        // While the app's queue is full nothing is read:
                        // the silence counts from when reading resumes.
                        Some(Ok(Message::Text(text))) => {
                            self.deliver_once(Incoming::Text(text.to_string()), &mut overlap).await;
                            heard = Instant::now();
                        }
                        Some(Ok(Message::Binary(bytes))) => {
                            self.deliver_once(Incoming::Binary(bytes.to_vec()), &mut overlap).await;
                            heard = Instant::now();
                        }
                        Some(Ok(Message::Ping(_))) => {
                            // tungstenite queued the pong; push it out now.
                            let _ = timeout(write_timeout, sink.flush()).await;
                        }
                        Some(Ok(_)) => {}
                    }
                }
                frame = async { draining.as_mut().map(|(old, _)| old).expect("draining").next().await },
                    if draining.is_some() => match frame {
                    Some(Ok(Message::Text(text))) if self.cfg.identity.is_some() => {
                        self.deliver_once(Incoming::Text(text.to_string()), &mut overlap).await;
                    }
                    Some(Ok(Message::Binary(bytes))) if self.cfg.identity.is_some() => {
                        self.deliver_once(Incoming::Binary(bytes.to_vec()), &mut overlap).await;
                    }
                    Some(Ok(Message::Close(_)) | Err(_)) | None => {
                        draining = None;
                        overlap = None;
                    }
                    Some(Ok(_)) => {}
                },
                () = sleep_until(drain_until.unwrap_or_else(Instant::now)), if drain_until.is_some() => {
                    draining = None;
                    overlap = None;
                }
                () = async { changed.as_mut().expect("changed").await }, if changed.is_some() => {
                    // The source refreshed on its own: take its token, unless
                    // a move is already under way (it takes the newest).
                    changed = Some(self.changed());
                    if !busy {
                        fetch = Some(self.fetch());
                        fetch_due = false;
                    }
                }
                () = sleep_until(reauth.unwrap_or_else(Instant::now)), if reauth.is_some() && !busy => {
                    // Due: asking the source joins its refresh (or starts the
                    // one refresh its policy allows); never one of our own.
                    reauth = None;
                    fetch = Some(self.fetch());
                    fetch_due = true;
                }
                fetched = async { fetch.as_mut().expect("fetch").await }, if fetch.is_some() => {
                    fetch = None;
                    match fetched {
                        Ok(fresh) if fresh.token != *last => match self.cfg.refresh_mode.clone() {
                            RefreshMode::MakeBeforeBreak => {
                                tracing::debug!(generation = *generation, "realtime make-before-break switch");
                                upgrade = Some(self.upgrade(fresh));
                                overlap = self.cfg.identity.is_some().then(HashSet::new);
                            }
                            RefreshMode::InBand(hook) => {
                                let text = hook(&fresh.token);
                                // Past tungstenite, which logs what it writes.
                                let mut socket = sink.reunite(stream).expect("the halves of one socket");
                                let sent = timeout(write_timeout, unlogged::send_text(&mut socket, text)).await;
                                if !matches!(sent, Ok(Ok(()))) {
                                    return SessionEnd::Lost("write failed".to_owned());
                                }
                                (sink, stream) = socket.split();
                                tracing::debug!(generation = *generation, "realtime in-band re-authentication");
                                Counters::add(&self.counters.token_moves);
                                reauth = at_instant(fresh.refresh_at);
                                reauth_retries = 0;
                                *last = fresh.token;
                                current_expiry = fresh.expires_at;
                            }
                        },
                        Ok(_) if !fetch_due => {}
                        Ok(_) => {
                            tracing::debug!("re-authentication: the source has no newer token yet");
                            reauth = retry_reauth(&mut reauth_retries, current_expiry, floor);
                        }
                        Err(e) if e.is_terminal() => {
                            let frame = CloseFrame { code: CloseCode::Normal, reason: "signed out".into() };
                            let _ = timeout(write_timeout, sink.send(Message::Close(Some(frame)))).await;
                            return SessionEnd::Stopped(CloseReason::SignedOut);
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, "re-authentication: no token");
                            reauth = retry_reauth(&mut reauth_retries, current_expiry, floor);
                        }
                    }
                }
                done = async { upgrade.as_mut().expect("upgrade").await }, if upgrade.is_some() => {
                    upgrade = None;
                    match done {
                        Err(why) => {
                            tracing::debug!(%why, "make-before-break: the new connection failed; keeping the old one");
                            overlap = None;
                            reauth = retry_reauth(&mut reauth_retries, current_expiry, floor);
                        }
                        Ok((socket, fresh)) => {
                            let (mut new_sink, new_stream) = socket.split();
                            match self.prepare(*generation + 1, &mut new_sink, false).await {
                                Err(SessionEnd::Stopped(reason)) => return SessionEnd::Stopped(reason),
                                Err(_) => {
                                    tracing::debug!("make-before-break: the new connection failed; keeping the old one");
                                    overlap = None;
                                    reauth = retry_reauth(&mut reauth_retries, current_expiry, floor);
                                }
                                Ok(()) => {
                                    let frame = CloseFrame { code: CloseCode::Normal, reason: "re-authenticated".into() };
                                    let _ = timeout(write_timeout, sink.send(Message::Close(Some(frame)))).await;
                                    let old_stream = std::mem::replace(&mut stream, new_stream);
                                    sink = new_sink;
                                    draining = Some((old_stream, Instant::now() + write_timeout));
                                    *generation += 1;
                                    tracing::debug!(generation = *generation, "realtime switched connections");
                                    Counters::add(&self.counters.token_moves);
                                    self.state.send_replace(State::Connected { generation: *generation });
                                    reauth = at_instant(fresh.refresh_at);
                                    reauth_retries = 0;
                                    *last = fresh.token;
                                    current_expiry = fresh.expires_at;
                                    heard = Instant::now();
                                    pinged = heard;
                                }
                            }
                        }
                    }
                }
                // While the old connection drains, sending waits: what went
                // out on it reaches the server before what goes on the new one.
                out = self.outgoing.recv(), if self.outgoing_open && draining.is_none() => match out {
                    None => self.outgoing_open = false,
                    Some(text) => {
                        let sent = timeout(write_timeout, sink.send(Message::text(text.clone()))).await;
                        if !matches!(sent, Ok(Ok(()))) {
                            self.pending = Some(text);
                            return SessionEnd::Lost("write failed".to_owned());
                        }
                        self.bytes.add_permits(text.len());
                    }
                },
                () = sleep_until(heard + silence) => {
                    return SessionEnd::Unresponsive;
                }
                () = sleep_until(next_ping) => {
                    pinged = Instant::now();
                    let sent = timeout(write_timeout, sink.send(Message::Ping(Default::default()))).await;
                    if !matches!(sent, Ok(Ok(()))) {
                        return SessionEnd::Lost("ping write failed".to_owned());
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_times_land_on_the_tokio_clock() {
        let now = Instant::now();
        let at = at_instant(Some(SystemTime::now() + Duration::from_secs(60))).expect("set");
        let lead = at - now;
        assert!(lead > Duration::from_secs(59) && lead < Duration::from_secs(61));
        // A past time is now; an unknown one stays unknown.
        let past = at_instant(Some(SystemTime::now() - Duration::from_secs(5))).expect("set");
        assert!(past - now < Duration::from_secs(1));
        assert_eq!(at_instant(None), None);
    }

    #[test]
    fn a_failed_reauth_is_retried_at_half_the_remaining_life_above_the_floor() {
        let now = Instant::now();
        let soon = |d: Duration| Some(SystemTime::now() + d);
        let at = reauth_retry(soon(Duration::from_secs(10)), Duration::from_millis(250))
            .expect("retried");
        let wait = at - now;
        assert!(wait > Duration::from_millis(4900) && wait < Duration::from_millis(5100));
        // Too close to the expiry, unknown or past: the 4001 path takes over.
        assert_eq!(
            reauth_retry(soon(Duration::from_millis(400)), Duration::from_millis(250)),
            None
        );
        assert_eq!(reauth_retry(None, Duration::from_millis(250)), None);
        assert_eq!(
            reauth_retry(
                Some(SystemTime::now() - Duration::from_secs(1)),
                Duration::ZERO
            ),
            None
        );
    }

    #[test]
    fn re_authentication_retries_are_bounded_per_token() {
        let far = Some(SystemTime::now() + Duration::from_secs(3600));
        let mut retries = 0;
        let scheduled = (0..20)
            .filter(|_| retry_reauth(&mut retries, far, Duration::ZERO).is_some())
            .count();
        assert_eq!(scheduled, 8);
        assert_eq!(retry_reauth(&mut retries, far, Duration::ZERO), None);
    }
}
