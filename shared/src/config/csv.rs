//! `[tables.csv]` (and a lookup's): how CSV files are read.

use serde::Deserialize;

/// `[tables.csv]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CsvConfig {
    /// Whether the first line names the columns (default true). Columns are matched by name.
    pub header: bool,
    /// Field delimiter, one ASCII character (default `,`).
    pub delimiter: String,
    /// Quote character, one ASCII character (default `"`).
    pub quote: String,
    /// Field texts read as null (default `[""]`).
    pub null_values: Vec<String>,
    /// Whether quoted values may contain newlines; such files are read as one chunk.
    pub newlines_in_values: bool,
}

impl Default for CsvConfig {
    fn default() -> Self {
        CsvConfig {
            header: true,
            delimiter: ",".into(),
            quote: "\"".into(),
            null_values: vec![String::new()],
            newlines_in_values: false,
        }
    }
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
