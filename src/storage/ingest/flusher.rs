//! The flusher: moves buffered rows to Delta in large commits and releases the log behind them.
//!
//! A table is due at `--flush-rows`, `--flush-bytes` or `--flush-age`, or when buffers are over
//! their memory budget. [`Storage::flush_table`] writes chunks of whole log records, each one
//! Delta commit whose application transaction is the chunk's last LSN, and publishes each as it
//! lands; only records the log counts as published are taken (ARCHITECTURE.md contract 9).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use deltalake::kernel::Transaction;
use deltalake::protocol::SaveMode;
use tracing::{info, warn};

use crate::wal::Lsn;

use super::super::rows::{commit_properties, conform_to, sorted_by_key, writer_properties};
use super::super::table::TableHandle;
use super::super::{Result, Storage, StorageError};
use super::Entry;

impl Storage {
    /// The highest LSN of this server's log that reached a table's Delta log (as of `state`).
    pub(in crate::storage) async fn flushed_lsn(
        &self,
        table: &TableHandle,
        state: &super::super::TableState,
    ) -> Result<Lsn> {
        let version = state
            .table
            .snapshot()?
            .transaction_version(
                state.table.log_store().as_ref(),
                &table.app_id(&self.app_id),
            )
            .await?;
        Ok(version.unwrap_or(0).max(0) as Lsn)
    }

    /// Writes a table's buffered rows to Delta and drops them from the buffer: one commit per
    /// chunk of at most `flush_bytes` (whole log records), each published as it lands, so a
    /// long backlog neither needs its size in memory nor makes one huge commit.
    ///
    /// # Errors
    /// Delta errors; the rows not yet committed stay buffered (and logged) for the next attempt.
    pub async fn flush_table(&self, table: &Arc<TableHandle>) -> Result<usize> {
        // Only rows the log counts as published: a record spanning several tables is pushed
        // into their buffers one by one, and none of it may reach Delta (and so every view)
        // before a view can see all of it (see `View`).
        let upto = table
            .buffered()
            .last_lsn()
            .min(self.ingest().wal.published());
        let mut rows = 0;
        loop {
            let mut guard = self.lock_for_commit(vec![table.clone()]).await;
            let (flushed, more) = guard.flush_chunk(table, self, upto).await?;
            guard.publish().await;
            self.release_log();
            self.ingest().drained.notify_waiters();
            rows += flushed;
            if !more {
                return Ok(rows);
            }
        }
    }

    /// Flushes every table with buffered rows and releases the log behind them.
    ///
    /// # Errors
    /// The first flush error (other tables are still flushed).
    pub async fn flush_all(&self) -> Result<()> {
        let mut first_error = None;
        for table in self.all_tables() {
            if !table.buffered().is_empty()
                && let Err(e) = self.flush_table(&table).await
            {
                first_error.get_or_insert(e);
            }
        }
        self.release_log();
        first_error.map_or(Ok(()), Err)
    }

    /// Lets the log delete segments every table has flushed past.
    fn release_log(&self) {
        let published = self.ingest().wal.published();
        // Records held for tables that cannot be read are kept too (see `recovery`).
        let oldest = self
            .all_tables()
            .iter()
            .filter_map(|t| t.buffered().first_lsn())
            .chain(self.oldest_held())
            .min();
        let upto = oldest.map_or(published, |o| published.min(o.saturating_sub(1)));
        self.ingest().wal.release(upto);
    }

