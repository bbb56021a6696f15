//! Parquet reads through `object_store`: ranged GETs for column chunks, the
//! footer read once with the object's known size.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use object_store::path::Path;
use object_store::{GetOptions, ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::errors::ParquetError;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};

use super::SourceObject;

/// An [`AsyncFileReader`] over one object.
#[derive(Debug, Clone)]
pub struct ObjectReader {
    store: Arc<dyn ObjectStore>,
    path: Path,
    size: u64,
    /// The version planned: each read is of it (`If-Match`), so an object
    /// overwritten while it is read fails the read rather than mixing
    /// two versions' bytes.
    e_tag: Option<String>,
}

impl ObjectReader {
    /// A reader of the source object's planned version.
    pub fn new(obj: &SourceObject) -> Self {
        ObjectReader {
            e_tag: obj.e_tag.clone(),
            ..ObjectReader::at(obj.store.clone(), obj.path.clone(), obj.size)
        }
    }

    /// A reader of the object at `path`, of `size` bytes.
    pub fn at(store: Arc<dyn ObjectStore>, path: Path, size: u64) -> Self {
        ObjectReader {
            store,
            path,
            size,
            e_tag: None,
        }
    }

    async fn fetch(&self, range: Range<u64>) -> Result<Bytes, object_store::Error> {
        let options = GetOptions {
            range: Some(range.into()),
            if_match: self.e_tag.clone(),
            ..Default::default()
        };
        self.store
            .get_opts(&self.path, options)
            .await?
            .bytes()
            .await
    }
}

fn external(e: object_store::Error) -> ParquetError {
    ParquetError::External(Box::new(e))
}

impl AsyncFileReader for ObjectReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        async move {
            match self.e_tag {
                None => self.store.get_range(&self.path, range).await,
                Some(_) => self.fetch(range).await,
            }
            .map_err(external)
        }
        .boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        async move {
            match self.e_tag {
                None => self.store.get_ranges(&self.path, &ranges).await,
                Some(_) => {
                    let this = &*self;
                    object_store::coalesce_ranges(
                        &ranges,
                        |r| this.fetch(r),
                        object_store::OBJECT_STORE_COALESCE_DEFAULT,
                    )
                    .await
                }
            }
            .map_err(external)
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            let size = self.size;
            let metadata = ParquetMetaDataReader::new()
                .with_arrow_reader_options(options)
                .load_and_finish(self, size)
                .await?;
            Ok(Arc::new(metadata))
        }
        .boxed()
    }
}
