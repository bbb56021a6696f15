//! The compaction protocol's state: the partition's lease, its intents
//! (`pending` then `done`), recovery of interrupted ones, and retiring inputs.

use chrono::{DateTime, Utc};
use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::async_reader::AsyncFileReader;
use serde::{Deserialize, Serialize};
use tracing::info;

use crate::catalog::{PartitionDef, PartitionStats, TableDef};
use crate::commit::CommitRecord;
use crate::error::{Error, Result};
use crate::read::parquet_io::ObjectReader;
use crate::store::Location;

use crate::layout::COMPACTIONS_DIR;

use super::CompactOptions;
use crate::write::compaction_output_id as output_id;

/// The record of one compaction of a partition's files into one output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    pub version: u32,
    pub table: String,
    /// `k=v/...`, relative to the table's location.
    pub partition: String,
    /// Input files, relative to the lake root.
    pub inputs: Vec<String>,
    /// The output file, relative to the lake root.
    pub output: String,
    pub state: IntentState,
    pub rows: Option<u64>,
    pub bytes: Option<u64>,
    /// The chunk files whose rows the output holds, in order, with their
    /// row counts: an input that is itself an output contributes its own
    /// parts. Lets the rows of one chunk file be found (and removed, when a
    /// newer version of its source replaces it) after compaction. `None` for
    /// intents written before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parts: Option<Vec<PartRows>>,
}

/// Rows of one chunk file inside a compaction output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartRows {
    pub file: String,
    pub rows: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IntentState {
    Pending,
    Done,
}

/// A file of a partition's folder.
#[derive(Debug, Clone)]
pub(super) struct FileMeta {
    pub(super) path: String,
    pub(super) size: u64,
    pub(super) modified: DateTime<Utc>,
}

pub(super) struct Partition<'a> {
    pub(super) lake: &'a Location,
    pub(super) table: &'a TableDef,
    pub(super) partition: &'a PartitionDef,
    /// `<table location>/<partition>`, relative to the lake root.
    pub(super) folder: String,
    /// `_sluice/compactions/<table>/<partition>`.
    pub(super) state_dir: String,
}

impl<'a> Partition<'a> {
    pub(super) fn new(
        lake: &'a Location,
        table: &'a TableDef,
        partition: &'a PartitionDef,
    ) -> Self {
        let join = |a: &str, b: &str| {
            if b.is_empty() {
                a.to_string()
            } else {
                format!("{a}/{b}")
            }
        };
        Partition {
            lake,
            table,
            partition,
            folder: join(table.location.trim_end_matches('/'), &partition.path),
            state_dir: join(
                &format!("{COMPACTIONS_DIR}/{}", table.name),
                &partition.path,
            ),
        }
    }

    pub(super) fn path(&self, relative: &str) -> Result<Path> {
        self.lake.child(relative)
    }

    pub(super) async fn read_json<T: for<'de> Deserialize<'de>>(
        &self,
        relative: &str,
    ) -> Result<Option<T>> {
        self.lake.get_json(&self.path(relative)?).await
    }

    /// Write the pending intent of output `id` made of `inputs` (and, for a
    /// cut, the `parts` the output keeps) before any output byte: (the
    /// output's path, the intent's path, the intent).
    pub(super) async fn intend(
        &self,
        id: &str,
        inputs: Vec<String>,
        parts: Option<Vec<crate::compact::PartRows>>,
    ) -> Result<(String, String, Intent)> {
        let output = crate::write::compaction_output_name(&self.folder, id);
        let intent_path = format!("{}/m{id}.json", self.state_dir);
        let intent = Intent {
            version: 1,
            table: self.table.name.clone(),
            partition: self.partition.path.clone(),
            inputs,
            output: output.clone(),
            state: IntentState::Pending,
            rows: None,
            bytes: None,
            parts,
        };
        self.put_json(&intent_path, &intent).await?;
        Ok((output, intent_path, intent))
    }

    pub(super) async fn put_json<T: Serialize>(&self, relative: &str, value: &T) -> Result<()> {
        self.lake.put_json(&self.path(relative)?, value).await
    }

