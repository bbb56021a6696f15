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
//! **Exactly once.** A record whose files the table already holds, or once
//! held (a `remove` tombstone: compacted or replaced since), is skipped: a
//! record delivered twice, or a batch retried after a crash at any point,
//! adds its files once. Past the tombstones' retention (and a vacuum), a
//! file is gone from the store too, and a record whose files are gone is
//! skipped. The chunk ids of every commit are kept in its `commitInfo`
//! (`sluice.chunks`), for people reading the log.
//!
//! **Conflicts.** S3 commits are conditional puts (`PutMode::Create`): two
//! committers never both write version N. The loser re-reads the log and
//! delta-rs checks the winner's actions against its own (appends never
//! conflict; removing a file another commit removed does); a conflicting
//! batch is planned again from the new snapshot.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use arrow::datatypes::{Field, Schema};
use chrono::{DateTime, Utc};
use deltalake::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties, TransactionError};
use deltalake::kernel::{Action, Add, MetadataExt, Remove, StructType};
use deltalake::logstore::{LogStoreRef, StorageConfig, default_logstore};
use deltalake::operations::create::CreateBuilder;
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::{DeltaTable, DeltaTableError, TableProperty};
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt as _;
use object_store::prefix::PrefixStore;
use serde_json::Value;

use crate::commit::{ColumnDef, CommitRecord, FileInfo, arrow_type, version_key};
use crate::compact::{Candidate, CompactOptions, merge_files, plan_partition, write_without_rows};
use crate::error::{Error, Result};
use crate::read::parquet_io::ObjectReader;
use crate::sources::{self, Standing};
use crate::stats::FileStats;
use crate::store::Location;
use crate::write::compaction_output_name;

/// A checkpoint every this many commits, so opening a table reads one
/// checkpoint and at most this many JSON entries.
pub const CHECKPOINT_INTERVAL: u32 = 10;

/// Attempts at one batch, each from a freshly read snapshot, when another
/// writer's commit conflicts with it.
const ATTEMPTS: usize = 8;

/// The folder of a table's log, under the table.
pub const LOG_DIR: &str = "_delta_log";

/// Which snapshot of a table to open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsOf {
    Latest,
    Version(u64),
    /// The newest version committed at or before this time.
    Time(DateTime<Utc>),
}

impl AsOf {
    /// `3` (a version) or an RFC 3339 time (`2026-12-01T10:00:00Z`).
    pub fn parse(text: &str) -> Result<AsOf> {
        let t = text.trim();
        if let Ok(v) = t.parse::<u64>() {
            return Ok(AsOf::Version(v));
        }
        DateTime::parse_from_rfc3339(t)
            .map(|d| AsOf::Time(d.with_timezone(&Utc)))
            .map_err(|e| {
                Error::Config(format!(
                    "--as-of {t:?} is neither a table version (a number) nor an RFC 3339 time ({e})"
                ))
            })
    }
}

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

/// The error of a Delta operation on `table`, keeping delta-rs's error as the cause.
pub fn error(table: &str, e: DeltaTableError) -> Error {
    Error::Delta {
        table: table.to_string(),
        source: Box::new(e),
    }
}

/// Whether a Delta error is another writer's commit getting there first,
/// so that planning the batch again from the new snapshot can succeed.
pub fn is_conflict(e: &DeltaTableError) -> bool {
    matches!(
        e,
        DeltaTableError::VersionAlreadyExists(_)
            | DeltaTableError::Transaction {
                source: TransactionError::VersionAlreadyExists(_)
                    | TransactionError::CommitConflict(_)
                    | TransactionError::MaxCommitAttempts(_)
            }
            | DeltaTableError::CommitValidation { .. }
    )
}

/// Whether an error of ours is a commit that another writer's beat: worth
/// planning again from the new snapshot.
pub fn lost_to_another_writer(e: &Error) -> bool {
    matches!(e, Error::Delta { source, .. }
        if source.downcast_ref::<DeltaTableError>().is_some_and(is_conflict))
}

