//! Writing a chunk's rows as Parquet, one file per partition, rolling to a
//! new file at the target size. File names are deterministic:
//! `<table>/<partition path>/part-<chunk id>-<seq>.parquet`.
//!
//! Each file is written through object_store's `BufWriter`: a single PUT for a small
//! file, a multipart upload completed at the end for a large one, so readers
//! never see half a file.

use std::collections::{HashMap, HashSet};

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::SchemaRef;
use arrow::datatypes::{DataType, Int64Type};
use futures::StreamExt;
use object_store::buffered::BufWriter;
use parquet::arrow::AsyncArrowWriter;
use parquet::basic::Encoding;
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterPropertiesBuilder};
use parquet::schema::types::ColumnPath;

use crate::commit::FileInfo;
use crate::config::ParquetOptions;
use crate::error::{Error, Result};
use crate::partition::{PartitionSlice, partition_path};
use crate::store::{Location, REQUESTS_AT_ONCE};

/// Writer settings for a table.
pub fn writer_properties(o: &ParquetOptions) -> WriterProperties {
    writer_builder(o).build()
}

fn writer_builder(o: &ParquetOptions) -> WriterPropertiesBuilder {
    WriterProperties::builder()
        .set_compression(o.compression)
        .set_max_row_group_row_count(Some(o.row_group_rows))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_created_by(format!("sluice {}", env!("CARGO_PKG_VERSION")))
}

/// Bytes an open file buffers before its upload turns multipart, and the
/// part size: S3's minimum part size. Every open file of a chunk may hold
/// this much on top of its row group (object_store's default is 10 MB: 560 MB
/// for a chunk touching 56 partitions).
pub const UPLOAD_BUFFER: usize = 5 * 1024 * 1024;

/// The most memory a chunk's open files may hold in buffered row groups.
pub const BUFFER_BUDGET: usize = 128 * 1024 * 1024;

/// Below this many rows a sample says too little to change the encodings.
const MIN_SAMPLE_ROWS: usize = 1000;
/// A column whose values are more distinct than this share of a sample is
/// written without a dictionary (a dictionary of unique values only adds its
/// indices); integers and timestamps among them use delta encoding.
const DICTIONARY_MAX_DISTINCT: f64 = 0.5;
/// The most distinct values a sample's count reserves room for up front (a
/// batch's worth; growing the set took 5% of a stream batch). A Delta merge
/// samples every row it writes, in one batch, and a column of few values
/// should not reserve room for half their number.
const SAMPLE_SET_ROOM: usize = 1 << 14;

/// Writer settings for a table, with per-column encodings chosen from a
/// sample of its rows: no dictionary for nearly-unique columns (ids, hashes,
/// timestamps), delta encoding for such integer columns. Deterministic: the
/// same sample gives the same settings, so a retried chunk writes the same bytes.
pub fn writer_properties_for(o: &ParquetOptions, sample: &RecordBatch) -> WriterProperties {
    let mut b = writer_builder(o);
    if sample.num_rows() < MIN_SAMPLE_ROWS {
        return b.build();
    }
    for (field, column) in sample.schema().fields().iter().zip(sample.columns()) {
        if nearly_unique(column.as_ref()) != Some(true) {
            continue;
        }
        let path = ColumnPath::from(field.name().as_str());
        b = b.set_column_dictionary_enabled(path.clone(), false);
        if matches!(
            field.data_type(),
            DataType::Int32 | DataType::Int64 | DataType::Timestamp(_, _) | DataType::Date32
        ) {
            b = b.set_column_encoding(path, Encoding::DELTA_BINARY_PACKED);
        }
    }
    b.build()
}

