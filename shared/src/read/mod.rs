//! Chunk readers: JSON Lines, CSV and Parquet, gzip and zstd decompressed as
//! a stream, all fed by byte streams from `object_store`, yielding Arrow
//! batches of the table's declared schema.
//!
//! Memory is bounded and does not grow with the file: one piece of the
//! object stream (object_store yields pieces of at most a few MiB), its
//! decompressed bytes, one partial record (at most `max_record_bytes`) and
//! one batch being built (`batch_rows` rows).

pub mod cdc;
mod csv;
mod frame;
mod inflate;
mod json;
pub(crate) mod parquet_io;
mod records;
mod rows;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::array::RecordBatch;
use arrow::compute::cast;
use arrow::datatypes::SchemaRef;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore};
use parquet::arrow::ProjectionMask;
use parquet::arrow::async_reader::ParquetRecordBatchStreamBuilder;
use tokio::sync::mpsc;

pub use self::csv::CsvDecoder;
pub use self::frame::{Framed, LineFramer, TOO_LONG_HEAD, trim_newline};
pub use self::json::{Discovered, JsonDecoder, MAX_EVOLVED_COLUMNS, evolvable_name, widen};
pub use self::records::RecordIndex;
pub use self::rows::{BatchBuilder, parse_date, parse_timestamp, type_name};

use self::inflate::Inflate;
use crate::config::{Format, Table};
use crate::error::{Error, Result};
use crate::plan::Chunk;

/// One object to read: where it is and what identifies its version.
#[derive(Debug, Clone)]
pub struct SourceObject {
    pub store: Arc<dyn ObjectStore>,
    pub path: Path,
    /// For messages and commit records: `s3://bucket/key`, `file:///…`.
    pub url: String,
    pub size: u64,
    pub e_tag: Option<String>,
    pub version: Option<String>,
    /// When this version of the object was written (RFC 3339), to tell which
    /// of two versions of a key is the newer.
    pub modified: Option<String>,
    /// The S3 event's `sequencer` for this version, where the event named
    /// this very version (its ETag): orders two writes of one key finer
    /// than Last-Modified's second.
    pub sequencer: Option<String>,
}

impl SourceObject {
    /// An object whose version nothing identifies (no ETag, version id,
    /// time written or sequencer): a stream batch, a test's object.
    pub fn new(store: Arc<dyn ObjectStore>, path: Path, url: String, size: u64) -> Self {
        SourceObject {
            store,
            path,
            url,
            size,
            e_tag: None,
            version: None,
            modified: None,
            sequencer: None,
        }
    }

    /// The error of a read of this object; one refused because the object
    /// is no longer the version planned (reads are pinned to its ETag) says
    /// so: the chunk fails rather than mixing two versions' bytes, and the
    /// new version is loaded by its own event.
    pub fn read_error(&self, e: object_store::Error) -> Error {
        match e {
            object_store::Error::Precondition { .. } => Error::read(
                &self.url,
                format!(
                    "the object changed after this chunk was planned (planned ETag {}): this chunk of the earlier version is not loaded; the new version is loaded from its own upload event ({e})",
                    self.e_tag.as_deref().unwrap_or("?")
                ),
            ),
            e => Error::read(&self.url, e),
        }
    }

    /// What identifies this object's version, as commit records and chunk
    /// tasks carry it.
    pub fn source_info(&self) -> crate::commit::SourceInfo {
        crate::commit::SourceInfo {
            url: self.url.clone(),
            size: self.size,
            e_tag: self.e_tag.clone(),
            version: self.version.clone(),
            modified: self.modified.clone(),
            sequencer: self.sequencer.clone(),
        }
    }
}

/// Reader limits.
#[derive(Debug, Clone, Copy)]
pub struct ReadOptions {
    /// Rows per batch handed on.
    pub batch_rows: usize,
    /// How many columns `unknown_fields = "evolve"` may still add to the table.
    pub evolve_room: usize,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            batch_rows: 8192,
            evolve_room: MAX_EVOLVED_COLUMNS,
        }
    }
}