    pub(super) async fn delete(&self, relative: &str) -> Result<()> {
        match self.lake.store.delete(&self.path(relative)?).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    pub(super) fn lease(&self) -> String {
        format!("{}/lease.json", self.state_dir)
    }

    /// Create the lease if absent; take it over if older than the TTL.
    pub(super) async fn take_lease(
        &self,
        options: &CompactOptions,
        now: DateTime<Utc>,
    ) -> Result<Option<crate::lease::Held>> {
        let path = self.path(&self.lease())?;
        crate::lease::take(self.lake.store.as_ref(), &path, options.lease_ttl, now).await
    }

    /// [`Partition::take_lease`], waiting under `policy` while another
    /// holds it; `now` gives the time of each try.
    pub(super) async fn wait_for_lease(
        &self,
        options: &CompactOptions,
        now: impl Fn() -> DateTime<Utc>,
        policy: crate::retry::Policy,
    ) -> Result<Option<crate::lease::Held>> {
        let path = self.path(&self.lease())?;
        crate::lease::wait_for(
            self.lake.store.as_ref(),
            &path,
            options.lease_ttl,
            now,
            policy,
        )
        .await
    }

    pub(super) async fn release_lease(&self, held: crate::lease::Held) -> Result<()> {
        held.release(self.lake.store.as_ref()).await
    }

    /// The Parquet files directly in the partition's folder.
    pub(super) async fn files(&self) -> Result<Vec<FileMeta>> {
        let prefix = self.path(&self.folder)?;
        let listed = self.lake.store.list_with_delimiter(Some(&prefix)).await?;
        let mut out: Vec<FileMeta> = listed
            .objects
            .into_iter()
            .filter(|m| m.location.as_ref().ends_with(".parquet"))
            .map(|m| FileMeta {
                path: self.lake.relative(&m.location),
                size: m.size,
                modified: m.last_modified,
            })
            .collect();
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    /// Whether a file is committed: listed by its chunk's commit record, or
    /// the output of a finished compaction.
    pub(super) async fn is_committed(&self, path: &str) -> Result<bool> {
        let Some(name) = path.rsplit('/').next() else {
            return Ok(false);
        };
        let Some(id) = name
            .strip_prefix("part-")
            .and_then(|n| n.strip_suffix(".parquet"))
            .and_then(|n| n.rsplit_once('-'))
            .map(|(id, _seq)| id)
        else {
            return Ok(false);
        };
        if let Some(mid) = id.strip_prefix('m') {
            let intent: Option<Intent> = self
                .read_json(&format!("{}/m{mid}.json", self.state_dir))
                .await?;
            return Ok(intent.is_some_and(|i| i.state == IntentState::Done && i.output == path));
        }
        let record: Option<CommitRecord> = self
            .read_json(&CommitRecord::path(&self.table.name, id))
            .await?;
        Ok(record.is_some_and(|r| r.files.iter().any(|f| f.path == path)))
    }

    /// The partition's compaction intents, with their paths.
    pub(super) async fn intents(&self) -> Result<Vec<(String, Intent)>> {
        let prefix = self.path(&self.state_dir)?;
        let listed = self.lake.store.list_with_delimiter(Some(&prefix)).await?;
        let mut out = Vec::new();
        for m in listed.objects {
            let relative = self.lake.relative(&m.location);
            let Some(name) = relative.rsplit('/').next() else {
                continue;
            };
            if !(name.starts_with('m') && name.ends_with(".json")) {
                continue;
            }
            if let Some(intent) = self.read_json::<Intent>(&relative).await? {
                out.push((relative, intent));
            }
        }
        Ok(out)
    }

    /// Settle the pending intents of this partition; returns how many.
    pub(super) async fn recover(&self) -> Result<usize> {
        let mut settled = 0;
        for (relative, mut intent) in self.intents().await? {
            if intent.state == IntentState::Done {
                continue;
            }
            match self.lake.store.head(&self.path(&intent.output)?).await {
                Ok(meta) => {
                    // The output is complete: finish the retirement.
                    self.retire(&intent.inputs).await?;
                    intent.state = IntentState::Done;
                    intent.bytes = Some(meta.size);
                    self.put_json(&relative, &intent).await?;
                    info!(output = %intent.output, "finished an interrupted compaction");
                }
                Err(object_store::Error::NotFound { .. }) => {
                    // No output, so no input was retired: nothing happened.
                    self.delete(&relative).await?;
                    info!(output = %intent.output, "dropped an interrupted compaction");
                }
                Err(e) => return Err(e.into()),
            }
            settled += 1;
        }
        Ok(settled)
    }

    /// The parts of an output made of `inputs` (with these row counts):
    /// `None` when an input is an output whose own parts are unknown.
    pub(super) async fn lineage(
        &self,
        inputs: &[String],
        rows: &[u64],
    ) -> Result<Option<Vec<PartRows>>> {
        let mut parts = Vec::new();
        for (input, &n) in inputs.iter().zip(rows) {
            match output_id(input) {
                Some(mid) => {
                    let intent: Option<Intent> = self
                        .read_json(&format!("{}/m{mid}.json", self.state_dir))
                        .await?;
                    match intent.and_then(|i| i.parts) {
                        Some(p) => parts.extend(p),
                        None => return Ok(None),
                    }
                }
                None => parts.push(PartRows {
                    file: input.clone(),
                    rows: n,
                }),
            }
        }
        Ok(Some(parts))
    }

    /// Delete the inputs: in bulk where the store can (S3's DeleteObjects
    /// takes 1,000 keys a request), so they vanish close together.
    pub(super) async fn retire(&self, inputs: &[String]) -> Result<()> {
        let paths: Vec<Result<Path>> = inputs.iter().map(|i| self.path(i)).collect();
        let paths: Vec<object_store::Result<Path>> = paths
            .into_iter()
            .map(|p| {
                p.map_err(|e| object_store::Error::Generic {
                    store: "lake",
                    source: Box::new(e),
                })
            })
            .collect();
        let mut deleted = self
            .lake
            .store
            .delete_stream(futures::stream::iter(paths).boxed());
        while let Some(r) = deleted.next().await {
            match r {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Files, bytes and rows of the partition (rows from the files' footers).
    pub(super) async fn stats(&self, files: &[FileMeta]) -> Result<PartitionStats> {
        let mut rows = 0;
        for f in files {
            let mut reader = ObjectReader::at(self.lake.store.clone(), self.path(&f.path)?, f.size);
            let meta = reader
                .get_metadata(None)
                .await
                .map_err(|e| Error::read(format!("{}/{}", self.lake.url, f.path), e))?;
            rows += meta.file_metadata().num_rows() as u64;
        }
        Ok(PartitionStats {
            files: files.len() as u64,
            bytes: files.iter().map(|f| f.size).sum(),
            rows,
        })
    }
}
