//! The multi-master map over HTTP (`/v1/state`, issue 15) for the process tests: a blocking
//! client of one node, the record of every answer it got, and what every node must hold once
//! the cluster has converged, derived from the acknowledged writes alone.
//!
//! How an answer is recorded:
//!
//! | answer | recorded as |
//! |---|---|
//! | 200 to a put or delete | written, with its `(stamp, node)` |
//! | 200 to an increment | incremented, with the counter's value there |
//! | 404 to a delete | absent: the key was absent or deleted there, nothing written |
//! | another 4xx | refused: nothing written |
//! | the connection could not be made | not sent: nothing written |
//! | no answer, a broken one, 5xx | unknown: it may have been written, or not |
//!
//! Every value written is unique (`n<node>-<sequence>`), so a value held at the end names
//! exactly one write.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::Value;

/// The most entries one listing asks for; a test holding more keys than this fails (the
/// listing says `truncated`) rather than checking part of the map.
pub const LISTING_LIMIT: usize = 1_000;

/// The most unknown increments of one counter whose possible sums are enumerated exactly.
const UNKNOWN_INCREMENTS_MAX: usize = 64;

/// A write's place in last-writer-wins order: hybrid logical clock (wall ms, then logical),
/// ties broken by node id, as the map orders stamps. Parsed from the HTTP `stamp`
/// (`"<wall_ms>.<logical>"`) and `node` fields.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Order {
    /// The HLC's wall-clock milliseconds.
    pub wall_ms: u64,
    /// The HLC's logical counter.
    pub logical: u32,
    /// The node that wrote.
    pub node: String,
}

impl Order {
    /// Parse `stamp` and `node` as the HTTP API gives them; `None` if malformed.
    pub fn parse(stamp: &str, node: &str) -> Option<Self> {
        let (wall_ms, logical) = stamp.split_once('.')?;
        Some(Self {
            wall_ms: wall_ms.parse().ok()?,
            logical: logical.parse().ok()?,
            node: node.to_string(),
        })
    }

    /// The order in a JSON answer holding `stamp` and `node`.
    pub fn from_json(body: &Value) -> Option<Self> {
        Self::parse(body["stamp"].as_str()?, body["node"].as_str()?)
    }
}

impl std::fmt::Display for Order {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            formatter,
            "{:013}.{:05}@{}",
            self.wall_ms, self.logical, self.node
        )
    }
}

/// What a client asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Operation {
    /// `PUT /v1/state/<key>` with this (text) value.
    Put(String),
    /// `DELETE /v1/state/<key>`.
    Delete,
    /// `POST /v1/state/<key>/incr?by=N`.
    Increment(i64),
}

/// What the node answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A put or delete acknowledged with its stamp.
    Written(Order),
    /// An increment acknowledged; the counter's value on that node after it.
    Incremented(i64),
    /// A delete of a key the node held no value for: nothing was written.
    Absent,
    /// Refused (4xx): nothing was written.
    Refused(u16, String),
    /// The connection could not be made (the node is down or restarting): never sent.
    NotSent(String),
    /// No answer or a 5xx: it may have been written, or not.
    Unknown(String),
}

impl Outcome {
    /// Whether the node acknowledged a write.
    pub fn acknowledged(&self) -> bool {
        matches!(self, Self::Written(_) | Self::Incremented(_))
    }
}

/// One operation and its answer.
#[derive(Clone, Debug)]
pub struct Record {
    /// Index of the node asked.
    pub node: usize,
    /// The key.
    pub key: String,
    /// What was asked.
    pub operation: Operation,
    /// What was answered.
    pub outcome: Outcome,
}

/// What a node holds for one key, as a read or listing shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Held {
    /// A register holding this UTF-8 text.
    Text(String, Order),
    /// A register holding bytes that are not UTF-8 (base64, as the API gives them).
    Bytes(String, Order),
    /// A counter's value.
    Counter(i64, Order),
}

impl Held {
    fn from_json(body: &Value) -> Option<Self> {
        let order = Order::from_json(body)?;
        if let Some(bytes) = body["value_base64"].as_str() {
            return Some(Self::Bytes(bytes.to_string(), order));
        }
        match &body["value"] {
            Value::String(text) => Some(Self::Text(text.clone(), order)),
            Value::Number(number) => Some(Self::Counter(number.as_i64()?, order)),
            _ => None,
        }
    }
}

/// A node's whole map, as `GET /v1/state` lists it.
pub type Listing = BTreeMap<String, Held>;

