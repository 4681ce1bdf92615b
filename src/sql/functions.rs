//! PostgreSQL functions DataFusion does not have, bound to one session.
//!
//! Sequence functions (`nextval`, `currval`, `lastval`, `setval`) draw from storage and keep the
//! session's `currval`/`lastval` state; catalog functions (`pg_table_is_visible`,
//! `pg_get_indexdef`, `format_type`, ...) answer from the same live catalog the `pg_catalog`
//! relations are built from; session functions (`current_schema`, `current_setting`,
//! `version`) read the session's settings. Built-in stand-ins shipped by datafusion-pg-catalog
//! are registered for what they implement faithfully (privileges, identifier quoting).

use std::collections::HashMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, Int32Array, Int64Array, ListBuilder, StringArray, StringBuilder,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;
use datafusion_pg_catalog::pg_catalog as pgc;

use crate::storage::{StorageError, TableHandle, stable_oid};

use super::pg_catalog::relations::{self, index_definition, quote_ident};
use super::pg_catalog::SUPERUSER_OID;
use super::session::SessionShared;

type Body = Arc<dyn Fn(&SessionShared, ScalarFunctionArgs) -> DfResult<ColumnarValue> + Send + Sync>;

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

fn udf(
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
fn arities(types: &[&[DataType]], volatility: Volatility) -> Signature {
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
fn strings(value: &ColumnarValue, rows: usize) -> DfResult<Vec<Option<String>>> {
    let array = value.to_array(rows)?;
    let array = cast(&array, &DataType::Utf8)?;
    let array = array
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| DataFusionError::Internal("expected strings".into()))?;
    Ok(array.iter().map(|v| v.map(str::to_string)).collect())
}

/// The values of an argument as i64, one per row.
fn ints(value: &ColumnarValue, rows: usize) -> DfResult<Vec<Option<i64>>> {
    let array = cast(&value.to_array(rows)?, &DataType::Int64)?;
    let array = array
        .as_any()
        .downcast_ref::<Int64Array>()
        .ok_or_else(|| DataFusionError::Internal("expected integers".into()))?;
    Ok(array.iter().collect())
}

fn bools(value: &ColumnarValue, rows: usize) -> DfResult<Vec<Option<bool>>> {
    let array = cast(&value.to_array(rows)?, &DataType::Boolean)?;
    let array = array
        .as_any()
        .downcast_ref::<BooleanArray>()
        .ok_or_else(|| DataFusionError::Internal("expected booleans".into()))?;
    Ok(array.iter().collect())
}

fn text_result(values: Vec<Option<String>>) -> ColumnarValue {
    ColumnarValue::Array(Arc::new(StringArray::from(values)) as ArrayRef)
}

fn constant_text(value: Option<String>) -> ColumnarValue {
    ColumnarValue::Scalar(ScalarValue::Utf8(value))
}

fn external(e: StorageError) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

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

fn sequence_functions(shared: &Arc<SessionShared>) -> Vec<ScalarUDF> {
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
                let step = table.state().meta.sequences.iter().find(|s| s.name == seq).map_or(1, |s| s.increment);
                out.extend((0..rows as i64).map(|k| Some(first + k * step)));
                shared.note_sequence_value(&qualified_sequence(&table, &seq), first + (rows as i64 - 1) * step);
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
                let value = shared.sequences.lock().currval.get(&name).copied().ok_or_else(|| {
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

fn session_functions(shared: &Arc<SessionShared>) -> Vec<ScalarUDF> {
    let mut out = Vec::new();
    for name in ["session_user", "current_user", "user", "current_role"] {
        out.push(udf(shared, name, arities(&[&[]], Volatility::Stable), DataType::Utf8, |shared, _| {
            Ok(constant_text(Some(shared.user.clone())))
        }));
    }
    for name in ["current_database", "current_catalog"] {
        out.push(udf(shared, name, arities(&[&[]], Volatility::Stable), DataType::Utf8, |shared, _| {
            Ok(constant_text(Some(shared.engine.config().database.clone())))
        }));
    }
    out.push(udf(shared, "current_schema", arities(&[&[]], Volatility::Stable), DataType::Utf8, |shared, _| {
        Ok(constant_text(shared.current_schema()))
    }));
    out.push(udf(
        shared,
        "current_schemas",
        arities(&[&[DataType::Boolean]], Volatility::Stable),
        DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))),
        |shared, args| {
            let implicit = bools(&args.args[0], 1)?.first().copied().flatten().unwrap_or(false);
            let mut builder = ListBuilder::new(StringBuilder::new());
            if implicit {
                builder.values().append_value("pg_catalog");
            }
            for schema in shared.existing_search_path() {
                builder.values().append_value(schema);
            }
            builder.append(true);
            Ok(ColumnarValue::Scalar(ScalarValue::List(Arc::new(builder.finish()))))
        },
    ));
    out.push(udf(shared, "version", arities(&[&[]], Volatility::Stable), DataType::Utf8, |shared, _| {
        Ok(constant_text(Some(format!(
            "PostgreSQL {} (deltagate {}) on {}-linux, compiled by rustc, 64-bit",
            shared.engine.config().server_version,
            env!("CARGO_PKG_VERSION"),
            std::env::consts::ARCH
        ))))
    }));
    out.push(udf(
        shared,
        "current_setting",
        arities(&[&[DataType::Utf8], &[DataType::Utf8, DataType::Boolean]], Volatility::Stable),
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
        arities(&[&[DataType::Utf8, DataType::Utf8, DataType::Boolean]], Volatility::Volatile),
        DataType::Utf8,
        |shared, args| {
            let rows = args.number_rows.max(1);
            let names = strings(&args.args[0], rows)?;
            let values = strings(&args.args[1], rows)?;
            let mut settings = shared.settings.lock();
            let mut out = Vec::with_capacity(rows);
            for (name, value) in names.into_iter().zip(values) {
                if let (Some(name), Some(value)) = (name, value) {
                    settings.set(&name, &value).map_err(|e| DataFusionError::External(Box::new(e)))?;
                    out.push(settings.get(&name).ok());
                } else {
                    out.push(None);
                }
            }
            Ok(text_result(out))
        },
    ));
    out.push(udf(shared, "pg_backend_pid", arities(&[&[]], Volatility::Stable), DataType::Int32, |shared, _| {
        Ok(ColumnarValue::Scalar(ScalarValue::Int32(Some(shared.pid))))
    }));
    out.push(udf(shared, "pg_is_in_recovery", arities(&[&[]], Volatility::Stable), DataType::Boolean, |_, _| {
        Ok(ColumnarValue::Scalar(ScalarValue::Boolean(Some(false))))
    }));
    out.push(udf(shared, "pg_advisory_unlock_all", arities(&[&[]], Volatility::Volatile), DataType::Null, |_, _| {
        Ok(ColumnarValue::Scalar(ScalarValue::Null))
    }));
    out
}

/// What a catalog OID names: (schema, relation name, owning table).
fn relation_by_oid(shared: &SessionShared, oid: u32) -> Option<(String, String)> {
    for table in relations::tables(shared) {
        if table.handle.oid == oid {
            return Some((table.schema.clone(), table.handle.name.clone()));
        }
        for index in table.indexes() {
            if index.oid == oid {
                return Some((table.schema.clone(), index.name));
            }
        }
        for seq in table.sequences() {
            if seq.oid == oid {
                return Some((table.schema.clone(), seq.name));
            }
        }
    }
    None
}

fn catalog_functions(shared: &Arc<SessionShared>) -> Vec<ScalarUDF> {
    let mut out = Vec::new();
    let oid_types: &[&[DataType]] = &[&[DataType::Int32], &[DataType::Int64], &[DataType::Utf8]];
    out.push(udf(
        shared,
        "pg_table_is_visible",
        arities(oid_types, Volatility::Stable),
        DataType::Boolean,
        |shared, args| {
            let rows = args.number_rows.max(1);
            let path = shared.existing_search_path();
            let storage = shared.engine.storage();
            let mut cache: HashMap<i64, Option<bool>> = HashMap::new();
            let oids = ints(&args.args[0], rows)?;
            let out: Vec<Option<bool>> = oids
                .into_iter()
                .map(|oid| {
                    let oid = oid?;
                    *cache.entry(oid).or_insert_with(|| {
                        if oid < 16384 {
                            return Some(true);
                        }
                        let (schema, name) = relation_by_oid(shared, oid as u32)?;
                        let first = path.iter().find(|s| storage.relation_exists(s, &name));
                        Some(first == Some(&schema))
                    })
                })
                .collect();
            Ok(ColumnarValue::Array(Arc::new(BooleanArray::from(out))))
        },
    ));
    out.push(udf(
        shared,
        "pg_get_expr",
        arities(
            &[
                &[DataType::Utf8, DataType::Int32],
                &[DataType::Utf8, DataType::Int32, DataType::Boolean],
                &[DataType::Utf8, DataType::Int64],
                &[DataType::Utf8, DataType::Int64, DataType::Boolean],
            ],
            Volatility::Stable,
        ),
        DataType::Utf8,
        |_, args| {
            let rows = args.number_rows.max(1);
            Ok(text_result(strings(&args.args[0], rows)?))
        },
    ));
    out.push(udf(
        shared,
        "pg_get_userbyid",
        arities(&[&[DataType::Int32], &[DataType::Int64]], Volatility::Stable),
        DataType::Utf8,
        |shared, args| {
            let rows = args.number_rows.max(1);
            let out = ints(&args.args[0], rows)?
                .into_iter()
                .map(|oid| {
                    oid.map(|oid| {
                        if oid == SUPERUSER_OID as i64 {
                            shared.engine.config().superuser.clone()
                        } else {
                            format!("unknown (OID={oid})")
                        }
                    })
                })
                .collect();
            Ok(text_result(out))
        },
    ));
    for (name, types) in [
        ("obj_description", &[&[DataType::Int32][..], &[DataType::Int32, DataType::Utf8][..], &[DataType::Int64, DataType::Utf8][..]][..]),
        ("col_description", &[&[DataType::Int32, DataType::Int32][..], &[DataType::Int64, DataType::Int64][..]][..]),
        ("shobj_description", &[&[DataType::Int32, DataType::Utf8][..], &[DataType::Int64, DataType::Utf8][..]][..]),
    ] {
        // deltagate has no COMMENT ON yet, so every object is undescribed.
        out.push(udf(shared, name, arities(types, Volatility::Stable), DataType::Utf8, |_, _| {
            Ok(constant_text(None))
        }));
    }
    out.push(udf(
        shared,
        "pg_get_indexdef",
        arities(
            &[&[DataType::Int32], &[DataType::Int64], &[DataType::Int32, DataType::Int32, DataType::Boolean], &[DataType::Int64, DataType::Int64, DataType::Boolean]],
            Volatility::Stable,
        ),
        DataType::Utf8,
        |shared, args| {
            let rows = args.number_rows.max(1);
            let oids = ints(&args.args[0], rows)?;
            let columns = match args.args.get(1) {
                Some(v) => ints(v, rows)?,
                None => vec![Some(0); rows],
            };
            let tables = relations::tables(shared);
            let out = oids
                .into_iter()
                .zip(columns)
                .map(|(oid, column)| {
                    let oid = oid? as u32;
                    tables.iter().find_map(|table| {
                        let index = table.indexes().into_iter().find(|i| i.oid == oid)?;
                        match column.unwrap_or(0) {
                            0 => Some(index_definition(table, &index)),
                            n => index.columns.get(n as usize - 1).map(|c| quote_ident(c)),
                        }
                    })
                })
                .collect();
            Ok(text_result(out))
        },
    ));
    out.push(udf(
        shared,
        "pg_get_constraintdef",
        arities(&[&[DataType::Int32], &[DataType::Int64], &[DataType::Int32, DataType::Boolean], &[DataType::Int64, DataType::Boolean]], Volatility::Stable),
        DataType::Utf8,
        |shared, args| {
            let rows = args.number_rows.max(1);
            let tables = relations::tables(shared);
            let out = ints(&args.args[0], rows)?
                .into_iter()
                .map(|oid| {
                    let oid = oid? as u32;
                    tables.iter().find_map(|table| {
                        let pk = table.indexes().into_iter().find(|i| {
                            i.primary && stable_oid("constraint", &table.schema, &i.name) == oid
                        })?;
                        Some(format!(
                            "PRIMARY KEY ({})",
                            pk.columns.iter().map(|c| quote_ident(c)).collect::<Vec<_>>().join(", ")
                        ))
                    })
                })
                .collect();
            Ok(text_result(out))
        },
    ));
    out.push(udf(
        shared,
        "pg_get_serial_sequence",
        arities(&[&[DataType::Utf8, DataType::Utf8]], Volatility::Stable),
        DataType::Utf8,
        |shared, args| {
            let rows = args.number_rows.max(1);
            let tables = strings(&args.args[0], rows)?;
            let columns = strings(&args.args[1], rows)?;
            let out = tables
                .into_iter()
                .zip(columns)
                .map(|(table, column)| {
                    let (table, column) = (table?, column?);
                    let (schema, name) = match table.split_once('.') {
                        Some((s, n)) => (vec![s.trim_matches('"').to_string()], n.trim_matches('"').to_string()),
                        None => (shared.existing_search_path(), table.trim_matches('"').to_lowercase()),
                    };
                    let storage = shared.engine.storage();
                    let handle = schema.iter().find_map(|s| storage.table(s, &name))?;
                    let meta = handle.state().meta;
                    let seq = meta.sequences.iter().find(|s| s.column == column)?;
                    Some(format!("{}.{}", quote_ident(&handle.schema), quote_ident(&seq.name)))
                })
                .collect();
            Ok(text_result(out))
        },
    ));
    out.push(udf(
        shared,
        "to_regclass",
        arities(&[&[DataType::Utf8]], Volatility::Stable),
        DataType::Int32,
        |shared, args| {
            let rows = args.number_rows.max(1);
            let storage = shared.engine.storage();
            let out: Vec<Option<i32>> = strings(&args.args[0], rows)?
                .into_iter()
                .map(|name| {
                    let name = name?;
                    let (schemas, rel) = match name.split_once('.') {
                        Some((s, n)) => (vec![s.trim_matches('"').to_string()], n.trim_matches('"').to_string()),
                        None => (shared.existing_search_path(), name.trim_matches('"').to_lowercase()),
                    };
                    schemas.iter().find_map(|s| storage.table(s, &rel)).map(|t| t.oid as i32)
                })
                .collect();
            Ok(ColumnarValue::Array(Arc::new(Int32Array::from(out))))
        },
    ));
    out.push(udf(
        shared,
        "pg_relation_is_publishable",
        arities(oid_types, Volatility::Stable),
        DataType::Boolean,
        |_, args| {
            // Ordinary user tables are publishable; system relations are not.
            let rows = args.number_rows.max(1);
            let out: Vec<Option<bool>> = ints(&args.args[0], rows)?
                .into_iter()
                .map(|oid| oid.map(|oid| oid >= 16384))
                .collect();
            Ok(ColumnarValue::Array(Arc::new(BooleanArray::from(out))))
        },
    ));
    out.push(udf(
        shared,
        "pg_encoding_to_char",
        arities(&[&[DataType::Int32], &[DataType::Int64]], Volatility::Immutable),
        DataType::Utf8,
        |_, args| {
            let rows = args.number_rows.max(1);
            let out = ints(&args.args[0], rows)?
                .into_iter()
                .map(|e| {
                    e.map(|e| match e {
                        0 => "SQL_ASCII".to_string(),
                        6 => "UTF8".to_string(),
                        _ => String::new(),
                    })
                })
                .collect();
            Ok(text_result(out))
        },
    ));
    out.push(udf(
        shared,
        "to_regtype",
        arities(&[&[DataType::Utf8]], Volatility::Stable),
        DataType::Int32,
        |shared, args| {
            let rows = args.number_rows.max(1);
            let out: Vec<Option<i32>> = strings(&args.args[0], rows)?
                .into_iter()
                .map(|name| shared.engine.pg_static.type_oid(&name?).map(|oid| oid as i32))
                .collect();
            Ok(ColumnarValue::Array(Arc::new(Int32Array::from(out))))
        },
    ));
    out.push(udf(
        shared,
        "pg_size_pretty",
        arities(&[&[DataType::Int64]], Volatility::Immutable),
        DataType::Utf8,
        |_, args| {
            let rows = args.number_rows.max(1);
            Ok(text_result(ints(&args.args[0], rows)?.into_iter().map(|b| b.map(size_pretty)).collect()))
        },
    ));
    out
}

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
        ScalarValue::Utf8(Some(s)) | ScalarValue::Utf8View(Some(s)) | ScalarValue::LargeUtf8(Some(s)) => {
            serde_json::Value::String(s)
        }
        other => serde_json::Value::String(other.to_string()),
    })
}

