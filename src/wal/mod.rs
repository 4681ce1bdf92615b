//! The write-ahead log: durable, ordered, checksummed records on local disk, shared fsyncs.
//!
//! Every acknowledged write passes through here before it is answered (DESIGN.md contract 2).
//! The log is a directory of segment files named by the first log sequence number (LSN) they may
//! hold. Each segment starts with a versioned header; each record is a frame
//!
//! ```text
//!   len: u32 LE | crc32: u32 LE (of lsn and payload) | lsn: u64 LE | payload: len bytes
//! ```
//!
//! One writer thread owns the active segment. [`Wal::append`] hands it a payload; the thread
//! takes every request waiting at that moment, writes them with one `write`, syncs once (group
//! commit), runs each request's `on_durable` callback in LSN order, and only then answers. So
//! whatever the callbacks publish (the storage layer's buffers) holds every durable record in
//! order, with no gaps — the property exactly-once flushing relies on.
//!
//! Invariants: LSNs only grow, across restarts too (the active segment is never deleted, and its
//! name carries the next LSN); a frame that fails to be written is cut off before the next one,
//! and if it cannot be cut the log refuses further writes; at open, a torn or corrupt tail of the
//! last segment is detected by length and checksum and truncated, never replayed. Corruption
//! before the tail is an error: the server must not silently skip acknowledged data.
//!
//! The log knows nothing of tables: payloads are bytes, encoded by `storage`.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Instant;

use tracing::{debug, error, info, warn};

/// Log sequence number: the position of a record; 0 means "none".
pub type Lsn = u64;

const MAGIC: &[u8; 8] = b"DGWAL\0\0\x01";
const HEADER_LEN: u64 = 8;
const FRAME_HEADER: usize = 16;
/// A frame larger than this is treated as corruption (a torn length field), not allocated.
const MAX_FRAME: u32 = 1 << 30;
const SEGMENT_SUFFIX: &str = ".wal";

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
    /// A segment is closed and a new one started past this size.
    pub segment_bytes: u64,
}

