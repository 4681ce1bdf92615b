//! Data manipulation: `INSERT`, `UPDATE`, `DELETE` (with `RETURNING`), `CREATE TABLE AS`.
//!
//! DataFusion plans each statement against the table as this session sees it (snapshot plus
//! pending writes), which gives PostgreSQL's parameter typing and casts. deltagate then
//! computes the resulting rows itself, enforces NOT NULL (23502), character lengths (22001)
//! and the primary key (23505) on them, and records the change as [`WriteOp`]s in the
//! session's transaction — or commits it at once outside a transaction block.
//!
//! An `UPDATE` becomes "delete the matched rows, insert their new versions", both computed when
//! the statement runs, so what commits is exactly what the statement saw.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef, RecordBatch, StringArray, StringBuilder};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::common::{Column, DFSchema, ParamValues, TableReference};
use datafusion::dataframe::DataFrame;
use datafusion::datasource::{MemTable, TableProvider, provider_as_source};
use datafusion::logical_expr::{
    DmlStatement, Expr, JoinType, LogicalPlan, LogicalPlanBuilder, WriteOp as DfWriteOp, col, lit,
};
use datafusion::physical_plan::memory::MemoryStream;
use datafusion::scalar::ScalarValue;
use datafusion::sql::sqlparser::ast::{
    CastKind, DataType as SqlType, Expr as SqlExpr, Ident, ObjectName, ObjectNamePart, Query,
    SelectItem, SetExpr, Statement, TableFactor, TableObject, Value,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

use crate::pgtypes::PgType;
use crate::storage::{
    ColumnMeta, KeySet, NewRows, OnDuplicate, PgTableProvider, Stamp, TableHandle, TableMeta,
    TableState, WriteOp, key_columns, matching_keys, violation_at,
};

use super::historian::tag_history;
use super::rewrite::{name_parts, normalize_ident, quoted};
use super::session::{Session, parameter_types};
use super::txn::{self, CommitCheck, TableChanges, Transaction};
use super::{Outcome, Result, SqlError, tables};

mod change;
mod checks;
mod commit;
mod defaults;
mod fast;
mod insert;
mod upsert;

use change::{delete_op, deletes_rows, filter_predicate, storable_predicate};
pub(crate) use change::{pin, retry_conflicts};
use checks::{check_changes, validate_rows};
pub use commit::commit_changes;
use defaults::{fill_defaults, parse_default, strip_regclass, with_defaults};
pub use fast::Executions;
pub(crate) use fast::{batchable, try_insert_many as execute_many};
use insert::insert_rows;

/// The target table of a DML statement.
struct Target {
    handle: Arc<TableHandle>,
    state: TableState,
    reference: TableReference,
}

/// The table a statement names, resolved through the search path, with its current snapshot.
///
/// # Errors
/// [`SqlError::UndefinedTable`].
pub(crate) fn resolve_target(
    session: &Session,
    name: &ObjectName,
) -> Result<(Arc<TableHandle>, TableState)> {
    let Some((schema, table)) = tables::resolve_table(session, name) else {
        if let Some(error) = tables::unavailable_table(session, name) {
            return Err(error.into());
        }
        return Err(match tag_history::resolve(&session.shared, name) {
            Some(view) => SqlError::Unsupported(format!("cannot write to view \"{view}\"")),
            None => SqlError::UndefinedTable(name_parts(name).join(".")),
        });
    };
    let handle = session
        .engine()
        .storage()
        .table(&schema, &table)
        .ok_or_else(|| SqlError::UndefinedTable(table.clone()))?;
    let state = session.shared.table_state(&handle);
    Ok((handle, state))
}

/// Whether this session's transaction has uncommitted changes to a table.
pub(crate) fn has_pending_changes(session: &Session, table: &TableHandle) -> bool {
    !pending_ops(session, table.oid).is_empty()
}

/// This session's uncommitted operations on a table.
fn pending_ops(session: &Session, oid: u32) -> Vec<WriteOp> {
    session.shared.txn.pending_ops(oid).unwrap_or_default()
}

/// Encodes primary-key columns of `schema`'s types for hashing.
fn key_converter(schema: &Schema) -> Result<RowConverter> {
    Ok(RowConverter::new(
        schema
            .fields()
            .iter()
            .map(|f| SortField::new(f.data_type().clone()))
            .collect(),
    )?)
}

fn target(session: &Session, name: &ObjectName) -> Result<Target> {
    let (handle, state) = resolve_target(session, name)?;
    let reference = TableReference::full(
        session.engine().config().database.clone(),
        handle.schema.clone(),
        handle.name.clone(),
    );
    Ok(Target {
        handle,
        state,
        reference,
    })
}

fn table_name(statement: &Statement) -> Result<ObjectName> {
    match statement {
        Statement::Insert(insert) => match &insert.table {
            TableObject::TableName(name) => Ok(name.clone()),
            other => Err(SqlError::Unsupported(format!(
                "INSERT INTO {other} is not supported"
            ))),
        },
        Statement::Update(update) => match &update.table.relation {
            TableFactor::Table { name, .. } => Ok(name.clone()),
            other => Err(SqlError::Unsupported(format!(
                "UPDATE of {other} is not supported"
            ))),
        },
        Statement::Delete(delete) => {
            let tables = match &delete.from {
                datafusion::sql::sqlparser::ast::FromTable::WithFromKeyword(t)
                | datafusion::sql::sqlparser::ast::FromTable::WithoutKeyword(t) => t,
            };
            match tables.first().map(|t| &t.relation) {
                Some(TableFactor::Table { name, .. }) => Ok(name.clone()),
                _ => Err(SqlError::Unsupported(
                    "DELETE of this relation is not supported".into(),
                )),
            }
        }
        _ => Err(SqlError::Internal("not a DML statement".into())),
    }
}

/// Splits `RETURNING` off a statement and prepares it for DataFusion.
fn prepare(
    statement: &Statement,
    meta: &TableMeta,
) -> Result<(Statement, Option<Vec<SelectItem>>)> {
    let mut statement = statement.clone();
    let returning = match &mut statement {
        Statement::Insert(insert) => {
            // ON CONFLICT is applied to the computed rows (see `upsert`), which is also where
            // the table alias matters.
            insert.on = None;
            insert.table_alias = None;
            fill_defaults(insert, meta)?;
            insert.returning.take()
        }
        Statement::Update(update) => {
            if update.from.is_some() || !update.table.joins.is_empty() {
                return Err(SqlError::Unsupported(
                    "UPDATE ... FROM is not supported".into(),
                ));
            }
            update.returning.take()
        }
        Statement::Delete(delete) => {
            if delete.using.is_some() {
                return Err(SqlError::Unsupported(
                    "DELETE ... USING is not supported".into(),
                ));
            }
            delete.returning.take()
        }
        _ => None,
    };
    Ok((statement, returning))
}

/// Parameter types and `RETURNING` columns of a DML statement.
pub async fn describe(
    session: &Session,
    statement: &Statement,
) -> Result<(Vec<Option<Field>>, Option<SchemaRef>)> {
    let target = target(session, &table_name(statement)?)?;
    let (prepared, returning) = prepare(statement, &target.state.meta)?;
    let plan = session.plan(prepared).await?;
    let params = parameter_types(&plan)?;
    let fields = match returning {
        Some(items) => Some(
            returning_rows(session, &target, &items, Vec::new())
                .await?
                .0,
        ),
        None => None,
    };
    Ok((params, fields))
}

/// Executes `INSERT`, `UPDATE` or `DELETE`.
///
/// # Errors
/// Planning errors, constraint violations, storage errors.
pub async fn execute(
    session: &Session,
    statement: &Statement,
    params: Option<ParamValues>,
) -> Result<Outcome> {
    if let Some(outcome) = fast::try_insert(session, statement, params.as_ref()).await? {
        return Ok(outcome);
    }
    retry_conflicts(session, || execute_once(session, statement, params.clone())).await
}

async fn execute_once(
    session: &Session,
    statement: &Statement,
    params: Option<ParamValues>,
) -> Result<Outcome> {
    let name = table_name(statement)?;
    let _pin = if deletes_rows(statement) {
        let (handle, _) = resolve_target(session, &name)?;
        Some(pin(session, &handle).await?)
    } else {
        None
    };
    let target = target(session, &name)?;
    let conflict = match statement {
        Statement::Insert(insert) => match &insert.on {
            Some(on) => {
                let clause = upsert::conflict_clause(on, &target.state.meta, &target.handle.name)?;
                let alias = insert
                    .table_alias
                    .as_ref()
                    .map_or_else(|| target.handle.name.clone(), |a| normalize_ident(&a.alias));
                Some((clause, alias))
            }
            None => None,
        },
        _ => None,
    };
    let (prepared, returning) = prepare(statement, &target.state.meta)?;
    let plan = session.plan(prepared).await?;
    let plan = match params {
        Some(params) => plan.with_param_values(params)?,
        None => plan,
    };
    let LogicalPlan::Dml(DmlStatement { op, input, .. }) = plan else {
        return Err(SqlError::Internal(
            "DML statement did not plan to DML".into(),
        ));
    };
    let meta = target.state.meta.clone();
    let (tag, rows, ops) = match op {
        DfWriteOp::Insert(_) => {
            let batches = collect(session, input.as_ref().clone()).await?;
            let batches = validate_rows(&meta, &target.handle.name, batches)?;
            match conflict {
                Some((clause, alias)) => {
                    let (ops, affected) =
                        upsert::resolve(session, &target, &clause, &alias, batches).await?;
                    ("INSERT 0", affected, Some(ops))
                }
                // Checked and written by the one insert path.
                None => (
                    "INSERT 0",
                    insert_rows(session, &target, batches).await?.0,
                    None,
                ),
            }
        }
        DfWriteOp::Update => {
            let predicate = filter_predicate(input.as_ref());
            let batches = collect(session, input.as_ref().clone()).await?;
            let batches = validate_rows(&meta, &target.handle.name, batches)?;
            let mut ops = Vec::new();
            if count(&batches) > 0 {
                let predicate =
                    storable_predicate(session, &target, input.as_ref(), predicate).await?;
                ops.push(delete_op(session, &target.state, predicate).await?);
                ops.push(WriteOp::Insert(batches.clone()));
            }
            ("UPDATE", batches, Some(ops))
        }
        DfWriteOp::Delete => {
            let predicate = match input.as_ref() {
                LogicalPlan::Filter(filter) => Some(filter.predicate.clone()),
                _ => None,
            };
            let batches = collect(session, input.as_ref().clone()).await?;
            let mut ops = Vec::new();
            if count(&batches) > 0 {
                let predicate =
                    storable_predicate(session, &target, input.as_ref(), predicate).await?;
                ops.push(delete_op(session, &target.state, predicate).await?);
            }
            ("DELETE", batches, Some(ops))
        }
        other => return Err(SqlError::Unsupported(format!("{other} is not supported"))),
    };
    if let Some(ops) = ops {
        let keys = check_changes(session, &target, &ops).await?;
        write(session, &target.handle, target.state.stamp(), ops, keys).await?;
    }
    match returning {
        Some(items) => {
            let (schema, batches) = returning_rows(session, &target, &items, rows).await?;
            let stream = MemoryStream::try_new(batches, schema.clone(), None)?;
            Ok(Outcome::Rows {
                schema,
                stream: Box::pin(stream),
                tag: tag.to_string(),
            })
        }
        None => Ok(Outcome::Command {
            tag: tag.to_string(),
            rows: Some(count(&rows)),
        }),
    }
}

/// Stores rows that arrived outside SQL (COPY), in the table's stored schema: fills the
/// defaults of the columns not `given`, checks the rows as an INSERT would, and records or
/// commits them. Returns the row count.
///
/// # Errors
/// Default evaluation, constraint violations, commit errors.
pub(crate) async fn insert_batches(
    session: &Session,
    handle: &Arc<TableHandle>,
    state: TableState,
    given: &[bool],
    batches: Vec<RecordBatch>,
) -> Result<usize> {
    if count(&batches) == 0 {
        return Ok(0);
    }
    let meta = state.meta.clone();
    let needs_defaults = meta
        .columns
        .iter()
        .zip(given)
        .any(|(c, given)| !given && c.default.is_some());
    let batches = if needs_defaults {
        with_defaults(session, &meta, given, batches).await?
    } else {
        batches
    };
    let batches = validate_rows(&meta, &handle.name, batches)?;
    let target = Target {
        handle: handle.clone(),
        reference: TableReference::full(
            session.engine().config().database.clone(),
            handle.schema.clone(),
            handle.name.clone(),
        ),
        state,
    };
    let (_, kept) = insert_rows(session, &target, batches).await?;
    Ok(kept.iter().filter(|kept| **kept).count())
}

/// Records writes in the open transaction, or commits them at once; `keys`: the packed keys of
/// all the transaction's inserts into the table after them, as the key checks left them
/// (`None`: unknown).
///
/// # Errors
/// Commit errors in autocommit mode.
pub(crate) async fn write(
    session: &Session,
    handle: &Arc<TableHandle>,
    base: Stamp,
    ops: Vec<WriteOp>,
    keys: Option<KeySet>,
) -> Result<()> {
    // In a transaction the writes wait for its end.
    let mut pending = Some((ops, keys));
    session.shared.txn.with(|t| {
        if let Some((ops, keys)) = pending.take() {
            t.push(handle, base, ops, keys);
        }
    });
    let Some((ops, keys)) = pending else {
        return Ok(());
    };
    if ops.is_empty() {
        return Ok(());
    }
    let mut txn = Transaction::default();
    txn.push(handle, base, ops, keys);
    commit_changes(session, txn).await
}

fn count(batches: &[RecordBatch]) -> usize {
    batches.iter().map(RecordBatch::num_rows).sum()
}

async fn collect(session: &Session, plan: LogicalPlan) -> Result<Vec<RecordBatch>> {
    Ok(DataFrame::new(session.ctx.state(), plan).collect().await?)
}

/// Evaluates `RETURNING` items over the affected rows.
async fn returning_rows(
    session: &Session,
    target: &Target,
    items: &[SelectItem],
    rows: Vec<RecordBatch>,
) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let schema = target.state.meta.arrow_schema.clone();
    let df_schema = DFSchema::try_from_qualified_schema(target.handle.name.as_str(), &schema)?;
    let state = session.ctx.state();
    let mut exprs = Vec::new();
    for item in items {
        match item {
            SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..) => {
                for field in schema.fields() {
                    exprs.push(col(Column::new(
                        Some(target.handle.name.as_str()),
                        field.name(),
                    )));
                }
            }
            SelectItem::UnnamedExpr(e) => {
                let name = match e {
                    SqlExpr::Identifier(i) => normalize_ident(i),
                    SqlExpr::CompoundIdentifier(parts) => {
                        parts.last().map(normalize_ident).unwrap_or_default()
                    }
                    SqlExpr::Function(f) => name_parts(&f.name).pop().unwrap_or_default(),
                    _ => "?column?".to_string(),
                };
                exprs.push(
                    state
                        .create_logical_expr(&e.to_string(), &df_schema)?
                        .alias(name),
                );
            }
            SelectItem::ExprWithAlias { expr, alias } => {
                exprs.push(
                    state
                        .create_logical_expr(&expr.to_string(), &df_schema)?
                        .alias(normalize_ident(alias)),
                );
            }
            SelectItem::ExprWithAliases { .. } => {
                return Err(SqlError::Unsupported(
                    "RETURNING with multiple aliases".into(),
                ));
            }
        }
    }
    let rows: Vec<RecordBatch> = rows
        .iter()
        .map(|b| txn::conform(b, &schema))
        .collect::<Result<_, _>>()?;
    let table = MemTable::try_new(schema.clone(), vec![rows])?;
    let plan = LogicalPlanBuilder::scan(
        target.handle.name.as_str(),
        provider_as_source(Arc::new(table)),
        None,
    )?
    .project(exprs)?
    .build()?;
    let out_schema: SchemaRef = Arc::new(plan.schema().as_arrow().clone());
    let batches = DataFrame::new(state, plan).collect().await?;
    Ok((out_schema, batches))
}

