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
use datafusion::arrow::compute::{concat_batches, max, min};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
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
use crate::storage::{ColumnMeta, PgTableProvider, TableHandle, TableMeta, TableState, WriteOp};

use super::rewrite::{name_parts, normalize_ident, quoted};
use super::session::{Session, parameter_types};
use super::txn::{self, CommitCheck, TableChanges, Transaction};
use super::{Outcome, Result, SqlError, control, ddl};

/// The target table of a DML statement.
struct Target {
    handle: Arc<TableHandle>,
    state: TableState,
    reference: TableReference,
}

fn target(session: &Session, name: &ObjectName) -> Result<Target> {
    let (schema, table) = ddl::resolve_table(session, name)
        .ok_or_else(|| SqlError::UndefinedTable(name_parts(name).join(".")))?;
    let handle = session
        .engine()
        .storage()
        .table(&schema, &table)
        .ok_or_else(|| SqlError::UndefinedTable(table.clone()))?;
    let state = handle.state();
    let reference = TableReference::full(
        session.engine().config().database.clone(),
        schema,
        table,
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
            other => Err(SqlError::Unsupported(format!("INSERT INTO {other} is not supported"))),
        },
        Statement::Update(update) => match &update.table.relation {
            TableFactor::Table { name, .. } => Ok(name.clone()),
            other => Err(SqlError::Unsupported(format!("UPDATE of {other} is not supported"))),
        },
        Statement::Delete(delete) => {
            let tables = match &delete.from {
                datafusion::sql::sqlparser::ast::FromTable::WithFromKeyword(t)
                | datafusion::sql::sqlparser::ast::FromTable::WithoutKeyword(t) => t,
            };
            match tables.first().map(|t| &t.relation) {
                Some(TableFactor::Table { name, .. }) => Ok(name.clone()),
                _ => Err(SqlError::Unsupported("DELETE of this relation is not supported".into())),
            }
        }
        _ => Err(SqlError::Internal("not a DML statement".into())),
    }
}

/// Splits `RETURNING` off a statement and prepares it for DataFusion.
fn prepare(session: &Session, statement: &Statement, meta: &TableMeta) -> Result<(Statement, Option<Vec<SelectItem>>)> {
    let mut statement = statement.clone();
    let returning = match &mut statement {
        Statement::Insert(insert) => {
            if insert.on.is_some() {
                return Err(SqlError::Unsupported("INSERT ... ON CONFLICT is not supported yet".into()));
            }
            fill_defaults(insert, meta)?;
            insert.returning.take()
        }
        Statement::Update(update) => {
            if update.from.is_some() || !update.table.joins.is_empty() {
                return Err(SqlError::Unsupported("UPDATE ... FROM is not supported".into()));
            }
            update.returning.take()
        }
        Statement::Delete(delete) => {
            if delete.using.is_some() {
                return Err(SqlError::Unsupported("DELETE ... USING is not supported".into()));
            }
            delete.returning.take()
        }
        _ => None,
    };
    let _ = session;
    Ok((statement, returning))
}

