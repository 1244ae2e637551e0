//! Scheduled backups (issue 14, item 2): the `[backup]` table of [`Config`](crate::Config).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::ConfigError;

/// The default time between two scheduled backups: one hour.
pub const BACKUP_INTERVAL_S_DEFAULT: u64 = 3_600;
/// The default number of backups kept in the directory.
pub const BACKUP_KEEP_DEFAULT: usize = 24;
/// The shortest interval accepted: a backup copies the whole state.
pub const BACKUP_INTERVAL_S_MIN: u64 = 1;
/// The longest interval accepted (30 days): the age health check doubles it.
pub const BACKUP_INTERVAL_S_MAX: u64 = 30 * 24 * 3_600;
/// The most backups kept: the directory is listed on every backup.
pub const BACKUP_KEEP_MAX: usize = 10_000;

/// Scheduled backups: with a `dir`, the leader writes a verified backup file of the whole
/// replicated state there every `interval_s` seconds and keeps the newest `keep`. Without a
/// `dir` (the default) nothing is scheduled.
///
/// ```
/// use ha_core::BackupConfig;
/// let backup = BackupConfig { dir: Some("/var/backups/ha".into()), interval_s: 600, keep: 6 };
/// backup.validate().unwrap();
/// let error = BackupConfig { keep: 0, ..backup }.validate().unwrap_err();
/// assert_eq!(error.field, "backup.keep");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BackupConfig {
    /// Where backup files are written; `None`: no scheduled backups.
    pub dir: Option<PathBuf>,
    /// Seconds between two backups ([`BACKUP_INTERVAL_S_DEFAULT`]).
    pub interval_s: u64,
    /// Backups kept; older ones are removed ([`BACKUP_KEEP_DEFAULT`]).
    pub keep: usize,
}

impl Default for BackupConfig {
    fn default() -> Self {
        Self {
            dir: None,
            interval_s: BACKUP_INTERVAL_S_DEFAULT,
            keep: BACKUP_KEEP_DEFAULT,
        }
    }
}

impl BackupConfig {
    /// Check the limits.
    ///
    /// # Errors
    /// [`ConfigError`] naming `backup.interval_s`, `backup.keep` or `backup.dir`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(BACKUP_INTERVAL_S_MIN..=BACKUP_INTERVAL_S_MAX).contains(&self.interval_s) {
            return Err(ConfigError::new(
                "backup.interval_s",
                format!("is {}", self.interval_s),
                format!(
                    "give {BACKUP_INTERVAL_S_MIN} to {BACKUP_INTERVAL_S_MAX} seconds (the default \
                     is {BACKUP_INTERVAL_S_DEFAULT})"
                ),
            ));
        }
        if !(1..=BACKUP_KEEP_MAX).contains(&self.keep) {
            return Err(ConfigError::new(
                "backup.keep",
                format!("is {}", self.keep),
                format!(
                    "keep 1 to {BACKUP_KEEP_MAX} backups (the default is {BACKUP_KEEP_DEFAULT})"
                ),
            ));
        }
        if self
            .dir
            .as_ref()
            .is_some_and(|dir| dir.as_os_str().is_empty())
        {
            return Err(ConfigError::new(
                "backup.dir",
                "is empty",
                "give a directory, or leave it out for no scheduled backups",
            ));
        }
        Ok(())
    }
}