    /// The flusher: flushes tables past a threshold, retrying failed ones after a pause.
    pub(in crate::storage) async fn run_flusher(
        self: Arc<Self>,
        stop: tokio_util::sync::CancellationToken,
    ) {
        let config = self.ingest().config.clone();
        let tick = (config.flush_age / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
        let mut last_report = Instant::now();
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                () = self.ingest().wake.notified() => {}
                () = tokio::time::sleep(tick) => {}
            }
            let over_budget = self.over_memory_budget();
            for table in self.all_tables() {
                if config.flush_due(&table.buffered(), over_budget)
                    && let Err(e) = self.flush_table(&table).await
                {
                    self.ingest()
                        .stats
                        .flush_errors
                        .fetch_add(1, Ordering::Relaxed);
                    warn!(table = table.name, error = %e, "flush failed; rows stay buffered and logged, retrying");
                    tokio::select! {
                        () = stop.cancelled() => break,
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
            self.release_log();
            self.ingest().drained.notify_waiters();
            if last_report.elapsed() >= Duration::from_secs(60) {
                last_report = Instant::now();
                self.report();
            }
        }
    }

    /// Logs the figures an operator watches.
    pub fn report(&self) {
        let stats = &self.ingest().stats;
        let wal = self.ingest().wal.stats();
        let tables = self.all_tables();
        let lag = tables
            .iter()
            .filter_map(|t| t.buffered().oldest())
            .map(|t| t.elapsed())
            .max()
            .unwrap_or_default();
        info!(
            rows_buffered = tables.iter().map(|t| t.buffered().rows).sum::<usize>(),
            bytes_buffered = tables.iter().map(|t| t.buffered().bytes).sum::<usize>(),
            bytes_in_memory = self.buffered_bytes(),
            bytes_spilled = stats.bytes_spilled.load(Ordering::Relaxed),
            log_bytes = wal.bytes_on_disk.load(Ordering::Relaxed),
            log_syncs = wal.syncs.load(Ordering::Relaxed),
            rows_appended = stats.rows_appended.load(Ordering::Relaxed),
            flush_commits = stats.flush_commits.load(Ordering::Relaxed),
            rows_flushed = stats.rows_flushed.load(Ordering::Relaxed),
            flush_errors = stats.flush_errors.load(Ordering::Relaxed),
            backpressure_waits = stats.backpressure_waits.load(Ordering::Relaxed),
            flush_lag = ?lag,
            "ingest"
        );
    }
}

impl super::super::commit::CommitGuard<'_> {
    /// Writes the oldest buffered rows not yet flushed by this guard, up to `flush_bytes` and
    /// LSN `upto`, in one Delta commit whose application transaction is the chunk's last LSN.
    /// Returns the rows written and whether rows up to `upto` remain.
    pub(in crate::storage) async fn flush_chunk(
        &mut self,
        table: &Arc<TableHandle>,
        storage: &Storage,
        upto: Lsn,
    ) -> Result<(usize, bool)> {
        let ingest = storage.ingest();
        let after = self.flushed_upto(table);
        let buffered = table.buffered();
        let pending: Vec<&Arc<Entry>> = buffered
            .entries()
            .filter(|e| e.lsn > after && e.lsn <= upto)
            .collect();
        let mut size = 0;
        let take = pending
            .iter()
            .take_while(|e| {
                size += e.bytes;
                size <= ingest.config.flush_bytes
            })
            .count()
            .max(1)
            .min(pending.len());
        let chunk = &pending[..take];
        let Some(last) = chunk.last().map(|e| e.lsn) else {
            return Ok((0, false));
        };
        let started = Instant::now();
        let current = self.current(table);
        let schema = current.meta.stored_schema.clone();
        let mut batches = Vec::new();
        for entry in chunk {
            for batch in entry.batches()? {
                batches.push(conform_to(&batch, &schema)?);
            }
        }
        let batches = sorted_by_key(batches, &schema, &current.meta.primary_key_indices())?;
        let rows: usize = chunk.iter().map(|e| e.rows).sum();
        let bytes: usize = chunk.iter().map(|e| e.bytes).sum();
        let tickets = chunk.iter().map(|e| e.ticket).max().unwrap_or(0);
        let app_id = table.app_id(&storage.app_id);
        let properties = commit_properties()
            .with_application_transaction(Transaction::new(&app_id, last as i64));
        let delta = current
            .table
            .write(table.to_stored(batches)?)
            .with_save_mode(SaveMode::Append)
            .with_writer_properties(writer_properties(&current.meta))
            .with_commit_properties(properties)
            .await
            .map_err(StorageError::commit(&table.name))?;
        self.stage_flushed(table, delta, last, tickets, rows)?;
        ingest.stats.flush_commits.fetch_add(1, Ordering::Relaxed);
        ingest
            .stats
            .rows_flushed
            .fetch_add(rows as u64, Ordering::Relaxed);
        info!(
            table = table.name,
            rows,
            bytes,
            upto_lsn = last,
            elapsed = ?started.elapsed(),
            "flushed to Delta"
        );
        Ok((rows, take < pending.len()))
    }
}