/// A blocking client of one node's `/v1/state` routes.
#[derive(Clone)]
pub struct StateClient {
    client: reqwest::blocking::Client,
    base: String,
    /// Index of the node it talks to.
    pub node: usize,
}

impl StateClient {
    /// A client of node `node` at `base` (`http://10.77.0.1:8000`), through `client`.
    pub fn new(client: reqwest::blocking::Client, base: String, node: usize) -> Self {
        Self { client, base, node }
    }

    /// A client of its own, with `timeout` for each request.
    pub fn with_timeout(base: String, node: usize, timeout: Duration) -> Self {
        let client = reqwest::blocking::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .expect("HTTP client");
        Self::new(client, base, node)
    }

    fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &str,
    ) -> Result<(u16, Value), String> {
        self.send_or_not(method, path, body)
            .map_err(|(_, error)| error)
    }

    /// The answer, or why there is none and whether the request may have left (`false`: the
    /// connection could not be made, so nothing was sent).
    fn send_or_not(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &str,
    ) -> Result<(u16, Value), (bool, String)> {
        let response = self
            .client
            .request(method, format!("{}{path}", self.base))
            .body(body.to_string())
            .send()
            .map_err(|error| (!error.is_connect(), format!("no answer: {error}")))?;
        let status = response.status().as_u16();
        let text = response
            .text()
            .map_err(|error| (true, format!("broken answer: {error}")))?;
        let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((status, json))
    }

    fn record(&self, key: &str, operation: Operation, outcome: Outcome) -> Record {
        Record {
            node: self.node,
            key: key.to_string(),
            operation,
            outcome,
        }
    }

    fn written(answer: Result<(u16, Value), (bool, String)>, absent_is_404: bool) -> Outcome {
        match answer {
            Ok((200, body)) => match Order::from_json(&body) {
                Some(order) => Outcome::Written(order),
                // A 200 without a stamp is a broken contract, not an unknown: say so.
                None => Outcome::Refused(200, format!("200 without stamp and node: {body}")),
            },
            Ok((404, _)) if absent_is_404 => Outcome::Absent,
            Ok((status, body)) if (400..500).contains(&status) => {
                Outcome::Refused(status, body.to_string())
            }
            Ok((status, body)) => Outcome::Unknown(format!("{status} {body}")),
            Err((false, error)) => Outcome::NotSent(error),
            Err((true, error)) => Outcome::Unknown(error),
        }
    }

    /// `PUT /v1/state/<key>` with `value`.
    pub fn put(&self, key: &str, value: &str) -> Record {
        let answer = self.send_or_not(reqwest::Method::PUT, &format!("/v1/state/{key}"), value);
        let outcome = Self::written(answer, false);
        self.record(key, Operation::Put(value.to_string()), outcome)
    }

    /// `DELETE /v1/state/<key>`.
    pub fn delete(&self, key: &str) -> Record {
        let answer = self.send_or_not(reqwest::Method::DELETE, &format!("/v1/state/{key}"), "");
        let outcome = Self::written(answer, true);
        self.record(key, Operation::Delete, outcome)
    }

    /// `POST /v1/state/<key>/incr?by=<by>`.
    pub fn increment(&self, key: &str, by: i64) -> Record {
        let answer = self.send_or_not(
            reqwest::Method::POST,
            &format!("/v1/state/{key}/incr?by={by}"),
            "",
        );
        let outcome = match answer {
            Ok((200, body)) => match body["value"].as_i64() {
                Some(value) => Outcome::Incremented(value),
                None => Outcome::Refused(200, format!("200 without a numeric value: {body}")),
            },
            Ok((status, body)) if (400..500).contains(&status) => {
                Outcome::Refused(status, body.to_string())
            }
            Ok((status, body)) => Outcome::Unknown(format!("{status} {body}")),
            Err((false, error)) => Outcome::NotSent(error),
            Err((true, error)) => Outcome::Unknown(error),
        };
        self.record(key, Operation::Increment(by), outcome)
    }

    /// `GET /v1/state/<key>`: `Ok(None)` on 404.
    ///
    /// # Errors
    /// No answer, another status, or a body that is not the contract's.
    pub fn get(&self, key: &str) -> Result<Option<Held>, String> {
        match self.send(reqwest::Method::GET, &format!("/v1/state/{key}"), "")? {
            (200, body) => Held::from_json(&body)
                .map(Some)
                .ok_or_else(|| format!("GET {key}: not a value: {body}")),
            (404, _) => Ok(None),
            (status, body) => Err(format!("GET {key}: {status} {body}")),
        }
    }

    /// `GET /v1/state?prefix=&limit=LISTING_LIMIT`: every live key of the node.
    ///
    /// # Errors
    /// No answer, another status than 200, a malformed entry, or a truncated listing.
    pub fn list(&self) -> Result<Listing, String> {
        let path = format!("/v1/state?prefix=&limit={LISTING_LIMIT}");
        let (status, body) = self.send(reqwest::Method::GET, &path, "")?;
        if status != 200 {
            return Err(format!("GET {path}: {status} {body}"));
        }
        if body["truncated"] != Value::Bool(false) {
            return Err(format!("GET {path}: truncated or malformed: {body}"));
        }
        let entries = body["entries"]
            .as_array()
            .ok_or_else(|| format!("GET {path}: no entries: {body}"))?;
        let mut listing = Listing::new();
        for entry in entries {
            let key = entry["key"]
                .as_str()
                .ok_or_else(|| format!("an entry without a key: {entry}"))?;
            let held =
                Held::from_json(entry).ok_or_else(|| format!("a malformed entry: {entry}"))?;
            listing.insert(key.to_string(), held);
        }
        Ok(listing)
    }
}

