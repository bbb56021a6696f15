//! Stream records into the lake: a batch of Kinesis or Kafka records from
//! one shard (or partition) becomes one chunk, read, transformed, written
//! and committed by the same path as a chunk of a file
//! ([`crate::pipeline::process_chunk`]).
//!
//! The records' payloads (each one JSON object or CSV line, or several
//! lines; gzip or zstd compressed, or a Kinesis Producer Library aggregate,
//! told apart by their first bytes) are laid end to end, a newline after
//! each, into an in-memory object that the engine's text readers read as
//! they read a file. A record that cannot even be decoded (a corrupt gzip
//! member, a damaged aggregate) is quarantined with its sequence number, as
//! are the lines the reader refuses; none of them fails the batch, which
//! would block its shard.
//!
//! ## Exactly once
//!
//! Lambda delivers a shard's records in order, and after a failure delivers
//! them again from a checkpoint: the first record of a batch that failed, or
//! the sequence number a partial-failure answer names. A retried batch may
//! be cut differently (`BisectBatchOnFunctionError` halves it). So each
//! shard keeps how far it is loaded, at
//! `_sluice/streams/<table>/<stream and shard>.json`:
//!
//! 1. records at or before the shard's `last` loaded position are dropped;
//! 2. the rest, positions `first..=last`, are one chunk whose id comes from
//!    (stream, shard, first, last): a batch delivered again whole writes the
//!    same file names and finds its commit record;
//! 3. before the chunk is written, the checkpoint names it as `pending`;
//!    after its commit record exists, `last` moves to its last position.
//!    A crash between the two leaves `pending`, which the next batch
//!    settles: committed, so `last` moves; not, so it is forgotten.
//!
//! This needs one batch of a shard at a time, in order: the event source
//! mapping's `ParallelizationFactor` must be 1 (the template sets it; add
//! shards to go faster). Where two invocations load one shard at once all
//! the same (two mappings of one stream, a Kafka rebalance), the checkpoint
//! is written only over the version its invocation read (`PutMode::Update`
//! with its ETag, or created only if absent): the second to write fails,
//! retryably, before it loads anything. A pending chunk carries its
//! invocation's deadline; until then another invocation cut otherwise
//! leaves it alone (it fails, retryably) rather than loading its records
//! beside it. A pending chunk that a later batch, cut otherwise, finds
//! unfinished (the mapping gave up on it after `MaximumRetryAttempts`) is
//! kept in the checkpoint as a gap: its records load when they come again,
//! though `last` is past them, which is how `sluice replay` loads a batch
//! from its failure record ([`replay`]). A Kafka checkpoint is keyed by cluster (the MSK cluster's
//! ARN, or the bootstrap servers) as well as topic and partition.

pub mod kpl;
pub mod replay;

use std::borrow::Cow;
use std::io::Read;
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::commit::CommitRecord;
use crate::config::Table;
use crate::error::{Error, Result};
use crate::layout::STREAMS_DIR;
use crate::pipeline::{ChunkTask, Counters, Engine, process_chunk};
use crate::plan::Chunk;
use crate::read::{QuarantineEntry, ReadOptions, RecordIndex, SourceObject};
use crate::store::Location;

/// Where a batch came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Kinesis,
    Kafka,
}

impl Kind {
    fn scheme(self) -> &'static str {
        match self {
            Kind::Kinesis => "kinesis",
            Kind::Kafka => "kafka",
        }
    }
}

/// One record as the event carries it (base64 already decoded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The sequence number (Kinesis) or offset (Kafka), in decimal.
    pub position: String,
    /// The payload; `None` for a Kafka record with a null value.
    pub data: Option<Bytes>,
}

/// The records of one shard (Kinesis) or topic partition (Kafka), in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub kind: Kind,
    /// The Kinesis stream's name, or the Kafka topic.
    pub stream: String,
    /// The shard id, or the partition number.
    pub shard: String,
    /// The Kafka cluster the topic lives on (the MSK cluster's ARN, or a
    /// self-managed cluster's bootstrap servers): a topic of one name on
    /// two clusters is two streams, with a checkpoint each. `None` for
    /// Kinesis (a stream's name is unique in the lake's account and region).
    pub cluster: Option<String>,
    pub records: Vec<Record>,
}

/// What loading a batch did.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub table: String,
    /// Records in the batch.
    pub records: usize,
    /// Records the shard had already loaded (a retried or overlapping batch).
    pub already_loaded: usize,
    /// Kafka records with a null value, in a table that is not CDC: nothing to load.
    pub null_values: usize,
    /// The commit records of the chunks loaded: none when every record was
    /// already loaded; two when a chunk that failed is loaded again as it
    /// was cut, then the records after it.
    pub commits: Vec<CommitRecord>,
}

impl Batch {
    /// `kinesis://<stream>/<shard>` or `kafka://<topic>/<partition>`: the
    /// shard as messages name it.
    fn name(&self) -> String {
        format!("{}://{}/{}", self.kind.scheme(), self.stream, self.shard)
    }
}

/// A position as a key that orders as its number does: Kinesis sequence
/// numbers are decimal strings of up to 128 digits, Kafka offsets 64-bit
/// integers. Leading zeros are dropped; the shorter number is the smaller.
fn position<'a>(batch: &Batch, p: &'a str) -> Result<(usize, &'a str)> {
    if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::Event(format!(
            "{}: record position {p:?} is not a decimal number",
            batch.name()
        )));
    }
    Ok(key(p))
}

/// The successor (`up`) or predecessor of a decimal position, without
/// leading zeros; `None` below zero.
fn step(p: &str, up: bool) -> Option<String> {
    let mut digits: Vec<u8> = p.trim_start_matches('0').bytes().collect();
    if digits.is_empty() {
        return up.then(|| "1".to_string());
    }
    let mut i = digits.len();
    loop {
        if i == 0 {
            // Only carrying up runs past the first digit (999 + 1).
            digits.insert(0, b'1');
            break;
        }
        i -= 1;
        match (up, digits[i]) {
            (true, b'9') => digits[i] = b'0',
            (false, b'0') => digits[i] = b'9',
            (true, d) => {
                digits[i] = d + 1;
                break;
            }
            (false, d) => {
                digits[i] = d - 1;
                break;
            }
        }
    }
    let text = String::from_utf8(digits).expect("digits");
    let text = text.trim_start_matches('0');
    Some(if text.is_empty() { "0" } else { text }.to_string())
}

