//! Chunk planning: pure functions from an object's size (or its Parquet row
//! groups) to byte ranges. No I/O here.
//!
//! The rule that makes any cut safe: a record belongs to the chunk in which
//! its first byte lies. A reader of `[start, end)` with `start > 0` skips to
//! the first record boundary at or after `start`, and reads past `end` to
//! finish its last record (see `read::LineFramer`). So chunks can be
//! cut at any byte and together still yield every record exactly once.

use serde::{Deserialize, Serialize};

/// Default chunk size: 128 MiB.
pub const DEFAULT_CHUNK_SIZE: u64 = 128 * 1024 * 1024;

/// A byte range of one object: the records whose first byte lies in `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    /// Position of the chunk in its object, from 0.
    pub index: u32,
    /// First byte (inclusive).
    pub start: u64,
    /// Last byte (exclusive). For a compressed stream, `u64::MAX`: the whole stream.
    pub end: u64,
}

/// Cut a text object of `size` bytes into chunks of about `chunk_size`.
/// An object that cannot be split (a compressed stream, or CSV whose values
/// may hold newlines) is one chunk. An empty object has no chunks.
pub fn plan_text(size: u64, chunk_size: u64, splittable: bool) -> Vec<Chunk> {
    if size == 0 {
        return Vec::new();
    }
    if !splittable {
        return vec![Chunk {
            index: 0,
            start: 0,
            end: u64::MAX,
        }];
    }
    let chunk_size = chunk_size.max(1);
    let count = size.div_ceil(chunk_size);
    (0..count)
        .map(|i| Chunk {
            index: i as u32,
            start: i * chunk_size,
            end: ((i + 1) * chunk_size).min(size),
        })
        .collect()
}

/// Group a Parquet file's row groups, given as `(start offset, compressed
/// length)` in file order, into chunks of about `chunk_size` bytes. A chunk is
/// the range from its first row group's start to the next chunk's start (the
/// last one to `size`), so a row group belongs to the chunk holding its
/// first byte, the same rule as for text.
pub fn plan_parquet(row_groups: &[(u64, u64)], size: u64, chunk_size: u64) -> Vec<Chunk> {
    let mut starts: Vec<u64> = Vec::new();
    let mut acc = 0u64;
    for (i, &(offset, len)) in row_groups.iter().enumerate() {
        if i == 0 || acc >= chunk_size {
            starts.push(if i == 0 { 0 } else { offset });
            acc = 0;
        }
        acc += len;
    }
    starts
        .iter()
        .enumerate()
        .map(|(i, &start)| Chunk {
            index: i as u32,
            start,
            end: starts.get(i + 1).copied().unwrap_or(size),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_chunks_cover_the_object() {
        let cases = [
            (0u64, 10u64, vec![]),
            (10, 10, vec![(0, 10)]),
            (25, 10, vec![(0, 10), (10, 20), (20, 25)]),
            (3, 1, vec![(0, 1), (1, 2), (2, 3)]),
        ];
        for (size, cs, want) in cases {
            let got: Vec<_> = plan_text(size, cs, true)
                .iter()
                .map(|c| (c.start, c.end))
                .collect();
            assert_eq!(got, want, "size {size} chunk {cs}");
        }
    }

    #[test]
    fn unsplittable_is_one_chunk() {
        let c = plan_text(1 << 40, 10, false);
        assert_eq!(c.len(), 1);
        assert_eq!((c[0].start, c[0].end), (0, u64::MAX));
    }

    #[test]
    fn parquet_groups_row_groups() {
        // Four row groups of 40 bytes after a 4-byte magic, chunk size 70.
        let rgs = [(4, 40), (44, 40), (84, 40), (124, 40)];
        let got: Vec<_> = plan_parquet(&rgs, 200, 70)
            .iter()
            .map(|c| (c.start, c.end))
            .collect();
        assert_eq!(got, vec![(0, 84), (84, 200)]);
        let one: Vec<_> = plan_parquet(&rgs, 200, 1 << 30)
            .iter()
            .map(|c| (c.start, c.end))
            .collect();
        assert_eq!(one, vec![(0, 200)]);
        assert!(plan_parquet(&[], 8, 10).is_empty());
    }
}
