//! Cutting a replaced source's rows out of a partition: files still there
//! are deleted, outputs that merged them are written again without their
//! rows, under the same lease and intent protocol as a merge.

use chrono::{DateTime, Utc};
use object_store::ObjectStoreExt;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use sha2::{Digest, Sha256};
use tracing::info;

use crate::catalog::{PartitionDef, TableDef};
use crate::error::{Error, Result};
use crate::store::Location;

use super::CompactOptions;
use super::intent::{Intent, IntentState, PartRows, Partition};
use super::merge::UploadSink;

/// What cutting the chunk files `drop` out of a merged file leaves: the
/// row ranges to leave out (in the merged file's row order), the parts
/// kept, and the id of the file written in its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CutPlan {
    pub ranges: Vec<std::ops::Range<u64>>,
    pub kept: Vec<PartRows>,
    /// Rows of the merged file, every part's.
    pub rows: u64,
    /// Fixed by the merged file and what is dropped, so a retry writes the
    /// same name.
    pub id: String,
}

/// Plan the cut of `drop` out of `merged` (made of `parts`, in row order):
/// the one row-range cut of compaction outputs, for Hive partitions and
/// Delta tables alike.
pub fn plan_cut(merged: &str, parts: &[PartRows], drop: &[String]) -> CutPlan {
    let (mut ranges, mut kept, mut at) = (Vec::new(), Vec::new(), 0u64);
    for p in parts {
        if drop.contains(&p.file) {
            ranges.push(at..at + p.rows);
        } else {
            kept.push(p.clone());
        }
        at += p.rows;
    }
    let mut h = Sha256::new();
    h.update(merged.as_bytes());
    for d in drop {
        h.update([0]);
        h.update(d.as_bytes());
    }
    CutPlan {
        ranges,
        kept,
        rows: at,
        id: hex::encode(&h.finalize()[..12]),
    }
}

/// How long cutting rows waits for a partition's lease before giving up.
const LEASE_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Remove the rows of these chunk files from a partition (see
/// [`compact_partition`] for the protocol), under the partition's lease. A
/// lease still busy after [`LEASE_WAIT`] is [`Error::Unavailable`]: try again later.
pub async fn remove_files(
    lake: &Location,
    table: &TableDef,
    partition: &PartitionDef,
    files: &[String],
    options: &CompactOptions,
    now: DateTime<Utc>,
) -> Result<(usize, usize)> {
    let part = Partition::new(lake, table, partition);
    // Another chunk of the same new version may be cutting rows here this
    // moment (it holds the lease for a second or so): wait for it, a while.
    // A compaction holds it longer: then fail, retryable.
    let started = std::time::Instant::now();
    let clock = || now + chrono::Duration::from_std(started.elapsed()).unwrap_or_default();
    let policy = crate::retry::Policy::lease(LEASE_WAIT);
    let Some(held) = part.wait_for_lease(options, clock, policy).await? else {
        return Err(Error::Unavailable(format!(
            "table '{}', partition {}: a compaction holds the partition; its replaced rows are removed on a retry",
            table.name, partition.path
        )));
    };
    let result = part.remove(files, options).await;
    let released = part.release_lease(held).await;
    let done = result?;
    released?;
    Ok(done)
}

impl Partition<'_> {
    /// Remove these chunk files' rows from the partition: a file still there
    /// is deleted; one merged into an output has its rows cut out of that
    /// output, which is written again without them (intent, new output,
    /// retire the old one, done: the same protocol as a merge). Returns the
    /// files deleted and the outputs rewritten.
    pub(super) async fn remove(
        &self,
        files: &[String],
        options: &CompactOptions,
    ) -> Result<(usize, usize)> {
        self.recover().await?;
        let present: std::collections::HashSet<String> =
            self.files().await?.into_iter().map(|f| f.path).collect();
        let (direct, merged): (Vec<String>, Vec<String>) =
            files.iter().cloned().partition(|f| present.contains(f));
        self.retire(&direct).await?;
        let mut rewritten = 0;
        if merged.is_empty() {
            return Ok((direct.len(), 0));
        }
        // The finished merges whose outputs are still there hold the rest.
        for (_, intent) in self.intents().await? {
            if intent.state != IntentState::Done || !present.contains(&intent.output) {
                continue;
            }
            let Some(parts) = &intent.parts else {
                if let Some(f) = merged.iter().find(|f| intent.inputs.contains(f)) {
                    return Err(Error::Catalog(format!(
                        "cannot remove the rows of {f}: it was merged into {} before compactions kept which rows came from which file",
                        intent.output
                    )));
                }
                continue;
            };
            if !parts.iter().any(|p| merged.contains(&p.file)) {
                continue;
            }
            self.cut(&intent, parts, &merged, options).await?;
            rewritten += 1;
        }
        Ok((direct.len(), rewritten))
    }

    /// Write `intent`'s output again without the rows of `drop`.
    pub(super) async fn cut(
        &self,
        old: &Intent,
        parts: &[PartRows],
        drop: &[String],
        options: &CompactOptions,
    ) -> Result<()> {
        let CutPlan {
            ranges,
            kept,
            id,
            rows: at,
        } = plan_cut(&old.output, parts, drop);
        let inputs = vec![old.output.clone()];
        let (output, intent_path, mut intent) = self.intend(&id, inputs, Some(kept)).await?;
        let (rows, bytes) =
            write_without(self.lake, &old.output, &ranges, &output, options).await?;
        self.retire(&intent.inputs).await?;
        intent.state = IntentState::Done;
        intent.rows = Some(rows);
        intent.bytes = Some(bytes);
        self.put_json(&intent_path, &intent).await?;
        info!(from = %old.output, to = %output, rows_removed = at - rows, "cut a replaced source's rows out of a compacted file");
        Ok(())
    }
}

