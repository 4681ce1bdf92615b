//! One client session: its DataFusion context, settings and transaction state, and what every
//! statement needs of it (parsing, name qualification, planning in one view, the read-only
//! check). The state the session's catalog and functions need too is [`SessionShared`]
//! (`shared`); running statements is `statements` (dispatch) and `query` (queries).
//!
//! The server layer calls [`Session::parse`], [`Session::describe`] and [`Session::execute`]
//! (extended protocol) or [`Session::execute_batch`] (simple protocol).

use std::sync::Arc;

use datafusion::arrow::array::{RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::MemoryCatalogProviderList;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::memory::MemoryStream;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::sqlparser::ast::Statement;
use datafusion_pg_catalog::pg_catalog::generate_series_arg_coercion::CoerceIntArgsToBigInt;
use datafusion_pg_catalog::pg_catalog::oid_type_planner::PgOidTypePlanner;
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use super::catalog::DatabaseCatalog;
use super::settings::Settings;
use super::shared::PG_CATALOG;
use super::shared::SessionShared;
use super::{Engine, Outcome, Result, SqlError, functions, pg_catalog, rewrite};

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
        let time_zone = settings.time_zone();
        let shared = Arc::new(SessionShared::new(engine.clone(), user, pid, settings));
        let database = engine.config().database.clone();
        let config = SessionConfig::new()
            .with_default_catalog_and_schema(&database, "public")
            .with_create_default_catalog_and_schema(false)
            .with_information_schema(false)
            .set_str("datafusion.sql_parser.dialect", "PostgreSQL")
            // The session's zone, as DataFusion reads it: `timestamptz '2024-01-01 12:00'`
            // is read in it; kept equal to `TimeZone` by `sync_time_zone`.
            .set_str("datafusion.execution.time_zone", &time_zone)
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
        if self.shared.txn.block_failed() {
            TxnStatus::Failed
        } else if self.shared.txn.in_block() {
            TxnStatus::InBlock
        } else {
            TxnStatus::Idle
        }
    }

    /// Parses a query string into statements, with PostgreSQL spellings rewritten (see
    /// [`parse`](super::parse::parse)).
    ///
    /// # Errors
    /// Syntax errors, and statements nested too deeply to handle.
    pub fn parse(&self, sql: &str) -> Result<Vec<Statement>> {
        super::parse::parse(sql)
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

    /// Gives DataFusion the session's `TimeZone` after a setting changed: functions and
    /// literals read the session's zone from DataFusion's options.
    pub(crate) fn sync_time_zone(&self) {
        let zone = self.shared.settings.lock().time_zone();
        let state = self.ctx.state_ref();
        let mut state = state.write();
        let options = state.config_mut().options_mut();
        if options.execution.time_zone.as_deref() != Some(zone.as_str()) {
            options.execution.time_zone = Some(zone);
        }
    }

    /// Refuses writes in a read-only transaction.
    pub(crate) fn check_writable(&self, what: &str) -> Result<()> {
        let read_only = self.shared.txn.read_only()
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
}

impl Drop for Session {
    /// The connection ended: an open transaction is rolled back (its writes were never
    /// visible to anyone else).
    fn drop(&mut self) {
        let open = self.shared.txn.take().is_some();
        tracing::info!(
            pid = self.shared.pid,
            user = self.shared.user,
            rolled_back = open,
            "session ended"
        );
    }
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
