//! A table's buffer: the log entries whose rows are durable but not yet in Delta, oldest first,
//! cheap to clone into a snapshot. An entry holds its rows in memory or, past the memory budget,
//! only its place in the log, from which readers and the flusher read it back.

use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::RecordBatch;

use crate::wal::{Location, Lsn};

use super::super::{Result, StorageError};
use super::record::decode_insert;

/// One log record's rows for one table: held in memory, or only in the log (spilled) when the
/// buffers ran past their memory budget.
#[derive(Debug)]
pub struct Entry {
    pub lsn: Lsn,
    /// The write the rows came in (see [`keys::KeyIndex`]); replayed rows get a new one.
    pub ticket: u64,
    /// `None` once spilled: the rows are then read back from `logged`.
    batches: Option<Vec<RecordBatch>>,
    /// The record and this table's part of it; `None` for rows not in the log yet.
    logged: Option<(Location, usize)>,
    pub rows: usize,
    pub bytes: usize,
    pub at: Instant,
}

impl Entry {
    /// Rows of part `part` of the durable record at `location`.
    pub(in crate::storage) fn logged(
        location: Location,
        part: usize,
        ticket: u64,
        batches: Vec<RecordBatch>,
    ) -> Entry {
        let mut entry = Entry::unlogged(location.lsn, ticket, batches);
        entry.logged = Some((location, part));
        entry
    }

    /// Rows that only live in memory (in flight to the log).
    pub(in crate::storage) fn unlogged(lsn: Lsn, ticket: u64, batches: Vec<RecordBatch>) -> Entry {
        Entry {
            lsn,
            ticket,
            rows: batches.iter().map(RecordBatch::num_rows).sum(),
            bytes: batches.iter().map(RecordBatch::get_array_memory_size).sum(),
            batches: Some(batches),
            logged: None,
            at: Instant::now(),
        }
    }

    /// Bytes this entry holds in memory.
    fn memory(&self) -> usize {
        if self.batches.is_some() {
            self.bytes
        } else {
            0
        }
    }

    /// The same rows, kept only in the log; `None` if they are not in memory or not logged.
    fn spilled(&self) -> Option<Entry> {
        self.batches.as_ref()?;
        Some(Entry {
            lsn: self.lsn,
            ticket: self.ticket,
            batches: None,
            logged: Some(self.logged.clone()?),
            rows: self.rows,
            bytes: self.bytes,
            at: self.at,
        })
    }

    /// The rows, read back from the log if spilled.
    ///
    /// # Errors
    /// Log I/O errors, or a record that no longer decodes.
    pub fn batches(&self) -> Result<Vec<RecordBatch>> {
        if let Some(batches) = &self.batches {
            return Ok(batches.clone());
        }
        let Some((location, part)) = &self.logged else {
            return Ok(Vec::new());
        };
        decode_insert(&location.read()?)?
            .into_iter()
            .nth(*part)
            .map(|(_, _, _, batches)| batches)
            .ok_or_else(|| StorageError::Metadata(format!("log record {} lost a part", self.lsn)))
    }
}

/// Entries per sealed chunk of [`BufferedRows`].
const CHUNK_ENTRIES: usize = 128;

/// A table's buffered rows, oldest first; cheap to clone into a snapshot.
///
/// Entries are kept in sealed chunks plus an open tail: adding an entry while snapshots share
/// the list copies at most the tail and, once per chunk, the list of chunks, instead of every
/// entry (a busy table holds thousands of entries, one per committed transaction).
#[derive(Debug, Clone, Default)]
pub struct BufferedRows {
    sealed: Arc<Vec<Arc<[Arc<Entry>]>>>,
    tail: Arc<Vec<Arc<Entry>>>,
    pub rows: usize,
    pub bytes: usize,
    /// Of `bytes`, what is held in memory (the rest is spilled to the log).
    pub memory: usize,
}

impl BufferedRows {
    pub fn is_empty(&self) -> bool {
        self.sealed.is_empty() && self.tail.is_empty()
    }

    /// The entries, oldest first.
    pub fn entries(&self) -> impl Iterator<Item = &Arc<Entry>> {
        self.sealed
            .iter()
            .flat_map(|c| c.iter())
            .chain(self.tail.iter())
    }

    /// LSN of the newest buffered record (0 when empty).
    pub fn last_lsn(&self) -> Lsn {
        self.tail
            .last()
            .or_else(|| self.sealed.last().and_then(|c| c.last()))
            .map_or(0, |e| e.lsn)
    }

    fn first(&self) -> Option<&Arc<Entry>> {
        self.entries().next()
    }

    pub(super) fn first_lsn(&self) -> Option<Lsn> {
        self.first().map(|e| e.lsn)
    }

    pub(super) fn oldest(&self) -> Option<Instant> {
        self.first().map(|e| e.at)
    }

    pub(in crate::storage) fn push(&mut self, entry: Entry) {
        self.rows += entry.rows;
        self.bytes += entry.bytes;
        self.memory += entry.memory();
        // In place unless a reader's snapshot shares the tail.
        let tail = Arc::make_mut(&mut self.tail);
        tail.push(Arc::new(entry));
        if tail.len() >= CHUNK_ENTRIES {
            let chunk: Arc<[Arc<Entry>]> = std::mem::take(tail).into();
            Arc::make_mut(&mut self.sealed).push(chunk);
        }
    }

