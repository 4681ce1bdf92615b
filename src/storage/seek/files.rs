//! Reading the Parquet data files of a seek: a file's footer from the shared metadata cache,
//! the key columns' row-group and page statistics, and only the row groups and pages asked
//! for, through a reader that fetches byte ranges with the footer already at hand.
//!
//! Used by [`Storage::seek`](super::Storage::seek) only.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use datafusion::arrow::array::RecordBatch;
use deltalake::parquet::arrow::ProjectionMask;
use deltalake::parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, RowSelection,
};
use deltalake::parquet::arrow::async_reader::{AsyncFileReader, ParquetRecordBatchStreamBuilder};
use deltalake::parquet::errors::ParquetError;
use deltalake::parquet::file::metadata::{ParquetMetaData, RowGroupMetaData};
use deltalake::parquet::file::page_index::column_index::ColumnIndexMetaData;
use deltalake::parquet::file::statistics::Statistics;
use futures::future::BoxFuture;
use futures::{FutureExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::storage::footers::{file_object, parquet_metadata};
use crate::storage::table::TableState;
use crate::storage::{Result, Storage, StorageError};

use super::parquet_error;

/// Min and max of a Parquet column chunk, for integer columns.
fn chunk_bounds(statistics: Option<&Statistics>) -> Option<(i64, i64)> {
    match statistics? {
        Statistics::Int32(s) => Some((i64::from(*s.min_opt()?), i64::from(*s.max_opt()?))),
        Statistics::Int64(s) => Some((*s.min_opt()?, *s.max_opt()?)),
        _ => None,
    }
}

/// The rows of row group `group` on pages of column `leaf` whose min/max pass `keep`, as row
/// ranges within the group; `None` without a page index for the column.
pub(super) fn page_rows(
    metadata: &ParquetMetaData,
    group: usize,
    leaf: usize,
    keep: impl Fn(i64, i64) -> bool,
) -> Option<Vec<Range<usize>>> {
    let index = metadata.column_index()?.get(group)?.get(leaf)?;
    let pages = metadata
        .offset_index()?
        .get(group)?
        .get(leaf)?
        .page_locations();
    let rows = metadata.row_group(group).num_rows().max(0) as usize;
    let page_bounds = |page: usize| -> Option<(i64, i64)> {
        match index {
            ColumnIndexMetaData::INT32(i) => Some((
                i64::from(*i.min_value(page)?),
                i64::from(*i.max_value(page)?),
            )),
            ColumnIndexMetaData::INT64(i) => Some((*i.min_value(page)?, *i.max_value(page)?)),
            _ => None,
        }
    };
    if !matches!(
        index,
        ColumnIndexMetaData::INT32(_) | ColumnIndexMetaData::INT64(_)
    ) {
        return None;
    }
    let mut ranges = Vec::new();
    for (page, location) in pages.iter().enumerate() {
        // A page of nulls only has no bounds, and no key.
        let Some((low, high)) = page_bounds(page) else {
            continue;
        };
        if keep(low, high) {
            let start = location.first_row_index.max(0) as usize;
            let end = pages
                .get(page + 1)
                .map_or(rows, |next| next.first_row_index.max(0) as usize);
            ranges.push(start..end);
        }
    }
    Some(ranges)
}

/// Reads byte ranges of one data file whose footer is already at hand.
#[derive(Clone)]
pub(super) struct FileReader {
    store: Arc<dyn ObjectStore>,
    location: Path,
    pub(super) metadata: Arc<ParquetMetaData>,
}

impl AsyncFileReader for FileReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, Result<Bytes, ParquetError>> {
        async move {
            self.store
                .get_range(&self.location, range)
                .await
                .map_err(|e| ParquetError::External(Box::new(e)))
        }
        .boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, Result<Vec<Bytes>, ParquetError>> {
        async move {
            self.store
                .get_ranges(&self.location, &ranges)
                .await
                .map_err(|e| ParquetError::External(Box::new(e)))
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        _options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, Result<Arc<ParquetMetaData>, ParquetError>> {
        futures::future::ready(Ok(Arc::clone(&self.metadata))).boxed()
    }
}

/// One data file opened for seeking.
pub(super) struct OpenFile {
    pub(super) reader: FileReader,
    metadata: ArrowReaderMetadata,
    mask: ProjectionMask,
    /// Parquet leaf columns of the two key columns.
    pub(super) leaves: (usize, usize),
}
impl Storage {
    /// Opens a data file's footer (from the metadata cache) for reading `columns`; `None` when
    /// the file lacks one of the key columns.
    pub(super) async fn open_file(
        &self,
        state: &TableState,
        path: &str,
        size: u64,
        columns: &[usize],
    ) -> Result<Option<OpenFile>> {
        let runtime = self.runtime();
        let (store, object) = file_object(runtime, state.table.table_url(), path, size)
            .ok_or_else(|| StorageError::Location(format!("data file {path} has no store")))?;
        let parquet = parquet_metadata(runtime, store.as_ref(), &object).await?;
        let metadata =
            ArrowReaderMetadata::try_new(Arc::clone(&parquet), ArrowReaderOptions::new())
                .map_err(parquet_error)?;
        let file_schema = metadata.schema().clone();
        let descriptor = metadata.parquet_schema();
        let key = state.meta.primary_key_indices();
        let leaf = |column: usize| {
            deltalake::parquet::arrow::parquet_column(
                descriptor,
                &file_schema,
                &state.meta.columns[column].name,
            )
            .map(|(leaf, _)| leaf)
        };
        let (Some(first), Some(second)) = (leaf(key[0]), leaf(key[1])) else {
            return Ok(None);
        };
        // Columns added after the file was written are absent from it: NULL, as in a scan.
        let roots: Vec<usize> = columns
            .iter()
            .filter_map(|c| file_schema.index_of(&state.meta.columns[*c].name).ok())
            .collect();
        let mask = ProjectionMask::roots(descriptor, roots);
        Ok(Some(OpenFile {
            reader: FileReader {
                store,
                location: object.location,
                metadata: parquet,
            },
            metadata,
            mask,
            leaves: (first, second),
        }))
    }
}

/// The rows of a row group, or of its `selection`.
pub(super) async fn read_group(
    open: &OpenFile,
    group: usize,
    selection: Option<RowSelection>,
) -> Result<Vec<RecordBatch>> {
    let mut builder = ParquetRecordBatchStreamBuilder::new_with_metadata(
        open.reader.clone(),
        open.metadata.clone(),
    )
    .with_row_groups(vec![group])
    .with_projection(open.mask.clone());
    if let Some(selection) = selection {
        builder = builder.with_row_selection(selection);
    }
    builder
        .build()
        .map_err(parquet_error)?
        .try_collect()
        .await
        .map_err(parquet_error)
}

pub(super) fn group_bounds(group: &RowGroupMetaData, leaf: usize) -> (i64, i64) {
    chunk_bounds(group.column(leaf).statistics()).unwrap_or((i64::MIN, i64::MAX))
}
