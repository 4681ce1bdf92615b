//! Session functions: who and where the session is, its settings, the server version.

use std::sync::Arc;

use datafusion::arrow::array::{ListBuilder, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Volatility};
use datafusion::scalar::ScalarValue;

use super::super::shared::SessionShared;
use super::{arities, bools, constant_text, strings, text_result, udf};

pub(super) fn functions(shared: &Arc<SessionShared>) -> Vec<ScalarUDF> {
    let mut out = Vec::new();
    for name in ["session_user", "current_user", "user", "current_role"] {
        out.push(udf(
            shared,
            name,
            arities(&[&[]], Volatility::Stable),
            DataType::Utf8,
            |shared, _| Ok(constant_text(Some(shared.user.clone()))),
        ));
    }
    for name in ["current_database", "current_catalog"] {
        out.push(udf(
            shared,
            name,
            arities(&[&[]], Volatility::Stable),
            DataType::Utf8,
            |shared, _| Ok(constant_text(Some(shared.engine.config().database.clone()))),
        ));
    }
    out.push(udf(
        shared,
        "current_schema",
        arities(&[&[]], Volatility::Stable),
        DataType::Utf8,
        |shared, _| Ok(constant_text(shared.current_schema())),
    ));
    out.push(udf(
        shared,
        "current_schemas",
        arities(&[&[DataType::Boolean]], Volatility::Stable),
        DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))),
        |shared, args| {
            let implicit = bools(&args.args[0], 1)?
                .first()
                .copied()
                .flatten()
                .unwrap_or(false);
            let mut builder = ListBuilder::new(StringBuilder::new());
            if implicit {
                builder.values().append_value("pg_catalog");
            }
            for schema in shared.existing_search_path() {
                builder.values().append_value(schema);
            }
            builder.append(true);
            Ok(ColumnarValue::Scalar(ScalarValue::List(Arc::new(
                builder.finish(),
            ))))
        },
    ));
    out.push(udf(
        shared,
        "version",
        arities(&[&[]], Volatility::Stable),
        DataType::Utf8,
        |shared, _| {
            Ok(constant_text(Some(format!(
                "PostgreSQL {} (deltagate {}) on {}-linux, compiled by rustc, 64-bit",
                shared.engine.config().server_version,
                env!("CARGO_PKG_VERSION"),
                std::env::consts::ARCH
            ))))
        },
    ));
    out.push(udf(
        shared,
        "current_setting",
        arities(
            &[&[DataType::Utf8], &[DataType::Utf8, DataType::Boolean]],
            Volatility::Stable,
        ),
        DataType::Utf8,
        |shared, args| {
            let rows = args.number_rows.max(1);
            let names = strings(&args.args[0], rows)?;
            let missing_ok = match args.args.get(1) {
                Some(v) => bools(v, rows)?,
                None => vec![Some(false); rows],
            };
            let settings = shared.settings.lock();
            let mut out = Vec::with_capacity(rows);
            for (name, missing_ok) in names.into_iter().zip(missing_ok) {
                match name {
                    None => out.push(None),
                    Some(name) => match settings.get(&name) {
                        Ok(v) => out.push(Some(v)),
                        Err(_) if missing_ok == Some(true) => out.push(None),
                        Err(e) => return Err(DataFusionError::External(Box::new(e))),
                    },
                }
            }
            Ok(text_result(out))
        },
    ));
    out.push(udf(
        shared,
        "set_config",
        arities(
            &[&[DataType::Utf8, DataType::Utf8, DataType::Boolean]],
            Volatility::Volatile,
        ),
        DataType::Utf8,
        |shared, args| {
            let rows = args.number_rows.max(1);
            let names = strings(&args.args[0], rows)?;
            let values = strings(&args.args[1], rows)?;
            let mut settings = shared.settings.lock();
            let mut out = Vec::with_capacity(rows);
            for (name, value) in names.into_iter().zip(values) {
                if let (Some(name), Some(value)) = (name, value) {
                    settings
                        .set(&name, &value)
                        .map_err(|e| DataFusionError::External(Box::new(e)))?;
                    out.push(settings.get(&name).ok());
                } else {
                    out.push(None);
                }
            }
            Ok(text_result(out))
        },
    ));
    out.push(udf(
        shared,
        "pg_backend_pid",
        arities(&[&[]], Volatility::Stable),
        DataType::Int32,
        |shared, _| Ok(ColumnarValue::Scalar(ScalarValue::Int32(Some(shared.pid)))),
    ));
    out.push(udf(
        shared,
        "pg_is_in_recovery",
        arities(&[&[]], Volatility::Stable),
        DataType::Boolean,
        |_, _| Ok(ColumnarValue::Scalar(ScalarValue::Boolean(Some(false)))),
    ));
    out.push(udf(
        shared,
        "pg_advisory_unlock_all",
        arities(&[&[]], Volatility::Volatile),
        DataType::Null,
        |_, _| Ok(ColumnarValue::Scalar(ScalarValue::Null)),
    ));
    out
}
