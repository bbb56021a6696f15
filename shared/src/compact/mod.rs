//! Compaction: a partition's small files merged into files near a target
//! size, with the same rows, crash-safely.
//!
//! The parts: [`plan`] (pure: [`plan_partition`]) chooses what to merge;
//! [`intent`] keeps the protocol (lease, intents, recovery, retiring
//! inputs); [`merge`] writes outputs (column-chunk copy or re-encode);
//! [`cut`] rewrites outputs without a replaced source's rows.
//!
//! [`plan_partition`] is pure: which committed files, old enough and smaller
//! than the target, go together into which output (first-fit decreasing).
//! [`compact_partition`] does the I/O, per partition under a lease
//! (`_sluice/compactions/<table>/<partition>/lease.json`, created only if
//! absent), and per output:
//!
//! 1. **intent**: `_sluice/compactions/<table>/<partition>/m<id>.json` names
//!    the inputs and the output, state `pending`;
//! 2. **output**: one Parquet file `part-m<id>-00000.parquet` (`m` is no hex digit, so
//!    no chunk's file has such a name), uploaded in one
//!    step (a single PUT or a completed multipart upload);
//! 3. **retire**: the inputs are deleted;
//! 4. **done**: the intent is rewritten with state `done`; it is what marks
//!    the output as committed for later compactions.
//!
//! A rerun first settles every `pending` intent of the partition: if its
//! output exists, the output is complete (uploads are atomic), so it retires
//! the inputs and marks it done; if not, no input was touched yet, so it
//! drops the intent. Either way no row is lost or doubled once it finishes.
//! Only committed files are ever inputs (those a chunk's commit record lists,
//! or a finished compaction's output), so a chunk still being written, or
//! retried, is never merged.
//!
//! Where all inputs have the same Parquet schema, their column chunks are
//! copied into the output without being decoded (the fast path: the output
//! keeps the inputs' row groups). Otherwise (a column added since, say) the
//! rows are decoded and re-encoded into the table's current schema, a batch
//! at a time. Either way the output is streamed to the store in 5 MiB parts,
//! and one input is held in memory at a time.

use std::time::Duration;

use chrono::{DateTime, Utc};
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};
use tracing::info;

use crate::catalog::{Catalog, PartitionDef, TableDef};
use crate::error::{Error, Result};
use crate::store::Location;

mod cut;
mod intent;
mod merge;
mod plan;
mod sweep;

pub use sweep::{UNCOMMITTED_GRACE, sweep_uncommitted};

pub use cut::{CutPlan, plan_cut, remove_files, write_without};
pub use intent::{Intent, IntentState, PartRows};
pub use plan::{Bin, Candidate, plan_partition};

use intent::Partition;

/// The default output size.
pub const DEFAULT_TARGET_SIZE: u64 = 256 * 1024 * 1024;

/// How compaction chooses and merges files.
#[derive(Debug, Clone)]
pub struct CompactOptions {
    /// Outputs are made near this size (never more than it from small inputs).
    pub target_size: u64,
    /// A partition is left alone unless it has at least this many small files.
    pub min_files: usize,
    /// Only files at least this old are merged: a partition still being
    /// written is left alone until it is quiet.
    pub min_age: Duration,
    /// A lease older than this is taken over (its holder is taken to have died).
    pub lease_ttl: Duration,
    /// Settings of re-encoded outputs (the fast path copies the inputs' encoding).
    pub writer: WriterProperties,
    /// Decode and re-encode even where column chunks could be copied (for
    /// benchmarks and tests).
    pub force_reencode: bool,
}

impl Default for CompactOptions {
    fn default() -> Self {
        CompactOptions {
            target_size: DEFAULT_TARGET_SIZE,
            min_files: 4,
            min_age: Duration::from_secs(15 * 60),
            lease_ttl: Duration::from_secs(30 * 60),
            writer: crate::write::writer_properties(&crate::config::ParquetOptions {
                compression: parquet::basic::Compression::ZSTD(
                    parquet::basic::ZstdLevel::try_new(3).expect("a valid level"),
                ),
                row_group_rows: 1024 * 1024,
                target_file_bytes: DEFAULT_TARGET_SIZE,
            }),
            force_reencode: false,
        }
    }
}

