//! Files of chunks that never committed, swept from a Hive table's folder.
//!
//! A chunk writes its files into its partitions' folders, then its commit
//! record. A Hive reader (Athena, Spark, DuckDB over the folders) lists the
//! folders and sees the files from the moment they are written. A chunk
//! that fails after writing some of them deletes them (`abandon`), and a
//! chunk retried writes the same names; but a chunk killed mid-write (a
//! timeout, a crash) whose retries end in the dead-letter queue would leave
//! them listed forever, rows that no commit record accounts for. So files
//! named as a chunk's (`part-<chunk id>-<n>.parquet`) whose chunk has no
//! commit record, and that are older than [`UNCOMMITTED_GRACE`], are
//! deleted: no attempt of a chunk is still at work that long after writing
//! (an invocation runs at most 15 minutes, and the transform queue makes a
//! message visible again after 90), and a redriven chunk writes them again.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use object_store::ObjectStoreExt as _;

use crate::commit::CommitRecord;
use crate::error::{Error, Result};
use crate::store::Location;

/// How old a file of a chunk with no commit record must be to be swept.
pub const UNCOMMITTED_GRACE: Duration = Duration::from_secs(2 * 3600);

/// The chunk id in a chunk file's name (`part-<24 hex>-<5 digits>.parquet`);
/// `None` for any other file (a compaction's output is `part-m<id>-…`).
fn chunk_of(file_name: &str) -> Option<&str> {
    let rest = file_name.strip_prefix("part-")?.strip_suffix(".parquet")?;
    let (id, seq) = rest.split_once('-')?;
    let hex = id.len() == 24 && id.bytes().all(|b| b.is_ascii_hexdigit());
    let digits = seq.len() == 5 && seq.bytes().all(|b| b.is_ascii_digit());
    (hex && digits).then_some(id)
}

/// Delete (with `dry_run`, only list) the files in `table`'s folder of
/// chunks that have no commit record, older than [`UNCOMMITTED_GRACE`] at
/// `now`. Returns them, relative to the lake.
pub async fn sweep_uncommitted(
    lake: &Location,
    table: &str,
    dry_run: bool,
    now: DateTime<Utc>,
) -> Result<Vec<String>> {
    let folder = lake.child(table)?;
    let mut listing = lake.store.list(Some(&folder));
    let mut committed: HashMap<String, bool> = HashMap::new();
    let mut swept = Vec::new();
    while let Some(meta) = listing
        .try_next()
        .await
        .map_err(|e| Error::read(lake.url_of(&folder), e))?
    {
        let Some(id) = meta.location.filename().and_then(chunk_of) else {
            continue;
        };
        let age = (now - meta.last_modified).to_std().unwrap_or_default();
        if age < UNCOMMITTED_GRACE {
            continue;
        }
        let has_record = match committed.get(id) {
            Some(c) => *c,
            None => {
                let record = lake.child(&CommitRecord::path(table, id))?;
                let c = match lake.store.head(&record).await {
                    Ok(_) => true,
                    Err(object_store::Error::NotFound { .. }) => false,
                    Err(e) => return Err(Error::read(lake.url_of(&record), e)),
                };
                committed.insert(id.to_string(), c);
                c
            }
        };
        if has_record {
            continue;
        }
        let relative = lake.relative(&meta.location);
        tracing::warn!(table, chunk = id, file = %relative, age_s = age.as_secs(), dry_run, "a file of a chunk that never committed: swept");
        if !dry_run {
            match lake.store.delete(&meta.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(Error::write(lake.url_of(&meta.location), e)),
            }
        }
        swept.push(relative);
    }
    Ok(swept)
}

#[cfg(test)]
mod tests {
    use super::chunk_of;

    #[test]
    fn only_chunk_file_names_name_a_chunk() {
        let id = "0123456789abcdef01234567";
        assert_eq!(chunk_of(&format!("part-{id}-00003.parquet")), Some(id));
        assert_eq!(chunk_of(&format!("part-m{id}-00000.parquet")), None);
        assert_eq!(chunk_of(&format!("part-{id}-00003.parquet.tmp")), None);
        assert_eq!(chunk_of(&format!("part-{id}-3.parquet")), None);
        assert_eq!(chunk_of("part-0123-00000.parquet"), None);
        assert_eq!(chunk_of("data.parquet"), None);
    }
}
