//! The compactor: partitions in, their small files merged (see
//! `sluice::compact` for the crash-safe protocol).
//!
//! Takes:
//! - SQS batches of `{"table", "partition"}` (what the catalog function
//!   queues, delayed by the quiet period), failures reported per message;
//! - `{"table", "partition"}` or `{"table", "partitions": [...]}` directly;
//! - `{"manifest": {...}, "start": N}`: every partition the manifest's
//!   committed chunks wrote to (the backfill workflow's last step). It stops
//!   starting partitions a minute and a half before the invocation's deadline
//!   and answers `"next"`, where the workflow calls it again;
//! - a scheduled EventBridge event: a sweep over every partition of every
//!   table, from a place that moves with the time, until the deadline nears.
//!
//! Each table is compacted through its sink (`sluice::sink`): a Hive table
//! partition by partition, a Delta table whole, in one Delta commit, never
//! partition by partition; the scheduled sweep also deletes the files Delta
//! tables removed more than 7 days ago.
//!
//! Direct payloads may set `"min_age"` (`"0s"`, `"15m"`); otherwise the
//! function's setting (`SLUICE_COMPACT_MIN_AGE`, 15 minutes) applies.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sluice::catalog::{PartitionDef, TableDef};
use sluice::compact::{CompactOptions, CompactReport};
use sluice::event::sqs_messages;
use sluice::sink::{Compaction, Vacuum, for_definition};
use tracing::{Instrument, info, info_span};

use crate::catalog::manifest_records;
use crate::deps::Deps;
use crate::error::FunctionError;
use crate::metrics::{Record, Unit};
use sluice::messages::{ManifestPayload, PartitionTask};

/// A direct request.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    table: String,
    partition: Option<String>,
    #[serde(default)]
    partitions: Vec<String>,
    min_age: Option<String>,
}

/// The workflow's request.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestRequest {
    #[serde(flatten)]
    pub payload: ManifestPayload,
    /// Where to start in the manifest's partitions (sorted by table and path).
    #[serde(default)]
    pub start: usize,
    pub min_age: Option<String>,
}

/// What the compactor did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompactorResponse {
    #[serde(flatten)]
    pub report: CompactReport,
    /// Partitions there were to look at (a manifest's or a sweep's).
    pub total: usize,
    /// Where to go on from, if the deadline came first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<usize>,
    /// Files deleted by the scheduled vacuum: of Delta tables, removed longer
    /// ago than the retention; of any table, of chunks that never committed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub files_vacuumed: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// How long a file removed from a Delta table stays on the store, for
/// readers of older snapshots (Delta's default, 7 days).
pub const VACUUM_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Leave this much of the invocation's time unused: one more partition of
/// a few hundred MB fits in it.
const MARGIN: Duration = Duration::from_secs(90);