/// What a compaction did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompactReport {
    /// Partitions looked at.
    pub partitions: usize,
    /// Partitions with at least one output written.
    pub compacted: usize,
    /// Partitions another compaction held the lease of.
    pub busy: usize,
    pub files_before: usize,
    pub files_after: usize,
    pub inputs: usize,
    pub outputs: usize,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub rows: u64,
    /// Outputs whose column chunks were copied without decoding.
    pub copied: usize,
    /// Interrupted compactions finished (inputs retired) or dropped by this run.
    pub recovered: usize,
    /// The longest time an output and its inputs were both in place (from
    /// the output's upload completing to the last input's deletion): a
    /// reader listing the folder then could have read those rows twice.
    #[serde(default)]
    pub max_overlap_ms: u64,
    /// The Delta version an OPTIMIZE committed (a Delta table's compaction).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
}

/// A file merged from others, written outside any partition protocol (a
/// Delta table's committer makes it visible by a commit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergedFile {
    pub rows: u64,
    pub bytes: u64,
    /// Whether column chunks were copied undecoded.
    pub copied: bool,
    /// The rows of each input, in the order of the inputs (and of the output's rows).
    pub input_rows: Vec<u64>,
}

/// Merge `inputs` (paths relative to the lake, with their sizes) into
/// `output`, in the inputs' order: column chunks copied where the inputs
/// share a schema, else rows re-encoded with `options.writer`.
pub async fn merge_files(
    lake: &Location,
    inputs: &[Candidate],
    output: &str,
    options: &CompactOptions,
) -> Result<MergedFile> {
    let (rows, bytes, copied, input_rows) =
        merge::write_merged(lake, inputs, output, options).await?;
    Ok(MergedFile {
        rows,
        bytes,
        copied,
        input_rows,
    })
}

/// What merging one bin did.
pub(super) struct Merged {
    rows: u64,
    bytes: u64,
    copied: bool,
    overlap: Duration,
}

impl CompactReport {
    /// Add another report's figures to these.
    pub fn add(&mut self, o: &CompactReport) {
        self.partitions += o.partitions;
        self.compacted += o.compacted;
        self.busy += o.busy;
        self.files_before += o.files_before;
        self.files_after += o.files_after;
        self.inputs += o.inputs;
        self.outputs += o.outputs;
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
        self.rows += o.rows;
        self.copied += o.copied;
        self.recovered += o.recovered;
        self.max_overlap_ms = self.max_overlap_ms.max(o.max_overlap_ms);
        self.version = o.version.or(self.version);
    }
}

/// Compact one partition (see the module docs for the protocol).
pub async fn compact_partition(
    lake: &Location,
    catalog: &dyn Catalog,
    table: &TableDef,
    partition: &PartitionDef,
    options: &CompactOptions,
    now: DateTime<Utc>,
) -> Result<CompactReport> {
    let part = Partition::new(lake, table, partition);
    let mut report = CompactReport {
        partitions: 1,
        ..Default::default()
    };
    let Some(held) = part.take_lease(options, now).await? else {
        info!(table = %table.name, partition = %partition.path, "busy: another compaction holds its lease");
        report.busy = 1;
        return Ok(report);
    };
    let result = async {
        report.recovered = part.recover().await?;
        let files = part.files().await?;
        report.files_before = files.len();
        let candidates: Vec<Candidate> = {
            let mut out = Vec::new();
            for f in &files {
                if part.is_committed(&f.path).await? {
                    out.push(Candidate {
                        path: f.path.clone(),
                        size: f.size,
                        age: (now - f.modified).to_std().unwrap_or_default(),
                    });
                }
            }
            out
        };
        let bins = plan_partition(&candidates, options);
        for bin in &bins {
            let m = part.merge(bin, options).await?;
            report.inputs += bin.inputs.len();
            report.outputs += 1;
            report.bytes_in += bin.bytes;
            report.bytes_out += m.bytes;
            report.rows += m.rows;
            report.copied += usize::from(m.copied);
            report.max_overlap_ms = report.max_overlap_ms.max(m.overlap.as_millis() as u64);
        }
        let after = part.files().await?;
        report.files_after = after.len();
        if !bins.is_empty() || report.recovered > 0 {
            report.compacted = usize::from(!bins.is_empty());
            let stats = part.stats(&after).await?;
            catalog
                .set_partition_stats(&table.name, partition, &stats)
                .await?;
        }
        Ok::<_, Error>(())
    }
    .await;
    // Released on failure too, when the store lets us; if not, the lease
    // expires after `lease_ttl`.
    let released = part.release_lease(held).await;
    result?;
    released?;
    if report.outputs > 0 {
        info!(
            table = %table.name,
            partition = %partition.path,
            files_before = report.files_before,
            files_after = report.files_after,
            rows = report.rows,
            "compacted"
        );
    }
    Ok(report)
}