/// Whether more than [`DICTIONARY_MAX_DISTINCT`] of a column's non-null
/// values are distinct, for the column types that can take a dictionary;
/// `None` for others or an all-null column. Counting stops once the answer
/// is known, so a unique column is read only halfway; with SipHash and the
/// whole column counted, this took 12% of a stream batch, whose every batch
/// is a chunk and so a sample.
fn nearly_unique(column: &dyn Array) -> Option<bool> {
    fn over<T: std::hash::Hash + Eq>(
        values: impl Iterator<Item = Option<T>>,
        non_null: usize,
    ) -> Option<bool> {
        if non_null == 0 {
            return None;
        }
        // distinct / non_null > MAX  <=>  distinct > floor(non_null * MAX)
        let limit = (non_null as f64 * DICTIONARY_MAX_DISTINCT) as usize;
        let mut seen: HashSet<T, foldhash::fast::FixedState> =
            HashSet::with_capacity_and_hasher((limit + 1).min(SAMPLE_SET_ROOM), Default::default());
        for v in values.flatten() {
            if seen.insert(v) && seen.len() > limit {
                return Some(true);
            }
        }
        Some(false)
    }
    let non_null = column.len() - column.null_count();
    match column.data_type() {
        DataType::Utf8 => over(column.as_string::<i32>().iter(), non_null),
        DataType::LargeUtf8 => over(column.as_string::<i64>().iter(), non_null),
        DataType::Utf8View => over(column.as_string_view().iter(), non_null),
        DataType::Int32 | DataType::Date32 | DataType::Int64 | DataType::Timestamp(_, _) => over(
            cast_i64(column)?.as_primitive::<Int64Type>().iter(),
            non_null,
        ),
        _ => None,
    }
}

fn cast_i64(column: &dyn Array) -> Option<ArrayRef> {
    arrow::compute::cast(column, &DataType::Int64).ok()
}

/// Finish `file` (its last row group and footer, then its upload) and
/// describe it.
async fn close_file(file: OpenFile, schema: &SchemaRef) -> Result<FileInfo> {
    let OpenFile {
        mut writer,
        relative,
        values,
        partition_path,
        rows,
    } = file;
    let footer = writer
        .finish()
        .await
        .map_err(|e| Error::write(&relative, e))?;
    let bytes = writer.bytes_written() as u64;
    Ok(FileInfo {
        stats: Some(crate::stats::from_footer(&footer, schema)),
        path: relative,
        partition: values,
        partition_path,
        rows,
        bytes,
    })
}

struct OpenFile {
    writer: AsyncArrowWriter<BufWriter>,
    relative: String,
    values: Vec<Option<String>>,
    partition_path: String,
    rows: u64,
}

/// The open files of one chunk.
pub struct ChunkWriter {
    lake: Location,
    table: String,
    chunk_id: String,
    keys: Vec<String>,
    schema: SchemaRef,
    options: ParquetOptions,
    /// Chosen from the first batch ([`ChunkWriter::sample`]); the table's defaults until then.
    props: WriterProperties,
    sampled: bool,
    target_bytes: u64,
    budget: usize,
    open: HashMap<String, OpenFile>,
    seq: HashMap<String, u32>,
    done: Vec<FileInfo>,
}

impl ChunkWriter {
    pub fn new(
        lake: &Location,
        table: &str,
        chunk_id: &str,
        keys: &[String],
        schema: SchemaRef,
        options: &ParquetOptions,
    ) -> Self {
        ChunkWriter {
            lake: lake.clone(),
            table: table.to_string(),
            chunk_id: chunk_id.to_string(),
            keys: keys.to_vec(),
            schema,
            props: writer_properties(options),
            options: options.clone(),
            sampled: false,
            budget: BUFFER_BUDGET,
            target_bytes: options.target_file_bytes,
            open: HashMap::new(),
            seq: HashMap::new(),
            done: Vec::new(),
        }
    }

    /// Use another memory budget than [`BUFFER_BUDGET`].
    pub fn with_buffer_budget(mut self, bytes: usize) -> Self {
        self.budget = bytes;
        self
    }

    /// Choose the column encodings from the chunk's first batch of output
    /// (before it is split by partition); later calls do nothing, so every
    /// file of the chunk uses the same settings.
    pub fn sample(&mut self, batch: &RecordBatch) {
        if self.sampled {
            return;
        }
        self.sampled = true;
        self.props = writer_properties_for(&self.options, batch);
    }

