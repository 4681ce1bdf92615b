//! Transactions: pending writes, what the session sees of them, and commit.
//!
//! A transaction collects [`WriteOp`]s per table. Until commit, only its own session sees
//! them, through `overlay`. A session holds at most one, in its [`TransactionSlot`] (`slot`),
//! which owns the rules of its life cycle.
//!
//! [`commit`] sends insert-only transactions through the write-ahead log (one record for all
//! tables, so they survive a crash together) and applies other changes straight to Delta, one
//! commit per table holding all of the transaction's changes to it (the statements that delete
//! read the tables with their buffers flushed, see `dml::Pin`). It runs on its own task so a
//! client that disconnects or cancels cannot stop a commit half way. An UPDATE or DELETE
//! touching several tables commits each table's part to Delta separately; a crash between them
//! can leave one table's part applied.

mod overlay;
mod slot;

use std::sync::Arc;

use async_trait::async_trait;
use tracing::debug;

pub(crate) use overlay::conform;
pub use overlay::{overlay, unqualify};
pub use slot::TransactionSlot;

use crate::storage::{Append, Appended, KeySet, Stamp, Storage, TableHandle, WriteOp};

use super::{Result, SqlError};

/// The pending writes of one table.
#[derive(Debug)]
pub struct TableChanges {
    pub table: Arc<TableHandle>,
    /// What the first statement of the transaction read (Delta version, buffered rows).
    pub base: Stamp,
    pub ops: Vec<WriteOp>,
    /// The packed primary keys of the rows the inserts add, as the key checks left them, so
    /// that each INSERT is checked against the earlier ones and the log claims them without
    /// packing them again. `None` (unknown, packed again when needed) while any operation is a
    /// delete, or after a failed statement or a rollback to a savepoint.
    pub keys: Option<KeySet>,
}

impl TableChanges {
    /// The changes without their keys (which are costly to copy).
    fn clone_ops(&self) -> TableChanges {
        TableChanges {
            table: self.table.clone(),
            base: self.base,
            ops: self.ops.clone(),
            keys: None,
        }
    }
}

/// An open transaction.
#[derive(Debug, Default)]
pub struct Transaction {
    /// Opened by `BEGIN` (as opposed to one statement in autocommit mode).
    pub explicit: bool,
    /// A statement failed: everything but `ROLLBACK` gets 25P02.
    pub failed: bool,
    /// `BEGIN READ ONLY`.
    pub read_only: bool,
    changes: Vec<TableChanges>,
    /// Savepoints, innermost last, with the changes as they were when each was set.
    savepoints: Vec<(String, Vec<TableChanges>)>,
}

impl Transaction {
    /// A transaction opened by `BEGIN`.
    pub fn explicit(read_only: bool) -> Transaction {
        Transaction {
            explicit: true,
            read_only,
            ..Transaction::default()
        }
    }

    /// The pending operations on a table, if any.
    pub fn ops_for(&self, table_oid: u32) -> Option<&[WriteOp]> {
        self.changes
            .iter()
            .find(|c| c.table.oid == table_oid)
            .map(|c| c.ops.as_slice())
    }

    /// Whether the pending operations on a table delete rows.
    pub fn deletes_from(&self, table_oid: u32) -> bool {
        self.ops_for(table_oid)
            .is_some_and(|ops| ops.iter().any(|op| matches!(op, WriteOp::Delete { .. })))
    }

    /// Takes out the packed keys of a table's pending inserts, for a statement that adds to
    /// them (see [`TableChanges::keys`]); it hands them back with [`Transaction::push`].
    pub fn take_keys(&mut self, table_oid: u32) -> Option<KeySet> {
        self.changes
            .iter_mut()
            .find(|c| c.table.oid == table_oid)
            .and_then(|c| c.keys.take())
    }

    /// Records operations on a table, with the packed keys of all its pending inserts after
    /// them (`None`: unknown). Consecutive inserts are kept as one operation, so a
    /// transaction of many single-row INSERTs reads and re-checks as one set of rows.
    pub fn push(
        &mut self,
        table: &Arc<TableHandle>,
        base: Stamp,
        ops: Vec<WriteOp>,
        keys: Option<KeySet>,
    ) {
        let keys = keys.filter(|_| !ops.iter().any(|op| matches!(op, WriteOp::Delete { .. })));
        let ops_empty = ops.is_empty();
        match self.changes.iter_mut().find(|c| c.table.oid == table.oid) {
            Some(changes) => {
                let mut all = std::mem::take(&mut changes.ops);
                all.extend(ops);
                changes.ops = coalesce(all);
                // No operation and no keys: the statement changed nothing, keys included.
                if keys.is_some() || !ops_empty {
                    changes.keys = keys;
                }
            }
            None if ops.is_empty() => {}
            None => self.changes.push(TableChanges {
                table: table.clone(),
                base,
                ops,
                keys,
            }),
        }
    }

