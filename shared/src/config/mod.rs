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
use parquet::basic::{Compression, ZstdLevel};
use serde::Deserialize;

use crate::error::{Error, Result};

pub mod lookup;

/// The time zone every `timestamp` column is normalised to.
pub const UTC: &str = "UTC";

/// Metadata key marking a string column that holds JSON text (`json` type).
pub const JSON_EXTENSION: &str = "sluice.json";

/// The whole pipeline file, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Where the lake lives.
    #[serde(default)]
    pub lake: LakeConfig,
    /// Where raw files are read from by `sluice run`.
    #[serde(default)]
    pub input: InputConfig,
    /// The tables; each raw file belongs to the first table whose `source` matches.
    #[serde(default)]
    pub tables: Vec<TableConfig>,
    /// Reference tables the tables' SQL may join (`[[lookups]]`).
    #[serde(default)]
    pub lookups: Vec<lookup::LookupConfig>,
}

/// `[lake]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LakeConfig {
    /// A path, `file://` or `s3://` URL. `--lake` overrides it.
    #[serde(default = "default_lake_root")]
    pub root: String,
    /// Where tables and partitions are registered: `local` (a catalog kept in
    /// the lake itself, `_sluice/catalog/`) or `glue` (the AWS Glue Data Catalog).
    #[serde(default = "default_catalog")]
    pub catalog: String,
    /// The Glue database of the tables (`catalog = "glue"` only).
    #[serde(default)]
    pub glue_database: Option<String>,
    /// Create the Glue database if it does not exist (off by default: in
    /// production the database usually comes with the deployment).
    #[serde(default)]
    pub glue_create_database: bool,
    /// How tables are kept: `hive` (Hive-partitioned Parquet plus catalog
    /// partitions, the default) or `delta` (Delta Lake tables: the same files,
    /// made visible by atomic commits to `<table>/_delta_log/`). A table may
    /// override it.
    #[serde(default)]
    pub table_format: Option<String>,
}

fn default_catalog() -> String {
    "local".to_string()
}

fn default_lake_root() -> String {
    "./lake".to_string()
}

impl Default for LakeConfig {
    fn default() -> Self {
        LakeConfig {
            root: default_lake_root(),
            catalog: default_catalog(),
            glue_database: None,
            glue_create_database: false,
            table_format: None,
        }
    }
}

/// Which catalog a lake's tables are registered in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatalogKind {
    /// Kept in the lake itself, under `_sluice/catalog/`.
    Local,
    /// The AWS Glue Data Catalog.
    Glue {
        database: String,
        create_database: bool,
    },
}

impl LakeConfig {
    fn catalog_kind(&self) -> Result<CatalogKind> {
        match self.catalog.as_str() {
            "local" => {
                if self.glue_database.is_some() {
                    return Err(Error::config(
                        None,
                        "lake.glue_database",
                        "is set but lake.catalog is \"local\"; set catalog = \"glue\" to use Glue",
                    ));
                }
                Ok(CatalogKind::Local)
            }
            "glue" => {
                let database = self.glue_database.clone().ok_or_else(|| {
                    Error::config(
                        None,
                        "lake.glue_database",
                        "is required when catalog = \"glue\"",
                    )
                })?;
                if database.is_empty()
                    || !database
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                {
                    return Err(Error::config(
                        None,
                        "lake.glue_database",
                        format!(
                            "{database:?} is not a valid Glue database name (lower-case letters, digits and _)"
                        ),
                    ));
                }
                if !(self.root.starts_with("s3://") || self.root.starts_with("s3a://")) {
                    return Err(Error::config(
                        None,
                        "lake.catalog",
                        format!(
                            "\"glue\" needs an s3:// lake root (Athena reads tables from S3), not {:?}",
                            self.root
                        ),
                    ));
                }
                Ok(CatalogKind::Glue {
                    database,
                    create_database: self.glue_create_database,
                })
            }
            other => Err(Error::config(
                None,
                "lake.catalog",
                format!("{other:?} is not a catalog; use \"local\" or \"glue\""),
            )),
        }
    }
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
    #[serde(default)]
    pub source: Option<String>,
    /// Instead of `source`: a Kinesis stream name or a Kafka topic whose
    /// records (one JSON object or CSV line each, or several lines) the
    /// `stream` function loads.
    #[serde(default)]
    pub stream: Option<String>,
    /// `jsonl`, `csv` or `parquet`.
    pub format: String,
    /// `auto` (from the file name: `.gz`, `.zst`), `none`, `gzip` or `zstd`.
    #[serde(default)]
    pub compression: Option<String>,
    /// Columns of the transformed rows that make up the Hive partition path, in order.
    #[serde(default)]
    pub partition_by: Vec<String>,
    /// `hive` or `delta`; by default the lake's `table_format`.
    #[serde(default)]
    pub table_format: Option<String>,
    /// Optional SQL over the table `input`; its result is what is written.
    #[serde(default)]
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
    #[serde(default)]
    pub max_record_size: Option<String>,
    /// What to do with fields the schema does not declare and with values of the wrong type.
    #[serde(default)]
    pub contract: ContractConfig,
    /// Quality rules on the declared columns; a row that breaks one is quarantined with its name.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    /// Change data capture: the files are change events merged by key into the table.
    #[serde(default)]
    pub cdc: Option<CdcConfig>,
}

