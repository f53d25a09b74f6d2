//! # sessionkit-backoff
//!
//! The one backoff-with-jitter of sessionkit: exponential steps up to a cap,
//! full jitter applied after the cap (optionally above a floor), and the
//! retries of one operation counted against a limit. The SDK's refresh
//! retries, its background timer, its store-write retries, its logout
//! revocation and its offline-queue replay use it, and so do the realtime
//! client's reconnects (`sessionkit_realtime::Backoff` is this [`Backoff`]).
//!
//! Everything is a pure function of a failure count and a random unit in
//! `[0, 1]`; the unit comes from [`jitter_unit`] unless a test injects its
//! own ([`Schedule::jitter`]). Nothing here sleeps: callers do, on their
//! runtime's clock.
//!
//! ## Quick start
//!
//! ```
//! use std::time::Duration;
//! use sessionkit_backoff::Backoff;
//!
//! // Up to 3 retries, waits drawn under 250 ms, 500 ms, 1 s (capped at 10 s).
//! let mut retries = Backoff::new(Duration::from_millis(250), 2.0, Duration::from_secs(10))
//!     .schedule()
//!     .limit(3);
//! let mut attempts = 0;
//! let outcome = loop {
//!     attempts += 1;
//!     let result: Result<(), &str> = if attempts < 3 { Err("timeout") } else { Ok(()) };
//!     match result {
//!         Ok(()) => break Ok(()),
//!         Err(e) => match retries.next() {
//!             Some(wait) => assert!(wait <= Duration::from_secs(1)), // sleep(wait) here
//!             None => break Err(e),
//!         },
//!     }
//! };
//! assert_eq!(outcome, Ok(()));
//! assert_eq!(retries.failures(), 2);
//! ```
//!
//! ## Layout
//! - `backoff`: [`Backoff`], the schedule as pure functions (ceiling, delay,
//!   the reset rule of a kept-open connection).
//! - `schedule`: [`Schedule`], the failures of one operation, their waits
//!   and the retry limit.
//! - `jitter`: [`jitter_unit`], the one source of randomness.

#![forbid(unsafe_code)]

mod backoff;
mod jitter;
mod schedule;

pub use backoff::Backoff;
pub use jitter::jitter_unit;
pub use schedule::Schedule;