/// What a chunk read took in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadStats {
    /// Records decoded.
    pub rows: u64,
    /// Bytes fetched from the store.
    pub bytes: u64,
    /// Records that could not be decoded or did not fit the schema.
    pub rejected: Vec<QuarantineEntry>,
    /// Values dropped or nulled by the table's contract (unknown fields,
    /// wrong types under `discard_value`) in the records kept.
    pub values_discarded: u64,
    /// Under `unknown_fields = "evolve"`: fields the schema lacks, with their
    /// inferred types. When any are found, no batch is sent after the first
    /// find: the chunk is to be read again with the wider schema.
    pub discovered: Vec<crate::config::Column>,
    /// CDC: Kafka tombstones (null values after deletes) skipped.
    pub tombstones: u64,
}

/// A record set aside: where it was, why, and its raw text.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct QuarantineEntry {
    pub table: String,
    pub source: String,
    pub e_tag: Option<String>,
    /// Byte offset of the record in the (decompressed) object; none for a row
    /// refused after the transform (its partition value cannot be a path).
    pub offset: Option<u64>,
    pub reason: String,
    /// The record as read (invalid UTF-8 replaced).
    pub raw: String,
    /// A stream record's sequence number (Kinesis) or offset (Kafka).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<String>,
}

/// Below this many rejected records a chunk is never failed early; past it,
/// a chunk whose rejected share already exceeds the limit stops at once.
const EARLY_FAIL_AFTER: usize = 1000;

pub(crate) fn too_many_rejected(
    table: &Table,
    file: &str,
    entries: &[QuarantineEntry],
    rows: u64,
    at_end: bool,
) -> Option<Error> {
    let rejected = entries.len();
    let total = rejected as f64 + rows as f64;
    if rejected == 0 || (!at_end && rejected < EARLY_FAIL_AFTER) {
        return None;
    }
    let ratio = rejected as f64 / total;
    (ratio > table.max_rejected_ratio).then(|| {
        Error::read(
            file,
            format!(
                "table '{}': {rejected} of {} records rejected ({:.1}%), more than max_rejected_ratio = {}; the first{}: {}",
                table.name,
                total as u64,
                ratio * 100.0,
                table.max_rejected_ratio,
                entries[0].offset.map_or(String::new(), |o| format!(", at byte {o}")),
                entries[0].reason
            ),
        )
    })
}

/// Where batches go: the transform's input.
pub type BatchSender =
    mpsc::Sender<std::result::Result<RecordBatch, datafusion::error::DataFusionError>>;

/// Read the records of `chunk` of `obj` as batches of the table's schema,
/// sending them to `tx`. Stops early (without error) if the receiver is gone.
/// `progress`, if given, is advanced by the bytes fetched as they arrive.
pub async fn read_chunk(
    table: &Table,
    obj: &SourceObject,
    chunk: Chunk,
    options: ReadOptions,
    tx: &BatchSender,
    progress: Option<&AtomicU64>,
) -> Result<ReadStats> {
    match table.format {
        Format::Parquet => {
            let stats = read_parquet(table, obj, chunk, options, tx).await?;
            if let Some(p) = progress {
                p.fetch_add(stats.bytes, Ordering::Relaxed);
            }
            Ok(stats)
        }
        Format::JsonLines | Format::Csv => {
            read_text(table, obj, chunk, options, tx, progress).await
        }
    }
}

enum TextDecoder {
    Json(JsonDecoder),
    Csv(Box<CsvDecoder>),
}

impl TextDecoder {
    /// The decoder of chunk `chunk` of `obj`: a CSV chunk after the first
    /// reads the file's header first; a DMS full-load file (`full_load`) has
    /// no `Op` column.
    async fn new(
        table: &Table,
        obj: &SourceObject,
        chunk: Chunk,
        builder: &BatchBuilder,
        full_load: bool,
        options: ReadOptions,
    ) -> Result<TextDecoder> {
        let unknown = table.contract.unknown_fields;
        if table.format == Format::JsonLines {
            let mut d = JsonDecoder::new(builder, unknown);
            d.room = options.evolve_room;
            return Ok(TextDecoder::Json(d));
        }
        let header = if table.csv.header && chunk.start > 0 {
            Some(first_line(obj, table.max_record_bytes).await?)
        } else {
            None
        };
        let mut d = CsvDecoder::with_contract(
            &table.csv,
            builder,
            header.as_deref(),
            unknown,
            options.evolve_room,
        )
        .map_err(|e| Error::read(&obj.url, e))?;
        if !table.csv.header && full_load {
            // A DMS full-load file: the columns after `Op`, without it.
            d.map_from(1, builder.columns().len());
        }
        d.max_record = table.max_record_bytes;
        Ok(TextDecoder::Csv(Box::new(d)))
    }

