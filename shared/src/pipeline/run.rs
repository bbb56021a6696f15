//! A whole run (`sluice run`): discover the input, plan chunks, process them
//! with a bounded number in flight, and count what happened.

use super::*;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use futures::StreamExt;

use crate::catalog::Catalog;
use crate::commit::CommitRecord;

use crate::config::{Codec, Format, Table};
use crate::error::{Error, Result};
use crate::plan::{plan_parquet, plan_text};
use crate::read::{ReadOptions, SourceObject, parquet_row_groups};
use crate::store::Location;

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

impl RunOptions {
    /// `workers` chunks of `chunk_size` bytes at once, read with the
    /// default options; a failed chunk does not stop the others.
    pub fn new(workers: usize, chunk_size: u64) -> Self {
        RunOptions {
            workers,
            chunk_size,
            read: ReadOptions::default(),
            fail_fast: false,
        }
    }
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

impl FailedChunk {
    /// Chunk `chunk` (or, with `None`, the whole file) of `file` of `table`
    /// failed with `e`.
    fn of(table: &str, file: &str, chunk: Option<u32>, e: &Error) -> FailedChunk {
        FailedChunk {
            table: table.to_string(),
            file: file.to_string(),
            chunk,
            error: crate::error::describe(e),
            retryable: e.is_retryable(),
        }
    }
}

impl Summary {
    /// Count the rows, files and partitions of a finished chunk's record;
    /// `partitions` holds the (table, partition) pairs seen so far.
    fn count(&mut self, r: &CommitRecord, partitions: &mut HashSet<(String, String)>) {
        self.rows_in += r.rows_in;
        self.rows_out += r.rows_out;
        self.rows_rejected += r.rows_rejected;
        self.values_discarded += r.values_discarded;
        self.tombstones += r.tombstones;
        for f in &r.files {
            self.files_out += 1;
            self.bytes_out += f.bytes;
            partitions.insert((r.table.clone(), f.partition_path.clone()));
        }
        self.partitions = partitions.len() as u64;
    }
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
                    sequencer: None,
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

/// Cut every discovered object into chunk tasks, counting its bytes; a file
/// that cannot be cut is a failure of its own (the run's, with `fail_fast`).
async fn plan_all(
    engine: &Engine,
    objects: &[(String, SourceObject)],
    options: &RunOptions,
    summary: &mut Summary,
) -> Result<Vec<ChunkTask>> {
    let mut tasks = Vec::new();
    for (table, object) in objects {
        let table = &engine.table(table).expect("discovered for a table").table;
        summary.bytes_in += object.size;
        match plan_object(table, object, options.chunk_size).await {
            Ok(planned) => tasks.extend(planned),
            Err(e) if options.fail_fast => return Err(e),
            Err(e) => {
                let failed = FailedChunk::of(&table.name, &object.url, None, &e);
                summary.failed.push(failed);
            }
        }
    }
    Ok(tasks)
}

/// Process one chunk as a task of its own, hand its record to the run's
/// committer (`finished`) or, on failure, raise `stop`.
async fn spawn_chunk(
    engine: Arc<Engine>,
    lake: Location,
    task: ChunkTask,
    read: ReadOptions,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    finished: tokio::sync::mpsc::UnboundedSender<CommitRecord>,
) -> (ChunkTask, Result<CommitRecord>) {
    let handle = {
        let (task, counters) = (task.clone(), counters.clone());
        tokio::spawn(async move { process_chunk(&engine, &lake, &task, &read, &counters).await })
    };
    let r = handle.await.unwrap_or_else(|e| {
        Err(Error::Unavailable(format!(
            "the task of chunk {} of {} panicked or was cancelled: {e}",
            task.chunk.index, task.object.url
        )))
    });
    match &r {
        Err(_) => stop.store(true, Ordering::SeqCst),
        // The committer lives until every sender is gone.
        Ok(record) => {
            let _ = finished.send(record.clone());
        }
    }
    counters.chunks_done.fetch_add(1, Ordering::Relaxed);
    (task, r)
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
    let mut summary = Summary {
        files_in: objects.len() as u64,
        unmatched,
        ..Default::default()
    };
    let tasks = plan_all(engine, &objects, options, &mut summary).await?;
    counters
        .chunks_total
        .store(tasks.len() as u64, Ordering::Relaxed);
    counters
        .bytes_total
        .store(summary.bytes_in, Ordering::Relaxed);
    summary.chunks = tasks.len() as u64;
    // One committer for the run publishes finished chunks through their
    // tables' sinks, a batch at a time (whatever finished while the last
    // publish was under way): a Delta table's chunks do not cost a log
    // entry each, a Hive table's partitions are registered in batches.
    let (finished, committer) = committer(engine, lake, catalog);
    // Every chunk is its own task and runs to its end: a failure never
    // cancels another chunk half way (that left a random share of the good
    // files' rows behind). Under `fail_fast` no chunk is started after the
    // first failure.
    let stop = Arc::new(AtomicBool::new(false));
    // Each outcome is counted as it comes and let go (a run of 10^5 files
    // must not hold 10^5 commit records); only failures are kept.
    let mut partitions = HashSet::new();
    let mut failures: Vec<(ChunkTask, Error)> = Vec::new();
    let mut outcomes = futures::stream::iter(tasks)
        .take_while(|_| futures::future::ready(!(options.fail_fast && stop.load(Ordering::SeqCst))))
        .map(|task| {
            spawn_chunk(
                engine.clone(),
                lake.clone(),
                task,
                options.read,
                counters.clone(),
                stop.clone(),
                finished.clone(),
            )
        })
        .buffer_unordered(options.workers.max(1));
    while let Some((task, outcome)) = outcomes.next().await {
        match outcome {
            Ok(record) => summary.count(&record, &mut partitions),
            Err(e) => failures.push((task, e)),
        }
    }
    drop(outcomes);
    drop(finished);
    let done = committer.await.map_err(|e| {
        Error::Unavailable(format!(
            "the run's committer panicked or was cancelled: {e}"
        ))
    })?;
    summary.delta_commits = done.commits;
    summary.cdc = done.cdc;
    let mut first_error = None;
    for (batch, e) in done.failed {
        for record in batch {
            let mut failed = FailedChunk::of(
                &record.table,
                &record.source.url,
                Some(record.chunk.index),
                &e,
            );
            failed.error = format!("written, but not published to its table: {}", failed.error);
            summary.failed.push(failed);
        }
        first_error.get_or_insert(e);
    }
    for (task, e) in failures {
        summary.failed.push(FailedChunk::of(
            &task.table,
            &task.object.url,
            Some(task.chunk.index),
            &e,
        ));
        first_error.get_or_insert(e);
    }
    if options.fail_fast
        && let Some(e) = first_error
    {
        return Err(e);
    }
    summary
        .failed
        .sort_by(|a, b| (&a.file, a.chunk).cmp(&(&b.file, b.chunk)));
    summary.chunks_skipped = counters.chunks_skipped.load(Ordering::Relaxed);
    summary.chunks_replaced = counters.chunks_replaced.load(Ordering::Relaxed);
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}
