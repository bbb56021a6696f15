//! Writing a merged output: column chunks copied where the inputs share a
//! schema, rows re-encoded where they do not, streamed to the store in parts.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{RecordBatch, new_null_array};
use arrow::datatypes::{Schema, SchemaRef};
use bytes::Bytes;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::column::writer::ColumnCloseResult;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use crate::error::{Error, Result};
use crate::read::parquet_io::ObjectReader;
use crate::store::Location;
use crate::write::UPLOAD_BUFFER;

use super::intent::{IntentState, Partition};
use super::plan::{Bin, Candidate};
use super::{CompactOptions, Merged};

impl Partition<'_> {
    /// Merge one bin: intent, output, retire, done.
    pub(super) async fn merge(&self, bin: &Bin, options: &CompactOptions) -> Result<Merged> {
        let inputs = bin.inputs.iter().map(|i| i.path.clone()).collect();
        let (output, intent_path, mut intent) = self.intend(&bin.id(), inputs, None).await?;
        let (rows, bytes, copied, input_rows) =
            write_merged(self.lake, &bin.inputs, &output, options).await?;
        intent.parts = self.lineage(&intent.inputs, &input_rows).await?;
        let visible = Instant::now();
        self.retire(&intent.inputs).await?;
        let overlap = visible.elapsed();
        intent.state = IntentState::Done;
        intent.rows = Some(rows);
        intent.bytes = Some(bytes);
        self.put_json(&intent_path, &intent).await?;
        Ok(Merged {
            rows,
            bytes,
            copied,
            overlap,
        })
    }
}

/// A `Write` that streams what it is given to an object, in parts of
/// [`UPLOAD_BUFFER`] bytes, through an upload task. The object appears only
/// when [`UploadSink::finish`] is called and the task completes it.
pub(super) struct UploadSink {
    tx: mpsc::Sender<Part>,
    buf: Vec<u8>,
    written: u64,
}

pub(super) enum Part {
    Data(Bytes),
    Done,
}

impl UploadSink {
    pub(super) fn start(
        store: Arc<dyn ObjectStore>,
        path: Path,
    ) -> (UploadSink, tokio::task::JoinHandle<Result<()>>) {
        let (tx, mut rx) = mpsc::channel::<Part>(2);
        let task = tokio::spawn(async move {
            let mut w = BufWriter::with_capacity(store, path.clone(), UPLOAD_BUFFER);
            while let Some(part) = rx.recv().await {
                match part {
                    Part::Data(b) => {
                        if let Err(e) = w.put(b).await {
                            let _ = w.abort().await;
                            return Err(Error::write(&path, e));
                        }
                    }
                    Part::Done => {
                        return w.shutdown().await.map_err(|e| Error::write(&path, e));
                    }
                }
            }
            // The writer gave up: leave no object behind.
            let _ = w.abort().await;
            Err(Error::write(&path, "the output was abandoned"))
        });
        (
            UploadSink {
                tx,
                buf: Vec::with_capacity(UPLOAD_BUFFER),
                written: 0,
            },
            task,
        )
    }

    pub(super) fn send(&mut self) -> std::io::Result<()> {
        let part = std::mem::replace(&mut self.buf, Vec::with_capacity(UPLOAD_BUFFER));
        self.tx
            .blocking_send(Part::Data(Bytes::from(part)))
            .map_err(|_| std::io::Error::other("the upload stopped"))
    }

    /// Send the rest and complete the upload; returns the bytes written.
    pub(super) fn finish(mut self) -> std::io::Result<u64> {
        if !self.buf.is_empty() {
            self.send()?;
        }
        self.tx
            .blocking_send(Part::Done)
            .map_err(|_| std::io::Error::other("the upload stopped"))?;
        Ok(self.written)
    }
}

