//! Scripted faults: per endpoint, answer with a chosen status and body, wait
//! first, drop the connection, or send malformed JSON — once, N times, or
//! until cleared. A fault answers before the endpoint runs, so nothing
//! changes at the provider (a refresh token is not rotated by a request that
//! was answered with a fault); a fault with only a delay waits, then lets
//! the endpoint answer.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};

/// The endpoints a fault can be put on, by name.
pub const ENDPOINTS: &[&str] = &[
    "discovery",
    "jwks",
    "authorize",
    "token",
    "userinfo",
    "revocation",
    "introspection",
    "end_session",
    "device_authorization",
    "device_verification",
    "account",
    "par",
];

/// One scripted fault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    /// The endpoint name, one of [`ENDPOINTS`].
    pub endpoint: String,
    /// Answer with this status (and `body`, or an RFC 6749 error body).
    #[serde(default)]
    pub status: Option<u16>,
    /// The body to answer with (sent as `application/json`).
    #[serde(default)]
    pub body: Option<String>,
    /// Wait this long before anything else.
    #[serde(default)]
    pub delay_ms: u64,
    /// Close the connection without an answer.
    #[serde(default)]
    pub drop_connection: bool,
    /// Answer 200 with a body that is not valid JSON.
    #[serde(default)]
    pub malformed_json: bool,
    /// With `status`: a `Retry-After` header, in seconds (429, 503).
    #[serde(default)]
    pub retry_after_secs: Option<u64>,
    /// How many requests it applies to; `None` until cleared.
    #[serde(default)]
    pub times: Option<u32>,
}

impl Fault {
    /// A fault on `endpoint` that does nothing yet; set what it does with the other methods.
    pub fn on(endpoint: &str) -> Self {
        Self {
            endpoint: endpoint.to_owned(),
            status: None,
            body: None,
            delay_ms: 0,
            drop_connection: false,
            malformed_json: false,
            retry_after_secs: None,
            times: None,
        }
    }
    /// Answer with this status and body.
    #[must_use]
    pub fn status(mut self, status: u16, body: &str) -> Self {
        self.status = Some(status);
        self.body = Some(body.to_owned());
        self
    }
    /// Wait this many milliseconds first.
    #[must_use]
    pub fn delay_ms(mut self, ms: u64) -> Self {
        self.delay_ms = ms;
        self
    }
    /// With a status: send `Retry-After: secs`.
    #[must_use]
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after_secs = Some(secs);
        self
    }
    /// Close the connection without answering.
    #[must_use]
    pub fn drop_connection(mut self) -> Self {
        self.drop_connection = true;
        self
    }
    /// Answer with malformed JSON.
    #[must_use]
    pub fn malformed_json(mut self) -> Self {
        self.malformed_json = true;
        self
    }
    /// Apply to the next `n` requests only.
    #[must_use]
    pub fn times(mut self, n: u32) -> Self {
        self.times = Some(n);
        self
    }
}

#[derive(Debug, Default)]
pub(crate) struct Faults {
    any: AtomicBool,
    list: Mutex<Vec<Fault>>,
}

impl Faults {
    pub(crate) fn add(&self, fault: Fault) {
        let mut list = self.list.lock().unwrap_or_else(|e| e.into_inner());
        list.push(fault);
        self.any.store(true, Ordering::Release);
    }

    pub(crate) fn clear(&self) {
        let mut list = self.list.lock().unwrap_or_else(|e| e.into_inner());
        list.clear();
        self.any.store(false, Ordering::Release);
    }

    pub(crate) fn list(&self) -> Vec<Fault> {
        self.list.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Takes the fault for this request, if one applies, counting it down.
    pub(crate) fn take(&self, endpoint: &str) -> Option<Fault> {
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        let mut list = self.list.lock().unwrap_or_else(|e| e.into_inner());
        let index = list.iter().position(|f| f.endpoint == endpoint)?;
        let fault = list[index].clone();
        match &mut list[index].times {
            Some(n) if *n <= 1 => {
                list.remove(index);
            }
            Some(n) => *n -= 1,
            None => {}
        }
        if list.is_empty() {
            self.any.store(false, Ordering::Release);
        }
        Some(fault)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_faults_run_out_and_unlimited_ones_stay() {
        let faults = Faults::default();
        faults.add(Fault::on("token").status(503, "{}").times(2));
        faults.add(Fault::on("userinfo").drop_connection());
        assert!(faults.take("token").is_some());
        assert!(faults.take("token").is_some());
        assert!(faults.take("token").is_none());
        for _ in 0..5 {
            assert!(faults.take("userinfo").is_some());
        }
        faults.clear();
        assert!(faults.take("userinfo").is_none());
    }
}
