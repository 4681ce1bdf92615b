//! The planner-free INSERT: `INSERT INTO t [(cols)] VALUES (...)[, ...]` whose values are
//! parameters, plain literals or NULL, without `RETURNING` or `ON CONFLICT`.
//!
//! This is the statement historians send thousands of times a second (PgJDBC `executeBatch`
//! runs one Bind/Execute per row). Planning it through DataFusion costs far more than storing
//! the row, so the row is built straight from the parameter values, cast to the column types as
//! the planner would cast them, and then takes the same checks and write path as every INSERT.
//! Anything this module does not recognise exactly (expressions, `DEFAULT` markers, computed
//! defaults, bytea literals, a failing cast) returns `None` and goes through the planner, so
//! both paths give the same results and the same errors.

use datafusion::arrow::compute::interleave;
use datafusion::sql::sqlparser::ast::{UnaryOperator, ValueWithSpan};

use super::*;

/// A value of the VALUES list.
enum Source {
    Parameter(usize),
    Literal(ScalarValue),
}

/// The parameter values of the executions of one statement.
#[derive(Debug, Clone, Copy)]
pub enum Executions<'a> {
    /// One parameter set per execution (`None`: the statement takes none).
    Each(&'a [Option<&'a ParamValues>]),
    /// One array per parameter holding its value in every execution, in order, as the wire
    /// layer decodes a client batch.
    Columns {
        params: &'a [ArrayRef],
        count: usize,
    },
}

impl Executions<'_> {
    fn len(&self) -> usize {
        match self {
            Executions::Each(each) => each.len(),
            Executions::Columns { count, .. } => *count,
        }
    }
}

/// Tries the planner-free path; `None` means the statement needs the planner.
///
/// # Errors
/// Constraint violations and storage errors of the write.
pub(super) async fn try_insert(
    session: &Session,
    statement: &Statement,
    params: Option<&ParamValues>,
) -> Result<Option<Outcome>> {
    Ok(
        try_insert_many(session, statement, Executions::Each(&[params]))
            .await?
            .map(|rows| Outcome::Command {
                tag: "INSERT 0".into(),
                rows: Some(rows.iter().sum()),
            }),
    )
}

/// Runs several executions of one statement, one parameter set each, as a single insert:
/// they are checked and recorded together, so either all of them are stored or none.
/// Returns the rows each execution inserted (fewer than it listed where the table skips
/// duplicate keys), or `None` if the statement needs the planner.
///
/// # Errors
/// Constraint violations and storage errors of the write.
pub(crate) async fn try_insert_many(
    session: &Session,
    statement: &Statement,
    executions: Executions<'_>,
) -> Result<Option<Vec<usize>>> {
    let Some((target, listed, rows)) = recognise(session, statement)? else {
        return Ok(None);
    };
    let meta = target.state.meta.clone();
    let schema = meta.stored_schema.clone();
    let count = rows.len() * executions.len();
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(meta.columns.len());
    for (index, column) in meta.columns.iter().enumerate() {
        let target_type = schema.field(index).data_type();
        let column = match listed.iter().position(|i| *i == index) {
            Some(position) => match executions {
                Executions::Each(each) => listed_values(each, &rows, position, target_type)?,
                Executions::Columns {
                    params,
                    count: runs,
                } => listed_columns(params, runs, &rows, position, target_type)?,
            },
            None => {
                let default = match &column.default {
                    None => ScalarValue::Null,
                    Some(text) => match literal(&parse_default(text)?) {
                        Some(v) => v,
                        None => return Ok(None),
                    },
                };
                cast(default, target_type)
                    .map(|v| v.to_array_of_size(count))
                    .transpose()?
            }
        };
        match column {
            Some(column) => arrays.push(column),
            None => return Ok(None),
        }
    }
    let batch = RecordBatch::try_new(schema, arrays)?;
    let batches = validate_rows(&meta, &target.handle.name, vec![batch])?;
    let (_, kept) = insert_rows(session, &target, batches).await?;
    let per_execution = rows.len().max(1);
    Ok(Some(
        kept.chunks(per_execution)
            .map(|execution| execution.iter().filter(|k| **k).count())
            .collect(),
    ))
}

