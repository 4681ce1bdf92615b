//! One client session: its DataFusion context, settings, transaction and sequence state, and
//! the dispatch of every statement it runs.
//!
//! The server layer calls [`Session::parse`], [`Session::describe`] and [`Session::execute`]
//! (extended protocol) or [`Session::execute_batch`] (simple protocol). A statement error
//! inside a transaction block marks the transaction failed; until `ROLLBACK` every other
//! statement gets 25P02, as in PostgreSQL. Outside a block, each write statement commits on
//! its own; the statements of one simple-protocol query string share one implicit
//! transaction, so a failure part-way leaves nothing of the string behind.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use datafusion::arrow::array::{RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::MemoryCatalogProviderList;
use datafusion::common::ParamValues;
use datafusion::dataframe::DataFrame;
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::memory::MemoryStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::Statement;
use datafusion_pg_catalog::pg_catalog::generate_series_arg_coercion::CoerceIntArgsToBigInt;
use datafusion_pg_catalog::pg_catalog::oid_type_planner::PgOidTypePlanner;
use futures::StreamExt;
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::catalog::{DatabaseCatalog, PG_CATALOG};
use super::settings::Settings;
use super::txn::Transaction;
use super::{
    Engine, Executions, Outcome, Result, SqlError, control, ddl, dml, functions, limits,
    pg_catalog, rewrite, subplan,
};
use crate::storage::{TableHandle, TableState};

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
    pub txn: Mutex<Option<Transaction>>,
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

/// Transaction status as `ReadyForQuery` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnStatus {
    Idle,
    InBlock,
    Failed,
}

/// Cancels the statement a session is running (for `CancelRequest`).
#[derive(Debug, Clone)]
pub struct CancelHandle(Arc<Mutex<CancellationToken>>);

impl CancelHandle {
    /// Cancels the running statement, if any; it fails with 57014.
    pub fn cancel(&self) {
        self.0.lock().cancel();
    }
}

/// A statement prepared for the extended protocol.
#[derive(Debug, Clone)]
pub struct PreparedStatement {
    /// `None` for an empty query string.
    pub statement: Option<Statement>,
    /// Types of `$1..$n` as planning inferred them; the field carries the target column's
    /// PostgreSQL type when the parameter is compared with or assigned to a column.
    pub param_types: Vec<Option<Field>>,
    /// Result columns, or `None` for statements that return no rows.
    pub fields: Option<SchemaRef>,
    /// A simple INSERT with parameters: executions may be collected and run together by
    /// [`Session::execute_many`].
    pub batchable: bool,
    /// The wire type OID of each parameter, filled in by the server when the statement is
    /// parsed, so that decoding a Bind need not work it out again for every row.
    pub param_oids: Vec<u32>,
}

/// Smallest Parquet file a scan splits into byte ranges read in parallel.
const REPARTITION_FILE_MIN_SIZE: usize = 16 << 20;

/// A client session.
pub struct Session {
    pub(crate) shared: Arc<SessionShared>,
    pub(crate) ctx: SessionContext,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.shared.fmt(f)
    }
}

