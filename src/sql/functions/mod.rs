//! PostgreSQL functions DataFusion does not have, bound to one session.
//!
//! Sequence functions (`nextval`, `currval`, `lastval`, `setval`) draw from storage and keep the
//! session's `currval`/`lastval` state; catalog functions (`pg_table_is_visible`,
//! `pg_get_indexdef`, `format_type`, ...) answer from the same live catalog the `pg_catalog`
//! relations are built from; session functions (`current_schema`, `current_setting`,
//! `version`) read the session's settings. Built-in stand-ins shipped by datafusion-pg-catalog
//! are registered for what they implement faithfully (privileges, identifier quoting). Date/time
//! functions whose DataFusion versions differ from PostgreSQL's are replaced (`time`).

mod catalog;
mod json;
mod sequences;
mod session;
mod time;
mod timestamp_text;

pub use timestamp_text::TimestampTextCasts;

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int64Array, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;
use datafusion_pg_catalog::pg_catalog as pgc;

use crate::storage::StorageError;

use super::shared::SessionShared;

pub(super) type Body =
    Arc<dyn Fn(&SessionShared, ScalarFunctionArgs) -> DfResult<ColumnarValue> + Send + Sync>;

/// A scalar function with access to its session.
struct SessionUdf {
    name: &'static str,
    signature: Signature,
    return_type: DataType,
    shared: Arc<SessionShared>,
    body: Body,
}

impl fmt::Debug for SessionUdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionUdf({})", self.name)
    }
}

impl PartialEq for SessionUdf {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && Arc::ptr_eq(&self.shared, &other.shared)
    }
}

impl Eq for SessionUdf {}

impl Hash for SessionUdf {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl ScalarUDFImpl for SessionUdf {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(self.return_type.clone())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        (self.body)(&self.shared, args)
    }
}

pub(super) fn udf(
    shared: &Arc<SessionShared>,
    name: &'static str,
    signature: Signature,
    return_type: DataType,
    body: impl Fn(&SessionShared, ScalarFunctionArgs) -> DfResult<ColumnarValue> + Send + Sync + 'static,
) -> ScalarUDF {
    ScalarUDF::new_from_impl(SessionUdf {
        name,
        signature,
        return_type,
        shared: shared.clone(),
        body: Arc::new(body),
    })
}

/// Arguments of one type each, any of the listed arities.
pub(super) fn arities(types: &[&[DataType]], volatility: Volatility) -> Signature {
    Signature::one_of(
        types
            .iter()
            .map(|t| {
                if t.is_empty() {
                    TypeSignature::Nullary
                } else {
                    TypeSignature::Exact(t.to_vec())
                }
            })
            .collect(),
        volatility,
    )
}

/// The values of an argument as strings, one per row.
pub(super) fn strings(value: &ColumnarValue, rows: usize) -> DfResult<Vec<Option<String>>> {
    let array = value.to_array(rows)?;
    let array = cast(&array, &DataType::Utf8)?;
    let array = array
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| DataFusionError::Internal("expected strings".into()))?;
    Ok(array.iter().map(|v| v.map(str::to_string)).collect())
}

/// The values of an argument as i64, one per row.
pub(super) fn ints(value: &ColumnarValue, rows: usize) -> DfResult<Vec<Option<i64>>> {
    let array = cast(&value.to_array(rows)?, &DataType::Int64)?;
    let array = array
        .as_any()
        .downcast_ref::<Int64Array>()
        .ok_or_else(|| DataFusionError::Internal("expected integers".into()))?;
    Ok(array.iter().collect())
}

pub(super) fn bools(value: &ColumnarValue, rows: usize) -> DfResult<Vec<Option<bool>>> {
    let array = cast(&value.to_array(rows)?, &DataType::Boolean)?;
    let array = array
        .as_any()
        .downcast_ref::<BooleanArray>()
        .ok_or_else(|| DataFusionError::Internal("expected booleans".into()))?;
    Ok(array.iter().collect())
}

pub(super) fn text_result(values: Vec<Option<String>>) -> ColumnarValue {
    ColumnarValue::Array(Arc::new(StringArray::from(values)) as ArrayRef)
}

pub(super) fn constant_text(value: Option<String>) -> ColumnarValue {
    ColumnarValue::Scalar(ScalarValue::Utf8(value))
}

pub(super) fn external(e: StorageError) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

/// `to_timestamp(double precision)`: Unix seconds to `timestamptz`, rounded to the microsecond
/// as PostgreSQL rounds (DataFusion's own truncates through nanoseconds, so
/// `to_timestamp(1790812800.001)` would show `.000999`); `to_timestamp(text, template)` reads
/// text by a PostgreSQL template (`time`).
fn to_timestamp(shared: &Arc<SessionShared>) -> ScalarUDF {
    udf(
        shared,
        "to_timestamp",
        arities(
            &[&[DataType::Float64], &[DataType::Utf8, DataType::Utf8]],
            Volatility::Stable,
        ),
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        |_, args| {
            if args.args.len() == 2 {
                return time::to_timestamp_text(&args);
            }
            let rows = args.number_rows.max(1);
            let seconds = cast(&args.args[0].to_array(rows)?, &DataType::Float64)?;
            let seconds = seconds
                .as_any()
                .downcast_ref::<Float64Array>()
                .ok_or_else(|| DataFusionError::Internal("expected float8".into()))?;
            let micros = seconds
                .iter()
                .map(|s| {
                    s.map(|s| {
                        let us = (s * 1e6).round();
                        // PostgreSQL's range ends (4714-11-24 BC .. 294276 AD) lie well inside i64.
                        if us.is_finite() && us.abs() < 9.2e18 {
                            Ok(us as i64)
                        } else {
                            Err(DataFusionError::Execution(
                                "timestamp out of range: \"to_timestamp\"".into(),
                            ))
                        }
                    })
                    .transpose()
                })
                .collect::<DfResult<TimestampMicrosecondArray>>()?
                .with_timezone("UTC");
            Ok(ColumnarValue::Array(Arc::new(micros)))
        },
    )
}

/// Registers every function on a session's context.
pub fn register(ctx: &SessionContext, shared: &Arc<SessionShared>) {
    for f in sequences::functions(shared)
        .into_iter()
        .chain([to_timestamp(shared)])
        .chain(session::functions(shared))
        .chain(catalog::functions(shared))
        .chain(json::functions(shared))
        .chain(time::functions())
    {
        ctx.register_udf(f);
    }
    for name in [
        "has_table_privilege",
        "has_schema_privilege",
        "has_database_privilege",
        "has_any_column_privilege",
        "has_column_privilege",
        "has_sequence_privilege",
    ] {
        ctx.register_udf(pgc::has_privilege_udf::create_has_privilege_udf(name));
    }
    ctx.register_udf(pgc::format_type::create_format_type_udf());
    ctx.register_udf(pgc::quote_ident_udf::create_quote_ident_udf());
    ctx.register_udf(pgc::quote_ident_udf::create_parse_ident_udf());
    ctx.register_udf(pgc::array_bounds_udf::create_array_upper_udf());
    ctx.register_udf(pgc::array_bounds_udf::create_array_lower_udf());
    ctx.register_udf(pgc::create_pg_get_partkeydef_udf());
    ctx.register_udf(pgc::create_pg_get_statisticsobjdef_columns_udf());
    ctx.register_udf(pgc::create_pg_get_partition_ancestors_udf());
    ctx.register_udf(pgc::create_pg_stat_get_numscans());
}
