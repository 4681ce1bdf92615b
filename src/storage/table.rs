//! One Delta table: its published snapshot, its commit lock, its sequences, and the writes that
//! change it.
//!
//! A [`TableHandle`] is shared by every session. Readers take [`TableHandle::state`], a cheap
//! clone of the snapshot they plan against. Writers lock the table through
//! [`Storage::lock_for_commit`](super::Storage::lock_for_commit), apply their operations to
//! produce new snapshots (each operation is one Delta commit), and publish them; until
//! [`CommitGuard::publish`] runs, other sessions keep seeing the previous snapshot.
//!
//! Sequences (`serial` columns) hand out values from memory; the position persisted in the
//! table properties is always at or above any value ever handed out (see
//! [`Storage::persist_sequences`](super::Storage::persist_sequences)).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::Schema;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::logical_expr::Expr;
use deltalake::DeltaTable;
use deltalake::kernel::StructField;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::protocol::SaveMode;
use parking_lot::{Mutex, RwLock};
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard, RwLock as AsyncRwLock};
use tracing::debug;
use url::Url;

use super::buffer::{self, BufferedRows};
use super::keys::{self, FileBoxes, KeyIndex};
use super::meta::{self, ColumnMeta, IndexMeta, TableMeta};
use super::partition::{self, Container, Slice};
use super::provider;
use super::{Result, StorageError};
use crate::wal::Lsn;

/// A change to a table, applied at commit.
#[derive(Debug, Clone)]
pub enum WriteOp {
    /// Append rows (already validated, in the table's Arrow schema).
    Insert(Vec<RecordBatch>),
    /// Delete the rows for which the predicate is true (all rows when `None`).
    ///
    /// An `UPDATE` is a delete of the old rows followed by an insert of the new ones, computed
    /// when the statement ran; that keeps volatile expressions and subqueries evaluated once.
    Delete { predicate: Option<Expr> },
}

/// A table's snapshot as one statement sees it.
#[derive(Debug, Clone)]
pub struct TableState {
    pub table: DeltaTable,
    pub meta: Arc<TableMeta>,
    /// The Delta version of this snapshot.
    pub version: i64,
    /// Rows durable in the write-ahead log but not yet in Delta; part of the table to readers.
    pub buffered: BufferedRows,
    /// The partition of the Delta table this table is, for a historian month (see `partition`).
    pub slice: Option<Arc<Slice>>,
}

impl TableState {
    fn from_table(table: DeltaTable, oid: u32, slice: Option<&Arc<Slice>>) -> Result<TableState> {
        let snapshot = table.snapshot()?;
        let version = snapshot.version() as i64;
        let configuration = snapshot.metadata().configuration();
        let meta = match slice {
            None => TableMeta::from_delta(
                &snapshot.schema(),
                &snapshot.snapshot().arrow_schema(),
                configuration,
                oid,
                None,
            )?,
            Some(slice) => TableMeta::from_delta(
                &snapshot.schema(),
                &snapshot.snapshot().arrow_schema(),
                &partition::registration(configuration, slice)?.properties,
                oid,
                Some(&slice.column),
            )?,
        };
        Ok(TableState {
            table,
            meta: Arc::new(meta),
            version,
            buffered: BufferedRows::default(),
            slice: slice.cloned(),
        })
    }

    /// Identifies this incarnation of the table in log records: the Delta table's id
    /// (`metaData.id`, which survives renames but not re-creation), and for a historian month
    /// its registration's id.
    pub fn table_id(&self) -> String {
        let id = self
            .table
            .snapshot()
            .map(|s| s.metadata().id().to_string())
            .unwrap_or_default();
        match &self.slice {
            Some(slice) => format!("{id}/{}", slice.id),
            None => id,
        }
    }

    /// Changes whenever the table's rows may have changed (a Delta commit or a buffered append).
    pub fn stamp(&self) -> Stamp {
        (self.version, self.buffered.last_lsn())
    }
}

/// Identifies the contents of a table snapshot: Delta version and newest buffered LSN.
pub type Stamp = (i64, u64);

#[derive(Debug, Clone)]
struct SequenceRuntime {
    /// Next value to hand out.
    next: i64,
    /// Highest value persisted as possibly used.
    reserved: i64,
    increment: i64,
    min: i64,
    max: i64,
}

