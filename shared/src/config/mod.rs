//! The pipeline file (TOML): the lake, and per table its source, format,
//! schema, SQL transform, partitioning and Parquet options.
//!
//! Raw serde structs (`deny_unknown_fields`, so a misspelt key is an error),
//! then [`PipelineConfig::validate`] turns them into typed [`Pipeline`]
//! settings. Every error names the table and the key.

use std::path::Path;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use indexmap::IndexMap;
use serde::Deserialize;

use crate::error::{Error, Result};

pub mod cdc;
pub mod contract;
pub mod csv;
pub mod lake;
pub mod lookup;
pub mod output;
pub mod source;

pub use cdc::*;
pub use contract::*;
pub use csv::*;
pub use lake::*;
pub use output::*;
pub use source::*;

/// The time zone every `timestamp` column is normalised to.
pub const UTC: &str = "UTC";

/// Metadata key marking a string column that holds JSON text (`json` type).
pub const JSON_EXTENSION: &str = "sluice.json";

/// The whole pipeline file, as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Where the lake lives.
    pub lake: LakeConfig,
    /// Where raw files are read from by `sluice run`.
    pub input: InputConfig,
    /// The tables; each raw file belongs to the first table whose `source` matches.
    pub tables: Vec<TableConfig>,
    /// Reference tables the tables' SQL may join (`[[lookups]]`).
    pub lookups: Vec<lookup::LookupConfig>,
    /// Bounds on what one process holds (`[limits]`).
    pub limits: LimitsConfig,
}

/// `[limits]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// The memory all lookups of a process share once decoded (`1GiB`); by
    /// default half a Lambda function's memory up to 1 GiB, else 1 GiB.
    pub lookup_memory: Option<String>,
}

/// `[input]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputConfig {
    /// The folder or URL that tables' `source` prefixes are relative to. `--input` overrides it.
    pub root: Option<String>,
}

/// `[[tables]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableConfig {
    /// Table name: lower case letters, digits and `_`, starting with a letter or `_`.
    pub name: String,
    /// A prefix under the input root (`clickstream/`) or a glob (`clickstream/**/*.jsonl.gz`).
    pub source: Option<String>,
    /// Instead of `source`: a Kinesis stream name or a Kafka topic whose
    /// records (one JSON object or CSV line each, or several lines) the
    /// `stream` function loads.
    pub stream: Option<String>,
    /// `jsonl`, `csv` or `parquet`.
    pub format: String,
    /// `auto` (from the file name: `.gz`, `.zst`), `none`, `gzip` or `zstd`.
    pub compression: Option<String>,
    /// Columns of the transformed rows that make up the Hive partition path, in order.
    #[serde(default)]
    pub partition_by: Vec<String>,
    /// `hive` or `delta`; by default the lake's `table_format`.
    pub table_format: Option<String>,
    /// Optional SQL over the table `input`; its result is what is written.
    pub sql: Option<String>,
    /// Column name to type: string, bool, int32, int64, float64, date, timestamp, decimal(p,s), json.
    #[serde(default)]
    pub schema: IndexMap<String, String>,
    /// CSV options.
    #[serde(default)]
    pub csv: CsvConfig,
    /// Parquet output options.
    #[serde(default)]
    pub parquet: ParquetConfig,
    /// Share of a chunk's records that may be quarantined before the chunk fails (default 0.1).
    #[serde(default = "default_max_rejected_ratio")]
    pub max_rejected_ratio: f64,
    /// The longest record kept (`1MiB`, `64MiB`; default 64 MiB). A longer
    /// record is quarantined (its first 4 KiB kept) and reading goes on.
    pub max_record_size: Option<String>,
    /// What to do with fields the schema does not declare and with values of the wrong type.
    #[serde(default)]
    pub contract: ContractConfig,
    /// Quality rules on the declared columns; a row that breaks one is quarantined with its name.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    /// Change data capture: the files are change events merged by key into the table.
    pub cdc: Option<CdcConfig>,
}

/// Input formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    JsonLines,
    Csv,
    Parquet,
}

/// Stream compression of a text input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    None,
    Gzip,
    Zstd,
}

