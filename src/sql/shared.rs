//! The state of a session that its catalog, functions and statements share: settings,
//! transaction, sequence values, notices, the running statement's cancellation, pinned
//! snapshots and view (see ARCHITECTURE.md contracts 9 and 12).
//!
//! Invariants: the fields are locked one at a time (`txn` before `settings` when both are
//! needed, see the lock hierarchy); `pinned` and `view_lsn` belong to the statement running
//! now, and are empty (`u64::MAX`) between statements.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::Statement;
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use super::settings::Settings;
use super::txn::TransactionSlot;
use super::{Engine, Result};
use crate::storage::{TableHandle, TableState};

/// Name of the PostgreSQL system catalog schema.
pub const PG_CATALOG: &str = "pg_catalog";
/// Name of the SQL-standard information schema.
pub const INFORMATION_SCHEMA: &str = "information_schema";

/// Sequence values this session has seen, for `currval` and `lastval`.
#[derive(Debug, Default)]
pub struct SequenceState {
    pub currval: HashMap<String, i64>,
    pub lastval: Option<i64>,
    /// A sequence moved during the current statement; its position must be made durable
    /// before the statement is acknowledged.
    pub touched: bool,
}

/// State of a session that its catalog and functions need too.
pub struct SessionShared {
    pub engine: Arc<Engine>,
    pub user: String,
    pub pid: i32,
    pub settings: Mutex<Settings>,
    /// The open transaction, and the rules of its life cycle.
    pub txn: TransactionSlot,
    pub sequences: Mutex<SequenceState>,
    pub notices: Mutex<Vec<String>>,
    /// Cancellation of the statement running now; replaced at each statement.
    pub cancel: Arc<Mutex<CancellationToken>>,
    /// The `COPY ... FROM STDIN` in progress.
    pub copy_in: Mutex<Option<super::CopyIn>>,
    /// Snapshots pinned for the statement running now, by table OID: the tables it may delete
    /// from, read as [`Storage::read_for_change`](crate::storage::Storage::read_for_change)
    /// gives them (see `dml::Pin`).
    pub pinned: Mutex<HashMap<u32, TableState>>,
    /// While a statement resolves its tables: the log position of its view, up to which it
    /// reads buffered rows (see [`Storage::read_view`](crate::storage::Storage::read_view));
    /// `u64::MAX` (every buffered row) otherwise.
    view_lsn: AtomicU64,
}

impl std::fmt::Debug for SessionShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionShared")
            .field("user", &self.user)
            .field("pid", &self.pid)
            .finish_non_exhaustive()
    }
}

impl SessionShared {
    /// The state of a new session of `user` with these settings: no transaction, no statement
    /// running.
    pub fn new(engine: Arc<Engine>, user: &str, pid: i32, settings: Settings) -> SessionShared {
        SessionShared {
            engine,
            user: user.to_string(),
            pid,
            settings: Mutex::new(settings),
            txn: TransactionSlot::default(),
            sequences: Mutex::new(SequenceState::default()),
            notices: Mutex::new(Vec::new()),
            cancel: Arc::new(Mutex::new(CancellationToken::new())),
            copy_in: Mutex::new(None),
            pinned: Mutex::new(HashMap::new()),
            view_lsn: AtomicU64::new(u64::MAX),
        }
    }

    /// The snapshot of a table this session's statement reads: the pinned one, if any, else
    /// the published one.
    pub fn table_state(&self, table: &TableHandle) -> TableState {
        match self.pinned.lock().get(&table.oid) {
            Some(state) => state.clone(),
            None => table.state_at(self.view_lsn.load(Ordering::Acquire)),
        }
    }

    /// Turns `statement` into a logical plan with every table resolved in one view of the
    /// warehouse (the view is released before the plan is optimized or run).
    pub(crate) async fn plan_in_view(
        &self,
        ctx: &SessionContext,
        statement: Statement,
    ) -> Result<LogicalPlan> {
        /// Puts the session back to reading the newest rows, also when planning is cancelled.
        struct Scope<'a>(&'a AtomicU64);
        impl Drop for Scope<'_> {
            fn drop(&mut self) {
                self.0.store(u64::MAX, Ordering::Release);
            }
        }
        let view = self.engine.storage().read_view().await;
        self.view_lsn.store(view.lsn, Ordering::Release);
        let _scope = Scope(&self.view_lsn);
        Ok(ctx
            .state()
            .statement_to_plan(DfStatement::Statement(Box::new(statement)))
            .await?)
    }

    pub fn note_sequence_value(&self, sequence: &str, value: i64) {
        let mut state = self.sequences.lock();
        state.currval.insert(sequence.to_string(), value);
        state.lastval = Some(value);
        state.touched = true;
    }

    /// The schemas of `search_path` that exist.
    pub fn existing_search_path(&self) -> Vec<String> {
        let storage = self.engine.storage();
        self.settings
            .lock()
            .search_path()
            .into_iter()
            .filter(|s| storage.has_schema(s))
            .collect()
    }

    /// `current_schema()`: the first existing schema of the search path.
    pub fn current_schema(&self) -> Option<String> {
        self.existing_search_path().into_iter().next()
    }

    /// Queues a NOTICE/WARNING for the client.
    pub fn notice(&self, message: impl Into<String>) {
        self.notices.lock().push(message.into());
    }
}
