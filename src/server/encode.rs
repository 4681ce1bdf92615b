//! Result rows to the wire: `RowDescription` fields and `DataRow`s, text or binary.
//!
//! Column types come from the PostgreSQL type recorded in each field's metadata when the
//! column comes from a table (so a `varchar(255)` column is described as OID 1043 with typmod
//! 259 and its table OID and attribute number, as PostgreSQL does), else from the Arrow type.
//! Values are encoded by arrow-pg, except the few types it has no PostgreSQL twin for: `json`,
//! `jsonb` and `uuid` (stored as strings), and `timestamp` (stored as UTC, shown without zone).
//! `timestamptz` values are shown in the session's `TimeZone`.

use std::error::Error;
use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use datafusion::arrow::array::{Array, ArrayRef, RecordBatch, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, SchemaRef, TimeUnit};
use datafusion::execution::SendableRecordBatchStream;
use futures::{Stream, StreamExt, stream};
use pgwire::api::Type;
use pgwire::api::portal::Format;
use pgwire::api::results::{DataRowEncoder, FieldFormat, FieldInfo};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::data::DataRow;
use pgwire::types::ToSqlText;
use pgwire::types::format::FormatOptions;
use postgres_types::{IsNull, ToSql, to_sql_checked};

use crate::pgtypes::{PG_ATTNUM_KEY, PG_TABLE_OID_KEY, PgType};
use crate::sql::SqlError;

use super::errors;

/// How a column's values are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    /// arrow-pg, after an optional cast.
    Arrow,
    Json,
    Jsonb,
    Uuid,
    /// `timestamp`/`timestamptz` in text: PostgreSQL trims zero fractions, which arrow-pg
    /// does not.
    TimestampText,
    /// `real`/`double precision` in text, as PostgreSQL prints them (`1`, `1e+20`, `Infinity`).
    FloatText,
}

/// One result column: what the client is told and how values are produced.
#[derive(Debug, Clone)]
struct Column {
    info: FieldInfo,
    encoding: Encoding,
    /// Cast applied before encoding (time zones of timestamps).
    cast: Option<DataType>,
}

fn pg_type_of(field: &Field) -> PgWireResult<(Type, i32, i16)> {
    if let Some(t) = PgType::declared(field) {
        let ty = Type::from_oid(t.oid()).unwrap_or(Type::TEXT);
        return Ok((ty, t.typmod(), t.typlen()));
    }
    let ty = match field.data_type() {
        DataType::Null => Type::TEXT,
        _ => arrow_pg::datatypes::field_into_pg_type(&Arc::new(field.clone()))?,
    };
    let len = match ty.oid() {
        16 | 18 => 1,
        21 => 2,
        23 | 26 | 700 | 1082 => 4,
        20 | 701 | 1114 | 1184 => 8,
        _ => -1,
    };
    Ok((ty, -1, len))
}

/// The type announced for a parameter: the column's PostgreSQL type when planning tied the
/// parameter to a column, else the Arrow type's equivalent, else `text`.
pub fn parameter_type(field: &Field) -> Type {
    pg_type_of(field)
        .map(|(ty, _, _)| ty)
        .ok()
        .filter(|t| *t != Type::UNKNOWN)
        .unwrap_or(Type::TEXT)
}

fn columns(schema: &SchemaRef, format: &Format, time_zone: &str) -> PgWireResult<Vec<Column>> {
    // A Bind's formats were checked against the statement's columns; a result whose columns
    // changed since (the table was altered) must not be encoded with too few.
    if let Format::Individual(codes) = format {
        super::fastpath::wire::check_result_formats(codes.len(), schema.fields().len())
            .map_err(|e| errors::protocol(&e, false))?;
    }
    schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, field)| {
            let (ty, typmod, len) = pg_type_of(field)?;
            // Only a column read as stored names its table, as in PostgreSQL.
            let from_column = PgType::declared(field).is_some();
            let table_id = field
                .metadata()
                .get(PG_TABLE_OID_KEY)
                .and_then(|v| v.parse::<i32>().ok())
                .filter(|_| from_column);
            let column_id = field
                .metadata()
                .get(PG_ATTNUM_KEY)
                .and_then(|v| v.parse::<i16>().ok())
                .filter(|_| from_column);
            let name = match field.name().split_once(crate::sql::NAME_MARK) {
                Some((shown, _)) => shown.to_string(),
                None => field.name().clone(),
            };
            let info = FieldInfo::new(name, table_id, column_id, ty.clone(), format.format_for(i))
                .with_type_modifier(typmod)
                .with_type_size(len);
            let text = format.format_for(i) == FieldFormat::Text;
            let encoding = match ty.oid() {
                114 => Encoding::Json,
                3802 => Encoding::Jsonb,
                2950 => Encoding::Uuid,
                1114 | 1184 if text && matches!(field.data_type(), DataType::Timestamp(_, _)) => {
                    Encoding::TimestampText
                }
                700 | 701
                    if text
                        && matches!(field.data_type(), DataType::Float32 | DataType::Float64) =>
                {
                    Encoding::FloatText
                }
                _ => Encoding::Arrow,
            };
            let cast = match (field.data_type(), ty.oid()) {
                (DataType::Timestamp(unit, Some(_)), 1114) => {
                    Some(DataType::Timestamp(*unit, None))
                }
                (DataType::Timestamp(unit, Some(tz)), 1184) if tz.as_ref() != time_zone => {
                    Some(DataType::Timestamp(*unit, Some(time_zone.into())))
                }
                (DataType::Timestamp(TimeUnit::Nanosecond, tz), _) => {
                    Some(DataType::Timestamp(TimeUnit::Microsecond, tz.clone()))
                }
                _ => None,
            };
            Ok(Column {
                info,
                encoding,
                cast,
            })
        })
        .collect()
}

