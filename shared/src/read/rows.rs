//! Building Arrow batches row by row from decoded values, for the text
//! formats. A row's values are first parsed into typed slots, and appended to
//! the column builders only when the whole row is good, so a bad record never
//! leaves a half-appended row behind.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, AsArray, BooleanBuilder, Date32Builder, Decimal128Builder, Float64Builder,
    Int32Builder, Int64Builder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::compute::kernels::cast_utils::string_to_datetime;
use arrow::datatypes::{Decimal128Type, SchemaRef};

use std::collections::HashSet;

use crate::config::{Check, Column, ColumnType, Rule, UTC, WrongType};

/// A value of one column of the row being built.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Slot {
    /// Not given: null.
    Missing,
    Null,
    Bool(bool),
    I64(i64),
    F64(f64),
    I128(i128),
    /// Text stored in the row's scratch buffer, `start..end`.
    Str(u32, u32),
}

enum ColumnBuilder {
    Str(StringBuilder),
    Bool(BooleanBuilder),
    I32(Int32Builder),
    I64(Int64Builder),
    F64(Float64Builder),
    Date(Date32Builder),
    Ts(TimestampMicrosecondBuilder),
    Dec(Decimal128Builder),
}

/// Builds one [`RecordBatch`] after another for a declared schema.
pub struct BatchBuilder {
    schema: SchemaRef,
    columns: Vec<Column>,
    builders: Vec<ColumnBuilder>,
    slots: Vec<Slot>,
    scratch: String,
    rows: usize,
    wrong_type: WrongType,
    rules: Vec<Rule>,
    /// Per `unique` rule, the values seen in this chunk.
    seen: Vec<HashSet<Vec<u8>>>,
    /// Values nulled under `wrong_type = "discard_value"` in the current row.
    row_discarded: u64,
    /// Values nulled or dropped (wrong type, unknown field) in rows kept.
    pub discarded: u64,
}

const EPOCH_DAYS_CE: i32 = 719_163;

impl BatchBuilder {
    /// A builder of the columns `cols` (name, type), for tests.
    #[cfg(test)]
    pub(crate) fn of(cols: &[(&str, crate::config::ColumnType)]) -> BatchBuilder {
        let cols: Vec<crate::config::Column> = cols
            .iter()
            .map(|(name, ty)| crate::config::Column {
                name: name.to_string(),
                ty: *ty,
            })
            .collect();
        BatchBuilder::new(crate::config::arrow_schema(&cols), &cols)
    }

    pub fn new(schema: SchemaRef, columns: &[Column]) -> Self {
        let mut b = BatchBuilder {
            schema,
            columns: columns.to_vec(),
            builders: Vec::new(),
            slots: vec![Slot::Missing; columns.len()],
            scratch: String::new(),
            rows: 0,
            wrong_type: WrongType::Freeze,
            rules: Vec::new(),
            seen: Vec::new(),
            row_discarded: 0,
            discarded: 0,
        };
        b.builders = b.fresh_builders(0, |_| 0);
        b
    }

    /// Apply a table's contract for wrong types and its quality rules.
    pub fn with_checks(mut self, wrong_type: WrongType, rules: &[Rule]) -> Self {
        self.wrong_type = wrong_type;
        self.rules = rules.to_vec();
        self.seen = vec![HashSet::new(); rules.len()];
        self
    }

    /// A value of column `col` did not fit: the row is rejected (`freeze`),
    /// or the value is nulled and counted (`discard_value`).
    pub fn bad_value(&mut self, col: usize, message: String) -> Result<(), String> {
        match self.wrong_type {
            WrongType::Freeze => Err(message),
            WrongType::DiscardValue => {
                self.slots[col] = Slot::Null;
                self.row_discarded += 1;
                Ok(())
            }
        }
    }

    /// Count a value dropped from the current row (an unknown field).
    pub fn discard_unknown(&mut self) {
        self.row_discarded += 1;
    }

