//! Every `txn` application id of a snapshot, read in one pass over its log.
//!
//! delta-rs (1.1) asks the kernel for one application id at a time, and the
//! kernel replays the log's `txn` actions for each one (it has a one-pass
//! scan, `SetTransactionScanner::get_all`, but not in its public API). A
//! batch of 10^4 chunks against a table of 10^5 then costs 10^4 replays. So
//! the committer reads them itself, once: the `txn` column of the last
//! checkpoint, then the commits after it up to the snapshot's version.
//! Where the log is not in the shape this reads (no classic checkpoint at
//! or below the snapshot, a commit missing, a V2 checkpoint, a transaction
//! retention set), it answers `None` and the caller asks id by id.

use std::collections::HashSet;

use arrow::array::{Array, AsArray, StructArray};
use arrow::datatypes::DataType;
use deltalake::logstore::LogStore;
use deltalake::table::state::DeltaTableState;
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt as _;
use object_store::path::Path;
use parquet::arrow::ProjectionMask;
use parquet::arrow::async_reader::ParquetRecordBatchStreamBuilder;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::read::parquet_io::ObjectReader;

/// Commit files read at once.
const READS: usize = 16;

/// The application ids of every `txn` action of `snapshot`, or `None` where
/// the log is in a shape this does not read.
pub async fn app_ids(
    table: &str,
    snapshot: &DeltaTableState,
    log: &dyn LogStore,
) -> Result<Option<HashSet<String>>> {
    let config = snapshot.metadata().configuration();
    if config.contains_key("delta.setTransactionRetentionDuration") {
        return Ok(None);
    }
    let version = snapshot.version();
    let store = log.object_store(None);
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        Error::Catalog(format!("table '{table}': reading {what} of its log: {e}"))
    };
    let mut ids = HashSet::new();
    let mut first = 0;
    match store.get(&Path::from("_delta_log/_last_checkpoint")).await {
        Ok(got) => {
            let bytes = got
                .bytes()
                .await
                .map_err(|e| fail("_last_checkpoint", &e))?;
            let last: Value =
                serde_json::from_slice(&bytes).map_err(|e| fail("_last_checkpoint", &e))?;
            let Some(at) = last["version"].as_u64() else {
                return Ok(None);
            };
            if at > version || last.get("v2Checkpoint").is_some() {
                return Ok(None);
            }
            let files: Vec<Path> = match last["parts"].as_u64() {
                None | Some(1) => vec![Path::from(format!(
                    "_delta_log/{at:020}.checkpoint.parquet"
                ))],
                Some(n) => (1..=n)
                    .map(|i| {
                        Path::from(format!(
                            "_delta_log/{at:020}.checkpoint.{i:010}.{n:010}.parquet"
                        ))
                    })
                    .collect(),
            };
            for file in files {
                let size = match store.head(&file).await {
                    Ok(meta) => meta.size,
                    Err(object_store::Error::NotFound { .. }) => return Ok(None),
                    Err(e) => return Err(fail("its checkpoint", &e)),
                };
                checkpoint_ids(store.clone(), file, size, &mut ids)
                    .await
                    .map_err(|e| fail("its checkpoint", &e))?;
            }
            first = at + 1;
        }
        Err(object_store::Error::NotFound { .. }) => {}
        Err(e) => return Err(fail("_last_checkpoint", &e)),
    }
    let reads: Vec<_> = (first..=version)
        .map(|v| log.read_commit_entry(v))
        .collect();
    let mut commits = futures::stream::iter(reads).buffered(READS);
    while let Some(commit) = commits.next().await {
        let Some(bytes) = commit.map_err(|e| fail("a commit", &e))? else {
            // Cleaned up, or not there: the kernel knows what to do.
            return Ok(None);
        };
        for line in bytes.split(|b| *b == b'\n') {
            // Only `txn` lines are parsed (an `add` line is large).
            if !line.starts_with(b"{\"txn\"") {
                continue;
            }
            let action: Value = serde_json::from_slice(line).map_err(|e| fail("a commit", &e))?;
            if let Some(id) = action["txn"]["appId"].as_str() {
                ids.insert(id.to_string());
            }
        }
    }
    Ok(Some(ids))
}

/// The `txn.appId` values of one checkpoint file.
async fn checkpoint_ids(
    store: std::sync::Arc<dyn object_store::ObjectStore>,
    file: Path,
    size: u64,
    ids: &mut HashSet<String>,
) -> std::result::Result<(), String> {
    let reader = ObjectReader::at(store, file, size);
    let builder = ParquetRecordBatchStreamBuilder::new(reader)
        .await
        .map_err(|e| e.to_string())?;
    let roots: Vec<usize> = builder
        .parquet_schema()
        .root_schema()
        .get_fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| f.name() == "txn")
        .map(|(i, _)| i)
        .collect();
    if roots.is_empty() {
        return Ok(());
    }
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    let mut batches = builder
        .with_projection(mask)
        .build()
        .map_err(|e| e.to_string())?;
    while let Some(batch) = batches.try_next().await.map_err(|e| e.to_string())? {
        let txn: &StructArray = batch
            .column_by_name("txn")
            .and_then(|c| c.as_struct_opt())
            .ok_or("the checkpoint's txn column is not a struct")?;
        let Some(app) = txn.column_by_name("appId") else {
            continue;
        };
        let app = arrow::compute::cast(app, &DataType::Utf8).map_err(|e| e.to_string())?;
        let app = app.as_string::<i32>();
        for i in 0..txn.len() {
            if txn.is_valid(i) && app.is_valid(i) {
                ids.insert(app.value(i).to_string());
            }
        }
    }
    Ok(())
}
