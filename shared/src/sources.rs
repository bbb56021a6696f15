//! The per-source ledger: which versions of a raw object were loaded, and
//! replacing an older version's rows once a newer one is complete.
//!
//! After a chunk commits, it records itself at
//! `_sluice/sources/<table>/<source key>/<version key>-<chunk>.json` (the
//! object's URL, ETag, version id, time written, and how many chunks the
//! version has). Then [`settle`] looks at every version of that object: the
//! newest version whose chunks are all recorded is the one that counts, and
//! every older version's chunks are retired: their files deleted, or, where
//! compaction merged them, their rows cut out of the merged files (see
//! [`crate::compact::remove_files`]). A retired chunk's record says so, and
//! its commit record stays (so a late retry of it does nothing).
//!
//! Until the newer version is complete, the older one's rows stay: readers
//! see the old rows, then the new ones, never a mix of half of each. The same
//! bytes uploaded again have the same ETag, so the same chunks: nothing is
//! added or removed.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use futures::TryStreamExt;
use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::catalog::{PartitionDef, commit_entries};
use crate::commit::{CommitRecord, version_key};
use crate::compact::{CompactOptions, remove_files};
use crate::error::{Error, Result};
use crate::store::Location;

/// Where the ledger lives, under the lake root.
pub const SOURCES_DIR: &str = "_sluice/sources";

/// A time as the ledger writes it (RFC 3339, UTC, microseconds).
pub fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// One committed chunk of one version of a source object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub url: String,
    /// ETag, else version id, else size: what tells versions apart.
    pub version: String,
    #[serde(default)]
    pub modified: Option<String>,
    /// Chunks of this version.
    pub chunks: usize,
    pub index: u32,
    pub chunk_id: String,
    /// Replaced by a newer version: its rows are gone from the table.
    #[serde(default)]
    pub retired: bool,
}

/// What [`settle`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settled {
    /// Chunks of older versions retired now.
    pub chunks_retired: usize,
    pub files_deleted: usize,
    pub outputs_rewritten: usize,
}

fn hash(text: &str, n: usize) -> String {
    hex::encode(&Sha256::digest(text.as_bytes())[..n])
}

fn source_dir(table: &str, url: &str) -> String {
    format!("{SOURCES_DIR}/{table}/{}", hash(url, 10))
}

fn entry_path(table: &str, e: &Entry) -> String {
    format!(
        "{}/{}-{:05}.json",
        source_dir(table, &e.url),
        hash(&e.version, 8),
        e.index
    )
}

/// Which version comes later: by the time written, then by the version key.
fn order(e: &Entry) -> (Option<DateTime<Utc>>, String) {
    let t = e
        .modified
        .as_deref()
        .and_then(|m| DateTime::parse_from_rfc3339(m).ok())
        .map(|t| t.with_timezone(&Utc));
    (t, e.version.clone())
}

/// Record a committed chunk (of a version cut into `chunks` chunks) and
/// settle its source: retire the chunks of every version older than the
/// newest complete one.
pub async fn record_and_settle(
    lake: &Location,
    record: &CommitRecord,
    chunks: usize,
) -> Result<Settled> {
    let entry = Entry {
        url: record.source.url.clone(),
        version: version_key(&record.source),
        modified: record.source.modified.clone(),
        chunks,
        index: record.chunk.index,
        chunk_id: record.chunk_id.clone(),
        retired: false,
    };
    let path = lake.child(&entry_path(&record.table, &entry))?;
    match lake.store.get(&path).await {
        // Recorded before (a retry): keep what it says (it may be retired).
        Ok(_) => {}
        Err(object_store::Error::NotFound { .. }) => {
            lake.store
                .put(
                    &path,
                    PutPayload::from(serde_json::to_vec_pretty(&entry).expect("serializes")),
                )
                .await
                .map_err(|e| Error::write(lake.url_of(&path), e))?;
        }
        Err(e) => return Err(e.into()),
    }
    settle(lake, &record.table, &record.source.url).await
}

/// Retire the chunks of every version of `url` older than its newest
/// complete version.
pub async fn settle(lake: &Location, table: &str, url: &str) -> Result<Settled> {
    let dir = lake.child(&source_dir(table, url))?;
    let metas: Vec<_> = lake.store.list(Some(&dir)).try_collect().await?;
    // Entry names start with the version's hash: with one version there is
    // nothing to replace, and no entry needs reading.
    let mut hashes: Vec<&str> = metas
        .iter()
        .filter_map(|m| m.location.filename()?.split_once('-').map(|(h, _)| h))
        .collect();
    hashes.sort();
    hashes.dedup();
    if hashes.len() < 2 {
        return Ok(Settled::default());
    }
    let mut versions: BTreeMap<String, Vec<(object_store::path::Path, Entry)>> = BTreeMap::new();
    for m in metas {
        let bytes = lake.store.get(&m.location).await?.bytes().await?;
        let e: Entry = serde_json::from_slice(&bytes).map_err(|err| {
            Error::Catalog(format!(
                "bad source record {}: {err}",
                lake.url_of(&m.location)
            ))
        })?;
        if e.url == url {
            versions
                .entry(e.version.clone())
                .or_default()
                .push((m.location, e));
        }
    }
    let complete = versions
        .values()
        .filter(|entries| {
            let mut idx: Vec<u32> = entries.iter().map(|(_, e)| e.index).collect();
            idx.sort();
            idx.dedup();
            entries.first().is_some_and(|(_, e)| idx.len() == e.chunks)
        })
        .map(|entries| order(&entries[0].1))
        .max();
    let Some(newest) = complete else {
        return Ok(Settled::default());
    };
    let mut done = Settled::default();
    for entries in versions.values() {
        if order(&entries[0].1) >= newest {
            continue;
        }
        for (path, entry) in entries {
            if entry.retired {
                continue;
            }
            let commit = lake.child(&CommitRecord::path(table, &entry.chunk_id))?;
            let bytes = lake.store.get(&commit).await?.bytes().await?;
            let record = CommitRecord::from_json(&bytes, &lake.url_of(&commit))?;
            let (def, _) = commit_entries(&record);
            let mut by_partition: BTreeMap<String, (PartitionDef, Vec<String>)> = BTreeMap::new();
            for f in &record.files {
                by_partition
                    .entry(f.partition_path.clone())
                    .or_insert_with(|| {
                        (
                            PartitionDef {
                                values: f.partition.clone(),
                                path: f.partition_path.clone(),
                            },
                            Vec::new(),
                        )
                    })
                    .1
                    .push(f.path.clone());
            }
            for (partition, files) in by_partition.values() {
                let (deleted, rewritten) = remove_files(
                    lake,
                    &def,
                    partition,
                    files,
                    &CompactOptions::default(),
                    Utc::now(),
                )
                .await?;
                done.files_deleted += deleted;
                done.outputs_rewritten += rewritten;
            }
            let mut retired = entry.clone();
            retired.retired = true;
            lake.store
                .put(
                    path,
                    PutPayload::from(serde_json::to_vec_pretty(&retired).expect("serializes")),
                )
                .await
                .map_err(|e| Error::write(lake.url_of(path), e))?;
            done.chunks_retired += 1;
            tracing::info!(table, source = url, chunk = %entry.chunk_id, "retired a chunk of a replaced version");
        }
    }
    Ok(done)
}
