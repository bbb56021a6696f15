//! Lookups: reference tables (customers, products, airports) that a table's
//! SQL joins on the way in.
//!
//! A lookup is read once per process into one Arrow batch, from files (a
//! file, a folder, a glob or an `s3://` URL of Parquet, CSV or JSON Lines) or
//! from a table of the lake (a Delta table's latest snapshot), refused above
//! its `max_size`, and registered in the DataFusion context of every chunk as
//! an in-memory table: the build side of a broadcast hash join, the chunk's
//! rows streaming past it (the `transform` module checks the plan).
//!
//! All lookups of a process share one memory bound ([`Budget`], `[limits]
//! lookup_memory`): each holds a reservation in a DataFusion memory pool for
//! its rows, taken as they are read, so the lookup that does not fit is named
//! while it is read, not after. Its batches are joined column by column, so
//! the copy costs one column beyond the rows, not the rows twice. Each
//! chunk's query runs with a pool of its own, bounding what its joins' build
//! sides and hash tables take.
//!
//! A long-lived process (a Lambda container) asks [`Loaded::changed`] at most
//! every `refresh`, between chunks: a lookup whose files (names, sizes, ETags)
//! or table folder changed is read again, and the chunks after it see the new
//! rows; a chunk never sees two versions.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use arrow::array::{Array, ArrayRef, RecordBatch, RecordBatchOptions};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::datasource::MemTable;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::csv::CsvFormat;
use datafusion::datasource::file_format::json::JsonFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::execution::memory_pool::{
    GreedyMemoryPool, MemoryConsumer, MemoryPool, MemoryReservation, TrackConsumersPool,
};
use datafusion::prelude::{DataFrame, SessionConfig, SessionContext};
use futures::TryStreamExt;
use sha2::{Digest, Sha256};

use crate::catalog::Catalog;
use crate::config::{CsvOptions, Format, arrow_schema};
use crate::error::{Error, Result};
use crate::retry::{Verdict, classify};
use crate::store::{AwsOptions, Location};

pub use crate::config::lookup::{
    DEFAULT_MAX_SIZE, DEFAULT_REFRESH_SECONDS, Lookup, LookupConfig, LookupSource,
};

/// What lookups are read from besides their own URLs: the lake (and its
/// catalog) for `table` lookups, and how to reach S3.
#[derive(Clone, Copy)]
pub struct Sources<'a> {
    pub lake: &'a Location,
    pub catalog: &'a dyn Catalog,
    pub aws: &'a AwsOptions,
}

/// The most memory all lookups of a process take by default: 1 GiB.
pub const DEFAULT_LOOKUP_MEMORY: u64 = 1024 * 1024 * 1024;

/// The memory all lookups of a process share: a DataFusion memory pool in
/// which every lookup's rows hold a reservation while they are in use.
#[derive(Debug, Clone)]
pub struct Budget {
    pool: Arc<dyn MemoryPool>,
    limit: u64,
    /// Where the limit comes from, for messages.
    origin: &'static str,
}

impl Budget {
    /// A budget of `limit` bytes; `origin` says where it comes from.
    pub fn new(limit: u64, origin: &'static str) -> Budget {
        let pool = GreedyMemoryPool::new(usize::try_from(limit).unwrap_or(usize::MAX));
        Budget {
            pool: Arc::new(pool),
            limit,
            origin,
        }
    }

