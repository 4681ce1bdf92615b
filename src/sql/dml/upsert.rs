//! `INSERT ... ON CONFLICT DO NOTHING | DO UPDATE` on the primary key.
//!
//! The new rows are computed as for any INSERT; this module then finds the rows already in the
//! table (as the transaction sees it) with the same keys, and turns the statement into plain
//! operations: inserts of the rows without a conflict, and for `DO UPDATE` a delete of the
//! conflicting rows followed by an insert of their new versions, computed from the old row and
//! `EXCLUDED` exactly as PostgreSQL evaluates the `SET` list and `WHERE`. A key that occurs twice
//! among the new rows is skipped the second time by `DO NOTHING` and is an error (21000) for
//! `DO UPDATE`, as in PostgreSQL. The common case — no conflict at all — is settled by the key
//! index and file statistics without a join.

use std::collections::HashMap;
use std::ops::ControlFlow;

use datafusion::arrow::array::UInt32Array;
use datafusion::arrow::compute::take;
use datafusion::sql::sqlparser::ast::{
    AssignmentTarget, ConflictTarget, DoUpdate, OnConflict, OnConflictAction, OnInsert,
    visit_expressions_mut,
};

use crate::storage::append_column;

use super::*;

/// The `ON CONFLICT` clause of an INSERT, checked against the table's primary key.
pub(super) fn conflict_clause(on: &OnInsert, meta: &TableMeta, table: &str) -> Result<OnConflict> {
    let OnInsert::OnConflict(clause) = on else {
        return Err(SqlError::Syntax(
            "ON DUPLICATE KEY UPDATE is not PostgreSQL syntax; use ON CONFLICT".into(),
        ));
    };
    let no_match = || {
        SqlError::InvalidConflictTarget(
            "there is no unique or exclusion constraint matching the ON CONFLICT specification"
                .into(),
        )
    };
    let pk = meta.primary_key.as_ref();
    match &clause.conflict_target {
        None if matches!(clause.action, OnConflictAction::DoUpdate(_)) => {
            return Err(SqlError::Syntax(
                "ON CONFLICT DO UPDATE requires inference specification or constraint name".into(),
            ));
        }
        None => {}
        Some(ConflictTarget::Columns(columns)) => {
            let pk = pk.ok_or_else(no_match)?;
            let mut named: Vec<String> = columns.iter().map(normalize_ident).collect();
            let mut key = pk.columns.clone();
            named.sort();
            key.sort();
            if named != key {
                return Err(no_match());
            }
        }
        Some(ConflictTarget::OnConstraint(name)) => {
            let name = name_parts(name).pop().unwrap_or_default();
            if pk.is_none_or(|pk| pk.name != name) {
                return Err(SqlError::UndefinedObject(format!(
                    "constraint \"{name}\" for table \"{table}\" does not exist"
                )));
            }
        }
    }
    if let OnConflictAction::DoUpdate(update) = &clause.action {
        let keys = pk.map(|pk| pk.columns.clone()).unwrap_or_default();
        for assignment in &update.assignments {
            if let AssignmentTarget::ColumnName(name) = &assignment.target
                && keys.contains(&name_parts(name).pop().unwrap_or_default())
            {
                return Err(SqlError::Unsupported(
                    "ON CONFLICT DO UPDATE cannot change the primary key".into(),
                ));
            }
        }
    }
    Ok(clause.clone())
}

