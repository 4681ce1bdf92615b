//! Queries answered by a key seek instead of a planned scan.
//!
//! Ignition's seed query, `SELECT cols FROM t WHERE tagid IN (...) AND t_stamp < ? ORDER BY
//! t_stamp DESC LIMIT 1`, runs for every chart on every poll, and planning a scan for it costs
//! more than reading the one page that answers it. [`try_seek`] recognizes the shape on the
//! AST: one table (no joins, grouping or DISTINCT), plain columns in the select list, a WHERE
//! made only of conditions fixing the first primary-key column to a set of values (`=`, `IN`,
//! OR-chains of `=`) and bounding the second (`<`, `<=`, `>`, `>=`, `=`, `BETWEEN`), integer
//! literals or parameters as values, and an ORDER BY of the second key column with an optional
//! LIMIT. It then asks [`Storage::seek`](crate::storage::Storage) for the rows. Anything else,
//! a table with writes pending in the session's transaction, or a table storage cannot seek,
//! is left to the planner (`None`), which gives the same rows more slowly.
//!
//! Called by `Session::run_query`. `SET enable_indexscan = off` turns seeks off, as it turns
//! off PostgreSQL's index scans.

use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::common::ParamValues;
use datafusion::physical_plan::memory::MemoryStream;
use datafusion::sql::sqlparser::ast::{
    BinaryOperator, CastKind, DataType as SqlType, Expr, GroupByExpr, LimitClause, OrderByKind,
    Query, Select, SelectItem, SetExpr, Statement, TableFactor, UnaryOperator, Value,
};

use crate::storage::{KeySeek, TableHandle, TableMeta, as_i64};

use super::super::rewrite::{name_parts, normalize_ident};
use super::super::session::Session;
use super::super::{Outcome, Result};

/// A query `try_seek` can answer, with its values still unbound.
struct Shape<'a> {
    select: &'a Select,
    order: &'a datafusion::sql::sqlparser::ast::OrderByExpr,
    limit: Option<&'a Expr>,
}

/// Answers `statement` with a key seek when it has the shape described in the module comment.
///
/// # Errors
/// Storage errors reading the table's files.
pub(in crate::sql) async fn try_seek(
    session: &Session,
    statement: &Statement,
    params: Option<&ParamValues>,
) -> Result<Option<Outcome>> {
    let Statement::Query(query) = statement else {
        return Ok(None);
    };
    let Some(shape) = shape(query) else {
        return Ok(None);
    };
    if session
        .shared
        .settings
        .lock()
        .get("enable_indexscan")
        .is_ok_and(|v| v == "off")
    {
        return Ok(None);
    }
    let Some((handle, qualifier)) = relation(session, shape.select) else {
        return Ok(None);
    };
    if session.shared.txn.pending_ops(handle.oid).is_some() {
        return Ok(None);
    }
    let state = handle.state();
    let Some((seek, names)) = bind(&shape, &state.meta, &qualifier, params) else {
        return Ok(None);
    };
    let storage = session.shared.engine.storage();
    let Some(batch) = storage.seek(&handle, &state, &seek).await? else {
        return Ok(None);
    };
    handle.seeks.fetch_add(1, Ordering::Relaxed);
    let fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .zip(names)
        .map(|(field, name)| field.as_ref().clone().with_name(name))
        .collect();
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), batch.columns().to_vec())?;
    let stream = MemoryStream::try_new(vec![batch], schema.clone(), None)?;
    Ok(Some(Outcome::Rows {
        schema,
        stream: Box::pin(stream),
        tag: "SELECT".to_string(),
    }))
}