impl Codec {
    /// The codec a file name implies (`.gz`, `.gzip`, `.zst`, `.zstd`).
    pub fn from_name(key: &str) -> Codec {
        let lower = key.to_ascii_lowercase();
        if lower.ends_with(".gz") || lower.ends_with(".gzip") {
            Codec::Gzip
        } else if lower.ends_with(".zst") || lower.ends_with(".zstd") {
            Codec::Zstd
        } else {
            Codec::None
        }
    }
}

/// The declared type of a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    String,
    Bool,
    Int32,
    Int64,
    Float64,
    Date,
    Timestamp,
    Decimal(u8, i8),
    Json,
}

impl ColumnType {
    /// Parse a type name as written in `[tables.schema]`.
    pub fn parse(text: &str) -> Option<ColumnType> {
        let t = text.trim().to_ascii_lowercase();
        Some(match t.as_str() {
            "string" | "str" | "utf8" | "varchar" => ColumnType::String,
            "bool" | "boolean" => ColumnType::Bool,
            "int32" | "int" | "integer" => ColumnType::Int32,
            "int64" | "bigint" | "long" => ColumnType::Int64,
            "float64" | "double" | "float" => ColumnType::Float64,
            "date" => ColumnType::Date,
            "timestamp" => ColumnType::Timestamp,
            "json" => ColumnType::Json,
            _ => {
                let inner = t.strip_prefix("decimal(")?.strip_suffix(')')?;
                let (p, s) = inner.split_once(',')?;
                let p: u8 = p.trim().parse().ok()?;
                let s: i8 = s.trim().parse().ok()?;
                if p == 0 || p > 38 || s < 0 || s as u8 > p {
                    return None;
                }
                ColumnType::Decimal(p, s)
            }
        })
    }

    /// The Arrow type values of this column have.
    pub fn arrow(self) -> DataType {
        match self {
            ColumnType::String | ColumnType::Json => DataType::Utf8,
            ColumnType::Bool => DataType::Boolean,
            ColumnType::Int32 => DataType::Int32,
            ColumnType::Int64 => DataType::Int64,
            ColumnType::Float64 => DataType::Float64,
            ColumnType::Date => DataType::Date32,
            ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into())),
            ColumnType::Decimal(p, s) => DataType::Decimal128(p, s),
        }
    }
}

/// One declared column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub ty: ColumnType,
}

impl Default for Contract {
    fn default() -> Self {
        Contract {
            unknown_fields: UnknownFields::DiscardValue,
            wrong_type: WrongType::Freeze,
        }
    }
}

/// Default longest record: 64 MiB.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 64 * 1024 * 1024;

/// A table's settings, checked.
#[derive(Debug, Clone)]
pub struct Table {
    pub name: String,
    pub source: SourceMatch,
    pub format: Format,
    /// `None` means: from the file name.
    pub compression: Option<Codec>,
    pub partition_by: Vec<String>,
    pub sql: Option<String>,
    /// Declared columns, in order.
    pub columns: Vec<Column>,
    pub csv: CsvOptions,
    pub parquet: ParquetOptions,
    /// Share of a chunk's records that may be quarantined before the chunk fails.
    pub max_rejected_ratio: f64,
    /// The longest record kept; a longer one is quarantined.
    pub max_record_bytes: usize,
    pub contract: Contract,
    pub rules: Vec<Rule>,
    pub table_format: TableFormat,
    /// Change data capture settings: `columns` then holds the reader's
    /// columns (the declared ones and the envelope's, see [`Cdc`]).
    pub cdc: Option<Cdc>,
}

/// How a table's files are made visible to readers. In a catalog's table
/// definition (the local catalog's JSON) a Hive table is `"parquet"`, a
/// Delta table `"delta"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, Deserialize)]
pub enum TableFormat {
    /// Hive-partitioned Parquet; partitions registered in the catalog.
    #[default]
    #[serde(rename = "parquet")]
    Hive,
    /// A Delta Lake table: files enter it by commits to `_delta_log/`.
    #[serde(rename = "delta")]
    Delta,
}

