//! `VACUUM`: deletes the data files no current snapshot needs.
//!
//! Deletes, updates and dropped historian months leave their old files in place (Delta removes
//! them from the log only), so Spark time travel and readers of older snapshots keep working.
//! `VACUUM` deletes those older than the table's `delta.deletedFileRetentionDuration` (Delta's
//! default: 7 days); `VACUUM FULL` deletes them all at once (a reader still scanning an older
//! version may then fail). Only files the table's own log once referenced and then removed are
//! deleted (delta-rs's "lite" mode), never whatever else lies in the table's folder: a file
//! another engine is writing there, or anything a name could point at. A historian month is
//! vacuumed with its whole Delta table. Called by the SQL layer's maintenance statements.

use std::sync::Arc;

use deltalake::operations::vacuum::VacuumMode;
use tracing::info;

use super::rows::commit_properties;
use super::table::TableHandle;
use super::{Result, Storage, StorageError};

impl Storage {
    /// Vacuums the Delta table of `table`; returns the number of files deleted.
    ///
    /// # Errors
    /// Delta and object store errors.
    pub async fn vacuum(&self, table: &Arc<TableHandle>, full: bool) -> Result<usize> {
        let started = std::time::Instant::now();
        let mut guard = self.lock_for_commit(vec![table.clone()]).await;
        let mut builder = guard
            .current(table)
            .table
            .vacuum()
            .with_mode(VacuumMode::Lite)
            .with_commit_properties(commit_properties());
        if full {
            builder = builder
                .with_retention_period(chrono::Duration::zero())
                .with_enforce_retention_duration(false);
        }
        let (delta, metrics) = builder.await.map_err(StorageError::commit(&table.name))?;
        let deleted = metrics.files_deleted.len();
        guard.stage(table, delta)?;
        guard.publish().await;
        info!(table = table.name, full, files_deleted = deleted, elapsed = ?started.elapsed(), "vacuumed");
        Ok(deleted)
    }
}
