//! The committer: commit records made visible in one Delta commit each batch,
//! exactly once, with replaced sources' files taken out.

use super::*;
use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::Utc;
use deltalake::DeltaTable;
use deltalake::kernel::{Action, MetadataExt, StructType, Transaction};
use deltalake::logstore::LogStore;
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::table::state::DeltaTableState;
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt as _;
use serde_json::Value;

use crate::commit::{CommitRecord, version_key};
use crate::compact::{CompactOptions, write_without};
use crate::error::{Error, Result};
use crate::sources::{self, Standing};
use crate::store::Location;
use crate::write::compaction_output_name;

/// Reads of the lake in flight at once while a batch is planned (ledger
/// listings, HEADs of new files).
const READ_CONCURRENCY: usize = 32;

/// What one [`commit`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Committed {
    /// The version written, or `None` when there was nothing new to commit.
    pub version: Option<u64>,
    /// Chunks whose files entered the table.
    pub chunks_added: usize,
    /// Chunks found already in the table (or gone from it), so not added again.
    pub chunks_skipped: usize,
    pub files_added: usize,
    /// Files of replaced source versions taken out of the table (or merged
    /// files holding their rows, written again without them).
    pub files_removed: usize,
    /// Merged files written again without a replaced version's rows.
    pub files_rewritten: usize,
    /// Columns the table gained.
    pub columns_added: Vec<String>,
    /// Chunks of a source version that waits for its other chunks (it
    /// replaces a version in the table) or that a newer version replaced.
    pub chunks_waiting: usize,
}

/// Make the files of `records` (chunks of `table`) visible in one Delta
/// commit, and take out the files of `retired` (chunks of source versions a
/// newer, complete one replaces). Creates the table from the first record if
/// it has no log yet. Idempotent: see the module's docs.
pub async fn commit(
    lake: &Location,
    table: &str,
    records: &[CommitRecord],
    retired: &[CommitRecord],
) -> Result<Committed> {
    let Some(first) = records.first().or(retired.first()) else {
        return Ok(Committed::default());
    };
    // Each attempt plans the batch from a freshly read snapshot: another
    // writer's commit that got there first is then in it.
    let attempt = || async {
        let t = match open(lake, table, AsOf::Latest).await? {
            Some(t) => t,
            None => create(lake, first).await?,
        };
        commit_once(lake, table, &t, records, retired).await
    };
    replanning(table, "the batch", attempt).await
}

/// Commit a batch of commit records of `table`, as they arrive from the
/// transforms, in one Delta commit. A chunk of a source with no other
/// version enters at once. A chunk of a new version of a source already in
/// the table waits until its version is complete; the batch that completes
/// it adds every chunk of the version and removes the older versions' files,
/// in the same commit, so readers see the old rows or the new ones, never
/// both. The ledger entries of the retired chunks are deleted once the
/// commit is in (a crash before that retires them again, finding nothing).
pub async fn commit_batch(
    lake: &Location,
    table: &str,
    records: Vec<CommitRecord>,
) -> Result<Committed> {
    let mut adds: BTreeMap<String, CommitRecord> = BTreeMap::new();
    let mut retired: BTreeMap<String, CommitRecord> = BTreeMap::new();
    let mut forget = Vec::new();
    let mut waiting = 0;
    // The standing of each source version in the batch, read
    // [`READ_CONCURRENCY`] at a time (a backfill's batch holds 10^4 sources).
    let mut firsts: HashMap<(String, String), &CommitRecord> = HashMap::new();
    for record in &records {
        firsts
            .entry((record.source.url.clone(), version_key(&record.source)))
            .or_insert(record);
    }
    let reads: Vec<_> = firsts
        .into_iter()
        .map(|(version, record)| standing_of(lake, version, record))
        .collect();
    let standings: HashMap<(String, String), Standing> = futures::stream::iter(reads)
        .buffer_unordered(READ_CONCURRENCY)
        .try_collect()
        .await?;
    for record in records {
        let version = (record.source.url.clone(), version_key(&record.source));
        let standing = standings[&version].clone();
        match standing {
            Standing::Only => {
                adds.insert(record.chunk_id.clone(), record);
            }
            Standing::Waiting => waiting += 1,
            Standing::Replaces {
                chunks,
                retired: old,
            } => {
                // Every chunk of the version has its ledger entry; one whose
                // commit record is not written yet (its transform is at work,
                // or crashed between the two) holds the version back. (Each
                // record is read once: a chunk already among the adds has one.)
                let mut found = Vec::new();
                let mut complete = true;
                for id in chunks.into_iter().filter(|id| !adds.contains_key(id)) {
                    match find_record(lake, table, &id).await? {
                        Some(r) => found.push(r),
                        None => {
                            complete = false;
                            break;
                        }
                    }
                }
                if !complete {
                    waiting += 1;
                    continue;
                }
                for r in found {
                    adds.insert(r.chunk_id.clone(), r);
                }
                for (path, id) in old {
                    if let std::collections::btree_map::Entry::Vacant(e) = retired.entry(id) {
                        // A chunk of an older version that never wrote its
                        // commit record never entered the table.
                        if let Some(r) = find_record(lake, table, e.key()).await? {
                            e.insert(r);
                        }
                        forget.push(path);
                    }
                }
            }
        }
    }
    let adds: Vec<CommitRecord> = adds.into_values().collect();
    let retired: Vec<CommitRecord> = retired.into_values().collect();
    let mut done = commit(lake, table, &adds, &retired).await?;
    done.chunks_waiting = waiting;
    for path in forget {
        sources::forget(lake, &path).await?;
    }
    Ok(done)
}