impl TableFormat {
    fn parse(n: Option<&str>, field: &str, text: &str) -> Result<TableFormat> {
        match text {
            "hive" => Ok(TableFormat::Hive),
            "delta" => Ok(TableFormat::Delta),
            other => Err(Error::config(
                n,
                field,
                format!("{other:?} is not a table format; use \"hive\" or \"delta\""),
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            TableFormat::Hive => "hive",
            TableFormat::Delta => "delta",
        }
    }
}

impl Table {
    /// The Arrow schema of the `input` table the SQL sees (the declared
    /// columns; for a CDC table, the staged changes' columns).
    pub fn input_schema(&self) -> SchemaRef {
        match &self.cdc {
            Some(c) => arrow_schema(&c.staged_columns()),
            None => arrow_schema(&self.columns),
        }
    }

    /// The Arrow schema the readers fill: `columns`.
    pub fn reader_schema(&self) -> SchemaRef {
        arrow_schema(&self.columns)
    }

    /// The folder a chunk's files go to, relative to the lake, and their partition keys.
    pub fn chunk_destination(&self) -> (String, Vec<String>) {
        match &self.cdc {
            Some(c) => (c.staging_folder(&self.name), Vec::new()),
            None => (self.name.clone(), self.partition_by.clone()),
        }
    }

    /// The codec for an object key.
    pub fn codec_for(&self, key: &str) -> Codec {
        self.compression.unwrap_or_else(|| Codec::from_name(key))
    }
}

/// The Arrow schema of declared columns; `json` columns are strings marked
/// with [`JSON_EXTENSION`] metadata.
pub fn arrow_schema(columns: &[Column]) -> SchemaRef {
    Arc::new(Schema::new(
        columns
            .iter()
            .map(|c| {
                let f = Field::new(&c.name, c.ty.arrow(), true);
                if c.ty == ColumnType::Json {
                    f.with_metadata([(JSON_EXTENSION.to_string(), "true".to_string())].into())
                } else {
                    f
                }
            })
            .collect::<Vec<_>>(),
    ))
}

/// The checked pipeline.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub lake_root: String,
    pub catalog: CatalogKind,
    pub input_root: Option<String>,
    pub tables: Vec<Table>,
    pub lookups: Vec<lookup::Lookup>,
    /// `[limits] lookup_memory` in bytes, if given.
    pub lookup_memory: Option<u64>,
}

impl Pipeline {
    /// Read and check a pipeline file.
    pub fn from_file(path: &Path) -> Result<Pipeline> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
        Pipeline::from_toml(&text)
            .map_err(|e| Error::Config(format!("{}: {}", path.display(), strip_prefix(&e))))
    }

    /// Parse and check pipeline TOML.
    pub fn from_toml(text: &str) -> Result<Pipeline> {
        let raw: PipelineConfig =
            toml::from_str(text).map_err(|e| Error::Config(e.to_string().trim().to_string()))?;
        raw.validate()
    }

    /// The table named `name`.
    pub fn table(&self, name: &str) -> Option<&Table> {
        self.tables.iter().find(|t| t.name == name)
    }

    /// The first table whose source matches `relative` (a key relative to the input root).
    pub fn table_for(&self, relative: &str) -> Option<&Table> {
        self.tables.iter().find(|t| t.source.matches(relative))
    }

    /// The table fed by the Kinesis stream or Kafka topic `name`.
    pub fn table_for_stream(&self, name: &str) -> Option<&Table> {
        self.tables
            .iter()
            .find(|t| matches!(&t.source, SourceMatch::Stream(s) if s == name))
    }
}

fn strip_prefix(e: &Error) -> String {
    let s = e.to_string();
    s.strip_prefix("config: ").unwrap_or(&s).to_string()
}

/// Whether `name` is a valid table or partition column name.
pub(crate) fn valid_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 128
}

pub(crate) fn one_byte(table: &str, key: &str, value: &str) -> Result<u8> {
    match value.as_bytes() {
        [b] if b.is_ascii() => Ok(*b),
        [b'\\', b't'] => Ok(b'\t'),
        _ => Err(Error::config(
            Some(table),
            key,
            format!("must be one ASCII character, not {value:?}"),
        )),
    }
}

