//! The write buffer: rows that are durable in the write-ahead log but not yet in Delta.
//!
//! Inserts reach a table's [`BufferedRows`] only through the log ([`Storage::append`]): the log
//! calls back in LSN order once a record is synced, and the callback publishes the rows into the
//! table's snapshot, where every query sees them next to the Delta rows. The flusher
//! ([`Storage::flush_table`]) writes a table's buffered rows to Delta in one commit carrying the
//! Delta application transaction `(app id, highest LSN flushed)`; a restart replays only records
//! above each table's transaction version, so each row reaches Delta exactly once. The log is
//! released up to the lowest LSN still buffered anywhere.
//!
//! Record payloads name the table by schema, name and Delta table id, so a record of a dropped
//! table is never replayed into a new table of the same name.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use datafusion::arrow::array::{RecordBatch, RecordBatchOptions, new_null_array};
use datafusion::arrow::compute::{
    SortColumn, concat_batches, interleave_record_batch, lexsort_to_indices, take_record_batch,
};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use deltalake::kernel::Transaction;
use deltalake::parquet::basic::{Compression, ZstdLevel};
use deltalake::parquet::file::properties::WriterProperties;
use deltalake::parquet::schema::types::ColumnPath;
use deltalake::protocol::SaveMode;
use tracing::{info, warn};

use crate::wal::{Location, Lsn};

use super::commit::{commit_properties, strip_metadata};
use super::keys;
use super::table::{Stamp, TableHandle};
use super::{Result, Storage, StorageError, TableMeta};

const RECORD_INSERT: u8 = 1;

/// Tuning of the buffer and flusher.
#[derive(Debug, Clone)]
pub struct BufferConfig {
    /// Flush a table once its buffer holds this many rows...
    pub flush_rows: usize,
    /// ...or this many bytes...
    pub flush_bytes: usize,
    /// ...or its oldest row is this old.
    pub flush_age: Duration,
    /// Memory all tables' buffers may hold together; past it, the oldest buffered rows are
    /// dropped from memory and read back from the log when needed.
    pub memory_budget: usize,
    /// Disk the write-ahead log may take; writers wait while it is exceeded (Delta is behind).
    pub disk_budget: u64,
    /// How long a writer waits for log space before failing with SQLSTATE 53000.
    pub backpressure_timeout: Duration,
}

impl Default for BufferConfig {
    fn default() -> BufferConfig {
        BufferConfig {
            flush_rows: 2_000_000,
            flush_bytes: 128 << 20,
            flush_age: Duration::from_secs(30),
            memory_budget: 1 << 30,
            disk_budget: 16 << 30,
            backpressure_timeout: Duration::from_secs(60),
        }
    }
}

impl BufferConfig {
    /// Whether a table's buffer is to be flushed now (`over_budget`: all buffers together hold
    /// more than the memory budget).
    fn flush_due(&self, buffered: &BufferedRows, over_budget: bool) -> bool {
        !buffered.is_empty()
            && (over_budget
                || buffered.rows >= self.flush_rows
                || buffered.bytes >= self.flush_bytes
                || buffered
                    .oldest()
                    .is_some_and(|t| t.elapsed() >= self.flush_age))
    }
}

/// One log record's rows for one table: held in memory, or only in the log (spilled) when the
/// buffers ran past their memory budget.
#[derive(Debug)]
pub struct Entry {
    pub lsn: Lsn,
    /// The write the rows came in (see [`keys::KeyIndex`]); replayed rows get a new one.
    pub ticket: u64,
    /// `None` once spilled: the rows are then read back from `logged`.
    batches: Option<Vec<RecordBatch>>,
    /// The record and this table's part of it; `None` for rows not in the log yet.
    logged: Option<(Location, usize)>,
    pub rows: usize,
    pub bytes: usize,
    pub at: Instant,
}

impl Entry {
    /// Rows of part `part` of the durable record at `location`.
    pub(super) fn logged(
        location: Location,
        part: usize,
        ticket: u64,
        batches: Vec<RecordBatch>,
    ) -> Entry {
        let mut entry = Entry::unlogged(location.lsn, ticket, batches);
        entry.logged = Some((location, part));
        entry
    }

