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

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch, UInt32Array};
use arrow::compute::{concat_batches, filter_record_batch, take_record_batch};
use arrow::datatypes::{DataType, Int32Type, Int64Type, SchemaRef};
use arrow::row::{RowConverter, SortField};
use chrono::Utc;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::kernel::{Action, Remove};
use deltalake::protocol::DeltaOperation;
use futures::TryStreamExt;
use object_store::ObjectStoreExt as _;
use parquet::arrow::async_reader::ParquetRecordBatchStreamBuilder;
use serde_json::Value;
use sha2::Digest;

use crate::commit::{CommitRecord, column_defs};
use crate::config::{CDC_OP, CDC_POSITION, Cdc, Table, arrow_schema};
use crate::error::{Error, Result};
use crate::layout::CDC_DELETED_DIR;
use crate::read::parquet_io::ObjectReader;
use crate::store::Location;
use crate::write::ChunkWriter;

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

/// The staged changes of `records`, in one batch. A chunk whose files are
/// gone was applied before (its files are removed once applied).
async fn read_staged(
    lake: &Location,
    table: &str,
    schema: &SchemaRef,
    records: &[CommitRecord],
) -> Result<RecordBatch> {
    let mut batches = Vec::new();
    for r in records {
        for f in &r.files {
            let path = lake.child(&f.path)?;
            match read_file(lake, &path, f.bytes, schema).await {
                Ok(b) => batches.extend(b),
                Err(Error::Read { .. }) if lake.store.head(&path).await.is_err() => {
                    tracing::warn!(
                        table,
                        chunk = %r.chunk_id,
                        file = %lake.url_of(&path),
                        "the chunk's staged changes are gone (applied before): skipped"
                    );
                }
                Err(e) => return Err(e),
            }
        }
    }
    concat_batches(schema, &batches).map_err(|e| Error::transform(table, e))
}

/// Every row of a Parquet file, as `schema` (columns by name).
async fn read_file(
    lake: &Location,
    path: &object_store::path::Path,
    size: u64,
    schema: &SchemaRef,
) -> Result<Vec<RecordBatch>> {
    file_batches(lake, path, size, schema)
        .await?
        .try_collect()
        .await
}

/// The rows of a Parquet file, a batch at a time, as `schema`: only the
/// file's columns `schema` names are read (columns by name).
async fn file_batches(
    lake: &Location,
    path: &object_store::path::Path,
    size: u64,
    schema: &SchemaRef,
) -> Result<impl futures::Stream<Item = Result<RecordBatch>> + use<>> {
    let url = lake.url_of(path);
    let reader = ObjectReader::at(lake.store.clone(), path.clone(), size);
    let builder = ParquetRecordBatchStreamBuilder::new(reader)
        .await
        .map_err(|e| Error::read(&url, e))?;
    let parquet = builder.parquet_schema();
    let roots = (0..parquet.root_schema().get_fields().len())
        .filter(|&i| {
            schema
                .field_with_name(parquet.root_schema().get_fields()[i].name())
                .is_ok()
        })
        .collect::<Vec<_>>();
    let mask = parquet::arrow::ProjectionMask::roots(parquet, roots);
    let stream = builder
        .with_projection(mask)
        .build()
        .map_err(|e| Error::read(&url, e))?;
    let schema = schema.clone();
    Ok(stream.map_err(move |e| Error::read(&url, e)).and_then({
        let url = lake.url_of(path);
        move |b| {
            let columns = schema
                .fields()
                .iter()
                .map(|f| {
                    let c = b.column_by_name(f.name()).ok_or_else(|| {
                        Error::read(&url, format!("the file has no column '{}'", f.name()))
                    })?;
                    arrow::compute::cast(c, f.data_type()).map_err(|e| Error::read(&url, e))
                })
                .collect::<Result<Vec<ArrayRef>>>();
            let batch = columns.and_then(|c| {
                RecordBatch::try_new(schema.clone(), c).map_err(|e| Error::read(&url, e))
            });
            futures::future::ready(batch)
        }
    }))
}

/// Encodes key columns as bytes that compare equal when the keys are.
struct Keys {
    names: Vec<String>,
    converter: RowConverter,
}

