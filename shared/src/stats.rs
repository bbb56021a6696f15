//! A data file's column statistics, in the form of a Delta Lake `add`
//! action's `stats`: row count, and per top-level column the smallest and
//! largest value and the number of nulls. Taken from the Parquet footer the
//! writer already holds (its row groups' statistics), so no data is read
//! again. Readers use them to skip files (data skipping), so each value is a
//! bound, never a guess: a column whose statistics are missing in any row
//! group gets no minimum or maximum, and types whose JSON form could lose
//! precision (decimals of more than 15 digits) or that Delta does not bound
//! (booleans, binary, nested) get none either.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use arrow::array::{Array, ArrayRef, UInt64Array};
use arrow::datatypes::{DataType, Schema};
use datafusion::scalar::ScalarValue;
use parquet::arrow::arrow_reader::statistics::StatisticsConverter;
use parquet::file::metadata::ParquetMetaData;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Delta's `stats` of one file (`numRecords`, `minValues`, `maxValues`,
/// `nullCount`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct FileStats {
    pub num_records: u64,
    pub min_values: BTreeMap<String, Value>,
    pub max_values: BTreeMap<String, Value>,
    pub null_count: BTreeMap<String, u64>,
}

/// The statistics of a file written with `schema` (its columns, partition
/// columns excluded), from its footer.
pub fn from_footer(meta: &ParquetMetaData, schema: &Schema) -> FileStats {
    let groups = meta.row_groups();
    let rows: Vec<u64> = groups.iter().map(|g| g.num_rows() as u64).collect();
    let mut stats = FileStats {
        num_records: rows.iter().sum(),
        ..FileStats::default()
    };
    let parquet_schema = meta.file_metadata().schema_descr();
    for field in schema.fields() {
        let dtype = field.data_type();
        if dtype.is_nested() {
            continue;
        }
        let Ok(converter) = StatisticsConverter::try_new(field.name(), schema, parquet_schema)
        else {
            continue;
        };
        let Ok(nulls) = converter.row_group_null_counts(groups) else {
            continue;
        };
        if nulls.null_count() > 0 {
            // A row group without a null count: nothing is known.
            continue;
        }
        stats
            .null_count
            .insert(field.name().clone(), nulls.values().iter().sum());
        if !bounded(dtype) {
            continue;
        }
        let (Ok(mins), Ok(maxes)) = (
            converter.row_group_mins(groups),
            converter.row_group_maxes(groups),
        ) else {
            continue;
        };
        let min = extreme(&mins, &nulls, &rows, Ordering::Less).and_then(|v| json(&v));
        let max = extreme(&maxes, &nulls, &rows, Ordering::Greater).and_then(|v| json(&v));
        if let (Some(min), Some(max)) = (min, max) {
            stats.min_values.insert(field.name().clone(), min);
            stats.max_values.insert(field.name().clone(), max);
        }
    }
    stats
}

/// Types whose bounds Delta readers use and whose JSON form is exact.
fn bounded(dtype: &DataType) -> bool {
    match dtype {
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::Float32
        | DataType::Float64
        | DataType::Utf8
        | DataType::LargeUtf8
        | DataType::Utf8View
        | DataType::Date32
        | DataType::Timestamp(_, _) => true,
        DataType::Decimal128(precision, _) => *precision <= 15,
        _ => false,
    }
}

/// The least (`Less`) or greatest (`Greater`) of the row groups' values.
/// `None` when a row group that holds values has no statistic for them (no
/// bound is known), or when every value is null.
fn extreme(
    values: &ArrayRef,
    nulls: &UInt64Array,
    rows: &[u64],
    want: Ordering,
) -> Option<ScalarValue> {
    let mut best: Option<ScalarValue> = None;
    for (i, &rows) in rows.iter().enumerate() {
        if values.is_null(i) {
            if nulls.value(i) < rows {
                return None;
            }
            continue;
        }
        let v = ScalarValue::try_from_array(values, i).ok()?;
        let better = match &best {
            None => true,
            Some(b) => v.partial_cmp(b)? == want,
        };
        if better {
            best = Some(v);
        }
    }
    best
}

