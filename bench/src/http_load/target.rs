//! The two HTTP paths driven by the same load generator: ha's admin API and etcd's JSON
//! gateway (`/v3/...`, keys and values in base64, 64-bit integers as strings), each over plain
//! HTTP or HTTPS (a [`Target`] with a CA to trust), ha's with or without a bearer token.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};

/// Result of one request: `Err` carries a short reason (status or transport error).
pub type Outcome<T> = Result<T, String>;

/// Which system a target is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum System {
    /// ha: `target/release/bot` nodes.
    Ha,
    /// etcd members.
    Etcd,
}

impl System {
    /// Its name in tables.
    pub fn name(self) -> &'static str {
        match self {
            System::Ha => "ha",
            System::Etcd => "etcd",
        }
    }
}

/// One member's base URL, the system it belongs to and how to reach it securely.
#[derive(Clone, Debug)]
pub struct Target {
    /// Which system.
    pub system: System,
    /// `http://127.0.0.1:P`, or `https://127.0.0.1:P` with [`root_ca`](Self::root_ca).
    pub base: String,
    /// ha only: the admin API token sent as `Authorization: Bearer TOKEN` on every call.
    pub token: Option<String>,
    /// The CA that signed the member's HTTPS certificate; the only root a client of this
    /// target trusts.
    pub root_ca: Option<reqwest::Certificate>,
    /// etcd only: the client certificate its TLS clients present (etcd requires one when it
    /// has a `--trusted-ca-file`).
    pub identity: Option<reqwest::Identity>,
}

impl Target {
    /// A plain HTTP target with no token.
    pub fn plain(system: System, base: String) -> Self {
        Self {
            system,
            base,
            token: None,
            root_ca: None,
            identity: None,
        }
    }

    /// A keep-alive client for one worker of this target (see [`worker_client`]), trusting only
    /// [`root_ca`](Self::root_ca) and presenting [`identity`](Self::identity) when set.
    ///
    /// # Errors
    /// The client builder's error, as text.
    pub fn client(&self, timeout: Duration) -> Outcome<reqwest::Client> {
        let builder = worker_builder(timeout);
        let builder = match &self.root_ca {
            Some(root) => builder
                .tls_built_in_root_certs(false)
                .add_root_certificate(root.clone()),
            None => builder,
        };
        let builder = match &self.identity {
            Some(identity) => builder.identity(identity.clone()),
            None => builder,
        };
        builder.build().map_err(|error| error.to_string())
    }

    /// `request` with the bearer token, when the target has one.
    fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Send an ha call with the bearer token and read its whole body; a non-2xx status fails.
    async fn ha_call(&self, request: reqwest::RequestBuilder) -> Outcome<Vec<u8>> {
        let response = self.authorized(request).send().await.map_err(short)?;
        finish(response).await
    }
}

fn worker_builder(timeout: Duration) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .no_proxy()
        .http1_only()
        .timeout(timeout)
        .pool_max_idle_per_host(1)
        .tcp_nodelay(true)
}

/// A keep-alive HTTP/1.1 client for one worker: no proxy, bounded time per request, plain
/// HTTP (a secured target makes its own with [`Target::client`]).
///
/// # Errors
/// The client builder's error, as text.
pub fn worker_client(timeout: Duration) -> Outcome<reqwest::Client> {
    worker_builder(timeout)
        .build()
        .map_err(|error| error.to_string())
}

fn b64(text: &str) -> String {
    BASE64.encode(text.as_bytes())
}

fn short(error: reqwest::Error) -> String {
    if error.is_timeout() {
        "timeout".to_string()
    } else if error.is_connect() {
        "connect".to_string()
    } else {
        "transport".to_string()
    }
}

/// Read the whole body (so the connection can be reused) and fail on a non-2xx status.
async fn finish(response: reqwest::Response) -> Outcome<Vec<u8>> {
    let status = response.status();
    let body = response.bytes().await.map_err(short)?;
    if status.is_success() {
        Ok(body.to_vec())
    } else {
        Err(format!("status {}", status.as_u16()))
    }
}

async fn etcd_post(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    body: Value,
) -> Outcome<Value> {
    let response = client
        .post(format!("{base}{path}"))
        .json(&body)
        .send()
        .await
        .map_err(short)?;
    let body = finish(response).await?;
    let value: Value = serde_json::from_slice(&body).map_err(|_| "bad json".to_string())?;
    if value.get("error").is_some() {
        return Err("etcd error".to_string());
    }
    Ok(value)
}

fn etcd_int(value: &Value, field: &str) -> Outcome<String> {
    match value.get(field) {
        Some(Value::String(text)) => Ok(text.clone()),
        Some(Value::Number(number)) => Ok(number.to_string()),
        _ => Err(format!("no {field}")),
    }
}

impl Target {
    /// Write `value` at `key`: ha `PUT /v1/kv/<key>` (QUORUM), etcd `POST /v3/kv/put`.
    pub async fn put(&self, client: &reqwest::Client, key: &str, value: &str) -> Outcome<()> {
        match self.system {
            System::Ha => {
                let url = format!("{}/v1/kv/{key}", self.base);
                self.ha_call(client.put(url).body(value.to_string()))
                    .await
                    .map(|_| ())
            }
            System::Etcd => {
                let body = json!({"key": b64(key), "value": b64(value)});
                etcd_post(client, &self.base, "/v3/kv/put", body)
                    .await
                    .map(|_| ())
            }
        }
    }

