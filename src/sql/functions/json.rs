//! JSON constructors, `_pg_expandarray`, and visibility checks of built-in objects.

use std::sync::Arc;

use datafusion::arrow::array::{Array, Int32Array, ListBuilder};
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Signature, Volatility};
use datafusion::scalar::ScalarValue;

use super::super::shared::SessionShared;
use super::{arities, text_result, udf};

/// A JSON value of one row of an argument.
fn json_value(value: &ColumnarValue, row: usize, rows: usize) -> DfResult<serde_json::Value> {
    let array = value.to_array(rows)?;
    let scalar = ScalarValue::try_from_array(&array, row)?;
    Ok(match scalar {
        s if s.is_null() => serde_json::Value::Null,
        ScalarValue::Boolean(Some(b)) => serde_json::Value::Bool(b),
        ScalarValue::Int8(Some(v)) => v.into(),
        ScalarValue::Int16(Some(v)) => v.into(),
        ScalarValue::Int32(Some(v)) => v.into(),
        ScalarValue::Int64(Some(v)) => v.into(),
        ScalarValue::UInt32(Some(v)) => v.into(),
        ScalarValue::UInt64(Some(v)) => v.into(),
        ScalarValue::Float32(Some(v)) => serde_json::json!(v),
        ScalarValue::Float64(Some(v)) => serde_json::json!(v),
        ScalarValue::Utf8(Some(s))
        | ScalarValue::Utf8View(Some(s))
        | ScalarValue::LargeUtf8(Some(s)) => serde_json::Value::String(s),
        other => serde_json::Value::String(other.to_string()),
    })
}

pub(super) fn functions(shared: &Arc<SessionShared>) -> Vec<ScalarUDF> {
    let object = udf(
        shared,
        "json_build_object",
        Signature::variadic_any(Volatility::Stable),
        DataType::Utf8,
        |_, args| {
            if args.args.len() % 2 != 0 {
                return Err(DataFusionError::Execution(
                    "argument list must have even number of elements".into(),
                ));
            }
            let rows = args.number_rows.max(1);
            let mut out = Vec::with_capacity(rows);
            for row in 0..rows {
                let mut map = serde_json::Map::new();
                for pair in args.args.chunks(2) {
                    let key = match json_value(&pair[0], row, rows)? {
                        serde_json::Value::String(s) => s,
                        serde_json::Value::Null => {
                            return Err(DataFusionError::Execution(
                                "null value not allowed for object key".into(),
                            ));
                        }
                        other => other.to_string(),
                    };
                    map.insert(key, json_value(&pair[1], row, rows)?);
                }
                out.push(Some(serde_json::Value::Object(map).to_string()));
            }
            Ok(text_result(out))
        },
    );
    let array = udf(
        shared,
        "json_build_array",
        Signature::variadic_any(Volatility::Stable),
        DataType::Utf8,
        |_, args| {
            let rows = args.number_rows.max(1);
            let mut out = Vec::with_capacity(rows);
            for row in 0..rows {
                let items = args
                    .args
                    .iter()
                    .map(|a| json_value(a, row, rows))
                    .collect::<DfResult<Vec<_>>>()?;
                out.push(Some(serde_json::Value::Array(items).to_string()));
            }
            Ok(text_result(out))
        },
    );
    let expand = udf(
        shared,
        "_pg_expandarray",
        Signature::any(1, Volatility::Immutable),
        expand_type(),
        |_, args| {
            use datafusion::arrow::array::{Int32Builder, StructBuilder};
            let rows = args.number_rows.max(1);
            let input = args.args[0].to_array(rows)?;
            let lists = datafusion::arrow::compute::cast(
                &input,
                &DataType::List(Arc::new(Field::new_list_field(DataType::Int32, true))),
            )?;
            let lists = lists
                .as_any()
                .downcast_ref::<datafusion::arrow::array::ListArray>()
                .ok_or_else(|| {
                    DataFusionError::Internal("_pg_expandarray expects an array".into())
                })?;
            let DataType::List(item) = expand_type() else {
                unreachable!("list type")
            };
            let DataType::Struct(fields) = item.data_type().clone() else {
                unreachable!("struct item")
            };
            let mut builder =
                ListBuilder::new(StructBuilder::from_fields(fields, 0)).with_field(item);
            for row in 0..lists.len() {
                if lists.is_null(row) {
                    builder.append_null();
                    continue;
                }
                let values = lists.value(row);
                let values = values
                    .as_any()
                    .downcast_ref::<Int32Array>()
                    .ok_or_else(|| DataFusionError::Internal("int array".into()))?;
                for (i, v) in values.iter().enumerate() {
                    let entry = builder.values();
                    entry
                        .field_builder::<Int32Builder>(0)
                        .ok_or_else(|| DataFusionError::Internal("x".into()))?
                        .append_option(v);
                    entry
                        .field_builder::<Int32Builder>(1)
                        .ok_or_else(|| DataFusionError::Internal("n".into()))?
                        .append_value(i as i32 + 1);
                    entry.append(true);
                }
                builder.append(true);
            }
            Ok(ColumnarValue::Array(Arc::new(builder.finish())))
        },
    );
    let mut out = vec![object, array, expand];
    for name in [
        "pg_collation_is_visible",
        "pg_type_is_visible",
        "pg_function_is_visible",
    ] {
        // Built-in collations, types and functions all live in pg_catalog, always searched.
        out.push(udf(
            shared,
            name,
            arities(
                &[&[DataType::Int32], &[DataType::Int64]],
                Volatility::Stable,
            ),
            DataType::Boolean,
            |_, _| Ok(ColumnarValue::Scalar(ScalarValue::Boolean(Some(true)))),
        ));
    }
    out
}

/// `setof record(x int, n int)` of `_pg_expandarray`, as a list of structs to unnest.
fn expand_type() -> DataType {
    let fields = datafusion::arrow::datatypes::Fields::from(vec![
        Field::new("x", DataType::Int32, true),
        Field::new("n", DataType::Int32, true),
    ]);
    DataType::List(Arc::new(Field::new_list_field(
        DataType::Struct(fields),
        true,
    )))
}
