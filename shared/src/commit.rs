//! Commit records: the small JSON document a chunk writes after all its
//! files, listing them. The catalog acts only on commit records; files
//! without one are debris that no catalog-based reader sees.

use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::plan::Chunk;

use crate::layout::COMMITS_DIR;

/// A column as the catalog sees it: a name and a Hive type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnDef {
    pub name: String,
    #[serde(rename = "type")]
    pub hive_type: String,
}

/// The source object a chunk came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceInfo {
    pub url: String,
    pub size: u64,
    pub e_tag: Option<String>,
    pub version: Option<String>,
    /// When this version was written (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified: Option<String>,
    /// The S3 event's `sequencer` of this version, where known (see
    /// the source ledger): not part of the chunk's identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequencer: Option<String>,
}

/// One Parquet file a chunk wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileInfo {
    /// Path relative to the lake root.
    pub path: String,
    /// Partition values, in the order of the table's partition keys.
    pub partition: Vec<Option<String>>,
    /// `k=v/...`, relative to the table's location.
    pub partition_path: String,
    pub rows: u64,
    pub bytes: u64,
    /// Row count and column bounds from the file's footer, as a Delta `add`
    /// action carries them (absent in records written before they were kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<crate::stats::FileStats>,
}

/// What one chunk wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitRecord {
    pub version: u32,
    pub table: String,
    pub source: SourceInfo,
    pub chunk: Chunk,
    pub chunk_id: String,
    /// Data columns (those in the files).
    pub columns: Vec<ColumnDef>,
    /// Partition columns (those in the paths).
    pub partition_keys: Vec<ColumnDef>,
    pub schema_fingerprint: String,
    pub files: Vec<FileInfo>,
    pub rows_in: u64,
    pub rows_out: u64,
    pub rows_rejected: u64,
    /// Values dropped or nulled by the table's contract in the rows kept.
    #[serde(default)]
    pub values_discarded: u64,
    pub bytes_in: u64,
    /// The quarantine file of this chunk's rejected records, relative to the lake root.
    pub quarantine: Option<String>,
    /// The Parquet compression codec of the files.
    pub compression: Option<String>,
    /// CDC: Kafka tombstones (null values after deletes) skipped.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub tombstones: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl CommitRecord {
    /// Where this record is stored, relative to the lake root.
    pub fn path(table: &str, chunk_id: &str) -> String {
        format!("{COMMITS_DIR}/{table}/{chunk_id}.json")
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("commit records serialize")
    }

    pub fn from_json(bytes: &[u8], path: &str) -> Result<CommitRecord> {
        serde_json::from_slice(bytes)
            .map_err(|e| Error::Catalog(format!("bad commit record {path}: {e}")))
    }
}

/// The identity of a chunk: depends only on the source object's identity
/// (URL, and its ETag, else its version id, else its size) and the byte
/// range, so a retried chunk writes the same names. The ETag comes first:
/// the same bytes uploaded again under the same key (a new version id in a
/// versioned bucket, the same ETag) are the same chunks, and add nothing.
pub fn chunk_id(source: &SourceInfo, chunk: &Chunk) -> String {
    let mut h = Sha256::new();
    h.update(source.url.as_bytes());
    h.update([0]);
    h.update(version_key(source));
    h.update([0]);
    h.update(format!("{}:{}", chunk.start, chunk.end));
    hex::encode(&h.finalize()[..12])
}

/// What tells versions of one key apart: its ETag, else its version id, else its size.
pub fn version_key(source: &SourceInfo) -> String {
    match (&source.e_tag, &source.version) {
        (Some(e), _) => format!("e:{e}"),
        (None, Some(v)) => format!("v:{v}"),
        (None, None) => format!("s:{}", source.size),
    }
}

/// A fingerprint of the columns and partition keys.
pub fn schema_fingerprint(columns: &[ColumnDef], keys: &[ColumnDef]) -> String {
    let mut h = Sha256::new();
    for c in columns.iter().chain(keys) {
        h.update(c.name.as_bytes());
        h.update([0]);
        h.update(c.hive_type.as_bytes());
        h.update([1]);
    }
    hex::encode(&h.finalize()[..8])
}

/// The Hive type of an Arrow type, as Glue and Athena name it.
pub fn hive_type(dt: &DataType) -> Option<String> {
    Some(match dt {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "string".into(),
        DataType::Boolean => "boolean".into(),
        DataType::Int8 => "tinyint".into(),
        DataType::Int16 | DataType::UInt8 => "smallint".into(),
        DataType::Int32 | DataType::UInt16 => "int".into(),
        DataType::Int64 | DataType::UInt32 => "bigint".into(),
        DataType::Float32 => "float".into(),
        DataType::Float64 => "double".into(),
        DataType::Date32 | DataType::Date64 => "date".into(),
        DataType::Timestamp(_, _) => "timestamp".into(),
        DataType::Decimal128(p, s) => format!("decimal({p},{s})"),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => "binary".into(),
        DataType::List(f) | DataType::LargeList(f) | DataType::ListView(f) => {
            format!("array<{}>", hive_type(f.data_type())?)
        }
        DataType::Struct(fields) => format!(
            "struct<{}>",
            fields
                .iter()
                .map(|f| Some(format!("{}:{}", f.name(), hive_type(f.data_type())?)))
                .collect::<Option<Vec<_>>>()?
                .join(",")
        ),
        DataType::Map(f, _) => match f.data_type() {
            DataType::Struct(kv) if kv.len() == 2 => format!(
                "map<{},{}>",
                hive_type(kv[0].data_type())?,
                hive_type(kv[1].data_type())?
            ),
            _ => return None,
        },
        _ => return None,
    })
}

