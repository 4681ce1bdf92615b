//! Decoding of `COPY ... FROM STDIN` data in PostgreSQL's text, CSV and binary formats.
//!
//! [`Decoder`] takes the CopyData payloads as they arrive (split anywhere, even inside a
//! record), and turns complete records into one string column per copied column (NULL kept
//! apart from the empty string), remembering the input line of every row so that a value
//! rejected later can be reported as PostgreSQL does (`COPY t, line 3, column x: "..."`).
//! Binary fields are rendered to their text form, so all three formats share one typed
//! conversion ([`super::convert`]). Errors carry the line; the caller aborts the COPY on the first.
//!
//! This file holds the decoder's state and what all formats share (one value, one NULL, the
//! end of a row, errors); `text` splits text and CSV records into fields, `binary` reads
//! binary tuples and renders their fields as text. Used by the COPY statement in the parent
//! module, which feeds it CopyData as it arrives.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, StringBuilder};

use crate::pgtypes::PgType;

mod binary;
#[cfg(test)]
mod tests;
mod text;

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
}

/// Whether a field is the NULL marker. Checked for every field, so the common cases (lengths
/// differ; both empty, CSV's default) are settled without a library call.
#[inline]
fn is_null(value: &[u8], null: &[u8]) -> bool {
    value.len() == null.len() && (null.is_empty() || value == null)
}
