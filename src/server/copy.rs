//! The COPY sub-protocol's responses: CopyInResponse for `COPY ... FROM STDIN`, and CopyData
//! out for `COPY ... TO STDOUT`.
//!
//! Copy-in messages are handed to the connection's [`Session`](crate::sql::Session) by the
//! handlers (`CopyHandler` in `handlers`), which decodes, converts and finally stores the rows.
//! Copy-out rows are encoded exactly as result rows are (text or binary, in the session's time
//! zone) and then framed per row in the requested format.

use bytes::{BufMut, Bytes, BytesMut};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::execution::SendableRecordBatchStream;
use futures::{StreamExt, stream};
use pgwire::api::portal::Format as ResultFormat;
use pgwire::api::results::CopyResponse;
use pgwire::error::PgWireResult;
use pgwire::messages::copy::CopyData;
use pgwire::messages::data::DataRow;

use crate::sql::CopyFormat;

use super::encode;

const BINARY_HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// The response to `COPY ... FROM STDIN`: CopyInResponse, then the client sends data.
pub fn copy_in_response(columns: usize, binary: bool) -> CopyResponse {
    CopyResponse::new(i8::from(binary), columns, stream::empty())
}

/// The response to `COPY ... TO STDOUT`: one CopyData per row in the requested format.
///
/// # Errors
/// Columns whose type cannot be sent.
pub fn copy_out_response(
    format: CopyFormat,
    schema: &SchemaRef,
    batches: SendableRecordBatchStream,
    time_zone: &str,
) -> PgWireResult<CopyResponse> {
    let binary = format == CopyFormat::Binary;
    let result_format = if binary {
        ResultFormat::UnifiedBinary
    } else {
        ResultFormat::UnifiedText
    };
    let (_, rows) = encode::encode(schema, batches, &result_format, time_zone)?;
    let columns = schema.fields().len();
    let mut prefix = match &format {
        CopyFormat::Binary => Some(BINARY_HEADER.to_vec()),
        CopyFormat::Csv {
            delimiter,
            quote,
            escape,
            header: true,
            null,
        } => {
            let mut line = Vec::new();
            for (i, field) in schema.fields().iter().enumerate() {
                if i > 0 {
                    line.push(*delimiter);
                }
                csv_field(
                    &mut line,
                    field.name().as_bytes(),
                    *delimiter,
                    *quote,
                    *escape,
                    null,
                );
            }
            line.push(b'\n');
            Some(line)
        }
        _ => None,
    };
    let mut format = format;
    let data = rows.map(move |row| {
        let row = row?;
        let mut out = BytesMut::with_capacity(row.data.len() + 16);
        if let Some(prefix) = prefix.take() {
            out.put_slice(&prefix);
        }
        frame_row(&mut out, &row, &mut format);
        Ok(CopyData::new(Bytes::from(out)))
    });
    Ok(CopyResponse::new(i8::from(binary), columns, data))
}

/// Frames one encoded row (the body of a DataRow) as a COPY line or binary tuple.
fn frame_row(out: &mut BytesMut, row: &DataRow, format: &mut CopyFormat) {
    if *format == CopyFormat::Binary {
        out.put_i16(row.field_count);
        out.put_slice(&row.data);
        return;
    }
    let mut data: &[u8] = &row.data;
    for i in 0..row.field_count {
        let len = i32::from_be_bytes([data[0], data[1], data[2], data[3]]);
        data = &data[4..];
        let value = if len < 0 {
            None
        } else {
            let (value, rest) = data.split_at(len as usize);
            data = rest;
            Some(value)
        };
        match format {
            CopyFormat::Text { delimiter, null } => {
                if i > 0 {
                    out.put_u8(*delimiter);
                }
                match value {
                    None => out.put_slice(null),
                    Some(value) => text_field(out, value, *delimiter),
                }
            }
            CopyFormat::Csv {
                delimiter,
                quote,
                escape,
                null,
                ..
            } => {
                if i > 0 {
                    out.put_u8(*delimiter);
                }
                match value {
                    None => out.put_slice(null),
                    Some(value) => {
                        let mut field = Vec::with_capacity(value.len() + 2);
                        csv_field(&mut field, value, *delimiter, *quote, *escape, null);
                        out.put_slice(&field);
                    }
                }
            }
            CopyFormat::Binary => {}
        }
    }
    out.put_u8(b'\n');
}

fn text_field(out: &mut BytesMut, value: &[u8], delimiter: u8) {
    for &b in value {
        match b {
            b'\\' => out.put_slice(b"\\\\"),
            b'\n' => out.put_slice(b"\\n"),
            b'\r' => out.put_slice(b"\\r"),
            b'\t' if delimiter == b'\t' => out.put_slice(b"\\t"),
            b if b == delimiter => {
                out.put_u8(b'\\');
                out.put_u8(b);
            }
            b => out.put_u8(b),
        }
    }
}

/// Quotes a CSV value when it holds a delimiter, quote, line break, or could be read as NULL.
fn csv_field(out: &mut Vec<u8>, value: &[u8], delimiter: u8, quote: u8, escape: u8, null: &[u8]) {
    let needs_quotes = value == null
        || value
            .iter()
            .any(|&b| b == delimiter || b == quote || b == b'\n' || b == b'\r' || b == escape)
        || value == b"\\.";
    if !needs_quotes {
        out.extend_from_slice(value);
        return;
    }
    out.push(quote);
    for &b in value {
        if b == quote || b == escape {
            out.push(escape);
        }
        out.push(b);
    }
    out.push(quote);
}
