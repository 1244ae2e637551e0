//! Scheduled backups (issue 14, item 2): with `[backup] dir` (bot: `--backup-dir DIR
//! --backup-interval-s N --backup-keep K`), the **leader** writes a fresh, verified backup file
//! of the whole replicated state into `dir` every `interval_s` seconds and keeps the newest
//! `keep`.
//!
//! Which node: the leader, because it is one node at a time in a term (no duplicate work, no
//! two nodes copying the state at once), it has applied every acknowledged write (its export
//! needs no wait for catching up), and it moves on failover without any election of our own.
//! Each node schedules against its own `dir`: after a failover the new leader takes a backup
//! as soon as the newest good one in its dir is older than an interval (at once if it has
//! none). A shared `dir` (a network mount) works as well: file names carry the index and the
//! creation time, so two leaders of successive terms never write the same name.
//!
//! Each backup ([`Node::write_backup_to`]) is written to `.NAME.tmp` in `dir`, synced,
//! renamed to `NAME` = `<cluster>-<index, 20 digits>-<created at, unix ms>.habackup`, the
//! directory synced, and the file read back and verified whole (header digest, body SHA-256,
//! cluster name). Then the oldest backup files beyond `keep` (by their header's creation time)
//! are removed. A write that fails is counted and retried after `min(interval, 30 s)`.
//!
//! The catalogue (`GET /v1/backups`, [`Node::backups`]) lists every `*.habackup` file in
//! `dir`, newest first; a file not written by this process is verified (read whole) once when
//! first seen. Surfaces: `ha_backup_newest_age_seconds` (`+Inf` with no good backup),
//! `ha_backups_taken_total`, `ha_backups_failed_total`, `ha_backup_last_bytes`,
//! `ha_backup_last_duration_seconds`, `ha_backups_kept`, `ha_backup_interval_seconds`, and the
//! non-critical health check [`BACKUP_CHECK`]: on the leader, `Unhealthy` (so the node is
//! `DEGRADED`, never handing over for it) when the newest good backup is older than two
//! intervals, counted from when this node became leader at the earliest; always `Healthy` on a
//! follower, which takes none.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use ha_core::{BackupConfig, HealthCheck, HealthStatus, StateMachine};
use parking_lot::Mutex;
use serde::Serialize;
use tokio::task::JoinHandle;

use crate::backup_file::{BackupHeader, hex};
use crate::backup_writer::{BackupWriteError, unix_now_ms};
use crate::node::{Node, Shared};

/// The health check's name in `/v1/health` and the metrics.
pub const BACKUP_CHECK: &str = "backup";

/// The suffix of backup files.
pub const BACKUP_FILE_SUFFIX: &str = ".habackup";

/// Files looked at in the backup dir, at most (the rest are ignored, with a warning).
pub const LISTED_FILES_MAX: usize = 2 * ha_core::BACKUP_KEEP_MAX;

/// How often the scheduler wakes up (at most; shorter intervals wake it as often).
const TICK: Duration = Duration::from_secs(1);
/// How often the directory is listed again between backups (files removed or added by hand).
const REFRESH_EVERY: Duration = Duration::from_secs(10);
/// The longest wait before retrying a failed backup.
const RETRY_AFTER_MAX: Duration = Duration::from_secs(30);

/// One backup file in the backup dir (`GET /v1/backups`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BackupListing {
    /// The file's name in the backup dir.
    pub file: String,
    /// The last log index the backup holds (0 when its header does not read).
    pub index: u64,
    /// That entry's term.
    pub term: u64,
    /// The file's size in bytes.
    pub bytes: u64,
    /// The SHA-256 of the body, hex (empty when the header does not read).
    pub sha256: String,
    /// When the backup was taken, unix ms (its header's `created_at`).
    pub at_ms: u64,
    /// Whether the whole file verified (header, body SHA-256, cluster name).
    pub verified: bool,
    /// Why it did not verify.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// What the scheduler knows, shared with the health check, the metrics and the API.
