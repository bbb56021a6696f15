//! CSV: records split by `csv-core` (quotes, escaped quotes, CRLF, a BOM),
//! fields matched to the declared columns by the header's names (or by
//! position when there is no header), then converted to the column types.
//!
//! A line that holds a whole record whose quotes are all at the ends of its
//! values (nearly every line of nearly every file) is split by a scan for
//! delimiters and quotes instead ([`CsvDecoder::split_fast`]), without
//! `csv-core`'s byte-by-byte state machine and its copy of every value;
//! a property test holds the two to the same rows and errors.

use csv_core::{ReadRecordResult, Reader, ReaderBuilder};

use super::json::{Discovered, MAX_EVOLVED_COLUMNS, evolvable_name};
use super::rows::BatchBuilder;
use crate::config::{ColumnType, CsvOptions, UnknownFields};

/// Decodes CSV records into a [`BatchBuilder`]. Feed it whole lines; a record
/// whose quoted values hold newlines may span several.
pub struct CsvDecoder {
    reader: Reader,
    options: CsvOptions,
    /// For each field position, the declared column it fills; `None` until the header is read.
    mapping: Option<Vec<Option<usize>>>,
    fields: Vec<u8>,
    ends: Vec<usize>,
    out_len: usize,
    ends_len: usize,
    header_width: usize,
    unknown: UnknownFields,
    /// Header names that are not declared columns.
    unknown_names: Vec<String>,
    /// Under `evolve`: header names to add as string columns.
    pub discovered: Discovered,
    /// How many more columns evolution may add.
    pub room: usize,
    /// The header line could not be read.
    bad_header: bool,
    /// The longest a record may run over several lines (a quoted value
    /// holding newlines) before it is taken for an unclosed quote.
    pub max_record: usize,
    /// The lines of a record not yet complete (values holding newlines).
    pending: Vec<u8>,
    /// The raw text of the last record given up on (an unclosed quote).
    abandoned: Vec<u8>,
    /// The last record `csv-core` completed ended before its line did: a
    /// carriage return inside an unquoted value (`csv-core` ends a record
    /// at a lone `\r`), with more of the line after it.
    cut_short: bool,
    /// Whether a line may be split by [`CsvDecoder::split_fast`]: once
    /// `csv-core` has read a record (so no byte-order mark is left to
    /// strip), while no record is part-read.
    fast_ok: bool,
    /// The values of the line `split_fast` split last.
    spans: Vec<Span>,
    /// The text of its quoted values that held doubled quotes, unquoted.
    unquoted: String,
}

/// Where a value split by [`CsvDecoder::split_fast`] is.
#[derive(Debug, Clone, Copy)]
enum Span {
    /// Bytes `start..end` of the line.
    Line(u32, u32),
    /// Bytes `start..end` of the decoder's `unquoted` text.
    Unquoted(u32, u32),
}

fn core_reader(o: &CsvOptions) -> Reader {
    ReaderBuilder::new()
        .delimiter(o.delimiter)
        .quote(o.quote)
        .build()
}

impl CsvDecoder {
    /// A decoder. `header` is the file's header line, given when this chunk
    /// does not start at the beginning of the file (so will not see it).
    pub fn new(
        options: &CsvOptions,
        builder: &BatchBuilder,
        header: Option<&[u8]>,
    ) -> Result<Self, String> {
        Self::with_contract(
            options,
            builder,
            header,
            UnknownFields::DiscardValue,
            MAX_EVOLVED_COLUMNS,
        )
    }