    /// Rows that only live in memory (in flight to the log).
    pub(super) fn unlogged(lsn: Lsn, ticket: u64, batches: Vec<RecordBatch>) -> Entry {
        Entry {
            lsn,
            ticket,
            rows: batches.iter().map(RecordBatch::num_rows).sum(),
            bytes: batches.iter().map(RecordBatch::get_array_memory_size).sum(),
            batches: Some(batches),
            logged: None,
            at: Instant::now(),
        }
    }

    /// Bytes this entry holds in memory.
    fn memory(&self) -> usize {
        if self.batches.is_some() {
            self.bytes
        } else {
            0
        }
    }

    /// The same rows, kept only in the log; `None` if they are not in memory or not logged.
    fn spilled(&self) -> Option<Entry> {
        self.batches.as_ref()?;
        Some(Entry {
            lsn: self.lsn,
            ticket: self.ticket,
            batches: None,
            logged: Some(self.logged.clone()?),
            rows: self.rows,
            bytes: self.bytes,
            at: self.at,
        })
    }

    /// The rows, read back from the log if spilled.
    ///
    /// # Errors
    /// Log I/O errors, or a record that no longer decodes.
    pub fn batches(&self) -> Result<Vec<RecordBatch>> {
        if let Some(batches) = &self.batches {
            return Ok(batches.clone());
        }
        let Some((location, part)) = &self.logged else {
            return Ok(Vec::new());
        };
        decode_insert(&location.read()?)?
            .into_iter()
            .nth(*part)
            .map(|(_, _, _, batches)| batches)
            .ok_or_else(|| StorageError::Metadata(format!("log record {} lost a part", self.lsn)))
    }
}

/// Entries per sealed chunk of [`BufferedRows`].
const CHUNK_ENTRIES: usize = 128;

/// A table's buffered rows, oldest first; cheap to clone into a snapshot.
///
/// Entries are kept in sealed chunks plus an open tail: adding an entry while snapshots share
/// the list copies at most the tail and, once per chunk, the list of chunks, instead of every
/// entry (a busy table holds thousands of entries, one per committed transaction).
#[derive(Debug, Clone, Default)]
pub struct BufferedRows {
    sealed: Arc<Vec<Arc<[Arc<Entry>]>>>,
    tail: Arc<Vec<Arc<Entry>>>,
    pub rows: usize,
    pub bytes: usize,
    /// Of `bytes`, what is held in memory (the rest is spilled to the log).
    pub memory: usize,
}

impl BufferedRows {
    pub fn is_empty(&self) -> bool {
        self.sealed.is_empty() && self.tail.is_empty()
    }

    /// The entries, oldest first.
    pub fn entries(&self) -> impl Iterator<Item = &Arc<Entry>> {
        self.sealed
            .iter()
            .flat_map(|c| c.iter())
            .chain(self.tail.iter())
    }

    /// LSN of the newest buffered record (0 when empty).
    pub fn last_lsn(&self) -> Lsn {
        self.tail
            .last()
            .or_else(|| self.sealed.last().and_then(|c| c.last()))
            .map_or(0, |e| e.lsn)
    }

    fn first(&self) -> Option<&Arc<Entry>> {
        self.entries().next()
    }

    fn first_lsn(&self) -> Option<Lsn> {
        self.first().map(|e| e.lsn)
    }

    fn oldest(&self) -> Option<Instant> {
        self.first().map(|e| e.at)
    }

    pub(super) fn push(&mut self, entry: Entry) {
        self.rows += entry.rows;
        self.bytes += entry.bytes;
        self.memory += entry.memory();
        // In place unless a reader's snapshot shares the tail.
        let tail = Arc::make_mut(&mut self.tail);
        tail.push(Arc::new(entry));
        if tail.len() >= CHUNK_ENTRIES {
            let chunk: Arc<[Arc<Entry>]> = std::mem::take(tail).into();
            Arc::make_mut(&mut self.sealed).push(chunk);
        }
    }

    /// The same rows with every entry passed through `f` (entries it drops are left out).
    fn rebuilt(&self, mut f: impl FnMut(&Arc<Entry>) -> Option<Arc<Entry>>) -> BufferedRows {
        let mut out = BufferedRows::default();
        let mut tail = Vec::new();
        let mut sealed = Vec::new();
        for entry in self.entries() {
            if let Some(entry) = f(entry) {
                out.rows += entry.rows;
                out.bytes += entry.bytes;
                out.memory += entry.memory();
                tail.push(entry);
                if tail.len() >= CHUNK_ENTRIES {
                    sealed.push(Arc::from(std::mem::take(&mut tail)));
                }
            }
        }
        out.sealed = Arc::new(sealed);
        out.tail = Arc::new(tail);
        out
    }

