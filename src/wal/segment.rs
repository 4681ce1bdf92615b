//! Segment files and the frames in them: how a record is laid out on disk, written and read
//! back.
//!
//! A segment starts with an 8-byte header naming its format. Format 2 (written since records
//! of any size are accepted) holds frames of
//!
//! ```text
//!   word: u32 LE (payload length, top bit: "the record continues in the next frame")
//!   crc32: u32 LE (of lsn, word and payload) | lsn: u64 LE | payload: length bytes
//! ```
//!
//! A record longer than the writer's frame limit is split into consecutive frames of one
//! segment with the same LSN, all but the last flagged; it is durable (and acknowledged) only
//! once all are synced, and at open a record whose last frame is missing is a torn tail like
//! any other. No frame is ever longer than [`MAX_FRAME`], so no length wraps and a reader never
//! allocates more than one frame's worth to check a record. Format 1 (one frame per record, no
//! flag, the checksum over lsn and payload) is still read. An all-zero frame header marks the
//! end of a segment's records (segments are zero-filled when created).

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracing::warn;

use super::{Lsn, Record, Result, WalConfig, WalError, io};

pub(super) const MAGIC_V1: &[u8; 8] = b"DGWAL\0\0\x01";
pub(super) const MAGIC_V2: &[u8; 8] = b"DGWAL\0\0\x02";
pub(super) const HEADER_LEN: u64 = 8;
pub(super) const FRAME_HEADER: usize = 16;
/// The longest frame payload any writer produces (the default frame limit is far lower); a
/// longer length field is a torn or corrupt header, never an allocation.
pub(super) const MAX_FRAME: usize = 1 << 30;
const CONTINUED: u32 = 1 << 31;
const SEGMENT_SUFFIX: &str = ".wal";

/// The frame layout of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    V1,
    V2,
}

#[derive(Debug)]
pub(super) struct Segment {
    path: PathBuf,
    file: File,
    format: Format,
}

impl Segment {
    /// Opens a segment of the current format for reading (the writer's active one).
    pub(super) fn open(path: &Path) -> Result<Arc<Segment>> {
        Ok(Arc::new(Segment {
            path: path.to_path_buf(),
            file: File::open(path).map_err(io(path))?,
            format: Format::V2,
        }))
    }

    #[cfg(test)]
    pub(super) fn path(&self) -> &Path {
        &self.path
    }
}

/// Where a durable record lies, so that its payload can be read back while its segment exists
/// (the storage layer keeps buffered rows there instead of in memory when memory runs short).
/// Holds the segment open: a reader keeps working even after the segment is released.
#[derive(Debug, Clone)]
pub struct Location {
    pub lsn: Lsn,
    pub(super) segment: Arc<Segment>,
    /// Offset of the record's first frame.
    offset: u64,
    /// Payload bytes, all frames together.
    len: u64,
}

impl Location {
    pub(super) fn new(lsn: Lsn, segment: Arc<Segment>, offset: u64, len: u64) -> Location {
        Location {
            lsn,
            segment,
            offset,
            len,
        }
    }

    /// The record's payload length.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the record's payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Reads the record's payload, checking its frames again.
    ///
    /// # Errors
    /// I/O errors, or frames that no longer match (the log was tampered with).
    pub fn read(&self) -> Result<Vec<u8>> {
        let segment = &self.segment;
        let corrupt = || WalError::Corrupt {
            path: segment.path.clone(),
            offset: self.offset,
            reason: format!("record {} no longer matches its frames", self.lsn),
        };
        let len = usize::try_from(self.len).map_err(|_| corrupt())?;
        let mut payload = Vec::with_capacity(len);
        let mut offset = self.offset;
        loop {
            let mut header = [0u8; FRAME_HEADER];
            segment
                .file
                .read_exact_at(&mut header, offset)
                .map_err(io(&segment.path))?;
            let frame = parse_header(&header, segment.format).ok_or_else(corrupt)?;
            if frame.lsn != self.lsn || payload.len() + frame.len > len {
                return Err(corrupt());
            }
            let start = payload.len();
            payload.resize(start + frame.len, 0);
            segment
                .file
                .read_exact_at(&mut payload[start..], offset + FRAME_HEADER as u64)
                .map_err(io(&segment.path))?;
            if !frame.matches(&header, &payload[start..], segment.format) {
                return Err(corrupt());
            }
            offset += (FRAME_HEADER + frame.len) as u64;
            if !frame.continued {
                break;
            }
        }
        if payload.len() != len {
            return Err(corrupt());
        }
        Ok(payload)
    }
}

