//! The PostgreSQL column types deltagate stores, and how each maps to Arrow and Delta.
//!
//! Every user column has one [`PgType`]. It decides the Delta type written to storage (what Spark
//! sees), the Arrow type DataFusion plans with, the OID and type modifier clients see in
//! `RowDescription` and `pg_attribute`, and the `format_type` text that is persisted in the Delta
//! column metadata so the exact declared type (`character varying(255)`, `timestamp`) survives a
//! restart.
//!
//! Invariants: timestamps are always stored as Delta `timestamp` (UTC microseconds), never
//! `timestamp_ntz`, so tables stay readable by Spark 3.4+/Databricks without a protocol upgrade;
//! `timestamp` and `timestamptz` differ only in how they are typed and rendered to clients.
//! This module has no dependencies on the rest of the crate; storage, sql and server all use it.
//!
//! This file holds the type, its identity in the catalog, its Arrow and Delta mappings and its
//! `format_type` text; `parse` reads a type name as PostgreSQL's `format_type` writes it or a
//! user declares it; `zone` reads time zone names; `datetime` reads and writes date, timestamp
//! and interval text; `numeric` rounds numbers into `numeric(p, s)`.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, TimeUnit};
use deltalake::kernel::DataType as DeltaType;
pub mod datetime;
pub mod numeric;
mod parse;
pub mod zone;

/// Arrow field metadata key holding the column's `format_type` text.
pub const PG_TYPE_KEY: &str = "deltagate.pg_type";
/// Arrow field metadata key holding the OID of the relation a column comes from.
pub const PG_TABLE_OID_KEY: &str = "deltagate.table_oid";
/// Arrow field metadata key holding the column's attribute number (1-based).
pub const PG_ATTNUM_KEY: &str = "deltagate.attnum";

/// The time zone every stored timestamp carries in Arrow.
pub const UTC: &str = "UTC";

/// Well-known PostgreSQL type OIDs (from `pg_type.dat`).
pub mod oid {
    pub const BOOL: u32 = 16;
    pub const BYTEA: u32 = 17;
    pub const CHAR: u32 = 18;
    pub const NAME: u32 = 19;
    pub const INT8: u32 = 20;
    pub const INT2: u32 = 21;
    pub const INT4: u32 = 23;
    pub const TEXT: u32 = 25;
    pub const OID: u32 = 26;
    pub const JSON: u32 = 114;
    pub const FLOAT4: u32 = 700;
    pub const FLOAT8: u32 = 701;
    pub const UNKNOWN: u32 = 705;
    pub const BPCHAR: u32 = 1042;
    pub const VARCHAR: u32 = 1043;
    pub const DATE: u32 = 1082;
    pub const TIME: u32 = 1083;
    pub const TIMESTAMP: u32 = 1114;
    pub const TIMESTAMPTZ: u32 = 1184;
    pub const INTERVAL: u32 = 1186;
    pub const NUMERIC: u32 = 1700;
    pub const UUID: u32 = 2950;
    pub const JSONB: u32 = 3802;
}

/// Largest precision Delta (and Arrow Decimal128) can hold.
pub const MAX_NUMERIC_PRECISION: u8 = 38;
/// Scale used for `numeric` declared without precision; trailing zeros are trimmed on output.
pub const UNCONSTRAINED_NUMERIC_SCALE: i8 = 10;

/// A PostgreSQL column type that deltagate can store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PgType {
    Bool,
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    /// `numeric(p, s)`; `None` means declared without precision.
    Numeric(Option<(u8, i8)>),
    Text,
    /// `character varying(n)`; `None` means unlimited.
    Varchar(Option<u32>),
    /// `character(n)`; blank-padded to `n`.
    Bpchar(u32),
    Date,
    Timestamp,
    Timestamptz,
    Bytea,
    Json,
    Jsonb,
    Uuid,
}

/// An error turning a declared type into a [`PgType`].
#[derive(Debug, thiserror::Error)]
pub enum TypeError {
    #[error("type \"{0}\" does not exist")]
    Unknown(String),
    #[error("type {0} is not supported by deltagate")]
    Unsupported(String),
    #[error("{0}")]
    InvalidModifier(String),
    #[error("numeric field overflow")]
    NumericOverflow,
}

