//! One Delta table: its published snapshot, its commit lock, its sequences, and the writes that
//! change it.
//!
//! A [`TableHandle`] is shared by every session. Readers take [`TableHandle::state`], a cheap
//! clone of the snapshot they plan against. Writers lock the table through
//! [`Storage::lock_for_commit`](super::Storage::lock_for_commit), stage new snapshots (see
//! `commit` and `mutation`) and publish them; until
//! [`CommitGuard::publish`](super::CommitGuard::publish) runs, other sessions keep seeing the
//! previous snapshot.
//!
//! Sequences (`serial` columns) hand out values from memory; the position persisted in the
//! table properties is always at or above any value ever handed out (see
//! [`Storage::persist_sequences`](super::Storage::persist_sequences)).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use datafusion::arrow::array::RecordBatch;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::logical_expr::Expr;
use deltalake::DeltaTable;
use parking_lot::{Mutex, RwLock};
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};
use url::Url;

use super::footers;
use super::historian::partition::{self, Container, Slice};
use super::ingest::{BufferedRows, Entry};
use super::keys::boxes::{self, FileBoxes};
use super::keys::index::KeyIndex;
use super::keys::{KeySet, PackedKey};
use super::meta::TableMeta;
use super::{Result, StorageError};
use crate::wal::Lsn;

/// Data files of one snapshot, by their path relative to the table's root.
pub type FileSet = Arc<std::collections::BTreeSet<String>>;

/// A change to a table, applied at commit.
#[derive(Debug, Clone)]
pub enum WriteOp {
    /// Append rows (already validated, in the table's Arrow schema).
    Insert(Vec<RecordBatch>),
    /// Delete the rows for which the predicate is true (all rows when `None`): those of the
    /// rows this transaction inserted before, and those of `files`, the data files of the
    /// snapshot the statement read that hold such rows (see
    /// [`Storage::files_matching`](super::Storage::files_matching)). The predicate is
    /// deterministic: it is evaluated again at commit.
    ///
    /// An `UPDATE` is a delete of the old rows followed by an insert of the new ones, computed
    /// when the statement ran; that keeps volatile expressions and subqueries evaluated once.
    Delete {
        predicate: Option<Expr>,
        files: FileSet,
    },
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
    pub(super) fn from_table(
        table: DeltaTable,
        oid: u32,
        slice: Option<&Arc<Slice>>,
    ) -> Result<TableState> {
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

    /// The paths of this snapshot's data files (a slice's own only).
    pub(super) fn file_paths(&self) -> Result<std::collections::HashSet<String>> {
        boxes::file_paths(&self.table, self.slice.as_deref())
    }

    /// Changes whenever the table's rows may have changed (a Delta commit or a buffered append).
    pub fn stamp(&self) -> Stamp {
        (self.version, self.buffered.last_lsn())
    }
}

/// Identifies the contents of a table snapshot: Delta version and newest buffered LSN.
pub type Stamp = (i64, u64);

#[derive(Debug, Clone)]
pub(super) struct SequenceRuntime {
    /// Next value to hand out.
    next: i64,
    /// Highest value persisted as possibly used.
    pub(super) reserved: i64,
    pub(super) increment: i64,
    min: i64,
    pub(super) max: i64,
}

impl SequenceRuntime {
    pub(super) fn last_handed_out(&self) -> i64 {
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
    pub(super) state: RwLock<TableState>,
    /// Held by writers of Delta commits (flusher, updates, deletes, DDL); shared by the slices
    /// of one Delta table.
    commit_lock: Arc<AsyncMutex<()>>,
    /// For a historian month: its partition and what it shares with the other months.
    pub(super) slice: Option<(Arc<Slice>, Arc<Container>)>,
    /// Held while a write is checked against the table and queued in the log, so two writers
    /// cannot both find a key free; never held across a log sync.
    admit_lock: Arc<AsyncMutex<()>>,
    /// Statements that rewrite or remove rows (UPDATE, DELETE, TRUNCATE, ALTER) queue here, in
    /// arrival order, from reading the table to their commit: two of them racing for the same
    /// files would make one fail its commit, and retried it could lose every race. Taken before
    /// any other lock of the table; inserts and readers never take it.
    change_queue: Arc<AsyncMutex<()>>,
    /// Rows queued in the log but not yet synced: invisible to readers, seen by key checks.
    inflight: Mutex<Vec<(u64, Vec<RecordBatch>)>>,
    /// Primary keys of in-flight and buffered rows; locked after `state` when both are held.
    pub(super) keys: Mutex<Option<KeyIndex>>,
    /// Key-column boxes of the data files, for the Delta version they were read at.
    file_boxes: Mutex<Option<(i64, Arc<FileBoxes>)>>,
    /// Those of `file_boxes` the key index does not cover, likewise.
    uncovered_boxes: Mutex<Option<(i64, Arc<FileBoxes>)>>,
    pub(super) sequences: Mutex<HashMap<String, SequenceRuntime>>,
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
            change_queue: Arc::new(AsyncMutex::new(())),
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
    /// [`footers::cache_page_indexes`]), once per Delta version.
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
            files.sort_unstable_by_key(|f| std::cmp::Reverse(f.0));
            let files = files
                .into_iter()
                .take(PAGE_INDEX_FILES)
                .map(|(_, path, size)| (path, size))
                .collect();
            let root = state.table.table_url().clone();
            tokio::spawn(footers::cache_page_indexes(runtime.clone(), root, files));
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

    /// The published snapshot with the buffered rows a [`View`](super::View) taken at `lsn`
    /// sees.
    pub fn state_at(&self, lsn: Lsn) -> TableState {
        let mut state = self.state();
        state.buffered = state.buffered.upto(lsn);
        state
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
                .push(Entry::unlogged(Lsn::MAX, ticket, batches));
        }
        state
    }

