//! Admission: the way of every insert into the log. [`Storage::admit`] applies backpressure
//! (spilling buffers past the memory budget, waiting while the log is past its disk budget) and
//! locks the tables for the writer's key checks; [`Admission::append`] then queues the rows of
//! all tables as one log record and returns once it is durable and published.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::concat_batches;
use tracing::{info, warn};

use crate::wal::Lsn;

use super::super::keys::KeySet;
use super::super::rows::strip_metadata;
use super::super::table::{Stamp, TableHandle};
use super::super::{Result, Storage, StorageError};
use super::Entry;
use super::record::encode_insert;

impl Storage {
    /// Takes the admission locks of tables about to receive rows, after waiting (bounded) while
    /// the log is over its disk budget. Key checks run under the returned [`Admission`], which
    /// then queues the rows in the log.
    ///
    /// # Errors
    /// [`StorageError::BufferFull`] after the backpressure wait.
    pub async fn admit(&self, mut tables: Vec<Arc<TableHandle>>) -> Result<Admission<'_>> {
        self.spill_over_budget();
        self.wait_for_space().await?;
        tables.sort_by_key(|t| t.oid);
        tables.dedup_by_key(|t| t.oid);
        let mut guards = Vec::with_capacity(tables.len());
        for table in tables {
            guards.push(table.lock_admit().await);
        }
        Ok(Admission {
            storage: self,
            _guards: guards,
        })
    }

    fn log_bytes(&self) -> u64 {
        self.ingest()
            .wal
            .stats()
            .bytes_on_disk
            .load(Ordering::Relaxed)
    }

    async fn wait_for_space(&self) -> Result<()> {
        let budget = self.ingest().config.disk_budget;
        if self.log_bytes() <= budget {
            return Ok(());
        }
        self.ingest()
            .stats
            .backpressure_waits
            .fetch_add(1, Ordering::Relaxed);
        let deadline = Instant::now() + self.ingest().config.backpressure_timeout;
        warn!(
            log_bytes = self.log_bytes(),
            budget, "write-ahead log over its disk budget; writer waits for a flush to Delta"
        );
        while self.log_bytes() > budget {
            self.ingest().wake.notify_one();
            let now = Instant::now();
            if now >= deadline {
                return Err(StorageError::BufferFull {
                    waited: self.ingest().config.backpressure_timeout,
                });
            }
            let _ = tokio::time::timeout(
                (deadline - now).min(Duration::from_millis(200)),
                self.ingest().drained.notified(),
            )
            .await;
        }
        Ok(())
    }

    /// Bytes of buffered rows held in memory, all tables together.
    pub fn buffered_bytes(&self) -> usize {
        self.all_tables().iter().map(|t| t.buffered().memory).sum()
    }

    pub(super) fn over_memory_budget(&self) -> bool {
        self.buffered_bytes() > self.ingest().config.memory_budget
    }

    /// Past the memory budget, drops the in-memory copies of the oldest buffered rows (largest
    /// buffers first) down to half the budget; they stay in the log and are read from there.
    pub(in crate::storage) fn spill_over_budget(&self) {
        let budget = self.ingest().config.memory_budget;
        let held = self.buffered_bytes();
        if held <= budget {
            return;
        }
        let mut want = held - budget / 2;
        let mut tables = self.all_tables();
        tables.sort_by_key(|t| std::cmp::Reverse(t.buffered().memory));
        let mut freed = 0;
        for table in tables {
            if want == 0 {
                break;
            }
            let spilled = table.spill(want);
            want = want.saturating_sub(spilled);
            freed += spilled;
        }
        self.ingest()
            .stats
            .bytes_spilled
            .fetch_add(freed as u64, Ordering::Relaxed);
        info!(
            freed,
            budget, "write buffers over their memory budget; oldest rows now read from the log"
        );
    }
}

/// Tables locked for admitting a write; see [`Storage::admit`].
pub struct Admission<'a> {
    storage: &'a Storage,
    _guards: Vec<tokio::sync::OwnedMutexGuard<()>>,
}