    /// [`CsvDecoder::new`], treating header names that are not columns as
    /// `unknown` says; evolution may add up to `room` columns.
    pub fn with_contract(
        options: &CsvOptions,
        builder: &BatchBuilder,
        header: Option<&[u8]>,
        unknown: UnknownFields,
        room: usize,
    ) -> Result<Self, String> {
        let mut d = CsvDecoder {
            reader: core_reader(options),
            options: options.clone(),
            mapping: None,
            fields: vec![0; 4096],
            ends: vec![0; 64],
            out_len: 0,
            ends_len: 0,
            header_width: builder.columns().len(),
            unknown,
            unknown_names: Vec::new(),
            discovered: Discovered::default(),
            room,
            bad_header: false,
            max_record: crate::config::DEFAULT_MAX_RECORD_BYTES,
            pending: Vec::new(),
            abandoned: Vec::new(),
            cut_short: false,
            fast_ok: false,
            spans: Vec::new(),
            unquoted: String::new(),
        };
        if !options.header {
            d.mapping = Some((0..builder.columns().len()).map(Some).collect());
        } else if let Some(h) = header {
            let complete = d.feed(h) || d.feed(b"");
            if !complete {
                return Err("the header line is not a complete CSV record".into());
            }
            let names = d.take_strings()?;
            d.set_header(&names, builder);
            d.restart();
        }
        Ok(d)
    }

    /// Feed bytes: true when a whole record is in `fields`/`ends`.
    fn feed(&mut self, mut input: &[u8]) -> bool {
        loop {
            let (res, nin, nout, nend) = self.reader.read_record(
                input,
                &mut self.fields[self.out_len..],
                &mut self.ends[self.ends_len..],
            );
            input = &input[nin..];
            self.out_len += nout;
            self.ends_len += nend;
            match res {
                ReadRecordResult::InputEmpty => {
                    if input.is_empty() {
                        return false;
                    }
                }
                ReadRecordResult::OutputFull => {
                    let n = self.fields.len() * 2;
                    self.fields.resize(n, 0);
                }
                ReadRecordResult::OutputEndsFull => {
                    let n = self.ends.len() * 2;
                    self.ends.resize(n, 0);
                }
                ReadRecordResult::Record => {
                    // A line's record ends at its newline, or at the `\r`
                    // of its `\r\n` (csv-core leaves the `\n`): anything but
                    // line ends after it was cut off by a lone `\r`.
                    self.cut_short = input.iter().any(|&b| b != b'\r' && b != b'\n');
                    return true;
                }
                ReadRecordResult::End => return self.ends_len > 0,
            }
        }
    }

    fn reset_record(&mut self) {
        self.out_len = 0;
        self.ends_len = 0;
    }

    /// A fresh `csv-core` reader, as at the start of a file: it strips a
    /// byte-order mark again, so the fast split waits for its first record.
    fn restart(&mut self) {
        self.reader = core_reader(&self.options);
        self.fast_ok = false;
    }