/// A checked decimal position as a key that orders as its number does
/// (see [`position`]).
fn key(p: &str) -> (usize, &str) {
    let digits = p.trim_start_matches('0');
    (digits.len(), digits)
}

/// How far a shard is loaded.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Checkpoint {
    stream: String,
    shard: String,
    /// The last position loaded.
    last: Option<String>,
    /// A chunk being written: loaded once its commit record exists.
    pending: Option<Pending>,
    /// Positions at or before `last` that were never loaded: records of a
    /// batch that failed and that the event source mapping gave up on
    /// (after `MaximumRetryAttempts`) before a later batch moved `last`
    /// past them. A replay of them (`sluice replay`) loads them; every other
    /// record at or before `last` is dropped as loaded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    gaps: Vec<Gap>,
}

/// Positions `first..=last` not loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Gap {
    first: String,
    last: String,
}

impl Checkpoint {
    /// Whether the record at `p` is still to be loaded.
    fn wants(&self, p: (usize, &str)) -> bool {
        self.last.as_deref().is_none_or(|l| p > key(l))
            || self
                .gaps
                .iter()
                .any(|g| key(&g.first) <= p && p <= key(&g.last))
    }

    /// Records `first..=last` (every record of the shard between them) are
    /// loaded: `last` moves past them and no gap holds them any more.
    fn loaded(&mut self, first: &str, last: &str) {
        if self.last.as_deref().is_none_or(|l| key(last) > key(l)) {
            self.last = Some(last.to_string());
        }
        let mut gaps = Vec::with_capacity(self.gaps.len());
        for g in self.gaps.drain(..) {
            if key(last) < key(&g.first) || key(first) > key(&g.last) {
                gaps.push(g);
                continue;
            }
            if key(first) > key(&g.first)
                && let Some(before) = step(first, false)
            {
                gaps.push(Gap {
                    first: g.first.clone(),
                    last: before,
                });
            }
            if key(last) < key(&g.last) {
                gaps.push(Gap {
                    first: step(last, true).expect("a successor"),
                    last: g.last,
                });
            }
        }
        self.gaps = gaps;
    }

