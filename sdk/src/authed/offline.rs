//! Repeatable requests under [`crate::RefreshPolicy::OfflineFirst`]: when
//! one cannot be sent now — no token can be had because the provider is
//! unreachable, or the API is unreachable — it waits in the client's
//! bounded queue (`queue`) and one replay task per client sends the waiting
//! requests in the order they came, once a token can be had and the API
//! answers.
//!
//! "Unreachable" is decided here and nowhere else ([`classify`]):
//! - the token: an error the session calls transient (network, timeout,
//!   the provider's 5xx or 429, a locked store);
//! - the API: a connection that fails, times out or breaks before an
//!   answer, or an answer of `502`, `503` or `504` (a `Retry-After` in
//!   seconds is honoured, up to the queue's maximum age).
//!
//! Every other answer — `200`, `404`, `500`, `429`, the second `401` — is
//! the API's answer and goes to the caller. The replay task wakes when the
//! session's token changes ([`crate::Session::token_changes`]: the provider
//! is back) or after a backoff with full jitter, stops at the first request
//! that still cannot be sent (so none overtakes another), and ends when the
//! queue is empty. The session's end closes the queue: every waiting caller
//! gets [`DropReason::SignedOut`] and the task ends.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use reqwest::header::RETRY_AFTER;
use reqwest::{Request, Response, StatusCode};
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::{Error, Result};
use crate::session::Session;

use super::queue::{DropReason, Queue, QueueOptions};
use super::{AuthedClient, SendError};

/// A request waiting in the queue (without `Authorization`: the token is
/// added when it is sent) and its caller.
#[derive(Debug)]
pub(super) struct Pending {
    request: Request,
    reply: oneshot::Sender<Result<Response>>,
}

impl Pending {
    fn answer(self, result: Result<Response>) {
        // A caller that stopped waiting no longer needs the answer.
        let _ = self.reply.send(result);
    }

    fn gone(&self) -> bool {
        self.reply.is_closed()
    }
}

#[derive(Debug, Default)]
struct State {
    queue: Queue<Pending>,
    options: QueueOptions,
    /// A replay task is running (at most one per client).
    replaying: bool,
    /// The API asked for this much quiet (`Retry-After`).
    not_before: Option<Instant>,
}

/// The offline queue of one client (shared by its clones).
#[derive(Debug)]
pub(super) struct Offline {
    state: Mutex<State>,
    queued: watch::Sender<usize>,
    tasks: TaskTracker,
    /// A child of the session's: cancelled at its end.
    cancel: CancellationToken,
}

/// Where a repeatable request goes.
pub(super) enum Admission {
    /// It waits; the answer comes here.
    Waiting(oneshot::Receiver<Result<Response>>),
    /// It was refused a place.
    Dropped(DropReason),
    /// Nothing waits ahead of it: send it now.
    SendNow(Box<Request>),
}

/// What one attempt came to.
pub(super) enum Attempt {
    /// The API answered (or failed in a way that waiting will not fix).
    Done(Result<Response>),
    /// It could not be sent now: the provider or the API is unreachable.
    Unreachable {
        /// The API's `Retry-After`, if it sent one.
        retry_after: Option<Duration>,
    },
}