impl PipelineConfig {
    /// Check every table and turn the file into typed settings.
    pub fn validate(self) -> Result<Pipeline> {
        if self.tables.is_empty() {
            return Err(Error::config(
                None,
                "tables",
                "the file declares no [[tables]]",
            ));
        }
        if self.lake.root.trim().is_empty() {
            return Err(Error::config(None, "lake.root", "must not be empty"));
        }
        if let Some(f) = &self.lake.table_format {
            TableFormat::parse(None, "lake.table_format", f)?;
        }
        let mut tables: Vec<Table> = Vec::new();
        for mut t in self.tables {
            if tables.iter().any(|o| o.name == t.name) {
                return Err(Error::config(Some(&t.name), "name", "declared twice"));
            }
            if t.table_format.is_none() {
                t.table_format = self.lake.table_format.clone();
            }
            let t = t.validate()?;
            if let SourceMatch::Stream(name) = &t.source
                && let Some(o) = tables
                    .iter()
                    .find(|o| matches!(&o.source, SourceMatch::Stream(s) if s == name))
            {
                return Err(Error::config(
                    Some(&t.name),
                    "stream",
                    format!(
                        "table '{}' already reads stream {name:?}: a stream feeds one table (its SQL can route records)",
                        o.name
                    ),
                ));
            }
            tables.push(t);
        }
        let mut lookups: Vec<lookup::Lookup> = Vec::new();
        for l in self.lookups {
            let l = l.validate()?;
            if lookups.iter().any(|o| o.name == l.name) {
                return Err(Error::Config(format!(
                    "lookup '{}', key 'name': declared twice",
                    l.name
                )));
            }
            lookups.push(l);
        }
        let lookup_memory = match &self.limits.lookup_memory {
            None => None,
            Some(text) => Some(parse_size(text).filter(|b| *b > 0).ok_or_else(|| {
                Error::config(
                    None,
                    "limits.lookup_memory",
                    format!("{text:?} is not a size (use bytes or a unit: 512MiB, 2GB)"),
                )
            })?),
        };
        Ok(Pipeline {
            lookups,
            lookup_memory,
            catalog: self.lake.catalog_kind()?,
            lake_root: self.lake.root,
            input_root: self.input.root,
            tables,
        })
    }
}

impl TableConfig {
    /// The table's `source` (files) or `stream`: one of them.
    fn source_of(
        &self,
        n: Option<&str>,
        format: Format,
        compression: Option<Codec>,
    ) -> Result<SourceMatch> {
        match (&self.source, &self.stream) {
            (Some(source), None) => parse_source(n, source),
            (None, Some(stream)) => parse_stream(n, stream, format, compression),
            (Some(_), Some(_)) => Err(Error::config(
                n,
                "stream",
                "a table reads files (`source`) or a stream (`stream`), not both",
            )),
            (None, None) => Err(Error::config(
                n,
                "source",
                "missing: give the files' prefix or glob (`source`), or a Kinesis stream or Kafka topic (`stream`)",
            )),
        }
    }

