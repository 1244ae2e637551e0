//! compare_security's figures, the issue-13 target, and its JSON and Markdown outputs.

use std::fmt::Write as _;
use std::path::Path;

use ha_bench::http_load::failover::Trial;
use ha_bench::http_load::writes::WriteRun;
use ha_bench::{MachineDescription, Spread};
use serde::Serialize;

use super::setups::Setup;

/// Issue 13's target: the secured cluster keeps at least this share of the plaintext
/// cluster's write throughput at [`TARGET_CLIENTS`] clients (a cost of at most 15%).
const TARGET_THROUGHPUT_SHARE: f64 = 0.85;
/// The client count the target is checked at.
const TARGET_CLIENTS: usize = 16;

/// The write runs of one configuration, one per client count.
#[derive(Clone, Debug, Serialize)]
pub struct SetupRuns {
    /// Which configuration.
    pub setup: Setup,
    /// Its name in tables.
    pub name: String,
    /// One run per client count.
    pub runs: Vec<WriteRun>,
}

/// Ratios at one client count; `None` when a configuration was not run.
#[derive(Clone, Debug, Serialize)]
pub struct Ratios {
    /// Concurrent clients.
    pub clients: usize,
    /// ha secured / ha plaintext, writes per second.
    pub ha_secured_over_plaintext: Option<f64>,
    /// ha cluster key / ha plaintext, writes per second.
    pub ha_cluster_key_over_plaintext: Option<f64>,
    /// etcd TLS / etcd plaintext, writes per second.
    pub etcd_tls_over_plaintext: Option<f64>,
    /// ha secured / etcd TLS, writes per second.
    pub ha_secured_over_etcd_tls: Option<f64>,
    /// ha secured / ha plaintext, p99 latency.
    pub ha_secured_over_plaintext_p99: Option<f64>,
    /// etcd TLS / etcd plaintext, p99 latency.
    pub etcd_tls_over_plaintext_p99: Option<f64>,
}

/// The failover trials of one configuration.
#[derive(Clone, Debug, Serialize)]
pub struct FailoverSeries {
    /// Which configuration.
    pub setup: Setup,
    /// Every trial.
    pub trials: Vec<Trial>,
    /// Window spread, ms.
    pub window_ms: Spread,
    /// Failed writes (distinct writes with a failed attempt) spread.
    pub failed_writes: Spread,
    /// ha's own leaderless time spread, ms.
    pub leaderless_ms: Spread,
    /// Acknowledged writes lost, over all trials.
    pub lost_total: u64,
}

impl FailoverSeries {
    /// The series of `setup` from its trials.
    pub fn new(setup: Setup, trials: Vec<Trial>) -> Self {
        Self {
            setup,
            window_ms: Spread::of(trials.iter().map(|trial| trial.window_ms)),
            failed_writes: Spread::of(trials.iter().map(|trial| trial.failed_writes as f64)),
            leaderless_ms: Spread::of(trials.iter().filter_map(|trial| trial.leaderless_ms)),
            lost_total: trials.iter().map(|trial| trial.lost).sum(),
            trials,
        }
    }
}

/// How the run was made.
#[derive(Clone, Debug, Serialize)]
pub struct Settings {
    /// Seconds per write run.
    pub write_duration_s: u64,
    /// Failover trials per configuration.
    pub failover_trials: u32,
    /// Time limit of one failover write attempt, ms.
    pub attempt_timeout_ms: u64,
    /// Value size in bytes.
    pub value_bytes: usize,
    /// Whether this was a `--quick` run (figures not to be quoted).
    pub quick: bool,
}

/// One target from the issue.
#[derive(Clone, Debug, Serialize)]
pub struct TargetCheck {
    /// What is compared.
    pub target: String,
    /// What was measured.
    pub measured: String,
    /// Whether it holds.
    pub met: bool,
}

/// Everything measured.
#[derive(Clone, Debug, Serialize)]
pub struct Results {
    /// Where it ran.
    pub machine: MachineDescription,
    /// How it ran.
    pub settings: Settings,
    /// Write runs per configuration.
    pub writes: Vec<SetupRuns>,
    /// Ratios per client count.
    pub ratios: Vec<Ratios>,
    /// Failover, ha plaintext and ha secured.
    pub failover: Vec<FailoverSeries>,
    /// The targets.
    pub targets: Vec<TargetCheck>,
}

fn ratio(numerator: f64, denominator: f64) -> f64 {
    if denominator == 0.0 {
        f64::NAN
    } else {
        numerator / denominator
    }
}

/// `numerator / denominator` when both were measured.
fn ratio_of(numerator: Option<f64>, denominator: Option<f64>) -> Option<f64> {
    Some(ratio(numerator?, denominator?))
}

/// A ratio in a table: two decimals, or a dash when not measured.
fn shown(value: Option<f64>) -> String {
    value.map_or_else(|| "–".to_string(), |value| format!("{value:.2}"))
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn met(flag: bool) -> &'static str {
    if flag { "met" } else { "**missed**" }
}

