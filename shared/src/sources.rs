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
    pub modified: Option<String>,
    /// The S3 event's sequencer of this version, where it was planned from
    /// its own event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequencer: Option<String>,
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

/// Where a version stands among a source's versions: the later write
/// sorts last.
type Order = (Option<DateTime<Utc>>, String, String);

/// A sequencer as a key that sorts as S3 says to compare them: hex, the
/// shorter left-padded with zeros.
fn sequencer_key(s: &str) -> String {
    format!("{:0>64}", s.to_ascii_uppercase())
}

/// The order of a source's versions (their head entries). Where every
/// version came with its S3 event's sequencer, the sequencer decides: S3
/// orders writes of one key by it, finer than Last-Modified's second (and
/// right where Last-Modified is not: a multipart upload's is when it
/// began, not when it completed). Otherwise by the time written, then the
/// sequencer, then the version key.
fn orders(heads: &[Entry]) -> Vec<Order> {
    let by_sequencer = heads.iter().all(|e| e.sequencer.is_some());
    heads
        .iter()
        .map(|e| {
            let t = e
                .modified
                .as_deref()
                .and_then(|m| DateTime::parse_from_rfc3339(m).ok())
                .map(|t| t.with_timezone(&Utc))
                .filter(|_| !by_sequencer);
            let s = e.sequencer.as_deref().map(sequencer_key);
            (t, s.unwrap_or_default(), e.version.clone())
        })
        .collect()
}

/// Record a committed chunk (of a version cut into `chunks` chunks) and
/// settle its source: retire the chunks of every version older than the
/// newest complete one.
pub async fn record_and_settle(
    lake: &Location,
    record: &CommitRecord,
    chunks: usize,
) -> Result<Settled> {
    record_chunk(lake, record, chunks).await?;
    settle(lake, &record.table, &record.source.url).await
}

/// Record a committed chunk (of a version cut into `chunks` chunks) in its
/// source's ledger.
pub async fn record_chunk(lake: &Location, record: &CommitRecord, chunks: usize) -> Result<()> {
    let entry = Entry {
        url: record.source.url.clone(),
        version: version_key(&record.source),
        modified: record.source.modified.clone(),
        sequencer: record.source.sequencer.clone(),
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
    Ok(())
}

/// One version of a source in the ledger.
struct Version {
    /// The hash its entries' names start with.
    hash: String,
    order: Order,
    complete: bool,
    entries: Vec<(object_store::path::Path, u32)>,
}

async fn read_entry(lake: &Location, path: &object_store::path::Path) -> Result<Entry> {
    let bytes = lake.store.get(path).await?.bytes().await?;
    serde_json::from_slice::<Entry>(&bytes)
        .map_err(|err| Error::Catalog(format!("bad source record {}: {err}", lake.url_of(path))))
}

/// A ledger entry, or none when it is gone since it was listed: another
/// settle of the same source (a second worker, a concurrent invocation)
/// retired its version first.
async fn entry_if_present(
    lake: &Location,
    path: &object_store::path::Path,
) -> Result<Option<Entry>> {
    match read_entry(lake, path).await {
        Err(Error::Store(object_store::Error::NotFound { .. })) => Ok(None),
        other => other.map(Some),
    }
}

/// The versions of `url` in the ledger: one listing, and one entry read a
/// version; nothing more read when there is one version only.
async fn versions(lake: &Location, table: &str, url: &str) -> Result<Vec<Version>> {
    let dir = lake.child(&source_dir(table, url))?;
    let metas: Vec<_> = lake.store.list(Some(&dir)).try_collect().await?;
    // Entry names are `<version hash>-<chunk>.json`.
    let mut found: BTreeMap<String, Vec<(object_store::path::Path, u32)>> = BTreeMap::new();
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
        found.entry(hash).or_default().push((m.location, index));
    }
    if found.len() < 2 {
        return Ok(found
            .into_iter()
            .map(|(hash, entries)| Version {
                hash,
                order: Order::default(),
                complete: false,
                entries,
            })
            .collect());
    }
    let mut heads = Vec::new();
    let mut present = BTreeMap::new();
    for (hash, entries) in found {
        for (path, _) in &entries {
            if let Some(head) = entry_if_present(lake, path).await? {
                heads.push(head);
                present.insert(hash, entries);
                break;
            }
        }
    }
    Ok(present
        .into_iter()
        .zip(orders(&heads))
        .zip(&heads)
        .map(|(((hash, entries), order), head)| {
            let mut idx: Vec<u32> = entries.iter().map(|(_, i)| *i).collect();
            idx.sort();
            idx.dedup();
            Version {
                hash,
                order,
                complete: idx.len() == head.chunks,
                entries,
            }
        })
        .collect())
}

