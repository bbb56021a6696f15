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
//! [`crate::compact::remove_files`]), and their ledger entries deleted. Their
//! commit records stay, so a late retry of such a chunk does not load it
//! again (it records itself, and is retired again, finding nothing left).
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

use crate::layout::SOURCES_DIR;

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
    };
    let path = lake.child(&entry_path(&record.table, &entry))?;
    lake.store
        .put(
            &path,
            PutPayload::from(serde_json::to_vec_pretty(&entry).expect("serializes")),
        )
        .await
        .map_err(|e| Error::write(lake.url_of(&path), e))?;
    settle(lake, &record.table, &record.source.url).await
}

/// Retire the chunks of every version of `url` older than its newest
/// complete version. Reads one ledger entry per version (and every entry of
/// a version it retires); a source with one version costs one listing.
pub async fn settle(lake: &Location, table: &str, url: &str) -> Result<Settled> {
    let dir = lake.child(&source_dir(table, url))?;
    let metas: Vec<_> = lake.store.list(Some(&dir)).try_collect().await?;
    // Entry names are `<version hash>-<chunk>.json`.
    let mut versions: BTreeMap<String, Vec<(object_store::path::Path, u32)>> = BTreeMap::new();
    for m in metas {
        let Some((hash, index)) = m
            .location
            .filename()
            .and_then(|n| n.strip_suffix(".json"))
            .and_then(|n| n.split_once('-'))
            .and_then(|(h, i)| Some((h.to_string(), i.parse::<u32>().ok()?)))
        else {
            continue;
        };
        versions.entry(hash).or_default().push((m.location, index));
    }
    if versions.len() < 2 {
        return Ok(Settled::default());
    }
    let read = |path: object_store::path::Path| async move {
        let bytes = lake.store.get(&path).await?.bytes().await?;
        serde_json::from_slice::<Entry>(&bytes).map_err(|err| {
            Error::Catalog(format!("bad source record {}: {err}", lake.url_of(&path)))
        })
    };
    let mut heads = Vec::new();
    for entries in versions.values() {
        let head = read(entries[0].0.clone()).await?;
        let mut idx: Vec<u32> = entries.iter().map(|(_, i)| *i).collect();
        idx.sort();
        idx.dedup();
        let complete = idx.len() == head.chunks;
        heads.push((order(&head), complete, entries));
    }
    let Some(newest) = heads.iter().filter(|h| h.1).map(|h| h.0.clone()).max() else {
        return Ok(Settled::default());
    };
    let mut done = Settled::default();
    for (key, _, entries) in &heads {
        if *key >= newest {
            continue;
        }
        for (path, _) in entries.iter() {
            let entry = read(path.clone()).await?;
            let (deleted, rewritten) = retire(lake, table, &entry).await?;
            done.files_deleted += deleted;
            done.outputs_rewritten += rewritten;
            // Its rows are gone: the entry goes too. A late retry of this
            // chunk records it again, and the next settle retires it again
            // (finding nothing left to remove).
            match lake.store.delete(path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            done.chunks_retired += 1;
            tracing::info!(table, source = url, chunk = %entry.chunk_id, "retired a chunk of a replaced version");
        }
    }
    Ok(done)
}

/// Remove a chunk's rows from its partitions; (files deleted, outputs rewritten).
async fn retire(lake: &Location, table: &str, entry: &Entry) -> Result<(usize, usize)> {
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
    let (mut deleted, mut rewritten) = (0, 0);
    for (partition, files) in by_partition.values() {
        let (d, r) = remove_files(
            lake,
            &def,
            partition,
            files,
            &CompactOptions::default(),
            Utc::now(),
        )
        .await?;
        deleted += d;
        rewritten += r;
    }
    Ok((deleted, rewritten))
}