impl SequenceRuntime {
    fn last_handed_out(&self) -> i64 {
        self.next - self.increment
    }
}

/// Files per table whose page indexes are kept in the metadata cache.
const PAGE_INDEX_FILES: usize = 128;

/// A table of the warehouse.
pub struct TableHandle {
    pub schema: String,
    pub name: String,
    /// `pg_class.oid` of the table.
    pub oid: u32,
    pub location: Url,
    state: RwLock<TableState>,
    /// Held by writers of Delta commits (flusher, updates, deletes, DDL); shared by the slices
    /// of one Delta table.
    commit_lock: Arc<AsyncMutex<()>>,
    /// For a historian month: its partition and what it shares with the other months.
    slice: Option<(Arc<Slice>, Arc<Container>)>,
    /// Held while a write is checked against the table and queued in the log, so two writers
    /// cannot both find a key free; never held across a log sync.
    admit_lock: Arc<AsyncMutex<()>>,
    /// Rows queued in the log but not yet synced: invisible to readers, seen by key checks.
    inflight: Mutex<Vec<(u64, Vec<RecordBatch>)>>,
    /// Primary keys of in-flight and buffered rows; locked after `state` when both are held.
    keys: Mutex<Option<KeyIndex>>,
    /// Key-column boxes of the data files, for the Delta version they were read at.
    file_boxes: Mutex<Option<(i64, Arc<FileBoxes>)>>,
    /// Those of `file_boxes` the key index does not cover, likewise.
    uncovered_boxes: Mutex<Option<(i64, Arc<FileBoxes>)>>,
    sequences: Mutex<HashMap<String, SequenceRuntime>>,
    /// The newest Delta version whose files' page indexes were put in the metadata cache.
    page_indexes_cached: AtomicI64,
    /// Queries answered by a key seek (`pg_stat_user_tables.idx_scan`).
    pub seeks: AtomicU64,
}

impl std::fmt::Debug for TableHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableHandle")
            .field("schema", &self.schema)
            .field("name", &self.name)
            .field("oid", &self.oid)
            .finish_non_exhaustive()
    }
}

impl TableHandle {
    pub(super) fn new(
        schema: &str,
        name: &str,
        oid: u32,
        location: Url,
        table: DeltaTable,
        runtime: &Arc<RuntimeEnv>,
        slice: Option<(Arc<Slice>, Arc<Container>)>,
    ) -> Result<Arc<TableHandle>> {
        // Register the table's object store once in the runtime all sessions share.
        let session = SessionStateBuilder::new()
            .with_runtime_env(runtime.clone())
            .build();
        table.update_datafusion_session(&session)?;
        let state = TableState::from_table(table, oid, slice.as_ref().map(|(s, _)| s))?;
        let sequences = sequence_runtimes(&state.meta);
        let keys = KeyIndex::new(state.meta.primary_key_indices());
        Ok(Arc::new(TableHandle {
            schema: schema.to_string(),
            name: name.to_string(),
            oid,
            location,
            state: RwLock::new(state),
            commit_lock: match &slice {
                Some((_, container)) => container.lock.clone(),
                None => Arc::new(AsyncMutex::new(())),
            },
            slice,
            admit_lock: Arc::new(AsyncMutex::new(())),
            inflight: Mutex::new(Vec::new()),
            keys: Mutex::new(keys),
            file_boxes: Mutex::new(None),
            uncovered_boxes: Mutex::new(None),
            sequences: Mutex::new(sequences),
            page_indexes_cached: AtomicI64::new(-1),
            seeks: AtomicU64::new(0),
        }))
    }

