//! The warehouse catalog: which schemas and tables exist, discovered from storage.
//!
//! The warehouse is the database. A schema is a top-level folder (kept alive by a small marker
//! object, since object stores have no empty folders); a table is any folder below it holding a
//! `_delta_log`. Tables written by other engines are found the same way. Everything here is
//! in memory after [`Storage::open`]; DDL changes storage first and the map second, so a crash
//! between the two is repaired by the next start's discovery.
//!
//! This file holds the catalog's state, its lookups, and opening and closing the warehouse;
//! `discovery` finds the schemas and tables in the warehouse (at start and on rescan), and
//! `ddl` creates and drops them. Called by the SQL layer through the `Storage` methods, and by
//! the rest of `storage` through the `pub(super)` ones.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use datafusion::execution::runtime_env::RuntimeEnv;
use deltalake::logstore::ObjectStoreRef;
use parking_lot::RwLock;
use tokio::sync::{RwLock as AsyncRwLock, RwLockReadGuard};
use url::Url;

use tokio_util::sync::CancellationToken;

use super::commit::CommitGuard;
use super::historian::partition::Container;
use super::ingest::{BufferConfig, Ingest};
use super::names;
use super::table::TableHandle;
use super::{Result, StorageError, StorageOptions, stable_oid};
use crate::wal::{Durability, Wal, WalConfig};

mod ddl;
mod discovery;

/// One statement's view of the warehouse (see [`Storage::read_view`]).
///
/// Delta commits are published under the visibility lock, which the view holds shared. Buffered
/// rows are published by the log's writer thread in LSN order without that lock (an
/// acknowledgement must never wait on a planner); a record that spans several tables is pushed
/// into each buffer and only then counted as published. So a reader that takes the buffered
/// rows at or below the published LSN of one moment ([`TableHandle::state_at`]) sees every
/// table's part of a transaction, or none of it.
pub struct View<'a> {
    _guard: RwLockReadGuard<'a, ()>,
    /// The log's published LSN when the view was taken.
    pub lsn: crate::wal::Lsn,
}

/// The schema every warehouse has.
pub const DEFAULT_SCHEMA: &str = "public";
/// OID of `public` in every PostgreSQL database.
const PUBLIC_NAMESPACE_OID: u32 = 2200;

/// Where and how tables are stored.
#[derive(Debug, Clone)]
pub struct StorageConfig {
    /// Root of the warehouse: `file:///path` or `s3://bucket/prefix`.
    pub warehouse: Url,
    /// Object store options (credentials, endpoint, `AWS_ALLOW_HTTP`, ...).
    pub storage_options: StorageOptions,
    /// `delta.checkpointInterval` for new tables; Spark's default is 10.
    pub checkpoint_interval: u32,
    /// Values a sequence reserves durably at a time (like PostgreSQL's sequence WAL batching).
    pub sequence_reserve: i64,
    /// Directory of the write-ahead log; by default `.deltagate/wal` inside a local warehouse.
    /// Required for a remote warehouse: the log must be on local disk.
    pub wal_dir: Option<std::path::PathBuf>,
    pub durability: Durability,
    pub buffer: BufferConfig,
}

impl StorageConfig {
    /// A configuration for a local warehouse directory.
    ///
    /// # Errors
    /// [`StorageError::Location`] when the path cannot be made absolute.
    pub fn local(path: &std::path::Path) -> Result<StorageConfig> {
        let absolute = std::path::absolute(path)
            .map_err(|e| StorageError::Location(format!("{}: {e}", path.display())))?;
        let url = Url::from_directory_path(&absolute)
            .map_err(|()| StorageError::Location(absolute.display().to_string()))?;
        Ok(StorageConfig {
            warehouse: url,
            ..StorageConfig::new(Url::parse("file:///").expect("static URL"))
        })
    }

    /// A configuration with defaults for everything but the warehouse location.
    pub fn new(warehouse: Url) -> StorageConfig {
        StorageConfig {
            warehouse,
            storage_options: StorageOptions::new(),
            checkpoint_interval: 10,
            sequence_reserve: 32,
            wal_dir: None,
            durability: Durability::default(),
            buffer: BufferConfig::default(),
        }
    }
}

struct SchemaEntry {
    oid: u32,
    tables: BTreeMap<String, Arc<TableHandle>>,
}