    /// Empty builders with room for `rows` rows and, for text column `i`,
    /// `text_bytes(i)` bytes: sized as the last batch was, so a batch is not
    /// built by doubling and copying its buffers from nothing.
    fn fresh_builders(
        &self,
        rows: usize,
        text_bytes: impl Fn(usize) -> usize,
    ) -> Vec<ColumnBuilder> {
        self.columns
            .iter()
            .enumerate()
            .map(|(i, c)| match c.ty {
                ColumnType::String | ColumnType::Json => {
                    ColumnBuilder::Str(StringBuilder::with_capacity(rows, text_bytes(i)))
                }
                ColumnType::Bool => ColumnBuilder::Bool(BooleanBuilder::with_capacity(rows)),
                ColumnType::Int32 => ColumnBuilder::I32(Int32Builder::with_capacity(rows)),
                ColumnType::Int64 => ColumnBuilder::I64(Int64Builder::with_capacity(rows)),
                ColumnType::Float64 => ColumnBuilder::F64(Float64Builder::with_capacity(rows)),
                ColumnType::Date => ColumnBuilder::Date(Date32Builder::with_capacity(rows)),
                ColumnType::Timestamp => ColumnBuilder::Ts(
                    TimestampMicrosecondBuilder::with_capacity(rows).with_timezone(UTC),
                ),
                ColumnType::Decimal(p, s) => ColumnBuilder::Dec(
                    Decimal128Builder::with_capacity(rows)
                        .with_precision_and_scale(p, s)
                        .expect("precision and scale checked by config"),
                ),
            })
            .collect()
    }

    /// The declared columns.
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// Rows appended since the last [`BatchBuilder::finish_batch`].
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Start a new row: every column is missing.
    pub fn begin_row(&mut self) {
        self.slots.fill(Slot::Missing);
        self.scratch.clear();
        self.row_discarded = 0;
    }

    /// Set column `col` to null.
    pub fn set_null(&mut self, col: usize) {
        self.slots[col] = Slot::Null;
    }

    fn push_str(&mut self, text: &str) -> Slot {
        let start = self.scratch.len() as u32;
        self.scratch.push_str(text);
        Slot::Str(start, self.scratch.len() as u32)
    }

    /// Set column `col` from text (a CSV field, or a JSON string), converting
    /// it to the column's type.
    pub fn set_text(&mut self, col: usize, text: &str) -> Result<(), String> {
        let slot = match self.columns[col].ty {
            ColumnType::String | ColumnType::Json => self.push_str(text),
            ColumnType::Bool => Slot::Bool(parse_bool(text)?),
            ColumnType::Int32 => Slot::I64(parse_int(text, true)?),
            ColumnType::Int64 => Slot::I64(parse_int(text, false)?),
            ColumnType::Float64 => Slot::F64(
                text.trim()
                    .parse::<f64>()
                    .map_err(|_| format!("{text:?} is not a number"))?,
            ),
            ColumnType::Date => Slot::I64(parse_date(text)? as i64),
            ColumnType::Timestamp => Slot::I64(parse_timestamp(text)?),
            ColumnType::Decimal(p, s) => Slot::I128(parse_decimal(text, p, s)?),
        };
        self.slots[col] = slot;
        Ok(())
    }

    /// Set column `col` from a JSON boolean.
    pub fn set_bool(&mut self, col: usize, v: bool) -> Result<(), String> {
        self.slots[col] = match self.columns[col].ty {
            ColumnType::Bool => Slot::Bool(v),
            ColumnType::String | ColumnType::Json => {
                self.push_str(if v { "true" } else { "false" })
            }
            other => return Err(format!("expected {}, found a boolean", type_name(other))),
        };
        Ok(())
    }

    /// Set column `col` from a JSON integer.
    pub fn set_i64(&mut self, col: usize, v: i64) -> Result<(), String> {
        self.slots[col] = match self.columns[col].ty {
            ColumnType::Int32 => {
                i32::try_from(v).map_err(|_| format!("{v} is out of range for int32"))?;
                Slot::I64(v)
            }
            ColumnType::Int64 => Slot::I64(v),
            ColumnType::Float64 => Slot::F64(v as f64),
            ColumnType::Decimal(p, s) => Slot::I128(parse_decimal(&v.to_string(), p, s)?),
            ColumnType::String | ColumnType::Json => self.push_str(&v.to_string()),
            other => return Err(format!("expected {}, found a number", type_name(other))),
        };
        Ok(())
    }