/// Parameter types and `RETURNING` columns of a DML statement.
pub async fn describe(
    session: &Session,
    statement: &Statement,
) -> Result<(Vec<Option<Field>>, Option<SchemaRef>)> {
    let target = target(session, &table_name(statement)?)?;
    let (prepared, returning) = prepare(session, statement, &target.state.meta)?;
    let plan = session.plan(prepared).await?;
    let params = parameter_types(&plan)?;
    let fields = match returning {
        Some(items) => Some(returning_rows(session, &target, &items, Vec::new()).await?.0),
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
    let target = target(session, &table_name(statement)?)?;
    let (prepared, returning) = prepare(session, statement, &target.state.meta)?;
    let plan = session.plan(prepared).await?;
    let plan = match params {
        Some(params) => plan.with_param_values(params)?,
        None => plan,
    };
    let LogicalPlan::Dml(DmlStatement { op, input, .. }) = plan else {
        return Err(SqlError::Internal("DML statement did not plan to DML".into()));
    };
    let meta = target.state.meta.clone();
    let (tag, rows, ops) = match op {
        DfWriteOp::Insert(_) => {
            let batches = collect(session, input.as_ref().clone()).await?;
            let batches = validate_rows(&meta, &target.handle.name, batches)?;
            let ops = vec![WriteOp::Insert(batches.clone())];
            ("INSERT 0", batches, ops)
        }
        DfWriteOp::Update => {
            let predicate = filter_predicate(input.as_ref());
            let batches = collect(session, input.as_ref().clone()).await?;
            let batches = validate_rows(&meta, &target.handle.name, batches)?;
            let mut ops = Vec::new();
            if count(&batches) > 0 {
                let predicate = storable_predicate(session, &target, input.as_ref(), predicate).await?;
                ops.push(WriteOp::Delete { predicate });
                ops.push(WriteOp::Insert(batches.clone()));
            }
            ("UPDATE", batches, ops)
        }
        DfWriteOp::Delete => {
            let predicate = match input.as_ref() {
                LogicalPlan::Filter(filter) => Some(filter.predicate.clone()),
                _ => None,
            };
            let batches = collect(session, input.as_ref().clone()).await?;
            let mut ops = Vec::new();
            if count(&batches) > 0 {
                let predicate = storable_predicate(session, &target, input.as_ref(), predicate).await?;
                ops.push(WriteOp::Delete { predicate });
            }
            ("DELETE", batches, ops)
        }
        other => return Err(SqlError::Unsupported(format!("{other} is not supported"))),
    };
    check_unique(session, &target, &ops).await?;
    write(session, &target.handle, target.state.version, ops).await?;
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

/// Records writes in the open transaction, or commits them at once.
///
/// # Errors
/// Commit errors in autocommit mode.
pub(crate) async fn write(
    session: &Session,
    handle: &Arc<TableHandle>,
    base_version: i64,
    ops: Vec<WriteOp>,
) -> Result<()> {
    if ops.is_empty() {
        return Ok(());
    }
    {
        let mut txn = session.shared.txn.lock();
        if let Some(t) = txn.as_mut() {
            t.push(handle, base_version, ops);
            return Ok(());
        }
    }
    let mut txn = Transaction::default();
    txn.push(handle, base_version, ops);
    control::commit_changes(session, txn).await
}

fn count(batches: &[RecordBatch]) -> usize {
    batches.iter().map(RecordBatch::num_rows).sum()
}

async fn collect(session: &Session, plan: LogicalPlan) -> Result<Vec<RecordBatch>> {
    Ok(DataFrame::new(session.ctx.state(), plan).collect().await?)
}

/// The WHERE of an UPDATE plan (`Projection(Filter(...))`).
fn filter_predicate(plan: &LogicalPlan) -> Option<Expr> {
    match plan {
        LogicalPlan::Projection(p) => match p.input.as_ref() {
            LogicalPlan::Filter(f) => Some(f.predicate.clone()),
            _ => None,
        },
        _ => None,
    }
}

/// A predicate delta-rs can evaluate at commit. Subqueries and volatile functions would be
/// evaluated again there, so such predicates are replaced by the primary keys they matched.
async fn storable_predicate(
    session: &Session,
    target: &Target,
    input: &LogicalPlan,
    predicate: Option<Expr>,
) -> Result<Option<Expr>> {
    let Some(predicate) = predicate else {
        return Ok(None);
    };
    let unstable = datafusion::common::tree_node::TreeNode::exists(&predicate, |e| {
        Ok(matches!(
            e,
            Expr::ScalarSubquery(_) | Expr::InSubquery(_) | Expr::Exists(_)
        ) || e.is_volatile_node())
    })?;
    if !unstable {
        return Ok(Some(txn::unqualify(predicate)?));
    }
    let meta = &target.state.meta;
    let keys = meta.primary_key_indices();
    if keys.is_empty() {
        return Err(SqlError::Unsupported(
            "UPDATE/DELETE with subqueries or volatile functions needs a primary key".into(),
        ));
    }
    // The filter node under the statement's projection, projected to the key columns.
    let filter = match input {
        LogicalPlan::Projection(p) => p.input.as_ref().clone(),
        other => other.clone(),
    };
    let key_exprs: Vec<Expr> = keys
        .iter()
        .map(|i| Expr::Column(Column::from(filter.schema().qualified_field(*i))))
        .collect();
    let plan = LogicalPlanBuilder::from(filter).project(key_exprs)?.build()?;
    let batches = collect(session, plan).await?;
    let mut disjuncts = Vec::new();
    for batch in &batches {
        for row in 0..batch.num_rows() {
            let mut conjuncts = Vec::new();
            for (k, index) in keys.iter().enumerate() {
                let value = ScalarValue::try_from_array(batch.column(k), row)?;
                conjuncts.push(col(meta.columns[*index].name.as_str()).eq(lit(value)));
            }
            disjuncts.extend(conjuncts.into_iter().reduce(Expr::and));
        }
    }
    Ok(Some(disjuncts.into_iter().reduce(Expr::or).unwrap_or(lit(false))))
}

/// Checks NOT NULL and character lengths, pads `character(n)`, and gives the rows the table's
/// schema.
fn validate_rows(meta: &TableMeta, table: &str, batches: Vec<RecordBatch>) -> Result<Vec<RecordBatch>> {
    let schema = delta_schema(meta);
    batches
        .into_iter()
        .map(|batch| {
            let mut columns: Vec<ArrayRef> = Vec::with_capacity(batch.num_columns());
            for (i, column) in meta.columns.iter().enumerate() {
                let array = batch.column(i).clone();
                if column.not_null && array.null_count() > 0 {
                    return Err(SqlError::NotNullViolation {
                        table: table.to_string(),
                        column: column.name.clone(),
                    });
                }
                let array = check_length(column, array)?;
                let target = schema.field(i).data_type();
                columns.push(if array.data_type() == target {
                    array
                } else {
                    datafusion::arrow::compute::cast(&array, target)?
                });
            }
            Ok(RecordBatch::try_new(schema.clone(), columns)?)
        })
        .collect()
}

/// The schema rows are stored with: the table's types, every column nullable (NOT NULL is
/// checked by [`validate_rows`]).
fn delta_schema(meta: &TableMeta) -> SchemaRef {
    let fields: Vec<Field> = meta
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| Field::new(&c.name, meta.arrow_schema.field(i).data_type().clone(), true))
        .collect();
    Arc::new(Schema::new(fields))
}

/// PostgreSQL's rule: too-long strings are an error unless only trailing spaces are cut.
fn check_length(column: &ColumnMeta, array: ArrayRef) -> Result<ArrayRef> {
    let Some(limit) = column.pg_type.char_length() else {
        return Ok(array);
    };
    let limit = limit as usize;
    let pad = matches!(column.pg_type, PgType::Bpchar(_));
    let strings = datafusion::arrow::compute::cast(&array, &DataType::Utf8)?;
    let Some(strings) = strings.as_any().downcast_ref::<StringArray>() else {
        return Ok(array);
    };
    let needs_change = strings.iter().flatten().any(|s| {
        let n = s.chars().count();
        n > limit || (pad && n < limit)
    });
    if !needs_change {
        return Ok(array);
    }
    let mut out = StringBuilder::new();
    for value in strings.iter() {
        match value {
            None => out.append_null(),
            Some(s) => {
                let n = s.chars().count();
                if n > limit {
                    let kept: String = s.chars().take(limit).collect();
                    if s.chars().skip(limit).any(|c| c != ' ') {
                        return Err(SqlError::StringTooLong(column.pg_type.to_string()));
                    }
                    out.append_value(kept);
                } else if pad && n < limit {
                    out.append_value(format!("{s}{}", " ".repeat(limit - n)));
                } else {
                    out.append_value(s);
                }
            }
        }
    }
    let built: ArrayRef = Arc::new(out.finish());
    Ok(datafusion::arrow::compute::cast(&built, array.data_type())?)
}

/// Fills omitted columns and `DEFAULT` markers of an INSERT with the columns' defaults.
fn fill_defaults(insert: &mut datafusion::sql::sqlparser::ast::Insert, meta: &TableMeta) -> Result<()> {
    let default_of = |column: &ColumnMeta| -> Result<SqlExpr> {
        match &column.default {
            Some(text) => parse_default(text),
            None => Ok(SqlExpr::Value(Value::Null.into())),
        }
    };
    let mut listed: Vec<String> = insert
        .columns
        .iter()
        .map(|c| name_parts(c).pop().unwrap_or_default())
        .collect();
    if insert.source.is_none() {
        // DEFAULT VALUES
        let row: Vec<SqlExpr> = meta.columns.iter().map(default_of).collect::<Result<_>>()?;
        insert.columns = meta.columns.iter().map(|c| column_name(&c.name)).collect();
        insert.source = Some(Box::new(values_query(vec![row])?));
        return Ok(());
    }
    let Some(source) = insert.source.as_mut() else {
        return Ok(());
    };
    if listed.is_empty() {
        let width = match source.body.as_ref() {
            SetExpr::Values(values) => values.rows.first().map_or(meta.columns.len(), |r| r.content.len()),
            _ => meta.columns.len(),
        };
        listed = meta.columns.iter().take(width).map(|c| c.name.clone()).collect();
        insert.columns = listed.iter().map(|c| column_name(c)).collect();
    }
    let omitted: Vec<&ColumnMeta> = meta
        .columns
        .iter()
        .filter(|c| !listed.contains(&c.name) && c.default.is_some())
        .collect();
    match source.body.as_mut() {
        SetExpr::Values(values) => {
            for row in &mut values.rows {
                for (i, value) in row.content.iter_mut().enumerate() {
                    if is_default_marker(value) {
                        let column = listed
                            .get(i)
                            .and_then(|name| meta.columns.iter().find(|c| &c.name == name));
                        *value = match column {
                            Some(column) => default_of(column)?,
                            None => SqlExpr::Value(Value::Null.into()),
                        };
                    }
                }
                for (i, value) in row.content.iter_mut().enumerate() {
                    let is_bytea = listed
                        .get(i)
                        .and_then(|name| meta.columns.iter().find(|c| &c.name == name))
                        .is_some_and(|c| c.pg_type == PgType::Bytea);
                    if is_bytea {
                        bytea_literal(value)?;
                    }
                }
                for column in &omitted {
                    row.content.push(default_of(column)?);
                }
            }
        }
        _ if !omitted.is_empty() => {
            // INSERT ... SELECT: SELECT src.*, <defaults> FROM (<source>) AS src
            let mut projection = vec![SelectItem::QualifiedWildcard(
                datafusion::sql::sqlparser::ast::SelectItemQualifiedWildcardKind::ObjectName(
                    ObjectName::from(vec![Ident::new("__deltagate_src")]),
                ),
                Default::default(),
            )];
            for column in &omitted {
                projection.push(SelectItem::UnnamedExpr(default_of(column)?));
            }
            let inner = source.clone();
            let sql = format!(
                "SELECT {} FROM ({inner}) AS __deltagate_src",
                projection.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
            );
            let parsed = Parser::new(&PostgreSqlDialect {}).try_with_sql(&sql)?.parse_query()?;
            *source = parsed;
        }
        _ => {}
    }
    for column in omitted {
        insert.columns.push(column_name(&column.name));
    }
    Ok(())
}

/// `'\x00ff'` for a bytea column is hex input, as PostgreSQL reads it.
fn bytea_literal(value: &mut SqlExpr) -> Result<()> {
    if let SqlExpr::Value(v) = value
        && let Value::SingleQuotedString(text) | Value::EscapedStringLiteral(text) = &v.value
        && let Some(hex) = text.strip_prefix("\\x")
    {
        if hex.len() % 2 != 0 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(SqlError::InvalidTextRepresentation(format!(
                "invalid hexadecimal data for type bytea: \"{text}\""
            )));
        }
        *value = Parser::new(&PostgreSqlDialect {})
            .try_with_sql(&format!("decode('{hex}', 'hex')"))?
            .parse_expr()?;
    }
    Ok(())
}

