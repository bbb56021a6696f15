//! Record framing for line-based formats, push style: feed bytes in any
//! pieces, get whole records (lines) with the byte offset of their first byte.

use memchr::memchr;

/// Cuts a byte stream into lines, keeping only the records of one chunk.
///
/// Feed it the bytes of the object from `start - 1` (or from 0 when `start`
/// is 0). With `start > 0` it skips through the first newline, so the first
/// record it yields is the first one starting at or after `start`; it yields
/// every record whose first byte lies before `end`, reading past `end` to
/// finish the last one, and then reports [`LineFramer::is_done`].
#[derive(Debug)]
pub struct LineFramer {
    /// Absolute offset of the next byte not yet consumed (or of `carry[0]`).
    pos: u64,
    end: u64,
    skipping: bool,
    done: bool,
    carry: Vec<u8>,
    max_record_bytes: usize,
}

/// A record longer than the framer allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordTooLong {
    pub offset: u64,
    pub limit: usize,
}

impl LineFramer {
    /// A framer for the chunk `[start, end)`. The first byte fed must be the
    /// object's byte `start - 1` (or byte 0 when `start == 0`).
    pub fn new(start: u64, end: u64, max_record_bytes: usize) -> Self {
        LineFramer {
            pos: start.saturating_sub(1),
            end,
            skipping: start > 0,
            done: start >= end,
            carry: Vec::new(),
            max_record_bytes,
        }
    }

    /// Where the first byte fed must come from.
    pub fn read_from(start: u64) -> u64 {
        start.saturating_sub(1)
    }

    /// True once every record of the chunk has been yielded: stop feeding.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Feed bytes; `emit(line, offset)` is called for each whole record
    /// (the line includes its `\n`, and any `\r` before it).
    pub fn push<E>(
        &mut self,
        mut data: &[u8],
        emit: &mut impl FnMut(&[u8], u64) -> Result<(), E>,
    ) -> Result<(), E>
    where
        E: From<RecordTooLong>,
    {
        while !data.is_empty() && !self.done {
            if self.skipping {
                match memchr(b'\n', data) {
                    Some(i) => {
                        self.pos += i as u64 + 1;
                        data = &data[i + 1..];
                        self.skipping = false;
                        if self.pos >= self.end {
                            self.done = true;
                        }
                    }
                    None => {
                        self.pos += data.len() as u64;
                        return Ok(());
                    }
                }
                continue;
            }
            match memchr(b'\n', data) {
                Some(i) => {
                    let line_len;
                    if self.carry.is_empty() {
                        line_len = i + 1;
                        self.check_len(line_len)?;
                        emit(&data[..=i], self.pos)?;
                    } else {
                        self.carry.extend_from_slice(&data[..=i]);
                        line_len = self.carry.len();
                        self.check_len(line_len)?;
                        emit(&self.carry, self.pos)?;
                        self.carry.clear();
                    }
                    self.pos += line_len as u64;
                    data = &data[i + 1..];
                    if self.pos >= self.end {
                        self.done = true;
                    }
                }
                None => {
                    self.carry.extend_from_slice(data);
                    self.check_len(self.carry.len())?;
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    fn check_len(&self, len: usize) -> Result<(), RecordTooLong> {
        if len > self.max_record_bytes {
            Err(RecordTooLong {
                offset: self.pos,
                limit: self.max_record_bytes,
            })
        } else {
            Ok(())
        }
    }

    /// The stream ended: yield a last record that had no newline.
    pub fn finish<E>(
        &mut self,
        emit: &mut impl FnMut(&[u8], u64) -> Result<(), E>,
    ) -> Result<(), E> {
        if !self.done && !self.carry.is_empty() && !self.skipping {
            let line = std::mem::take(&mut self.carry);
            emit(&line, self.pos)?;
            self.pos += line.len() as u64;
        }
        self.done = true;
        Ok(())
    }
}

/// A line without its trailing `\n` or `\r\n`.
pub fn trim_newline(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    impl From<RecordTooLong> for String {
        fn from(e: RecordTooLong) -> String {
            format!("too long at {}", e.offset)
        }
    }

    fn frame(data: &[u8], start: u64, end: u64, piece: usize) -> Vec<(String, u64)> {
        let mut f = LineFramer::new(start, end, 1 << 20);
        let mut out = Vec::new();
        let from = LineFramer::read_from(start) as usize;
        let mut emit = |l: &[u8], o: u64| -> Result<(), String> {
            out.push((String::from_utf8_lossy(l).into_owned(), o));
            Ok(())
        };
        for p in data[from.min(data.len())..].chunks(piece.max(1)) {
            if f.is_done() {
                break;
            }
            f.push(p, &mut emit).unwrap();
        }
        f.finish(&mut emit).unwrap();
        out
    }

    #[test]
    fn a_record_belongs_to_the_chunk_of_its_first_byte() {
        let data = b"aa\nbbb\ncc";
        // Records start at 0, 3, 7.
        assert_eq!(frame(data, 0, 3, 2), vec![("aa\n".into(), 0)]);
        assert_eq!(
            frame(data, 0, 4, 2),
            vec![("aa\n".into(), 0), ("bbb\n".into(), 3)]
        );
        assert_eq!(frame(data, 3, 4, 1), vec![("bbb\n".into(), 3)]);
        assert_eq!(frame(data, 4, 7, 3), vec![]);
        assert_eq!(frame(data, 4, 8, 3), vec![("cc".into(), 7)]);
        assert_eq!(
            frame(data, 1, 9, 100),
            vec![("bbb\n".into(), 3), ("cc".into(), 7)]
        );
    }

    #[test]
    fn too_long_records_are_refused() {
        let mut f = LineFramer::new(0, 100, 4);
        let mut emit = |_: &[u8], _: u64| -> Result<(), String> { Ok(()) };
        assert_eq!(
            f.push(b"ab\nabcdef\n", &mut emit),
            Err("too long at 3".to_string())
        );
    }

    #[test]
    fn trims_crlf() {
        assert_eq!(trim_newline(b"ab\r\n"), b"ab");
        assert_eq!(trim_newline(b"ab\n"), b"ab");
        assert_eq!(trim_newline(b"ab"), b"ab");
    }
}
