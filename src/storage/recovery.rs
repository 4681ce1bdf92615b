//! Recovery: replaying the write-ahead log into the tables' buffers at start, and keeping the
//! log of a table that cannot be read.
//!
//! At start every record is decoded and each of its parts (one per table of the transaction)
//! goes to its table's buffer, unless the table's Delta log says it already arrived (its `txn`
//! version for this server is at or past the record's LSN) or the table no longer exists (its
//! record names another incarnation, or nothing by that name). A table whose Delta log cannot
//! be read at all (a corrupt commit, a missing file) is neither: it is *unavailable*. Its
//! parts are held, by location, and the log is never released past the oldest of them; its
//! statements get a clear error (SQLSTATE XX001) instead of "does not exist"; and every
//! rescan tries it again. Once it loads, its held parts are replayed as at start, and nothing
//! acknowledged is lost. Called by `catalog` (discovery, open) and `buffer` (log release).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tracing::{info, warn};

use super::historian::HistorianName;
use super::ingest::{Entry, decode_insert};
use super::table::TableHandle;
use super::{Result, Storage, StorageError};
use crate::wal::{Location, Lsn, Record};

/// A table whose Delta log could not be read, and the log records it has waiting.
#[derive(Debug, Default)]
pub(super) struct Unavailable {
    /// Why it could not be read.
    error: String,
    /// Parts of log records for it: the record's location and the part's index.
    held: Vec<(Location, usize)>,
}

/// What one replayed part of a record became.
enum Replayed {
    Buffered,
    Skipped,
    Held,
}

impl Storage {
    /// Records that a table (`name`: its folder) could not be loaded.
    pub(super) fn mark_unavailable(&self, schema: &str, name: &str, error: &StorageError) {
        let mut unavailable = self.unavailable.lock();
        let entry = unavailable
            .entry((schema.to_string(), name.to_string()))
            .or_default();
        if entry.error.is_empty() {
            warn!(
                schema,
                table = name,
                %error,
                "table unavailable: its Delta log cannot be read; its unflushed rows stay in the write-ahead log"
            );
        }
        entry.error = error.to_string();
    }

    /// Replays the parts held for `folder` of `schema` into its freshly loaded `tables`, which
    /// are not registered yet.
    ///
    /// # Errors
    /// Log read errors; the parts stay held then.
    pub(super) async fn replay_held(
        &self,
        schema: &str,
        folder: &str,
        tables: &[Arc<TableHandle>],
    ) -> Result<()> {
        let key = (schema.to_string(), folder.to_string());
        let Some(held) = self.unavailable.lock().get(&key).map(|u| u.held.clone()) else {
            return Ok(());
        };
        let mut replayed = 0;
        for (location, part) in &held {
            let parts = decode_insert(&location.read()?)?;
            if let Some((_, name, table_id, batches)) = parts.into_iter().nth(*part)
                && let Some(table) = tables.iter().find(|t| t.name == name)
                && let Replayed::Buffered = self
                    .replay_into(table, location, *part, &table_id, batches)
                    .await?
            {
                replayed += 1;
            }
        }
        info!(
            schema,
            table = folder,
            replayed,
            "table available again; its held log records are replayed"
        );
        Ok(())
    }

    /// `folder` of `schema` has loaded, its held parts replayed: it is available again.
    pub(super) fn mark_available(&self, schema: &str, folder: &str) {
        self.unavailable
            .lock()
            .remove(&(schema.to_string(), folder.to_string()));
    }

    /// The error for a statement naming `name` in `schema`, if that table is unavailable.
    pub fn unavailable(&self, schema: &str, name: &str) -> Option<StorageError> {
        let unavailable = self.unavailable.lock();
        let entry = unavailable
            .get(&(schema.to_string(), name.to_string()))
            .or_else(|| unavailable.get(&(schema.to_string(), container_folder(name)?)))?;
        Some(StorageError::Unavailable {
            table: format!("{schema}.{name}"),
            reason: entry.error.clone(),
        })
    }

    /// The lowest LSN a held record has.
    pub(super) fn oldest_held(&self) -> Option<Lsn> {
        self.unavailable
            .lock()
            .values()
            .flat_map(|u| u.held.iter().map(|(location, _)| location.lsn))
            .min()
    }

    /// Puts replayed log records into the buffers of the tables they belong to, skipping what
    /// each table's Delta log says already arrived, holding those of unavailable tables. Runs
    /// before the server accepts clients.
    ///
    /// # Errors
    /// Log read errors and undecodable records.
    pub(super) async fn replay(&self, records: Vec<Record>) -> Result<()> {
        let (mut replayed, mut skipped, mut held) = (0usize, 0usize, 0usize);
        for record in records {
            let parts = decode_insert(&record.location.read()?)?;
            for (part, (schema, name, table_id, batches)) in parts.into_iter().enumerate() {
                let outcome = self
                    .replay_part(&record.location, part, &schema, &name, &table_id, batches)
                    .await?;
                match outcome {
                    Replayed::Buffered => replayed += 1,
                    Replayed::Skipped => skipped += 1,
                    Replayed::Held => held += 1,
                }
            }
            // A long outage can leave more in the log than fits in memory.
            self.spill_over_budget();
        }
        info!(replayed, skipped, held, "write-ahead log replayed");
        Ok(())
    }

    async fn replay_part(
        &self,
        location: &Location,
        part: usize,
        schema: &str,
        name: &str,
        table_id: &str,
        batches: Vec<datafusion::arrow::array::RecordBatch>,
    ) -> Result<Replayed> {
        let Some(table) = self.table(schema, name) else {
            return Ok(self.hold(location, part, schema, name));
        };
        self.replay_into(&table, location, part, table_id, batches)
            .await
    }

    /// Puts a part into `table`'s buffer unless it is for another incarnation of the table or
    /// its Delta log says it already arrived.
    async fn replay_into(
        &self,
        table: &Arc<TableHandle>,
        location: &Location,
        part: usize,
        table_id: &str,
        batches: Vec<datafusion::arrow::array::RecordBatch>,
    ) -> Result<Replayed> {
        let state = table.state();
        if state.table_id() != table_id {
            return Ok(Replayed::Skipped);
        }
        if location.lsn <= self.flushed_lsn(table, &state).await? {
            return Ok(Replayed::Skipped);
        }
        let ticket = self.ingest().tickets.fetch_add(1, Ordering::Relaxed);
        let entry = Entry::logged(location.clone(), part, ticket, batches);
        table.push_buffered(entry, true)?;
        Ok(Replayed::Buffered)
    }

    /// Holds a part for an unavailable table; `Skipped` when no such table is unavailable (it
    /// was dropped).
    fn hold(&self, location: &Location, part: usize, schema: &str, name: &str) -> Replayed {
        let mut unavailable = self.unavailable.lock();
        let key = (schema.to_string(), name.to_string());
        let key = if unavailable.contains_key(&key) {
            key
        } else {
            match container_folder(name) {
                Some(folder) if unavailable.contains_key(&(schema.to_string(), folder.clone())) => {
                    (schema.to_string(), folder)
                }
                _ => return Replayed::Skipped,
            }
        };
        if let Some(entry) = unavailable.get_mut(&key) {
            entry.held.push((location.clone(), part));
        }
        Replayed::Held
    }
}

/// The folder of the Delta table holding a historian month (its records name the month).
fn container_folder(name: &str) -> Option<String> {
    match HistorianName::parse(name)? {
        HistorianName::Partition { driver, .. } => {
            Some(super::historian::partition::folder(driver))
        }
        _ => None,
    }
}