/// The operations and affected rows of an INSERT ... ON CONFLICT whose new rows are `new`
/// (validated, in the stored schema). `alias` is how `SET` expressions name the table.
pub(super) async fn resolve(
    session: &Session,
    target: &Target,
    clause: &OnConflict,
    alias: &str,
    new: Vec<RecordBatch>,
) -> Result<(Vec<WriteOp>, Vec<RecordBatch>)> {
    let meta = target.state.meta.clone();
    let schema = meta.stored_schema.clone();
    let new = concat_batches(&schema, &new)?;
    let key_indices = meta.primary_key_indices();
    let existing = existing_rows(session, target, &new, &key_indices).await?;
    let converter = key_converter(&schema.project(&key_indices)?)?;
    let key_columns = |batch: &RecordBatch| -> Vec<ArrayRef> {
        key_indices
            .iter()
            .map(|i| batch.column(*i).clone())
            .collect()
    };
    let existing_keys = converter.convert_columns(&key_columns(&existing))?;
    let stored: HashMap<Vec<u8>, u32> = existing_keys
        .iter()
        .enumerate()
        .map(|(i, row)| (row.as_ref().to_vec(), i as u32))
        .collect();
    let new_keys = converter.convert_columns(&key_columns(&new))?;
    let mut seen = std::collections::HashSet::new();
    let mut fresh = Vec::new();
    let mut conflicting = Vec::new();
    let mut matched = Vec::new();
    for (i, key) in new_keys.iter().enumerate() {
        if !seen.insert(key.as_ref().to_vec()) {
            if matches!(clause.action, OnConflictAction::DoUpdate(_)) {
                return Err(SqlError::CardinalityViolation(
                    "ON CONFLICT DO UPDATE command cannot affect row a second time".into(),
                ));
            }
            continue;
        }
        match stored.get(key.as_ref()) {
            Some(at) => {
                conflicting.push(i as u32);
                matched.push(*at);
            }
            None => fresh.push(i as u32),
        }
    }
    let fresh = take_rows(&new, &fresh)?;
    let mut ops = Vec::new();
    let mut affected = Vec::new();
    if let OnConflictAction::DoUpdate(update) = &clause.action
        && !conflicting.is_empty()
    {
        let old = take_rows(&existing, &matched)?;
        let excluded = take_rows(&new, &conflicting)?;
        let updated = updated_rows(session, &meta, alias, update, old, excluded).await?;
        let updated = validate_rows(&meta, &target.handle.name, updated)?;
        let updated = concat_batches(&schema, &updated)?;
        if updated.num_rows() > 0 {
            let keys = updated.project(&key_indices)?;
            let predicate = key_predicate(&meta, &key_indices, &[keys])?;
            ops.push(delete_op(session, &target.state, Some(predicate)).await?);
            ops.push(WriteOp::Insert(vec![updated.clone()]));
            affected.push(updated);
        }
    }
    if fresh.num_rows() > 0 {
        ops.push(WriteOp::Insert(vec![fresh.clone()]));
        affected.push(fresh);
    }
    Ok((ops, affected))
}

fn take_rows(batch: &RecordBatch, rows: &[u32]) -> Result<RecordBatch> {
    let indices = UInt32Array::from(rows.to_vec());
    let columns = batch
        .columns()
        .iter()
        .map(|c| take(c.as_ref(), &indices, None))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
}

/// The rows of the table (as the transaction sees it) whose keys are among `new`'s.
async fn existing_rows(
    session: &Session,
    target: &Target,
    new: &RecordBatch,
    key_indices: &[usize],
) -> Result<RecordBatch> {
    let schema = target.state.meta.stored_schema.clone();
    let pending = pending_ops(session, target.handle.oid);
    let storage = session.engine().storage();
    if pending.is_empty()
        && storage.keys_surely_free(
            &target.handle,
            &NewRows::pack(&target.state.meta, vec![new.clone()])?,
        )?
    {
        return Ok(RecordBatch::new_empty(schema));
    }
    let base: Arc<dyn TableProvider> = Arc::new(PgTableProvider::try_new(&target.state).await?);
    let table = txn::overlay(target.reference.clone(), base, &pending)?;
    let names: Vec<String> = key_indices
        .iter()
        .map(|i| target.state.meta.columns[*i].name.clone())
        .collect();
    let renamed: Vec<String> = (0..names.len())
        .map(|i| format!("__deltagate_key{i}"))
        .collect();
    let keys = RecordBatch::try_new(
        Arc::new(Schema::new(
            key_indices
                .iter()
                .zip(&renamed)
                .map(|(i, n)| Field::new(n, schema.field(*i).data_type().clone(), true))
                .collect::<Vec<_>>(),
        )),
        key_indices.iter().map(|i| new.column(*i).clone()).collect(),
    )?;
    let rows = session
        .ctx
        .read_table(table)?
        .join(
            session.ctx.read_batch(keys)?,
            JoinType::LeftSemi,
            &names.iter().map(String::as_str).collect::<Vec<_>>(),
            &renamed.iter().map(String::as_str).collect::<Vec<_>>(),
            None,
        )?
        .collect()
        .await?;
    let rows = rows
        .iter()
        .map(|b| txn::conform(b, &schema))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(concat_batches(&schema, &rows)?)
}

