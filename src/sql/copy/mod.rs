//! `COPY`: `FROM STDIN` into a table and `TO STDOUT` from a table or a query.
//!
//! `COPY ... FROM STDIN` starts a [`CopyIn`] held by the session while the client streams
//! CopyData. Records are decoded as they arrive ([`decode`]: text and CSV fields as strings,
//! binary fields straight into typed columns) and converted to the table's stored types every
//! few thousand rows, so a data error is reported (with its line, as PostgreSQL reports it) as
//! soon as it is seen, and memory holds typed columns rather than text. Nothing is
//! stored until CopyDone: then the rows take the INSERT path as one statement (defaults,
//! constraints, the write-ahead log), so a COPY is stored whole or not at all, and a client
//! that fails or drops the COPY stores nothing.
//!
//! `COPY ... TO STDOUT` runs the query and hands its rows to the server layer with the
//! requested [`Format`], which encodes them like result rows.

mod decode;

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, BinaryBuilder, RecordBatch, StringArray, new_null_array,
};
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::arrow::datatypes::DataType;
use datafusion::sql::sqlparser::ast::{
    CopyLegacyCsvOption, CopyLegacyOption, CopyOption, CopySource, CopyTarget, Ident, ObjectName,
    Statement,
};
use tracing::debug;

use crate::pgtypes::PgType;
use crate::storage::{TableHandle, TableState};

use super::rewrite::{normalize_ident, quoted};
use super::session::Session;
use super::{Outcome, Result, SqlError, dml};

use decode::{Column, DataError, Decoder};
pub use decode::{CopyFault, Format};

/// Rows converted to typed columns at a time.
const CHUNK_ROWS: usize = 65_536;

/// A `COPY ... FROM STDIN` in progress.
pub struct CopyIn {
    handle: Arc<TableHandle>,
    state: TableState,
    /// Table column index of each copied column.
    columns: Vec<usize>,
    decoder: Decoder,
    batches: Vec<RecordBatch>,
}

impl std::fmt::Debug for CopyIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CopyIn")
            .field("table", &self.handle.name)
            .field("columns", &self.columns)
            .finish_non_exhaustive()
    }
}

/// Runs a COPY statement: starts a copy-in, or produces the rows of a copy-out.
///
/// # Errors
/// Unknown tables or columns, unsupported targets (files, programs) and options.
pub async fn execute(session: &Session, statement: &Statement) -> Result<Outcome> {
    let Statement::Copy {
        source,
        to,
        target,
        options,
        legacy_options,
        values,
    } = statement
    else {
        return Err(SqlError::Internal("not a COPY statement".into()));
    };
    let format = format(options, legacy_options)?;
    match (to, target) {
        (false, CopyTarget::Stdin) => {
            if !values.is_empty() {
                return Err(SqlError::Unsupported(
                    "COPY with inline data is not supported; send the data as CopyData".into(),
                ));
            }
            let CopySource::Table {
                table_name,
                columns,
            } = source
            else {
                return Err(SqlError::Syntax("COPY FROM needs a table, not a query".into()));
            };
            session.check_writable("COPY FROM")?;
            start_copy_in(session, table_name, columns, format)
        }
        (true, CopyTarget::Stdout) => {
            let query = match source {
                CopySource::Query(query) => query.to_string(),
                CopySource::Table {
                    table_name,
                    columns,
                } => {
                    let list = if columns.is_empty() {
                        "*".to_string()
                    } else {
                        columns.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
                    };
                    format!("SELECT {list} FROM {table_name}")
                }
            };
            let statements = session.parse(&query)?;
            let [query] = statements.as_slice() else {
                return Err(SqlError::Syntax("COPY needs exactly one query".into()));
            };
            match session.query(query, None).await? {
                Outcome::Rows { schema, stream, .. } => Ok(Outcome::CopyOut {
                    format,
                    schema,
                    stream,
                }),
                _ => Err(SqlError::Syntax("COPY query must return rows".into())),
            }
        }
        (_, CopyTarget::File { .. } | CopyTarget::Program { .. }) => Err(SqlError::Unsupported(
            "COPY to or from a server file or program is not supported; use STDIN/STDOUT (psql \\copy)"
                .into(),
        )),
        (true, CopyTarget::Stdin) | (false, CopyTarget::Stdout) => {
            Err(SqlError::Syntax("COPY TO needs STDOUT and COPY FROM needs STDIN".into()))
        }
    }
}

