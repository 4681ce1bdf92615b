//! Primary-key checks at ingest speed.
//!
//! Every table with a primary key keeps a [`KeyIndex`]: the keys of its rows that are in flight
//! to the write-ahead log or waiting in the write buffer, kept in step with both (added when a
//! write is queued, dropped when it fails or when a flush moves the rows to Delta). Rows in Delta
//! are screened with the files' column statistics: a new key can only clash with a file whose
//! min/max box holds it. [`Storage::key_clash`] answers from these two alone in the common case
//! (new keys past everything stored, as historian data is), and says [`KeyCheck::Unknown`] when
//! some stored file might hold a new key; the SQL layer then runs its exact check against the
//! snapshot for those rows.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::compute::{max, max_string, min, min_string};
use datafusion::arrow::datatypes::{DataType, Int16Type, Int32Type, Int64Type};
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

/// An encoded key (arrow row format), held inline when short (as integer keys are) so that
/// millions of them cost no allocation each.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PackedKey {
    /// Two words rather than a `u128`, whose 16-byte alignment would pad every map slot.
    Short([u64; 2]),
    Long(Box<[u8]>),
}

impl PackedKey {
    pub fn new(row: &[u8]) -> PackedKey {
        if row.len() < 16 {
            let mut bytes = [0u8; 16];
            bytes[..row.len()].copy_from_slice(row);
            // The length in the last byte keeps keys of different lengths apart.
            bytes[15] = row.len() as u8;
            let (low, high) = bytes.split_at(8);
            PackedKey::Short([
                u64::from_le_bytes(low.try_into().unwrap_or_default()),
                u64::from_le_bytes(high.try_into().unwrap_or_default()),
            ])
        } else {
            PackedKey::Long(row.into())
        }
    }
}

/// A set of keys. Keys are hashed millions of times a second at ingest and come from the
/// server's own encoding, so a fast non-cryptographic hasher is the right trade.
pub type KeySet = std::collections::HashSet<PackedKey, foldhash::fast::RandomState>;

/// Packed keys to values, for the index that holds every buffered key: short keys are stored
/// inline in their own map, without the enum's tag and padding (24 bytes a slot, not 32).
struct PackedMap<V> {
    short: HashMap<[u64; 2], V, foldhash::fast::RandomState>,
    long: HashMap<Box<[u8]>, V, foldhash::fast::RandomState>,
}

impl<V> Default for PackedMap<V> {
    fn default() -> Self {
        PackedMap {
            short: HashMap::default(),
            long: HashMap::default(),
        }
    }
}

impl<V: Default> PackedMap<V> {
    fn len(&self) -> usize {
        self.short.len() + self.long.len()
    }

    fn reserve(&mut self, additional: usize) {
        self.short.reserve(additional);
    }

    fn contains(&self, key: &PackedKey) -> bool {
        match key {
            PackedKey::Short(k) => self.short.contains_key(k),
            PackedKey::Long(k) => self.long.contains_key(k),
        }
    }

    fn get_mut(&mut self, key: &PackedKey) -> Option<&mut V> {
        match key {
            PackedKey::Short(k) => self.short.get_mut(k),
            PackedKey::Long(k) => self.long.get_mut(k),
        }
    }

    fn entry(&mut self, key: PackedKey) -> &mut V {
        match key {
            PackedKey::Short(k) => self.short.entry(k).or_default(),
            PackedKey::Long(k) => self.long.entry(k).or_default(),
        }
    }

    fn remove(&mut self, key: &PackedKey) {
        match key {
            PackedKey::Short(k) => self.short.remove(k),
            PackedKey::Long(k) => self.long.remove(k),
        };
    }

    fn clear(&mut self) {
        self.short.clear();
        self.long.clear();
    }
}

/// Keys flushed rows keep in the index at most; past it, flushed files are screened by their
/// statistics only.
const FLUSHED_KEYS_LIMIT: usize = 16_000_000;

/// Keys of a table's in-flight and buffered rows, and of the rows this server flushed since the
/// last UPDATE/DELETE (whose files are then `covered`: the index answers for them exactly).
pub(super) struct KeyIndex {
    columns: Vec<usize>,
    converter: RowConverter,
    keys: PackedMap<u32>,
    flushed: PackedMap<()>,
    covered: std::collections::HashSet<String>,
}

fn arrow_error(e: datafusion::arrow::error::ArrowError) -> StorageError {
    StorageError::DataFusion(e.into())
}

