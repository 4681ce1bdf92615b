//! The key index: keys of a table's in-flight, buffered and latest flushed rows, each with the
//! ticket of the write that indexed it (see [`KeyIndex`]).

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use datafusion::arrow::array::RecordBatch;

use super::super::Result;
use super::boxes::FileBoxes;
use super::boxes::stored_may_hold;
use super::pack::{PackedKey, arrow_error, pack_batch_keys, pack_rows_keys};

/// Packed keys to the ticket of the write that indexed them, for the index that holds every
/// buffered key: short keys are stored inline in their own map, without the enum's tag and
/// padding (24 bytes a slot, not 32).
#[derive(Default)]
struct PackedMap {
    short: HashMap<[u64; 2], u64, foldhash::fast::RandomState>,
    long: HashMap<Box<[u8]>, u64, foldhash::fast::RandomState>,
}

/// Runs `$body` with `$map` and `$key` bound to the map and key of `$packed`'s kind.
macro_rules! with_map {
    ($self:ident, $packed:expr, |$map:ident, $key:ident| $body:expr) => {
        match $packed {
            PackedKey::Short(k) => {
                let ($map, $key) = (&mut $self.short, *k);
                $body
            }
            PackedKey::Long(k) => {
                let ($map, $key) = (&mut $self.long, k.clone());
                $body
            }
        }
    };
}

impl PackedMap {
    fn reserve(&mut self, additional: usize) {
        self.short.reserve(additional);
    }

    fn contains(&self, key: &PackedKey) -> bool {
        match key {
            PackedKey::Short(k) => self.short.contains_key(k),
            PackedKey::Long(k) => self.long.contains_key(k),
        }
    }

    /// Indexes a key for `ticket` (the later write's, when it is indexed already).
    fn insert(&mut self, key: &PackedKey, ticket: u64) {
        with_map!(self, key, |map, key| {
            let value = map.entry(key).or_insert(ticket);
            *value = (*value).max(ticket);
        })
    }

    /// Indexes an absent key for `ticket`; false, changing nothing, when the key is present.
    fn insert_new(&mut self, key: &PackedKey, ticket: u64) -> bool {
        with_map!(self, key, |map, key| match map.entry(key) {
            Entry::Occupied(_) => false,
            Entry::Vacant(entry) => {
                entry.insert(ticket);
                true
            }
        })
    }

    /// Forgets a key if the write `ticket` indexed it.
    fn remove(&mut self, key: &PackedKey, ticket: u64) {
        with_map!(self, key, |map, key| {
            if let Entry::Occupied(entry) = map.entry(key)
                && *entry.get() == ticket
            {
                entry.remove();
            }
        })
    }

    fn retain(&mut self, mut keep: impl FnMut(u64) -> bool) {
        self.short.retain(|_, t| keep(*t));
        self.long.retain(|_, t| keep(*t));
    }

    fn clear(&mut self) {
        self.short.clear();
        self.long.clear();
    }
}

/// Keys of flushed rows the index keeps at most. Past it, the oldest flushes' keys leave the
/// index (down to half of this, so that the pass over the index that drops them is rare) and
/// their files are screened by their statistics again: new rows rarely fall inside old files'
/// boxes, while a larger index makes every probe slower (and costs 25 bytes a key).
const FLUSHED_KEYS_LIMIT: usize = 4_000_000;

/// Keys of a table's in-flight and buffered rows, and of the latest rows this server flushed
/// since the last UPDATE/DELETE (whose files are then `covered`: the index answers for them
/// exactly).
///
/// Each key maps to the ticket of the write that indexed it. A table's tickets grow with its
/// log positions (both are taken under its admission lock) and flushes take the oldest
/// buffered rows, so the writes up to `flushed_upto` are exactly those in Delta: a flush moves
/// millions of keys from buffered to flushed by raising that mark, without touching them.
pub(in crate::storage) struct KeyIndex {
    columns: Vec<usize>,
    keys: PackedMap,
    /// The writes up to this ticket are flushed.
    flushed_upto: u64,
    /// The flushes whose keys the index holds, oldest first.
    flushes: std::collections::VecDeque<Flush>,
    /// Their rows.
    flushed: usize,
    covered: std::collections::HashSet<String>,
}

/// A flush whose keys the index holds: its last write's ticket, its rows and files.
struct Flush {
    upto: u64,
    rows: usize,
    files: Vec<String>,
}

