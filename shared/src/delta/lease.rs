//! One committer per table: a commit run under the table's lease.

use super::*;

use chrono::Utc;

use crate::commit::CommitRecord;
use crate::error::{Error, Result};
use crate::store::Location;

/// [`commit_batch`] as the only committer of `table` for the while: under
/// the table's lease (`_sluice/committers/<table>.json`, created only if
/// absent; one left by a crashed holder is taken over after `ttl`), waited
/// for at most `wait`. Many committers of a lake (catalog functions in AWS)
/// then work on different tables at once, and never on one table at once,
/// so they do not spend their time losing conflicts. A lease still held
/// after `wait` is [`Error::Unavailable`]: the batch is worth retrying.
pub async fn commit_batch_leased(
    lake: &Location,
    table: &str,
    records: Vec<CommitRecord>,
    ttl: std::time::Duration,
    wait: std::time::Duration,
) -> Result<Committed> {
    leased(lake, table, ttl, wait, commit_batch(lake, table, records)).await
}

/// Run `work` (a commit of `table`) as the table's only committer: under
/// its lease, as [`commit_batch_leased`] describes.
pub async fn leased<T>(
    lake: &Location,
    table: &str,
    ttl: std::time::Duration,
    wait: std::time::Duration,
    work: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    let path = lake.child(&format!("{}/{table}.json", crate::layout::COMMITTERS_DIR))?;
    let held = crate::lease::wait_for(
        lake.store.as_ref(),
        &path,
        ttl,
        Utc::now,
        crate::retry::Policy::lease(wait),
    )
    .await?;
    let Some(held) = held else {
        return Err(Error::Unavailable(format!(
            "table '{table}': another committer has held {} for over {} s; the batch is retried later",
            lake.url_of(&path),
            wait.as_secs()
        )));
    };
    let result = work.await;
    let released = held.release(lake.store.as_ref()).await;
    let done = result?;
    released?;
    Ok(done)
}