impl Offline {
    /// A queue for `session`'s client, closed at the session's end.
    pub(super) fn new(session: &Session) -> Arc<Self> {
        let offline = Arc::new(Self {
            state: Mutex::new(State::default()),
            queued: watch::channel(0).0,
            tasks: TaskTracker::new(),
            cancel: session.cancellation().child_token(),
        });
        let ending = Arc::downgrade(&offline);
        session.on_end(move || {
            if let Some(offline) = ending.upgrade() {
                offline.close();
            }
        });
        offline
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn options(&self) -> QueueOptions {
        self.lock().options
    }

    pub(super) fn set_options(&self, options: QueueOptions) {
        self.lock().options = options;
    }

    pub(super) fn len(&self) -> usize {
        *self.queued.borrow()
    }

    pub(super) fn changes(&self) -> watch::Receiver<usize> {
        self.queued.subscribe()
    }

    pub(super) fn running_tasks(&self) -> usize {
        self.tasks.len()
    }

    fn publish(&self, state: &State) {
        self.queued.send_if_modified(|n| {
            let changed = *n != state.queue.len();
            *n = state.queue.len();
            changed
        });
    }

    /// Queues `request` behind the requests that already wait (a new one
    /// must not overtake them) — or hands it back to be sent now when none
    /// waits.
    pub(super) fn queue_behind_others(
        &self,
        client: &AuthedClient,
        request: Request,
        bytes: usize,
    ) -> Admission {
        let mut state = self.lock();
        if state.queue.is_empty() || state.queue.is_closed() {
            return Admission::SendNow(Box::new(request));
        }
        match self.admit(&mut state, client, request, bytes, None) {
            Ok(answer) => Admission::Waiting(answer),
            Err(reason) => Admission::Dropped(reason),
        }
    }

    /// Queues `request` (`bytes` of body) for `client`'s replay task, after
    /// an attempt found the provider or the API unreachable.
    pub(super) fn queue(
        &self,
        client: &AuthedClient,
        request: Request,
        bytes: usize,
        retry_after: Option<Duration>,
    ) -> std::result::Result<oneshot::Receiver<Result<Response>>, DropReason> {
        let mut state = self.lock();
        self.admit(&mut state, client, request, bytes, retry_after)
    }

    fn admit(
        &self,
        state: &mut State,
        client: &AuthedClient,
        request: Request,
        bytes: usize,
        retry_after: Option<Duration>,
    ) -> std::result::Result<oneshot::Receiver<Result<Response>>, DropReason> {
        state.queue.remove_where(Pending::gone);
        let (reply, answer) = oneshot::channel();
        let options = state.options;
        let admitted =
            state
                .queue
                .admit(Pending { request, reply }, bytes, Instant::now(), &options);
        self.publish(state);
        if let Err((reason, _)) = admitted {
            return Err(reason);
        }
        if let Some(wait) = retry_after {
            let until = Instant::now() + wait.min(options.limits().2);
            state.not_before = Some(state.not_before.map_or(until, |t| t.max(until)));
        }
        if !state.replaying {
            state.replaying = true;
            self.tasks.spawn(replay(client.clone()));
        }
        Ok(answer)
    }

    /// Closes the queue for good (the session ended): every waiting caller
    /// learns why.
    pub(super) fn close(&self) {
        let dropped = {
            let mut state = self.lock();
            let dropped = state.queue.close();
            self.publish(&state);
            dropped
        };
        self.tasks.close();
        for pending in dropped {
            pending.answer(Err(Error::Dropped(DropReason::SignedOut)));
        }
    }

    /// Takes out what expired and what nobody waits for; answers the
    /// expired. `None` when the queue is empty — and then, with `finish`,
    /// the replay task is marked ended under the same lock, so the next
    /// admitted request starts a new one and two never run at once.
    fn sweep(&self, finish: bool) -> Option<(Option<Instant>, Option<Instant>)> {
        let (expired, next) = {
            let mut state = self.lock();
            let max_age = state.options.limits().2;
            let expired = state.queue.expire(Instant::now(), max_age);
            state.queue.remove_where(Pending::gone);
            self.publish(&state);
            let next = if state.queue.is_empty() {
                if finish {
                    state.replaying = false;
                }
                None
            } else {
                let not_before = if finish {
                    state.not_before.take()
                } else {
                    None
                };
                Some((state.queue.next_expiry(max_age), not_before))
            };
            (expired, next)
        };
        for pending in expired {
            pending.answer(Err(Error::Dropped(DropReason::Expired)));
        }
        next
    }
}

/// Decides whether `outcome` is the API's answer or "cannot be sent now".
pub(super) fn classify(outcome: std::result::Result<Response, SendError>) -> Attempt {
    match outcome {
        Ok(response) => match response.status() {
            StatusCode::BAD_GATEWAY
            | StatusCode::SERVICE_UNAVAILABLE
            | StatusCode::GATEWAY_TIMEOUT => {
                let retry_after = response
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                Attempt::Unreachable { retry_after }
            }
            _ => Attempt::Done(Ok(response)),
        },
        Err(SendError::Token(error)) if provider_unreachable(&error) => {
            Attempt::Unreachable { retry_after: None }
        }
        Err(SendError::Transport(error))
            if error.is_connect() || error.is_timeout() || error.is_request() =>
        {
            Attempt::Unreachable { retry_after: None }
        }
        Err(other) => Attempt::Done(Err(other.into())),
    }
}

/// Did the token fail for a reason that passes? ([`Error::is_transient`]:
/// the network, the provider's 5xx or 429 with or without an OAuth body.)
fn provider_unreachable(error: &Error) -> bool {
    error.is_transient()
}

/// How a replay round ended.
enum Round {
    /// Everything that waited was answered (or the queue emptied).
    Drained,
    /// The request at the front still cannot be sent.
    Stalled { retry_after: Option<Duration> },
    /// The session ended.
    SignedOut,
}

/// Resets `replaying` if the task ends abnormally (a panic, the runtime
/// shutting down), so the next admitted request starts a new one.
struct Running<'a>(&'a Offline, bool);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        if self.1 {
            self.0.lock().replaying = false;
        }
    }
}