    fn line(&mut self, line: &[u8], out: &mut BatchBuilder) -> std::result::Result<bool, String> {
        match self {
            TextDecoder::Json(d) => d.decode_line(trim_newline(line), out),
            TextDecoder::Csv(d) => d.decode_line(line, out),
        }
    }

    fn discovered(&self) -> &Discovered {
        match self {
            TextDecoder::Json(d) => &d.discovered,
            TextDecoder::Csv(d) => &d.discovered,
        }
    }
}

/// The first line of an object (a CSV header), read in small ranges.
pub async fn first_line(obj: &SourceObject, max_record_bytes: usize) -> Result<Vec<u8>> {
    let mut line = Vec::new();
    let mut offset = 0u64;
    let step = 64 * 1024u64;
    while offset < obj.size {
        let end = (offset + step).min(obj.size);
        let options = GetOptions {
            range: Some((offset..end).into()),
            if_match: obj.e_tag.clone(),
            ..Default::default()
        };
        let bytes = async { obj.store.get_opts(&obj.path, options).await?.bytes().await }
            .await
            .map_err(|e| obj.read_error(e))?;
        if let Some(i) = memchr::memchr(b'\n', &bytes) {
            line.extend_from_slice(&bytes[..=i]);
            return Ok(line);
        }
        line.extend_from_slice(&bytes);
        if line.len() > max_record_bytes {
            return Err(Error::read(
                &obj.url,
                "the header line is longer than the record limit",
            ));
        }
        offset = end;
    }
    Ok(line)
}

struct LineSink {
    decoder: TextDecoder,
    /// A Debezium table's settings: each line is a change event.
    debezium: Option<crate::config::Cdc>,
    tombstones: u64,
    builder: BatchBuilder,
    rows: u64,
    rejected: Vec<QuarantineEntry>,
    table: String,
    source: String,
    e_tag: Option<String>,
    max_record_bytes: usize,
}

impl LineSink {
    fn new(table: &Table, obj: &SourceObject, decoder: TextDecoder, builder: BatchBuilder) -> Self {
        LineSink {
            decoder,
            debezium: table
                .cdc
                .clone()
                .filter(|c| c.envelope == crate::config::Envelope::Debezium),
            tombstones: 0,
            builder,
            rows: 0,
            rejected: Vec::new(),
            table: table.name.clone(),
            source: obj.url.clone(),
            e_tag: obj.e_tag.clone(),
            max_record_bytes: table.max_record_bytes,
        }
    }

    /// The file `obj` ended: take what `inflate` still holds, the last line
    /// without its newline, and a CSV record left open.
    fn end_of_file(
        &mut self,
        mut inflate: Inflate,
        mut framer: LineFramer,
        obj: &SourceObject,
    ) -> Result<()> {
        let file = obj.url.as_str();
        let tail = inflate.finish().map_err(|e| {
            Error::read(
                file,
                format!("cannot decompress (is the file cut short?): {e}"),
            )
        })?;
        framer.push(&tail, &mut |l, o| self.line(l, o))?;
        framer.finish(&mut |l, o| self.line(l, o))?;
        if let TextDecoder::Csv(d) = &mut self.decoder {
            match d.finish(&mut self.builder) {
                Ok(true) => self.rows += 1,
                Ok(false) => {}
                Err(m) if d.bad_header() => return Err(Error::read(file, m)),
                Err(m) => self.reject(b"", obj.size, m),
            }
        }
        Ok(())
    }

