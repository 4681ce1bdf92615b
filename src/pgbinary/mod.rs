//! PostgreSQL's binary format of deltagate's column types, decoded straight into Arrow.
//!
//! The one binary decoder of client values: binary `COPY ... FROM STDIN` (`sql::copy`) appends
//! each field to a [`ColumnBuilder`], and the extended protocol's held batches of Binds
//! (`server::params`) decode their binary parameters with [`FromBinary`]. A value decodes with
//! `postgres_types::FromSql` wherever the crates deltagate uses have an impl (numbers, text,
//! bytea, uuid, dates and timestamps through chrono, numeric through rust_decimal), after a
//! length check of our own so that a wrong length is PostgreSQL's `incorrect binary data
//! format` rather than the impl's wording. Portals decoded by arrow_pg (one execution at a
//! time) keep that library's decoders.
//!
//! Invariants: a builder produces exactly [`PgType::arrow_type`], with the values the text
//! conversion of the same value would give (timestamps as UTC microseconds, `date` as days
//! since 1970, `numeric` as `Decimal128` rounded half away from zero to the column's scale,
//! `uuid` in its lowercase hyphenated text); json and jsonb keep the text as sent, as text
//! COPY does (serde_json's impl would re-format it). Beyond rounding a numeric to its column's
//! scale, a value is refused rather than altered: NaN, infinities, a date or timestamp beyond
//! chrono's range, a numeric beyond the column's precision. NULLs are the caller's (they have
//! no bytes). This module sits below `server` and `sql` and imports neither.

mod numeric;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use datafusion::arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Float32Builder,
    Float64Builder, Int16Builder, Int32Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use datafusion::arrow::datatypes::DataType;
use postgres_types::{FromSql, Type};

use crate::pgtypes::PgType;

pub use numeric::numeric;

/// Why a binary value was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueFault {
    /// Bytes that are not a value of the type (a wrong length, a bad header), or a value
    /// deltagate cannot store (NaN, a date beyond range): PostgreSQL's
    /// `invalid_binary_representation`.
    Format,
    /// Text that is not UTF-8: `character_not_in_repertoire`, as for text input.
    Encoding,
    /// A number beyond what its column holds: `numeric_value_out_of_range`.
    OutOfRange,
}

/// A refused binary value: why, and PostgreSQL's message for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueError {
    pub fault: ValueFault,
    pub message: String,
}

impl ValueError {
    fn format(message: impl Into<String>) -> ValueError {
        ValueError {
            fault: ValueFault::Format,
            message: message.into(),
        }
    }
}

/// The error for a value of the wrong length, or one a decoder could not read.
fn incorrect(bytes: &[u8], what: &str) -> ValueError {
    ValueError::format(format!(
        "incorrect binary data format: {} bytes for {what}",
        bytes.len()
    ))
}

/// `bytes` if they are exactly `len` long.
fn exact<'a>(bytes: &'a [u8], len: usize, what: &str) -> Result<&'a [u8], ValueError> {
    if bytes.len() == len {
        Ok(bytes)
    } else {
        Err(incorrect(bytes, what))
    }
}

/// A value decoded with its `FromSql` impl, once its length is checked; the impl's own error
/// (which it gives only for a value out of its range) becomes `message`.
fn from_sql<'a, T: FromSql<'a>>(
    ty: &Type,
    bytes: &'a [u8],
    len: Option<usize>,
    message: &str,
) -> Result<T, ValueError> {
    if let Some(len) = len {
        exact(bytes, len, ty.name())?;
    }
    T::from_sql(ty, bytes).map_err(|_| ValueError::format(message))
}

/// A Rust value from PostgreSQL's binary form of it; the types the extended protocol's batch
/// decoder (`server::params`) fills arrays of, and the ones [`ColumnBuilder`] appends.
pub trait FromBinary<'a>: Sized {
    /// # Errors
    /// Bytes that are not a value of the type.
    fn from_binary(bytes: &'a [u8]) -> Result<Self, ValueError>;
}

macro_rules! fixed {
    ($($rust:ty => $ty:expr, $len:expr;)*) => {$(
        impl FromBinary<'_> for $rust {
            fn from_binary(bytes: &[u8]) -> Result<Self, ValueError> {
                from_sql(&$ty, bytes, Some($len), "incorrect binary data format")
            }
        }
    )*};
}