fn column_name(name: &str) -> ObjectName {
    ObjectName(vec![ObjectNamePart::Identifier(quoted(name))])
}

fn values_query(rows: Vec<Vec<SqlExpr>>) -> Result<Query> {
    let sql = format!(
        "VALUES {}",
        rows.iter()
            .map(|r| format!("({})", r.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(*Parser::new(&PostgreSqlDialect {}).try_with_sql(&sql)?.parse_query()?)
}

fn is_default_marker(expr: &SqlExpr) -> bool {
    matches!(expr, SqlExpr::Identifier(i) if i.quote_style.is_none() && i.value.eq_ignore_ascii_case("default"))
}

/// Parses a stored default. `'seq'::regclass` becomes the plain name, which `nextval`
/// resolves through the search path.
fn parse_default(text: &str) -> Result<SqlExpr> {
    let mut expr = Parser::new(&PostgreSqlDialect {}).try_with_sql(text)?.parse_expr()?;
    strip_regclass(&mut expr);
    Ok(expr)
}

fn strip_regclass(expr: &mut SqlExpr) {
    use datafusion::sql::sqlparser::ast::{FunctionArg, FunctionArgExpr, FunctionArguments};
    match expr {
        SqlExpr::Cast {
            kind: CastKind::DoubleColon | CastKind::Cast,
            expr: inner,
            data_type,
            ..
        } if matches!(data_type, SqlType::Regclass)
            || data_type.to_string().eq_ignore_ascii_case("regclass") =>
        {
            *expr = (**inner).clone();
        }
        SqlExpr::Function(f) => {
            if let FunctionArguments::List(list) = &mut f.args {
                for arg in &mut list.args {
                    if let FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) = arg {
                        strip_regclass(e);
                    }
                }
            }
        }
        _ => {}
    }
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
                    exprs.push(col(Column::new(Some(target.handle.name.as_str()), field.name())));
                }
            }
            SelectItem::UnnamedExpr(e) => {
                let name = match e {
                    SqlExpr::Identifier(i) => normalize_ident(i),
                    SqlExpr::CompoundIdentifier(parts) => parts.last().map(normalize_ident).unwrap_or_default(),
                    SqlExpr::Function(f) => name_parts(&f.name).pop().unwrap_or_default(),
                    _ => "?column?".to_string(),
                };
                exprs.push(state.create_logical_expr(&e.to_string(), &df_schema)?.alias(name));
            }
            SelectItem::ExprWithAlias { expr, alias } => {
                exprs.push(state.create_logical_expr(&expr.to_string(), &df_schema)?.alias(normalize_ident(alias)));
            }
            SelectItem::ExprWithAliases { .. } => {
                return Err(SqlError::Unsupported("RETURNING with multiple aliases".into()));
            }
        }
    }
    let rows: Vec<RecordBatch> = rows
        .iter()
        .map(|b| txn::conform(b, &schema))
        .collect::<Result<_, _>>()?;
    let table = MemTable::try_new(schema.clone(), vec![rows])?;
    let plan = LogicalPlanBuilder::scan(target.handle.name.as_str(), provider_as_source(Arc::new(table)), None)?
        .project(exprs)?
        .build()?;
    let out_schema: SchemaRef = Arc::new(plan.schema().as_arrow().clone());
    let batches = DataFrame::new(state, plan).collect().await?;
    Ok((out_schema, batches))
}

