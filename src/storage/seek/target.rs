//! What a seek compares: its key prefix, the inclusive range of the second key column, its
//! order and limit; which files, row groups and pages may hold a match, and the rows found so
//! far, kept best first and cut to the limit.
//!
//! A visit stops once the rows found beat anything still unvisited could hold
//! ([`Target::settled`]). Used by [`Storage::seek`](super::Storage::seek) only.

use datafusion::arrow::array::{Array, AsArray, BooleanArray, RecordBatch};
use datafusion::arrow::compute::{
    SortOptions, concat_batches, filter_record_batch, sort_to_indices, take_record_batch,
};
use datafusion::arrow::datatypes::{Int64Type, SchemaRef};
use deltalake::parquet::arrow::arrow_reader::RowSelection;
use deltalake::parquet::file::metadata::ParquetMetaData;

use crate::storage::rows::conform_to;
use crate::storage::{Result, StorageError};

use super::arrow_error;
use super::files::page_rows;

/// What a seek compares: its prefix values (sorted), its inclusive range, direction and limit,
/// and where the two key columns sit among the columns it reads.
pub(super) struct Target {
    pub(super) prefix: Vec<i64>,
    pub(super) low: i64,
    pub(super) high: i64,
    pub(super) descending: bool,
    pub(super) limit: Option<usize>,
    pub(super) first: usize,
    pub(super) second: usize,
}

impl Target {
    pub(super) fn admits_prefix(&self, low: i64, high: i64) -> bool {
        let at = self.prefix.partition_point(|v| *v < low);
        self.prefix.get(at).is_some_and(|v| *v <= high)
    }

    /// The best second-key value rows within `[low, high]` can have for this seek, or `None`
    /// when none of them is in range.
    pub(super) fn best_within(&self, low: i64, high: i64) -> Option<i64> {
        let (low, high) = (low.max(self.low), high.min(self.high));
        (low <= high).then_some(if self.descending { high } else { low })
    }

    /// Orders best second-key values of files or row groups: the one to visit first first.
    pub(super) fn best_first(&self, a: i64, b: i64) -> std::cmp::Ordering {
        if self.descending {
            b.cmp(&a)
        } else {
            a.cmp(&b)
        }
    }

    /// Whether `found` (the best rows so far, sorted best first) can no longer be improved by
    /// rows whose best second-key value is `bound`.
    pub(super) fn settled(&self, found: Option<&RecordBatch>, bound: i64) -> bool {
        let (Some(limit), Some(found)) = (self.limit, found) else {
            return false;
        };
        if limit == 0 || found.num_rows() < limit {
            return limit == 0;
        }
        let worst = found
            .column(self.second)
            .as_primitive::<Int64Type>()
            .value(limit - 1);
        if self.descending {
            worst >= bound
        } else {
            worst <= bound
        }
    }

    /// The rows of `batch` that match.
    fn matching(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let first = batch.column(self.first).as_primitive::<Int64Type>();
        let second = batch.column(self.second).as_primitive::<Int64Type>();
        let mask: BooleanArray = (0..batch.num_rows())
            .map(|i| {
                Some(
                    first.is_valid(i)
                        && second.is_valid(i)
                        && self.prefix.binary_search(&first.value(i)).is_ok()
                        && (self.low..=self.high).contains(&second.value(i)),
                )
            })
            .collect();
        filter_record_batch(batch, &mask).map_err(arrow_error)
    }

    /// The rows of row group `group` on pages whose statistics admit a match (of the two key
    /// columns, at `leaves`); `None` without a page index.
    pub(super) fn selection(
        &self,
        parquet: &ParquetMetaData,
        group: usize,
        leaves: (usize, usize),
    ) -> Option<RowSelection> {
        let rows = parquet.row_group(group).num_rows().max(0) as usize;
        [
            page_rows(parquet, group, leaves.0, |l, h| self.admits_prefix(l, h)),
            page_rows(parquet, group, leaves.1, |l, h| {
                self.best_within(l, h).is_some()
            }),
        ]
        .into_iter()
        .flatten()
        .map(|ranges| RowSelection::from_consecutive_ranges(ranges.into_iter(), rows))
        .reduce(|a, b| a.intersection(&b))
    }

    /// `found` with the matching rows of `batches` (as read, in `schema`'s column order).
    pub(super) fn add(
        &self,
        found: Option<RecordBatch>,
        batches: &[RecordBatch],
        schema: &SchemaRef,
    ) -> Result<Option<RecordBatch>> {
        let rows = batches
            .iter()
            .map(|b| self.matching(&conform_to(b, schema)?))
            .collect::<Result<Vec<_>>>()?;
        if rows.iter().all(|b| b.num_rows() == 0) {
            return Ok(found);
        }
        self.merge(found, rows).map(Some)
    }

    /// `found` and `more` together, best first, cut to the limit.
    fn merge(&self, found: Option<RecordBatch>, more: Vec<RecordBatch>) -> Result<RecordBatch> {
        let Some(schema) = more.first().map(RecordBatch::schema) else {
            return found.ok_or_else(|| StorageError::Metadata("seek merged nothing".into()));
        };
        let all = concat_batches(&schema, found.iter().chain(more.iter())).map_err(arrow_error)?;
        let options = SortOptions {
            descending: self.descending,
            nulls_first: false,
        };
        let order = sort_to_indices(all.column(self.second), Some(options), self.limit)
            .map_err(arrow_error)?;
        take_record_batch(&all, &order).map_err(arrow_error)
    }
}
