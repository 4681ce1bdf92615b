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

use std::fs::{File, OpenOptions};
use std::io::{IoSlice, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
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
    /// Size of a segment (written in full when created); a new one starts once it is full.
    pub segment_bytes: u64,
}

impl WalConfig {
    pub fn new(dir: PathBuf) -> WalConfig {
        WalConfig {
            dir,
            durability: Durability::Fsync,
            segment_bytes: 16 << 20,
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

/// A record found at open; [`Location::read`] gives its payload.
#[derive(Debug, Clone)]
pub struct Record {
    pub lsn: Lsn,
    pub location: Location,
}

/// Where a durable record lies, so that its payload can be read back while its segment exists
/// (the storage layer keeps buffered rows there instead of in memory when memory runs short).
/// Holds the segment open: a reader keeps working even after the segment is released.
#[derive(Debug, Clone)]
pub struct Location {
    pub lsn: Lsn,
    segment: Arc<Segment>,
    offset: u64,
    len: u32,
}

#[derive(Debug)]
struct Segment {
    path: PathBuf,
    file: File,
}

impl Segment {
    fn open(path: &Path) -> Result<Arc<Segment>> {
        Ok(Arc::new(Segment {
            path: path.to_path_buf(),
            file: File::open(path).map_err(io(path))?,
        }))
    }
}

impl Location {
    /// Reads the record's payload, checking its frame again.
    ///
    /// # Errors
    /// I/O errors, or a frame that no longer matches (the log was tampered with).
    pub fn read(&self) -> Result<Vec<u8>> {
        let path = &self.segment.path;
        let mut frame = vec![0u8; FRAME_HEADER + self.len as usize];
        self.segment
            .file
            .read_exact_at(&mut frame, self.offset)
            .map_err(io(path))?;
        match check_frame(&frame) {
            Some((lsn, payload)) if lsn == self.lsn && payload.len() == self.len as usize => {
                frame.drain(..FRAME_HEADER);
                Ok(frame)
            }
            _ => Err(WalError::Corrupt {
                path: path.clone(),
                offset: self.offset,
                reason: format!("record {} no longer matches its frame", self.lsn),
            }),
        }
    }
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

type OnDurable = Box<dyn FnOnce(Location) + Send>;

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

struct Writer {
    config: WalConfig,
    /// Segments on disk, oldest first; the last is the active one.
    segments: Vec<(Lsn, PathBuf)>,
    file: File,
    /// The active segment opened for reading, shared by the locations of its records.
    reader: Arc<Segment>,
    /// Bytes of records in the active segment (from its start, header included).
    file_len: u64,
    /// Size of the active segment's file.
    allocated: u64,
    /// The next segment, being created and zero-filled by a helper thread.
    spare: Option<std::thread::JoinHandle<std::io::Result<File>>>,
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
        let mut headers = Vec::with_capacity(appends.len());
        let mut locations = Vec::with_capacity(appends.len());
        let mut bytes = 0u64;
        for (i, (payload, _, _)) in appends.iter().enumerate() {
            let lsn = first_lsn + i as u64;
            locations.push(Location {
                lsn,
                segment: self.reader.clone(),
                offset: self.file_len + bytes,
                len: payload.len() as u32,
            });
            headers.push(frame_header(lsn, payload));
            bytes += (FRAME_HEADER + payload.len()) as u64;
        }
        let mut frames: Vec<IoSlice> = headers
            .iter()
            .zip(&appends)
            .flat_map(|(header, (payload, _, _))| [IoSlice::new(header), IoSlice::new(payload)])
            .collect();
        let written = self.write_and_sync(&mut frames, bytes);
        drop(frames);
        match written {
            Ok(()) => {
                let count = appends.len() as u64;
                self.next += count;
                self.stats.records.fetch_add(count, Ordering::Relaxed);
                self.stats.bytes_written.fetch_add(bytes, Ordering::Relaxed);
                if self.file_len > self.allocated {
                    self.stats
                        .bytes_on_disk
                        .fetch_add(self.file_len - self.allocated, Ordering::Relaxed);
                    self.allocated = self.file_len;
                }
                self.stats.syncs.fetch_add(1, Ordering::Relaxed);
                let mut answers = Vec::with_capacity(appends.len());
                for ((_, on_durable, reply), location) in appends.into_iter().zip(locations) {
                    let lsn = location.lsn;
                    on_durable(location);
                    self.published.store(lsn, Ordering::Release);
                    answers.push((lsn, reply));
                }
                for (lsn, reply) in answers {
                    let _ = reply.send(Ok(lsn));
                }
                debug!(records = count, bytes, elapsed = ?started.elapsed(), "log group written");
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
                match cut {
                    Ok(()) => {
                        let shrunk = self.allocated.saturating_sub(self.file_len);
                        self.stats.bytes_on_disk.fetch_sub(
                            shrunk.min(self.stats.bytes_on_disk.load(Ordering::Relaxed)),
                            Ordering::Relaxed,
                        );
                        self.allocated = self.file_len;
                    }
                    Err(cut) => {
                        error!(error = %cut, "could not cut a failed log write; refusing further writes");
                        self.poisoned.store(true, Ordering::Relaxed);
                    }
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

    /// Writes frames (`bytes` in all) with as few `writev` calls as the kernel allows, straight
    /// from where the payloads are, and syncs them.
    fn write_and_sync(&mut self, frames: &mut [IoSlice], bytes: u64) -> std::io::Result<()> {
        let mut rest = frames;
        while !rest.is_empty() {
            let written = match self.file.write_vectored(rest) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            IoSlice::advance_slices(&mut rest, written);
        }
        if self.config.durability == Durability::Fsync {
            self.file.sync_data()?;
        }
        self.file_len += bytes;
        Ok(())
    }

    fn roll(&mut self) {
        let path = segment_path(&self.config.dir, self.next);
        match self.next_segment(&path) {
            Ok((file, reader)) => {
                debug!(segment = %path.display(), "log segment started");
                self.file = file;
                self.reader = reader;
                self.file_len = HEADER_LEN;
                self.allocated = self.config.segment_bytes;
                self.segments.push((self.next, path));
                self.stats
                    .bytes_on_disk
                    .fetch_add(self.allocated, Ordering::Relaxed);
            }
            // Keep appending to the current segment; rolling is retried after the next group.
            Err(e) => warn!(error = %e, "could not start a new log segment"),
        }
        self.spare = Some(prepare_spare(&self.config));
    }

    /// The prepared spare renamed to `path`, or (if preparing it failed) a segment created now.
    fn next_segment(&mut self, path: &Path) -> Result<(File, Arc<Segment>)> {
        let spare = self.spare.take().map(|helper| {
            helper
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("panicked")))
        });
        let file = match spare {
            Some(Ok(file)) => {
                let spare_path = spare_path(&self.config.dir);
                std::fs::rename(&spare_path, path).map_err(io(path))?;
                sync_dir(path)?;
                file
            }
            Some(Err(e)) => {
                warn!(error = %e, "could not prepare a log segment ahead; creating it now");
                create_segment(path, self.config.segment_bytes)?
            }
            None => create_segment(path, self.config.segment_bytes)?,
        };
        Ok((file, Segment::open(path)?))
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

fn frame_header(lsn: Lsn, payload: &[u8]) -> [u8; FRAME_HEADER] {
    let mut crc = crc32fast::Hasher::new();
    crc.update(&lsn.to_le_bytes());
    crc.update(payload);
    let mut header = [0u8; FRAME_HEADER];
    header[0..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    header[4..8].copy_from_slice(&crc.finalize().to_le_bytes());
    header[8..16].copy_from_slice(&lsn.to_le_bytes());
    header
}

#[cfg(test)]
fn encode_frame(out: &mut Vec<u8>, lsn: Lsn, payload: &[u8]) {
    out.extend_from_slice(&frame_header(lsn, payload));
    out.extend_from_slice(payload);
}

/// The LSN and payload of a complete frame whose checksum matches.
fn check_frame(frame: &[u8]) -> Option<(Lsn, &[u8])> {
    let header = frame.get(..FRAME_HEADER)?;
    let len = u32::from_le_bytes(header[0..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(header[4..8].try_into().ok()?);
    let lsn = u64::from_le_bytes(header[8..16].try_into().ok()?);
    let payload = frame.get(FRAME_HEADER..FRAME_HEADER + len)?;
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&lsn.to_le_bytes());
    hasher.update(payload);
    (hasher.finalize() == crc).then_some((lsn, payload))
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

/// Creates a segment of `size` bytes: the header, then zeros, synced with its directory entry.
fn create_segment(path: &Path, size: u64) -> Result<File> {
    let file = write_segment(path, size).map_err(io(path))?;
    sync_dir(path)?;
    Ok(file)
}

fn write_segment(path: &Path, size: u64) -> std::io::Result<File> {
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(path)?;
    file.write_all(MAGIC)?;
    let zeros = vec![0u8; 1 << 20];
    let mut left = size.saturating_sub(HEADER_LEN);
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        file.write_all(&zeros[..n])?;
        left -= n as u64;
    }
    file.sync_all()?;
    file.seek(SeekFrom::Start(HEADER_LEN))?;
    Ok(file)
}

/// Makes a new name in the log directory durable, or a crash could lose the directory entry.
fn sync_dir(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io(dir))?;
    }
    Ok(())
}

fn spare_path(dir: &Path) -> PathBuf {
    dir.join("next-segment.tmp")
}

/// Starts writing the next segment under a temporary name (renamed when it is needed).
fn prepare_spare(config: &WalConfig) -> std::thread::JoinHandle<std::io::Result<File>> {
    let path = spare_path(&config.dir);
    let size = config.segment_bytes;
    std::thread::spawn(move || write_segment(&path, size))
}

struct SegmentRead {
    records: Vec<Record>,
    len: u64,
}

/// Checks a segment's frames and locates its records (one segment in memory at a time). In the
/// last segment, a torn or corrupt tail is cut off.
fn read_segment(path: &Path, last: bool) -> Result<SegmentRead> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(io(path))?;
    let segment = Segment::open(path)?;
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
        if rest[..FRAME_HEADER].iter().all(|b| *b == 0) {
            // The zero-filled rest of the segment.
            break;
        }
        let len = u32::from_le_bytes(rest[0..4].try_into().expect("4 bytes"));
        if len > MAX_FRAME || rest.len() < FRAME_HEADER + len as usize {
            torn = Some("incomplete frame");
            break;
        }
        let Some((lsn, _)) = check_frame(&rest[..FRAME_HEADER + len as usize]) else {
            torn = Some("checksum mismatch");
            break;
        };
        records.push(Record {
            lsn,
            location: Location {
                lsn,
                segment: segment.clone(),
                offset: offset as u64,
                len,
            },
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
                    .append(vec![i; 50], move |at| seen.lock().push(at.lsn))
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
            .find(|(_, p)| read_segment(p, false).is_ok_and(|r| !r.records.is_empty()))
            .expect("a segment with records")
            .clone();
        // Make the torn segment the last one, as after a crash mid-write.
        for (_, p) in &segments {
            if p > &torn {
                std::fs::remove_file(p).expect("remove");
            }
        }
        // Cut inside the last record (the segment is zero-filled after its records).
        let len = read_segment(&torn, true).expect("read").len;
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
                .all(|r| r.location.read().expect("read") == vec![(r.lsn - 1) as u8; 50])
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

    #[tokio::test]
    async fn a_location_reads_its_record_back_even_after_release() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (wal, _) = Wal::open(config(dir.path()), 0).expect("open");
        let locations = Arc::new(parking_lot::Mutex::new(Vec::new()));
        for i in 0..10u8 {
            let locations = locations.clone();
            wal.append(vec![i; 60], move |at| locations.lock().push(at))
                .await
                .expect("append");
        }
        let locations = locations.lock().clone();
        assert!(
            locations
                .iter()
                .all(|at| at.read().expect("read") == vec![(at.lsn - 1) as u8; 60])
        );
        // Every record released: the closed segments are deleted...
        wal.release(10);
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        while locations[0].segment.path.exists() && Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(!locations[0].segment.path.exists());
        // ...and locations still read from the files they hold open.
        assert_eq!(locations[0].read().expect("read"), vec![0u8; 60]);
    }

    #[test]
    fn corruption_before_the_tail_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = segment_path(dir.path(), 1);
        let mut bytes = MAGIC.to_vec();
        encode_frame(&mut bytes, 1, b"hello");
        bytes[HEADER_LEN as usize + FRAME_HEADER] ^= 0xff;
        std::fs::write(&first, &bytes).expect("write");
        create_segment(&segment_path(dir.path(), 2), 100).expect("second");
        match Wal::open(config(dir.path()), 0) {
            Err(WalError::Corrupt { .. }) => {}
            other => panic!("expected corruption error, got {other:?}"),
        }
    }
}