/// `CREATE TABLE name AS query`.
pub async fn create_table_as(
    session: &Session,
    schema: &str,
    table: &str,
    query: &Query,
) -> Result<Outcome> {
    let plan = session
        .plan(Statement::Query(Box::new(query.clone())))
        .await?;
    let batches = collect(session, plan.clone()).await?;
    let mut columns = Vec::new();
    for field in plan.schema().fields() {
        let pg_type = PgType::of_field(field).ok_or_else(|| {
            SqlError::Unsupported(format!(
                "column \"{}\" has type {} which cannot be stored",
                field.name(),
                field.data_type()
            ))
        })?;
        columns.push(ColumnMeta {
            name: field.name().clone(),
            pg_type,
            not_null: false,
            default: None,
        });
    }
    let storage = session.engine().storage().clone();
    let handle = tables::detached({
        let (schema, table) = (schema.to_string(), table.to_string());
        async move {
            Ok(storage
                .create_table(&schema, &table, columns, None, Vec::new())
                .await?)
        }
    })
    .await?;
    let state = handle.state();
    let target_schema = state.meta.stored_schema.clone();
    let rows = count(&batches);
    let batches = batches
        .into_iter()
        .map(|b| {
            let columns = b
                .columns()
                .iter()
                .zip(target_schema.fields())
                .map(|(c, f)| datafusion::arrow::compute::cast(c, f.data_type()))
                .collect::<Result<Vec<_>, _>>()?;
            RecordBatch::try_new(target_schema.clone(), columns)
        })
        .collect::<Result<Vec<_>, _>>()?;
    write(
        session,
        &handle,
        state.stamp(),
        vec![WriteOp::Insert(batches)],
        None,
    )
    .await?;
    Ok(Outcome::Command {
        tag: "SELECT".into(),
        rows: Some(rows),
    })
}

