//! VACUUM: files the table removed longer ago than the retention, and files
//! it never held, deleted.

use super::*;

use std::sync::Arc;

use deltalake::operations::vacuum::{Clock, VacuumMode};

use crate::error::{Error, Result};
use crate::store::Location;

/// How long a file in the table's folder that no version names is left
/// alone, whatever `retain` says: a chunk's files wait there for their
/// commit (the catalog retries a commit record for up to the 14 days an SQS
/// message lives), an OPTIMIZE's outputs for theirs.
pub const ORPHAN_GRACE: std::time::Duration = std::time::Duration::from_secs(15 * 24 * 3600);

/// Delete the files of `table` that no snapshot younger than `retain` needs
/// (those removed from the table longer ago than that), and the files in
/// its folder that no version names and that are older than
/// [`ORPHAN_GRACE`] (a crashed chunk's or OPTIMIZE's, or files a checkpoint
/// forgot the removal of); with `dry_run`, only list them. Returns the
/// files (deleted, or that would be), relative to the table.
pub async fn vacuum(
    lake: &Location,
    table: &str,
    retain: std::time::Duration,
    dry_run: bool,
) -> Result<Vec<String>> {
    vacuum_at(lake, table, retain, dry_run, chrono::Utc::now()).await
}

/// [`vacuum`] as if the time were `now` (tests age files without waiting).
pub async fn vacuum_at(
    lake: &Location,
    table: &str,
    retain: std::time::Duration,
    dry_run: bool,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<String>> {
    let orphans = retain.max(ORPHAN_GRACE);
    let mut files = Vec::new();
    // Removed files past `retain` (the log's tombstones), then files no
    // version names (a listing of the folder) past the grace.
    for (mode, retention) in [(VacuumMode::Lite, retain), (VacuumMode::Full, orphans)] {
        let Some(t) = open(lake, table, AsOf::Latest).await? else {
            return Err(Error::Config(format!(
                "no Delta table '{table}' in {}",
                lake.url
            )));
        };
        let retention = chrono::Duration::from_std(retention)
            .map_err(|e| Error::Config(format!("--retain: {e}")))?;
        let (_, metrics) = t
            .vacuum()
            .with_retention_period(retention)
            // `--retain` is the user's explicit choice, even under the
            // table's own `delta.deletedFileRetentionDuration`.
            .with_enforce_retention_duration(false)
            .with_mode(mode)
            .with_clock(Arc::new(At(now.timestamp_millis())))
            .with_dry_run(dry_run)
            .await
            .map_err(|e| error(table, e))?;
        for f in metrics.files_deleted {
            if !files.contains(&f) {
                files.push(f);
            }
        }
    }
    Ok(files)
}

/// A fixed time, for delta-rs's VACUUM.
#[derive(Debug)]
struct At(i64);

impl Clock for At {
    fn current_timestamp_millis(&self) -> i64 {
        self.0
    }
}