/// `RowDescription` fields of a result.
///
/// # Errors
/// Column types with no PostgreSQL equivalent.
pub fn field_infos(
    schema: &SchemaRef,
    format: &Format,
    time_zone: &str,
) -> PgWireResult<Vec<FieldInfo>> {
    Ok(columns(schema, format, time_zone)?
        .into_iter()
        .map(|c| c.info)
        .collect())
}

/// Encodes a stream of batches as `DataRow`s.
///
/// # Errors
/// The returned fields fail for unsupported column types; row errors arrive in the stream.
pub fn encode(
    schema: &SchemaRef,
    batches: SendableRecordBatchStream,
    format: &Format,
    time_zone: &str,
) -> PgWireResult<(
    Arc<Vec<FieldInfo>>,
    impl Stream<Item = PgWireResult<DataRow>> + Send + use<>,
)> {
    let columns = Arc::new(columns(schema, format, time_zone)?);
    let fields = Arc::new(columns.iter().map(|c| c.info.clone()).collect::<Vec<_>>());
    let rows_fields = fields.clone();
    let rows = batches
        .map(move |batch| {
            let rows: Vec<PgWireResult<DataRow>> = match batch {
                Ok(batch) => match encode_batch(&batch, &columns, &rows_fields) {
                    Ok(rows) => rows.into_iter().map(Ok).collect(),
                    Err(e) => vec![Err(e)],
                },
                Err(e) => vec![Err(errors::to_pgwire(&SqlError::DataFusion(e)))],
            };
            stream::iter(rows)
        })
        .flatten();
    Ok((fields, rows))
}

fn encode_batch(
    batch: &RecordBatch,
    columns: &[Column],
    fields: &Arc<Vec<FieldInfo>>,
) -> PgWireResult<Vec<DataRow>> {
    let arrays: Vec<ArrayRef> = batch
        .columns()
        .iter()
        .zip(columns)
        .map(|(array, column)| match &column.cast {
            Some(target) => cast(array, target).map_err(|e| PgWireError::ApiError(Box::new(e))),
            None => Ok(array.clone()),
        })
        .collect::<PgWireResult<_>>()?;
    let arrow_fields: Vec<Field> = arrays
        .iter()
        .zip(batch.schema().fields())
        .map(|(a, f)| {
            Field::new(f.name(), a.data_type().clone(), true).with_metadata(f.metadata().clone())
        })
        .collect();
    let strings: Vec<Option<ArrayRef>> = arrays
        .iter()
        .zip(columns)
        .map(|(a, c)| match c.encoding {
            Encoding::Arrow => Ok(None),
            Encoding::TimestampText => timestamp_text(a).map(Some),
            Encoding::FloatText => Ok(Some(float_text(a))),
            _ => cast(a, &DataType::Utf8)
                .map(Some)
                .map_err(|e| PgWireError::ApiError(Box::new(e))),
        })
        .collect::<PgWireResult<_>>()?;
    let mut encoder = DataRowEncoder::new(fields.clone());
    let mut rows = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        for (i, column) in columns.iter().enumerate() {
            match column.encoding {
                Encoding::Arrow => arrow_pg::encoder::encode_value(
                    &mut encoder,
                    &arrays[i],
                    row,
                    &arrow_fields[i],
                    &column.info,
                )?,
                encoding => {
                    let strings = strings[i]
                        .as_ref()
                        .and_then(|a| a.as_any().downcast_ref::<StringArray>());
                    let value = strings
                        .filter(|a| !a.is_null(row))
                        .map(|a| Raw::new(encoding, a.value(row), column.info.format()));
                    encoder.encode_field_with_type_and_format(
                        &value,
                        column.info.datatype(),
                        column.info.format(),
                        column.info.format_options(),
                    )?;
                }
            }
        }
        rows.push(encoder.take_row());
    }
    Ok(rows)
}