    fn line(&mut self, framed: Framed<'_>, offset: u64) -> std::result::Result<(), Error> {
        let line = match framed {
            Framed::Line(line) => line,
            Framed::TooLong { head, len } => {
                let reason = format!(
                    "the record is {len} bytes, longer than max_record_size ({} bytes); its first {} bytes are kept here",
                    self.max_record_bytes,
                    head.len()
                );
                self.reject(head, offset, reason);
                return Ok(());
            }
        };
        if let Some(cdc) = &self.debezium {
            let flat = match cdc::debezium(trim_newline(line), cdc) {
                Ok(cdc::Decoded::Tombstone) => {
                    self.tombstones += 1;
                    return Ok(());
                }
                Ok(cdc::Decoded::Changes(flat)) => flat,
                Err(_) if trim_newline(line).iter().all(u8::is_ascii_whitespace) => {
                    return Ok(());
                }
                Err(reason) => {
                    self.reject(trim_newline(line), offset, reason);
                    return Ok(());
                }
            };
            let before = self.builder.rows();
            for change in &flat {
                match self.decoder.line(change, &mut self.builder) {
                    Ok(_) => {}
                    Err(reason) => {
                        // A key change whose new row does not fit: its
                        // delete (decoded first) stands, the event is
                        // quarantined with the reason.
                        self.rows += (self.builder.rows() - before) as u64;
                        self.reject(trim_newline(line), offset, reason);
                        return Ok(());
                    }
                }
            }
            self.rows += (self.builder.rows() - before) as u64;
            return Ok(());
        }
        match self.decoder.line(line, &mut self.builder) {
            Ok(true) => {
                self.rows += 1;
                Ok(())
            }
            Ok(false) => Ok(()),
            Err(reason) if matches!(&self.decoder, TextDecoder::Csv(d) if d.bad_header()) => {
                Err(Error::read(&self.source, reason))
            }
            Err(reason) => {
                // A record of several lines given up on (an unclosed quote)
                // is quarantined whole, at the offset of its first line.
                let abandoned = match &mut self.decoder {
                    TextDecoder::Csv(d) => d.take_abandoned(),
                    TextDecoder::Json(_) => Vec::new(),
                };
                if abandoned.len() > line.len() {
                    let start = offset.saturating_sub((abandoned.len() - line.len()) as u64);
                    self.reject(trim_newline(&abandoned), start, reason);
                } else {
                    self.reject(trim_newline(line), offset, reason);
                }
                Ok(())
            }
        }
    }

    fn stats(self, bytes: u64) -> ReadStats {
        ReadStats {
            rows: self.rows,
            bytes,
            rejected: self.rejected,
            values_discarded: self.builder.discarded,
            tombstones: self.tombstones,
            discovered: self
                .decoder
                .discovered()
                .iter()
                .map(|(name, ty)| crate::config::Column {
                    name: name.clone(),
                    ty: *ty,
                })
                .collect(),
        }
    }

    fn reject(&mut self, raw: &[u8], offset: u64, reason: String) {
        let entry = QuarantineEntry {
            table: self.table.clone(),
            source: self.source.clone(),
            e_tag: self.e_tag.clone(),
            offset: Some(offset),
            reason,
            raw: String::from_utf8_lossy(raw).into_owned(),
            record: None,
        };
        self.rejected.push(entry);
    }
}

