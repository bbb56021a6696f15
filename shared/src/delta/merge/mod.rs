//! Merging staged changes into a CDC table's Delta table: one commit per
//! batch of chunks, by the table's one committer.
//!
//! **Rules.** Per key, the change with the greatest `_sluice_position`
//! wins. A change applies only over a row (or a remembered delete) with a
//! smaller position: a change that arrives after a newer one of its key (a
//! late file, a redelivery) changes nothing, so applying a batch twice
//! changes nothing. Deletes remove the row and are remembered (key and
//! position, under `_sluice/cdc-deleted/<table>/`) for `remember_deletes`,
//! so an older upsert arriving within that time cannot bring the row back.
//!
//! **Copy on write.** The table's files whose key statistics (the first key
//! column's `minValues`/`maxValues`) overlap the batch's keys are read, their
//! key and position columns only; a file that holds a row the batch replaces
//! or deletes is then read whole, a batch of rows at a time, and written
//! again without those rows, and the batch's new rows follow; one commit
//! removes the old files and adds the new ones. Memory holds the batch's
//! changes (at most [`MAX_CHANGES_PER_COMMIT`]) and a batch of table rows,
//! never a whole table file. The remembered deletes are
//! written before the commit: a delete seen is a delete, whether or not its
//! commit lands (a retry applies it).

use arrow::array::{AsArray, BooleanArray, RecordBatch, UInt32Array};
use arrow::compute::{filter_record_batch, take_record_batch};
use arrow::datatypes::SchemaRef;
use chrono::Utc;
use deltalake::kernel::{Action, Remove};
use deltalake::protocol::DeltaOperation;
use futures::TryStreamExt;
use object_store::ObjectStoreExt as _;
use serde_json::Value;
use sha2::Digest;

use crate::commit::{CommitRecord, column_defs};
use crate::config::{CDC_OP, Cdc, Table, arrow_schema};
use crate::error::{Error, Result};
use crate::store::Location;
use crate::write::ChunkWriter;

mod deletes;
mod files;
mod keys;

use deletes::{key_schema, remember, remembered_deletes};
use files::{file_batches, project, read_staged, write_rows};
use keys::{Candidate, Keys, Latest, overlapping_files, positions};

/// What one [`apply`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Merged {
    /// The version written, or `None` when the batch changed nothing.
    pub version: Option<u64>,
    /// Changes read from the staged files.
    pub changes: u64,
    /// Changes left after keeping each key's newest.
    pub latest: u64,
    /// Changes older than the table's row (or remembered delete) of their key.
    pub stale: u64,
    /// Rows inserted or replaced.
    pub upserted: u64,
    /// Deletes applied (remembered, whether or not the table held the key).
    pub deleted: u64,
    /// Table files read because their keys overlap the batch's.
    pub files_read: usize,
    /// Files written again without replaced or deleted rows.
    pub files_removed: usize,
    pub files_added: usize,
}

/// Most staged changes merged in one commit: a larger batch of chunks (a
/// full load, a backlog) is merged in several commits, in the order the
/// chunks came, so memory holds at most this many changes and their keys.
pub const MAX_CHANGES_PER_COMMIT: u64 = 1_000_000;

/// Merge the staged changes of `records` (chunks of CDC table `table`) into
/// its Delta table, creating it if need be: one commit for each run of
/// chunks holding at most [`MAX_CHANGES_PER_COMMIT`] changes (a chunk is
/// never split). See the module's docs.
pub async fn apply(lake: &Location, table: &Table, records: &[CommitRecord]) -> Result<Merged> {
    let mut total = Merged::default();
    let sizes: Vec<u64> = records.iter().map(|r| r.rows_out).collect();
    for run in runs(&sizes, MAX_CHANGES_PER_COMMIT) {
        let m = apply_group(lake, table, &records[run]).await?;
        total.version = m.version.or(total.version);
        total.changes += m.changes;
        total.latest += m.latest;
        total.stale += m.stale;
        total.upserted += m.upserted;
        total.deleted += m.deleted;
        total.files_read += m.files_read;
        total.files_removed += m.files_removed;
        total.files_added += m.files_added;
    }
    Ok(total)
}

/// Consecutive runs of `sizes`, each summing to at most `max` unless one
/// size alone is larger (it is never split), covering every index in order.
fn runs(sizes: &[u64], max: u64) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < sizes.len() {
        let mut end = start + 1;
        let mut sum = sizes[start];
        while end < sizes.len() && sum + sizes[end] <= max {
            sum += sizes[end];
            end += 1;
        }
        out.push(start..end);
        start = end;
    }
    out
}

