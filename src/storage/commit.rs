//! Commits: exclusive access to tables while Delta commits are made, and publishing the new
//! snapshots.
//!
//! [`Storage::lock_for_commit`](super::Storage::lock_for_commit) hands out a [`CommitGuard`]
//! holding the commit locks of a set of tables (one per Delta table: historian months share
//! theirs). Under it, flushes (`buffer`), mutations (`mutation`), metadata changes and sequence
//! reservations stage new snapshots; [`CommitGuard::publish`] makes them visible to readers all
//! at once under the visibility lock. The locks are taken in the one order written in
//! `docs/ARCHITECTURE.md` (section 3): change queues (`TableHandle::queue_change`; one at a
//! time), the DDL lock, admission locks, commit locks (by address), the visibility lock, session
//! locks, a table's `state`, then its `keys` or `inflight`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use deltalake::DeltaTable;
use tokio::sync::OwnedMutexGuard;

use super::meta::IndexMeta;
use super::rows::commit_properties;
use super::table::{TableHandle, TableState};
use super::{Result, Storage, StorageError};
use crate::wal::Lsn;

/// The buffered rows of a table a [`CommitGuard`] flushed.
#[derive(Debug, Default)]
struct Flushed {
    /// The highest log position.
    upto: Lsn,
    /// The latest write (see [`KeyIndex`]).
    tickets: u64,
    rows: usize,
}

/// Exclusive access to a set of tables for one commit.
pub struct CommitGuard<'a> {
    locked: Vec<Arc<TableHandle>>,
    /// One per distinct commit lock of `locked`.
    _guards: Vec<OwnedMutexGuard<()>>,
    pub(super) storage: &'a Storage,
    pub(super) staged: HashMap<u32, TableState>,
    /// Per table, what this guard flushed to Delta.
    flushed: HashMap<u32, Flushed>,
    /// Tables whose rows this guard deleted or rewrote.
    pub(super) rewritten: HashSet<u32>,
}

