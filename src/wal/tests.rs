//! Unit tests of the log: reopen, torn tails, release, records of any size.

use std::fs::OpenOptions;
use std::time::Instant;

use super::segment::*;
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
    while locations[0].segment.path().exists() && Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(!locations[0].segment.path().exists());
    // ...and locations still read from the files they hold open.
    assert_eq!(locations[0].read().expect("read"), vec![0u8; 60]);
}

/// A record's format-2 frames, as the writer lays them out.
fn encode_frames(out: &mut Vec<u8>, lsn: Lsn, payload: &[u8], max_frame: usize) {
    for (header, chunk) in frames(lsn, payload, max_frame) {
        out.extend_from_slice(&header);
        out.extend_from_slice(chunk);
    }
}

#[test]
fn corruption_before_the_tail_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = segment_path(dir.path(), 1);
    let mut bytes = MAGIC_V2.to_vec();
    encode_frames(&mut bytes, 1, b"hello", 64);
    bytes[HEADER_LEN as usize + FRAME_HEADER] ^= 0xff;
    std::fs::write(&first, &bytes).expect("write");
    create_segment(&segment_path(dir.path(), 2), 100).expect("second");
    match Wal::open(config(dir.path()), 0) {
        Err(WalError::Corrupt { .. }) => {}
        other => panic!("expected corruption error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_record_longer_than_a_frame_is_written_as_several_and_read_as_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = WalConfig {
        segment_bytes: 4096,
        max_frame: 7,
        ..WalConfig::new(dir.path().to_path_buf())
    };
    let long: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
    let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
    {
        let (wal, _) = Wal::open(config.clone(), 0).expect("open");
        for payload in [
            b"short".to_vec(),
            long.clone(),
            Vec::new(),
            b"after".to_vec(),
        ] {
            let seen = seen.clone();
            wal.append(payload, move |at| seen.lock().push(at))
                .await
                .expect("append");
        }
        let seen = seen.lock();
        assert_eq!(seen[1].len(), 1000);
        assert_eq!(seen[1].read().expect("read"), long);
        assert_eq!(seen[2].read().expect("read"), Vec::<u8>::new());
    }
    let (_, records) = Wal::open(config, 0).expect("reopen");
    let payloads: Vec<Vec<u8>> = records
        .iter()
        .map(|r| r.location.read().expect("read"))
        .collect();
    assert_eq!(
        payloads,
        vec![b"short".to_vec(), long, Vec::new(), b"after".to_vec()]
    );
    assert_eq!(
        records.iter().map(|r| r.lsn).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
}

#[test]
fn a_record_missing_its_last_frame_is_cut_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = segment_path(dir.path(), 1);
    let mut bytes = MAGIC_V2.to_vec();
    encode_frames(&mut bytes, 1, b"kept", 64);
    let kept = bytes.len() as u64;
    let long = vec![7u8; 100];
    encode_frames(&mut bytes, 2, &long, 10);
    // Every frame of record 2 but the last, then the zero-filled rest of the segment.
    bytes.truncate(bytes.len() - (FRAME_HEADER + 10));
    bytes.extend_from_slice(&[0u8; 64]);
    std::fs::write(&path, &bytes).expect("write");
    let read = read_segment(&path, true).expect("read");
    assert_eq!(read.records.len(), 1);
    assert_eq!(read.len, kept);
    assert_eq!(std::fs::metadata(&path).expect("cut").len(), kept);
    // Before the tail, the same is corruption.
    encode_frames(&mut bytes, 2, &long, 10);
    std::fs::write(&path, &bytes[..bytes.len() - FRAME_HEADER - 10]).expect("write");
    assert!(read_segment(&path, false).is_err());
}

#[test]
fn format_one_segments_are_still_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = segment_path(dir.path(), 1);
    let mut bytes = MAGIC_V1.to_vec();
    for (lsn, payload) in [(1u64, &b"one"[..]), (2, &b"two"[..])] {
        let mut crc = crc32fast::Hasher::new();
        crc.update(&lsn.to_le_bytes());
        crc.update(payload);
        bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&crc.finalize().to_le_bytes());
        bytes.extend_from_slice(&lsn.to_le_bytes());
        bytes.extend_from_slice(payload);
    }
    std::fs::write(&path, &bytes).expect("write");
    let read = read_segment(&path, false).expect("read");
    let payloads: Vec<Vec<u8>> = read
        .records
        .iter()
        .map(|r| r.location.read().expect("read"))
        .collect();
    assert_eq!(payloads, vec![b"one".to_vec(), b"two".to_vec()]);
}
