//! The SQL layer: sessions, statements, transactions and the PostgreSQL catalog.
//!
//! ```text
//!  text ──parse──► AST ──rewrite (pg compat, search_path, defaults)──► classify
//!     session statements (SET/SHOW/BEGIN...) ─► settings / transaction state
//!     DDL ─► storage (immediately)
//!     DML ─► DataFusion plans the rows ─► checks (NOT NULL, length, PK) ─► transaction ops
//!     queries ─► DataFusion plan over (Delta snapshot ∪ this transaction's pending ops)
//! ```
//!
//! [`Engine`] is shared by all connections; each connection owns a [`Session`] with its own
//! DataFusion context, settings and transaction. Nothing here knows the wire protocol: the
//! server layer turns [`Outcome`]s into messages, and [`SqlError`]s, classified by
//! [`sqlstate`], into error responses.

mod catalog;
mod control;
mod copy;
mod ddl;
mod dml;
mod functions;
mod historian;
mod information_schema;
mod limits;
mod maintenance;
mod parse;
mod pg_catalog;
mod query;
mod rewrite;
mod row_locks;
mod session;
mod settings;
mod shared;
pub mod sqlstate;
mod statements;
mod subplan;
mod tables;
mod txn;

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::sql::sqlparser::parser::ParserError;

use crate::pgtypes::TypeError;
use crate::storage::{Storage, StorageError};

pub use copy::{CopyFault, CopyIn, Format as CopyFormat};
pub use dml::Executions;
pub use limits::{THREAD_STACK_SIZE, configure_stack_growth};
pub use rewrite::NAME_MARK;
pub use session::{CancelHandle, PreparedStatement, Session, TxnStatus};
pub use settings::Settings;

