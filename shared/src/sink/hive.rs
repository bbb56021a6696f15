//! A Hive table: a chunk is visible once its files are written; the
//! catalog learns of the table and its partitions when a batch is published.

use std::collections::HashSet;

use async_trait::async_trait;

use super::{Batch, Compaction, Origin, Published, Staged, TableSink, Upkeep, Vacuum};
use crate::catalog::{PartitionDef, TableDef, commit_entries};
use crate::commit::CommitRecord;
use crate::compact::{CompactReport, compact_partition};
use crate::config::TableFormat;
use crate::error::Error;
use crate::error::Result;
use crate::store::Location;

/// The sink of a Hive-partitioned table.
#[derive(Debug, Clone, Copy, Default)]
pub struct Hive;

#[async_trait]
impl TableSink for Hive {
    fn format(&self) -> TableFormat {
        TableFormat::Hive
    }

    /// The chunk in its source's ledger; once every chunk of a newer version
    /// of the source is in, the older versions' rows leave the table.
    async fn stage(&self, lake: &Location, rec: &CommitRecord, from: Origin) -> Result<Staged> {
        // A stream batch is its own source (named by its first and last
        // record) and never has a newer version to replace it: its ledger
        // entry would cost a PUT and a LIST a batch for nothing.
        let Origin::File { chunks } = from else {
            return Ok(Staged::default());
        };
        let settled = crate::sources::record_and_settle(lake, rec, chunks).await?;
        Ok(Staged {
            chunks_retired: settled.chunks_retired as u64,
        })
    }

    /// The table (every shape its records give it: columns only ever
    /// appended) and the batch's partitions, registered in the catalog.
    async fn publish(&self, batch: Batch<'_>) -> Result<Published> {
        let Batch {
            catalog, records, ..
        } = batch;
        let mut defs: Vec<TableDef> = Vec::new();
        let mut parts: Vec<PartitionDef> = Vec::new();
        // A page of a backfill is 10^4 records: found by hash, not by scan.
        let mut seen: HashSet<String> = HashSet::new();
        for r in records {
            let (def, ps) = commit_entries(r);
            if !defs.contains(&def) {
                defs.push(def);
            }
            for p in ps {
                if seen.insert(p.path.clone()) {
                    parts.push(p);
                }
            }
        }
        let Some(name) = defs.first().map(|d| d.name.clone()) else {
            return Ok(Published::default());
        };
        for def in &defs {
            catalog.ensure_table(def).await?;
        }
        let partitions_added = catalog.add_partitions(&name, &parts).await?;
        Ok(Published {
            partitions_added,
            ..Published::default()
        })
    }

    fn batches(&self) -> bool {
        false
    }
}

#[async_trait]
impl Upkeep for Hive {
    fn compacts_whole_table(&self) -> bool {
        false
    }

    /// One partition's small files merged, crash-safely (`compact`).
    async fn compact(&self, job: Compaction<'_>) -> Result<CompactReport> {
        let partition = job.partition.ok_or_else(|| {
            Error::Config(format!(
                "table '{}': a Hive table is compacted one partition at a time: name the partition",
                job.table.name
            ))
        })?;
        compact_partition(
            job.lake,
            job.catalog,
            job.table,
            partition,
            job.options,
            job.now,
        )
        .await
    }

    /// A Hive table's replaced and merged files leave at once (`retain`
    /// does not apply); what is left to delete is the files of chunks that
    /// never wrote their commit record, older than
    /// [`crate::compact::UNCOMMITTED_GRACE`] (see `compact::sweep`).
    async fn vacuum(&self, job: Vacuum<'_>) -> Result<Vec<String>> {
        let now = chrono::Utc::now();
        crate::compact::sweep_uncommitted(job.lake, job.table, job.dry_run, now).await
    }
}