impl Results {
    /// Gather the figures, compute the ratios and check the target.
    pub fn new(settings: Settings, writes: Vec<SetupRuns>, failover: Vec<FailoverSeries>) -> Self {
        let mut results = Self {
            machine: MachineDescription::read(),
            settings,
            writes,
            ratios: Vec::new(),
            failover,
            targets: Vec::new(),
        };
        results.ratios = results.compute_ratios();
        results.targets = results.check_targets();
        results
    }

    fn run(&self, setup: Setup, clients: usize) -> Option<&WriteRun> {
        self.writes
            .iter()
            .find(|runs| runs.setup == setup)?
            .runs
            .iter()
            .find(|run| run.clients == clients)
    }

    fn compute_ratios(&self) -> Vec<Ratios> {
        let Some(first) = self.writes.first() else {
            return Vec::new();
        };
        first
            .runs
            .iter()
            .map(|base| {
                let clients = base.clients;
                let rate = |setup| self.run(setup, clients).map(|r| r.writes_per_second);
                let p99 = |setup| self.run(setup, clients).map(|r| r.latency.p99_us as f64);
                Ratios {
                    clients,
                    ha_secured_over_plaintext: ratio_of(
                        rate(Setup::HaSecured),
                        rate(Setup::HaPlaintext),
                    ),
                    ha_cluster_key_over_plaintext: ratio_of(
                        rate(Setup::HaClusterKey),
                        rate(Setup::HaPlaintext),
                    ),
                    etcd_tls_over_plaintext: ratio_of(
                        rate(Setup::EtcdTls),
                        rate(Setup::EtcdPlaintext),
                    ),
                    ha_secured_over_etcd_tls: ratio_of(
                        rate(Setup::HaSecured),
                        rate(Setup::EtcdTls),
                    ),
                    ha_secured_over_plaintext_p99: ratio_of(
                        p99(Setup::HaSecured),
                        p99(Setup::HaPlaintext),
                    ),
                    etcd_tls_over_plaintext_p99: ratio_of(
                        p99(Setup::EtcdTls),
                        p99(Setup::EtcdPlaintext),
                    ),
                }
            })
            .collect()
    }

    fn check_targets(&self) -> Vec<TargetCheck> {
        let mut checks = Vec::new();
        if let Some(share) = self
            .ratios
            .iter()
            .find(|r| r.clients == TARGET_CLIENTS)
            .and_then(|r| r.ha_secured_over_plaintext)
        {
            checks.push(TargetCheck {
                target: format!(
                    "cost of security at {TARGET_CLIENTS} clients at most {:.0}% (ha secured writes/s at least {TARGET_THROUGHPUT_SHARE:.2}x plaintext)",
                    (1.0 - TARGET_THROUGHPUT_SHARE) * 100.0
                ),
                measured: format!(
                    "{share:.2}x: {:.1}% {}",
                    (1.0 - share).abs() * 100.0,
                    if share <= 1.0 { "slower" } else { "faster" }
                ),
                met: share >= TARGET_THROUGHPUT_SHARE,
            });
        }
        let lost: u64 = self.failover.iter().map(|s| s.lost_total).sum();
        if !self.failover.is_empty() {
            checks.push(TargetCheck {
                target: "failover: zero acknowledged writes lost, plaintext and secured"
                    .to_string(),
                measured: format!("{lost} lost"),
                met: lost == 0,
            });
        }
        checks
    }