/// Checks that the keys inserted by `ops` are unique in the table as `ops` would leave it.
async fn check_unique(session: &Session, target: &Target, ops: &[WriteOp]) -> Result<()> {
    let pending = session
        .shared
        .txn
        .lock()
        .as_ref()
        .and_then(|t| t.ops_for(target.handle.oid).map(<[_]>::to_vec))
        .unwrap_or_default();
    let mut prior = pending;
    for op in ops {
        if let WriteOp::Insert(batches) = op {
            unique_against(session, target, &target.state, &prior, batches).await?;
        }
        prior.push(op.clone());
    }
    Ok(())
}

/// Fails with 23505 if `batches` repeat a key among themselves or with the table as `prior`
/// operations leave it on top of `state`.
async fn unique_against(
    session: &Session,
    target: &Target,
    state: &TableState,
    prior: &[WriteOp],
    batches: &[RecordBatch],
) -> Result<()> {
    let meta = &state.meta;
    let Some(pk) = &meta.primary_key else {
        return Ok(());
    };
    let key_indices = meta.primary_key_indices();
    if batches.is_empty() || key_indices.is_empty() || count(batches) == 0 {
        return Ok(());
    }
    let schema = batches[0].schema();
    let keys = concat_batches(&schema, batches)?.project(&key_indices)?;
    let violation = |row: usize| -> Result<SqlError> {
        Ok(SqlError::UniqueViolation {
            constraint: pk.name.clone(),
            detail: format!(
                "Key ({})=({}) already exists.",
                pk.columns.join(", "),
                describe_key(&keys, row)?
            ),
        })
    };
    // Within the new rows.
    let converter = RowConverter::new(
        keys.schema().fields().iter().map(|f| SortField::new(f.data_type().clone())).collect(),
    )?;
    let rows = converter.convert_columns(keys.columns())?;
    let mut seen = HashMap::with_capacity(rows.num_rows());
    for (i, row) in rows.iter().enumerate() {
        if seen.insert(row.owned(), i).is_some() {
            return Err(violation(i)?);
        }
    }
    // Against the table: a semi join of the stored keys with the new ones, pruned by range.
    let base: Arc<dyn TableProvider> = Arc::new(PgTableProvider::try_new(state).await?);
    let table = txn::overlay(target.reference.clone(), base, prior)?;
    let key_names: Vec<String> = key_indices.iter().map(|i| meta.columns[*i].name.clone()).collect();
    let new_names: Vec<String> = (0..key_names.len()).map(|i| format!("__deltagate_key{i}")).collect();
    let renamed = Schema::new(
        keys.schema()
            .fields()
            .iter()
            .zip(&new_names)
            .map(|(f, n)| Field::new(n, f.data_type().clone(), true))
            .collect::<Vec<_>>(),
    );
    let renamed = RecordBatch::try_new(Arc::new(renamed), keys.columns().to_vec())?;
    let ctx = &session.ctx;
    let mut stored = ctx.read_table(table)?;
    for (i, name) in key_names.iter().enumerate() {
        let array = keys.column(i);
        if let (Some(low), Some(high)) = (min_value(array)?, max_value(array)?) {
            stored = stored.filter(col(Column::new_unqualified(name)).between(lit(low), lit(high)))?;
        }
    }
    let stored = stored.select(key_names.iter().map(|n| col(Column::new_unqualified(n))).collect::<Vec<_>>())?;
    let new_keys = ctx.read_batch(renamed)?;
    let clash = stored
        .join(
            new_keys,
            JoinType::LeftSemi,
            &key_names.iter().map(String::as_str).collect::<Vec<_>>(),
            &new_names.iter().map(String::as_str).collect::<Vec<_>>(),
            None,
        )?
        .limit(0, Some(1))?
        .collect()
        .await?;
    if let Some(batch) = clash.iter().find(|b| b.num_rows() > 0) {
        return Err(SqlError::UniqueViolation {
            constraint: pk.name.clone(),
            detail: format!(
                "Key ({})=({}) already exists.",
                pk.columns.join(", "),
                describe_key(batch, 0)?
            ),
        });
    }
    Ok(())
}

