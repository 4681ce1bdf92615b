//! The DataFusion table of a Delta snapshot, carrying PostgreSQL column facts.
//!
//! [`PgTableProvider`] wraps delta-rs's scan (which does partition and statistics pruning and
//! pushes filters into Parquet) and changes one thing: its schema carries the PostgreSQL type,
//! table OID and attribute number of every column in field metadata, so result columns can be
//! described to clients exactly (`varchar(255)` rather than `text`, with `tableOID`/`columnAttr`
//! set as PostgreSQL sets them). The batches the scan produces are relabelled with that schema;
//! no data is copied.
//!
//! Rows still in the write buffer (durable in the log, not yet in Delta) are part of the table:
//! the scan unions them, projected the same way, with the Delta scan. While there are any,
//! filters are declared inexact so DataFusion applies them above both inputs.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::catalog::Session;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::union::UnionExec;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, PlanProperties,
};
use futures::StreamExt;

use super::Result;
use super::rows::conform_to;
use super::table::TableState;

/// A table as DataFusion sees it: a Delta snapshot plus PostgreSQL metadata.
#[derive(Debug)]
pub struct PgTableProvider {
    inner: Arc<dyn TableProvider>,
    schema: SchemaRef,
    buffered: Vec<RecordBatch>,
    /// For a historian month: the filter selecting its partition (whose column, last in the
    /// Delta schema, clients do not see).
    slice: Option<Expr>,
}

impl PgTableProvider {
    /// Builds the provider for a snapshot. No I/O: the snapshot already holds the file list.
    ///
    /// # Errors
    /// Delta errors building the scan.
    pub async fn try_new(state: &TableState) -> Result<PgTableProvider> {
        let snapshot = state.table.snapshot()?.snapshot().clone();
        let inner = Arc::new(BoundedPushdown(
            state
                .table
                .table_provider()
                .with_eager_snapshot(snapshot)
                .await?,
        ));
        let mut schema = with_pg_metadata(&inner.schema(), &state.meta.arrow_schema);
        if state.slice.is_some() {
            let visible: Vec<usize> = (0..state.meta.columns.len()).collect();
            schema = Arc::new(
                schema
                    .project(&visible)
                    .map_err(|e| super::StorageError::DataFusion(e.into()))?,
            );
        }
        let buffered = state.buffered.batches()?;
        Ok(PgTableProvider {
            inner,
            schema,
            buffered,
            slice: state.slice.as_ref().map(|s| s.predicate()),
        })
    }
}

/// Copies field metadata from `pg` onto the same-named fields of `scan`, and declares every
/// column nullable: NOT NULL is enforced by deltagate with PostgreSQL's error (23502), which
/// DataFusion's own nullability check would pre-empt with a less useful one.
fn with_pg_metadata(scan: &SchemaRef, pg: &SchemaRef) -> SchemaRef {
    let fields: Vec<Field> = scan
        .fields()
        .iter()
        .map(|f| {
            let mut metadata: HashMap<String, String> = f.metadata().clone();
            if let Ok(pg_field) = pg.field_with_name(f.name()) {
                metadata.extend(pg_field.metadata().clone());
            }
            f.as_ref()
                .clone()
                .with_metadata(metadata)
                .with_nullable(true)
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, scan.metadata().clone()))
}

