//! Keys and positions: each key's newest change, and which table files
//! their first key's statistics say may hold them.

use crate::config::{CDC_POSITION, Cdc};
use crate::error::{Error, Result};
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Int32Type, Int64Type, SchemaRef};
use arrow::row::{RowConverter, SortField};
use serde_json::Value;
use std::collections::HashMap;

/// Encodes key columns as bytes that compare equal when the keys are.
pub(super) struct Keys {
    names: Vec<String>,
    converter: RowConverter,
}

impl Keys {
    pub(super) fn new(cdc: &Cdc, schema: &SchemaRef) -> Result<Keys> {
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

    pub(super) fn of(&self, batch: &RecordBatch) -> Result<Vec<Box<[u8]>>> {
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

pub(super) fn positions(batch: &RecordBatch) -> &arrow::array::StringArray {
    batch
        .column_by_name(CDC_POSITION)
        .expect("staged and table files have positions")
        .as_string::<i32>()
}

/// A bound of the first key column, as file statistics give it.
#[derive(Debug, Clone, PartialEq, PartialOrd)]
pub(super) enum Bound {
    Int(i64),
    Text(String),
}

pub(super) fn bound_of(a: &dyn Array, i: usize) -> Option<Bound> {
    match a.data_type() {
        DataType::Int64 => Some(Bound::Int(a.as_primitive::<Int64Type>().value(i))),
        DataType::Int32 => Some(Bound::Int(a.as_primitive::<Int32Type>().value(i) as i64)),
        DataType::Utf8 => Some(Bound::Text(a.as_string::<i32>().value(i).to_string())),
        _ => None,
    }
}

pub(super) fn bound_json(v: &Value, like: &Bound) -> Option<Bound> {
    match like {
        Bound::Int(_) => v.as_i64().map(Bound::Int),
        Bound::Text(_) => v.as_str().map(|s| Bound::Text(s.to_string())),
    }
}

/// Each key's newest change of a batch: key bytes to the change's row.
pub(super) struct Latest<'a> {
    pub(super) rows: HashMap<&'a [u8], usize>,
    pub(super) positions: &'a arrow::array::StringArray,
}

impl<'a> Latest<'a> {
    /// The newest change of each key in `keys` (a change's row `i` has key
    /// `keys[i]` and position `positions[i]`; of equal positions, the later
    /// row wins).
    pub(super) fn of(
        keys: &'a [Box<[u8]>],
        positions: &'a arrow::array::StringArray,
    ) -> Latest<'a> {
        let mut rows: HashMap<&[u8], usize> = HashMap::new();
        for (i, k) in keys.iter().enumerate() {
            match rows.entry(k) {
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(i);
                }
                std::collections::hash_map::Entry::Occupied(mut e) => {
                    if positions.value(i) >= positions.value(*e.get()) {
                        e.insert(i);
                    }
                }
            }
        }
        Latest { rows, positions }
    }

    /// Deletes of keys the table does not hold (not in `found`) that are
    /// already remembered at their position or later: applied before,
    /// nothing to do again.
    pub(super) fn applied_deletes(
        &self,
        ops: &arrow::array::StringArray,
        found: &std::collections::HashSet<&[u8]>,
        deleted: &HashMap<Box<[u8]>, String>,
    ) -> Vec<&'a [u8]> {
        self.rows
            .iter()
            .filter(|&(k, &i)| {
                ops.value(i) == "d"
                    && !found.contains(k)
                    && deleted
                        .get(*k)
                        .is_some_and(|p| p.as_str() >= self.positions.value(i))
            })
            .map(|(k, _)| *k)
            .collect()
    }

    /// Does a newer change replace (or delete) the row with key `k` at
    /// position `pos`? `None` when the batch has no change of `k`; else
    /// the batch's own key bytes and whether its change is newer.
    pub(super) fn replaces(&self, k: &[u8], pos: &str) -> Option<(&'a [u8], bool)> {
        self.rows
            .get_key_value(k)
            .map(|(key, &i)| (*key, self.positions.value(i) > pos))
    }

    /// The range of the first key column (`key0`, a column of the changes)
    /// over the batch's newest changes, where its type has statistics.
    pub(super) fn key_range(&self, key0: &dyn Array) -> Option<(Bound, Bound)> {
        let mut range: Option<(Bound, Bound)> = None;
        for &i in self.rows.values() {
            if let Some(b) = bound_of(key0, i) {
                range = Some(match range {
                    None => (b.clone(), b),
                    Some((lo, hi)) => (
                        if b < lo { b.clone() } else { lo },
                        if b > hi { b } else { hi },
                    ),
                });
            }
        }
        range
    }
}

/// A table file the merge may read: its path in the table, size and action.
pub(super) type Candidate = (String, i64, deltalake::kernel::Add);

/// The table's files whose first-key statistics meet `range` (every file
/// when statistics or the range are missing).
pub(super) fn overlapping_files(
    snapshot: &deltalake::table::state::DeltaTableState,
    key0: &str,
    range: Option<&(Bound, Bound)>,
) -> Vec<Candidate> {
    let mut out = Vec::new();
    for f in snapshot.log_data().iter() {
        #[allow(deprecated)]
        let add = f.add_action();
        let stats = add
            .stats
            .as_deref()
            .and_then(|s| serde_json::from_str::<crate::stats::FileStats>(s).ok());
        let overlaps = match (range, stats) {
            (Some((lo, hi)), Some(stats)) => {
                let min = stats.min_values.get(key0).and_then(|v| bound_json(v, lo));
                let max = stats.max_values.get(key0).and_then(|v| bound_json(v, lo));
                match (min, max) {
                    (Some(min), Some(max)) => !(max < *lo || min > *hi),
                    _ => true,
                }
            }
            _ => true,
        };
        if overlaps {
            out.push((f.path().into_owned(), f.size(), add));
        }
    }
    out
}