/// The log store of `table`, on the lake's own object store (so every
/// retry, fault and credential setting of the lake applies to the log).
pub fn log_store(lake: &Location, table: &str) -> Result<LogStoreRef> {
    let prefix = lake.child(table)?;
    let url = url::Url::parse(&format!("{}/{table}/", lake.url))
        .map_err(|e| Error::Config(format!("{}/{table}: not a URL: {e}", lake.url)))?;
    let prefixed: Arc<dyn object_store::ObjectStore> =
        Arc::new(PrefixStore::new(lake.store.clone(), prefix));
    Ok(default_logstore(
        prefixed,
        lake.store.clone(),
        &url,
        &StorageConfig::default(),
    ))
}

/// Whether `table` has a Delta log in the lake.
pub async fn exists(lake: &Location, table: &str) -> Result<bool> {
    let dir = lake.child(&format!("{table}/{LOG_DIR}"))?;
    let mut listing = lake.store.list(Some(&dir));
    match listing.next().await {
        None => Ok(false),
        Some(Ok(_)) => Ok(true),
        Some(Err(e)) => Err(Error::read(lake.url_of(&dir), e)),
    }
}

/// Open `table` as of `at`; `None` if it has no Delta log.
pub async fn open(lake: &Location, table: &str, at: AsOf) -> Result<Option<DeltaTable>> {
    // Asked first, so that delta-rs does not log an error for a table that
    // is simply not there yet.
    if !exists(lake, table).await? {
        return Ok(None);
    }
    let mut t = DeltaTable::new(log_store(lake, table)?);
    let loaded = match at {
        AsOf::Latest => t.load().await,
        AsOf::Version(v) => t.load_version(v).await,
        AsOf::Time(time) => t.load_with_datetime(time).await,
    };
    match loaded {
        Ok(()) => Ok(Some(t)),
        Err(DeltaTableError::NotATable(_)) => Ok(None),
        Err(DeltaTableError::InvalidVersion(v)) => {
            Err(Error::Config(format!("table '{table}' has no version {v}")))
        }
        Err(e) => Err(error(table, e)),
    }
}

/// The Delta schema of a record's columns (data columns, then partition keys).
pub fn schema_of(table: &str, columns: &[ColumnDef], keys: &[ColumnDef]) -> Result<StructType> {
    let fields = columns
        .iter()
        .chain(keys)
        .map(|c| {
            let ty = arrow_type(&c.hive_type).ok_or_else(|| {
                Error::Catalog(format!(
                    "table '{table}': column '{}' has type {}, which sluice cannot map to a Delta type",
                    c.name, c.hive_type
                ))
            })?;
            Ok(Field::new(&c.name, ty, true))
        })
        .collect::<Result<Vec<_>>>()?;
    (&Schema::new(fields)).try_into_kernel().map_err(|e| {
        Error::Catalog(format!(
            "table '{table}': its columns have no Delta schema: {e}"
        ))
    })
}

/// Create `table` from the shape of `record`, unless it exists. Another
/// committer creating it at the same time is no error.
async fn create(lake: &Location, record: &CommitRecord) -> Result<DeltaTable> {
    create_table(lake, &record.table, &record.columns, &record.partition_keys).await
}

