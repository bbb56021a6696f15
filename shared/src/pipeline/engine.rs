//! The engine: the pipeline with its lookups read, each table's transform
//! planned and its sink chosen, once per process.

use std::sync::Arc;

use crate::commit::{ColumnDef, column_defs};

use crate::config::{Pipeline, Table};
use crate::error::{Error, Result};
use crate::lookup::{self, Loaded, Sources};
use crate::partition::Splitter;
use crate::sink::{Hive, TableSink};
use crate::transform::Transform;

/// A table with its checked transform: everything needed to process its chunks.
#[derive(Debug, Clone)]
pub struct PreparedTable {
    pub table: Table,
    pub transform: Transform,
    /// Catalog columns of the data files (the output without the partition columns).
    pub columns: Vec<ColumnDef>,
    /// Catalog columns of the partition keys, in path order.
    pub partition_keys: Vec<ColumnDef>,
}

impl PreparedTable {
    /// Plan a table's transform and derive its catalog columns.
    pub async fn new(t: &Table, lookups: &[Arc<Loaded>]) -> Result<PreparedTable> {
        let transform = Transform::plan(t, lookups).await?;
        let out_schema = transform.output_schema();
        // A CDC table's chunks stage their changes unpartitioned; the merge
        // partitions the table's files.
        let (_, partition_by) = t.chunk_destination();
        let splitter = Splitter::new(out_schema, &partition_by)?;
        let columns = column_defs(&t.name, splitter.data_schema())?;
        let key_indices: Vec<usize> = partition_by
            .iter()
            .map(|k| out_schema.index_of(k).expect("checked by Transform::plan"))
            .collect();
        let keys_schema = out_schema
            .project(&key_indices)
            .map_err(|e| Error::transform(&t.name, e))?;
        let partition_keys = column_defs(&t.name, &keys_schema)?;
        crate::sink::for_table(t).check_output(&t.name, out_schema)?;
        Ok(PreparedTable {
            table: t.clone(),
            transform,
            columns,
            partition_keys,
        })
    }
}

/// The pipeline, with its lookups read and every table's SQL checked.
#[derive(Debug, Clone)]
pub struct Engine {
    pub pipeline: Pipeline,
    pub tables: Vec<PreparedTable>,
    /// The pipeline's lookups as read (rows, or only schemas).
    pub lookups: Vec<Arc<Loaded>>,
    /// Whether the lookups hold their rows (a process that transforms).
    lookup_rows: bool,
    /// Each table's sink, chosen once, by table name.
    sinks: Vec<(String, Arc<dyn TableSink>)>,
}

/// Each table's sink ([`crate::sink::for_table`]).
pub(super) fn sinks(pipeline: &Pipeline) -> Vec<(String, Arc<dyn TableSink>)> {
    pipeline
        .tables
        .iter()
        .map(|t| (t.name.clone(), crate::sink::for_table(t)))
        .collect()
}

impl Engine {
    /// Check every table's transform before reading anything; for a
    /// pipeline without `[[lookups]]` (see [`Engine::load`]).
    pub async fn new(pipeline: Pipeline) -> Result<Engine> {
        if let Some(l) = pipeline.lookups.first() {
            return Err(Error::Config(format!(
                "lookup '{}': the pipeline's lookups must be read before its tables are planned (Engine::load)",
                l.name
            )));
        }
        Engine::plan(pipeline, Vec::new(), false).await
    }

    /// The pipeline alone, no table planned and no lookup read: for a
    /// process that matches files to tables and commits, but never
    /// transforms ([`Engine::table`] finds no table in it).
    pub fn unplanned(pipeline: Pipeline) -> Engine {
        Engine {
            sinks: sinks(&pipeline),
            pipeline,
            tables: Vec::new(),
            lookups: Vec::new(),
            lookup_rows: false,
        }
    }

    /// Read the pipeline's lookups (their rows if `rows`, else only their
    /// schemas: enough to plan, for functions that never transform), all
    /// held within one [`lookup::Budget`], then
    /// check every table's transform. A lookup that cannot be read or is
    /// larger than its `max_size` fails here, before any chunk starts.
    pub async fn load(pipeline: Pipeline, sources: Sources<'_>, rows: bool) -> Result<Engine> {
        let budget = lookup::Budget::for_process(pipeline.lookup_memory);
        let mut lookups = Vec::new();
        for l in &pipeline.lookups {
            lookups.push(Arc::new(lookup::load(l, sources, rows, &budget).await?));
        }
        Engine::plan(pipeline, lookups, rows).await
    }

    async fn plan(
        pipeline: Pipeline,
        lookups: Vec<Arc<Loaded>>,
        lookup_rows: bool,
    ) -> Result<Engine> {
        let mut tables = Vec::new();
        for t in &pipeline.tables {
            tables.push(PreparedTable::new(t, &lookups).await?);
        }
        Ok(Engine {
            sinks: sinks(&pipeline),
            pipeline,
            tables,
            lookups,
            lookup_rows,
        })
    }

    /// The engine with every lookup whose source changed read again (each
    /// source asked at most every `refresh`), or `None` if none changed.
    /// Called between chunks, so a chunk sees one version of each lookup.
    /// The new rows are read while the old ones are still in use, so both
    /// must fit in the lookups' budget.
    pub async fn refreshed(&self, sources: Sources<'_>) -> Result<Option<Engine>> {
        let mut changed = false;
        let mut lookups = Vec::with_capacity(self.lookups.len());
        for l in &self.lookups {
            // A source that cannot be asked (a network fault) keeps the rows
            // read before, until the next check; one that changed and cannot
            // be read fails the chunk, naming the lookup.
            let source_changed = l.changed(sources).await.unwrap_or_else(|e| {
                tracing::warn!(lookup = %l.lookup.name, error = %e, "cannot tell whether the lookup changed; keeping the rows read before");
                false
            });
            if source_changed {
                tracing::info!(lookup = %l.lookup.name, "lookup changed; reading it again");
                lookups.push(Arc::new(
                    lookup::load(&l.lookup, sources, self.lookup_rows, l.budget()).await?,
                ));
                changed = true;
            } else {
                lookups.push(l.clone());
            }
        }
        if !changed {
            return Ok(None);
        }
        Engine::plan(self.pipeline.clone(), lookups, self.lookup_rows)
            .await
            .map(Some)
    }

    /// The prepared table named `name`.
    pub fn table(&self, name: &str) -> Option<&PreparedTable> {
        self.tables.iter().find(|t| t.table.name == name)
    }

    /// The sink of table `name`: [`Hive`] for a table the pipeline does not
    /// name (a commit record of a table since removed from the pipeline
    /// file is registered as its record describes it).
    pub fn sink(&self, name: &str) -> Arc<dyn TableSink> {
        self.sinks
            .iter()
            .find(|(n, _)| n == name)
            .map_or_else(|| Arc::new(Hive) as Arc<dyn TableSink>, |(_, s)| s.clone())
    }
}
