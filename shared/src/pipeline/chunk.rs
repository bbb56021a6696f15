//! One chunk, start to end: read, transform, partition, write, quarantine,
//! commit record, and the sink's stage. It knows the sink it is handed, not
//! the table's format or the entry point it serves.

use super::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::array::RecordBatch;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::StreamExt;
use object_store::{ObjectStoreExt, PutPayload};
use tokio::sync::mpsc;

use crate::commit::{CommitRecord, chunk_id, schema_fingerprint};
use serde::{Deserialize, Serialize};

use crate::config::{Column, ColumnType, Table, UnknownFields};
use crate::error::{Error, Result};
use crate::partition::{RefusedSlice, Splitter};
use crate::plan::Chunk;
use crate::read::{
    MAX_EVOLVED_COLUMNS, QuarantineEntry, ReadOptions, SourceObject, read_chunk, too_many_rejected,
    type_name,
};
use crate::store::Location;
use crate::write::ChunkWriter;

use crate::layout::{QUARANTINE_DIR, SCHEMAS_DIR};

/// Live counters, for progress reporting while a run goes on.
#[derive(Debug, Default)]
pub struct Counters {
    pub bytes_in: AtomicU64,
    pub rows_in: AtomicU64,
    pub rows_out: AtomicU64,
    pub rows_rejected: AtomicU64,
    /// Values dropped or nulled by a table's contract.
    pub values_discarded: AtomicU64,
    pub chunks_done: AtomicU64,
    /// Chunks found already committed, so not processed again.
    pub chunks_skipped: AtomicU64,
    /// Chunks of older versions of a source retired (their rows removed).
    pub chunks_replaced: AtomicU64,
    pub chunks_total: AtomicU64,
    pub bytes_total: AtomicU64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct EvolvedColumns {
    pub(super) columns: Vec<EvolvedColumn>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct EvolvedColumn {
    pub(super) name: String,
    #[serde(rename = "type")]
    pub(super) ty: String,
}

/// The columns `table` gained by evolution (`unknown_fields = "evolve"`), in
/// the order they were added; those the config now declares are left out.
pub async fn evolved_columns(lake: &Location, table: &Table) -> Result<Vec<Column>> {
    let path = lake.child(&format!("{SCHEMAS_DIR}/{}.json", table.name))?;
    let Some(file) = lake.get_json::<EvolvedColumns>(&path).await? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for c in file.columns {
        let ty = ColumnType::parse(&c.ty).ok_or_else(|| {
            Error::Catalog(format!(
                "table '{}': {} gives column '{}' the unknown type {:?}",
                table.name,
                lake.url_of(&path),
                c.name,
                c.ty
            ))
        })?;
        if !table.columns.iter().any(|d| d.name == c.name) {
            out.push(Column { name: c.name, ty });
        }
    }
    Ok(out)
}

/// Add `found` to the table's evolved columns (a column already there keeps
/// its type: the first chunk to add it decides); the columns after.
pub(super) async fn add_evolved_columns(
    lake: &Location,
    table: &Table,
    found: &[Column],
) -> Result<Vec<Column>> {
    let mut columns = evolved_columns(lake, table).await?;
    for c in found {
        if !columns.iter().any(|e| e.name == c.name)
            && !table.columns.iter().any(|d| d.name == c.name)
            && columns.len() < MAX_EVOLVED_COLUMNS
        {
            tracing::info!(table = %table.name, column = %c.name, ty = %type_name(c.ty), "the table gains a column");
            columns.push(c.clone());
        }
    }
    let file = EvolvedColumns {
        columns: columns
            .iter()
            .map(|c| EvolvedColumn {
                name: c.name.clone(),
                ty: type_name(c.ty),
            })
            .collect(),
    };
    let path = lake.child(&format!("{SCHEMAS_DIR}/{}.json", table.name))?;
    lake.put_json(&path, &file).await?;
    Ok(columns)
}

/// One unit of work: a chunk of an object of a table.
#[derive(Debug, Clone)]
pub struct ChunkTask {
    pub table: String,
    pub object: SourceObject,
    pub chunk: Chunk,
    /// How many chunks the object was cut into.
    pub chunks: usize,
    /// For a batch of stream records: where each record starts in the
    /// object, and the records that could not even be decoded.
    pub stream: Option<Arc<crate::read::RecordIndex>>,
}

impl ChunkTask {
    /// Where the chunk comes from, for its table's sink.
    pub fn origin(&self) -> crate::sink::Origin {
        match self.stream {
            Some(_) => crate::sink::Origin::Stream,
            None => crate::sink::Origin::File {
                chunks: self.chunks,
            },
        }
    }
}

/// Process one chunk: read, transform, split, write its files, then its
/// commit record, then hand it to its table's sink to stage
/// ([`crate::sink::TableSink::stage`]; a Delta sink stages before the
/// commit record instead); the table's committer publishes it
/// later (the run's committer, or the catalog function in AWS). Retrying a chunk that failed
/// before its commit record writes the same file names with the same
/// content; a chunk whose commit record exists is done and is not processed
/// again (its files may have been merged by compaction since: writing them
/// again would double its rows).
pub async fn process_chunk(
    engine: &Engine,
    lake: &Location,
    task: &ChunkTask,
    options: &ReadOptions,
    counters: &Arc<Counters>,
) -> Result<CommitRecord> {
    let prepared = engine
        .table(&task.table)
        .ok_or_else(|| Error::Event(format!("no table '{}' in the pipeline", task.table)))?;
    let source = task.object.source_info();
    let id = chunk_id(&source, &task.chunk);
    let record = match already_committed(lake, &prepared.table, &id).await? {
        Some(record) => {
            counters.chunks_skipped.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                object = %source.url,
                chunk = task.chunk.index,
                "already committed: not processed again"
            );
            record
        }
        None => {
            let job = ChunkJob {
                lake,
                task,
                options,
                counters,
                id: &id,
            };
            let (current, mut output) = read_with_evolution(prepared, job).await?;
            if let Some(index) = &task.stream {
                index.attribute(&mut output.stats);
            }
            let rejected = check_rejected(lake, task, &current.table, &id, &mut output).await?;
            counters
                .rows_rejected
                .fetch_add(rejected.len() as u64, Ordering::Relaxed);
            counters
                .values_discarded
                .fetch_add(output.stats.values_discarded, Ordering::Relaxed);
            let quarantine = match write_quarantine(lake, &current.table.name, &id, &rejected).await
            {
                Ok(q) => q,
                Err(e) => {
                    let paths = output.files.iter().map(|f| f.path.clone()).collect();
                    abandon(lake, &id, &current.table.name, paths).await;
                    return Err(e);
                }
            };
            let record = CommitRecord {
                version: 1,
                table: current.table.name.clone(),
                source,
                chunk: task.chunk,
                chunk_id: id.clone(),
                schema_fingerprint: schema_fingerprint(&current.columns, &current.partition_keys),
                columns: current.columns.clone(),
                partition_keys: current.partition_keys.clone(),
                files: output.files,
                rows_in: output.stats.rows,
                rows_out: output.rows_out,
                rows_rejected: rejected.len() as u64,
                values_discarded: output.stats.values_discarded,
                bytes_in: output.stats.bytes,
                quarantine,
                compression: Some(codec_name(current.table.parquet.compression).to_string()),
                tombstones: output.stats.tombstones,
            };
            let sink = engine.sink(&task.table);
            if sink.stages_first() {
                let staged = sink.stage(lake, &record, task.origin()).await?;
                counters
                    .chunks_replaced
                    .fetch_add(staged.chunks_retired, Ordering::Relaxed);
            }
            if let Err(e) = commit(lake, &record).await {
                // A retry may not be this chunk again (a stream batch cut
                // otherwise): its files must not stay without a record
                // (nor where the quarantine step failed, above).
                let paths = record.files.iter().map(|f| f.path.clone()).collect();
                abandon(lake, &id, &record.table, paths).await;
                return Err(e);
            }
            if sink.stages_first() {
                return Ok(record);
            }
            record
        }
    };
    let staged = engine
        .sink(&task.table)
        .stage(lake, &record, task.origin())
        .await?;
    counters
        .chunks_replaced
        .fetch_add(staged.chunks_retired, Ordering::Relaxed);
    Ok(record)
}

/// The commit record of chunk `id` of `table`, if the chunk is committed.
pub(super) async fn already_committed(
    lake: &Location,
    table: &Table,
    id: &str,
) -> Result<Option<CommitRecord>> {
    let path = lake.child(&CommitRecord::path(&table.name, id))?;
    match lake.get_bytes(&path).await? {
        Some(bytes) => Ok(Some(CommitRecord::from_json(&bytes, &lake.url_of(&path))?)),
        None => Ok(None),
    }
}

/// Read, transform and write the chunk. Under `unknown_fields = "evolve"`, a
/// chunk that finds fields the table lacks adds them to the table's evolved
/// columns and is read again with them (its first read's files are
/// removed): once per new field. Returns the table as it was written (with
/// its evolved columns) and what was written.
pub(super) async fn read_with_evolution(
    prepared: &PreparedTable,
    job: ChunkJob<'_>,
) -> Result<(PreparedTable, ChunkOutput)> {
    let ChunkJob { lake, task, .. } = job;
    let table = &prepared.table;
    let mut evolved = if table.contract.unknown_fields == UnknownFields::Evolve {
        evolved_columns(lake, table).await?
    } else {
        Vec::new()
    };
    let mut rounds = 0;
    loop {
        let current = if evolved.is_empty() {
            prepared.clone()
        } else {
            let mut t = table.clone();
            t.columns.extend(evolved.iter().cloned());
            PreparedTable::new(&t, prepared.transform.lookups()).await?
        };
        let mut read = *job.options;
        read.evolve_room = MAX_EVOLVED_COLUMNS.saturating_sub(evolved.len());
        let output = write_chunk(
            &current,
            ChunkJob {
                options: &read,
                ..job
            },
        )
        .await?;
        if output.stats.discovered.is_empty() {
            return Ok((current, output));
        }
        rounds += 1;
        if rounds > 2 {
            return Err(Error::read(
                &task.object.url,
                format!(
                    "table '{}': still finding new fields after {rounds} reads: {:?}",
                    table.name, output.stats.discovered
                ),
            ));
        }
        evolved = add_evolved_columns(lake, table, &output.stats.discovered).await?;
    }
}

/// Every record the chunk rejected (at reading, and rows refused after the
/// transform), or the error that fails the chunk when they are too many (its
/// files are then removed).
pub(super) async fn check_rejected(
    lake: &Location,
    task: &ChunkTask,
    table: &Table,
    id: &str,
    output: &mut ChunkOutput,
) -> Result<Vec<QuarantineEntry>> {
    let mut rejected = std::mem::take(&mut output.stats.rejected);
    rejected.append(&mut output.refused);
    if let Some(e) = too_many_rejected(table, &task.object.url, &rejected, output.stats.rows, true)
    {
        let paths = output.files.iter().map(|f| f.path.clone()).collect();
        abandon(lake, id, &table.name, paths).await;
        return Err(e);
    }
    Ok(rejected)
}

/// Write the rejected records to `_quarantine/<table>/<chunk id>.jsonl`, one
/// JSON entry a line; returns the path relative to the lake, if any.
pub(super) async fn write_quarantine(
    lake: &Location,
    table: &str,
    id: &str,
    rejected: &[QuarantineEntry],
) -> Result<Option<String>> {
    if rejected.is_empty() {
        return Ok(None);
    }
    let relative = format!("{QUARANTINE_DIR}/{table}/{id}.jsonl");
    let mut body = Vec::new();
    for entry in rejected {
        serde_json::to_writer(&mut body, entry).expect("entries serialize");
        body.push(b'\n');
    }
    let path = lake.child(&relative)?;
    lake.store
        .put(&path, PutPayload::from(body))
        .await
        .map_err(|e| Error::write(lake.url_of(&path), e))?;
    Ok(Some(relative))
}

/// Write the chunk's commit record, after removing what an earlier run of the
/// same chunk wrote and this one did not (it may have rolled files
/// differently, or quarantined records this one did not).
pub(super) async fn commit(lake: &Location, record: &CommitRecord) -> Result<()> {
    let commit_path = lake.child(&CommitRecord::path(&record.table, &record.chunk_id))?;
    if let Ok(Some(bytes)) = lake.get_bytes(&commit_path).await
        && let Ok(old) = CommitRecord::from_json(&bytes, commit_path.as_ref())
    {
        for f in old.files {
            if !record.files.iter().any(|n| n.path == f.path) {
                let _ = lake.store.delete(&lake.child(&f.path)?).await;
            }
        }
        if let Some(q) = old.quarantine
            && record.quarantine.is_none()
        {
            let _ = lake.store.delete(&lake.child(&q)?).await;
        }
    }
    lake.store
        .put(&commit_path, PutPayload::from(record.to_json()))
        .await
        .map_err(|e| Error::write(lake.url_of(&commit_path), e))?;
    Ok(())
}

/// What one read of a chunk wrote.
pub(super) struct ChunkOutput {
    pub(super) stats: crate::read::ReadStats,
    pub(super) rows_out: u64,
    pub(super) files: Vec<crate::commit::FileInfo>,
    /// Rows refused after the transform (a partition value that cannot be a path).
    pub(super) refused: Vec<QuarantineEntry>,
}

/// Remove files a chunk wrote but will not commit, unless the chunk is
/// committed by now: another delivery of the same chunk (a duplicate SQS
/// message, a retry that overlapped a slow first try) wrote the same names
/// and committed them, and they are no longer this run's to remove.
pub(super) async fn abandon(lake: &Location, id: &str, table: &str, paths: Vec<String>) {
    if let Ok(commit) = lake.child(&CommitRecord::path(table, id))
        && lake.store.head(&commit).await.is_ok()
    {
        tracing::warn!(
            chunk = id,
            "the chunk was committed by another delivery: its files stay"
        );
        return;
    }
    for path in paths {
        if let Ok(p) = lake.child(&path) {
            let _ = lake.store.delete(&p).await;
        }
    }
}

/// Read, transform, split and write one chunk with `prepared`'s schema.
/// When the read found fields to evolve, nothing is kept (the files are
/// removed) and the stats say which.
/// The chunk's reader, as a task of its own, and the stream of its batches
/// (counted into `counters` as they pass).
fn spawn_reader(
    table: &Table,
    task: &ChunkTask,
    options: &ReadOptions,
    counters: &Arc<Counters>,
) -> (
    tokio::task::JoinHandle<Result<crate::read::ReadStats>>,
    datafusion::execution::SendableRecordBatchStream,
) {
    let (tx, mut rx) =
        mpsc::channel::<std::result::Result<RecordBatch, datafusion::error::DataFusionError>>(4);
    let reader = {
        let (table, object, chunk, options) =
            (table.clone(), task.object.clone(), task.chunk, *options);
        let counters = counters.clone();
        tokio::spawn(async move {
            let bytes = Some(&counters.bytes_in);
            let r = read_chunk(&table, &object, chunk, options, &tx, bytes).await;
            if let Err(e) = &r {
                let _ = tx
                    .send(Err(datafusion::error::DataFusionError::External(
                        e.to_string().into(),
                    )))
                    .await;
            }
            r
        })
    };
    let live = counters.clone();
    let input = futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).inspect(move |b| {
        if let Ok(b) = b {
            live.rows_in
                .fetch_add(b.num_rows() as u64, Ordering::Relaxed);
        }
    });
    (
        reader,
        Box::pin(RecordBatchStreamAdapter::new(table.input_schema(), input)),
    )
}