/// Floats as PostgreSQL 12+ prints them: the shortest text that reads back exactly, in
/// positional notation for decimal exponents from -4 up to 15 (6 for `real`), else as
/// `1.5e+20`; `NaN`, `Infinity`, `-Infinity`.
fn float_text(array: &ArrayRef) -> ArrayRef {
    use datafusion::arrow::array::{AsArray, StringBuilder};
    use datafusion::arrow::datatypes::{Float32Type, Float64Type};
    let mut out = StringBuilder::with_capacity(array.len(), array.len() * 8);
    let mut buffer = ryu::Buffer::new();
    match array.data_type() {
        DataType::Float32 => {
            for v in array.as_primitive::<Float32Type>().iter() {
                match v {
                    None => out.append_null(),
                    Some(v) if !v.is_finite() => out.append_value(special_float(f64::from(v))),
                    Some(v) => out.append_value(pg_float(buffer.format(v), 6)),
                }
            }
        }
        _ => {
            for v in array.as_primitive::<Float64Type>().iter() {
                match v {
                    None => out.append_null(),
                    Some(v) if !v.is_finite() => out.append_value(special_float(v)),
                    Some(v) => out.append_value(pg_float(buffer.format(v), 15)),
                }
            }
        }
    }
    Arc::new(out.finish())
}

fn special_float(v: f64) -> &'static str {
    if v.is_nan() {
        "NaN"
    } else if v > 0.0 {
        "Infinity"
    } else {
        "-Infinity"
    }
}

/// Rewrites ryu's shortest representation (`1.0`, `1.5e20`, `1e-7`) in PostgreSQL's notation.
fn pg_float(shortest: &str, limit: i32) -> String {
    let (negative, unsigned) = match shortest.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, shortest),
    };
    let (mantissa, exponent) = match unsigned.split_once('e') {
        Some((m, e)) => (m, e.parse::<i32>().unwrap_or(0)),
        None => (unsigned, 0),
    };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    // All significant digits and the decimal exponent of the first one.
    let digits_all = format!("{int_part}{frac_part}");
    let leading = digits_all.len() - digits_all.trim_start_matches('0').len();
    let digits = digits_all.trim_matches('0');
    if digits.is_empty() {
        return "0".into();
    }
    let exp10 = int_part.len() as i32 - 1 - leading as i32 + exponent;
    let mut text = String::with_capacity(digits.len() + 8);
    if negative {
        text.push('-');
    }
    if exp10 < -4 || exp10 >= limit {
        text.push_str(&digits[..1]);
        if digits.len() > 1 {
            text.push('.');
            text.push_str(&digits[1..]);
        }
        text.push_str(&format!(
            "e{}{:02}",
            if exp10 < 0 { '-' } else { '+' },
            exp10.abs()
        ));
    } else if exp10 < 0 {
        text.push_str("0.");
        text.push_str(&"0".repeat((-exp10 - 1) as usize));
        text.push_str(digits);
    } else {
        let point = exp10 as usize + 1;
        if digits.len() <= point {
            text.push_str(digits);
            text.push_str(&"0".repeat(point - digits.len()));
        } else {
            text.push_str(&digits[..point]);
            text.push('.');
            text.push_str(&digits[point..]);
        }
    }
    text
}

fn timestamp_text(array: &ArrayRef) -> PgWireResult<ArrayRef> {
    crate::pgtypes::timestamp_text(array).map_err(|e| PgWireError::ApiError(Box::new(e)))
}

/// Bytes already in their wire form for the column's type.
#[derive(Debug)]
struct Raw(Vec<u8>);

impl Raw {
    fn new(encoding: Encoding, text: &str, format: FieldFormat) -> Raw {
        match (encoding, format) {
            (Encoding::Jsonb, FieldFormat::Binary) => {
                let mut bytes = Vec::with_capacity(text.len() + 1);
                bytes.push(1);
                bytes.extend_from_slice(text.as_bytes());
                Raw(bytes)
            }
            (Encoding::Uuid, FieldFormat::Binary) => Raw(uuid_bytes(text).unwrap_or_default()),
            _ => Raw(text.as_bytes().to_vec()),
        }
    }
}

fn uuid_bytes(text: &str) -> Option<Vec<u8>> {
    let hex: String = text.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 {
        return None;
    }
    (0..16)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok())
        .collect()
}

impl ToSql for Raw {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        out.put_slice(&self.0);
        Ok(IsNull::No)
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

impl ToSqlText for Raw {
    fn to_sql_text(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
        _format_options: &FormatOptions,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        out.put_slice(&self.0);
        Ok(IsNull::No)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_text_to_bytes() {
        let bytes = uuid_bytes("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11").unwrap();
        assert_eq!(bytes.len(), 16);
        assert_eq!(bytes[0], 0xa0);
        assert_eq!(bytes[15], 0x11);
        assert!(uuid_bytes("nope").is_none());
    }

    #[test]
    fn floats_print_as_postgres_prints_them() {
        for (shortest, limit, expected) in [
            ("1.0", 15, "1"),
            ("-2.25", 15, "-2.25"),
            ("1e20", 15, "1e+20"),
            ("1.5e20", 15, "1.5e+20"),
            ("100000000000000.0", 15, "100000000000000"),
            ("1e15", 15, "1e+15"),
            ("0.0001", 15, "0.0001"),
            ("1e-5", 15, "1e-05"),
            ("1.2345679e8", 6, "1.2345679e+08"),
            ("123456.0", 6, "123456"),
            ("0.1", 15, "0.1"),
            ("0.0", 15, "0"),
        ] {
            assert_eq!(pg_float(shortest, limit), expected, "{shortest}");
        }
    }
}
