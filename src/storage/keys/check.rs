//! The key check every insert takes: planned INSERT, the planner-free INSERT of client batches,
//! COPY (text, CSV and binary), and the re-check at commit.
//!
//! Rows arrive once, as [`NewRows`]: validated, in the table's stored schema, each row's primary
//! key packed once. [`Storage::check_keys`] decides them under the insert's [`OnDuplicate`]
//! policy, in the order of cost:
//!
//! 1. against each other and the keys the transaction inserted into the table before
//!    (`earlier`, which the new keys join), by hashing;
//! 2. against rows in flight to the log, buffered, or flushed lately by this server, through
//!    the table's [`KeyIndex`](super::index::KeyIndex);
//! 3. against the other stored rows: the data files' key boxes rule most of them out (new
//!    historian keys lie past everything stored); where a box may hold a new key, an exact
//!    semi join of the stored keys with the new ones ([`matching_keys`]).
//!
//! The same packed keys then go with the rows into the transaction and the log, whose append
//! claims them in the index (see `ingest::admission`): in the common case a key is packed once
//! from the wire to the buffer. Only a re-check after a refused claim, replay and a failed
//! append pack keys again.
//!
//! A transaction that deleted rows of the table sees more than "stored rows plus inserts";
//! the SQL layer checks its inserts against its own view instead, with [`matching_keys`] over
//! that view.

use std::sync::Arc;

use datafusion::arrow::array::{BooleanArray, RecordBatch};
use datafusion::arrow::compute::{concat_batches, filter_record_batch};
use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::catalog::TableProvider;
use datafusion::common::Column;
use datafusion::logical_expr::{JoinType, col, lit};
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::scalar::ScalarValue;

use super::super::meta::TableMeta;
use super::super::provider::PgTableProvider;
use super::super::table::{TableHandle, TableState};
use super::super::{Result, Storage, StorageError};
use super::boxes::stored_may_hold;
use super::pack::{KeySet, PackedKey, arrow_error, pack_keys, pack_rows_keys};

/// What an insert does with a row whose primary key is taken (by an earlier row of the insert,
/// of its transaction, or of the table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDuplicate {
    /// PostgreSQL's rule: the insert fails with 23505 and stores nothing.
    Reject,
    /// The row is skipped and the first value kept, as `ON CONFLICT DO NOTHING` would: what
    /// historian data tables do by default, so that a batch Ignition re-sends succeeds (see
    /// `historian::on_duplicate`).
    Skip,
}

/// Rows bound for a table, in its stored schema, each with its primary key packed once.
#[derive(Debug, Clone)]
pub struct NewRows {
    batches: Vec<RecordBatch>,
    /// One per row, counted across the batches; empty when the table has no primary key.
    keys: Vec<PackedKey>,
}

impl NewRows {
    /// Packs the primary keys of `batches` (in the stored schema of the table `meta`
    /// describes).
    ///
    /// # Errors
    /// Arrow errors encoding the keys.
    pub fn pack(meta: &TableMeta, batches: Vec<RecordBatch>) -> Result<NewRows> {
        let columns = meta.primary_key_indices();
        let keys = if meta.primary_key.is_none() || columns.is_empty() {
            Vec::new()
        } else {
            pack_rows_keys(&batches, &columns).map_err(arrow_error)?
        };
        Ok(NewRows { batches, keys })
    }

