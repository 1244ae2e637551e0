//! A KV client of the admin HTTP API that records every operation for the linearizability
//! checker: reads (STRONG or QUORUM), writes, and compare-and-swap.
//!
//! Every value written is unique (`c<client>-<n>`), so a version the client read names
//! exactly one write, and "CAS on version N" is "CAS on the value written at version N": the
//! checker's value-based [`RegisterModel`](ha_linearizability::RegisterModel) applies.
//!
//! How an answer is recorded:
//!
//! | answer | recorded as |
//! |---|---|
//! | 200 | completed with its result |
//! | 404 on a read | completed: not found |
//! | 409 `cas_mismatch` | completed: CAS failed |
//! | connection refused (the request never left) | rejected: left out |
//! | anything else (timeout, 503, reset) | unknown: may have happened, or not |

use std::net::SocketAddr;
use std::time::Duration;

use ha_linearizability::{Input, OperationToken, Output, Recorder};
use serde_json::Value;

/// What one HTTP call returned.
enum Answer {
    /// Status and JSON body.
    Status(u16, Value),
    /// The connection could not be made: the request was never sent.
    NotSent,
    /// No answer, or a broken one: the outcome is unknown.
    Unknown,
}

/// Counts of what the client saw.
#[derive(Clone, Copy, Debug, Default)]
pub struct KvCounts {
    /// Operations answered (any definite answer).
    pub answered: u64,
    /// Writes and CAS acknowledged with 200.
    pub acknowledged: u64,
    /// Operations whose outcome is unknown.
    pub unknown: u64,
    /// Requests that could not be sent.
    pub not_sent: u64,
}

impl KvCounts {
    /// Add `other`'s counts.
    pub fn add(&mut self, other: &KvCounts) {
        self.answered += other.answered;
        self.acknowledged += other.acknowledged;
        self.unknown += other.unknown;
        self.not_sent += other.not_sent;
    }
}

/// One recording KV client (one operation at a time).
pub struct KvClient {
    id: u64,
    http: reqwest::blocking::Client,
    recorder: Recorder,
    written: u64,
    /// What it saw.
    pub counts: KvCounts,
}

impl KvClient {
    /// A client numbered `id` recording into `recorder`; each request gives up after
    /// `timeout`.
    pub fn new(id: u64, recorder: Recorder, timeout: Duration) -> Self {
        let http = reqwest::blocking::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .expect("HTTP client");
        Self {
            id,
            http,
            recorder,
            written: 0,
            counts: KvCounts::default(),
        }
    }

    fn call(&self, node: SocketAddr, method: reqwest::Method, path: &str, body: &str) -> Answer {
        let url = format!("http://{node}{path}");
        match self.http.request(method, url).body(body.to_string()).send() {
            Ok(response) => {
                let status = response.status().as_u16();
                match response.text() {
                    Ok(text) => Answer::Status(
                        status,
                        serde_json::from_str(&text).unwrap_or(Value::String(text)),
                    ),
                    Err(_) => Answer::Unknown,
                }
            }
            Err(error) if error.is_connect() => Answer::NotSent,
            Err(_) => Answer::Unknown,
        }
    }

    fn next_value(&mut self) -> String {
        self.written += 1;
        format!("c{}-{}", self.id, self.written)
    }

    /// Read `key` through `node`: the value and version when found. Recorded.
    pub fn read(&mut self, node: SocketAddr, key: &str, strong: bool) -> Option<(String, u64)> {
        let consistency = if strong { "strong" } else { "quorum" };
        let token = self.recorder.invoke(self.id, key, Input::Read);
        let path = format!("/v1/kv/{key}?consistency={consistency}");
        match self.call(node, reqwest::Method::GET, &path, "") {
            Answer::Status(200, body) => {
                let value = body["value"].as_str().expect("a value").to_string();
                let version = body["version"].as_u64().expect("a version");
                self.recorder.complete(token, Output::found(value.as_str()));
                self.counts.answered += 1;
                Some((value, version))
            }
            Answer::Status(404, body) if body["error"] == "not_found" => {
                self.recorder.complete(token, Output::not_found());
                self.counts.answered += 1;
                None
            }
            Answer::NotSent => {
                self.recorder.reject(token);
                self.counts.not_sent += 1;
                None
            }
            _ => {
                // A read that failed changed nothing; the checker drops it.
                self.recorder.timeout(token);
                self.counts.unknown += 1;
                None
            }
        }
    }

    /// Write a new unique value to `key` through `node`. Recorded.
    pub fn write(&mut self, node: SocketAddr, key: &str) {
        let value = self.next_value();
        let token = self
            .recorder
            .invoke(self.id, key, Input::write(value.as_str()));
        let answer = self.call(node, reqwest::Method::PUT, &format!("/v1/kv/{key}"), &value);
        self.record_put(token, answer, Output::WriteOk);
    }

    /// Record a PUT's answer: `acknowledged` on 200, a failed CAS on 409 `cas_mismatch`.
    fn record_put(&mut self, token: OperationToken, answer: Answer, acknowledged: Output) {
        match answer {
            Answer::Status(200, _) => {
                self.recorder.complete(token, acknowledged);
                self.counts.answered += 1;
                self.counts.acknowledged += 1;
            }
            Answer::Status(409, body) if body["error"] == "cas_mismatch" => {
                self.recorder.complete(token, Output::CasFailed);
                self.counts.answered += 1;
            }
            Answer::NotSent => {
                self.recorder.reject(token);
                self.counts.not_sent += 1;
            }
            _ => {
                self.recorder.timeout(token);
                self.counts.unknown += 1;
            }
        }
    }

    /// Read `key`, then compare-and-swap it from what was read to a new unique value (create
    /// it if it was absent). Both recorded.
    pub fn read_then_cas(&mut self, node: SocketAddr, key: &str) {
        // A read that failed leads to a create-only CAS, recorded as such: still truthful.
        let found = self.read(node, key, true);
        let new = self.next_value();
        let (input, version) = match &found {
            Some((value, version)) => (Input::cas(value.as_str(), new.as_str()), *version),
            None => (Input::create(new.as_str()), 0),
        };
        let token = self.recorder.invoke(self.id, key, input);
        let path = format!("/v1/kv/{key}?cas={version}");
        let answer = self.call(node, reqwest::Method::PUT, &path, &new);
        self.record_put(token, answer, Output::CasOk);
    }
}
