//! The transform: one chunk task in, Parquet files and a commit record out.
//!
//! Takes an SQS batch of tasks (one at a time, so memory stays that of one
//! chunk; failures reported per message in `batchItemFailures`, so only the
//! failed ones come back) or one task as a direct payload (a Step Functions
//! Map item), which answers with a [`TaskResult`] or fails with a
//! `Sluice.Retryable` / `Sluice.Permanent` error.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sluice::commit::CommitRecord;
use sluice::event::sqs_messages;
use sluice::messages::TaskSpec;
use sluice::pipeline::{Counters, process_chunk};
use tracing::{Instrument, info, info_span};

use crate::deps::Deps;
use crate::error::FunctionError;
use crate::metrics::{Record, Unit};

/// What one chunk produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskResult {
    pub table: String,
    pub source: String,
    pub chunk: u32,
    /// The commit record's URL.
    pub commit: String,
    pub rows_in: u64,
    pub rows_out: u64,
    pub rows_rejected: u64,
    /// Values dropped or nulled by the table's contract.
    #[serde(default)]
    pub values_discarded: u64,
    pub files: usize,
    pub bytes_out: u64,
    pub partitions: usize,
}

/// Handle one invocation.
pub async fn handle(deps: &Deps, event: Value) -> Result<Value, FunctionError> {
    if let Some(messages) = sqs_messages(&event) {
        let (_, failed) = crate::for_each_message(messages, "chunk", |m| async move {
            let spec = serde_json::from_str::<TaskSpec>(&m.body).map_err(|e| {
                FunctionError::permanent(format!(
                    "SQS message {}: not a chunk task: {e}",
                    m.message_id
                ))
            })?;
            run(deps, &spec).await
        })
        .await;
        return Ok(crate::sqs_batch_response(failed));
    }
    let spec: TaskSpec = serde_json::from_value(event).map_err(|e| {
        FunctionError::permanent(format!(
            "not a chunk task (expected an SQS batch or {{\"table\", \"source\", \"chunk\", \"chunks\"}}): {e}"
        ))
    })?;
    let result = run(deps, &spec).await?;
    Ok(serde_json::to_value(result).expect("serializes"))
}

/// Run one chunk task.
pub async fn run(deps: &Deps, spec: &TaskSpec) -> Result<TaskResult, FunctionError> {
    let span = info_span!(
        "chunk",
        object = %spec.source.url,
        table = %spec.table,
        chunk = spec.chunk.index,
        chunks = spec.chunks
    );
    async {
        let started = Instant::now();
        let counters = Arc::new(Counters::default());
        let result = async {
            let task = spec.resolve(&deps.input)?;
            let engine = deps.fresh_engine().await?;
            process_chunk(&engine, &deps.lake, &task, &deps.read, &counters).await
        }
        .await;
        let metrics = Record::new("transform").dimension("Table", &spec.table);
        match result {
            Ok(record) => {
                let r = summarize(deps, &record);
                metrics
                    .metric("RowsIn", r.rows_in as f64, Unit::Count)
                    .metric("RowsOut", r.rows_out as f64, Unit::Count)
                    .metric("RowsRejected", r.rows_rejected as f64, Unit::Count)
                    .metric("ValuesDiscarded", r.values_discarded as f64, Unit::Count)
                    .metric("BytesIn", record.bytes_in as f64, Unit::Bytes)
                    .metric("BytesOut", r.bytes_out as f64, Unit::Bytes)
                    .metric("FilesOut", r.files as f64, Unit::Count)
                    .metric("Partitions", r.partitions as f64, Unit::Count)
                    .metric("ChunksFailed", 0.0, Unit::Count)
                    .duration(started)
                    .emit();
                info!(
                    rows_in = r.rows_in,
                    rows_out = r.rows_out,
                    rows_rejected = r.rows_rejected,
                    values_discarded = r.values_discarded,
                    files = r.files,
                    commit = %r.commit,
                    "chunk done"
                );
                Ok(r)
            }
            Err(e) => {
                let e = FunctionError::from(e);
                metrics
                    .metric("ChunksFailed", 1.0, Unit::Count)
                    .duration(started)
                    .emit();
                Err(e)
            }
        }
    }
    .instrument(span)
    .await
}

fn summarize(deps: &Deps, record: &CommitRecord) -> TaskResult {
    let partitions: HashSet<&str> = record
        .files
        .iter()
        .map(|f| f.partition_path.as_str())
        .collect();
    let commit = deps
        .lake
        .child(&CommitRecord::path(&record.table, &record.chunk_id))
        .map(|p| deps.lake.url_of(&p))
        .unwrap_or_default();
    TaskResult {
        table: record.table.clone(),
        source: record.source.url.clone(),
        chunk: record.chunk.index,
        commit,
        rows_in: record.rows_in,
        rows_out: record.rows_out,
        rows_rejected: record.rows_rejected,
        values_discarded: record.values_discarded,
        files: record.files.len(),
        bytes_out: record.files.iter().map(|f| f.bytes).sum(),
        partitions: partitions.len(),
    }
}
