//! Decoding of `COPY ... FROM STDIN` data in PostgreSQL's text, CSV and binary formats.
//!
//! [`Decoder`] takes the CopyData payloads as they arrive (split anywhere, even inside a
//! record), and turns complete records into one string column per copied column (NULL kept
//! apart from the empty string), remembering the input line of every row so that a value
//! rejected later can be reported as PostgreSQL does (`COPY t, line 3, column x: "..."`).
//! Binary fields are rendered to their text form, so all three formats share one typed
//! conversion ([`super::convert`]). Errors carry the line; the caller aborts the COPY on the first.

use std::sync::Arc;

use chrono::{DateTime, NaiveDate};
use datafusion::arrow::array::{ArrayRef, StringBuilder};

use crate::pgtypes::PgType;

/// The input format and its options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    Text {
        delimiter: u8,
        null: Vec<u8>,
    },
    Csv {
        delimiter: u8,
        quote: u8,
        escape: u8,
        null: Vec<u8>,
        header: bool,
    },
    Binary,
}

/// What kind of problem a COPY input has, as PostgreSQL names its conditions (their SQLSTATEs
/// are assigned in `sql::sqlstate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyFault {
    /// The input's framing: missing or extra columns, a bad binary signature, a CSV quote.
    BadCopyFileFormat,
    /// A value that is not valid text for its column's type.
    InvalidTextRepresentation,
    /// A binary value of the wrong length for its type.
    InvalidBinaryRepresentation,
    /// Bytes that are not UTF-8.
    UntranslatableCharacter,
    /// A value longer than its column allows.
    StringDataRightTruncation,
    /// A null in a NOT NULL column.
    NotNullViolation,
}

/// A problem in the data, at an input line (a tuple number for binary).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataError {
    pub code: CopyFault,
    pub message: String,
    pub line: u64,
    /// The column and the offending value, when one is known.
    pub column: Option<(usize, String)>,
}

type Result<T> = std::result::Result<T, DataError>;

const BINARY_SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

/// Rows decoded so far: one string column per copied column, and each row's input line.
pub struct Decoded {
    pub columns: Vec<ArrayRef>,
    pub lines: Vec<u64>,
}

/// Streaming decoder of COPY input.
pub struct Decoder {
    format: Format,
    types: Vec<PgType>,
    names: Vec<String>,
    pending: Vec<u8>,
    /// Line (or tuple) number of the next record, 1-based.
    line: u64,
    header_done: bool,
    ended: bool,
    builders: Vec<StringBuilder>,
    lines: Vec<u64>,
    field: Vec<u8>,
    /// Per field of the CSV record being read: its range in `field` and whether it was quoted.
    bounds: Vec<(usize, usize, bool)>,
    text: String,
}

impl Decoder {
    /// A decoder for columns of these types and names.
    pub fn new(format: Format, columns: Vec<(String, PgType)>) -> Decoder {
        let builders = columns.iter().map(|_| StringBuilder::new()).collect();
        let (names, types) = columns.into_iter().unzip();
        Decoder {
            names,
            header_done: !matches!(format, Format::Csv { header: true, .. } | Format::Binary),
            format,
            types,
            pending: Vec::new(),
            line: 1,
            ended: false,
            builders,
            lines: Vec::new(),
            field: Vec::new(),
            bounds: Vec::new(),
            text: String::new(),
        }
    }

    /// Rows decoded and not yet taken.
    pub fn rows(&self) -> usize {
        self.lines.len()
    }

    /// Takes the rows decoded so far.
    pub fn take(&mut self) -> Decoded {
        Decoded {
            columns: self
                .builders
                .iter_mut()
                .map(|b| Arc::new(b.finish()) as ArrayRef)
                .collect(),
            lines: std::mem::take(&mut self.lines),
        }
    }

    /// Decodes the complete records in `data` (plus what an earlier call left over).
    pub fn feed(&mut self, data: &[u8]) -> Result<()> {
        if self.ended {
            return Ok(());
        }
        if self.pending.is_empty() {
            let used = self.records(data, false)?;
            self.pending.extend_from_slice(&data[used..]);
        } else {
            self.pending.extend_from_slice(data);
            let pending = std::mem::take(&mut self.pending);
            let used = self.records(&pending, false)?;
            self.pending = pending;
            self.pending.drain(..used);
        }
        Ok(())
    }