impl PgType {
    /// The type OID clients see.
    pub fn oid(self) -> u32 {
        match self {
            PgType::Bool => oid::BOOL,
            PgType::Int2 => oid::INT2,
            PgType::Int4 => oid::INT4,
            PgType::Int8 => oid::INT8,
            PgType::Float4 => oid::FLOAT4,
            PgType::Float8 => oid::FLOAT8,
            PgType::Numeric(_) => oid::NUMERIC,
            PgType::Text => oid::TEXT,
            PgType::Varchar(_) => oid::VARCHAR,
            PgType::Bpchar(_) => oid::BPCHAR,
            PgType::Date => oid::DATE,
            PgType::Timestamp => oid::TIMESTAMP,
            PgType::Timestamptz => oid::TIMESTAMPTZ,
            PgType::Bytea => oid::BYTEA,
            PgType::Json => oid::JSON,
            PgType::Jsonb => oid::JSONB,
            PgType::Uuid => oid::UUID,
        }
    }

    /// `pg_attribute.atttypmod`, encoded the way PostgreSQL encodes it.
    pub fn typmod(self) -> i32 {
        const VARHDRSZ: i32 = 4;
        match self {
            PgType::Varchar(Some(n)) | PgType::Bpchar(n) => n as i32 + VARHDRSZ,
            PgType::Numeric(Some((p, s))) => ((p as i32) << 16 | (s as i32 & 0xffff)) + VARHDRSZ,
            _ => -1,
        }
    }

    /// `pg_type.typlen`.
    pub fn typlen(self) -> i16 {
        match self {
            PgType::Bool => 1,
            PgType::Int2 => 2,
            PgType::Int4 | PgType::Float4 | PgType::Date => 4,
            PgType::Int8 | PgType::Float8 | PgType::Timestamp | PgType::Timestamptz => 8,
            PgType::Uuid => 16,
            _ => -1,
        }
    }

    /// The declared maximum length of a character type, if any.
    pub fn char_length(self) -> Option<u32> {
        match self {
            PgType::Varchar(n) => n,
            PgType::Bpchar(n) => Some(n),
            _ => None,
        }
    }

