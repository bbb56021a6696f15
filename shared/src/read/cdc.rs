//! Change data capture, the reading side: change events (Debezium JSON,
//! AWS DMS CSV or Parquet) read into *staged changes*, which the table's
//! one committer merges by key into a Delta table (`delta::merge`).
//!
//! A chunk's reader fills the envelope's columns ([`crate::config::Cdc`]);
//! [`Stager`] turns each batch into the staged columns: the declared ones,
//! `_op` (`c`, `u`, `d`, `r` as Debezium names them; DMS `I`, `U`, `D` and
//! full-load rows map to `c`, `u`, `d`, `r`), `_sluice_position` and
//! `_sluice_arrived_at`.
//!
//! **Position.** `_sluice_position` is text that sorts in the source's
//! order; the merge keeps, per key, the change with the greatest position,
//! so a change that arrives after a newer one of its key never wins:
//! - Debezium: the connector's own position (`source.lsn` for PostgreSQL;
//!   `source.file`, `pos`, `row` for MySQL; `commit_lsn`, `change_lsn`,
//!   `event_serial_no` for SQL Server; `scn` for Oracle), then `ts_ms`;
//! - DMS: the `order_by` column (DMS `TimestampColumnName`), then the file
//!   (full-load `LOAD*` files before change files, then by name);
//! - then, for both, the change's place in its file.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, StringArray, StringBuilder};
use arrow::array::{AsArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Int32Type, Int64Type, TimeUnit, TimestampMicrosecondType};
use base64::Engine as _;
use serde_json::{Map, Value};

use crate::config::{CDC_OP, CDC_SOURCE_POSITION, Cdc, ColumnType, DMS_OP, Envelope, Table};
use crate::error::{Error, Result};

/// What one Debezium line holds.
#[derive(Debug, PartialEq)]
pub enum Decoded {
    /// A Kafka tombstone (a null value after a delete): nothing to apply.
    Tombstone,
    /// One change, or two for an update that changed the key (a delete of
    /// the old key, then the new row), each as a flat JSON object of the
    /// row's fields, `_op` and the source position.
    Changes(Vec<Vec<u8>>),
}

/// Decode one Debezium change event into flat rows the JSON decoder reads.
/// An error is the reason the line is quarantined.
pub fn debezium(line: &[u8], cdc: &Cdc) -> std::result::Result<Decoded, String> {
    let value: Value =
        serde_json::from_slice(line).map_err(|e| format!("not a JSON change event: {e}"))?;
    let (envelope, schema) = match value {
        Value::Null => return Ok(Decoded::Tombstone),
        Value::Object(mut o) if o.contains_key("payload") => {
            let schema = o.remove("schema");
            match o.remove("payload") {
                Some(Value::Null) | None => return Ok(Decoded::Tombstone),
                Some(Value::Object(p)) => (p, schema),
                Some(_) => return Err("`payload` is not an object".into()),
            }
        }
        Value::Object(o) => (o, None),
        _ => return Err("a change event is a JSON object".into()),
    };
    let op = match envelope.get("op") {
        Some(Value::String(op)) => op.as_str(),
        Some(_) => return Err("`op` is not a string".into()),
        None => return Err("the event has no `op`".into()),
    };
    let position = source_position(&envelope);
    let row = |name: &str| -> std::result::Result<&Map<String, Value>, String> {
        match envelope.get(name) {
            Some(Value::Object(r)) => Ok(r),
            _ => Err(format!(
                "an `op` {op:?} event without `{name}`{}",
                if name == "before" {
                    " (the source table must log the old row's key: PostgreSQL REPLICA IDENTITY)"
                } else {
                    ""
                }
            )),
        }
    };
    let types = |name: &str| field_types(schema.as_ref(), name);
    let mut out = Vec::new();
    match op {
        "c" | "r" => out.push(flat(row("after")?, &types("after"), cdc, op, &position)?),
        "d" => out.push(flat(row("before")?, &types("before"), cdc, op, &position)?),
        "u" => {
            let after = flat_value(row("after")?, &types("after"), cdc)?;
            if let Ok(before) = row("before") {
                let before = flat_value(before, &types("before"), cdc)?;
                if cdc.key.iter().any(|k| before.get(k) != after.get(k)) {
                    out.push(finish(before, "d", &position));
                }
            }
            out.push(finish(after, op, &position));
        }
        "t" => return Err("a truncate event: truncating the table is not applied".into()),
        other => return Err(format!("unknown op {other:?} (expected c, u, d or r)")),
    }
    Ok(Decoded::Changes(out))
}