impl Session {
    /// Opens a session for `user` with the startup packet's parameters.
    ///
    /// # Errors
    /// Invalid startup parameters.
    pub fn new(
        engine: Arc<Engine>,
        user: &str,
        pid: i32,
        startup: &[(String, String)],
    ) -> Result<Session> {
        let config = engine.config();
        let settings = Settings::new(
            user,
            &config.server_version,
            &config.setting_defaults,
            startup,
        )?;
        let shared = Arc::new(SessionShared {
            engine: engine.clone(),
            user: user.to_string(),
            pid,
            settings: Mutex::new(settings),
            txn: Mutex::new(None),
            sequences: Mutex::new(SequenceState::default()),
            notices: Mutex::new(Vec::new()),
            cancel: Arc::new(Mutex::new(CancellationToken::new())),
            copy_in: Mutex::new(None),
            pinned: Mutex::new(HashMap::new()),
            view_lsn: AtomicU64::new(u64::MAX),
        });
        let database = engine.config().database.clone();
        let config = SessionConfig::new()
            .with_default_catalog_and_schema(&database, "public")
            .with_create_default_catalog_and_schema(false)
            .with_information_schema(false)
            .set_str("datafusion.sql_parser.dialect", "PostgreSQL")
            .set_str("datafusion.execution.time_zone", "UTC")
            // Each byte range of a split file opens it again (footer, page index): below this
            // size a selective query pays more for that than a full scan gains in parallelism.
            // Flushed files of a historian table (2M rows) stay under it.
            .set_usize(
                "datafusion.optimizer.repartition_file_min_size",
                REPARTITION_FILE_MIN_SIZE,
            );
        let catalogs = MemoryCatalogProviderList::new();
        datafusion::catalog::CatalogProviderList::register_catalog(
            &catalogs,
            database,
            Arc::new(DatabaseCatalog::new(shared.clone())),
        );
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(engine.storage().runtime().clone())
            .with_default_features()
            .with_catalog_list(Arc::new(catalogs))
            .with_type_planner(Arc::new(PgOidTypePlanner))
            .with_analyzer_rule(Arc::new(functions::TimestampTextCasts::new()))
            .build();
        let ctx = SessionContext::new_with_state(state);
        functions::register(&ctx, &shared);
        CoerceIntArgsToBigInt::widen(&ctx);
        Ok(Session { shared, ctx })
    }