    /// Split a whole line (ending in `\n`) into its values by scanning for
    /// delimiters and quotes, as `csv-core` would split it but without
    /// copying values that need no unquoting, its UTF-8 checked once. Fills
    /// `spans` (and `unquoted` for values with doubled quotes); gives the
    /// line's text. `None` when the line needs `csv-core`: a quote inside an
    /// unquoted value, text after a closing quote, a quote not closed on
    /// this line, a carriage return outside quotes but the line's `\r\n`,
    /// or bytes that are not UTF-8.
    fn split_fast<'l>(&mut self, line: &'l [u8]) -> Option<&'l str> {
        let fresh = self.pending.is_empty() && self.out_len == 0 && self.ends_len == 0;
        let (delimiter, quote) = (self.options.delimiter, self.options.quote);
        if !self.fast_ok || !fresh || !delimiter.is_ascii() || !quote.is_ascii() {
            return None;
        }
        let body = line.strip_suffix(b"\n")?;
        let body = body.strip_suffix(b"\r").unwrap_or(body);
        let text = std::str::from_utf8(body).ok()?;
        self.spans.clear();
        self.unquoted.clear();
        if body.is_empty() {
            return Some(text);
        }
        // One pass over the line for the bytes that matter (delimiters,
        // quotes, carriage returns); the values are what lies between.
        let mut hits = memchr::memchr3_iter(delimiter, quote, b'\r', body).peekable();
        let mut start = 0;
        while let Some(at) = hits.next() {
            if body[at] == delimiter {
                self.spans.push(Span::Line(start as u32, at as u32));
                start = at + 1;
                continue;
            }
            if body[at] != quote || at != start {
                // A quote inside an unquoted value, or a lone `\r`.
                return None;
            }
            // A quoted value: it ends at the first quote not doubled, which
            // must end the line or come right before a delimiter.
            let mut doubled = false;
            let close = loop {
                let q = hits.find(|&h| body[h] == quote)?;
                if hits.next_if(|&h| h == q + 1 && body[h] == quote).is_some() {
                    doubled = true;
                    continue;
                }
                break q;
            };
            let span = if doubled {
                self.unquote(&text[at + 1..close])
            } else {
                Span::Line(at as u32 + 1, close as u32)
            };
            self.spans.push(span);
            if close + 1 == body.len() {
                return Some(text);
            }
            hits.next_if(|&h| h == close + 1 && body[h] == delimiter)?;
            start = close + 2;
        }
        self.spans.push(Span::Line(start as u32, body.len() as u32));
        Some(text)
    }

    /// Keep one quote of each pair in `inner` (every quote in a quoted
    /// value is doubled, or it would have closed the value).
    fn unquote(&mut self, mut inner: &str) -> Span {
        let start = self.unquoted.len() as u32;
        while let Some(i) = memchr::memchr(self.options.quote, inner.as_bytes()) {
            self.unquoted.push_str(&inner[..=i]);
            inner = &inner[i + 2..];
        }
        self.unquoted.push_str(inner);
        Span::Unquoted(start, self.unquoted.len() as u32)
    }

    fn take_strings(&mut self) -> Result<Vec<String>, String> {
        let mut out = Vec::with_capacity(self.ends_len);
        let mut start = 0;
        for &end in &self.ends[..self.ends_len] {
            let s = std::str::from_utf8(&self.fields[start..end])
                .map_err(|_| "the header is not UTF-8".to_string())?;
            out.push(s.trim_start_matches('\u{feff}').trim().to_string());
            start = end;
        }
        self.reset_record();
        Ok(out)
    }

    /// Read files without a header whose first field is the builder's
    /// column `first` (the columns before it are left null).
    pub fn map_from(&mut self, first: usize, width: usize) {
        self.mapping = Some((first..width).map(Some).collect());
        self.header_width = width - first;
    }

    fn set_header(&mut self, names: &[String], builder: &BatchBuilder) {
        self.header_width = names.len();
        for n in names {
            if builder.columns().iter().any(|c| &c.name == n) || self.unknown_names.contains(n) {
                continue;
            }
            self.unknown_names.push(n.clone());
            if self.unknown == UnknownFields::Evolve
                && evolvable_name(n)
                && self.discovered.len() < self.room
            {
                self.discovered.insert(n.clone(), ColumnType::String);
            }
        }
        self.mapping = Some(
            names
                .iter()
                .map(|n| builder.columns().iter().position(|c| &c.name == n))
                .collect(),
        );
    }

    /// Decode a line. Returns true when a row was appended.
    ///
    /// A whole line (ending in a newline) that leaves a quoted value open
    /// is an unclosed quote when values hold no newlines: the record is
    /// given up (an error; [`CsvDecoder::take_abandoned`] gives its text)
    /// and the next line starts afresh. When values may hold newlines, the
    /// record runs on to later lines, for at most `max_record` bytes.
    pub fn decode_line(&mut self, line: &[u8], out: &mut BatchBuilder) -> Result<bool, String> {
        if let Some(text) = self.split_fast(line)
            && let Some(mapping) = self.mapping.take()
        {
            let r = if text.is_empty() {
                Ok(false) // a blank line, as csv-core skips it
            } else {
                let unquoted = self.unquoted.as_str();
                let values = self.spans.iter().map(|s| {
                    Ok(match *s {
                        Span::Line(a, b) => &text[a as usize..b as usize],
                        Span::Unquoted(a, b) => &unquoted[a as usize..b as usize],
                    })
                });
                self.shape()
                    .put_row(&mapping, self.spans.len(), values, out)
            };
            self.mapping = Some(mapping);
            return r;
        }
        if self.feed(line) {
            self.pending.clear();
            if std::mem::take(&mut self.cut_short) {
                self.reset_record();
                self.restart();
                self.bad_header = self.mapping.is_none();
                return Err(CUT_SHORT.into());
            }
            return self.complete(out);
        }
        if line.last() != Some(&b'\n') || (self.out_len == 0 && self.ends_len == 0) {
            // The file's last line, without a newline (`finish` ends it), or
            // a blank line (no record).
            return Ok(false);
        }
        if self.options.newlines_in_values && self.pending.len() + line.len() <= self.max_record {
            self.pending.extend_from_slice(line);
            return Ok(false);
        }
        self.pending.extend_from_slice(line);
        let run = self.pending.len();
        self.abandoned = std::mem::take(&mut self.pending);
        self.restart();
        self.reset_record();
        if self.mapping.is_none() {
            self.bad_header = true;
            return Err("the header line has a quote that is not closed".into());
        }
        Err(if self.options.newlines_in_values {
            format!(
                "a quoted value is not closed within max_record_size ({} bytes; the record ran {run} bytes): its lines are kept here, and reading goes on at the next line",
                self.max_record
            )
        } else {
            "a quoted value is not closed on its line (a stray quote?); this table's values hold no newlines (csv.newlines_in_values = false)".to_string()
        })
    }

    /// The raw text (its lines) of the record the last error gave up on, if
    /// it was given up for an unclosed quote; empty otherwise.
    pub fn take_abandoned(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.abandoned)
    }

    /// Whether the header line (read in this chunk) could not be read: the
    /// error is the file's, not one record's.
    pub fn bad_header(&self) -> bool {
        self.bad_header
    }

    /// The input ended: finish a last record that had no newline.
    pub fn finish(&mut self, out: &mut BatchBuilder) -> Result<bool, String> {
        if self.feed(b"") {
            return self.complete(out);
        }
        Ok(false)
    }

    fn complete(&mut self, out: &mut BatchBuilder) -> Result<bool, String> {
        // csv-core has read a record: no byte-order mark is left to strip.
        self.fast_ok = true;
        let Some(mapping) = self.mapping.take() else {
            // The file's first record: without its names no record can be
            // placed, so a header that cannot be read fails the file (as it
            // does for every later chunk, which is given the header).
            let names = self
                .take_strings()
                .inspect_err(|_| self.bad_header = true)?;
            self.set_header(&names, out);
            return Ok(false);
        };
        let fields = std::mem::take(&mut self.fields);
        let ends = std::mem::take(&mut self.ends);
        let r = self.shape().put_row(
            &mapping,
            self.ends_len,
            split_decoded(&fields[..self.out_len], &ends[..self.ends_len]),
            out,
        );
        self.fields = fields;
        self.ends = ends;
        self.reset_record();
        self.mapping = Some(mapping);
        r
    }

    fn shape(&self) -> RowShape<'_> {
        RowShape {
            null_values: &self.options.null_values,
            header: self.options.header,
            header_width: self.header_width,
            unknown: self.unknown,
            unknown_name: self.unknown_names.first().map(String::as_str),
        }
    }
}