    /// The process's budget: `[limits] lookup_memory` if the pipeline gives
    /// it; in a Lambda function, half its memory up to
    /// [`DEFAULT_LOOKUP_MEMORY`]; else [`DEFAULT_LOOKUP_MEMORY`].
    pub fn for_process(configured: Option<u64>) -> Budget {
        let lambda_mb = std::env::var("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
            .ok()
            .and_then(|m| m.parse::<u64>().ok());
        match (configured, lambda_mb) {
            (Some(limit), _) => Budget::new(limit, "[limits] lookup_memory"),
            (None, Some(mb)) => Budget::new(
                (mb * 1024 * 1024 / 2).min(DEFAULT_LOOKUP_MEMORY),
                "half the function's memory",
            ),
            (None, None) => Budget::new(DEFAULT_LOOKUP_MEMORY, "the default"),
        }
    }

    /// A budget with no bound (lookups made in memory by tests and tools).
    pub fn unbounded() -> Budget {
        Budget::new(u64::MAX, "no bound")
    }

    /// The bound, in bytes.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Bytes the lookups hold now.
    pub fn held(&self) -> u64 {
        self.pool.reserved() as u64
    }

    /// A pool for one chunk's query: twice the bound, for its joins' build
    /// sides (the lookup rows they index, counted again) and hash tables.
    pub fn query_pool(&self) -> Arc<dyn MemoryPool> {
        let size = usize::try_from(self.limit.saturating_mul(2)).unwrap_or(usize::MAX);
        Arc::new(TrackConsumersPool::new(
            GreedyMemoryPool::new(size),
            std::num::NonZeroUsize::new(3).expect("not zero"),
        ))
    }

    fn reserve(&self, lookup: &str) -> MemoryReservation {
        MemoryConsumer::new(format!("lookup '{lookup}'")).register(&self.pool)
    }
}

/// A lookup as read: its schema, and its rows unless only the schema was
/// asked for (functions that plan but never transform).
#[derive(Debug)]
pub struct Loaded {
    pub lookup: Lookup,
    pub schema: SchemaRef,
    /// All the rows, in one batch (so every chunk's hash join indexes it
    /// without copying it); `None` when only the schema was read.
    pub batch: Option<RecordBatch>,
    /// The source's fingerprint when it was read (files: names, sizes,
    /// ETags; a table: its folder's files).
    pub version: String,
    /// Bytes in memory.
    pub bytes: u64,
    /// When the source was last checked.
    checked: Mutex<Instant>,
    /// The budget the rows are held in.
    budget: Budget,
    /// The rows' share of the budget, given back when they are dropped.
    _held: Option<MemoryReservation>,
}

impl Loaded {
    /// The rows as a DataFusion table (shares the batch).
    pub fn provider(&self) -> Result<Arc<MemTable>> {
        let partition: Vec<RecordBatch> = self.batch.iter().cloned().collect();
        MemTable::try_new(self.schema.clone(), vec![partition])
            .map(Arc::new)
            .map_err(|e| Error::Config(format!("lookup '{}': {e}", self.lookup.name)))
    }

    /// A lookup whose rows are already in memory (one batch).
    pub fn in_memory(lookup: Lookup, batch: RecordBatch) -> Loaded {
        Loaded {
            lookup,
            schema: batch.schema(),
            bytes: batch.get_array_memory_size() as u64,
            batch: Some(batch),
            version: String::new(),
            checked: Mutex::new(Instant::now()),
            budget: Budget::unbounded(),
            _held: None,
        }
    }

    /// The lookup with its chunks' queries bounded by `budget` (its rows,
    /// made elsewhere, take no share of it).
    pub fn within(self, budget: Budget) -> Loaded {
        Loaded { budget, ..self }
    }

    /// The budget the lookup's rows are held in.
    pub fn budget(&self) -> &Budget {
        &self.budget
    }

    /// A lookup of which only the schema is known.
    #[cfg(test)]
    pub(crate) fn schema_only(lookup: Lookup, schema: SchemaRef) -> Loaded {
        Loaded {
            lookup,
            schema,
            batch: None,
            bytes: 0,
            version: String::new(),
            checked: Mutex::new(Instant::now()),
            budget: Budget::unbounded(),
            _held: None,
        }
    }

    /// Rows held (0 when only the schema was read).
    pub fn rows(&self) -> usize {
        self.batch.as_ref().map_or(0, |b| b.num_rows())
    }