/// The records of `records` whose files `table` holds or once held (the
/// chunks a commit of the table already took), by chunk id.
pub async fn held(
    lake: &Location,
    table: &str,
    records: &[CommitRecord],
) -> Result<HashSet<String>> {
    let Some(t) = open(lake, table, AsOf::Latest).await? else {
        return Ok(HashSet::new());
    };
    let snapshot = t.snapshot().map_err(|e| error(table, e))?;
    let active: HashMap<String, i64> = active_files(snapshot)
        .into_iter()
        .map(|f| (f.path, f.size))
        .collect();
    let tombstones: HashSet<String> = snapshot
        .all_tombstones(t.log_store().as_ref())
        .map_ok(|r| r.path().into_owned())
        .try_collect()
        .await
        .map_err(|e| error(table, e))?;
    let refs: Vec<&CommitRecord> = records.iter().collect();
    let mut out = taken(table, snapshot, t.log_store().as_ref(), &refs).await?;
    for r in records {
        if !out.contains(&r.chunk_id) && !is_new(lake, table, r, &active, &tombstones).await? {
            out.insert(r.chunk_id.clone());
        }
    }
    Ok(out)
}

/// The application id of the Delta `txn` action by which a table records
/// that it took a chunk. Checkpoints keep `txn` actions (the table sets no
/// `delta.setTransactionRetentionDuration`), so the record outlives the
/// tombstones of the chunk's files and the files themselves.
pub fn chunk_app_id(chunk_id: &str) -> String {
    format!("sluice.chunk.{chunk_id}")
}

/// The chunks of `records` a commit of the table took, by their `txn`
/// actions ([`chunk_app_id`]).
pub(super) async fn taken(
    table: &str,
    snapshot: &DeltaTableState,
    log: &dyn LogStore,
    records: &[&CommitRecord],
) -> Result<HashSet<String>> {
    if records.is_empty() {
        return Ok(HashSet::new());
    }
    // Every app id at once ([`super::txns`]), rather than one log replay
    // per record.
    if let Some(all) = super::txns::app_ids(table, snapshot, log).await? {
        return Ok(records
            .iter()
            .filter(|r| all.contains(&chunk_app_id(&r.chunk_id)))
            .map(|r| r.chunk_id.clone())
            .collect());
    }
    let ids: HashSet<&str> = records.iter().map(|r| r.chunk_id.as_str()).collect();
    let lookups: Vec<_> = ids.into_iter().map(|id| took(snapshot, log, id)).collect();
    let found: Vec<Option<String>> = futures::stream::iter(lookups)
        .buffer_unordered(8)
        .try_collect()
        .await
        .map_err(|e| error(table, e))?;
    Ok(found.into_iter().flatten().collect())
}