    /// `SAVEPOINT name`.
    pub fn savepoint(&mut self, name: &str) {
        // Without the keys: copying them for every savepoint (psql's ON_ERROR_ROLLBACK sets
        // one per statement) would cost more than packing them again after a rollback.
        let changes = self.changes.iter().map(TableChanges::clone_ops).collect();
        self.savepoints.push((name.to_string(), changes));
    }

    /// `ROLLBACK TO SAVEPOINT name`; false if there is no such savepoint.
    pub fn rollback_to(&mut self, name: &str) -> bool {
        match self.savepoints.iter().rposition(|(n, _)| n == name) {
            Some(pos) => {
                self.changes = self.savepoints[pos]
                    .1
                    .iter()
                    .map(TableChanges::clone_ops)
                    .collect();
                self.savepoints.truncate(pos + 1);
                true
            }
            None => false,
        }
    }

    /// `RELEASE SAVEPOINT name`; false if there is no such savepoint.
    pub fn release(&mut self, name: &str) -> bool {
        match self.savepoints.iter().rposition(|(n, _)| n == name) {
            Some(pos) => {
                self.savepoints.truncate(pos);
                true
            }
            None => false,
        }
    }

    /// Takes the pending changes out of the transaction.
    pub fn take_changes(&mut self) -> Vec<TableChanges> {
        std::mem::take(&mut self.changes)
    }
}

/// Coalesces consecutive inserts so each run of them is one Delta commit.
pub fn coalesce(ops: Vec<WriteOp>) -> Vec<WriteOp> {
    let mut out: Vec<WriteOp> = Vec::with_capacity(ops.len());
    for op in ops {
        match (out.last_mut(), op) {
            (Some(WriteOp::Insert(into)), WriteOp::Insert(more)) => into.extend(more),
            (_, op) => out.push(op),
        }
    }
    out
}

/// A check run under the commit locks, for tables whose snapshot moved since the transaction
/// read them.
#[async_trait]
pub trait CommitCheck: Send + Sync {
    /// Verifies the pending changes against the table's current state; may drop rows that
    /// are no longer to be stored (duplicates on a table that skips them).
    async fn check(
        &self,
        changes: &mut TableChanges,
        current: &crate::storage::TableState,
    ) -> Result<()>;
}

/// Commits a transaction's changes.
///
/// Inserts only (the ingest path): admit the tables and append to the write-ahead log, claiming
/// the keys against rows other sessions added meanwhile (stored, buffered or in flight) and
/// re-checking the rows when a claim is refused; the rows are durable and visible when this
/// returns. Anything else (UPDATE, DELETE, TRUNCATE): lock the tables, re-check, write each
/// table's operations to Delta in one commit (see `storage::mutation`; a data file a delete read
/// that another writer replaced since fails the commit with 40001) and publish all new
/// snapshots at once.
///
/// # Errors
/// Constraint violations found by `check`, or storage errors; nothing is stored then.
pub async fn commit(
    storage: Arc<Storage>,
    changes: Vec<TableChanges>,
    check: Arc<dyn CommitCheck>,
) -> Result<()> {
    if changes.is_empty() {
        return Ok(());
    }
    // Spawned so that dropping the caller (cancel, disconnect) cannot interrupt a commit.
    let task = tokio::spawn(async move {
        let inserts_only = changes
            .iter()
            .all(|c| c.ops.iter().all(|op| matches!(op, WriteOp::Insert(_))));
        if inserts_only {
            append(&storage, changes, check.as_ref()).await
        } else {
            apply(&storage, changes, check.as_ref()).await
        }
    });
    task.await
        .map_err(|e| SqlError::Internal(format!("commit task failed: {e}")))?
}