/// `[tables.cdc]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CdcConfig {
    /// `debezium` (JSON change events) or `dms` (AWS DMS CSV or Parquet files).
    pub envelope: String,
    /// The source table's primary key columns (declared in `[tables.schema]`).
    pub key: Vec<String>,
    /// DMS: the column that orders changes (DMS `TimestampColumnName`), read
    /// before the declared columns in files without a header.
    #[serde(default)]
    pub order_by: Option<String>,
    /// Also append every change to `<name>_changes`.
    #[serde(default)]
    pub keep_changes: bool,
    /// How long a deleted key is remembered, so that an older change
    /// arriving late cannot bring the row back (default `7d`).
    #[serde(default)]
    pub remember_deletes: Option<String>,
}

/// `[tables.contract]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContractConfig {
    /// `discard_value` (default: drop the field, count it), `freeze` (reject
    /// the record) or `evolve` (add a nullable column to the table).
    #[serde(default)]
    pub unknown_fields: Option<String>,
    /// `freeze` (default: reject the record) or `discard_value` (null the value, count it).
    #[serde(default)]
    pub wrong_type: Option<String>,
}

/// `[[tables.rules]]`: one check on one column.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// The rule's name in quarantine reasons (default `<column>.<check>`).
    #[serde(default)]
    pub name: Option<String>,
    /// A declared column.
    pub column: String,
    /// The value must not be null or missing.
    #[serde(default)]
    pub required: bool,
    /// The value (as text) must be one of these.
    #[serde(default)]
    pub accepted: Option<Vec<String>>,
    /// Inclusive bounds of a numeric column.
    #[serde(default)]
    pub min: Option<f64>,
    #[serde(default)]
    pub max: Option<f64>,
    /// A regular expression a string column's value must match (anchor it with ^…$ for a whole match).
    #[serde(default)]
    pub pattern: Option<String>,
    /// No two rows of one chunk may have the same value.
    #[serde(default)]
    pub unique: bool,
}

fn default_max_rejected_ratio() -> f64 {
    0.1
}

/// `[tables.csv]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsvConfig {
    /// Whether the first line names the columns (default true). Columns are matched by name.
    #[serde(default = "yes")]
    pub header: bool,
    /// Field delimiter, one ASCII character (default `,`).
    #[serde(default = "default_delimiter")]
    pub delimiter: String,
    /// Quote character, one ASCII character (default `"`).
    #[serde(default = "default_quote")]
    pub quote: String,
    /// Field texts read as null (default `[""]`).
    #[serde(default = "default_null_values")]
    pub null_values: Vec<String>,
    /// Whether quoted values may contain newlines; such files are read as one chunk.
    #[serde(default)]
    pub newlines_in_values: bool,
}

fn yes() -> bool {
    true
}
fn default_delimiter() -> String {
    ",".into()
}
fn default_quote() -> String {
    "\"".into()
}
fn default_null_values() -> Vec<String> {
    vec![String::new()]
}