    /// The Markdown fragment of bench/RESULTS.md.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "## Security: the cost of mTLS, HTTPS and tokens\n");
        let _ = writeln!(
            out,
            "Produced by `compare_security`. Machine: {}. Mode: {}. \
             All traffic on 127.0.0.1; 3 ha `bot` nodes or 3 etcd members per configuration, \
             all started before the first run and driven in turn at each client count by the \
             load generator of the Writes section (QUORUM writes to the leader, 128-byte \
             values, fsync on, {} s per run, one keep-alive connection per client: a TLS \
             handshake per client, before the clock starts).\n",
            self.machine,
            if self.settings.quick {
                "quick (figures not to be quoted)"
            } else {
                "full"
            },
            self.settings.write_duration_s
        );
        let _ = writeln!(
            out,
            "- **ha plaintext**: today's loopback defaults (no key, no certificates, plain HTTP, no token).\n\
             - **ha cluster key (PSK), HTTP**: `--cluster-key-file` from `bot keygen` only (RPC frames and gossip sealed with the shared key).\n\
             - **ha secured**: mutual TLS 1.3 between nodes (`bot certs init`: `--tls-cert/--tls-key/--tls-ca`), the cluster key for gossip (`--cluster-key-file`), the admin API over HTTPS with `Authorization: Bearer` (`--admin-token-file`, a token from `bot keygen`); the client trusts only the cluster CA.\n\
             - **etcd TLS**: certificates from rcgen (one CA, one per member, IP SAN 127.0.0.1); peers `--peer-cert-file/--peer-key-file/--peer-trusted-ca-file --peer-client-cert-auth` over https peer URLs; clients `--cert-file/--key-file/--trusted-ca-file` over https; the client trusts only that CA and presents a client certificate from it (etcd requires one with `--trusted-ca-file`): client authentication on both sides, a certificate in the TLS handshake for etcd, a bearer token per request for ha.\n"
        );
        let _ = writeln!(
            out,
            "| configuration | clients | writes/s | vs plaintext | p50 ms | p99 ms | CPU ms / 1000 writes | errors |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|");
        for setup_runs in &self.writes {
            for run in &setup_runs.runs {
                let base = self
                    .run(setup_runs.setup.baseline(), run.clients)
                    .map(|r| r.writes_per_second);
                let _ = writeln!(
                    out,
                    "| {} | {} | {:.0} | {} | {:.2} | {:.2} | {:.1} | {} |",
                    setup_runs.name,
                    run.clients,
                    run.writes_per_second,
                    shown(ratio_of(Some(run.writes_per_second), base)),
                    ms(run.latency.p50_us),
                    ms(run.latency.p99_us),
                    run.cpu_ms_per_1000_writes,
                    run.errors
                );
            }
        }
        let _ = writeln!(
            out,
            "\n| clients | ha secured / plaintext writes/s | ha cluster key / plaintext | etcd TLS / plaintext | ha secured / etcd TLS | ha secured / plaintext p99 | etcd TLS / plaintext p99 |"
        );
        let _ = writeln!(out, "|---:|---:|---:|---:|---:|---:|---:|");
        for r in &self.ratios {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} |",
                r.clients,
                shown(r.ha_secured_over_plaintext),
                shown(r.ha_cluster_key_over_plaintext),
                shown(r.etcd_tls_over_plaintext),
                shown(r.ha_secured_over_etcd_tls),
                shown(r.ha_secured_over_plaintext_p99),
                shown(r.etcd_tls_over_plaintext_p99)
            );
        }
        let _ = writeln!(
            out,
            "\nNot measured: ha with mutual TLS between nodes but plain HTTP clients (it would split the node-to-node cost from the client HTTPS cost); the `bot` has no flag for it, its `--tls-*` files serve the admin API over HTTPS too."
        );
        if !self.failover.is_empty() {
            let _ = writeln!(out, "\n### Failover with mTLS\n");
            let _ = writeln!(
                out,
                "The method of the Failover section: SIGKILL of the leader of a fresh 3-node cluster while a writer starts a write every 5 ms at another node (over HTTPS with the token when secured), retrying each every 5 ms until acknowledged (attempt limit {} ms); window = kill to the first acknowledged attempt started after it. Trials alternate between the two configurations.\n",
                self.settings.attempt_timeout_ms
            );
            let _ = writeln!(
                out,
                "| configuration | trials | window min ms | median | max | failed writes min / median / max | leaderless ms median | acknowledged lost |"
            );
            let _ = writeln!(out, "|---|---:|---:|---:|---:|---|---:|---:|");
            for series in &self.failover {
                let _ = writeln!(
                    out,
                    "| {} | {} | {:.0} | {:.0} | {:.0} | {:.0} / {:.0} / {:.0} | {:.0} | {} |",
                    series.setup.name(),
                    series.trials.len(),
                    series.window_ms.min,
                    series.window_ms.median,
                    series.window_ms.max,
                    series.failed_writes.min,
                    series.failed_writes.median,
                    series.failed_writes.max,
                    series.leaderless_ms.median,
                    series.lost_total
                );
            }
            if let [plain, secured] = self.failover.as_slice() {
                let _ = writeln!(
                    out,
                    "\nRatio of median windows secured/plaintext: {:.2}. Windows per trial (ms): plaintext {}; secured {}.",
                    ratio(secured.window_ms.median, plain.window_ms.median),
                    windows(&plain.trials),
                    windows(&secured.trials)
                );
            }
        }
        if !self.targets.is_empty() {
            let _ = writeln!(out, "\n| target (issue 13) | measured | |\n|---|---|---|");
            for check in &self.targets {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} |",
                    check.target,
                    check.measured,
                    met(check.met)
                );
            }
        }
        out
    }

    /// Write `compare_security.json` and `compare_security.md` in `out_dir`.
    ///
    /// # Errors
    /// The file error, as text.
    pub fn write(&self, out_dir: &Path) -> Result<(), String> {
        ha_bench::write_report_files(out_dir, "compare_security", self, &self.markdown())
    }
}

fn windows(trials: &[Trial]) -> String {
    trials
        .iter()
        .map(|trial| format!("{:.0}", trial.window_ms))
        .collect::<Vec<_>>()
        .join(", ")
}