    /// The `pg_type.typname` of the type.
    pub fn typname(self) -> &'static str {
        match self {
            PgType::Bool => "bool",
            PgType::Int2 => "int2",
            PgType::Int4 => "int4",
            PgType::Int8 => "int8",
            PgType::Float4 => "float4",
            PgType::Float8 => "float8",
            PgType::Numeric(_) => "numeric",
            PgType::Text => "text",
            PgType::Varchar(_) => "varchar",
            PgType::Bpchar(_) => "bpchar",
            PgType::Date => "date",
            PgType::Timestamp => "timestamp",
            PgType::Timestamptz => "timestamptz",
            PgType::Bytea => "bytea",
            PgType::Json => "json",
            PgType::Jsonb => "jsonb",
            PgType::Uuid => "uuid",
        }
    }

    /// The SQL-standard name `information_schema.columns.data_type` reports.
    pub fn sql_standard_name(self) -> &'static str {
        match self {
            PgType::Bool => "boolean",
            PgType::Int2 => "smallint",
            PgType::Int4 => "integer",
            PgType::Int8 => "bigint",
            PgType::Float4 => "real",
            PgType::Float8 => "double precision",
            PgType::Numeric(_) => "numeric",
            PgType::Text => "text",
            PgType::Varchar(_) => "character varying",
            PgType::Bpchar(_) => "character",
            PgType::Date => "date",
            PgType::Timestamp => "timestamp without time zone",
            PgType::Timestamptz => "timestamp with time zone",
            PgType::Bytea => "bytea",
            PgType::Json => "json",
            PgType::Jsonb => "jsonb",
            PgType::Uuid => "uuid",
        }
    }

    /// The Arrow type DataFusion plans with, identical to what the Delta scan produces.
    pub fn arrow_type(self) -> DataType {
        match self {
            PgType::Bool => DataType::Boolean,
            PgType::Int2 => DataType::Int16,
            PgType::Int4 => DataType::Int32,
            PgType::Int8 => DataType::Int64,
            PgType::Float4 => DataType::Float32,
            PgType::Float8 => DataType::Float64,
            PgType::Numeric(Some((p, s))) => DataType::Decimal128(p, s),
            PgType::Numeric(None) => {
                DataType::Decimal128(MAX_NUMERIC_PRECISION, UNCONSTRAINED_NUMERIC_SCALE)
            }
            PgType::Text
            | PgType::Varchar(_)
            | PgType::Bpchar(_)
            | PgType::Json
            | PgType::Jsonb
            | PgType::Uuid => DataType::Utf8,
            PgType::Date => DataType::Date32,
            PgType::Timestamp | PgType::Timestamptz => {
                DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from(UTC)))
            }
            PgType::Bytea => DataType::Binary,
        }
    }

    /// The Delta type written to the table schema.
    pub fn delta_type(self) -> DeltaType {
        match self {
            PgType::Bool => DeltaType::BOOLEAN,
            PgType::Int2 => DeltaType::SHORT,
            PgType::Int4 => DeltaType::INTEGER,
            PgType::Int8 => DeltaType::LONG,
            PgType::Float4 => DeltaType::FLOAT,
            PgType::Float8 => DeltaType::DOUBLE,
            PgType::Numeric(_) => {
                let DataType::Decimal128(p, s) = self.arrow_type() else {
                    unreachable!("numeric maps to Decimal128")
                };
                // p <= 38 and 0 <= s <= p are enforced when the type is parsed.
                DeltaType::decimal(p, s.max(0) as u8).unwrap_or(DeltaType::DOUBLE)
            }
            PgType::Text
            | PgType::Varchar(_)
            | PgType::Bpchar(_)
            | PgType::Json
            | PgType::Jsonb
            | PgType::Uuid => DeltaType::STRING,
            PgType::Date => DeltaType::DATE,
            PgType::Timestamp | PgType::Timestamptz => DeltaType::TIMESTAMP,
            PgType::Bytea => DeltaType::BINARY,
        }
    }

    /// The type of a column found in a Delta table that deltagate did not create.
    pub fn from_arrow(data_type: &DataType) -> Option<PgType> {
        Some(match data_type {
            DataType::Boolean => PgType::Bool,
            DataType::Int8 | DataType::Int16 | DataType::UInt8 => PgType::Int2,
            DataType::Int32 | DataType::UInt16 => PgType::Int4,
            DataType::Int64 | DataType::UInt32 => PgType::Int8,
            DataType::Float16 | DataType::Float32 => PgType::Float4,
            DataType::Float64 => PgType::Float8,
            DataType::Decimal128(p, s) => PgType::Numeric(Some((*p, *s))),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => PgType::Text,
            DataType::Date32 | DataType::Date64 => PgType::Date,
            DataType::Timestamp(_, Some(_)) => PgType::Timestamptz,
            DataType::Timestamp(_, None) => PgType::Timestamp,
            DataType::Binary | DataType::LargeBinary | DataType::BinaryView => PgType::Bytea,
            DataType::Dictionary(_, value) => return PgType::from_arrow(value),
            _ => return None,
        })
    }

    /// The type recorded in an Arrow field's metadata, falling back to its Arrow type.
    ///
    /// DataFusion carries field metadata through some expressions (`col::text` keeps the
    /// column's metadata), so the recorded type counts only while the data still has it.
    pub fn of_field(field: &Field) -> Option<PgType> {
        Self::declared(field).or_else(|| PgType::from_arrow(field.data_type()))
    }

    /// The type recorded in the field's metadata, if the field's data still has that type.
    pub fn declared(field: &Field) -> Option<PgType> {
        field
            .metadata()
            .get(PG_TYPE_KEY)
            .and_then(|text| PgType::parse(text).ok())
            .filter(|t| t.holds(field.data_type()))
    }

    /// Whether Arrow data of this type can be this PostgreSQL type.
    pub fn holds(self, data_type: &DataType) -> bool {
        match (self.arrow_type(), data_type) {
            (DataType::Utf8, DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8) => true,
            (DataType::Binary, DataType::Binary | DataType::BinaryView | DataType::LargeBinary) => {
                true
            }
            (DataType::Timestamp(_, _), DataType::Timestamp(_, _)) => true,
            (expected, actual) => &expected == actual,
        }
    }
}

impl fmt::Display for PgType {
    /// Formats the type as PostgreSQL's `format_type(oid, typmod)` does.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PgType::Numeric(Some((p, s))) => write!(f, "numeric({p},{s})"),
            PgType::Varchar(Some(n)) => write!(f, "character varying({n})"),
            PgType::Bpchar(n) => write!(f, "character({n})"),
            PgType::Numeric(None) | PgType::Varchar(None) => f.write_str(self.sql_standard_name()),
            other => f.write_str(other.sql_standard_name()),
        }
    }
}

