//! Table sinks: what happens to a table's chunks once their files and commit
//! records are written, chosen once per table when the engine is prepared
//! ([`for_table`]). The chunk path (reading, the SQL, partitioning, writing,
//! the commit record) is the same for every table; the sink decides the
//! rest:
//!
//! - **stage** ([`TableSink::stage`]), right after a chunk's commit record,
//!   in the process that wrote it (a transform, a stream function, `sluice
//!   run`'s workers): a Hive chunk is recorded in its source's ledger, which
//!   retires the rows of the source's older versions once a newer one is
//!   complete; a Delta chunk is recorded in the ledger for its committer; a
//!   CDC chunk's staged changes wait for the merge.
//! - **publish** ([`TableSink::publish`]), by the table's committer (the
//!   catalog function in AWS, a task of `sluice run` locally), a batch of
//!   finished chunks at a time: a Hive table and its partitions registered
//!   in the catalog; a Delta table's batch made visible in one Delta commit;
//!   a CDC table's changes merged by key in one Delta commit. Delta and CDC
//!   batches run under the table's lease when one is asked for (many
//!   committers in AWS, one per table at a time).
//!
//! - **compact** ([`TableSink::compact`]) and **vacuum**
//!   ([`TableSink::vacuum`]), by the compactor: a Hive table's small files
//!   merged partition by partition under the crash-safe protocol of
//!   `compact`; a Delta table's in one OPTIMIZE commit of the whole table,
//!   and the files it removed long enough ago deleted.
//!
//! A table the pipeline does not name (a commit record of a table since
//! removed from the pipeline file) is published as a Hive table, as its
//! record describes it. The compactor, which works from the catalog, takes
//! the sink of each table's definition there ([`for_definition`]).

use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::Schema;
use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::catalog::{Catalog, PartitionDef, TableDef};
use crate::commit::CommitRecord;
use crate::compact::{CompactOptions, CompactReport};
use crate::config::{Table, TableFormat};
use crate::error::Result;
use crate::store::Location;

mod delta;
mod hive;

pub use self::delta::{Cdc, Delta};
pub use self::hive::Hive;

/// Where a staged chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A file cut into this many chunks (a newer version of the file
    /// replaces its rows once all of its chunks are in).
    File { chunks: usize },
    /// A stream batch: its own source of one chunk, never replaced.
    Stream,
}

impl Origin {
    /// How many chunks the chunk's source has.
    pub fn chunks(self) -> usize {
        match self {
            Origin::File { chunks } => chunks,
            Origin::Stream => 1,
        }
    }
}

/// What staging a chunk did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Staged {
    /// Chunks of older versions of the chunk's source whose rows left the
    /// table (a re-upload replaced them).
    pub chunks_retired: u64,
}

/// What publishing a batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Published {
    /// Delta commits written (a batch with nothing new writes none).
    pub commits: u64,
    /// Chunks that entered the table by this publish (Delta), or whose
    /// changes are applied now or were before (CDC).
    pub chunks_added: usize,
    /// Partitions new to the catalog (Hive).
    pub partitions_added: usize,
    /// What a CDC merge did.
    pub merged: Option<crate::delta::merge::Merged>,
}

/// The table's committer lease, for processes that may commit the same
/// table at once (catalog functions): one left by a crashed holder is taken
/// over after `ttl`; a publish waits at most `wait` for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub ttl: Duration,
    pub wait: Duration,
}

/// Finished chunks of one table, for [`TableSink::publish`].
#[derive(Clone, Copy)]
pub struct Batch<'a> {
    pub lake: &'a Location,
    pub catalog: &'a dyn Catalog,
    pub records: &'a [CommitRecord],
    /// The table's committer lease, where processes may commit the table
    /// at once.
    pub lease: Option<Lease>,
}

impl<'a> Batch<'a> {
    /// `records` to publish with no lease (the process is the table's only
    /// committer).
    pub fn new(lake: &'a Location, catalog: &'a dyn Catalog, records: &'a [CommitRecord]) -> Self {
        Batch {
            lake,
            catalog,
            records,
            lease: None,
        }
    }

    /// The batch published under the table's `lease`.
    pub fn leased(self, lease: Lease) -> Self {
        Batch {
            lease: Some(lease),
            ..self
        }
    }
}

/// Where a table's finished chunks go to become visible. See the module's docs.
#[async_trait]
pub trait TableSink: Send + Sync + std::fmt::Debug {
    /// The table format readers see.
    fn format(&self) -> TableFormat;

    /// Whether the table can hold the transform's output as it is (checked
    /// when the engine is prepared, before any chunk): a Delta table's
    /// columns must be of Delta's types exactly.
    fn check_output(&self, table: &str, schema: &Schema) -> Result<()> {
        match self.format() {
            TableFormat::Delta => self::delta::check_delta_types(table, schema),
            TableFormat::Hive => Ok(()),
        }
    }