    /// The entries at or below `lsn`: what a reader whose view was taken at `lsn` sees.
    pub fn upto(&self, lsn: Lsn) -> BufferedRows {
        if self.last_lsn() <= lsn {
            return self.clone();
        }
        self.rebuilt(|e| (e.lsn <= lsn).then(|| e.clone()))
    }

    /// Drops the entries at or below `lsn` (they reached Delta).
    pub(super) fn release(&mut self, lsn: Lsn) {
        if self.first_lsn().is_none_or(|first| first > lsn) {
            return;
        }
        *self = self.rebuilt(|e| (e.lsn > lsn).then(|| e.clone()));
    }

    /// Drops the in-memory copies of the oldest logged entries until at least `want` bytes are
    /// freed; returns the bytes freed. Readers holding the old entries keep them until done.
    pub(super) fn spill(&mut self, want: usize) -> usize {
        let mut freed = 0;
        *self = self.rebuilt(|entry| {
            if freed < want
                && let Some(spilled) = entry.spilled()
            {
                freed += entry.bytes;
                return Some(Arc::new(spilled));
            }
            Some(entry.clone())
        });
        freed
    }

    /// All buffered rows, oldest first, read back from the log where spilled.
    ///
    /// # Errors
    /// Log I/O errors.
    pub fn batches(&self) -> Result<Vec<RecordBatch>> {
        let mut out = Vec::new();
        for entry in self.entries() {
            out.extend(entry.batches()?);
        }
        Ok(out)
    }
}

/// Counters of the ingest path, for logs and `pg_stat`-style views.
#[derive(Debug, Default)]
pub struct IngestStats {
    pub rows_appended: AtomicU64,
    pub flush_commits: AtomicU64,
    pub rows_flushed: AtomicU64,
    pub flush_errors: AtomicU64,
    pub backpressure_waits: AtomicU64,
    /// Bytes of buffered rows dropped from memory (kept in the log only).
    pub bytes_spilled: AtomicU64,
}

fn encode_error(e: impl std::fmt::Display) -> StorageError {
    StorageError::Metadata(format!("cannot encode rows for the log: {e}"))
}

/// Encodes an insert record: the rows of each table, as Arrow IPC streams.
pub(super) fn encode_insert(
    tables: &[(Arc<TableHandle>, String, Vec<RecordBatch>)],
) -> Result<Vec<u8>> {
    let mut out = vec![RECORD_INSERT];
    out.extend_from_slice(&(tables.len() as u32).to_le_bytes());
    for (table, table_id, batches) in tables {
        for text in [&table.schema, &table.name, table_id] {
            out.extend_from_slice(&(text.len() as u32).to_le_bytes());
            out.extend_from_slice(text.as_bytes());
        }
        let schema = batches
            .first()
            .map(RecordBatch::schema)
            .ok_or_else(|| encode_error("no rows"))?;
        let mut ipc = Vec::new();
        {
            let mut writer = StreamWriter::try_new(&mut ipc, &schema).map_err(encode_error)?;
            for batch in batches {
                writer.write(batch).map_err(encode_error)?;
            }
            writer.finish().map_err(encode_error)?;
        }
        out.extend_from_slice(&(ipc.len() as u64).to_le_bytes());
        out.extend_from_slice(&ipc);
    }
    Ok(out)
}

/// A decoded insert record: (schema, table, Delta table id, rows) per table.
pub(super) type Decoded = Vec<(String, String, String, Vec<RecordBatch>)>;

