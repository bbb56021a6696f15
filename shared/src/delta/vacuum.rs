//! VACUUM: files the table removed longer ago than the retention, deleted.

use super::*;

use crate::error::{Error, Result};
use crate::store::Location;

/// Delete the files of `table` that no snapshot younger than `retain` needs
/// (those removed from the table longer ago than that); with `dry_run`, only
/// list them. Files the log never named (a chunk still being written) are
/// left alone. Returns the files (deleted, or that would be).
pub async fn vacuum(
    lake: &Location,
    table: &str,
    retain: std::time::Duration,
    dry_run: bool,
) -> Result<Vec<String>> {
    let Some(t) = open(lake, table, AsOf::Latest).await? else {
        return Err(Error::Config(format!(
            "no Delta table '{table}' in {}",
            lake.url
        )));
    };
    let retain =
        chrono::Duration::from_std(retain).map_err(|e| Error::Config(format!("--retain: {e}")))?;
    let (_, metrics) = t
        .vacuum()
        .with_retention_period(retain)
        // `--retain` is the user's explicit choice, even under the table's
        // own `delta.deletedFileRetentionDuration`.
        .with_enforce_retention_duration(false)
        .with_mode(deltalake::operations::vacuum::VacuumMode::Lite)
        .with_dry_run(dry_run)
        .await
        .map_err(|e| error(table, e))?;
    Ok(metrics.files_deleted)
}
