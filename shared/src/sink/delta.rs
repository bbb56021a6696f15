//! Delta tables: a batch of chunks made visible by one Delta commit of the
//! table's one committer; a CDC table's staged changes merged by key.

use arrow::datatypes::Schema;
use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{Batch, Compaction, Lease, Origin, Published, Staged, TableSink, Upkeep, Vacuum};
use crate::commit::CommitRecord;
use crate::compact::{CompactOptions, CompactReport};
use crate::config::{Table, TableFormat};
use crate::delta::merge;
use crate::error::{Error, Result};
use crate::store::Location;

/// The sink of a Delta table.
#[derive(Debug, Clone, Copy, Default)]
pub struct Delta;

/// `work` under the table's lease when one is asked for.
async fn under<T>(
    lake: &Location,
    table: &str,
    lease: Option<Lease>,
    work: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    match lease {
        Some(l) => crate::delta::leased(lake, table, l.ttl, l.wait, work).await,
        None => work.await,
    }
}

#[async_trait]
impl TableSink for Delta {
    fn format(&self) -> TableFormat {
        TableFormat::Delta
    }

    /// The chunk in its source's ledger, for the committer: it adds a new
    /// version's chunks and removes the old version's files in one commit.
    /// Before the commit record: a committer that reads the record finds
    /// the version it belongs to (else it would take a new version's first
    /// chunk for a source's only version, and show both versions' rows).
    async fn stage(&self, lake: &Location, rec: &CommitRecord, from: Origin) -> Result<Staged> {
        crate::sources::record_chunk(lake, rec, from.chunks()).await?;
        Ok(Staged::default())
    }

    fn stages_first(&self) -> bool {
        true
    }

    /// One Delta commit of the batch (records already in the table are
    /// skipped), then the table's definition in the catalog, with every
    /// column, whatever failed before.
    async fn publish(&self, batch: Batch<'_>) -> Result<Published> {
        let Some(table) = batch.records.first().map(|r| r.table.clone()) else {
            return Ok(Published::default());
        };
        let commit = crate::delta::commit_batch(batch.lake, &table, batch.records.to_vec());
        let done = under(batch.lake, &table, batch.lease, commit).await?;
        crate::delta::register(batch.catalog, batch.records).await?;
        Ok(Published {
            commits: u64::from(done.version.is_some()),
            chunks_added: done.chunks_added,
            ..Published::default()
        })
    }
}

#[async_trait]
impl Upkeep for Delta {
    fn compacts_whole_table(&self) -> bool {
        true
    }

    /// The whole table's small files merged in one OPTIMIZE commit.
    async fn compact(&self, job: Compaction<'_>) -> Result<CompactReport> {
        optimize(job.lake, &job.table.name, job.options, job.now).await
    }

    async fn vacuum(&self, job: Vacuum<'_>) -> Result<Vec<String>> {
        crate::delta::vacuum(job.lake, job.table, job.retain, job.dry_run).await
    }
}

/// The whole table's small files merged in one OPTIMIZE commit, reported
/// as a compaction of its partitions.
async fn optimize(
    lake: &Location,
    table: &str,
    options: &CompactOptions,
    now: DateTime<Utc>,
) -> Result<CompactReport> {
    let o = crate::delta::compact(lake, table, options, now).await?;
    Ok(CompactReport {
        partitions: o.partitions as usize,
        compacted: if o.version.is_some() {
            o.partitions as usize
        } else {
            0
        },
        inputs: o.files_removed as usize,
        outputs: o.files_added as usize,
        bytes_in: o.bytes_in,
        bytes_out: o.bytes_out,
        rows: o.rows,
        copied: o.copied as usize,
        version: o.version,
        ..Default::default()
    })
}

/// The sink of a CDC table (`[tables.cdc]`): its Delta table, into which
/// each batch's staged changes are merged by key.
#[derive(Debug, Clone)]
pub struct Cdc {
    table: Table,
}

impl Cdc {
    pub fn new(table: Table) -> Cdc {
        Cdc { table }
    }
}

#[async_trait]
impl TableSink for Cdc {
    fn format(&self) -> TableFormat {
        TableFormat::Delta
    }

    /// Nothing: the chunk's staged changes wait for the merge.
    async fn stage(&self, _: &Location, _: &CommitRecord, _: Origin) -> Result<Staged> {
        Ok(Staged::default())
    }

    fn gather_rows(&self) -> u64 {
        merge::MAX_CHANGES_PER_COMMIT
    }

    /// The batch's changes merged by key (one commit per run of chunks of
    /// at most [`merge::MAX_CHANGES_PER_COMMIT`] changes), then the table
    /// (and its change table) registered in the catalog.
    async fn publish(&self, batch: Batch<'_>) -> Result<Published> {
        let Batch { lake, records, .. } = batch;
        if records.is_empty() {
            return Ok(Published::default());
        }
        let apply = merge::apply(lake, &self.table, records);
        let merged = under(lake, &self.table.name, batch.lease, apply).await?;
        merge::register(batch.catalog, &self.table, records).await?;
        Ok(Published {
            commits: u64::from(merged.version.is_some()),
            // Every chunk of the batch is applied (or was before).
            chunks_added: records.len(),
            merged: Some(merged),
            ..Published::default()
        })
    }
}

/// A Delta table's columns must hold what Delta's types say exactly:
/// timestamps are UTC microseconds, integers are signed.
pub(super) fn check_delta_types(table: &str, schema: &Schema) -> Result<()> {
    use arrow::datatypes::{DataType as D, TimeUnit};
    for f in schema.fields() {
        let exact = match f.data_type() {
            D::Timestamp(TimeUnit::Microsecond, Some(tz)) => {
                matches!(tz.as_ref(), "UTC" | "+00:00" | "Z")
            }
            D::Timestamp(_, _) => false,
            D::UInt8 | D::UInt16 | D::UInt32 | D::UInt64 => false,
            _ => true,
        };
        if !exact {
            return Err(Error::transform(
                table,
                format!(
                    "column '{}' has type {}, which a Delta table cannot hold as it is (Delta timestamps are UTC microseconds, its integers signed); cast it in the sql, e.g. arrow_cast(x, 'Timestamp(Microsecond, Some(\"UTC\"))') or CAST(x AS BIGINT)",
                    f.name(),
                    f.data_type()
                ),
            ));
        }
    }
    Ok(())
}