/// The replay task: one per client while requests wait.
async fn replay(client: AuthedClient) {
    let offline = Arc::clone(&client.offline);
    let mut running = Running(&offline, true);
    let mut changes = client.session.token_changes();
    changes.borrow_and_update();
    let mut watching = true;
    // One wait per round; the first, and the first after a drained round,
    // is the base.
    let mut waits = offline.options().backoff().schedule();
    let mut next_try = Instant::now() + waits.next_delay();
    loop {
        let Some((expiry, not_before)) = offline.sweep(true) else {
            running.1 = false;
            return;
        };
        if let Some(not_before) = not_before {
            next_try = next_try.max(not_before);
        }
        let wake = expiry.map_or(next_try, |e| e.min(next_try));
        let token_changed = tokio::select! {
            biased;
            () = offline.cancel.cancelled() => break,
            changed = changes.changed(), if watching => {
                watching = changed.is_ok();
                watching
            }
            () = tokio::time::sleep_until(wake) => false,
        };
        if !token_changed && Instant::now() < next_try {
            // Woke for an expiry; the sweep answers it.
            continue;
        }
        let retry_after = match replay_in_order(&client).await {
            Round::Drained => {
                waits.reset();
                None
            }
            Round::Stalled { retry_after } => retry_after,
            Round::SignedOut => break,
        };
        let max_age = offline.options().limits().2;
        let wait = waits
            .next_delay()
            .max(retry_after.unwrap_or_default().min(max_age));
        next_try = Instant::now() + wait;
        tracing::debug!(queued = offline.len(), ?wait, "offline queue: next replay");
    }
    offline.close();
    running.1 = false;
}

/// Sends the waiting requests oldest first until one still cannot be sent.
async fn replay_in_order(client: &AuthedClient) -> Round {
    let offline = &client.offline;
    loop {
        if offline.sweep(false).is_none() {
            return Round::Drained;
        }
        let (id, request) = {
            let mut state = offline.lock();
            let Some(front) = state.queue.front() else {
                return Round::Drained;
            };
            let id = front.id;
            match front.item.request.try_clone() {
                Some(request) => (id, request),
                None => {
                    // Only requests with a body in memory are admitted.
                    let pending = state.queue.take(id);
                    offline.publish(&state);
                    drop(state);
                    if let Some(pending) = pending {
                        pending.answer(Err(Error::Config(
                            "a queued request could not be copied".to_owned(),
                        )));
                    }
                    continue;
                }
            }
        };
        let outcome = tokio::select! {
            biased;
            () = offline.cancel.cancelled() => return Round::SignedOut,
            outcome = client.send_once(request) => outcome,
        };
        let result = match classify(outcome) {
            Attempt::Unreachable { retry_after } => {
                tracing::debug!(queued = offline.len(), "offline queue: still unreachable");
                return Round::Stalled { retry_after };
            }
            Attempt::Done(Err(error)) if error.is_signed_out() => return Round::SignedOut,
            Attempt::Done(result) => result,
        };
        let pending = {
            let mut state = offline.lock();
            let pending = state.queue.take(id);
            offline.publish(&state);
            pending
        };
        if let Some(pending) = pending {
            pending.answer(result);
        }
    }
}