/// A Debezium field's connector type name and parameters, from the wrapper's schema.
type FieldTypes = std::collections::HashMap<String, (Option<String>, Option<Value>)>;

fn field_types(schema: Option<&Value>, part: &str) -> FieldTypes {
    let mut types = FieldTypes::new();
    let fields = schema
        .and_then(|s| s.get("fields"))
        .and_then(Value::as_array)
        .and_then(|f| {
            f.iter()
                .find(|x| x.get("field").and_then(Value::as_str) == Some(part))
        })
        .and_then(|x| x.get("fields"))
        .and_then(Value::as_array);
    for f in fields.into_iter().flatten() {
        if let Some(name) = f.get("field").and_then(Value::as_str) {
            types.insert(
                name.to_string(),
                (
                    f.get("name").and_then(Value::as_str).map(str::to_string),
                    f.get("parameters").cloned(),
                ),
            );
        }
    }
    types
}

fn flat(
    row: &Map<String, Value>,
    types: &FieldTypes,
    cdc: &Cdc,
    op: &str,
    position: &str,
) -> std::result::Result<Vec<u8>, String> {
    Ok(finish(flat_value(row, types, cdc)?, op, position))
}

fn flat_value(
    row: &Map<String, Value>,
    types: &FieldTypes,
    cdc: &Cdc,
) -> std::result::Result<Map<String, Value>, String> {
    let mut out = Map::new();
    for (name, v) in row {
        let declared = cdc.declared.iter().find(|c| &c.name == name).map(|c| c.ty);
        let v = match declared {
            Some(ty) if !v.is_null() => {
                let (logical, params) = types
                    .get(name)
                    .map(|(n, p)| (n.as_deref(), p.as_ref()))
                    .unwrap_or((None, None));
                convert(v, ty, logical, params).map_err(|e| format!("field '{name}': {e}"))?
            }
            _ => v.clone(),
        };
        out.insert(name.clone(), v);
    }
    Ok(out)
}

fn finish(mut row: Map<String, Value>, op: &str, position: &str) -> Vec<u8> {
    row.insert(CDC_OP.into(), Value::from(op));
    row.insert(CDC_SOURCE_POSITION.into(), Value::from(position));
    serde_json::to_vec(&row).expect("a JSON map serializes")
}

/// Debezium's encodings of a value into what the declared type reads:
/// days since the epoch into a date; milli-, micro- or nanoseconds into a
/// timestamp (from the field's connector type, or else from the number's
/// size); a base64 two's-complement unscaled integer (with the scale of
/// the field's parameters, or the declared one) into a decimal.
pub fn convert(
    v: &Value,
    ty: ColumnType,
    logical: Option<&str>,
    params: Option<&Value>,
) -> std::result::Result<Value, String> {
    match (ty, v) {
        (ColumnType::Date, Value::Number(n)) => {
            let days = n.as_i64().ok_or("a date is a whole number of days")?;
            let d = chrono::DateTime::from_timestamp(days * 86_400, 0)
                .ok_or("the date is out of range")?;
            Ok(Value::from(d.format("%Y-%m-%d").to_string()))
        }
        (ColumnType::Timestamp, Value::Number(n)) => {
            let n = n.as_i64().ok_or("a timestamp is a whole number")?;
            let micros = match logical {
                Some("io.debezium.time.Timestamp" | "org.apache.kafka.connect.data.Timestamp") => {
                    n.checked_mul(1000)
                }
                Some("io.debezium.time.MicroTimestamp") => Some(n),
                Some("io.debezium.time.NanoTimestamp") => Some(n.div_euclid(1000)),
                // No schema: milliseconds up to year 5138, microseconds
                // from 1973 to then, nanoseconds after 1973.
                _ if n.unsigned_abs() < 100_000_000_000_000 => n.checked_mul(1000),
                _ if n.unsigned_abs() < 100_000_000_000_000_000 => Some(n),
                _ => Some(n.div_euclid(1000)),
            }
            .ok_or("the timestamp is out of range")?;
            let t = chrono::DateTime::from_timestamp_micros(micros)
                .ok_or("the timestamp is out of range")?;
            Ok(Value::from(t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()))
        }
        (ColumnType::Decimal(_, declared), Value::String(b64))
            if logical != Some("string") && !looks_decimal(b64) =>
        {
            let scale = params
                .and_then(|p| p.get("scale"))
                .and_then(|s| s.as_str().and_then(|s| s.parse().ok()).or(s.as_i64()))
                .unwrap_or(declared as i64);
            decimal_text(b64, scale)
        }
        (ColumnType::Decimal(..), Value::Object(o)) => {
            // io.debezium.data.VariableScaleDecimal
            let scale = o.get("scale").and_then(Value::as_i64).ok_or("no scale")?;
            let value = o.get("value").and_then(Value::as_str).ok_or("no value")?;
            decimal_text(value, scale)
        }
        _ => Ok(v.clone()),
    }
}