/// Errors of the SQL layer. [`sqlstate::classify`] maps each to its SQLSTATE.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    #[error("syntax error: {0}")]
    Parse(#[from] ParserError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    DataFusion(#[from] DataFusionError),
    #[error(transparent)]
    Arrow(#[from] datafusion::arrow::error::ArrowError),
    #[error(transparent)]
    Type(#[from] TypeError),
    #[error("{0}")]
    Syntax(String),
    #[error("relation \"{0}\" does not exist")]
    UndefinedTable(String),
    #[error("column \"{column}\" of relation \"{table}\" does not exist")]
    UndefinedColumn { table: String, column: String },
    #[error("column \"{0}\" specified more than once")]
    DuplicateColumn(String),
    #[error("multiple primary keys for table \"{0}\" are not allowed")]
    MultiplePrimaryKeys(String),
    #[error(
        "null value in column \"{column}\" of relation \"{table}\" violates not-null constraint"
    )]
    NotNullViolation { table: String, column: String },
    #[error("value too long for type {0}")]
    StringTooLong(String),
    #[error("current transaction is aborted, commands ignored until end of transaction block")]
    InFailedTransaction,
    #[error("{0}")]
    ActiveTransaction(String),
    #[error("savepoint \"{0}\" does not exist")]
    NoSavepoint(String),
    #[error("{0}")]
    InTransactionBlock(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("unrecognized configuration parameter \"{0}\"")]
    UndefinedParameter(String),
    #[error("{0}")]
    InvalidParameterValue(String),
    #[error("{0}")]
    InvalidTextRepresentation(String),
    #[error(transparent)]
    DateTime(#[from] crate::pgtypes::datetime::DateTimeError),
    /// A bad `to_char`/`to_timestamp` template or text that does not fit it.
    #[error("{0}")]
    InvalidFormat(String),
    #[error("{0}")]
    NumericOverflow(String),
    #[error("{0}")]
    UndefinedFunction(String),
    #[error("no schema has been selected to create in")]
    NoSchemaSelected,
    #[error("cannot execute {0} in a read-only transaction")]
    ReadOnly(String),
    #[error("prepared statement \"{0}\" does not exist")]
    UndefinedPreparedStatement(String),
    #[error("bind message supplies {given} parameters, but prepared statement requires {expected}")]
    ParameterCount { given: usize, expected: usize },
    /// A COPY data error: what is wrong, and where in the input it was found.
    #[error("{message}")]
    Copy {
        fault: CopyFault,
        message: String,
        context: String,
    },
    #[error("{0}")]
    InvalidConflictTarget(String),
    #[error("{0}")]
    UndefinedObject(String),
    #[error("{0}")]
    CardinalityViolation(String),
    /// A statement over one of the limits of [`limits`]: what it exceeds.
    #[error("statement too complex: {0}")]
    TooComplex(String),
    #[error("canceling statement due to user request")]
    Canceled,
    #[error("{0}")]
    Internal(String),
}

/// Result of the SQL layer.
pub type Result<T, E = SqlError> = std::result::Result<T, E>;

/// What executing one statement produced.
pub enum Outcome {
    /// Rows to stream to the client, then `CommandComplete` with `tag` and the row count.
    Rows {
        schema: SchemaRef,
        stream: SendableRecordBatchStream,
        /// `SELECT`, or `INSERT 0`/`UPDATE`/`DELETE` for `RETURNING`.
        tag: String,
    },
    /// A command without rows: `CREATE TABLE`, `INSERT 0 5`, ...
    Command { tag: String, rows: Option<usize> },
    /// `BEGIN`: the session is now in a transaction block.
    Begin,
    /// The transaction block ended, with this tag (`COMMIT` or `ROLLBACK`).
    End { tag: String },
    /// An empty query string.
    Empty,
    /// `COPY ... FROM STDIN` is waiting for CopyData (see [`Session::copy_data`]).
    CopyIn { columns: usize, binary: bool },
    /// `COPY ... TO STDOUT`: rows to send as CopyData.
    CopyOut {
        format: CopyFormat,
        schema: SchemaRef,
        stream: SendableRecordBatchStream,
    },
}

impl std::fmt::Debug for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Rows { tag, schema, .. } => {
                write!(f, "Rows({tag}, {} columns)", schema.fields().len())
            }
            Outcome::Command { tag, rows } => write!(f, "Command({tag}, {rows:?})"),
            Outcome::Begin => write!(f, "Begin"),
            Outcome::End { tag } => write!(f, "End({tag})"),
            Outcome::Empty => write!(f, "Empty"),
            Outcome::CopyIn { columns, .. } => write!(f, "CopyIn({columns} columns)"),
            Outcome::CopyOut { format, .. } => write!(f, "CopyOut({format:?})"),
        }
    }
}

/// Server-wide settings the SQL layer needs.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The one database this server serves (`current_database()`).
    pub database: String,
    /// `server_version` reported to clients, in PostgreSQL 16 form.
    pub server_version: String,
    /// Superuser name (owner of every object).
    pub superuser: String,
    /// Server-wide values of session settings (name, value), replacing built-in defaults.
    pub setting_defaults: Vec<(String, String)>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            database: "deltagate".to_string(),
            server_version: "16.6".to_string(),
            superuser: "deltagate".to_string(),
            setting_defaults: Vec::new(),
        }
    }
}

/// State shared by every session.
pub struct Engine {
    storage: Arc<Storage>,
    config: EngineConfig,
    pg_static: Arc<pg_catalog::StaticTables>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Creates the engine over opened storage.
    ///
    /// # Errors
    /// [`SqlError::Internal`] if the built-in catalog data cannot be loaded.
    pub fn new(storage: Arc<Storage>, config: EngineConfig) -> Result<Arc<Engine>> {
        let pg_static = Arc::new(pg_catalog::StaticTables::load()?);
        Ok(Arc::new(Engine {
            storage,
            config,
            pg_static,
        }))
    }

    /// Stops the flusher, writes every buffered row to Delta and records exact sequence
    /// positions (the last step of a clean shutdown).
    ///
    /// # Errors
    /// Storage errors; what was not flushed stays in the write-ahead log.
    pub async fn shutdown(&self) -> Result<()> {
        Ok(self.storage.shutdown().await?)
    }

    /// The storage layer.
    pub fn storage(&self) -> &Arc<Storage> {
        &self.storage
    }

    /// The engine configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }
}
