//! Timestamps cast to text read as PostgreSQL writes them (`2026-01-02 03:04:05.5`, with the
//! session's zone for `timestamptz`: `+01` after `SET TIME ZONE 'Europe/Berlin'`), not in
//! Arrow's ISO form (`2026-01-02T03:04:05.500`); intervals as PostgreSQL writes them
//! (`1 day 02:00:00`), not as Arrow does (`0 years 0 mons 1 days 2 hours ...`).
//!
//! An analyzer rule, run after DataFusion's type coercion (so implicit casts, as in
//! `'at ' || ts`, are explicit by then), replaces every cast of a timestamp to a string type in
//! projections, aggregates, filters and sorts with [`TimestampText`], which uses the same
//! formatter as result columns (`pgtypes::timestamp_text`). A projected or grouped expression
//! keeps its name, so the plan's schema is unchanged. Other nodes (join conditions, window
//! functions) keep Arrow's cast.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, IntervalMonthDayNanoArray, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, IntervalUnit, TimeUnit};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, DFSchemaRef};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::{
    Cast, ColumnarValue, Expr, ExprSchemable, LogicalPlan, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, TryCast, Volatility,
};
use datafusion::optimizer::AnalyzerRule;
use datafusion::scalar::ScalarValue;

use crate::pgtypes::datetime::Interval;
use crate::pgtypes::{PgType, UTC};

/// `pg_timestamp_text(ts)`: a timestamp or interval as PostgreSQL's text.
#[derive(Debug, PartialEq, Eq, Hash)]
struct TimestampText {
    signature: Signature,
}

impl ScalarUDFImpl for TimestampText {
    fn name(&self) -> &str {
        "pg_timestamp_text"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let scalar = matches!(args.args[0], ColumnarValue::Scalar(_));
        let array = args.args[0].to_array(args.number_rows)?;
        let text = match array.data_type() {
            // A `timestamptz` shows in the session's zone, as result columns do.
            DataType::Timestamp(unit, Some(_)) => {
                let zone = args
                    .config_options
                    .execution
                    .time_zone
                    .as_deref()
                    .unwrap_or(UTC);
                let shown = DataType::Timestamp(*unit, Some(zone.into()));
                crate::pgtypes::timestamp_text(&cast(&array, &shown)?)?
            }
            DataType::Interval(_) => interval_text(&array)?,
            _ => crate::pgtypes::timestamp_text(&array)?,
        };
        Ok(if scalar {
            ColumnarValue::Scalar(ScalarValue::try_from_array(&text, 0)?)
        } else {
            ColumnarValue::Array(text)
        })
    }
}

/// Intervals as PostgreSQL's text.
fn interval_text(array: &ArrayRef) -> DfResult<ArrayRef> {
    let values = cast(array, &DataType::Interval(IntervalUnit::MonthDayNano))?;
    let values = values
        .as_any()
        .downcast_ref::<IntervalMonthDayNanoArray>()
        .ok_or_else(|| DataFusionError::Internal("expected an interval".into()))?;
    let text: StringArray = values
        .iter()
        .map(|v| {
            v.map(|v| {
                crate::pgtypes::datetime::interval_text(Interval {
                    months: v.months,
                    days: v.days,
                    micros: v.nanoseconds / 1000,
                })
            })
        })
        .collect();
    Ok(Arc::new(text))
}

/// The analyzer rule (see the module comment).
#[derive(Debug)]
pub struct TimestampTextCasts {
    udf: Arc<ScalarUDF>,
}

impl TimestampTextCasts {
    pub fn new() -> TimestampTextCasts {
        TimestampTextCasts {
            udf: Arc::new(ScalarUDF::new_from_impl(TimestampText {
                signature: Signature::any(1, Volatility::Immutable),
            })),
        }
    }

    /// `expr` with its timestamp-to-string casts replaced, typed against `schema`.
    fn rewrite(&self, expr: Expr, schema: &DFSchema) -> DfResult<Transformed<Expr>> {
        expr.transform_up(|e| {
            let (inner, target) = match &e {
                Expr::Cast(Cast { expr, field }) | Expr::TryCast(TryCast { expr, field })
                    if matches!(
                        field.data_type(),
                        DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8
                    ) =>
                {
                    (expr.as_ref().clone(), field.data_type().clone())
                }
                _ => return Ok(Transformed::no(e)),
            };
            let Ok((_, field)) = inner.to_field(schema) else {
                return Ok(Transformed::no(e));
            };
            let unit = match field.data_type() {
                DataType::Timestamp(unit, _) => *unit,
                DataType::Interval(_) => TimeUnit::Microsecond,
                _ => return Ok(Transformed::no(e)),
            };
            // A stored `timestamp` column is UTC in Arrow; it prints without a zone.
            let inner = if PgType::declared(&field) == Some(PgType::Timestamp) {
                Expr::Cast(Cast::new(Box::new(inner), DataType::Timestamp(unit, None)))
            } else {
                inner
            };
            let text = Expr::ScalarFunction(ScalarFunction::new_udf(self.udf.clone(), vec![inner]));
            Ok(Transformed::yes(if target == DataType::Utf8 {
                text
            } else {
                Expr::Cast(Cast::new(Box::new(text), target))
            }))
        })
    }
}

/// The schema a node's expressions are evaluated against.
fn input_schema(plan: &LogicalPlan) -> DFSchemaRef {
    match plan.inputs().as_slice() {
        [one] => one.schema().clone(),
        _ => plan.schema().clone(),
    }
}

impl AnalyzerRule for TimestampTextCasts {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> DfResult<LogicalPlan> {
        plan.transform_up_with_subqueries(|plan| {
            // Nodes whose expressions name output columns keep those names.
            let named = matches!(plan, LogicalPlan::Projection(_) | LogicalPlan::Aggregate(_));
            if !named && !matches!(plan, LogicalPlan::Filter(_) | LogicalPlan::Sort(_)) {
                return Ok(Transformed::no(plan));
            }
            let schema = input_schema(&plan);
            plan.map_expressions(|expr| {
                let name = expr.schema_name().to_string();
                let rewritten = self.rewrite(expr, &schema)?;
                if named && rewritten.transformed {
                    // Keep the column's name (and so the plan's schema) as it was.
                    return Ok(rewritten.update_data(|e| {
                        if e.schema_name().to_string() == name {
                            e
                        } else {
                            e.alias(name)
                        }
                    }));
                }
                Ok(rewritten)
            })
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "deltagate_timestamp_text_casts"
    }
}