#[async_trait]
impl TableProvider for PgTableProvider {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        let pushdown = self.inner.supports_filters_pushdown(filters)?;
        if self.buffered.is_empty() {
            return Ok(pushdown);
        }
        Ok(pushdown
            .into_iter()
            .map(|p| match p {
                TableProviderFilterPushDown::Exact => TableProviderFilterPushDown::Inexact,
                other => other,
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let mut filters = filters.to_vec();
        let all = self.slice.as_ref().map(|predicate| {
            filters.push(predicate.clone());
            (0..self.schema.fields().len()).collect::<Vec<_>>()
        });
        let projection = projection.or(all.as_ref());
        let plan = self.inner.scan(state, projection, &filters, limit).await?;
        let target = match projection {
            Some(indices) => Arc::new(self.schema.project(indices)?),
            None => self.schema.clone(),
        };
        let target = with_pg_metadata(&plan.schema(), &target);
        if self.buffered.is_empty() {
            return Ok(Arc::new(RelabelExec::new(plan, target)));
        }
        // Buffered rows in the scan's own output types (partition columns may be dictionaries).
        let scan_schema = plan.schema();
        let buffered = self
            .buffered
            .iter()
            .map(|b| conform_to(b, &scan_schema))
            .collect::<Result<Vec<_>>>()
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let memory: Arc<dyn ExecutionPlan> =
            MemorySourceConfig::try_new_exec(&[buffered], scan_schema, None)?;
        let union = UnionExec::try_new(vec![plan, memory])?;
        Ok(Arc::new(RelabelExec::new(union, target)))
    }
}

/// Largest filter, in expression nodes, handed to delta-rs (see [`BoundedPushdown`]).
const MAX_PUSHED_FILTER_NODES: usize = 1000;

/// delta-rs's scan of a Delta table, offered only the filters it can take apart on any stack.
///
/// delta-rs turns an `IN` list into a chain of `OR`s leaning left and walks that chain
/// recursively, a stack frame per item, so a filter with tens of thousands of values (a long
/// `IN` list, an update's or upsert's key predicate) would overflow the thread's stack, which
/// aborts the process. Such a filter is declined: DataFusion applies it above the scan, with
/// the same result; a list that long helps file pruning little anyway.
#[derive(Debug)]
pub(super) struct BoundedPushdown(pub Arc<dyn TableProvider>);

#[async_trait]
impl TableProvider for BoundedPushdown {
    fn schema(&self) -> SchemaRef {
        self.0.schema()
    }

    fn table_type(&self) -> TableType {
        self.0.table_type()
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        let offered: Vec<&Expr> = filters.iter().copied().filter(|f| pushable(f)).collect();
        let mut answers = self.0.supports_filters_pushdown(&offered)?.into_iter();
        Ok(filters
            .iter()
            .map(|filter| match pushable(filter) {
                true => answers
                    .next()
                    .unwrap_or(TableProviderFilterPushDown::Unsupported),
                false => TableProviderFilterPushDown::Unsupported,
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let filters: Vec<Expr> = filters.iter().filter(|f| pushable(f)).cloned().collect();
        self.0.scan(state, projection, &filters, limit).await
    }
}

/// Whether `filter` has at most [`MAX_PUSHED_FILTER_NODES`] nodes (the count stops there, so a
/// long chain is never walked to its end).
fn pushable(filter: &Expr) -> bool {
    let mut nodes = 0usize;
    let _ = datafusion::common::tree_node::TreeNode::apply(filter, |_| {
        nodes += 1;
        Ok(if nodes > MAX_PUSHED_FILTER_NODES {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    });
    nodes <= MAX_PUSHED_FILTER_NODES
}

/// Passes batches through with a schema that differs only in field metadata.
#[derive(Debug)]
struct RelabelExec {
    input: Arc<dyn ExecutionPlan>,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
}

impl RelabelExec {
    fn new(input: Arc<dyn ExecutionPlan>, schema: SchemaRef) -> RelabelExec {
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            input.output_partitioning().clone(),
            input.pipeline_behavior(),
            input.boundedness(),
        ));
        RelabelExec {
            input,
            schema,
            properties,
        }
    }
}

impl DisplayAs for RelabelExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PgColumns")
    }
}

impl ExecutionPlan for RelabelExec {
    fn name(&self) -> &str {
        "PgColumns"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let input = children
            .into_iter()
            .next()
            .unwrap_or_else(|| self.input.clone());
        Ok(Arc::new(RelabelExec::new(input, self.schema.clone())))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let schema = self.schema.clone();
        let stream = self.input.execute(partition, context)?;
        let relabelled = stream.map(move |batch| {
            let batch = batch?;
            Ok(batch.with_schema(schema.clone())?)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            relabelled,
        )))
    }
}
