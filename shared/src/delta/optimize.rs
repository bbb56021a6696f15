//! OPTIMIZE: a table's small files merged in one commit, each merged file
//! remembering the chunk files it holds.

use super::*;
use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use deltalake::DeltaTable;
use deltalake::kernel::{Action, Add, Remove};
use deltalake::protocol::DeltaOperation;
use object_store::ObjectStoreExt as _;

use crate::compact::{Candidate, CompactOptions, merge_files, plan_partition};
use crate::error::{Error, Result};
use crate::read::parquet_io::ObjectReader;
use crate::stats::FileStats;
use crate::store::Location;
use crate::write::compaction_output_name;

/// What one [`compact`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Optimized {
    /// The version written, or `None` when nothing needed merging.
    pub version: Option<u64>,
    pub files_removed: u64,
    pub files_added: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub rows: u64,
    pub partitions: u64,
    /// Outputs whose column chunks were copied undecoded.
    pub copied: u64,
}

/// Statistics of a file the committer wrote, from its footer.
pub(super) async fn footer_stats(lake: &Location, lake_path: &str, size: u64) -> Result<FileStats> {
    use parquet::arrow::async_reader::AsyncFileReader;
    let url = format!("{}/{lake_path}", lake.url);
    let mut reader = ObjectReader::at(lake.store.clone(), lake.child(lake_path)?, size);
    let meta = reader
        .get_metadata(None)
        .await
        .map_err(|e| Error::read(&url, e))?;
    let file = meta.file_metadata();
    let schema =
        parquet::arrow::parquet_to_arrow_schema(file.schema_descr(), file.key_value_metadata())
            .map_err(|e| Error::read(&url, e))?;
    Ok(crate::stats::from_footer(&meta, &schema))
}

/// An `add` of a file the committer wrote (a merge, or a merge with rows cut
/// out): not a change of the table's data (`dataChange` false).
#[allow(clippy::too_many_arguments)]
pub(super) async fn merged_add(
    lake: &Location,
    table: &str,
    lake_path: &str,
    bytes: u64,
    partition: HashMap<String, Option<String>>,
    parts: &[Part],
    now: i64,
) -> Result<Add> {
    let stats = footer_stats(lake, lake_path, bytes).await?;
    let path = relative(table, lake_path)?;
    Ok(Add {
        path,
        partition_values: partition,
        size: bytes as i64,
        modification_time: now,
        data_change: false,
        stats: Some(serde_json::to_string(&stats).expect("stats serialize")),
        tags: Some(HashMap::from([(
            PARTS_TAG.to_string(),
            Some(serde_json::to_string(parts).expect("parts serialize")),
        )])),
        deletion_vector: None,
        base_row_id: None,
        default_row_commit_version: None,
        clustering_provider: None,
    })
}

pub(super) fn compaction_remove(f: &ActiveFile, now: i64) -> Remove {
    Remove {
        path: f.path.clone(),
        data_change: false,
        deletion_timestamp: Some(now),
        extended_file_metadata: Some(true),
        partition_values: Some(f.partition.clone()),
        size: Some(f.size),
        tags: None,
        deletion_vector: None,
        base_row_id: None,
        default_row_commit_version: None,
    }
}

/// Compact `table` (Delta's OPTIMIZE): in each partition, small files old
/// enough are bin-packed toward `options.target_size` (as for a Hive
/// table), each bin merged into one file (column chunks copied where the
/// inputs share a schema), and every merge of the run enters the table in
/// one commit that removes the inputs: readers see the inputs or the
/// outputs, never both. Each output's `add` lists the chunk files it holds
/// ([`PARTS_TAG`]), so a replaced source's rows can still be cut out of it.
/// The inputs stay on the store, tombstoned, until [`vacuum`]. A concurrent
/// commit that removed an input (a replacement) makes the run plan again.
pub async fn compact(
    lake: &Location,
    table: &str,
    options: &CompactOptions,
    now: DateTime<Utc>,
) -> Result<Optimized> {
    let attempt = || async {
        let Some(t) = open(lake, table, AsOf::Latest).await? else {
            return Err(Error::Config(format!(
                "no Delta table '{table}' in {}",
                lake.url
            )));
        };
        compact_once(lake, table, &t, options, now).await
    };
    replanning(table, "the compaction", attempt).await
}

