//! [`NodeBuilder`]: one config in, a running [`Node`] out.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use ha_core::{
    Config, HealthCheck, HealthStatus, MemberEvent, NodeMetadata, NodeState, Protection,
    StateMachine,
};
use ha_gossip::{GossipError, GossipNode, GossipSettings};
use ha_lock::{LeaseKeeper, LockObserver, WithLocks};
use ha_replicate::driver::{NodeSettings, ReplicaNode};
use ha_replicate::engine::Role;
use ha_replicate::membership::VoterSet;
use ha_replicate::replica::ReplicaSettings;
use ha_replicate::storage::memory::{MemoryDisk, MemoryStore};
use ha_replicate::storage::wal::{FsyncPolicy, WalOptions, WalStore};
use ha_replicate::tls::{TlsError, TlsIdentity};
use ha_replicate::transport::TransportSettings;
use parking_lot::Mutex;
use tokio::sync::{broadcast, watch};

use crate::admin_tokens::AdminTokens;
use crate::error::NodeError;
use crate::event::NodeEvent;
use crate::event_journal::{EventJournal, run_event_journal};
use crate::failover_status::{FailoverTracker, run_failover_status};
use crate::health_runner::{HEALTH_CHECKS_MAX, HealthRunner, run_health_checks};
use crate::host_checks::HostChecks;
use crate::node::{EVENT_BUFFER, HealthState, Node, Shared};
use crate::node_file::NodeFile;
use crate::security::{NodeSecurity, read_cluster_key_file, warn_insecure};
use crate::storage_health::StorageHealthCheck;
use crate::wal_sync_timer::{SyncLatencyWindow, SyncTimedStore};

/// The log and snapshots live in this subdirectory of the data dir.
pub const LOG_DIR_NAME: &str = "log";

/// Configures and starts a [`Node`]. Made by [`Node::builder`].
pub struct NodeBuilder<S> {
    config: Config,
    machine: S,
    checks: Vec<Arc<dyn HealthCheck>>,
    serve_http: bool,
    request_timeout: Duration,
    drain_timeout: Duration,
    snapshot_every_entries: Option<u64>,
    admin_tokens: Option<AdminTokens>,
    https: Option<Arc<rustls::ServerConfig>>,
    tls: Option<TlsIdentity>,
}

impl NodeBuilder<()> {
    pub(crate) fn new(config: Config) -> Self {
        Self {
            config,
            machine: (),
            checks: Vec::new(),
            serve_http: true,
            request_timeout: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(3),
            snapshot_every_entries: None,
            admin_tokens: None,
            https: None,
            tls: None,
        }
    }
}

impl<S: StateMachine> NodeBuilder<S> {
    /// Replicate `machine`: every node applies the same commands to its own copy.
    pub fn state_machine<T: StateMachine>(self, machine: T) -> NodeBuilder<T> {
        NodeBuilder {
            config: self.config,
            machine,
            checks: self.checks,
            serve_http: self.serve_http,
            request_timeout: self.request_timeout,
            drain_timeout: self.drain_timeout,
            snapshot_every_entries: self.snapshot_every_entries,
            admin_tokens: self.admin_tokens,
            https: self.https,
            tls: self.tls,
        }
    }

    /// Run `check` on its interval; an unhealthy critical check makes the node hand
    /// leadership over and stop campaigning (at most 64 checks).
    pub fn health_check(mut self, check: impl HealthCheck) -> Self {
        if self.checks.len() < HEALTH_CHECKS_MAX {
            self.checks.push(Arc::new(check));
        } else {
            tracing::warn!(name = check.name(), "too many health checks; ignored");
        }
        self
    }

    /// Whether the node serves the admin HTTP API on `config.http_addr` itself (default
    /// true; needs the `http` feature). Turn it off to mount
    /// [`Node::http_router`](crate::Node::http_router) in your own server instead.
    pub fn serve_http(mut self, serve: bool) -> Self {
        self.serve_http = serve;
        self
    }