    /// Starts caching the page indexes of a snapshot's files (see
    /// [`provider::cache_page_indexes`]), once per Delta version.
    pub fn cache_page_indexes(&self, state: &TableState, runtime: &Arc<RuntimeEnv>) {
        if self
            .page_indexes_cached
            .fetch_max(state.version, Ordering::Relaxed)
            >= state.version
        {
            return;
        }
        if let Ok(snapshot) = state.table.snapshot() {
            // The newest files: recent history is what trends and seed queries read, and the
            // cache (50 MB) holds the footers of a few hundred files.
            let mut files: Vec<(i64, String, u64)> = snapshot
                .snapshot()
                .log_data()
                .iter()
                .map(|f| {
                    let size = f.size().max(0) as u64;
                    (f.modification_time(), f.path().into_owned(), size)
                })
                .collect();
            files.sort_unstable_by(|a, b| b.0.cmp(&a.0));
            let files = files
                .into_iter()
                .take(PAGE_INDEX_FILES)
                .map(|(_, path, size)| (path, size))
                .collect();
            let root = state.table.table_url().clone();
            tokio::spawn(provider::cache_page_indexes(runtime.clone(), root, files));
        }
    }

    /// The partition this table is, for a historian month.
    pub fn slice(&self) -> Option<&Arc<Slice>> {
        self.slice.as_ref().map(|(s, _)| s)
    }

    /// The Delta application id its flushes commit under: this server's, qualified by the
    /// month for a slice (months of one Delta table are flushed independently).
    pub(super) fn app_id(&self, server: &str) -> String {
        match self.slice() {
            Some(slice) => format!("{server}:{}", slice.value),
            None => server.to_string(),
        }
    }

    /// Rows as Delta stores them: a slice's rows carry their month.
    pub(super) fn to_stored(&self, batches: Vec<RecordBatch>) -> Result<Vec<RecordBatch>> {
        match self.slice() {
            Some(slice) => batches.iter().map(|b| slice.with_column(b)).collect(),
            None => Ok(batches),
        }
    }

    /// The published snapshot.
    pub fn state(&self) -> TableState {
        self.state.read().clone()
    }

    /// The buffered rows of the published snapshot (cheap: no snapshot clone).
    pub fn buffered(&self) -> BufferedRows {
        self.state.read().buffered.clone()
    }

    /// The snapshot plus rows still in flight to the log, for key checks. In-flight rows are read
    /// first: a row that becomes durable in between is then seen twice, never missed.
    pub fn state_for_check(&self) -> TableState {
        let inflight: Vec<(u64, Vec<RecordBatch>)> = self.inflight.lock().clone();
        let mut state = self.state();
        for (ticket, batches) in inflight {
            state
                .buffered
                .push(buffer::Entry::unlogged(Lsn::MAX, ticket, batches));
        }
        state
    }

    /// Serializes admission of writes (see [`Storage::admit`](super::Storage)).
    pub(super) async fn lock_admit(self: Arc<Self>) -> OwnedMutexGuard<()> {
        self.admit_lock.clone().lock_owned().await
    }

    /// Runs `f` on the published snapshot and the key index as of one moment.
    pub(super) fn with_keys<T>(&self, f: impl FnOnce(&TableState, Option<&KeyIndex>) -> T) -> T {
        let state = self.state.read();
        let keys = self.keys.lock();
        f(&state, keys.as_ref())
    }

    /// The data files' key boxes of `state`'s version, read once per version.
    pub(super) fn file_boxes(
        &self,
        state: &TableState,
        columns: &[usize],
    ) -> Result<Arc<FileBoxes>> {
        if let Some((version, boxes)) = self.file_boxes.lock().as_ref()
            && *version == state.version
        {
            return Ok(boxes.clone());
        }
        let boxes = Arc::new(keys::file_boxes(state, columns)?);
        *self.file_boxes.lock() = Some((state.version, boxes.clone()));
        Ok(boxes)
    }

    /// The boxes of `state`'s data files that `index` does not cover, once per version: the
    /// covered files only change with the version, under the same locks (see
    /// [`CommitGuard::publish`]). Call with both locked, as [`TableHandle::with_keys`] does.
    pub(super) fn uncovered_boxes(
        &self,
        state: &TableState,
        index: &KeyIndex,
    ) -> Result<Arc<FileBoxes>> {
        if let Some((version, boxes)) = self.uncovered_boxes.lock().as_ref()
            && *version == state.version
        {
            return Ok(boxes.clone());
        }
        let all = self.file_boxes(state, index.columns())?;
        let boxes = Arc::new(index.uncovered(&all));
        *self.uncovered_boxes.lock() = Some((state.version, boxes.clone()));
        Ok(boxes)
    }

