//! Constraint checks on the rows a statement produces: NOT NULL (23502), character lengths
//! (22001, with `character(n)` padding), and primary keys (23505) within the new rows and
//! against the table as the transaction would leave it. The re-check at commit is `commit`.

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
pub(super) async fn check_unique(
    session: &Session,
    target: &Target,
    ops: &[WriteOp],
) -> Result<()> {
    if target.state.meta.primary_key.is_none() {
        return Ok(());
    }
    let oid = target.handle.oid;
    let pending_delete = session.shared.txn.lock().as_ref().is_some_and(|t| {
        t.ops_for(oid)
            .is_some_and(|ops| ops.iter().any(|op| matches!(op, WriteOp::Delete { .. })))
    });
    if pending_delete || ops.iter().any(|op| matches!(op, WriteOp::Delete { .. })) {
        // The table as this transaction leaves it is more than stored rows plus inserts.
        if let Some(t) = session.shared.txn.lock().as_mut() {
            t.inserted_keys.remove(&oid);
        }
        let mut prior = pending_ops(session, oid);
        for op in ops {
            if let WriteOp::Insert(batches) = op {
                unique_against(&session.ctx, target, &target.state, &prior, batches).await?;
            }
            prior.push(op.clone());
        }
        return Ok(());
    }
    for op in ops {
        if let WriteOp::Insert(batches) = op {
            let mut earlier = take_inserted_keys(session, target)?;
            unique_fast(
                &session.ctx,
                session.engine().storage(),
                target,
                &mut earlier,
                batches,
            )
            .await?;
            if let Some(t) = session.shared.txn.lock().as_mut() {
                t.inserted_keys.insert(oid, earlier);
            }
        }
    }
    Ok(())
}

/// The keys the transaction inserted into the target so far, kept between statements (see
/// `Transaction::inserted_keys`) and taken out of it while a statement adds to them (callers put
/// them back), rebuilt from the transaction's rows when missing.
pub(super) fn take_inserted_keys(session: &Session, target: &Target) -> Result<KeySet> {
    let oid = target.handle.oid;
    let cached = session
        .shared
        .txn
        .lock()
        .as_mut()
        .and_then(|t| t.inserted_keys.remove(&oid));
    match cached {
        Some(keys) => Ok(keys),
        None => inserted_keys(&target.state.meta, &pending_ops(session, oid)),
    }
}

/// The primary keys of the rows `ops` insert.
fn inserted_keys(meta: &TableMeta, ops: &[WriteOp]) -> Result<KeySet> {
    let key_indices = meta.primary_key_indices();
    let mut keys = KeySet::default();
    if key_indices.is_empty() {
        return Ok(keys);
    }
    let schema = meta.stored_schema.clone().project(&key_indices)?;
    for op in ops {
        if let WriteOp::Insert(batches) = op {
            for batch in batches {
                let columns = key_indices
                    .iter()
                    .zip(schema.fields())
                    .map(|(i, f)| datafusion::arrow::compute::cast(batch.column(*i), f.data_type()))
                    .collect::<Result<Vec<_>, _>>()?;
                keys.extend(pack_keys(&columns)?);
            }
        }
    }
    Ok(keys)
}

/// The key columns of `batches` (not empty), as one batch.
pub(super) fn key_columns(batches: &[RecordBatch], key_indices: &[usize]) -> Result<RecordBatch> {
    let projected = batches
        .iter()
        .map(|b| b.project(key_indices))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(concat_batches(&projected[0].schema(), &projected)?)
}

/// The 23505 error for row `row` of `keys` (key columns only).
fn key_violation(meta: &TableMeta, keys: &RecordBatch, row: usize) -> Result<SqlError> {
    let pk = meta
        .primary_key
        .as_ref()
        .ok_or_else(|| SqlError::Internal("key violation without a primary key".into()))?;
    Ok(SqlError::UniqueViolation {
        constraint: pk.name.clone(),
        detail: format!(
            "Key ({})=({}) already exists.",
            pk.columns.join(", "),
            describe_key(keys, row)?
        ),
    })
}