    /// One `[[tables]]` entry into a [`Table`]: each key handed to its own
    /// parser, each error naming the table and the key.
    pub fn validate(self) -> Result<Table> {
        let name = self.name.clone();
        let n = Some(name.as_str());
        if !valid_identifier(&name) {
            return Err(Error::config(
                n,
                "name",
                "must be lower case letters, digits and '_', starting with a letter or '_'",
            ));
        }
        let format = parse_format(n, &self.format)?;
        let compression = parse_codec(n, self.compression.as_deref(), format)?;
        let source = self.source_of(n, format, compression)?;
        let mut columns = parse_schema(n, &self.schema)?;
        check_partition_by(n, &self.partition_by)?;
        let csv = CsvOptions {
            // A stream's CSV records are lines without a header: their
            // fields are the declared columns, in order.
            header: self.csv.header && self.stream.is_none(),
            delimiter: one_byte(&name, "csv.delimiter", &self.csv.delimiter)?,
            quote: one_byte(&name, "csv.quote", &self.csv.quote)?,
            null_values: self.csv.null_values,
            newlines_in_values: self.csv.newlines_in_values,
        };
        let parquet = self.parquet.validate(n)?;
        if !(0.0..=1.0).contains(&self.max_rejected_ratio) {
            return Err(Error::config(
                n,
                "max_rejected_ratio",
                "must be between 0 and 1",
            ));
        }
        let max_record_bytes = parse_record_size(n, self.max_record_size.as_deref())?;
        let table_format = match &self.table_format {
            Some(f) => TableFormat::parse(n, "table_format", f)?,
            None => TableFormat::default(),
        };
        let contract = parse_contract(n, &self.contract)?;
        if contract.unknown_fields == UnknownFields::Evolve && format == Format::Parquet {
            return Err(Error::config(
                n,
                "contract.unknown_fields",
                "\"evolve\" applies to jsonl and csv tables; a Parquet table reads the declared columns",
            ));
        }
        let cdc = match &self.cdc {
            None => None,
            Some(c) => Some(parse_cdc(
                n,
                c,
                (self.sql.as_deref(), &self.partition_by),
                format,
                table_format,
                &mut columns,
            )?),
        };
        let rules = table_rules(n, &self.rules, cdc.as_ref(), &columns, format)?;
        Ok(Table {
            cdc,
            table_format,
            max_record_bytes,
            contract,
            rules,
            name,
            source,
            format,
            compression,
            partition_by: self.partition_by,
            sql: self.sql.filter(|s| !s.trim().is_empty()),
            columns,
            csv,
            parquet,
            // A stream batch that failed for its bad records would block its
            // shard (and the records after them) until they expire: a
            // stream's bad records are quarantined, however many.
            max_rejected_ratio: if self.stream.is_some() {
                1.0
            } else {
                self.max_rejected_ratio
            },
        })
    }
}

/// The table's quality rules, with a CDC table's own checks (its key, a
/// known operation) for text formats; a Parquet table takes none.
fn table_rules(
    n: Option<&str>,
    rules: &[RuleConfig],
    cdc: Option<&Cdc>,
    columns: &[Column],
    format: Format,
) -> Result<Vec<Rule>> {
    let mut rules = rules
        .iter()
        .enumerate()
        .map(|(i, r)| parse_rule(n, i, r, columns))
        .collect::<Result<Vec<_>>>()?;
    // Parquet change files have no raw text to quarantine: the stager
    // refuses a change without its key or with an unknown operation,
    // naming the file and row.
    if let Some(c) = cdc
        && format != Format::Parquet
    {
        rules.extend(cdc_rules(c, columns));
    }
    if !rules.is_empty() && format == Format::Parquet {
        return Err(Error::config(
            n,
            "rules",
            "quality rules apply to jsonl and csv tables (a Parquet table's rows have no raw text to quarantine); check Parquet inputs in the table's sql",
        ));
    }
    Ok(rules)
}

/// `format`: `jsonl` (or `ndjson`, `json`), `csv` or `parquet`.
pub(crate) fn parse_format(n: Option<&str>, text: &str) -> Result<Format> {
    match text.trim().to_ascii_lowercase().as_str() {
        "jsonl" | "ndjson" | "json" => Ok(Format::JsonLines),
        "csv" => Ok(Format::Csv),
        "parquet" => Ok(Format::Parquet),
        other => Err(Error::config(
            n,
            "format",
            format!("unknown format {other:?}: use jsonl, csv or parquet"),
        )),
    }
}

/// `compression` of the raw files: `auto` (from the file name, the default),
/// `none`, `gzip` or `zstd`; none for Parquet, which compresses itself.
fn parse_codec(n: Option<&str>, text: Option<&str>, format: Format) -> Result<Option<Codec>> {
    let codec = match text.map(|c| c.trim().to_ascii_lowercase()).as_deref() {
        None | Some("auto") => None,
        Some("none") => Some(Codec::None),
        Some("gzip" | "gz") => Some(Codec::Gzip),
        Some("zstd" | "zst") => Some(Codec::Zstd),
        Some(other) => {
            return Err(Error::config(
                n,
                "compression",
                format!("unknown compression {other:?}: use auto, none, gzip or zstd"),
            ));
        }
    };
    if format == Format::Parquet && matches!(codec, Some(Codec::Gzip | Codec::Zstd)) {
        return Err(Error::config(
            n,
            "compression",
            "Parquet files carry their own compression; leave this key out",
        ));
    }
    Ok(codec)
}

