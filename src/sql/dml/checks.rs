//! Constraint checks on the rows a statement produces: NOT NULL (23502), character lengths
//! (22001, with `character(n)` padding), and the primary keys (23505) of the changes other
//! than a plain insert (UPDATE's new row versions, `ON CONFLICT`'s inserts), and of inserts
//! into a table the transaction deleted from: against the table as the transaction would leave
//! it. Plain inserts take `insert`; the re-check at commit is `commit`.

use super::*;

/// Casts that fail on a value they cannot represent, rather than making it NULL.
pub(super) const STRICT_CAST: datafusion::arrow::compute::CastOptions<'static> =
    datafusion::arrow::compute::CastOptions {
        safe: false,
        format_options: datafusion::arrow::util::display::FormatOptions::new(),
    };

/// Checks NOT NULL and character lengths, pads `character(n)`, and gives the rows the table's
/// schema.
pub(super) fn validate_rows(
    meta: &TableMeta,
    table: &str,
    batches: Vec<RecordBatch>,
) -> Result<Vec<RecordBatch>> {
    let schema = meta.stored_schema.clone();
    batches
        .into_iter()
        .map(|batch| {
            let mut columns: Vec<ArrayRef> = Vec::with_capacity(batch.num_columns());
            for (i, column) in meta.columns.iter().enumerate() {
                let array = check_length(column, batch.column(i).clone())?;
                let target = schema.field(i).data_type();
                // A value that does not convert is an error (22P02), never a NULL.
                let array = if array.data_type() == target {
                    array
                } else {
                    datafusion::arrow::compute::cast_with_options(&array, target, &STRICT_CAST)?
                };
                // Logical nulls: a NullArray (an untyped NULL) reports no physical ones.
                if column.not_null && array.logical_null_count() > 0 {
                    return Err(SqlError::NotNullViolation {
                        table: table.to_string(),
                        column: column.name.clone(),
                    });
                }
                columns.push(array);
            }
            Ok(RecordBatch::try_new(schema.clone(), columns)?)
        })
        .collect()
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

/// Checks that the keys inserted by `ops` are unique in the table as `ops` would leave it.
/// Returns the packed keys of all the transaction's inserts into the table after `ops`
/// (`None`: unknown, as after any delete).
pub(super) async fn check_changes(
    session: &Session,
    target: &Target,
    ops: &[WriteOp],
) -> Result<Option<KeySet>> {
    if target.state.meta.primary_key.is_none() {
        return Ok(None);
    }
    let earlier = if ops.iter().any(|op| matches!(op, WriteOp::Delete { .. })) {
        None
    } else {
        earlier_keys(session, target)?
    };
    let Some(mut earlier) = earlier else {
        // The table as this transaction leaves it is more than stored rows plus inserts.
        let mut prior = pending_ops(session, target.handle.oid);
        for op in ops {
            if let WriteOp::Insert(batches) = op {
                unique_against(&session.ctx, target, &target.state, &prior, batches).await?;
            }
            prior.push(op.clone());
        }
        return Ok(None);
    };
    let storage = session.engine().storage();
    for op in ops {
        if let WriteOp::Insert(batches) = op {
            let rows = NewRows::pack(&target.state.meta, batches.clone())?;
            let state = &target.state;
            storage
                .check_keys(
                    &target.handle,
                    state,
                    rows,
                    &mut earlier,
                    OnDuplicate::Reject,
                )
                .await?;
        }
    }
    Ok(Some(earlier))
}

/// What a statement's key check starts from: the packed keys of the transaction's inserts into
/// the target so far (taken out of the transaction: the statement hands them back, with its
/// own, through `write`), or `None` when the transaction deleted rows of the table, whose
/// inserts are then checked against its own view instead.
pub(super) fn earlier_keys(session: &Session, target: &Target) -> Result<Option<KeySet>> {
    let oid = target.handle.oid;
    let (keys, deletes) = session
        .shared
        .txn
        .with(|t| (t.take_keys(oid), t.deletes_from(oid)))
        .unwrap_or((None, false));
    match (keys, deletes) {
        (_, true) => Ok(None),
        (Some(keys), false) => Ok(Some(keys)),
        (None, false) => pending_keys(session, target).map(Some),
    }
}

/// The packed keys of the rows the transaction's pending operations on the target insert,
/// packed again (after a failed statement or a rollback to a savepoint dropped them).
fn pending_keys(session: &Session, target: &Target) -> Result<KeySet> {
    let batches: Vec<RecordBatch> = pending_ops(session, target.handle.oid)
        .into_iter()
        .flat_map(|op| match op {
            WriteOp::Insert(batches) => batches,
            WriteOp::Delete { .. } => Vec::new(),
        })
        .collect();
    let rows = NewRows::pack(&target.state.meta, batches)?;
    Ok(rows.keys().iter().cloned().collect())
}

/// Fails with 23505 if `batches` repeat a key among themselves or with the table as `prior`
/// operations leave it on top of `state`.
pub(super) async fn unique_against(
    ctx: &datafusion::prelude::SessionContext,
    target: &Target,
    state: &TableState,
    prior: &[WriteOp],
    batches: &[RecordBatch],
) -> Result<()> {
    let meta = &state.meta;
    let key_indices = meta.primary_key_indices();
    if meta.primary_key.is_none() || key_indices.is_empty() || count(batches) == 0 {
        return Ok(());
    }
    let keys = key_columns(batches, &key_indices)?;
    // Within the new rows.
    let converter = key_converter(&keys.schema())?;
    let rows = converter.convert_columns(keys.columns())?;
    let mut seen = HashMap::with_capacity(rows.num_rows());
    for (i, row) in rows.iter().enumerate() {
        if seen.insert(row.owned(), i).is_some() {
            return Err(violation_at(meta, &keys, i)?.into());
        }
    }
    let clash = stored_matches(ctx, target, state, prior, &keys, Some(1)).await?;
    if let Some(batch) = clash.iter().find(|b| b.num_rows() > 0) {
        return Err(violation_at(meta, batch, 0)?.into());
    }
    Ok(())
}

/// The keys among `keys` (key columns only) that the table holds as `prior` operations leave
/// it on top of `state` (see `storage::matching_keys`); at most `limit` of them.
pub(super) async fn stored_matches(
    ctx: &datafusion::prelude::SessionContext,
    target: &Target,
    state: &TableState,
    prior: &[WriteOp],
    keys: &RecordBatch,
    limit: Option<usize>,
) -> Result<Vec<RecordBatch>> {
    let base: Arc<dyn TableProvider> = Arc::new(PgTableProvider::try_new(state).await?);
    let table = txn::overlay(target.reference.clone(), base, prior)?;
    Ok(matching_keys(ctx, table, &state.meta, keys, limit).await?)
}