    /// After a chunk's files are written, and before or after its commit
    /// record ([`TableSink::stages_first`]): what the table needs of the
    /// chunk before it is done.
    async fn stage(&self, lake: &Location, rec: &CommitRecord, from: Origin) -> Result<Staged>;

    /// Whether [`TableSink::stage`] comes before the chunk's commit record:
    /// where the committer reads the record (the commit record's event
    /// triggers it) and must find the chunk staged by then.
    fn stages_first(&self) -> bool {
        false
    }

    /// Rows of finished chunks worth gathering before a publish while more
    /// chunks are coming (a CDC merge rewrites every table file a change
    /// lands in: fewer, larger merges); 0 publishes as chunks finish.
    fn gather_rows(&self) -> u64 {
        0
    }

    /// Whether finished chunks are worth publishing together (a Delta
    /// commit per batch saves log entries), rather than one at a time, in
    /// the order they finish (a Hive chunk's registration costs the same
    /// either way, and a run's store calls then do not depend on timing).
    fn batches(&self) -> bool {
        true
    }

    /// Make the batch's records (finished chunks of this table) visible to
    /// readers, and the table known to its catalog; under the table's lease
    /// when one is given. Publishing a batch again changes nothing.
    async fn publish(&self, batch: Batch<'_>) -> Result<Published>;
}

/// One compaction asked of a table's [`Upkeep`].
#[derive(Clone, Copy)]
pub struct Compaction<'a> {
    pub lake: &'a Location,
    pub catalog: &'a dyn Catalog,
    /// The table, as the catalog defines it.
    pub table: &'a TableDef,
    /// The partition to compact (Hive); a table compacted whole (Delta)
    /// asks for none.
    pub partition: Option<&'a PartitionDef>,
    pub options: &'a CompactOptions,
    pub now: DateTime<Utc>,
}

/// One vacuum asked of a table's [`Upkeep`].
#[derive(Debug, Clone, Copy)]
pub struct Vacuum<'a> {
    pub lake: &'a Location,
    pub table: &'a str,
    /// How long a file a version stopped using is kept (Delta).
    pub retain: Duration,
    /// Only list what would be deleted.
    pub dry_run: bool,
}

/// How a table's files are kept once published: small files merged, files
/// no longer used deleted. Chosen by the table's format
/// ([`for_definition`]); the compactor function and `sluice compact` /
/// `sluice vacuum` call the same code.
#[async_trait]
pub trait Upkeep: Send + Sync + std::fmt::Debug {
    /// Whether compaction takes the whole table at once (Delta: one
    /// OPTIMIZE commit) rather than one partition at a time (Hive).
    fn compacts_whole_table(&self) -> bool;

    /// Merge small files of `job.table`: of `job.partition` (Hive), or of
    /// the whole table (Delta).
    async fn compact(&self, job: Compaction<'_>) -> Result<CompactReport>;

    /// Delete (with `job.dry_run`, only list) the files `job.table` stopped
    /// using longer ago than `job.retain`, and files in its folder no commit
    /// accounts for (a crashed chunk's), past their grace.
    async fn vacuum(&self, job: Vacuum<'_>) -> Result<Vec<String>>;
}

/// The upkeep of a table as the catalog defines it: a Delta table's (a
/// CDC table's too), or a Hive table's.
pub fn for_definition(table: &TableDef) -> Arc<dyn Upkeep> {
    match table.format {
        TableFormat::Delta => Arc::new(Delta),
        TableFormat::Hive => Arc::new(Hive),
    }
}

/// The sink of `table`: a CDC table's merge, a Delta table's commits, or a
/// Hive table's catalog partitions.
pub fn for_table(table: &Table) -> Arc<dyn TableSink> {
    match (&table.cdc, table.table_format) {
        (Some(_), _) => Arc::new(Cdc::new(table.clone())),
        (None, TableFormat::Delta) => Arc::new(Delta),
        (None, TableFormat::Hive) => Arc::new(Hive),
    }
}

/// Every table of the lake, as the catalog defines it, and the Delta tables
/// the catalog does not hold (a lake written without a catalog, or whose
/// catalog lost them), found by their logs; in name order.
pub async fn lake_tables(lake: &Location, catalog: &dyn Catalog) -> Result<Vec<TableDef>> {
    let mut defs = catalog.tables().await?;
    for name in crate::delta::tables(lake).await? {
        match defs.iter_mut().find(|d| d.name == name) {
            Some(d) => d.format = TableFormat::Delta,
            None => defs.push(TableDef {
                location: name.clone(),
                name,
                columns: Vec::new(),
                partition_keys: Vec::new(),
                format: TableFormat::Delta,
                compression: None,
            }),
        }
    }
    defs.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(defs)
}
