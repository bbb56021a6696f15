//! `[[lookups]]`: reference tables a table's SQL may join, as written in
//! the pipeline file and as checked. Reading them is the `lookup` module's.

use std::time::Duration;

use indexmap::IndexMap;
use serde::Deserialize;

use super::{Column, CsvConfig, CsvOptions, Format};
use crate::error::{Error, Result};

/// The default `max_size`: 512 MiB decoded.
pub const DEFAULT_MAX_SIZE: u64 = 512 * 1024 * 1024;
/// The default `refresh`: 60 seconds.
pub const DEFAULT_REFRESH_SECONDS: u64 = 60;

/// `[[lookups]]`, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LookupConfig {
    /// The name tables' SQL joins it by: lower case letters, digits and `_`.
    pub name: String,
    /// Files to read: a file, a folder, a glob (`ref/*.csv`) or a URL
    /// (`s3://ref-bucket/customers/`). Either this or `table`.
    pub source: Option<String>,
    /// A table of this lake, read at its latest snapshot when the process
    /// starts (and at each refresh). Either this or `source`.
    pub table: Option<String>,
    /// The files' format: `parquet`, `csv` or `jsonl` (with `source` only).
    pub format: Option<String>,
    /// The largest the lookup may be once decoded in memory (default
    /// `512MiB`); a larger one fails the run before any chunk starts.
    pub max_size: Option<String>,
    /// Seconds between checks for a changed source in a long-lived process (a
    /// Lambda container; default 60). `sluice run` reads each lookup once.
    pub refresh: Option<u64>,
    /// Column name to type (as `[tables.schema]`); by default the Parquet
    /// files' own schema, or one inferred from CSV and JSON Lines files.
    #[serde(default)]
    pub schema: IndexMap<String, String>,
    /// CSV options: `header`, `delimiter`, `quote`.
    #[serde(default)]
    pub csv: CsvConfig,
}

/// A checked lookup.
#[derive(Debug, Clone)]
pub struct Lookup {
    pub name: String,
    pub source: LookupSource,
    pub max_bytes: u64,
    pub refresh: Duration,
}

/// Where a lookup's rows come from.
#[derive(Debug, Clone)]
pub enum LookupSource {
    /// Files under a path or URL; `columns` empty means the files' own schema.
    Files {
        url: String,
        format: Format,
        columns: Vec<Column>,
        csv: CsvOptions,
    },
    /// A table of the lake.
    Table(String),
}

fn config_error(lookup: &str, key: &str, message: impl std::fmt::Display) -> Error {
    Error::Config(format!("lookup '{lookup}', key '{key}': {message}"))
}

impl LookupConfig {
    /// Check one `[[lookups]]` entry; every error names the lookup and the key.
    /// The source of a lookup read from files at `url`.
    fn files_source(&self, name: &str, url: &str) -> Result<LookupSource> {
        if url.trim().is_empty() {
            return Err(config_error(name, "source", "must not be empty"));
        }
        let format = match &self.format {
            Some(f) => super::parse_format(None, f).map_err(|_| {
                config_error(
                    name,
                    "format",
                    format!("unknown format {f:?}: use parquet, csv or jsonl"),
                )
            })?,
            None => {
                return Err(config_error(
                    name,
                    "format",
                    "is required with `source`: parquet, csv or jsonl",
                ));
            }
        };
        let columns = if self.schema.is_empty() {
            Vec::new()
        } else {
            super::parse_schema(None, &self.schema).map_err(|e| {
                Error::Config(format!(
                    "lookup '{name}', {}",
                    e.to_string().trim_start_matches("config: ")
                ))
            })?
        };
        let byte = |key: &str, value: &str| {
            super::one_byte(name, key, value).map_err(|_| {
                config_error(
                    name,
                    key,
                    format!("must be one ASCII character, not {value:?}"),
                )
            })
        };
        let csv = CsvOptions {
            header: self.csv.header,
            delimiter: byte("csv.delimiter", &self.csv.delimiter)?,
            quote: byte("csv.quote", &self.csv.quote)?,
            null_values: self.csv.null_values.clone(),
            newlines_in_values: self.csv.newlines_in_values,
        };
        Ok(LookupSource::Files {
            url: url.trim().to_string(),
            format,
            columns,
            csv,
        })
    }

