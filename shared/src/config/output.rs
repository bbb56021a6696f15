//! `[tables.parquet]`: the Parquet files a table is written as (compression,
//! row groups, file size).

use crate::error::{Error, Result};
use parquet::basic::{Compression, ZstdLevel};
use serde::Deserialize;

/// `[tables.parquet]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ParquetConfig {
    /// `zstd` (level 3), `zstd(N)` with N in 1..=22, `snappy` or `none`.
    pub compression: String,
    /// Rows per row group (default 1,048,576).
    pub row_group_rows: usize,
    /// A file is closed and the next one started once it reaches this size (default 256 MB).
    pub target_file_mb: u64,
}

impl Default for ParquetConfig {
    fn default() -> Self {
        ParquetConfig {
            compression: "zstd".into(),
            row_group_rows: 1024 * 1024,
            target_file_mb: 256,
        }
    }
}

/// Parquet output settings, checked.
#[derive(Debug, Clone)]
pub struct ParquetOptions {
    pub compression: Compression,
    pub row_group_rows: usize,
    pub target_file_bytes: u64,
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

impl ParquetConfig {
    /// `[tables.parquet]` into the writer's options.
    pub(super) fn validate(&self, n: Option<&str>) -> Result<ParquetOptions> {
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