    /// Set column `col` from a JSON number that is not an i64 (a fraction or a large u64).
    pub fn set_f64(&mut self, col: usize, v: f64) -> Result<(), String> {
        self.slots[col] = match self.columns[col].ty {
            ColumnType::Float64 => Slot::F64(v),
            ColumnType::Int32 | ColumnType::Int64 => {
                return Err(format!("{v} is not an integer"));
            }
            ColumnType::Decimal(p, s) => Slot::I128(parse_decimal(&v.to_string(), p, s)?),
            ColumnType::String | ColumnType::Json => self.push_str(&v.to_string()),
            other => return Err(format!("expected {}, found a number", type_name(other))),
        };
        Ok(())
    }

    /// Set a `json` column to a value's JSON text.
    pub fn set_raw_json(&mut self, col: usize, raw: &str) -> Result<(), String> {
        match self.columns[col].ty {
            ColumnType::Json => {
                self.slots[col] = self.push_str(raw);
                Ok(())
            }
            other => Err(format!(
                "expected {}, found an object or array (declare the column as json to keep it as text)",
                type_name(other)
            )),
        }
    }

    /// The text of a slot, as rules compare it.
    fn slot_text(&self, col: usize) -> Option<std::borrow::Cow<'_, str>> {
        use std::borrow::Cow;
        Some(match self.slots[col] {
            Slot::Missing | Slot::Null => return None,
            Slot::Str(s, e) => Cow::Borrowed(&self.scratch[s as usize..e as usize]),
            Slot::Bool(v) => Cow::Owned(v.to_string()),
            Slot::I64(v) => Cow::Owned(v.to_string()),
            Slot::F64(v) => Cow::Owned(v.to_string()),
            Slot::I128(v) => {
                let scale = match self.columns[col].ty {
                    ColumnType::Decimal(_, s) => s,
                    _ => 0,
                };
                Cow::Owned(
                    <Decimal128Type as arrow::datatypes::DecimalType>::format_decimal(v, 38, scale),
                )
            }
        })
    }

    /// The numeric value of a slot, for ranges.
    fn slot_number(&self, col: usize) -> Option<f64> {
        match self.slots[col] {
            Slot::I64(v) => Some(v as f64),
            Slot::F64(v) => Some(v),
            Slot::I128(v) => {
                let scale = match self.columns[col].ty {
                    ColumnType::Decimal(_, s) => s,
                    _ => 0,
                };
                Some(v as f64 / 10f64.powi(scale as i32))
            }
            _ => None,
        }
    }

    /// Check the row against the quality rules: the first broken rule's message.
    fn check_rules(&mut self) -> Result<(), String> {
        for rule in &self.rules {
            let col = rule.column;
            let name = &self.columns[col].name;
            let broken = match &rule.check {
                Check::Required => matches!(self.slots[col], Slot::Missing | Slot::Null)
                    .then(|| format!("'{name}' is null or missing")),
                Check::Accepted(values) => self.slot_text(col).and_then(|v| {
                    (!values.iter().any(|a| a == v.as_ref()))
                        .then(|| format!("'{name}' = {v:?} is not an accepted value"))
                }),
                Check::Range { min, max } => self.slot_number(col).and_then(|v| {
                    let low = min.is_some_and(|m| v < m);
                    let high = max.is_some_and(|m| v > m);
                    (low || high).then(|| {
                        format!(
                            "'{name}' = {v} is outside [{}, {}]",
                            min.map_or("-inf".into(), |m| m.to_string()),
                            max.map_or("inf".into(), |m| m.to_string())
                        )
                    })
                }),
                Check::Pattern(re) => self.slot_text(col).and_then(|v| {
                    (!re.is_match(&v))
                        .then(|| format!("'{name}' = {v:?} does not match /{}/", re.as_str()))
                }),
                Check::Unique => None,
            };
            if let Some(message) = broken {
                return Err(format!("rule '{}': {message}", rule.name));
            }
        }
        // Unique rules last, so a row rejected by another rule takes no value.
        let mut keys = Vec::new();
        for (i, rule) in self.rules.iter().enumerate() {
            if matches!(rule.check, Check::Unique)
                && let Some(v) = self.slot_text(rule.column)
            {
                let key = v.as_bytes().to_vec();
                if self.seen[i].contains(&key) {
                    return Err(format!(
                        "rule '{}': '{}' = {:?} was already seen in this chunk",
                        rule.name, self.columns[rule.column].name, v
                    ));
                }
                keys.push((i, key));
            }
        }
        for (i, key) in keys {
            self.seen[i].insert(key);
        }
        Ok(())
    }

    /// Check the row's rules, then append its values to the builders.
    pub fn finish_row(&mut self) -> Result<(), String> {
        if !self.rules.is_empty() {
            self.check_rules()?;
        }
        self.discarded += self.row_discarded;
        self.append_row();
        Ok(())
    }

    fn append_row(&mut self) {
        for (slot, builder) in self.slots.iter().zip(self.builders.iter_mut()) {
            match (builder, *slot) {
                (ColumnBuilder::Str(b), Slot::Str(s, e)) => {
                    b.append_value(&self.scratch[s as usize..e as usize])
                }
                (ColumnBuilder::Str(b), _) => b.append_null(),
                (ColumnBuilder::Bool(b), Slot::Bool(v)) => b.append_value(v),
                (ColumnBuilder::Bool(b), _) => b.append_null(),
                (ColumnBuilder::I32(b), Slot::I64(v)) => b.append_value(v as i32),
                (ColumnBuilder::I32(b), _) => b.append_null(),
                (ColumnBuilder::I64(b), Slot::I64(v)) => b.append_value(v),
                (ColumnBuilder::I64(b), _) => b.append_null(),
                (ColumnBuilder::F64(b), Slot::F64(v)) => b.append_value(v),
                (ColumnBuilder::F64(b), _) => b.append_null(),
                (ColumnBuilder::Date(b), Slot::I64(v)) => b.append_value(v as i32),
                (ColumnBuilder::Date(b), _) => b.append_null(),
                (ColumnBuilder::Ts(b), Slot::I64(v)) => b.append_value(v),
                (ColumnBuilder::Ts(b), _) => b.append_null(),
                (ColumnBuilder::Dec(b), Slot::I128(v)) => b.append_value(v),
                (ColumnBuilder::Dec(b), _) => b.append_null(),
            }
        }
        self.rows += 1;
    }

    /// The rows appended so far as a batch; the builder starts empty again.
    pub fn finish_batch(&mut self) -> RecordBatch {
        let arrays: Vec<ArrayRef> = self
            .builders
            .iter_mut()
            .map(|b| -> ArrayRef {
                match b {
                    ColumnBuilder::Str(b) => Arc::new(b.finish()),
                    ColumnBuilder::Bool(b) => Arc::new(b.finish()),
                    ColumnBuilder::I32(b) => Arc::new(b.finish()),
                    ColumnBuilder::I64(b) => Arc::new(b.finish()),
                    ColumnBuilder::F64(b) => Arc::new(b.finish()),
                    ColumnBuilder::Date(b) => Arc::new(b.finish()),
                    ColumnBuilder::Ts(b) => Arc::new(b.finish()),
                    ColumnBuilder::Dec(b) => Arc::new(b.finish()),
                }
            })
            .collect();
        let rows = self.rows;
        self.rows = 0;
        self.builders = self.fresh_builders(rows, |i| {
            arrays[i]
                .as_string_opt::<i32>()
                .map_or(0, |s| s.values().len())
        });
        RecordBatch::try_new_with_options(
            self.schema.clone(),
            arrays,
            &arrow::array::RecordBatchOptions::new().with_row_count(Some(rows)),
        )
        .expect("builders match the declared schema")
    }
}

