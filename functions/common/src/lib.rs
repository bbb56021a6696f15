//! # The Lambda handlers of Sluice
//!
//! Each function binary (`functions/planner`, `functions/transform`,
//! `functions/catalog`) is a thin `main` that reads [`Settings`] from the
//! environment once, builds [`Deps`] (the engine, the stores, the SDK
//! clients) once, and hands every event to one handler here:
//!
//! - [`planner::handle`]: S3 / EventBridge / SQS / direct events → chunk tasks,
//!   sent to the chunk queue or written as a manifest for a Distributed Map;
//! - [`transform::handle`]: chunk tasks (SQS batch or direct) → Parquet files
//!   and a commit record per chunk;
//! - [`catalog::handle`]: commit records (S3 / EventBridge / SQS / direct) →
//!   Glue (or local) tables and partitions, and partitions worth compacting
//!   queued for the compactor;
//! - [`compactor::handle`]: partitions (SQS, direct, a backfill's manifest, a
//!   schedule) → their small files merged.
//!
//! Handlers take the event as JSON and return JSON, so the tests call them
//! directly with the sample events in `events/`.

pub mod catalog;
pub mod compactor;
pub mod deps;
pub mod error;
pub mod logging;
pub mod metrics;
pub mod planner;
pub mod transform;

pub use deps::{Deps, Settings};
pub use error::FunctionError;

/// The answer to an SQS batch: the ids of the messages that failed, which
/// SQS delivers again (and, past the redrive limit, moves to the dead-letter
/// queue); the others are deleted.
pub fn sqs_batch_response(failed: impl IntoIterator<Item = String>) -> serde_json::Value {
    use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse};
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failed
        .into_iter()
        .map(|id| {
            let mut f = BatchItemFailure::default();
            f.item_identifier = id;
            f
        })
        .collect();
    serde_json::to_value(response).expect("serializes")
}

/// Send `bodies` to an SQS queue, ten per `SendMessageBatch`, retrying the
/// entries SQS failed (with backoff); each delayed by `delay_seconds`.
/// Returns how many were sent.
pub async fn send_messages(
    sqs: &aws_sdk_sqs::Client,
    queue: &str,
    bodies: &[String],
    delay_seconds: Option<i32>,
) -> Result<usize, FunctionError> {
    use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
    for batch in bodies.chunks(10) {
        let mut pending: Vec<(String, &String)> = batch
            .iter()
            .enumerate()
            .map(|(i, b)| (i.to_string(), b))
            .collect();
        for attempt in 1..=6u32 {
            let entries = pending
                .iter()
                .map(|(id, body)| {
                    SendMessageBatchRequestEntry::builder()
                        .id(id)
                        .message_body(*body)
                        .set_delay_seconds(delay_seconds)
                        .build()
                        .expect("id and body are set")
                })
                .collect::<Vec<_>>();
            let result = sqs
                .send_message_batch()
                .queue_url(queue)
                .set_entries(Some(entries))
                .send()
                .await;
            let failed: Vec<String> = match result {
                Ok(out) => {
                    if let Some(f) = out.failed().iter().find(|f| f.sender_fault()) {
                        return Err(FunctionError::permanent(format!(
                            "SQS refused a message for {queue}: {}: {}",
                            f.code(),
                            f.message().unwrap_or("")
                        )));
                    }
                    out.failed().iter().map(|f| f.id().to_string()).collect()
                }
                Err(e) if attempt < 6 => {
                    tracing::warn!(attempt, error = %aws_sdk_sqs::error::DisplayErrorContext(&e), "SendMessageBatch failed; retrying");
                    pending.iter().map(|(id, _)| id.clone()).collect()
                }
                Err(e) => {
                    return Err(FunctionError::retryable(format!(
                        "sending to {queue}: {}",
                        aws_sdk_sqs::error::DisplayErrorContext(&e)
                    )));
                }
            };
            if failed.is_empty() {
                break;
            }
            if attempt == 6 {
                return Err(FunctionError::retryable(format!(
                    "sending to {queue}: {} messages still failing after {attempt} attempts",
                    failed.len()
                )));
            }
            pending.retain(|(id, _)| failed.contains(id));
            tokio::time::sleep(std::time::Duration::from_millis(100 << attempt)).await;
        }
    }
    Ok(bodies.len())
}