    /// Queues rows in flight and indexes their keys. With `checked_at`, the stamp their keys
    /// were checked at, the keys are claimed instead (see [`KeyIndex::claim`]): false, queuing
    /// nothing, when another writer's rows may hold one of them by now.
    pub(super) fn add_inflight(
        &self,
        ticket: u64,
        batches: Vec<RecordBatch>,
        checked_at: Option<Stamp>,
    ) -> Result<bool> {
        {
            // The snapshot and the index are read together, as in `keys_taken`: a flush that
            // moves rows from the buffer to Delta is seen entirely on one side.
            let state = self.state.read();
            let mut keys = self.keys.lock();
            match (keys.as_mut(), checked_at) {
                (None, _) => {}
                (Some(index), None) => index.add(&batches, ticket)?,
                (Some(index), Some((version, _))) => {
                    let stored = if state.version == version {
                        None
                    } else {
                        Some(self.uncovered_boxes(&state, index)?)
                    };
                    if !index.claim(&batches, stored.as_deref(), ticket)? {
                        return Ok(false);
                    }
                }
            }
        }
        self.inflight.lock().push((ticket, batches));
        Ok(true)
    }

    /// Forgets rows that did not reach the log.
    pub(super) fn fail_inflight(&self, ticket: u64) {
        let mut inflight = self.inflight.lock();
        if let Some(at) = inflight.iter().position(|(t, _)| *t == ticket) {
            let (_, batches) = inflight.remove(at);
            drop(inflight);
            if let Some(Err(e)) = self
                .keys
                .lock()
                .as_mut()
                .map(|index| index.remove(&batches, ticket))
            {
                tracing::warn!(table = self.name, error = %e, "could not unindex failed rows");
            }
        }
    }

    /// Publishes durable rows into the buffer, called by the log in LSN order for rows in
    /// flight, or by replay (`replayed`), whose rows are not indexed yet.
    pub(super) fn push_buffered(&self, entry: buffer::Entry, replayed: bool) -> Result<()> {
        let mut state = self.state.write();
        if replayed {
            if let Some(index) = self.keys.lock().as_mut() {
                index.add(&entry.batches()?, entry.ticket)?;
            }
        } else {
            self.inflight.lock().retain(|(t, _)| *t != entry.ticket);
        }
        state.buffered.push(entry);
        Ok(())
    }

    /// Drops the in-memory copies of the oldest buffered rows (see [`BufferedRows::spill`]).
    pub(super) fn spill(&self, want: usize) -> usize {
        self.state.write().buffered.spill(want)
    }

    /// Forgets buffered rows (the table is dropped).
    pub(super) fn discard_buffered(&self) {
        let mut state = self.state.write();
        state.buffered = BufferedRows::default();
        if let Some(index) = self.keys.lock().as_mut() {
            index.clear();
        }
    }

    /// The commit lock, shared by the slices of one Delta table.
    pub(super) fn commit_lock(&self) -> &Arc<AsyncMutex<()>> {
        &self.commit_lock
    }

    /// Draws `count` values from a sequence; returns the first. Values are `first + k*increment`.
    ///
    /// # Errors
    /// [`StorageError::SequenceExhausted`] past the sequence's maximum.
    pub fn next_values(&self, sequence: &str, count: usize) -> Result<i64> {
        let mut sequences = self.sequences.lock();
        let seq = sequences
            .get_mut(sequence)
            .ok_or_else(|| StorageError::UndefinedSequence(sequence.to_string()))?;
        let first = seq.next;
        let span = seq.increment.saturating_mul(count.saturating_sub(1) as i64);
        let last = first.saturating_add(span);
        if count > 0 && (last > seq.max || last < seq.min) {
            return Err(StorageError::SequenceExhausted {
                name: sequence.to_string(),
                max: seq.max,
            });
        }
        seq.next = last.saturating_add(seq.increment);
        Ok(first)
    }

    /// Sets a sequence's position as `setval` does.
    ///
    /// # Errors
    /// [`StorageError::SequenceOutOfBounds`] outside the sequence's range.
    pub fn set_value(&self, sequence: &str, value: i64, is_called: bool) -> Result<()> {
        let mut sequences = self.sequences.lock();
        let seq = sequences
            .get_mut(sequence)
            .ok_or_else(|| StorageError::UndefinedSequence(sequence.to_string()))?;
        if value < seq.min || value > seq.max {
            return Err(StorageError::SequenceOutOfBounds {
                name: sequence.to_string(),
                value,
                min: seq.min,
                max: seq.max,
            });
        }
        seq.next = if is_called {
            value.saturating_add(seq.increment)
        } else {
            value
        };
        Ok(())
    }