impl WalConfig {
    pub fn new(dir: PathBuf) -> WalConfig {
        WalConfig {
            dir,
            durability: Durability::Fsync,
            segment_bytes: 64 << 20,
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

type Result<T, E = WalError> = std::result::Result<T, E>;

fn io(path: &Path) -> impl Fn(std::io::Error) -> WalError + '_ {
    move |source| WalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A record read back at open.
#[derive(Debug)]
pub struct Record {
    pub lsn: Lsn,
    pub payload: Vec<u8>,
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

type OnDurable = Box<dyn FnOnce(Lsn) + Send>;

enum Request {
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
            on_disk += read.len;
            for record in read.records {
                next = next.max(record.lsn + 1);
                records.push(record);
            }
        }
        // Every start writes into a fresh segment, so a repaired tail is never appended to.
        let active_path = segment_path(&config.dir, next);
        let active = create_segment(&active_path)?;
        segments.push((next, active_path.clone()));
        on_disk += HEADER_LEN;
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
            file_len: HEADER_LEN,
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
    /// the record's LSN, after the sync and before any later record's callback; keep it short
    /// and non-blocking.
    ///
    /// # Errors
    /// [`WalError::Stopped`] when the writer thread is gone.
    pub fn submit(
        &self,
        payload: Vec<u8>,
        on_durable: impl FnOnce(Lsn) + Send + 'static,
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
        on_durable: impl FnOnce(Lsn) + Send + 'static,
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

struct Writer {
    config: WalConfig,
    /// Segments on disk, oldest first; the last is the active one.
    segments: Vec<(Lsn, PathBuf)>,
    file: File,
    file_len: u64,
    next: Lsn,
    stats: Arc<WalStats>,
    published: Arc<AtomicU64>,
    poisoned: AtomicBool,
}

impl Writer {
    fn run(mut self, receiver: mpsc::Receiver<Request>) {
        while let Ok(first) = receiver.recv() {
            let mut appends = Vec::new();
            let mut release = None;
            // Returns whether to stop after this group.
            let mut take = |request: Request| match request {
                Request::Append {
                    payload,
                    on_durable,
                    reply,
                } => {
                    appends.push((payload, on_durable, reply));
                    false
                }
                Request::Release(lsn) => {
                    release = Some(release.unwrap_or(0).max(lsn));
                    false
                }
                Request::Stop => true,
            };
            let mut stopping = take(first);
            while !stopping {
                match receiver.try_recv() {
                    Ok(more) => stopping = take(more),
                    Err(_) => break,
                }
            }
            if !appends.is_empty() {
                self.write_group(appends);
            }
            if let Some(lsn) = release {
                self.release(lsn);
            }
            if stopping {
                break;
            }
        }
        debug!("write-ahead log writer stopped");
    }

    fn write_group(
        &mut self,
        appends: Vec<(
            Vec<u8>,
            OnDurable,
            tokio::sync::oneshot::Sender<Result<Lsn>>,
        )>,
    ) {
        if self.poisoned.load(Ordering::Relaxed) {
            for (_, _, reply) in appends {
                let _ = reply.send(Err(WalError::Poisoned));
            }
            return;
        }
        let started = Instant::now();
        let first_lsn = self.next;
        let mut frames = Vec::with_capacity(appends.iter().map(|a| a.0.len() + FRAME_HEADER).sum());
        for (i, (payload, _, _)) in appends.iter().enumerate() {
            encode_frame(&mut frames, first_lsn + i as u64, payload);
        }
        match self.write_and_sync(&frames) {
            Ok(()) => {
                let count = appends.len() as u64;
                self.next += count;
                self.stats.records.fetch_add(count, Ordering::Relaxed);
                self.stats
                    .bytes_written
                    .fetch_add(frames.len() as u64, Ordering::Relaxed);
                self.stats
                    .bytes_on_disk
                    .fetch_add(frames.len() as u64, Ordering::Relaxed);
                self.stats.syncs.fetch_add(1, Ordering::Relaxed);
                let mut answers = Vec::with_capacity(appends.len());
                for (i, (_, on_durable, reply)) in appends.into_iter().enumerate() {
                    let lsn = first_lsn + i as u64;
                    on_durable(lsn);
                    self.published.store(lsn, Ordering::Release);
                    answers.push((lsn, reply));
                }
                for (lsn, reply) in answers {
                    let _ = reply.send(Ok(lsn));
                }
                debug!(records = count, bytes = frames.len(), elapsed = ?started.elapsed(), "log group written");
                if self.file_len >= self.config.segment_bytes {
                    self.roll();
                }
            }
            Err(e) => {
                error!(error = %e, "write-ahead log write failed");
                // Cut whatever part of the group reached the file, so later frames never follow
                // a torn one; if even that fails, stop writing altogether.
                let cut = self
                    .file
                    .set_len(self.file_len)
                    .and_then(|()| self.file.seek(SeekFrom::Start(self.file_len)).map(|_| ()));
                if let Err(cut) = cut {
                    error!(error = %cut, "could not cut a failed log write; refusing further writes");
                    self.poisoned.store(true, Ordering::Relaxed);
                }
                let message = e.to_string();
                for (_, _, reply) in appends {
                    let _ = reply.send(Err(WalError::Io {
                        path: self.active_path().to_path_buf(),
                        source: std::io::Error::other(message.clone()),
                    }));
                }
            }
        }
    }

    fn active_path(&self) -> &Path {
        &self.segments.last().expect("an active segment").1
    }

    fn write_and_sync(&mut self, frames: &[u8]) -> std::io::Result<()> {
        self.file.write_all(frames)?;
        if self.config.durability == Durability::Fsync {
            self.file.sync_data()?;
        }
        self.file_len += frames.len() as u64;
        Ok(())
    }

    fn roll(&mut self) {
        let path = segment_path(&self.config.dir, self.next);
        match create_segment(&path) {
            Ok(file) => {
                debug!(segment = %path.display(), "log segment started");
                self.file = file;
                self.file_len = HEADER_LEN;
                self.segments.push((self.next, path));
                self.stats
                    .bytes_on_disk
                    .fetch_add(HEADER_LEN, Ordering::Relaxed);
            }
            // Keep appending to the current segment; rolling is retried after the next group.
            Err(e) => warn!(error = %e, "could not start a new log segment"),
        }
    }

    /// Deletes closed segments whose successor starts at or below `lsn + 1`.
    fn release(&mut self, lsn: Lsn) {
        while self.segments.len() > 1 && self.segments[1].0 <= lsn + 1 {
            let (_, path) = self.segments.remove(0);
            let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    self.stats.bytes_on_disk.fetch_sub(
                        len.min(self.stats.bytes_on_disk.load(Ordering::Relaxed)),
                        Ordering::Relaxed,
                    );
                    debug!(segment = %path.display(), "log segment released");
                }
                Err(e) => {
                    warn!(segment = %path.display(), error = %e, "could not delete log segment");
                    self.segments.insert(0, (0, path));
                    break;
                }
            }
        }
    }
}

fn encode_frame(out: &mut Vec<u8>, lsn: Lsn, payload: &[u8]) {
    let mut crc = crc32fast::Hasher::new();
    crc.update(&lsn.to_le_bytes());
    crc.update(payload);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(&lsn.to_le_bytes());
    out.extend_from_slice(payload);
}

fn segment_path(dir: &Path, first: Lsn) -> PathBuf {
    dir.join(format!("{first:020}{SEGMENT_SUFFIX}"))
}

fn list_segments(dir: &Path) -> Result<Vec<(Lsn, PathBuf)>> {
    let mut segments = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let name = entry.file_name();
        let Some(first) = name
            .to_str()
            .and_then(|n| n.strip_suffix(SEGMENT_SUFFIX))
            .and_then(|n| n.parse::<Lsn>().ok())
        else {
            continue;
        };
        segments.push((first, entry.path()));
    }
    segments.sort();
    Ok(segments)
}

fn create_segment(path: &Path) -> Result<File> {
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(path)
        .map_err(io(path))?;
    file.write_all(MAGIC).map_err(io(path))?;
    file.sync_all().map_err(io(path))?;
    // The new name must be durable too, or a crash could lose the segment's directory entry.
    if let Some(dir) = path.parent() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io(dir))?;
    }
    Ok(file)
}