fn start_copy_in(
    session: &Session,
    table_name: &ObjectName,
    columns: &[Ident],
    format: Format,
) -> Result<Outcome> {
    let (handle, state) = dml::resolve_target(session, table_name)?;
    let table = handle.name.clone();
    let meta = &state.meta;
    let indices: Vec<usize> = if columns.is_empty() {
        (0..meta.columns.len()).collect()
    } else {
        let mut indices = Vec::with_capacity(columns.len());
        for ident in columns {
            let name = normalize_ident(ident);
            let index = meta
                .columns
                .iter()
                .position(|c| c.name == name)
                .ok_or_else(|| SqlError::UndefinedColumn {
                    table: table.clone(),
                    column: name.clone(),
                })?;
            if indices.contains(&index) {
                return Err(SqlError::DuplicateColumn(name));
            }
            indices.push(index);
        }
        indices
    };
    let types = indices
        .iter()
        .map(|i| (meta.columns[*i].name.clone(), meta.columns[*i].pg_type))
        .collect();
    let binary = format == Format::Binary;
    let copy = CopyIn {
        decoder: Decoder::new(format, types),
        columns: indices,
        batches: Vec::new(),
        handle,
        state,
    };
    let columns = copy.columns.len();
    debug!(table = %quoted(&copy.handle.name), columns, "COPY FROM STDIN started");
    *session.shared.copy_in.lock() = Some(copy);
    Ok(Outcome::CopyIn { columns, binary })
}

/// The format and options of a COPY statement, in both the modern and the legacy syntax
/// (psql's `\copy ... csv header` sends the latter).
fn format(options: &[CopyOption], legacy: &[CopyLegacyOption]) -> Result<Format> {
    let mut kind = "text".to_string();
    let mut delimiter = None;
    let mut null = None;
    let mut header = false;
    let mut quote = None;
    let mut escape = None;
    let single = |what: &str, c: char| -> Result<u8> {
        u8::try_from(u32::from(c))
            .ok()
            .filter(u8::is_ascii)
            .ok_or_else(|| {
                SqlError::Syntax(format!("COPY {what} must be a single one-byte character"))
            })
    };
    for option in options {
        match option {
            CopyOption::Format(name) => kind = name.value.to_ascii_lowercase(),
            CopyOption::Delimiter(c) => delimiter = Some(single("delimiter", *c)?),
            CopyOption::Null(s) => null = Some(s.clone().into_bytes()),
            CopyOption::Header(h) => header = *h,
            CopyOption::Quote(c) => quote = Some(single("quote", *c)?),
            CopyOption::Escape(c) => escape = Some(single("escape", *c)?),
            CopyOption::Encoding(e)
                if e.eq_ignore_ascii_case("utf8") || e.eq_ignore_ascii_case("utf-8") => {}
            CopyOption::Freeze(_) | CopyOption::ForceQuote(_) => {}
            other => {
                return Err(SqlError::Unsupported(format!(
                    "COPY option {other} is not supported"
                )));
            }
        }
    }
    for option in legacy {
        match option {
            CopyLegacyOption::Binary => kind = "binary".into(),
            CopyLegacyOption::Delimiter(c) => delimiter = Some(single("delimiter", *c)?),
            CopyLegacyOption::Null(s) => null = Some(s.clone().into_bytes()),
            CopyLegacyOption::Header => header = true,
            CopyLegacyOption::Csv(csv) => {
                kind = "csv".into();
                for option in csv {
                    match option {
                        CopyLegacyCsvOption::Header => header = true,
                        CopyLegacyCsvOption::Quote(c) => quote = Some(single("quote", *c)?),
                        CopyLegacyCsvOption::Escape(c) => escape = Some(single("escape", *c)?),
                        CopyLegacyCsvOption::ForceQuote(_) => {}
                        other => {
                            return Err(SqlError::Unsupported(format!(
                                "COPY option {other} is not supported"
                            )));
                        }
                    }
                }
            }
            other => {
                return Err(SqlError::Unsupported(format!(
                    "COPY option {other} is not supported"
                )));
            }
        }
    }
    match kind.as_str() {
        "text" => {
            if header || quote.is_some() || escape.is_some() {
                return Err(SqlError::Unsupported(
                    "COPY HEADER, QUOTE and ESCAPE are available only in CSV mode".into(),
                ));
            }
            Ok(Format::Text {
                delimiter: delimiter.unwrap_or(b'\t'),
                null: null.unwrap_or_else(|| b"\\N".to_vec()),
            })
        }
        "csv" => {
            let quote = quote.unwrap_or(b'"');
            Ok(Format::Csv {
                delimiter: delimiter.unwrap_or(b','),
                quote,
                escape: escape.unwrap_or(quote),
                null: null.unwrap_or_default(),
                header,
            })
        }
        "binary" => {
            if delimiter.is_some() || null.is_some() || header {
                return Err(SqlError::Unsupported(
                    "COPY DELIMITER, NULL and HEADER are not available in BINARY mode".into(),
                ));
            }
            Ok(Format::Binary)
        }
        other => Err(SqlError::Syntax(format!(
            "COPY format \"{other}\" not recognized"
        ))),
    }
}