    /// Records `first..=last` were not loaded and may never be delivered
    /// again: kept as a gap until they are.
    fn missed(&mut self, first: &str, last: &str) {
        if self.gaps.iter().any(|g| g.first == first && g.last == last) {
            return;
        }
        self.gaps.push(Gap {
            first: first.to_string(),
            last: last.to_string(),
        });
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Pending {
    first: String,
    last: String,
    chunk_id: String,
    /// When the invocation writing the chunk is over, at the latest
    /// (milliseconds since the epoch): until then another invocation cut
    /// otherwise leaves the chunk alone. `None` once that invocation gave
    /// the chunk up (it failed), and in checkpoints written before this
    /// was kept.
    until: Option<i64>,
}

fn checkpoint_path(lake: &Location, table: &str, batch: &Batch) -> Result<Path> {
    let mut h = Sha256::new();
    h.update(batch.kind.scheme());
    h.update([0]);
    h.update(&batch.stream);
    h.update([0]);
    h.update(&batch.shard);
    if let Some(cluster) = &batch.cluster {
        h.update([0]);
        h.update(cluster);
    }
    let id = hex::encode(&h.finalize()[..12]);
    lake.child(&format!("{STREAMS_DIR}/{table}/{id}.json"))
}

/// A shard's checkpoint as read, and the version of it read: it is written
/// again only over that version, so of two invocations loading one shard at
/// once (two mappings, a Kafka rebalance) the second to write fails rather
/// than loading the records the first one loads.
struct Stored {
    path: Path,
    checkpoint: Checkpoint,
    /// `None` while the shard has no checkpoint (it is then created only if
    /// still absent).
    version: Option<UpdateVersion>,
}

impl Stored {
    async fn read(lake: &Location, path: Path, stream: &str, shard: &str) -> Result<Stored> {
        match lake.store.get(&path).await {
            Ok(got) => {
                let version = UpdateVersion {
                    e_tag: got.meta.e_tag.clone(),
                    version: got.meta.version.clone(),
                };
                let bytes = got
                    .bytes()
                    .await
                    .map_err(|e| Error::read(lake.url_of(&path), e))?;
                let checkpoint = serde_json::from_slice(&bytes).map_err(|e| {
                    Error::Catalog(format!("bad stream checkpoint {}: {e}", lake.url_of(&path)))
                })?;
                Ok(Stored {
                    path,
                    checkpoint,
                    version: Some(version),
                })
            }
            Err(object_store::Error::NotFound { .. }) => Ok(Stored {
                path,
                checkpoint: Checkpoint {
                    stream: stream.to_string(),
                    shard: shard.to_string(),
                    ..Default::default()
                },
                version: None,
            }),
            Err(e) => Err(Error::read(lake.url_of(&path), e)),
        }
    }

    /// Write the checkpoint over the version read (or create it), and keep
    /// the version written. A checkpoint another invocation moved since is
    /// an error (retryable: the batch comes again and finds what the other
    /// loaded), unless it holds exactly what this one writes (the answer
    /// to this write was lost and the write retried, or the other loads
    /// the same chunk, to the same names).
    async fn write(&mut self, lake: &Location) -> Result<()> {
        let body = PutPayload::from(serde_json::to_vec(&self.checkpoint).expect("serializes"));
        let mode = match &self.version {
            Some(v) => PutMode::Update(v.clone()),
            None => PutMode::Create,
        };
        let url = lake.url_of(&self.path);
        let options = PutOptions {
            mode,
            ..Default::default()
        };
        match lake.store.put_opts(&self.path, body.clone(), options).await {
            Ok(put) => {
                self.version = Some(UpdateVersion {
                    e_tag: put.e_tag,
                    version: put.version,
                });
                Ok(())
            }
            // A local folder has no conditional overwrite (one process uses it).
            Err(object_store::Error::NotImplemented { .. }) => lake
                .store
                .put(&self.path, body)
                .await
                .map(|_| ())
                .map_err(|e| Error::write(url, e)),
            Err(
                object_store::Error::Precondition { .. }
                | object_store::Error::AlreadyExists { .. },
            ) => {
                let cp = &self.checkpoint;
                let now = Stored::read(lake, self.path.clone(), &cp.stream, &cp.shard).await?;
                if now.version.is_some() && now.checkpoint == self.checkpoint {
                    self.version = now.version;
                    return Ok(());
                }
                Err(Error::Unavailable(format!(
                    "stream checkpoint {url} (shard {} of {}) was moved by another invocation loading the same shard (two event source mappings, or a Kafka rebalance): this batch is not loaded now, and when it comes again the records the other loaded are skipped",
                    self.checkpoint.shard, self.checkpoint.stream
                )))
            }
            Err(e) => Err(Error::write(url, e)),
        }
    }
}

/// The shard's checkpoint, with a pending chunk settled: committed, it is
/// loaded; not, it is returned apart (a delivery that starts with its
/// records loads the same chunk again, writing the same files).
async fn read_checkpoint(
    lake: &Location,
    path: &Path,
    table: &str,
    batch: &Batch,
) -> Result<(Stored, Option<Pending>)> {
    let mut stored = Stored::read(lake, path.clone(), &batch.stream, &batch.shard).await?;
    let cp = &mut stored.checkpoint;
    let mut unfinished = None;
    if let Some(p) = cp.pending.take() {
        let commit = lake.child(&CommitRecord::path(table, &p.chunk_id))?;
        if lake.get_bytes(&commit).await?.is_some() {
            cp.loaded(&p.first, &p.last);
        } else {
            unfinished = Some(p);
        }
    }
    Ok((stored, unfinished))
}

/// The most a batch's records may decompress to, together.
const MAX_BATCH_TEXT: usize = 1 << 30;

/// A record's payload as text lines: decompressed (gzip, zstd) or
/// deaggregated (KPL), or as it is.
fn decode(data: &[u8], room: usize) -> std::result::Result<Vec<Cow<'_, [u8]>>, String> {
    fn inflate(r: impl Read, what: &str, room: usize) -> std::result::Result<Vec<u8>, String> {
        let mut out = Vec::new();
        r.take(room as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| format!("cannot decompress the {what} record: {e}"))?;
        if out.len() > room {
            return Err(format!(
                "the {what} record decompresses to more than the batch's limit of {MAX_BATCH_TEXT} bytes"
            ));
        }
        Ok(out)
    }
    if kpl::is_aggregated(data) {
        Ok(kpl::deaggregate(data)?
            .into_iter()
            .map(Cow::Owned)
            .collect())
    } else if data.starts_with(&[0x1f, 0x8b]) {
        Ok(vec![Cow::Owned(inflate(
            flate2::read::MultiGzDecoder::new(data),
            "gzip",
            room,
        )?)])
    } else if data.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        let d = zstd::stream::read::Decoder::new(data)
            .map_err(|e| format!("cannot decompress the zstd record: {e}"))?;
        Ok(vec![Cow::Owned(inflate(d, "zstd", room)?)])
    } else {
        Ok(vec![Cow::Borrowed(data)])
    }
}

/// The chunk's text: every record's lines, a newline after each.
fn text(table: &Table, url: &str, records: &[&Record]) -> (Vec<u8>, RecordIndex, usize) {
    // Room for every record as it is and a newline (a stream's records are
    // mostly plain text): one allocation, no copy on growing.
    let plain: usize = records
        .iter()
        .filter_map(|r| r.data.as_ref())
        .map(|d| d.len() + 1)
        .sum();
    let mut out = Vec::with_capacity(plain.min(MAX_BATCH_TEXT));
    let mut index = RecordIndex::default();
    index.starts.reserve(records.len());
    let mut null_values = 0;
    for r in records {
        let Some(data) = &r.data else {
            if table.cdc.is_some() {
                // A Kafka tombstone: the CDC reader skips it and counts it.
                index.starts.push((out.len() as u64, r.position.clone()));
                out.extend_from_slice(b"null\n");
            } else {
                null_values += 1;
            }
            continue;
        };
        match decode(data, MAX_BATCH_TEXT.saturating_sub(out.len())) {
            Ok(lines) => {
                index.starts.push((out.len() as u64, r.position.clone()));
                for line in lines {
                    out.extend_from_slice(&line);
                    if !line.ends_with(b"\n") {
                        out.push(b'\n');
                    }
                }
            }
            Err(reason) => {
                let keep = data.len().min(4096);
                index.undecodable.push(QuarantineEntry {
                    table: table.name.clone(),
                    source: url.to_string(),
                    e_tag: None,
                    offset: None,
                    reason,
                    raw: String::from_utf8_lossy(&data[..keep]).into_owned(),
                    record: Some(r.position.clone()),
                });
            }
        }
    }
    (out, index, null_values)
}