#[derive(Debug, Default)]
pub(crate) struct ScheduleStatus {
    /// The files in the dir, by name.
    catalogue: BTreeMap<String, BackupListing>,
    taken_total: u64,
    failed_total: u64,
    last_error: Option<String>,
    last_bytes: u64,
    last_duration_ms: u64,
    /// Since when this node leads (wall clock, unix ms), while it does.
    leading_since_ms: Option<u64>,
}

impl ScheduleStatus {
    /// When the newest backup that verified was taken (unix ms).
    fn newest_good_at_ms(&self) -> Option<u64> {
        self.catalogue
            .values()
            .filter(|listing| listing.verified)
            .map(|listing| listing.at_ms)
            .max()
    }
}

/// The scheduler's configuration and status.
pub(crate) struct BackupSchedule {
    pub(crate) config: BackupConfig,
    pub(crate) status: Mutex<ScheduleStatus>,
}

impl BackupSchedule {
    /// A schedule for `config` (`None` without a backup dir).
    pub(crate) fn new(config: &BackupConfig) -> Option<Arc<Self>> {
        config.dir.as_ref()?;
        Some(Arc::new(Self {
            config: config.clone(),
            status: Mutex::new(ScheduleStatus::default()),
        }))
    }

    fn interval_ms(&self) -> u64 {
        self.config.interval_s.saturating_mul(1_000)
    }

    /// The health check's verdict at `now_ms`.
    fn verdict(&self, now_ms: u64) -> HealthStatus {
        let status = self.status.lock();
        let Some(leading_since) = status.leading_since_ms else {
            return HealthStatus::Healthy;
        };
        let since = status
            .newest_good_at_ms()
            .map_or(leading_since, |at| at.max(leading_since));
        if now_ms.saturating_sub(since) > self.interval_ms().saturating_mul(2) {
            HealthStatus::Unhealthy
        } else {
            HealthStatus::Healthy
        }
    }
}

/// The non-critical health check [`BACKUP_CHECK`].
struct BackupAgeCheck {
    schedule: Arc<BackupSchedule>,
}

impl HealthCheck for BackupAgeCheck {
    fn name(&self) -> &str {
        BACKUP_CHECK
    }

    fn check(&self) -> HealthStatus {
        self.schedule.verdict(unix_now_ms())
    }

    fn critical(&self) -> bool {
        // A missing backup is no reason to hand leadership over: the next leader would be no
        // better placed, and failover costs availability.
        false
    }
}

/// The health check for `schedule`.
pub(crate) fn health_check(schedule: &Arc<BackupSchedule>) -> Arc<dyn HealthCheck> {
    Arc::new(BackupAgeCheck {
        schedule: Arc::clone(schedule),
    })
}

/// Start the scheduler for `node` (nothing without a backup dir).
pub(crate) fn spawn<S: StateMachine>(node: &Node<S>) -> Option<JoinHandle<()>> {
    let schedule = node.shared.backup.schedule.clone()?;
    Some(tokio::spawn(run(node.downgrade(), schedule)))
}

