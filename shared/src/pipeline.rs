//! The local pipeline: discover → plan → (read → transform → partition →
//! write → commit → register) per chunk, with a bounded number of chunks in
//! flight. The Lambda functions run the same per-chunk step one at a time.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use arrow::array::RecordBatch;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::StreamExt;
use object_store::{ObjectStoreExt, PutPayload};
use tokio::sync::mpsc;

use crate::catalog::{Catalog, register_commit};
use crate::commit::{ColumnDef, CommitRecord, chunk_id, column_defs, schema_fingerprint};
use serde::{Deserialize, Serialize};

use crate::config::{
    Codec, Column, ColumnType, Format, Pipeline, Table, TableFormat, UnknownFields,
};
use crate::error::{Error, Result};
use crate::lookup::{self, Loaded, Sources};
use crate::partition::{RefusedSlice, Splitter};
use crate::plan::{Chunk, plan_parquet, plan_text};
use crate::read::{
    MAX_EVOLVED_COLUMNS, QuarantineEntry, ReadOptions, SourceObject, parquet_row_groups,
    read_chunk, too_many_rejected, type_name,
};
use crate::store::Location;
use crate::transform::Transform;
use crate::write::ChunkWriter;

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

/// Run settings.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Chunks processed at once.
    pub workers: usize,
    /// Chunk size in bytes.
    pub chunk_size: u64,
    pub read: ReadOptions,
    /// Stop starting chunks after the first failure (chunks already running
    /// still finish) and return that error. Off: every other chunk runs to its
    /// commit and the failures are listed in [`Summary::failed`].
    pub fail_fast: bool,
}

/// A file, or one chunk of it, that could not be loaded.
#[derive(Debug, Clone, PartialEq)]
pub struct FailedChunk {
    pub table: String,
    /// The source file's URL.
    pub file: String,
    /// The chunk's index, or `None` when the file could not even be cut into chunks.
    pub chunk: Option<u32>,
    /// The error, as one line (it names the file).
    pub error: String,
    /// Whether running again later can succeed (a storage or service failure).
    pub retryable: bool,
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub files_in: u64,
    pub bytes_in: u64,
    pub chunks: u64,
    pub rows_in: u64,
    pub rows_out: u64,
    pub rows_rejected: u64,
    /// Values dropped or nulled by a table's contract (unknown fields, wrong types).
    pub values_discarded: u64,
    pub partitions: u64,
    pub files_out: u64,
    pub bytes_out: u64,
    pub seconds: f64,
    /// Chunks found already committed (by an earlier run), so not processed again.
    pub chunks_skipped: u64,
    /// Chunks of older versions of a source whose rows were removed, a newer
    /// version of the source being complete.
    pub chunks_replaced: u64,
    /// Objects under the input that no table claims.
    pub unmatched: Vec<String>,
    /// Chunks (or whole files) that failed, in file and chunk order; every
    /// other chunk ran to its commit.
    pub failed: Vec<FailedChunk>,
    /// Delta commits written (Delta tables only: each holds a batch of chunks).
    pub delta_commits: u64,
    /// CDC: Kafka tombstones (null values after deletes) skipped.
    pub tombstones: u64,
    /// CDC: what the merges into change-data tables did.
    pub cdc: CdcSummary,
}

/// What CDC merges did, summed over tables and batches (a run's, or a
/// catalog function invocation's).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CdcSummary {
    /// Changes read from the staged files.
    pub changes: u64,
    /// Changes older than the row (or remembered delete) of their key: ignored.
    pub stale: u64,
    /// Rows inserted or replaced.
    pub upserted: u64,
    /// Deletes applied.
    pub deleted: u64,
    /// Table files read because their key ranges overlap a batch's keys.
    pub files_read: u64,
    /// Of those, files written again without their replaced or deleted rows.
    pub files_rewritten: u64,
}

impl CdcSummary {
    /// Count one merge in.
    #[cfg(feature = "delta")]
    pub fn add(&mut self, m: &crate::cdc::merge::Merged) {
        self.changes += m.changes;
        self.stale += m.stale;
        self.upserted += m.upserted;
        self.deleted += m.deleted;
        self.files_read += m.files_read as u64;
        self.files_rewritten += m.files_removed as u64;
    }
}

