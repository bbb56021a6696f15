//! JSON Lines: one object per line, decoded straight into the row builder
//! with serde (no intermediate `Value`), unknown fields skipped, nested values
//! of `json` columns kept as their JSON text.

use std::collections::HashMap;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::rows::{BatchBuilder, type_name};
use crate::config::{ColumnType, UnknownFields};

/// Column index by field name. Looked up for every field of every record, so
/// with a fast fixed hasher (foldhash) rather than SipHash, which took 4% of
/// the time of a JSON Lines ingest; field names are not attacker-chosen keys
/// of a long-lived table (the map holds only the table's columns).
type FieldIndex = HashMap<String, usize, foldhash::fast::FixedState>;

/// Decodes JSON Lines records into a [`BatchBuilder`].
pub struct JsonDecoder {
    index: FieldIndex,
    unknown: UnknownFields,
    /// Under `evolve`: fields not in the schema, with the type their values suggest.
    pub discovered: Discovered,
    /// How many more columns evolution may add.
    pub room: usize,
}

/// Fields found under `unknown_fields = "evolve"`, in the order first seen.
pub type Discovered = indexmap::IndexMap<String, ColumnType>;

/// At most this many columns are added to a table by evolution; fields past
/// it are dropped and counted, so a stream of random keys cannot grow a table
/// without end.
pub const MAX_EVOLVED_COLUMNS: usize = 200;

impl JsonDecoder {
    /// A decoder for the builder's columns, treating unknown fields as `unknown` says.
    pub fn new(builder: &BatchBuilder, unknown: UnknownFields) -> Self {
        JsonDecoder {
            index: builder
                .columns()
                .iter()
                .enumerate()
                .map(|(i, c)| (c.name.clone(), i))
                .collect(),
            unknown,
            discovered: Discovered::default(),
            room: MAX_EVOLVED_COLUMNS,
        }
    }

    /// Decode one line (without its newline). `Ok(false)` for a blank line;
    /// `Err` (the reason) when the record cannot be read or does not fit.
    pub fn decode_line(&mut self, line: &[u8], out: &mut BatchBuilder) -> Result<bool, String> {
        if line.iter().all(|b| b.is_ascii_whitespace()) {
            return Ok(false);
        }
        // One UTF-8 check of the whole line, then a reader that trusts it:
        // reading from bytes checked each string on its own (5% of a job).
        let line = std::str::from_utf8(line).map_err(|e| {
            format!(
                "invalid unicode: the record is not UTF-8 (column {} of the record)",
                e.valid_up_to() + 1
            )
        })?;
        out.begin_row();
        let mut de = serde_json::Deserializer::from_str(line);
        RowSeed {
            index: &self.index,
            unknown: self.unknown,
            discovered: &mut self.discovered,
            room: self.room,
            out,
        }
        .deserialize(&mut de)
        .map_err(|e| within_record(&e))?;
        de.end()
            .map_err(|e| format!("text after the object: {e}"))?;
        out.finish_row()?;
        Ok(true)
    }
}

/// Whether a field name can become a column: a letter or `_`, then letters,
/// digits and `_`, at most 128 characters, as Glue and Hive take them.
pub fn evolvable_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 128
}

/// The type that holds values of both `a` and `b`.
pub fn widen(a: ColumnType, b: ColumnType) -> ColumnType {
    use ColumnType::*;
    match (a, b) {
        (a, b) if a == b => a,
        (Int64, Float64) | (Float64, Int64) => Float64,
        (Json, _) | (_, Json) => Json,
        _ => String,
    }
}

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
    unknown: UnknownFields,
    discovered: &'a mut Discovered,
    room: usize,
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
        let named = self.unknown != UnknownFields::DiscardValue;
        while let Some(key) = map.next_key_seed(KeySeed(self.index, named))? {
            match key {
                Key::Unknown => {
                    map.next_value::<IgnoredAny>()?;
                    self.out.discard_unknown();
                }
                Key::Named(name) => match self.unknown {
                    UnknownFields::Freeze => {
                        return Err(de::Error::custom(format!(
                            "unknown field '{name}' (the table's contract freezes its columns)"
                        )));
                    }
                    _ => {
                        let ty = map.next_value_seed(InferSeed)?;
                        let room = self.discovered.len() < self.room;
                        match ty {
                            Some(ty) if evolvable_name(&name) => {
                                if let Some(t) = self.discovered.get_mut(&name) {
                                    *t = widen(*t, ty);
                                } else if room {
                                    self.discovered.insert(name, ty);
                                } else {
                                    self.out.discard_unknown();
                                }
                            }
                            Some(_) => self.out.discard_unknown(),
                            None => {}
                        }
                    }
                },
                Key::Col(col) => {
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
                    if let Err(msg) = r.or_else(|msg| self.out.bad_value(col, msg)) {
                        let name = &self.out.columns()[col].name;
                        return Err(de::Error::custom(format!("field '{name}': {msg}")));
                    }
                }
            }
        }
        Ok(())
    }
}

/// A field name: a declared column, or an unknown field (named when the contract needs the name).
enum Key {
    Col(usize),
    Unknown,
    Named(String),
}

struct KeySeed<'a>(&'a FieldIndex, bool);

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Key;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Key, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = Key;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
        Ok(match self.0.get(v) {
            Some(&c) => Key::Col(c),
            None if self.1 => Key::Named(v.to_string()),
            None => Key::Unknown,
        })
    }
}

/// The column type a JSON value suggests (`None` for null, which says nothing).
struct InferSeed;

impl<'de> DeserializeSeed<'de> for InferSeed {
    type Value = Option<ColumnType>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for InferSeed {
    type Value = Option<ColumnType>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Some(ColumnType::Bool))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Some(ColumnType::Int64))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(if i64::try_from(v).is_ok() {
            ColumnType::Int64
        } else {
            ColumnType::Float64
        }))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Some(ColumnType::Float64))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Some(ColumnType::String))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Some(ColumnType::Json))
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Some(ColumnType::Json))
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
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Decimal128Type, Int64Type};

    fn builder() -> BatchBuilder {
        BatchBuilder::of(&[
            ("id", ColumnType::Int64),
            ("name", ColumnType::String),
            ("props", ColumnType::Json),
            ("price", ColumnType::Decimal(10, 2)),
        ])
    }

    #[test]
    fn decodes_fields_skips_unknown_and_keeps_json_text() {
        let mut b = builder();
        let mut d = JsonDecoder::new(&b, UnknownFields::DiscardValue);
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
        let mut d = JsonDecoder::new(&b, UnknownFields::DiscardValue);
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
        let e = d
            .decode_line(b"{\"name\": \"caf\xe9\"}", &mut b)
            .unwrap_err();
        assert!(
            e.contains("invalid unicode") && e.contains("column 14 of the record"),
            "{e}"
        );
        assert_eq!(b.finish_batch().num_rows(), 0);
    }
}
