//! Primary-key checks at ingest speed.
//!
//! Every table with a primary key keeps a [`KeyIndex`]: the keys of its rows that are in flight to
//! the write-ahead log or waiting in the write buffer, kept in step with both (added, or claimed at
//! commit, when a write is queued; dropped when it fails), and of the latest rows this server
//! flushed to Delta, up to a limit (the files they went to are then covered). Other rows in Delta
//! are screened with the files' column statistics: a new key can only clash with a file whose
//! min/max box holds it. [`Storage::key_clash`] answers from these two alone in the common case
//! (new keys past everything stored, as historian data is), and says [`KeyCheck::Unknown`] when
//! some stored file might hold a new key; the SQL layer then runs its exact check against the
//! snapshot for those rows.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::compute::{max, max_string, min, min_string};
use datafusion::arrow::datatypes::{DataType, Int8Type, Int16Type, Int32Type, Int64Type};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::common::Column;
use datafusion::physical_optimizer::pruning::PruningStatistics;
use datafusion::scalar::ScalarValue;

use super::table::{TableHandle, TableState};
use super::{Result, Storage, StorageError};

/// What the index and the statistics say about a set of new keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyCheck {
    /// No stored, buffered or in-flight row has any of the keys.
    Free,
    /// Row `n` of the new rows repeats a buffered or in-flight key.
    Taken(usize),
    /// A stored file may hold one of the keys: check exactly.
    Unknown,
}

/// An encoded key, held inline when short (as integer keys are) so that millions of them cost
/// no allocation each. Made by [`pack_keys`]; equal keys of one table's key types pack equally.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PackedKey {
    /// Two words rather than a `u128`, whose 16-byte alignment would pad every map slot.
    Short([u64; 2]),
    Long(Box<[u8]>),
}

impl PackedKey {
    /// A key in arrow's row format: inline below 16 bytes, the length in the last byte keeping
    /// keys of different lengths apart.
    fn from_row(row: &[u8]) -> PackedKey {
        if row.len() < 16 {
            let mut bytes = [0u8; 16];
            bytes[..row.len()].copy_from_slice(row);
            bytes[15] = row.len() as u8;
            PackedKey::from_u128(u128::from_le_bytes(bytes))
        } else {
            PackedKey::Long(row.into())
        }
    }

    fn from_u128(key: u128) -> PackedKey {
        PackedKey::Short([key as u64, (key >> 64) as u64])
    }

    /// The key as a number; for keys [`pack_keys`] packed straight from integer columns, ordered
    /// as the key tuples are (`None` for a key it could not pack so).
    pub(super) fn ordered(&self) -> Option<u128> {
        match self {
            PackedKey::Short([low, high]) => Some(u128::from(*low) | (u128::from(*high) << 64)),
            PackedKey::Long(_) => None,
        }
    }
}

/// The width in bits of an integer key column, which [`pack_keys`] packs without the row format.
pub(super) fn integer_bits(data_type: &DataType) -> Option<u32> {
    match data_type {
        DataType::Int8 => Some(8),
        DataType::Int16 => Some(16),
        DataType::Int32 => Some(32),
        DataType::Int64 => Some(64),
        _ => None,
    }
}

/// Packs the keys of rows given as their key columns.
///
/// Integer keys of at most 128 bits without NULLs (historian keys `(int4, int8)`, serial ids)
/// are packed straight from the columns, two shifts a value (ingest packs every key it checks),
/// in key order (see [`PackedKey::ordered`]).
/// Other keys, and batches with a NULL key value, go through arrow's row format; such a batch
/// of integer columns packs its keys as `Long`, so they cannot meet a directly packed key.
///
/// # Errors
/// Arrow errors encoding rows.
pub fn pack_keys(columns: &[ArrayRef]) -> std::result::Result<Vec<PackedKey>, ArrowError> {
    let rows = columns.first().map_or(0, |c| c.len());
    let bits: Option<Vec<u32>> = columns
        .iter()
        .map(|c| integer_bits(c.data_type()))
        .collect();
    let integer = bits.filter(|b| b.iter().sum::<u32>() <= 128);
    if let Some(bits) = &integer
        && columns.iter().all(|c| c.null_count() == 0)
    {
        let mut packed = vec![0u128; rows];
        for (column, bits) in columns.iter().zip(bits) {
            // Each value's bits with the sign bit flipped: unsigned order is then the values'
            // order, so packed keys compare as the key tuples do.
            let sign = 1u128 << (bits - 1);
            macro_rules! shift_in {
                ($type:ty, $unsigned:ty) => {
                    for (key, value) in packed
                        .iter_mut()
                        .zip(column.as_primitive::<$type>().values())
                    {
                        *key = (*key << bits) | (u128::from(*value as $unsigned) ^ sign);
                    }
                };
            }
            match column.data_type() {
                DataType::Int8 => shift_in!(Int8Type, u8),
                DataType::Int16 => shift_in!(Int16Type, u16),
                DataType::Int32 => shift_in!(Int32Type, u32),
                _ => shift_in!(Int64Type, u64),
            }
        }
        return Ok(packed.into_iter().map(PackedKey::from_u128).collect());
    }
    let fields = columns
        .iter()
        .map(|c| SortField::new(c.data_type().clone()))
        .collect();
    let encoded = RowConverter::new(fields)?.convert_columns(columns)?;
    Ok(encoded
        .iter()
        .map(|row| match integer {
            Some(_) => PackedKey::Long(row.as_ref().into()),
            None => PackedKey::from_row(row.as_ref()),
        })
        .collect())
}

