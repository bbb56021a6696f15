//! Writing a chunk's rows as Parquet, one file per partition, rolling to a
//! new file at the target size. File names are deterministic:
//! `<table>/<partition path>/part-<chunk id>-<seq>.parquet`.
//!
//! Each file is written through object_store's `BufWriter`: a single PUT for a small
//! file, a multipart upload completed at the end for a large one, so readers
//! never see half a file.

use std::collections::HashMap;

use arrow::datatypes::SchemaRef;
use object_store::buffered::BufWriter;
use parquet::arrow::AsyncArrowWriter;
use parquet::file::properties::{EnabledStatistics, WriterProperties};

use crate::commit::FileInfo;
use crate::config::ParquetOptions;
use crate::error::{Error, Result};
use crate::partition::{PartitionSlice, partition_path};
use crate::store::Location;

/// Writer settings for a table.
pub fn writer_properties(o: &ParquetOptions) -> WriterProperties {
    WriterProperties::builder()
        .set_compression(o.compression)
        .set_max_row_group_row_count(Some(o.row_group_rows))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_created_by(format!("sluice {}", env!("CARGO_PKG_VERSION")))
        .build()
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
    props: WriterProperties,
    target_bytes: u64,
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
            target_bytes: options.target_file_bytes,
            open: HashMap::new(),
            seq: HashMap::new(),
            done: Vec::new(),
        }
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
                BufWriter::new(self.lake.store.clone(), path),
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
            self.close(file).await?;
        }
        Ok(())
    }

    async fn close(&mut self, file: OpenFile) -> Result<()> {
        let OpenFile {
            writer,
            relative,
            values,
            partition_path,
            rows,
        } = file;
        let mut writer = writer;
        writer
            .finish()
            .await
            .map_err(|e| Error::write(&relative, e))?;
        let bytes = writer.bytes_written() as u64;
        self.done.push(FileInfo {
            path: relative,
            partition: values,
            partition_path,
            rows,
            bytes,
        });
        Ok(())
    }

    /// Close every open file; the files written, in a stable order.
    pub async fn finish(mut self) -> Result<Vec<FileInfo>> {
        let mut open: Vec<_> = std::mem::take(&mut self.open).into_values().collect();
        open.sort_by(|a, b| a.relative.cmp(&b.relative));
        for f in open {
            self.close(f).await?;
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