impl Write for UploadSink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        self.written += data.len() as u64;
        if self.buf.len() >= UPLOAD_BUFFER {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Merge `inputs` into `output`; returns (rows, bytes written, copied, rows of each input).
pub(super) async fn write_merged(
    lake: &Location,
    inputs: &[Candidate],
    output: &str,
    options: &CompactOptions,
) -> Result<(u64, u64, bool, Vec<u64>)> {
    // The footers first: they decide between copying and re-encoding. The
    // sizes come from the partition's listing, so no HEAD is needed.
    let mut metas = Vec::with_capacity(inputs.len());
    for input in inputs {
        let path = lake.child(&input.path)?;
        let mut reader = ObjectReader::at(lake.store.clone(), path, input.size);
        let meta = reader
            .get_metadata(None)
            .await
            .map_err(|e| Error::read(format!("{}/{}", lake.url, input.path), e))?;
        metas.push(meta);
    }
    let same_schema = metas.windows(2).all(|w| {
        w[0].file_metadata().schema_descr().root_schema()
            == w[1].file_metadata().schema_descr().root_schema()
    });
    let copy = same_schema && !options.force_reencode;
    let input_rows: Vec<u64> = metas
        .iter()
        .map(|m| m.file_metadata().num_rows() as u64)
        .collect();
    let out_path = lake.child(output)?;
    let (sink, upload) = UploadSink::start(lake.store.clone(), out_path);
    let store = lake.store.clone();
    let lake_url = lake.url.clone();
    let input_paths: Vec<(String, Path)> = inputs
        .iter()
        .map(|i| Ok((format!("{lake_url}/{}", i.path), lake.child(&i.path)?)))
        .collect::<Result<_>>()?;
    let writer_props = options.writer.clone();
    let handle = tokio::runtime::Handle::current();
    let out_url = format!("{lake_url}/{output}");
    let work = tokio::task::spawn_blocking(move || -> Result<(u64, u64)> {
        let fetch = |url: &str, path: &Path| -> Result<Bytes> {
            handle
                .block_on(async { store.get(path).await?.bytes().await })
                .map_err(|e| Error::read(url, e))
        };
        let (rows, sink) = if copy {
            copy_column_chunks(sink, &metas, &input_paths, fetch, &out_url)?
        } else {
            reencode(sink, &metas, &input_paths, fetch, writer_props, &out_url)?
        };
        // On an error above, the sink is dropped unfinished: the upload aborts.
        let bytes = sink.finish().map_err(|e| Error::write(&out_url, e))?;
        Ok((rows, bytes))
    });
    let outcome = match work.await {
        Ok(r) => r,
        Err(e) => Err(Error::write(output, format!("the merge task failed: {e}"))),
    };
    let uploaded = upload
        .await
        .map_err(|e| Error::write(output, format!("the upload task failed: {e}")));
    let (rows, bytes) = outcome?;
    uploaded??;
    Ok((rows, bytes, copy, input_rows))
}

/// The fast path: every input's column chunks appended, undecoded.
pub(super) fn copy_column_chunks(
    sink: UploadSink,
    metas: &[Arc<ParquetMetaData>],
    inputs: &[(String, Path)],
    fetch: impl Fn(&str, &Path) -> Result<Bytes>,
    out: &str,
) -> Result<(u64, UploadSink)> {
    let first = metas[0].file_metadata();
    let props = WriterProperties::builder()
        .set_key_value_metadata(first.key_value_metadata().cloned())
        .set_created_by(format!("sluice {} (compaction)", env!("CARGO_PKG_VERSION")))
        .build();
    let schema = first.schema_descr().root_schema_ptr();
    let mut writer = SerializedFileWriter::new(sink, schema, Arc::new(props))
        .map_err(|e| Error::write(out, e))?;
    let mut rows = 0u64;
    for ((url, path), _) in inputs.iter().zip(metas) {
        let bytes = fetch(url, path)?;
        // The footer again, from the bytes just read: the copy must use the
        // offsets of exactly these bytes.
        let meta = ParquetMetaDataReader::new()
            .parse_and_finish(&bytes)
            .map_err(|e| Error::read(url, e))?;
        for rg in meta.row_groups() {
            let mut rg_out = writer.next_row_group().map_err(|e| Error::write(out, e))?;
            for column in rg.columns() {
                let close = ColumnCloseResult {
                    bytes_written: column.compressed_size() as u64,
                    rows_written: rg.num_rows() as u64,
                    metadata: column.clone(),
                    bloom_filter: None,
                    column_index: None,
                    offset_index: None,
                };
                rg_out
                    .append_column(&bytes, close)
                    .map_err(|e| Error::read(url, format!("copying a column chunk: {e}")))?;
            }
            rg_out.close().map_err(|e| Error::write(out, e))?;
            rows += rg.num_rows() as u64;
        }
    }
    let sink = writer.into_inner().map_err(|e| Error::write(out, e))?;
    Ok((rows, sink))
}

/// The general path: rows decoded and re-encoded into one schema (the
/// inputs' schemas merged: a column missing from a file is null there).
pub(super) fn reencode(
    sink: UploadSink,
    metas: &[Arc<ParquetMetaData>],
    inputs: &[(String, Path)],
    fetch: impl Fn(&str, &Path) -> Result<Bytes>,
    props: WriterProperties,
    out: &str,
) -> Result<(u64, UploadSink)> {
    let mut schemas = Vec::with_capacity(metas.len());
    for ((url, _), meta) in inputs.iter().zip(metas) {
        let s = parquet::arrow::parquet_to_arrow_schema(
            meta.file_metadata().schema_descr(),
            meta.file_metadata().key_value_metadata(),
        )
        .map_err(|e| Error::read(url, e))?;
        schemas.push(s.with_metadata(HashMap::new()));
    }
    let merged = Schema::try_merge(schemas)
        .map_err(|e| Error::Catalog(format!("the files' schemas do not merge: {e}")))?;
    // A column some files lack is null in their rows (and every column of a
    // table is nullable to its readers anyway).
    let merged: SchemaRef = Arc::new(Schema::new(
        merged
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect::<Vec<_>>(),
    ));
    let mut writer = ArrowWriter::try_new(sink, merged.clone(), Some(props))
        .map_err(|e| Error::write(out, e))?;
    let mut rows = 0u64;
    for (url, path) in inputs {
        let bytes = fetch(url, path)?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .and_then(|b| b.build())
            .map_err(|e| Error::read(url, e))?;
        for batch in reader {
            let batch = batch.map_err(|e| Error::read(url, e))?;
            let aligned = align(&batch, &merged).map_err(|e| Error::read(url, e))?;
            rows += aligned.num_rows() as u64;
            writer.write(&aligned).map_err(|e| Error::write(out, e))?;
        }
    }
    let sink = writer.into_inner().map_err(|e| Error::write(out, e))?;
    Ok((rows, sink))
}

/// `batch` in `schema`: columns by name, cast where the type differs, null
/// where missing.
pub(super) fn align(
    batch: &RecordBatch,
    schema: &SchemaRef,
) -> std::result::Result<RecordBatch, String> {
    let mut columns = Vec::with_capacity(schema.fields().len());
    for f in schema.fields() {
        let column = match batch.column_by_name(f.name()) {
            Some(c) if c.data_type() == f.data_type() => c.clone(),
            Some(c) => arrow::compute::cast(c, f.data_type())
                .map_err(|e| format!("column '{}': {e}", f.name()))?,
            None => new_null_array(f.data_type(), batch.num_rows()),
        };
        columns.push(column);
    }
    RecordBatch::try_new(schema.clone(), columns).map_err(|e| e.to_string())
}