pub(super) fn decode_insert(payload: &[u8]) -> Result<Decoded> {
    let bad = |what: &str| StorageError::Metadata(format!("malformed log record: {what}"));
    let mut rest = payload;
    let mut take = |n: usize| -> Result<&[u8]> {
        if rest.len() < n {
            return Err(bad("truncated"));
        }
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Ok(head)
    };
    if take(1)? != [RECORD_INSERT] {
        return Err(bad("unknown record kind"));
    }
    let count = u32::from_le_bytes(take(4)?.try_into().map_err(|_| bad("count"))?);
    let mut tables = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let mut texts = Vec::with_capacity(3);
        for _ in 0..3 {
            let len = u32::from_le_bytes(take(4)?.try_into().map_err(|_| bad("length"))?);
            let text = std::str::from_utf8(take(len as usize)?).map_err(|_| bad("name"))?;
            texts.push(text.to_string());
        }
        let len = u64::from_le_bytes(take(8)?.try_into().map_err(|_| bad("length"))?);
        let ipc = take(usize::try_from(len).map_err(|_| bad("length"))?)?;
        let reader = StreamReader::try_new(ipc, None).map_err(|e| bad(&e.to_string()))?;
        let batches = reader
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(&e.to_string()))?;
        let table_id = texts.pop().unwrap_or_default();
        let name = texts.pop().unwrap_or_default();
        let schema = texts.pop().unwrap_or_default();
        tables.push((schema, name, table_id, batches));
    }
    Ok(tables)
}