    /// The same rows with every entry passed through `f` (entries it drops are left out).
    fn rebuilt(&self, mut f: impl FnMut(&Arc<Entry>) -> Option<Arc<Entry>>) -> BufferedRows {
        let mut out = BufferedRows::default();
        let mut tail = Vec::new();
        let mut sealed = Vec::new();
        for entry in self.entries() {
            if let Some(entry) = f(entry) {
                out.rows += entry.rows;
                out.bytes += entry.bytes;
                out.memory += entry.memory();
                tail.push(entry);
                if tail.len() >= CHUNK_ENTRIES {
                    sealed.push(Arc::from(std::mem::take(&mut tail)));
                }
            }
        }
        out.sealed = Arc::new(sealed);
        out.tail = Arc::new(tail);
        out
    }

    /// The entries at or below `lsn`: what a reader whose view was taken at `lsn` sees.
    pub fn upto(&self, lsn: Lsn) -> BufferedRows {
        if self.last_lsn() <= lsn {
            return self.clone();
        }
        self.rebuilt(|e| (e.lsn <= lsn).then(|| e.clone()))
    }

    /// Drops the entries at or below `lsn` (they reached Delta).
    pub(in crate::storage) fn release(&mut self, lsn: Lsn) {
        if self.first_lsn().is_none_or(|first| first > lsn) {
            return;
        }
        *self = self.rebuilt(|e| (e.lsn > lsn).then(|| e.clone()));
    }

    /// Drops the in-memory copies of the oldest logged entries until at least `want` bytes are
    /// freed; returns the bytes freed. Readers holding the old entries keep them until done.
    pub(in crate::storage) fn spill(&mut self, want: usize) -> usize {
        let mut freed = 0;
        *self = self.rebuilt(|entry| {
            if freed < want
                && let Some(spilled) = entry.spilled()
            {
                freed += entry.bytes;
                return Some(Arc::new(spilled));
            }
            Some(entry.clone())
        });
        freed
    }

    /// All buffered rows, oldest first, read back from the log where spilled.
    ///
    /// # Errors
    /// Log I/O errors.
    pub fn batches(&self) -> Result<Vec<RecordBatch>> {
        let mut out = Vec::new();
        for entry in self.entries() {
            out.extend(entry.batches()?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, RecordBatch};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    /// An entry at `lsn` holding the values `lsn * 10 .. lsn * 10 + rows`.
    fn entry(lsn: Lsn, rows: i64) -> Entry {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let values = Int64Array::from_iter_values(lsn as i64 * 10..lsn as i64 * 10 + rows);
        let batch = RecordBatch::try_new(schema, vec![Arc::new(values)]).unwrap();
        Entry::unlogged(lsn, lsn, vec![batch])
    }

    fn values(buffered: &BufferedRows) -> Vec<i64> {
        buffered
            .batches()
            .unwrap()
            .iter()
            .flat_map(|b| {
                b.column(0)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .unwrap()
                    .values()
                    .to_vec()
            })
            .collect()
    }

    fn lsns(buffered: &BufferedRows) -> Vec<Lsn> {
        buffered.entries().map(|e| e.lsn).collect()
    }

    #[test]
    fn entries_keep_their_order_and_counts_across_sealed_chunks() {
        let mut buffered = BufferedRows::default();
        assert!(buffered.is_empty());
        assert_eq!(buffered.last_lsn(), 0);
        let count = CHUNK_ENTRIES as u64 * 2 + 5;
        for lsn in 1..=count {
            buffered.push(entry(lsn, 2));
        }
        assert_eq!(lsns(&buffered), (1..=count).collect::<Vec<_>>());
        assert_eq!(buffered.rows, count as usize * 2);
        assert_eq!(buffered.last_lsn(), count);
        assert_eq!(buffered.first_lsn(), Some(1));
        assert_eq!(buffered.memory, buffered.bytes);
        assert_eq!(values(&buffered)[..4], [10, 11, 20, 21]);
    }

    #[test]
    fn a_snapshot_is_not_changed_by_later_pushes_or_releases() {
        let mut buffered = BufferedRows::default();
        for lsn in 1..=3 {
            buffered.push(entry(lsn, 1));
        }
        let snapshot = buffered.clone();
        buffered.push(entry(4, 1));
        buffered.release(2);
        assert_eq!(lsns(&snapshot), vec![1, 2, 3]);
        assert_eq!(snapshot.rows, 3);
        assert_eq!(lsns(&buffered), vec![3, 4]);
        assert_eq!(buffered.rows, 2);
        assert_eq!(values(&buffered), vec![30, 40]);
    }

    #[test]
    fn a_view_sees_the_entries_up_to_its_lsn() {
        let mut buffered = BufferedRows::default();
        for lsn in [2, 4, 6] {
            buffered.push(entry(lsn, 3));
        }
        let early = buffered.upto(4);
        assert_eq!(lsns(&early), vec![2, 4]);
        assert_eq!((early.rows, early.last_lsn()), (6, 4));
        assert_eq!(lsns(&buffered.upto(1)), Vec::<Lsn>::new());
        let all = buffered.upto(6);
        assert_eq!((lsns(&all), all.rows), (vec![2, 4, 6], 9));
        // Releasing what reached Delta keeps the later entries and their counts.
        buffered.release(4);
        assert_eq!((lsns(&buffered), buffered.rows), (vec![6], 3));
        buffered.release(0);
        assert_eq!(lsns(&buffered), vec![6]);
    }

    #[test]
    fn rows_not_in_the_log_are_never_spilled() {
        let mut buffered = BufferedRows::default();
        buffered.push(entry(1, 100));
        let memory = buffered.memory;
        assert!(memory > 0);
        assert_eq!(buffered.spill(usize::MAX), 0);
        assert_eq!(buffered.memory, memory);
        assert_eq!(values(&buffered).len(), 100);
    }
}
