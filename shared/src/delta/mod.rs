//! Delta Lake tables: the committer that turns commit records into Delta
//! commits, and opening a table (latest, or as of a version or a time).
//!
//! A Delta table lives at `<lake>/<table>/`, its log at
//! `<lake>/<table>/_delta_log/`. The transform writes data files and its
//! commit record exactly as for a Hive table (many writers in parallel never
//! touch the log); one committer per table ([`commit`]) then makes a batch of
//! records visible in one Delta commit: an `add` action per file (path, size,
//! partition values, statistics from the footer), a `remove` action per file
//! of a source version a newer one replaces, and a `metaData` action when the
//! table gained columns. Readers see every chunk of the batch, or none.
//!
//! **Exactly once.** Each commit records every chunk it adds as a Delta
//! `txn` action (application id `sluice.chunk.<chunk id>`, see
//! [`chunk_app_id`]), the way Spark Structured Streaming records its
//! batches; a record whose chunk the table took is skipped. Checkpoints
//! keep `txn` actions (the table sets no transaction retention), so a
//! record delivered again any time later (a DLQ redrive, a backfill rerun)
//! adds nothing, after its files were compacted, their tombstones left the
//! log through a checkpoint, and VACUUM deleted them. For chunks committed
//! before tables recorded `txn` actions, a record whose files the table
//! holds or once held (a `remove` tombstone), or whose files are gone, is
//! skipped too. The chunk ids of every commit are also in its `commitInfo`
//! (`sluice.chunks`), for people reading the log. Concurrent committers
//! adding one chunk conflict on its `txn` (delta-rs's check), and the loser
//! plans again and skips it.
//!
//! **Conflicts.** S3 commits are conditional puts (`PutMode::Create`): two
//! committers never both write version N. The loser re-reads the log and
//! delta-rs checks the winner's actions against its own (appends never
//! conflict; removing a file another commit removed does); a conflicting
//! batch is planned again from the new snapshot.
//!
//! One module per operation, as delta-rs keeps `operations/`: [`table`]
//! (open, create, files), [`commit`] (the committer), [`txns`] (the chunks
//! a table took, read in one pass), [`lease`] (one
//! committer per table), [`optimize`], [`vacuum`], [`register`], and
//! [`merge`] (a CDC table's staged changes merged by key).

pub mod commit;
pub mod land;
pub mod lease;
pub mod merge;
pub mod optimize;
pub mod register;
pub mod table;
pub mod txns;
pub mod vacuum;

pub use commit::*;
pub use land::land;
pub use lease::*;
pub use optimize::*;
pub use register::*;
pub use table::*;
pub use vacuum::*;
