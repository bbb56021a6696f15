//! The pipeline: discover → plan → (read → transform → partition → write →
//! commit record → stage) per chunk, with a bounded number of chunks in
//! flight, then publish through each table's sink. The Lambda functions run
//! the same per-chunk step one at a time; the catalog function publishes.
//!
//! [`engine`] prepares the pipeline once per process; [`chunk`] is the
//! per-chunk step every entry point runs (the transform and stream
//! functions, `sluice run`); [`run`] drives a whole input locally and
//! [`committer`] publishes its finished chunks.

pub mod chunk;
pub mod committer;
pub mod engine;
pub mod run;

pub use chunk::*;
pub use committer::*;
pub use engine::*;
pub use run::*;
