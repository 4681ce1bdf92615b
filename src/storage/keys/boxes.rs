//! File statistics as key boxes: for each data file of a snapshot, the min/max of every key
//! column from the Delta log, so a new key is compared only with files whose box holds it.

use datafusion::arrow::array::{ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::compute::{max, max_string, min, min_string};
use datafusion::arrow::datatypes::{DataType, Int16Type, Int32Type, Int64Type};
use datafusion::common::Column;
use datafusion::physical_optimizer::pruning::PruningStatistics;
use datafusion::scalar::ScalarValue;

use deltalake::DeltaTable;

use super::super::Result;
use super::super::historian::partition::Slice;

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
pub(in crate::storage) struct FileBox {
    pub path: String,
    pub size: u64,
    pub bounds: Vec<Option<(ScalarValue, ScalarValue)>>,
}

/// The boxes of a snapshot's data files.
pub(in crate::storage) type FileBoxes = Vec<FileBox>;

/// The paths of a snapshot's data files (a slice's own only).
pub(in crate::storage) fn file_paths(
    table: &DeltaTable,
    slice: Option<&Slice>,
) -> Result<std::collections::HashSet<String>> {
    let snapshot = table.snapshot()?;
    Ok(snapshot
        .snapshot()
        .log_data()
        .iter()
        .filter(|f| slice.is_none_or(|s| s.holds(&f.partition_values_map())))
        .map(|f| f.path().to_string())
        .collect())
}

/// The key-column boxes of a snapshot's data files (a slice's own only), read from the Delta
/// statistics.
pub(in crate::storage) fn file_boxes(
    table: &DeltaTable,
    slice: Option<&Slice>,
    columns: &[&str],
) -> Result<FileBoxes> {
    let snapshot = table.snapshot()?;
    let log_data = snapshot.snapshot().log_data();
    // Statistics arrays below cover every file of the Delta table, in this order.
    let in_slice: Vec<bool> = log_data
        .iter()
        .map(|f| slice.is_none_or(|s| s.holds(&f.partition_values_map())))
        .collect();
    let mut boxes: FileBoxes = log_data
        .iter()
        .map(|f| FileBox {
            path: f.path().to_string(),
            size: f.size().max(0) as u64,
            bounds: Vec::with_capacity(columns.len()),
        })
        .collect();
    for name in columns {
        let column = Column::new_unqualified(*name);
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
pub(in crate::storage) fn stored_may_hold(
    boxes: &FileBoxes,
    columns: &[usize],
    batches: &[RecordBatch],
) -> bool {
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
