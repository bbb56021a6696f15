//! Splitting batches by partition values, and the one constructor of Hive
//! partition paths. Values are escaped as Hive escapes them, so no value
//! (`/`, `..`, `=`, `%`, control characters) can choose where a file goes.

use std::collections::HashMap;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, UInt32Array};
use arrow::compute::{cast, take, take_record_batch};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::row::{RowConverter, SortField};

use crate::error::{Error, Result};

/// Hive's name for the partition of null (and empty) values.
pub const HIVE_DEFAULT_PARTITION: &str = "__HIVE_DEFAULT_PARTITION__";

/// Escape a partition value as Hive does (`FileUtils.escapePathName`):
/// control characters and `"#%'*/:=?\{[]^` and DEL become `%XX`.
/// Null or empty is [`HIVE_DEFAULT_PARTITION`]; the text
/// `__HIVE_DEFAULT_PARTITION__` itself has its first `_` escaped (`%5F`), so
/// that it does not come back as null (found by the `partition_values` fuzz
/// target's property).
pub fn escape_value(value: Option<&str>) -> String {
    let Some(v) = value.filter(|v| !v.is_empty()) else {
        return HIVE_DEFAULT_PARTITION.to_string();
    };
    if v == HIVE_DEFAULT_PARTITION {
        return format!("%5F{}", &v[1..]);
    }
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        let needs = (c as u32) < 0x20
            || c == '\u{7f}'
            || matches!(
                c,
                '"' | '#' | '%' | '\'' | '*' | '/' | ':' | '=' | '?' | '\\' | '{' | '[' | ']' | '^'
            );
        if needs {
            out.push_str(&format!("%{:02X}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// Undo [`escape_value`]: `%XX` back to the byte; [`HIVE_DEFAULT_PARTITION`] is null.
pub fn unescape_value(escaped: &str) -> Option<String> {
    if escaped == HIVE_DEFAULT_PARTITION {
        return None;
    }
    let bytes = escaped.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && bytes[i + 1].is_ascii_hexdigit()
            && bytes[i + 2].is_ascii_hexdigit()
        {
            let hex = |b: u8| (b as char).to_digit(16).unwrap_or(0) as u8;
            out.push(hex(bytes[i + 1]) * 16 + hex(bytes[i + 2]));
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// The Hive path of a partition, `k1=v1/k2=v2`, with every value escaped.
/// This is the only way partition paths are built.
pub fn partition_path(keys: &[String], values: &[Option<String>]) -> String {
    keys.iter()
        .zip(values)
        .map(|(k, v)| format!("{k}={}", escape_value(v.as_deref())))
        .collect::<Vec<_>>()
        .join("/")
}

/// Parse `k1=v1/k2=v2` back into values.
pub fn parse_partition_path(path: &str) -> Vec<(String, Option<String>)> {
    path.split('/')
        .filter_map(|seg| seg.split_once('='))
        .map(|(k, v)| (k.to_string(), unescape_value(v)))
        .collect()
}

/// One partition's rows of a batch.
#[derive(Debug)]
pub struct PartitionSlice {
    /// Values of the partition columns, as text (null is `None`).
    pub values: Vec<Option<String>>,
    /// The rows, without the partition columns.
    pub batch: RecordBatch,
}

/// The longest escaped partition value: longer ones would make object keys
/// past what S3 (1,024 bytes) and file systems (255 bytes a name) take.
pub const MAX_PARTITION_VALUE_BYTES: usize = 200;

/// Rows whose partition value cannot be a path segment, with the reason.
#[derive(Debug)]
pub struct RefusedSlice {
    pub reason: String,
    /// The rows, partition columns included.
    pub batch: RecordBatch,
}

/// A batch split by partition: the slices to write, and rows refused.
#[derive(Debug, Default)]
pub struct Split {
    pub slices: Vec<PartitionSlice>,
    pub refused: Vec<RefusedSlice>,
}

/// Splits batches by the values of the partition columns.
pub struct Splitter {
    keys: Vec<String>,
    key_indices: Vec<usize>,
    data_indices: Vec<usize>,
    data_schema: SchemaRef,
    converter: Option<RowConverter>,
}

impl Splitter {
    /// A splitter for batches of `schema`, partitioned by `keys`.
    pub fn new(schema: &SchemaRef, keys: &[String]) -> Result<Self> {
        let mut key_indices = Vec::new();
        for k in keys {
            key_indices.push(schema.index_of(k).map_err(|_| {
                Error::Partition(format!("partition column '{k}' is not in the data"))
            })?);
        }
        let data_indices: Vec<usize> = (0..schema.fields().len())
            .filter(|i| !key_indices.contains(i))
            .collect();
        let data_schema = std::sync::Arc::new(
            schema
                .project(&data_indices)
                .map_err(|e| Error::Partition(e.to_string()))?,
        );
        let converter = if keys.is_empty() {
            None
        } else {
            Some(
                RowConverter::new(
                    key_indices
                        .iter()
                        .map(|&i| SortField::new(schema.field(i).data_type().clone()))
                        .collect(),
                )
                .map_err(|e| Error::Partition(e.to_string()))?,
            )
        };
        Ok(Splitter {
            keys: keys.to_vec(),
            key_indices,
            data_indices,
            data_schema,
            converter,
        })
    }

    /// The schema of the data files (the partition columns removed).
    pub fn data_schema(&self) -> &SchemaRef {
        &self.data_schema
    }

    /// The partition column names.
    pub fn keys(&self) -> &[String] {
        &self.keys
    }

    /// Split a batch into one slice per partition, in order of first
    /// appearance; rows whose escaped partition value is longer than
    /// [`MAX_PARTITION_VALUE_BYTES`] are refused (they would fail the write).
    pub fn split_checked(&self, batch: &RecordBatch) -> Result<Split> {
        let mut out = Split::default();
        for slice in self.split_rows(batch)? {
            let long = self.keys.iter().zip(&slice.values).find_map(|(k, v)| {
                let n = escape_value(v.as_deref()).len();
                (n > MAX_PARTITION_VALUE_BYTES).then(|| {
                    format!(
                        "partition value of '{k}' is {n} bytes escaped, longer than the limit of {MAX_PARTITION_VALUE_BYTES}"
                    )
                })
            });
            match long {
                None => out.slices.push(PartitionSlice {
                    values: slice.values,
                    batch: slice
                        .batch
                        .project(&self.data_indices)
                        .map_err(|e| Error::Partition(e.to_string()))?,
                }),
                Some(reason) => out.refused.push(RefusedSlice {
                    reason,
                    batch: slice.batch,
                }),
            }
        }
        Ok(out)
    }

    /// Split a batch into one slice per partition, in order of first appearance.
    pub fn split(&self, batch: &RecordBatch) -> Result<Vec<PartitionSlice>> {
        let data_indices = &self.data_indices;
        self.split_rows(batch)?
            .into_iter()
            .map(|s| {
                Ok(PartitionSlice {
                    values: s.values,
                    batch: s
                        .batch
                        .project(data_indices)
                        .map_err(|e| Error::Partition(e.to_string()))?,
                })
            })
            .collect()
    }

    /// Group rows by partition values; the slices keep every column.
    fn split_rows(&self, batch: &RecordBatch) -> Result<Vec<PartitionSlice>> {
        let err = |e: arrow::error::ArrowError| Error::Partition(e.to_string());
        let data = batch;
        let Some(converter) = &self.converter else {
            return Ok(vec![PartitionSlice {
                values: Vec::new(),
                batch: data.clone(),
            }]);
        };
        if batch.num_rows() == 0 {
            return Ok(Vec::new());
        }
        let key_cols: Vec<ArrayRef> = self
            .key_indices
            .iter()
            .map(|&i| batch.column(i).clone())
            .collect();
        let rows = converter.convert_columns(&key_cols).map_err(err)?;
        // SipHash took 1.3% of a plain job's time here; the keys are the
        // batch's own values, not an attacker's choice of a long-lived table.
        let mut groups: HashMap<&[u8], usize, foldhash::fast::FixedState> = HashMap::default();
        let mut indices: Vec<Vec<u32>> = Vec::new();
        for i in 0..rows.num_rows() {
            let key = rows.row(i);
            let g = *groups.entry(key.data()).or_insert_with(|| {
                indices.push(Vec::new());
                indices.len() - 1
            });
            indices[g].push(i as u32);
        }
        // The values as text, cast from each group's first row only: casting
        // whole key columns (a timestamp per row) cost more than the split.
        let firsts = UInt32Array::from_iter_values(indices.iter().map(|idx| idx[0]));
        let texts: Vec<ArrayRef> = key_cols
            .iter()
            .map(|c| cast(&take(c, &firsts, None)?, &DataType::Utf8))
            .collect::<std::result::Result<_, _>>()
            .map_err(err)?;
        let mut out = Vec::with_capacity(indices.len());
        for (g, idx) in indices.into_iter().enumerate() {
            let values = texts
                .iter()
                .map(|t| {
                    let s = t.as_string::<i32>();
                    (!s.is_null(g)).then(|| s.value(g).to_string())
                })
                .collect();
            let batch = if idx.len() == data.num_rows() {
                data.clone()
            } else {
                take_record_batch(data, &UInt32Array::from(idx)).map_err(err)?
            };
            out.push(PartitionSlice { values, batch });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int32Array, StringArray};
    use arrow::datatypes::{Field, Schema};
    use std::sync::Arc;

    #[test]
    fn escaping_keeps_values_in_their_place() {
        let cases = [
            (Some("click"), "click"),
            (Some("a/b"), "a%2Fb"),
            (Some("../../etc"), "..%2F..%2Fetc"),
            (Some(".."), ".."),
            (Some("k=v"), "k%3Dv"),
            (Some("50%"), "50%25"),
            (Some("new york"), "new york"),
            (Some("café"), "café"),
            (Some("a\nb\u{0}"), "a%0Ab%00"),
            (Some("2026-11-25T10:00:00Z"), "2026-11-25T10%3A00%3A00Z"),
            (Some(""), HIVE_DEFAULT_PARTITION),
            (None, HIVE_DEFAULT_PARTITION),
        ];
        for (v, want) in cases {
            let got = escape_value(v);
            assert_eq!(got, want, "{v:?}");
            assert!(!got.contains('/'));
            // Every path built this way is a valid single object_store segment.
            object_store::path::Path::parse(format!("t/x={got}")).unwrap();
            assert_eq!(unescape_value(&got).as_deref(), v.filter(|v| !v.is_empty()));
        }
    }

    #[test]
    fn paths_round_trip() {
        let keys = vec!["dt".to_string(), "kind".to_string()];
        let values = vec![Some("2026-11-25".to_string()), None];
        let p = partition_path(&keys, &values);
        assert_eq!(p, "dt=2026-11-25/kind=__HIVE_DEFAULT_PARTITION__");
        assert_eq!(
            parse_partition_path(&p),
            vec![
                ("dt".into(), Some("2026-11-25".into())),
                ("kind".into(), None)
            ]
        );
    }

    #[test]
    fn splits_rows_by_values() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int32, false),
            Field::new("k", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int32Array::from(vec![1, 2, 3, 4])),
                Arc::new(StringArray::from(vec![
                    Some("a"),
                    None,
                    Some("a"),
                    Some("b"),
                ])),
            ],
        )
        .unwrap();
        let s = Splitter::new(&schema, &["k".to_string()]).unwrap();
        let parts = s.split(&batch).unwrap();
        let got: Vec<_> = parts
            .iter()
            .map(|p| {
                let n = p
                    .batch
                    .column(0)
                    .as_primitive::<arrow::datatypes::Int32Type>();
                (p.values.clone(), n.values().to_vec())
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (vec![Some("a".to_string())], vec![1, 3]),
                (vec![None], vec![2]),
                (vec![Some("b".to_string())], vec![4]),
            ]
        );
        assert_eq!(parts[0].batch.schema().fields().len(), 1);
    }

    proptest::proptest! {
        /// Any batch, split by a string and an integer key (nulls among
        /// both): every row lands once, in the slice of its own values, in
        /// its original order; no two slices have the same values; the
        /// slices follow the order in which their values first appear.
        #[test]
        fn every_row_lands_once_in_the_slice_of_its_values(
            rows in proptest::collection::vec(
                (
                    proptest::option::of(proptest::sample::select(vec!["a", "b", "", "a/b", "é"])),
                    proptest::option::of(-2i32..3),
                ),
                0..300,
            )
        ) {
            let schema = Arc::new(Schema::new(vec![
                Field::new("n", DataType::Int32, false),
                Field::new("k", DataType::Utf8, true),
                Field::new("j", DataType::Int32, true),
            ]));
            let batch = RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(Int32Array::from_iter_values(0..rows.len() as i32)),
                    Arc::new(StringArray::from_iter(rows.iter().map(|r| r.0))),
                    Arc::new(Int32Array::from_iter(rows.iter().map(|r| r.1))),
                ],
            )
            .unwrap();
            let s = Splitter::new(&schema, &["k".to_string(), "j".to_string()]).unwrap();
            let parts = s.split(&batch).unwrap();
            let mut seen = vec![false; rows.len()];
            let mut firsts = Vec::new();
            for (i, p) in parts.iter().enumerate() {
                proptest::prop_assert!(
                    parts[..i].iter().all(|q| q.values != p.values),
                    "two slices of {:?}", p.values
                );
                let n = p.batch.column(0).as_primitive::<arrow::datatypes::Int32Type>();
                let ns = n.values().to_vec();
                proptest::prop_assert!(!ns.is_empty());
                proptest::prop_assert!(ns.windows(2).all(|w| w[0] < w[1]), "order kept: {:?}", ns);
                firsts.push(ns[0]);
                for &row in &ns {
                    let (k, j) = rows[row as usize];
                    let want = vec![k.map(str::to_string), j.map(|j| j.to_string())];
                    proptest::prop_assert_eq!(&p.values, &want, "row {}", row);
                    proptest::prop_assert!(!seen[row as usize], "row {} twice", row);
                    seen[row as usize] = true;
                }
            }
            proptest::prop_assert!(seen.iter().all(|s| *s), "a row lost");
            proptest::prop_assert!(firsts.windows(2).all(|w| w[0] < w[1]), "slices out of order: {:?}", firsts);
        }
    }
}