/// `Some(id)` when the table holds chunk `id`'s `txn` action.
async fn took(
    snapshot: &DeltaTableState,
    log: &dyn LogStore,
    id: &str,
) -> std::result::Result<Option<String>, deltalake::DeltaTableError> {
    let version = snapshot.transaction_version(log, chunk_app_id(id)).await?;
    Ok(version.map(|_| id.to_string()))
}

/// The commit record of chunk `chunk_id` of `table`, if it is written.
pub(super) async fn find_record(
    lake: &Location,
    table: &str,
    chunk_id: &str,
) -> Result<Option<CommitRecord>> {
    let path = lake.child(&CommitRecord::path(table, chunk_id))?;
    match lake.get_bytes(&path).await? {
        Some(bytes) => CommitRecord::from_json(&bytes, &lake.url_of(&path)).map(Some),
        None => Ok(None),
    }
}

/// One attempt of [`commit`] against the snapshot of `t`.
pub(super) async fn commit_once(
    lake: &Location,
    table: &str,
    t: &DeltaTable,
    records: &[CommitRecord],
    retired: &[CommitRecord],
) -> Result<Committed> {
    let log = t.log_store();
    let snapshot = t.snapshot().map_err(|e| error(table, e))?;
    let files = active_files(snapshot);
    let active: HashMap<String, i64> = files.iter().map(|f| (f.path.clone(), f.size)).collect();
    let tombstones: HashSet<String> = snapshot
        .all_tombstones(log.as_ref())
        .map_ok(|r| r.path().into_owned())
        .try_collect()
        .await
        .map_err(|e| error(table, e))?;
    let keys: Vec<String> = snapshot.metadata().partition_columns().to_vec();
    let mut done = Committed::default();
    let mut actions = Vec::new();
    let mut chunk_ids = Vec::new();
    let mut schema: StructType = snapshot.schema().as_ref().clone();
    let now = Utc::now().timestamp_millis();
    for record in records {
        check_keys(table, record, &keys)?;
    }
    // A record whose files the log names is not new, whatever else: only
    // the others are looked up by their `txn` action (each lookup replays
    // the log's `txn` actions) and then by a HEAD of their first file,
    // [`READ_CONCURRENCY`] at a time.
    let mut unseen = Vec::new();
    for record in records {
        if !in_log(table, record, &active, &tombstones)? {
            unseen.push(record);
        }
    }
    let taken = taken(table, snapshot, log.as_ref(), &unseen).await?;
    let checks: Vec<_> = unseen
        .iter()
        .filter(|r| !taken.contains(&r.chunk_id))
        .map(|r| new_chunk(lake, r))
        .collect();
    let new: HashSet<&str> = futures::stream::iter(checks)
        .buffer_unordered(READ_CONCURRENCY)
        .try_collect::<Vec<Option<&str>>>()
        .await?
        .into_iter()
        .flatten()
        .collect();
    let mut txns = Vec::new();
    for record in records {
        if !new.contains(record.chunk_id.as_str()) {
            done.chunks_skipped += 1;
            continue;
        }
        txns.push(Transaction::new_with_last_update(
            chunk_app_id(&record.chunk_id),
            1,
            Some(now),
        ));
        schema = evolve(table, &schema, record, &mut done.columns_added)?;
        for f in &record.files {
            actions.push(Action::Add(add_action(table, &keys, f, now)?));
            done.files_added += 1;
        }
        chunk_ids.push(Value::from(record.chunk_id.clone()));
        done.chunks_added += 1;
    }
    let retired_ids = retire(
        lake,
        table,
        retired,
        &files,
        &keys,
        now,
        &mut actions,
        &mut done,
    )
    .await?;
    if actions.is_empty() {
        return Ok(done);
    }
    if !done.columns_added.is_empty() {
        let metadata = snapshot
            .metadata()
            .clone()
            .with_schema(&schema)
            .map_err(|e| Error::Catalog(format!("table '{table}': evolving its schema: {e}")))?;
        actions.insert(0, Action::Metadata(metadata));
    }
    let metadata = vec![
        ("sluice.chunks".to_string(), Value::Array(chunk_ids)),
        ("sluice.retired".to_string(), Value::Array(retired_ids)),
    ];
    let operation = DeltaOperation::Write {
        mode: SaveMode::Append,
        partition_by: (!keys.is_empty()).then(|| keys.clone()),
        predicate: None,
    };
    let version = super::land(
        table,
        snapshot,
        log.clone(),
        operation,
        metadata,
        actions,
        txns,
    )
    .await?;
    done.version = Some(version);
    tracing::info!(
        table,
        version,
        chunks = done.chunks_added,
        files_added = done.files_added,
        files_removed = done.files_removed,
        "delta commit"
    );
    Ok(done)
}

