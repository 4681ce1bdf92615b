//! Parameter values of the extended protocol, decoded from Bind messages.
//!
//! A parameter's wire type is the one the client declared in Parse, else the one deltagate
//! announced (the column's type where planning tied the parameter to a column), else the
//! Arrow type planning inferred; its format (text or binary) comes from the Bind. One portal's
//! values are decoded by arrow_pg into scalars ([`parameters`]). A held batch of executions
//! (see `batch`) is decoded column by column straight into Arrow arrays ([`columns`]) for the
//! types historians send, with exactly the decoders a portal would use, and falls back to
//! decoding each execution as a portal for anything else; so both routes give the same values
//! and the same errors.

use std::sync::Arc;

use bytes::Bytes;
use datafusion::arrow::array::{
    ArrayRef, ArrowPrimitiveType, BooleanArray, PrimitiveArray, StringArray, new_null_array,
};
use datafusion::arrow::datatypes::{
    DataType, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type,
};
use datafusion::common::ParamValues;
use pgwire::api::Type;
use pgwire::api::portal::Portal;
use pgwire::api::stmt::StoredStatement;
use pgwire::error::PgWireResult;
use pgwire::messages::data::FORMAT_CODE_BINARY;
use pgwire::messages::extendedquery::Bind;
use pgwire::types::FromSqlText;
use pgwire::types::format::FormatOptions;
use postgres_types::FromSqlOwned;

use crate::sql::PreparedStatement;

use super::encode;

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
    let inferred: Vec<Option<&DataType>> = prepared
        .param_types
        .iter()
        .map(|f| f.as_ref().map(|f| f.data_type()))
        .collect();
    let announced = announced(prepared);
    let announced: Vec<Option<&Type>> = announced.iter().map(Option::as_ref).collect();
    Ok(Some(
        arrow_pg::datatypes::df::deserialize_parameters_with_server_types(
            portal, &inferred, &announced,
        )?,
    ))
}

/// The parameter values of each execution, decoded as portals.
///
/// # Errors
/// A value that does not decode as its type.
pub(super) fn each(
    statement: &Arc<StoredStatement<PreparedStatement>>,
    executions: &[Bind],
) -> PgWireResult<Vec<ParamValues>> {
    executions
        .iter()
        .map(|bind| {
            let portal = Portal::try_new(bind, statement.clone())?;
            Ok(parameters(&portal)?.unwrap_or(ParamValues::List(Vec::new())))
        })
        .collect()
}

/// The executions' parameters as one array per parameter (row `i` from execution `i`), or
/// `None` when some parameter needs [`each`]: a type outside the common ones, a value that does
/// not decode, a Bind with the wrong number of values.
pub(super) fn columns(
    statement: &StoredStatement<PreparedStatement>,
    executions: &[Bind],
) -> Option<Vec<ArrayRef>> {
    let prepared = &statement.statement;
    let count = prepared.param_types.len();
    if executions.iter().any(|b| {
        b.parameters.len() != count
            || !matches!(b.parameter_format_codes.len(), 0 | 1)
                && b.parameter_format_codes.len() != count
    }) {
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
            column(&ty, inferred, executions, i)
        })
        .collect()
}

/// The values of parameter `i`, when its type has a column decoder here.
fn column(
    ty: &Type,
    inferred: Option<&DataType>,
    executions: &[Bind],
    i: usize,
) -> Option<ArrayRef> {
    if executions.iter().all(|b| b.parameters[i].is_none()) && decodes_null(ty) {
        // A NULL of any type casts to any column type.
        return Some(new_null_array(&DataType::Null, executions.len()));
    }
    let values = executions.iter().map(|b| {
        let binary = match b.parameter_format_codes.as_slice() {
            [] => false,
            [code] => *code == FORMAT_CODE_BINARY,
            codes => codes[i] == FORMAT_CODE_BINARY,
        };
        (binary, b.parameters[i].as_ref())
    });
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
    values: impl Iterator<Item = (bool, Option<&'a Bytes>)>,
) -> Option<ArrayRef>
where
    T: ArrowPrimitiveType,
    T::Native: FromSqlOwned + for<'b> FromSqlText<'b>,
{
    let values = decode_all::<T::Native>(ty, values)?;
    Some(Arc::new(values.into_iter().collect::<PrimitiveArray<T>>()))
}

/// Every value of a parameter; `None` when one does not decode.
fn decode_all<'a, T>(
    ty: &Type,
    values: impl Iterator<Item = (bool, Option<&'a Bytes>)>,
) -> Option<Vec<Option<T>>>
where
    T: FromSqlOwned + for<'b> FromSqlText<'b>,
{
    values
        .map(|(binary, value)| decode::<T>(ty, binary, value))
        .collect()
}

/// One value, decoded as `Portal::parameter` decodes it; `None` when it does not decode.
fn decode<T>(ty: &Type, binary: bool, value: Option<&Bytes>) -> Option<Option<T>>
where
    T: FromSqlOwned + for<'b> FromSqlText<'b>,
{
    let Some(value) = value else {
        return Some(None);
    };
    let decoded = if binary {
        T::from_sql(ty, value).ok()
    } else {
        T::from_sql_text(ty, value, &FormatOptions::default()).ok()
    };
    decoded.map(Some)
}