    /// Decodes what is left at the end of the input (a last line without a newline).
    pub fn finish(&mut self) -> Result<()> {
        let pending = std::mem::take(&mut self.pending);
        if !self.ended && !pending.is_empty() {
            let used = self.records(&pending, true)?;
            if used < pending.len() {
                return Err(self.error(
                    CopyFault::BadCopyFileFormat,
                    "unexpected end of COPY data".into(),
                ));
            }
        }
        if matches!(self.format, Format::Binary) && !self.ended && self.header_done {
            return Err(self.error(
                CopyFault::BadCopyFileFormat,
                "COPY file signature not recognized or missing trailer".into(),
            ));
        }
        Ok(())
    }

    /// Decodes complete records at the start of `input`; returns the bytes consumed.
    fn records(&mut self, input: &[u8], at_end: bool) -> Result<usize> {
        match self.format.clone() {
            Format::Text { delimiter, null } => self.text_records(input, at_end, delimiter, &null),
            Format::Csv {
                delimiter,
                quote,
                escape,
                null,
                ..
            } => self.csv_records(input, at_end, delimiter, quote, escape, &null),
            Format::Binary => self.binary_records(input),
        }
    }

    fn error(&self, code: CopyFault, message: String) -> DataError {
        DataError {
            code,
            message,
            line: self.line,
            column: None,
        }
    }

    fn value_error(&self, column: usize, message: String, value: &[u8]) -> DataError {
        DataError {
            column: Some((column, String::from_utf8_lossy(value).into_owned())),
            ..self.error(CopyFault::InvalidTextRepresentation, message)
        }
    }

    fn push_value(&mut self, column: usize, value: &[u8]) -> Result<()> {
        if column >= self.builders.len() {
            return Err(self.error(
                CopyFault::BadCopyFileFormat,
                "extra data after last expected column".into(),
            ));
        }
        match std::str::from_utf8(value) {
            Ok(text) => {
                self.builders[column].append_value(text);
                Ok(())
            }
            Err(_) => Err(DataError {
                code: CopyFault::UntranslatableCharacter,
                ..self.value_error(
                    column,
                    "invalid byte sequence for encoding \"UTF8\"".into(),
                    value,
                )
            }),
        }
    }

    fn push_null(&mut self, column: usize) -> Result<()> {
        if column >= self.builders.len() {
            return Err(self.error(
                CopyFault::BadCopyFileFormat,
                "extra data after last expected column".into(),
            ));
        }
        self.builders[column].append_null();
        Ok(())
    }

    fn end_row(&mut self, fields: usize, first_line: u64) -> Result<()> {
        if fields < self.builders.len() {
            let name = &self.names[fields];
            return Err(self.error(
                CopyFault::BadCopyFileFormat,
                format!("missing data for column \"{name}\""),
            ));
        }
        self.lines.push(first_line);
        Ok(())
    }

    fn text_records(
        &mut self,
        input: &[u8],
        at_end: bool,
        delimiter: u8,
        null: &[u8],
    ) -> Result<usize> {
        let mut start = 0;
        while start < input.len() {
            let (line, next) = match memchr(b'\n', &input[start..]) {
                Some(n) => (&input[start..start + n], start + n + 1),
                None if at_end => (&input[start..], input.len()),
                None => break,
            };
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line == b"\\." {
                self.ended = true;
                return Ok(input.len());
            }
            self.text_line(line, delimiter, null)?;
            self.line += 1;
            start = next;
        }
        Ok(start)
    }

    fn text_line(&mut self, line: &[u8], delimiter: u8, null: &[u8]) -> Result<()> {
        let mut column = 0;
        let mut start = 0;
        let mut i = 0;
        let mut escaped = false;
        while i <= line.len() {
            if i < line.len() && line[i] == b'\\' {
                escaped = true;
                i += 2;
                continue;
            }
            if i == line.len() || line[i] == delimiter {
                let raw = &line[start..i.min(line.len())];
                if is_null(raw, null) {
                    self.push_null(column)?;
                } else if escaped {
                    let value = unescape_text(raw);
                    self.push_value(column, &value)?;
                } else {
                    self.push_value(column, raw)?;
                }
                column += 1;
                start = i + 1;
                escaped = false;
            }
            i += 1;
        }
        self.end_row(column, self.line)
    }