    pub fn validate(self) -> Result<Lookup> {
        let name = self.name.clone();
        if !super::valid_identifier(&name) {
            return Err(config_error(
                &name,
                "name",
                "must be lower case letters, digits and '_', starting with a letter or '_'",
            ));
        }
        if name == "input" {
            return Err(config_error(
                &name,
                "name",
                "`input` is the chunk's own rows in a table's sql; name the lookup otherwise",
            ));
        }
        let max_bytes = match &self.max_size {
            None => DEFAULT_MAX_SIZE,
            Some(text) => super::parse_size(text).filter(|b| *b > 0).ok_or_else(|| {
                config_error(
                    &name,
                    "max_size",
                    format!("{text:?} is not a size (use bytes or a unit: 512MiB, 2GB)"),
                )
            })?,
        };
        let refresh = Duration::from_secs(self.refresh.unwrap_or(DEFAULT_REFRESH_SECONDS));
        let source = match (&self.source, &self.table) {
            (Some(_), Some(_)) | (None, None) => {
                return Err(config_error(
                    &name,
                    "source",
                    "give either `source` (files) or `table` (a table of this lake)",
                ));
            }
            (None, Some(table)) => {
                if self.format.is_some() || !self.schema.is_empty() {
                    return Err(config_error(
                        &name,
                        "table",
                        "a lake table has its own format and schema: `format` and `schema` go with `source`",
                    ));
                }
                if !super::valid_identifier(table) {
                    return Err(config_error(&name, "table", "not a table name"));
                }
                LookupSource::Table(table.clone())
            }
            (Some(url), None) => self.files_source(&name, url)?,
        };
        Ok(Lookup {
            name,
            source,
            max_bytes,
            refresh,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Lookup> {
        let raw: LookupConfig = toml::from_str(text).map_err(|e| Error::Config(e.to_string()))?;
        raw.validate()
    }

    #[test]
    fn a_files_lookup_takes_its_format_size_and_refresh() {
        let l = parse(
            r#"
            name = "customers"
            source = "s3://ref/customers/"
            format = "csv"
            max_size = "64MiB"
            refresh = 5
            [schema]
            id = "int64"
            segment = "string"
            [csv]
            delimiter = ";"
            "#,
        )
        .unwrap();
        assert_eq!(l.max_bytes, 64 * 1024 * 1024);
        assert_eq!(l.refresh, Duration::from_secs(5));
        let LookupSource::Files {
            url,
            format,
            columns,
            csv,
        } = l.source
        else {
            panic!("files")
        };
        assert_eq!(url, "s3://ref/customers/");
        assert_eq!(format, Format::Csv);
        assert_eq!(columns.len(), 2);
        assert_eq!(csv.delimiter, b';');
    }

    #[test]
    fn defaults_are_512mib_and_a_minute() {
        let l = parse("name = \"c\"\ntable = \"customers\"").unwrap();
        assert_eq!(l.max_bytes, DEFAULT_MAX_SIZE);
        assert_eq!(l.refresh, Duration::from_secs(60));
        assert!(matches!(l.source, LookupSource::Table(t) if t == "customers"));
    }

    #[test]
    fn mistakes_name_the_lookup_and_the_key() {
        for (text, key) in [
            ("name = \"c\"", "source"),
            ("name = \"c\"\nsource = \"a\"\ntable = \"b\"", "source"),
            ("name = \"c\"\nsource = \"a\"", "format"),
            ("name = \"c\"\nsource = \"a\"\nformat = \"xml\"", "format"),
            ("name = \"c\"\ntable = \"b\"\nformat = \"csv\"", "table"),
            ("name = \"C\"\ntable = \"b\"", "name"),
            ("name = \"input\"\ntable = \"b\"", "name"),
            (
                "name = \"c\"\ntable = \"b\"\nmax_size = \"lots\"",
                "max_size",
            ),
            (
                "name = \"c\"\nsource = \"a\"\nformat = \"csv\"\n[schema]\nid = \"uuid\"",
                "schema.id",
            ),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains("lookup '"), "{text}: {e}");
            assert!(e.contains(&format!("key '{key}'")), "{text}: {e}");
        }
    }
}
