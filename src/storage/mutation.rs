//! Mutations: what an `UPDATE`, `DELETE`, `TRUNCATE`, `ON CONFLICT DO UPDATE`, a column's
//! default or a dropped historian month does to a table's Delta files — one Delta commit per
//! table, however many statements of the transaction made the change.
//!
//! A statement that deletes rows first takes [`Storage::read_for_change`]: the table's buffer
//! is flushed and the statement reads the Delta snapshot alone, so every row it can delete
//! lies in a data file of that snapshot; [`Storage::files_matching`] names those files, and
//! the statement records them in its [`WriteOp::Delete`]. At commit, under the table's commit
//! lock, [`CommitGuard::apply`] checks that each of them is still in the table — if another
//! writer removed one since, the change fails with [`StorageError::Conflict`] (SQLSTATE 40001,
//! the SQL layer retries an autocommit statement) — and writes one Delta commit that removes
//! them and adds their remaining rows together with the inserted ones, as Delta's own UPDATE
//! and DELETE do. Files added since the statement read (flushes of rows other sessions
//! inserted meanwhile) are never touched, so a mutation only ever deletes rows it read, and
//! a crash leaves all of the change or none of it.
//!
//! The predicates are evaluated twice, on files that never change (once to find the files,
//! once to keep their other rows), so they must be deterministic: the SQL layer replaces
//! subqueries and volatile functions by the keys they matched. The rows of the rewritten files
//! are held in memory while they are written, as the statement's own new rows already are.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::datasource::MemTable;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::logical_expr::{Expr, col};
use datafusion::prelude::SessionContext;
use deltalake::DeltaTable;
use deltalake::kernel::transaction::{CommitBuilder, TableReference};
use deltalake::kernel::{Action, LogicalFileView, Metadata, MetadataExt, StructField, StructType};
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::writer::{DeltaWriter, RecordBatchWriter, WriteMode};
use tracing::debug;
use url::Url;

use super::commit::CommitGuard;
use super::meta::{self, ColumnMeta};
use super::provider::BoundedPushdown;
use super::rows::{
    commit_properties, conform_to, sorted_by_key, strip_metadata, writer_properties,
};
use super::table::{FileSet, TableHandle, TableState, WriteOp};
use super::{Result, Storage, StorageError};

/// The column naming each row's data file in a finding scan.
const FILE_COLUMN: &str = "__deltagate_file";

fn metadata_error(e: impl std::fmt::Display) -> StorageError {
    StorageError::Metadata(e.to_string())
}

fn datafusion_error(e: impl Into<datafusion::error::DataFusionError>) -> StorageError {
    StorageError::DataFusion(e.into())
}

/// A data file's path relative to the table root, the same whether it comes from the log (a
/// relative, percent-encoded path) or from a scan's file column (a URL).
fn file_id(root: &Url, path: &str) -> Result<String> {
    let url = root
        .join(path)
        .map_err(|e| StorageError::Location(format!("data file {path}: {e}")))?;
    Ok(root.make_relative(&url).unwrap_or_else(|| url.to_string()))
}

/// The data files of a snapshot (of its month, for a historian month), by [`file_id`].
// The `add` action's path is the one form of a file's path a scan's file column also starts
// from (the decoded one differs for partition values with escaped characters).
#[allow(deprecated)]
fn live_files(state: &TableState) -> Result<HashMap<String, LogicalFileView>> {
    let snapshot = state.table.snapshot()?;
    let root = state.table.table_url();
    snapshot
        .snapshot()
        .log_data()
        .iter()
        .filter(|f| {
            state
                .slice
                .as_ref()
                .is_none_or(|s| s.holds(&f.partition_values_map()))
        })
        .map(|f| Ok((file_id(root, &f.add_action().path)?, f)))
        .collect()
}

impl Storage {
    /// The table as a statement that may delete rows must read it: its buffer flushed to Delta
    /// first, and the snapshot without buffered rows, so that every row the statement reads is
    /// in a data file [`Storage::files_matching`] can name. Rows other sessions insert while
    /// the statement runs stay buffered and untouched; to the statement they are rows
    /// committed after it started.
    ///
    /// # Errors
    /// Flush errors (Delta unreachable).
    pub async fn read_for_change(&self, table: &Arc<TableHandle>) -> Result<TableState> {
        if !table.buffered().is_empty() {
            self.flush_table(table).await?;
        }
        let mut state = table.state();
        state.buffered = Default::default();
        Ok(state)
    }