/// The values of the column at `position` of the VALUES rows, for executions decoded one by
/// one; `None` when a value needs the planner.
fn listed_values(
    executions: &[Option<&ParamValues>],
    rows: &[Vec<Source>],
    position: usize,
    target_type: &DataType,
) -> Result<Option<ArrayRef>> {
    let mut values = Vec::with_capacity(rows.len() * executions.len());
    for params in executions {
        for row in rows {
            let value = match &row[position] {
                Source::Parameter(n) => match parameter(*params, *n) {
                    Some(v) => v,
                    None => return Ok(None),
                },
                Source::Literal(v) => v.clone(),
            };
            match cast(value, target_type) {
                Some(v) => values.push(v),
                None => return Ok(None),
            }
        }
    }
    Ok(Some(ScalarValue::iter_to_array(values)?))
}

/// As [`listed_values`], for parameters decoded column-wise: each VALUES row contributes one
/// array (its parameter cast to the column type, or its literal), interleaved execution by
/// execution.
fn listed_columns(
    params: &[ArrayRef],
    runs: usize,
    rows: &[Vec<Source>],
    position: usize,
    target_type: &DataType,
) -> Result<Option<ArrayRef>> {
    let mut sources = Vec::with_capacity(rows.len());
    for row in rows {
        let source = match &row[position] {
            Source::Parameter(n) => params
                .get(*n)
                .filter(|p| p.len() == runs)
                .and_then(|p| cast_array(p, target_type)),
            Source::Literal(v) => cast(v.clone(), target_type)
                .map(|v| v.to_array_of_size(1))
                .transpose()?,
        };
        match source {
            Some(source) => sources.push(source),
            None => return Ok(None),
        }
    }
    if let [only] = sources.as_slice()
        && only.len() == runs
    {
        return Ok(Some(only.clone()));
    }
    let indices: Vec<(usize, usize)> = (0..runs)
        .flat_map(|e| {
            sources
                .iter()
                .enumerate()
                .map(move |(r, a)| (r, if a.len() == 1 { 0 } else { e }))
        })
        .collect();
    let refs: Vec<&dyn Array> = sources.iter().map(AsRef::as_ref).collect();
    Ok(Some(interleave(&refs, &indices)?))
}

/// Whether executions of the statement are worth collecting for [`try_insert_many`]: an
/// INSERT of the simple shape that takes parameters (what clients send in batches).
pub(crate) fn batchable(session: &Session, statement: &Statement) -> bool {
    let Ok(Some((target, listed, rows))) = recognise(session, statement) else {
        return false;
    };
    // A computed default (a sequence, say) sends the statement to the planner every time.
    let defaults_plain = target.state.meta.columns.iter().enumerate().all(|(i, c)| {
        listed.contains(&i)
            || c.default
                .as_ref()
                .is_none_or(|d| parse_default(d).is_ok_and(|e| literal(&e).is_some()))
    });
    defaults_plain
        && rows
            .iter()
            .flatten()
            .any(|s| matches!(s, Source::Parameter(_)))
}

type Recognised = (Target, Vec<usize>, Vec<Vec<Source>>);