struct SegmentRead {
    records: Vec<Record>,
    len: u64,
}

/// Reads a segment's frames. In the last segment, a torn or corrupt tail is cut off.
fn read_segment(path: &Path, last: bool) -> Result<SegmentRead> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(io(path))?;
    let corrupt = |offset: u64, reason: &str| WalError::Corrupt {
        path: path.to_path_buf(),
        offset,
        reason: reason.to_string(),
    };
    if bytes.len() < HEADER_LEN as usize || &bytes[..HEADER_LEN as usize] != MAGIC {
        if last && bytes.len() <= HEADER_LEN as usize && MAGIC.starts_with(&bytes) {
            // Created but its header never fully written: an empty segment.
            return Ok(SegmentRead {
                records: Vec::new(),
                len: bytes.len() as u64,
            });
        }
        return Err(corrupt(
            0,
            "not a deltagate log segment (unknown header or version)",
        ));
    }
    let mut records = Vec::new();
    let mut offset = HEADER_LEN as usize;
    let mut torn = None;
    while offset < bytes.len() {
        let rest = &bytes[offset..];
        if rest.len() < FRAME_HEADER {
            torn = Some("incomplete frame header");
            break;
        }
        let len = u32::from_le_bytes(rest[0..4].try_into().expect("4 bytes"));
        let crc = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes"));
        let lsn = u64::from_le_bytes(rest[8..16].try_into().expect("8 bytes"));
        if len > MAX_FRAME || rest.len() < FRAME_HEADER + len as usize {
            torn = Some("incomplete frame");
            break;
        }
        let payload = &rest[FRAME_HEADER..FRAME_HEADER + len as usize];
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&lsn.to_le_bytes());
        hasher.update(payload);
        if hasher.finalize() != crc {
            torn = Some("checksum mismatch");
            break;
        }
        records.push(Record {
            lsn,
            payload: payload.to_vec(),
        });
        offset += FRAME_HEADER + len as usize;
    }
    if let Some(reason) = torn {
        if !last {
            return Err(corrupt(offset as u64, reason));
        }
        warn!(
            segment = %path.display(),
            offset,
            cut = bytes.len() - offset,
            reason,
            "cutting the torn tail of the write-ahead log"
        );
        let file = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(io(path))?;
        file.set_len(offset as u64).map_err(io(path))?;
        file.sync_all().map_err(io(path))?;
    }
    Ok(SegmentRead {
        records,
        len: offset as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path) -> WalConfig {
        WalConfig {
            segment_bytes: 200,
            ..WalConfig::new(dir.to_path_buf())
        }
    }

    #[tokio::test]
    async fn records_survive_reopen_and_torn_tails_are_cut() {
        let dir = tempfile::tempdir().expect("tempdir");
        let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
        {
            let (wal, records) = Wal::open(config(dir.path()), 0).expect("open");
            assert!(records.is_empty());
            for i in 0..20u8 {
                let seen = seen.clone();
                let lsn = wal
                    .append(vec![i; 50], move |lsn| seen.lock().push(lsn))
                    .await
                    .expect("append");
                assert_eq!(lsn, i as u64 + 1);
            }
            assert_eq!(wal.published(), 20);
        }
        assert_eq!(*seen.lock(), (1..=20).collect::<Vec<_>>());
        // Tear the last record of the newest non-empty segment.
        let segments = list_segments(dir.path()).expect("list");
        let (_, torn) = segments
            .iter()
            .rev()
            .find(|(_, p)| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0) > HEADER_LEN)
            .expect("a segment with records")
            .clone();
        // Make the torn segment the last one, as after a crash mid-write.
        for (_, p) in &segments {
            if p > &torn {
                std::fs::remove_file(p).expect("remove");
            }
        }
        let len = std::fs::metadata(&torn).expect("meta").len();
        OpenOptions::new()
            .write(true)
            .open(&torn)
            .expect("open")
            .set_len(len - 10)
            .expect("tear");
        let (wal, records) = Wal::open(config(dir.path()), 0).expect("reopen");
        let lsns: Vec<Lsn> = records.iter().map(|r| r.lsn).collect();
        assert_eq!(lsns, (1..=19).collect::<Vec<_>>());
        assert!(
            records
                .iter()
                .all(|r| r.payload == vec![(r.lsn - 1) as u8; 50])
        );
        // LSNs keep growing after the cut record.
        let lsn = wal.append(vec![1], |_| {}).await.expect("append");
        assert_eq!(lsn, 20);
        // Releasing everything keeps the active segment, and the next open continues after it.
        wal.release(20);
        drop(wal);
        let (wal, _) = Wal::open(config(dir.path()), 0).expect("reopen");
        assert_eq!(wal.append(vec![2], |_| {}).await.expect("append"), 21);
    }

    #[test]
    fn corruption_before_the_tail_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = segment_path(dir.path(), 1);
        let mut bytes = MAGIC.to_vec();
        encode_frame(&mut bytes, 1, b"hello");
        bytes[HEADER_LEN as usize + FRAME_HEADER] ^= 0xff;
        std::fs::write(&first, &bytes).expect("write");
        create_segment(&segment_path(dir.path(), 2)).expect("second");
        match Wal::open(config(dir.path()), 0) {
            Err(WalError::Corrupt { .. }) => {}
            other => panic!("expected corruption error, got {other:?}"),
        }
    }
}