/// One chunk's read, transform and write, as [`process_chunk`] hands it on.
#[derive(Clone, Copy)]
pub(super) struct ChunkJob<'a> {
    lake: &'a Location,
    task: &'a ChunkTask,
    options: &'a ReadOptions,
    counters: &'a Arc<Counters>,
    /// The chunk's id: its files' names.
    id: &'a str,
}

pub(super) async fn write_chunk(
    prepared: &PreparedTable,
    job: ChunkJob<'_>,
) -> Result<ChunkOutput> {
    let ChunkJob {
        lake,
        task,
        options,
        counters,
        id,
    } = job;
    let table = &prepared.table;
    let (folder, partition_by) = table.chunk_destination();
    let splitter = Splitter::new(prepared.transform.output_schema(), &partition_by)?;
    // Reader task → channel → DataFusion → splitter → writers.
    let (reader, input) = spawn_reader(table, task, options, counters);
    let mut writer = ChunkWriter::new(
        lake,
        &folder,
        id,
        &partition_by,
        splitter.data_schema().clone(),
        &table.parquet,
    );
    let mut refused = Vec::new();
    let written: Result<u64> = async {
        let mut output = prepared.transform.run(input).await?;
        let mut rows_out = 0u64;
        while let Some(batch) = output.next().await {
            let batch = batch.map_err(|e| Error::transform(&table.name, e))?;
            writer.sample(&batch);
            let split = splitter.split_checked(&batch)?;
            for slice in split.slices {
                rows_out += slice.batch.num_rows() as u64;
                counters
                    .rows_out
                    .fetch_add(slice.batch.num_rows() as u64, Ordering::Relaxed);
                writer.write(slice).await?;
            }
            for r in split.refused {
                refused.extend(refused_entries(table, &task.object, &r)?);
            }
            writer.end_batch().await?;
        }
        Ok(rows_out)
    }
    .await;
    let read = reader
        .await
        .map_err(|e| Error::read(&task.object.url, format!("reader task failed: {e}")))?;
    match (read, written) {
        (Err(e), _) | (Ok(_), Err(e)) => {
            // Files already closed by this chunk have no commit record; remove them.
            abandon(lake, id, &table.name, writer.started()).await;
            Err(e)
        }
        (Ok(stats), Ok(_)) if !stats.discovered.is_empty() => {
            abandon(lake, id, &table.name, writer.started()).await;
            Ok(ChunkOutput {
                stats,
                rows_out: 0,
                files: Vec::new(),
                refused: Vec::new(),
            })
        }
        (Ok(stats), Ok(rows_out)) => {
            let started = writer.started();
            let files = match writer.finish().await {
                Ok(files) => files,
                Err(e) => {
                    abandon(lake, id, &table.name, started).await;
                    return Err(e);
                }
            };
            Ok(ChunkOutput {
                stats,
                rows_out,
                files,
                refused,
            })
        }
    }
}