    #[allow(clippy::too_many_arguments)]
    fn csv_records(
        &mut self,
        input: &[u8],
        at_end: bool,
        delimiter: u8,
        quote: u8,
        escape: u8,
        null: &[u8],
    ) -> Result<usize> {
        let mut start = 0;
        'records: while start < input.len() {
            // One record: fields until a newline outside quotes.
            let first_line = self.line;
            let mut column = 0;
            let mut i = start;
            let mut newlines = 0;
            // The record's unescaped bytes, and where each field lies in them.
            self.field.clear();
            self.bounds.clear();
            let mut field_start = 0;
            let mut quoted = false;
            let mut in_quotes = false;
            let end;
            loop {
                if i >= input.len() {
                    if !at_end {
                        break 'records;
                    }
                    if in_quotes {
                        return Err(self.error(
                            CopyFault::BadCopyFileFormat,
                            "unterminated CSV quoted field".into(),
                        ));
                    }
                    end = input.len();
                    break;
                }
                let b = input[i];
                if in_quotes {
                    let next = input.get(i + 1).copied();
                    if next.is_none() && !at_end && (b == escape || b == quote) {
                        // An escape or a doubled quote may straddle the chunk boundary.
                        break 'records;
                    }
                    if b == escape && escape != quote {
                        match next {
                            Some(n) if n == quote || n == escape => {
                                self.field.push(n);
                                i += 2;
                            }
                            _ => {
                                self.field.push(b);
                                i += 1;
                            }
                        }
                        continue;
                    }
                    if b == quote {
                        if escape == quote && next == Some(quote) {
                            self.field.push(quote);
                            i += 2;
                        } else {
                            in_quotes = false;
                            i += 1;
                        }
                        continue;
                    }
                    if b == b'\n' {
                        newlines += 1;
                    }
                    self.field.push(b);
                    i += 1;
                    continue;
                }
                if b == quote {
                    in_quotes = true;
                    quoted = true;
                    i += 1;
                } else if b == delimiter {
                    self.bounds.push((field_start, self.field.len(), quoted));
                    field_start = self.field.len();
                    quoted = false;
                    i += 1;
                } else if b == b'\n' {
                    end = i + 1;
                    break;
                } else if b == b'\r' && input.get(i + 1) == Some(&b'\n') {
                    end = i + 2;
                    break;
                } else if b == b'\r' && i + 1 == input.len() && !at_end {
                    break 'records;
                } else {
                    self.field.push(b);
                    i += 1;
                }
            }
            self.bounds.push((field_start, self.field.len(), quoted));
            start = end;
            if !self.header_done {
                self.header_done = true;
                self.line += 1 + newlines;
                continue;
            }
            let (record, bounds) = (
                std::mem::take(&mut self.field),
                std::mem::take(&mut self.bounds),
            );
            if bounds.len() == 1 && !bounds[0].2 && record == b"\\." {
                self.ended = true;
                return Ok(input.len());
            }
            let mut result = Ok(());
            for &(from, to, was_quoted) in &bounds {
                let value = &record[from..to];
                result = if !was_quoted && is_null(value, null) {
                    self.push_null(column)
                } else {
                    self.push_value(column, value)
                };
                if result.is_err() {
                    break;
                }
                column += 1;
            }
            (self.field, self.bounds) = (record, bounds);
            result?;
            self.end_row(column, first_line)?;
            self.line += 1 + newlines;
        }
        Ok(start)
    }

    fn binary_records(&mut self, input: &[u8]) -> Result<usize> {
        let mut pos = 0;
        if !self.header_done {
            if input.len() < BINARY_SIGNATURE.len() + 8 {
                return Ok(0);
            }
            if &input[..BINARY_SIGNATURE.len()] != BINARY_SIGNATURE {
                return Err(self.error(
                    CopyFault::BadCopyFileFormat,
                    "COPY file signature not recognized".into(),
                ));
            }
            let flags = be_i32(&input[11..15]);
            if flags & (1 << 16) != 0 {
                return Err(self.error(
                    CopyFault::BadCopyFileFormat,
                    "COPY file has OIDs, which are not supported".into(),
                ));
            }
            let extension = be_i32(&input[15..19]).max(0) as usize;
            if input.len() < 19 + extension {
                return Ok(0);
            }
            pos = 19 + extension;
            self.header_done = true;
        }
        loop {
            let tuple_start = pos;
            if input.len() < pos + 2 {
                return Ok(tuple_start);
            }
            let count = i16::from_be_bytes([input[pos], input[pos + 1]]);
            pos += 2;
            if count == -1 {
                self.ended = true;
                return Ok(input.len());
            }
            if count as usize != self.builders.len() {
                return Err(self.error(
                    CopyFault::BadCopyFileFormat,
                    format!(
                        "row field count is {count}, expected {}",
                        self.builders.len()
                    ),
                ));
            }
            // Check the whole tuple is here before decoding any of it.
            let mut scan = pos;
            for _ in 0..count {
                if input.len() < scan + 4 {
                    return Ok(tuple_start);
                }
                let len = be_i32(&input[scan..scan + 4]);
                scan += 4 + len.max(0) as usize;
            }
            if input.len() < scan {
                return Ok(tuple_start);
            }
            for column in 0..count as usize {
                let len = be_i32(&input[pos..pos + 4]);
                pos += 4;
                if len < 0 {
                    self.push_null(column)?;
                    continue;
                }
                let bytes = &input[pos..pos + len as usize];
                pos += len as usize;
                self.text.clear();
                let mut text = std::mem::take(&mut self.text);
                if let Err(message) = binary_to_text(self.types[column], bytes, &mut text) {
                    return Err(DataError {
                        code: CopyFault::InvalidBinaryRepresentation,
                        ..self.value_error(column, message, b"")
                    });
                }
                self.builders[column].append_value(&text);
                self.text = text;
            }
            self.lines.push(self.line);
            self.line += 1;
        }
    }
}