impl<'a> CommitGuard<'a> {
    pub(super) fn new(
        locked: Vec<Arc<TableHandle>>,
        guards: Vec<OwnedMutexGuard<()>>,
        storage: &'a Storage,
    ) -> CommitGuard<'a> {
        CommitGuard {
            locked,
            _guards: guards,
            storage,
            staged: HashMap::new(),
            flushed: HashMap::new(),
            rewritten: HashSet::new(),
        }
    }

    pub(super) fn ensure_locked(&self, table: &TableHandle) {
        debug_assert!(
            self.locked.iter().any(|t| t.oid == table.oid),
            "table {} written without its commit lock",
            table.name
        );
    }

    /// The newest state of a locked table, including changes staged by this guard. A slice's
    /// Delta table moves on with its siblings' commits: the state is rebased on the newest
    /// version, so commits start from it.
    pub fn current(&self, table: &TableHandle) -> TableState {
        let state = self
            .staged
            .get(&table.oid)
            .cloned()
            .unwrap_or_else(|| table.state());
        let Some((slice, container)) = &table.slice else {
            return state;
        };
        let latest = container.latest.lock().clone();
        if latest.version().map(|v| v as i64) <= Some(state.version) {
            return state;
        }
        match TableState::from_table(latest, table.oid, Some(slice)) {
            Ok(rebased) => TableState {
                buffered: state.buffered,
                ..rebased
            },
            Err(e) => {
                tracing::warn!(table = table.name, error = %e, "cannot rebase month on its table's newest version");
                state
            }
        }
    }

    pub(super) fn stage(&mut self, table: &TableHandle, delta: DeltaTable) -> Result<()> {
        if let Some((_, container)) = &table.slice {
            container.advance(&delta);
        }
        let state = TableState::from_table(delta, table.oid, table.slice())?;
        self.staged.insert(table.oid, state);
        Ok(())
    }

    pub(super) fn stage_flushed(
        &mut self,
        table: &TableHandle,
        delta: DeltaTable,
        upto: Lsn,
        tickets: u64,
        rows: usize,
    ) -> Result<()> {
        self.stage(table, delta)?;
        let flushed = self.flushed.entry(table.oid).or_default();
        flushed.upto = upto;
        flushed.tickets = flushed.tickets.max(tickets);
        flushed.rows += rows;
        Ok(())
    }

    /// The highest LSN of `table` this guard flushed (0 if none).
    pub(super) fn flushed_upto(&self, table: &TableHandle) -> Lsn {
        self.flushed.get(&table.oid).map_or(0, |f| f.upto)
    }

    /// Writes a table's metadata properties: into the Delta table's own, or for a slice into
    /// its registration.
    async fn set_properties(
        &mut self,
        table: &TableHandle,
        properties: HashMap<String, String>,
    ) -> Result<()> {
        let properties = match table.slice() {
            Some(slice) => {
                let current = self.current(table);
                let snapshot = current.table.snapshot()?;
                let mut registration = super::historian::partition::registration(
                    snapshot.metadata().configuration(),
                    slice,
                )?;
                registration.properties = properties;
                HashMap::from([(
                    slice.property(),
                    super::historian::partition::encode(&registration)?,
                )])
            }
            None => properties,
        };
        self.write_properties(table, properties).await
    }

    /// Sets Delta table properties.
    async fn write_properties(
        &mut self,
        table: &TableHandle,
        properties: HashMap<String, String>,
    ) -> Result<()> {
        self.ensure_locked(table);
        let delta = self
            .current(table)
            .table
            .set_tbl_properties()
            .with_properties(properties)
            .with_raise_if_not_exists(false)
            .with_commit_properties(commit_properties())
            .await
            .map_err(StorageError::commit(&table.name))?;
        self.stage(table, delta)
    }

    /// Replaces the table's secondary index definitions.
    ///
    /// # Errors
    /// Delta commit errors.
    pub async fn set_indexes(
        &mut self,
        table: &TableHandle,
        indexes: Vec<IndexMeta>,
    ) -> Result<()> {
        let mut meta = (*self.current(table).meta).clone();
        meta.indexes = indexes;
        self.set_properties(table, meta.properties()?).await
    }

    /// Writes the sequences' positions: the last value handed out plus `headroom` increments.
    ///
    /// # Errors
    /// Delta commit errors.
    pub(super) async fn reserve_sequences(
        &mut self,
        table: &TableHandle,
        headroom: i64,
    ) -> Result<()> {
        let mut meta = (*self.current(table).meta).clone();
        let runtimes = table.sequences.lock().clone();
        for seq in &mut meta.sequences {
            if let Some(rt) = runtimes.get(&seq.name) {
                let target = rt
                    .last_handed_out()
                    .saturating_add(headroom.saturating_mul(rt.increment));
                seq.reserved = target.min(rt.max).max(rt.last_handed_out());
            }
        }
        self.set_properties(table, meta.properties()?).await?;
        let mut sequences = table.sequences.lock();
        for seq in &meta.sequences {
            if let Some(rt) = sequences.get_mut(&seq.name) {
                rt.reserved = seq.reserved;
            }
        }
        Ok(())
    }

    /// Makes every staged snapshot visible at once and releases the tables.
    pub async fn publish(self) {
        let _view = self.storage.visibility.write().await;
        for table in &self.locked {
            if let Some(state) = self.staged.get(&table.oid) {
                // Rows buffered meanwhile stay; rows this guard flushed leave the buffer.
                let mut live = table.state.write();
                let mut buffered = live.buffered.clone();
                let mut keys = table.keys.lock();
                if let Some(flushed) = self.flushed.get(&table.oid) {
                    if let Some(index) = keys.as_mut() {
                        // The files this flush added (a later rewrite clears them below).
                        let added = state
                            .file_paths()
                            .and_then(|new| Ok((new, live.file_paths()?)))
                            .map(|(new, old)| new.difference(&old).cloned().collect())
                            .unwrap_or_default();
                        index.flushed(flushed.tickets, flushed.rows, added);
                    }
                    buffered.release(flushed.upto);
                }
                if self.rewritten.contains(&table.oid)
                    && let Some(index) = keys.as_mut()
                {
                    index.forget_flushed();
                }
                drop(keys);
                *live = TableState {
                    buffered,
                    ..state.clone()
                };
            }
        }
    }
}