fixed! {
    bool => Type::BOOL, 1;
    i16 => Type::INT2, 2;
    i32 => Type::INT4, 4;
    i64 => Type::INT8, 8;
    f32 => Type::FLOAT4, 4;
    f64 => Type::FLOAT8, 8;
}

impl<'a> FromBinary<'a> for &'a str {
    fn from_binary(bytes: &'a [u8]) -> Result<Self, ValueError> {
        <&str>::from_sql(&Type::TEXT, bytes).map_err(|_| ValueError {
            fault: ValueFault::Encoding,
            message: "invalid byte sequence for encoding \"UTF8\"".into(),
        })
    }
}

impl FromBinary<'_> for String {
    fn from_binary(bytes: &[u8]) -> Result<Self, ValueError> {
        <&str>::from_binary(bytes).map(str::to_owned)
    }
}

/// A `date` as Arrow's `Date32`: days since 1970-01-01.
///
/// # Errors
/// A wrong length; a date beyond chrono's range (`infinity` among them).
pub fn date(bytes: &[u8]) -> Result<i32, ValueError> {
    let date: NaiveDate = from_sql(&Type::DATE, bytes, Some(4), "date out of range")?;
    let days = date
        .signed_duration_since(DateTime::UNIX_EPOCH.date_naive())
        .num_days();
    i32::try_from(days).map_err(|_| ValueError::format("date out of range"))
}

/// A `timestamp` as UTC microseconds since 1970, as deltagate stores it.
///
/// # Errors
/// A wrong length; a timestamp beyond chrono's range (`infinity` among them).
pub fn timestamp(bytes: &[u8]) -> Result<i64, ValueError> {
    let at: NaiveDateTime = from_sql(&Type::TIMESTAMP, bytes, Some(8), "timestamp out of range")?;
    Ok(at.and_utc().timestamp_micros())
}

/// A `timestamptz` as UTC microseconds since 1970.
///
/// # Errors
/// As [`timestamp`].
pub fn timestamptz(bytes: &[u8]) -> Result<i64, ValueError> {
    let at: DateTime<Utc> = from_sql(&Type::TIMESTAMPTZ, bytes, Some(8), "timestamp out of range")?;
    Ok(at.timestamp_micros())
}

/// A `uuid`.
///
/// # Errors
/// A wrong length.
pub fn uuid(bytes: &[u8]) -> Result<uuid::Uuid, ValueError> {
    from_sql(&Type::UUID, bytes, Some(16), "incorrect binary data format")
}

/// A `jsonb`'s text: version 1 is a version byte, then the JSON text.
///
/// # Errors
/// Another version; text that is not UTF-8.
pub fn jsonb(bytes: &[u8]) -> Result<&str, ValueError> {
    match bytes.split_first() {
        Some((1, text)) => <&str>::from_binary(text),
        _ => Err(ValueError::format("unsupported jsonb version number")),
    }
}

/// A `bytea`: its bytes as they are.
fn bytea(bytes: &[u8]) -> Result<&[u8], ValueError> {
    from_sql(&Type::BYTEA, bytes, None, "incorrect binary data format")
}

/// One column of binary values being decoded into the Arrow array of its type.
#[derive(Debug)]
pub struct ColumnBuilder {
    pg_type: PgType,
    values: Values,
}