/// A value as Delta writes it in `stats`: numbers as JSON numbers, strings
/// as strings, dates as `YYYY-MM-DD`, timestamps as ISO 8601 in UTC with
/// milliseconds (cut down, as Delta's writers do; readers widen a maximum
/// by the lost microseconds).
fn json(v: &ScalarValue) -> Option<Value> {
    Some(match v {
        ScalarValue::Int8(Some(x)) => Value::from(*x),
        ScalarValue::Int16(Some(x)) => Value::from(*x),
        ScalarValue::Int32(Some(x)) => Value::from(*x),
        ScalarValue::Int64(Some(x)) => Value::from(*x),
        ScalarValue::UInt8(Some(x)) => Value::from(*x),
        ScalarValue::UInt16(Some(x)) => Value::from(*x),
        ScalarValue::UInt32(Some(x)) => Value::from(*x),
        ScalarValue::Float32(Some(x)) if x.is_finite() => Value::from(*x as f64),
        ScalarValue::Float64(Some(x)) if x.is_finite() => Value::from(*x),
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => Value::from(s.as_str()),
        ScalarValue::Date32(Some(d)) => {
            let date = chrono::NaiveDate::from_num_days_from_ce_opt(719_163 + d)?;
            Value::from(date.format("%Y-%m-%d").to_string())
        }
        ScalarValue::TimestampSecond(Some(t), tz) => timestamp(*t * 1_000_000, tz.is_some())?,
        ScalarValue::TimestampMillisecond(Some(t), tz) => timestamp(*t * 1_000, tz.is_some())?,
        ScalarValue::TimestampMicrosecond(Some(t), tz) => timestamp(*t, tz.is_some())?,
        ScalarValue::TimestampNanosecond(Some(t), tz) => {
            timestamp(t.div_euclid(1_000), tz.is_some())?
        }
        ScalarValue::Decimal128(Some(x), _, scale) => {
            serde_json::from_str(&decimal_text(*x, *scale)).ok()?
        }
        _ => return None,
    })
}

/// Microseconds since the epoch as Delta's stats write them: UTC with a
/// `Z` for `timestamp`, without a zone for `timestamp_ntz`.
fn timestamp(micros: i64, utc: bool) -> Option<Value> {
    let millis = micros.div_euclid(1_000);
    let t = chrono::DateTime::from_timestamp_millis(millis)?;
    let zone = if utc { "Z" } else { "" };
    Some(Value::from(format!(
        "{}{zone}",
        t.naive_utc().format("%Y-%m-%dT%H:%M:%S%.3f")
    )))
}

