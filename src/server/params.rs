//! Parameter values of the extended protocol, decoded from Bind messages.
//!
//! A parameter's wire type is the one the client declared in Parse, else the one deltagate
//! announced (the column's type where planning tied the parameter to a column), else the
//! Arrow type planning inferred; its format (text or binary) comes from the Bind. One portal's
//! values are decoded by arrow_pg into scalars ([`parameters`]). A held batch of executions
//! (see `fastpath::batch`) keeps its values as [`Rows`] and is decoded column by column
//! straight into Arrow arrays ([`columns`]) for the types historians send: binary values with
//! [`crate::pgbinary`] (the decoder binary COPY uses; it wraps the `FromSql` impls a portal's
//! decoding calls), text values with pgwire's `FromSqlText` as a portal's are; anything else
//! falls back to decoding each execution as a portal. So both routes give the same values and
//! the same errors.

use std::sync::Arc;

use bytes::Bytes;
use datafusion::arrow::array::{
    ArrayRef, ArrowPrimitiveType, BooleanArray, PrimitiveArray, StringArray, new_null_array,
};
use datafusion::arrow::datatypes::{
    DataType, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type,
};
use datafusion::common::{ParamValues, ScalarValue};
use pgwire::api::portal::Portal;
use pgwire::api::stmt::StoredStatement;
use pgwire::api::{DEFAULT_NAME, Type};
use pgwire::error::PgWireResult;
use pgwire::messages::data::FORMAT_CODE_BINARY;
use pgwire::messages::extendedquery::Bind;
use pgwire::types::FromSqlText;
use pgwire::types::format::FormatOptions;
use tracing::warn;

use crate::pgbinary::FromBinary;
use crate::pgtypes::numeric::{float_to_decimal, int_to_decimal};
use crate::sql::{PreparedStatement, SqlError};

use super::{encode, errors};

/// The types deltagate announces for a statement's parameters (`None` where planning left a
/// parameter untyped).
fn announced(prepared: &PreparedStatement) -> Vec<Option<Type>> {
    if prepared.param_oids.len() == prepared.param_types.len() {
        prepared
            .param_types
            .iter()
            .zip(&prepared.param_oids)
            .map(|(f, oid)| f.as_ref().and_then(|_| Type::from_oid(*oid)))
            .collect()
    } else {
        prepared
            .param_types
            .iter()
            .map(|f| f.as_ref().map(encode::parameter_type))
            .collect()
    }
}

/// The portal's parameter values, decoded (text or binary) with the types the client declared
/// or planning inferred.
pub(super) fn parameters(portal: &Portal<PreparedStatement>) -> PgWireResult<Option<ParamValues>> {
    if portal.parameter_len() == 0 {
        return Ok(None);
    }
    let prepared = &portal.statement.statement;
    let announced = announced(prepared);
    let announced: Vec<Option<&Type>> = announced.iter().map(Option::as_ref).collect();
    // A number sent as a float or integer for a numeric column is decoded as sent and then
    // rounded as PostgreSQL rounds it (arrow_pg refuses to convert it).
    // (significant digits of a float, or 0 for an integer; precision; scale)
    let numeric: Vec<Option<(usize, u8, i8)>> = prepared
        .param_types
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let DataType::Decimal128(p, s) = f.as_ref()?.data_type() else {
                return None;
            };
            let sent = portal.statement.parameter_types.get(i).cloned().flatten();
            let sent = sent.as_ref().or(announced.get(i).copied().flatten())?;
            let digits = match *sent {
                Type::FLOAT4 => 6,
                Type::FLOAT8 => 15,
                Type::INT2 | Type::INT4 | Type::INT8 => 0,
                _ => return None,
            };
            Some((digits, *p, *s))
        })
        .collect();
    let inferred: Vec<Option<&DataType>> = prepared
        .param_types
        .iter()
        .zip(&numeric)
        .map(|(f, numeric)| match numeric {
            Some((0, _, _)) => Some(&DataType::Int64),
            Some(_) => Some(&DataType::Float64),
            None => f.as_ref().map(|f| f.data_type()),
        })
        .collect();
    // The decoders are other crates', and one panics on a value a client can send:
    // rust_decimal's "checked" binary NUMERIC decoding, on a number beyond its 96 bits (found
    // by the `messages` fuzz target). A bad value is the client's error, not its connection's
    // end.
    let decoded = quietly(|| {
        arrow_pg::datatypes::df::deserialize_parameters_with_server_types(
            portal, &inferred, &announced,
        )
    })
    .unwrap_or_else(|panic| {
        warn!(%panic, "a parameter decoder failed on a client's value");
        Err(errors::undecodable_parameter())
    })?;
    if numeric.iter().all(Option::is_none) {
        return Ok(Some(decoded));
    }
    let ParamValues::List(mut list) = decoded else {
        return Ok(Some(decoded));
    };
    for (value, numeric) in list.iter_mut().zip(&numeric) {
        let Some((digits, p, s)) = *numeric else {
            continue;
        };
        let unscaled = match &value.value {
            ScalarValue::Float64(Some(v)) => Some(float_to_decimal(*v, digits, p, s)),
            ScalarValue::Int64(Some(v)) => Some(int_to_decimal(*v, p, s)),
            _ => None,
        }
        .transpose()
        .map_err(|e| errors::to_pgwire(&SqlError::Type(e)))?;
        value.value = ScalarValue::Decimal128(unscaled, p, s);
    }
    Ok(Some(ParamValues::List(list)))
}

