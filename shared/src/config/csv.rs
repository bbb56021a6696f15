//! `[tables.csv]` (and a lookup's): how CSV files are read.

use serde::Deserialize;

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

pub(super) fn yes() -> bool {
    true
}

pub(super) fn default_delimiter() -> String {
    ",".into()
}

pub(super) fn default_quote() -> String {
    "\"".into()
}

pub(super) fn default_null_values() -> Vec<String> {
    vec![String::new()]
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
