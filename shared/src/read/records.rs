//! Where the records of a stream batch start in the chunk's text, so that
//! a rejected line's quarantine entry names its record (a Kinesis sequence
//! number, a Kafka offset).

use super::{QuarantineEntry, ReadStats};

/// Where each record of a batch starts in the chunk's text, and the records
/// that could not be decoded at all: for quarantine entries that name the
/// record.
#[derive(Debug, Default)]
pub struct RecordIndex {
    /// (byte offset, position), by offset.
    pub(crate) starts: Vec<(u64, String)>,
    /// Records refused before reading (decompression, aggregation).
    pub(crate) undecodable: Vec<QuarantineEntry>,
}

impl RecordIndex {
    /// The position of the record whose text holds byte `offset`.
    fn position_at(&self, offset: u64) -> Option<&str> {
        let i = self.starts.partition_point(|(start, _)| *start <= offset);
        i.checked_sub(1).map(|i| self.starts[i].1.as_str())
    }

    /// Name the record of each entry the reader rejected, and add the
    /// records refused before reading (they count as records read).
    pub fn attribute(&self, stats: &mut ReadStats) {
        for e in &mut stats.rejected {
            if let Some(offset) = e.offset {
                e.record = self.position_at(offset).map(str::to_string);
            }
        }
        stats.rows += self.undecodable.len() as u64;
        stats.rejected.extend(self.undecodable.iter().cloned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rejected_line_is_named_by_its_record() {
        let index = RecordIndex {
            starts: vec![(0, "7".into()), (10, "8".into()), (25, "9".into())],
            undecodable: Vec::new(),
        };
        assert_eq!(index.position_at(0), Some("7"));
        assert_eq!(index.position_at(9), Some("7"));
        assert_eq!(index.position_at(10), Some("8"));
        assert_eq!(index.position_at(24), Some("8"));
        assert_eq!(index.position_at(400), Some("9"));
        assert_eq!(RecordIndex::default().position_at(3), None);
    }
}
