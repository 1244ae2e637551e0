//! compare_etcd's failover configurations: ha at its defaults and etcd at two timings, each
//! measured by [`ha_bench::http_load::failover::trial`].

use std::path::Path;
use std::time::Duration;

use ha_bench::http_load::failover::{self, FailoverCluster};
use ha_bench::peers::{BotCluster, BotClusterOptions, EtcdCluster, EtcdClusterOptions, PeerError};
use serde::Serialize;

pub use ha_bench::http_load::failover::{Attempt, Trial};

/// The three configurations compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Variant {
    /// ha at its defaults.
    Ha,
    /// etcd at its defaults (heartbeat 100 ms, election 1000 ms).
    EtcdDefault,
    /// etcd with `--heartbeat-interval=50 --election-timeout=250`.
    EtcdTuned,
}

impl Variant {
    /// Its name in tables.
    pub fn name(self) -> &'static str {
        match self {
            Variant::Ha => "ha (defaults)",
            Variant::EtcdDefault => "etcd (defaults)",
            Variant::EtcdTuned => "etcd (50/250)",
        }
    }
}

fn start(variant: Variant, base_dir: &Path) -> Result<FailoverCluster, PeerError> {
    Ok(match variant {
        Variant::Ha => {
            let mut options = BotClusterOptions::new(3);
            options.base_dir = Some(base_dir.to_path_buf());
            FailoverCluster::Ha(BotCluster::start(options)?)
        }
        Variant::EtcdDefault | Variant::EtcdTuned => {
            let mut options = EtcdClusterOptions::new(3);
            if variant == Variant::EtcdTuned {
                options = options.with_timing(50, 250);
            }
            options.base_dir = Some(base_dir.to_path_buf());
            FailoverCluster::Etcd(EtcdCluster::start(options)?)
        }
    })
}

/// Run one trial of `variant` on a fresh cluster; returns its figures and every attempt.
pub async fn trial(
    variant: Variant,
    base_dir: &Path,
    attempt_timeout: Duration,
) -> Result<(Trial, Vec<Attempt>), String> {
    let cluster = start(variant, base_dir).map_err(|error| error.to_string())?;
    failover::trial(cluster, variant.name(), attempt_timeout).await
}