fn min_value(array: &ArrayRef) -> Result<Option<ScalarValue>> {
    extreme(array, true)
}

fn max_value(array: &ArrayRef) -> Result<Option<ScalarValue>> {
    extreme(array, false)
}

/// Min or max of a key column, for integer keys (the common case); others are not pruned.
fn extreme(array: &ArrayRef, lowest: bool) -> Result<Option<ScalarValue>> {
    use datafusion::arrow::array::{Int16Array, Int32Array, Int64Array};
    use datafusion::arrow::datatypes::DataType as T;
    Ok(match array.data_type() {
        T::Int16 => array.as_any().downcast_ref::<Int16Array>().and_then(|a| if lowest { min(a) } else { max(a) }).map(|v| ScalarValue::Int16(Some(v))),
        T::Int32 => array.as_any().downcast_ref::<Int32Array>().and_then(|a| if lowest { min(a) } else { max(a) }).map(|v| ScalarValue::Int32(Some(v))),
        T::Int64 => array.as_any().downcast_ref::<Int64Array>().and_then(|a| if lowest { min(a) } else { max(a) }).map(|v| ScalarValue::Int64(Some(v))),
        _ => None,
    })
}

fn describe_key(batch: &RecordBatch, row: usize) -> Result<String> {
    let options = FormatOptions::default();
    let mut parts = Vec::new();
    for column in batch.columns() {
        let formatter = ArrayFormatter::try_new(column.as_ref(), &options)?;
        parts.push(formatter.value(row).to_string());
    }
    Ok(parts.join(", "))
}

