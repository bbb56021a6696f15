//! Decompressing a text file as its bytes arrive, a bounded piece at a
//! time.
//!
//! A network read of a compressed file is handed in whole ([`Inflate::feed`])
//! and its output taken out in pieces of at most about [`PIECE`] bytes
//! ([`Inflate::next`]), each framed and decoded before the next is made. A
//! small file that inflates 40,000:1 (a zstd file of one repeated line) then
//! costs the reader a piece, not the whole inflated read.

use std::io::Write;

use bytes::Bytes;
use zstd::stream::raw::{InBuffer, Operation, OutBuffer};

use crate::config::Codec;

/// The most output one [`Inflate::next`] gives (zstd), or about that (gzip).
pub const PIECE: usize = 1 << 20;

/// gzip input handed to its decoder at a time: deflate inflates at most
/// about 1,032:1, so one step's output stays near [`PIECE`].
const GZIP_STEP: usize = 1 << 10;

enum Kind {
    None,
    Gzip(Box<flate2::write::MultiGzDecoder<Vec<u8>>>),
    Zstd(Box<zstd::stream::raw::Decoder<'static>>),
}

/// A streaming decompressor with bounded output; see the module's docs.
pub struct Inflate {
    kind: Kind,
    /// The read being decompressed, and how much of it is used.
    input: Bytes,
    at: usize,
    /// zstd's output piece.
    out: Vec<u8>,
    /// zstd: a frame is begun and not ended.
    in_frame: bool,
}

impl Inflate {
    pub fn new(codec: Codec) -> std::io::Result<Self> {
        let kind = match codec {
            Codec::None => Kind::None,
            Codec::Gzip => Kind::Gzip(Box::new(flate2::write::MultiGzDecoder::new(Vec::new()))),
            Codec::Zstd => Kind::Zstd(Box::new(zstd::stream::raw::Decoder::new()?)),
        };
        Ok(Inflate {
            kind,
            input: Bytes::new(),
            at: 0,
            out: Vec::new(),
            in_frame: false,
        })
    }

    /// The next read of the file, once the last one's output is all taken.
    pub fn feed(&mut self, read: Bytes) {
        debug_assert!(self.at >= self.input.len(), "the last read is used up");
        self.input = read;
        self.at = 0;
    }

    /// The next piece of output of the reads fed, or `None` when they are
    /// used up.
    pub fn next(&mut self) -> std::io::Result<Option<&[u8]>> {
        match &mut self.kind {
            Kind::None => {
                if self.at >= self.input.len() {
                    return Ok(None);
                }
                self.at = self.input.len();
                Ok(Some(&self.input[..]))
            }
            Kind::Gzip(d) => {
                d.get_mut().clear();
                while d.get_ref().is_empty() && self.at < self.input.len() {
                    let end = (self.at + GZIP_STEP).min(self.input.len());
                    d.write_all(&self.input[self.at..end])?;
                    d.flush()?;
                    self.at = end;
                }
                Ok((!d.get_ref().is_empty()).then(|| &d.get_ref()[..]))
            }
            Kind::Zstd(d) => {
                self.out.resize(PIECE, 0);
                loop {
                    let mut input = InBuffer::around(&self.input[self.at..]);
                    let mut output = OutBuffer::around(&mut self.out[..]);
                    let hint = d.run(&mut input, &mut output)?;
                    let (used, made) = (input.pos(), output.pos());
                    self.at += used;
                    // A run that did nothing says how much the next frame's
                    // header needs, not whether a frame is open.
                    if used > 0 || made > 0 {
                        self.in_frame = hint != 0;
                    }
                    if made > 0 {
                        return Ok(Some(&self.out[..made]));
                    }
                    // Nothing more comes of what was fed.
                    if used == 0 {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// The file ended: what the decoder still holds, or an error if the
    /// file was cut short.
    pub fn finish(&mut self) -> std::io::Result<Vec<u8>> {
        match &mut self.kind {
            Kind::None => Ok(Vec::new()),
            Kind::Gzip(d) => {
                d.get_mut().clear();
                d.try_finish()?;
                Ok(std::mem::take(d.get_mut()))
            }
            Kind::Zstd(_) if self.in_frame => Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the zstd stream ends inside a frame",
            )),
            Kind::Zstd(_) => Ok(Vec::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inflate_all(codec: Codec, compressed: &[u8], read: usize) -> (Vec<u8>, usize) {
        let mut inflate = Inflate::new(codec).unwrap();
        let (mut out, mut largest) = (Vec::new(), 0);
        for piece in compressed.chunks(read) {
            inflate.feed(Bytes::copy_from_slice(piece));
            while let Some(o) = inflate.next().unwrap() {
                largest = largest.max(o.len());
                out.extend_from_slice(o);
            }
        }
        out.extend(inflate.finish().unwrap());
        (out, largest)
    }

    /// 64 MiB of one line, compressed ~10,000:1, read in one piece: it
    /// comes out whole and never more than about a piece at a time.
    #[test]
    fn a_bomb_comes_out_a_piece_at_a_time() {
        let line = b"{\"id\":1,\"note\":\"the same line again and again\"}\n";
        let plain: Vec<u8> = line.iter().copied().cycle().take(64 << 20).collect();
        let zstd = zstd::encode_all(&plain[..], 3).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&plain).unwrap();
        let gz = gz.finish().unwrap();
        assert!(zstd.len() * 1000 < plain.len(), "{}", zstd.len());
        for (codec, compressed) in [(Codec::Zstd, &zstd), (Codec::Gzip, &gz)] {
            for read in [compressed.len(), 8 << 10, 7] {
                let (out, largest) = inflate_all(codec, compressed, read);
                assert!(out == plain, "{codec:?}, reads of {read}");
                assert!(
                    largest <= 2 * PIECE,
                    "{codec:?}: a piece of {largest} bytes"
                );
            }
        }
    }

    #[test]
    fn a_cut_short_stream_is_an_error_and_concatenated_frames_are_read() {
        let a = zstd::encode_all(&b"first\n"[..], 3).unwrap();
        let b = zstd::encode_all(&b"second\n"[..], 3).unwrap();
        let both = [a.clone(), b].concat();
        assert_eq!(inflate_all(Codec::Zstd, &both, 5).0, b"first\nsecond\n");
        let mut inflate = Inflate::new(Codec::Zstd).unwrap();
        inflate.feed(Bytes::copy_from_slice(&a[..a.len() - 3]));
        while inflate.next().unwrap().is_some() {}
        assert!(inflate.finish().is_err());
    }
}
