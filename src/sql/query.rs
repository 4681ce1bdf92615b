//! Queries: a key seek when the statement has the historian's seed or range shape, else a
//! DataFusion plan; per-row subqueries DataFusion cannot decorrelate are rewritten and run
//! again (see `subplan`). The result streams are cancellable (57014).

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::ParamValues;
use datafusion::dataframe::DataFrame;
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::sql::sqlparser::ast::Statement;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::session::Session;
use super::{Outcome, Result, SqlError, subplan};

impl Session {
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
        if let Some(outcome) =
            super::historian::seek::try_seek(self, statement, params.as_ref()).await?
        {
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
