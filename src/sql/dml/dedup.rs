//! Inserts that skip rows whose primary key is already taken.
//!
//! Ignition's store-and-forward re-sends a batch whenever an answer goes missing; PostgreSQL
//! refuses the whole batch with 23505 and Ignition quarantines its good rows with it. So on
//! historian data tables (see `storage::historian`), while the session's
//! `deltagate.historian_duplicates` is `skip` (the default), a plain INSERT or COPY behaves as
//! `INSERT ... ON CONFLICT DO NOTHING`: each `(tagid, t_stamp)` is stored once, the first value
//! kept, and the re-sent batch succeeds. `error` restores PostgreSQL's 23505.
//!
//! It runs at ingest speed: repeats within the statement and the transaction are found by
//! hashing, buffered and in-flight rows through the storage's key index, and stored rows by an
//! exact join only where file statistics cannot rule them out. Called by the INSERT paths
//! (planned, planner-free, COPY) instead of `check_unique`, and at commit by `UniqueCheck` for
//! rows other sessions stored meanwhile.

use datafusion::arrow::array::BooleanArray;
use datafusion::arrow::compute::filter_record_batch;

use super::checks::{key_columns, stored_matches, take_inserted_keys};
use super::*;
use crate::storage::historian;

/// The value of `deltagate.historian_duplicates` that refuses duplicates as PostgreSQL does.
pub const STRICT: &str = "error";

/// Whether inserts into `target` skip rows with a key the table already holds.
pub(super) fn skips_duplicates(session: &Session, target: &Target) -> bool {
    historian::is_data_table(&target.handle.name, &target.state.meta) && session_skips(session)
}

/// Whether the session skips duplicate keys on historian data tables.
pub(super) fn session_skips(session: &Session) -> bool {
    session
        .shared
        .settings
        .lock()
        .get("deltagate.historian_duplicates")
        .is_ok_and(|v| v != STRICT)
}

/// The rows of an insert (validated, in the stored schema) whose key neither an earlier row of
/// the insert nor the table as this transaction sees it holds, and per row whether it is kept.
///
/// # Errors
/// Storage errors reading keys or statistics.
pub(super) async fn without_duplicates(
    session: &Session,
    target: &Target,
    batches: Vec<RecordBatch>,
) -> Result<(Vec<RecordBatch>, Vec<bool>)> {
    let key_indices = target.state.meta.primary_key_indices();
    let rows = count(&batches);
    if rows == 0 || key_indices.is_empty() {
        return Ok((batches, vec![true; rows]));
    }
    let packed = pack_rows_keys(&batches, &key_indices)?;
    let oid = target.handle.oid;
    let pending = pending_ops(session, oid);
    let mut keep = vec![true; rows];
    if pending
        .iter()
        .any(|op| matches!(op, WriteOp::Delete { .. }))
    {
        // The table as this transaction leaves it is more than stored rows plus inserts:
        // compare with exactly that.
        if let Some(t) = session.shared.txn.lock().as_mut() {
            t.inserted_keys.remove(&oid);
        }
        let keys = key_columns(&batches, &key_indices)?;
        let matches =
            stored_matches(&session.ctx, target, &target.state, &pending, &keys, None).await?;
        let mut taken = packed_set(&matches)?;
        for (keep, key) in keep.iter_mut().zip(&packed) {
            *keep = taken.insert(key.clone());
        }
    } else {
        let mut earlier = take_inserted_keys(session, target)?;
        earlier.reserve(packed.len());
        for (keep, key) in keep.iter_mut().zip(&packed) {
            *keep = earlier.insert(key.clone());
        }
        let storage = session.engine().storage();
        let stored = stored_rows(&session.ctx, storage, target, &batches, &packed, &keep).await?;
        for row in stored {
            keep[row] = false;
            earlier.remove(&packed[row]);
        }
        if let Some(t) = session.shared.txn.lock().as_mut() {
            t.inserted_keys.insert(oid, earlier);
        }
    }
    Ok((kept_rows(batches, &keep)?, keep))
}

/// Rows of `batches` (checked when they were inserted) whose key another session stored since:
/// dropped at commit, so that a batch re-sent while the first one was still committing stores
/// nothing twice.
///
/// # Errors
/// Storage errors reading keys or statistics.
pub(super) async fn drop_stored(
    ctx: &datafusion::prelude::SessionContext,
    storage: &crate::storage::Storage,
    target: &Target,
    batches: Vec<RecordBatch>,
) -> Result<Vec<RecordBatch>> {
    let key_indices = target.state.meta.primary_key_indices();
    if count(&batches) == 0 || key_indices.is_empty() {
        return Ok(batches);
    }
    let packed = pack_rows_keys(&batches, &key_indices)?;
    let mut keep = vec![true; packed.len()];
    for row in stored_rows(ctx, storage, target, &batches, &packed, &keep).await? {
        keep[row] = false;
    }
    kept_rows(batches, &keep)
}

/// The rows among those still kept whose key is buffered, in flight or stored.
async fn stored_rows(
    ctx: &datafusion::prelude::SessionContext,
    storage: &crate::storage::Storage,
    target: &Target,
    batches: &[RecordBatch],
    packed: &[PackedKey],
    keep: &[bool],
) -> Result<Vec<usize>> {
    let candidates: Vec<usize> = (0..keep.len()).filter(|i| keep[*i]).collect();
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    let rows = kept_rows(batches.to_vec(), keep)?;
    let taken = storage.keys_taken(&target.handle, &rows, true)?;
    let mut found: Vec<usize> = taken.rows.iter().map(|j| candidates[*j]).collect();
    if taken.stored_unknown {
        let mut open = keep.to_vec();
        for &i in &found {
            open[i] = false;
        }
        let key_indices = target.state.meta.primary_key_indices();
        let remaining = key_columns(&kept_rows(batches.to_vec(), &open)?, &key_indices)?;
        let matches = stored_matches(ctx, target, &target.state, &[], &remaining, None).await?;
        let stored = packed_set(&matches)?;
        found.extend((0..open.len()).filter(|i| open[*i] && stored.contains(&packed[*i])));
    }
    Ok(found)
}

/// The rows of `batches` that `keep` marks (counted across them); the batches themselves when
/// it marks all, as it mostly does.
fn kept_rows(batches: Vec<RecordBatch>, keep: &[bool]) -> Result<Vec<RecordBatch>> {
    if keep.iter().all(|k| *k) {
        return Ok(batches);
    }
    let mut offset = 0;
    batches
        .into_iter()
        .map(|batch| {
            let mask = BooleanArray::from(keep[offset..offset + batch.num_rows()].to_vec());
            offset += batch.num_rows();
            Ok(filter_record_batch(&batch, &mask)?)
        })
        .collect()
}

fn packed_set(batches: &[RecordBatch]) -> Result<KeySet> {
    let mut set = KeySet::default();
    for batch in batches {
        set.extend(pack_keys(batch.columns())?);
    }
    Ok(set)
}