/// `[tables.schema]`: column name to type, in file order; at least one.
pub(crate) fn parse_schema(
    n: Option<&str>,
    schema: &IndexMap<String, String>,
) -> Result<Vec<Column>> {
    let mut columns = Vec::new();
    for (col, ty) in schema {
        if col.is_empty() {
            return Err(Error::config(n, "schema", "a column name is empty"));
        }
        let ty = ColumnType::parse(ty).ok_or_else(|| {
            Error::config(
                n,
                &format!("schema.{col}"),
                format!(
                    "unknown type {ty:?}: use string, bool, int32, int64, float64, date, timestamp, decimal(p,s) or json"
                ),
            )
        })?;
        columns.push(Column {
            name: col.clone(),
            ty,
        });
    }
    if columns.is_empty() {
        return Err(Error::config(
            n,
            "schema",
            "the table needs [tables.schema] with at least one column (column = \"type\")",
        ));
    }
    Ok(columns)
}

/// `partition_by`: valid names, each once.
fn check_partition_by(n: Option<&str>, keys: &[String]) -> Result<()> {
    for (i, p) in keys.iter().enumerate() {
        if !valid_identifier(p) {
            return Err(Error::config(
                n,
                "partition_by",
                format!(
                    "{p:?} is not a valid partition column name (lower case letters, digits, '_')"
                ),
            ));
        }
        if keys[..i].contains(p) {
            return Err(Error::config(
                n,
                "partition_by",
                format!("{p:?} is listed twice"),
            ));
        }
    }
    Ok(())
}

/// A size: bytes (`4096`) or with a unit (`1MiB`, `2GB`).
pub(crate) fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    text.parse::<u64>()
        .ok()
        .or_else(|| text.parse::<bytesize::ByteSize>().ok().map(|b| b.as_u64()))
}

