//! Where a table's input comes from: the files under its `source` (a folder
//! or a glob of the input), or the records of its `stream`.

use super::*;
use crate::error::{Error, Result};

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

/// `stream`: a Kinesis stream name or Kafka topic, whose records are text
/// (each compressed or not: the `stream` function tells by its bytes).
pub(super) fn parse_stream(
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
pub(super) fn parse_source(n: Option<&str>, text: &str) -> Result<SourceMatch> {
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