async fn read_text(
    table: &Table,
    obj: &SourceObject,
    chunk: Chunk,
    options: ReadOptions,
    tx: &BatchSender,
    progress: Option<&AtomicU64>,
) -> Result<ReadStats> {
    let file = obj.url.as_str();
    let codec = table.codec_for(obj.path.as_ref());
    let builder = BatchBuilder::new(table.reader_schema(), &table.columns)
        .with_checks(table.contract.wrong_type, &table.rules);
    let mut stager = cdc::Stager::new(table, file, obj.modified.as_deref(), chunk.start);
    let full_load = stager.as_ref().is_some_and(|s| s.full_load());
    let decoder = TextDecoder::new(table, obj, chunk, &builder, full_load, options).await?;
    let mut sink = LineSink::new(table, obj, decoder, builder);
    let mut inflate = Inflate::new(codec).map_err(|e| Error::read(file, e))?;
    let from = LineFramer::read_from(chunk.start);
    let mut framer = LineFramer::new(chunk.start, chunk.end, table.max_record_bytes);
    let mut bytes = 0u64;
    if from >= obj.size {
        return Ok(ReadStats::default());
    }
    let get = obj
        .store
        .get_opts(
            &obj.path,
            GetOptions {
                range: Some(GetRange::Offset(from)),
                if_match: obj.e_tag.clone(),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| obj.read_error(e))?;
    let mut stream = get.into_stream();
    let mut ended = false;
    while !framer.is_done() {
        let piece = match stream.next().await {
            Some(p) => p.map_err(|e| Error::read(file, e))?,
            None => {
                ended = true;
                break;
            }
        };
        bytes += piece.len() as u64;
        if let Some(p) = progress {
            p.fetch_add(piece.len() as u64, Ordering::Relaxed);
        }
        inflate.feed(piece);
        // A piece of inflated bytes at a time, each decoded (and its rows
        // handed on) before the next is made: memory stays bounded however
        // far a read inflates.
        while !framer.is_done() {
            let data = inflate
                .next()
                .map_err(|e| Error::read(file, format!("cannot decompress: {e}")))?;
            let Some(data) = data else {
                break;
            };
            framer.push(data, &mut |l, o| sink.line(l, o))?;
            if let Some(e) = too_many_rejected(table, file, &sink.rejected, sink.rows, false) {
                return Err(e);
            }
            if sink.builder.rows() >= options.batch_rows {
                let batch = staged(&mut stager, sink.builder.finish_batch(), file)?;
                // Once a field to evolve is found, the chunk will be read
                // again: stop handing on rows, keep reading to find every
                // such field.
                if sink.decoder.discovered().is_empty() && tx.send(Ok(batch)).await.is_err() {
                    return Ok(sink.stats(bytes));
                }
            }
        }
    }
    drop(stream);
    if ended {
        sink.end_of_file(inflate, framer, obj)?;
    }
    if let Some(e) = too_many_rejected(table, file, &sink.rejected, sink.rows, true) {
        return Err(e);
    }
    if sink.builder.rows() > 0 && sink.decoder.discovered().is_empty() {
        let batch = staged(&mut stager, sink.builder.finish_batch(), file)?;
        let _ = tx.send(Ok(batch)).await;
    }
    Ok(sink.stats(bytes))
}

/// Read one chunk whole: what [`read_chunk`] returned and every batch it
/// handed on, in order (for tests and fuzzing: memory holds the chunk).
pub async fn read_chunk_whole(
    table: &Table,
    obj: &SourceObject,
    chunk: Chunk,
    options: ReadOptions,
) -> (
    Result<ReadStats>,
    Vec<std::result::Result<RecordBatch, datafusion::error::DataFusionError>>,
) {
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
    let reader = async {
        let r = read_chunk(table, obj, chunk, options, &tx, None).await;
        drop(tx);
        r
    };
    let collect = async {
        let mut out = Vec::new();
        while let Some(b) = rx.recv().await {
            out.push(b);
        }
        out
    };
    futures::join!(reader, collect)
}

/// A CDC table's read batch as staged changes; any other table's as it is.
fn staged(stager: &mut Option<cdc::Stager>, batch: RecordBatch, file: &str) -> Result<RecordBatch> {
    match stager {
        Some(s) => s.stage(&batch, file),
        None => Ok(batch),
    }
}

/// Row groups of a Parquet file as `(start offset, compressed size)`, for planning.
pub async fn parquet_row_groups(obj: &SourceObject) -> Result<Vec<(u64, u64)>> {
    let reader = parquet_io::ObjectReader::new(obj);
    let builder = ParquetRecordBatchStreamBuilder::new(reader)
        .await
        .map_err(|e| Error::read(&obj.url, format!("not a readable Parquet file: {e}")))?;
    Ok(builder
        .metadata()
        .row_groups()
        .iter()
        .map(|rg| (row_group_start(rg), rg.compressed_size() as u64))
        .collect())
}

fn row_group_start(rg: &parquet::file::metadata::RowGroupMetaData) -> u64 {
    rg.columns()
        .iter()
        .map(|c| c.byte_range().0)
        .min()
        .unwrap_or(0)
}

async fn read_parquet(
    table: &Table,
    obj: &SourceObject,
    chunk: Chunk,
    options: ReadOptions,
    tx: &BatchSender,
) -> Result<ReadStats> {
    let file = obj.url.as_str();
    let reader = parquet_io::ObjectReader::new(obj);
    let builder = ParquetRecordBatchStreamBuilder::new(reader)
        .await
        .map_err(|e| Error::read(file, format!("not a readable Parquet file: {e}")))?;
    let selected: Vec<usize> = builder
        .metadata()
        .row_groups()
        .iter()
        .enumerate()
        .filter(|(_, rg)| (chunk.start..chunk.end).contains(&row_group_start(rg)))
        .map(|(i, _)| i)
        .collect();
    let file_schema = builder.schema().clone();
    let target: SchemaRef = table.reader_schema();
    let mut stager = cdc::Stager::new(table, file, obj.modified.as_deref(), chunk.start);
    let mut roots = Vec::new();
    for f in target.fields() {
        if stager.is_some()
            && f.name() == crate::config::DMS_OP
            && file_schema.index_of(f.name()).is_err()
        {
            // A DMS full-load file has no `Op`: its rows are inserts.
            continue;
        }
        let i = file_schema.index_of(f.name()).map_err(|_| {
            Error::read(
                file,
                format!(
                    "table '{}': the file has no column '{}'",
                    table.name,
                    f.name()
                ),
            )
        })?;
        roots.push(i);
    }
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots.iter().copied());
    let mut stream = builder
        .with_row_groups(selected)
        .with_projection(mask)
        .with_batch_size(options.batch_rows)
        .build()
        .map_err(|e| Error::read(file, e))?;
    let mut stats = ReadStats::default();
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(|e| Error::read(file, e))?;
        let mut columns = Vec::with_capacity(target.fields().len());
        for f in target.fields() {
            let Some(col) = batch.column_by_name(f.name()) else {
                columns.push(arrow::array::new_null_array(
                    f.data_type(),
                    batch.num_rows(),
                ));
                continue;
            };
            let col = cast(col, f.data_type()).map_err(|e| {
                Error::read(
                    file,
                    format!(
                        "table '{}', field '{}': cannot read {} as {}: {e}",
                        table.name,
                        f.name(),
                        col.data_type(),
                        f.data_type()
                    ),
                )
            })?;
            columns.push(col);
        }
        let out =
            RecordBatch::try_new(target.clone(), columns).map_err(|e| Error::read(file, e))?;
        let out = staged(&mut stager, out, file)?;
        stats.rows += out.num_rows() as u64;
        if tx.send(Ok(out)).await.is_err() {
            break;
        }
    }
    stats.bytes = if chunk.end == u64::MAX {
        obj.size
    } else {
        chunk.end.min(obj.size) - chunk.start
    };
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};
    use object_store::memory::InMemory;
    use object_store::{ObjectStoreExt, PutPayload};

    /// A Parquet file of one int64 column `id` holding `ids`.
    fn parquet_of(ids: &[i64]) -> Vec<u8> {
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true)]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(Int64Array::from(ids.to_vec()))],
        )
        .unwrap();
        let mut buf = Vec::new();
        let mut w = parquet::arrow::ArrowWriter::try_new(&mut buf, schema, None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        buf
    }

    /// A chunk of an object overwritten (with bytes of the same size) after
    /// it was planned fails, saying the object changed, for text and for
    /// Parquet: it never reads part of one version and part of another.
    #[tokio::test]
    async fn a_chunk_of_an_object_overwritten_after_it_was_planned_fails() {
        let pipeline = crate::config::Pipeline::from_toml(
            "[[tables]]\nname = \"t\"\nsource = \"t/\"\nformat = \"jsonl\"\n[tables.schema]\nid = \"int64\"\n\n[[tables]]\nname = \"p\"\nsource = \"p/\"\nformat = \"parquet\"\n[tables.schema]\nid = \"int64\"\n",
        )
        .unwrap();
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        for (table, name, first, second) in [
            (
                &pipeline.tables[0],
                "t/b.jsonl",
                b"{\"id\":1}\n{\"id\":2}\n".to_vec(),
                b"{\"id\":3}\n{\"id\":4}\n".to_vec(),
            ),
            (
                &pipeline.tables[1],
                "p/b.parquet",
                parquet_of(&[1, 2]),
                parquet_of(&[3, 4]),
            ),
        ] {
            let path = Path::from(name);
            let put = store
                .put(&path, PutPayload::from(first.clone()))
                .await
                .unwrap();
            let obj = SourceObject {
                store: store.clone(),
                path: path.clone(),
                url: format!("memory://{name}"),
                size: first.len() as u64,
                e_tag: put.e_tag,
                version: None,
                modified: None,
                sequencer: None,
            };
            let chunk = Chunk {
                index: 0,
                start: 0,
                end: first.len() as u64,
            };
            // As planned: read.
            let (r, _) = read_chunk_whole(table, &obj, chunk, ReadOptions::default()).await;
            r.unwrap();
            // Overwritten since: refused.
            store.put(&path, PutPayload::from(second)).await.unwrap();
            let (r, _) = read_chunk_whole(table, &obj, chunk, ReadOptions::default()).await;
            let e = r.expect_err("a changed object").to_string();
            assert!(
                e.contains(name) && e.to_lowercase().contains("precondition"),
                "{name}: {e}"
            );
        }
    }
}