    /// How long `propose`, `read` and the admin API wait for an answer (default 5 s).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// How long each step of a graceful shutdown may take (default 3 s).
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
        self
    }

    /// Snapshot the state machine (and compact the log) every `entries` applied entries,
    /// whatever the last snapshot's size. The default is every 10,000 entries once the log
    /// since the last snapshot is also as large as it (`ReplicaSettings::from_config`), so a
    /// large state is not rewritten after every few small writes.
    pub fn snapshot_every(mut self, entries: u64) -> Self {
        self.snapshot_every_entries = Some(entries.max(1));
        self
    }

    /// Require these bearer tokens on the admin API (in place of
    /// `security.admin_token_file`). See [`AdminTokens`].
    pub fn admin_tokens(mut self, tokens: AdminTokens) -> Self {
        self.admin_tokens = Some(tokens);
        self
    }

    /// Serve the admin API (and [`Node::serve_router`]) over HTTPS with `config` (in place of
    /// the certificate in `security.tls`). The config should offer ALPN `http/1.1`.
    pub fn https(mut self, config: Arc<rustls::ServerConfig>) -> Self {
        self.https = Some(config);
        self
    }

    /// Use mutual TLS between nodes with `identity` (in place of the files in
    /// `security.tls`), and serve the admin API over HTTPS with its certificate unless
    /// [`https`](Self::https) gives another. Make one with
    /// [`TlsIdentity::from_pem`](ha_replicate::tls::TlsIdentity::from_pem).
    pub fn tls(mut self, identity: TlsIdentity) -> Self {
        self.tls = Some(identity);
        self
    }

    /// Validate the config, open the data dir, bind the ports and start.
    ///
    /// # Errors
    /// [`NodeError::Config`] for an invalid config; [`NodeError::DataDir`] for a data dir
    /// that cannot be used or belongs to another node; [`NodeError::Replica`],
    /// [`NodeError::Gossip`] or [`NodeError::Http`] when storage cannot be recovered or a port
    /// cannot be bound. Nothing keeps running after an error.
    pub async fn start(mut self) -> Result<Node<S>, NodeError> {
        self.config.validate()?;
        let given = GivenSecurity {
            admin_tokens: self.admin_tokens.take(),
            https: self.https.take(),
            tls: self.tls.take(),
        };
        let (security, insecure_warning) = resolve_security(&mut self.config, given)?;
        let http_listener = bind_http(self.serve_http, &self.config).await?;
        let backup = crate::backup_writer::BackupShared::new(&self.config.backup);
        if let Some(schedule) = &backup.schedule
            && self.checks.len() < HEALTH_CHECKS_MAX
        {
            self.checks
                .push(crate::backup_schedule::health_check(schedule));
        }
        let config = self.config;
        // Valid but probably not meant (a voter keeping its log in memory): said once, loudly,
        // at start, because the consequence (lost acknowledged writes after restarts) shows
        // only much later.
        for warning in config.warnings() {
            tracing::warn!(node = %config.node_id, "configuration: {warning}");
        }
        let journal = Arc::new(EventJournal::new(
            config.node_id.clone(),
            config.events_ring_max,
            config.events_clients_max,
        ));
        // Lock grants, releases and expiries become `lock` events as this replica applies them.
        let lock_observer = {
            let journal = Arc::clone(&journal);
            LockObserver::new(move |outcome| {
                journal.record_lock(outcome.change.as_str(), &outcome.name, outcome.token.0);
            })
        };
        // Watches wake as this replica applies a change to keys instead of polling (issue 19).
        let change_feed = ha_lock::ChangeFeed::new();
        // Issue 14: the built-in host checks run first, then the host's own.
        let wal_window = config
            .data_dir
            .as_ref()
            .map(|_| Arc::new(SyncLatencyWindow::new()));
        let (mut checks, host_checks) = HostChecks::build(
            &config.health,
            config.data_dir.as_deref(),
            wal_window.clone(),
        );
        // Built in: UNHEALTHY while the replica's disk refuses writes (issue 14, item 5).
        let storage_check = Arc::new(StorageHealthCheck::new());
        checks.push(Arc::clone(&storage_check) as Arc<dyn HealthCheck>);
        checks.extend(self.checks);
        let mut health = HealthRunner::new(checks);
        health.run_due().await;
        let fresh_incarnation = GossipNode::fresh_incarnation();
        // Issue 16: `ha_wal_fsync_seconds` (stays empty on a node without a data dir).
        let wal_fsync = Arc::new(ha_core::LatencyHistogram::latency());
        let (incarnation, replica) = match &config.data_dir {
            Some(dir) => {
                let file = NodeFile::claim(&config, dir, fresh_incarnation)?;
                let mut options = WalOptions {
                    fsync_policy: FsyncPolicy::Manual,
                    ..WalOptions::default()
                };
                if let Some(bytes) = config.wal_archive.segment_bytes {
                    options.segment_bytes_max = bytes;
                }
                // A restore prepared by `bot snapshot restore` becomes this node's log first.
                crate::restore::install_pending_restore(&config, dir, &options)?;
                let mut store = WalStore::open(dir.join(LOG_DIR_NAME), options)
                    .map_err(ha_replicate::driver::DriverError::from)?;
                if let Some(archive) = &config.wal_archive.dir {
                    store = store.with_archive(archive.clone());
                }
                let window = wal_window.unwrap_or_default();
                let store =
                    SyncTimedStore::new(store, window).with_histogram(Arc::clone(&wal_fsync));
                let settings = node_settings(&config, &security, self.snapshot_every_entries);
                let replica = ReplicaNode::start(
                    settings,
                    WithLocks::new(self.machine)
                        .observe_locks(lock_observer)
                        .feed_changes(change_feed.clone()),
                    store,
                )
                .await?;
                (file.incarnation, replica)
            }
            None => {
                let store = MemoryStore::open(MemoryDisk::new());
                let settings = node_settings(&config, &security, self.snapshot_every_entries);
                let replica = ReplicaNode::start(
                    settings,
                    WithLocks::new(self.machine)
                        .observe_locks(lock_observer)
                        .feed_changes(change_feed.clone()),
                    store,
                )
                .await?;
                (fresh_incarnation, replica)
            }
        };
        storage_check.attach(replica.watch_storage());
        let health_status = health.status();
        if health_status != HealthStatus::Healthy {
            let _ = replica.set_health(health_status).await;
        }
        let http_addr = match &http_listener {
            Some(listener) => Some(listener.local_addr().map_err(|source| NodeError::Http {
                addr: config.http_addr.unwrap_or(config.bind_addr),
                source,
            })?),
            None => None,
        };
        let advertised = config.advertised_addr();
        let mut metadata = NodeMetadata::new(
            config.priority,
            SocketAddr::new(advertised.ip(), replica.local_addr().port()),
        );
        metadata.http_addr = http_addr.map(|bound| SocketAddr::new(advertised.ip(), bound.port()));
        metadata.voter = config.voter;
        metadata.witness = config.witness;
        metadata.health = health_status;
        let settings = GossipSettings::from_config(&config, incarnation, metadata);
        let gossip = GossipNode::start(settings, config.bind_addr)
            .await
            .map_err(|error| match error {
                GossipError::Io(source) => NodeError::Gossip(GossipError::Io(std::io::Error::new(
                    source.kind(),
                    format!("binding UDP {}: {source}", config.bind_addr),
                ))),
                other => NodeError::Gossip(other),
            })?;
        let gossip_addr = gossip.local_addr();
        let shared_state = gossip.shared_state();
        let member_events = gossip.subscribe();
        let lease_keeper = LeaseKeeper::start(&replica);
        let writer = crate::host_client::HostClient::new(replica.client());
        // The admin API answers 503 `no_quorum` at once on a node cut off from the majority,
        // so that its client can try another node.
        #[cfg(feature = "http")]
        let http_session = ha_lock::Session::new(replica.client().fail_fast())
            .with_change_feed(change_feed.clone());
        let (events, first_events) = broadcast::channel(EVENT_BUFFER);
        // The journal (issue 16) hears every event from the start, as the first subscriber does.
        let journal_events = events.subscribe();
        let (health_sender, _) = watch::channel(HealthState {
            status: health_status,
            checks: health.results().to_vec(),
            problems: Vec::new(),
        });
        let (stop_http, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            config,
            replica,
            gossip: Mutex::new(Some(Arc::new(gossip))),
            gossip_addr,
            shared_state,
            http_addr: Mutex::new(None),
            events,
            first_events: Mutex::new(Some(first_events)),
            health: health_sender,
            writer,
            #[cfg(feature = "http")]
            http_session,
            change_feed,
            sessions: Mutex::new(BTreeSet::new()),
            lease_keeper: Mutex::new(Some(lease_keeper)),
            tasks: Mutex::new(Vec::new()),
            stop_http,
            stopping: AtomicBool::new(false),
            request_timeout: self.request_timeout,
            drain_timeout: self.drain_timeout,
            started_at: Instant::now(),
            leaderless: Mutex::new((Some(Instant::now()), Duration::ZERO)),
            host_checks,
            failover: Mutex::new(FailoverTracker::new(0)),
            security,
            #[cfg(feature = "http")]
            https_counters: Mutex::new(Vec::new()),
            backup,
            wal_fsync,
            journal: Arc::clone(&journal),
        });
        let failover_poll =
            Duration::from_millis((shared.config.timing.heartbeat_interval_ms * 2).clamp(50, 500));
        let node = Node::from_shared(shared);
        let weak = node.downgrade();
        let tasks = vec![
            tokio::spawn(forward_member_events(weak.clone(), member_events)),
            tokio::spawn(publish_state(weak.clone(), node.watch_role())),
            tokio::spawn(run_health_checks(weak.clone(), health)),
            tokio::spawn(run_failover_status(weak, failover_poll)),
            tokio::spawn(run_event_journal(
                journal,
                node.is_witness(),
                journal_events,
            )),
        ];
        node.shared.tasks.lock().extend(tasks);
        node.shared.tasks.lock().extend(insecure_warning);
        node.shared
            .tasks
            .lock()
            .extend(crate::backup_schedule::spawn(&node));
        #[cfg(feature = "http")]
        if let Some(listener) = http_listener {
            node.serve_on(listener)?;
        }
        tracing::info!(
            node = %node.id(),
            gossip = %node.gossip_addr(),
            rpc = %node.rpc_addr(),
            http = ?node.http_addr(),
            incarnation,
            "node started"
        );
        Ok(node)
    }
}