/// The Arrow type of a Hive type, as [`hive_type`] names them (scalars,
/// `array<..>`, `struct<name:..,..>`, `map<..,..>`): partition columns, and
/// a Delta table's schema from commit records.
pub fn arrow_type(hive: &str) -> Option<DataType> {
    let hive = hive.trim();
    if let Some(inner) = nested(hive, "array") {
        return Some(DataType::new_list(arrow_type(inner)?, true));
    }
    if let Some(inner) = nested(hive, "struct") {
        let fields = top_level(inner)
            .into_iter()
            .map(|f| {
                let (name, ty) = f.split_once(':')?;
                Some(Field::new(name.trim(), arrow_type(ty)?, true))
            })
            .collect::<Option<Vec<_>>>()?;
        return Some(DataType::Struct(fields.into()));
    }
    if let Some(inner) = nested(hive, "map") {
        let [k, v] = top_level(inner)[..] else {
            return None;
        };
        let entries = Field::new(
            "entries",
            DataType::Struct(
                vec![
                    Field::new("key", arrow_type(k)?, false),
                    Field::new("value", arrow_type(v)?, true),
                ]
                .into(),
            ),
            false,
        );
        return Some(DataType::Map(std::sync::Arc::new(entries), false));
    }
    Some(match hive {
        "string" => DataType::Utf8,
        "boolean" => DataType::Boolean,
        "tinyint" => DataType::Int8,
        "smallint" => DataType::Int16,
        "int" => DataType::Int32,
        "bigint" => DataType::Int64,
        "float" => DataType::Float32,
        "double" => DataType::Float64,
        "date" => DataType::Date32,
        "binary" => DataType::Binary,
        "timestamp" => DataType::Timestamp(TimeUnit::Microsecond, Some(crate::config::UTC.into())),
        _ => {
            let inner = hive.strip_prefix("decimal(")?.strip_suffix(')')?;
            let (p, s) = inner.split_once(',')?;
            DataType::Decimal128(p.trim().parse().ok()?, s.trim().parse().ok()?)
        }
    })
}

/// The inside of `<name><...>`.
fn nested<'a>(hive: &'a str, name: &str) -> Option<&'a str> {
    hive.strip_prefix(name)?
        .strip_prefix('<')?
        .strip_suffix('>')
}

/// `a,b<c,d>,e` split at the commas outside `<>`.
fn top_level(list: &str) -> Vec<&str> {
    let (mut out, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in list.char_indices() {
        match c {
            '<' | '(' => depth += 1,
            '>' | ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&list[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&list[start..]);
    out
}

/// Column definitions of a schema; fails naming a column whose type has no Hive equivalent.
pub fn column_defs(table: &str, schema: &Schema) -> Result<Vec<ColumnDef>> {
    schema
        .fields()
        .iter()
        .map(|f: &std::sync::Arc<Field>| {
            Ok(ColumnDef {
                name: f.name().clone(),
                hive_type: hive_type(f.data_type()).ok_or_else(|| {
                    Error::transform(
                        table,
                        format!(
                            "column '{}' has type {}, which Glue and Athena cannot read; cast it in the sql",
                            f.name(),
                            f.data_type()
                        ),
                    )
                })?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::Fields;
    use std::sync::Arc;

    #[test]
    fn chunk_ids_depend_on_identity_only() {
        let s = SourceInfo {
            url: "s3://b/k.jsonl".into(),
            size: 10,
            e_tag: Some("\"abc\"".into()),
            version: Some("v1".into()),
            modified: None,
            sequencer: None,
        };
        let c = Chunk {
            index: 0,
            start: 0,
            end: 10,
        };
        assert_eq!(chunk_id(&s, &c), chunk_id(&s.clone(), &c));
        let mut other = s.clone();
        other.e_tag = Some("\"def\"".into());
        assert_ne!(chunk_id(&s, &c), chunk_id(&other, &c));
        // The same bytes uploaded again: a new version id, the same ETag.
        let mut again = s.clone();
        again.version = Some("v2".into());
        again.modified = Some("2026-11-26T00:00:00Z".into());
        assert_eq!(chunk_id(&s, &c), chunk_id(&again, &c));
        let c2 = Chunk {
            index: 1,
            start: 10,
            end: 20,
        };
        assert_ne!(chunk_id(&s, &c), chunk_id(&s, &c2));
        assert_eq!(chunk_id(&s, &c).len(), 24);
    }

    #[test]
    fn hive_types() {
        assert_eq!(
            hive_type(&DataType::Decimal128(10, 2)).unwrap(),
            "decimal(10,2)"
        );
        let st = DataType::Struct(Fields::from(vec![
            Field::new("a", DataType::Int64, true),
            Field::new_list("b", Field::new("item", DataType::Utf8, true), true),
        ]));
        assert_eq!(hive_type(&st).unwrap(), "struct<a:bigint,b:array<string>>");
        assert_eq!(hive_type(&DataType::Duration(TimeUnit::Second)), None);
        assert_eq!(
            arrow_type("decimal(10,2)"),
            Some(DataType::Decimal128(10, 2))
        );
        // Every type hive_type names comes back.
        for t in [
            "struct<a:bigint,b:array<string>>",
            "map<string,array<decimal(10,2)>>",
            "array<struct<x:double,y:map<string,int>>>",
            "timestamp",
            "binary",
        ] {
            let arrow = arrow_type(t).unwrap_or_else(|| panic!("{t}"));
            assert_eq!(hive_type(&arrow).as_deref(), Some(t));
        }
        assert_eq!(arrow_type("struct<a>"), None);
        assert_eq!(arrow_type("map<string>"), None);
        assert_eq!(arrow_type("array<nonsense>"), None);
        let _ = Arc::new(0);
    }
}
