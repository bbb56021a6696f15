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
//! A long-lived process (a Lambda container) asks [`Loaded::changed`] at most
//! every `refresh`, between chunks: a lookup whose files (names, sizes, ETags)
//! or table folder changed is read again, and the chunks after it see the new
//! rows; a chunk never sees two versions.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::datasource::MemTable;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::csv::CsvFormat;
use datafusion::datasource::file_format::json::JsonFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::prelude::{DataFrame, SessionConfig, SessionContext};
use futures::TryStreamExt;
use sha2::{Digest, Sha256};

use crate::catalog::Catalog;
use crate::config::{CsvOptions, Format, arrow_schema};
use crate::error::{Error, Result};
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
        }
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

/// Read a lookup: its rows (`data`) or only its schema.
pub async fn load(lookup: &Lookup, sources: Sources<'_>, data: bool) -> Result<Loaded> {
    let started = Instant::now();
    let (ctx, frame, what) = open(lookup, sources).await?;
    let version = fingerprint(&ctx, lookup, sources).await?;
    let schema = without_views(frame.schema().as_arrow());
    let (batch, bytes) = if data {
        let (batch, bytes) = collect(lookup, &what, &schema, frame).await?;
        (Some(batch), bytes)
    } else {
        (None, 0)
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

fn read_error(lookup: &Lookup, url: &str, e: impl std::fmt::Display) -> Error {
    Error::read(url, format!("lookup '{}': {e}", lookup.name))
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

/// Every row of the lookup in one batch, refused as soon as what was read
/// passes `max_size`.
async fn collect(
    lookup: &Lookup,
    what: &str,
    schema: &SchemaRef,
    frame: DataFrame,
) -> Result<(RecordBatch, u64)> {
    let too_big = |bytes: u64| {
        Error::Config(format!(
            "lookup '{}': {what} is larger than its max_size of {} once decoded ({} read so far); raise max_size or narrow the source",
            lookup.name,
            bytesize::ByteSize::b(lookup.max_bytes).display().iec(),
            bytesize::ByteSize::b(bytes).display().iec(),
        ))
    };
    let mut stream = frame
        .execute_stream()
        .await
        .map_err(|e| read_error(lookup, what, e))?;
    let mut batches = Vec::new();
    let mut bytes = 0u64;
    while let Some(batch) = stream
        .try_next()
        .await
        .map_err(|e| read_error(lookup, what, e))?
    {
        let batch = plain(lookup, what, schema, batch)?;
        bytes += batch.get_array_memory_size() as u64;
        if bytes > lookup.max_bytes {
            return Err(too_big(bytes));
        }
        batches.push(batch);
    }
    let batch = arrow::compute::concat_batches(schema, &batches)
        .map_err(|e| read_error(lookup, what, e))?;
    drop(batches);
    let bytes = batch.get_array_memory_size() as u64;
    if bytes > lookup.max_bytes {
        return Err(too_big(bytes));
    }
    Ok((batch, bytes))
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