/// `max_record_size`: bytes or a size with a unit, 1 KiB to 2 GiB (default 64 MiB).
fn parse_record_size(n: Option<&str>, text: Option<&str>) -> Result<usize> {
    let Some(text) = text else {
        return Ok(DEFAULT_MAX_RECORD_BYTES);
    };
    let bytes = parse_size(text).ok_or_else(|| {
        Error::config(
            n,
            "max_record_size",
            format!("{text:?} is not a size (use bytes or a unit: 4096, 1MiB)"),
        )
    })?;
    if !(1024..=(1u64 << 31)).contains(&bytes) {
        return Err(Error::config(
            n,
            "max_record_size",
            "must be between 1KiB and 2GiB",
        ));
    }
    Ok(bytes as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquet::basic::{Compression, ZstdLevel};

    const GOOD: &str = r#"
        [lake]
        root = "./lake"
        [[tables]]
        name = "clickstream"
        source = "clickstream/"
        format = "jsonl"
        partition_by = ["dt", "event_type"]
        sql = "SELECT *, CAST(event_time AS DATE) AS dt FROM input"
        [tables.schema]
        event_time = "timestamp"
        event_type = "string"
        price = "decimal(10,2)"
        properties = "json"
        [tables.parquet]
        compression = "zstd(5)"
    "#;

    #[test]
    fn parses_a_good_file_in_column_order() {
        let p = Pipeline::from_toml(GOOD).unwrap();
        let t = &p.tables[0];
        assert_eq!(t.format, Format::JsonLines);
        let names: Vec<_> = t.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["event_time", "event_type", "price", "properties"]);
        assert_eq!(t.columns[2].ty, ColumnType::Decimal(10, 2));
        assert_eq!(
            t.parquet.compression,
            Compression::ZSTD(ZstdLevel::try_new(5).unwrap())
        );
        assert_eq!(t.parquet.target_file_bytes, 256_000_000);
        assert!(t.csv.header);
    }

    fn err(text: &str) -> String {
        Pipeline::from_toml(text).unwrap_err().to_string()
    }

    #[test]
    fn a_table_reads_a_stream_or_files_and_each_stream_feeds_one_table() {
        let stream = GOOD.replace(
            "source = \"clickstream/\"",
            "stream = \"clickstream-events\"",
        );
        let p = Pipeline::from_toml(&stream).unwrap();
        assert!(p.table_for("clickstream/a.jsonl").is_none());
        let t = p.table_for_stream("clickstream-events").unwrap();
        assert_eq!(t.name, "clickstream");
        // Bad records never fail a stream batch (it would hold up the shard).
        assert_eq!(t.max_rejected_ratio, 1.0);
        assert!(p.table_for_stream("other").is_none());
        let both = GOOD.replace(
            "source = \"clickstream/\"",
            "source = \"clickstream/\"\nstream = \"s\"",
        );
        assert!(err(&both).contains("not both"), "{}", err(&both));
        let neither = GOOD.replace("source = \"clickstream/\"", "");
        let e = err(&neither);
        assert!(e.contains("clickstream") && e.contains("stream"), "{e}");
        let e = err(&stream.replace("format = \"jsonl\"", "format = \"parquet\""));
        assert!(e.contains("format") && e.contains("Parquet"), "{e}");
        let e = err(&stream.replace(
            "format = \"jsonl\"",
            "format = \"jsonl\"\ncompression = \"gzip\"",
        ));
        assert!(e.contains("compression"), "{e}");
        let second = stream.clone()
            + &stream[stream.find("[[tables]]").unwrap()..]
                .replace("name = \"clickstream\"", "name = \"again\"");
        let e = err(&second);
        assert!(e.contains("'again'") && e.contains("already reads"), "{e}");
    }

    #[test]
    fn unknown_keys_are_errors_naming_the_key() {
        let e = err(&GOOD.replace("partition_by", "partition_on"));
        assert!(e.contains("partition_on"), "{e}");
        let e = err(&GOOD.replace("compression = \"zstd(5)\"", "codec = \"zstd\""));
        assert!(e.contains("codec"), "{e}");
    }

    #[test]
    fn bad_values_name_table_and_key() {
        let e = err(&GOOD.replace("\"timestamp\"", "\"datetime\""));
        assert!(
            e.contains("table 'clickstream'") && e.contains("schema.event_time"),
            "{e}"
        );
        let e = err(&GOOD.replace("format = \"jsonl\"", "format = \"xml\""));
        assert!(e.contains("'format'") && e.contains("xml"), "{e}");
        let e = err(&GOOD.replace("zstd(5)", "zstd(99)"));
        assert!(e.contains("parquet.compression"), "{e}");
        let e = err(&GOOD.replace("name = \"clickstream\"", "name = \"Click Stream\""));
        assert!(e.contains("'name'"), "{e}");
        let e = err(&GOOD.replace("[\"dt\", \"event_type\"]", "[\"dt\", \"dt\"]"));
        assert!(e.contains("partition_by") && e.contains("twice"), "{e}");
    }

    #[test]
    fn types_parse() {
        assert_eq!(
            ColumnType::parse("decimal(38, 10)"),
            Some(ColumnType::Decimal(38, 10))
        );
        assert_eq!(ColumnType::parse("decimal(39,1)"), None);
        assert_eq!(ColumnType::parse("decimal(5,6)"), None);
        assert_eq!(ColumnType::parse("INT64"), Some(ColumnType::Int64));
    }

    #[test]
    fn sources_match_prefixes_and_globs() {
        let p = SourceMatch::Prefix("clickstream/".into());
        assert!(p.matches("clickstream/2026/a.jsonl"));
        assert!(!p.matches("orders/a.jsonl"));
        let g = SourceMatch::Glob(glob::Pattern::new("raw/*/events-*.csv.gz").unwrap());
        assert!(g.matches("raw/x/events-1.csv.gz"));
        assert!(!g.matches("raw/x/y/events-1.csv.gz"));
        assert_eq!(g.list_prefix(), "raw/");
    }

    #[test]
    fn codecs_from_names() {
        assert_eq!(Codec::from_name("a.jsonl.gz"), Codec::Gzip);
        assert_eq!(Codec::from_name("a.CSV.ZST"), Codec::Zstd);
        assert_eq!(Codec::from_name("a.jsonl"), Codec::None);
    }
}