/// Retire the chunks of every version of `url` older than its newest
/// complete version. Reads one ledger entry per version (and every entry of
/// a version it retires); a source with one version costs one listing.
pub async fn settle(lake: &Location, table: &str, url: &str) -> Result<Settled> {
    let versions = versions(lake, table, url).await?;
    if versions.len() < 2 {
        return Ok(Settled::default());
    }
    let Some(newest) = versions
        .iter()
        .filter(|v| v.complete)
        .map(|v| v.order.clone())
        .max()
    else {
        return Ok(Settled::default());
    };
    let mut done = Settled::default();
    for v in &versions {
        if v.order >= newest {
            continue;
        }
        for (path, _) in &v.entries {
            let Some(entry) = entry_if_present(lake, path).await? else {
                continue; // retired by a settle that ran beside this one
            };
            let (deleted, rewritten) = retire(lake, table, &entry).await?;
            done.files_deleted += deleted;
            done.outputs_rewritten += rewritten;
            // Its rows are gone: the entry goes too. A late retry of this
            // chunk records it again, and the next settle retires it again
            // (finding nothing left to remove).
            forget(lake, path).await?;
            done.chunks_retired += 1;
            tracing::info!(table, source = url, chunk = %entry.chunk_id, "retired a chunk of a replaced version");
        }
    }
    Ok(done)
}

/// Delete a ledger entry (its chunk's rows are gone from the table).
pub async fn forget(lake: &Location, path: &object_store::path::Path) -> Result<()> {
    match lake.store.delete(path).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Where one version of a source stands among the source's versions, for a
/// committer that makes a replacement visible in one step (a Delta table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// The source has no other version: its chunks enter as they come.
    Only,
    /// Another version is in the table and this one is not complete yet, or
    /// a newer complete version replaces it: its chunks wait, or never enter.
    Waiting,
    /// This is the newest complete version: every chunk of it enters, and
    /// the older versions' chunks leave, together.
    Replaces {
        /// The chunk ids of this version.
        chunks: Vec<String>,
        /// The ledger entries (path, chunk id) of the older versions.
        retired: Vec<(object_store::path::Path, String)>,
    },
}

/// The standing of `record`'s source version.
pub async fn standing(lake: &Location, record: &CommitRecord) -> Result<Standing> {
    let versions = versions(lake, &record.table, &record.source.url).await?;
    if versions.len() < 2 {
        return Ok(Standing::Only);
    }
    let mine = hash(&version_key(&record.source), 8);
    let Some(newest) = versions
        .iter()
        .filter(|v| v.complete)
        .max_by(|a, b| a.order.cmp(&b.order))
    else {
        return Ok(Standing::Waiting);
    };
    if newest.hash != mine {
        return Ok(Standing::Waiting);
    }
    let mut chunks = Vec::new();
    for (path, _) in &newest.entries {
        chunks.push(read_entry(lake, path).await?.chunk_id);
    }
    let mut retired = Vec::new();
    for v in versions.iter().filter(|v| v.order < newest.order) {
        for (path, _) in &v.entries {
            retired.push((path.clone(), read_entry(lake, path).await?.chunk_id));
        }
    }
    Ok(Standing::Replaces { chunks, retired })
}