/// Whether a string already reads as a decimal number (`precise` or
/// `string` decimal handling mode), not base64.
fn looks_decimal(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.'))
        && s.bytes().any(|b| b.is_ascii_digit())
}

fn decimal_text(b64: &str, scale: i64) -> std::result::Result<Value, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| format!("{b64:?} is not a base64 decimal: {e}"))?;
    if bytes.is_empty() || bytes.len() > 16 {
        return Err(format!("{b64:?} is not a decimal of at most 38 digits"));
    }
    let fill = if bytes[0] & 0x80 != 0 { 0xff } else { 0 };
    let mut full = [fill; 16];
    full[16 - bytes.len()..].copy_from_slice(&bytes);
    let unscaled = i128::from_be_bytes(full);
    let digits = unscaled.unsigned_abs().to_string();
    let scale = usize::try_from(scale).map_err(|_| "a negative scale")?;
    let sign = if unscaled < 0 { "-" } else { "" };
    let text = if scale == 0 {
        format!("{sign}{digits}")
    } else if digits.len() > scale {
        let (i, f) = digits.split_at(digits.len() - scale);
        format!("{sign}{i}.{f}")
    } else {
        format!("{sign}0.{digits:0>scale$}")
    };
    Ok(Value::from(text))
}

/// The connector's position of a change, as text that sorts in source order.
fn source_position(envelope: &Map<String, Value>) -> String {
    let source = envelope.get("source").and_then(Value::as_object);
    let get = |k: &str| source.and_then(|s| s.get(k)).filter(|v| !v.is_null());
    let num = |k: &str| get(k).and_then(Value::as_u64);
    let text = |k: &str| get(k).and_then(Value::as_str);
    let mut p = if let Some(lsn) = num("lsn") {
        format!("L{lsn:020}")
    } else if let (Some(file), Some(pos)) = (text("file"), num("pos")) {
        format!("B{file}:{pos:020}:{:010}", num("row").unwrap_or(0))
    } else if let Some(commit) = text("commit_lsn") {
        format!(
            "S{commit}:{}:{:010}",
            text("change_lsn").unwrap_or(""),
            num("event_serial_no").unwrap_or(0)
        )
    } else if let Some(scn) = text("scn").or(text("commit_scn")) {
        format!("O{scn:0>30}")
    } else {
        String::new()
    };
    let ts = num("ts_ms")
        .or_else(|| envelope.get("ts_ms").and_then(Value::as_u64))
        .unwrap_or(0);
    p.push_str(&format!("T{ts:020}"));
    p
}

/// Whether an object is a DMS full-load file (`LOAD00000001.csv`): its rows
/// have no `Op` and come before every change file.
pub fn is_full_load(url: &str) -> bool {
    url.rsplit('/')
        .next()
        .is_some_and(|n| n.starts_with("LOAD"))
}

/// Turns a chunk's read batches into staged changes.
pub struct Stager {
    cdc: Cdc,
    schema: arrow::datatypes::SchemaRef,
    /// Position text common to the chunk's rows (DMS: the file's place).
    file_part: String,
    full_load: bool,
    chunk_start: u64,
    row: u64,
    arrived: i64,
}