    /// Write one partition's rows.
    pub async fn write(&mut self, slice: PartitionSlice) -> Result<()> {
        if slice.batch.num_rows() == 0 {
            return Ok(());
        }
        let ppath = partition_path(&self.keys, &slice.values);
        if !self.open.contains_key(&ppath) {
            let seq = self.seq.entry(ppath.clone()).or_insert(0);
            let name = format!("part-{}-{:05}.parquet", self.chunk_id, *seq);
            *seq += 1;
            let relative = if ppath.is_empty() {
                format!("{}/{name}", self.table)
            } else {
                format!("{}/{ppath}/{name}", self.table)
            };
            let path = self.lake.child(&relative)?;
            let writer = AsyncArrowWriter::try_new(
                BufWriter::with_capacity(self.lake.store.clone(), path, UPLOAD_BUFFER),
                self.schema.clone(),
                Some(self.props.clone()),
            )
            .map_err(|e| Error::write(&relative, e))?;
            self.open.insert(
                ppath.clone(),
                OpenFile {
                    writer,
                    relative,
                    values: slice.values.clone(),
                    partition_path: ppath.clone(),
                    rows: 0,
                },
            );
        }
        let file = self.open.get_mut(&ppath).expect("opened above");
        file.writer
            .write(&slice.batch)
            .await
            .map_err(|e| Error::write(&file.relative, e))?;
        file.rows += slice.batch.num_rows() as u64;
        let size = file.writer.bytes_written() + file.writer.in_progress_size();
        if size as u64 >= self.target_bytes {
            let file = self.open.remove(&ppath).expect("present");
            let info = close_file(file, &self.schema).await?;
            self.done.push(info);
        }
        Ok(())
    }

    /// Call after the slices of each batch: bounds the memory of the open
    /// files (checking after every slice took 2% of an ingest).
    pub async fn end_batch(&mut self) -> Result<()> {
        self.keep_within_budget().await
    }

    /// Bound the memory of the open files: while their buffered row groups
    /// together take more than [`BUFFER_BUDGET`], end the largest one's row
    /// group early (it goes to storage; the file stays open). A chunk that
    /// touches many partitions then writes more, smaller row groups instead
    /// of holding its whole output in memory.
    async fn keep_within_budget(&mut self) -> Result<()> {
        loop {
            let mut total = 0usize;
            let mut largest: Option<(&String, usize)> = None;
            for (k, f) in &self.open {
                let m = f.writer.memory_size();
                total += m;
                // Only a file with buffered rows can give memory back.
                if f.writer.in_progress_rows() > 0 && largest.is_none_or(|(_, l)| m > l) {
                    largest = Some((k, m));
                }
            }
            let Some((key, _)) = largest else {
                return Ok(());
            };
            if total <= self.budget {
                return Ok(());
            }
            let key = key.clone();
            let file = self.open.get_mut(&key).expect("present");
            file.writer
                .flush()
                .await
                .map_err(|e| Error::write(&file.relative, e))?;
        }
    }

    /// Close every open file; the files written, in a stable order. Up to
    /// [`REQUESTS_AT_ONCE`] files close at once: closing a file is mostly its
    /// upload, one request to storage, and a stream batch or a chunk spread
    /// over many partitions ends with one file open for each.
    ///
    /// After a failure no further file starts closing, but those already
    /// closing finish before the error is returned: an upload dropped halfway
    /// may still land after the caller has deleted the chunk's files, and
    /// stay there, in no commit record.
    pub async fn finish(mut self) -> Result<Vec<FileInfo>> {
        let schema = self.schema.clone();
        let mut waiting = std::mem::take(&mut self.open).into_values();
        let mut closing = futures::stream::FuturesUnordered::new();
        let mut failed = None;
        loop {
            while failed.is_none() && closing.len() < REQUESTS_AT_ONCE {
                let Some(file) = waiting.next() else { break };
                closing.push(close_file(file, &schema));
            }
            match closing.next().await {
                Some(Ok(info)) => self.done.push(info),
                Some(Err(e)) => {
                    failed.get_or_insert(e);
                }
                None => break,
            }
        }
        if let Some(e) = failed {
            return Err(e);
        }
        let mut done = std::mem::take(&mut self.done);
        done.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(done)
    }

    /// Paths of every file started so far (for clean-up after a failure).
    pub fn started(&self) -> Vec<String> {
        self.done
            .iter()
            .map(|f| f.path.clone())
            .chain(self.open.values().map(|f| f.relative.clone()))
            .collect()
    }
}

/// The file name of compaction output `id` in partition folder `folder`
/// (`part-m<id>-00000.parquet`: `m` is no hex digit, so no chunk's file has
/// such a name).
pub fn compaction_output_name(folder: &str, id: &str) -> String {
    format!("{folder}/part-m{id}-00000.parquet")
}