/// The name of a type as written in the config.
pub fn type_name(t: ColumnType) -> String {
    match t {
        ColumnType::String => "string".into(),
        ColumnType::Bool => "bool".into(),
        ColumnType::Int32 => "int32".into(),
        ColumnType::Int64 => "int64".into(),
        ColumnType::Float64 => "float64".into(),
        ColumnType::Date => "date".into(),
        ColumnType::Timestamp => "timestamp".into(),
        ColumnType::Decimal(p, s) => format!("decimal({p},{s})"),
        ColumnType::Json => "json".into(),
    }
}

fn parse_bool(text: &str) -> Result<bool, String> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("true")
        || t == "1"
        || t.eq_ignore_ascii_case("t")
        || t.eq_ignore_ascii_case("yes")
    {
        Ok(true)
    } else if t.eq_ignore_ascii_case("false")
        || t == "0"
        || t.eq_ignore_ascii_case("f")
        || t.eq_ignore_ascii_case("no")
    {
        Ok(false)
    } else {
        Err(format!("{text:?} is not a boolean"))
    }
}

fn parse_int(text: &str, int32: bool) -> Result<i64, String> {
    let v: i64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not an integer"))?;
    if int32 && i32::try_from(v).is_err() {
        return Err(format!("{v} is out of range for int32"));
    }
    Ok(v)
}