/// [`apply`] for a run of chunks: one commit.
async fn apply_group(lake: &Location, table: &Table, records: &[CommitRecord]) -> Result<Merged> {
    let cdc = table
        .cdc
        .as_ref()
        .ok_or_else(|| Error::Config(format!("table '{}' is no CDC table", table.name)))?;
    let name = table.name.as_str();
    let staged = table.input_schema();
    // With a change table, a chunk whose staged files it holds was merged
    // (the change table's commit follows the merge's): not read again.
    let fresh: Vec<CommitRecord>;
    let records = if cdc.keep_changes {
        let held = crate::delta::held(lake, &Cdc::changes_table(name), records).await?;
        fresh = records
            .iter()
            .filter(|r| !held.contains(&r.chunk_id))
            .cloned()
            .collect();
        if fresh.is_empty() {
            return Ok(Merged::default());
        }
        fresh.as_slice()
    } else {
        records
    };
    let changes = read_staged(lake, name, &staged, records).await?;
    let merged = crate::delta::replanning(name, "the merge", || {
        apply_once(lake, table, cdc, &changes, records)
    })
    .await?;
    if cdc.keep_changes {
        let changes_table = Cdc::changes_table(name);
        let renamed: Vec<CommitRecord> = records
            .iter()
            .map(|r| CommitRecord {
                table: changes_table.clone(),
                ..r.clone()
            })
            .collect();
        crate::delta::commit(lake, &changes_table, &renamed, &[]).await?;
    } else {
        // Applied: the staged files are not needed again (a redelivered
        // chunk finds its commit record and its files gone, and is skipped).
        for r in records {
            for f in &r.files {
                let _ = lake.store.delete(&lake.child(&f.path)?).await;
            }
        }
    }
    Ok(merged)
}

/// The name the merge's files share: the table version it starts from and
/// the chunks it applies, so a retry of the same batch writes the same names.
fn batch_id(version: u64, chunk_ids: &[&str]) -> String {
    let mut h = sha2::Sha256::new();
    h.update(version.to_string());
    for c in chunk_ids {
        h.update(c.as_bytes());
    }
    format!("u{}", &hex::encode(h.finalize())[..24])
}

/// What the first pass over the candidates' keys found.
#[derive(Default)]
struct KeyScan<'a> {
    /// Keys whose change is no newer than the table's row.
    stale: Vec<&'a [u8]>,
    /// Keys of the batch the table holds a row of.
    found: std::collections::HashSet<&'a [u8]>,
    /// Files holding a row the batch replaces: path, size, action.
    touched: Vec<(object_store::path::Path, i64, deltalake::kernel::Add)>,
    files_read: usize,
}

/// First pass, over the key and position columns only: which files hold a
/// row the batch replaces; which changes are no newer than their row.
async fn scan_keys<'a>(
    lake: &Location,
    name: &str,
    keys: &Keys,
    key_schema: &SchemaRef,
    candidates: Vec<Candidate>,
    latest: &Latest<'a>,
) -> Result<KeyScan<'a>> {
    let mut scan = KeyScan::default();
    for (path, size, add) in candidates {
        scan.files_read += 1;
        let lake_path = lake.child(&format!("{name}/{path}"))?;
        let mut batches =
            std::pin::pin!(file_batches(lake, &lake_path, size as u64, key_schema).await?);
        let mut replaced_any = false;
        while let Some(b) = batches.try_next().await? {
            let row_keys = keys.of(&b)?;
            let row_pos = positions(&b);
            for (r, k) in row_keys.iter().enumerate() {
                if let Some((key, replaced)) = latest.replaces(k, row_pos.value(r)) {
                    scan.found.insert(key);
                    if !replaced {
                        scan.stale.push(key);
                    }
                    replaced_any |= replaced;
                }
            }
        }
        if replaced_any {
            scan.touched.push((lake_path, size, add));
        }
    }
    Ok(scan)
}