    /// Whether the source changed since it was read; asks the source only if
    /// `refresh` has passed since the last check.
    pub async fn changed(&self, sources: Sources<'_>) -> Result<bool> {
        {
            let mut checked = self.checked.lock().expect("not poisoned");
            if checked.elapsed() < self.lookup.refresh {
                return Ok(false);
            }
            *checked = Instant::now();
        }
        Ok(version(&self.lookup, sources).await? != self.version)
    }
}

/// Read a lookup: its rows (`data`, held in `budget`) or only its schema.
///
/// A table of the lake is sluice's own output, so a failure reading it whose
/// cause cannot be told is taken for a storage fault, worth another try (the
/// functions' retries are bounded): DataFusion prints some storage errors
/// into its own messages (its Parquet footer fetch), which hides their kind.
pub async fn load(
    lookup: &Lookup,
    sources: Sources<'_>,
    data: bool,
    budget: &Budget,
) -> Result<Loaded> {
    let read = read(lookup, sources, data, budget).await;
    match (&lookup.source, read) {
        (LookupSource::Table(_), Err(e @ Error::Read { .. }))
            if classify(&e) == Verdict::Unknown =>
        {
            Err(Error::Unavailable(crate::error::describe(&e)))
        }
        (_, read) => read,
    }
}

async fn read(
    lookup: &Lookup,
    sources: Sources<'_>,
    data: bool,
    budget: &Budget,
) -> Result<Loaded> {
    let started = Instant::now();
    let (ctx, frame, what) = open(lookup, sources).await?;
    let version = fingerprint(&ctx, lookup, sources).await?;
    let schema = without_views(frame.schema().as_arrow());
    let (batch, bytes, held) = if data {
        let (batch, held) = collect(lookup, &what, &schema, frame, budget).await?;
        let bytes = held.size() as u64;
        (Some(batch), bytes, Some(held))
    } else {
        (None, 0, None)
    };
    if data {
        tracing::info!(
            lookup = %lookup.name,
            source = %what,
            rows = batch.as_ref().map_or(0, |b| b.num_rows()),
            bytes,
            seconds = started.elapsed().as_secs_f64(),
            "lookup loaded"
        );
    }
    Ok(Loaded {
        lookup: lookup.clone(),
        schema,
        batch,
        version,
        bytes,
        checked: Mutex::new(Instant::now()),
        budget: budget.clone(),
        _held: held,
    })
}

fn context() -> SessionContext {
    let config = SessionConfig::new()
        .with_target_partitions(1)
        .set_bool(
            "datafusion.execution.parquet.schema_force_view_types",
            false,
        )
        .set_bool("datafusion.sql_parser.map_string_types_to_utf8view", false)
        .set_bool(
            "datafusion.execution.listing_table_ignore_subdirectory",
            false,
        );
    SessionContext::new_with_config(config)
}

/// The lookup's rows as a DataFrame, the context it lives in, and what to
/// call the source in messages.
async fn open(
    lookup: &Lookup,
    sources: Sources<'_>,
) -> Result<(SessionContext, DataFrame, String)> {
    let name = &lookup.name;
    match &lookup.source {
        LookupSource::Table(table) => {
            let ctx = crate::query::lake_context(sources.lake, sources.catalog, None).await?;
            let frame = ctx.table(table.as_str()).await.map_err(|_| {
                Error::Config(format!(
                    "lookup '{name}': the lake {} has no table '{table}' with data yet (load it before the tables that join it)",
                    sources.lake.url
                ))
            })?;
            Ok((
                ctx,
                frame,
                format!("table '{table}' of {}", sources.lake.url),
            ))
        }
        LookupSource::Files {
            url,
            format,
            columns,
            csv,
        } => {
            let ctx = context();
            let table_url = files_url(&ctx, lookup, url, sources.aws)?;
            let options = listing_options(*format, csv);
            let schema = if columns.is_empty() {
                options
                    .infer_schema(&ctx.state(), &table_url)
                    .await
                    .map_err(|e| read_error(lookup, url, e))?
            } else {
                arrow_schema(columns)
            };
            let config = ListingTableConfig::new(table_url)
                .with_listing_options(options)
                .with_schema(schema);
            let provider = ListingTable::try_new(config).map_err(|e| read_error(lookup, url, e))?;
            let frame = ctx
                .read_table(Arc::new(provider))
                .map_err(|e| read_error(lookup, url, e))?;
            Ok((ctx, frame, url.clone()))
        }
    }
}

/// A failure reading `lookup`: names it, and keeps the cause, so that a
/// storage fault stays worth a retry ([`Error::is_retryable`]).
#[derive(Debug, thiserror::Error)]
#[error("lookup '{lookup}': {source}")]
struct LookupFailed {
    lookup: String,
    #[source]
    source: crate::error::Cause,
}

fn read_error(lookup: &Lookup, url: &str, e: impl Into<crate::error::Cause>) -> Error {
    Error::read(
        url,
        LookupFailed {
            lookup: lookup.name.clone(),
            source: e.into(),
        },
    )
}

/// The listing URL of a `source`, with its bucket's store registered.
fn files_url(
    ctx: &SessionContext,
    lookup: &Lookup,
    url: &str,
    aws: &AwsOptions,
) -> Result<ListingTableUrl> {
    if url.starts_with("s3://") {
        let parsed = url::Url::parse(url).map_err(|e| read_error(lookup, url, e))?;
        let bucket = parsed
            .host_str()
            .ok_or_else(|| read_error(lookup, url, "no bucket in the URL"))?;
        let bucket_url =
            url::Url::parse(&format!("s3://{bucket}")).map_err(|e| read_error(lookup, url, e))?;
        ctx.register_object_store(&bucket_url, aws.s3(bucket)?);
    } else {
        let path = url.strip_prefix("file://").unwrap_or(url);
        let plain = path.split(['*', '?', '[']).next().unwrap_or(path);
        let parent = if plain.len() < path.len() {
            std::path::Path::new(plain)
                .parent()
                .unwrap_or(std::path::Path::new("."))
        } else {
            std::path::Path::new(plain)
        };
        if !parent.as_os_str().is_empty() && !parent.exists() {
            return Err(read_error(lookup, url, "no such file or folder"));
        }
    }
    ListingTableUrl::parse(url).map_err(|e| read_error(lookup, url, e))
}

fn listing_options(format: Format, csv: &CsvOptions) -> ListingOptions {
    let format: Arc<dyn FileFormat> = match format {
        Format::Parquet => Arc::new(ParquetFormat::default().with_force_view_types(false)),
        Format::Csv => Arc::new(
            CsvFormat::default()
                .with_has_header(csv.header)
                .with_delimiter(csv.delimiter)
                .with_quote(csv.quote),
        ),
        Format::JsonLines => Arc::new(JsonFormat::default()),
    };
    ListingOptions::new(format).with_file_extension("")
}

/// Every row of the lookup in one batch, held in `budget`; refused as soon
/// as what was read passes `max_size` or does not fit in the budget.
async fn collect(
    lookup: &Lookup,
    what: &str,
    schema: &SchemaRef,
    frame: DataFrame,
    budget: &Budget,
) -> Result<(RecordBatch, MemoryReservation)> {
    let too_big = |bytes: u64| {
        Error::Config(format!(
            "lookup '{}': {what} is larger than its max_size of {} once decoded ({} read so far); raise max_size or narrow the source",
            lookup.name,
            size(lookup.max_bytes),
            size(bytes),
        ))
    };
    let held = budget.reserve(&lookup.name);
    let no_room = |wanted: usize| {
        Error::Config(format!(
            "lookup '{}': {what} does not fit in the {} all lookups share ({}): {} of it read, {} more wanted, {} held by the other lookups (and by versions still in use while one is read again); raise `lookup_memory` under `[limits]` or narrow the source",
            lookup.name,
            size(budget.limit),
            budget.origin,
            size(held.size() as u64),
            size(wanted as u64),
            size(budget.held().saturating_sub(held.size() as u64)),
        ))
    };
    let mut stream = frame
        .execute_stream()
        .await
        .map_err(|e| read_error(lookup, what, e))?;
    let mut batches = Vec::new();
    let mut rows = 0usize;
    while let Some(batch) = stream
        .try_next()
        .await
        .map_err(|e| read_error(lookup, what, e))?
    {
        let batch = plain(lookup, what, schema, batch)?;
        let bytes = batch.get_array_memory_size();
        if (held.size() + bytes) as u64 > lookup.max_bytes {
            return Err(too_big((held.size() + bytes) as u64));
        }
        held.try_grow(bytes).map_err(|_| no_room(bytes))?;
        rows += batch.num_rows();
        batches.push(batch);
    }
    if batches.is_empty() {
        return Ok((RecordBatch::new_empty(schema.clone()), held));
    }
    // One column at a time: each column's pieces go as soon as it is
    // copied, so the rows are never held twice.
    let mut pieces: Vec<Vec<ArrayRef>> =
        vec![Vec::with_capacity(batches.len()); schema.fields().len()];
    for batch in batches {
        for (i, column) in batch.columns().iter().enumerate() {
            pieces[i].push(column.clone());
        }
    }
    let mut columns = Vec::with_capacity(pieces.len());
    for column in pieces {
        if column.len() == 1 {
            columns.extend(column);
            continue;
        }
        let bytes: usize = column.iter().map(|a| a.get_array_memory_size()).sum();
        held.try_grow(bytes).map_err(|_| no_room(bytes))?;
        let refs: Vec<&dyn Array> = column.iter().map(|a| a.as_ref()).collect();
        let joined = arrow::compute::concat(&refs).map_err(|e| read_error(lookup, what, e))?;
        drop(refs);
        drop(column);
        held.shrink(bytes);
        columns.push(joined);
    }
    let batch = RecordBatch::try_new_with_options(
        schema.clone(),
        columns,
        &RecordBatchOptions::new().with_row_count(Some(rows)),
    )
    .map_err(|e| read_error(lookup, what, e))?;
    let bytes = batch.get_array_memory_size();
    if bytes as u64 > lookup.max_bytes {
        return Err(too_big(bytes as u64));
    }
    held.try_resize(bytes)
        .map_err(|_| no_room(bytes.saturating_sub(held.size())))?;
    Ok((batch, held))
}

fn size(bytes: u64) -> String {
    bytesize::ByteSize::b(bytes).display().iec().to_string()
}

/// `schema` with string and binary views as plain strings and binaries. A
/// join that takes from a view array keeps the lookup's whole data buffers
/// alive in its output (the writer would count them in every batch), and the
/// lake's readers and catalog know the plain types.
fn without_views(schema: &Schema) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| {
            let ty = match f.data_type() {
                DataType::Utf8View => DataType::Utf8,
                DataType::BinaryView => DataType::Binary,
                other => other.clone(),
            };
            f.as_ref().clone().with_data_type(ty)
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// `batch` cast to `schema` (its views made plain), where it differs.
fn plain(
    lookup: &Lookup,
    what: &str,
    schema: &SchemaRef,
    batch: RecordBatch,
) -> Result<RecordBatch> {
    if batch.schema().fields() == schema.fields() {
        return Ok(batch);
    }
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| arrow::compute::cast(c, f.data_type()))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| read_error(lookup, what, e))?;
    RecordBatch::try_new(schema.clone(), columns).map_err(|e| read_error(lookup, what, e))
}

