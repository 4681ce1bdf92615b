//! Ingest: rows that are durable in the write-ahead log but not yet in Delta, and the machinery
//! that moves them there.
//!
//! ```text
//!   Storage::admit ──► Admission::append ──► Wal::submit ─(sync)─► on_durable ──► BufferedRows
//!   (admission)         one log record        (wal writer)          push, LSN order   (buffer)
//!                       for every table                                   │
//!   run_flusher ──► flush_table ──► CommitGuard::flush_chunk ──► Delta commit, txn(app, LSN)
//!   (flusher)        up to the published LSN                       then release_log
//! ```
//!
//! Inserts reach a table's [`BufferedRows`] only through the log: the log calls back in LSN
//! order once a record is synced, and the callback publishes the rows into the table's
//! snapshot, where every query sees them next to the Delta rows (ARCHITECTURE.md contracts 2, 9
//! and 10). The flusher writes a table's buffered rows to Delta in commits carrying the Delta
//! application transaction `(app id, highest LSN flushed)`; a restart replays only records above
//! each table's transaction version, so each row reaches Delta exactly once. The log is released
//! up to the lowest LSN still buffered anywhere (contract 11). Past `--buffer-memory` the oldest
//! entries drop their in-memory rows and are read back from the log (`buffer`).
//!
//! Rooms: `admission` (backpressure, key-checked admission, the append), `buffer` (the
//! per-table list of log entries), `record` (the log record format), `flusher` (flushes, log
//! release, the background task).

mod admission;
mod buffer;
mod flusher;
mod record;

use std::sync::atomic::AtomicU64;
use std::time::Duration;

pub use admission::{Admission, Append, Appended};
pub use buffer::{BufferedRows, Entry};
pub(super) use record::decode_insert;

/// Tuning of the buffer and flusher.
#[derive(Debug, Clone)]
pub struct BufferConfig {
    /// Flush a table once its buffer holds this many rows...
    pub flush_rows: usize,
    /// ...or this many bytes...
    pub flush_bytes: usize,
    /// ...or its oldest row is this old.
    pub flush_age: Duration,
    /// Memory all tables' buffers may hold together; past it, the oldest buffered rows are
    /// dropped from memory and read back from the log when needed.
    pub memory_budget: usize,
    /// Disk the write-ahead log may take; writers wait while it is exceeded (Delta is behind).
    pub disk_budget: u64,
    /// How long a writer waits for log space before failing with SQLSTATE 53000.
    pub backpressure_timeout: Duration,
}

impl Default for BufferConfig {
    fn default() -> BufferConfig {
        BufferConfig {
            flush_rows: 2_000_000,
            flush_bytes: 128 << 20,
            flush_age: Duration::from_secs(30),
            memory_budget: 1 << 30,
            disk_budget: 16 << 30,
            backpressure_timeout: Duration::from_secs(60),
        }
    }
}

impl BufferConfig {
    /// Whether a table's buffer is to be flushed now (`over_budget`: all buffers together hold
    /// more than the memory budget).
    pub(in crate::storage) fn flush_due(&self, buffered: &BufferedRows, over_budget: bool) -> bool {
        !buffered.is_empty()
            && (over_budget
                || buffered.rows >= self.flush_rows
                || buffered.bytes >= self.flush_bytes
                || buffered
                    .oldest()
                    .is_some_and(|t| t.elapsed() >= self.flush_age))
    }
}

/// Counters of the ingest path, for logs and `pg_stat`-style views.
#[derive(Debug, Default)]
pub struct IngestStats {
    pub rows_appended: AtomicU64,
    pub flush_commits: AtomicU64,
    pub rows_flushed: AtomicU64,
    pub flush_errors: AtomicU64,
    pub backpressure_waits: AtomicU64,
    /// Bytes of buffered rows dropped from memory (kept in the log only).
    pub bytes_spilled: AtomicU64,
}

/// The ingest machinery a [`Storage`] owns.
pub(crate) struct Ingest {
    pub wal: crate::wal::Wal,
    pub config: BufferConfig,
    pub stats: IngestStats,
    /// Wakes the flusher early (a buffer grew or a writer is waiting).
    pub wake: tokio::sync::Notify,
    /// Signalled after each flush round, for writers waiting on the budget.
    pub drained: tokio::sync::Notify,
    /// Identifies in-flight writes.
    pub tickets: AtomicU64,
}

impl Ingest {
    pub(crate) fn new(wal: crate::wal::Wal, config: BufferConfig) -> Ingest {
        Ingest {
            wal,
            config,
            stats: IngestStats::default(),
            wake: tokio::sync::Notify::new(),
            drained: tokio::sync::Notify::new(),
            tickets: AtomicU64::new(1),
        }
    }
}