/// Packs the keys of a batch's rows, its key columns being `key_indices`.
///
/// # Errors
/// As [`pack_keys`].
pub fn pack_batch_keys(
    batch: &RecordBatch,
    key_indices: &[usize],
) -> std::result::Result<Vec<PackedKey>, ArrowError> {
    let columns: Vec<ArrayRef> = key_indices
        .iter()
        .map(|i| batch.column(*i).clone())
        .collect();
    pack_keys(&columns)
}

/// Packs the keys of rows, counted across the batches.
///
/// # Errors
/// As [`pack_keys`].
pub fn pack_rows_keys(
    batches: &[RecordBatch],
    key_indices: &[usize],
) -> std::result::Result<Vec<PackedKey>, ArrowError> {
    let mut keys = Vec::with_capacity(batches.iter().map(RecordBatch::num_rows).sum());
    for batch in batches {
        keys.extend(pack_batch_keys(batch, key_indices)?);
    }
    Ok(keys)
}

/// A set of keys. Keys are hashed millions of times a second at ingest and come from the
/// server's own encoding, so a fast non-cryptographic hasher is the right trade.
pub type KeySet = std::collections::HashSet<PackedKey, foldhash::fast::RandomState>;

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

fn arrow_error(e: ArrowError) -> StorageError {
    StorageError::DataFusion(e.into())
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
pub(super) struct KeyIndex {
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
    pub(super) fn new(columns: Vec<usize>) -> Option<KeyIndex> {
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
    pub(super) fn packed(&self, batches: &[RecordBatch]) -> Result<Vec<PackedKey>> {
        pack_rows_keys(batches, &self.columns).map_err(arrow_error)
    }

    /// Indexes the keys of the rows of write `ticket`.
    pub(super) fn add(&mut self, batches: &[RecordBatch], ticket: u64) -> Result<()> {
        self.keys
            .reserve(batches.iter().map(RecordBatch::num_rows).sum());
        for batch in batches {
            for key in &self.batch_keys(batch)? {
                self.keys.insert(key, ticket);
            }
        }
        Ok(())
    }

    /// Forgets the keys of the rows of write `ticket` (it failed).
    pub(super) fn remove(&mut self, batches: &[RecordBatch], ticket: u64) -> Result<()> {
        for batch in batches {
            for key in &self.batch_keys(batch)? {
                self.keys.remove(key, ticket);
            }
        }
        Ok(())
    }

    /// The files among `boxes` whose keys the index does not hold.
    pub(super) fn uncovered(&self, boxes: &FileBoxes) -> FileBoxes {
        boxes
            .iter()
            .filter(|file| !self.covered.contains(&file.path))
            .cloned()
            .collect()
    }

    /// The key columns, as indices into the table's columns.
    pub(super) fn columns(&self) -> &[usize] {
        &self.columns
    }

    /// Indexes the keys of the rows of write `ticket`, which were checked against the table
    /// before other writers' rows arrived, in one probe a key: false, indexing none, when a
    /// row now holds one of them, or when a data file among `stored` (those the index does not
    /// cover, when files were added since the check) may hold one by its statistics. The
    /// caller then checks the rows again.
    pub(super) fn claim(
        &mut self,
        batches: &[RecordBatch],
        stored: Option<&FileBoxes>,
        ticket: u64,
    ) -> Result<bool> {
        if stored.is_some_and(|boxes| stored_may_hold(boxes, &self.columns, batches)) {
            return Ok(false);
        }
        let keys = self.packed(batches)?;
        self.keys.reserve(keys.len());
        for (i, key) in keys.iter().enumerate() {
            if !self.keys.insert_new(key, ticket) {
                for key in &keys[..i] {
                    self.keys.remove(key, ticket);
                }
                return Ok(false);
            }
        }
        Ok(true)
    }

    pub(super) fn clear(&mut self) {
        self.keys.clear();
        self.flushes.clear();
        self.flushed = 0;
        self.covered.clear();
    }

    /// Rows were deleted or rewritten in Delta: flushed keys may be stale.
    pub(super) fn forget_flushed(&mut self) {
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
    pub(super) fn flushed(&mut self, upto: u64, rows: usize, files: Vec<String>) {
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

    /// The rows of `batches` (counted across them) whose key is indexed: all of them, or only
    /// the first when `all` is false.
    fn taken(&self, batches: &[RecordBatch], all: bool) -> Result<Vec<usize>> {
        let mut taken = Vec::new();
        let mut offset = 0;
        for batch in batches {
            for (i, key) in self.batch_keys(batch)?.iter().enumerate() {
                if self.keys.contains(key) {
                    taken.push(offset + i);
                    if !all {
                        return Ok(taken);
                    }
                }
            }
            offset += batch.num_rows();
        }
        Ok(taken)
    }
}

/// Lowest and highest value of a key column, for the types keys usually have.
fn bounds(arrays: &[ArrayRef]) -> Option<(ScalarValue, ScalarValue)> {
    let mut low: Option<ScalarValue> = None;
    let mut high: Option<ScalarValue> = None;
    for array in arrays {
        let (lo, hi) = match array.data_type() {
            DataType::Int16 => {
                let a = array.as_primitive::<Int16Type>();
                (ScalarValue::Int16(min(a)), ScalarValue::Int16(max(a)))
            }
            DataType::Int32 => {
                let a = array.as_primitive::<Int32Type>();
                (ScalarValue::Int32(min(a)), ScalarValue::Int32(max(a)))
            }
            DataType::Int64 => {
                let a = array.as_primitive::<Int64Type>();
                (ScalarValue::Int64(min(a)), ScalarValue::Int64(max(a)))
            }
            DataType::Utf8 => {
                let a = array.as_string::<i32>();
                (
                    ScalarValue::Utf8(min_string(a).map(str::to_string)),
                    ScalarValue::Utf8(max_string(a).map(str::to_string)),
                )
            }
            _ => return None,
        };
        if lo.is_null() {
            continue;
        }
        low = Some(match low {
            Some(l) if l <= lo => l,
            _ => lo,
        });
        high = Some(match high {
            Some(h) if h >= hi => h,
            _ => hi,
        });
    }
    Some((low?, high?))
}

/// A data file: its path (relative to the table), size, and the min/max of each key column
/// (`None` where statistics are missing).
#[derive(Debug, Clone)]
pub(super) struct FileBox {
    pub path: String,
    pub size: u64,
    pub bounds: Vec<Option<(ScalarValue, ScalarValue)>>,
}

/// The boxes of a snapshot's data files.
pub(super) type FileBoxes = Vec<FileBox>;

/// The paths of a snapshot's data files (a slice's own only).
pub(super) fn file_paths(state: &TableState) -> Result<std::collections::HashSet<String>> {
    let snapshot = state.table.snapshot()?;
    Ok(snapshot
        .snapshot()
        .log_data()
        .iter()
        .filter(|f| {
            state
                .slice
                .as_ref()
                .is_none_or(|s| s.holds(&f.partition_values_map()))
        })
        .map(|f| f.path().to_string())
        .collect())
}

/// The key-column boxes of a snapshot's data files (a slice's own only), read from the Delta
/// statistics.
pub(super) fn file_boxes(state: &TableState, columns: &[usize]) -> Result<FileBoxes> {
    let snapshot = state.table.snapshot()?;
    let log_data = snapshot.snapshot().log_data();
    // Statistics arrays below cover every file of the Delta table, in this order.
    let in_slice: Vec<bool> = log_data
        .iter()
        .map(|f| {
            state
                .slice
                .as_ref()
                .is_none_or(|s| s.holds(&f.partition_values_map()))
        })
        .collect();
    let mut boxes: FileBoxes = log_data
        .iter()
        .map(|f| FileBox {
            path: f.path().to_string(),
            size: f.size().max(0) as u64,
            bounds: Vec::with_capacity(columns.len()),
        })
        .collect();
    for &index in columns {
        let column = Column::new_unqualified(&state.meta.columns[index].name);
        let (mins, maxs) = (log_data.min_values(&column), log_data.max_values(&column));
        for (file, FileBox { bounds, .. }) in boxes.iter_mut().enumerate() {
            let pair = match (&mins, &maxs) {
                (Some(mins), Some(maxs)) => {
                    let low = ScalarValue::try_from_array(mins, file)?;
                    let high = ScalarValue::try_from_array(maxs, file)?;
                    (!low.is_null() && !high.is_null()).then_some((low, high))
                }
                _ => None,
            };
            bounds.push(pair);
        }
    }
    Ok(boxes
        .into_iter()
        .zip(in_slice)
        .filter_map(|(file, keep)| keep.then_some(file))
        .collect())
}

/// Whether one of the data files `boxes` (those the index does not cover) may hold a key
/// inside the new keys' box.
fn stored_may_hold(boxes: &FileBoxes, columns: &[usize], batches: &[RecordBatch]) -> bool {
    if boxes.is_empty() {
        return false;
    }
    let mut new_box = Vec::with_capacity(columns.len());
    for &index in columns {
        let arrays: Vec<ArrayRef> = batches.iter().map(|b| b.column(index).clone()).collect();
        match bounds(&arrays) {
            Some(b) => new_box.push(b),
            None => return true,
        }
    }
    boxes.iter().any(|file| {
        file.bounds
            .iter()
            .zip(&new_box)
            .all(|(bounds, (low, high))| match bounds {
                // Missing statistics: the file may hold anything.
                None => true,
                Some((file_low, file_high)) => {
                    let below = file_high.partial_cmp(low) == Some(std::cmp::Ordering::Less);
                    let above = file_low.partial_cmp(high) == Some(std::cmp::Ordering::Greater);
                    !below && !above
                }
            })
    })
}

/// Which of a set of new keys the table already holds, as far as the index knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeysTaken {
    /// Rows (counted across the new batches) whose key is buffered, in flight or flushed by
    /// this server.
    pub rows: Vec<usize>,
    /// Whether a stored file may hold one of the other keys: check those exactly.
    pub stored_unknown: bool,
}

impl Storage {
    /// Checks new rows' primary keys against the table's in-flight, buffered and stored rows
    /// (see the module comment). Call under the table's admission lock for a decision that holds
    /// until the rows are queued.
    ///
    /// # Errors
    /// Arrow errors encoding keys, Delta errors reading statistics.
    pub fn key_clash(&self, table: &Arc<TableHandle>, batches: &[RecordBatch]) -> Result<KeyCheck> {
        let taken = self.keys_taken(table, batches, false)?;
        Ok(match (taken.rows.first(), taken.stored_unknown) {
            (Some(row), _) => KeyCheck::Taken(*row),
            (None, true) => KeyCheck::Unknown,
            (None, false) => KeyCheck::Free,
        })
    }

    /// Like [`Storage::key_clash`], but finds every row whose key the index holds (or only the
    /// first, when `all` is false), for inserts that skip duplicates.
    ///
    /// # Errors
    /// As [`Storage::key_clash`].
    pub fn keys_taken(
        &self,
        table: &Arc<TableHandle>,
        batches: &[RecordBatch],
        all: bool,
    ) -> Result<KeysTaken> {
        // The snapshot and the index are read together, so a flush moving rows from the
        // buffer to Delta is seen entirely on one side.
        let taken = table.with_keys(|state, index| {
            let Some(index) = index else {
                return Ok(None);
            };
            let rows = index.taken(batches, all)?;
            if !all && !rows.is_empty() {
                return Ok(Some(KeysTaken {
                    rows,
                    stored_unknown: false,
                }));
            }
            let boxes = table.uncovered_boxes(state, index)?;
            let stored_unknown = stored_may_hold(&boxes, &index.columns, batches);
            Ok::<_, StorageError>(Some(KeysTaken {
                rows,
                stored_unknown,
            }))
        })?;
        Ok(taken.unwrap_or(KeysTaken {
            rows: Vec::new(),
            stored_unknown: false,
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int32Array, Int64Array, StringArray};

    use super::*;

    fn historian(tags: Vec<Option<i32>>, stamps: Vec<i64>) -> Vec<ArrayRef> {
        vec![
            Arc::new(Int32Array::from(tags)),
            Arc::new(Int64Array::from(stamps)),
        ]
    }

    #[test]
    fn integer_keys_pack_equal_exactly_when_equal() {
        // Values whose bytes collide under careless packing: signs, and a tag's bits spilling
        // into the stamp's.
        let tags = [0, 1, -1, i32::MIN, i32::MAX, 256];
        let stamps = [0, 1, -1, i64::MIN, i64::MAX, 1 << 32, 1_793_491_200_000];
        let pairs: Vec<(i32, i64)> = tags
            .iter()
            .flat_map(|t| stamps.iter().map(move |s| (*t, *s)))
            .collect();
        let columns = historian(
            pairs.iter().map(|p| Some(p.0)).collect(),
            pairs.iter().map(|p| p.1).collect(),
        );
        let packed = pack_keys(&columns).unwrap();
        assert!(packed.iter().all(|k| matches!(k, PackedKey::Short(_))));
        let distinct: std::collections::HashSet<&PackedKey> = packed.iter().collect();
        assert_eq!(distinct.len(), pairs.len());
        // Packed keys order as the key tuples do.
        let mut by_tuple: Vec<usize> = (0..pairs.len()).collect();
        by_tuple.sort_by_key(|i| pairs[*i]);
        let mut by_packed: Vec<usize> = (0..pairs.len()).collect();
        by_packed.sort_by_key(|i| packed[*i].ordered().unwrap());
        assert_eq!(by_tuple, by_packed);
        // The same keys in another batch pack the same.
        let again = pack_keys(&historian(vec![Some(-1)], vec![1 << 32])).unwrap();
        let at = pairs.iter().position(|p| *p == (-1, 1 << 32)).unwrap();
        assert_eq!(again[0], packed[at]);
    }

    #[test]
    fn null_and_non_integer_keys_use_the_row_format() {
        let with_null = pack_keys(&historian(vec![None, Some(0)], vec![0, 0])).unwrap();
        assert!(matches!(with_null[1], PackedKey::Long(_)));
        assert_ne!(with_null[0], with_null[1]);
        let plain = pack_keys(&historian(vec![Some(0)], vec![0])).unwrap();
        assert_ne!(plain[0], with_null[1]);
        let names: ArrayRef = Arc::new(StringArray::from(vec!["a", "b", "a"]));
        let packed = pack_keys(&[names]).unwrap();
        assert_eq!(packed[0], packed[2]);
        assert_ne!(packed[0], packed[1]);
    }

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
        let mut index = KeyIndex::new(vec![0, 1]).unwrap();
        index.add(&[batch(vec![1, 2], vec![10, 10])], 1).unwrap();
        let probe = [batch(vec![3, 2, 1], vec![10, 10, 10])];
        assert_eq!(index.taken(&probe, true).unwrap(), vec![1, 2]);
        // A claim that meets an indexed key indexes none of its keys.
        assert!(
            !index
                .claim(&[batch(vec![3, 1], vec![10, 10])], None, 2)
                .unwrap()
        );
        assert_eq!(index.taken(&probe, true).unwrap(), vec![1, 2]);
        assert!(index.claim(&[batch(vec![3], vec![10])], None, 2).unwrap());
        assert_eq!(index.taken(&probe, true).unwrap(), vec![0, 1, 2]);
        // Write 2 fails to reach the log (leaving write 1's keys alone); write 1 is flushed.
        index.remove(&[batch(vec![3, 1], vec![10, 10])], 2).unwrap();
        index.flushed(1, 2, vec!["part-0.parquet".into()]);
        assert_eq!(index.taken(&probe, true).unwrap(), vec![1, 2]);
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
        assert!(
            !index
                .claim(&[batch(vec![4], vec![10])], Some(&stored), 3)
                .unwrap()
        );
        assert!(
            index
                .claim(&[batch(vec![4], vec![30])], Some(&stored), 3)
                .unwrap()
        );
        // An UPDATE or DELETE forgets flushed keys, not live ones.
        let all = [batch(vec![1, 2, 4], vec![10, 10, 30])];
        index.forget_flushed();
        assert_eq!(index.taken(&all, true).unwrap(), vec![2]);
        assert!(index.covered.is_empty());
        // Past the limit, the oldest flushes' keys leave the index and their files are not
        // covered; the latest flush's stay.
        index.flushed(3, 10, vec!["part-1.parquet".into()]);
        index.add(&[batch(vec![5], vec![40])], 4).unwrap();
        index.flushed(4, FLUSHED_KEYS_LIMIT, vec!["part-2.parquet".into()]);
        let all = [batch(vec![1, 2, 4, 5], vec![10, 10, 30, 40])];
        assert_eq!(index.taken(&all, true).unwrap(), vec![3]);
        assert!(!index.covered.contains("part-1.parquet"));
        assert!(index.covered.contains("part-2.parquet"));
    }
}