impl Stager {
    pub fn new(table: &Table, url: &str, modified: Option<&str>, chunk_start: u64) -> Option<Self> {
        let cdc = table.cdc.clone()?;
        let full_load = cdc.envelope == Envelope::Dms && is_full_load(url);
        let name = url.rsplit('/').next().unwrap_or(url);
        let arrived = modified
            .and_then(|m| chrono::DateTime::parse_from_rfc3339(m).ok())
            .map(|t| t.timestamp_micros())
            .unwrap_or_else(|| chrono::Utc::now().timestamp_micros());
        Some(Stager {
            file_part: format!("{}{name}", if full_load { 0 } else { 1 }),
            schema: table.input_schema(),
            cdc,
            full_load,
            chunk_start,
            row: 0,
            arrived,
        })
    }

    /// Whether the reader skips the `Op` column (a DMS full-load file has none).
    pub fn full_load(&self) -> bool {
        self.full_load
    }

    /// The staged changes of one read batch.
    pub fn stage(&mut self, batch: &RecordBatch, file: &str) -> Result<RecordBatch> {
        let n = batch.num_rows();
        let column = |name: &str| {
            batch
                .column_by_name(name)
                .cloned()
                .ok_or_else(|| Error::read(file, format!("the change file has no column '{name}'")))
        };
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.schema.fields().len());
        for c in &self.cdc.declared {
            columns.push(column(&c.name)?);
        }
        // The reader's rules quarantine these in text files; a Parquet
        // change file has no raw text to quarantine, so it fails here.
        for k in &self.cdc.key {
            let key = column(k)?;
            if let Some(i) = (0..n).find(|&i| key.is_null(i)) {
                return Err(Error::read(
                    file,
                    format!(
                        "change {} has no value for key column '{k}'",
                        self.row + i as u64 + 1
                    ),
                ));
            }
        }
        let mut ops = StringBuilder::with_capacity(n, n);
        let mut positions = StringBuilder::with_capacity(n, n * 64);
        match self.cdc.envelope {
            Envelope::Debezium => {
                let op = column(CDC_OP)?;
                let op = op.as_string::<i32>();
                let source = column(CDC_SOURCE_POSITION)?;
                let source = source.as_string::<i32>();
                for i in 0..n {
                    ops.append_value(op.value(i));
                    positions.append_value(format!(
                        "{}|{:020}{:012}",
                        source.value(i),
                        self.chunk_start,
                        self.row + i as u64
                    ));
                }
            }
            Envelope::Dms => {
                let op = batch.column_by_name(DMS_OP).cloned();
                let op = op.as_ref().map(|o| o.as_string::<i32>());
                let order = match &self.cdc.order_by {
                    Some(o) => Some(column(o)?),
                    None => None,
                };
                for i in 0..n {
                    let code = match op.filter(|o| o.is_valid(i)).map(|o| o.value(i)) {
                        None => "r",
                        Some("I") => "c",
                        Some("U") => "u",
                        Some("D") => "d",
                        Some(other) => {
                            return Err(Error::read(
                                file,
                                format!(
                                    "change {}: unknown DMS operation {other:?} (I, U or D)",
                                    self.row + i as u64 + 1
                                ),
                            ));
                        }
                    };
                    ops.append_value(code);
                    let order = order
                        .as_ref()
                        .map(|o| sortable(o.as_ref(), i))
                        .unwrap_or_default();
                    positions.append_value(format!(
                        "{order}|{}|{:020}{:012}",
                        self.file_part,
                        self.chunk_start,
                        self.row + i as u64
                    ));
                }
            }
        }
        self.row += n as u64;
        columns.push(Arc::new(ops.finish()));
        columns.push(Arc::new(positions.finish()));
        columns.push(Arc::new(
            TimestampMicrosecondArray::from(vec![self.arrived; n]).with_timezone("UTC"),
        ));
        RecordBatch::try_new(self.schema.clone(), columns).map_err(|e| Error::read(file, e))
    }
}