/// A frame header's fields.
struct FrameHeader {
    len: usize,
    continued: bool,
    crc: u32,
    lsn: Lsn,
}

impl FrameHeader {
    /// Whether the checksum matches the header and payload.
    fn matches(&self, header: &[u8; FRAME_HEADER], payload: &[u8], format: Format) -> bool {
        let mut crc = crc32fast::Hasher::new();
        crc.update(&self.lsn.to_le_bytes());
        if format == Format::V2 {
            crc.update(&header[0..4]);
        }
        crc.update(payload);
        crc.finalize() == self.crc
    }
}

/// The fields of a frame header; `None` for a length no writer produces.
fn parse_header(header: &[u8; FRAME_HEADER], format: Format) -> Option<FrameHeader> {
    let word = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let (len, continued) = match format {
        Format::V1 => (word as usize, false),
        Format::V2 => ((word & !CONTINUED) as usize, word & CONTINUED != 0),
    };
    (len <= MAX_FRAME).then_some(FrameHeader {
        len,
        continued,
        crc: u32::from_le_bytes([header[4], header[5], header[6], header[7]]),
        lsn: u64::from_le_bytes(header[8..16].try_into().ok()?),
    })
}

/// The frames of a record (format 2): its payload in chunks of at most `max_frame` bytes (one
/// empty chunk for an empty payload), each with its header.
pub(super) fn frames(
    lsn: Lsn,
    payload: &[u8],
    max_frame: usize,
) -> impl Iterator<Item = ([u8; FRAME_HEADER], &[u8])> {
    let max_frame = max_frame.clamp(1, MAX_FRAME);
    let count = payload.len().div_ceil(max_frame).max(1);
    (0..count).map(move |i| {
        let start = (i * max_frame).min(payload.len());
        let chunk = &payload[start..(start + max_frame).min(payload.len())];
        let mut word = chunk.len() as u32;
        if i + 1 < count {
            word |= CONTINUED;
        }
        let mut crc = crc32fast::Hasher::new();
        crc.update(&lsn.to_le_bytes());
        crc.update(&word.to_le_bytes());
        crc.update(chunk);
        let mut header = [0u8; FRAME_HEADER];
        header[0..4].copy_from_slice(&word.to_le_bytes());
        header[4..8].copy_from_slice(&crc.finalize().to_le_bytes());
        header[8..16].copy_from_slice(&lsn.to_le_bytes());
        (header, chunk)
    })
}

pub(super) fn segment_path(dir: &Path, first: Lsn) -> PathBuf {
    dir.join(format!("{first:020}{SEGMENT_SUFFIX}"))
}

pub(super) fn list_segments(dir: &Path) -> Result<Vec<(Lsn, PathBuf)>> {
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
pub(super) fn create_segment(path: &Path, size: u64) -> Result<File> {
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
    file.write_all(MAGIC_V2)?;
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
pub(super) fn sync_dir(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io(dir))?;
    }
    Ok(())
}

pub(super) fn spare_path(dir: &Path) -> PathBuf {
    dir.join("next-segment.tmp")
}

/// Starts writing the next segment under a temporary name (renamed when it is needed).
pub(super) fn prepare_spare(config: &WalConfig) -> std::thread::JoinHandle<std::io::Result<File>> {
    let path = spare_path(&config.dir);
    let size = config.segment_bytes;
    std::thread::spawn(move || write_segment(&path, size))
}