/// The register's latest acknowledged write: its order and value (`None`: a delete).
type Latest = Option<(Order, Option<String>)>;

/// What a register key may hold at the end.
#[derive(Debug, Default)]
struct RegisterRule {
    latest: Latest,
    /// Values of puts whose outcome is unknown: each may have been written.
    unknown_puts: BTreeSet<String>,
    /// Deletes whose outcome is unknown.
    unknown_deletes: usize,
}

/// What a counter key may hold at the end.
#[derive(Debug, Default)]
struct CounterRule {
    acknowledged: i64,
    /// How many increments were acknowledged (their sum may be 0, the counter still exists).
    acknowledged_increments: usize,
    unknown: Vec<i64>,
}

impl CounterRule {
    /// Every value the counter may hold: the acknowledged sum plus any subset of the unknown
    /// increments (`Err((low, high))` when there are too many unknowns to enumerate: then
    /// only a range).
    fn possible(&self) -> Result<BTreeSet<i64>, (i64, i64)> {
        if self.unknown.len() > UNKNOWN_INCREMENTS_MAX {
            let low: i64 = self.unknown.iter().filter(|by| **by < 0).sum();
            let high: i64 = self.unknown.iter().filter(|by| **by > 0).sum();
            return Err((self.acknowledged + low, self.acknowledged + high));
        }
        let mut sums = BTreeSet::from([self.acknowledged]);
        for by in &self.unknown {
            let more: Vec<i64> = sums.iter().map(|sum| sum + by).collect();
            sums.extend(more);
        }
        Ok(sums)
    }
}

/// What every node must hold once converged, from the history of every client.
#[derive(Debug, Default)]
pub struct Expectation {
    registers: BTreeMap<String, RegisterRule>,
    counters: BTreeMap<String, CounterRule>,
}