impl Default for CsvConfig {
    fn default() -> Self {
        CsvConfig {
            header: true,
            delimiter: default_delimiter(),
            quote: default_quote(),
            null_values: default_null_values(),
            newlines_in_values: false,
        }
    }
}

/// `[tables.parquet]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParquetConfig {
    /// `zstd` (level 3), `zstd(N)` with N in 1..=22, `snappy` or `none`.
    #[serde(default = "default_compression")]
    pub compression: String,
    /// Rows per row group (default 1,048,576).
    #[serde(default = "default_row_group_rows")]
    pub row_group_rows: usize,
    /// A file is closed and the next one started once it reaches this size (default 256 MB).
    #[serde(default = "default_target_file_mb")]
    pub target_file_mb: u64,
}

fn default_compression() -> String {
    "zstd".into()
}
fn default_row_group_rows() -> usize {
    1024 * 1024
}
fn default_target_file_mb() -> u64 {
    256
}

impl Default for ParquetConfig {
    fn default() -> Self {
        ParquetConfig {
            compression: default_compression(),
            row_group_rows: default_row_group_rows(),
            target_file_mb: default_target_file_mb(),
        }
    }
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

/// CSV settings, checked.
#[derive(Debug, Clone)]
pub struct CsvOptions {
    pub header: bool,
    pub delimiter: u8,
    pub quote: u8,
    pub null_values: Vec<String>,
    pub newlines_in_values: bool,
}

/// Parquet output settings, checked.
#[derive(Debug, Clone)]
pub struct ParquetOptions {
    pub compression: Compression,
    pub row_group_rows: usize,
    pub target_file_bytes: u64,
}

/// What to do with a field the schema does not declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownFields {
    /// Drop the value, count it.
    DiscardValue,
    /// Reject the record.
    Freeze,
    /// Add a nullable column (type inferred from the value) to the table.
    Evolve,
}

/// What to do with a value that does not fit its column's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WrongType {
    /// Reject the record.
    Freeze,
    /// Null the value, count it.
    DiscardValue,
}

/// A table's data contract, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Contract {
    pub unknown_fields: UnknownFields,
    pub wrong_type: WrongType,
}

impl Default for Contract {
    fn default() -> Self {
        Contract {
            unknown_fields: UnknownFields::DiscardValue,
            wrong_type: WrongType::Freeze,
        }
    }
}

/// The check of a quality rule.
#[derive(Debug, Clone)]
pub enum Check {
    Required,
    Accepted(Vec<String>),
    Range { min: Option<f64>, max: Option<f64> },
    Pattern(regex::Regex),
    Unique,
}

/// A quality rule, checked: a name, the index of a declared column, and a check.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub column: usize,
    pub check: Check,
}

/// Default longest record: 64 MiB.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 64 * 1024 * 1024;

/// Where a table's files come from: a prefix, or a glob under the input root.
#[derive(Debug, Clone)]
pub enum SourceMatch {
    Prefix(String),
    Glob(glob::Pattern),
    /// A Kinesis stream or Kafka topic: no file belongs to it.
    Stream(String),
}

impl SourceMatch {
    /// Whether `relative` (a key relative to the input root) belongs to this source.
    pub fn matches(&self, relative: &str) -> bool {
        match self {
            SourceMatch::Prefix(p) => relative.starts_with(p.as_str()),
            SourceMatch::Stream(_) => false,
            SourceMatch::Glob(g) => g.matches_with(
                relative,
                glob::MatchOptions {
                    case_sensitive: true,
                    require_literal_separator: true,
                    require_literal_leading_dot: false,
                },
            ),
        }
    }

    /// The longest literal prefix, used to list only what can match.
    pub fn list_prefix(&self) -> &str {
        match self {
            SourceMatch::Prefix(p) => p,
            SourceMatch::Stream(_) => "",
            SourceMatch::Glob(g) => {
                let s = g.as_str();
                let end = s.find(['*', '?', '[']).unwrap_or(s.len());
                match s[..end].rfind('/') {
                    Some(i) => &s[..=i],
                    None => "",
                }
            }
        }
    }
}

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