/// Load one batch into its table (the table whose `stream` is the batch's
/// stream or topic): the records not loaded yet, as one chunk, exactly once
/// (see the module's docs). A failure (storage, the table's SQL) leaves the
/// shard's checkpoint where it was: the same records can be delivered
/// again, from the first one not loaded ([`first_unloaded`]). `until` is
/// when this invocation is over at the latest (Lambda's deadline): another
/// invocation leaves the chunk it writes alone until then.
pub async fn load_batch(
    engine: &Engine,
    lake: &Location,
    batch: &Batch,
    options: &ReadOptions,
    counters: &Arc<Counters>,
    until: DateTime<Utc>,
) -> Result<Outcome> {
    let table = engine
        .pipeline
        .table_for_stream(&batch.stream)
        .ok_or_else(|| {
            Error::Config(format!(
                "no table reads stream {:?} (a table's `stream` key names the Kinesis stream or Kafka topic)",
                batch.stream
            ))
        })?;
    let path = checkpoint_path(lake, &table.name, batch)?;
    let (mut stored, unfinished) = read_checkpoint(lake, &path, &table.name, batch).await?;
    let fresh = unloaded(batch, &stored.checkpoint)?;
    let mut outcome = Outcome {
        table: table.name.clone(),
        records: batch.records.len(),
        already_loaded: batch.records.len() - fresh.len(),
        null_values: 0,
        commits: Vec::new(),
    };
    // A chunk that failed before its commit record may have left files; when
    // this delivery holds all its records, it is loaded again as it was cut
    // (the same names, overwritten), then the rest.
    let split = unfinished.as_ref().and_then(|p| {
        let starts = fresh.first().is_some_and(|r| r.position == p.first);
        let end = fresh.iter().position(|r| r.position == p.last)?;
        starts.then_some(end + 1)
    });
    if let (Some(p), None) = (&unfinished, split) {
        // Cut otherwise (a halved retry after a crash): the unfinished
        // chunk's files, if it left any, would never be overwritten. Unless
        // its invocation may still be at work (two mappings, a rebalance):
        // loading these records beside it would load them twice.
        if let Some(until) = p.until.filter(|u| *u > Utc::now().timestamp_millis()) {
            return Err(Error::Unavailable(format!(
                "{}: records {}..={} are being loaded by another invocation (until {}, its deadline at the latest): this batch is not loaded before then",
                batch.name(),
                p.first,
                p.last,
                DateTime::<Utc>::from_timestamp_millis(until).unwrap_or_default()
            )));
        }
        remove_files_of(lake, table, &p.chunk_id).await?;
        // Its records may not come again (the mapping gave up on them): a
        // gap, until they are loaded.
        stored.checkpoint.missed(&p.first, &p.last);
    }
    let (head, tail) = fresh.split_at(split.unwrap_or(fresh.len()));
    for segment in [head, tail] {
        if segment.is_empty() {
            continue;
        }
        let loaded = load_segment(
            engine,
            lake,
            (table, batch),
            segment,
            &mut stored,
            options,
            counters,
            until,
        )
        .await;
        let (record, null_values) = match loaded {
            Ok(loaded) => loaded,
            Err(e) => {
                give_up(lake, &mut stored).await;
                return Err(e);
            }
        };
        outcome.null_values += null_values;
        outcome.commits.push(record);
    }
    Ok(outcome)
}

/// After a failure, say in the checkpoint that no invocation is at work on
/// its pending chunk any more, so that a retry cut otherwise need not wait
/// for this invocation's deadline (best effort: if the store refuses this
/// too, the retry waits). The pending chunk stays: a later batch that does
/// not load it (the mapping gave up on it) keeps its records as a gap.
async fn give_up(lake: &Location, stored: &mut Stored) {
    let Some(p) = stored.checkpoint.pending.as_mut() else {
        return;
    };
    if p.until.take().is_some()
        && let Err(e) = stored.write(lake).await
    {
        tracing::warn!(stream = %stored.checkpoint.stream, shard = %stored.checkpoint.shard, error = %e, "could not mark the failed chunk as given up: a retry cut otherwise waits for this invocation's deadline");
    }
}

/// Delete the data files chunk `chunk_id` wrote under its table's folder
/// (`part-<chunk id>-<n>.parquet` in any partition); it has no commit
/// record, so nothing reads them.
async fn remove_files_of(lake: &Location, table: &Table, chunk_id: &str) -> Result<()> {
    use futures::TryStreamExt;
    let (folder, _) = table.chunk_destination();
    let prefix = lake.child(&folder)?;
    let mut listing = lake.store.list(Some(&prefix));
    let name = format!("part-{chunk_id}-");
    let mut removed = 0;
    while let Some(meta) = listing
        .try_next()
        .await
        .map_err(|e| Error::read(lake.url_of(&prefix), e))?
    {
        if meta
            .location
            .filename()
            .is_some_and(|f| f.starts_with(&name))
        {
            lake.store
                .delete(&meta.location)
                .await
                .map_err(|e| Error::write(lake.url_of(&meta.location), e))?;
            removed += 1;
        }
    }
    if removed > 0 {
        tracing::warn!(table = %table.name, chunk = chunk_id, removed, "removed the files of a stream chunk that never committed");
    }
    Ok(())
}

/// Load `records` (in order, none loaded yet) as one chunk, moving the
/// shard's checkpoint past them.
#[allow(clippy::too_many_arguments)]
async fn load_segment(
    engine: &Engine,
    lake: &Location,
    (table, batch): (&Table, &Batch),
    records: &[&Record],
    stored: &mut Stored,
    options: &ReadOptions,
    counters: &Arc<Counters>,
    until: DateTime<Utc>,
) -> Result<(CommitRecord, usize)> {
    let first = records[0].position.clone();
    let last = records[records.len() - 1].position.clone();
    let url = format!("{}/{first}-{last}", batch.name());
    let (body, index, null_values) = text(table, &url, records);
    let size = body.len() as u64;
    let store = Arc::new(InMemory::new());
    let object_path = Path::from_iter([batch.stream.as_str(), &batch.shard, "records"]);
    store
        .put(&object_path, PutPayload::from(body))
        .await
        .map_err(|e| Error::write(&url, e))?;
    let object = SourceObject {
        // The cluster is part of the chunk's identity (its files' names):
        // one topic's offsets on two clusters are two chunks.
        version: Some(match &batch.cluster {
            Some(c) => format!("{first}-{last}@{}", &hex::encode(Sha256::digest(c))[..12]),
            None => format!("{first}-{last}"),
        }),
        ..SourceObject::new(store, object_path, url, size)
    };
    let chunk = Chunk {
        index: 0,
        start: 0,
        end: size,
    };
    let chunk_id = crate::commit::chunk_id(&object.source_info(), &chunk);
    stored.checkpoint.pending = Some(Pending {
        first,
        last: last.clone(),
        chunk_id,
        until: Some(until.timestamp_millis()),
    });
    stored.write(lake).await?;
    let task = ChunkTask {
        table: table.name.clone(),
        object,
        chunk,
        chunks: 1,
        stream: Some(Arc::new(index)),
    };
    let record = process_chunk(engine, lake, &task, options, counters).await?;
    stored.checkpoint.pending = None;
    stored.checkpoint.loaded(&records[0].position, &last);
    stored.write(lake).await?;
    Ok((record, null_values))
}