/// The source's fingerprint: a hash of its files' names, sizes and ETags
/// (for a table, every file under its folder, the Delta log included).
pub async fn version(lookup: &Lookup, sources: Sources<'_>) -> Result<String> {
    let ctx = context();
    fingerprint(&ctx, lookup, sources).await
}

async fn fingerprint(
    ctx: &SessionContext,
    lookup: &Lookup,
    sources: Sources<'_>,
) -> Result<String> {
    let mut files: Vec<String> = Vec::new();
    match &lookup.source {
        LookupSource::Files { url, .. } => {
            let table_url = files_url(ctx, lookup, url, sources.aws)?;
            let store = ctx
                .runtime_env()
                .object_store(&table_url)
                .map_err(|e| read_error(lookup, url, e))?;
            let state = ctx.state();
            let mut list = table_url
                .list_all_files(&state, store.as_ref(), "")
                .await
                .map_err(|e| read_error(lookup, url, e))?;
            while let Some(meta) = list
                .try_next()
                .await
                .map_err(|e| read_error(lookup, url, e))?
            {
                files.push(describe(&meta));
            }
        }
        LookupSource::Table(table) => {
            let lake = sources.lake;
            let folder = lake.child(table)?;
            let mut list = lake.store.list(Some(&folder));
            while let Some(meta) = list
                .try_next()
                .await
                .map_err(|e| read_error(lookup, &lake.url_of(&folder), e))?
            {
                files.push(describe(&meta));
            }
        }
    }
    files.sort();
    let mut hash = Sha256::new();
    for f in &files {
        hash.update(f.as_bytes());
        hash.update(b"\n");
    }
    Ok(hex::encode(hash.finalize()))
}