fn json_functions(shared: &Arc<SessionShared>) -> Vec<ScalarUDF> {
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
                            return Err(DataFusionError::Execution("null value not allowed for object key".into()));
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
                .ok_or_else(|| DataFusionError::Internal("_pg_expandarray expects an array".into()))?;
            let DataType::List(item) = expand_type() else { unreachable!("list type") };
            let DataType::Struct(fields) = item.data_type().clone() else { unreachable!("struct item") };
            let mut builder = ListBuilder::new(StructBuilder::from_fields(fields, 0)).with_field(item);
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
                    entry.field_builder::<Int32Builder>(0).ok_or_else(|| DataFusionError::Internal("x".into()))?.append_option(v);
                    entry.field_builder::<Int32Builder>(1).ok_or_else(|| DataFusionError::Internal("n".into()))?.append_value(i as i32 + 1);
                    entry.append(true);
                }
                builder.append(true);
            }
            Ok(ColumnarValue::Array(Arc::new(builder.finish())))
        },
    );
    let mut out = vec![object, array, expand];
    for name in ["pg_collation_is_visible", "pg_type_is_visible", "pg_function_is_visible"] {
        // Built-in collations, types and functions all live in pg_catalog, always searched.
        out.push(udf(shared, name, arities(&[&[DataType::Int32], &[DataType::Int64]], Volatility::Stable), DataType::Boolean, |_, _| {
            Ok(ColumnarValue::Scalar(ScalarValue::Boolean(Some(true))))
        }));
    }
    out
}

/// `setof record(x int, n int)` of `_pg_expandarray`, as a list of structs to unnest.
fn expand_type() -> DataType {
    let fields = datafusion::arrow::datatypes::Fields::from(vec![
        Field::new("x", DataType::Int32, true),
        Field::new("n", DataType::Int32, true),
    ]);
    DataType::List(Arc::new(Field::new_list_field(DataType::Struct(fields), true)))
}

/// Formats a byte count as `pg_size_pretty` does.
fn size_pretty(bytes: i64) -> String {
    let units = ["bytes", "kB", "MB", "GB", "TB", "PB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value.abs() >= 10.0 * 1024.0 && unit < units.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{} {}", value.round() as i64, units[unit])
}

/// Registers every function on a session's context.
pub fn register(ctx: &SessionContext, shared: &Arc<SessionShared>) {
    for f in sequence_functions(shared)
        .into_iter()
        .chain(session_functions(shared))
        .chain(catalog_functions(shared))
        .chain(json_functions(shared))
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

#[cfg(test)]
mod tests {
    #[test]
    fn size_pretty_matches_postgres() {
        assert_eq!(super::size_pretty(8192), "8192 bytes");
        assert_eq!(super::size_pretty(10 * 1024 * 1024), "10 MB");
    }
}
