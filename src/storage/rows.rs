//! Rows as Delta stores them: conformed to the table's current schema, sorted by primary key,
//! stripped of the PostgreSQL metadata Delta would compare, written with the table's Parquet
//! properties and committed with deltagate's commit info. Used by flushes, changes and scans.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{RecordBatch, RecordBatchOptions, new_null_array};
use datafusion::arrow::compute::{
    SortColumn, concat_batches, interleave_record_batch, lexsort_to_indices, take_record_batch,
};
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use deltalake::kernel::transaction::CommitProperties;
use deltalake::parquet::basic::{Compression, ZstdLevel};
use deltalake::parquet::file::properties::WriterProperties;
use deltalake::parquet::schema::types::ColumnPath;

use super::keys;
use super::{Result, StorageError, TableMeta};

/// Gives buffered rows the table's current schema (a column added since they were written is
/// NULL in them), so a flush never fails on a schema change that raced with an insert.
pub(in crate::storage) fn conform_to(
    batch: &RecordBatch,
    schema: &SchemaRef,
) -> Result<RecordBatch> {
    let columns = schema
        .fields()
        .iter()
        .map(|field| match batch.schema().index_of(field.name()) {
            Ok(i) if batch.column(i).data_type() == field.data_type() => {
                Ok(batch.column(i).clone())
            }
            Ok(i) => datafusion::arrow::compute::cast(batch.column(i), field.data_type()),
            Err(_) => Ok(new_null_array(field.data_type(), batch.num_rows())),
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| StorageError::DataFusion(e.into()))?;
    // The row count matters when no column is asked for (`count(*)`).
    let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    RecordBatch::try_new_with_options(schema.clone(), columns, &options)
        .map_err(|e| StorageError::DataFusion(e.into()))
}

/// The rows in primary-key order, as one batch: files (and their row groups and pages) then
/// cover narrow key ranges, so a query for a few tags reads a few pages (Ignition's seed and
/// trend queries), and similar values sit together and compress well. Without a key, as they
/// came.
pub(in crate::storage) fn sorted_by_key(
    batches: Vec<RecordBatch>,
    schema: &SchemaRef,
    key: &[usize],
) -> Result<Vec<RecordBatch>> {
    if key.is_empty() || batches.is_empty() {
        return Ok(batches);
    }
    let arrow = |e: datafusion::arrow::error::ArrowError| StorageError::DataFusion(e.into());
    if let Some(order) = integer_key_order(&batches, schema, key)? {
        let sources: Vec<&RecordBatch> = batches.iter().collect();
        return Ok(vec![
            interleave_record_batch(&sources, &order).map_err(arrow)?,
        ]);
    }
    let all = concat_batches(schema, &batches).map_err(arrow)?;
    drop(batches);
    let columns: Vec<SortColumn> = key
        .iter()
        .map(|i| SortColumn {
            values: all.column(*i).clone(),
            options: None,
        })
        .collect();
    let order = lexsort_to_indices(&columns, None).map_err(arrow)?;
    Ok(vec![take_record_batch(&all, &order).map_err(arrow)?])
}

/// The rows of `batches` in key order, as (batch, row) pairs, for integer keys without NULLs
/// (historian tables, serial ids): they sort as packed numbers, without a comparator per pair,
/// and are then gathered from the batches as they are, without a concatenated copy. `None` for
/// other keys.
fn integer_key_order(
    batches: &[RecordBatch],
    schema: &SchemaRef,
    key: &[usize],
) -> Result<Option<Vec<(usize, usize)>>> {
    if !key
        .iter()
        .all(|i| keys::integer_bits(schema.field(*i).data_type()).is_some())
    {
        return Ok(None);
    }
    let mut order: Vec<([u64; 2], u32, u32)> =
        Vec::with_capacity(batches.iter().map(RecordBatch::num_rows).sum());
    for (b, batch) in batches.iter().enumerate() {
        let packed =
            keys::pack_batch_keys(batch, key).map_err(|e| StorageError::DataFusion(e.into()))?;
        for (row, packed) in packed.iter().enumerate() {
            // A key with a NULL has no packed order.
            let Some(value) = packed.ordered() else {
                return Ok(None);
            };
            // Two words, not a u128, whose alignment would pad each entry from 24 bytes to 32.
            order.push(([(value >> 64) as u64, value as u64], b as u32, row as u32));
        }
    }
    order.sort_unstable_by_key(|(value, ..)| *value);
    Ok(Some(
        order
            .into_iter()
            .map(|(_, b, row)| (b as usize, row as usize))
            .collect(),
    ))
}

/// Rows per Parquet row group. Flushed rows are in key order, so a row group covers a few
/// tags: readers skip the others by row-group statistics alone (what Spark and most readers
/// use), and a lookup of one tag reads one or two row groups, not a million rows.
const ROW_GROUP_ROWS: usize = 64 * 1024;

/// Rows per data page (Parquet's default is 20,000). The page index lets a reader decode only
/// the pages holding a tag; with small pages a one-tag lookup (Ignition's seed query) decodes a
/// few thousand rows per column instead of forty thousand, for a slightly larger file.
const PAGE_ROWS: usize = 4 * 1024;

/// How a flush writes the Parquet files of a table.
///
/// The last primary-key column (`t_stamp` of a historian table, the `id` of a serial key) is
/// nearly unique within its row group, so a dictionary would hold almost every value: it is
/// written plain instead, which compresses as well and spares a reader of one page decoding the
/// whole row group's dictionary first.
pub(in crate::storage) fn writer_properties(meta: &TableMeta) -> WriterProperties {
    let mut builder = WriterProperties::builder()
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_data_page_row_count_limit(PAGE_ROWS)
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap_or_default()))
        .set_created_by(format!("deltagate {}", env!("CARGO_PKG_VERSION")));
    if let Some(last) = meta.primary_key.as_ref().and_then(|pk| pk.columns.last()) {
        builder = builder.set_column_dictionary_enabled(ColumnPath::from(last.as_str()), false);
    }
    builder.build()
}

pub(in crate::storage) fn commit_properties() -> CommitProperties {
    CommitProperties::default().with_metadata([(
        "engine".to_string(),
        serde_json::Value::String(format!("deltagate/{}", env!("CARGO_PKG_VERSION"))),
    )])
}

/// Delta compares schemas strictly; PostgreSQL facts in field metadata are not part of them.
pub(in crate::storage) fn strip_metadata(batches: Vec<RecordBatch>) -> Result<Vec<RecordBatch>> {
    batches
        .into_iter()
        .map(|batch| {
            let fields: Vec<_> = batch
                .schema()
                .fields()
                .iter()
                .map(|f| f.as_ref().clone().with_metadata(HashMap::new()))
                .collect();
            let schema = Arc::new(Schema::new(fields));
            RecordBatch::try_new(schema, batch.columns().to_vec()).map_err(|e| {
                StorageError::DataFusion(datafusion::error::DataFusionError::ArrowError(
                    Box::new(e),
                    None,
                ))
            })
        })
        .collect()
}