fn decimal_text(unscaled: i128, scale: i8) -> String {
    if scale <= 0 {
        return (unscaled * 10i128.pow(scale.unsigned_abs() as u32)).to_string();
    }
    let digits = unscaled.unsigned_abs().to_string();
    let scale = scale as usize;
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = padded.split_at(padded.len() - scale);
    let sign = if unscaled < 0 { "-" } else { "" };
    format!("{sign}{int}.{frac}")
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{
        BooleanArray, Date32Array, Decimal128Array, Float64Array, Int64Array, RecordBatch,
        StringArray, TimestampMicrosecondArray,
    };
    use arrow::datatypes::{Field, TimeUnit};
    use parquet::arrow::ArrowWriter;
    use parquet::file::properties::WriterProperties;
    use serde_json::json;

    use super::*;

    fn write(batches: &[RecordBatch], row_group_rows: usize) -> ParquetMetaData {
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(row_group_rows))
            .build();
        let mut out = Vec::new();
        let mut w = ArrowWriter::try_new(&mut out, batches[0].schema(), Some(props)).unwrap();
        for b in batches {
            w.write(b).unwrap();
        }
        w.close().unwrap()
    }

    fn schema() -> Arc<Schema> {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
            Field::new("price", DataType::Decimal128(10, 2), true),
            Field::new(
                "at",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
            Field::new("day", DataType::Date32, true),
            Field::new("ratio", DataType::Float64, true),
            Field::new("flag", DataType::Boolean, true),
            Field::new("empty", DataType::Utf8, true),
        ]))
    }

    #[test]
    fn bounds_and_null_counts_over_every_row_group() {
        let batch = RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(Int64Array::from(vec![
                    Some(7),
                    None,
                    Some(-3),
                    Some(42),
                    Some(5),
                ])),
                Arc::new(StringArray::from(vec![
                    Some("pear"),
                    Some("apple"),
                    None,
                    Some("zebra"),
                    Some("mango"),
                ])),
                Arc::new(
                    Decimal128Array::from(vec![Some(1999), Some(-5), Some(100_000), None, Some(0)])
                        .with_precision_and_scale(10, 2)
                        .unwrap(),
                ),
                Arc::new(
                    TimestampMicrosecondArray::from(vec![
                        Some(1_763_456_789_123_456),
                        Some(1_763_456_789_000_001),
                        None,
                        Some(1_763_500_000_999_999),
                        Some(1_763_400_000_000_000),
                    ])
                    .with_timezone("UTC"),
                ),
                Arc::new(Date32Array::from(vec![
                    Some(20_410),
                    Some(20_409),
                    Some(20_412),
                    None,
                    None,
                ])),
                Arc::new(Float64Array::from(vec![
                    Some(0.5),
                    Some(-1.25),
                    None,
                    Some(3.0),
                    Some(2.0),
                ])),
                Arc::new(BooleanArray::from(vec![
                    Some(true),
                    Some(false),
                    None,
                    None,
                    None,
                ])),
                Arc::new(StringArray::from(vec![None::<&str>; 5])),
            ],
        )
        .unwrap();
        // Row groups of two rows: the bounds span all three.
        let meta = write(&[batch], 2);
        assert_eq!(meta.num_row_groups(), 3);
        let s = from_footer(&meta, &schema());
        assert_eq!(s.num_records, 5);
        let got = serde_json::to_value(&s).unwrap();
        assert_eq!(
            got,
            json!({
                "numRecords": 5,
                "minValues": {"id": -3, "name": "apple", "price": -0.05,
                              "at": "2025-11-17T17:20:00.000Z", "day": "2025-11-17", "ratio": -1.25},
                "maxValues": {"id": 42, "name": "zebra", "price": 1000.0,
                              "at": "2025-11-18T21:06:40.999Z", "day": "2025-11-20", "ratio": 3.0},
                "nullCount": {"id": 1, "name": 1, "price": 1, "at": 1, "day": 2, "ratio": 1,
                              "flag": 3, "empty": 5}
            })
        );
    }

    #[test]
    fn a_row_group_without_statistics_leaves_the_column_unbounded() {
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(1))
            .set_column_statistics_enabled(
                "id".into(),
                parquet::file::properties::EnabledStatistics::None,
            )
            .build();
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true)]));
        let batch =
            RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(vec![1, 2]))])
                .unwrap();
        let mut out = Vec::new();
        let mut w = ArrowWriter::try_new(&mut out, schema.clone(), Some(props)).unwrap();
        w.write(&batch).unwrap();
        let meta = w.close().unwrap();
        let s = from_footer(&meta, &schema);
        assert_eq!(s.num_records, 2);
        assert!(s.min_values.is_empty() && s.max_values.is_empty(), "{s:?}");
    }

    #[test]
    fn decimals_keep_their_scale_as_text() {
        assert_eq!(decimal_text(1999, 2), "19.99");
        assert_eq!(decimal_text(-5, 2), "-0.05");
        assert_eq!(decimal_text(7, 0), "7");
        assert_eq!(decimal_text(7, -2), "700");
        assert_eq!(decimal_text(-123_456, 3), "-123.456");
    }
}