/// Write `input` again as `output` without the rows in `ranges` (row
/// numbers of the file), re-encoded; (rows kept, bytes written).
pub async fn write_without(
    lake: &Location,
    input: &str,
    ranges: &[std::ops::Range<u64>],
    output: &str,
    options: &CompactOptions,
) -> Result<(u64, u64)> {
    let url = format!("{}/{input}", lake.url);
    let bytes = lake
        .store
        .get(&lake.child(input)?)
        .await
        .map_err(|e| Error::read(&url, e))?
        .bytes()
        .await
        .map_err(|e| Error::read(&url, e))?;
    let (sink, upload) = UploadSink::start(lake.store.clone(), lake.child(output)?);
    let props = options.writer.clone();
    let ranges = ranges.to_vec();
    let out_url = format!("{}/{output}", lake.url);
    let work = tokio::task::spawn_blocking(move || -> Result<(u64, u64)> {
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .and_then(|b| b.build())
            .map_err(|e| Error::read(&url, e))?;
        let schema = arrow::array::RecordBatchReader::schema(&reader);
        let mut writer = ArrowWriter::try_new(sink, schema, Some(props))
            .map_err(|e| Error::write(&out_url, e))?;
        let (mut row, mut kept) = (0u64, 0u64);
        for batch in reader {
            let batch = batch.map_err(|e| Error::read(&url, e))?;
            let keep: arrow::array::BooleanArray = (0..batch.num_rows() as u64)
                .map(|i| Some(!ranges.iter().any(|r| r.contains(&(row + i)))))
                .collect();
            row += batch.num_rows() as u64;
            let batch = arrow::compute::filter_record_batch(&batch, &keep)
                .map_err(|e| Error::read(&url, e))?;
            kept += batch.num_rows() as u64;
            writer
                .write(&batch)
                .map_err(|e| Error::write(&out_url, e))?;
        }
        let sink = writer.into_inner().map_err(|e| Error::write(&out_url, e))?;
        let bytes = sink.finish().map_err(|e| Error::write(&out_url, e))?;
        Ok((kept, bytes))
    });
    let outcome = match work.await {
        Ok(r) => r,
        Err(e) => Err(Error::write(
            output,
            format!("the rewrite task failed: {e}"),
        )),
    };
    let uploaded = upload
        .await
        .map_err(|e| Error::write(output, format!("the upload task failed: {e}")));
    let done = outcome?;
    uploaded??;
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(file: &str, rows: u64) -> PartRows {
        PartRows {
            file: file.into(),
            rows,
        }
    }

    #[test]
    fn a_cut_leaves_out_exactly_the_dropped_parts_rows_and_is_named_by_them() {
        let parts = [part("a", 3), part("b", 2), part("c", 4), part("d", 1)];
        let plan = plan_cut("m1.parquet", &parts, &["b".into(), "d".into()]);
        assert_eq!(plan.ranges, vec![3..5, 9..10]);
        assert_eq!(plan.kept, vec![part("a", 3), part("c", 4)]);
        assert_eq!(plan.rows, 10);
        // The same cut is the same file; another cut, or another merged
        // file, another.
        let again = plan_cut("m1.parquet", &parts, &["b".into(), "d".into()]);
        assert_eq!(plan.id, again.id);
        assert_ne!(plan.id, plan_cut("m1.parquet", &parts, &["b".into()]).id);
        assert_ne!(
            plan.id,
            plan_cut("m2.parquet", &parts, &["b".into(), "d".into()]).id
        );
        let none = plan_cut("m1.parquet", &parts, &[]);
        assert!(none.ranges.is_empty() && none.kept.len() == 4);
    }
}