/// Merge one bin of the files of `folder` (`in_folder`) into one file,
/// pushing the actions that replace them; returns the output's lake path.
#[allow(clippy::too_many_arguments)]
async fn compact_bin(
    lake: &Location,
    table: &str,
    folder: &str,
    in_folder: &[&ActiveFile],
    bin: &crate::compact::Bin,
    options: &CompactOptions,
    stamp: i64,
    actions: &mut Vec<Action>,
    done: &mut Optimized,
) -> Result<String> {
    let id = bin.id();
    let lake_folder = if folder.is_empty() {
        table.to_string()
    } else {
        format!("{table}/{folder}")
    };
    let output = compaction_output_name(&lake_folder, &id);
    let merged = merge_files(lake, &bin.inputs, &output, options).await?;
    let mut parts = Vec::new();
    let mut partition = HashMap::new();
    for (input, rows) in bin.inputs.iter().zip(&merged.input_rows) {
        let rel = relative(table, &input.path)?;
        let f = in_folder
            .iter()
            .find(|f| f.path == rel)
            .expect("a bin's inputs are the folder's files");
        match &f.parts {
            Some(p) => parts.extend(p.iter().cloned()),
            None => parts.push(Part {
                file: rel.clone(),
                rows: *rows,
            }),
        }
        partition = f.partition.clone();
        actions.push(Action::Remove(compaction_remove(f, stamp)));
        done.files_removed += 1;
        done.bytes_in += input.size;
    }
    actions.push(Action::Add(
        merged_add(lake, table, &output, merged.bytes, partition, &parts, stamp).await?,
    ));
    done.files_added += 1;
    done.bytes_out += merged.bytes;
    done.rows += merged.rows;
    done.copied += u64::from(merged.copied);
    Ok(output)
}

pub(super) async fn compact_once(
    lake: &Location,
    table: &str,
    t: &DeltaTable,
    options: &CompactOptions,
    now: DateTime<Utc>,
) -> Result<Optimized> {
    let snapshot = t.snapshot().map_err(|e| error(table, e))?;
    let files = active_files(snapshot);
    let mut by_folder: BTreeMap<&str, Vec<&ActiveFile>> = BTreeMap::new();
    for f in &files {
        by_folder.entry(folder_of(&f.path)).or_default().push(f);
    }
    let stamp = now.timestamp_millis();
    let mut done = Optimized::default();
    let mut actions = Vec::new();
    let mut written = Vec::new();
    for (folder, in_folder) in by_folder {
        let candidates: Vec<Candidate> = in_folder
            .iter()
            .map(|f| Candidate {
                path: format!("{table}/{}", f.path),
                size: f.size as u64,
                age: std::time::Duration::from_millis((stamp - f.modified).max(0) as u64),
            })
            .collect();
        let bins = plan_partition(&candidates, options);
        if !bins.is_empty() {
            done.partitions += 1;
        }
        for bin in bins {
            let output = compact_bin(
                lake,
                table,
                folder,
                &in_folder,
                &bin,
                options,
                stamp,
                &mut actions,
                &mut done,
            )
            .await?;
            written.push(output);
        }
    }
    if actions.is_empty() {
        return Ok(done);
    }
    let operation = DeltaOperation::Optimize {
        predicate: None,
        target_size: options.target_size as i64,
    };
    let committed = super::land(
        table,
        snapshot,
        t.log_store(),
        operation,
        Vec::new(),
        actions,
        Vec::new(),
    )
    .await;
    match committed {
        Ok(version) => {
            done.version = Some(version);
            tracing::info!(
                table,
                version,
                inputs = done.files_removed,
                outputs = done.files_added,
                "delta compaction committed"
            );
            Ok(done)
        }
        Err(e) if lost_to_another_writer(&e) => {
            // Another writer's commit took the version and ours was never
            // written: the outputs never entered the table. Remove them
            // (best effort; a rerun writes the same names).
            for o in written {
                if let Ok(p) = lake.child(&o) {
                    let _ = lake.store.delete(&p).await;
                }
            }
            Err(e)
        }
        // Whether the commit landed is not known (or it failed before its
        // write for another cause): the outputs stay, as files a version
        // may point to; VACUUM removes them if none does.
        Err(e) => Err(e),
    }
}