/// Whether a field is the NULL marker. Checked for every field, so the common cases (lengths
/// differ; both empty, CSV's default) are settled without a library call.
#[inline]
fn is_null(value: &[u8], null: &[u8]) -> bool {
    value.len() == null.len() && (null.is_empty() || value == null)
}

fn memchr(needle: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|&b| b == needle)
}

fn be_i32(bytes: &[u8]) -> i32 {
    i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

/// Resolves the backslash escapes of the text format.
fn unescape_text(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if b != b'\\' || i + 1 >= raw.len() {
            out.push(b);
            i += 1;
            continue;
        }
        let next = raw[i + 1];
        i += 2;
        match next {
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(11),
            b'0'..=b'7' => {
                let mut value = u32::from(next - b'0');
                for _ in 0..2 {
                    match raw.get(i) {
                        Some(d @ b'0'..=b'7') => {
                            value = value * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push(value as u8);
            }
            b'x' if raw.get(i).is_some_and(u8::is_ascii_hexdigit) => {
                let mut value = 0u32;
                for _ in 0..2 {
                    match raw.get(i).and_then(|d| (*d as char).to_digit(16)) {
                        Some(d) => {
                            value = value * 16 + d;
                            i += 1;
                        }
                        None => break,
                    }
                }
                out.push(value as u8);
            }
            other => out.push(other),
        }
    }
    out
}

const PG_EPOCH_DAYS: i64 = 10_957; // 2000-01-01 - 1970-01-01

/// Renders a binary COPY field as the text PostgreSQL would accept for the same value.
fn binary_to_text(
    pg_type: PgType,
    bytes: &[u8],
    out: &mut String,
) -> std::result::Result<(), String> {
    use std::fmt::Write;
    let exact = |n: usize| -> std::result::Result<(), String> {
        if bytes.len() == n {
            Ok(())
        } else {
            Err(format!(
                "incorrect binary data format: {} bytes for {pg_type}",
                bytes.len()
            ))
        }
    };
    let fixed = |n: usize| -> std::result::Result<[u8; 8], String> {
        exact(n)?;
        let mut buf = [0u8; 8];
        buf[8 - n..].copy_from_slice(bytes);
        Ok(buf)
    };
    match pg_type {
        PgType::Bool => {
            exact(1)?;
            out.push(if bytes[0] != 0 { 't' } else { 'f' });
        }
        PgType::Int2 => {
            let b = fixed(2)?;
            let _ = write!(out, "{}", i16::from_be_bytes([b[6], b[7]]));
        }
        PgType::Int4 => {
            let b = fixed(4)?;
            let _ = write!(out, "{}", i32::from_be_bytes([b[4], b[5], b[6], b[7]]));
        }
        PgType::Int8 => {
            let _ = write!(out, "{}", i64::from_be_bytes(fixed(8)?));
        }
        PgType::Float4 => {
            let b = fixed(4)?;
            let _ = write!(out, "{:?}", f32::from_be_bytes([b[4], b[5], b[6], b[7]]));
        }
        PgType::Float8 => {
            let _ = write!(out, "{:?}", f64::from_be_bytes(fixed(8)?));
        }
        PgType::Text | PgType::Varchar(_) | PgType::Bpchar(_) | PgType::Json => {
            out.push_str(std::str::from_utf8(bytes).map_err(|_| "invalid UTF-8".to_string())?);
        }
        PgType::Jsonb => match bytes.split_first() {
            Some((1, rest)) => {
                out.push_str(std::str::from_utf8(rest).map_err(|_| "invalid UTF-8".to_string())?)
            }
            _ => return Err("unsupported jsonb version number".into()),
        },
        PgType::Bytea => {
            out.push_str("\\x");
            for b in bytes {
                let _ = write!(out, "{b:02x}");
            }
        }
        PgType::Uuid => {
            exact(16)?;
            for (i, b) in bytes.iter().enumerate() {
                if matches!(i, 4 | 6 | 8 | 10) {
                    out.push('-');
                }
                let _ = write!(out, "{b:02x}");
            }
        }
        PgType::Date => {
            let b = fixed(4)?;
            let days = i64::from(i32::from_be_bytes([b[4], b[5], b[6], b[7]])) + PG_EPOCH_DAYS;
            let date = NaiveDate::from_num_days_from_ce_opt((days + 719_163) as i32)
                .ok_or_else(|| "date out of range".to_string())?;
            let _ = write!(out, "{}", date.format("%Y-%m-%d"));
        }
        PgType::Timestamp | PgType::Timestamptz => {
            let micros = i64::from_be_bytes(fixed(8)?)
                .checked_add(PG_EPOCH_DAYS * 86_400_000_000)
                .ok_or_else(|| "timestamp out of range".to_string())?;
            let at = DateTime::from_timestamp_micros(micros)
                .ok_or_else(|| "timestamp out of range".to_string())?;
            let _ = write!(out, "{}", at.naive_utc().format("%Y-%m-%d %H:%M:%S%.6f"));
            if pg_type == PgType::Timestamptz {
                out.push_str("+00");
            }
        }
        PgType::Numeric(_) => numeric_text(bytes, out)?,
    }
    Ok(())
}

/// PostgreSQL's binary numeric: ndigits, weight, sign, dscale, then base-10000 digits.
fn numeric_text(bytes: &[u8], out: &mut String) -> std::result::Result<(), String> {
    use std::fmt::Write;
    let word = |i: usize| -> std::result::Result<i16, String> {
        bytes
            .get(i * 2..i * 2 + 2)
            .map(|b| i16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| "incorrect binary data format for numeric".to_string())
    };
    let ndigits = word(0)?.max(0) as usize;
    let weight = i32::from(word(1)?);
    let sign = word(2)? as u16;
    let dscale = word(3)?.max(0) as usize;
    if sign == 0xC000 {
        return Err("NaN cannot be stored in numeric columns".into());
    }
    let digits = (0..ndigits)
        .map(|i| word(4 + i))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    if sign == 0x4000 {
        out.push('-');
    }
    // Integer part: groups with weight >= 0.
    if weight < 0 {
        out.push('0');
    } else {
        for w in 0..=weight {
            let d = digits.get(w as usize).copied().unwrap_or(0);
            if w == 0 {
                let _ = write!(out, "{d}");
            } else {
                let _ = write!(out, "{d:04}");
            }
        }
    }
    if dscale > 0 {
        out.push('.');
        let mut fraction = String::new();
        let mut group = weight + 1;
        while fraction.len() < dscale {
            let d = if group < 0 {
                0
            } else {
                digits.get(group as usize).copied().unwrap_or(0)
            };
            let _ = write!(fraction, "{d:04}");
            group += 1;
        }
        fraction.truncate(dscale);
        out.push_str(&fraction);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Array, StringArray};

    fn columns(types: &[PgType]) -> Vec<(String, PgType)> {
        types
            .iter()
            .enumerate()
            .map(|(i, t)| (format!("c{i}"), *t))
            .collect()
    }

    /// Feeds `input` in chunks of `size` bytes, as CopyData may split it anywhere.
    fn decode_in_chunks(d: &mut Decoder, input: &[u8], size: usize) -> Decoded {
        for chunk in input.chunks(size) {
            d.feed(chunk).expect("feed");
        }
        d.finish().expect("finish");
        d.take()
    }

    fn strings(decoded: &Decoded, column: usize) -> Vec<Option<String>> {
        let array = decoded.columns[column]
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("strings");
        array.iter().map(|v| v.map(str::to_string)).collect()
    }

    #[test]
    fn text_format_escapes_nulls_and_split_chunks() {
        let mut d = Decoder::new(
            Format::Text {
                delimiter: b'\t',
                null: b"\\N".to_vec(),
            },
            columns(&[PgType::Int4, PgType::Text]),
        );
        let input = b"1\ta\\tb\\\\c\n2\t\\N\n3\t\\101\\x41\n\\.\n";
        let decoded = decode_in_chunks(&mut d, &input[..], 3);
        assert_eq!(decoded.lines, vec![1, 2, 3]);
        assert_eq!(
            strings(&decoded, 1),
            vec![Some("a\tb\\c".into()), None, Some("AA".into())]
        );
    }

    #[test]
    fn csv_quotes_newlines_header_and_empty_versus_null() {
        let mut d = Decoder::new(
            Format::Csv {
                delimiter: b',',
                quote: b'"',
                escape: b'"',
                null: Vec::new(),
                header: true,
            },
            columns(&[PgType::Int4, PgType::Text]),
        );
        let input = b"id,name\r\n1,\"a,\"\"b\"\"\nc\"\r\n2,\n3,\"\"\n4,x";
        let decoded = decode_in_chunks(&mut d, &input[..], 2);
        assert_eq!(decoded.lines, vec![2, 4, 5, 6]);
        assert_eq!(
            strings(&decoded, 1),
            vec![
                Some("a,\"b\"\nc".into()),
                None,
                Some(String::new()),
                Some("x".into())
            ]
        );
    }

    #[test]
    fn field_count_errors_name_the_line() {
        let mut d = Decoder::new(
            Format::Csv {
                delimiter: b',',
                quote: b'"',
                escape: b'"',
                null: Vec::new(),
                header: false,
            },
            columns(&[PgType::Int4, PgType::Text]),
        );
        let error = d.feed(b"1,a\n2,b,c\n").expect_err("extra column");
        assert_eq!((error.code, error.line), (CopyFault::BadCopyFileFormat, 2));
        let mut d = Decoder::new(
            Format::Text {
                delimiter: b'\t',
                null: b"\\N".to_vec(),
            },
            columns(&[PgType::Int4, PgType::Text]),
        );
        let error = d.feed(b"1\ta\n2\n").expect_err("missing column");
        assert_eq!((error.code, error.line), (CopyFault::BadCopyFileFormat, 2));
    }

    #[test]
    fn binary_tuples_become_text() {
        let mut input = BINARY_SIGNATURE.to_vec();
        input.extend_from_slice(&0i32.to_be_bytes());
        input.extend_from_slice(&0i32.to_be_bytes());
        input.extend_from_slice(&3i16.to_be_bytes());
        input.extend_from_slice(&4i32.to_be_bytes());
        input.extend_from_slice(&42i32.to_be_bytes());
        input.extend_from_slice(&(-1i32).to_be_bytes());
        // numeric -12.50: ndigits 2, weight 0, sign neg, dscale 2, digits [12, 5000]
        input.extend_from_slice(&12i32.to_be_bytes());
        for w in [2i16, 0, 0x4000, 2, 12, 5000] {
            input.extend_from_slice(&w.to_be_bytes());
        }
        input.extend_from_slice(&(-1i16).to_be_bytes());
        let mut d = Decoder::new(
            Format::Binary,
            columns(&[PgType::Int4, PgType::Text, PgType::Numeric(Some((10, 2)))]),
        );
        let decoded = decode_in_chunks(&mut d, &input[..], 5);
        assert_eq!(strings(&decoded, 0), vec![Some("42".into())]);
        assert_eq!(strings(&decoded, 1), vec![None]);
        assert_eq!(strings(&decoded, 2), vec![Some("-12.50".into())]);
    }
}