    /// The last value handed out by a sequence and whether any was (`pg_sequences.last_value`).
    pub fn sequence_position(&self, sequence: &str) -> Option<i64> {
        self.sequences
            .lock()
            .get(sequence)
            .map(SequenceRuntime::last_handed_out)
    }

    pub(super) fn sequences_need_reserve(&self) -> bool {
        self.sequences
            .lock()
            .values()
            .any(|s| s.last_handed_out() > s.reserved)
    }

    pub(super) fn sequences_dirty(&self) -> bool {
        self.sequences
            .lock()
            .values()
            .any(|s| s.last_handed_out() != s.reserved)
    }
}

fn sequence_runtimes(meta: &TableMeta) -> HashMap<String, SequenceRuntime> {
    meta.sequences
        .iter()
        .map(|s| {
            (
                s.name.clone(),
                SequenceRuntime {
                    next: s.reserved.saturating_add(s.increment),
                    reserved: s.reserved,
                    increment: s.increment,
                    min: s.start.min(1),
                    max: s.max_value,
                },
            )
        })
        .collect()
}

/// The buffered rows of a table a [`CommitGuard`] flushed.
#[derive(Debug, Default)]
struct Flushed {
    /// The highest log position.
    upto: Lsn,
    /// The latest write (see [`KeyIndex`]).
    tickets: u64,
    rows: usize,
}

/// Exclusive access to a set of tables for one commit.
pub struct CommitGuard<'a> {
    locked: Vec<Arc<TableHandle>>,
    /// One per distinct commit lock of `locked`.
    _guards: Vec<OwnedMutexGuard<()>>,
    visibility: &'a AsyncRwLock<()>,
    staged: HashMap<u32, TableState>,
    /// Per table, what this guard flushed to Delta.
    flushed: HashMap<u32, Flushed>,
    /// Tables whose rows this guard deleted or rewrote.
    rewritten: std::collections::HashSet<u32>,
}