/// Create `table` with these data columns and partition keys, unless it
/// exists. Another committer creating it at the same time is no error.
pub async fn create_table(
    lake: &Location,
    table: &str,
    columns: &[ColumnDef],
    partition_keys: &[ColumnDef],
) -> Result<DeltaTable> {
    let schema = schema_of(table, columns, partition_keys)?;
    let created = CreateBuilder::new()
        .with_log_store(log_store(lake, table)?)
        .with_table_name(table)
        .with_columns(schema.fields().cloned())
        .with_partition_columns(partition_keys.iter().map(|k| k.name.clone()))
        .with_configuration_property(
            TableProperty::CheckpointInterval,
            Some(CHECKPOINT_INTERVAL.to_string()),
        )
        .with_save_mode(SaveMode::Ignore)
        // Version 0 or nothing: a creator that loses the race for version 0
        // must not retry its CREATE TABLE as version 1, which would replace
        // the winner's metadata (its table id, and any column a commit added
        // since). The conflict error opens the winner's table below.
        .with_commit_properties(CommitProperties::default().with_max_retries(0))
        .await;
    match created {
        Ok(t) => Ok(t),
        Err(e) if is_conflict(&e) => open(lake, table, AsOf::Latest)
            .await?
            .ok_or_else(|| error(table, e)),
        Err(e) => Err(error(table, e)),
    }
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
    let mut attempt = 0;
    loop {
        attempt += 1;
        let t = match open(lake, table, AsOf::Latest).await? {
            Some(t) => t,
            None => create(lake, first).await?,
        };
        match commit_once(lake, table, &t, records, retired).await {
            Err(e) if attempt < ATTEMPTS && lost_to_another_writer(&e) => {
                tracing::info!(
                    table,
                    attempt,
                    "another writer committed first: planning the batch again"
                );
            }
            r => return r,
        }
    }
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
    let mut standings: HashMap<(String, String), Standing> = HashMap::new();
    for record in records {
        let version = (record.source.url.clone(), version_key(&record.source));
        let standing = match standings.get(&version) {
            Some(s) => s.clone(),
            None => {
                let s = sources::standing(lake, &record).await?;
                standings.insert(version, s.clone());
                s
            }
        };
        match standing {
            Standing::Only => {
                adds.insert(record.chunk_id.clone(), record);
            }
            Standing::Waiting => waiting += 1,
            Standing::Replaces {
                chunks,
                retired: old,
            } => {
                for id in chunks {
                    if let std::collections::btree_map::Entry::Vacant(e) = adds.entry(id) {
                        let r = read_record(lake, table, e.key()).await?;
                        e.insert(r);
                    }
                }
                for (path, id) in old {
                    if let std::collections::btree_map::Entry::Vacant(e) = retired.entry(id) {
                        let r = read_record(lake, table, e.key()).await?;
                        e.insert(r);
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

/// [`commit_batch`] as the only committer of `table` for the while: under
/// the table's lease (`_sluice/committers/<table>.json`, created only if
/// absent; one left by a crashed holder is taken over after `ttl`), waited
/// for at most `wait`. Many committers of a lake (catalog functions in AWS)
/// then work on different tables at once, and never on one table at once,
/// so they do not spend their time losing conflicts. A lease still held
/// after `wait` is [`Error::Unavailable`]: the batch is worth retrying.
pub async fn commit_batch_leased(
    lake: &Location,
    table: &str,
    records: Vec<CommitRecord>,
    ttl: std::time::Duration,
    wait: std::time::Duration,
) -> Result<Committed> {
    leased(lake, table, ttl, wait, commit_batch(lake, table, records)).await
}

/// Run `work` (a commit of `table`) as the table's only committer: under
/// its lease, as [`commit_batch_leased`] describes.
pub async fn leased<T>(
    lake: &Location,
    table: &str,
    ttl: std::time::Duration,
    wait: std::time::Duration,
    work: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    let path = lake.child(&format!("{}/{table}.json", crate::layout::COMMITTERS_DIR))?;
    let started = std::time::Instant::now();
    let mut attempt = 0;
    while !crate::lease::take(lake.store.as_ref(), &path, ttl, Utc::now()).await? {
        attempt += 1;
        if started.elapsed() >= wait {
            return Err(Error::Unavailable(format!(
                "table '{table}': another committer has held {} for over {} s; the batch is retried later",
                lake.url_of(&path),
                wait.as_secs()
            )));
        }
        tokio::time::sleep(crate::retry::backoff(attempt)).await;
    }
    let result = work.await;
    let released = crate::lease::release(lake.store.as_ref(), &path).await;
    let done = result?;
    released?;
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
    let mut out = HashSet::new();
    for r in records {
        if !is_new(lake, table, r, &active, &tombstones).await? {
            out.insert(r.chunk_id.clone());
        }
    }
    Ok(out)
}

async fn read_record(lake: &Location, table: &str, chunk_id: &str) -> Result<CommitRecord> {
    let path = lake.child(&CommitRecord::path(table, chunk_id))?;
    let bytes = lake.get_bytes(&path).await?.ok_or_else(|| {
        Error::Catalog(format!(
            "table '{table}': the ledger names chunk {chunk_id}, whose commit record {} is missing",
            lake.url_of(&path)
        ))
    })?;
    CommitRecord::from_json(&bytes, &lake.url_of(&path))
}

/// One attempt of [`commit`] against the snapshot of `t`.
async fn commit_once(
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
        if !is_new(lake, table, record, &active, &tombstones).await? {
            done.chunks_skipped += 1;
            continue;
        }
        schema = evolve(table, &schema, record, &mut done.columns_added)?;
        for f in &record.files {
            actions.push(Action::Add(add_action(table, &keys, f, now)?));
            done.files_added += 1;
        }
        chunk_ids.push(Value::from(record.chunk_id.clone()));
        done.chunks_added += 1;
    }
    let mut retired_ids = Vec::new();
    // Rows of retired chunk files that a compaction merged: per merged file.
    let mut cuts: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for record in retired {
        let mut any = false;
        for f in &record.files {
            let path = relative(table, &f.path)?;
            if active.contains_key(&path) {
                actions.push(Action::Remove(remove_action(&keys, f, &path, now)));
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
    let properties = CommitProperties::default().with_metadata([
        ("sluice.chunks".to_string(), Value::Array(chunk_ids)),
        ("sluice.retired".to_string(), Value::Array(retired_ids)),
    ]);
    let operation = DeltaOperation::Write {
        mode: SaveMode::Append,
        partition_by: (!keys.is_empty()).then(|| keys.clone()),
        predicate: None,
    };
    let finalized = CommitBuilder::from(properties)
        .with_actions(actions)
        .build(Some(snapshot), log.clone(), operation)
        .await
        .map_err(|e| error(table, e))?;
    done.version = Some(finalized.version);
    tracing::info!(
        table,
        version = finalized.version,
        chunks = done.chunks_added,
        files_added = done.files_added,
        files_removed = done.files_removed,
        "delta commit"
    );
    Ok(done)
}

/// The actions that take the rows of the chunk files `drop` out of the
/// merged file `m`: it is written again without them (unless nothing is
/// left), and the new file replaces it.
async fn cut(
    lake: &Location,
    table: &str,
    m: &ActiveFile,
    drop: &[String],
    now: i64,
) -> Result<Vec<Action>> {
    let parts = m.parts.as_deref().unwrap_or_default();
    let (mut ranges, mut kept, mut at) = (Vec::new(), Vec::new(), 0u64);
    for p in parts {
        if drop.contains(&p.file) {
            ranges.push(at..at + p.rows);
        } else {
            kept.push(p.clone());
        }
        at += p.rows;
    }
    let mut h = <sha2::Sha256 as sha2::Digest>::new();
    sha2::Digest::update(&mut h, m.path.as_bytes());
    for d in drop {
        sha2::Digest::update(&mut h, [0]);
        sha2::Digest::update(&mut h, d.as_bytes());
    }
    let id = hex::encode(&sha2::Digest::finalize(h)[..12]);
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
        write_without_rows(lake, &input, &ranges, &output, &CompactOptions::default()).await?;
    let mut add = merged_add(lake, table, &output, bytes, m.partition.clone(), &kept, now).await?;
    add.data_change = true;
    actions.push(Action::Add(add));
    tracing::info!(table, from = %m.path, to = %output, rows_removed = at - rows, "cut a replaced source's rows out of a merged file");
    Ok(actions)
}

/// The record's partition keys must be the table's, in the table's order.
fn check_keys(table: &str, record: &CommitRecord, keys: &[String]) -> Result<()> {
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
/// are still there to add.
async fn is_new(
    lake: &Location,
    table: &str,
    record: &CommitRecord,
    active: &HashMap<String, i64>,
    tombstones: &HashSet<String>,
) -> Result<bool> {
    let Some(first) = record.files.first() else {
        return Ok(false);
    };
    for f in &record.files {
        let path = relative(table, &f.path)?;
        if active.contains_key(&path) || tombstones.contains(&path) {
            return Ok(false);
        }
    }
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
fn evolve(
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

/// A file's key relative to the table, as the log's (decoded) paths read.
fn relative(table: &str, lake_path: &str) -> Result<String> {
    lake_path
        .strip_prefix(table)
        .and_then(|p| p.strip_prefix('/'))
        .map(str::to_string)
        .ok_or_else(|| {
            Error::Catalog(format!(
                "table '{table}': the file {lake_path} is not inside the table's folder"
            ))
        })
}

fn partition_values(keys: &[String], f: &FileInfo) -> HashMap<String, Option<String>> {
    keys.iter()
        .cloned()
        .zip(f.partition.iter().cloned())
        .collect()
}

/// The `add` of a file a chunk (or a merge) wrote. Its path is the file's
/// key relative to the table as it is on the store (a Hive-escaped value
/// holds `%`): delta-rs percent-encodes action paths as it writes the log
/// and decodes them as it reads, so encoding here would encode twice.
pub fn add_action(table: &str, keys: &[String], f: &FileInfo, now: i64) -> Result<Add> {
    let path = relative(table, &f.path)?;
    Ok(Add {
        path,
        partition_values: partition_values(keys, f),
        size: f.bytes as i64,
        modification_time: now,
        data_change: true,
        stats: f
            .stats
            .as_ref()
            .map(|s| serde_json::to_string(s).expect("stats serialize")),
        tags: None,
        deletion_vector: None,
        base_row_id: None,
        default_row_commit_version: None,
        clustering_provider: None,
    })
}

fn remove_action(keys: &[String], f: &FileInfo, path: &str, now: i64) -> Remove {
    Remove {
        path: path.to_string(),
        data_change: true,
        deletion_timestamp: Some(now),
        extended_file_metadata: Some(true),
        partition_values: Some(partition_values(keys, f)),
        size: Some(f.bytes as i64),
        tags: None,
        deletion_vector: None,
        base_row_id: None,
        default_row_commit_version: None,
    }
}

/// A table's shape and size at one version, for `sluice tables`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableInfo {
    pub version: u64,
    pub files: usize,
    pub rows: u64,
    pub bytes: u64,
    pub partition_columns: Vec<String>,
    /// When the version was committed (milliseconds since the epoch).
    pub committed_at: Option<i64>,
}

/// What `table` holds at its latest version; `None` without a Delta log.
pub async fn info(lake: &Location, table: &str) -> Result<Option<TableInfo>> {
    let Some(t) = open(lake, table, AsOf::Latest).await? else {
        return Ok(None);
    };
    let snapshot = t.snapshot().map_err(|e| error(table, e))?;
    let (mut files, mut rows, mut bytes) = (0, 0u64, 0u64);
    for f in snapshot.log_data().iter() {
        files += 1;
        rows += f.num_records().unwrap_or(0) as u64;
        bytes += f.size() as u64;
    }
    let version = snapshot.version();
    Ok(Some(TableInfo {
        version,
        files,
        rows,
        bytes,
        partition_columns: snapshot.metadata().partition_columns().to_vec(),
        committed_at: snapshot.version_timestamp(version),
    }))
}

/// The Delta tables of a lake: the folders at its top with a `_delta_log/`.
pub async fn tables(lake: &Location) -> Result<Vec<String>> {
    let prefix = (!lake.prefix.as_ref().is_empty()).then_some(&lake.prefix);
    let listing = lake
        .store
        .list_with_delimiter(prefix)
        .await
        .map_err(|e| Error::read(format!("{} (listing)", lake.url), e))?;
    let mut out = Vec::new();
    for dir in listing.common_prefixes {
        let name = lake.relative(&dir);
        if name.starts_with('_') || name.starts_with('.') {
            continue;
        }
        if exists(lake, &name).await? {
            out.push(name);
        }
    }
    out.sort();
    Ok(out)
}

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

/// The tag of an `add` action that lists the chunk files whose rows a
/// merged file holds, in order, with their row counts: what lets a
/// replaced source's rows be cut out of it later.
pub const PARTS_TAG: &str = "sluice.parts";

/// One chunk file's rows inside a merged file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Part {
    /// Path relative to the table.
    pub file: String,
    pub rows: u64,
}

/// A file of the table's latest snapshot.
#[derive(Debug, Clone)]
struct ActiveFile {
    /// Path relative to the table (decoded).
    path: String,
    size: i64,
    modified: i64,
    partition: HashMap<String, Option<String>>,
    /// For a merged file: the chunk files it holds.
    parts: Option<Vec<Part>>,
}

fn active_files(snapshot: &deltalake::table::state::DeltaTableState) -> Vec<ActiveFile> {
    snapshot
        .log_data()
        .iter()
        .map(|f| {
            #[allow(deprecated)]
            let add = f.add_action();
            let parts = add
                .tags
                .as_ref()
                .and_then(|t| t.get(PARTS_TAG).cloned().flatten())
                .and_then(|json| serde_json::from_str(&json).ok());
            ActiveFile {
                path: f.path().into_owned(),
                size: f.size(),
                modified: f.modification_time(),
                partition: add.partition_values,
                parts,
            }
        })
        .collect()
}

/// The folder of a table-relative path (`dt=1/a.parquet` -> `dt=1`).
fn folder_of(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(d, _)| d)
}

/// Statistics of a file the committer wrote, from its footer.
async fn footer_stats(lake: &Location, lake_path: &str, size: u64) -> Result<FileStats> {
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
async fn merged_add(
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

fn compaction_remove(f: &ActiveFile, now: i64) -> Remove {
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
    let mut attempt = 0;
    loop {
        attempt += 1;
        let Some(t) = open(lake, table, AsOf::Latest).await? else {
            return Err(Error::Config(format!(
                "no Delta table '{table}' in {}",
                lake.url
            )));
        };
        match compact_once(lake, table, &t, options, now).await {
            Err(e) if attempt < ATTEMPTS && lost_to_another_writer(&e) => {
                tracing::info!(
                    table,
                    attempt,
                    "another writer committed first: planning the compaction again"
                );
            }
            r => return r,
        }
    }
}

async fn compact_once(
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
            let mut h = <sha2::Sha256 as sha2::Digest>::new();
            for i in &bin.inputs {
                sha2::Digest::update(&mut h, i.path.as_bytes());
                sha2::Digest::update(&mut h, [0]);
                sha2::Digest::update(&mut h, i.size.to_le_bytes());
            }
            let id = hex::encode(&sha2::Digest::finalize(h)[..12]);
            let lake_folder = if folder.is_empty() {
                table.to_string()
            } else {
                format!("{table}/{folder}")
            };
            let output = compaction_output_name(&lake_folder, &id);
            let merged = merge_files(lake, &bin.inputs, &output, options).await?;
            written.push(output.clone());
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
        }
    }
    if actions.is_empty() {
        return Ok(done);
    }
    let operation = DeltaOperation::Optimize {
        predicate: None,
        target_size: options.target_size as i64,
    };
    let committed = CommitBuilder::from(CommitProperties::default())
        .with_actions(actions)
        .build(Some(snapshot), t.log_store(), operation)
        .await;
    match committed {
        Ok(c) => {
            done.version = Some(c.version);
            tracing::info!(
                table,
                version = c.version,
                inputs = done.files_removed,
                outputs = done.files_added,
                "delta compaction committed"
            );
            Ok(done)
        }
        Err(e) => {
            // The outputs never entered the table: remove them (best effort;
            // a rerun writes the same names).
            for o in written {
                if let Ok(p) = lake.child(&o) {
                    let _ = lake.store.delete(&p).await;
                }
            }
            Err(error(table, e))
        }
    }
}

/// Delete the files of `table` that no snapshot younger than `retain` needs
/// (those removed from the table longer ago than that); with `dry_run`, only
/// list them. Files the log never named (a chunk still being written) are
/// left alone. Returns the files (deleted, or that would be).
pub async fn vacuum(
    lake: &Location,
    table: &str,
    retain: std::time::Duration,
    dry_run: bool,
) -> Result<Vec<String>> {
    let Some(t) = open(lake, table, AsOf::Latest).await? else {
        return Err(Error::Config(format!(
            "no Delta table '{table}' in {}",
            lake.url
        )));
    };
    let retain =
        chrono::Duration::from_std(retain).map_err(|e| Error::Config(format!("--retain: {e}")))?;
    let (_, metrics) = t
        .vacuum()
        .with_retention_period(retain)
        // `--retain` is the user's explicit choice, even under the table's
        // own `delta.deletedFileRetentionDuration`.
        .with_enforce_retention_duration(false)
        .with_mode(deltalake::operations::vacuum::VacuumMode::Lite)
        .with_dry_run(dry_run)
        .await
        .map_err(|e| error(table, e))?;
    Ok(metrics.files_deleted)
}

/// Register a Delta table in `catalog` (Glue: as Athena reads Delta tables
/// natively), with every column its chunks in `records` hold; a catalog
/// that has the table already gains only the new columns. No partitions.
pub async fn register(
    catalog: &dyn crate::catalog::Catalog,
    records: &[CommitRecord],
) -> Result<()> {
    let Some(first) = records.first() else {
        return Ok(());
    };
    let mut columns: Vec<ColumnDef> = Vec::new();
    for r in records {
        for c in &r.columns {
            if !columns.iter().any(|o| o.name == c.name) {
                columns.push(c.clone());
            }
        }
    }
    catalog
        .ensure_table(&crate::catalog::delta_table_def(first, columns))
        .await
}