    /// The data files of `state` holding a row for which `predicate` is true; every file of
    /// the table (of the month) for `None`. `state` must hold no buffered rows (see
    /// [`Storage::read_for_change`]), the predicate no table qualifiers.
    ///
    /// # Errors
    /// Delta and DataFusion errors evaluating the predicate.
    pub async fn files_matching(
        &self,
        state: &TableState,
        predicate: Option<&Expr>,
    ) -> Result<FileSet> {
        let Some(predicate) = predicate else {
            return Ok(Arc::new(live_files(state)?.into_keys().collect()));
        };
        let predicate = match &state.slice {
            Some(slice) => slice.predicate().and(predicate.clone()),
            None => predicate.clone(),
        };
        let found = self
            .scan(&state.table, None, true)
            .await?
            .filter(predicate)?
            .select(vec![col(FILE_COLUMN)])?
            .distinct()?
            .collect()
            .await?;
        let root = state.table.table_url();
        let mut files = BTreeSet::new();
        for batch in found {
            let ids = cast(batch.column(0), &DataType::Utf8).map_err(datafusion_error)?;
            for id in ids.as_string::<i32>().iter().flatten() {
                files.insert(file_id(root, id)?);
            }
        }
        Ok(Arc::new(files))
    }

    /// A DataFrame over a Delta snapshot, optionally restricted to some files (by
    /// [`file_id`]) and naming each row's file.
    async fn scan(
        &self,
        delta: &DeltaTable,
        files: Option<Vec<String>>,
        file_column: bool,
    ) -> Result<datafusion::dataframe::DataFrame> {
        let snapshot = delta.snapshot()?.snapshot().clone();
        let mut builder = delta.table_provider().with_eager_snapshot(snapshot);
        if file_column {
            builder = builder.with_file_column(FILE_COLUMN);
        }
        if let Some(files) = files {
            builder = builder.with_file_paths(files);
        }
        let provider = Arc::new(BoundedPushdown(builder.await?));
        let state = SessionStateBuilder::new()
            .with_runtime_env(self.runtime.clone())
            .with_default_features()
            .build();
        Ok(SessionContext::new_with_state(state).read_table(provider)?)
    }

    /// Rows of `batches` for which no predicate is true.
    async fn keep_rows(
        &self,
        batches: Vec<RecordBatch>,
        predicates: &[Expr],
    ) -> Result<Vec<RecordBatch>> {
        let Some(schema) = batches.first().map(RecordBatch::schema) else {
            return Ok(batches);
        };
        let table = MemTable::try_new(schema, vec![batches])?;
        let context = SessionContext::new_with_state(
            SessionStateBuilder::new()
                .with_runtime_env(self.runtime.clone())
                .with_default_features()
                .build(),
        );
        let mut frame = context.read_table(Arc::new(table))?;
        for predicate in predicates {
            frame = frame.filter(predicate.clone().is_not_true())?;
        }
        Ok(frame.collect().await?)
    }
}

/// What a commit changes besides rows: the Delta metadata to record, and the operation its
/// commit info names.
struct Shape {
    metadata: Option<Metadata>,
    /// The column the commit adds, for the files it writes.
    added: Option<Field>,
    operation: Option<DeltaOperation>,
}