/// Gives buffered rows the table's current schema (a column added since they were written is
/// NULL in them), so a flush never fails on a schema change that raced with an insert.
pub(super) fn conform_to(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
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
pub(super) fn sorted_by_key(
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
pub(super) fn writer_properties(meta: &TableMeta) -> WriterProperties {
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

impl Storage {
    /// Takes the admission locks of tables about to receive rows, after waiting (bounded) while
    /// the log is over its disk budget. Key checks run under the returned [`Admission`], which
    /// then queues the rows in the log.
    ///
    /// # Errors
    /// [`StorageError::BufferFull`] after the backpressure wait.
    pub async fn admit(&self, mut tables: Vec<Arc<TableHandle>>) -> Result<Admission<'_>> {
        self.spill_over_budget();
        self.wait_for_space().await?;
        tables.sort_by_key(|t| t.oid);
        tables.dedup_by_key(|t| t.oid);
        let mut guards = Vec::with_capacity(tables.len());
        for table in tables {
            guards.push(table.lock_admit().await);
        }
        Ok(Admission {
            storage: self,
            _guards: guards,
        })
    }

    fn log_bytes(&self) -> u64 {
        self.ingest()
            .wal
            .stats()
            .bytes_on_disk
            .load(Ordering::Relaxed)
    }

    async fn wait_for_space(&self) -> Result<()> {
        let budget = self.ingest().config.disk_budget;
        if self.log_bytes() <= budget {
            return Ok(());
        }
        self.ingest()
            .stats
            .backpressure_waits
            .fetch_add(1, Ordering::Relaxed);
        let deadline = Instant::now() + self.ingest().config.backpressure_timeout;
        warn!(
            log_bytes = self.log_bytes(),
            budget, "write-ahead log over its disk budget; writer waits for a flush to Delta"
        );
        while self.log_bytes() > budget {
            self.ingest().wake.notify_one();
            let now = Instant::now();
            if now >= deadline {
                return Err(StorageError::BufferFull {
                    waited: self.ingest().config.backpressure_timeout,
                });
            }
            let _ = tokio::time::timeout(
                (deadline - now).min(Duration::from_millis(200)),
                self.ingest().drained.notified(),
            )
            .await;
        }
        Ok(())
    }

    /// Bytes of buffered rows held in memory, all tables together.
    pub fn buffered_bytes(&self) -> usize {
        self.all_tables().iter().map(|t| t.buffered().memory).sum()
    }

    fn over_memory_budget(&self) -> bool {
        self.buffered_bytes() > self.ingest().config.memory_budget
    }

    /// Past the memory budget, drops the in-memory copies of the oldest buffered rows (largest
    /// buffers first) down to half the budget; they stay in the log and are read from there.
    pub(super) fn spill_over_budget(&self) {
        let budget = self.ingest().config.memory_budget;
        let held = self.buffered_bytes();
        if held <= budget {
            return;
        }
        let mut want = held - budget / 2;
        let mut tables = self.all_tables();
        tables.sort_by_key(|t| std::cmp::Reverse(t.buffered().memory));
        let mut freed = 0;
        for table in tables {
            if want == 0 {
                break;
            }
            let spilled = table.spill(want);
            want = want.saturating_sub(spilled);
            freed += spilled;
        }
        self.ingest()
            .stats
            .bytes_spilled
            .fetch_add(freed as u64, Ordering::Relaxed);
        info!(
            freed,
            budget, "write buffers over their memory budget; oldest rows now read from the log"
        );
    }

    /// The highest LSN of this server's log that reached a table's Delta log (as of `state`).
    pub(super) async fn flushed_lsn(
        &self,
        table: &TableHandle,
        state: &super::TableState,
    ) -> Result<Lsn> {
        let version = state
            .table
            .snapshot()?
            .transaction_version(
                state.table.log_store().as_ref(),
                &table.app_id(&self.app_id),
            )
            .await?;
        Ok(version.unwrap_or(0).max(0) as Lsn)
    }

    /// Writes a table's buffered rows to Delta and drops them from the buffer: one commit per
    /// chunk of at most `flush_bytes` (whole log records), each published as it lands, so a
    /// long backlog neither needs its size in memory nor makes one huge commit.
    ///
    /// # Errors
    /// Delta errors; the rows not yet committed stay buffered (and logged) for the next attempt.
    pub async fn flush_table(&self, table: &Arc<TableHandle>) -> Result<usize> {
        // Only rows the log counts as published: a record spanning several tables is pushed
        // into their buffers one by one, and none of it may reach Delta (and so every view)
        // before a view can see all of it (see `View`).
        let upto = table
            .buffered()
            .last_lsn()
            .min(self.ingest().wal.published());
        let mut rows = 0;
        loop {
            let mut guard = self.lock_for_commit(vec![table.clone()]).await;
            let (flushed, more) = guard.flush_chunk(table, self, upto).await?;
            guard.publish().await;
            self.release_log();
            self.ingest().drained.notify_waiters();
            rows += flushed;
            if !more {
                return Ok(rows);
            }
        }
    }

    /// Flushes every table with buffered rows and releases the log behind them.
    ///
    /// # Errors
    /// The first flush error (other tables are still flushed).
    pub async fn flush_all(&self) -> Result<()> {
        let mut first_error = None;
        for table in self.all_tables() {
            if !table.buffered().is_empty()
                && let Err(e) = self.flush_table(&table).await
            {
                first_error.get_or_insert(e);
            }
        }
        self.release_log();
        first_error.map_or(Ok(()), Err)
    }

    /// Lets the log delete segments every table has flushed past.
    fn release_log(&self) {
        let published = self.ingest().wal.published();
        // Records held for tables that cannot be read are kept too (see `recovery`).
        let oldest = self
            .all_tables()
            .iter()
            .filter_map(|t| t.buffered().first_lsn())
            .chain(self.oldest_held())
            .min();
        let upto = oldest.map_or(published, |o| published.min(o.saturating_sub(1)));
        self.ingest().wal.release(upto);
    }

    /// The flusher: flushes tables past a threshold, retrying failed ones after a pause.
    pub(super) async fn run_flusher(self: Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        let config = self.ingest().config.clone();
        let tick = (config.flush_age / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
        let mut last_report = Instant::now();
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                () = self.ingest().wake.notified() => {}
                () = tokio::time::sleep(tick) => {}
            }
            let over_budget = self.over_memory_budget();
            for table in self.all_tables() {
                if config.flush_due(&table.buffered(), over_budget)
                    && let Err(e) = self.flush_table(&table).await
                {
                    self.ingest()
                        .stats
                        .flush_errors
                        .fetch_add(1, Ordering::Relaxed);
                    warn!(table = table.name, error = %e, "flush failed; rows stay buffered and logged, retrying");
                    tokio::select! {
                        () = stop.cancelled() => break,
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
            self.release_log();
            self.ingest().drained.notify_waiters();
            if last_report.elapsed() >= Duration::from_secs(60) {
                last_report = Instant::now();
                self.report();
            }
        }
    }

    /// Logs the figures an operator watches.
    pub fn report(&self) {
        let stats = &self.ingest().stats;
        let wal = self.ingest().wal.stats();
        let tables = self.all_tables();
        let lag = tables
            .iter()
            .filter_map(|t| t.buffered().oldest())
            .map(|t| t.elapsed())
            .max()
            .unwrap_or_default();
        info!(
            rows_buffered = tables.iter().map(|t| t.buffered().rows).sum::<usize>(),
            bytes_buffered = tables.iter().map(|t| t.buffered().bytes).sum::<usize>(),
            bytes_in_memory = self.buffered_bytes(),
            bytes_spilled = stats.bytes_spilled.load(Ordering::Relaxed),
            log_bytes = wal.bytes_on_disk.load(Ordering::Relaxed),
            log_syncs = wal.syncs.load(Ordering::Relaxed),
            rows_appended = stats.rows_appended.load(Ordering::Relaxed),
            flush_commits = stats.flush_commits.load(Ordering::Relaxed),
            rows_flushed = stats.rows_flushed.load(Ordering::Relaxed),
            flush_errors = stats.flush_errors.load(Ordering::Relaxed),
            backpressure_waits = stats.backpressure_waits.load(Ordering::Relaxed),
            flush_lag = ?lag,
            "ingest"
        );
    }
}

impl Ingest {
    pub(super) fn new(wal: crate::wal::Wal, config: BufferConfig) -> Ingest {
        Ingest {
            wal,
            config,
            stats: IngestStats::default(),
            wake: tokio::sync::Notify::new(),
            drained: tokio::sync::Notify::new(),
            tickets: AtomicU64::new(1),
        }
    }
}

/// Tables locked for admitting a write; see [`Storage::admit`].
pub struct Admission<'a> {
    storage: &'a Storage,
    _guards: Vec<tokio::sync::OwnedMutexGuard<()>>,
}

/// The rows of one table for [`Admission::append`].
pub struct Append {
    pub table: Arc<TableHandle>,
    pub batches: Vec<RecordBatch>,
    /// `None`: the rows' keys were checked under this admission. `Some(stamp)`: they were
    /// checked against the table at `stamp`, before rows other writers added since, so the
    /// append claims them (see [`Appended::Refused`]).
    pub checked_at: Option<Stamp>,
}

/// What [`Admission::append`] did.
pub enum Appended<'a> {
    /// The rows are durable and visible, at this log position.
    Durable(Lsn),
    /// Nothing was stored: rows other writers added since `checked_at` may hold one of the
    /// keys. The caller checks the rows again under the admission handed back.
    Refused(Admission<'a>),
}

impl<'a> Admission<'a> {
    /// Queues rows for several tables as one log record, releases the admission locks, and
    /// returns once the record is synced and the rows are visible to every session. Until then
    /// the rows are "in flight": seen by key checks of later writers, not by readers.
    ///
    /// # Errors
    /// Log I/O errors; the rows are then not stored.
    pub async fn append(self, tables: Vec<Append>) -> Result<Appended<'a>> {
        let mut encoded = Vec::with_capacity(tables.len());
        let mut claims = Vec::with_capacity(tables.len());
        for Append {
            table,
            batches,
            checked_at,
        } in tables
        {
            let mut batches = strip_metadata(batches)?;
            // Many small statements' rows become one batch (tiny batches slow every scan);
            // large ones (COPY's chunks) are kept as they are rather than copied again.
            let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
            if batches.len() > 1 && rows / batches.len() < 8192 {
                let schema = batches[0].schema();
                batches = vec![
                    concat_batches(&schema, &batches)
                        .map_err(|e| StorageError::DataFusion(e.into()))?,
                ];
            }
            if batches.iter().any(|b| b.num_rows() > 0) {
                let id = table.state().table_id();
                encoded.push((table, id, batches));
                claims.push(checked_at);
            }
        }
        if encoded.is_empty() {
            return Ok(Appended::Durable(0));
        }
        let storage = self.storage;
        let payload = encode_insert(&encoded)?;
        let ticket = storage.ingest().tickets.fetch_add(1, Ordering::Relaxed);
        let mut publish: Vec<(Arc<TableHandle>, Vec<RecordBatch>)> =
            Vec::with_capacity(encoded.len());
        for ((table, _, batches), checked_at) in encoded.into_iter().zip(claims) {
            let queued = table.add_inflight(ticket, batches.clone(), checked_at);
            if !matches!(queued, Ok(true)) {
                for (table, _) in &publish {
                    table.fail_inflight(ticket);
                }
                return queued.map(|_| Appended::Refused(self));
            }
            publish.push((table, batches));
        }
        let tables: Vec<Arc<TableHandle>> = publish.iter().map(|(t, _)| t.clone()).collect();
        let rows: usize = publish
            .iter()
            .flat_map(|(_, b)| b)
            .map(RecordBatch::num_rows)
            .sum();
        let ingest = storage.ingest().clone();
        // No lock that readers hold: a multi-table record becomes visible to them when the log
        // counts it published, after this callback has pushed every part (see `View`).
        let submitted = storage.ingest().wal.submit(payload, move |location| {
            for (part, (table, batches)) in publish.into_iter().enumerate() {
                // Only replayed rows can fail here (indexing); these were indexed when queued.
                let entry = Entry::logged(location.clone(), part, ticket, batches);
                let _ = table.push_buffered(entry, false);
            }
            ingest
                .stats
                .rows_appended
                .fetch_add(rows as u64, Ordering::Relaxed);
        });
        // Later writers may now check against these rows (in flight) and queue behind them.
        drop(self);
        let result = match submitted {
            Ok(pending) => pending.durable().await,
            Err(e) => Err(e),
        };
        if result.is_err() {
            for table in &tables {
                table.fail_inflight(ticket);
            }
        }
        // Only when a threshold is reached: a wake per commit would cost a task switch each.
        let over_budget = storage.over_memory_budget();
        let config = &storage.ingest().config;
        if tables
            .iter()
            .any(|t| config.flush_due(&t.buffered(), over_budget))
        {
            storage.ingest().wake.notify_one();
        }
        Ok(Appended::Durable(result?))
    }
}

/// The ingest machinery a [`Storage`] owns.
pub(super) struct Ingest {
    pub wal: crate::wal::Wal,
    pub config: BufferConfig,
    pub stats: IngestStats,
    /// Wakes the flusher early (a buffer grew or a writer is waiting).
    pub wake: tokio::sync::Notify,
    /// Signalled after each flush round, for writers waiting on the budget.
    pub drained: tokio::sync::Notify,
    /// Identifies in-flight writes.
    pub tickets: AtomicU64,
}

impl super::commit::CommitGuard<'_> {
    /// Writes the oldest buffered rows not yet flushed by this guard, up to `flush_bytes` and
    /// LSN `upto`, in one Delta commit whose application transaction is the chunk's last LSN.
    /// Returns the rows written and whether rows up to `upto` remain.
    pub(super) async fn flush_chunk(
        &mut self,
        table: &Arc<TableHandle>,
        storage: &Storage,
        upto: Lsn,
    ) -> Result<(usize, bool)> {
        let ingest = storage.ingest();
        let after = self.flushed_upto(table);
        let buffered = table.buffered();
        let pending: Vec<&Arc<Entry>> = buffered
            .entries()
            .filter(|e| e.lsn > after && e.lsn <= upto)
            .collect();
        let mut size = 0;
        let take = pending
            .iter()
            .take_while(|e| {
                size += e.bytes;
                size <= ingest.config.flush_bytes
            })
            .count()
            .max(1)
            .min(pending.len());
        let chunk = &pending[..take];
        let Some(last) = chunk.last().map(|e| e.lsn) else {
            return Ok((0, false));
        };
        let started = Instant::now();
        let current = self.current(table);
        let schema = current.meta.stored_schema.clone();
        let mut batches = Vec::new();
        for entry in chunk {
            for batch in entry.batches()? {
                batches.push(conform_to(&batch, &schema)?);
            }
        }
        let batches = sorted_by_key(batches, &schema, &current.meta.primary_key_indices())?;
        let rows: usize = chunk.iter().map(|e| e.rows).sum();
        let bytes: usize = chunk.iter().map(|e| e.bytes).sum();
        let tickets = chunk.iter().map(|e| e.ticket).max().unwrap_or(0);
        let app_id = table.app_id(&storage.app_id);
        let properties = commit_properties()
            .with_application_transaction(Transaction::new(&app_id, last as i64));
        let delta = current
            .table
            .write(table.to_stored(batches)?)
            .with_save_mode(SaveMode::Append)
            .with_writer_properties(writer_properties(&current.meta))
            .with_commit_properties(properties)
            .await
            .map_err(StorageError::commit(&table.name))?;
        self.stage_flushed(table, delta, last, tickets, rows)?;
        ingest.stats.flush_commits.fetch_add(1, Ordering::Relaxed);
        ingest
            .stats
            .rows_flushed
            .fetch_add(rows as u64, Ordering::Relaxed);
        info!(
            table = table.name,
            rows,
            bytes,
            upto_lsn = last,
            elapsed = ?started.elapsed(),
            "flushed to Delta"
        );
        Ok((rows, take < pending.len()))
    }
}