/// Which change-event format a CDC table reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Envelope {
    /// Debezium JSON change events, with or without the `schema`/`payload` wrapper.
    Debezium,
    /// AWS DMS files: an `Op` column (`I`, `U`, `D`) before the row's columns.
    Dms,
}

/// A table fed by change events: rows are merged by key into a Delta table.
#[derive(Debug, Clone, PartialEq)]
pub struct Cdc {
    pub envelope: Envelope,
    /// Primary key columns.
    pub key: Vec<String>,
    /// DMS: the column ordering changes.
    pub order_by: Option<String>,
    /// Whether the order column is one of the declared columns (kept in the table).
    pub order_by_declared: bool,
    pub keep_changes: bool,
    /// How long deleted keys are remembered.
    pub remember_deletes: std::time::Duration,
    /// The declared columns: what the table holds, besides the position.
    pub declared: Vec<Column>,
}

/// The change's operation in a CDC table's staged rows and change history:
/// `c` (insert), `u` (update), `d` (delete), `r` (snapshot read), as Debezium names them.
pub const CDC_OP: &str = "_op";
/// The change's place in the source's order, as text that sorts in that order.
pub const CDC_POSITION: &str = "_sluice_position";
/// When the change's file arrived (the object's last-modified time).
pub const CDC_ARRIVED: &str = "_sluice_arrived_at";
/// Debezium, internal to reading: the envelope's source position.
pub const CDC_SOURCE_POSITION: &str = "_sluice_source_position";
/// DMS: the operation column of the files.
pub const DMS_OP: &str = "Op";

impl Cdc {
    /// The table of every change, when `keep_changes` is on.
    pub fn changes_table(table: &str) -> String {
        format!("{table}_changes")
    }

    /// Where a chunk's staged changes are written, relative to the lake: the
    /// change table's folder, or a private one.
    pub fn staging_folder(&self, table: &str) -> String {
        if self.keep_changes {
            Cdc::changes_table(table)
        } else {
            format!("{}/{table}", crate::layout::CDC_STAGED_DIR)
        }
    }

    /// The columns of staged changes (and of the change table).
    pub fn staged_columns(&self) -> Vec<Column> {
        let mut c = self.declared.clone();
        c.push(Column {
            name: CDC_OP.into(),
            ty: ColumnType::String,
        });
        c.push(Column {
            name: CDC_POSITION.into(),
            ty: ColumnType::String,
        });
        c.push(Column {
            name: CDC_ARRIVED.into(),
            ty: ColumnType::Timestamp,
        });
        c
    }