/// The primary-key check of inserts with no pending deletes: new rows against each other and
/// the transaction's `earlier` inserts by hashing, against the table through the storage's key
/// index and file statistics, and exactly (by a join) only where statistics cannot rule a
/// stored clash out. On an error `earlier` holds some of the new keys: callers drop it (the
/// statement stores nothing, and the transaction's set is rebuilt from its rows when needed).
async fn unique_fast(
    ctx: &datafusion::prelude::SessionContext,
    storage: &crate::storage::Storage,
    target: &Target,
    earlier: &mut KeySet,
    batches: &[RecordBatch],
) -> Result<()> {
    let meta = &target.state.meta;
    let key_indices = meta.primary_key_indices();
    if meta.primary_key.is_none() || key_indices.is_empty() || count(batches) == 0 {
        return Ok(());
    }
    let packed = pack_rows_keys(batches, &key_indices)?;
    earlier.reserve(packed.len());
    for (i, key) in packed.into_iter().enumerate() {
        if !earlier.insert(key) {
            let keys = key_columns(batches, &key_indices)?;
            return Err(key_violation(meta, &keys, i)?);
        }
    }
    unique_stored(ctx, storage, target, batches).await
}

/// The part of [`unique_fast`] that meets the table: new rows against stored, buffered and
/// in-flight rows.
pub(super) async fn unique_stored(
    ctx: &datafusion::prelude::SessionContext,
    storage: &crate::storage::Storage,
    target: &Target,
    batches: &[RecordBatch],
) -> Result<()> {
    match storage.key_clash(&target.handle, batches)? {
        KeyCheck::Free => Ok(()),
        KeyCheck::Taken(row) => {
            let meta = &target.state.meta;
            let keys = key_columns(batches, &meta.primary_key_indices())?;
            Err(key_violation(meta, &keys, row)?)
        }
        KeyCheck::Unknown => unique_against(ctx, target, &target.state, &[], batches).await,
    }
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
            return Err(key_violation(meta, &keys, i)?);
        }
    }
    let clash = stored_matches(ctx, target, state, prior, &keys, Some(1)).await?;
    if let Some(batch) = clash.iter().find(|b| b.num_rows() > 0) {
        return Err(key_violation(meta, batch, 0)?);
    }
    Ok(())
}

/// The keys among `keys` (key columns only) that the table holds as `prior` operations leave
/// it on top of `state`: a semi join of the stored keys with the new ones, pruned by the new
/// keys' range; at most `limit` of them.
pub(super) async fn stored_matches(
    ctx: &datafusion::prelude::SessionContext,
    target: &Target,
    state: &TableState,
    prior: &[WriteOp],
    keys: &RecordBatch,
    limit: Option<usize>,
) -> Result<Vec<RecordBatch>> {
    let meta = &state.meta;
    let key_indices = meta.primary_key_indices();
    let base: Arc<dyn TableProvider> = Arc::new(PgTableProvider::try_new(state).await?);
    let table = txn::overlay(target.reference.clone(), base, prior)?;
    let key_names: Vec<String> = key_indices
        .iter()
        .map(|i| meta.columns[*i].name.clone())
        .collect();
    let new_names: Vec<String> = (0..key_names.len())
        .map(|i| format!("__deltagate_key{i}"))
        .collect();
    let renamed = Schema::new(
        keys.schema()
            .fields()
            .iter()
            .zip(&new_names)
            .map(|(f, n)| Field::new(n, f.data_type().clone(), true))
            .collect::<Vec<_>>(),
    );
    let renamed = RecordBatch::try_new(Arc::new(renamed), keys.columns().to_vec())?;
    let mut stored = ctx.read_table(table)?;
    for (i, name) in key_names.iter().enumerate() {
        let array = keys.column(i);
        if let (Some(low), Some(high)) = (min_value(array)?, max_value(array)?) {
            stored =
                stored.filter(col(Column::new_unqualified(name)).between(lit(low), lit(high)))?;
        }
    }
    let stored = stored.select(
        key_names
            .iter()
            .map(|n| col(Column::new_unqualified(n)))
            .collect::<Vec<_>>(),
    )?;
    let new_keys = ctx.read_batch(renamed)?;
    Ok(stored
        .join(
            new_keys,
            JoinType::LeftSemi,
            &key_names.iter().map(String::as_str).collect::<Vec<_>>(),
            &new_names.iter().map(String::as_str).collect::<Vec<_>>(),
            None,
        )?
        .limit(0, limit)?
        .collect()
        .await?)
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
        T::Int16 => array
            .as_any()
            .downcast_ref::<Int16Array>()
            .and_then(|a| if lowest { min(a) } else { max(a) })
            .map(|v| ScalarValue::Int16(Some(v))),
        T::Int32 => array
            .as_any()
            .downcast_ref::<Int32Array>()
            .and_then(|a| if lowest { min(a) } else { max(a) })
            .map(|v| ScalarValue::Int32(Some(v))),
        T::Int64 => array
            .as_any()
            .downcast_ref::<Int64Array>()
            .and_then(|a| if lowest { min(a) } else { max(a) })
            .map(|v| ScalarValue::Int64(Some(v))),
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
