//! Remembered deletes: a key deleted at a position, kept under
//! `_sluice/cdc-deleted/<table>/` for `remember_deletes`, so an older upsert
//! cannot bring the row back.

use crate::config::{CDC_POSITION, Cdc, Table};
use crate::error::{Error, Result};
use crate::layout::CDC_DELETED_DIR;
use crate::store::Location;
use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use chrono::Utc;
use futures::TryStreamExt;
use object_store::ObjectStoreExt as _;
use std::collections::HashMap;
use std::sync::Arc;

use super::files::{project, read_file};
use super::keys::{Keys, positions};

/// The remembered deletes of `table` of the batch's keys (`wanted`): per
/// key, the newest delete's position. Only the batch's keys are kept, so
/// memory follows the batch, not every delete the table remembers. Files
/// older than `remember_deletes` are forgotten (deleted).
pub(super) async fn remembered_deletes(
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
    let schema = key_schema(cdc, &staged)?;
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

/// The key columns and the position of `staged`: what a remembered delete
/// holds, and what the merge's first pass reads of a table file.
pub(super) fn key_schema(cdc: &Cdc, staged: &SchemaRef) -> Result<SchemaRef> {
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
pub(super) async fn remember(
    lake: &Location,
    table: &Table,
    cdc: &Cdc,
    gone: &RecordBatch,
    id: &str,
) -> Result<()> {
    let (parquet, table) = (&table.parquet, table.name.as_str());
    let schema = key_schema(cdc, &gone.schema())?;
    let batch = project(table, gone, &schema)?;
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
