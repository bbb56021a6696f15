//! The messages between the functions, in one place both sides import: a
//! chunk task (planner → transform: an SQS body, a manifest line, a Map item),
//! a manifest (planner → the backfill workflow → catalog and compactor), and a
//! partition task (catalog → compactor). Each is JSON, small, and refuses
//! fields it does not know, so a message from another version fails loudly.

use serde::{Deserialize, Serialize};

use crate::commit::{CommitRecord, SourceInfo, chunk_id};
use crate::error::{Error, Result};
use crate::pipeline::ChunkTask;
use crate::plan::Chunk;
use crate::read::SourceObject;
use crate::store::Location;

/// A chunk task as it travels between functions: an SQS message body, a
/// line of a Step Functions manifest, a Map item. Small (a few hundred bytes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    pub table: String,
    pub source: SourceInfo,
    pub chunk: Chunk,
    /// How many chunks the source object was cut into.
    pub chunks: usize,
}

impl TaskSpec {
    /// The message form of `task`, one of `chunks` of its object.
    pub fn of(task: &ChunkTask, chunks: usize) -> TaskSpec {
        TaskSpec {
            table: task.table.clone(),
            source: task.object.source_info(),
            chunk: task.chunk,
            chunks,
        }
    }

    /// Where this task's commit record is written, relative to the lake root.
    pub fn commit_path(&self) -> String {
        CommitRecord::path(&self.table, &chunk_id(&self.source, &self.chunk))
    }

    /// The task again, reading from `input` (the source must lie under it).
    pub fn resolve(&self, input: &Location) -> Result<ChunkTask> {
        let relative = self
            .source
            .url
            .strip_prefix(&input.url)
            .and_then(|r| r.strip_prefix('/'))
            .filter(|r| !r.is_empty())
            .ok_or_else(|| {
                Error::Event(format!(
                    "task for table '{}': {} is not under the input root {}",
                    self.table, self.source.url, input.url
                ))
            })?;
        Ok(ChunkTask {
            table: self.table.clone(),
            object: SourceObject {
                store: input.store.clone(),
                path: input.child(relative)?,
                url: self.source.url.clone(),
                size: self.source.size,
                e_tag: self.source.e_tag.clone(),
                version: self.source.version.clone(),
                modified: self.source.modified.clone(),
                sequencer: self.source.sequencer.clone(),
            },
            chunk: self.chunk,
            chunks: self.chunks,
            stream: None,
        })
    }
}

/// Where a manifest's tasks were written: the lake-relative path and, for an
/// S3 lake, the bucket and key a Distributed Map's `ItemReader` reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    pub key: String,
    pub tasks: usize,
}

/// The backfill workflow's payload: the manifest the planner answered with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestPayload {
    pub manifest: Manifest,
}

/// A partition to compact, as the catalog function queues it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartitionTask {
    pub table: String,
    /// `k=v/...`, as the catalog lists it.
    pub partition: String,
}
