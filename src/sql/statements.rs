//! Running statements: describe, execute, the implicit transaction of a simple query string,
//! and the dispatch of each statement to its module.
//!
//! A statement error inside a transaction block marks the transaction failed; until `ROLLBACK`
//! every other statement gets 25P02, as in PostgreSQL. Outside a block, each write statement
//! commits on its own; the statements of one simple-protocol query string share one implicit
//! transaction, so a failure part-way leaves nothing of the string behind. Nothing below this
//! module imports it: it is the top of the SQL layer.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::ParamValues;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::memory::MemoryStream;
use datafusion::sql::sqlparser::ast::Statement;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::session::{PreparedStatement, Session, parameter_types};
use super::{Executions, Outcome, Result, SqlError, control, ddl, dml};

impl Session {
    /// Describes a statement without running it: parameter types and result columns.
    ///
    /// # Errors
    /// Planning errors (unknown tables or columns, type errors); in a failed block, 25P02 for
    /// all but the statements that end it (PostgreSQL refuses the Parse).
    pub async fn describe(&self, statement: Option<Statement>) -> Result<PreparedStatement> {
        if let Some(statement) = &statement {
            self.refuse_in_failed_block(statement)?;
        }
        match self.describe_once(statement.clone()).await {
            Err(e) if is_undefined_table(&e) && self.rescanned().await => {
                self.describe_once(statement).await
            }
            other => other,
        }
    }

    /// 25P02 for a statement in a failed block, unless it ends the block.
    fn refuse_in_failed_block(&self, statement: &Statement) -> Result<()> {
        if self.shared.txn.block_failed() && !control::allowed_in_failed_transaction(statement) {
            return Err(SqlError::InFailedTransaction);
        }
        Ok(())
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
        let result = match self
            .refuse_in_failed_block(statement)
            .and_then(|()| self.check_writable("INSERT/UPDATE/DELETE"))
        {
            Ok(()) => dml::execute_many(self, statement, executions).await,
            Err(e) => Err(e),
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
        self.shared.txn.statement_failed();
    }

    /// Executes the statements of one simple-protocol query string, stopping at the first
    /// error. Outside a transaction block they form one implicit transaction, which ends with
    /// the string (so does one an extended-protocol pipeline left open, as in PostgreSQL).
    pub async fn execute_batch(&self, statements: Vec<Statement>) -> Vec<Result<Outcome>> {
        let implicit = statements.len() > 1 && self.shared.txn.open_implicit();
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
            // Rows must be read before the next statement runs, or they would see its writes,
            // and before an implicit transaction commits: an error while reading them fails it.
            if (index < last || implicit)
                && let Ok(Outcome::Rows {
                    schema,
                    stream,
                    tag,
                }) = result
            {
                result = materialize(schema, stream, tag).await;
                if result.is_err() {
                    self.statement_failed();
                }
            }
            let failed = result.is_err();
            results.push(result);
            if failed {
                return results;
            }
        }
        if let Err(e) = self.commit_implicit().await {
            results.push(Err(e));
        }
        results
    }

    /// Opens an implicit transaction for an extended-protocol statement that more of the
    /// pipeline may follow before Sync: as in PostgreSQL, what runs between two Syncs outside
    /// a block commits at the Sync, all or nothing. (A statement directly followed by Sync
    /// runs in autocommit mode, where a conflicting change is run again.)
    pub fn open_pipeline(&self) {
        self.shared.txn.open_implicit();
    }

    /// Sync: commits the implicit transaction of the pipeline, if one is open.
    ///
    /// # Errors
    /// As `COMMIT`.
    pub async fn sync(&self) -> Result<()> {
        self.commit_implicit().await
    }

    async fn commit_implicit(&self) -> Result<()> {
        if let Some(txn) = self.shared.txn.take_implicit() {
            dml::commit_changes(self, txn).await?;
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
        self.refuse_in_failed_block(statement)?;
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
            Statement::Flush { .. } if super::parse::is_checkpoint(statement) => {
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
}

fn is_undefined_table(error: &SqlError) -> bool {
    matches!(error, SqlError::UndefinedTable(_))
        || matches!(error, SqlError::DataFusion(e) if e.to_string().contains("not found") && e.to_string().contains("table"))
}

fn first_words(sql: &str) -> String {
    sql.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
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