/// The actions (into `actions`) that take the chunks `retired` out of the
/// table: their files removed where active, their rows cut out of the
/// merged files that hold them. Returns the ids of the chunks retired.
#[allow(clippy::too_many_arguments)]
async fn retire(
    lake: &Location,
    table: &str,
    retired: &[CommitRecord],
    files: &[ActiveFile],
    keys: &[String],
    now: i64,
    actions: &mut Vec<Action>,
    done: &mut Committed,
) -> Result<Vec<Value>> {
    let mut retired_ids = Vec::new();
    let active: HashSet<&str> = files.iter().map(|f| f.path.as_str()).collect();
    // Rows of retired chunk files that a compaction merged: per merged file.
    let mut cuts: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for record in retired {
        let mut any = false;
        for f in &record.files {
            let path = relative(table, &f.path)?;
            if active.contains(path.as_str()) {
                actions.push(Action::Remove(remove_action(keys, f, &path, now)));
                done.files_removed += 1;
                any = true;
            } else if let Some(m) = files.iter().find(|m| {
                m.parts
                    .as_ref()
                    .is_some_and(|p| p.iter().any(|x| x.file == path))
            }) {
                cuts.entry(m.path.as_str()).or_default().push(path);
                any = true;
            }
        }
        if any {
            retired_ids.push(Value::from(record.chunk_id.clone()));
        }
    }
    for (merged, drop) in cuts {
        let m = files
            .iter()
            .find(|f| f.path == merged)
            .expect("found among the files");
        actions.extend(cut(lake, table, m, &drop, now).await?);
        done.files_removed += 1;
        done.files_rewritten += 1;
    }
    Ok(retired_ids)
}

/// The actions that take the rows of the chunk files `drop` out of the
/// merged file `m`: it is written again without them (unless nothing is
/// left), and the new file replaces it.
pub(super) async fn cut(
    lake: &Location,
    table: &str,
    m: &ActiveFile,
    drop: &[String],
    now: i64,
) -> Result<Vec<Action>> {
    let parts = m.parts.as_deref().unwrap_or_default();
    let crate::compact::CutPlan {
        ranges,
        kept,
        rows: at,
        id,
    } = crate::compact::plan_cut(&m.path, parts, drop);
    let folder = match folder_of(&m.path) {
        "" => table.to_string(),
        f => format!("{table}/{f}"),
    };
    let mut remove = compaction_remove(m, now);
    remove.data_change = true;
    let mut actions = vec![Action::Remove(remove)];
    // Every row of the merged file is replaced: it leaves the table and no
    // file takes its place (the committer writes, and so deletes, nothing).
    if kept.is_empty() {
        tracing::info!(table, from = %m.path, rows_removed = at, "every row of a merged file replaced: the file leaves the table");
        return Ok(actions);
    }
    let output = compaction_output_name(&folder, &id);
    let input = format!("{table}/{}", m.path);
    let (rows, bytes) =
        write_without(lake, &input, &ranges, &output, &CompactOptions::default()).await?;
    let mut add = merged_add(lake, table, &output, bytes, m.partition.clone(), &kept, now).await?;
    add.data_change = true;
    actions.push(Action::Add(add));
    tracing::info!(table, from = %m.path, to = %output, rows_removed = at - rows, "cut a replaced source's rows out of a merged file");
    Ok(actions)
}