impl Keys {
    fn new(cdc: &Cdc, schema: &SchemaRef) -> Result<Keys> {
        let fields = cdc
            .key
            .iter()
            .map(|k| {
                let f = schema
                    .field_with_name(k)
                    .map_err(|e| Error::Config(e.to_string()))?;
                Ok(SortField::new(f.data_type().clone()))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Keys {
            names: cdc.key.clone(),
            converter: RowConverter::new(fields).map_err(|e| Error::Config(e.to_string()))?,
        })
    }

    fn of(&self, batch: &RecordBatch) -> Result<Vec<Box<[u8]>>> {
        let columns = self
            .names
            .iter()
            .map(|k| {
                batch
                    .column_by_name(k)
                    .cloned()
                    .ok_or_else(|| Error::Config(format!("no key column '{k}'")))
            })
            .collect::<Result<Vec<_>>>()?;
        let rows = self
            .converter
            .convert_columns(&columns)
            .map_err(|e| Error::Config(e.to_string()))?;
        Ok(rows.iter().map(|r| r.as_ref().into()).collect())
    }
}

fn positions(batch: &RecordBatch) -> &arrow::array::StringArray {
    batch
        .column_by_name(CDC_POSITION)
        .expect("staged and table files have positions")
        .as_string::<i32>()
}

/// A bound of the first key column, as file statistics give it.
#[derive(Debug, Clone, PartialEq, PartialOrd)]
enum Bound {
    Int(i64),
    Text(String),
}

fn bound_of(a: &dyn Array, i: usize) -> Option<Bound> {
    match a.data_type() {
        DataType::Int64 => Some(Bound::Int(a.as_primitive::<Int64Type>().value(i))),
        DataType::Int32 => Some(Bound::Int(a.as_primitive::<Int32Type>().value(i) as i64)),
        DataType::Utf8 => Some(Bound::Text(a.as_string::<i32>().value(i).to_string())),
        _ => None,
    }
}

fn bound_json(v: &Value, like: &Bound) -> Option<Bound> {
    match like {
        Bound::Int(_) => v.as_i64().map(Bound::Int),
        Bound::Text(_) => v.as_str().map(|s| Bound::Text(s.to_string())),
    }
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
    // Each key's newest change.
    let change_keys = keys.of(changes)?;
    let change_pos = positions(changes);
    let mut latest: HashMap<&[u8], usize> = HashMap::new();
    for (i, k) in change_keys.iter().enumerate() {
        match latest.entry(k) {
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(i);
            }
            std::collections::hash_map::Entry::Occupied(mut e) => {
                if change_pos.value(i) >= change_pos.value(*e.get()) {
                    e.insert(i);
                }
            }
        }
    }
    done.latest = latest.len() as u64;
    // Deletes remembered: a change older than its key's delete is stale.
    // The delete itself (same position) still applies: it is remembered
    // before its commit, and a batch retried after a failed commit must
    // still remove the row.
    let deleted = remembered_deletes(lake, name, cdc, &keys, changes.schema(), &latest).await?;
    latest.retain(|k, i| {
        let keep = deleted
            .get(*k)
            .is_none_or(|p| change_pos.value(*i) >= p.as_str());
        done.stale += u64::from(!keep);
        keep
    });
    let table_schema = arrow_schema(&cdc.table_columns());
    let t = match crate::delta::open(lake, name, crate::delta::AsOf::Latest).await? {
        Some(t) => t,
        None => {
            let columns = column_defs(name, &table_schema)?;
            crate::delta::create_table(lake, name, &columns, &[]).await?
        }
    };
    let snapshot = t.snapshot().map_err(|e| crate::delta::error(name, e))?;
    let version = snapshot.version() as u64;
    // The files whose first-key range meets the batch's.
    let key0 = changes
        .column_by_name(&cdc.key[0])
        .expect("staged changes have their key");
    let mut range: Option<(Bound, Bound)> = None;
    for &i in latest.values() {
        if let Some(b) = bound_of(key0.as_ref(), i) {
            range = Some(match range {
                None => (b.clone(), b),
                Some((lo, hi)) => (
                    if b < lo { b.clone() } else { lo },
                    if b > hi { b } else { hi },
                ),
            });
        }
    }
    let mut candidates = Vec::new();
    for f in snapshot.log_data().iter() {
        #[allow(deprecated)]
        let add = f.add_action();
        let stats = add
            .stats
            .as_deref()
            .and_then(|s| serde_json::from_str::<crate::stats::FileStats>(s).ok());
        let overlaps = match (&range, stats) {
            (Some((lo, hi)), Some(stats)) => {
                let min = stats
                    .min_values
                    .get(&cdc.key[0])
                    .and_then(|v| bound_json(v, lo));
                let max = stats
                    .max_values
                    .get(&cdc.key[0])
                    .and_then(|v| bound_json(v, lo));
                match (min, max) {
                    (Some(min), Some(max)) => !(max < *lo || min > *hi),
                    _ => true,
                }
            }
            _ => true,
        };
        if overlaps && !latest.is_empty() {
            candidates.push((f.path().into_owned(), f.size(), add));
        }
    }
    let mut chunk_ids: Vec<&str> = records.iter().map(|r| r.chunk_id.as_str()).collect();
    chunk_ids.sort_unstable();
    let id = {
        let mut h = sha2::Sha256::new();
        h.update(version.to_string());
        for c in &chunk_ids {
            h.update(c.as_bytes());
        }
        format!("u{}", &hex::encode(h.finalize())[..24])
    };
    // Does a newer change replace (or delete) the row with key `k` at
    // position `pos`? Its key is then one the table holds.
    let replaces = |k: &[u8], pos: &str| -> Option<(&[u8], bool)> {
        latest
            .get_key_value(k)
            .map(|(key, &i)| (*key, change_pos.value(i) > pos))
    };
    // First pass, over the key and position columns only: which files hold
    // a row the batch replaces; which changes are no newer than their row.
    let key_schema = Arc::new(arrow::datatypes::Schema::new(
        table_schema
            .fields()
            .iter()
            .filter(|f| cdc.key.contains(f.name()) || f.name() == CDC_POSITION)
            .cloned()
            .collect::<Vec<_>>(),
    ));
    let mut stale: Vec<&[u8]> = Vec::new();
    // Keys of the batch the table holds a row of.
    let mut found: std::collections::HashSet<&[u8]> = std::collections::HashSet::new();
    let mut touched = Vec::new();
    for (path, size, add) in &candidates {
        done.files_read += 1;
        let lake_path = lake.child(&format!("{name}/{path}"))?;
        let mut batches =
            std::pin::pin!(file_batches(lake, &lake_path, *size as u64, &key_schema).await?);
        let mut replaced_any = false;
        while let Some(b) = batches.try_next().await? {
            let row_keys = keys.of(&b)?;
            let row_pos = positions(&b);
            for (r, k) in row_keys.iter().enumerate() {
                if let Some((key, replaced)) = replaces(k, row_pos.value(r)) {
                    found.insert(key);
                    if !replaced {
                        stale.push(key);
                    }
                    replaced_any |= replaced;
                }
            }
        }
        if replaced_any {
            touched.push((lake_path, *size, add));
        }
    }
    // Second pass: each touched file is written again without the rows the
    // batch replaces, a batch of rows at a time through one writer, so
    // memory holds a batch, not a file.
    let mut writer = ChunkWriter::new(lake, name, &id, &[], table_schema.clone(), &table.parquet);
    let mut removes = Vec::new();
    for (lake_path, size, add) in touched {
        let mut batches =
            std::pin::pin!(file_batches(lake, &lake_path, size as u64, &table_schema).await?);
        while let Some(b) = batches.try_next().await? {
            let row_keys = keys.of(&b)?;
            let row_pos = positions(&b);
            let keep: BooleanArray = row_keys
                .iter()
                .enumerate()
                .map(|(r, k)| Some(!replaces(k, row_pos.value(r)).is_some_and(|(_, x)| x)))
                .collect();
            let kept = filter_record_batch(&b, &keep).map_err(|e| Error::transform(name, e))?;
            write_rows(&mut writer, kept).await?;
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
    let ops = changes
        .column_by_name(CDC_OP)
        .expect("staged changes have their operation")
        .as_string::<i32>();
    // A delete of a key the table does not hold, already remembered at its
    // position (or later), was applied before: nothing to do again.
    for (k, &i) in &latest {
        if ops.value(i) == "d"
            && !found.contains(k)
            && deleted
                .get(*k)
                .is_some_and(|p| p.as_str() >= change_pos.value(i))
        {
            stale.push(k);
        }
    }
    done.stale += stale.len() as u64;
    for k in stale {
        latest.remove(k);
    }
    let mut upserts: Vec<u32> = Vec::new();
    let mut deletes: Vec<u32> = Vec::new();
    let mut order: Vec<usize> = latest.values().copied().collect();
    order.sort_unstable();
    for i in order {
        if ops.value(i) == "d" {
            deletes.push(i as u32);
        } else {
            upserts.push(i as u32);
        }
    }
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
        let columns = table_schema
            .fields()
            .iter()
            .map(|f| {
                rows.column_by_name(f.name())
                    .cloned()
                    .expect("staged columns")
            })
            .collect();
        let rows = RecordBatch::try_new(table_schema.clone(), columns)
            .map_err(|e| Error::transform(name, e))?;
        write_rows(&mut writer, rows).await?;
    }
    let files = writer.finish().await?;
    let now = Utc::now().timestamp_millis();
    let mut actions = removes;
    done.files_removed = actions.len();
    for f in &files {
        actions.push(Action::Add(crate::delta::add_action(name, &[], f, now)?));
    }
    done.files_added = files.len();
    let properties = CommitProperties::default().with_metadata([
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
    ]);
    let operation = DeltaOperation::Merge {
        predicate: None,
        merge_predicate: Some(format!("key({})", cdc.key.join(", "))),
        matched_predicates: Vec::new(),
        not_matched_predicates: Vec::new(),
        not_matched_by_source_predicates: Vec::new(),
    };
    let finalized = CommitBuilder::from(properties)
        .with_actions(actions)
        .build(Some(snapshot), t.log_store(), operation)
        .await
        .map_err(|e| crate::delta::error(name, e))?;
    done.version = Some(finalized.version);
    tracing::info!(
        table = name,
        version = finalized.version,
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

/// Write `rows` (of a table without partitions) through `writer`.
async fn write_rows(writer: &mut ChunkWriter, rows: RecordBatch) -> Result<()> {
    if rows.num_rows() == 0 {
        return Ok(());
    }
    writer.sample(&rows);
    writer
        .write(crate::partition::PartitionSlice {
            values: Vec::new(),
            batch: rows,
        })
        .await?;
    writer.end_batch().await
}

/// The remembered deletes of `table` of the batch's keys (`wanted`): per
/// key, the newest delete's position. Only the batch's keys are kept, so
/// memory follows the batch, not every delete the table remembers. Files
/// older than `remember_deletes` are forgotten (deleted).
async fn remembered_deletes(
    lake: &Location,
    table: &str,
    cdc: &Cdc,
    keys: &Keys,
    staged: SchemaRef,
    wanted: &HashMap<&[u8], usize>,
) -> Result<HashMap<Box<[u8]>, String>> {
    let dir = lake.child(&format!("{CDC_DELETED_DIR}/{table}"))?;
    let listed: Vec<object_store::ObjectMeta> = lake
        .store
        .list(Some(&dir))
        .try_collect()
        .await
        .map_err(|e| Error::read(lake.url_of(&dir), e))?;
    let schema = deleted_schema(cdc, &staged)?;
    let cutoff = Utc::now() - chrono::Duration::from_std(cdc.remember_deletes).unwrap_or_default();
    let mut out: HashMap<Box<[u8]>, String> = HashMap::new();
    for meta in listed {
        if meta.last_modified < cutoff {
            let _ = lake.store.delete(&meta.location).await;
            continue;
        }
        for b in read_file(lake, &meta.location, meta.size, &schema).await? {
            let pos = positions(&b);
            for (i, k) in keys.of(&b)?.into_iter().enumerate() {
                if !wanted.contains_key(&*k) {
                    continue;
                }
                let p = pos.value(i);
                match out.get_mut(&k) {
                    Some(old) if old.as_str() >= p => {}
                    Some(old) => *old = p.to_string(),
                    None => {
                        out.insert(k, p.to_string());
                    }
                }
            }
        }
    }
    Ok(out)
}

fn deleted_schema(cdc: &Cdc, staged: &SchemaRef) -> Result<SchemaRef> {
    let mut names: Vec<&str> = cdc.key.iter().map(String::as_str).collect();
    names.push(CDC_POSITION);
    let indices = names
        .iter()
        .map(|n| staged.index_of(n).map_err(|e| Error::Config(e.to_string())))
        .collect::<Result<Vec<_>>>()?;
    Ok(Arc::new(
        staged
            .project(&indices)
            .map_err(|e| Error::Config(e.to_string()))?,
    ))
}

/// Remember the deletes of `gone` (staged rows) in a file of their own.
async fn remember(
    lake: &Location,
    table: &Table,
    cdc: &Cdc,
    gone: &RecordBatch,
    id: &str,
) -> Result<()> {
    let (parquet, table) = (&table.parquet, table.name.as_str());
    let schema = deleted_schema(cdc, &gone.schema())?;
    let columns = schema
        .fields()
        .iter()
        .map(|f| gone.column_by_name(f.name()).cloned().expect("projected"))
        .collect();
    let batch =
        RecordBatch::try_new(schema.clone(), columns).map_err(|e| Error::transform(table, e))?;
    let relative = format!("{CDC_DELETED_DIR}/{table}/{id}.parquet");
    let path = lake.child(&relative)?;
    let mut buf = Vec::new();
    {
        let mut w = parquet::arrow::ArrowWriter::try_new(
            &mut buf,
            schema,
            Some(crate::write::writer_properties(parquet)),
        )
        .map_err(|e| Error::write(&relative, e))?;
        w.write(&batch).map_err(|e| Error::write(&relative, e))?;
        w.close().map_err(|e| Error::write(&relative, e))?;
    }
    lake.store
        .put(&path, object_store::PutPayload::from(buf))
        .await
        .map_err(|e| Error::write(lake.url_of(&path), e))?;
    Ok(())
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