/// Re-checks primary keys at commit for tables another session changed meanwhile.
pub struct UniqueCheck {
    session: SessionRef,
}

/// What the commit check needs of a session, detached from its lifetime.
struct SessionRef {
    ctx: datafusion::prelude::SessionContext,
    shared: Arc<super::session::SessionShared>,
}

impl UniqueCheck {
    pub fn new(session: &Session) -> UniqueCheck {
        UniqueCheck {
            session: SessionRef {
                ctx: session.ctx.clone(),
                shared: session.shared.clone(),
            },
        }
    }
}

#[async_trait]
impl CommitCheck for UniqueCheck {
    async fn check(&self, changes: &TableChanges, current: &TableState) -> Result<()> {
        if current.meta.primary_key.is_none() {
            return Ok(());
        }
        let session = Session {
            shared: self.session.shared.clone(),
            ctx: self.session.ctx.clone(),
        };
        let target = Target {
            handle: changes.table.clone(),
            state: current.clone(),
            reference: TableReference::full(
                session.engine().config().database.clone(),
                changes.table.schema.clone(),
                changes.table.name.clone(),
            ),
        };
        let mut prior = Vec::new();
        for op in &changes.ops {
            if let WriteOp::Insert(batches) = op {
                unique_against(&session, &target, current, &prior, batches).await?;
            }
            prior.push(op.clone());
        }
        Ok(())
    }
}