/// Second pass: each touched file is written again through `writer`
/// without the rows the batch replaces, a batch of rows at a time, so
/// memory holds a batch, not a file. Returns the actions removing them.
#[allow(clippy::too_many_arguments)]
async fn rewrite_touched(
    lake: &Location,
    name: &str,
    keys: &Keys,
    schema: &SchemaRef,
    touched: Vec<(object_store::path::Path, i64, deltalake::kernel::Add)>,
    latest: &Latest<'_>,
    writer: &mut ChunkWriter,
) -> Result<Vec<Action>> {
    let mut removes = Vec::new();
    for (lake_path, size, add) in touched {
        let mut batches =
            std::pin::pin!(file_batches(lake, &lake_path, size as u64, schema).await?);
        while let Some(b) = batches.try_next().await? {
            let row_keys = keys.of(&b)?;
            let row_pos = positions(&b);
            let keep: BooleanArray = row_keys
                .iter()
                .enumerate()
                .map(|(r, k)| Some(!latest.replaces(k, row_pos.value(r)).is_some_and(|(_, x)| x)))
                .collect();
            let kept = filter_record_batch(&b, &keep).map_err(|e| Error::transform(name, e))?;
            write_rows(writer, kept).await?;
        }
        removes.push(Action::Remove(Remove {
            path: add.path.clone(),
            data_change: true,
            deletion_timestamp: Some(Utc::now().timestamp_millis()),
            extended_file_metadata: Some(true),
            partition_values: Some(add.partition_values.clone()),
            size: Some(size),
            tags: None,
            deletion_vector: None,
            base_row_id: None,
            default_row_commit_version: None,
        }));
    }
    Ok(removes)
}

async fn apply_once(
    lake: &Location,
    table: &Table,
    cdc: &Cdc,
    changes: &RecordBatch,
    records: &[CommitRecord],
) -> Result<Merged> {
    let name = table.name.as_str();
    let mut done = Merged {
        changes: changes.num_rows() as u64,
        ..Merged::default()
    };
    if changes.num_rows() == 0 {
        return Ok(done);
    }
    let keys = Keys::new(cdc, &changes.schema())?;
    let change_keys = keys.of(changes)?;
    let mut latest = Latest::of(&change_keys, positions(changes));
    done.latest = latest.rows.len() as u64;
    // Deletes remembered: a change older than its key's delete is stale.
    // The delete itself (same position) still applies: it is remembered
    // before its commit, and a batch retried after a failed commit must
    // still remove the row.
    let deleted =
        remembered_deletes(lake, name, cdc, &keys, changes.schema(), &latest.rows).await?;
    let change_pos = latest.positions;
    latest.rows.retain(|k, i| {
        let keep = deleted
            .get(*k)
            .is_none_or(|p| change_pos.value(*i) >= p.as_str());
        done.stale += u64::from(!keep);
        keep
    });
    let table_schema = arrow_schema(&cdc.table_columns());
    let t = open_or_create(lake, name, &table_schema).await?;
    let snapshot = t.snapshot().map_err(|e| crate::delta::error(name, e))?;
    let key0 = changes
        .column_by_name(&cdc.key[0])
        .expect("staged changes have their key");
    let candidates = if latest.rows.is_empty() {
        Vec::new()
    } else {
        let range = latest.key_range(key0.as_ref());
        overlapping_files(snapshot, &cdc.key[0], range.as_ref())
    };
    let mut chunk_ids: Vec<&str> = records.iter().map(|r| r.chunk_id.as_str()).collect();
    chunk_ids.sort_unstable();
    let id = batch_id(snapshot.version() as u64, &chunk_ids);
    let key_schema = key_schema(cdc, &table_schema)?;
    let scan = scan_keys(lake, name, &keys, &key_schema, candidates, &latest).await?;
    done.files_read = scan.files_read;
    let mut writer = ChunkWriter::new(lake, name, &id, &[], table_schema.clone(), &table.parquet);
    let removes = rewrite_touched(
        lake,
        name,
        &keys,
        &table_schema,
        scan.touched,
        &latest,
        &mut writer,
    )
    .await?;
    let ops = changes
        .column_by_name(CDC_OP)
        .expect("staged changes have their operation")
        .as_string::<i32>();
    let mut stale = scan.stale;
    stale.extend(latest.applied_deletes(ops, &scan.found, &deleted));
    done.stale += stale.len() as u64;
    for k in stale {
        latest.rows.remove(k);
    }
    let mut order: Vec<usize> = latest.rows.values().copied().collect();
    order.sort_unstable();
    let (deletes, upserts): (Vec<u32>, Vec<u32>) = order
        .into_iter()
        .map(|i| i as u32)
        .partition(|&i| ops.value(i as usize) == "d");
    done.upserted = upserts.len() as u64;
    done.deleted = deletes.len() as u64;
    if removes.is_empty() && upserts.is_empty() && deletes.is_empty() {
        return Ok(done);
    }
    if !deletes.is_empty() {
        let gone = take_record_batch(changes, &UInt32Array::from(deletes))
            .map_err(|e| Error::transform(name, e))?;
        remember(lake, table, cdc, &gone, &id).await?;
    }
    if !upserts.is_empty() {
        let rows = take_record_batch(changes, &UInt32Array::from(upserts))
            .map_err(|e| Error::transform(name, e))?;
        write_rows(&mut writer, project(name, &rows, &table_schema)?).await?;
    }
    let files = writer.finish().await?;
    let now = Utc::now().timestamp_millis();
    let mut actions = removes;
    done.files_removed = actions.len();
    for f in &files {
        actions.push(Action::Add(crate::delta::add_action(name, &[], f, now)?));
    }
    done.files_added = files.len();
    commit_merge(name, &t, cdc, &chunk_ids, actions, done).await
}