/// Security material given to the builder in code, in place of the config's files.
struct GivenSecurity {
    admin_tokens: Option<AdminTokens>,
    https: Option<Arc<rustls::ServerConfig>>,
    tls: Option<TlsIdentity>,
}

/// Read the key, certificate and token files named in the config (or take what the builder
/// was given), check that nothing is exposed unprotected (issue 13, rule 1), and start the
/// repeated warning of an insecure node.
fn resolve_security(
    config: &mut Config,
    given: GivenSecurity,
) -> Result<(NodeSecurity, Option<tokio::task::JoinHandle<()>>), NodeError> {
    if let Some(path) = config.security.cluster_key_file.clone() {
        let keys = read_cluster_key_file(&path)?;
        config.security.cluster_keys.extend(keys);
        config.validate()?;
    }
    let admin_tokens = match (given.admin_tokens, &config.security.admin_token_file) {
        (Some(tokens), _) => Some(tokens),
        (None, Some(path)) => {
            Some(
                AdminTokens::from_file(path).map_err(|error| NodeError::SecurityFile {
                    path: path.clone(),
                    reason: error.to_string(),
                })?,
            )
        }
        (None, None) => None,
    };
    let tls = match (given.tls, &config.security.tls) {
        (Some(identity), _) => Some(identity),
        (None, Some(files)) => Some(
            TlsIdentity::from_files(&config.cluster.name, &config.node_id, files).map_err(
                |error| NodeError::SecurityFile {
                    path: match &error {
                        TlsError::Read { path, .. } => path.clone(),
                        _ => files.cert_file.clone(),
                    },
                    reason: error.to_string(),
                },
            )?,
        ),
        (None, None) => None,
    };
    if let Some(identity) = &tls
        && (identity.node_id() != &config.node_id || identity.cluster_name() != config.cluster.name)
    {
        return Err(NodeError::SecurityFile {
            path: "security.tls".into(),
            reason: format!(
                "the TLS identity is for node {} of cluster {}, but this node is {} of {}",
                identity.node_id(),
                identity.cluster_name(),
                config.node_id,
                config.cluster.name
            ),
        });
    }
    let https = given
        .https
        .or_else(|| tls.as_ref().map(TlsIdentity::https_server_config));
    let protection = Protection {
        cluster_key: !config.security.cluster_keys.is_empty(),
        tls: tls.is_some(),
        https: https.is_some(),
        admin_tokens: admin_tokens.is_some(),
    };
    let exposure = config.check_exposure(protection)?;
    for warning in &exposure.warnings {
        tracing::warn!("{warning}");
    }
    let security = NodeSecurity {
        admin_tokens: admin_tokens.map(Arc::new),
        https,
        tls,
    };
    Ok((security, warn_insecure(exposure.insecure)))
}