/// The warehouse: every schema and table, and the locks that order commits.
pub struct Storage {
    pub(super) config: StorageConfig,
    /// Object store rooted at the warehouse.
    store: ObjectStoreRef,
    schemas: RwLock<BTreeMap<String, SchemaEntry>>,
    /// Readers hold it shared while resolving a statement's tables; Delta commits hold it
    /// exclusively while they publish new snapshots, so a multi-table commit becomes visible at
    /// once. The log's callbacks never take it: buffered rows are made visible by the log's
    /// published LSN instead (see [`View`]), so no acknowledgement waits on a planner.
    pub(super) visibility: Arc<AsyncRwLock<()>>,
    /// The log, buffers and flusher; set once in [`Storage::open`], after discovery (the log's
    /// first LSN depends on what the tables recorded).
    ingest: std::sync::OnceLock<Arc<Ingest>>,
    /// This server's Delta application id (see [`server_id`]).
    pub(super) app_id: String,
    /// Stops the flusher at shutdown.
    stop: CancellationToken,
    /// Serializes discovery with table creation and removal, so a scan never registers a table
    /// that is being created or dropped.
    pub(super) ddl: tokio::sync::Mutex<()>,
    pub(super) runtime: Arc<RuntimeEnv>,
    /// The Delta tables holding historian months, by schema and folder (see `partition`).
    pub(super) containers: parking_lot::Mutex<HashMap<(String, String), Arc<Container>>>,
    /// Tables whose Delta log could not be read, by schema and folder (see `recovery`).
    pub(super) unavailable:
        parking_lot::Mutex<BTreeMap<(String, String), super::recovery::Unavailable>>,
    /// Folders discovery ignored and warned about (once each).
    ignored_folders: parking_lot::Mutex<std::collections::HashSet<String>>,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage")
            .field("warehouse", &self.config.warehouse.as_str())
            .finish_non_exhaustive()
    }
}
impl Storage {
    /// Opens the warehouse, creating it (and the `public` schema) if needed, and loads every
    /// table found in it.
    ///
    /// # Errors
    /// Storage errors when the warehouse cannot be listed or a table's log cannot be read.
    pub async fn open(config: StorageConfig, runtime: Arc<RuntimeEnv>) -> Result<Arc<Storage>> {
        let mut config = config;
        if !config.warehouse.path().ends_with('/') {
            let path = format!("{}/", config.warehouse.path());
            config.warehouse.set_path(&path);
        }
        if config.warehouse.scheme() == "file" {
            let path = config
                .warehouse
                .to_file_path()
                .map_err(|()| StorageError::Location(config.warehouse.to_string()))?;
            std::fs::create_dir_all(&path)
                .map_err(|e| StorageError::Location(format!("{}: {e}", path.display())))?;
        }
        let store =
            deltalake::logstore::store_for(&config.warehouse, config.storage_options.iter())?;
        let wal_dir = wal_dir(&config)?;
        let app_id = server_id(&wal_dir)?;
        let storage = Storage {
            config,
            store,
            schemas: RwLock::new(BTreeMap::new()),
            visibility: Arc::new(AsyncRwLock::new(())),
            ingest: std::sync::OnceLock::new(),
            app_id,
            stop: CancellationToken::new(),
            ddl: tokio::sync::Mutex::new(()),
            runtime,
            containers: parking_lot::Mutex::new(HashMap::new()),
            unavailable: parking_lot::Mutex::new(BTreeMap::new()),
            ignored_folders: parking_lot::Mutex::new(Default::default()),
        };
        storage.discover().await?;
        if !storage.has_schema(DEFAULT_SCHEMA) {
            storage.create_schema(DEFAULT_SCHEMA, true).await?;
        }
        // LSNs must stay above every one a table has recorded, even if the log was lost.
        let mut floor = 0;
        for table in storage.all_tables() {
            floor = floor.max(storage.flushed_lsn(&table, &table.state()).await?);
        }
        // Segments are written in full, so keep several of them within the disk budget.
        let wal_config = WalConfig {
            durability: storage.config.durability,
            segment_bytes: (storage.config.buffer.disk_budget / 8).clamp(1 << 20, 16 << 20),
            ..WalConfig::new(wal_dir)
        };
        let (wal, records) = Wal::open(wal_config, floor)?;
        let ingest = Ingest::new(wal, storage.config.buffer.clone());
        let _ = storage.ingest.set(Arc::new(ingest));
        storage.replay(records).await?;
        let storage = Arc::new(storage);
        // Replayed rows are served from the buffer at once and flushed by the flusher in the
        // background: neither a long backlog nor an unreachable store delays serving.
        tokio::spawn(storage.clone().run_flusher(storage.stop.clone()));
        storage.ingest().wake.notify_one();
        Ok(storage)
    }

