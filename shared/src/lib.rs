//! # Sluice: the engine
//!
//! Turns raw files (JSON Lines, CSV, Parquet; gzip or zstd) into a Hive-
//! partitioned, zstd-compressed Parquet lake with a catalog. The same engine
//! runs in the `sluice` command and in the Lambda functions; it knows nothing
//! about Lambda.
//!
//! The parts, in the order data flows through them:
//! - [`config`]: the pipeline file, checked into typed settings;
//! - [`plan`]: objects cut into chunks (pure);
//! - [`read`]: chunk readers yielding Arrow batches with bounded memory;
//! - [`transform`]: the table's SQL, run by DataFusion;
//! - [`partition`]: rows split by partition values, Hive paths escaped;
//! - [`write`]: Parquet files per partition, with deterministic names;
//! - [`commit`]: the commit record each chunk writes after its files;
//! - [`catalog`]: tables and partitions (local, in the lake), and [`glue`]: the same
//!   on the AWS Glue Data Catalog;
//! - [`event`]: S3, EventBridge, SQS and direct events decoded into the objects they name;
//! - [`pipeline`]: all of it for a whole input, chunks in parallel;
//! - [`compact`]: small files of a partition merged into large ones, crash-safely;
//! - [`query`]: SQL over the lake's tables;
//! - [`cdc`]: change events (Debezium, AWS DMS) staged, then merged by key
//!   into a Delta table (`cdc::merge`, with the `delta` feature);
//! - `delta` (with the `delta` feature): Delta Lake tables, committed by one
//!   writer per table from the chunks' commit records;
//!
//! With the `testing` feature (for tests and the fuzzers only, never in a
//! function binary): [`fault`], a store wrapper that fails chosen calls, and
//! [`fuzz`], the fuzz targets' bodies and properties; also
//! `catalog::contract`, the suite every catalog implementation passes.

pub mod catalog;
pub mod cdc;
pub mod commit;
pub mod compact;
pub mod config;
pub mod connect;
#[cfg(feature = "delta")]
pub mod delta;
pub mod error;
pub mod event;
#[cfg(any(test, feature = "testing"))]
pub mod fault;
#[cfg(any(test, feature = "testing"))]
pub mod fuzz;
pub mod glue;
pub mod layout;
pub mod lease;
pub mod lookup;
pub mod messages;
pub mod partition;
pub mod pipeline;
pub mod plan;
pub mod query;
pub mod read;
pub mod retry;
pub mod sources;
pub mod stats;
pub mod store;
pub mod stream;
pub mod transform;
pub mod write;

pub use error::{Error, Result};
