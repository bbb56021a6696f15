//! The run's committer: finished chunks published through their tables'
//! sinks, a batch at a time.

use super::*;
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::catalog::Catalog;
use crate::commit::CommitRecord;
use crate::sink::Batch;
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::store::Location;

/// What CDC merges did, summed over tables and batches (a run's, or a
/// catalog function invocation's).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CdcSummary {
    /// Changes read from the staged files.
    pub changes: u64,
    /// Changes older than the row (or remembered delete) of their key: ignored.
    pub stale: u64,
    /// Rows inserted or replaced.
    pub upserted: u64,
    /// Deletes applied.
    pub deleted: u64,
    /// Table files read because their key ranges overlap a batch's keys.
    pub files_read: u64,
    /// Of those, files written again without their replaced or deleted rows.
    pub files_rewritten: u64,
}

impl CdcSummary {
    /// Count one merge in.
    pub fn add(&mut self, m: &crate::delta::merge::Merged) {
        self.changes += m.changes;
        self.stale += m.stale;
        self.upserted += m.upserted;
        self.deleted += m.deleted;
        self.files_read += m.files_read as u64;
        self.files_rewritten += m.files_removed as u64;
    }
}

/// What the run's committer did.
#[derive(Default)]
pub(super) struct Committed {
    /// Delta commits written.
    pub(super) commits: u64,
    /// Batches it could not publish, each with its error.
    pub(super) failed: Vec<(Vec<CommitRecord>, Error)>,
    pub(super) cdc: CdcSummary,
}

/// The run's committer: a sender for finished chunks' records, and the task
/// that publishes them.
pub(super) fn committer(
    engine: &Arc<Engine>,
    lake: &Location,
    catalog: &Arc<dyn Catalog>,
) -> (
    mpsc::UnboundedSender<CommitRecord>,
    tokio::task::JoinHandle<Committed>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let (engine, lake, catalog) = (engine.clone(), lake.clone(), catalog.clone());
    let task = tokio::spawn(async move {
        publish_as_chunks_finish(&engine, &lake, catalog.as_ref(), rx).await
    });
    (tx, task)
}

/// Publish finished chunks through their tables' sinks, a batch per table
/// at a time. A batch that fails (after the sink's own retries) is tried
/// again with the next one, and once more at the end; what then still
/// fails is returned with its error.
pub(super) async fn publish_as_chunks_finish(
    engine: &Engine,
    lake: &Location,
    catalog: &dyn Catalog,
    mut finished: mpsc::UnboundedReceiver<CommitRecord>,
) -> Committed {
    use std::collections::BTreeMap;
    let mut done = Committed::default();
    let mut carried: BTreeMap<String, Vec<CommitRecord>> = BTreeMap::new();
    let mut open = true;
    loop {
        let mut batch = std::mem::take(&mut carried);
        if open {
            match finished.recv().await {
                Some(r) => batch.entry(r.table.clone()).or_default().push(r),
                None => open = false,
            }
            while let Ok(r) = finished.try_recv() {
                batch.entry(r.table.clone()).or_default().push(r);
            }
        }
        if batch.is_empty() && !open {
            return done;
        }
        for (table, records) in batch {
            let sink = engine.sink(&table);
            // Records wait (durably: their commit records are written)
            // while the sink wants more and more chunks are coming.
            let rows: u64 = records.iter().map(|r| r.rows_out).sum();
            if open && rows < sink.gather_rows() {
                carried.insert(table, records);
                continue;
            }
            let groups = if sink.batches() {
                vec![records]
            } else {
                records.into_iter().map(|r| vec![r]).collect()
            };
            for group in groups {
                match sink.publish(Batch::new(lake, catalog, &group)).await {
                    Ok(p) => {
                        done.commits += p.commits;
                        if let Some(m) = &p.merged {
                            done.cdc.add(m);
                        }
                    }
                    Err(e) if open => {
                        tracing::warn!(table, error = %crate::error::describe(&e), "publishing a batch failed; its chunks go with the next batch");
                        carried.entry(table.clone()).or_default().extend(group);
                    }
                    Err(e) => done.failed.push((group, e)),
                }
            }
        }
    }
}
