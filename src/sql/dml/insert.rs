//! The one way rows enter a table from SQL: a plain INSERT (planned), the planner-free INSERT
//! of client batches (`fast`), and COPY in every format ([`insert_batches`](super::insert_batches))
//! all end here.
//!
//! Rows arrive validated, in the table's stored schema. Their primary keys are packed once
//! ([`NewRows`]) and checked by storage ([`Storage::check_keys`](crate::storage::Storage)) under
//! the table's duplicate rule ([`historian::on_duplicate`]: historian data tables skip
//! duplicates while the session's `deltagate.historian_duplicates` is `skip`, every other
//! table refuses them with 23505), against the keys the transaction inserted before; the rows
//! and their packed keys then go into the transaction, or straight to the log in autocommit
//! mode, whose append claims those same keys. Only a transaction that has deleted rows of the
//! table is checked here instead, against its own view of the table (`checks`).

use super::checks::{earlier_keys, stored_matches, unique_against};
use super::*;
use crate::storage::{NewRows, OnDuplicate, historian, key_columns, key_set};

/// The value of `deltagate.historian_duplicates` that refuses duplicates as PostgreSQL does.
const STRICT: &str = "error";

/// Whether the session skips duplicate keys on historian data tables.
pub(super) fn session_skips(session: &Session) -> bool {
    session
        .shared
        .settings
        .lock()
        .get("deltagate.historian_duplicates")
        .is_ok_and(|v| v != STRICT)
}

/// Checks and records (or, outside a transaction block, commits) rows for `target`: validated,
/// in its stored schema. Returns the rows stored and, per row given, whether it is stored (all
/// of them, unless the table skips duplicates).
///
/// # Errors
/// 23505 under [`OnDuplicate::Reject`], storage errors; nothing is stored then.
pub(super) async fn insert_rows(
    session: &Session,
    target: &Target,
    batches: Vec<RecordBatch>,
) -> Result<(Vec<RecordBatch>, Vec<bool>)> {
    let rows = NewRows::pack(&target.state.meta, batches)?;
    let (rows, kept, keys) = check_rows(session, target, rows).await?;
    let batches = rows.into_batches();
    let ops = if count(&batches) > 0 {
        vec![WriteOp::Insert(batches.clone())]
    } else {
        Vec::new()
    };
    write(session, &target.handle, target.state.stamp(), ops, keys).await?;
    Ok((batches, kept))
}

/// The key check of new rows: the rows kept, whether each is, and the packed keys of all the
/// transaction's inserts into the table after them (`None`: unknown).
async fn check_rows(
    session: &Session,
    target: &Target,
    rows: NewRows,
) -> Result<(NewRows, Vec<bool>, Option<KeySet>)> {
    if rows.keys().is_empty() {
        let kept = vec![true; rows.len()];
        return Ok((rows, kept, None));
    }
    let meta = &target.state.meta;
    let on_duplicate = historian::on_duplicate(&target.handle.name, meta, session_skips(session));
    let Some(mut earlier) = earlier_keys(session, target)? else {
        let kept = check_against_view(session, target, &rows, on_duplicate).await?;
        return Ok((rows.keep(&kept)?, kept, None));
    };
    let storage = session.engine().storage();
    let checked = storage
        .check_keys(
            &target.handle,
            &target.state,
            rows,
            &mut earlier,
            on_duplicate,
        )
        .await?;
    Ok((checked.rows, checked.kept, Some(earlier)))
}

/// The key check of rows inserted by a transaction that deleted rows of the table: against the
/// table as the transaction would leave it, exactly. Returns whether each row is kept.
async fn check_against_view(
    session: &Session,
    target: &Target,
    rows: &NewRows,
    on_duplicate: OnDuplicate,
) -> Result<Vec<bool>> {
    let pending = pending_ops(session, target.handle.oid);
    if on_duplicate == OnDuplicate::Reject {
        unique_against(
            &session.ctx,
            target,
            &target.state,
            &pending,
            rows.batches(),
        )
        .await?;
        return Ok(vec![true; rows.len()]);
    }
    let keys = key_columns(rows.batches(), &target.state.meta.primary_key_indices())?;
    let stored = stored_matches(&session.ctx, target, &target.state, &pending, &keys, None);
    let mut taken = key_set(&stored.await?)?;
    Ok(rows
        .keys()
        .iter()
        .map(|key| taken.insert(key.clone()))
        .collect())
}