    /// The columns of the merged table: the declared ones and the position.
    pub fn table_columns(&self) -> Vec<Column> {
        let mut c = self.declared.clone();
        c.push(Column {
            name: CDC_POSITION.into(),
            ty: ColumnType::String,
        });
        c
    }
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

/// Parse a Parquet compression setting: `zstd`, `zstd(N)`, `snappy`, `none`.
pub fn parse_compression(text: &str) -> Option<Compression> {
    let t = text.trim().to_ascii_lowercase();
    match t.as_str() {
        "zstd" => Some(Compression::ZSTD(ZstdLevel::try_new(3).ok()?)),
        "snappy" => Some(Compression::SNAPPY),
        "none" | "uncompressed" => Some(Compression::UNCOMPRESSED),
        _ => {
            let level: i32 = t
                .strip_prefix("zstd(")?
                .strip_suffix(')')?
                .trim()
                .parse()
                .ok()?;
            if !(1..=22).contains(&level) {
                return None;
            }
            Some(Compression::ZSTD(ZstdLevel::try_new(level).ok()?))
        }
    }
}

fn parse_contract(table: Option<&str>, c: &ContractConfig) -> Result<Contract> {
    let mut contract = Contract::default();
    if let Some(u) = &c.unknown_fields {
        contract.unknown_fields = match u.trim() {
            "discard_value" => UnknownFields::DiscardValue,
            "freeze" => UnknownFields::Freeze,
            "evolve" => UnknownFields::Evolve,
            other => {
                return Err(Error::config(
                    table,
                    "contract.unknown_fields",
                    format!("{other:?}: use discard_value, freeze or evolve"),
                ));
            }
        };
    }
    if let Some(w) = &c.wrong_type {
        contract.wrong_type = match w.trim() {
            "freeze" => WrongType::Freeze,
            "discard_value" => WrongType::DiscardValue,
            other => {
                return Err(Error::config(
                    table,
                    "contract.wrong_type",
                    format!("{other:?}: use freeze or discard_value"),
                ));
            }
        };
    }
    Ok(contract)
}

fn parse_rule(table: Option<&str>, i: usize, r: &RuleConfig, columns: &[Column]) -> Result<Rule> {
    let key = format!("rules[{i}]");
    let column = columns
        .iter()
        .position(|c| c.name == r.column)
        .ok_or_else(|| {
            Error::config(
                table,
                &format!("{key}.column"),
                format!("{:?} is not a column of [tables.schema]", r.column),
            )
        })?;
    let ty = columns[column].ty;
    let mut checks = Vec::new();
    if r.required {
        checks.push(("required", Check::Required));
    }
    if let Some(values) = &r.accepted {
        if values.is_empty() {
            return Err(Error::config(table, &format!("{key}.accepted"), "is empty"));
        }
        checks.push(("accepted", Check::Accepted(values.clone())));
    }
    if r.min.is_some() || r.max.is_some() {
        if !matches!(
            ty,
            ColumnType::Int32 | ColumnType::Int64 | ColumnType::Float64 | ColumnType::Decimal(..)
        ) {
            return Err(Error::config(
                table,
                &format!("{key}.min"),
                format!("a range needs a numeric column; '{}' is not one", r.column),
            ));
        }
        if let (Some(lo), Some(hi)) = (r.min, r.max)
            && lo > hi
        {
            return Err(Error::config(table, &format!("{key}.min"), "is above max"));
        }
        checks.push((
            "range",
            Check::Range {
                min: r.min,
                max: r.max,
            },
        ));
    }
    if let Some(p) = &r.pattern {
        if !matches!(ty, ColumnType::String | ColumnType::Json) {
            return Err(Error::config(
                table,
                &format!("{key}.pattern"),
                format!("a pattern needs a string column; '{}' is not one", r.column),
            ));
        }
        let re = regex::Regex::new(p).map_err(|e| {
            Error::config(
                table,
                &format!("{key}.pattern"),
                format!("not a regular expression: {e}"),
            )
        })?;
        checks.push(("pattern", Check::Pattern(re)));
    }
    if r.unique {
        checks.push(("unique", Check::Unique));
    }
    if checks.len() != 1 {
        return Err(Error::config(
            table,
            &key,
            "give exactly one check per rule: required, accepted, min/max, pattern or unique",
        ));
    }
    let (what, check) = checks.pop().expect("one check");
    Ok(Rule {
        name: r
            .name
            .clone()
            .unwrap_or_else(|| format!("{}.{what}", r.column)),
        column,
        check,
    })
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
        Ok(Pipeline {
            lookups,
            catalog: self.lake.catalog_kind()?,
            lake_root: self.lake.root,
            input_root: self.input.root,
            tables,
        })
    }
}

impl TableConfig {
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
        let source = match (&self.source, &self.stream) {
            (Some(source), None) => parse_source(n, source)?,
            (None, Some(stream)) => parse_stream(n, stream, format, compression)?,
            (Some(_), Some(_)) => {
                return Err(Error::config(
                    n,
                    "stream",
                    "a table reads files (`source`) or a stream (`stream`), not both",
                ));
            }
            (None, None) => {
                return Err(Error::config(
                    n,
                    "source",
                    "missing: give the files' prefix or glob (`source`), or a Kinesis stream or Kafka topic (`stream`)",
                ));
            }
        };
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
        let mut rules = self
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| parse_rule(n, i, r, &columns))
            .collect::<Result<Vec<_>>>()?;
        // Parquet change files have no raw text to quarantine: the stager
        // refuses a change without its key or with an unknown operation,
        // naming the file and row.
        if let Some(c) = &cdc
            && format != Format::Parquet
        {
            rules.extend(cdc_rules(c, &columns));
        }
        if !rules.is_empty() && format == Format::Parquet {
            return Err(Error::config(
                n,
                "rules",
                "quality rules apply to jsonl and csv tables (a Parquet table's rows have no raw text to quarantine); check Parquet inputs in the table's sql",
            ));
        }
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