impl CopyIn {
    fn data_error(&self, error: DataError) -> SqlError {
        let table = &self.handle.name;
        let context = match &error.column {
            Some((column, value)) if !value.is_empty() => format!(
                "COPY {table}, line {}, column {}: \"{value}\"",
                error.line,
                self.column_name(*column)
            ),
            Some((column, _)) => format!(
                "COPY {table}, line {}, column {}",
                error.line,
                self.column_name(*column)
            ),
            None => format!("COPY {table}, line {}", error.line),
        };
        SqlError::Copy {
            fault: error.code,
            message: error.message,
            context,
        }
    }

    fn column_name(&self, copied: usize) -> &str {
        self.columns
            .get(copied)
            .map_or("?", |i| self.state.meta.columns[*i].name.as_str())
    }

    /// Takes one CopyData payload.
    fn feed(&mut self, data: &[u8]) -> Result<()> {
        if let Err(e) = self.decoder.feed(data) {
            return Err(self.data_error(e));
        }
        if self.decoder.rows() >= CHUNK_ROWS {
            self.convert()?;
        }
        Ok(())
    }

    /// Converts the decoded columns (text, or typed for binary) to a batch in the table's
    /// stored schema.
    fn convert(&mut self) -> Result<()> {
        let decoded = self.decoder.take();
        let rows = decoded.lines.len();
        if rows == 0 {
            return Ok(());
        }
        let meta = self.state.meta.clone();
        let schema = meta.stored_schema.clone();
        let mut columns: Vec<ArrayRef> = schema
            .fields()
            .iter()
            .map(|f| new_null_array(f.data_type(), rows))
            .collect();
        for (copied, (values, &index)) in decoded.columns.iter().zip(&self.columns).enumerate() {
            let column = &meta.columns[index];
            let target = schema.field(index).data_type();
            let error_at = |row: usize, code: CopyFault, message: String| {
                self.data_error(DataError {
                    code,
                    message,
                    line: decoded.lines[row],
                    column: Some((copied, values.display(row))),
                })
            };
            if let Some(limit) = column.pg_type.char_length()
                && let Some(strings) = values.strings()
            {
                let too_long = strings.iter().position(|v| {
                    v.is_some_and(|s| {
                        s.chars().count() > limit as usize
                            && s.chars().skip(limit as usize).any(|c| c != ' ')
                    })
                });
                if let Some(row) = too_long {
                    return Err(error_at(
                        row,
                        CopyFault::StringDataRightTruncation,
                        format!("value too long for type {}", column.pg_type),
                    ));
                }
            }
            columns[index] = match values {
                Column::Text(strings) => match convert_column(strings, column.pg_type, target) {
                    Ok(array) => array,
                    Err(row) => {
                        return Err(error_at(
                            row,
                            CopyFault::InvalidTextRepresentation,
                            format!(
                                "invalid input syntax for type {}: \"{}\"",
                                column.pg_type.sql_standard_name(),
                                strings.value(row)
                            ),
                        ));
                    }
                },
                Column::Typed(array) => match conform(array, target) {
                    Ok(array) => array,
                    Err(row) => {
                        return Err(error_at(
                            row,
                            CopyFault::NumericValueOutOfRange,
                            format!("value out of range for the column's stored type {target}"),
                        ));
                    }
                },
            };
        }
        for (index, column) in meta.columns.iter().enumerate() {
            let given = self.columns.contains(&index);
            let nulls = columns[index].null_count() > 0;
            if column.not_null && nulls && (given || column.default.is_none()) {
                let row = (0..rows).find(|r| columns[index].is_null(*r)).unwrap_or(0);
                return Err(SqlError::Copy {
                    fault: CopyFault::NotNullViolation,
                    message: format!(
                        "null value in column \"{}\" of relation \"{}\" violates not-null constraint",
                        column.name, self.handle.name
                    ),
                    context: format!("COPY {}, line {}", self.handle.name, decoded.lines[row]),
                });
            }
        }
        self.batches.push(RecordBatch::try_new(schema, columns)?);
        Ok(())
    }
}