/// The id of a compaction output's file name, read back from its path
/// (`None` for a chunk's file).
pub fn compaction_output_id(path: &str) -> Option<&str> {
    path.rsplit('/')
        .next()?
        .strip_prefix("part-m")?
        .strip_suffix(".parquet")?
        .rsplit_once('-')
        .map(|(id, _)| id)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{Field, Schema};

    use super::*;

    fn options() -> ParquetOptions {
        crate::config::Pipeline::from_toml(
            "[[tables]]\nname = \"t\"\nsource = \"t/\"\nformat = \"jsonl\"\n[tables.schema]\na = \"string\"\n",
        )
        .unwrap()
        .tables[0]
            .parquet
            .clone()
    }

    #[test]
    fn nearly_unique_columns_get_no_dictionary_and_integers_get_delta() {
        let n = 5000;
        let batch = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("id", DataType::Utf8, false),
                Field::new("country", DataType::Utf8, false),
                Field::new("seq", DataType::Int64, false),
            ])),
            vec![
                Arc::new(StringArray::from_iter_values(
                    (0..n).map(|i| format!("id-{i}")),
                )),
                Arc::new(StringArray::from_iter_values(
                    (0..n).map(|i| ["de", "fr", "gb"][i % 3]),
                )),
                Arc::new(Int64Array::from_iter_values(0..n as i64)),
            ],
        )
        .unwrap();
        let props = writer_properties_for(&options(), &batch);
        let col = |n: &str| ColumnPath::from(n);
        assert!(!props.dictionary_enabled(&col("id")));
        assert!(props.dictionary_enabled(&col("country")));
        assert!(!props.dictionary_enabled(&col("seq")));
        assert_eq!(
            props.encoding(&col("seq")),
            Some(Encoding::DELTA_BINARY_PACKED)
        );
        assert_eq!(props.encoding(&col("id")), None);
        // Too small a sample changes nothing.
        let small = writer_properties_for(&options(), &batch.slice(0, 10));
        assert!(small.dictionary_enabled(&col("id")));
    }

    /// The line is "more than half the non-null values distinct": exactly
    /// half keeps the dictionary, one more value drops it, and nulls count
    /// in neither the values nor the distinct ones.
    #[test]
    fn the_dictionary_goes_past_half_the_non_null_values_distinct() {
        let col = |n: &str| ColumnPath::from(n);
        let dictionary = |values: Vec<Option<String>>| {
            let batch = RecordBatch::try_new(
                Arc::new(Schema::new(vec![Field::new("v", DataType::Utf8, true)])),
                vec![Arc::new(StringArray::from(values))],
            )
            .unwrap();
            writer_properties_for(&options(), &batch).dictionary_enabled(&col("v"))
        };
        // 2,000 values: value i % d, so d distinct ones, then 1,001 nulls.
        let column = |distinct: usize| {
            (0..2000)
                .map(|i| Some(format!("v{}", i % distinct)))
                .chain((0..1001).map(|_| None))
                .collect::<Vec<_>>()
        };
        assert!(dictionary(column(1000)), "exactly half distinct");
        assert!(!dictionary(column(1001)), "one more than half");
        assert!(!dictionary(column(2000)), "all distinct");
        assert!(dictionary(column(3)), "three values");
        // All null: nothing to judge by, the default stays.
        assert!(dictionary(vec![None; 1500]));
    }

    #[tokio::test]
    async fn a_small_budget_ends_row_groups_early_and_keeps_every_row() {
        use crate::partition::PartitionSlice;
        use object_store::ObjectStoreExt;
        use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
        let lake = Location::memory();
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Utf8, false)]));
        let mut w = ChunkWriter::new(&lake, "t", "c", &["k".into()], schema.clone(), &options())
            .with_buffer_budget(64 * 1024);
        for round in 0..20 {
            for part in ["a", "b", "c"] {
                let batch = RecordBatch::try_new(
                    schema.clone(),
                    vec![Arc::new(StringArray::from_iter_values(
                        (0..2000).map(|i| format!("{part}-{round}-{i}-padding-padding")),
                    ))],
                )
                .unwrap();
                w.write(PartitionSlice {
                    values: vec![Some(part.into())],
                    batch,
                })
                .await
                .unwrap();
            }
            w.end_batch().await.unwrap();
        }
        let files = w.finish().await.unwrap();
        assert_eq!(files.len(), 3);
        for f in files {
            assert_eq!(f.rows, 40_000);
            let bytes = lake
                .store
                .get(&lake.child(&f.path).unwrap())
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            let reader = ParquetRecordBatchReaderBuilder::try_new(bytes).unwrap();
            assert!(reader.metadata().num_row_groups() > 1, "{}", f.path);
            let rows: usize = reader.build().unwrap().map(|b| b.unwrap().num_rows()).sum();
            assert_eq!(rows, 40_000);
        }
    }

    /// A lake in memory behind a fault store that runs `hook` before every
    /// call; and the memory lake itself, to read what landed.
    fn lake_with_hook(
        faults: crate::fault::Faults,
        hook: crate::fault::Hook,
    ) -> (Location, Location, Arc<crate::fault::FaultyStore>) {
        let memory = Location::memory();
        let faulty =
            Arc::new(crate::fault::FaultyStore::new(memory.store.clone(), faults).with_hook(hook));
        let lake = Location {
            store: faulty.clone(),
            ..memory.clone()
        };
        (lake, memory, faulty)
    }

    /// A writer with one file open in each of `parts` partitions (`k=p00`,
    /// `k=p01`, …) of one `n` column, holding `rows(part)`.
    async fn write_partitions(
        lake: &Location,
        parts: i64,
        rows: impl Fn(i64) -> Vec<i64>,
    ) -> ChunkWriter {
        use crate::partition::PartitionSlice;
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let mut w = ChunkWriter::new(lake, "t", "c", &["k".into()], schema.clone(), &options());
        for part in 0..parts {
            let column = Arc::new(Int64Array::from(rows(part)));
            let batch = RecordBatch::try_new(schema.clone(), vec![column]).unwrap();
            w.write(PartitionSlice {
                values: vec![Some(format!("p{part:02}"))],
                batch,
            })
            .await
            .unwrap();
        }
        w
    }

    #[tokio::test]
    async fn the_files_of_a_chunk_close_at_once_each_described_by_its_own_footer() {
        use std::sync::atomic::{AtomicUsize, Ordering};

        use futures::FutureExt;
        use object_store::ObjectStoreExt;

        use crate::fault::{Faults, Hook};
        // Every request waits 20 ms as on S3; count how many wait at once.
        let waiting = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let hook: Hook = {
            let (waiting, most) = (waiting.clone(), most.clone());
            Arc::new(move |_| {
                let (waiting, most) = (waiting.clone(), most.clone());
                async move {
                    let now = waiting.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    waiting.fetch_sub(1, Ordering::SeqCst);
                }
                .boxed()
            })
        };
        let (lake, memory, _) = lake_with_hook(Faults::None, hook);
        let parts = 40i64;
        let w = write_partitions(&lake, parts, |part| {
            (0..=part).map(|i| part * 1000 + i).collect()
        })
        .await;
        let files = w.finish().await.unwrap();
        assert_eq!(most.load(Ordering::SeqCst), REQUESTS_AT_ONCE);
        assert_eq!(files.len(), parts as usize);
        // In order of path, each with its own partition, rows and bytes.
        for (part, f) in (0..parts).zip(&files) {
            let value = format!("p{part:02}");
            assert_eq!(f.path, format!("t/k={value}/part-c-00000.parquet"));
            assert_eq!(f.partition, vec![Some(value.clone())]);
            assert_eq!(f.partition_path, format!("k={value}"));
            assert_eq!(f.rows, part as u64 + 1);
            let bytes = memory
                .store
                .get(&memory.child(&f.path).unwrap())
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            assert_eq!(f.bytes, bytes.len() as u64, "{}", f.path);
            let stats = f.stats.as_ref().unwrap();
            assert_eq!(stats.num_records, part as u64 + 1);
            assert_eq!(stats.min_values["n"], serde_json::json!(part * 1000));
            assert_eq!(stats.max_values["n"], serde_json::json!(part * 1000 + part));
        }
    }

    #[tokio::test]
    async fn after_a_failed_close_the_uploads_under_way_finish_and_no_more_start() {
        use futures::FutureExt;

        use crate::fault::{Faults, Hook};
        // Call 3 fails at once; every other waits 20 ms, as on S3.
        let hook: Hook = Arc::new(|n| {
            async move {
                if n != 3 {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
            }
            .boxed()
        });
        let (lake, memory, faulty) = lake_with_hook(Faults::Once(3), hook);
        let w = write_partitions(&lake, 40, |part| vec![part]).await;
        let e = w.finish().await.unwrap_err();
        assert!(e.to_string().contains("injected fault: put, call 3"), "{e}");
        // The first REQUESTS_AT_ONCE uploads started; all but the failed one landed.
        assert_eq!(faulty.calls(), REQUESTS_AT_ONCE as u64);
        let landed = memory.store.list(None).count().await;
        assert_eq!(landed, REQUESTS_AT_ONCE - 1);
    }
}
