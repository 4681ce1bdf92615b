//! Catalog functions answered from the live catalog: visibility, definitions, names.

use std::sync::Arc;

use datafusion::arrow::array::{BooleanArray, Int32Array};
use datafusion::arrow::datatypes::DataType;
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Volatility};

use super::super::shared::SessionShared;
use super::{arities, constant_text, ints, strings, text_result, udf};
use std::collections::HashMap;

use crate::storage::stable_oid;

use super::super::pg_catalog::SUPERUSER_OID;
use super::super::pg_catalog::objects::{self, index_definition, quote_ident};

/// What a catalog OID names: (schema, relation name, owning table).
fn relation_by_oid(shared: &SessionShared, oid: u32) -> Option<(String, String)> {
    for table in objects::tables(shared) {
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
    objects::views(shared)
        .into_iter()
        .find(|view| view.oid == oid)
        .map(|view| (view.schema, view.name.to_string()))
}

pub(super) fn functions(shared: &Arc<SessionShared>) -> Vec<ScalarUDF> {
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
            let views = objects::views(shared);
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
                        let first = path.iter().find(|s| {
                            storage.relation_exists(s, &name)
                                || views.iter().any(|v| &v.schema == *s && v.name == name)
                        });
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
        arities(
            &[&[DataType::Int32], &[DataType::Int64]],
            Volatility::Stable,
        ),
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
        (
            "obj_description",
            &[
                &[DataType::Int32][..],
                &[DataType::Int32, DataType::Utf8][..],
                &[DataType::Int64, DataType::Utf8][..],
            ][..],
        ),
        (
            "col_description",
            &[
                &[DataType::Int32, DataType::Int32][..],
                &[DataType::Int64, DataType::Int64][..],
            ][..],
        ),
        (
            "shobj_description",
            &[
                &[DataType::Int32, DataType::Utf8][..],
                &[DataType::Int64, DataType::Utf8][..],
            ][..],
        ),
    ] {
        // deltagate has no COMMENT ON yet, so every object is undescribed.
        out.push(udf(
            shared,
            name,
            arities(types, Volatility::Stable),
            DataType::Utf8,
            |_, _| Ok(constant_text(None)),
        ));
    }
    out.push(udf(
        shared,
        "pg_get_indexdef",
        arities(
            &[
                &[DataType::Int32],
                &[DataType::Int64],
                &[DataType::Int32, DataType::Int32, DataType::Boolean],
                &[DataType::Int64, DataType::Int64, DataType::Boolean],
            ],
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
            let tables = objects::tables(shared);
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
        "pg_get_viewdef",
        arities(
            &[
                &[DataType::Int32],
                &[DataType::Int64],
                &[DataType::Int32, DataType::Boolean],
                &[DataType::Int64, DataType::Boolean],
                &[DataType::Int32, DataType::Int32],
                &[DataType::Int64, DataType::Int32],
            ],
            Volatility::Stable,
        ),
        DataType::Utf8,
        |shared, args| {
            let rows = args.number_rows.max(1);
            let views = objects::views(shared);
            let out = ints(&args.args[0], rows)?
                .into_iter()
                .map(|oid| {
                    let oid = oid? as u32;
                    views
                        .iter()
                        .find(|v| v.oid == oid)
                        .map(|v| v.definition.clone())
                })
                .collect();
            Ok(text_result(out))
        },
    ));
    out.push(udf(
        shared,
        "pg_get_constraintdef",
        arities(
            &[
                &[DataType::Int32],
                &[DataType::Int64],
                &[DataType::Int32, DataType::Boolean],
                &[DataType::Int64, DataType::Boolean],
            ],
            Volatility::Stable,
        ),
        DataType::Utf8,
        |shared, args| {
            let rows = args.number_rows.max(1);
            let tables = objects::tables(shared);
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
                            pk.columns
                                .iter()
                                .map(|c| quote_ident(c))
                                .collect::<Vec<_>>()
                                .join(", ")
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
                        Some((s, n)) => (
                            vec![s.trim_matches('"').to_string()],
                            n.trim_matches('"').to_string(),
                        ),
                        None => (
                            shared.existing_search_path(),
                            table.trim_matches('"').to_lowercase(),
                        ),
                    };
                    let storage = shared.engine.storage();
                    let handle = schema.iter().find_map(|s| storage.table(s, &name))?;
                    let meta = handle.state().meta;
                    let seq = meta.sequences.iter().find(|s| s.column == column)?;
                    Some(format!(
                        "{}.{}",
                        quote_ident(&handle.schema),
                        quote_ident(&seq.name)
                    ))
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
                        Some((s, n)) => (
                            vec![s.trim_matches('"').to_string()],
                            n.trim_matches('"').to_string(),
                        ),
                        None => (
                            shared.existing_search_path(),
                            name.trim_matches('"').to_lowercase(),
                        ),
                    };
                    schemas
                        .iter()
                        .find_map(|s| storage.table(s, &rel))
                        .map(|t| t.oid as i32)
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
        arities(
            &[&[DataType::Int32], &[DataType::Int64]],
            Volatility::Immutable,
        ),
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
                .map(|name| {
                    shared
                        .engine
                        .pg_static
                        .type_oid(&name?)
                        .map(|oid| oid as i32)
                })
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
            Ok(text_result(
                ints(&args.args[0], rows)?
                    .into_iter()
                    .map(|b| b.map(size_pretty))
                    .collect(),
            ))
        },
    ));
    out
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

#[cfg(test)]
mod tests {
    #[test]
    fn size_pretty_matches_postgres() {
        assert_eq!(super::size_pretty(8192), "8192 bytes");
        assert_eq!(super::size_pretty(10 * 1024 * 1024), "10 MB");
    }
}