impl KeyIndex {
    /// The index for a table whose key columns have these indices; `None` without a primary key.
    pub(in crate::storage) fn new(columns: Vec<usize>) -> Option<KeyIndex> {
        if columns.is_empty() {
            return None;
        }
        Some(KeyIndex {
            columns,
            keys: PackedMap::default(),
            flushed_upto: 0,
            flushes: std::collections::VecDeque::new(),
            flushed: 0,
            covered: std::collections::HashSet::new(),
        })
    }

    /// The keys of a batch's rows, packed.
    fn batch_keys(&self, batch: &RecordBatch) -> Result<Vec<PackedKey>> {
        pack_batch_keys(batch, &self.columns).map_err(arrow_error)
    }

    /// The keys of rows, packed.
    pub(in crate::storage) fn packed(&self, batches: &[RecordBatch]) -> Result<Vec<PackedKey>> {
        pack_rows_keys(batches, &self.columns).map_err(arrow_error)
    }

    /// Indexes the keys of the rows of write `ticket`, packing them (replayed rows).
    pub(in crate::storage) fn add(&mut self, batches: &[RecordBatch], ticket: u64) -> Result<()> {
        self.add_keys(&self.packed(batches)?, ticket);
        Ok(())
    }

    /// Indexes packed keys of write `ticket`.
    pub(in crate::storage) fn add_keys<'k>(
        &mut self,
        keys: impl IntoIterator<Item = &'k PackedKey>,
        ticket: u64,
    ) {
        let keys = keys.into_iter();
        self.keys.reserve(keys.size_hint().0);
        for key in keys {
            self.keys.insert(key, ticket);
        }
    }

    /// Whether a row in flight, buffered or flushed (while the index holds its flush) has this
    /// key.
    pub(in crate::storage) fn holds(&self, key: &PackedKey) -> bool {
        self.keys.contains(key)
    }

    /// Forgets the keys of the rows of write `ticket` (it failed).
    pub(in crate::storage) fn remove(
        &mut self,
        batches: &[RecordBatch],
        ticket: u64,
    ) -> Result<()> {
        for batch in batches {
            for key in &self.batch_keys(batch)? {
                self.keys.remove(key, ticket);
            }
        }
        Ok(())
    }

    /// The files among `boxes` whose keys the index does not hold.
    pub(in crate::storage) fn uncovered(&self, boxes: &FileBoxes) -> FileBoxes {
        boxes
            .iter()
            .filter(|file| !self.covered.contains(&file.path))
            .cloned()
            .collect()
    }

    /// The key columns, as indices into the table's columns.
    pub(in crate::storage) fn columns(&self) -> &[usize] {
        &self.columns
    }

    /// Indexes the `keys` of the rows `batches` of write `ticket`, which were checked against
    /// the table before other writers' rows arrived, in one probe a key: false, indexing none,
    /// when a row now holds one of them, or when a data file among `stored` (those the index
    /// does not cover, when files were added since the check) may hold one by its statistics.
    /// The caller then checks the rows again.
    pub(in crate::storage) fn claim<'k, K>(
        &mut self,
        batches: &[RecordBatch],
        keys: K,
        stored: Option<&FileBoxes>,
        ticket: u64,
    ) -> bool
    where
        K: Iterator<Item = &'k PackedKey> + Clone,
    {
        if stored.is_some_and(|boxes| stored_may_hold(boxes, &self.columns, batches)) {
            return false;
        }
        self.keys.reserve(keys.size_hint().0);
        for (i, key) in keys.clone().enumerate() {
            if !self.keys.insert_new(key, ticket) {
                for key in keys.take(i) {
                    self.keys.remove(key, ticket);
                }
                return false;
            }
        }
        true
    }

    pub(in crate::storage) fn clear(&mut self) {
        self.keys.clear();
        self.flushes.clear();
        self.flushed = 0;
        self.covered.clear();
    }

    /// Rows were deleted or rewritten in Delta: flushed keys may be stale.
    pub(in crate::storage) fn forget_flushed(&mut self) {
        let upto = self.flushed_upto;
        self.keys.retain(|ticket| ticket > upto);
        self.flushes.clear();
        self.flushed = 0;
        self.covered.clear();
    }

    /// The `rows` of the writes up to ticket `upto` moved from the buffer to the Delta
    /// `files`. Their keys stay indexed, as flushed, and those files need no statistics check,
    /// while the index holds at most [`FLUSHED_KEYS_LIMIT`] flushed keys: past it, the oldest
    /// flushes leave it.
    pub(in crate::storage) fn flushed(&mut self, upto: u64, rows: usize, files: Vec<String>) {
        self.flushed_upto = self.flushed_upto.max(upto);
        self.flushed += rows;
        self.covered.extend(files.iter().cloned());
        self.flushes.push_back(Flush { upto, rows, files });
        if self.flushed <= FLUSHED_KEYS_LIMIT {
            return;
        }
        let mut cutoff = 0;
        // The latest flush stays whatever its size: its rows are the likeliest to be re-sent.
        while self.flushed > FLUSHED_KEYS_LIMIT / 2
            && self.flushes.len() > 1
            && let Some(oldest) = self.flushes.pop_front()
        {
            cutoff = oldest.upto;
            self.flushed -= oldest.rows;
            for file in &oldest.files {
                self.covered.remove(file);
            }
        }
        self.keys.retain(|ticket| ticket > cutoff);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::datatypes::DataType;
    use datafusion::scalar::ScalarValue;

    use super::super::boxes::FileBox;
    use super::super::pack::tests::historian;
    use super::*;

    #[test]
    fn the_index_tracks_writes_and_remembers_flushed_keys() {
        let schema = Arc::new(datafusion::arrow::datatypes::Schema::new(vec![
            datafusion::arrow::datatypes::Field::new("tagid", DataType::Int32, false),
            datafusion::arrow::datatypes::Field::new("t_stamp", DataType::Int64, false),
        ]));
        let batch = |tags: Vec<i32>, stamps: Vec<i64>| {
            RecordBatch::try_new(
                schema.clone(),
                historian(tags.into_iter().map(Some).collect(), stamps),
            )
            .unwrap()
        };
        // The rows of `rows` whose key the index holds.
        let taken = |index: &KeyIndex, rows: &[RecordBatch]| -> Vec<usize> {
            let keys = index.packed(rows).unwrap();
            (0..keys.len()).filter(|i| index.holds(&keys[*i])).collect()
        };
        let claim =
            |index: &mut KeyIndex, rows: RecordBatch, stored: Option<&FileBoxes>, ticket| {
                let rows = [rows];
                let keys = index.packed(&rows).unwrap();
                index.claim(&rows, keys.iter(), stored, ticket)
            };
        let mut index = KeyIndex::new(vec![0, 1]).unwrap();
        index.add(&[batch(vec![1, 2], vec![10, 10])], 1).unwrap();
        let probe = [batch(vec![3, 2, 1], vec![10, 10, 10])];
        assert_eq!(taken(&index, &probe), vec![1, 2]);
        // A claim that meets an indexed key indexes none of its keys.
        assert!(!claim(&mut index, batch(vec![3, 1], vec![10, 10]), None, 2));
        assert_eq!(taken(&index, &probe), vec![1, 2]);
        assert!(claim(&mut index, batch(vec![3], vec![10]), None, 2));
        assert_eq!(taken(&index, &probe), vec![0, 1, 2]);
        // Write 2 fails to reach the log (leaving write 1's keys alone); write 1 is flushed.
        index.remove(&[batch(vec![3, 1], vec![10, 10])], 2).unwrap();
        index.flushed(1, 2, vec!["part-0.parquet".into()]);
        assert_eq!(taken(&index, &probe), vec![1, 2]);
        assert!(index.covered.contains("part-0.parquet"));
        // A file the index does not cover refuses claims of keys inside its box.
        let stored = vec![FileBox {
            path: "other.parquet".into(),
            size: 1,
            bounds: vec![
                Some((ScalarValue::Int32(Some(0)), ScalarValue::Int32(Some(5)))),
                Some((ScalarValue::Int64(Some(0)), ScalarValue::Int64(Some(20)))),
            ],
        }];
        assert!(!claim(
            &mut index,
            batch(vec![4], vec![10]),
            Some(&stored),
            3
        ));
        assert!(claim(
            &mut index,
            batch(vec![4], vec![30]),
            Some(&stored),
            3
        ));
        // An UPDATE or DELETE forgets flushed keys, not live ones.
        let all = [batch(vec![1, 2, 4], vec![10, 10, 30])];
        index.forget_flushed();
        assert_eq!(taken(&index, &all), vec![2]);
        assert!(index.covered.is_empty());
        // Past the limit, the oldest flushes' keys leave the index and their files are not
        // covered; the latest flush's stay.
        index.flushed(3, 10, vec!["part-1.parquet".into()]);
        index.add(&[batch(vec![5], vec![40])], 4).unwrap();
        index.flushed(4, FLUSHED_KEYS_LIMIT, vec!["part-2.parquet".into()]);
        let all = [batch(vec![1, 2, 4, 5], vec![10, 10, 30, 40])];
        assert_eq!(taken(&index, &all), vec![3]);
        assert!(!index.covered.contains("part-1.parquet"));
        assert!(index.covered.contains("part-2.parquet"));
    }
}
