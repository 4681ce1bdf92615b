//! What a session sees of its transaction's pending writes: [`overlay`] turns a table's
//! snapshot plus the pending operations into a DataFusion plan (`snapshot ∪ inserted rows`,
//! filtered by pending deletes), so reads, constraint checks and further `UPDATE`/`DELETE`s
//! all act on what the transaction would leave behind. Used by the SQL layer's table
//! resolution (`tables`) and by the key checks of `dml`.

use std::borrow::Cow;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::Session as DfSession;
use datafusion::common::TableReference;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::datasource::{MemTable, TableProvider, TableType, provider_as_source};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder};
use datafusion::physical_plan::ExecutionPlan;

use crate::storage::WriteOp;

/// A table as seen through a transaction's pending operations.
#[derive(Debug)]
pub struct OverlayTable {
    plan: LogicalPlan,
    schema: SchemaRef,
}

/// Builds the view of `base` after `ops`, as a plan DataFusion inlines into the query.
///
/// # Errors
/// DataFusion errors building the plan.
pub fn overlay(
    name: TableReference,
    base: Arc<dyn TableProvider>,
    ops: &[WriteOp],
) -> DfResult<Arc<dyn TableProvider>> {
    let schema = base.schema();
    let mut builder = LogicalPlanBuilder::scan(name.clone(), provider_as_source(base), None)?;
    for op in ops {
        builder = match op {
            WriteOp::Insert(batches) => {
                let batches = batches
                    .iter()
                    .map(|b| conform(b, &schema))
                    .collect::<DfResult<Vec<RecordBatch>>>()?;
                let rows = MemTable::try_new(schema.clone(), vec![batches])?;
                let pending = LogicalPlanBuilder::scan(
                    name.clone(),
                    provider_as_source(Arc::new(rows)),
                    None,
                )?
                .build()?;
                builder.union(pending)?
            }
            WriteOp::Delete {
                predicate: None, ..
            } => builder.filter(datafusion::prelude::lit(false))?,
            WriteOp::Delete {
                predicate: Some(predicate),
                ..
            } => builder.filter(Expr::IsNotTrue(Box::new(predicate.clone())))?,
        };
    }
    let plan = builder.build()?;
    Ok(Arc::new(OverlayTable { plan, schema }))
}

/// Gives a batch the provider's schema, casting where the scan's physical types differ from the
/// stored ones (delta-rs scans strings as `Utf8View`).
pub(crate) fn conform(batch: &RecordBatch, schema: &SchemaRef) -> DfResult<RecordBatch> {
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(column, field)| {
            if column.data_type() == field.data_type() {
                Ok(column.clone())
            } else {
                datafusion::arrow::compute::cast(column, field.data_type())
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

#[async_trait]
impl TableProvider for OverlayTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn get_logical_plan(&self) -> Option<Cow<'_, LogicalPlan>> {
        Some(Cow::Borrowed(&self.plan))
    }

    async fn scan(
        &self,
        state: &dyn DfSession,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        // Only reached when a scan is built with filters already attached; plan it directly.
        let mut builder = LogicalPlanBuilder::from(self.plan.clone());
        for filter in filters {
            builder = builder.filter(filter.clone())?;
        }
        if let Some(projection) = projection {
            let columns: Vec<Expr> = projection
                .iter()
                .map(|i| {
                    Expr::Column(datafusion::common::Column::from(
                        self.plan.schema().qualified_field(*i),
                    ))
                })
                .collect();
            builder = builder.project(columns)?;
        }
        if let Some(limit) = limit {
            builder = builder.limit(0, Some(limit))?;
        }
        state.create_physical_plan(&builder.build()?).await
    }
}

/// Removes table qualifiers from column references: delta-rs evaluates predicates against the
/// bare table schema.
pub fn unqualify(expr: Expr) -> DfResult<Expr> {
    expr.transform(|e| {
        Ok(match e {
            Expr::Column(c) if c.relation.is_some() => Transformed::yes(Expr::Column(
                datafusion::common::Column::new_unqualified(c.name),
            )),
            other => Transformed::no(other),
        })
    })
    .map(|t| t.data)
}