/// Quarantine entries for rows refused after the transform: each row as JSON.
pub(super) fn refused_entries(
    table: &Table,
    object: &SourceObject,
    refused: &RefusedSlice,
) -> Result<Vec<QuarantineEntry>> {
    let mut buf = Vec::new();
    {
        let mut w = arrow::json::LineDelimitedWriter::new(&mut buf);
        w.write(&refused.batch)
            .map_err(|e| Error::transform(&table.name, e))?;
        w.finish().map_err(|e| Error::transform(&table.name, e))?;
    }
    Ok(String::from_utf8_lossy(&buf)
        .lines()
        .map(|row| QuarantineEntry {
            table: table.name.clone(),
            source: object.url.clone(),
            e_tag: object.e_tag.clone(),
            offset: None,
            reason: refused.reason.clone(),
            raw: row.to_string(),
            record: None,
        })
        .collect())
}

/// The name readers use for a Parquet codec (`zstd`, `snappy`, `uncompressed`).
pub(super) fn codec_name(c: parquet::basic::Compression) -> &'static str {
    use parquet::basic::Compression as C;
    match c {
        C::UNCOMPRESSED => "uncompressed",
        C::SNAPPY => "snappy",
        C::GZIP(_) => "gzip",
        C::LZO => "lzo",
        C::BROTLI(_) => "brotli",
        C::LZ4 => "lz4",
        C::ZSTD(_) => "zstd",
        C::LZ4_RAW => "lz4_raw",
    }
}