/// Remove a chunk's rows from its partitions; (files deleted, outputs rewritten).
async fn retire(lake: &Location, table: &str, entry: &Entry) -> Result<(usize, usize)> {
    let commit = lake.child(&CommitRecord::path(table, &entry.chunk_id))?;
    // A chunk recorded in the ledger that crashed before its commit record
    // has no rows in the table to retire.
    let Some(bytes) = lake.get_bytes(&commit).await? else {
        tracing::warn!(table, chunk = %entry.chunk_id, source = %entry.url, "retiring a chunk that never wrote its commit record: nothing to remove");
        return Ok((0, 0));
    };
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A complete one-chunk version of `url`, as the ledger holds it.
    fn version(url: &str, e_tag: &str, modified: &str, sequencer: Option<&str>) -> Entry {
        Entry {
            url: url.into(),
            version: format!("e:{e_tag}"),
            modified: Some(modified.into()),
            sequencer: sequencer.map(String::from),
            chunks: 1,
            index: 0,
            chunk_id: format!("chunk-{e_tag}"),
        }
    }

    /// Ledger entries of `versions`, settled: the ETags whose entries stay.
    async fn settled(versions: &[Entry]) -> Vec<String> {
        let lake = Location::memory();
        for e in versions {
            let path = lake.child(&entry_path("t", e)).unwrap();
            lake.store
                .put(&path, PutPayload::from(serde_json::to_vec(e).unwrap()))
                .await
                .unwrap();
        }
        let url = &versions[0].url;
        let done = settle(&lake, "t", url).await.unwrap();
        assert_eq!(done.chunks_retired, versions.len() - 1, "{done:?}");
        let dir = lake.child(&source_dir("t", url)).unwrap();
        let mut left = Vec::new();
        for m in lake
            .store
            .list(Some(&dir))
            .try_collect::<Vec<_>>()
            .await
            .unwrap()
        {
            left.push(read_entry(&lake, &m.location).await.unwrap().version);
        }
        left
    }

    #[tokio::test]
    async fn a_settle_beside_another_that_retires_the_old_version_first_succeeds() {
        // Two workers settle one source at once: the other one retires the
        // old version between this one's listing and its reads. This one
        // failed its chunk on the entry it had listed ("not found").
        use crate::fault::{Faults, FaultyStore, Hook};
        use futures::FutureExt;
        use std::sync::Arc;
        let inner = Location::memory();
        for e in [
            version(URL, "aaaa", "2026-12-06T05:00:00Z", None),
            version(URL, "bbbb", "2026-12-06T06:00:00Z", None),
        ] {
            let path = inner.child(&entry_path("t", &e)).unwrap();
            inner
                .store
                .put(&path, PutPayload::from(serde_json::to_vec(&e).unwrap()))
                .await
                .unwrap();
        }
        let other = inner.clone();
        let hook: Hook = Arc::new(move |call| {
            let other = other.clone();
            async move {
                if call == 2 {
                    let done = settle(&other, "t", URL).await.unwrap();
                    assert_eq!(done.chunks_retired, 1);
                }
            }
            .boxed()
        });
        let lake = Location {
            store: Arc::new(FaultyStore::new(inner.store.clone(), Faults::None).with_hook(hook)),
            ..inner.clone()
        };
        settle(&lake, "t", URL).await.unwrap();
        let dir = inner.child(&source_dir("t", URL)).unwrap();
        let left: Vec<_> = inner.store.list(Some(&dir)).try_collect().await.unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(
            read_entry(&inner, &left[0].location).await.unwrap().version,
            "e:bbbb"
        );
    }

    const URL: &str = "s3://raw/t/a.jsonl";
    const SECOND: &str = "2026-12-06T05:00:00.000000Z";

    #[tokio::test]
    async fn two_writes_in_one_second_are_ordered_by_their_sequencers() {
        // The later write has the smaller ETag: the version key alone
        // would keep the earlier one.
        let earlier = version(URL, "ffff", SECOND, Some("0055AED6DCD90281E5"));
        let later = version(URL, "0000", SECOND, Some("0055AED6DCD90281F0"));
        assert_eq!(settled(&[earlier.clone(), later.clone()]).await, ["e:0000"]);
        assert_eq!(settled(&[later, earlier]).await, ["e:0000"]);
    }

    #[tokio::test]
    async fn sequencers_compare_as_numbers_and_outrank_last_modified() {
        // "0100" is later than "FF" (left-padded, not as text); and a
        // multipart upload's Last-Modified is when it began, so the later
        // write may carry the earlier time.
        let earlier = version(URL, "0000", "2026-12-06T05:00:09Z", Some("ff"));
        let later = version(URL, "ffff", "2026-12-06T05:00:01Z", Some("0100"));
        assert_eq!(settled(&[earlier, later]).await, ["e:ffff"]);
    }

    #[tokio::test]
    async fn without_a_sequencer_for_every_version_the_time_written_decides() {
        let earlier = version(URL, "0000", "2026-12-06T05:00:01Z", Some("ff"));
        let later = version(URL, "ffff", "2026-12-06T05:00:02Z", None);
        assert_eq!(settled(&[earlier, later]).await, ["e:ffff"]);
        let earlier = version(URL, "ffff", "2026-12-06T05:00:01Z", None);
        let later = version(URL, "0000", "2026-12-06T05:00:02Z", Some("01"));
        assert_eq!(settled(&[earlier, later]).await, ["e:0000"]);
    }
}