    /// Read `key` where the leader alone answers, with no replication and no disk: ha
    /// `GET /v1/kv/<key>?consistency=eventual`, etcd `POST /v3/kv/range` with
    /// `serializable`. What is left is each system's HTTP path and its own hand-over to the
    /// state it reads: the part of a write's latency that is not replication or fsync.
    pub async fn local_read(&self, client: &reqwest::Client, key: &str) -> Outcome<()> {
        match self.system {
            System::Ha => {
                let url = format!("{}/v1/kv/{key}?consistency=eventual", self.base);
                self.ha_call(client.get(url)).await.map(|_| ())
            }
            System::Etcd => {
                let body = json!({"key": b64(key), "serializable": true});
                let found = etcd_post(client, &self.base, "/v3/kv/range", body).await?;
                // A range that found nothing would be a cheaper call than ha's: insist on it.
                match found.pointer("/kvs/0/value") {
                    Some(_) => Ok(()),
                    None => Err("no value".to_string()),
                }
            }
        }
    }

    /// Acquire lock `name` under a fresh 5 s lease, waiting up to `wait_ms` (etcd's lock
    /// call always waits). Returns the handle to release it with: ha's fencing token and
    /// holder key (`N&holder=HEX`), etcd's lock key. ha's acquire grants its lease inside; for etcd this is two calls, lease grant
    /// and lock, so both count the same steps.
    pub async fn lock(
        &self,
        client: &reqwest::Client,
        name: &str,
        wait_ms: u64,
    ) -> Outcome<String> {
        match self.system {
            System::Ha => {
                let url = format!("{}/v1/lock/{name}?ttl_ms=5000&wait_ms={wait_ms}", self.base);
                let body = self.ha_call(client.post(url)).await?;
                let value: Value =
                    serde_json::from_slice(&body).map_err(|_| "bad json".to_string())?;
                // The release needs the grant's holder key too (issue 13).
                let token = etcd_int(&value, "token")?;
                let holder = value
                    .get("holder")
                    .and_then(Value::as_str)
                    .ok_or_else(|| "no holder".to_string())?;
                Ok(format!("{token}&holder={holder}"))
            }
            System::Etcd => {
                let lease = self.etcd_grant(client).await?;
                self.etcd_lock_with_lease(client, name, &lease).await
            }
        }
    }

    /// etcd only: `POST /v3/lease/grant` with TTL 5 s; the lease id.
    pub async fn etcd_grant(&self, client: &reqwest::Client) -> Outcome<String> {
        let grant = etcd_post(client, &self.base, "/v3/lease/grant", json!({"TTL": 5})).await?;
        etcd_int(&grant, "ID")
    }

    /// etcd only: `POST /v3/lock/lock` under an existing lease; the lock key (base64).
    pub async fn etcd_lock_with_lease(
        &self,
        client: &reqwest::Client,
        name: &str,
        lease: &str,
    ) -> Outcome<String> {
        let locked = etcd_post(
            client,
            &self.base,
            "/v3/lock/lock",
            json!({"name": b64(name), "lease": lease}),
        )
        .await?;
        locked
            .get("key")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| "no key".to_string())
    }

    /// Release a lock taken with [`lock`](Self::lock): ha
    /// `DELETE /v1/lock/<name>?token=N&holder=HEX`,
    /// etcd `POST /v3/lock/unlock {key}`.
    pub async fn unlock(&self, client: &reqwest::Client, name: &str, handle: &str) -> Outcome<()> {
        match self.system {
            System::Ha => {
                let url = format!("{}/v1/lock/{name}?token={handle}", self.base);
                self.ha_call(client.delete(url)).await.map(|_| ())
            }
            System::Etcd => etcd_post(
                client,
                &self.base,
                "/v3/lock/unlock",
                json!({"key": handle}),
            )
            .await
            .map(|_| ()),
        }
    }

    /// Whether `key` holds `value`, read linearizably: ha `GET /v1/kv/<key>?consistency=quorum`,
    /// etcd `POST /v3/kv/range` (linearizable by default).
    pub async fn holds(&self, client: &reqwest::Client, key: &str, value: &str) -> Outcome<bool> {
        match self.system {
            System::Ha => {
                let url = format!("{}/v1/kv/{key}?consistency=quorum", self.base);
                let response = self
                    .authorized(client.get(url))
                    .send()
                    .await
                    .map_err(short)?;
                if response.status() == reqwest::StatusCode::NOT_FOUND {
                    return Ok(false);
                }
                let body = finish(response).await?;
                let found: Value =
                    serde_json::from_slice(&body).map_err(|_| "bad json".to_string())?;
                Ok(found.get("value").and_then(Value::as_str) == Some(value))
            }
            System::Etcd => {
                let found =
                    etcd_post(client, &self.base, "/v3/kv/range", json!({"key": b64(key)})).await?;
                let stored = found
                    .pointer("/kvs/0/value")
                    .and_then(Value::as_str)
                    .map(|text| BASE64.decode(text).unwrap_or_default());
                Ok(stored.as_deref() == Some(value.as_bytes()))
            }
        }
    }
}