/// Commit the merge's `actions` over the snapshot of `t`, recording the
/// chunks it applies and its counts in the commit's metadata.
async fn commit_merge(
    name: &str,
    t: &deltalake::DeltaTable,
    cdc: &Cdc,
    chunk_ids: &[&str],
    actions: Vec<Action>,
    mut done: Merged,
) -> Result<Merged> {
    let snapshot = t.snapshot().map_err(|e| crate::delta::error(name, e))?;
    let metadata = vec![
        (
            "sluice.chunks".to_string(),
            Value::from(
                chunk_ids
                    .iter()
                    .map(|c| Value::from(*c))
                    .collect::<Vec<_>>(),
            ),
        ),
        (
            "sluice.cdc".to_string(),
            serde_json::json!({
                "changes": done.changes, "stale": done.stale,
                "upserted": done.upserted, "deleted": done.deleted,
            }),
        ),
    ];
    let operation = DeltaOperation::Merge {
        predicate: None,
        merge_predicate: Some(format!("key({})", cdc.key.join(", "))),
        matched_predicates: Vec::new(),
        not_matched_predicates: Vec::new(),
        not_matched_by_source_predicates: Vec::new(),
    };
    let version = crate::delta::land(
        name,
        snapshot,
        t.log_store(),
        operation,
        metadata,
        actions,
        Vec::new(),
    )
    .await?;
    done.version = Some(version);
    tracing::info!(
        table = name,
        version,
        changes = done.changes,
        upserted = done.upserted,
        deleted = done.deleted,
        stale = done.stale,
        files_read = done.files_read,
        files_removed = done.files_removed,
        "cdc merge"
    );
    Ok(done)
}

/// The CDC table's Delta table, created (empty, unpartitioned) if need be.
async fn open_or_create(
    lake: &Location,
    name: &str,
    schema: &SchemaRef,
) -> Result<deltalake::DeltaTable> {
    match crate::delta::open(lake, name, crate::delta::AsOf::Latest).await? {
        Some(t) => Ok(t),
        None => {
            let columns = column_defs(name, schema)?;
            crate::delta::create_table(lake, name, &columns, &[]).await
        }
    }
}

/// Register a CDC table (its columns and the position) and, with
/// `keep_changes`, its change table, in `catalog`.
pub async fn register(
    catalog: &dyn crate::catalog::Catalog,
    table: &Table,
    records: &[CommitRecord],
) -> Result<()> {
    let (Some(cdc), Some(first)) = (&table.cdc, records.first()) else {
        return Ok(());
    };
    let columns = column_defs(&table.name, &arrow_schema(&cdc.table_columns()))?;
    let target = CommitRecord {
        table: table.name.clone(),
        columns,
        ..first.clone()
    };
    crate::delta::register(catalog, std::slice::from_ref(&target)).await?;
    if cdc.keep_changes {
        let changes = CommitRecord {
            table: Cdc::changes_table(&table.name),
            ..first.clone()
        };
        crate::delta::register(catalog, std::slice::from_ref(&changes)).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::runs;

    #[test]
    fn runs_of_chunks_fill_each_commit_up_to_the_limit_in_order() {
        assert_eq!(runs(&[], 10), Vec::<std::ops::Range<usize>>::new());
        assert_eq!(runs(&[4, 6, 1], 10), vec![0..2, 2..3]);
        assert_eq!(runs(&[10, 10], 10), vec![0..1, 1..2]);
        // A chunk larger than the limit is a commit of its own, never split.
        assert_eq!(runs(&[3, 25, 3, 3, 5], 10), vec![0..1, 1..2, 2..4, 4..5]);
        assert_eq!(runs(&[0, 0, 0], 10), vec![0..3]);
    }
}