/// A value as text that sorts as the values do (numbers zero-padded and
/// offset so that negatives sort first); empty for null.
pub fn sortable(a: &dyn Array, i: usize) -> String {
    if a.is_null(i) {
        return String::new();
    }
    let num = |v: i64| format!("{:020}", (v as i128 - i64::MIN as i128) as u128);
    match a.data_type() {
        DataType::Utf8 => a.as_string::<i32>().value(i).to_string(),
        DataType::Int64 => num(a.as_primitive::<Int64Type>().value(i)),
        DataType::Int32 => num(a.as_primitive::<Int32Type>().value(i) as i64),
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            num(a.as_primitive::<TimestampMicrosecondType>().value(i))
        }
        _ => arrow::compute::cast(&a.slice(i, 1), &DataType::Utf8)
            .ok()
            .and_then(|s| {
                s.as_any()
                    .downcast_ref::<StringArray>()
                    .map(|s| s.value(0).to_string())
            })
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Column;

    fn cdc(key: &[&str], declared: &[(&str, ColumnType)]) -> Cdc {
        Cdc {
            envelope: Envelope::Debezium,
            key: key.iter().map(|k| k.to_string()).collect(),
            order_by: None,
            order_by_declared: false,
            keep_changes: false,
            remember_deletes: std::time::Duration::from_secs(3600),
            declared: declared
                .iter()
                .map(|(n, ty)| Column {
                    name: n.to_string(),
                    ty: *ty,
                })
                .collect(),
        }
    }

    fn rows(d: Decoded) -> Vec<Value> {
        match d {
            Decoded::Changes(c) => c
                .iter()
                .map(|l| serde_json::from_slice(l).unwrap())
                .collect(),
            Decoded::Tombstone => panic!("a tombstone"),
        }
    }

    #[test]
    fn debezium_dates_timestamps_and_decimals_become_the_declared_types() {
        // Documented examples: io.debezium.time.Date 19723 = 2024-01-01;
        // MicroTimestamp 1704067200123456 = 2024-01-01T00:00:00.123456Z;
        // Decimal "AeI=" = 0x01E2 = 482, scale 2 = 4.82; "/x4=" = -226, scale 2 = -2.26.
        // (declared type, value, Debezium type name, its parameters, expected)
        type Case<'a> = (ColumnType, Value, Option<&'a str>, Option<Value>, Value);
        let cases: &[Case] = &[
            (
                ColumnType::Date,
                19723.into(),
                Some("io.debezium.time.Date"),
                None,
                "2024-01-01".into(),
            ),
            (
                ColumnType::Date,
                (-1).into(),
                None,
                None,
                "1969-12-31".into(),
            ),
            (
                ColumnType::Timestamp,
                1_704_067_200_123_456i64.into(),
                Some("io.debezium.time.MicroTimestamp"),
                None,
                "2024-01-01T00:00:00.123456Z".into(),
            ),
            (
                ColumnType::Timestamp,
                1_704_067_200_123i64.into(),
                Some("io.debezium.time.Timestamp"),
                None,
                "2024-01-01T00:00:00.123000Z".into(),
            ),
            (
                ColumnType::Timestamp,
                1_704_067_200_123_456_789i64.into(),
                Some("io.debezium.time.NanoTimestamp"),
                None,
                "2024-01-01T00:00:00.123456Z".into(),
            ),
            (
                ColumnType::Timestamp,
                1_704_067_200_123i64.into(),
                None,
                None,
                "2024-01-01T00:00:00.123000Z".into(),
            ),
            (
                ColumnType::Timestamp,
                1_704_067_200_123_456i64.into(),
                None,
                None,
                "2024-01-01T00:00:00.123456Z".into(),
            ),
            (
                ColumnType::Timestamp,
                "2024-01-01T00:00:00Z".into(),
                Some("io.debezium.time.ZonedTimestamp"),
                None,
                "2024-01-01T00:00:00Z".into(),
            ),
            (
                ColumnType::Decimal(10, 2),
                "AeI=".into(),
                Some("org.apache.kafka.connect.data.Decimal"),
                Some(serde_json::json!({"scale": "2"})),
                "4.82".into(),
            ),
            (
                ColumnType::Decimal(10, 2),
                "/x4=".into(),
                None,
                None,
                "-2.26".into(),
            ),
            (
                ColumnType::Decimal(10, 3),
                "AQ==".into(),
                None,
                None,
                "0.001".into(),
            ),
            (
                ColumnType::Decimal(10, 2),
                "12.50".into(),
                None,
                None,
                "12.50".into(),
            ),
            (
                ColumnType::Decimal(10, 2),
                serde_json::json!({"scale": 1, "value": "AeI="}),
                None,
                None,
                "48.2".into(),
            ),
            (ColumnType::Int64, 7.into(), None, None, 7.into()),
        ];
        for (ty, v, logical, params, want) in cases {
            let got = convert(v, *ty, *logical, params.as_ref()).unwrap();
            assert_eq!(&got, want, "{ty:?} {v} {logical:?}");
        }
        assert!(convert(&"%%".into(), ColumnType::Decimal(10, 2), None, None).is_err());
    }

    #[test]
    fn debezium_events_with_and_without_the_wrapper() {
        let c = cdc(
            &["id"],
            &[("id", ColumnType::Int64), ("d", ColumnType::Date)],
        );
        let plain = br#"{"before":null,"after":{"id":1,"d":19723},"source":{"lsn":42,"ts_ms":5},"op":"c","ts_ms":9}"#;
        let r = rows(debezium(plain, &c).unwrap());
        assert_eq!(r.len(), 1);
        assert_eq!(r[0]["id"], 1);
        assert_eq!(r[0]["d"], "2024-01-01");
        assert_eq!(r[0][CDC_OP], "c");
        assert_eq!(
            r[0][CDC_SOURCE_POSITION],
            "L00000000000000000042T00000000000000000005"
        );
        let wrapped = br#"{"schema":{"type":"struct","fields":[{"type":"struct","field":"before","fields":[]},{"type":"struct","field":"after","fields":[{"type":"int64","field":"id"},{"type":"int32","field":"d","name":"io.debezium.time.Date"}]}]},"payload":{"before":{"id":1},"after":{"id":2,"d":1},"source":{"file":"binlog.000003","pos":154,"row":1,"ts_ms":7},"op":"u"}}"#;
        let r = rows(debezium(wrapped, &c).unwrap());
        // The key changed: a delete of the old key, then the new row.
        assert_eq!(r.len(), 2);
        assert_eq!(
            (r[0]["id"].clone(), r[0][CDC_OP].clone()),
            (1.into(), "d".into())
        );
        assert_eq!(
            (r[1]["id"].clone(), r[1][CDC_OP].clone()),
            (2.into(), "u".into())
        );
        assert_eq!(r[1]["d"], "1970-01-02");
        assert_eq!(
            r[1][CDC_SOURCE_POSITION],
            "Bbinlog.000003:00000000000000000154:0000000001T00000000000000000007"
        );
        let delete = br#"{"before":{"id":3},"after":null,"source":{"lsn":50},"op":"d"}"#;
        assert_eq!(rows(debezium(delete, &c).unwrap())[0][CDC_OP], "d");
        assert_eq!(debezium(b"null", &c).unwrap(), Decoded::Tombstone);
        assert_eq!(
            debezium(br#"{"schema":null,"payload":null}"#, &c).unwrap(),
            Decoded::Tombstone
        );
        for (bad, reason) in [
            (&br#"{"after":{"id":1}}"#[..], "no `op`"),
            (br#"{"op":"x","after":{"id":1}}"#, "unknown op"),
            (br#"{"op":"d","before":null}"#, "without `before`"),
            (br#"{"op":"t"}"#, "truncate"),
            (br#"{"op":"c","after":{"id":1,"d":"x"},"source":{}}"#, ""),
        ] {
            match debezium(bad, &c) {
                Err(e) => assert!(e.contains(reason), "{e}"),
                // The last: the JSON decoder refuses the date later.
                Ok(_) => assert_eq!(reason, ""),
            }
        }
    }

    #[test]
    fn positions_sort_in_source_order() {
        let p = |s: &str| {
            source_position(
                serde_json::from_str::<Value>(s)
                    .unwrap()
                    .as_object()
                    .unwrap(),
            )
        };
        assert!(p(r#"{"source":{"lsn":9}}"#) < p(r#"{"source":{"lsn":10}}"#));
        assert!(p(r#"{"source":{"lsn":10,"ts_ms":1}}"#) < p(r#"{"source":{"lsn":10,"ts_ms":2}}"#));
        assert!(
            p(r#"{"source":{"file":"b.000009","pos":900}}"#)
                < p(r#"{"source":{"file":"b.000010","pos":4}}"#)
        );
        assert!(p(r#"{"source":{},"ts_ms":99}"#) < p(r#"{"source":{},"ts_ms":100}"#));
        let ints = arrow::array::Int64Array::from(vec![-5, 3, 20]);
        assert!(sortable(&ints, 0) < sortable(&ints, 1));
        assert!(sortable(&ints, 1) < sortable(&ints, 2));
        assert!(is_full_load("s3://b/dms/public/t/LOAD00000001.csv"));
        assert!(!is_full_load("s3://b/dms/public/t/20261201-101010123.csv"));
    }
}
