//! The text and CSV formats: splitting records at newlines (outside CSV quotes) into fields,
//! with PostgreSQL's backslash escapes (text) or quotes and escapes (CSV), as they arrive.
//!
//! A record cut by the end of a CopyData payload is left for the next one (see
//! [`Decoder::feed`]); a text line `\.` or a CSV record that is only an unquoted `\.` ends the
//! data. Called by [`Decoder`]'s format dispatch in the parent module.

use super::{CopyFault, Decoder, Result, is_null};

impl Decoder {
    /// Decodes the complete lines at the start of `input`; returns the bytes consumed.
    pub(super) fn text_records(
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

    /// Decodes the complete records at the start of `input` (one may span lines inside quotes);
    /// returns the bytes consumed.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn csv_records(
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
}

fn memchr(needle: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|&b| b == needle)
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
