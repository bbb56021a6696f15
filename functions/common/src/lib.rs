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
//!   Glue (or local) tables and partitions.
//!
//! Handlers take the event as JSON and return JSON, so the tests call them
//! directly with the sample events in `events/`.

pub mod catalog;
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