async fn run<S: StateMachine>(node: Weak<Shared<S>>, schedule: Arc<BackupSchedule>) {
    let Some(dir) = schedule.config.dir.clone() else {
        return;
    };
    let cluster = match node.upgrade() {
        Some(shared) => shared.config.cluster.name.clone(),
        None => return,
    };
    refresh(&schedule, &dir, &cluster, true).await;
    let mut refreshed_at = Instant::now();
    let mut retry_at: Option<Instant> = None;
    let tick = TICK.min(Duration::from_secs(schedule.config.interval_s));
    loop {
        tokio::time::sleep(tick).await;
        let Some(shared) = node.upgrade() else {
            return;
        };
        let node = Node::from_shared(shared);
        if node
            .shared
            .stopping
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            return;
        }
        let leading = node.is_leader();
        {
            let mut status = schedule.status.lock();
            match (leading, status.leading_since_ms) {
                (true, None) => status.leading_since_ms = Some(unix_now_ms()),
                (false, Some(_)) => status.leading_since_ms = None,
                _ => {}
            }
        }
        if refreshed_at.elapsed() >= REFRESH_EVERY {
            refresh(&schedule, &dir, &cluster, false).await;
            refreshed_at = Instant::now();
        }
        if !leading || retry_at.is_some_and(|at| Instant::now() < at) {
            continue;
        }
        let newest = schedule.status.lock().newest_good_at_ms();
        if newest.is_some_and(|at| unix_now_ms().saturating_sub(at) < schedule.interval_ms()) {
            continue;
        }
        let started = Instant::now();
        match node.write_backup_to(&dir, file_name).await {
            Ok((name, header)) => {
                retry_at = None;
                let bytes = std::fs::metadata(dir.join(&name)).map_or(0, |meta| meta.len());
                tracing::info!(file = %name, index = header.last_index, bytes, "scheduled backup written and verified");
                {
                    let mut status = schedule.status.lock();
                    status.taken_total += 1;
                    status.last_error = None;
                    status.last_bytes = bytes;
                    status.last_duration_ms =
                        u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                    status
                        .catalogue
                        .insert(name.clone(), listing(name, &header, bytes, None));
                }
                // Only once the new backup is in place and verified.
                prune(&schedule, &dir).await;
            }
            // HTTP exports hold the writers: try again at the next tick, nothing failed.
            Err(BackupWriteError::Busy) => {}
            Err(error) => {
                tracing::warn!(%error, dir = %dir.display(), "scheduled backup failed; will retry");
                let mut status = schedule.status.lock();
                status.failed_total += 1;
                status.last_error = Some(error.to_string());
                retry_at = Some(
                    Instant::now()
                        + RETRY_AFTER_MAX.min(Duration::from_secs(schedule.config.interval_s)),
                );
            }
        }
    }
}

/// The file name of a backup: `<cluster>-<index, 20 digits>-<created at, unix ms>.habackup`.
pub fn file_name(header: &BackupHeader) -> String {
    format!(
        "{}-{:020}-{}{BACKUP_FILE_SUFFIX}",
        header.cluster, header.last_index, header.created_at_unix_ms
    )
}

fn listing(
    file: String,
    header: &BackupHeader,
    bytes: u64,
    problem: Option<String>,
) -> BackupListing {
    BackupListing {
        file,
        index: header.last_index,
        term: header.last_term,
        bytes,
        sha256: hex(&header.body_sha256),
        at_ms: header.created_at_unix_ms,
        verified: problem.is_none(),
        problem,
    }
}

/// List `dir` again: files gone are dropped from the catalogue, new ones verified. On the
/// first call, temporary files a crash left behind are removed.
async fn refresh(schedule: &Arc<BackupSchedule>, dir: &Path, cluster: &str, first: bool) {
    let known = schedule.status.lock().catalogue.clone();
    let dir = dir.to_path_buf();
    let cluster = cluster.to_string();
    let scanned = tokio::task::spawn_blocking(move || scan(&dir, &cluster, &known, first)).await;
    match scanned {
        Ok(Ok(catalogue)) => schedule.status.lock().catalogue = catalogue,
        Ok(Err(error)) => {
            tracing::warn!(%error, "listing the backup dir failed");
            schedule.status.lock().last_error = Some(format!("listing the backup dir: {error}"));
        }
        Err(error) => tracing::warn!(%error, "listing the backup dir panicked"),
    }
}

/// The catalogue of `dir` (blocking): `known` entries whose file still has the same size are
/// kept as they are; other `*.habackup` files are read whole and verified.
fn scan(
    dir: &Path,
    cluster: &str,
    known: &BTreeMap<String, BackupListing>,
    remove_temporaries: bool,
) -> std::io::Result<BTreeMap<String, BackupListing>> {
    std::fs::create_dir_all(dir)?;
    let mut catalogue = BTreeMap::new();
    let mut seen = 0usize;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if name.starts_with('.') {
            if remove_temporaries && name.ends_with(".tmp") && name.contains(BACKUP_FILE_SUFFIX) {
                let _ = std::fs::remove_file(entry.path());
            }
            continue;
        }
        if !name.ends_with(BACKUP_FILE_SUFFIX) {
            continue;
        }
        seen += 1;
        if seen > LISTED_FILES_MAX {
            tracing::warn!(dir = %dir.display(), "more than {LISTED_FILES_MAX} backup files; the rest are not listed");
            break;
        }
        let bytes = entry.metadata().map_or(0, |meta| meta.len());
        if let Some(listing) = known.get(&name).filter(|listing| listing.bytes == bytes) {
            catalogue.insert(name, listing.clone());
            continue;
        }
        let path = entry.path();
        let listing = match BackupHeader::verify_file(&path, Some(cluster)) {
            Ok(header) => listing(name.clone(), &header, bytes, None),
            Err(error) => {
                // Show what the header says, if it reads, with why the file is not good.
                let header = std::fs::File::open(&path)
                    .ok()
                    .and_then(|mut file| BackupHeader::read(&mut file).ok());
                match header {
                    Some(header) => listing(name.clone(), &header, bytes, Some(error.to_string())),
                    None => BackupListing {
                        file: name.clone(),
                        index: 0,
                        term: 0,
                        bytes,
                        sha256: String::new(),
                        at_ms: 0,
                        verified: false,
                        problem: Some(error.to_string()),
                    },
                }
            }
        };
        catalogue.insert(name, listing);
    }
    Ok(catalogue)
}