async fn append(
    storage: &Storage,
    mut changes: Vec<TableChanges>,
    check: &dyn CommitCheck,
) -> Result<()> {
    let admission = storage
        .admit(changes.iter().map(|c| c.table.clone()).collect())
        .await?;
    // Mostly no other writer added a row with one of these keys since the transaction checked
    // them: the append claims the keys in one probe each and is done. Otherwise (or when the
    // index cannot tell) the rows are checked again, as they are now, and appended as checked.
    let admission = match admission.append(appends(&mut changes, true)).await? {
        Appended::Durable(_) => return Ok(()),
        Appended::Refused(admission) => admission,
    };
    for change in &mut changes {
        let current = change.table.state_for_check();
        if current.stamp() != change.base {
            check.check(change, &current).await?;
        }
    }
    match admission.append(appends(&mut changes, false)).await? {
        Appended::Durable(_) => Ok(()),
        Appended::Refused(_) => Err(SqlError::Internal(
            "rows checked under the admission lock were refused".into(),
        )),
    }
}

/// The rows a transaction's changes insert (it only inserts), per table, with their keys
/// (taken out of the changes: an append consumes them); `claim`: their keys were checked when
/// the statements ran, not under this admission.
fn appends(changes: &mut [TableChanges], claim: bool) -> Vec<Append> {
    changes
        .iter_mut()
        .map(|change| Append {
            table: change.table.clone(),
            batches: change
                .ops
                .iter()
                .flat_map(|op| match op {
                    WriteOp::Insert(batches) => batches.clone(),
                    WriteOp::Delete { .. } => Vec::new(),
                })
                .collect(),
            keys: change.keys.take(),
            checked_at: claim.then_some(change.base),
        })
        .collect()
}

async fn apply(
    storage: &Storage,
    mut changes: Vec<TableChanges>,
    check: &dyn CommitCheck,
) -> Result<()> {
    let tables: Vec<Arc<TableHandle>> = changes.iter().map(|c| c.table.clone()).collect();
    // Admission first (as every path that takes both), so no insert slips in between the
    // checks below and the publish.
    let _admission = storage.admit(tables.clone()).await?;
    let mut guard = storage.lock_for_commit(tables).await;
    for change in &mut changes {
        let current = guard.current(&change.table);
        if current.stamp() != change.base {
            check.check(change, &current).await?;
        }
    }
    for change in changes {
        let ops = coalesce(change.ops);
        debug!(table = change.table.name, ops = ops.len(), "committing");
        guard.apply(&change.table, ops).await?;
    }
    guard.publish().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int32Array, RecordBatch};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn rows(n: i32) -> Vec<RecordBatch> {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int32, false)]));
        vec![RecordBatch::try_new(schema, vec![Arc::new(Int32Array::from(vec![n]))]).unwrap()]
    }

    fn delete() -> WriteOp {
        WriteOp::Delete {
            predicate: None,
            files: Arc::default(),
        }
    }

    /// The shape of ops: `I<rows>` per insert, `D` per delete.
    fn shape(ops: &[WriteOp]) -> String {
        ops.iter()
            .map(|op| match op {
                WriteOp::Insert(batches) => format!("I{}", batches.len()),
                WriteOp::Delete { .. } => "D".into(),
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn consecutive_inserts_coalesce_and_deletes_keep_their_place() {
        let ops = vec![
            WriteOp::Insert(rows(1)),
            WriteOp::Insert(rows(2)),
            delete(),
            WriteOp::Insert(rows(3)),
            delete(),
            delete(),
            WriteOp::Insert(rows(4)),
            WriteOp::Insert(rows(5)),
            WriteOp::Insert(rows(6)),
        ];
        assert_eq!(shape(&coalesce(ops)), "I2 D I1 D D I3");
        assert_eq!(shape(&coalesce(Vec::new())), "");
    }

    #[test]
    fn savepoints_roll_back_to_the_newest_of_a_name() {
        let mut txn = Transaction::explicit(false);
        assert!(!txn.rollback_to("a") && !txn.release("a"));
        txn.savepoint("a");
        txn.savepoint("b");
        txn.savepoint("a");
        assert!(txn.rollback_to("a"));
        // Rolling back to a savepoint keeps it; releasing one removes it and those after it,
        // leaving the earlier "a".
        assert!(txn.rollback_to("a"));
        assert!(txn.release("b"));
        assert!(!txn.rollback_to("b") && !txn.release("b"));
        assert!(txn.rollback_to("a") && txn.release("a"));
        assert!(!txn.rollback_to("a"));
    }
}
