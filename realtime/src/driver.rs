//! The driver: one task per client that fetches a token, connects to the
//! endpoint in use, hands the connection to `connection`, and decides from
//! how it ended whether to reconnect (to the same endpoint or the next one,
//! and when: `pacing`) or stop.
//!
//! (About 580 lines: the attempt loop, the classification of how a
//! connection ended and the hook that prepares a new connection share the
//! driver's state; a third of the length is doc comments and unit tests.)

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::SinkExt;
use serde::Deserialize;
use sessionkit_backoff::jitter_unit;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::{Instant, sleep, sleep_until, timeout};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::builder::Builder;
use crate::connection::Sink;
use crate::dpop::{self, Dial, Failure};
use crate::endpoints::Endpoints;
use crate::error::TokenError;
use crate::handshake::Socket;
use crate::handshake::{OpenError, chosen_protocol};
use crate::inbox::Inbox;
use crate::metrics::Counters;
use crate::options::{Hook, Identity, Incoming, Resume};
use crate::pacing::{Pacing, Setback};
use crate::state::{CloseReason, ReconnectReason, State};
use crate::token::{BearerToken, TimedToken, TokenSource};
use tracing::Instrument as _;

/// Close codes of a server going away: 1001 (going away: a node shutting
/// down, chat-server's `server shutting down`) and 1012 (service restart).
/// The client moves to the next endpoint at once (within the base delay).
pub(crate) const GOING_AWAY: [u16; 2] = [1001, 1012];

/// How one attempt ended.
pub(crate) enum Attempt {
    Token(TokenError),
    /// A DPoP proof with a transport that cannot carry it: terminal.
    DpopNeedsHeader,
    /// The server takes DPoP proofs signed with `accepted` only, and the
    /// source signs with `signs_with`: terminal once every endpoint said so.
    DpopAlgorithm {
        accepted: Vec<String>,
        signs_with: String,
    },
    Failed(ReconnectReason),
    /// The TCP connection was refused (nothing listens there).
    Refused(ReconnectReason),
    Unauthorized,
    Ended {
        up_for: Duration,
        end: SessionEnd,
    },
}

/// How an open connection ended.
pub(crate) enum SessionEnd {
    Stopped(CloseReason),
    ServerClosed { code: u16, reason: String },
    Lost(String),
    Unresponsive,
}

/// What to do after an attempt.
pub(crate) enum Next {
    Now(Option<TimedToken>),
    Backoff {
        reason: ReconnectReason,
        setback: Setback,
        /// Whether the next attempt goes to the next endpoint (the server
        /// or the way to it failed) or the same one (a token matter, or the
        /// server's own advice).
        move_on: bool,
    },
    Stop(CloseReason),
}

pub(crate) struct Driver {
    pub(crate) cfg: Builder,
    pub(crate) source: Arc<dyn TokenSource>,
    pub(crate) logout: CancellationToken,
    pub(crate) stop: CancellationToken,
    /// Until the first connection is up: when to give up.
    pub(crate) deadline: Option<Instant>,
    pub(crate) state: watch::Sender<State>,
    pub(crate) incoming: Inbox,
    pub(crate) outgoing: mpsc::Receiver<String>,
    pub(crate) outgoing_open: bool,
    pub(crate) bytes: Arc<Semaphore>,
    /// A message taken from the queue whose write failed: sent first after
    /// the reconnect (it may have arrived already: at least once).
    pub(crate) pending: Option<String>,
    pub(crate) counters: Arc<Counters>,
    /// The endpoints, the one in use, and each one's DPoP nonce.
    pub(crate) endpoints: Endpoints,
}

impl Driver {
    pub(crate) async fn run(mut self) {
        let reason = self.run_loop().await;
        tracing::debug!(?reason, "realtime client closed");
        // Senders waiting for room get `Error::Closed`.
        self.bytes.close();
        self.state.send_replace(State::Closed(reason));
    }