#[cfg(feature = "http")]
async fn bind_http(
    serve: bool,
    config: &Config,
) -> Result<Option<tokio::net::TcpListener>, NodeError> {
    match (serve, config.http_addr) {
        (true, Some(addr)) => tokio::net::TcpListener::bind(addr)
            .await
            .map(Some)
            .map_err(|source| NodeError::Http { addr, source }),
        _ => Ok(None),
    }
}

#[cfg(not(feature = "http"))]
async fn bind_http(
    _serve: bool,
    _config: &Config,
) -> Result<Option<tokio::net::TcpListener>, NodeError> {
    Ok(None)
}

fn node_settings(
    config: &Config,
    security: &NodeSecurity,
    snapshot_every_entries: Option<u64>,
) -> NodeSettings {
    // Lease reads (cluster.lease_reads) reach the engine through ReplicaSettings.
    let mut replica = ReplicaSettings::from_config(config);
    if replica.engine.lease_reads {
        tracing::info!(
            lease_ms = config.timing.election_timeout_min_ms - config.lease_clock_drift_margin_ms(),
            drift_margin_ms = config.lease_clock_drift_margin_ms(),
            "lease reads on"
        );
    }
    if let Some(entries) = snapshot_every_entries {
        // An explicit count is taken as it is (tests and tools that want snapshots often).
        replica.snapshot_every_entries = entries;
        replica.snapshot_log_percent_of_last = 0;
    }
    // A witness (issue 15) votes but keeps no state machine and never campaigns; the replica
    // turns the engine's setting on with its own.
    replica.witness = config.witness;
    // Larger clusters found through gossip: `ReplicaSettings::from_config` sets
    // `bootstrap_expect` for a voter, and the replica core runs the founding rule.
    let expect = config.cluster.bootstrap_expect as usize;
    NodeSettings {
        replica,
        transport: TransportSettings {
            tls: security.tls.clone(),
            ..TransportSettings::from_config(config)
        },
        peers: Default::default(),
        // A one-voter cluster founds itself; larger ones once gossip has met the others. Only
        // voters found: a non-voter waits to be added instead.
        bootstrap: (expect == 1 && config.voter)
            .then(|| VoterSet::with_voters([config.node_id.clone()])),
    }
}