/// Whether a table has any row (as this session sees it).
pub async fn has_rows(session: &Session, schema: &str, table: &str) -> Result<bool> {
    let sql = format!("SELECT 1 FROM {}.{} LIMIT 1", quoted(schema), quoted(table));
    let statement = session.parse(&sql)?.remove(0);
    let plan = session.plan(statement).await?;
    Ok(count(&collect(session, plan).await?) > 0)
}

/// The rows of a table with a column being added, set to its default, as PostgreSQL fills the
/// existing rows (a volatile default is evaluated for each), checked against its NOT NULL.
///
/// # Errors
/// Default evaluation errors, [`SqlError::NotNullViolation`].
pub async fn rows_with_default(
    session: &Session,
    schema: &str,
    table: &str,
    column: &ColumnMeta,
    default: &str,
) -> Result<Vec<RecordBatch>> {
    let (handle, state) = resolve_target(
        session,
        &ObjectName::from(vec![Ident::new(schema), Ident::new(table)]),
    )?;
    let mut expr = parse_default(default)?;
    strip_regclass(&mut expr);
    let sql = format!("SELECT *, {expr} FROM {}.{}", quoted(schema), quoted(table));
    let statement = session.parse(&sql)?.remove(0);
    let plan = session.plan(statement).await?;
    let batches = collect(session, plan).await?;
    let mut columns = state.meta.columns.clone();
    columns.push(column.clone());
    let meta = TableMeta::new(
        columns,
        state.meta.primary_key.clone(),
        Vec::new(),
        Vec::new(),
        handle.oid,
    );
    let batches = batches
        .iter()
        .map(|b| txn::conform(b, &meta.stored_schema))
        .collect::<Result<Vec<_>, _>>()?;
    validate_rows(&meta, table, batches)
}