    pub(super) fn ingest(&self) -> &Arc<Ingest> {
        self.ingest
            .get()
            .expect("the log is opened in Storage::open before any write")
    }

    /// The shared DataFusion runtime (object stores of every table are registered in it).
    pub fn runtime(&self) -> &Arc<RuntimeEnv> {
        &self.runtime
    }

    /// The warehouse location.
    pub fn warehouse(&self) -> &Url {
        &self.config.warehouse
    }

    /// The location of table `name` of `schema`: `<warehouse>/<schema folder>/<table folder>/`
    /// (see `names`), always strictly inside the warehouse.
    pub(super) fn table_url(&self, schema: &str, name: &str) -> Result<Url> {
        let relative = format!("{}/{}/", names::encode(schema)?, names::encode(name)?);
        self.config
            .warehouse
            .join(&relative)
            .map_err(|e| StorageError::Location(e.to_string()))
    }

    pub(super) fn unique_oid(&self, kind: &str, schema: &str, name: &str) -> u32 {
        let taken: std::collections::HashSet<u32> = self
            .schemas
            .read()
            .values()
            .flat_map(|s| s.tables.values().map(|t| t.oid))
            .collect();
        let mut oid = stable_oid(kind, schema, name);
        while taken.contains(&oid) {
            oid = oid.wrapping_add(1).max(16384);
        }
        oid
    }

    fn insert_schema(&self, schema: &str) {
        let oid = if schema == DEFAULT_SCHEMA {
            PUBLIC_NAMESPACE_OID
        } else {
            stable_oid("schema", "", schema)
        };
        self.schemas
            .write()
            .entry(schema.to_string())
            .or_insert_with(|| SchemaEntry {
                oid,
                tables: BTreeMap::new(),
            });
    }

    pub(super) fn insert_table(&self, handle: Arc<TableHandle>) {
        self.insert_schema(&handle.schema);
        if let Some(entry) = self.schemas.write().get_mut(&handle.schema) {
            entry.tables.insert(handle.name.clone(), handle);
        }
    }

    /// Names and OIDs of all schemas.
    pub fn schemas(&self) -> Vec<(String, u32)> {
        self.schemas
            .read()
            .iter()
            .map(|(name, entry)| (name.clone(), entry.oid))
            .collect()
    }

    /// Whether a schema exists.
    pub fn has_schema(&self, schema: &str) -> bool {
        self.schemas.read().contains_key(schema)
    }