/// `[tables.cdc]`, checked; `columns` becomes the reader's columns: for
/// Debezium the declared ones then the envelope's operation and position;
/// for DMS `Op`, the order column (unless declared), then the declared ones,
/// which is the column order of DMS files without a header.
fn parse_cdc(
    n: Option<&str>,
    c: &CdcConfig,
    (sql, partition_by): (Option<&str>, &[String]),
    format: Format,
    table_format: TableFormat,
    columns: &mut Vec<Column>,
) -> Result<Cdc> {
    let envelope = match c.envelope.trim().to_ascii_lowercase().as_str() {
        "debezium" => Envelope::Debezium,
        "dms" => Envelope::Dms,
        other => {
            return Err(Error::config(
                n,
                "cdc.envelope",
                format!("{other:?} is not a change envelope; use \"debezium\" or \"dms\""),
            ));
        }
    };
    if table_format != TableFormat::Delta {
        return Err(Error::config(
            n,
            "cdc",
            "a CDC table is merged by key, which needs a Delta table: set table_format = \"delta\"",
        ));
    }
    if sql.is_some_and(|s| !s.trim().is_empty()) {
        return Err(Error::config(
            n,
            "sql",
            "a CDC table holds the source table's rows as they are; it takes no sql",
        ));
    }
    if columns.is_empty() {
        return Err(Error::config(
            n,
            "schema",
            "a CDC table needs its columns declared in [tables.schema]",
        ));
    }
    if c.key.is_empty() {
        return Err(Error::config(n, "cdc.key", "names no column"));
    }
    for k in &c.key {
        let Some(col) = columns.iter().find(|col| &col.name == k) else {
            return Err(Error::config(
                n,
                "cdc.key",
                format!("{k:?} is not a column of [tables.schema]"),
            ));
        };
        if matches!(col.ty, ColumnType::Json | ColumnType::Float64) {
            return Err(Error::config(
                n,
                "cdc.key",
                format!("{k:?} is a float64 or json column, which cannot be a key"),
            ));
        }
    }
    if !partition_by.is_empty() {
        return Err(Error::config(
            n,
            "partition_by",
            "a CDC table is not partitioned (its merge rewrites files by key range)",
        ));
    }
    for col in columns.iter() {
        if col.name.starts_with("_sluice_") || col.name == CDC_OP {
            return Err(Error::config(
                n,
                "schema",
                format!("{:?} is a name the CDC table keeps for itself", col.name),
            ));
        }
    }
    match (envelope, format) {
        (Envelope::Debezium, Format::JsonLines)
        | (Envelope::Dms, Format::Csv | Format::Parquet) => {}
        (Envelope::Debezium, _) => {
            return Err(Error::config(
                n,
                "format",
                "Debezium change events are JSON: use format = \"jsonl\"",
            ));
        }
        (Envelope::Dms, _) => {
            return Err(Error::config(
                n,
                "format",
                "AWS DMS writes CSV or Parquet: use format = \"csv\" or \"parquet\"",
            ));
        }
    }
    if c.order_by.is_some() && envelope == Envelope::Debezium {
        return Err(Error::config(
            n,
            "cdc.order_by",
            "Debezium changes are ordered by their source position; order_by is for dms",
        ));
    }
    let remember_deletes = match &c.remember_deletes {
        None => std::time::Duration::from_secs(7 * 24 * 3600),
        Some(text) => humantime::parse_duration(text).map_err(|e| {
            Error::config(
                n,
                "cdc.remember_deletes",
                format!("{text:?}: {e} (write e.g. \"7d\")"),
            )
        })?,
    };
    let declared = columns.clone();
    let order_by_declared = c
        .order_by
        .as_ref()
        .is_some_and(|o| declared.iter().any(|col| &col.name == o));
    let string = |name: &str| Column {
        name: name.to_string(),
        ty: ColumnType::String,
    };
    match envelope {
        Envelope::Debezium => {
            columns.push(string(CDC_OP));
            columns.push(string(CDC_SOURCE_POSITION));
        }
        Envelope::Dms => {
            let mut reader = vec![string(DMS_OP)];
            if let Some(o) = &c.order_by
                && !order_by_declared
            {
                reader.push(string(o));
            }
            reader.append(columns);
            *columns = reader;
        }
    }
    Ok(Cdc {
        envelope,
        key: c.key.clone(),
        order_by: c.order_by.clone(),
        order_by_declared,
        keep_changes: c.keep_changes,
        remember_deletes,
        declared,
    })
}

