//! Storage: the warehouse of Delta tables, and the only code that reads or writes them.
//!
//! ```text
//!   warehouse/                      (local directory or s3://bucket/prefix)
//!     <schema>/                     a PostgreSQL schema ("public" by default)
//!       <table>/_delta_log/...      a Delta table; its PostgreSQL metadata lives in its log
//! ```
//!
//! [`Storage`] discovers every schema and table at start, keeps the current snapshot of each
//! table in memory ([`TableHandle`]), and applies DDL and writes. Writers take a table's commit
//! lock ([`CommitGuard`]) so commits to one table are serialized; the new snapshots are published
//! together under the visibility lock, so a statement that plans while holding
//! [`Storage::read_view`] sees either all or none of a multi-table commit. Buffered rows are
//! published by the log's writer thread without that lock, and a [`View`] reads them up to the
//! log position it was taken at, so an acknowledgement never waits on a planner.
//!
//! Inserts take another path: [`Storage::admit`] checks and queues them in the write-ahead log,
//! and once synced they wait in per-table buffers (part of every snapshot readers see) until the
//! flusher moves them to Delta in large commits (see `ingest`).
//!
//! Storage never imports pgwire and knows no SQL text beyond the default expressions it stores.
//! It is called by the `sql` layer.

mod catalog;
mod commit;
mod footers;
pub mod historian;
mod ingest;
mod keys;
pub mod meta;
mod mutation;
pub mod names;
mod provider;
mod recovery;
mod rows;
mod seek;
mod table;
mod vacuum;

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::arrow::error::ArrowError;
use datafusion::error::DataFusionError;
use deltalake::DeltaTableError;

pub use catalog::{Storage, StorageConfig, View};
pub use commit::CommitGuard;
pub use ingest::{Admission, Append, Appended, BufferConfig};
pub use keys::{
    Checked, KeySet, NewRows, OnDuplicate, PackedKey, key_columns, key_set, matching_keys,
    violation_at,
};
pub use meta::{ColumnMeta, IndexMeta, SequenceMeta, TableMeta};
pub use provider::PgTableProvider;
pub use seek::{KeySeek, as_i64};
pub use table::{FileSet, Stamp, TableHandle, TableState, WriteOp};

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("relation \"{0}\" does not exist")]
    UndefinedTable(String),
    #[error("relation \"{0}\" already exists")]
    DuplicateTable(String),
    #[error("schema \"{0}\" does not exist")]
    UndefinedSchema(String),
    #[error("schema \"{0}\" already exists")]
    DuplicateSchema(String),
    #[error("cannot drop schema {0} because other objects depend on it")]
    SchemaNotEmpty(String),
    #[error("index \"{0}\" does not exist")]
    UndefinedIndex(String),
    #[error("column \"{column}\" of relation \"{table}\" already exists")]
    DuplicateColumn { table: String, column: String },
    #[error("column \"{column}\" of relation \"{table}\" does not exist")]
    UndefinedColumn { table: String, column: String },
    #[error("relation \"{0}\" does not exist")]
    UndefinedSequence(String),
    #[error("nextval: reached maximum value of sequence \"{name}\" ({max})")]
    SequenceExhausted { name: String, max: i64 },
    #[error("setval: value {value} is out of bounds for sequence \"{name}\" ({min}..{max})")]
    SequenceOutOfBounds {
        name: String,
        value: i64,
        min: i64,
        max: i64,
    },
    #[error("invalid table metadata: {0}")]
    Metadata(String),
    #[error("could not commit to \"{table}\": {source}")]
    Commit {
        table: String,
        /// Boxed, as is `Delta`'s: delta-rs errors are large, and every `Result` of storage
        /// and sql would carry their size.
        #[source]
        source: Box<DeltaTableError>,
    },
    #[error(transparent)]
    Delta(Box<DeltaTableError>),
    #[error(transparent)]
    ObjectStore(#[from] object_store::Error),
    #[error(transparent)]
    DataFusion(#[from] DataFusionError),
    #[error("invalid warehouse location: {0}")]
    Location(String),
    #[error(
        "the write-ahead log is over its disk budget: waited {waited:?} for the flush to Delta to catch up"
    )]
    BufferFull { waited: std::time::Duration },
    #[error(transparent)]
    Wal(#[from] crate::wal::WalError),
    #[error("{0}")]
    Unsupported(String),
    #[error(transparent)]
    Name(#[from] names::NameError),
    /// A table whose Delta log cannot be read (see `recovery`).
    #[error(
        "table \"{table}\" is unavailable: its Delta log cannot be read ({reason}); its unflushed rows are kept in the write-ahead log until it can be"
    )]
    Unavailable { table: String, reason: String },
    /// A new row's primary key is taken (see `keys::check`).
    #[error("duplicate key value violates unique constraint \"{constraint}\"")]
    UniqueViolation { constraint: String, detail: String },
    /// A change read data files another writer has replaced since.
    #[error("could not serialize access due to concurrent update of \"{table}\"")]
    Conflict { table: String },
}

impl StorageError {
    /// The error of a failed Delta commit to `table`.
    pub(crate) fn commit(table: &str) -> impl Fn(DeltaTableError) -> StorageError + '_ {
        move |source| StorageError::Commit {
            table: table.to_string(),
            source: Box::new(source),
        }
    }
}

impl From<DeltaTableError> for StorageError {
    fn from(e: DeltaTableError) -> StorageError {
        StorageError::Delta(Box::new(e))
    }
}

/// Result of storage operations.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// The batch with one more column at the end.
///
/// # Errors
/// Arrow errors (a column of another length).
pub fn append_column(
    batch: &RecordBatch,
    field: Field,
    values: ArrayRef,
) -> std::result::Result<RecordBatch, ArrowError> {
    let mut fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(field);
    let mut columns = batch.columns().to_vec();
    columns.push(values);
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
}

/// A stable OID for a catalog object, derived from its kind and qualified name.
///
/// OIDs must not change across restarts (PgJDBC and DBeaver cache them), and the Delta log is
/// the only catalog, so they are computed rather than allocated: FNV-1a of the name, folded into
/// the range PostgreSQL reserves for user objects (16384 and up).
pub fn stable_oid(kind: &str, schema: &str, name: &str) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in kind
        .bytes()
        .chain([0u8])
        .chain(schema.bytes())
        .chain([b'.'])
        .chain(name.bytes())
    {
        hash ^= byte as u32;
        hash = hash.wrapping_mul(0x0100_0193);
    }
    16384 + hash % (i32::MAX as u32 - 16384)
}

/// Storage options for the object store, merged from configuration (`AWS_*` and friends).
pub type StorageOptions = HashMap<String, String>;