    /// The tables of one schema, by name.
    pub fn tables(&self, schema: &str) -> Vec<Arc<TableHandle>> {
        self.schemas
            .read()
            .get(schema)
            .map(|s| s.tables.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Every table in the warehouse.
    pub fn all_tables(&self) -> Vec<Arc<TableHandle>> {
        self.schemas
            .read()
            .values()
            .flat_map(|s| s.tables.values().cloned())
            .collect()
    }

    /// One table.
    pub fn table(&self, schema: &str, name: &str) -> Option<Arc<TableHandle>> {
        self.schemas.read().get(schema)?.tables.get(name).cloned()
    }

    /// The table owning an index of this name in the schema.
    pub fn index_owner(&self, schema: &str, index: &str) -> Option<Arc<TableHandle>> {
        self.tables(schema).into_iter().find(|t| {
            let state = t.state();
            state.meta.indexes.iter().any(|i| i.name == index)
                || state
                    .meta
                    .primary_key
                    .as_ref()
                    .is_some_and(|pk| pk.name == index)
        })
    }

    /// The table owning a sequence of this name in the schema.
    pub fn sequence_owner(&self, schema: &str, sequence: &str) -> Option<Arc<TableHandle>> {
        self.tables(schema)
            .into_iter()
            .find(|t| t.state().meta.sequences.iter().any(|s| s.name == sequence))
    }

    /// Whether any relation (table, index or sequence) of this name exists in the schema.
    pub fn relation_exists(&self, schema: &str, name: &str) -> bool {
        self.table(schema, name).is_some()
            || self.index_owner(schema, name).is_some()
            || self.sequence_owner(schema, name).is_some()
    }

    /// Every table as of one moment: hold it while resolving the tables of one statement, and
    /// read buffered rows only up to [`View::lsn`].
    pub async fn read_view(&self) -> View<'_> {
        let guard = self.visibility.read().await;
        View {
            _guard: guard,
            lsn: self.ingest().wal.published(),
        }
    }

    pub(super) fn remove_table(&self, table: &TableHandle) {
        if let Some(entry) = self.schemas.write().get_mut(&table.schema) {
            entry.tables.remove(&table.name);
        }
    }
    /// Locks tables for a Delta commit. The commit locks (one per Delta table: historian
    /// months share theirs) are taken in one global order so concurrent commits cannot
    /// deadlock.
    pub async fn lock_for_commit(&self, mut tables: Vec<Arc<TableHandle>>) -> CommitGuard<'_> {
        tables.sort_by_key(|t| t.oid);
        tables.dedup_by_key(|t| t.oid);
        let mut locks: Vec<Arc<tokio::sync::Mutex<()>>> =
            tables.iter().map(|t| t.commit_lock().clone()).collect();
        locks.sort_by_key(|l| Arc::as_ptr(l) as usize);
        locks.dedup_by_key(|l| Arc::as_ptr(l) as usize);
        let mut guards = Vec::with_capacity(locks.len());
        for lock in locks {
            guards.push(lock.lock_owned().await);
        }
        CommitGuard::new(tables, guards, self)
    }

    /// Durably records sequence positions that ran past their reservation.
    ///
    /// Called after every statement that drew sequence values and before it is acknowledged,
    /// so no value handed to a client can be handed out again after a restart.
    ///
    /// # Errors
    /// Delta commit errors.
    pub async fn persist_sequences(&self) -> Result<()> {
        for table in self.all_tables() {
            if table.sequences_need_reserve() {
                let mut guard = self.lock_for_commit(vec![table.clone()]).await;
                guard
                    .reserve_sequences(&table, self.config.sequence_reserve)
                    .await?;
                guard.publish().await;
            }
        }
        Ok(())
    }

    /// Records the exact sequence positions so a clean restart skips no values.
    ///
    /// # Errors
    /// Delta commit errors.
    pub async fn shutdown(&self) -> Result<()> {
        self.stop.cancel();
        self.flush_all().await?;
        self.report();
        for table in self.all_tables() {
            if table.sequences_dirty() {
                let mut guard = self.lock_for_commit(vec![table.clone()]).await;
                guard.reserve_sequences(&table, 0).await?;
                guard.publish().await;
            }
        }
        Ok(())
    }
}

/// Where the write-ahead log lives.
fn wal_dir(config: &StorageConfig) -> Result<std::path::PathBuf> {
    if let Some(dir) = &config.wal_dir {
        return Ok(dir.clone());
    }
    if config.warehouse.scheme() == "file" {
        let root = config
            .warehouse
            .to_file_path()
            .map_err(|()| StorageError::Location(config.warehouse.to_string()))?;
        return Ok(root.join(".deltagate").join("wal"));
    }
    Err(StorageError::Location(
        "a remote warehouse needs a local write-ahead log directory (--wal-dir)".into(),
    ))
}

/// This server's Delta application id, kept beside its log: replay compares the log's positions
/// with the `txn` versions committed under this id.
fn server_id(wal_dir: &std::path::Path) -> Result<String> {
    let location =
        |e: std::io::Error| StorageError::Location(format!("{}: {e}", wal_dir.display()));
    std::fs::create_dir_all(wal_dir).map_err(location)?;
    let path = wal_dir.join("server-id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => Ok(id.trim().to_string()),
        Ok(_) | Err(_) => {
            let id = format!("deltagate-{:032x}", rand::random::<u128>());
            let temp = wal_dir.join("server-id.tmp");
            std::fs::write(&temp, &id)
                .and_then(|()| std::fs::File::open(&temp)?.sync_all())
                .and_then(|()| std::fs::rename(&temp, &path))
                .map_err(location)?;
            Ok(id)
        }
    }
}