/// Handle one invocation; `deadline` is when Lambda stops it.
pub async fn handle(
    deps: &Deps,
    event: Value,
    deadline: Option<Instant>,
) -> Result<Value, FunctionError> {
    let started = Instant::now();
    info!(
        time_left_s = deadline.map(|d| d.saturating_duration_since(started).as_secs()),
        "compactor invoked"
    );
    if let Some(messages) = sqs_messages(&event) {
        let (done, failed) = crate::for_each_message(messages, "compaction", |m| async move {
            let task: PartitionTask = serde_json::from_value(m.json()?).map_err(|e| {
                FunctionError::permanent(format!(
                    "SQS message {}: not a partition task {{\"table\", \"partition\"}}: {e}",
                    m.message_id
                ))
            })?;
            let table = table_def(deps, &task.table).await?;
            one(deps, &table, &task.partition, &deps.compact).await
        })
        .await;
        let mut total = CompactorResponse::default();
        for (_, r) in &done {
            total.report.add(r);
        }
        emit(&total, failed.len(), started);
        return Ok(crate::sqs_batch_response(failed));
    }
    let response = if event.get("manifest").is_some() {
        let request: ManifestRequest = serde_json::from_value(event).map_err(|e| {
            FunctionError::permanent(format!(
                "not a compaction request {{\"manifest\": {{...}}, \"start\": N}}: {e}"
            ))
        })?;
        let options = with_min_age(&deps.compact, request.min_age.as_deref())?;
        let mut response = CompactorResponse::default();
        let records =
            manifest_records(deps, &request.payload.manifest, &mut Default::default()).await?;
        let touched: BTreeSet<PartitionTask> = records
            .iter()
            .flat_map(|r| {
                r.files.iter().map(|f| PartitionTask {
                    table: r.table.clone(),
                    partition: f.partition_path.clone(),
                })
            })
            .collect();
        let touched: Vec<PartitionTask> = touched.into_iter().collect();
        response.total = touched.len();
        sweep(
            deps,
            &touched,
            request.start,
            &options,
            deadline,
            &mut response,
        )
        .await?;
        response
    } else if event.get("detail-type").and_then(Value::as_str) == Some("Scheduled Event") {
        let mut all = Vec::new();
        let mut tables = Vec::new();
        for t in deps.catalog().tables().await? {
            let sink = for_definition(&t);
            if sink.compacts_whole_table() {
                // A Delta table is compacted whole, as one task.
                all.push(PartitionTask {
                    table: t.name.clone(),
                    partition: String::new(),
                });
                tables.push((t.name.clone(), sink));
                continue;
            }
            tables.push((t.name.clone(), sink));
            for p in deps.catalog().partitions(&t.name).await? {
                all.push(PartitionTask {
                    table: t.name.clone(),
                    partition: p.path,
                });
            }
        }
        let mut response = CompactorResponse {
            total: all.len(),
            ..Default::default()
        };
        // Start where the clock says, so that runs cut short by the
        // deadline cover every partition over time.
        let start = if all.is_empty() {
            0
        } else {
            (chrono::Utc::now().timestamp() / 60) as usize % all.len()
        };
        all.rotate_left(start);
        sweep(deps, &all, 0, &deps.compact, deadline, &mut response).await?;
        // Files Delta tables removed longer ago than the retention go, and
        // the files of chunks that never committed (any table).
        for (name, sink) in tables {
            let job = Vacuum {
                lake: &deps.lake,
                table: &name,
                retain: VACUUM_RETENTION,
                dry_run: false,
            };
            response.files_vacuumed += sink
                .vacuum(job)
                .instrument(info_span!("vacuum", table = %name))
                .await?
                .len();
        }
        response
    } else {
        let request: Request = serde_json::from_value(event).map_err(|e| {
            FunctionError::permanent(format!(
                "not a compaction request (an SQS batch, {{\"table\", \"partition\"}}, \
                 {{\"table\", \"partitions\"}}, {{\"manifest\"}} or a scheduled event): {e}"
            ))
        })?;
        let options = with_min_age(&deps.compact, request.min_age.as_deref())?;
        let mut paths = request.partitions.clone();
        paths.extend(request.partition.clone());
        if paths.is_empty() {
            return Err(FunctionError::permanent(format!(
                "table '{}': no partition given (\"partition\" or \"partitions\")",
                request.table
            )));
        }
        let tasks: Vec<PartitionTask> = paths
            .into_iter()
            .map(|partition| PartitionTask {
                table: request.table.clone(),
                partition,
            })
            .collect();
        let mut response = CompactorResponse {
            total: tasks.len(),
            ..Default::default()
        };
        sweep(deps, &tasks, 0, &options, deadline, &mut response).await?;
        response
    };
    emit(&response, 0, started);
    Ok(crate::answer("compaction done", &response))
}

fn with_min_age(
    base: &CompactOptions,
    min_age: Option<&str>,
) -> Result<CompactOptions, FunctionError> {
    let mut o = base.clone();
    if let Some(s) = min_age {
        o.min_age = humantime::parse_duration(s)
            .map_err(|e| FunctionError::permanent(format!("min_age {s:?}: {e}")))?;
    }
    Ok(o)
}

