//! Record framing for line-based formats, push style: feed bytes in any
//! pieces, get whole records (lines) with the byte offset of their first byte.

use memchr::memchr;

/// What the framer hands on: a whole line, or the head of a record longer
/// than the limit (whose rest was skipped without being kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framed<'a> {
    /// A record with its newline (the last one of a file may have none).
    Line(&'a [u8]),
    /// A record over the limit: its first [`TOO_LONG_HEAD`] bytes and its full length.
    TooLong { head: &'a [u8], len: u64 },
}

/// How much of a too-long record is kept for the quarantine.
pub const TOO_LONG_HEAD: usize = 4096;

/// Cuts a byte stream into lines, keeping only the records of one chunk.
///
/// Feed it the bytes of the object from `start - 1` (or from 0 when `start`
/// is 0). With `start > 0` it skips through the first newline, so the first
/// record it yields is the first one starting at or after `start`; it yields
/// every record whose first byte lies before `end`, reading past `end` to
/// finish the last one, and then reports [`LineFramer::is_done`].
///
/// Memory is bounded by `max_record_bytes`: a record that grows past it is
/// not kept; its head is, its rest is skipped to the next newline, and it is
/// handed on as [`Framed::TooLong`].
#[derive(Debug)]
pub struct LineFramer {
    /// Absolute offset of the next byte not yet consumed (or of `carry[0]`).
    pos: u64,
    end: u64,
    skipping: bool,
    done: bool,
    carry: Vec<u8>,
    max_record_bytes: usize,
    /// Bytes of a too-long record seen so far (its head is in `carry`).
    discarding: Option<u64>,
}

impl LineFramer {
    /// A framer for the chunk `[start, end)`; records longer than
    /// `max_record_bytes` (newline included) are handed on as too long.
    pub fn new(start: u64, end: u64, max_record_bytes: usize) -> Self {
        LineFramer {
            pos: start.saturating_sub(1),
            end,
            skipping: start > 0,
            done: start >= end,
            carry: Vec::new(),
            max_record_bytes,
            discarding: None,
        }
    }

    /// The offset to start reading the object at for a chunk starting at `start`.
    pub fn read_from(start: u64) -> u64 {
        start.saturating_sub(1)
    }

    /// Whether every record of the chunk has been yielded.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Feed the next bytes; `emit(record, offset)` is called per record.
    pub fn push<E>(
        &mut self,
        mut data: &[u8],
        emit: &mut impl FnMut(Framed<'_>, u64) -> Result<(), E>,
    ) -> Result<(), E> {
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
            if let Some(seen) = self.discarding {
                match memchr(b'\n', data) {
                    Some(i) => {
                        self.discarding = None;
                        self.too_long(seen + i as u64 + 1, emit)?;
                        data = &data[i + 1..];
                        if self.pos >= self.end {
                            self.done = true;
                        }
                    }
                    None => {
                        self.discarding = Some(seen + data.len() as u64);
                        return Ok(());
                    }
                }
                continue;
            }
            match memchr(b'\n', data) {
                Some(i) if self.carry.len() + i < self.max_record_bytes => {
                    let line_len;
                    if self.carry.is_empty() {
                        line_len = i + 1;
                        emit(Framed::Line(&data[..=i]), self.pos)?;
                    } else {
                        self.carry.extend_from_slice(&data[..=i]);
                        line_len = self.carry.len();
                        emit(Framed::Line(&self.carry), self.pos)?;
                        self.carry.clear();
                    }
                    self.pos += line_len as u64;
                    data = &data[i + 1..];
                    if self.pos >= self.end {
                        self.done = true;
                    }
                }
                found => {
                    let take = found.map_or(data.len(), |i| i + 1);
                    if self.carry.len() + take <= self.max_record_bytes {
                        self.carry.extend_from_slice(data);
                        return Ok(());
                    }
                    // Over the limit: keep the head, skip the rest.
                    let seen = self.carry.len() as u64;
                    self.carry.truncate(TOO_LONG_HEAD);
                    let room = TOO_LONG_HEAD.saturating_sub(self.carry.len());
                    self.carry.extend_from_slice(&data[..room.min(data.len())]);
                    self.discarding = Some(seen);
                }
            }
        }
        Ok(())
    }

    /// Hand on the record of `len` bytes that was too long (its head kept
    /// in the carry) and go past it.
    fn too_long<E>(
        &mut self,
        len: u64,
        emit: &mut impl FnMut(Framed<'_>, u64) -> Result<(), E>,
    ) -> Result<(), E> {
        let head = std::mem::take(&mut self.carry);
        emit(Framed::TooLong { head: &head, len }, self.pos)?;
        self.carry = head;
        self.carry.clear();
        self.pos += len;
        Ok(())
    }

    /// The object ended: yield a last record that had no newline.
    pub fn finish<E>(
        &mut self,
        emit: &mut impl FnMut(Framed<'_>, u64) -> Result<(), E>,
    ) -> Result<(), E> {
        if !self.done && !self.skipping {
            if let Some(len) = self.discarding.take() {
                self.too_long(len, emit)?;
            } else if !self.carry.is_empty() {
                let line = std::mem::take(&mut self.carry);
                emit(Framed::Line(&line), self.pos)?;
                self.pos += line.len() as u64;
            }
        }
        self.done = true;
        Ok(())
    }
}

/// A line without its `\n` or `\r\n`.
pub fn trim_newline(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(data: &[u8], start: u64, end: u64, piece: usize) -> Vec<(String, u64)> {
        let mut f = LineFramer::new(start, end, 1 << 20);
        let mut out = Vec::new();
        let from = LineFramer::read_from(start) as usize;
        let mut emit = |l: Framed<'_>, o: u64| -> Result<(), String> {
            let text = match l {
                Framed::Line(l) => String::from_utf8_lossy(l).into_owned(),
                Framed::TooLong { head, len } => {
                    format!("TOO LONG {len}: {}", String::from_utf8_lossy(head))
                }
            };
            out.push((text, o));
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
    fn too_long_records_are_handed_on_and_reading_goes_on() {
        let data = b"ab\nabcdefghij\ncd\nefghijklmnopq";
        for piece in 1..8 {
            let mut f = LineFramer::new(0, 100, 5);
            let mut out = Vec::new();
            let mut emit = |l: Framed<'_>, o: u64| -> Result<(), String> {
                out.push(match l {
                    Framed::Line(l) => (String::from_utf8_lossy(l).into_owned(), o, 0),
                    Framed::TooLong { head, len } => {
                        assert!(head.len() <= TOO_LONG_HEAD);
                        (String::from_utf8_lossy(head).into_owned(), o, len)
                    }
                });
                Ok(())
            };
            for p in data.chunks(piece) {
                f.push(p, &mut emit).unwrap();
            }
            f.finish(&mut emit).unwrap();
            assert_eq!(out.len(), 4, "piece {piece}: {out:?}");
            assert_eq!(out[0], ("ab\n".into(), 0, 0));
            assert_eq!((out[1].1, out[1].2), (3, 11), "piece {piece}");
            assert!("abcdefghij\n".starts_with(&out[1].0), "piece {piece}");
            assert_eq!(out[2], ("cd\n".into(), 14, 0));
            assert_eq!((out[3].1, out[3].2), (17, 13), "piece {piece}");
        }
    }

    #[test]
    fn a_too_long_record_ends_its_chunk_like_any_other() {
        // The chunk [0, 4) ends inside the too-long record starting at 3.
        let data = b"ab\nabcdefghij\ncd\n";
        let mut f = LineFramer::new(0, 4, 5);
        let mut n = 0;
        let mut emit = |_: Framed<'_>, _: u64| -> Result<(), String> {
            n += 1;
            Ok(())
        };
        f.push(data, &mut emit).unwrap();
        assert!(f.is_done());
        assert_eq!(n, 2);
    }

    #[test]
    fn trims_crlf() {
        assert_eq!(trim_newline(b"ab\r\n"), b"ab");
        assert_eq!(trim_newline(b"ab\n"), b"ab");
        assert_eq!(trim_newline(b"ab"), b"ab");
    }
}
