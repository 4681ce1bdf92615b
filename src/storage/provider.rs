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
use chrono::DateTime;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::catalog::Session;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::physical_plan::parquet::metadata::DFParquetMetadata;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::union::UnionExec;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, PlanProperties,
};
use deltalake::parquet::file::metadata::{PageIndexPolicy, ParquetMetaData};
use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore};
use url::Url;

use super::Result;
use super::buffer::conform_to;
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

/// Puts the footers of a Delta table's data files (`files`: path relative to `root`, size), page
/// index included, in the metadata cache every session's Parquet scans consult.
///
/// DataFusion 55's Parquet opener fetches footers without the page index (and caches them so),
/// then parses the page index again on every query; a cached footer that already holds it is
/// used as is. For a one-tag lookup that parse was a tenth of the query. The entries match the
/// ones delta-rs's scan looks up (location from the file URL, size, modification time 0).
/// Best effort: a file that cannot be read here is read the slower way by the scan.
pub(super) async fn cache_page_indexes(
    runtime: Arc<RuntimeEnv>,
    root: Url,
    files: Vec<(String, u64)>,
) {
    for (path, size) in files {
        let Some((store, object)) = file_object(&runtime, &root, &path, size) else {
            continue;
        };
        if let Err(e) = parquet_metadata(&runtime, store.as_ref(), &object).await {
            tracing::debug!(file = %object.location, error = %e, "page index not cached");
        }
    }
}

/// The object store holding a data file of the table at `root`, and the file's object as the
/// scans and the metadata cache name it (`path` relative to `root`; modification time 0, as
/// delta-rs's scan gives it). `None` for a path that does not resolve to a registered store.
pub(super) fn file_object(
    runtime: &RuntimeEnv,
    root: &Url,
    path: &str,
    size: u64,
) -> Option<(Arc<dyn ObjectStore>, ObjectMeta)> {
    let mut root = root.clone();
    if !root.path().ends_with('/') {
        root.set_path(&format!("{}/", root.path()));
    }
    let url = root.join(path).ok()?;
    let store = ObjectStoreUrl::parse(format!(
        "{}://{}",
        url.scheme(),
        &url[url::Position::BeforeHost..url::Position::AfterPort]
    ))
    .and_then(|store| runtime.object_store(&store))
    .ok()?;
    let location = Path::from_url_path(url.path()).ok()?;
    let meta = ObjectMeta {
        location,
        size,
        last_modified: DateTime::from_timestamp_nanos(0),
        e_tag: None,
        version: None,
    };
    Some((store, meta))
}

/// A data file's Parquet footer with its page index, from the metadata cache every session's
/// scans share (read and cached on a miss).
///
/// # Errors
/// Object store and Parquet errors reading the footer.
pub(super) async fn parquet_metadata(
    runtime: &RuntimeEnv,
    store: &dyn ObjectStore,
    object: &ObjectMeta,
) -> DfResult<Arc<ParquetMetaData>> {
    DFParquetMetadata::new(store, object)
        .with_file_metadata_cache(Some(runtime.cache_manager.get_file_metadata_cache()))
        .with_page_index_policy(Some(PageIndexPolicy::Optional))
        .fetch_metadata()
        .await
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