/// Compact `tasks[start..]` until the deadline nears.
async fn sweep(
    deps: &Deps,
    tasks: &[PartitionTask],
    start: usize,
    options: &CompactOptions,
    deadline: Option<Instant>,
    response: &mut CompactorResponse,
) -> Result<(), FunctionError> {
    let mut tables: Vec<TableDef> = Vec::new();
    let mut whole_done: Vec<String> = Vec::new();
    for (i, task) in tasks.iter().enumerate().skip(start) {
        // At least one partition per call, so a caller that goes on from
        // `next` always gets somewhere.
        if i > start
            && deadline.is_some_and(|d| d.saturating_duration_since(Instant::now()) < MARGIN)
        {
            response.next = Some(i);
            return Ok(());
        }
        let table = match tables.iter().find(|t| t.name == task.table) {
            Some(t) => t.clone(),
            None => {
                let t = table_def(deps, &task.table).await?;
                tables.push(t.clone());
                t
            }
        };
        if for_definition(&table).compacts_whole_table() {
            // One compaction of the whole table (Delta), in one commit.
            if whole_done.contains(&table.name) {
                continue;
            }
            whole_done.push(table.name.clone());
        }
        let r = one(deps, &table, &task.partition, options).await?;
        response.report.add(&r);
    }
    Ok(())
}

/// Compact `partition` of `table` through its sink: that partition of a
/// Hive table, or the whole of a Delta table, in one commit.
async fn one(
    deps: &Deps,
    table: &TableDef,
    partition: &str,
    options: &CompactOptions,
) -> Result<CompactReport, FunctionError> {
    let sink = for_definition(table);
    let p = if sink.compacts_whole_table() {
        None
    } else {
        Some(partition_def(table, partition)?)
    };
    let span = info_span!("partition", table = %table.name, partition = %partition);
    let job = Compaction {
        lake: &deps.lake,
        catalog: deps.catalog(),
        table,
        partition: p.as_ref(),
        options,
        now: chrono::Utc::now(),
    };
    let r = sink.compact(job).instrument(span).await?;
    if r.outputs > 0 {
        Record::new("compactor")
            .dimension("Table", &table.name)
            .metric("FilesMerged", r.inputs as f64, Unit::Count)
            .metric("FilesWritten", r.outputs as f64, Unit::Count)
            .metric("BytesMerged", r.bytes_in as f64, Unit::Bytes)
            .emit();
    }
    Ok(r)
}

async fn table_def(deps: &Deps, name: &str) -> Result<TableDef, FunctionError> {
    deps.catalog()
        .table(name)
        .await?
        .ok_or_else(|| FunctionError::permanent(format!("no table '{name}' in the catalog")))
}

fn partition_def(table: &TableDef, path: &str) -> Result<PartitionDef, FunctionError> {
    let values = sluice::partition::parse_partition_path(path);
    if values.len() != table.partition_keys.len()
        || values
            .iter()
            .zip(&table.partition_keys)
            .any(|((k, _), key)| k != &key.name)
    {
        return Err(FunctionError::permanent(format!(
            "table '{}': {path:?} is not a partition path of its keys ({})",
            table.name,
            table
                .partition_keys
                .iter()
                .map(|k| k.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    Ok(PartitionDef {
        values: values.into_iter().map(|(_, v)| v).collect(),
        path: path.to_string(),
    })
}

fn emit(r: &CompactorResponse, failed: usize, started: Instant) {
    Record::new("compactor")
        .metric("Partitions", r.report.partitions as f64, Unit::Count)
        .metric(
            "PartitionsCompacted",
            r.report.compacted as f64,
            Unit::Count,
        )
        .metric("FilesMerged", r.report.inputs as f64, Unit::Count)
        .metric("FilesWritten", r.report.outputs as f64, Unit::Count)
        .metric("Failures", failed as f64, Unit::Count)
        .duration(started)
        .emit();
}
