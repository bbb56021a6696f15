//! CSV: records split by `csv-core` (quotes, escaped quotes, CRLF, a BOM),
//! fields matched to the declared columns by the header's names (or by
//! position when there is no header), then converted to the column types.

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
            d.reader = core_reader(options);
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
                ReadRecordResult::Record => return true,
                ReadRecordResult::End => return self.ends_len > 0,
            }
        }
    }

    fn reset_record(&mut self) {
        self.out_len = 0;
        self.ends_len = 0;
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
        if self.feed(line) {
            self.pending.clear();
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
        self.reader = core_reader(&self.options);
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
        let r = self.complete_row(&mapping, out);
        self.mapping = Some(mapping);
        r
    }

    fn complete_row(
        &mut self,
        mapping: &[Option<usize>],
        out: &mut BatchBuilder,
    ) -> Result<bool, String> {
        let n = self.ends_len;
        if n == 1 && self.ends[0] == 0 && self.header_width > 1 {
            // A line with nothing on it.
            self.reset_record();
            return Ok(false);
        }
        if n != mapping.len() {
            self.reset_record();
            return Err(format!(
                "the row has {n} fields, the {} {}",
                if self.options.header {
                    "header"
                } else {
                    "schema"
                },
                mapping.len()
            ));
        }
        if self.unknown == UnknownFields::Freeze
            && let Some(name) = self.unknown_names.first().cloned()
        {
            self.reset_record();
            return Err(format!(
                "unknown field '{name}' (the table's contract freezes its columns)"
            ));
        }
        out.begin_row();
        let mut start = 0;
        let mut result = Ok(());
        for (&end, target) in self.ends[..n].iter().zip(mapping) {
            if target.is_none() && start != end {
                out.discard_unknown();
            }
            if let Some(col) = *target {
                let bytes = &self.fields[start..end];
                let r = match std::str::from_utf8(bytes) {
                    Err(_) => Err("not UTF-8".to_string()),
                    Ok(text) if self.options.null_values.iter().any(|n| n == text) => {
                        out.set_null(col);
                        Ok(())
                    }
                    Ok(text) => out.set_text(col, text),
                };
                if let Err(msg) = r.or_else(|msg| out.bad_value(col, msg)) {
                    result = Err(format!("field '{}': {msg}", out.columns()[col].name));
                    break;
                }
            }
            start = end;
        }
        self.reset_record();
        result?;
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
}
