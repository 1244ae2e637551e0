//! etcd's gRPC KV API through its Rust client crate (`etcd-client`, tonic): one client, and
//! so one HTTP/2 connection, per worker, like the one keep-alive connection per worker of the
//! HTTP comparison. Built only with the `grpc` feature (its build script needs `protoc`).

use std::time::Duration;

use etcd_client::{Client, ConnectOptions, KvClient};

use super::load::PutWorker;

/// A gRPC client of one etcd member.
pub struct GrpcWorker(KvClient);

/// Connect a worker to the member at `endpoint` (`http://127.0.0.1:P`), each request bounded
/// by `timeout`.
///
/// # Errors
/// The connection error, as text.
pub async fn connect(endpoint: &str, timeout: Duration) -> Result<GrpcWorker, String> {
    let options = ConnectOptions::new()
        .with_connect_timeout(timeout)
        .with_timeout(timeout);
    let client = Client::connect([endpoint], Some(options))
        .await
        .map_err(|error| format!("etcd gRPC connect {endpoint}: {error}"))?;
    Ok(GrpcWorker(client.kv_client()))
}

impl PutWorker for GrpcWorker {
    async fn put(&mut self, key: String, value: Vec<u8>) -> Result<(), String> {
        self.0
            .put(key, value, None)
            .await
            .map(|_response| ())
            .map_err(|error| error.to_string())
    }
}