    /// The engine this session belongs to.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.shared.engine
    }

    /// Reads the session's settings (under their lock: keep `read` short).
    pub fn with_settings<T>(&self, read: impl FnOnce(&Settings) -> T) -> T {
        read(&self.shared.settings.lock())
    }

    /// The reported parameters that changed since the client was last told (see
    /// [`Settings::take_unreported`]).
    pub fn take_unreported_settings(&self) -> Vec<(&'static str, String)> {
        self.shared.settings.lock().take_unreported()
    }

    /// Messages to send the client as notices, in order.
    pub fn take_notices(&self) -> Vec<String> {
        std::mem::take(&mut *self.shared.notices.lock())
    }

    /// A handle that cancels whatever statement the session is running.
    pub fn cancel_handle(&self) -> CancelHandle {
        CancelHandle(self.shared.cancel.clone())
    }

    /// The transaction status for `ReadyForQuery`.
    pub fn txn_status(&self) -> TxnStatus {
        match &*self.shared.txn.lock() {
            Some(t) if t.failed && t.explicit => TxnStatus::Failed,
            Some(t) if t.explicit => TxnStatus::InBlock,
            _ => TxnStatus::Idle,
        }
    }

    /// Parses a query string into statements, with PostgreSQL spellings rewritten.
    ///
    /// # Errors
    /// [`SqlError::Parse`] for syntax errors, [`SqlError::TooComplex`] for statements nested
    /// too deeply to handle (see [`limits`]).
    pub fn parse(&self, sql: &str) -> Result<Vec<Statement>> {
        if let Some(checkpoint) = super::maintenance::parse_checkpoint(sql) {
            return Ok(vec![checkpoint]);
        }
        let statements = limits::parse(sql)?;
        Ok(statements.into_iter().map(rewrite::pg_compat).collect())
    }

    /// Qualifies relation names by the search path (`pg_catalog` first).
    pub(crate) fn qualify(&self, statement: &mut Statement) {
        let mut path = vec![PG_CATALOG.to_string()];
        path.extend(self.shared.existing_search_path());
        let storage = self.shared.engine.storage();
        let engine = &self.shared.engine;
        rewrite::qualify_relations(statement, &path, |schema, name| {
            if schema == PG_CATALOG {
                pg_catalog::is_catalog_relation(engine, name)
            } else {
                storage.table(schema, name).is_some()
            }
        });
    }

    /// Plans a query or DML statement with DataFusion, resolving tables at one point in time.
    pub(crate) async fn plan(&self, statement: Statement) -> Result<LogicalPlan> {
        let mut statement = statement;
        self.qualify(&mut statement);
        self.shared.plan_in_view(&self.ctx, statement).await
    }

    /// Describes a statement without running it: parameter types and result columns.
    ///
    /// # Errors
    /// Planning errors (unknown tables or columns, type errors).
    pub async fn describe(&self, statement: Option<Statement>) -> Result<PreparedStatement> {
        match self.describe_once(statement.clone()).await {
            Err(e) if is_undefined_table(&e) && self.rescanned().await => {
                self.describe_once(statement).await
            }
            other => other,
        }
    }

    /// Whether a warehouse rescan found tables another engine placed there since the last one.
    async fn rescanned(&self) -> bool {
        self.shared.engine.storage().rescan().await.unwrap_or(0) > 0
    }

    async fn describe_once(&self, statement: Option<Statement>) -> Result<PreparedStatement> {
        let Some(statement) = statement else {
            return Ok(PreparedStatement {
                statement: None,
                param_types: Vec::new(),
                fields: None,
                batchable: false,
                param_oids: Vec::new(),
            });
        };
        let (param_types, fields) = match &statement {
            Statement::Query(_) | Statement::Explain { .. } => {
                let plan = self.plan(statement.clone()).await?;
                (
                    parameter_types(&plan)?,
                    Some(Arc::new(plan.schema().as_arrow().clone())),
                )
            }
            Statement::Insert(_) | Statement::Update(_) | Statement::Delete(_) => {
                dml::describe(self, &statement).await?
            }
            Statement::ShowVariable { variable } => (
                Vec::new(),
                Some(control::show_schema(&control::variable_name(variable))),
            ),
            _ => (Vec::new(), None),
        };
        let batchable = dml::batchable(self, &statement);
        Ok(PreparedStatement {
            statement: Some(statement),
            param_types,
            fields,
            batchable,
            param_oids: Vec::new(),
        })
    }

    /// Executes one statement (extended protocol: one Execute, or one statement of a simple
    /// query string).
    ///
    /// # Errors
    /// Any statement error; inside a transaction block the block is then failed.
    pub async fn execute(
        &self,
        statement: &Statement,
        params: Option<ParamValues>,
    ) -> Result<Outcome> {
        *self.shared.cancel.lock() = CancellationToken::new();
        let mut result = self.dispatch(statement, params.clone()).await;
        if matches!(&result, Err(e) if is_undefined_table(e)) && self.rescanned().await {
            // A table another engine placed in the warehouse since the last scan.
            result = self.dispatch(statement, params).await;
        }
        self.finish(result).await
    }

    /// Executes a batchable statement (see [`PreparedStatement::batchable`]) once per parameter
    /// set, as one insert: all executions are stored, or none and the error is returned. The
    /// result is the rows each execution inserted, or `None` when the statement needs the
    /// planner after all (then run the executions one by one with [`Session::execute`]).
    ///
    /// # Errors
    /// As [`Session::execute`], for the executions together.
    pub async fn execute_many(
        &self,
        statement: &Statement,
        executions: Executions<'_>,
    ) -> Result<Option<Vec<usize>>> {
        *self.shared.cancel.lock() = CancellationToken::new();
        let failed = matches!(&*self.shared.txn.lock(), Some(t) if t.failed && t.explicit);
        let result = if failed {
            Err(SqlError::InFailedTransaction)
        } else {
            match self.check_writable("INSERT/UPDATE/DELETE") {
                Ok(()) => dml::execute_many(self, statement, executions).await,
                Err(e) => Err(e),
            }
        };
        self.finish(result).await
    }

    /// Ends a statement: makes its sequence positions durable, or fails the transaction.
    async fn finish<T>(&self, result: Result<T>) -> Result<T> {
        let result = match result {
            Ok(value) => self.after_statement().await.map(|()| value),
            Err(e) => Err(e),
        };
        if let Err(e) = &result {
            debug!(error = %e, "statement failed");
            self.statement_failed();
        }
        result
    }

    /// A statement failed: an explicit transaction now only accepts ROLLBACK, an implicit one
    /// is abandoned.
    pub(crate) fn statement_failed(&self) {
        let mut txn = self.shared.txn.lock();
        match txn.as_mut() {
            Some(t) if t.explicit => t.failed = true,
            Some(_) => *txn = None,
            None => {}
        }
    }

    /// Executes the statements of one simple-protocol query string, stopping at the first
    /// error. Outside a transaction block they form one implicit transaction.
    pub async fn execute_batch(&self, statements: Vec<Statement>) -> Vec<Result<Outcome>> {
        let implicit = statements.len() > 1 && self.shared.txn.lock().is_none();
        if implicit {
            *self.shared.txn.lock() = Some(Transaction::default());
        }
        let mut results = Vec::with_capacity(statements.len());
        let last = statements.len().saturating_sub(1);
        for (index, statement) in statements.iter().enumerate() {
            if implicit && control::is_transaction_control(statement) {
                // An explicit BEGIN/COMMIT inside the string ends the implicit block first.
                if let Err(e) = self.commit_implicit().await {
                    results.push(Err(e));
                    return results;
                }
            }
            let mut result = self.execute(statement, None).await;
            if index < last
                && let Ok(Outcome::Rows {
                    schema,
                    stream,
                    tag,
                }) = result
            {
                // Rows must be read before the next statement runs, or they would see its writes.
                result = materialize(schema, stream, tag).await;
            }
            let failed = result.is_err();
            results.push(result);
            if failed {
                return results;
            }
        }
        if implicit && let Err(e) = self.commit_implicit().await {
            results.push(Err(e));
        }
        results
    }

    async fn commit_implicit(&self) -> Result<()> {
        let txn = {
            let mut guard = self.shared.txn.lock();
            match guard.as_ref() {
                Some(t) if !t.explicit => guard.take(),
                _ => None,
            }
        };
        if let Some(txn) = txn {
            control::commit_changes(self, txn).await?;
        }
        Ok(())
    }

    /// Makes sequence positions durable before a statement is acknowledged.
    async fn after_statement(&self) -> Result<()> {
        let touched = std::mem::take(&mut self.shared.sequences.lock().touched);
        if touched {
            self.shared.engine.storage().persist_sequences().await?;
        }
        Ok(())
    }

    async fn dispatch(
        &self,
        statement: &Statement,
        params: Option<ParamValues>,
    ) -> Result<Outcome> {
        let failed = matches!(&*self.shared.txn.lock(), Some(t) if t.failed && t.explicit);
        if failed && !control::allowed_in_failed_transaction(statement) {
            return Err(SqlError::InFailedTransaction);
        }
        if let Some(outcome) = control::execute(self, statement).await? {
            return Ok(outcome);
        }
        match statement {
            Statement::Query(_) | Statement::Explain { .. } => self.query(statement, params).await,
            Statement::Insert(_) | Statement::Update(_) | Statement::Delete(_) => {
                self.check_writable("INSERT/UPDATE/DELETE")?;
                dml::execute(self, statement, params).await
            }
            Statement::Copy { .. } => super::copy::execute(self, statement).await,
            Statement::Vacuum(vacuum) => super::maintenance::vacuum(self, vacuum).await,
            Statement::Flush { .. } if super::maintenance::is_checkpoint(statement) => {
                super::maintenance::checkpoint(self).await
            }
            other => {
                if let Some(outcome) = ddl::execute(self, other).await? {
                    Ok(outcome)
                } else {
                    Err(SqlError::Unsupported(format!(
                        "statement not supported: {}",
                        first_words(&other.to_string())
                    )))
                }
            }
        }
    }

    /// Refuses writes in a read-only transaction.
    pub(crate) fn check_writable(&self, what: &str) -> Result<()> {
        let read_only = matches!(&*self.shared.txn.lock(), Some(t) if t.read_only)
            || self
                .shared
                .settings
                .lock()
                .get("transaction_read_only")
                .is_ok_and(|v| v == "on");
        if read_only {
            Err(SqlError::ReadOnly(what.to_string()))
        } else {
            Ok(())
        }
    }

    pub(crate) async fn query(
        &self,
        statement: &Statement,
        params: Option<ParamValues>,
    ) -> Result<Outcome> {
        match self.run_query(statement, params.clone()).await {
            Err(e) if subplan::is_decorrelation_failure(&e) => {
                let rewritten = subplan::rewrite(self, statement).await?;
                self.run_query(&rewritten, params).await
            }
            other => other,
        }
    }

    async fn run_query(
        &self,
        statement: &Statement,
        params: Option<ParamValues>,
    ) -> Result<Outcome> {
        if let Some(outcome) = super::seek::try_seek(self, statement, params.as_ref()).await? {
            return Ok(outcome);
        }
        let plan = self.plan(statement.clone()).await?;
        let plan = match params {
            Some(params) => plan.with_param_values(params)?,
            None => plan,
        };
        let df = DataFrame::new(self.ctx.state(), plan);
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let stream = df.execute_stream().await?;
        let token = self.shared.cancel.lock().clone();
        Ok(Outcome::Rows {
            schema: schema.clone(),
            stream: cancellable(stream, schema, token),
            tag: "SELECT".to_string(),
        })
    }
}