/// A table with its checked transform: everything needed to process its chunks.
#[derive(Debug, Clone)]
pub struct PreparedTable {
    pub table: Table,
    pub transform: Transform,
    /// Catalog columns of the data files (the output without the partition columns).
    pub columns: Vec<ColumnDef>,
    /// Catalog columns of the partition keys, in path order.
    pub partition_keys: Vec<ColumnDef>,
}

impl PreparedTable {
    /// Plan a table's transform and derive its catalog columns.
    pub async fn new(t: &Table, lookups: &[Arc<Loaded>]) -> Result<PreparedTable> {
        let transform = Transform::plan(t, lookups).await?;
        let out_schema = transform.output_schema();
        // A CDC table's chunks stage their changes unpartitioned; the merge
        // partitions the table's files.
        let (_, partition_by) = t.chunk_destination();
        let splitter = Splitter::new(out_schema, &partition_by)?;
        let columns = column_defs(&t.name, splitter.data_schema())?;
        let key_indices: Vec<usize> = partition_by
            .iter()
            .map(|k| out_schema.index_of(k).expect("checked by Transform::plan"))
            .collect();
        let keys_schema = out_schema
            .project(&key_indices)
            .map_err(|e| Error::transform(&t.name, e))?;
        let partition_keys = column_defs(&t.name, &keys_schema)?;
        if t.table_format == TableFormat::Delta {
            check_delta_types(&t.name, out_schema)?;
        }
        Ok(PreparedTable {
            table: t.clone(),
            transform,
            columns,
            partition_keys,
        })
    }
}

/// A Delta table's columns must hold what Delta's types say exactly:
/// timestamps are UTC microseconds, integers are signed.
fn check_delta_types(table: &str, schema: &arrow::datatypes::Schema) -> Result<()> {
    use arrow::datatypes::{DataType as D, TimeUnit};
    for f in schema.fields() {
        let exact = match f.data_type() {
            D::Timestamp(TimeUnit::Microsecond, Some(tz)) => {
                matches!(tz.as_ref(), "UTC" | "+00:00" | "Z")
            }
            D::Timestamp(_, _) => false,
            D::UInt8 | D::UInt16 | D::UInt32 | D::UInt64 => false,
            _ => true,
        };
        if !exact {
            return Err(Error::transform(
                table,
                format!(
                    "column '{}' has type {}, which a Delta table cannot hold as it is (Delta timestamps are UTC microseconds, its integers signed); cast it in the sql, e.g. arrow_cast(x, 'Timestamp(Microsecond, Some(\"UTC\"))') or CAST(x AS BIGINT)",
                    f.name(),
                    f.data_type()
                ),
            ));
        }
    }
    Ok(())
}

use crate::layout::{QUARANTINE_DIR, SCHEMAS_DIR};

#[derive(Debug, Default, Serialize, Deserialize)]
struct EvolvedColumns {
    columns: Vec<EvolvedColumn>,
}

