//! # The Lambda handlers of Sluice
//!
//! Each function binary (`functions/planner`, `functions/transform`,
//! `functions/catalog`, `functions/compactor`, `functions/stream`) is a thin `main` that reads [`Settings`] from the
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
//!   schedule) → their small files merged;
//! - [`stream::handle`]: Kinesis and Kafka record batches → one chunk per
//!   shard or topic partition, Parquet files and a commit record each.
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
pub mod stream;
pub mod transform;

pub use deps::{Committer, Compactor, Deps, Parts, Planner, Settings, Transformer};
pub use error::FunctionError;
use sluice::retry::Policy;

/// What every function binary's `main` does: JSON logs, the settings read
/// from the environment once, the clients and the function's [`Parts`] built
/// once (failing the start with a message naming the function), then every
/// event, read from the invocation's bytes as an `E` (a JSON `Value`, or the
/// event type itself where reading it through a `Value` costs: the stream
/// function's), handed to `handler` with the invocation's deadline (none
/// where an emulator sets none).
pub async fn serve<P, E, F, Fut>(
    function: &'static str,
    parts: P,
    handler: F,
) -> Result<(), lambda_runtime::Error>
where
    P: Parts,
    E: serde::de::DeserializeOwned + Send + 'static,
    F: Fn(&'static Deps, E, Option<std::time::Instant>) -> Fut,
    Fut: std::future::Future<Output = Result<serde_json::Value, FunctionError>>,
{
    logging::init();
    let settings = Settings::from_env()?;
    let deps = Deps::new(&settings, parts)
        .await
        .map_err(|e| anyhow::anyhow!("{function}: cannot start: {e}"))?;
    // Built once and kept for the life of the process, as Lambda reuses it.
    let deps: &'static Deps = Box::leak(Box::new(deps));
    let handler = &handler;
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<E>| async move {
            handler(deps, event.payload, deadline(event.context.deadline)).await
        },
    ))
    .await
}

/// The invocation's deadline (milliseconds since the epoch) as an `Instant`;
/// none if it is not in the future (local emulators do not always set it).
fn deadline(deadline_ms: u64) -> Option<std::time::Instant> {
    use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()?
        .as_millis() as u64;
    (deadline_ms > now_ms).then(|| Instant::now() + Duration::from_millis(deadline_ms - now_ms))
}

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

/// A function's answer: `response` as JSON, written to the log too under
/// `what` (the step done: "planned", "registered", ...).
pub fn answer(what: &str, response: &impl serde::Serialize) -> serde_json::Value {
    let value = serde_json::to_value(response).expect("serializes");
    tracing::info!(response = %value, "{what}");
    value
}

/// Run `each` on every message of an SQS batch, one after the other (so
/// memory stays that of one message), each in a span naming the message. A
/// failure is logged with whether it is retryable and costs only its own
/// message. Returns what each successful message gave, with its id, and the
/// ids of the failed ones, for [`sqs_batch_response`].
pub async fn for_each_message<T, F, Fut>(
    messages: Vec<sluice::event::SqsItem>,
    what: &'static str,
    mut each: F,
) -> (Vec<(String, T)>, Vec<String>)
where
    F: FnMut(sluice::event::SqsItem) -> Fut,
    Fut: std::future::Future<Output = Result<T, FunctionError>>,
{
    use tracing::Instrument;
    let mut done = Vec::new();
    let mut failed = Vec::new();
    for m in messages {
        let id = m.message_id.clone();
        let span = tracing::info_span!("sqs_message", message_id = %id);
        match each(m).instrument(span).await {
            Ok(t) => done.push((id, t)),
            Err(e) => {
                tracing::warn!(message_id = %id, retryable = e.retryable, error = %e, "{what} failed");
                failed.push(id);
            }
        }
    }
    (done, failed)
}

/// Send `bodies` to an SQS queue, ten per `SendMessageBatch`, retrying the
/// entries SQS failed (under [`Policy::SERVICE`]; a failed call is
/// retried by the SDK's own retry configuration); each delayed by `delay_seconds`.
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
        let (policy, started) = (Policy::SERVICE, std::time::Instant::now());
        for attempt in 1.. {
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
            if !policy.again(attempt, started) {
                return Err(FunctionError::retryable(format!(
                    "sending to {queue}: {} messages still failing after {attempt} attempts",
                    failed.len()
                )));
            }
            pending.retain(|(id, _)| failed.contains(id));
            tokio::time::sleep(policy.wait(attempt)).await;
        }
    }
    Ok(bodies.len())
}
