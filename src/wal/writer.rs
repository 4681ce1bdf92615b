//! The log's writer thread: group commit into the active segment, rolling to a new segment
//! once it is full, and deleting released ones.

use std::fs::File;
use std::io::{IoSlice, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Instant;

use tracing::{debug, error, warn};

use super::segment::{
    FRAME_HEADER, HEADER_LEN, Location, Segment, create_segment, frames, prepare_spare,
    segment_path, spare_path, sync_dir,
};
use super::{Durability, Lsn, OnDurable, Request, Result, WalConfig, WalError, WalStats, io};

pub(super) struct Writer {
    pub(super) config: WalConfig,
    /// Segments on disk, oldest first; the last is the active one.
    pub(super) segments: Vec<(Lsn, PathBuf)>,
    pub(super) file: File,
    /// The active segment opened for reading, shared by the locations of its records.
    pub(super) reader: Arc<Segment>,
    /// Bytes of records in the active segment (from its start, header included).
    pub(super) file_len: u64,
    /// Size of the active segment's file.
    pub(super) allocated: u64,
    /// The next segment, being created and zero-filled by a helper thread.
    pub(super) spare: Option<std::thread::JoinHandle<std::io::Result<File>>>,
    pub(super) next: Lsn,
    pub(super) stats: Arc<WalStats>,
    pub(super) published: Arc<AtomicU64>,
    pub(super) poisoned: AtomicBool,
}

impl Writer {
    pub(super) fn run(mut self, receiver: mpsc::Receiver<Request>) {
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
        let mut chunks = Vec::with_capacity(appends.len());
        let mut locations = Vec::with_capacity(appends.len());
        let mut bytes = 0u64;
        for (i, (payload, _, _)) in appends.iter().enumerate() {
            let lsn = first_lsn + i as u64;
            locations.push(Location::new(
                lsn,
                self.reader.clone(),
                self.file_len + bytes,
                payload.len() as u64,
            ));
            for (header, chunk) in frames(lsn, payload, self.config.max_frame) {
                bytes += (FRAME_HEADER + chunk.len()) as u64;
                headers.push(header);
                chunks.push(chunk);
            }
        }
        let mut frames: Vec<IoSlice> = headers
            .iter()
            .zip(&chunks)
            .flat_map(|(header, chunk)| [IoSlice::new(header), IoSlice::new(chunk)])
            .collect();
        let written = self.write_and_sync(&mut frames, bytes);
        drop((frames, chunks));
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