fn describe(meta: &object_store::ObjectMeta) -> String {
    format!(
        "{} {} {} {}",
        meta.location,
        meta.size,
        meta.e_tag.as_deref().unwrap_or(""),
        meta.last_modified.timestamp_micros()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A lookup of `batches` batches of `rows` rows each (an id and a name),
    /// as the frame `collect` reads, and the bytes of its batches.
    fn frame(batches: usize, rows: usize) -> (SchemaRef, DataFrame, u64, u64) {
        use arrow::array::{Int64Array, StringArray};
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
        ]));
        let parts: Vec<RecordBatch> = (0..batches)
            .map(|b| {
                let ids = (0..rows).map(|r| (b * rows + r) as i64);
                RecordBatch::try_new(
                    schema.clone(),
                    vec![
                        Arc::new(Int64Array::from_iter_values(ids.clone())),
                        Arc::new(StringArray::from_iter_values(
                            ids.map(|i| format!("customer number {i}")),
                        )),
                    ],
                )
                .unwrap()
            })
            .collect();
        let bytes: u64 = parts.iter().map(|b| b.get_array_memory_size() as u64).sum();
        let widest: u64 = (0..2)
            .map(|c| {
                parts
                    .iter()
                    .map(|b| b.column(c).get_array_memory_size() as u64)
                    .sum::<u64>()
            })
            .max()
            .unwrap();
        let table = MemTable::try_new(schema.clone(), vec![parts]).unwrap();
        let ctx = SessionContext::new();
        let frame = ctx.read_table(Arc::new(table)).unwrap();
        (schema, frame, bytes, widest)
    }

    fn lookup(name: &str) -> Lookup {
        toml::from_str::<LookupConfig>(&format!("name = \"{name}\"\ntable = \"t\""))
            .unwrap()
            .validate()
            .unwrap()
    }

    #[tokio::test]
    async fn a_lookup_of_many_batches_is_joined_within_its_rows_and_one_column() {
        // (8,000 rows a batch: DataFusion passes batches under its 8,192
        // row batch size on whole, not sliced.)
        let (schema, f, bytes, widest) = frame(4, 8_000);
        let budget = Budget::new(bytes + widest, "the test");
        let (batch, held) = collect(&lookup("customers"), "t", &schema, f, &budget)
            .await
            .unwrap();
        assert_eq!(batch.num_rows(), 32_000);
        assert_eq!(held.size(), batch.get_array_memory_size());
        assert_eq!(budget.held(), held.size() as u64);
        drop(held);
        assert_eq!(budget.held(), 0, "the rows' share is given back");

        // Joining all the batches at once would need the rows twice.
        let (schema, f, bytes, _) = frame(4, 8_000);
        let budget = Budget::new(bytes + widest / 2, "the test");
        let e = collect(&lookup("customers"), "t", &schema, f, &budget)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("lookup 'customers'") && e.contains("all lookups share (the test)"),
            "{e}"
        );
        assert_eq!(budget.held(), 0, "a refused lookup holds nothing");
    }

    #[tokio::test]
    async fn lookups_share_one_bound_and_the_one_that_does_not_fit_is_named() {
        // Each lookup needs its rows and, while joined, one column more.
        let (schema, f, bytes, widest) = frame(2, 1_000);
        let budget = Budget::new(2 * bytes + widest / 2, "[limits] lookup_memory");
        let (_first, held) = collect(&lookup("customers"), "t", &schema, f, &budget)
            .await
            .unwrap();
        let (schema, f, _, _) = frame(2, 1_000);
        let e = collect(&lookup("products"), "p", &schema, f, &budget)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("lookup 'products': p does not fit")
                && e.contains(&format!(
                    "{} held by the other lookups",
                    size(held.size() as u64)
                )),
            "{e}"
        );
        drop(held);
        let (schema, f, _, _) = frame(2, 1_000);
        collect(&lookup("products"), "p", &schema, f, &budget)
            .await
            .expect("fits once the other lookup is gone");
    }

    #[test]
    fn string_views_are_read_as_plain_strings() {
        use arrow::array::{Array, StringViewArray};
        let viewed = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8View, true),
            Field::new("raw", DataType::BinaryView, true),
        ]));
        let plain_schema = without_views(&viewed);
        let types: Vec<DataType> = plain_schema
            .fields()
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        assert_eq!(
            types,
            vec![DataType::Int64, DataType::Utf8, DataType::Binary]
        );
        let lookup = toml::from_str::<LookupConfig>("name = \"c\"\ntable = \"t\"")
            .unwrap()
            .validate()
            .unwrap();
        let batch = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new(
                "name",
                DataType::Utf8View,
                true,
            )])),
            vec![Arc::new(StringViewArray::from(vec![
                Some("a long enough value"),
                None,
            ]))],
        )
        .unwrap();
        let target = without_views(&batch.schema());
        let out = plain(&lookup, "t", &target, batch).unwrap();
        assert_eq!(out.column(0).data_type(), &DataType::Utf8);
        assert_eq!(out.column(0).null_count(), 1);
    }
}