/// The checks every change passes: it has its key, and (DMS) a known operation.
fn cdc_rules(c: &Cdc, columns: &[Column]) -> Vec<Rule> {
    let index = |name: &str| columns.iter().position(|col| col.name == name);
    let mut rules: Vec<Rule> = c
        .key
        .iter()
        .filter_map(|k| {
            Some(Rule {
                name: format!("cdc.key.{k}"),
                column: index(k)?,
                check: Check::Required,
            })
        })
        .collect();
    if c.envelope == Envelope::Dms
        && let Some(op) = index(DMS_OP)
    {
        rules.push(Rule {
            name: "cdc.op".into(),
            column: op,
            check: Check::Accepted(vec!["I".into(), "U".into(), "D".into()]),
        });
    }
    rules
}

impl ParquetConfig {
    /// `[tables.parquet]` into the writer's options.
    fn validate(&self, n: Option<&str>) -> Result<ParquetOptions> {
        let compression = parse_compression(&self.compression).ok_or_else(|| {
            Error::config(
                n,
                "parquet.compression",
                format!(
                    "unknown compression {:?}: use zstd, zstd(1..22), snappy or none",
                    self.compression
                ),
            )
        })?;
        if self.row_group_rows == 0 {
            return Err(Error::config(
                n,
                "parquet.row_group_rows",
                "must be at least 1",
            ));
        }
        if self.target_file_mb == 0 {
            return Err(Error::config(
                n,
                "parquet.target_file_mb",
                "must be at least 1",
            ));
        }
        Ok(ParquetOptions {
            compression,
            row_group_rows: self.row_group_rows,
            target_file_bytes: self.target_file_mb * 1_000_000,
        })
    }
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

/// `stream`: a Kinesis stream name or Kafka topic, whose records are text
/// (each compressed or not: the `stream` function tells by its bytes).
fn parse_stream(
    n: Option<&str>,
    text: &str,
    format: Format,
    codec: Option<Codec>,
) -> Result<SourceMatch> {
    let name = text.trim();
    if name.is_empty() || name.contains(char::is_whitespace) {
        return Err(Error::config(
            n,
            "stream",
            format!("{text:?} is not a stream name or topic"),
        ));
    }
    if format == Format::Parquet {
        return Err(Error::config(
            n,
            "format",
            "a stream's records are jsonl or csv text; Parquet comes in files (`source`)",
        ));
    }
    if matches!(codec, Some(Codec::Gzip | Codec::Zstd)) {
        return Err(Error::config(
            n,
            "compression",
            "a stream's records are decompressed one by one (gzip and zstd are told by their bytes); leave this key out",
        ));
    }
    Ok(SourceMatch::Stream(name.to_string()))
}

/// `source`: a prefix under the input root, or a glob.
fn parse_source(n: Option<&str>, text: &str) -> Result<SourceMatch> {
    let source = text.trim().trim_start_matches('/').to_string();
    if source.is_empty() {
        return Err(Error::config(n, "source", "must not be empty"));
    }
    if source.contains(['*', '?', '[']) {
        let pattern = glob::Pattern::new(&source)
            .map_err(|e| Error::config(n, "source", format!("invalid glob {source:?}: {e}")))?;
        return Ok(SourceMatch::Glob(pattern));
    }
    Ok(SourceMatch::Prefix(source))
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