/// The record's partition keys must be the table's, in the table's order.
pub(super) fn check_keys(table: &str, record: &CommitRecord, keys: &[String]) -> Result<()> {
    let theirs: Vec<&str> = record
        .partition_keys
        .iter()
        .map(|k| k.name.as_str())
        .collect();
    if theirs != keys.iter().map(String::as_str).collect::<Vec<_>>() {
        return Err(Error::Catalog(format!(
            "table '{table}': chunk {} of {} is partitioned by {theirs:?}, the Delta table by {keys:?}; a table's partition keys cannot change",
            record.chunk.index, record.source.url
        )));
    }
    Ok(())
}

/// Whether none of the record's files was ever in the table, and its files
/// are still there to add: for chunks committed before the table recorded
/// chunks as `txn` actions ([`taken`]), and a second guard besides them.
/// `record`'s source version and its standing.
async fn standing_of(
    lake: &Location,
    version: (String, String),
    record: &CommitRecord,
) -> Result<((String, String), Standing)> {
    Ok((version, sources::standing(lake, record).await?))
}

/// The chunk id of `record`, which the log does not name, if its files are
/// still there ([`files_there`]).
async fn new_chunk<'a>(lake: &Location, record: &'a CommitRecord) -> Result<Option<&'a str>> {
    let there = files_there(lake, record).await?;
    Ok(there.then_some(record.chunk_id.as_str()))
}

/// Whether the log names one of `record`'s files (as active or removed),
/// or the record has none: then it is not new to the table.
fn in_log(
    table: &str,
    record: &CommitRecord,
    active: &HashMap<String, i64>,
    tombstones: &HashSet<String>,
) -> Result<bool> {
    if record.files.is_empty() {
        return Ok(true);
    }
    for f in &record.files {
        let path = relative(table, &f.path)?;
        if active.contains_key(&path) || tombstones.contains(&path) {
            return Ok(true);
        }
    }
    Ok(false)
}

pub(super) async fn is_new(
    lake: &Location,
    table: &str,
    record: &CommitRecord,
    active: &HashMap<String, i64>,
    tombstones: &HashSet<String>,
) -> Result<bool> {
    if in_log(table, record, active, tombstones)? {
        return Ok(false);
    }
    files_there(lake, record).await
}

/// Whether the first file of `record` is still in the lake (a HEAD): a
/// record whose files VACUUM deleted long ago is not added again.
async fn files_there(lake: &Location, record: &CommitRecord) -> Result<bool> {
    let table = record.table.as_str();
    let Some(first) = record.files.first() else {
        return Ok(false);
    };
    let path = lake.child(&first.path)?;
    match lake.store.head(&path).await {
        Ok(_) => Ok(true),
        Err(object_store::Error::NotFound { .. }) => {
            tracing::warn!(
                table,
                chunk = %record.chunk_id,
                file = %lake.url_of(&path),
                "the chunk's files are gone (committed and vacuumed long ago): not added again"
            );
            Ok(false)
        }
        Err(e) => Err(Error::read(lake.url_of(&path), e)),
    }
}

/// `schema` with the record's columns it lacks added; a column whose type
/// differs is refused, naming it.
pub(super) fn evolve(
    table: &str,
    schema: &StructType,
    record: &CommitRecord,
    added: &mut Vec<String>,
) -> Result<StructType> {
    let theirs = schema_of(table, &record.columns, &record.partition_keys)?;
    let mut fields: Vec<_> = schema.fields().cloned().collect();
    for f in theirs.fields() {
        match schema.field(f.name()) {
            Some(ours) if ours.data_type() != f.data_type() => {
                return Err(Error::Catalog(format!(
                    "table '{table}': column '{}' is {} in the Delta table but {} in chunk {} of {}; a column's type cannot change",
                    f.name(),
                    ours.data_type(),
                    f.data_type(),
                    record.chunk.index,
                    record.source.url
                )));
            }
            Some(_) => {}
            None => {
                tracing::info!(table, column = %f.name(), "the Delta table gains a column");
                added.push(f.name().clone());
                fields.push(f.clone());
            }
        }
    }
    if fields.len() == schema.fields().len() {
        return Ok(schema.clone());
    }
    StructType::try_new(fields)
        .map_err(|e| Error::Catalog(format!("table '{table}': evolved schema: {e}")))
}
