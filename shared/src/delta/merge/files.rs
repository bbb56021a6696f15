//! Reading and writing the merge's Parquet files: staged changes and table
//! files a batch of rows at a time, by column name.

use crate::commit::CommitRecord;
use crate::error::{Error, Result};
use crate::read::parquet_io::ObjectReader;
use crate::store::Location;
use crate::write::ChunkWriter;
use arrow::array::{ArrayRef, RecordBatch};
use arrow::compute::concat_batches;
use arrow::datatypes::SchemaRef;
use futures::TryStreamExt;
use object_store::ObjectStoreExt as _;
use parquet::arrow::async_reader::ParquetRecordBatchStreamBuilder;

/// The staged changes of `records`, in one batch. A chunk whose files are
/// gone was applied before (its files are removed once applied).
pub(super) async fn read_staged(
    lake: &Location,
    table: &str,
    schema: &SchemaRef,
    records: &[CommitRecord],
) -> Result<RecordBatch> {
    let mut batches = Vec::new();
    for r in records {
        for f in &r.files {
            let path = lake.child(&f.path)?;
            match read_file(lake, &path, f.bytes, schema).await {
                Ok(b) => batches.extend(b),
                Err(Error::Read { .. }) if lake.store.head(&path).await.is_err() => {
                    tracing::warn!(
                        table,
                        chunk = %r.chunk_id,
                        file = %lake.url_of(&path),
                        "the chunk's staged changes are gone (applied before): skipped"
                    );
                }
                Err(e) => return Err(e),
            }
        }
    }
    concat_batches(schema, &batches).map_err(|e| Error::transform(table, e))
}

/// Every row of a Parquet file, as `schema` (columns by name).
pub(super) async fn read_file(
    lake: &Location,
    path: &object_store::path::Path,
    size: u64,
    schema: &SchemaRef,
) -> Result<Vec<RecordBatch>> {
    file_batches(lake, path, size, schema)
        .await?
        .try_collect()
        .await
}

/// The rows of a Parquet file, a batch at a time, as `schema`: only the
/// file's columns `schema` names are read (columns by name).
pub(super) async fn file_batches(
    lake: &Location,
    path: &object_store::path::Path,
    size: u64,
    schema: &SchemaRef,
) -> Result<impl futures::Stream<Item = Result<RecordBatch>> + use<>> {
    let url = lake.url_of(path);
    let reader = ObjectReader::at(lake.store.clone(), path.clone(), size);
    let builder = ParquetRecordBatchStreamBuilder::new(reader)
        .await
        .map_err(|e| Error::read(&url, e))?;
    let parquet = builder.parquet_schema();
    let roots = (0..parquet.root_schema().get_fields().len())
        .filter(|&i| {
            schema
                .field_with_name(parquet.root_schema().get_fields()[i].name())
                .is_ok()
        })
        .collect::<Vec<_>>();
    let mask = parquet::arrow::ProjectionMask::roots(parquet, roots);
    let stream = builder
        .with_projection(mask)
        .build()
        .map_err(|e| Error::read(&url, e))?;
    let schema = schema.clone();
    Ok(stream.map_err(move |e| Error::read(&url, e)).and_then({
        let url = lake.url_of(path);
        move |b| {
            let columns = schema
                .fields()
                .iter()
                .map(|f| {
                    let c = b.column_by_name(f.name()).ok_or_else(|| {
                        Error::read(&url, format!("the file has no column '{}'", f.name()))
                    })?;
                    arrow::compute::cast(c, f.data_type()).map_err(|e| Error::read(&url, e))
                })
                .collect::<Result<Vec<ArrayRef>>>();
            let batch = columns.and_then(|c| {
                RecordBatch::try_new(schema.clone(), c).map_err(|e| Error::read(&url, e))
            });
            futures::future::ready(batch)
        }
    }))
}

/// Write `rows` (of a table without partitions) through `writer`.
pub(super) async fn write_rows(writer: &mut ChunkWriter, rows: RecordBatch) -> Result<()> {
    if rows.num_rows() == 0 {
        return Ok(());
    }
    writer.sample(&rows);
    writer
        .write(crate::partition::PartitionSlice {
            values: Vec::new(),
            batch: rows,
        })
        .await?;
    writer.end_batch().await
}

/// `rows` with the columns of `schema`, by name.
pub(super) fn project(table: &str, rows: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    let columns = schema
        .fields()
        .iter()
        .map(|f| {
            rows.column_by_name(f.name()).cloned().ok_or_else(|| {
                Error::transform(table, format!("the rows have no column '{}'", f.name()))
            })
        })
        .collect::<Result<Vec<_>>>()?;
    RecordBatch::try_new(schema.clone(), columns).map_err(|e| Error::transform(table, e))
}