impl<'a> CommitGuard<'a> {
    pub(super) fn new(
        locked: Vec<Arc<TableHandle>>,
        guards: Vec<OwnedMutexGuard<()>>,
        visibility: &'a AsyncRwLock<()>,
    ) -> CommitGuard<'a> {
        CommitGuard {
            locked,
            _guards: guards,
            visibility,
            staged: HashMap::new(),
            flushed: HashMap::new(),
            rewritten: std::collections::HashSet::new(),
        }
    }

    fn ensure_locked(&self, table: &TableHandle) {
        debug_assert!(
            self.locked.iter().any(|t| t.oid == table.oid),
            "table {} written without its commit lock",
            table.name
        );
    }

    /// The newest state of a locked table, including changes staged by this guard. A slice's
    /// Delta table moves on with its siblings' commits: the state is rebased on the newest
    /// version, so commits start from it.
    pub fn current(&self, table: &TableHandle) -> TableState {
        let state = self
            .staged
            .get(&table.oid)
            .cloned()
            .unwrap_or_else(|| table.state());
        let Some((slice, container)) = &table.slice else {
            return state;
        };
        let latest = container.latest.lock().clone();
        if latest.version().map(|v| v as i64) <= Some(state.version) {
            return state;
        }
        match TableState::from_table(latest, table.oid, Some(slice)) {
            Ok(rebased) => TableState {
                buffered: state.buffered,
                ..rebased
            },
            Err(e) => {
                tracing::warn!(table = table.name, error = %e, "cannot rebase month on its table's newest version");
                state
            }
        }
    }

    pub(super) fn stage(&mut self, table: &TableHandle, delta: DeltaTable) -> Result<()> {
        if let Some((_, container)) = &table.slice {
            container.advance(&delta);
        }
        let state = TableState::from_table(delta, table.oid, table.slice())?;
        self.staged.insert(table.oid, state);
        Ok(())
    }

    pub(super) fn stage_flushed(
        &mut self,
        table: &TableHandle,
        delta: DeltaTable,
        upto: Lsn,
        tickets: u64,
        rows: usize,
    ) -> Result<()> {
        self.stage(table, delta)?;
        let flushed = self.flushed.entry(table.oid).or_default();
        flushed.upto = upto;
        flushed.tickets = flushed.tickets.max(tickets);
        flushed.rows += rows;
        Ok(())
    }

    /// The highest LSN of `table` this guard flushed (0 if none).
    pub(super) fn flushed_upto(&self, table: &TableHandle) -> Lsn {
        self.flushed.get(&table.oid).map_or(0, |f| f.upto)
    }

    /// Applies write operations to a table, one Delta commit each, in order.
    ///
    /// # Errors
    /// Delta errors; nothing of this table is published unless all operations succeed.
    pub async fn apply(&mut self, table: &TableHandle, ops: Vec<WriteOp>) -> Result<()> {
        self.ensure_locked(table);
        let mut delta = self.current(table).table;
        for op in ops {
            let started = std::time::Instant::now();
            delta = match op {
                WriteOp::Insert(batches) => {
                    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
                    if rows == 0 {
                        continue;
                    }
                    let batches = table.to_stored(strip_metadata(batches)?)?;
                    let result = delta
                        .write(batches)
                        .with_save_mode(SaveMode::Append)
                        .with_commit_properties(commit_properties())
                        .await
                        .map_err(StorageError::commit(&table.name))?;
                    debug!(table = table.name, rows, elapsed = ?started.elapsed(), "appended");
                    result
                }
                WriteOp::Delete { predicate } => {
                    self.rewritten.insert(table.oid);
                    // delta-rs plans deletes with its own session (it needs its own planner
                    // extensions); predicates reaching here are plain column expressions.
                    let mut builder = delta.delete().with_commit_properties(commit_properties());
                    let predicate = match (predicate, table.slice()) {
                        (Some(p), Some(slice)) => Some(slice.predicate().and(p)),
                        (None, Some(slice)) => Some(slice.predicate()),
                        (p, None) => p,
                    };
                    if let Some(predicate) = predicate {
                        builder = builder.with_predicate(predicate);
                    }
                    let (result, metrics) =
                        builder.await.map_err(StorageError::commit(&table.name))?;
                    debug!(table = table.name, rows = metrics.num_deleted_rows, elapsed = ?started.elapsed(), "deleted");
                    result
                }
            };
        }
        self.stage(table, delta)
    }

    /// Writes a table's metadata properties: into the Delta table's own, or for a slice into
    /// its registration.
    async fn set_properties(
        &mut self,
        table: &TableHandle,
        properties: HashMap<String, String>,
    ) -> Result<()> {
        let properties = match table.slice() {
            Some(slice) => {
                let current = self.current(table);
                let snapshot = current.table.snapshot()?;
                let mut registration =
                    partition::registration(snapshot.metadata().configuration(), slice)?;
                registration.properties = properties;
                HashMap::from([(slice.property(), partition::encode(&registration)?)])
            }
            None => properties,
        };
        self.write_properties(table, properties).await
    }

    /// Sets Delta table properties.
    async fn write_properties(
        &mut self,
        table: &TableHandle,
        properties: HashMap<String, String>,
    ) -> Result<()> {
        self.ensure_locked(table);
        let delta = self
            .current(table)
            .table
            .set_tbl_properties()
            .with_properties(properties)
            .with_raise_if_not_exists(false)
            .with_commit_properties(commit_properties())
            .await
            .map_err(StorageError::commit(&table.name))?;
        self.stage(table, delta)
    }

    /// Unregisters a dropped historian month from its Delta table (an empty registration).
    ///
    /// # Errors
    /// Delta commit errors.
    pub(super) async fn unregister(&mut self, table: &TableHandle) -> Result<()> {
        self.ensure_locked(table);
        let Some((slice, container)) = &table.slice else {
            return Ok(());
        };
        let delta = self
            .current(table)
            .table
            .set_tbl_properties()
            .with_properties(HashMap::from([(slice.property(), String::new())]))
            .with_raise_if_not_exists(false)
            .with_commit_properties(commit_properties())
            .await
            .map_err(StorageError::commit(&table.name))?;
        // Not staged: the month has no state any more.
        container.advance(&delta);
        self.staged.remove(&table.oid);
        Ok(())
    }

    /// Replaces the table's secondary index definitions.
    ///
    /// # Errors
    /// Delta commit errors.
    pub async fn set_indexes(
        &mut self,
        table: &TableHandle,
        indexes: Vec<IndexMeta>,
    ) -> Result<()> {
        let mut meta = (*self.current(table).meta).clone();
        meta.indexes = indexes;
        self.set_properties(table, meta.properties()?).await
    }

    /// Adds a column. Existing rows get NULL; the caller fills in defaults.
    ///
    /// # Errors
    /// [`StorageError::DuplicateColumn`], or Delta commit errors.
    pub async fn add_column(&mut self, table: &TableHandle, column: ColumnMeta) -> Result<()> {
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
        // Delta cannot add a NOT NULL column to existing files; the constraint is recorded in
        // the column metadata and enforced by deltagate on write.
        let field: StructField = meta::delta_field(&ColumnMeta {
            not_null: false,
            ..column.clone()
        });
        let field = if column.not_null {
            let mut metadata = field.metadata().clone();
            metadata.insert(
                meta::COLUMN_NOT_NULL_KEY.to_string(),
                deltalake::kernel::MetadataValue::Boolean(true),
            );
            field.with_metadata(metadata)
        } else {
            field
        };
        let delta = current
            .table
            .add_columns()
            .with_fields([field])
            .with_commit_properties(commit_properties())
            .await
            .map_err(StorageError::commit(&table.name))?;
        self.stage(table, delta)
    }

    /// Writes the sequences' positions: the last value handed out plus `headroom` increments.
    ///
    /// # Errors
    /// Delta commit errors.
    pub(super) async fn reserve_sequences(
        &mut self,
        table: &TableHandle,
        headroom: i64,
    ) -> Result<()> {
        let mut meta = (*self.current(table).meta).clone();
        let runtimes = table.sequences.lock().clone();
        for seq in &mut meta.sequences {
            if let Some(rt) = runtimes.get(&seq.name) {
                let target = rt
                    .last_handed_out()
                    .saturating_add(headroom.saturating_mul(rt.increment));
                seq.reserved = target.min(rt.max).max(rt.last_handed_out());
            }
        }
        self.set_properties(table, meta.properties()?).await?;
        let mut sequences = table.sequences.lock();
        for seq in &meta.sequences {
            if let Some(rt) = sequences.get_mut(&seq.name) {
                rt.reserved = seq.reserved;
            }
        }
        Ok(())
    }

    /// Makes every staged snapshot visible at once and releases the tables.
    pub async fn publish(self) {
        let _view = self.visibility.write().await;
        for table in &self.locked {
            if let Some(state) = self.staged.get(&table.oid) {
                // Rows buffered meanwhile stay; rows this guard flushed leave the buffer.
                let mut live = table.state.write();
                let mut buffered = live.buffered.clone();
                let mut keys = table.keys.lock();
                if let Some(flushed) = self.flushed.get(&table.oid) {
                    if let Some(index) = keys.as_mut() {
                        // The files this flush added (a later rewrite clears them below).
                        let added = keys::file_paths(state)
                            .and_then(|new| Ok((new, keys::file_paths(&live)?)))
                            .map(|(new, old)| new.difference(&old).cloned().collect())
                            .unwrap_or_default();
                        index.flushed(flushed.tickets, flushed.rows, added);
                    }
                    buffered.release(flushed.upto);
                }
                if self.rewritten.contains(&table.oid)
                    && let Some(index) = keys.as_mut()
                {
                    index.forget_flushed();
                }
                drop(keys);
                *live = TableState {
                    buffered,
                    ..state.clone()
                };
            }
        }
    }
}

pub(super) fn commit_properties() -> CommitProperties {
    CommitProperties::default().with_metadata([(
        "engine".to_string(),
        serde_json::Value::String(format!("deltagate/{}", env!("CARGO_PKG_VERSION"))),
    )])
}

/// Delta compares schemas strictly; PostgreSQL facts in field metadata are not part of them.
pub(super) fn strip_metadata(batches: Vec<RecordBatch>) -> Result<Vec<RecordBatch>> {
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