/// The seek a query of the seekable shape on a table with this `meta` asks for, and the names
/// of its result columns; `None` when its conditions, columns or values are not a key seek's.
fn bind(
    shape: &Shape<'_>,
    meta: &TableMeta,
    qualifier: &str,
    params: Option<&ParamValues>,
) -> Option<(KeySeek, Vec<String>)> {
    let key = meta.primary_key_indices();
    let (Some(&first), Some(&second)) = (key.first(), key.get(1)) else {
        return None;
    };
    let column = |expr: &Expr| -> Option<usize> {
        let name = match expr {
            Expr::Identifier(ident) => normalize_ident(ident),
            Expr::CompoundIdentifier(parts) if parts.len() == 2 => {
                if normalize_ident(&parts[0]) != *qualifier {
                    return None;
                }
                normalize_ident(&parts[1])
            }
            _ => return None,
        };
        meta.column_index(&name)
    };
    let value = |expr: &Expr| integer(expr, params);

    // Select list: columns, possibly renamed.
    let mut projection = Vec::new();
    let mut names = Vec::new();
    for item in &shape.select.projection {
        match item {
            SelectItem::Wildcard(options) if options.to_string().is_empty() => {
                projection.extend(0..meta.columns.len());
                names.extend(meta.columns.iter().map(|c| c.name.clone()));
            }
            SelectItem::UnnamedExpr(expr) => {
                let index = column(expr)?;
                projection.push(index);
                names.push(meta.columns[index].name.clone());
            }
            SelectItem::ExprWithAlias { expr, alias } => {
                projection.push(column(expr)?);
                names.push(normalize_ident(alias));
            }
            _ => return None,
        }
    }

    // WHERE: a set for the first key column, a range for the second.
    let mut prefix: Option<Vec<i64>> = None;
    let mut range = (Bound::Unbounded, Bound::Unbounded);
    let mut conditions = Vec::new();
    if let Some(selection) = &shape.select.selection {
        conjuncts(selection, &mut conditions);
    }
    for condition in conditions {
        if let Some(values) = key_values(condition, first, &column, &value) {
            prefix = Some(match prefix {
                None => values,
                Some(known) => known.into_iter().filter(|v| values.contains(v)).collect(),
            });
        } else if let Some((low, high)) = key_range(condition, second, &column, &value) {
            range = (tighter(range.0, low, true), tighter(range.1, high, false));
        } else {
            return None;
        }
    }
    let prefix = prefix?;
    // ORDER BY names an output column before a table column, as in PostgreSQL.
    let renamed = match &shape.order.expr {
        Expr::Identifier(ident) => {
            let name = normalize_ident(ident);
            names
                .iter()
                .zip(&projection)
                .any(|(output, index)| *output == name && *index != second)
        }
        _ => false,
    };
    if renamed || column(&shape.order.expr) != Some(second) {
        return None;
    }
    let limit = match shape.limit {
        None => None,
        Some(expr) => Some(usize::try_from(value(expr)?).ok()?),
    };
    let seek = KeySeek {
        prefix,
        range,
        descending: shape.order.options.asc == Some(false),
        limit,
        projection,
    };
    Some((seek, names))
}

/// The parts of a query of the seekable shape, if it has it.
fn shape(query: &Query) -> Option<Shape<'_>> {
    if query.with.is_some()
        || query.fetch.is_some()
        || !query.locks.is_empty()
        || query.for_clause.is_some()
        || query.settings.is_some()
        || query.format_clause.is_some()
        || !query.pipe_operators.is_empty()
    {
        return None;
    }
    let SetExpr::Select(select) = query.body.as_ref() else {
        return None;
    };
    let OrderByKind::Expressions(order) = &query.order_by.as_ref()?.kind else {
        return None;
    };
    let [order] = order.as_slice() else {
        return None;
    };
    if order.with_fill.is_some() || query.order_by.as_ref()?.interpolate.is_some() {
        return None;
    }
    let limit = match &query.limit_clause {
        None => None,
        Some(LimitClause::LimitOffset {
            limit,
            offset: None,
            limit_by,
        }) if limit_by.is_empty() => limit.as_ref(),
        Some(_) => return None,
    };
    let plain = select.distinct.is_none()
        && select.top.is_none()
        && select.exclude.is_none()
        && select.into.is_none()
        && select.from.len() == 1
        && select.from[0].joins.is_empty()
        && select.lateral_views.is_empty()
        && select.prewhere.is_none()
        && select.connect_by.is_empty()
        && matches!(&select.group_by, GroupByExpr::Expressions(e, m) if e.is_empty() && m.is_empty())
        && select.cluster_by.is_empty()
        && select.distribute_by.is_empty()
        && select.sort_by.is_empty()
        && select.having.is_none()
        && select.named_window.is_empty()
        && select.qualify.is_none()
        && select.value_table_mode.is_none();
    plain.then_some(Shape {
        select,
        order,
        limit,
    })
}

/// The user table the query reads, and the name columns may be qualified with.
fn relation(session: &Session, select: &Select) -> Option<(Arc<TableHandle>, String)> {
    let TableFactor::Table {
        name,
        alias,
        args: None,
        with_hints,
        version: None,
        partitions,
        sample: None,
        index_hints,
        ..
    } = &select.from[0].relation
    else {
        return None;
    };
    if !with_hints.is_empty() || !partitions.is_empty() || !index_hints.is_empty() {
        return None;
    }
    if alias.as_ref().is_some_and(|a| !a.columns.is_empty()) {
        return None;
    }
    let storage = session.shared.engine.storage();
    let parts = name_parts(name);
    let handle = match parts.as_slice() {
        [table] => {
            // pg_catalog comes first on the search path, as in PostgreSQL.
            if super::super::pg_catalog::is_catalog_relation(&session.shared.engine, table) {
                return None;
            }
            session
                .shared
                .existing_search_path()
                .iter()
                .find_map(|schema| storage.table(schema, table))?
        }
        [schema, table] => storage.table(schema, table)?,
        [database, schema, table] if *database == session.shared.engine.config().database => {
            storage.table(schema, table)?
        }
        _ => return None,
    };
    let qualifier = match alias {
        Some(alias) => normalize_ident(&alias.name),
        None => parts.last()?.clone(),
    };
    Some((handle, qualifier))
}

/// The conditions `expr` ANDs together.
fn conjuncts<'a>(expr: &'a Expr, out: &mut Vec<&'a Expr>) {
    match expr {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            conjuncts(left, out);
            conjuncts(right, out);
        }
        Expr::Nested(inner) => conjuncts(inner, out),
        other => out.push(other),
    }
}