/// The new versions of conflicting rows: `old` (the stored rows) and `excluded` (the proposed
/// ones) are aligned row by row; `SET` and `WHERE` see them as `alias` and `excluded`.
async fn updated_rows(
    session: &Session,
    meta: &TableMeta,
    alias: &str,
    update: &DoUpdate,
    old: RecordBatch,
    excluded: RecordBatch,
) -> Result<Vec<RecordBatch>> {
    let row_numbers = |n: usize| -> ArrayRef {
        Arc::new(datafusion::arrow::array::UInt64Array::from_iter_values(
            0..n as u64,
        ))
    };
    let with_row = |batch: RecordBatch| -> Result<RecordBatch> {
        let row = Field::new("__deltagate_row", DataType::UInt64, false);
        Ok(append_column(&batch, row, row_numbers(batch.num_rows()))?)
    };
    let frame = session.ctx.read_batch(with_row(old)?)?.alias(alias)?.join(
        session
            .ctx
            .read_batch(with_row(excluded)?)?
            .alias("excluded")?,
        JoinType::Inner,
        &["__deltagate_row"],
        &["__deltagate_row"],
        None,
    )?;
    let df_schema = frame.schema().clone();
    let expr = |sql: &SqlExpr| -> Result<Expr> {
        let mut sql = sql.clone();
        qualify_bare_columns(&mut sql, alias);
        Ok(session.ctx.parse_sql_expr(&sql.to_string(), &df_schema)?)
    };
    let frame = match &update.selection {
        Some(condition) => frame.filter(expr(condition)?)?,
        None => frame,
    };
    let mut exprs = Vec::with_capacity(meta.columns.len());
    for (i, column) in meta.columns.iter().enumerate() {
        let assigned = update.assignments.iter().rev().find(|a| match &a.target {
            AssignmentTarget::ColumnName(name) => {
                name_parts(name).pop().is_some_and(|n| n == column.name)
            }
            AssignmentTarget::Tuple(_) => false,
        });
        let target_type = meta.arrow_schema.field(i).data_type().clone();
        let value = match assigned {
            Some(a) => datafusion::logical_expr::cast(expr(&a.value)?, target_type),
            None => col(Column::new(Some(alias), &column.name)),
        };
        exprs.push(value.alias(&column.name));
    }
    if update
        .assignments
        .iter()
        .any(|a| matches!(a.target, AssignmentTarget::Tuple(_)))
    {
        return Err(SqlError::Unsupported(
            "ON CONFLICT DO UPDATE SET (a, b) = (...) is not supported".into(),
        ));
    }
    Ok(frame.select(exprs)?.collect().await?)
}

/// Bare column names in `SET`/`WHERE` of DO UPDATE mean the existing row.
fn qualify_bare_columns(expr: &mut SqlExpr, alias: &str) {
    let _ = visit_expressions_mut(expr, |e| {
        if let SqlExpr::Identifier(ident) = e {
            *e = SqlExpr::CompoundIdentifier(vec![Ident::new(alias), ident.clone()]);
        }
        ControlFlow::<()>::Continue(())
    });
}

/// `k IN (...)`, or `(k1 = v1 AND k2 = v2) OR ...`, for the key rows in `keys` (key columns
/// only).
pub(super) fn key_predicate(
    meta: &TableMeta,
    key_indices: &[usize],
    keys: &[RecordBatch],
) -> Result<Expr> {
    if let [index] = key_indices {
        // One key column: an IN list, which DataFusion probes with a hash set.
        let mut values = Vec::new();
        for batch in keys {
            for row in 0..batch.num_rows() {
                values.push(lit(ScalarValue::try_from_array(batch.column(0), row)?));
            }
        }
        if values.is_empty() {
            return Ok(lit(false));
        }
        return Ok(col(meta.columns[*index].name.as_str()).in_list(values, false));
    }
    let mut disjuncts = Vec::new();
    for batch in keys {
        for row in 0..batch.num_rows() {
            let mut conjuncts = Vec::new();
            for (k, index) in key_indices.iter().enumerate() {
                let value = ScalarValue::try_from_array(batch.column(k), row)?;
                conjuncts.push(col(meta.columns[*index].name.as_str()).eq(lit(value)));
            }
            disjuncts.extend(conjuncts.into_iter().reduce(Expr::and));
        }
    }
    // Balanced, so that the expression is only as deep as the log of the key count: planning
    // and evaluating recurse on its depth.
    while disjuncts.len() > 1 {
        let mut paired = Vec::with_capacity(disjuncts.len().div_ceil(2));
        let mut rest = disjuncts.into_iter();
        while let Some(left) = rest.next() {
            paired.push(match rest.next() {
                Some(right) => left.or(right),
                None => left,
            });
        }
        disjuncts = paired;
    }
    Ok(disjuncts.pop().unwrap_or(lit(false)))
}
