//! `nextval`, `currval`, `lastval`, `setval`: sequences drawn from storage, with the
//! session's `currval`/`lastval` state.

use std::sync::Arc;

use datafusion::arrow::array::Int64Array;
use datafusion::arrow::datatypes::DataType;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Volatility};
use datafusion::scalar::ScalarValue;

use super::super::shared::SessionShared;
use super::{arities, bools, external, ints, strings, udf};
use crate::storage::{StorageError, TableHandle, stable_oid};

/// A sequence resolved from a name (`seq`, `schema.seq`) or an OID.
fn resolve_sequence(shared: &SessionShared, key: &str) -> DfResult<(Arc<TableHandle>, String)> {
    let storage = shared.engine.storage();
    if let Ok(oid) = key.parse::<u32>() {
        for table in storage.all_tables() {
            for seq in &table.state().meta.sequences {
                if stable_oid("sequence", &table.schema, &seq.name) == oid {
                    return Ok((table.clone(), seq.name.clone()));
                }
            }
        }
        return Err(external(StorageError::UndefinedSequence(key.to_string())));
    }
    let parts: Vec<String> = key
        .split('.')
        .map(|p| {
            if p.starts_with('"') && p.ends_with('"') && p.len() >= 2 {
                p[1..p.len() - 1].to_string()
            } else {
                p.to_lowercase()
            }
        })
        .collect();
    let (schemas, name) = match parts.as_slice() {
        [name] => (shared.settings.lock().search_path(), name.clone()),
        [schema, name] => (vec![schema.clone()], name.clone()),
        _ => return Err(external(StorageError::UndefinedSequence(key.to_string()))),
    };
    schemas
        .iter()
        .find_map(|schema| storage.sequence_owner(schema, &name))
        .map(|table| (table, name.clone()))
        .ok_or_else(|| external(StorageError::UndefinedSequence(key.to_string())))
}

fn qualified_sequence(table: &TableHandle, name: &str) -> String {
    format!("{}.{}", table.schema, name)
}

pub(super) fn functions(shared: &Arc<SessionShared>) -> Vec<ScalarUDF> {
    let key_types: &[&[DataType]] = &[&[DataType::Utf8], &[DataType::Int32], &[DataType::Int64]];
    let nextval = udf(
        shared,
        "nextval",
        arities(key_types, Volatility::Volatile),
        DataType::Int64,
        |shared, args| {
            let rows = args.number_rows.max(1);
            let keys = strings(&args.args[0], rows)?;
            let mut out = Vec::with_capacity(rows);
            // A constant argument draws the whole batch at once.
            let constant = matches!(args.args[0], ColumnarValue::Scalar(_));
            if constant {
                let key = keys.first().cloned().flatten().unwrap_or_default();
                let (table, seq) = resolve_sequence(shared, &key)?;
                let first = table.next_values(&seq, rows).map_err(external)?;
                let step = table
                    .state()
                    .meta
                    .sequences
                    .iter()
                    .find(|s| s.name == seq)
                    .map_or(1, |s| s.increment);
                out.extend((0..rows as i64).map(|k| Some(first + k * step)));
                shared.note_sequence_value(
                    &qualified_sequence(&table, &seq),
                    first + (rows as i64 - 1) * step,
                );
            } else {
                for key in keys {
                    match key {
                        None => out.push(None),
                        Some(key) => {
                            let (table, seq) = resolve_sequence(shared, &key)?;
                            let value = table.next_values(&seq, 1).map_err(external)?;
                            shared.note_sequence_value(&qualified_sequence(&table, &seq), value);
                            out.push(Some(value));
                        }
                    }
                }
            }
            Ok(ColumnarValue::Array(Arc::new(Int64Array::from(out))))
        },
    );
    let currval = udf(
        shared,
        "currval",
        arities(key_types, Volatility::Volatile),
        DataType::Int64,
        |shared, args| {
            let rows = args.number_rows.max(1);
            let mut out = Vec::with_capacity(rows);
            for key in strings(&args.args[0], rows)? {
                let Some(key) = key else {
                    out.push(None);
                    continue;
                };
                let (table, seq) = resolve_sequence(shared, &key)?;
                let name = qualified_sequence(&table, &seq);
                let value = shared
                    .sequences
                    .lock()
                    .currval
                    .get(&name)
                    .copied()
                    .ok_or_else(|| {
                        DataFusionError::Execution(format!(
                            "currval of sequence \"{seq}\" is not yet defined in this session"
                        ))
                    })?;
                out.push(Some(value));
            }
            Ok(ColumnarValue::Array(Arc::new(Int64Array::from(out))))
        },
    );
    let lastval = udf(
        shared,
        "lastval",
        arities(&[&[]], Volatility::Volatile),
        DataType::Int64,
        |shared, _args| {
            let value = shared.sequences.lock().lastval.ok_or_else(|| {
                DataFusionError::Execution("lastval is not yet defined in this session".into())
            })?;
            Ok(ColumnarValue::Scalar(ScalarValue::Int64(Some(value))))
        },
    );
    let setval = udf(
        shared,
        "setval",
        arities(
            &[
                &[DataType::Utf8, DataType::Int64],
                &[DataType::Utf8, DataType::Int64, DataType::Boolean],
                &[DataType::Int32, DataType::Int64],
                &[DataType::Int32, DataType::Int64, DataType::Boolean],
            ],
            Volatility::Volatile,
        ),
        DataType::Int64,
        |shared, args| {
            let rows = args.number_rows.max(1);
            let keys = strings(&args.args[0], rows)?;
            let values = ints(&args.args[1], rows)?;
            let called = match args.args.get(2) {
                Some(v) => bools(v, rows)?,
                None => vec![Some(true); rows],
            };
            let mut out = Vec::with_capacity(rows);
            for ((key, value), called) in keys.into_iter().zip(values).zip(called) {
                let (Some(key), Some(value)) = (key, value) else {
                    out.push(None);
                    continue;
                };
                let (table, seq) = resolve_sequence(shared, &key)?;
                let is_called = called.unwrap_or(true);
                table.set_value(&seq, value, is_called).map_err(external)?;
                if is_called {
                    shared.note_sequence_value(&qualified_sequence(&table, &seq), value);
                } else {
                    shared.sequences.lock().touched = true;
                }
                out.push(Some(value));
            }
            Ok(ColumnarValue::Array(Arc::new(Int64Array::from(out))))
        },
    );
    vec![nextval, currval, lastval, setval]
}