    /// Rows counted across the batches.
    pub fn len(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn batches(&self) -> &[RecordBatch] {
        &self.batches
    }

    /// The packed key of each row; empty without a primary key.
    pub fn keys(&self) -> &[PackedKey] {
        &self.keys
    }

    pub fn into_batches(self) -> Vec<RecordBatch> {
        self.batches
    }

    /// The rows `keep` marks (one flag a row), with their keys.
    ///
    /// # Errors
    /// Arrow errors filtering.
    pub fn keep(self, keep: &[bool]) -> Result<NewRows> {
        if keep.iter().all(|k| *k) {
            return Ok(self);
        }
        let keys = if self.keys.is_empty() {
            Vec::new()
        } else {
            self.keys
                .into_iter()
                .zip(keep)
                .filter_map(|(key, keep)| keep.then_some(key))
                .collect()
        };
        Ok(NewRows {
            batches: kept_batches(self.batches, keep)?,
            keys,
        })
    }
}

/// The rows of `batches` that `keep` marks (counted across them); the batches themselves when
/// it marks all, as it mostly does.
fn kept_batches(batches: Vec<RecordBatch>, keep: &[bool]) -> Result<Vec<RecordBatch>> {
    if keep.iter().all(|k| *k) {
        return Ok(batches);
    }
    let mut offset = 0;
    batches
        .into_iter()
        .map(|batch| {
            let mask = BooleanArray::from(keep[offset..offset + batch.num_rows()].to_vec());
            offset += batch.num_rows();
            filter_record_batch(&batch, &mask).map_err(arrow_error)
        })
        .collect()
}

/// What [`Storage::check_keys`] decided.
#[derive(Debug)]
pub struct Checked {
    /// The rows to store: all of them, unless duplicates are skipped.
    pub rows: NewRows,
    /// Per new row, whether it is stored.
    pub kept: Vec<bool>,
}

/// What the key index and the file statistics say about some of the new rows.
struct Probe {
    /// Rows whose key is in flight, buffered or flushed by this server.
    taken: Vec<usize>,
    /// A stored file the index does not cover may hold the key of one of the others.
    stored_unknown: bool,
}

impl Storage {
    /// Checks new rows' primary keys against each other, against `earlier` (the keys the
    /// transaction inserted into the table so far, which the kept rows' keys join) and against
    /// the table: its rows in flight, buffered, and stored in `state` (see the module comment).
    /// Under [`OnDuplicate::Reject`] a taken key fails the check with 23505; `earlier` may then
    /// hold some of the new keys, so callers drop it (the insert stores nothing).
    ///
    /// # Errors
    /// [`StorageError::UniqueViolation`]; Arrow, Delta and DataFusion errors reading keys.
    pub async fn check_keys(
        &self,
        table: &Arc<TableHandle>,
        state: &TableState,
        rows: NewRows,
        earlier: &mut KeySet,
        on_duplicate: OnDuplicate,
    ) -> Result<Checked> {
        let count = rows.len();
        let mut kept = vec![true; count];
        if rows.keys.is_empty() {
            return Ok(Checked { rows, kept });
        }
        let meta = &state.meta;
        earlier.reserve(count);
        for (i, key) in rows.keys.iter().enumerate() {
            if !earlier.insert(key.clone()) {
                match on_duplicate {
                    OnDuplicate::Reject => return Err(violation(meta, rows.batches(), i)?),
                    OnDuplicate::Skip => kept[i] = false,
                }
            }
        }
        let probe = self.probe(table, &rows, &kept, on_duplicate == OnDuplicate::Skip)?;
        if let (OnDuplicate::Reject, Some(&row)) = (on_duplicate, probe.taken.first()) {
            return Err(violation(meta, rows.batches(), row)?);
        }
        for &row in &probe.taken {
            kept[row] = false;
            earlier.remove(&rows.keys[row]);
        }
        if probe.stored_unknown {
            // The rows no cheaper step decided, against the stored rows exactly.
            let open = kept_batches(rows.batches.clone(), &kept)?;
            let keys = key_columns(&open, &meta.primary_key_indices())?;
            let limit = (on_duplicate == OnDuplicate::Reject).then_some(1);
            let provider: Arc<dyn TableProvider> = Arc::new(PgTableProvider::try_new(state).await?);
            let stored = matching_keys(&self.key_context(), provider, meta, &keys, limit).await?;
            if on_duplicate == OnDuplicate::Reject {
                if let Some(batch) = stored.iter().find(|b| b.num_rows() > 0) {
                    return Err(violation_at(meta, batch, 0)?);
                }
            } else {
                let stored = key_set(&stored)?;
                for (row, key) in rows.keys.iter().enumerate() {
                    if kept[row] && stored.contains(key) {
                        kept[row] = false;
                        earlier.remove(key);
                    }
                }
            }
        }
        Ok(Checked {
            rows: rows.keep(&kept)?,
            kept,
        })
    }