/// `CREATE TABLE name AS query`.
pub async fn create_table_as(session: &Session, schema: &str, table: &str, query: &Query) -> Result<Outcome> {
    let plan = session.plan(Statement::Query(Box::new(query.clone()))).await?;
    let batches = collect(session, plan.clone()).await?;
    let mut columns = Vec::new();
    for field in plan.schema().fields() {
        let pg_type = PgType::of_field(field).ok_or_else(|| {
            SqlError::Unsupported(format!("column \"{}\" has type {} which cannot be stored", field.name(), field.data_type()))
        })?;
        columns.push(ColumnMeta {
            name: field.name().clone(),
            pg_type,
            not_null: false,
            default: None,
        });
    }
    let storage = session.engine().storage().clone();
    let handle = ddl::detached({
        let (schema, table) = (schema.to_string(), table.to_string());
        async move { Ok(storage.create_table(&schema, &table, columns, None, Vec::new()).await?) }
    })
    .await?;
    let state = handle.state();
    let target_schema = delta_schema(&state.meta);
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
    write(session, &handle, state.version, vec![WriteOp::Insert(batches)]).await?;
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

/// Sets a new column to its default in every existing row.
pub async fn fill_column(session: &Session, schema: &str, table: &str, column: &str, default: &str) -> Result<()> {
    let mut expr = parse_default(default)?;
    strip_regclass(&mut expr);
    let sql = format!("UPDATE {}.{} SET {} = {expr}", quoted(schema), quoted(table), quoted(column));
    let statement = session.parse(&sql)?.remove(0);
    execute(session, &statement, None).await?;
    Ok(())
}
