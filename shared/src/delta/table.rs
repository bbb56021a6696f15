//! A Delta table: opening it (latest, or as of a version or a time), creating
//! it, its files and their actions, and what it holds.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::{Field, Schema};
use chrono::{DateTime, Utc};
use deltalake::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake::kernel::transaction::{CommitProperties, TransactionError};
use deltalake::kernel::{Add, Remove, StructType};
use deltalake::logstore::{LogStoreRef, StorageConfig, default_logstore};
use deltalake::operations::create::CreateBuilder;
use deltalake::protocol::SaveMode;
use deltalake::{DeltaTable, DeltaTableError, TableProperty};
use futures::StreamExt;
use object_store::prefix::PrefixStore;

use crate::commit::{ColumnDef, CommitRecord, FileInfo, arrow_type};
use crate::error::{Error, Result};
use crate::store::Location;

/// A checkpoint every this many commits, so opening a table reads one
/// checkpoint and at most this many JSON entries.
pub const CHECKPOINT_INTERVAL: u32 = 10;

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

/// Run `attempt` (each planned from a freshly read snapshot) again while
/// another writer's commit gets there first, under
/// [`crate::retry::Policy::CONFLICT`]; `work` names it in the log.
pub async fn replanning<T, F, Fut>(table: &str, work: &str, attempt: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let (outcome, attempts) = crate::retry::Policy::CONFLICT
        .run(table, lost_to_another_writer, attempt)
        .await;
    if attempts > 1 {
        tracing::info!(
            table,
            work,
            attempts,
            "another writer committed first: planned again"
        );
    }
    outcome
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
pub(super) async fn create(lake: &Location, record: &CommitRecord) -> Result<DeltaTable> {
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

/// A file's key relative to the table, as the log's (decoded) paths read.
pub(super) fn relative(table: &str, lake_path: &str) -> Result<String> {
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

pub(super) fn partition_values(keys: &[String], f: &FileInfo) -> HashMap<String, Option<String>> {
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

pub(super) fn remove_action(keys: &[String], f: &FileInfo, path: &str, now: i64) -> Remove {
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

/// The tag of an `add` action that lists the chunk files whose rows a
/// merged file holds, in order, with their row counts: what lets a
/// replaced source's rows be cut out of it later.
pub const PARTS_TAG: &str = "sluice.parts";

/// One chunk file's rows inside a merged file (its `file`: the path
/// relative to the table), as a Hive partition's compaction intents
/// record them too.
pub use crate::compact::PartRows as Part;

/// A file of the table's latest snapshot.
#[derive(Debug, Clone)]
pub(super) struct ActiveFile {
    /// Path relative to the table (decoded).
    pub(super) path: String,
    pub(super) size: i64,
    pub(super) modified: i64,
    pub(super) partition: HashMap<String, Option<String>>,
    /// For a merged file: the chunk files it holds.
    pub(super) parts: Option<Vec<Part>>,
}

pub(super) fn active_files(snapshot: &deltalake::table::state::DeltaTableState) -> Vec<ActiveFile> {
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
pub(super) fn folder_of(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(d, _)| d)
}