    /// Whether no row of the table, in flight, buffered or stored, has one of the keys of
    /// `rows`, as far as the key index and the file statistics can tell without reading data
    /// (false: one may).
    ///
    /// # Errors
    /// Arrow errors encoding keys, Delta errors reading statistics.
    pub fn keys_surely_free(&self, table: &Arc<TableHandle>, rows: &NewRows) -> Result<bool> {
        let probe = self.probe(table, rows, &vec![true; rows.len()], false)?;
        Ok(probe.taken.is_empty() && !probe.stored_unknown)
    }

    /// Asks the key index, and the statistics of the files it does not cover, about the rows
    /// `open` marks: every one whose key is taken, or only the first when `all` is false.
    fn probe(
        &self,
        table: &Arc<TableHandle>,
        rows: &NewRows,
        open: &[bool],
        all: bool,
    ) -> Result<Probe> {
        // The snapshot and the index are read together, so a flush moving rows from the
        // buffer to Delta is seen entirely on one side.
        table.with_keys(|state, index| {
            let Some(index) = index else {
                return Ok(Probe {
                    taken: Vec::new(),
                    stored_unknown: false,
                });
            };
            let mut taken = Vec::new();
            for (row, key) in rows.keys.iter().enumerate() {
                if open[row] && index.holds(key) {
                    taken.push(row);
                    if !all {
                        return Ok(Probe {
                            taken,
                            stored_unknown: false,
                        });
                    }
                }
            }
            let boxes = table.uncovered_boxes(state, index)?;
            let mut still = open.to_vec();
            for &row in &taken {
                still[row] = false;
            }
            // Only the rows still open count; none when the index decided them all.
            let stored_unknown = !boxes.is_empty()
                && still.iter().any(|s| *s)
                && stored_may_hold(
                    &boxes,
                    index.columns(),
                    &kept_batches(rows.batches.clone(), &still)?,
                );
            Ok(Probe {
                taken,
                stored_unknown,
            })
        })
    }

