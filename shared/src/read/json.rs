//! JSON Lines: one object per line, decoded straight into the row builder
//! with serde (no intermediate `Value`), unknown fields skipped, nested values
//! of `json` columns kept as their JSON text.

use std::collections::HashMap;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::rows::{BatchBuilder, type_name};
use crate::config::ColumnType;

/// Column index by field name. Looked up for every field of every record, so
/// with a fast fixed hasher (foldhash) rather than SipHash, which took 4% of
/// the time of a JSON Lines ingest; field names are not attacker-chosen keys
/// of a long-lived table (the map holds only the table's columns).
type FieldIndex = HashMap<String, usize, foldhash::fast::FixedState>;

/// Decodes JSON Lines records into a [`BatchBuilder`].
pub struct JsonDecoder {
    index: FieldIndex,
}

impl JsonDecoder {
    pub fn new(builder: &BatchBuilder) -> Self {
        JsonDecoder {
            index: builder
                .columns()
                .iter()
                .enumerate()
                .map(|(i, c)| (c.name.clone(), i))
                .collect(),
        }
    }

    /// Decode one line (without its newline). Blank lines yield no row
    /// (`Ok(false)`). On error the row is not appended.
    pub fn decode_line(&self, line: &[u8], out: &mut BatchBuilder) -> Result<bool, String> {
        if line.iter().all(|b| b.is_ascii_whitespace()) {
            return Ok(false);
        }
        out.begin_row();
        let mut de = serde_json::Deserializer::from_slice(line);
        RowSeed {
            index: &self.index,
            out,
        }
        .deserialize(&mut de)
        .map_err(|e| within_record(&e))?;
        de.end()
            .map_err(|e| format!("text after the object: {e}"))?;
        out.finish_row();
        Ok(true)
    }
}

/// serde_json says "at line 1 column N": within one record, only the column matters.
fn within_record(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rsplit_once(" at line ") {
        Some((message, _)) if e.column() > 0 => {
            format!("{message} (column {} of the record)", e.column())
        }
        _ => text,
    }
}

struct RowSeed<'a> {
    index: &'a FieldIndex,
    out: &'a mut BatchBuilder,
}

impl<'de> DeserializeSeed<'de> for RowSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RowSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(col) = map.next_key_seed(KeySeed(self.index))? {
            match col {
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
                Some(col) => {
                    let ty = self.out.columns()[col].ty;
                    let r = if ty == ColumnType::Json {
                        let raw: &'de RawValue = map.next_value()?;
                        let text = raw.get();
                        if text == "null" {
                            self.out.set_null(col);
                            Ok(())
                        } else {
                            self.out.set_raw_json(col, text)
                        }
                    } else {
                        map.next_value_seed(ValueSeed { col, out: self.out })?
                    };
                    if let Err(msg) = r {
                        let name = &self.out.columns()[col].name;
                        return Err(de::Error::custom(format!("field '{name}': {msg}")));
                    }
                }
            }
        }
        Ok(())
    }
}

struct KeySeed<'a>(&'a FieldIndex);

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Option<usize>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<usize>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = Option<usize>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Option<usize>, E> {
        Ok(self.0.get(v).copied())
    }
}

/// Decodes one value into column `col`; the inner `Result` carries a
/// conversion error (wrong type, bad text) to be reported with the field name.
struct ValueSeed<'a> {
    col: usize,
    out: &'a mut BatchBuilder,
}

type Conv = Result<(), String>;

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Conv;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Conv, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = Conv;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Conv, E> {
        Ok(self.out.set_bool(self.col, v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Conv, E> {
        Ok(self.out.set_i64(self.col, v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Conv, E> {
        Ok(match i64::try_from(v) {
            Ok(v) => self.out.set_i64(self.col, v),
            Err(_) => self.out.set_f64(self.col, v as f64),
        })
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Conv, E> {
        Ok(self.out.set_f64(self.col, v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Conv, E> {
        Ok(self.out.set_text(self.col, v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Conv, E> {
        self.out.set_null(self.col);
        Ok(Ok(()))
    }
    fn visit_none<E: de::Error>(self) -> Result<Conv, E> {
        self.visit_unit()
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Conv, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Err(nested(self.out.columns()[self.col].ty, "an object")))
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Conv, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Err(nested(self.out.columns()[self.col].ty, "an array")))
    }
}

fn nested(ty: ColumnType, what: &str) -> String {
    format!(
        "expected {}, found {what} (declare the column as json to keep it as text)",
        type_name(ty)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Column, arrow_schema};
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Decimal128Type, Int64Type};

    fn builder() -> BatchBuilder {
        let cols = vec![
            Column {
                name: "id".into(),
                ty: ColumnType::Int64,
            },
            Column {
                name: "name".into(),
                ty: ColumnType::String,
            },
            Column {
                name: "props".into(),
                ty: ColumnType::Json,
            },
            Column {
                name: "price".into(),
                ty: ColumnType::Decimal(10, 2),
            },
        ];
        BatchBuilder::new(arrow_schema(&cols), &cols)
    }

    #[test]
    fn decodes_fields_skips_unknown_and_keeps_json_text() {
        let mut b = builder();
        let d = JsonDecoder::new(&b);
        let line = br#"{"id": 1, "extra": {"deep": [1,2]}, "name": "caf\u00e9", "props": {"a": [1, {"b": null}]}, "price": 19.99}"#;
        assert_eq!(d.decode_line(line, &mut b), Ok(true));
        assert_eq!(d.decode_line(b"  ", &mut b), Ok(false));
        assert_eq!(
            d.decode_line(br#"{"name": 5, "props": null}"#, &mut b),
            Ok(true)
        );
        let batch = b.finish_batch();
        assert_eq!(batch.num_rows(), 2);
        assert_eq!(batch.column(0).as_primitive::<Int64Type>().value(0), 1);
        assert!(batch.column(0).is_null(1));
        let names = batch.column(1).as_string::<i32>();
        assert_eq!(names.value(0), "café");
        assert_eq!(names.value(1), "5");
        let props = batch.column(2).as_string::<i32>();
        assert_eq!(props.value(0), r#"{"a": [1, {"b": null}]}"#);
        assert!(props.is_null(1));
        assert_eq!(
            batch.column(3).as_primitive::<Decimal128Type>().value(0),
            1999
        );
    }

    #[test]
    fn errors_name_the_field() {
        let mut b = builder();
        let d = JsonDecoder::new(&b);
        let e = d.decode_line(br#"{"id": "x1"}"#, &mut b).unwrap_err();
        assert!(
            e.contains("field 'id'") && e.contains("not an integer"),
            "{e}"
        );
        let e = d.decode_line(br#"{"name": {"a": 1}}"#, &mut b).unwrap_err();
        assert!(
            e.contains("field 'name'") && e.contains("declare the column as json"),
            "{e}"
        );
        let e = d.decode_line(br#"[1, 2]"#, &mut b).unwrap_err();
        assert!(e.contains("object"), "{e}");
        let e = d
            .decode_line(br#"{"id": 1} {"id": 2}"#, &mut b)
            .unwrap_err();
        assert!(e.contains("text after"), "{e}");
        let e = d.decode_line(br#"{"id": 1"#, &mut b).unwrap_err();
        assert!(e.contains("EOF"), "{e}");
        assert_eq!(b.finish_batch().num_rows(), 0);
    }
}