/// The values `condition` allows column `key` (by index): `key = v`, `key IN (...)`, or an
/// OR-chain of those.
fn key_values(
    condition: &Expr,
    key: usize,
    column: &impl Fn(&Expr) -> Option<usize>,
    value: &impl Fn(&Expr) -> Option<i64>,
) -> Option<Vec<i64>> {
    match condition {
        Expr::Nested(inner) => key_values(inner, key, column, value),
        Expr::InList {
            expr,
            list,
            negated: false,
        } if column(expr) == Some(key) => list.iter().map(value).collect(),
        Expr::BinaryOp {
            left,
            op: BinaryOperator::Eq,
            right,
        } => {
            if column(left) == Some(key) {
                Some(vec![value(right)?])
            } else if column(right) == Some(key) {
                Some(vec![value(left)?])
            } else {
                None
            }
        }
        Expr::BinaryOp {
            left,
            op: BinaryOperator::Or,
            right,
        } => {
            let mut values = key_values(left, key, column, value)?;
            values.extend(key_values(right, key, column, value)?);
            Some(values)
        }
        _ => None,
    }
}

/// The bounds `condition` puts on column `key`: a comparison with a value, or BETWEEN.
fn key_range(
    condition: &Expr,
    key: usize,
    column: &impl Fn(&Expr) -> Option<usize>,
    value: &impl Fn(&Expr) -> Option<i64>,
) -> Option<(Bound<i64>, Bound<i64>)> {
    use Bound::{Excluded, Included, Unbounded};
    match condition {
        Expr::Nested(inner) => key_range(inner, key, column, value),
        Expr::Between {
            expr,
            negated: false,
            low,
            high,
        } if column(expr) == Some(key) => Some((Included(value(low)?), Included(value(high)?))),
        Expr::BinaryOp { left, op, right } => {
            // Written `key op v`, or `v op key` (then the comparison reads the other way).
            let (v, op) = if column(left) == Some(key) {
                (value(right)?, op.clone())
            } else if column(right) == Some(key) {
                let flipped = match op {
                    BinaryOperator::Lt => BinaryOperator::Gt,
                    BinaryOperator::LtEq => BinaryOperator::GtEq,
                    BinaryOperator::Gt => BinaryOperator::Lt,
                    BinaryOperator::GtEq => BinaryOperator::LtEq,
                    other => other.clone(),
                };
                (value(left)?, flipped)
            } else {
                return None;
            };
            match op {
                BinaryOperator::Lt => Some((Unbounded, Excluded(v))),
                BinaryOperator::LtEq => Some((Unbounded, Included(v))),
                BinaryOperator::Gt => Some((Excluded(v), Unbounded)),
                BinaryOperator::GtEq => Some((Included(v), Unbounded)),
                BinaryOperator::Eq => Some((Included(v), Included(v))),
                _ => None,
            }
        }
        _ => None,
    }
}

/// The tighter of two bounds on the same side (`lower` for lower bounds).
fn tighter(a: Bound<i64>, b: Bound<i64>, lower: bool) -> Bound<i64> {
    use Bound::{Excluded, Included, Unbounded};
    // As (value, exclusive) pairs, where the larger lower bound or smaller upper bound wins.
    let key = |bound: &Bound<i64>| match bound {
        Included(v) => Some((*v, false)),
        Excluded(v) => Some((*v, true)),
        Unbounded => None,
    };
    match (key(&a), key(&b)) {
        (None, _) => b,
        (_, None) => a,
        (Some(x), Some(y)) => {
            let a_wins = if lower {
                x.0 > y.0 || (x.0 == y.0 && x.1)
            } else {
                x.0 < y.0 || (x.0 == y.0 && x.1)
            };
            if a_wins { a } else { b }
        }
    }
}

/// An integer literal or parameter (`5`, `-5`, `'5'`, `$1`, `$1::int8`); `None` for anything
/// else, including NULL.
fn integer(expr: &Expr, params: Option<&ParamValues>) -> Option<i64> {
    match expr {
        Expr::Nested(inner) => integer(inner, params),
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => integer(expr, params)?.checked_neg(),
        Expr::Cast {
            kind: CastKind::DoubleColon | CastKind::Cast,
            expr,
            data_type:
                SqlType::Int(_)
                | SqlType::Integer(_)
                | SqlType::BigInt(_)
                | SqlType::SmallInt(_)
                | SqlType::Int2(_)
                | SqlType::Int4(_)
                | SqlType::Int8(_),
            format: None,
            ..
        } => integer(expr, params),
        Expr::Value(value) => match &value.value {
            Value::Number(text, false) => text.parse().ok(),
            Value::SingleQuotedString(text) => text.trim().parse().ok(),
            Value::Placeholder(name) => {
                let index: usize = name.strip_prefix('$')?.parse().ok()?;
                let ParamValues::List(values) = params? else {
                    return None;
                };
                as_i64(&values.get(index.checked_sub(1)?)?.value)
            }
            _ => None,
        },
        _ => None,
    }
}