impl KeyIndex {
    /// The index for a table whose key columns have these indices and types; `None` without
    /// a primary key.
    pub(super) fn new(columns: Vec<usize>, types: Vec<DataType>) -> Option<KeyIndex> {
        if columns.is_empty() {
            return None;
        }
        let converter = RowConverter::new(types.into_iter().map(SortField::new).collect()).ok()?;
        Some(KeyIndex {
            columns,
            converter,
            keys: PackedMap::default(),
            flushed: PackedMap::default(),
            covered: std::collections::HashSet::new(),
        })
    }

    fn encode(&self, batch: &RecordBatch) -> Result<datafusion::arrow::row::Rows> {
        let columns: Vec<ArrayRef> = self
            .columns
            .iter()
            .map(|i| batch.column(*i).clone())
            .collect();
        self.converter
            .convert_columns(&columns)
            .map_err(arrow_error)
    }

    pub(super) fn add(&mut self, batches: &[RecordBatch]) -> Result<()> {
        self.keys
            .reserve(batches.iter().map(RecordBatch::num_rows).sum());
        for batch in batches {
            for row in self.encode(batch)?.iter() {
                *self.keys.entry(PackedKey::new(row.as_ref())) += 1;
            }
        }
        Ok(())
    }

    pub(super) fn remove(&mut self, batches: &[RecordBatch]) -> Result<()> {
        for batch in batches {
            for row in self.encode(batch)?.iter() {
                self.unlive(&PackedKey::new(row.as_ref()));
            }
        }
        Ok(())
    }

    fn unlive(&mut self, key: &PackedKey) {
        if let Some(count) = self.keys.get_mut(key) {
            *count -= 1;
            if *count == 0 {
                self.keys.remove(key);
            }
        }
    }

    pub(super) fn clear(&mut self) {
        self.keys.clear();
        self.forget_flushed();
    }

    /// Rows were deleted or rewritten in Delta: flushed keys may be stale.
    pub(super) fn forget_flushed(&mut self) {
        self.flushed = PackedMap::default();
        self.covered.clear();
    }

    /// The keys of rows, encoded.
    pub(super) fn packed(&self, batches: &[RecordBatch]) -> Result<Vec<PackedKey>> {
        let mut keys = Vec::with_capacity(batches.iter().map(RecordBatch::num_rows).sum());
        for batch in batches {
            keys.extend(
                self.encode(batch)?
                    .iter()
                    .map(|r| PackedKey::new(r.as_ref())),
            );
        }
        Ok(keys)
    }

    /// Rows with these keys moved from the buffer to the Delta `files`: their keys stay indexed
    /// (as flushed) while there is room, and those files need no statistics check.
    pub(super) fn flushed(&mut self, keys: &[PackedKey], files: Vec<String>) {
        let keep = self.flushed.len() + keys.len() <= FLUSHED_KEYS_LIMIT;
        if keep {
            self.flushed.reserve(keys.len());
        }
        for key in keys {
            self.unlive(key);
            if keep {
                self.flushed.entry(key.clone());
            }
        }
        if keep {
            self.covered.extend(files);
        }
    }

    /// The rows of `batches` (counted across them) whose key is indexed: all of them, or only
    /// the first when `all` is false.
    fn taken(&self, batches: &[RecordBatch], all: bool) -> Result<Vec<usize>> {
        let mut taken = Vec::new();
        let mut offset = 0;
        for batch in batches {
            for (i, row) in self.encode(batch)?.iter().enumerate() {
                let key = PackedKey::new(row.as_ref());
                if self.keys.contains(&key) || self.flushed.contains(&key) {
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
#[derive(Debug)]
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

/// Whether some data file not `covered` by the index may hold a key inside the new keys' box.
fn stored_may_hold(
    boxes: &FileBoxes,
    covered: &std::collections::HashSet<String>,
    columns: &[usize],
    batches: &[RecordBatch],
) -> bool {
    if boxes.iter().all(|file| covered.contains(&file.path)) {
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
    boxes
        .iter()
        .filter(|file| !covered.contains(&file.path))
        .any(|file| {
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
        let Some((state, rows, columns, covered)) = table.with_keys(|state, index| {
            index
                .map(|index| {
                    Ok::<_, StorageError>((
                        state.clone(),
                        index.taken(batches, all)?,
                        index.columns.clone(),
                        index.covered.clone(),
                    ))
                })
                .transpose()
        })?
        else {
            return Ok(KeysTaken {
                rows: Vec::new(),
                stored_unknown: false,
            });
        };
        if !all && !rows.is_empty() {
            return Ok(KeysTaken {
                rows,
                stored_unknown: false,
            });
        }
        let boxes = table.file_boxes(&state, &columns)?;
        let stored_unknown = stored_may_hold(&boxes, &covered, &columns, batches);
        Ok(KeysTaken {
            rows,
            stored_unknown,
        })
    }
}