impl CommitGuard<'_> {
    /// Applies a transaction's operations on a table as one Delta commit (see the module
    /// documentation).
    ///
    /// # Errors
    /// [`StorageError::Conflict`] when a file a delete read is gone; Delta errors. Nothing of
    /// the table is staged then.
    pub async fn apply(&mut self, table: &TableHandle, ops: Vec<WriteOp>) -> Result<()> {
        let shape = Shape {
            metadata: None,
            added: None,
            operation: None,
        };
        self.commit_and_stage(table, ops, shape).await
    }

    /// Adds a column. `fill`: the table's rows with the new column's values, read (by
    /// [`Storage::read_for_change`]) from the data files named, which they replace in the
    /// same commit; without it existing rows read NULL.
    ///
    /// # Errors
    /// [`StorageError::DuplicateColumn`], [`StorageError::Conflict`], or Delta commit errors.
    pub async fn add_column(
        &mut self,
        table: &TableHandle,
        column: ColumnMeta,
        fill: Option<(FileSet, Vec<RecordBatch>)>,
    ) -> Result<()> {
        self.ensure_locked(table);
        if table.slice.is_some() {
            // The column would appear in every month of the Delta table.
            return Err(StorageError::Unsupported(format!(
                "\"{}\" is a month of a partitioned historian table: its columns cannot change",
                table.name
            )));
        }
        let current = self.current(table);
        if current.meta.column_index(&column.name).is_some() {
            return Err(StorageError::DuplicateColumn {
                table: table.name.clone(),
                column: column.name,
            });
        }
        let field = nullable_field(&column);
        let snapshot = current.table.snapshot()?;
        let schema = StructType::try_new(
            snapshot
                .schema()
                .fields()
                .cloned()
                .chain(std::iter::once(field.clone())),
        )
        .map_err(|e| StorageError::Metadata(e.to_string()))?;
        let metadata = snapshot
            .metadata()
            .clone()
            .with_schema(&schema)
            .map_err(metadata_error)?;
        let ops = match fill {
            Some((files, rows)) => vec![
                WriteOp::Delete {
                    predicate: None,
                    files,
                },
                WriteOp::Insert(rows),
            ],
            None => Vec::new(),
        };
        let shape = Shape {
            metadata: Some(metadata),
            added: Some(Field::new(&column.name, column.pg_type.arrow_type(), true)),
            operation: Some(DeltaOperation::AddColumn {
                fields: vec![field],
            }),
        };
        self.commit_and_stage(table, ops, shape).await
    }

    /// Deletes a historian month's rows and unregisters it from its Delta table, in one commit
    /// (its files go at VACUUM).
    ///
    /// # Errors
    /// Delta commit errors.
    pub(super) async fn drop_month(&mut self, table: &TableHandle) -> Result<()> {
        let Some(slice) = table.slice().cloned() else {
            return Ok(());
        };
        let current = self.current(table);
        let files = self.storage.files_matching(&current, None).await?;
        let metadata = current
            .table
            .snapshot()?
            .metadata()
            .clone()
            .add_config_key(slice.property(), String::new())
            .map_err(metadata_error)?;
        let shape = Shape {
            metadata: Some(metadata),
            added: None,
            operation: Some(DeltaOperation::Delete {
                predicate: Some(format!("{} = '{}'", slice.column, slice.value)),
            }),
        };
        let ops = vec![WriteOp::Delete {
            predicate: None,
            files,
        }];
        if let Some(delta) = self.commit_change(table, ops, shape).await?
            && let Some((_, container)) = &table.slice
        {
            // Not staged: the month has no state any more.
            container.advance(&delta);
        }
        self.staged.remove(&table.oid);
        Ok(())
    }

    async fn commit_and_stage(
        &mut self,
        table: &TableHandle,
        ops: Vec<WriteOp>,
        shape: Shape,
    ) -> Result<()> {
        match self.commit_change(table, ops, shape).await? {
            Some(delta) => self.stage(table, delta),
            None => Ok(()),
        }
    }

    /// Writes the files of a change and commits them with its metadata; returns the new table,
    /// or `None` when there was nothing to commit.
    async fn commit_change(
        &mut self,
        table: &TableHandle,
        ops: Vec<WriteOp>,
        shape: Shape,
    ) -> Result<Option<DeltaTable>> {
        self.ensure_locked(table);
        let started = std::time::Instant::now();
        let current = self.current(table);
        let (deletes, inserted) = self.split(ops).await?;
        let live = live_files(&current)?;
        // Every file a delete read must still be there: otherwise another writer changed its
        // rows since, and deleting "the same rows" again would be a guess.
        let mut whole = BTreeSet::new();
        let mut partial: HashMap<&String, Vec<Expr>> = HashMap::new();
        for (predicate, files) in &deletes {
            for file in files.iter() {
                if !live.contains_key(file) {
                    return Err(StorageError::Conflict {
                        table: table.name.clone(),
                    });
                }
                match predicate {
                    None => {
                        whole.insert(file);
                    }
                    Some(p) => partial.entry(file).or_default().push(p.clone()),
                }
            }
        }
        partial.retain(|file, _| !whole.contains(file));
        let mut kept = Vec::new();
        for (files, predicates) in by_predicates(partial) {
            let frame = self
                .storage
                .scan(&current.table, Some(files), false)
                .await?;
            let mut frame = frame;
            for predicate in predicates {
                frame = frame.filter(predicate.is_not_true())?;
            }
            kept.extend(frame.collect().await?);
        }
        let removed: Vec<&String> = deletes
            .iter()
            .flat_map(|(_, files)| files.iter())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let kept_rows: usize = kept.iter().map(RecordBatch::num_rows).sum();
        let inserted_rows: usize = inserted.iter().map(RecordBatch::num_rows).sum();
        let mut rows = kept;
        rows.extend(table.to_stored(strip_metadata(inserted)?)?);
        let adds = write_files(&current, shape.added, rows).await?;
        let mut actions: Vec<Action> = shape.metadata.into_iter().map(Action::Metadata).collect();
        actions.extend(
            removed
                .iter()
                .map(|file| Action::Remove(live[*file].remove_action(true))),
        );
        actions.extend(adds.into_iter().map(Action::Add));
        if actions.is_empty() {
            return Ok(None);
        }
        let operation = shape
            .operation
            .unwrap_or(match (removed.is_empty(), inserted_rows) {
                (false, 0) => DeltaOperation::Delete { predicate: None },
                (false, _) => DeltaOperation::Update { predicate: None },
                (true, _) => DeltaOperation::Write {
                    mode: SaveMode::Append,
                    partition_by: None,
                    predicate: None,
                },
            });
        let log_store = current.table.log_store();
        let commit = CommitBuilder::from(commit_properties())
            .with_actions(actions)
            .build(
                Some(current.table.snapshot()? as &dyn TableReference),
                log_store.clone(),
                operation,
            )
            .await
            .map_err(StorageError::commit(&table.name))?;
        // delta-rs does not hand out a table for the committed snapshot; read the commit back.
        let mut delta = current.table.clone();
        delta
            .update_incremental(Some(commit.version()))
            .await
            .map_err(StorageError::commit(&table.name))?;
        if !removed.is_empty() {
            self.rewritten.insert(table.oid);
        }
        debug!(
            table = table.name,
            files_removed = removed.len(),
            rows_kept = kept_rows,
            rows_inserted = inserted_rows,
            elapsed = ?started.elapsed(),
            "committed change"
        );
        Ok(Some(delta))
    }

    /// Splits a transaction's operations into the deletes from data files (predicate, files)
    /// and the rows it inserts, less those its later deletes removed.
    async fn split(
        &self,
        ops: Vec<WriteOp>,
    ) -> Result<(Vec<(Option<Expr>, super::FileSet)>, Vec<RecordBatch>)> {
        let mut deletes = Vec::new();
        // Each insert with the predicates of the deletes after it.
        let mut inserts: Vec<(Vec<RecordBatch>, Vec<Expr>)> = Vec::new();
        for op in ops {
            match op {
                WriteOp::Insert(batches) => inserts.push((batches, Vec::new())),
                WriteOp::Delete { predicate, files } => {
                    match &predicate {
                        None => inserts.clear(),
                        Some(p) => inserts.iter_mut().for_each(|(_, ps)| ps.push(p.clone())),
                    }
                    deletes.push((predicate, files));
                }
            }
        }
        let mut inserted = Vec::new();
        for (batches, predicates) in inserts {
            if predicates.is_empty() {
                inserted.extend(batches);
            } else {
                inserted.extend(self.storage.keep_rows(batches, &predicates).await?);
            }
        }
        inserted.retain(|b| b.num_rows() > 0);
        Ok((deletes, inserted))
    }
}