/// The target, the table column of each listed column, and the values, if the statement has
/// the simple shape.
fn recognise(session: &Session, statement: &Statement) -> Result<Option<Recognised>> {
    let Statement::Insert(insert) = statement else {
        return Ok(None);
    };
    if insert.on.is_some()
        || insert.returning.is_some()
        || insert.partitioned.is_some()
        || !insert.assignments.is_empty()
        || insert.or.is_some()
        || insert.overwrite
    {
        return Ok(None);
    }
    let (TableObject::TableName(name), Some(source)) = (&insert.table, &insert.source) else {
        return Ok(None);
    };
    if source.with.is_some()
        || source.order_by.is_some()
        || source.limit_clause.is_some()
        || source.fetch.is_some()
    {
        return Ok(None);
    }
    let SetExpr::Values(values) = source.body.as_ref() else {
        return Ok(None);
    };
    let target = target(session, name)?;
    let meta = &target.state.meta;
    let listed: Vec<usize> = if insert.columns.is_empty() {
        let width = values.rows.first().map_or(0, |r| r.content.len());
        (0..width.min(meta.columns.len())).collect()
    } else {
        let mut listed = Vec::with_capacity(insert.columns.len());
        for column in &insert.columns {
            let name = name_parts(column).pop().unwrap_or_default();
            match meta.columns.iter().position(|c| c.name == name) {
                Some(i) if !listed.contains(&i) => listed.push(i),
                // Unknown or repeated columns: the planner reports them.
                _ => return Ok(None),
            }
        }
        listed
    };
    let mut rows = Vec::with_capacity(values.rows.len());
    for row in &values.rows {
        if row.content.len() != listed.len() {
            return Ok(None);
        }
        let mut sources = Vec::with_capacity(listed.len());
        for (expr, &column) in row.content.iter().zip(&listed) {
            let source = match expr {
                SqlExpr::Value(ValueWithSpan {
                    value: Value::Placeholder(p),
                    ..
                }) => match p.strip_prefix('$').and_then(|n| n.parse::<usize>().ok()) {
                    Some(n) if n >= 1 => Source::Parameter(n - 1),
                    _ => return Ok(None),
                },
                other => match literal(other) {
                    // '\x..' means hex for bytea; the planner path knows that.
                    Some(_) if meta.columns[column].pg_type == PgType::Bytea => return Ok(None),
                    Some(v) => Source::Literal(v),
                    None => return Ok(None),
                },
            };
            sources.push(source);
        }
        rows.push(sources);
    }
    Ok(Some((target, listed, rows)))
}

/// A plain literal: a number, a string, a boolean or NULL (strings and numbers stay text, to
/// be cast to the column type exactly as the planner would).
fn literal(expr: &SqlExpr) -> Option<ScalarValue> {
    match expr {
        SqlExpr::Value(v) => match &v.value {
            Value::Number(n, _) => Some(ScalarValue::Utf8(Some(n.clone()))),
            Value::SingleQuotedString(s) => Some(ScalarValue::Utf8(Some(s.clone()))),
            Value::Boolean(b) => Some(ScalarValue::Boolean(Some(*b))),
            Value::Null => Some(ScalarValue::Null),
            _ => None,
        },
        SqlExpr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => match expr.as_ref() {
            SqlExpr::Value(v) => match &v.value {
                Value::Number(n, _) => Some(ScalarValue::Utf8(Some(format!("-{n}")))),
                _ => None,
            },
            _ => None,
        },
        _ => None,
    }
}

fn parameter(params: Option<&ParamValues>, index: usize) -> Option<ScalarValue> {
    match params? {
        ParamValues::List(list) => list.get(index).map(|p| p.value.clone()),
        ParamValues::Map(_) => None,
    }
}

/// Casts a value to the column type; `None` when the cast fails (the planner then reports it
/// with PostgreSQL's error).
fn cast(value: ScalarValue, target: &DataType) -> Option<ScalarValue> {
    if value.data_type() == *target {
        return Some(value);
    }
    if value.is_null() {
        return ScalarValue::try_from(target).ok();
    }
    value
        .cast_to_with_options(target, &super::checks::STRICT_CAST)
        .ok()
}

/// [`cast`] for a column of values.
fn cast_array(values: &ArrayRef, target: &DataType) -> Option<ArrayRef> {
    if values.data_type() == target {
        return Some(values.clone());
    }
    datafusion::arrow::compute::cast_with_options(values, target, &super::checks::STRICT_CAST).ok()
}