pub(super) struct SegmentRead {
    pub(super) records: Vec<Record>,
    /// Where the records end.
    pub(super) len: u64,
}

/// Checks a segment's frames and locates its records, reading one frame at a time. In the
/// last segment, a torn or corrupt tail (a record whose frames are not all there and intact)
/// is cut off; anywhere else it is an error.
pub(super) fn read_segment(path: &Path, last: bool) -> Result<SegmentRead> {
    let file = File::open(path).map_err(io(path))?;
    let size = file.metadata().map_err(io(path))?.len();
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let corrupt = |offset: u64, reason: &str| WalError::Corrupt {
        path: path.to_path_buf(),
        offset,
        reason: reason.to_string(),
    };
    let mut magic = [0u8; HEADER_LEN as usize];
    let got = read_full(&mut reader, &mut magic).map_err(io(path))?;
    let format = match &magic {
        m if m == MAGIC_V2 => Format::V2,
        m if m == MAGIC_V1 => Format::V1,
        _ if last && MAGIC_V2.starts_with(&magic[..got]) && got < magic.len() => {
            // Created but its header never fully written: an empty segment.
            return Ok(SegmentRead {
                records: Vec::new(),
                len: got as u64,
            });
        }
        _ => {
            return Err(corrupt(
                0,
                "not a deltagate log segment (unknown header or version)",
            ));
        }
    };
    let segment = Arc::new(Segment {
        path: path.to_path_buf(),
        file: File::open(path).map_err(io(path))?,
        format,
    });
    let mut records = Vec::new();
    let mut offset = HEADER_LEN;
    // The record being read: its first frame's offset, LSN and payload so far.
    let mut open: Option<(u64, Lsn, u64)> = None;
    let mut payload = Vec::new();
    let torn = loop {
        let mut header = [0u8; FRAME_HEADER];
        let got = read_full(&mut reader, &mut header).map_err(io(path))?;
        if got == 0 || (got == FRAME_HEADER && header.iter().all(|b| *b == 0)) {
            // The end of the file, or the zero-filled rest of the segment.
            break open.map(|_| "a record's last frame is missing");
        }
        if got < FRAME_HEADER {
            break Some("incomplete frame header");
        }
        let Some(frame) = parse_header(&header, format) else {
            break Some("frame length out of range");
        };
        let frame_end = offset + (FRAME_HEADER + frame.len) as u64;
        if frame_end > size {
            break Some("incomplete frame");
        }
        payload.resize(frame.len, 0);
        reader.read_exact(&mut payload).map_err(io(path))?;
        if !frame.matches(&header, &payload, format) {
            break Some("checksum mismatch");
        }
        let (start, lsn, len) = match open.take() {
            None => (offset, frame.lsn, 0),
            Some((_, lsn, _)) if lsn != frame.lsn => {
                break Some("a record's frames carry different positions");
            }
            Some(record) => record,
        };
        let len = len + frame.len as u64;
        if frame.continued {
            open = Some((start, lsn, len));
        } else {
            records.push(Record {
                lsn,
                location: Location::new(lsn, segment.clone(), start, len),
            });
        }
        offset = frame_end;
    };
    // A record left open ends where its first frame starts.
    let end = open.map_or(offset, |(start, _, _)| start);
    if let Some(reason) = torn {
        if !last {
            return Err(corrupt(end, reason));
        }
        warn!(
            segment = %path.display(),
            offset = end,
            cut = size - end,
            reason,
            "cutting the torn tail of the write-ahead log"
        );
        let file = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(io(path))?;
        file.set_len(end).map_err(io(path))?;
        file.sync_all().map_err(io(path))?;
    }
    Ok(SegmentRead { records, len: end })
}

/// Reads until `buf` is full or the file ends; returns the bytes read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match reader.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}