/// The records the checkpoint does not hold as loaded (after its `last`
/// position, or in one of its gaps), in order; an error if the batch's
/// positions do not increase.
fn unloaded<'a>(batch: &'a Batch, checkpoint: &Checkpoint) -> Result<Vec<&'a Record>> {
    let mut previous: Option<(usize, &str)> = None;
    let mut out = Vec::new();
    for r in &batch.records {
        let p = position(batch, &r.position)?;
        if previous.is_some_and(|q| p <= q) {
            return Err(Error::Event(format!(
                "{}: record {} comes after {}, not in order",
                batch.name(),
                r.position,
                previous.expect("checked").1
            )));
        }
        previous = Some(p);
        if checkpoint.wants(p) {
            out.push(r);
        }
    }
    Ok(out)
}

/// The first record of `batch` the shard has not loaded: where a retry
/// must start after a failure (what a partial-failure answer names).
pub async fn first_unloaded(
    engine: &Engine,
    lake: &Location,
    batch: &Batch,
) -> Result<Option<String>> {
    let Some(first) = batch.records.first() else {
        return Ok(None);
    };
    let Some(table) = engine.pipeline.table_for_stream(&batch.stream) else {
        return Ok(Some(first.position.clone()));
    };
    let path = checkpoint_path(lake, &table.name, batch)?;
    let (stored, _) = read_checkpoint(lake, &path, &table.name, batch).await?;
    Ok(unloaded(batch, &stored.checkpoint)?
        .first()
        .map(|r| r.position.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deadline a quarter of an hour away.
    fn later() -> DateTime<Utc> {
        Utc::now() + chrono::Duration::minutes(15)
    }

    /// A checkpoint loaded up to `last`, with no gap.
    fn at(last: Option<&str>) -> Checkpoint {
        Checkpoint {
            last: last.map(str::to_string),
            ..Default::default()
        }
    }

    fn positions<'a>(records: &[&'a Record]) -> Vec<&'a str> {
        records.iter().map(|r| r.position.as_str()).collect()
    }

    #[test]
    fn positions_step_up_and_down_across_carries() {
        assert_eq!(step("9", true).as_deref(), Some("10"));
        assert_eq!(step("0999", true).as_deref(), Some("1000"));
        assert_eq!(step("1000", false).as_deref(), Some("999"));
        assert_eq!(step("10", false).as_deref(), Some("9"));
        assert_eq!(step("1", false).as_deref(), Some("0"));
        assert_eq!(step("0", false), None);
        assert_eq!(step("0", true).as_deref(), Some("1"));
        assert_eq!(
            step(
                "49590338271490256608559692538361571095921575989136588899",
                true
            )
            .as_deref(),
            Some("49590338271490256608559692538361571095921575989136588900")
        );
    }

    #[test]
    fn records_in_a_gap_are_loaded_again_and_loading_narrows_the_gap() {
        let b = batch(&["5", "7", "9", "11", "13", "20"]);
        let mut cp = at(Some("13"));
        cp.missed("7", "11");
        assert_eq!(
            positions(&unloaded(&b, &cp).unwrap()),
            ["7", "9", "11", "20"]
        );
        // A retry halved: records 7 and 9 load; 11 is still a gap.
        cp.loaded("7", "9");
        assert_eq!(cp.last.as_deref(), Some("13"));
        assert_eq!(
            cp.gaps,
            [Gap {
                first: "10".into(),
                last: "11".into()
            }]
        );
        assert_eq!(positions(&unloaded(&b, &cp).unwrap()), ["11", "20"]);
        // A chunk inside a gap leaves both ends.
        let mut cp = at(Some("100"));
        cp.missed("10", "30");
        cp.loaded("15", "20");
        assert_eq!(
            cp.gaps,
            [
                Gap {
                    first: "10".into(),
                    last: "14".into()
                },
                Gap {
                    first: "21".into(),
                    last: "30".into()
                }
            ]
        );
        // A chunk over the whole gap, and past `last`, closes it.
        cp.loaded("5", "120");
        assert_eq!((cp.last.as_deref(), cp.gaps.len()), (Some("120"), 0));
        // The same gap recorded twice is one gap.
        cp.missed("1", "2");
        cp.missed("1", "2");
        assert_eq!(cp.gaps.len(), 1);
    }

    fn batch(positions: &[&str]) -> Batch {
        Batch {
            kind: Kind::Kinesis,
            stream: "s".into(),
            shard: "shardId-0".into(),
            cluster: None,
            records: positions
                .iter()
                .map(|p| Record {
                    position: p.to_string(),
                    data: Some(Bytes::from_static(b"{}")),
                })
                .collect(),
        }
    }

    #[test]
    fn records_at_or_before_the_checkpoint_are_dropped_by_number_not_by_text() {
        let b = batch(&["9", "10", "11", "100"]);
        let left: Vec<_> = unloaded(&b, &at(Some("10")))
            .unwrap()
            .iter()
            .map(|r| r.position.as_str())
            .collect();
        assert_eq!(left, ["11", "100"]);
        assert_eq!(unloaded(&b, &at(None)).unwrap().len(), 4);
        assert!(unloaded(&b, &at(Some("100"))).unwrap().is_empty());
        // Kinesis sequence numbers are wider than 64 bits.
        let wide = batch(&[
            "49590338271490256608559692538361571095921575989136588898",
            "49590338271490256608559692540925702759324208523137515618",
        ]);
        assert_eq!(
            unloaded(
                &wide,
                &at(Some(
                    "49590338271490256608559692538361571095921575989136588898"
                ))
            )
            .unwrap()
            .len(),
            1
        );
    }

    #[test]
    fn a_batch_out_of_order_or_with_a_bad_position_is_refused() {
        let e = unloaded(&batch(&["5", "5"]), &at(None))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not in order") && e.contains("shardId-0"), "{e}");
        let e = unloaded(&batch(&["5", "x"]), &at(None))
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"x\""), "{e}");
    }

    #[test]
    fn records_are_decompressed_deaggregated_or_kept_by_their_bytes() {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"{\"a\":1}\n{\"a\":2}").unwrap();
        let gz = gz.finish().unwrap();
        assert_eq!(
            decode(&gz, 1000).unwrap(),
            vec![b"{\"a\":1}\n{\"a\":2}".to_vec()]
        );
        let zs = zstd::encode_all(&b"x,y"[..], 1).unwrap();
        assert_eq!(decode(&zs, 1000).unwrap(), vec![b"x,y".to_vec()]);
        let agg = kpl::aggregate(&[b"1", b"2"]);
        assert_eq!(
            decode(&agg, 1000).unwrap(),
            vec![b"1".to_vec(), b"2".to_vec()]
        );
        assert_eq!(decode(b"plain", 1000).unwrap(), vec![b"plain".to_vec()]);
        // Too large once inflated, or damaged: a reason, not a panic.
        assert!(decode(&gz, 4).unwrap_err().contains("limit"));
        assert!(
            decode(&gz[..gz.len() - 6], 1000)
                .unwrap_err()
                .contains("gzip")
        );
    }

    const CSV: &str = r#"
