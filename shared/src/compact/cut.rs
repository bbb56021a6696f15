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
use crate::write::compaction_output_name;

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
    let mut attempt = 0;
    loop {
        let at = now + chrono::Duration::from_std(started.elapsed()).unwrap_or_default();
        if part.take_lease(options, at).await? {
            break;
        }
        attempt += 1;
        if started.elapsed() >= LEASE_WAIT {
            return Err(Error::Unavailable(format!(
                "table '{}', partition {}: a compaction holds the partition; its replaced rows are removed on a retry",
                table.name, partition.path
            )));
        }
        tokio::time::sleep(crate::retry::backoff(attempt)).await;
    }
    let result = part.remove(files, options).await;
    let released = part.release_lease().await;
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
        let mut h = Sha256::new();
        h.update(old.output.as_bytes());
        for d in drop {
            h.update([0]);
            h.update(d.as_bytes());
        }
        let id = hex::encode(&h.finalize()[..12]);
        let output = compaction_output_name(&self.folder, &id);
        let intent_path = format!("{}/m{id}.json", self.state_dir);
        let mut ranges = Vec::new();
        let mut kept = Vec::new();
        let mut at = 0u64;
        for p in parts {
            if drop.contains(&p.file) {
                ranges.push(at..at + p.rows);
            } else {
                kept.push(p.clone());
            }
            at += p.rows;
        }
        let mut intent = Intent {
            version: 1,
            table: self.table.name.clone(),
            partition: self.partition.path.clone(),
            inputs: vec![old.output.clone()],
            output: output.clone(),
            state: IntentState::Pending,
            rows: None,
            bytes: None,
            parts: Some(kept),
        };
        self.put_json(&intent_path, &intent).await?;
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

/// `input` without the rows in `ranges` (row numbers), re-encoded into `output`.
pub(super) async fn write_without(
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