/// Remove the oldest backup files beyond `keep` (by creation time, then name; files whose
/// header does not read count as oldest). They leave the catalogue at once, so the list never
/// shows more than `keep`; a file that cannot be removed is listed again at the next refresh.
async fn prune(schedule: &Arc<BackupSchedule>, dir: &Path) {
    let keep = schedule.config.keep;
    let doomed: Vec<String> = {
        let mut status = schedule.status.lock();
        let mut files: Vec<(u64, String)> = status
            .catalogue
            .values()
            .map(|listing| (listing.at_ms, listing.file.clone()))
            .collect();
        files.sort_by(|a, b| b.cmp(a));
        let doomed: Vec<String> = files.into_iter().skip(keep).map(|(_, name)| name).collect();
        for name in &doomed {
            status.catalogue.remove(name);
        }
        doomed
    };
    if doomed.is_empty() {
        return;
    }
    let dir: PathBuf = dir.to_path_buf();
    let _ = tokio::task::spawn_blocking(move || {
        for name in doomed {
            match std::fs::remove_file(dir.join(&name)) {
                Ok(()) => tracing::info!(file = %name, keep, "old backup removed"),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => tracing::warn!(%error, file = %name, "removing an old backup failed"),
            }
        }
        let _ = crate::backup_writer::sync_dir(&dir);
    })
    .await;
}

/// The backup metrics, in the Prometheus text format (empty without a backup dir).
pub(crate) fn render_metrics(schedule: Option<&Arc<BackupSchedule>>) -> String {
    let Some(schedule) = schedule else {
        return String::new();
    };
    let status = schedule.status.lock();
    let age = status.newest_good_at_ms().map_or(f64::INFINITY, |at| {
        unix_now_ms().saturating_sub(at) as f64 / 1_000.0
    });
    let kept = status
        .catalogue
        .values()
        .filter(|listing| listing.verified)
        .count();
    let mut out = crate::metrics::PrometheusText::default();
    out.single(
        "ha_backup_newest_age_seconds",
        "gauge",
        "Seconds since the newest backup in the backup dir that verified was taken (+Inf with none).",
        age,
    );
    out.single(
        "ha_backups_taken_total",
        "counter",
        "Scheduled backups this node wrote and verified.",
        status.taken_total as f64,
    );
    out.single(
        "ha_backups_failed_total",
        "counter",
        "Scheduled backups this node failed to take, write or verify.",
        status.failed_total as f64,
    );
    out.single(
        "ha_backup_last_bytes",
        "gauge",
        "The size of the last scheduled backup this node wrote, in bytes.",
        status.last_bytes as f64,
    );
    out.single(
        "ha_backup_last_duration_seconds",
        "gauge",
        "How long the last scheduled backup took (export, write, sync, verify), in seconds.",
        status.last_duration_ms as f64 / 1_000.0,
    );
    out.single(
        "ha_backups_kept",
        "gauge",
        "Backup files in the backup dir that verified.",
        kept as f64,
    );
    // The configured interval, so an alert can compare the age with it
    // (deploy/prometheus/alerts.yml, HaBackupStale) without repeating the setting.
    out.single(
        "ha_backup_interval_seconds",
        "gauge",
        "Seconds between two scheduled backups (`[backup] interval_s`).",
        schedule.config.interval_s as f64,
    );
    out.finish()
}