/// The rows of one table for [`Admission::append`].
pub struct Append {
    pub table: Arc<TableHandle>,
    pub batches: Vec<RecordBatch>,
    /// The packed primary keys of the rows, as the key check packed them (see `NewRows`);
    /// `None`: packed when indexed.
    pub keys: Option<KeySet>,
    /// `None`: the rows' keys were checked under this admission. `Some(stamp)`: they were
    /// checked against the table at `stamp`, before rows other writers added since, so the
    /// append claims them (see [`Appended::Refused`]).
    pub checked_at: Option<Stamp>,
}

/// What [`Admission::append`] did.
pub enum Appended<'a> {
    /// The rows are durable and visible, at this log position.
    Durable(Lsn),
    /// Nothing was stored: rows other writers added since `checked_at` may hold one of the
    /// keys. The caller checks the rows again under the admission handed back.
    Refused(Admission<'a>),
}

impl<'a> Admission<'a> {
    /// Queues rows for several tables as one log record, releases the admission locks, and
    /// returns once the record is synced and the rows are visible to every session. Until then
    /// the rows are "in flight": seen by key checks of later writers, not by readers.
    ///
    /// # Errors
    /// Log I/O errors; the rows are then not stored.
    pub async fn append(self, tables: Vec<Append>) -> Result<Appended<'a>> {
        let mut encoded = Vec::with_capacity(tables.len());
        let mut claims = Vec::with_capacity(tables.len());
        for Append {
            table,
            batches,
            keys,
            checked_at,
        } in tables
        {
            let mut batches = strip_metadata(batches)?;
            // Many small statements' rows become one batch (tiny batches slow every scan);
            // large ones (COPY's chunks) are kept as they are rather than copied again.
            let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
            if batches.len() > 1 && rows / batches.len() < 8192 {
                let schema = batches[0].schema();
                batches = vec![
                    concat_batches(&schema, &batches)
                        .map_err(|e| StorageError::DataFusion(e.into()))?,
                ];
            }
            if batches.iter().any(|b| b.num_rows() > 0) {
                let id = table.state().table_id();
                encoded.push((table, id, batches));
                claims.push((keys, checked_at));
            }
        }
        if encoded.is_empty() {
            return Ok(Appended::Durable(0));
        }
        let storage = self.storage;
        let payload = encode_insert(&encoded)?;
        let ticket = storage.ingest().tickets.fetch_add(1, Ordering::Relaxed);
        let mut publish: Vec<(Arc<TableHandle>, Vec<RecordBatch>)> =
            Vec::with_capacity(encoded.len());
        for ((table, _, batches), (keys, checked_at)) in encoded.into_iter().zip(claims) {
            let queued = table.add_inflight(ticket, batches.clone(), keys.as_ref(), checked_at);
            if !matches!(queued, Ok(true)) {
                for (table, _) in &publish {
                    table.fail_inflight(ticket);
                }
                return queued.map(|_| Appended::Refused(self));
            }
            publish.push((table, batches));
        }
        let tables: Vec<Arc<TableHandle>> = publish.iter().map(|(t, _)| t.clone()).collect();
        let rows: usize = publish
            .iter()
            .flat_map(|(_, b)| b)
            .map(RecordBatch::num_rows)
            .sum();
        let ingest = storage.ingest().clone();
        // No lock that readers hold: a multi-table record becomes visible to them when the log
        // counts it published, after this callback has pushed every part (see `View`).
        let submitted = storage.ingest().wal.submit(payload, move |location| {
            for (part, (table, batches)) in publish.into_iter().enumerate() {
                // Only replayed rows can fail here (indexing); these were indexed when queued.
                let entry = Entry::logged(location.clone(), part, ticket, batches);
                let _ = table.push_buffered(entry, false);
            }
            ingest
                .stats
                .rows_appended
                .fetch_add(rows as u64, Ordering::Relaxed);
        });
        // Later writers may now check against these rows (in flight) and queue behind them.
        drop(self);
        let result = match submitted {
            Ok(pending) => pending.durable().await,
            Err(e) => Err(e),
        };
        if result.is_err() {
            for table in &tables {
                table.fail_inflight(ticket);
            }
        }
        // Only when a threshold is reached: a wake per commit would cost a task switch each.
        let over_budget = storage.over_memory_budget();
        let config = &storage.ingest().config;
        if tables
            .iter()
            .any(|t| config.flush_due(&t.buffered(), over_budget))
        {
            storage.ingest().wake.notify_one();
        }
        Ok(Appended::Durable(result?))
    }
}