/// The Arrow builder of each [`PgType::arrow_type`].
#[derive(Debug)]
enum Values {
    Bool(BooleanBuilder),
    Int16(Int16Builder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    Float32(Float32Builder),
    Float64(Float64Builder),
    Utf8(StringBuilder),
    Binary(BinaryBuilder),
    Date32(Date32Builder),
    Timestamp(TimestampMicrosecondBuilder),
    Decimal128 {
        builder: Decimal128Builder,
        precision: u8,
        scale: i8,
    },
}

impl ColumnBuilder {
    /// A builder of `pg_type`'s Arrow type.
    pub fn new(pg_type: PgType) -> ColumnBuilder {
        let arrow_type = pg_type.arrow_type();
        let values = match pg_type {
            PgType::Bool => Values::Bool(BooleanBuilder::new()),
            PgType::Int2 => Values::Int16(Int16Builder::new()),
            PgType::Int4 => Values::Int32(Int32Builder::new()),
            PgType::Int8 => Values::Int64(Int64Builder::new()),
            PgType::Float4 => Values::Float32(Float32Builder::new()),
            PgType::Float8 => Values::Float64(Float64Builder::new()),
            PgType::Text
            | PgType::Varchar(_)
            | PgType::Bpchar(_)
            | PgType::Json
            | PgType::Jsonb
            | PgType::Uuid => Values::Utf8(StringBuilder::new()),
            PgType::Bytea => Values::Binary(BinaryBuilder::new()),
            PgType::Date => Values::Date32(Date32Builder::new()),
            PgType::Timestamp | PgType::Timestamptz => {
                Values::Timestamp(TimestampMicrosecondBuilder::new().with_data_type(arrow_type))
            }
            PgType::Numeric(_) => {
                let DataType::Decimal128(precision, scale) = arrow_type else {
                    unreachable!("numeric is Decimal128")
                };
                Values::Decimal128 {
                    builder: Decimal128Builder::new().with_data_type(arrow_type),
                    precision,
                    scale,
                }
            }
        };
        ColumnBuilder { pg_type, values }
    }

    /// Appends one value from its binary form; nothing is appended when it is refused.
    ///
    /// # Errors
    /// Bytes that are not a value of the column's type, or a value the column cannot hold.
    pub fn append(&mut self, bytes: &[u8]) -> Result<(), ValueError> {
        match &mut self.values {
            Values::Bool(b) => b.append_value(bool::from_binary(bytes)?),
            Values::Int16(b) => b.append_value(i16::from_binary(bytes)?),
            Values::Int32(b) => b.append_value(i32::from_binary(bytes)?),
            Values::Int64(b) => b.append_value(i64::from_binary(bytes)?),
            Values::Float32(b) => b.append_value(f32::from_binary(bytes)?),
            Values::Float64(b) => b.append_value(f64::from_binary(bytes)?),
            Values::Utf8(b) => match self.pg_type {
                PgType::Jsonb => b.append_value(jsonb(bytes)?),
                PgType::Uuid => {
                    let mut text = uuid::Uuid::encode_buffer();
                    b.append_value(uuid(bytes)?.hyphenated().encode_lower(&mut text));
                }
                _ => b.append_value(<&str>::from_binary(bytes)?),
            },
            Values::Binary(b) => b.append_value(bytea(bytes)?),
            Values::Date32(b) => b.append_value(date(bytes)?),
            Values::Timestamp(b) => b.append_value(if self.pg_type == PgType::Timestamptz {
                timestamptz(bytes)?
            } else {
                timestamp(bytes)?
            }),
            Values::Decimal128 {
                builder,
                precision,
                scale,
            } => builder.append_value(numeric(bytes, *precision, *scale)?),
        }
        Ok(())
    }

    /// Appends a NULL.
    pub fn append_null(&mut self) {
        match &mut self.values {
            Values::Bool(b) => b.append_null(),
            Values::Int16(b) => b.append_null(),
            Values::Int32(b) => b.append_null(),
            Values::Int64(b) => b.append_null(),
            Values::Float32(b) => b.append_null(),
            Values::Float64(b) => b.append_null(),
            Values::Utf8(b) => b.append_null(),
            Values::Binary(b) => b.append_null(),
            Values::Date32(b) => b.append_null(),
            Values::Timestamp(b) => b.append_null(),
            Values::Decimal128 { builder, .. } => builder.append_null(),
        }
    }

    /// The values appended since the last call, as an array of [`PgType::arrow_type`].
    pub fn finish(&mut self) -> ArrayRef {
        match &mut self.values {
            Values::Bool(b) => Arc::new(b.finish()),
            Values::Int16(b) => Arc::new(b.finish()),
            Values::Int32(b) => Arc::new(b.finish()),
            Values::Int64(b) => Arc::new(b.finish()),
            Values::Float32(b) => Arc::new(b.finish()),
            Values::Float64(b) => Arc::new(b.finish()),
            Values::Utf8(b) => Arc::new(b.finish()),
            Values::Binary(b) => Arc::new(b.finish()),
            Values::Date32(b) => Arc::new(b.finish()),
            Values::Timestamp(b) => Arc::new(b.finish()),
            Values::Decimal128 { builder, .. } => Arc::new(builder.finish()),
        }
    }
}