impl<S: StateMachine> Node<S> {
    /// The backup files in the backup dir (`[backup] dir`), newest first; `None` when no
    /// backup dir is configured.
    pub fn backups(&self) -> Option<Vec<BackupListing>> {
        let schedule = self.shared.backup.schedule.as_ref()?;
        let mut files: Vec<BackupListing> =
            schedule.status.lock().catalogue.values().cloned().collect();
        files.sort_by(|a, b| (b.at_ms, &b.file).cmp(&(a.at_ms, &a.file)));
        Some(files)
    }

    /// Why the last scheduled backup failed, if it did (cleared by the next good one).
    pub fn backup_error(&self) -> Option<String> {
        self.shared
            .backup
            .schedule
            .as_ref()?
            .status
            .lock()
            .last_error
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERVAL_MS: u64 = 60_000;

    fn schedule(leading_since_ms: Option<u64>, newest_at_ms: Option<u64>) -> Arc<BackupSchedule> {
        let schedule = BackupSchedule::new(&BackupConfig {
            dir: Some(PathBuf::from("/unused")),
            interval_s: INTERVAL_MS / 1_000,
            keep: 3,
        })
        .expect("a dir is configured");
        {
            let mut status = schedule.status.lock();
            status.leading_since_ms = leading_since_ms;
            if let Some(at_ms) = newest_at_ms {
                let header = BackupHeader {
                    format_version: 1,
                    cluster: "c".to_string(),
                    last_index: 1,
                    last_term: 1,
                    created_at_unix_ms: at_ms,
                    body_bytes: 0,
                    body_sha256: [0; 32],
                };
                let name = file_name(&header);
                status
                    .catalogue
                    .insert(name.clone(), listing(name, &header, 1, None));
                // A newer file that does not verify does not count.
                let bad = format!("bad{BACKUP_FILE_SUFFIX}");
                let mut newer = header.clone();
                newer.created_at_unix_ms = at_ms + 1;
                status.catalogue.insert(
                    bad.clone(),
                    listing(bad, &newer, 1, Some("corrupt".to_string())),
                );
            }
        }
        schedule
    }

    /// One line per case: (leading since, newest good backup at, now, verdict).
    #[test]
    fn the_check_fails_only_on_a_leader_two_intervals_after_the_later_of_both() {
        let healthy = HealthStatus::Healthy;
        let unhealthy = HealthStatus::Unhealthy;
        let cases = [
            // A follower takes no backups: always healthy.
            (None, None, 10 * INTERVAL_MS, healthy),
            (None, Some(0), 10 * INTERVAL_MS, healthy),
            // A new leader with no backup has two intervals to take one.
            (Some(1_000), None, 1_000 + 2 * INTERVAL_MS, healthy),
            (Some(1_000), None, 1_001 + 2 * INTERVAL_MS, unhealthy),
            // An old backup counts from when leadership began, not from its own age.
            (Some(5 * INTERVAL_MS), Some(0), 6 * INTERVAL_MS, healthy),
            // A leader's backup older than two intervals fails the check.
            (Some(0), Some(INTERVAL_MS), 3 * INTERVAL_MS, healthy),
            (Some(0), Some(INTERVAL_MS), 3 * INTERVAL_MS + 1, unhealthy),
        ];
        for (leading_since, newest, now, expected) in cases {
            assert_eq!(
                schedule(leading_since, newest).verdict(now),
                expected,
                "leading since {leading_since:?}, newest {newest:?}, now {now}"
            );
        }
    }

    #[test]
    fn file_names_sort_by_index_and_carry_the_creation_time() {
        let header = BackupHeader {
            format_version: 1,
            cluster: "payments".to_string(),
            last_index: 42,
            last_term: 3,
            created_at_unix_ms: 1_700_000_000_000,
            body_bytes: 0,
            body_sha256: [0; 32],
        };
        assert_eq!(
            file_name(&header),
            "payments-00000000000000000042-1700000000000.habackup"
        );
    }
}