/// Timestamps as PostgreSQL prints them: `2024-01-02 03:04:05.5+01` (zone only when the array
/// has one, fraction only when nonzero). Used for result columns and for casts to text.
///
/// # Errors
/// A non-timestamp array, or a time zone name Arrow does not know.
pub fn timestamp_text(
    array: &datafusion::arrow::array::ArrayRef,
) -> Result<datafusion::arrow::array::ArrayRef, datafusion::arrow::error::ArrowError> {
    use chrono::TimeZone;
    use datafusion::arrow::array::timezone::Tz;
    use datafusion::arrow::array::{StringArray, TimestampMicrosecondArray};
    use datafusion::arrow::error::ArrowError;
    let tz = match array.data_type() {
        DataType::Timestamp(_, tz) => tz.clone(),
        other => {
            return Err(ArrowError::CastError(format!(
                "expected a timestamp, got {other}"
            )));
        }
    };
    let micros = datafusion::arrow::compute::cast(
        array,
        &DataType::Timestamp(TimeUnit::Microsecond, tz.clone()),
    )?;
    let micros = micros
        .as_any()
        .downcast_ref::<TimestampMicrosecondArray>()
        .ok_or_else(|| ArrowError::CastError("timestamp array expected".into()))?;
    let zone: Option<Tz> = tz.as_deref().map(str::parse).transpose()?;
    let text: StringArray = micros
        .iter()
        .map(|v| {
            let v = v?;
            let utc = chrono::DateTime::from_timestamp_micros(v)?;
            let fraction = v.rem_euclid(1_000_000);
            let fraction = if fraction == 0 {
                String::new()
            } else {
                format!(".{fraction:06}").trim_end_matches('0').to_string()
            };
            Some(match &zone {
                None => format!("{}{fraction}", utc.naive_utc().format("%Y-%m-%d %H:%M:%S")),
                Some(zone) => {
                    let local = zone.from_utc_datetime(&utc.naive_utc());
                    format!(
                        "{}{fraction}{}",
                        local.format("%Y-%m-%d %H:%M:%S"),
                        local.format("%:::z")
                    )
                }
            })
        })
        .collect();
    Ok(Arc::new(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_type_round_trips() {
        for t in [
            PgType::Bool,
            PgType::Int2,
            PgType::Int4,
            PgType::Int8,
            PgType::Float4,
            PgType::Float8,
            PgType::Numeric(None),
            PgType::Numeric(Some((10, 2))),
            PgType::Text,
            PgType::Varchar(None),
            PgType::Varchar(Some(255)),
            PgType::Bpchar(3),
            PgType::Date,
            PgType::Timestamp,
            PgType::Timestamptz,
            PgType::Bytea,
            PgType::Json,
            PgType::Jsonb,
            PgType::Uuid,
        ] {
            assert_eq!(PgType::parse(&t.to_string()).unwrap(), t, "{t}");
        }
    }

    #[test]
    fn user_spellings() {
        assert_eq!(PgType::parse("INT").unwrap(), PgType::Int4);
        assert_eq!(PgType::parse("serial").unwrap(), PgType::Int4);
        assert_eq!(
            PgType::parse("VARCHAR(20)").unwrap(),
            PgType::Varchar(Some(20))
        );
        assert_eq!(PgType::parse("char").unwrap(), PgType::Bpchar(1));
        assert_eq!(
            PgType::parse("decimal(5)").unwrap(),
            PgType::Numeric(Some((5, 0)))
        );
        assert_eq!(
            PgType::parse("timestamp(3) with time zone").unwrap(),
            PgType::Timestamptz
        );
        assert_eq!(PgType::parse("float(10)").unwrap(), PgType::Float4);
        assert!(matches!(
            PgType::parse("interval"),
            Err(TypeError::Unsupported(_))
        ));
        assert!(matches!(
            PgType::parse("nosuchtype"),
            Err(TypeError::Unknown(_))
        ));
        assert!(matches!(
            PgType::parse("varchar(0)"),
            Err(TypeError::InvalidModifier(_))
        ));
        assert!(matches!(
            PgType::parse("numeric(50,2)"),
            Err(TypeError::InvalidModifier(_))
        ));
    }

    #[test]
    fn typmods_match_postgres() {
        assert_eq!(PgType::Varchar(Some(255)).typmod(), 259);
        assert_eq!(PgType::Numeric(Some((10, 2))).typmod(), 655366);
        assert_eq!(PgType::Bpchar(1).typmod(), 5);
        assert_eq!(PgType::Int4.typmod(), -1);
    }
}