/// Days since 1970-01-01 of a `YYYY-MM-DD` date.
pub fn parse_date(text: &str) -> Result<i32, String> {
    let d = chrono::NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
        .map_err(|_| format!("{text:?} is not a date (YYYY-MM-DD)"))?;
    Ok(chrono::Datelike::num_days_from_ce(&d) - EPOCH_DAYS_CE)
}

/// Microseconds since the epoch, UTC, of an RFC 3339 / ISO 8601 timestamp.
/// A timestamp without an offset is taken as UTC.
pub fn parse_timestamp(text: &str) -> Result<i64, String> {
    let dt = string_to_datetime(&chrono::Utc, text.trim()).map_err(|_| {
        format!("{text:?} is not a timestamp (RFC 3339, e.g. 2026-11-25T10:00:00Z)")
    })?;
    Ok(dt.timestamp_micros())
}

fn parse_decimal(text: &str, p: u8, s: i8) -> Result<i128, String> {
    arrow::compute::kernels::cast_utils::parse_decimal::<Decimal128Type>(text.trim(), p, s)
        .map_err(|_| format!("{text:?} does not fit decimal({p},{s})"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Int64Type, TimestampMicrosecondType};

    fn cols() -> Vec<Column> {
        vec![
            Column {
                name: "a".into(),
                ty: ColumnType::Int64,
            },
            Column {
                name: "t".into(),
                ty: ColumnType::Timestamp,
            },
            Column {
                name: "s".into(),
                ty: ColumnType::String,
            },
        ]
    }

    fn schema(c: &[Column]) -> SchemaRef {
        crate::config::arrow_schema(c)
    }

    #[test]
    fn a_failed_row_leaves_nothing_behind() {
        let c = cols();
        let mut b = BatchBuilder::new(schema(&c), &c);
        b.begin_row();
        b.set_text(0, "7").unwrap();
        b.set_text(1, "2026-11-25T10:00:00+01:00").unwrap();
        b.finish_row().unwrap();
        b.begin_row();
        b.set_text(0, "8").unwrap();
        assert!(
            b.set_text(1, "yesterday")
                .unwrap_err()
                .contains("not a timestamp")
        );
        // The bad row is abandoned: begin the next one.
        b.begin_row();
        b.set_text(2, "x").unwrap();
        b.finish_row().unwrap();
        let batch = b.finish_batch();
        assert_eq!(batch.num_rows(), 2);
        let a = batch.column(0).as_primitive::<Int64Type>();
        assert_eq!(a.value(0), 7);
        assert!(a.is_null(1));
        let t = batch.column(1).as_primitive::<TimestampMicrosecondType>();
        assert_eq!(t.value(0), 1_795_597_200_000_000);
    }

    #[test]
    fn dates_and_decimals() {
        assert_eq!(parse_date("1970-01-02"), Ok(1));
        assert_eq!(parse_date("2026-11-25"), Ok(20782));
        assert_eq!(parse_decimal("19.99", 10, 2), Ok(1999));
        assert!(parse_decimal("1e400", 10, 2).is_err());
    }
}
