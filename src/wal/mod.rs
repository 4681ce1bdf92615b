//! The write-ahead log: durable, ordered, checksummed records on local disk, shared fsyncs.
//!
//! Every acknowledged write passes through here before it is answered (ARCHITECTURE.md contract 2).
//! The log is a directory of segment files named by the first log sequence number (LSN) they may
//! hold. Each segment starts with a versioned header; each record is one or more checksummed
//! frames (see `segment`).
//!
//! One writer thread owns the active segment (`writer`). [`Wal::append`] hands it a payload;
//! the thread takes every request waiting at that moment, writes them with one `writev`, syncs
//! once (group commit), runs each request's `on_durable` callback in LSN order, and only then
//! answers. So whatever the callbacks publish (the storage layer's buffers) holds every durable
//! record in order, with no gaps — the property exactly-once flushing relies on. A record may be
//! of any size: a long one is written as several frames that are read back as one (`segment`).
//!
//! Segments are created at full size, zero-filled and synced (by a helper thread, one segment
//! ahead), as PostgreSQL does: a sync then only writes data blocks, where appending to a growing
//! file would also commit the file's new size to the file system journal, costing about ten
//! times as long. An all-zero frame header marks the end of a segment's records.
//!
//! Invariants: LSNs only grow, across restarts too (the active segment is never deleted, and its
//! name carries the next LSN); a frame that fails to be written is cut off before the next one,
//! and if it cannot be cut the log refuses further writes; at open, a torn or corrupt tail of the
//! last segment is detected by length and checksum and truncated, never replayed. Corruption
//! before the tail is an error: the server must not silently skip acknowledged data.
//!
//! The log knows nothing of tables: payloads are bytes, encoded by `storage`.

mod segment;
#[cfg(test)]
mod tests;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;

use tracing::info;

pub use segment::Location;
use segment::{
    HEADER_LEN, Segment, create_segment, list_segments, prepare_spare, read_segment, segment_path,
};
use writer::Writer;

/// Log sequence number: the position of a record; 0 means "none".
pub type Lsn = u64;

/// How far a write goes before it is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Durability {
    /// `fdatasync` before acknowledging: survives power loss. The default.
    #[default]
    Fsync,
    /// Written to the OS page cache before acknowledging: survives a crash of deltagate, not of
    /// the machine. Faster; opt-in only.
    Os,
}

/// Where and how the log is kept.
#[derive(Debug, Clone)]
pub struct WalConfig {
    pub dir: PathBuf,
    pub durability: Durability,
    /// Size of a segment (written in full when created); a new one starts once it is full.
    pub segment_bytes: u64,
    /// The longest frame written: a longer record is split into several frames.
    pub max_frame: usize,
}

impl WalConfig {
    pub fn new(dir: PathBuf) -> WalConfig {
        WalConfig {
            dir,
            durability: Durability::Fsync,
            segment_bytes: 16 << 20,
            max_frame: 64 << 20,
        }
    }
}

/// Errors of the log.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("write-ahead log I/O error at {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("write-ahead log is corrupt in {path} at offset {offset}: {reason}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error("write-ahead log is unavailable after an earlier write failure")]
    Poisoned,
    #[error("write-ahead log writer has stopped")]
    Stopped,
}

pub(crate) type Result<T, E = WalError> = std::result::Result<T, E>;

pub(super) fn io(path: &Path) -> impl Fn(std::io::Error) -> WalError + '_ {
    move |source| WalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A record found at open; [`Location::read`] gives its payload.
#[derive(Debug, Clone)]
pub struct Record {
    pub lsn: Lsn,
    pub location: Location,
}

/// Counters an operator watches.
#[derive(Debug, Default)]
pub struct WalStats {
    pub records: AtomicU64,
    pub bytes_written: AtomicU64,
    pub syncs: AtomicU64,
    /// Bytes in the segments still on disk.
    pub bytes_on_disk: AtomicU64,
}

pub(super) type OnDurable = Box<dyn FnOnce(Location) + Send>;

pub(super) enum Request {
    Append {
        payload: Vec<u8>,
        on_durable: OnDurable,
        reply: tokio::sync::oneshot::Sender<Result<Lsn>>,
    },
    /// Delete closed segments whose records all have LSN ≤ this.
    Release(Lsn),
    /// Finish what came before and stop.
    Stop,
}