impl Expectation {
    /// The expectation from `records` (every client's, in any order).
    pub fn from_records<'a>(records: impl IntoIterator<Item = &'a Record>) -> Self {
        let mut expectation = Self::default();
        for record in records {
            match (&record.operation, &record.outcome) {
                (Operation::Increment(by), outcome) => {
                    let rule = expectation.counters.entry(record.key.clone()).or_default();
                    match outcome {
                        Outcome::Incremented(_) => {
                            rule.acknowledged += by;
                            rule.acknowledged_increments += 1;
                        }
                        Outcome::Unknown(_) => rule.unknown.push(*by),
                        _ => {}
                    }
                }
                (operation, outcome) => {
                    let rule = expectation.registers.entry(record.key.clone()).or_default();
                    let value = match operation {
                        Operation::Put(value) => Some(value.clone()),
                        _ => None,
                    };
                    match outcome {
                        Outcome::Written(order)
                            if rule
                                .latest
                                .as_ref()
                                .is_none_or(|(latest, _)| order > latest) =>
                        {
                            rule.latest = Some((order.clone(), value));
                        }
                        Outcome::Unknown(_) => match value {
                            Some(value) => {
                                rule.unknown_puts.insert(value);
                            }
                            None => rule.unknown_deletes += 1,
                        },
                        _ => {}
                    }
                }
            }
        }
        expectation
    }

    /// Keys of the expectation (registers and counters).
    pub fn keys(&self) -> usize {
        self.registers.len() + self.counters.len()
    }

    /// Check a node's listing: every register holds its latest acknowledged write by
    /// `(stamp, node)` (or is absent if that was a delete), unless a write of unknown outcome
    /// with a later stamp won; every counter holds the sum of its acknowledged increments
    /// (plus any of the unknown ones); no other key is held.
    ///
    /// # Errors
    /// Every difference, one line each.
    pub fn check(&self, listing: &Listing) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        for (key, rule) in &self.registers {
            if let Err(problem) = check_register(rule, listing.get(key)) {
                problems.push(format!("register {key}: {problem}"));
            }
        }
        for (key, rule) in &self.counters {
            let held = match listing.get(key) {
                Some(Held::Counter(value, _)) => Some(*value),
                None => None,
                Some(other) => {
                    problems.push(format!("counter {key}: holds {other:?}"));
                    continue;
                }
            };
            match (rule.possible(), held) {
                (Ok(possible), Some(value)) if possible.contains(&value) => {}
                // Only a counter no increment was acknowledged on may be absent.
                (_, None) if rule.acknowledged_increments == 0 => {}
                (Err((low, high)), Some(value)) if (low..=high).contains(&value) => {}
                (_, held) => problems.push(format!(
                    "counter {key}: holds {held:?}, acknowledged sum {} (+ any of {} unknown \
                     increments {:?})",
                    rule.acknowledged,
                    rule.unknown.len(),
                    rule.unknown
                )),
            }
        }
        for key in listing.keys() {
            if !self.registers.contains_key(key) && !self.counters.contains_key(key) {
                problems.push(format!("{key}: held but never written: {:?}", listing[key]));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

fn check_register(rule: &RegisterRule, held: Option<&Held>) -> Result<(), String> {
    let later_than_latest = |order: &Order| {
        rule.latest
            .as_ref()
            .is_none_or(|(latest, _)| order > latest)
    };
    match (held, &rule.latest) {
        (Some(Held::Text(value, order)), Some((latest, Some(expected))))
            if value == expected && order == latest =>
        {
            Ok(())
        }
        (None, Some((_, None))) => Ok(()),
        (None, None) => Ok(()),
        // A write whose answer was lost may win, but only with a later stamp.
        (Some(Held::Text(value, order)), _)
            if rule.unknown_puts.contains(value) && later_than_latest(order) =>
        {
            Ok(())
        }
        (None, Some(_)) if rule.unknown_deletes > 0 => Ok(()),
        (held, latest) => Err(format!(
            "holds {held:?}, but the latest acknowledged write by (stamp, node) is {}",
            match latest {
                Some((order, Some(value))) => format!("put {value:?} at {order}"),
                Some((order, None)) => format!("delete at {order}"),
                None => "none".to_string(),
            }
        )),
    }
}

/// Counts over a history, for the summary and the minimums.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StateCounts {
    /// Puts acknowledged.
    pub puts: u64,
    /// Deletes acknowledged (a tombstone written).
    pub deletes: u64,
    /// Increments acknowledged.
    pub increments: u64,
    /// Deletes of keys the node held no value for.
    pub absent: u64,
    /// Operations refused (4xx).
    pub refused: u64,
    /// Operations with an unknown outcome.
    pub unknown: u64,
    /// Operations never sent (no connection).
    pub not_sent: u64,
}

impl StateCounts {
    /// Count `records`.
    pub fn of<'a>(records: impl IntoIterator<Item = &'a Record>) -> Self {
        let mut counts = Self::default();
        for record in records {
            match (&record.operation, &record.outcome) {
                (Operation::Put(_), Outcome::Written(_)) => counts.puts += 1,
                (Operation::Delete, Outcome::Written(_)) => counts.deletes += 1,
                (_, Outcome::Incremented(_)) => counts.increments += 1,
                (_, Outcome::Absent) => counts.absent += 1,
                (_, Outcome::Refused(..)) => counts.refused += 1,
                (_, Outcome::Unknown(_)) => counts.unknown += 1,
                (_, Outcome::NotSent(_)) => counts.not_sent += 1,
                _ => {}
            }
        }
        counts
    }
}

impl std::fmt::Display for StateCounts {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            formatter,
            "{} puts, {} deletes, {} increments acknowledged; {} deletes of absent keys, \
             {} refused, {} unknown, {} not sent",
            self.puts,
            self.deletes,
            self.increments,
            self.absent,
            self.refused,
            self.unknown,
            self.not_sent
        )
    }
}