/// Groups files by the predicates deleting from them, so each group is read in one scan.
fn by_predicates(files: HashMap<&String, Vec<Expr>>) -> Vec<(Vec<String>, Vec<Expr>)> {
    let mut groups: Vec<(Vec<String>, Vec<Expr>)> = Vec::new();
    for (file, predicates) in files {
        match groups.iter_mut().find(|(_, p)| *p == predicates) {
            Some((group, _)) => group.push(file.clone()),
            None => groups.push((vec![file.clone()], predicates)),
        }
    }
    groups
}

/// The Delta field of a new column. Delta cannot add a NOT NULL column to existing files; the
/// constraint is recorded in the column metadata and enforced by deltagate on write.
fn nullable_field(column: &ColumnMeta) -> StructField {
    let field = meta::delta_field(&ColumnMeta {
        not_null: false,
        ..column.clone()
    });
    if !column.not_null {
        return field;
    }
    let mut metadata = field.metadata().clone();
    metadata.insert(
        meta::COLUMN_NOT_NULL_KEY.to_string(),
        deltalake::kernel::MetadataValue::Boolean(true),
    );
    field.with_metadata(metadata)
}

/// Writes rows (in any of the table's schemas, partition column included for a historian
/// month) as data files of `state`'s table in primary-key order; with `added`, a column the
/// commit adds. Returns their `add` actions, uncommitted.
async fn write_files(
    state: &TableState,
    added: Option<Field>,
    rows: Vec<RecordBatch>,
) -> Result<Vec<deltalake::kernel::Add>> {
    if rows.iter().all(|b| b.num_rows() == 0) {
        return Ok(Vec::new());
    }
    let mut writer = RecordBatchWriter::for_table(&state.table)?
        .with_writer_properties(writer_properties(&state.meta));
    let mut schema = writer.arrow_schema();
    let mut mode = WriteMode::Default;
    if let Some(field) = added {
        let mut fields: Vec<_> = schema.fields().iter().cloned().collect();
        fields.push(Arc::new(field));
        schema = Arc::new(Schema::new(fields));
        mode = WriteMode::MergeSchema;
    }
    let rows = rows
        .iter()
        .map(|b| conform_to(b, &schema))
        .collect::<Result<Vec<_>>>()?;
    let key = state.meta.primary_key_indices();
    for batch in sorted_by_key(rows, &schema, &key)? {
        writer.write_with_mode(batch, mode).await?;
    }
    Ok(writer.flush().await?)
}