impl Drop for Session {
    /// The connection ended: an open transaction is rolled back (its writes were never
    /// visible to anyone else).
    fn drop(&mut self) {
        let open = self.shared.txn.lock().take().is_some();
        tracing::info!(
            pid = self.shared.pid,
            user = self.shared.user,
            rolled_back = open,
            "session ended"
        );
    }
}

fn is_undefined_table(error: &SqlError) -> bool {
    matches!(error, SqlError::UndefinedTable(_))
        || matches!(error, SqlError::DataFusion(e) if e.to_string().contains("not found") && e.to_string().contains("table"))
}

/// Parameter types of a plan, `$1` first.
pub(crate) fn parameter_types(plan: &LogicalPlan) -> Result<Vec<Option<Field>>> {
    let fields = plan.get_parameter_fields()?;
    let count = fields
        .keys()
        .filter_map(|k| k.trim_start_matches('$').parse::<usize>().ok())
        .max()
        .unwrap_or(0);
    Ok((1..=count)
        .map(|i| {
            fields
                .get(&format!("${i}"))
                .cloned()
                .flatten()
                .map(|f| f.as_ref().clone())
        })
        .collect())
}

/// Ends a result stream with 57014 when the statement is cancelled.
fn cancellable(
    stream: SendableRecordBatchStream,
    schema: SchemaRef,
    token: CancellationToken,
) -> SendableRecordBatchStream {
    let batches = futures::stream::unfold(Some((stream, token)), |state| async move {
        let (mut stream, token) = state?;
        tokio::select! {
            biased;
            _ = token.cancelled() => Some((
                Err(DataFusionError::External(Box::new(SqlError::Canceled))),
                None,
            )),
            next = stream.next() => next.map(|batch| (batch, Some((stream, token)))),
        }
    });
    Box::pin(RecordBatchStreamAdapter::new(schema, batches))
}

async fn materialize(
    schema: SchemaRef,
    stream: SendableRecordBatchStream,
    tag: String,
) -> Result<Outcome> {
    let batches: Vec<RecordBatch> = futures::TryStreamExt::try_collect(stream).await?;
    let stream = MemoryStream::try_new(batches, schema.clone(), None)?;
    Ok(Outcome::Rows {
        schema,
        stream: Box::pin(stream),
        tag,
    })
}

/// Rows built in memory (SHOW and friends) as an outcome.
pub(crate) fn rows_outcome(batch: RecordBatch, tag: &str) -> Result<Outcome> {
    let schema = batch.schema();
    let stream = MemoryStream::try_new(vec![batch], schema.clone(), None)?;
    Ok(Outcome::Rows {
        schema,
        stream: Box::pin(stream),
        tag: tag.to_string(),
    })
}

/// A one-column text result.
pub(crate) fn text_rows(column: &str, values: Vec<String>) -> Result<RecordBatch> {
    let schema = Arc::new(Schema::new(vec![Field::new(column, DataType::Utf8, true)]));
    Ok(RecordBatch::try_new(
        schema,
        vec![Arc::new(StringArray::from(values))],
    )?)
}

fn first_words(sql: &str) -> String {
    sql.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}