#[derive(Debug, Serialize, Deserialize)]
struct EvolvedColumn {
    name: String,
    #[serde(rename = "type")]
    ty: String,
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
async fn add_evolved_columns(
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

/// The pipeline, with its lookups read and every table's SQL checked.
#[derive(Debug, Clone)]
pub struct Engine {
    pub pipeline: Pipeline,
    pub tables: Vec<PreparedTable>,
    /// The pipeline's lookups as read (rows, or only schemas).
    pub lookups: Vec<Arc<Loaded>>,
    /// Whether the lookups hold their rows (a process that transforms).
    lookup_rows: bool,
}

impl Engine {
    /// Check every table's transform before reading anything; for a
    /// pipeline without `[[lookups]]` (see [`Engine::load`]).
    pub async fn new(pipeline: Pipeline) -> Result<Engine> {
        if let Some(l) = pipeline.lookups.first() {
            return Err(Error::Config(format!(
                "lookup '{}': the pipeline's lookups must be read before its tables are planned (Engine::load)",
                l.name
            )));
        }
        Engine::plan(pipeline, Vec::new(), false).await
    }

    /// The pipeline alone, no table planned and no lookup read: for a
    /// process that matches files to tables and commits, but never
    /// transforms ([`Engine::table`] finds no table in it).
    pub fn unplanned(pipeline: Pipeline) -> Engine {
        Engine {
            pipeline,
            tables: Vec::new(),
            lookups: Vec::new(),
            lookup_rows: false,
        }
    }

    /// Read the pipeline's lookups (their rows if `rows`, else only their
    /// schemas: enough to plan, for functions that never transform), then
    /// check every table's transform. A lookup that cannot be read or is
    /// larger than its `max_size` fails here, before any chunk starts.
    pub async fn load(pipeline: Pipeline, sources: Sources<'_>, rows: bool) -> Result<Engine> {
        let mut lookups = Vec::new();
        for l in &pipeline.lookups {
            lookups.push(Arc::new(lookup::load(l, sources, rows).await?));
        }
        Engine::plan(pipeline, lookups, rows).await
    }

    async fn plan(
        pipeline: Pipeline,
        lookups: Vec<Arc<Loaded>>,
        lookup_rows: bool,
    ) -> Result<Engine> {
        let mut tables = Vec::new();
        for t in &pipeline.tables {
            if t.table_format == TableFormat::Delta && !cfg!(feature = "delta") {
                return Err(Error::config(
                    Some(&t.name),
                    "table_format",
                    "\"delta\": this build of sluice has no Delta support (the engine's `delta` feature)",
                ));
            }
            tables.push(PreparedTable::new(t, &lookups).await?);
        }
        Ok(Engine {
            pipeline,
            tables,
            lookups,
            lookup_rows,
        })
    }

    /// The engine with every lookup whose source changed read again (each
    /// source asked at most every `refresh`), or `None` if none changed.
    /// Called between chunks, so a chunk sees one version of each lookup.
    pub async fn refreshed(&self, sources: Sources<'_>) -> Result<Option<Engine>> {
        let mut changed = false;
        let mut lookups = Vec::with_capacity(self.lookups.len());
        for l in &self.lookups {
            // A source that cannot be asked (a network fault) keeps the rows
            // read before, until the next check; one that changed and cannot
            // be read fails the chunk, naming the lookup.
            let source_changed = l.changed(sources).await.unwrap_or_else(|e| {
                tracing::warn!(lookup = %l.lookup.name, error = %e, "cannot tell whether the lookup changed; keeping the rows read before");
                false
            });
            if source_changed {
                tracing::info!(lookup = %l.lookup.name, "lookup changed; reading it again");
                lookups.push(Arc::new(
                    lookup::load(&l.lookup, sources, self.lookup_rows).await?,
                ));
                changed = true;
            } else {
                lookups.push(l.clone());
            }
        }
        if !changed {
            return Ok(None);
        }
        Engine::plan(self.pipeline.clone(), lookups, self.lookup_rows)
            .await
            .map(Some)
    }

    /// The prepared table named `name`.
    pub fn table(&self, name: &str) -> Option<&PreparedTable> {
        self.tables.iter().find(|t| t.table.name == name)
    }
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

/// Whether a path (relative to the input root) is hidden: a segment starting
/// with `.` or `_` (`_SUCCESS`, `.tmp/`), as Hive and Spark treat them.
pub fn hidden(relative: &str) -> bool {
    relative
        .split('/')
        .any(|seg| seg.starts_with('.') || seg.starts_with('_'))
}

/// Find the objects under `input` and the table each belongs to.
pub async fn discover(
    engine: &Engine,
    input: &Location,
) -> Result<(Vec<(String, SourceObject)>, Vec<String>)> {
    let mut found = Vec::new();
    let mut unmatched = Vec::new();
    let prefix = if input.prefix.as_ref().is_empty() {
        None
    } else {
        Some(&input.prefix)
    };
    let mut listing = input.store.list(prefix);
    let mut seen = HashSet::new();
    while let Some(meta) = listing.next().await {
        let meta = meta.map_err(|e| Error::read(format!("{} (listing)", input.url), e))?;
        let relative = input.relative(&meta.location);
        if hidden(&relative) || !seen.insert(meta.location.clone()) {
            continue;
        }
        match engine.pipeline.table_for(&relative) {
            Some(t) => found.push((
                t.name.clone(),
                SourceObject {
                    store: input.store.clone(),
                    url: input.url_of(&meta.location),
                    path: meta.location,
                    size: meta.size,
                    e_tag: meta.e_tag,
                    version: meta.version,
                    modified: Some(crate::sources::timestamp(meta.last_modified)),
                },
            )),
            None => unmatched.push(relative),
        }
    }
    found.sort_by(|a, b| a.1.path.cmp(&b.1.path));
    unmatched.sort();
    Ok((found, unmatched))
}

/// Cut an object into chunk tasks.
pub async fn plan_object(
    table: &Table,
    object: &SourceObject,
    chunk_size: u64,
) -> Result<Vec<ChunkTask>> {
    let chunks = match table.format {
        Format::Parquet => {
            if object.size == 0 {
                Vec::new()
            } else {
                plan_parquet(&parquet_row_groups(object).await?, object.size, chunk_size)
            }
        }
        Format::JsonLines | Format::Csv => {
            let splittable = table.codec_for(object.path.as_ref()) == Codec::None
                && !(table.format == Format::Csv && table.csv.newlines_in_values);
            plan_text(object.size, chunk_size, splittable)
        }
    };
    let n = chunks.len();
    Ok(chunks
        .into_iter()
        .map(|chunk| ChunkTask {
            table: table.name.clone(),
            object: object.clone(),
            chunk,
            chunks: n,
            stream: None,
        })
        .collect())
}

/// Process one chunk: read, transform, split, write its files, then its
/// commit record, then (given a catalog) register it; a Delta table's chunk
/// is recorded in its source's ledger for the table's committer instead
/// (`delta::commit_batch`), which makes it visible. In AWS the catalog
/// function registers commit records instead. Retrying a chunk that failed
/// before its commit record writes the same file names with the same
/// content; a chunk whose commit record exists is done and is not processed
/// again (its files may have been merged by compaction since: writing them
/// again would double its rows).
pub async fn process_chunk(
    engine: &Engine,
    lake: &Location,
    catalog: Option<&dyn Catalog>,
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
            let (current, mut output) =
                read_with_evolution(prepared, lake, task, options, counters, &id).await?;
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
            if let Err(e) = commit(lake, &record).await {
                // A retry may not be this chunk again (a stream batch cut
                // otherwise): its files must not stay without a record
                // (nor where the quarantine step failed, above).
                let paths = record.files.iter().map(|f| f.path.clone()).collect();
                abandon(lake, &id, &record.table, paths).await;
                return Err(e);
            }
            record
        }
    };
    if prepared.table.cdc.is_some() {
        // The table's committer merges the staged changes.
        return Ok(record);
    }
    if prepared.table.table_format == TableFormat::Delta {
        // The table's committer makes the chunk visible (and settles a
        // replaced version in the same Delta commit).
        crate::sources::record_chunk(lake, &record, task.chunks).await?;
        return Ok(record);
    }
    if task.stream.is_none() {
        // A stream batch is its own source (named by its first and last
        // record) and never has a newer version to replace it: its ledger
        // entry would cost a PUT and a LIST a batch for nothing.
        settle(lake, &record, task.chunks, counters).await?;
    }
    if let Some(catalog) = catalog {
        register_commit(catalog, &record).await?;
    }
    Ok(record)
}

/// The commit record of chunk `id` of `table`, if the chunk is committed.
async fn already_committed(
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
async fn read_with_evolution(
    prepared: &PreparedTable,
    lake: &Location,
    task: &ChunkTask,
    options: &ReadOptions,
    counters: &Arc<Counters>,
    id: &str,
) -> Result<(PreparedTable, ChunkOutput)> {
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
        let mut read = *options;
        read.evolve_room = MAX_EVOLVED_COLUMNS.saturating_sub(evolved.len());
        let output = write_chunk(&current, lake, task, &read, counters, id).await?;
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
async fn check_rejected(
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
async fn write_quarantine(
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
async fn commit(lake: &Location, record: &CommitRecord) -> Result<()> {
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

/// Record a committed chunk in its source's ledger, and retire the rows of
/// the source's older versions if a newer one is now complete.
async fn settle(
    lake: &Location,
    record: &CommitRecord,
    chunks: usize,
    counters: &Counters,
) -> Result<()> {
    let settled = crate::sources::record_and_settle(lake, record, chunks).await?;
    counters
        .chunks_replaced
        .fetch_add(settled.chunks_retired as u64, Ordering::Relaxed);
    Ok(())
}

/// What one read of a chunk wrote.
struct ChunkOutput {
    stats: crate::read::ReadStats,
    rows_out: u64,
    files: Vec<crate::commit::FileInfo>,
    /// Rows refused after the transform (a partition value that cannot be a path).
    refused: Vec<QuarantineEntry>,
}

/// Remove files a chunk wrote but will not commit, unless the chunk is
/// committed by now: another delivery of the same chunk (a duplicate SQS
/// message, a retry that overlapped a slow first try) wrote the same names
/// and committed them, and they are no longer this run's to remove.
async fn abandon(lake: &Location, id: &str, table: &str, paths: Vec<String>) {
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
async fn write_chunk(
    prepared: &PreparedTable,
    lake: &Location,
    task: &ChunkTask,
    options: &ReadOptions,
    counters: &Arc<Counters>,
    id: &str,
) -> Result<ChunkOutput> {
    let table = &prepared.table;
    let (folder, partition_by) = table.chunk_destination();
    let splitter = Splitter::new(prepared.transform.output_schema(), &partition_by)?;
    // Reader task → channel → DataFusion → splitter → writers.
    let (tx, mut rx) =
        mpsc::channel::<std::result::Result<RecordBatch, datafusion::error::DataFusionError>>(4);
    let reader = {
        let table = table.clone();
        let object = task.object.clone();
        let chunk = task.chunk;
        let options = *options;
        let counters = counters.clone();
        tokio::spawn(async move {
            let r = read_chunk(
                &table,
                &object,
                chunk,
                options,
                &tx,
                Some(&counters.bytes_in),
            )
            .await;
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
    let input = Box::pin(RecordBatchStreamAdapter::new(table.input_schema(), input));
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
fn refused_entries(
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

/// Run the whole pipeline over `input` into `lake`.
///
/// Each chunk runs as its own task, so `options.workers` chunks really run on
/// that many threads (polled together inside one task, the transform and
/// writing of every chunk would share one thread).
pub async fn run(
    engine: &Arc<Engine>,
    input: &Location,
    lake: &Location,
    catalog: &Arc<dyn Catalog>,
    options: &RunOptions,
    counters: &Arc<Counters>,
) -> Result<Summary> {
    let started = Instant::now();
    let (objects, unmatched) = discover(engine, input).await?;
    let mut tasks = Vec::new();
    let mut summary = Summary {
        files_in: objects.len() as u64,
        unmatched,
        ..Default::default()
    };
    for (table, object) in &objects {
        let table = &engine.table(table).expect("discovered for a table").table;
        summary.bytes_in += object.size;
        match plan_object(table, object, options.chunk_size).await {
            Ok(planned) => tasks.extend(planned),
            Err(e) if options.fail_fast => return Err(e),
            Err(e) => summary.failed.push(FailedChunk {
                table: table.name.clone(),
                file: object.url.clone(),
                chunk: None,
                error: crate::error::describe(&e),
                retryable: e.is_retryable(),
            }),
        }
    }
    counters
        .chunks_total
        .store(tasks.len() as u64, Ordering::Relaxed);
    counters
        .bytes_total
        .store(summary.bytes_in, Ordering::Relaxed);
    summary.chunks = tasks.len() as u64;
    // Delta tables: one committer for the run turns finished chunks into
    // Delta commits, a batch at a time (whatever finished while the last
    // commit was being written), so small chunks do not cost a log entry each.
    let (finished, committer) = delta_committer(engine, lake, catalog);
    // Every chunk is its own task and runs to its end: a failure never
    // cancels another chunk half way (that left a random share of the good
    // files' rows behind). Under `fail_fast` no chunk is started after the
    // first failure.
    let stop = Arc::new(AtomicBool::new(false));
    let outcomes: Vec<(ChunkTask, Result<CommitRecord>)> = futures::stream::iter(tasks)
        .take_while(|_| futures::future::ready(!(options.fail_fast && stop.load(Ordering::SeqCst))))
        .map(|task| {
            let (engine, lake, catalog, counters, stop, finished) = (
                engine.clone(),
                lake.clone(),
                catalog.clone(),
                counters.clone(),
                stop.clone(),
                finished.clone(),
            );
            let read = options.read;
            async move {
                let handle = {
                    let (task, counters, engine) = (task.clone(), counters.clone(), engine.clone());
                    tokio::spawn(async move {
                        process_chunk(
                            &engine,
                            &lake,
                            Some(catalog.as_ref()),
                            &task,
                            &read,
                            &counters,
                        )
                        .await
                    })
                };
                let r = handle.await.unwrap_or_else(|e| {
                    Err(Error::Unavailable(format!(
                        "the task of chunk {} of {} panicked or was cancelled: {e}",
                        task.chunk.index, task.object.url
                    )))
                });
                match &r {
                    Err(_) => stop.store(true, Ordering::SeqCst),
                    Ok(record) => {
                        if let Some(finished) = &finished
                            && engine
                                .table(&record.table)
                                .is_some_and(|t| t.table.table_format == TableFormat::Delta)
                        {
                            // The committer lives until every sender is gone.
                            let _ = finished.send(record.clone());
                        }
                    }
                }
                counters.chunks_done.fetch_add(1, Ordering::Relaxed);
                (task, r)
            }
        })
        .buffer_unordered(options.workers.max(1))
        .collect()
        .await;
    drop(finished);
    let uncommitted = match committer {
        Some(c) => {
            let done = c.await.map_err(|e| {
                Error::Unavailable(format!(
                    "the Delta committer panicked or was cancelled: {e}"
                ))
            })?;
            summary.delta_commits = done.commits;
            summary.cdc = done.cdc;
            done.failed
        }
        None => Vec::new(),
    };
    let mut records = Vec::new();
    let mut first_error = None;
    for (record, error, retryable) in uncommitted {
        let error = format!("written, but not committed to the Delta table: {error}");
        summary.failed.push(FailedChunk {
            table: record.table.clone(),
            file: record.source.url.clone(),
            chunk: Some(record.chunk.index),
            error: error.clone(),
            retryable,
        });
        first_error.get_or_insert(Error::Unavailable(error));
    }
    for (task, outcome) in outcomes {
        match outcome {
            Ok(record) => records.push(record),
            Err(e) => {
                summary.failed.push(FailedChunk {
                    table: task.table.clone(),
                    file: task.object.url.clone(),
                    chunk: Some(task.chunk.index),
                    error: crate::error::describe(&e),
                    retryable: e.is_retryable(),
                });
                first_error.get_or_insert(e);
            }
        }
    }
    if options.fail_fast
        && let Some(e) = first_error
    {
        return Err(e);
    }
    summary
        .failed
        .sort_by(|a, b| (&a.file, a.chunk).cmp(&(&b.file, b.chunk)));
    let mut partitions = HashSet::new();
    for r in &records {
        summary.rows_in += r.rows_in;
        summary.rows_out += r.rows_out;
        summary.rows_rejected += r.rows_rejected;
        summary.values_discarded += r.values_discarded;
        summary.tombstones += r.tombstones;
        for f in &r.files {
            summary.files_out += 1;
            summary.bytes_out += f.bytes;
            partitions.insert((r.table.clone(), f.partition_path.clone()));
        }
    }
    summary.partitions = partitions.len() as u64;
    summary.chunks_skipped = counters.chunks_skipped.load(Ordering::Relaxed);
    summary.chunks_replaced = counters.chunks_replaced.load(Ordering::Relaxed);
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// Records of chunks that were written but could not be committed, each
/// with the error (as one line) and whether it is worth another run.
type Uncommitted = Vec<(CommitRecord, String, bool)>;

/// What the run's Delta committer did.
#[derive(Default)]
struct Committed {
    /// Commits written.
    commits: u64,
    /// Records it could not commit.
    failed: Uncommitted,
    cdc: CdcSummary,
}

/// The run's Delta committer: a sender for finished chunks' records, and the
/// task that commits them. Without the `delta` feature there is none.
fn delta_committer(
    engine: &Arc<Engine>,
    lake: &Location,
    catalog: &Arc<dyn Catalog>,
) -> (
    Option<mpsc::UnboundedSender<CommitRecord>>,
    Option<tokio::task::JoinHandle<Committed>>,
) {
    #[cfg(feature = "delta")]
    {
        let (tx, rx) = mpsc::unbounded_channel();
        let (engine, lake, catalog) = (engine.clone(), lake.clone(), catalog.clone());
        (
            Some(tx),
            Some(tokio::spawn(async move {
                commit_as_chunks_finish(&engine, &lake, catalog.as_ref(), rx).await
            })),
        )
    }
    #[cfg(not(feature = "delta"))]
    {
        let _ = (engine, lake, catalog);
        (None, None)
    }
}

/// Commit finished chunks, a batch per table at a time. A batch that fails
/// (after the committer's own retries on conflicts) is tried again with the
/// next one, and once more at the end; what then still fails is returned.
#[cfg(feature = "delta")]
async fn commit_as_chunks_finish(
    engine: &Engine,
    lake: &Location,
    catalog: &dyn Catalog,
    mut finished: mpsc::UnboundedReceiver<CommitRecord>,
) -> Committed {
    use std::collections::BTreeMap;
    let mut done = Committed::default();
    let mut carried: BTreeMap<String, Vec<CommitRecord>> = BTreeMap::new();
    let mut failed = Vec::new();
    let mut open = true;
    loop {
        let mut batch = std::mem::take(&mut carried);
        if open {
            match finished.recv().await {
                Some(r) => batch.entry(r.table.clone()).or_default().push(r),
                None => open = false,
            }
            while let Ok(r) = finished.try_recv() {
                batch.entry(r.table.clone()).or_default().push(r);
            }
        }
        if batch.is_empty() && !open {
            done.failed = failed;
            return done;
        }
        for (table, records) in batch {
            let cdc = engine.table(&table).filter(|t| t.table.cdc.is_some());
            // A merge rewrites every table file a change lands in, so staged
            // changes wait (durably: their commit records are written) until
            // a full commit's worth is there or the run's chunks are done:
            // fewer, larger merges.
            let staged: u64 = records.iter().map(|r| r.rows_out).sum();
            if cdc.is_some() && open && staged < crate::cdc::merge::MAX_CHANGES_PER_COMMIT {
                carried.insert(table, records);
                continue;
            }
            let committed = async {
                if let Some(t) = cdc {
                    // Change events: merged by key, one commit per batch.
                    let merged = crate::cdc::merge::apply(lake, &t.table, &records).await?;
                    crate::cdc::merge::register(catalog, &t.table, &records).await?;
                    done.cdc.add(&merged);
                    return Ok::<_, Error>(merged.version.is_some());
                }
                let done = crate::delta::commit_batch(lake, &table, records.clone()).await?;
                // Every batch (a retried one too): the table's definition
                // is there, with every column, whatever failed before.
                crate::delta::register(catalog, &records).await?;
                Ok::<_, Error>(done.version.is_some())
            };
            match committed.await {
                Ok(committed) => done.commits += u64::from(committed),
                Err(e) if open => {
                    tracing::warn!(table, error = %crate::error::describe(&e), "a Delta commit failed; its chunks go with the next batch");
                    carried.insert(table, records);
                }
                Err(e) => {
                    let (msg, retryable) = (crate::error::describe(&e), e.is_retryable());
                    failed.extend(records.into_iter().map(|r| (r, msg.clone(), retryable)));
                }
            }
        }
    }
}

/// The name readers use for a Parquet codec (`zstd`, `snappy`, `uncompressed`).
fn codec_name(c: parquet::basic::Compression) -> &'static str {
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