    /// A DataFusion context for exact key checks, on the shared runtime.
    fn key_context(&self) -> SessionContext {
        SessionContext::new_with_config_rt(SessionConfig::new(), self.runtime().clone())
    }
}

/// The keys among `keys` (key columns only, in key order) that `table` (the table of `meta`,
/// or a transaction's view of it) holds: a semi join of its keys with the new ones, pruned by
/// the new keys' range; at most `limit` of them.
///
/// # Errors
/// DataFusion errors planning or running the join.
pub async fn matching_keys(
    ctx: &SessionContext,
    table: Arc<dyn TableProvider>,
    meta: &TableMeta,
    keys: &RecordBatch,
    limit: Option<usize>,
) -> Result<Vec<RecordBatch>> {
    let key_names: Vec<String> = meta
        .primary_key_indices()
        .iter()
        .map(|i| meta.columns[*i].name.clone())
        .collect();
    let new_names: Vec<String> = (0..key_names.len())
        .map(|i| format!("__deltagate_key{i}"))
        .collect();
    let renamed = Schema::new(
        keys.schema()
            .fields()
            .iter()
            .zip(&new_names)
            .map(|(f, n)| Field::new(n, f.data_type().clone(), true))
            .collect::<Vec<_>>(),
    );
    let renamed =
        RecordBatch::try_new(Arc::new(renamed), keys.columns().to_vec()).map_err(arrow_error)?;
    let mut stored = ctx.read_table(table)?;
    for (i, name) in key_names.iter().enumerate() {
        if let (Some(low), Some(high)) = integer_bounds(keys.column(i)) {
            stored =
                stored.filter(col(Column::new_unqualified(name)).between(lit(low), lit(high)))?;
        }
    }
    let stored = stored.select(
        key_names
            .iter()
            .map(|n| col(Column::new_unqualified(n)))
            .collect::<Vec<_>>(),
    )?;
    let new_keys = ctx.read_batch(renamed)?;
    Ok(stored
        .join(
            new_keys,
            JoinType::LeftSemi,
            &key_names.iter().map(String::as_str).collect::<Vec<_>>(),
            &new_names.iter().map(String::as_str).collect::<Vec<_>>(),
            None,
        )?
        .limit(0, limit)?
        .collect()
        .await?)
}

/// Min and max of a key column, for integer keys (the common case); others are not pruned.
fn integer_bounds(
    array: &datafusion::arrow::array::ArrayRef,
) -> (Option<ScalarValue>, Option<ScalarValue>) {
    use datafusion::arrow::array::{Int16Array, Int32Array, Int64Array};
    use datafusion::arrow::compute::{max, min};
    use datafusion::arrow::datatypes::DataType as T;
    macro_rules! bounds {
        ($array:ty, $scalar:ident) => {
            match array.as_any().downcast_ref::<$array>() {
                Some(a) => (
                    min(a).map(|v| ScalarValue::$scalar(Some(v))),
                    max(a).map(|v| ScalarValue::$scalar(Some(v))),
                ),
                None => (None, None),
            }
        };
    }
    match array.data_type() {
        T::Int16 => bounds!(Int16Array, Int16),
        T::Int32 => bounds!(Int32Array, Int32),
        T::Int64 => bounds!(Int64Array, Int64),
        _ => (None, None),
    }
}

/// The key columns of `batches` (not empty), as one batch.
///
/// # Errors
/// Arrow errors projecting or concatenating.
pub fn key_columns(batches: &[RecordBatch], key_indices: &[usize]) -> Result<RecordBatch> {
    let projected = batches
        .iter()
        .map(|b| b.project(key_indices))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(arrow_error)?;
    let Some(first) = projected.first() else {
        return Err(StorageError::Metadata("key columns of no rows".into()));
    };
    concat_batches(&first.schema(), &projected).map_err(arrow_error)
}

/// The set of the packed keys of `batches` (key columns only).
///
/// # Errors
/// Arrow errors encoding the keys.
pub fn key_set(batches: &[RecordBatch]) -> Result<KeySet> {
    let mut set = KeySet::default();
    for batch in batches {
        set.extend(pack_keys(batch.columns()).map_err(arrow_error)?);
    }
    Ok(set)
}

/// The 23505 error for row `row` of `batches` (whole rows of the table `meta` describes).
fn violation(meta: &TableMeta, batches: &[RecordBatch], row: usize) -> Result<StorageError> {
    let keys = key_columns(batches, &meta.primary_key_indices())?;
    violation_at(meta, &keys, row)
}

/// The 23505 error for row `row` of `keys` (key columns only).
///
/// # Errors
/// Arrow errors formatting the key.
pub fn violation_at(meta: &TableMeta, keys: &RecordBatch, row: usize) -> Result<StorageError> {
    let Some(pk) = meta.primary_key.as_ref() else {
        return Err(StorageError::Metadata(
            "key violation without a primary key".into(),
        ));
    };
    let options = FormatOptions::default();
    let mut values = Vec::with_capacity(keys.num_columns());
    for column in keys.columns() {
        let formatter = ArrayFormatter::try_new(column.as_ref(), &options).map_err(arrow_error)?;
        values.push(formatter.value(row).to_string());
    }
    Ok(StorageError::UniqueViolation {
        constraint: pk.name.clone(),
        detail: format!(
            "Key ({})=({}) already exists.",
            pk.columns.join(", "),
            values.join(", ")
        ),
    })
}
