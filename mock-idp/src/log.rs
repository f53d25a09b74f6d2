//! The request log and per-endpoint counters that tests read through the
//! control API. Paths only: no query string, no body, no header value is
//! kept, so nothing secret can end up here.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use serde::Serialize;

const CAPACITY: usize = 1_000;

/// One request as the log keeps it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LoggedRequest {
    /// When it arrived (provider clock, Unix milliseconds).
    pub at_ms: i64,
    /// The HTTP method.
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The endpoint name (see [`crate::ENDPOINTS`]), or `other`.
    pub endpoint: String,
    /// What the endpoint noted, such as the grant type of a token request.
    pub note: Option<String>,
    /// The status answered (0 when the connection was dropped).
    pub status: u16,
}

#[derive(Debug, Default)]
pub(crate) struct RequestLog {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    entries: VecDeque<LoggedRequest>,
    counters: BTreeMap<String, u64>,
}

impl RequestLog {
    pub(crate) fn record(&self, entry: LoggedRequest) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = inner.counters.get_mut(entry.endpoint.as_str()) {
            *count += 1;
        } else {
            inner.counters.insert(entry.endpoint.clone(), 1);
        }
        if let Some(note) = &entry.note {
            *inner
                .counters
                .entry(format!("{}:{note}", entry.endpoint))
                .or_default() += 1;
        }
        if inner.entries.len() == CAPACITY {
            inner.entries.pop_front();
        }
        inner.entries.push_back(entry);
    }

    pub(crate) fn entries(&self) -> Vec<LoggedRequest> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.entries.iter().cloned().collect()
    }

    pub(crate) fn counters(&self) -> BTreeMap<String, u64> {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .counters
            .clone()
    }

    pub(crate) fn reset(&self) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.entries.clear();
        inner.counters.clear();
    }
}