thread_local! {
    /// Whether a panic on this thread is caught by [`quietly`], which reports it itself.
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f`, turning a panic into its message; the panic is not printed (the caller logs it).
fn quietly<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let printing = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.get() {
                printing(info);
            }
        }));
    });
    QUIET.set(true);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    QUIET.set(false);
    result.map_err(|payload| {
        payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_string()))
            .unwrap_or_default()
    })
}

/// The parameter values of a batch's executions of one statement (see `fastpath::batch`), as their
/// Binds sent them, copied into one buffer: a historian sends millions of values a second,
/// and a `Bytes` each (a reference count on the connection's read buffer, taken and dropped)
/// costs more than the copy. Every row has the statement's number of values; every Bind of a
/// batch has the same format codes (kept as sent: big-endian pairs of bytes).
#[derive(Debug, Default)]
pub(super) struct Rows {
    formats: Vec<u8>,
    width: usize,
    count: usize,
    bytes: Vec<u8>,
    /// Each row's values in order: where it is in `bytes` and how long, `None` for NULL.
    values: Vec<Option<(u32, u32)>>,
}

/// Above this many bytes of held values the batch runs (offsets into them are `u32`).
pub(super) const ROWS_BYTES: usize = 64 << 20;

impl Rows {
    pub(super) fn new(formats: Vec<u8>, width: usize) -> Rows {
        Rows {
            formats,
            width,
            ..Rows::default()
        }
    }

    /// Whether rows with these format codes and this many values belong here.
    pub(super) fn fits(&self, formats: &[u8], width: usize) -> bool {
        same_bytes(&self.formats, formats) && self.width == width
    }

    /// Appends a row of [`Rows::fits`] values.
    pub(super) fn push<'a>(&mut self, values: impl IntoIterator<Item = Option<&'a [u8]>>) {
        for value in values {
            self.values.push(value.map(|v| {
                let start = self.bytes.len() as u32;
                self.bytes.extend_from_slice(v);
                (start, v.len() as u32)
            }));
        }
        self.count += 1;
    }

    /// Appends a row given as a Bind sends its values (each a 4-byte length, -1 for NULL, then
    /// its bytes), copied in one piece; false, appending nothing, unless `wire` is exactly
    /// [`Rows::fits`] values.
    pub(super) fn push_wire(&mut self, wire: &[u8]) -> bool {
        let values = self.values.len();
        if !self.locate(wire, self.bytes.len()) {
            self.values.truncate(values);
            return false;
        }
        self.bytes.extend_from_slice(wire);
        self.count += 1;
        true
    }

    /// Adds where each value of `wire`, copied to `base`, will be.
    fn locate(&mut self, wire: &[u8], base: usize) -> bool {
        let mut at = 0;
        for _ in 0..self.width {
            let Some(len) = wire
                .get(at..at + 4)
                .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            else {
                return false;
            };
            at += 4;
            let value = match usize::try_from(len) {
                Ok(len) if wire.len() >= at + len => {
                    at += len;
                    Some(((base + at - len) as u32, len as u32))
                }
                _ if len == -1 => None,
                _ => return false,
            };
            self.values.push(value);
        }
        at == wire.len()
    }

    pub(super) fn len(&self) -> usize {
        self.count
    }

    pub(super) fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub(super) fn bytes(&self) -> usize {
        self.bytes.len()
    }

    /// Drops the last row (its bytes stay, unused).
    pub(super) fn pop(&mut self) {
        if self.count > 0 {
            self.count -= 1;
            self.values.truncate(self.count * self.width);
        }
    }

    fn value(&self, row: usize, i: usize) -> Option<&[u8]> {
        self.values[row * self.width + i]
            .map(|(start, len)| &self.bytes[start as usize..(start + len) as usize])
    }

    /// Parameter `i`'s value in every row.
    fn column(&self, i: usize) -> impl Iterator<Item = Option<&[u8]>> {
        (0..self.count).map(move |row| self.value(row, i))
    }

    /// Whether parameter `i` is sent in binary.
    fn binary(&self, i: usize) -> bool {
        let code = match self.formats.len() / 2 {
            0 => return false,
            1 => 0,
            _ => i,
        };
        self.formats
            .get(2 * code..2 * code + 2)
            .is_some_and(|c| i16::from_be_bytes([c[0], c[1]]) == FORMAT_CODE_BINARY)
    }

    /// Row `row` as the Bind of a portal named `portal`.
    pub(super) fn bind(&self, row: usize, portal: &str, result_formats: &[u8]) -> Bind {
        Bind::new(
            (portal != DEFAULT_NAME).then(|| portal.to_owned()),
            None,
            format_codes(&self.formats),
            (0..self.width)
                .map(|i| self.value(row, i).map(Bytes::copy_from_slice))
                .collect(),
            format_codes(result_formats),
        )
    }
}

/// The format codes of a Bind as sent.
pub(super) fn format_bytes(codes: &[i16]) -> Vec<u8> {
    codes.iter().flat_map(|c| c.to_be_bytes()).collect()
}

/// Format codes as sent, as pgwire keeps them.
fn format_codes(bytes: &[u8]) -> Vec<i16> {
    bytes
        .chunks_exact(2)
        .map(|c| i16::from_be_bytes([c[0], c[1]]))
        .collect()
}

/// Whether two byte strings are equal, comparing empty ones without `memcmp`: glibc's AVX-512
/// `memcmp` reads an empty slice's dangling pointer with a masked load, which costs a
/// microcode assist each time (measured: 4% of the server's time in a PgJDBC batch load).
pub(super) fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && (a.is_empty() || a == b)
}

/// The parameter values of each row, decoded as portals.
///
/// # Errors
/// A value that does not decode as its type.
pub(super) fn each(
    statement: &Arc<StoredStatement<PreparedStatement>>,
    rows: &Rows,
) -> PgWireResult<Vec<ParamValues>> {
    (0..rows.len())
        .map(|row| {
            let portal = Portal::try_new(&rows.bind(row, DEFAULT_NAME, &[]), statement.clone())?;
            Ok(parameters(&portal)?.unwrap_or(ParamValues::List(Vec::new())))
        })
        .collect()
}

/// The rows' parameters as one array per parameter, or `None` when some parameter needs
/// [`each`]: a type outside the common ones, a value that does not decode, the wrong number of
/// values or of format codes.
pub(super) fn columns(
    statement: &StoredStatement<PreparedStatement>,
    rows: &Rows,
) -> Option<Vec<ArrayRef>> {
    let prepared = &statement.statement;
    let count = prepared.param_types.len();
    let codes = rows.formats.len() / 2;
    if rows.width != count || !matches!(codes, 0 | 1) && codes != count {
        return None;
    }
    let announced = announced(prepared);
    (0..count)
        .map(|i| {
            let inferred = prepared.param_types[i].as_ref().map(|f| f.data_type());
            // The precedence arrow_pg applies to a portal's parameters.
            let declared = statement.parameter_types.get(i).cloned().flatten();
            let ty = declared
                .or_else(|| announced[i].clone().filter(|t| *t != Type::UNKNOWN))
                .or_else(|| inferred.and_then(|t| arrow_pg::datatypes::into_pg_type(t).ok()))?;
            column(&ty, inferred, rows, i)
        })
        .collect()
}

/// The values of parameter `i`, when its type has a column decoder here.
fn column(ty: &Type, inferred: Option<&DataType>, rows: &Rows, i: usize) -> Option<ArrayRef> {
    if rows.column(i).all(|v| v.is_none()) && decodes_null(ty) {
        // A NULL of any type casts to any column type.
        return Some(new_null_array(&DataType::Null, rows.len()));
    }
    let binary = rows.binary(i);
    let values = rows.column(i).map(|v| (binary, v));
    // arrow_pg converts numbers to the inferred type; these are the cases where that is none.
    match (ty, inferred) {
        (&Type::INT2, None | Some(DataType::Int16)) => primitive::<Int16Type>(ty, values),
        (&Type::INT4, None | Some(DataType::Int32)) => primitive::<Int32Type>(ty, values),
        (&Type::INT8, None | Some(DataType::Int64)) => primitive::<Int64Type>(ty, values),
        (&Type::FLOAT4, None | Some(DataType::Float32)) => primitive::<Float32Type>(ty, values),
        (&Type::FLOAT8, None | Some(DataType::Float64)) => primitive::<Float64Type>(ty, values),
        (&Type::BOOL, _) => Some(Arc::new(BooleanArray::from(decode_all::<bool>(
            ty, values,
        )?))),
        (&Type::TEXT | &Type::VARCHAR, None | Some(DataType::Utf8)) => Some(Arc::new(
            StringArray::from(decode_all::<String>(ty, values)?),
        )),
        _ => None,
    }
}

/// Whether arrow_pg decodes a NULL of this type (it refuses types it has no decoder for, even
/// for NULL).
fn decodes_null(ty: &Type) -> bool {
    [
        Type::BOOL,
        Type::INT2,
        Type::INT4,
        Type::INT8,
        Type::FLOAT4,
        Type::FLOAT8,
        Type::NUMERIC,
        Type::TEXT,
        Type::VARCHAR,
        Type::BYTEA,
        Type::DATE,
        Type::TIMESTAMP,
        Type::TIMESTAMPTZ,
    ]
    .contains(ty)
}

fn primitive<'a, T>(
    ty: &Type,
    values: impl Iterator<Item = (bool, Option<&'a [u8]>)>,
) -> Option<ArrayRef>
where
    T: ArrowPrimitiveType,
    T::Native: for<'b> FromBinary<'b> + for<'b> FromSqlText<'b>,
{
    let values = decode_all::<T::Native>(ty, values)?;
    Some(Arc::new(values.into_iter().collect::<PrimitiveArray<T>>()))
}

/// Every value of a parameter; `None` when one does not decode.
fn decode_all<'a, T>(
    ty: &Type,
    values: impl Iterator<Item = (bool, Option<&'a [u8]>)>,
) -> Option<Vec<Option<T>>>
where
    T: for<'b> FromBinary<'b> + for<'b> FromSqlText<'b>,
{
    values
        .map(|(binary, value)| decode::<T>(ty, binary, value))
        .collect()
}

/// One value, decoded as `Portal::parameter` decodes it (binary through `pgbinary`, which
/// checks the length and calls the same `FromSql`); `None` when it does not decode.
fn decode<T>(ty: &Type, binary: bool, value: Option<&[u8]>) -> Option<Option<T>>
where
    T: for<'b> FromBinary<'b> + for<'b> FromSqlText<'b>,
{
    let Some(value) = value else {
        return Some(None);
    };
    let decoded = if binary {
        T::from_binary(value).ok()
    } else {
        T::from_sql_text(ty, value, &FormatOptions::default()).ok()
    };
    decoded.map(Some)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// Values as a Bind sends them: a 4-byte length (-1 for NULL), then the bytes.
    pub(in crate::server) fn wire(values: &[Option<&[u8]>]) -> Vec<u8> {
        let mut out = Vec::new();
        for value in values {
            match value {
                Some(v) => {
                    out.extend_from_slice(&(v.len() as i32).to_be_bytes());
                    out.extend_from_slice(v);
                }
                None => out.extend_from_slice(&(-1i32).to_be_bytes()),
            }
        }
        out
    }

    fn row(rows: &Rows, row: usize) -> Vec<Option<Vec<u8>>> {
        (0..rows.width)
            .map(|i| rows.value(row, i).map(<[u8]>::to_vec))
            .collect()
    }

    #[test]
    fn rows_keep_values_nulls_and_empty_values_apart() {
        let mut rows = Rows::new(format_bytes(&[0]), 3);
        rows.push([Some(&b"7"[..]), None, Some(&b""[..])]);
        assert!(rows.push_wire(&wire(&[Some(b"42"), Some(b"x"), None])));
        assert_eq!((rows.len(), rows.is_empty()), (2, false));
        assert_eq!(
            row(&rows, 0),
            vec![Some(b"7".to_vec()), None, Some(Vec::new())]
        );
        assert_eq!(
            row(&rows, 1),
            vec![Some(b"42".to_vec()), Some(b"x".to_vec()), None]
        );
        let second: Vec<_> = rows.column(0).map(|v| v.map(<[u8]>::to_vec)).collect();
        assert_eq!(second, vec![Some(b"7".to_vec()), Some(b"42".to_vec())]);
        rows.pop();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows.column(1).count(), 1);
    }

    #[test]
    fn a_bind_that_does_not_fit_appends_nothing() {
        let mut rows = Rows::new(Vec::new(), 2);
        assert!(rows.push_wire(&wire(&[Some(b"1"), Some(b"2")])));
        let bytes = rows.bytes();
        // Too few values, too many, a length past the end, a negative length other than -1.
        for bad in [
            wire(&[Some(b"1")]),
            wire(&[Some(b"1"), Some(b"2"), Some(b"3")]),
            [
                wire(&[Some(b"1")]),
                9i32.to_be_bytes().to_vec(),
                b"ab".to_vec(),
            ]
            .concat(),
            [wire(&[Some(b"1")]), (-2i32).to_be_bytes().to_vec()].concat(),
            vec![0, 0],
        ] {
            assert!(!rows.push_wire(&bad), "{bad:?}");
            assert_eq!((rows.len(), rows.bytes(), rows.values.len()), (1, bytes, 2));
        }
        assert_eq!(
            row(&rows, 0),
            vec![Some(b"1".to_vec()), Some(b"2".to_vec())]
        );
    }

    #[test]
    fn values_decode_binary_with_pgbinary_and_text_with_from_sql_text() {
        assert_eq!(
            decode::<i32>(&Type::INT4, true, Some(&[0, 0, 1, 0])),
            Some(Some(256))
        );
        assert_eq!(
            decode::<i32>(&Type::INT4, false, Some(b"256")),
            Some(Some(256))
        );
        assert_eq!(decode::<i32>(&Type::INT4, true, Some(&[1, 0])), None);
        assert_eq!(decode::<i64>(&Type::INT8, true, None), Some(None));
        assert_eq!(
            decode::<bool>(&Type::BOOL, true, Some(&[1])),
            Some(Some(true))
        );
        assert_eq!(
            decode::<String>(&Type::VARCHAR, true, Some("é".as_bytes())),
            Some(Some("é".to_string()))
        );
        assert_eq!(decode::<String>(&Type::TEXT, true, Some(b"\xff")), None);
        let rows = {
            let mut rows = Rows::new(format_bytes(&[1]), 1);
            rows.push([Some(&2.5f64.to_be_bytes()[..])]);
            rows.push([None]);
            rows
        };
        let array = column(&Type::FLOAT8, None, &rows, 0).expect("float8 column");
        let floats = array
            .as_any()
            .downcast_ref::<PrimitiveArray<Float64Type>>()
            .expect("float64");
        assert_eq!(floats.iter().collect::<Vec<_>>(), vec![Some(2.5), None]);
    }

    #[test]
    fn format_codes_say_which_values_are_binary() {
        let none = Rows::new(Vec::new(), 2);
        assert!(!none.binary(0) && !none.binary(1));
        let all = Rows::new(format_bytes(&[1]), 2);
        assert!(all.binary(0) && all.binary(1));
        let mut each = Rows::new(format_bytes(&[0, 1]), 2);
        assert!(!each.binary(0) && each.binary(1));
        each.push([Some(&b"1"[..]), None]);
        assert!(each.fits(&format_bytes(&[0, 1]), 2));
        assert!(!each.fits(&format_bytes(&[1, 1]), 2) && !each.fits(&format_bytes(&[0, 1]), 3));
        let bind = each.bind(0, "p", &format_bytes(&[1]));
        assert_eq!(bind.portal_name.as_deref(), Some("p"));
        assert_eq!(bind.parameter_format_codes, vec![0, 1]);
        assert_eq!(bind.result_column_format_codes, vec![1]);
        assert_eq!(bind.parameters, vec![Some(Bytes::from_static(b"1")), None]);
    }
}
