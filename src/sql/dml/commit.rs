//! Committing a transaction's changes: the primary keys re-checked, under the commit locks,
//! for tables another session changed since the statements checked them ([`UniqueCheck`]);
//! historian duplicates that appeared meanwhile are dropped instead when the session skips
//! them (see `insert`).

use super::checks::unique_against;
use super::insert::session_skips;
use super::*;
use crate::storage::historian;

/// Re-checks primary keys at commit for tables another session changed meanwhile.
pub struct UniqueCheck {
    ctx: datafusion::prelude::SessionContext,
    storage: Arc<crate::storage::Storage>,
    database: String,
    /// The session's `deltagate.historian_duplicates` is not strict.
    skip_duplicates: bool,
}

impl UniqueCheck {
    pub fn new(session: &Session) -> UniqueCheck {
        UniqueCheck {
            ctx: session.ctx.clone(),
            storage: session.engine().storage().clone(),
            database: session.engine().config().database.clone(),
            skip_duplicates: session_skips(session),
        }
    }
}

#[async_trait]
impl CommitCheck for UniqueCheck {
    async fn check(&self, changes: &mut TableChanges, current: &TableState) -> Result<()> {
        if current.meta.primary_key.is_none() {
            return Ok(());
        }
        let target = Target {
            handle: changes.table.clone(),
            state: current.clone(),
            reference: TableReference::full(
                self.database.clone(),
                changes.table.schema.clone(),
                changes.table.name.clone(),
            ),
        };
        if changes
            .ops
            .iter()
            .all(|op| matches!(op, WriteOp::Insert(_)))
        {
            // Rows of the transaction were checked against each other as they were inserted;
            // here they only meet what others stored meanwhile.
            let batches: Vec<RecordBatch> = changes
                .ops
                .iter()
                .flat_map(|op| match op {
                    WriteOp::Insert(b) => b.clone(),
                    WriteOp::Delete { .. } => Vec::new(),
                })
                .collect();
            if count(&batches) == 0 {
                return Ok(());
            }
            let on_duplicate =
                historian::on_duplicate(&target.handle.name, &current.meta, self.skip_duplicates);
            let rows = NewRows::pack(&current.meta, batches)?;
            let mut keys = KeySet::default();
            let checked = self
                .storage
                .check_keys(&target.handle, current, rows, &mut keys, on_duplicate)
                .await?;
            changes.ops = vec![WriteOp::Insert(checked.rows.into_batches())];
            changes.keys = Some(keys);
            return Ok(());
        }
        let mut prior = Vec::new();
        for op in &changes.ops {
            if let WriteOp::Insert(batches) = op {
                unique_against(&self.ctx, &target, current, &prior, batches).await?;
            }
            prior.push(op.clone());
        }
        Ok(())
    }
}

/// Writes a transaction's changes to storage.
///
/// # Errors
/// Constraint violations found at commit, or storage errors.
pub async fn commit_changes(session: &Session, mut txn: Transaction) -> Result<()> {
    let changes = txn.take_changes();
    if changes.is_empty() {
        return Ok(());
    }
    let check = Arc::new(UniqueCheck::new(session));
    txn::commit(session.shared.engine.storage().clone(), changes, check).await
}