/// The log. Dropping it finishes pending requests and waits for the writer thread.
pub struct Wal {
    requests: mpsc::Sender<Request>,
    writer: Option<std::thread::JoinHandle<()>>,
    stats: Arc<WalStats>,
    /// LSN of the last record whose `on_durable` has run.
    published: Arc<AtomicU64>,
    dir: PathBuf,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Wal {
    /// Opens (or creates) the log, returns it with every intact record in LSN order. `floor` is
    /// an LSN the caller knows was used (from Delta `txn` actions), so LSNs keep growing even if
    /// the log directory was lost.
    ///
    /// # Errors
    /// I/O errors, or corruption before the tail of the last segment.
    pub fn open(config: WalConfig, floor: Lsn) -> Result<(Wal, Vec<Record>)> {
        std::fs::create_dir_all(&config.dir).map_err(io(&config.dir))?;
        let mut segments = list_segments(&config.dir)?;
        let mut records = Vec::new();
        let mut next = floor + 1;
        let count = segments.len();
        let mut on_disk = 0;
        for (i, (first, path)) in segments.iter().enumerate() {
            next = next.max(*first);
            let last = i + 1 == count;
            let read = read_segment(path, last)?;
            on_disk += std::fs::metadata(path).map_or(read.len, |m| m.len());
            for record in read.records {
                next = next.max(record.lsn + 1);
                records.push(record);
            }
        }
        // Every start writes into a fresh segment, so a repaired tail is never appended to.
        let active_path = segment_path(&config.dir, next);
        let active = create_segment(&active_path, config.segment_bytes)?;
        let reader = Segment::open(&active_path)?;
        segments.push((next, active_path.clone()));
        on_disk += config.segment_bytes;
        info!(
            dir = %config.dir.display(),
            records = records.len(),
            segments = segments.len(),
            next_lsn = next,
            durability = ?config.durability,
            "write-ahead log opened"
        );
        let stats = Arc::new(WalStats::default());
        stats.bytes_on_disk.store(on_disk, Ordering::Relaxed);
        let published = Arc::new(AtomicU64::new(next - 1));
        let (requests, receiver) = mpsc::channel();
        let writer = Writer {
            config: config.clone(),
            segments,
            file: active,
            reader,
            file_len: HEADER_LEN,
            allocated: config.segment_bytes,
            spare: Some(prepare_spare(&config)),
            next,
            stats: stats.clone(),
            published: published.clone(),
            poisoned: AtomicBool::new(false),
        };
        let writer = std::thread::Builder::new()
            .name("deltagate-wal".into())
            .spawn(move || writer.run(receiver))
            .map_err(io(&config.dir))?;
        Ok((
            Wal {
                requests,
                writer: Some(writer),
                stats,
                published,
                dir: config.dir,
            },
            records,
        ))
    }

    /// Queues a record; [`Pending::durable`] waits until it is synced. Records are ordered (and
    /// numbered) by the order of their `submit` calls. `on_durable` runs on the log's thread with
    /// the record's location (and LSN), after the sync and before any later record's callback;
    /// keep it short and non-blocking.
    ///
    /// # Errors
    /// [`WalError::Stopped`] when the writer thread is gone.
    pub fn submit(
        &self,
        payload: Vec<u8>,
        on_durable: impl FnOnce(Location) + Send + 'static,
    ) -> Result<Pending> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.requests
            .send(Request::Append {
                payload,
                on_durable: Box::new(on_durable),
                reply,
            })
            .map_err(|_| WalError::Stopped)?;
        Ok(Pending(answer))
    }

    /// Appends a record and waits until it is durable (see [`Wal::submit`]).
    ///
    /// # Errors
    /// I/O errors (the record is then not in the log and `on_durable` has not run).
    pub async fn append(
        &self,
        payload: Vec<u8>,
        on_durable: impl FnOnce(Location) + Send + 'static,
    ) -> Result<Lsn> {
        self.submit(payload, on_durable)?.durable().await
    }

    /// Allows segments holding only records at or below `lsn` to be deleted.
    pub fn release(&self, lsn: Lsn) {
        let _ = self.requests.send(Request::Release(lsn));
    }

    /// The last LSN whose record is durable and published.
    pub fn published(&self) -> Lsn {
        self.published.load(Ordering::Acquire)
    }

    pub fn stats(&self) -> &WalStats {
        &self.stats
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        if self.requests.send(Request::Stop).is_ok() {
            // A callback on the writer thread may hold the last handle; it cannot wait for itself.
            if let Some(writer) = self.writer.take()
                && writer.thread().id() != std::thread::current().id()
            {
                let _ = writer.join();
            }
        }
    }
}

/// A submitted record on its way to disk.
#[derive(Debug)]
pub struct Pending(tokio::sync::oneshot::Receiver<Result<Lsn>>);

impl Pending {
    /// Waits until the record is durable.
    ///
    /// # Errors
    /// I/O errors (the record is then not in the log and its callback has not run).
    pub async fn durable(self) -> Result<Lsn> {
        self.0.await.map_err(|_| WalError::Stopped)?
    }
}
