//! Changes to existing rows (`UPDATE`, `DELETE`, upserts, and for `ddl` `TRUNCATE` and
//! `ALTER TABLE ... ADD COLUMN`): what such a statement reads and how it stays right beside
//! concurrent writers.
//!
//! A statement that may delete rows first waits for its table's change queue and pins the
//! table as [`Storage::read_for_change`](crate::storage::Storage::read_for_change) gives it
//! (buffered rows flushed), so every row it deletes is in a data file it can name. Its delete
//! is then "these rows of these files", which storage commits together with the rewritten rows
//! in one Delta commit, refusing it (`Conflict`) if another writer removed one of the files
//! meanwhile. Autocommit statements run again on a conflict; in a transaction block the client
//! gets 40001.

use std::sync::Arc;

use datafusion::common::Column;
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder};
use datafusion::sql::sqlparser::ast::{OnConflict, OnConflictAction, OnInsert, Statement};
use tokio::sync::OwnedMutexGuard;
use tracing::debug;

use super::{Target, collect, upsert};
use crate::sql::session::Session;
use crate::sql::txn;
use crate::sql::{Result, SqlError};
use crate::storage::{StorageError, TableHandle, TableState, WriteOp};

/// Attempts an autocommit statement gets when its commit finds that another writer replaced
/// a data file it read: it then runs again on the new snapshot, as PostgreSQL re-reads a row
/// whose concurrent update it waited for. Inside a transaction block the conflict is the
/// client's to retry (40001).
const CONFLICT_RETRIES: u64 = 50;

/// Runs `attempt` again while it fails on a serialization conflict, if it commits by itself
/// (no transaction block is open).
///
/// # Errors
/// The last attempt's error.
pub(crate) async fn retry_conflicts<T, F, Fut>(session: &Session, mut attempt: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let autocommit = !session.shared.txn.is_open();
    let mut tries = 0;
    loop {
        match attempt().await {
            Err(SqlError::Storage(StorageError::Conflict { table }))
                if autocommit && tries < CONFLICT_RETRIES =>
            {
                tries += 1;
                debug!(
                    table,
                    tries, "change conflicted with a concurrent one; running it again"
                );
                // Desynchronize writers that keep replacing the same files.
                let pause = rand::random_range(0..=tries * 2);
                tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
            }
            other => return other,
        }
    }
}

/// A table pinned for the statement running now: it reads the table as
/// [`Storage::read_for_change`](crate::storage::Storage::read_for_change) gives it, so every
/// row it may delete is in a data file it can name. Unpinned when dropped.
pub(crate) struct Pin<'a> {
    session: &'a Session,
    oid: u32,
    /// The table's change queue: other statements that delete from it wait for this one.
    _turn: OwnedMutexGuard<()>,
}

impl Drop for Pin<'_> {
    fn drop(&mut self) {
        self.session.shared.pinned.lock().remove(&self.oid);
    }
}

/// Waits for `handle`'s change queue, then pins it for a statement that may delete rows from
/// it; returns the pinned snapshot.
///
/// # Errors
/// Flush errors (Delta unreachable).
pub(crate) async fn pin<'a>(
    session: &'a Session,
    handle: &Arc<TableHandle>,
) -> Result<(Pin<'a>, TableState)> {
    let turn = handle.queue_change().await;
    let state = session.engine().storage().read_for_change(handle).await?;
    session
        .shared
        .pinned
        .lock()
        .insert(handle.oid, state.clone());
    let pin = Pin {
        session,
        oid: handle.oid,
        _turn: turn,
    };
    Ok((pin, state))
}

/// The delete of a statement: the rows of `state` (pinned) for which `predicate` is true.
pub(super) async fn delete_op(
    session: &Session,
    state: &TableState,
    predicate: Option<Expr>,
) -> Result<WriteOp> {
    let files = session
        .engine()
        .storage()
        .files_matching(state, predicate.as_ref())
        .await?;
    Ok(WriteOp::Delete { predicate, files })
}

/// Whether a statement may delete rows of its table (UPDATE, DELETE, ON CONFLICT DO UPDATE).
pub(super) fn deletes_rows(statement: &Statement) -> bool {
    match statement {
        Statement::Update(_) | Statement::Delete(_) => true,
        Statement::Insert(insert) => matches!(
            &insert.on,
            Some(OnInsert::OnConflict(OnConflict {
                action: OnConflictAction::DoUpdate(_),
                ..
            }))
        ),
        _ => false,
    }
}

/// The WHERE of an UPDATE plan (`Projection(Filter(...))`).
pub(super) fn filter_predicate(plan: &LogicalPlan) -> Option<Expr> {
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
pub(super) async fn storable_predicate(
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
    let plan = LogicalPlanBuilder::from(filter)
        .project(key_exprs)?
        .build()?;
    let batches = collect(session, plan).await?;
    Ok(Some(upsert::key_predicate(meta, &keys, &batches)?))
}