[lake]
root = "memory://"

[[tables]]
name = "orders"
stream = "orders"
format = "csv"
partition_by = ["region"]

[tables.schema]
id = "int64"
region = "string"
"#;

    fn csv_batch(records: &[(u64, &[u8])]) -> Batch {
        Batch {
            kind: Kind::Kafka,
            stream: "orders".into(),
            shard: "3".into(),
            cluster: None,
            records: records
                .iter()
                .map(|(p, d)| Record {
                    position: p.to_string(),
                    data: Some(Bytes::copy_from_slice(d)),
                })
                .collect(),
        }
    }

    #[tokio::test]
    async fn a_batch_loads_once_and_an_overlapping_one_loads_only_its_new_records() {
        use std::io::Write;
        let pipeline = crate::config::Pipeline::from_toml(CSV).unwrap();
        let engine = Engine::new(pipeline).await.unwrap();
        let lake = Location::memory();
        let counters = Arc::new(Counters::default());
        let options = ReadOptions::default();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"3,eu\n4,us").unwrap();
        let gz = gz.finish().unwrap();
        // CSV records have no header; a gzip record holds two lines; one
        // gzip record is cut short.
        let first = csv_batch(&[(10, b"1,eu"), (11, b"2,us\n"), (12, &gz), (13, &gz[..12])]);
        let o = load_batch(&engine, &lake, &first, &options, &counters, later())
            .await
            .unwrap();
        let c = o.commits[0].clone();
        assert_eq!((o.records, o.already_loaded, o.commits.len()), (4, 0, 1));
        assert_eq!((c.rows_out, c.rows_rejected), (4, 1));
        assert_eq!(c.source.url, "kafka://orders/3/10-13");
        let q = lake.child(c.quarantine.as_deref().unwrap()).unwrap();
        let q = lake.get_bytes(&q).await.unwrap().unwrap();
        let q: QuarantineEntry = serde_json::from_slice(&q).unwrap();
        assert_eq!(q.record.as_deref(), Some("13"));
        // Delivered again: nothing to load.
        let again = load_batch(&engine, &lake, &first, &options, &counters, later())
            .await
            .unwrap();
        assert_eq!((again.already_loaded, again.commits), (4, Vec::new()));
        // Overlapping: only 14 and 15 are new.
        let next = csv_batch(&[(12, &gz), (13, &gz[..12]), (14, b"5,eu"), (15, b"6,ap")]);
        let o = load_batch(&engine, &lake, &next, &options, &counters, later())
            .await
            .unwrap();
        let c = o.commits[0].clone();
        assert_eq!((o.already_loaded, c.rows_out, c.rows_rejected), (2, 2, 0));
        assert_eq!(c.source.url, "kafka://orders/3/14-15");
        assert_eq!(
            first_unloaded(&engine, &lake, &next).await.unwrap(),
            None,
            "all loaded"
        );
        let later = csv_batch(&[(15, b"6,ap"), (16, b"7,ap")]);
        assert_eq!(
            first_unloaded(&engine, &lake, &later)
                .await
                .unwrap()
                .as_deref(),
            Some("16")
        );
    }

    /// Two invocations loading one shard at once (two event source
    /// mappings, a Kafka rebalance), one with the records 1..=3 and one cut
    /// shorter (1..=2), their store calls interleaved by small delays: at
    /// most one loads each record, and once the ones that failed come again
    /// (as Lambda redelivers them) every record is loaded exactly once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_invocations_of_one_shard_at_once_load_each_record_once() {
        use crate::fault::{Faults, FaultyStore};
        use futures::TryStreamExt;
        let pipeline = crate::config::Pipeline::from_toml(CSV).unwrap();
        let engine = Engine::new(pipeline).await.unwrap();
        let whole = csv_batch(&[(1, b"1,eu"), (2, b"2,eu"), (3, b"3,us")]);
        let short = csv_batch(&[(1, b"1,eu"), (2, b"2,eu")]);
        for seed in 1..=12u64 {
            let base: Arc<dyn object_store::ObjectStore> = Arc::new(InMemory::new());
            let slowed = |salt: u64| -> Location {
                let hook: crate::fault::Hook = Arc::new(move |n| {
                    let ms = (n * seed + salt) % 4;
                    Box::pin(tokio::time::sleep(std::time::Duration::from_millis(ms)))
                });
                let store = FaultyStore::new(base.clone(), Faults::None).with_hook(hook);
                Location {
                    store: Arc::new(store),
                    prefix: Path::default(),
                    url: "memory://".into(),
                }
            };
            let (a, b) = (slowed(0), slowed(seed));
            let counters = Arc::new(Counters::default());
            let options = ReadOptions::default();
            let (ra, rb) = tokio::join!(
                load_batch(&engine, &a, &whole, &options, &counters, later()),
                load_batch(&engine, &b, &short, &options, &counters, later()),
            );
            let covered = |lake: Location| async move {
                let dir = lake.child("_sluice/commits/orders").unwrap();
                let metas: Vec<_> = lake.store.list(Some(&dir)).try_collect().await.unwrap();
                let mut positions = Vec::new();
                for m in metas {
                    let bytes = lake.get_bytes(&m.location).await.unwrap().unwrap();
                    let r = CommitRecord::from_json(&bytes, m.location.as_ref()).unwrap();
                    let range = r.source.url.rsplit('/').next().unwrap().to_string();
                    let (x, y) = range.split_once('-').unwrap();
                    positions.extend(x.parse::<u64>().unwrap()..=y.parse::<u64>().unwrap());
                }
                positions.sort();
                positions
            };
            let now = covered(a.clone()).await;
            let mut seen = now.clone();
            seen.dedup();
            assert_eq!(
                now, seen,
                "seed {seed}: a record loaded twice ({ra:?}, {rb:?})"
            );
            // The failed one comes again (after the other's deadline, as a
            // crash's retry would: here the other finished).
            let plain = Location {
                store: base.clone(),
                prefix: Path::default(),
                url: "memory://".into(),
            };
            if ra.is_err() {
                load_batch(&engine, &plain, &whole, &options, &counters, later())
                    .await
                    .unwrap();
            }
            if rb.is_err() {
                load_batch(&engine, &plain, &short, &options, &counters, later())
                    .await
                    .unwrap();
            }
            load_batch(&engine, &plain, &whole, &options, &counters, later())
                .await
                .unwrap();
            assert_eq!(
                covered(plain).await,
                [1, 2, 3],
                "seed {seed} ({ra:?}, {rb:?})"
            );
        }
    }

    #[tokio::test]
    async fn a_pending_chunk_counts_as_loaded_only_once_its_commit_exists() {
        let pipeline = crate::config::Pipeline::from_toml(CSV).unwrap();
        let engine = Engine::new(pipeline).await.unwrap();
        let lake = Location::memory();
        let batch = csv_batch(&[(1, b"1,eu"), (2, b"2,eu")]);
        let path = checkpoint_path(&lake, "orders", &batch).unwrap();
        let pending = |chunk_id: &str| Checkpoint {
            stream: "orders".into(),
            shard: "3".into(),
            last: None,
            gaps: Vec::new(),
            pending: Some(Pending {
                first: "1".into(),
                last: "2".into(),
                chunk_id: chunk_id.into(),
                until: None,
            }),
        };
        // A crash before the commit record: the pending chunk is not loaded.
        lake.put_json(&path, &pending("c1")).await.unwrap();
        let (cp, unfinished) = read_checkpoint(&lake, &path, "orders", &batch)
            .await
            .unwrap();
        let cp = cp.checkpoint;
        assert_eq!((cp.last, cp.pending), (None, None));
        assert_eq!(unfinished.unwrap().chunk_id, "c1");
        // A crash after it: the chunk is loaded.
        lake.put_json(&path, &pending("c1")).await.unwrap();
        let commit = lake.child(&CommitRecord::path("orders", "c1")).unwrap();
        lake.store.put(&commit, "{}".into()).await.unwrap();
        let (cp, unfinished) = read_checkpoint(&lake, &path, "orders", &batch)
            .await
            .unwrap();
        assert_eq!(
            (cp.checkpoint.last.as_deref(), unfinished),
            (Some("2"), None)
        );
        assert_eq!(first_unloaded(&engine, &lake, &batch).await.unwrap(), None);
        // A delivery holding an unfinished chunk's records loads that chunk
        // as it was cut (its files, if any were left, are overwritten), then
        // the rest; one that does not start with them is one chunk.
        let lake = Location::memory();
        lake.put_json(&path, &pending("c1")).await.unwrap();
        let counters = Arc::new(Counters::default());
        let options = ReadOptions::default();
        let longer = csv_batch(&[(1, b"1,eu"), (2, b"2,eu"), (3, b"3,eu")]);
        let load = async |lake: &Location, batch: &Batch| {
            load_batch(&engine, lake, batch, &options, &counters, later()).await
        };
        let o = load(&lake, &longer).await.unwrap();
        let urls: Vec<_> = o.commits.iter().map(|c| c.source.url.as_str()).collect();
        assert_eq!(urls, ["kafka://orders/3/1-2", "kafka://orders/3/3-3"]);
        let lake = Location::memory();
        lake.put_json(&path, &pending("c1")).await.unwrap();
        let debris = lake
            .child("orders/region=eu/part-c1-00000.parquet")
            .unwrap();
        let kept = lake
            .child("orders/region=eu/part-c2-00000.parquet")
            .unwrap();
        lake.store.put(&debris, "x".into()).await.unwrap();
        lake.store.put(&kept, "x".into()).await.unwrap();
        let o = load(&lake, &batch_from_2()).await.unwrap();
        let urls: Vec<_> = o.commits.iter().map(|c| c.source.url.as_str()).collect();
        assert_eq!(urls, ["kafka://orders/3/2-3"]);
        assert!(
            lake.store.head(&debris).await.is_err(),
            "the crashed chunk's file is gone"
        );
        assert!(
            lake.store.head(&kept).await.is_ok(),
            "another chunk's file stays"
        );
    }

    fn batch_from_2() -> Batch {
        csv_batch(&[(2, b"2,eu"), (3, b"3,eu")])
    }

    /// A Kafka batch of 24 records failing at each store call of its load
    /// in turn (refused, its answer lost, the process dying there), then
    /// delivered again from the record the failure answers: each record is
    /// in the table once.
    #[test]
    fn a_kafka_batch_failing_at_any_call_then_redelivered_loads_each_record_once() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let steps = [1; 24];
        let calls = runtime.block_on(deliver_then_count(&steps, &[(24, 0, None)]));
        assert!(calls >= 5, "{calls} store calls");
        for call in 1..=calls {
            for kind in 0..3 {
                runtime.block_on(deliver_then_count(&steps, &[(24, 0, Some((call, kind)))]));
            }
        }
    }

    /// One delivery of a shard's records `start..` (at most `size`), and
    /// how the lake's store fails under it: (call, 0 refused, 1 answer
    /// lost, 2 the process dies there).
    type Delivery = (usize, usize, Option<(u64, u8)>);

    /// Any sequence of deliveries of one shard, as a mapping makes them:
    /// batches of any size, some starting before the records already
    /// loaded (a redelivery), each failing at any store call of the lake
    /// (refused, its answer lost, or the process dying there), after which
    /// the shard is delivered again from the record the failure answers (or
    /// the whole batch again, after a crash); then the rest, cleanly. Every
    /// record is in the table once, whatever the positions' digits carry.
    #[test]
    fn any_redelivery_split_or_failed_batch_loads_each_record_once() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let delivery = (
            1usize..=8,
            0usize..=3,
            proptest::option::of((1u64..=14, 0u8..3)),
        );
        let cases = (
            proptest::collection::vec(1u64..=4, 24),
            proptest::collection::vec(delivery, 1..12),
        );
        let config = proptest::test_runner::Config {
            cases: 64,
            failure_persistence: None,
            ..Default::default()
        };
        proptest::test_runner::TestRunner::new(config)
            .run(&cases, |(steps, deliveries)| {
                runtime.block_on(deliver_then_count(&steps, &deliveries));
                Ok(())
            })
            .unwrap();
    }

    /// The shard (positions from 990 up by `steps`, record `i` is the CSV
    /// row `i,r<i % 3>`) delivered by `deliveries`, then the rest; panics
    /// unless every row is in the table's committed files once. Returns the
    /// store calls the deliveries made.
    async fn deliver_then_count(steps: &[u64], deliveries: &[Delivery]) -> u64 {
        use crate::fault::{FaultKind, Faults, FaultyStore};
        let engine = Engine::new(crate::config::Pipeline::from_toml(CSV).unwrap())
            .await
            .unwrap();
        let counted = Arc::new(FaultyStore::new(Arc::new(InMemory::new()), Faults::None));
        let lake = Location {
            store: counted.clone(),
            ..Location::memory()
        };
        let counters = Arc::new(Counters::default());
        let options = ReadOptions::default();
        let mut position = 990;
        let shard: Vec<(u64, Vec<u8>)> = steps
            .iter()
            .enumerate()
            .map(|(i, step)| {
                position += step;
                (position, format!("{i},r{}", i % 3).into_bytes())
            })
            .collect();
        let records = |range: std::ops::Range<usize>| -> Vec<(u64, &[u8])> {
            shard[range]
                .iter()
                .map(|(p, d)| (*p, d.as_slice()))
                .collect()
        };
        let mut from = 0;
        let clean = std::iter::repeat_n((5, 0, None), shard.len() + 1);
        for (n, (size, back, fault)) in deliveries.iter().copied().chain(clean).enumerate() {
            if from >= shard.len() {
                break;
            }
            assert!(n <= deliveries.len() + shard.len(), "clean deliveries fail");
            let start = from.saturating_sub(back);
            let end = (start + size).min(shard.len());
            let batch = csv_batch(&records(start..end));
            let mut faulty = lake.clone();
            if let Some((call, kind)) = fault {
                let (faults, kind) = match kind {
                    0 => (Faults::Once(call), FaultKind::Refused),
                    1 => (Faults::Once(call), FaultKind::AnswerLost),
                    _ => (Faults::CrashAt(call), FaultKind::AnswerLost),
                };
                faulty.store =
                    Arc::new(FaultyStore::new(lake.store.clone(), faults).with_kind(kind));
            }
            // The invocation is over when it answers.
            match load_batch(&engine, &faulty, &batch, &options, &counters, Utc::now()).await {
                Ok(_) => from = from.max(end),
                Err(e) if fault.is_none() => panic!("delivery {n} of {start}..{end}: {e}"),
                Err(_) if fault.is_some_and(|(_, kind)| kind == 2) => from = start,
                Err(_) => {
                    from = match first_unloaded(&engine, &lake, &batch).await.unwrap() {
                        Some(p) => shard.iter().position(|(q, _)| q.to_string() == p).unwrap(),
                        None => from.max(end),
                    }
                }
            }
        }
        let calls = counted.calls();
        // Every committed file's rows: each record's once.
        let prefix = lake
            .child(&format!("{}/orders/", crate::layout::COMMITS_DIR))
            .unwrap();
        let metas: Vec<_> = futures::TryStreamExt::try_collect(lake.store.list(Some(&prefix)))
            .await
            .unwrap();
        let mut ids = Vec::new();
        for m in metas {
            let record: CommitRecord =
                serde_json::from_slice(&lake.get_bytes(&m.location).await.unwrap().unwrap())
                    .unwrap();
            for f in &record.files {
                let bytes = lake
                    .get_bytes(&lake.child(&f.path).unwrap())
                    .await
                    .unwrap()
                    .unwrap();
                let reader =
                    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
                        .unwrap()
                        .build()
                        .unwrap();
                for b in reader {
                    let b = b.unwrap();
                    let id = b.column_by_name("id").unwrap();
                    let id = arrow::array::AsArray::as_primitive::<arrow::datatypes::Int64Type>(
                        id.as_ref(),
                    );
                    ids.extend(id.values().iter().copied());
                }
            }
        }
        ids.sort_unstable();
        let want: Vec<i64> = (0..shard.len() as i64).collect();
        assert_eq!(
            ids, want,
            "deliveries {deliveries:?} of positions {steps:?}"
        );
        calls
    }
}