/// Gossip events reach replication (peer addresses, metadata, bootstrap) and subscribers.
async fn forward_member_events<S: StateMachine>(
    node: Weak<Shared<S>>,
    mut events: broadcast::Receiver<MemberEvent>,
) {
    loop {
        let event = match events.recv().await {
            Ok(event) => event,
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                // Replication re-learns peers from gossip's periodic refresh; say so.
                tracing::warn!(missed, "member events lagged");
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let Some(shared) = node.upgrade() else { return };
        let _ = shared.events.send(NodeEvent::Member(event.clone()));
        if shared.replica.on_member_event(event).await.is_err() {
            return;
        }
    }
}

/// Role and health changes reach subscribers and the metadata gossip advertises (state
/// LEADER / ACTIVE / DEGRADED, health). Also re-checks every second, so the first move from
/// JOINING to ACTIVE is followed.
async fn publish_state<S: StateMachine>(
    node: Weak<Shared<S>>,
    mut roles: watch::Receiver<ha_replicate::driver::RoleView>,
) {
    let mut health = match node.upgrade() {
        Some(shared) => shared.health.subscribe(),
        None => return,
    };
    let mut published: Option<(NodeState, HealthStatus)> = None;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            changed = roles.changed() => {
                if changed.is_err() {
                    return;
                }
                let view = roles.borrow_and_update().clone();
                let Some(shared) = node.upgrade() else { return };
                Node::from_shared(Arc::clone(&shared)).on_leader_known(view.leader.is_some());
                let _ = shared.events.send(NodeEvent::RoleChanged {
                    role: view.role,
                    term: view.term,
                    leader: view.leader,
                });
            }
            changed = health.changed() => {
                if changed.is_err() {
                    return;
                }
                let status = health.borrow_and_update().status;
                let Some(shared) = node.upgrade() else { return };
                let _ = shared.events.send(NodeEvent::HealthChanged(status));
                let _ = shared.replica.set_health(status).await;
            }
            _ = tick.tick() => {}
        }
        let Some(shared) = node.upgrade() else { return };
        let status = shared.health.borrow().status;
        let leads = shared.replica.role().role == Role::Leader;
        let wanted = if leads {
            NodeState::Leader
        } else if status == HealthStatus::Healthy {
            NodeState::Active
        } else {
            NodeState::Degraded
        };
        let current = shared
            .gossip
            .lock()
            .as_ref()
            .map(|gossip| gossip.metadata().state);
        let Some(current) = current else { return };
        // JOINING ends when gossip meets the cluster (a lone leader ends it itself); LEAVING
        // is final.
        let may_change = match current {
            NodeState::Leaving => false,
            NodeState::Joining => wanted == NodeState::Leader,
            _ => true,
        };
        let differs = current != wanted || published.is_none_or(|(_, health)| health != status);
        if may_change && differs {
            published = Some((wanted, status));
            // Clone the handle out of the lock before awaiting.
            let gossip = shared.gossip.lock().clone();
            drop(shared);
            if let Some(gossip) = gossip {
                let _ = gossip
                    .update_metadata(move |metadata| {
                        if metadata.state != NodeState::Leaving {
                            metadata.state = wanted;
                        }
                        metadata.health = status;
                    })
                    .await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ha_core::NodeId;

    /// A non-voter given `bootstrap_expect` counted itself as a founding voter (the driver's
    /// feed assumes a node that may found votes): the founding simulation saw a non-voter
    /// found {n0, n2, n4} next to the voters' {n0, n1, n2}.
    #[test]
    fn only_voters_found_a_cluster_through_gossip() {
        let addr = "127.0.0.1:7002".parse().unwrap();
        let seed = "127.0.0.1:7001".parse().unwrap();
        let mut config = Config::full_ha(NodeId::new("w").unwrap(), addr, vec![seed]);
        assert_eq!(
            node_settings(&config, &NodeSecurity::default(), None)
                .replica
                .bootstrap_expect,
            Some(3)
        );
        config.voter = false;
        let settings = node_settings(&config, &NodeSecurity::default(), None);
        assert_eq!(settings.replica.bootstrap_expect, None);
        assert_eq!(settings.bootstrap, None);
    }

    /// A witness founds the cluster with the data nodes (it votes) and its replica runs as a
    /// witness.
    #[test]
    fn a_witness_founds_as_a_voter_and_runs_its_replica_as_a_witness() {
        let addr = "127.0.0.1:7003".parse().unwrap();
        let seeds = vec![
            "127.0.0.1:7001".parse().unwrap(),
            "127.0.0.1:7002".parse().unwrap(),
        ];
        let config = Config::simple_failover(NodeId::new("w").unwrap(), addr, seeds, true);
        let settings = node_settings(&config, &NodeSecurity::default(), None);
        assert!(settings.replica.witness);
        assert_eq!(settings.replica.bootstrap_expect, Some(3));
        let data = Config {
            witness: false,
            priority: ha_core::Priority(1),
            ..config
        };
        assert!(
            !node_settings(&data, &NodeSecurity::default(), None)
                .replica
                .witness
        );
    }
}
