//! Decoding of `COPY ... FROM STDIN` data in PostgreSQL's text, CSV and binary formats.
//!
//! [`Decoder`] takes the CopyData payloads as they arrive (split anywhere, even inside a
//! record), and turns complete records into one column per copied column, remembering the
//! input line of every row so that a value rejected later can be reported as PostgreSQL does
//! (`COPY t, line 3, column x: "..."`). Text and CSV fields become string columns (NULL kept
//! apart from the empty string), converted to the table's types by the parent module
//! ([`super::convert`]); binary fields are decoded straight into typed columns by
//! [`crate::pgbinary`], the decoder Bind parameters use too. Errors carry the line; the caller
//! aborts the COPY on the first.
//!
//! This file holds the decoder's state and what all formats share (one value, one NULL, the
//! end of a row, errors); `text` splits text and CSV records into fields, `binary` frames
//! binary tuples and hands their fields to `pgbinary`. Used by the COPY statement in the
//! parent module, which feeds it CopyData as it arrives.

use datafusion::arrow::array::{Array, ArrayRef, StringArray, StringBuilder};
use datafusion::arrow::util::display::array_value_to_string;

use crate::pgbinary::ColumnBuilder;
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
    /// A binary value of the wrong length for its type, or one deltagate cannot store.
    InvalidBinaryRepresentation,
    /// A binary number beyond what its column holds.
    NumericValueOutOfRange,
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

/// Rows decoded so far: one column per copied column, and each row's input line.
pub struct Decoded {
    pub columns: Vec<Column>,
    pub lines: Vec<u64>,
}

/// A copied column's decoded values.
pub enum Column {
    /// Text or CSV fields, still to be converted to the column's type.
    Text(StringArray),
    /// Binary fields, already of the column's type ([`crate::pgtypes::PgType::arrow_type`]).
    Typed(ArrayRef),
}

impl Column {
    /// The values as strings, when they are: text input, or a typed text column.
    pub fn strings(&self) -> Option<&StringArray> {
        match self {
            Column::Text(strings) => Some(strings),
            Column::Typed(array) => array.as_any().downcast_ref(),
        }
    }

    /// Row `row`'s value as error messages show it.
    pub fn display(&self, row: usize) -> String {
        match self {
            Column::Text(strings) => strings.value(row).to_string(),
            Column::Typed(array) => array_value_to_string(array, row).unwrap_or_default(),
        }
    }
}

/// Where a decoder puts the fields of the rows it reads, one builder per copied column.
enum Builders {
    /// Text and CSV fields as they were written.
    Text(Vec<StringBuilder>),
    /// Binary fields, decoded as their column's type.
    Typed(Vec<ColumnBuilder>),
}

/// Streaming decoder of COPY input.
pub struct Decoder {
    format: Format,
    names: Vec<String>,
    pending: Vec<u8>,
    /// Line (or tuple) number of the next record, 1-based.
    line: u64,
    header_done: bool,
    ended: bool,
    builders: Builders,
    lines: Vec<u64>,
    field: Vec<u8>,
    /// Per field of the CSV record being read: its range in `field` and whether it was quoted.
    bounds: Vec<(usize, usize, bool)>,
}

impl Decoder {
    /// A decoder for columns of these types and names.
    pub fn new(format: Format, columns: Vec<(String, PgType)>) -> Decoder {
        let builders = if format == Format::Binary {
            Builders::Typed(
                columns
                    .iter()
                    .map(|(_, t)| ColumnBuilder::new(*t))
                    .collect(),
            )
        } else {
            Builders::Text(columns.iter().map(|_| StringBuilder::new()).collect())
        };
        let names = columns.into_iter().map(|(name, _)| name).collect();
        Decoder {
            names,
            header_done: !matches!(format, Format::Csv { header: true, .. } | Format::Binary),
            format,
            pending: Vec::new(),
            line: 1,
            ended: false,
            builders,
            lines: Vec::new(),
            field: Vec::new(),
            bounds: Vec::new(),
        }
    }

    /// Rows decoded and not yet taken.
    pub fn rows(&self) -> usize {
        self.lines.len()
    }

    /// Takes the rows decoded so far.
    pub fn take(&mut self) -> Decoded {
        let columns = match &mut self.builders {
            Builders::Text(builders) => builders
                .iter_mut()
                .map(|b| Column::Text(b.finish()))
                .collect(),
            Builders::Typed(builders) => builders
                .iter_mut()
                .map(|b| Column::Typed(b.finish()))
                .collect(),
        };
        Decoded {
            columns,
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

    /// The number of copied columns.
    fn width(&self) -> usize {
        self.names.len()
    }

    /// Appends a text or CSV field.
    fn push_value(&mut self, column: usize, value: &[u8]) -> Result<()> {
        if column >= self.width() {
            return Err(self.error(
                CopyFault::BadCopyFileFormat,
                "extra data after last expected column".into(),
            ));
        }
        match std::str::from_utf8(value) {
            Ok(text) => {
                match &mut self.builders {
                    Builders::Text(builders) => builders[column].append_value(text),
                    Builders::Typed(_) => unreachable!("text fields go to text builders"),
                }
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
        if column >= self.width() {
            return Err(self.error(
                CopyFault::BadCopyFileFormat,
                "extra data after last expected column".into(),
            ));
        }
        match &mut self.builders {
            Builders::Text(builders) => builders[column].append_null(),
            Builders::Typed(builders) => builders[column].append_null(),
        }
        Ok(())
    }

    fn end_row(&mut self, fields: usize, first_line: u64) -> Result<()> {
        if fields < self.width() {
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
