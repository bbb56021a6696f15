//! Change data capture, the committing side: a CDC table's staged changes
//! (read by [`crate::read::cdc`]) merged by key into its Delta table by the
//! table's one committer.

#[cfg(feature = "delta")]
pub mod merge;