    /// Serializes admission of writes (see [`Storage::admit`](super::Storage)).
    pub(super) async fn lock_admit(self: Arc<Self>) -> OwnedMutexGuard<()> {
        self.admit_lock.clone().lock_owned().await
    }

    /// Waits for this table's turn to change rows (see `change_queue`); the turn lasts until
    /// the guard is dropped.
    pub async fn queue_change(&self) -> OwnedMutexGuard<()> {
        self.change_queue.clone().lock_owned().await
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
        let names: Vec<&str> = columns
            .iter()
            .map(|&i| state.meta.columns[i].name.as_str())
            .collect();
        let boxes = Arc::new(boxes::file_boxes(
            &state.table,
            state.slice.as_deref(),
            &names,
        )?);
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

    /// Queues rows in flight and indexes their keys (`keys`, packed by the key check, or
    /// packed here when `None`). With `checked_at`, the stamp their keys were checked at, the
    /// keys are claimed instead (see [`KeyIndex::claim`]): false, queuing nothing, when another
    /// writer's rows may hold one of them by now.
    pub(super) fn add_inflight(
        &self,
        ticket: u64,
        batches: Vec<RecordBatch>,
        keys: Option<&KeySet>,
        checked_at: Option<Stamp>,
    ) -> Result<bool> {
        {
            // The snapshot and the index are read together, as in `Storage::check_keys`: a
            // flush that moves rows from the buffer to Delta is seen entirely on one side.
            let state = self.state.read();
            let mut index = self.keys.lock();
            if let Some(index) = index.as_mut() {
                let stored = match checked_at {
                    None => Stored::Unchecked,
                    Some((version, _)) if state.version == version => Stored::Unchanged,
                    Some(_) => Stored::Since(self.uncovered_boxes(&state, index)?),
                };
                let queued = match keys {
                    Some(keys) => index_keys(index, &batches, keys.iter(), stored, ticket),
                    None => {
                        let packed = index.packed(&batches)?;
                        index_keys(index, &batches, packed.iter(), stored, ticket)
                    }
                };
                if !queued {
                    return Ok(false);
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
    pub(super) fn push_buffered(&self, entry: Entry, replayed: bool) -> Result<()> {
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

/// What a write's keys were checked against, for [`TableHandle::add_inflight`].
enum Stored {
    /// Not checked yet: the keys are checked under the admission lock, and indexed as they are.
    Unchecked,
    /// Checked against the stored files of the current version: claimed against the index.
    Unchanged,
    /// Checked before these files (the index does not cover them) were added: claimed against
    /// the index and their statistics.
    Since(Arc<FileBoxes>),
}

/// Indexes (or claims, see [`Stored`]) the packed `keys` of write `ticket`'s rows `batches`;
/// false when a claim is refused.
fn index_keys<'k>(
    index: &mut KeyIndex,
    batches: &[RecordBatch],
    keys: impl Iterator<Item = &'k PackedKey> + Clone,
    stored: Stored,
    ticket: u64,
) -> bool {
    match stored {
        Stored::Unchecked => {
            index.add_keys(keys, ticket);
            true
        }
        Stored::Unchanged => index.claim(batches, keys, None, ticket),
        Stored::Since(boxes) => index.claim(batches, keys, Some(&boxes), ticket),
    }
}