/// Converts text to `target`; on failure, the row of the first value that does not convert.
fn convert_column(
    strings: &StringArray,
    pg_type: PgType,
    target: &DataType,
) -> std::result::Result<ArrayRef, usize> {
    let failed_row = |converted: &dyn Array| {
        (0..strings.len())
            .find(|r| strings.is_valid(*r) && converted.is_null(*r))
            .unwrap_or(0)
    };
    match target {
        DataType::Utf8 => Ok(Arc::new(strings.clone())),
        DataType::Binary => {
            let mut builder = BinaryBuilder::with_capacity(strings.len(), 0);
            for (row, value) in strings.iter().enumerate() {
                match value {
                    None => builder.append_null(),
                    Some(text) => builder.append_value(parse_bytea(text).ok_or(row)?),
                }
            }
            Ok(Arc::new(builder.finish()))
        }
        _ => {
            let trimmed;
            let input: &dyn Array = if matches!(pg_type, PgType::Int2 | PgType::Int4 | PgType::Int8)
                && strings
                    .iter()
                    .flatten()
                    .any(|s| s.starts_with(' ') || s.ends_with(' '))
            {
                trimmed = strings
                    .iter()
                    .map(|v| v.map(str::trim))
                    .collect::<StringArray>();
                &trimmed
            } else {
                strings
            };
            let options = CastOptions {
                safe: true,
                ..CastOptions::default()
            };
            let converted = cast_with_options(input, target, &options).map_err(|_| 0usize)?;
            if converted.null_count() != strings.null_count() {
                return Err(failed_row(converted.as_ref()));
            }
            Ok(converted)
        }
    }
}

/// A binary column, already of its `PgType`'s Arrow type, cast to `target` where a table
/// deltagate did not create stores another (a narrower integer, say); on failure, the row of
/// the first value that does not fit.
fn conform(array: &ArrayRef, target: &DataType) -> std::result::Result<ArrayRef, usize> {
    if array.data_type() == target {
        return Ok(array.clone());
    }
    let options = CastOptions {
        safe: true,
        ..CastOptions::default()
    };
    let converted = cast_with_options(array, target, &options).map_err(|_| 0usize)?;
    if converted.null_count() == array.null_count() {
        return Ok(converted);
    }
    Err((0..array.len())
        .find(|r| array.is_valid(*r) && converted.is_null(*r))
        .unwrap_or(0))
}

/// bytea input: `\x` followed by hex digits, or the escape format (`\\` and `\nnn` octal).
fn parse_bytea(text: &str) -> Option<Vec<u8>> {
    if let Some(hex) = text.strip_prefix("\\x") {
        let digits: Vec<u8> = hex.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        if !digits.len().is_multiple_of(2) {
            return None;
        }
        return digits
            .chunks(2)
            .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
            .collect();
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            out.push(bytes[i]);
            i += 1;
        } else if bytes.get(i + 1) == Some(&b'\\') {
            out.push(b'\\');
            i += 2;
        } else {
            let octal = bytes.get(i + 1..i + 4)?;
            let text = std::str::from_utf8(octal).ok()?;
            out.push(u8::from_str_radix(text, 8).ok()?);
            i += 4;
        }
    }
    Some(out)
}

impl Session {
    /// Takes a CopyData payload of the COPY in progress.
    ///
    /// # Errors
    /// A data error; the COPY is then over and nothing of it is stored.
    pub fn copy_data(&self, data: &[u8]) -> Result<()> {
        let mut guard = self.shared.copy_in.lock();
        let Some(copy) = guard.as_mut() else {
            return Err(SqlError::Syntax("no COPY in progress".into()));
        };
        let result = copy.feed(data);
        if result.is_err() {
            *guard = None;
            drop(guard);
            self.statement_failed();
        }
        result
    }

    /// Ends the COPY in progress (CopyDone): stores its rows as one statement.
    ///
    /// # Errors
    /// Data errors, constraint violations, storage errors; nothing is stored then.
    pub async fn copy_done(&self) -> Result<Outcome> {
        let Some(mut copy) = self.shared.copy_in.lock().take() else {
            return Err(SqlError::Syntax("no COPY in progress".into()));
        };
        let result = async {
            copy.decoder.finish().map_err(|e| copy.data_error(e))?;
            copy.convert()?;
            let width = copy.state.meta.columns.len();
            let given: Vec<bool> = (0..width).map(|i| copy.columns.contains(&i)).collect();
            let batches = std::mem::take(&mut copy.batches);
            dml::insert_batches(self, &copy.handle, copy.state.clone(), &given, batches).await
        }
        .await;
        match result {
            Ok(rows) => {
                debug!(table = %copy.handle.name, rows, "COPY FROM STDIN stored");
                Ok(Outcome::Command {
                    tag: "COPY".into(),
                    rows: Some(rows),
                })
            }
            Err(e) => {
                self.statement_failed();
                Err(e)
            }
        }
    }

    /// Abandons the COPY in progress (CopyFail or a lost connection): nothing is stored.
    pub fn copy_fail(&self) {
        if self.shared.copy_in.lock().take().is_some() {
            self.statement_failed();
        }
    }
}
