//! # Sluice: the engine
//!
//! Turns raw files (JSON Lines, CSV, Parquet; gzip or zstd) and stream
//! records (Kinesis, Kafka) into zstd-compressed Parquet tables: Hive-
//! partitioned folders registered in a catalog (local, or AWS Glue), or
//! Delta Lake tables made visible by one committer per table; change events
//! (Debezium, AWS DMS) are merged by key into Delta tables. The same engine
//! runs in the `sluice` command and in the Lambda functions; it knows
//! nothing about Lambda.
//!
//! Its crate is `sluice-shared` in the workspace (the folder `shared/`) and
//! `sluice` in code (`[lib] name`): one crate, named for its users.
//!
//! The parts, in the order data flows through them:
//! - [`config`]: the pipeline file, checked into typed settings (with
//!   `config::lookup`, the `[[lookups]]`);
//! - [`plan`]: objects cut into chunks (pure);
//! - [`read`]: chunk readers yielding Arrow batches with bounded memory (with
//!   `read::cdc`, change events decoded into staged changes);
//! - [`lookup`]: reference tables read once per process, joined by the SQL;
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
//! - [`delta`]: Delta Lake tables, committed by one writer per table from
//!   the chunks' commit records, a module per operation ([`delta::merge`]:
//!   a CDC table's staged changes merged by key);
//! - [`sink`]: what happens to a table's chunks once written (Hive, Delta,
//!   CDC), chosen once per table;
//! - [`stream`]: Kinesis and Kafka record batches taken as chunks;
//! - [`sources`]: the ledger of source versions, so a re-upload replaces
//!   the rows of the version before it;
//! - [`store`], [`retry`], [`lease`], [`layout`], [`messages`]: object
//!   stores with retries, leases by conditional writes, the lake's own
//!   folders, and what the functions send each other.
//!
//! With the `testing` feature (for tests and the fuzzers only, never in a
//! function binary): [`fault`], a store wrapper that fails chosen calls, and
//! [`fuzz`], the fuzz targets' bodies and properties; also
//! `catalog::contract`, the suite every catalog implementation passes.

pub mod catalog;
pub mod commit;
pub mod compact;
pub mod config;
pub mod connect;
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
pub mod sink;
pub mod sources;
pub mod stats;
pub mod store;
pub mod stream;
pub mod transform;
pub mod write;

pub use error::{Error, Result};