const CUT_SHORT: &str = "a carriage return (\\r) inside an unquoted value ends the record before its line does; quote the value";

/// The values `csv-core` decoded into one buffer, each ending at `ends[i]`:
/// its text, or its bytes when they are not UTF-8. The buffer is checked
/// once; a value is its slice of it when both its ends fall between
/// characters, and checked alone otherwise (which fails: its ends split a
/// character).
fn split_decoded<'a>(
    fields: &'a [u8],
    ends: &'a [usize],
) -> impl Iterator<Item = Result<&'a str, &'a [u8]>> + 'a {
    let whole = std::str::from_utf8(fields).ok();
    let starts = std::iter::once(0).chain(ends.iter().copied());
    starts.zip(ends).map(move |(start, &end)| {
        whole.and_then(|w| w.get(start..end)).map_or_else(
            || std::str::from_utf8(&fields[start..end]).map_err(|_| &fields[start..end]),
            Ok,
        )
    })
}

/// What placing a record's values needs of the decoder.
struct RowShape<'a> {
    null_values: &'a [String],
    header: bool,
    header_width: usize,
    unknown: UnknownFields,
    /// The first header name that is not a column.
    unknown_name: Option<&'a str>,
}

impl RowShape<'_> {
    /// Append a record of `n` values to `out`, each to the column `mapping`
    /// gives it: true when a row was appended.
    fn put_row<'f>(
        &self,
        mapping: &[Option<usize>],
        n: usize,
        mut values: impl Iterator<Item = Result<&'f str, &'f [u8]>>,
        out: &mut BatchBuilder,
    ) -> Result<bool, String> {
        if n != mapping.len() {
            if n == 1 && self.header_width > 1 && matches!(values.next(), Some(Ok(""))) {
                // A line with nothing on it.
                return Ok(false);
            }
            return Err(format!(
                "the row has {n} fields, the {} {}",
                if self.header { "header" } else { "schema" },
                mapping.len()
            ));
        }
        if self.unknown == UnknownFields::Freeze
            && let Some(name) = self.unknown_name
        {
            return Err(format!(
                "unknown field '{name}' (the table's contract freezes its columns)"
            ));
        }
        out.begin_row();
        for (value, target) in values.zip(mapping) {
            let Some(col) = *target else {
                if !matches!(value, Ok("")) {
                    out.discard_unknown();
                }
                continue;
            };
            let r = match value {
                Err(_) => Err("not UTF-8".to_string()),
                Ok(text) if self.null_values.iter().any(|n| n == text) => {
                    out.set_null(col);
                    Ok(())
                }
                Ok(text) => out.set_text(col, text),
            };
            if let Err(msg) = r.or_else(|msg| out.bad_value(col, msg)) {
                return Err(format!("field '{}': {msg}", out.columns()[col].name));
            }
        }
        out.finish_row()?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ColumnType, CsvConfig};
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::Int64Type;

    fn opts() -> CsvOptions {
        let c = CsvConfig::default();
        CsvOptions {
            header: c.header,
            delimiter: b',',
            quote: b'"',
            null_values: c.null_values,
            newlines_in_values: true,
        }
    }

    fn builder() -> BatchBuilder {
        BatchBuilder::of(&[("id", ColumnType::Int64), ("note", ColumnType::String)])
    }

    #[test]
    fn header_by_name_quotes_crlf_and_multiline() {
        let mut b = builder();
        let mut d = CsvDecoder::new(&opts(), &b, None).unwrap();
        let lines: [&[u8]; 6] = [
            b"\xef\xbb\xbfnote,extra,id\r\n",
            b"\"a, \"\"quoted\"\"\",x,1\r\n",
            b"\"two\n",
            b"lines\",y,2\n",
            b",z,3\n",
            b"last,w,4",
        ];
        let mut rows = 0;
        for l in lines {
            rows += d.decode_line(l, &mut b).unwrap() as usize;
        }
        rows += d.finish(&mut b).unwrap() as usize;
        assert_eq!(rows, 4);
        let batch = b.finish_batch();
        let ids = batch.column(0).as_primitive::<Int64Type>();
        assert_eq!(ids.values(), &[1, 2, 3, 4]);
        let notes = batch.column(1).as_string::<i32>();
        assert_eq!(notes.value(0), "a, \"quoted\"");
        assert_eq!(notes.value(1), "two\nlines");
        assert!(notes.is_null(2));
        assert_eq!(notes.value(3), "last");
    }

    #[test]
    fn a_later_chunk_uses_the_given_header_and_errors_name_fields() {
        let mut b = builder();
        let mut d = CsvDecoder::new(&opts(), &b, Some(b"id,note\n")).unwrap();
        assert_eq!(d.decode_line(b"5,five\n", &mut b), Ok(true));
        let e = d.decode_line(b"x,six\n", &mut b).unwrap_err();
        assert!(e.contains("field 'id'"), "{e}");
        let e = d.decode_line(b"7,seven,extra\n", &mut b).unwrap_err();
        assert!(e.contains("3 fields"), "{e}");
        let e = d.decode_line(b"7\n", &mut b).unwrap_err();
        assert!(e.contains("1 fields, the header 2"), "{e}");
        assert_eq!(d.decode_line(b"8,eight\n", &mut b), Ok(true));
        assert_eq!(b.finish_batch().num_rows(), 2);
    }

    #[test]
    fn a_carriage_return_inside_an_unquoted_value_is_an_error_not_a_cut() {
        // csv-core ends a record at a lone `\r`: the rest of the line was
        // dropped without a word, and "2,b" lost.
        let mut b = builder();
        let mut d = CsvDecoder::new(&opts(), &b, Some(b"id,note\n")).unwrap();
        let e = d.decode_line(b"1,a\r2,b\n", &mut b).unwrap_err();
        assert!(e.contains("carriage return"), "{e}");
        assert_eq!(d.decode_line(b"3,c\r\n", &mut b), Ok(true));
        assert_eq!(d.decode_line(b"\"4\",d\r\n", &mut b), Ok(true));
        let batch = b.finish_batch();
        let ids = batch.column(0).as_primitive::<Int64Type>();
        assert_eq!(ids.values(), &[3, 4]);
    }

    #[test]
    fn a_header_cut_by_a_carriage_return_fails_the_file() {
        let mut b = builder();
        let mut d = CsvDecoder::new(&opts(), &b, None).unwrap();
        assert!(d.decode_line(b"id\rx,note\n", &mut b).is_err());
        assert!(d.bad_header());
    }

    #[test]
    fn values_split_between_the_bytes_of_a_character_are_not_utf8() {
        // Each half of "é" alone is not UTF-8, though the two values side by
        // side in csv-core's buffer are.
        let mut b = BatchBuilder::of(&[("a", ColumnType::String), ("b", ColumnType::String)]);
        let mut d = CsvDecoder::new(&opts(), &b, Some(b"a,b\n")).unwrap();
        let e = d.decode_line(b"\"\xc3\",\xa9\n", &mut b).unwrap_err();
        assert!(e.contains("field 'a': not UTF-8"), "{e}");
        let e = d.decode_line(b"\xc3,\xa9\n", &mut b).unwrap_err();
        assert!(e.contains("field 'a': not UTF-8"), "{e}");
        assert_eq!(d.decode_line("é,\"è\"\n".as_bytes(), &mut b), Ok(true));
        assert_eq!(b.finish_batch().column(1).as_string::<i32>().value(0), "è");
    }

    /// Decode `lines` (header first); with `core_only`, every line goes
    /// through csv-core. Each line's outcome, then the rows and counts.
    fn decode_all(lines: &[Vec<u8>], core_only: bool) -> (Vec<Result<bool, String>>, String, u64) {
        let mut b = BatchBuilder::of(&[
            ("id", ColumnType::Int64),
            ("note", ColumnType::String),
            ("t", ColumnType::String),
        ]);
        let mut d = CsvDecoder::new(&opts(), &b, None).unwrap();
        let mut outcomes = Vec::new();
        for l in lines {
            if core_only {
                d.fast_ok = false;
            }
            outcomes.push(d.decode_line(l, &mut b));
        }
        outcomes.push(d.finish(&mut b));
        let batch = b.finish_batch();
        (outcomes, format!("{batch:?}"), b.discarded)
    }

    proptest::proptest! {
        /// Splitting a line by scanning for its delimiters and quotes gives
        /// what csv-core gives, for every line (quoted, doubled or stray
        /// quotes, carriage returns, values over several lines, bytes that
        /// are not UTF-8): rows, errors, counts.
        #[test]
        fn the_fast_split_decodes_as_csv_core_does(
            body in proptest::collection::vec(
                proptest::collection::vec(
                    proptest::sample::select(vec![
                        "1", "-7", "x", "é", ",", ",", ",", "\"", "\r", " ", "\u{feff}", "\\xff",
                        "\"a,b\"", "\"q\"\"r\"", "\"\"", "\"\r\"", "\"\"\"\"", "\"é\"",
                    ]),
                    0..8,
                ),
                0..30,
            ),
            header in proptest::sample::select(vec!["id,note,t", "t,id,note,extra", "note,id"]),
            crlf in proptest::bool::ANY,
        ) {
            let end: &[u8] = if crlf { b"\r\n" } else { b"\n" };
            let mut lines = vec![[header.as_bytes(), end].concat()];
            for parts in &body {
                let mut line = Vec::new();
                for p in parts {
                    if *p == "\\xff" {
                        line.push(0xff);
                    } else {
                        line.extend_from_slice(p.as_bytes());
                    }
                }
                line.extend_from_slice(end);
                lines.push(line);
            }
            proptest::prop_assert_eq!(decode_all(&lines, false), decode_all(&lines, true));
        }
    }
}