    /// Runs `fut` unless the client is closed, the account signs out or the
    /// first-connect deadline passes first.
    pub(crate) async fn or_stop<F: Future>(&self, fut: F) -> Result<F::Output, CloseReason> {
        let deadline = self.deadline;
        tokio::select! {
            biased;
            () = self.stop.cancelled() => Err(CloseReason::Closed),
            () = self.logout.cancelled() => Err(CloseReason::SignedOut),
            () = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                Err(CloseReason::DeadlineExceeded)
            }
            out = fut => Ok(out),
        }
    }

    pub(crate) async fn run_loop(&mut self) -> CloseReason {
        let mut generation = 0u64;
        // Consecutive retries (the state's `attempt`), until a connection
        // stays up long enough to reset the schedule.
        let mut attempts = 0u32;
        let mut pacing = Pacing::new(
            self.cfg.backoff,
            self.endpoints.len(),
            self.cfg.refused_probe_window,
        );
        let mut auth_retry_used = false;
        // Endpoints in a row that refused the DPoP proof's algorithm: one
        // misconfigured node of a fleet moves the client on; all of them
        // stop it. Any other outcome in between (a node down, a token not
        // there yet) starts the count again.
        let mut algorithm_refusals = 0usize;
        let mut token: Option<TimedToken> = None;
        // The token of the last attempt: what the server refused, if it did.
        let mut last = BearerToken::new(String::new());
        loop {
            generation += 1;
            self.state.send_replace(State::Connecting { generation });
            let span = tracing::debug_span!(
                "sessionkit.connect",
                generation,
                attempt = attempts + 1,
                endpoint = %self.endpoints.current(),
                outcome = tracing::field::Empty,
            );
            let attempt = match self
                .attempt(&mut generation, token.take(), &mut last, &mut pacing, &span)
                .await
            {
                Ok(attempt) => attempt,
                Err(reason) => return reason,
            };
            if !matches!(attempt, Attempt::DpopAlgorithm { .. }) {
                algorithm_refusals = 0;
            }
            let next = match attempt {
                Attempt::Token(TokenError::SignedOut) => Next::Stop(CloseReason::SignedOut),
                Attempt::DpopNeedsHeader => Next::Stop(CloseReason::DpopNeedsHeader),
                Attempt::DpopAlgorithm {
                    accepted,
                    signs_with,
                } => {
                    algorithm_refusals += 1;
                    if algorithm_refusals >= self.endpoints.len() {
                        Next::Stop(CloseReason::DpopAlgorithm {
                            accepted,
                            signs_with,
                        })
                    } else {
                        Next::Backoff {
                            reason: ReconnectReason::Handshake { status: 401 },
                            setback: Setback::Failed,
                            move_on: true,
                        }
                    }
                }
                // No attempt reached the server: stay.
                Attempt::Token(e) => Next::Backoff {
                    reason: ReconnectReason::TokenUnavailable(e.to_string()),
                    setback: Setback::Failed,
                    move_on: false,
                },
                Attempt::Failed(reason) => Next::Backoff {
                    reason,
                    setback: Setback::Failed,
                    move_on: true,
                },
                Attempt::Refused(reason) => Next::Backoff {
                    reason,
                    setback: Setback::Refused,
                    move_on: true,
                },
                Attempt::Unauthorized => {
                    match self.after_refusal(false, &mut auth_retry_used, &last).await {
                        Ok(next) => next,
                        Err(reason) => return reason,
                    }
                }
                Attempt::Ended { up_for, end } => {
                    if pacing.ended(up_for) {
                        attempts = 0;
                        auth_retry_used = false;
                    }
                    match self.after_session(end, &mut auth_retry_used, &last).await {
                        Ok(next) => next,
                        Err(reason) => return reason,
                    }
                }
            };
            if !matches!(next, Next::Stop(_)) {
                Counters::add(&self.counters.reconnects);
            }
            match next {
                Next::Stop(reason) => return reason,
                Next::Now(fresh) => token = fresh,
                Next::Backoff {
                    reason,
                    setback,
                    move_on,
                } => {
                    let retry_in = pacing.wait(setback, Instant::now(), jitter_unit());
                    attempts = attempts.saturating_add(1);
                    let from = self.endpoints.current().clone();
                    if move_on && self.endpoints.advance() {
                        Counters::add(&self.counters.moves);
                    }
                    tracing::debug!(
                        attempt = attempts,
                        ?retry_in,
                        ?reason,
                        endpoint = %from,
                        next = %self.endpoints.current(),
                        "realtime reconnecting"
                    );
                    self.state.send_replace(State::Reconnecting {
                        attempt: attempts,
                        retry_in,
                        reason,
                    });
                    if let Err(reason) = self.or_stop(sleep(retry_in)).await {
                        return reason;
                    }
                }
            }
        }
    }

    /// What to do after an open connection ended: a refused token (4001)
    /// or session (4003) refreshes and stays; 4500–4999 stop; other
    /// 4000–4499 codes (the application's, with its advice) stay; a server
    /// going away (1001, 1012) moves on at once; anything else (another
    /// close, a lost or silent connection) moves on with backoff.
    async fn after_session(
        &self,
        end: SessionEnd,
        auth_retry_used: &mut bool,
        last: &BearerToken,
    ) -> Result<Next, CloseReason> {
        let endpoint = self.endpoints.current();
        Ok(match end {
            SessionEnd::Stopped(reason) => Next::Stop(reason),
            SessionEnd::ServerClosed { code: 4001, .. } => {
                self.after_refusal(false, auth_retry_used, last).await?
            }
            SessionEnd::ServerClosed { code: 4003, .. } => {
                self.after_refusal(true, auth_retry_used, last).await?
            }
            SessionEnd::ServerClosed { code, reason } if (4500..=4999).contains(&code) => {
                Next::Stop(CloseReason::Terminal { code, reason })
            }
            SessionEnd::ServerClosed { code, reason } => {
                let going_away = GOING_AWAY.contains(&code);
                let setback = match retry_after(&reason) {
                    Some(advised) => Setback::Advised(advised),
                    None if going_away => Setback::GoingAway,
                    None => Setback::Failed,
                };
                tracing::debug!(code, %endpoint, "the server closed the connection");
                Next::Backoff {
                    reason: ReconnectReason::ServerClosed { code, reason },
                    setback,
                    move_on: !(4000..=4499).contains(&code),
                }
            }
            SessionEnd::Lost(why) => Next::Backoff {
                reason: ReconnectReason::Transport(format!("{endpoint}: {why}")),
                setback: Setback::Failed,
                move_on: true,
            },
            SessionEnd::Unresponsive => {
                tracing::debug!(%endpoint, "no frame within the silence timeout");
                Next::Backoff {
                    reason: ReconnectReason::Unresponsive,
                    setback: Setback::Failed,
                    move_on: true,
                }
            }
        })
    }

    /// After the server refused the token (401, 4001) or the session (4003):
    /// one forced refresh and an immediate retry; after that, back off. A
    /// 4003 refreshes every time, so a revoked session ends as signed out.
    pub(crate) async fn after_refusal(
        &self,
        revoked: bool,
        auth_retry_used: &mut bool,
        refused: &BearerToken,
    ) -> Result<Next, CloseReason> {
        Counters::add(&self.counters.refusals);
        let stay = |reason| Next::Backoff {
            reason,
            setback: Setback::Failed,
            move_on: false,
        };
        if *auth_retry_used && !revoked {
            return Ok(stay(ReconnectReason::Unauthorized));
        }
        let first = !*auth_retry_used;
        *auth_retry_used = true;
        Ok(match self.or_stop(self.source.rejected(refused)).await? {
            Ok(fresh) if first => Next::Now(Some(fresh)),
            Ok(_) => stay(ReconnectReason::Unauthorized),
            Err(TokenError::SignedOut) => Next::Stop(CloseReason::SignedOut),
            Err(e) => stay(ReconnectReason::TokenUnavailable(e.to_string())),
        })
    }

    pub(crate) async fn attempt(
        &mut self,
        generation: &mut u64,
        token: Option<TimedToken>,
        last: &mut BearerToken,
        pacing: &mut Pacing,
        span: &tracing::Span,
    ) -> Result<Attempt, CloseReason> {
        let opened = self.open_one(token, last).instrument(span.clone()).await?;
        let (socket, token) = match opened {
            Ok(opened) => {
                span.record("outcome", "connected");
                Counters::add(&self.counters.connects);
                opened
            }
            Err(attempt) => {
                span.record(
                    "outcome",
                    match &attempt {
                        Attempt::Unauthorized => "refused",
                        Attempt::Token(e) if e.is_terminal() => "signed_out",
                        Attempt::Token(_) => "no_token",
                        Attempt::DpopNeedsHeader => "dpop_needs_header",
                        Attempt::DpopAlgorithm { .. } => "dpop_algorithm",
                        Attempt::Refused(_) => "connection_refused",
                        _ => "failed",
                    },
                );
                if !matches!(attempt, Attempt::Unauthorized) {
                    Counters::add(&self.counters.failed_attempts);
                }
                return Ok(attempt);
            }
        };
        let endpoint = self.endpoints.current().clone();
        tracing::debug!(generation = *generation, %endpoint, "realtime connected");
        self.deadline = None;
        pacing.connected();
        // The endpoint first: whoever sees `Connected` sees where.
        self.counters.set_endpoint(Some(endpoint.index));
        self.state.send_replace(State::Connected {
            generation: *generation,
        });
        let started = Instant::now();
        let end = self.session(generation, socket, token, last).await;
        self.counters.set_endpoint(None);
        Ok(Attempt::Ended {
            up_for: started.elapsed(),
            end,
        })
    }

    /// One attempt up to an open socket (or how it failed).
    async fn open_one(
        &self,
        token: Option<TimedToken>,
        last: &mut BearerToken,
    ) -> Result<std::result::Result<(Socket, TimedToken), Attempt>, CloseReason> {
        let token = match token {
            Some(token) => token,
            None => match self.or_stop(self.source.token()).await? {
                Ok(token) => token,
                Err(e) => return Ok(Err(Attempt::Token(e))),
            },
        };
        *last = token.token.clone();
        let endpoint = self.endpoints.current();
        tracing::trace!(%endpoint, "realtime connecting");
        let transport = &self.cfg.token_transport;
        let dial = Dial {
            url: self.endpoints.url(),
            transport,
            tls: self.cfg.tls.clone(),
            config: self.cfg.ws_config(),
            limit: self.cfg.connect_timeout,
            source: &*self.source,
            nonces: self.endpoints.nonces(),
            endpoints: self.endpoints.len(),
        };
        Ok(
            match self.or_stop(dpop::connect(dial, &token.token)).await? {
                Err(Failure::Token(e)) => Err(Attempt::Token(e)),
                Err(Failure::DpopNeedsHeader) => Err(Attempt::DpopNeedsHeader),
                Err(Failure::DpopAlgorithm {
                    accepted,
                    signs_with,
                }) => {
                    tracing::warn!(%endpoint, ?accepted, %signs_with, "the server takes no DPoP proof signed the way the token source signs");
                    Err(Attempt::DpopAlgorithm {
                        accepted,
                        signs_with,
                    })
                }
                Err(Failure::Open(e)) if e.is_unauthorized() => Err(Attempt::Unauthorized),
                Err(Failure::Open(OpenError::Status { status, .. })) => {
                    Err(Attempt::Failed(ReconnectReason::Handshake { status }))
                }
                Err(Failure::Open(e)) => {
                    let why = scrub(&e.to_string(), &token.token);
                    let reason = ReconnectReason::Transport(format!("{endpoint}: {why}"));
                    if e.is_refused() {
                        Err(Attempt::Refused(reason))
                    } else {
                        Err(Attempt::Failed(reason))
                    }
                }
                Ok((socket, response)) => match chosen_protocol(transport, &response) {
                    Err(why) => Err(Attempt::Failed(ReconnectReason::Transport(format!(
                        "{endpoint}: {why}"
                    )))),
                    Ok(()) => Ok((socket, token)),
                },
            },
        )
    }

    /// Hands a message to the app, waiting while its queue is full (by
    /// count or bytes), unless the client stops meanwhile (the message is
    /// then dropped).
    pub(crate) async fn deliver(&self, message: Incoming) {
        tokio::select! {
            biased;
            () = self.stop.cancelled() => {}
            () = self.logout.cancelled() => {}
            () = self.incoming.send(message) => {}
        }
    }

    /// Hands a message to the app unless, during a make-before-break
    /// overlap, a message with the same identity was already delivered.
    pub(crate) async fn deliver_once(
        &self,
        message: Incoming,
        overlap: &mut Option<HashSet<String>>,
    ) {
        if let (Some(seen), Some(Identity(identity))) = (overlap.as_mut(), &self.cfg.identity)
            && let Some(id) = identity(&message)
            && !seen.insert(id)
        {
            return;
        }
        self.deliver(message).await;
    }

    /// Runs the `on_connect` hook on a new connection and sends what it
    /// sent, then (with `pending`) the message whose write failed.
    pub(crate) async fn prepare(
        &mut self,
        generation: u64,
        sink: &mut Sink,
        pending: bool,
    ) -> Result<(), SessionEnd> {
        let write_timeout = self.cfg.write_timeout;
        if let Some(Hook(hook)) = self.cfg.on_connect.clone() {
            let (tx, mut rx) = mpsc::unbounded_channel();
            let ran = self
                .or_stop(timeout(
                    write_timeout,
                    hook(Resume {
                        generation,
                        endpoint: self.endpoints.current().clone(),
                        tx,
                    }),
                ))
                .await;
            match ran {
                Err(reason) => return Err(SessionEnd::Stopped(reason)),
                Ok(Err(_)) => {
                    return Err(SessionEnd::Lost("the on_connect hook timed out".to_owned()));
                }
                Ok(Ok(())) => {}
            }
            while let Ok(text) = rx.try_recv() {
                let sent = timeout(write_timeout, sink.send(Message::text(text))).await;
                if !matches!(sent, Ok(Ok(()))) {
                    return Err(SessionEnd::Lost("write failed".to_owned()));
                }
            }
        }
        if !pending {
            return Ok(());
        }
        if let Some(text) = self.pending.take() {
            let sent = timeout(write_timeout, sink.send(Message::text(text.clone()))).await;
            if !matches!(sent, Ok(Ok(()))) {
                self.pending = Some(text);
                return Err(SessionEnd::Lost("write failed".to_owned()));
            }
            self.bytes.add_permits(text.len());
        }
        Ok(())
    }
}

/// `text` with every occurrence of the token replaced.
pub(crate) fn scrub(text: &str, token: &BearerToken) -> String {
    if token.secret().is_empty() {
        return text.to_owned();
    }
    text.replace(token.secret(), "[redacted]")
}

/// The server's advised delay in a close reason: `{"retry_after_ms": N}`.
pub(crate) fn retry_after(reason: &str) -> Option<Duration> {
    #[derive(Deserialize)]
    struct Advice {
        retry_after_ms: u64,
    }
    serde_json::from_str::<Advice>(reason)
        .ok()
        .map(|a| Duration::from_millis(a.retry_after_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_read_from_the_close_reason() {
        assert_eq!(
            retry_after(r#"{"retry_after_ms": 1500}"#),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            retry_after(r#"{"retry_after_ms":0,"why":"restart"}"#),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after("going away"), None);
        assert_eq!(retry_after(r#"{"retry_after_ms": -1}"#), None);
        assert_eq!(retry_after(""), None);
    }

    #[test]
    fn urls_and_errors_lose_the_token() {
        assert_eq!(
            scrub("failed ws://x/?access_token=t0k", &BearerToken::new("t0k")),
            "failed ws://x/?access_token=[redacted]"
        );
    }
}
