//! The built-in `tag_history` view: Ignition's history by tag path, across every month.
//!
//! What Ignition users otherwise write by hand: every historian data table of a schema (all
//! months of every driver, daily partitions and `sqlth_<drv>_data`) joined with `sqlth_te`, with
//! a real timestamp. Columns: `tagpath`, `ts` (`timestamptz`, from `t_stamp` milliseconds),
//! `value` (the float value, else the integer one), `intvalue`, `floatvalue`, `stringvalue`,
//! `datevalue`, `quality` (`dataintegrity`), `tagid`, `t_stamp`. It exists in a schema that has
//! `sqlth_te` and no relation of its own named `tag_history`, and is planned afresh for each
//! statement from the tables that exist then, each as the session sees it (buffered rows and
//! the transaction's writes included), so filters on `t_stamp` prune each month's files.
//! Resolved by the session's catalog (`catalog::UserSchema`).

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::catalog::{SchemaProvider, TableProvider, view::ViewTable};
use datafusion::common::Column;
use datafusion::datasource::provider_as_source;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{Expr, JoinType, LogicalPlanBuilder, cast, col, lit, when};

use crate::storage::historian;

/// The view's name.
pub const NAME: &str = "tag_history";
/// The tag table it joins.
const TAGS: &str = "sqlth_te";

/// Whether a schema offers the view.
pub fn offered(schema: &dyn SchemaProvider) -> bool {
    schema.table_exist(TAGS)
}

/// The view over the historian data tables `tables` (name and provider) of a schema.
///
/// # Errors
/// Planning errors (a table named like a historian table but shaped otherwise is skipped).
pub fn view(
    tags: Arc<dyn TableProvider>,
    tables: Vec<(String, Arc<dyn TableProvider>)>,
) -> DfResult<Arc<dyn TableProvider>> {
    let mut data: Option<LogicalPlanBuilder> = None;
    for (name, provider) in tables {
        let c = |column: &str| col(Column::new(Some(name.as_str()), column));
        let columns = [
            "tagid",
            "intvalue",
            "floatvalue",
            "stringvalue",
            "datevalue",
            "dataintegrity",
            "t_stamp",
        ];
        if columns
            .iter()
            .any(|c| provider.schema().field_with_name(c).is_err())
        {
            continue;
        }
        let scan = LogicalPlanBuilder::scan(name.as_str(), provider_as_source(provider), None)?
            .project(vec![
                cast(c("tagid"), DataType::Int32).alias("tagid"),
                cast(c("intvalue"), DataType::Int64).alias("intvalue"),
                cast(c("floatvalue"), DataType::Float64).alias("floatvalue"),
                cast(c("stringvalue"), DataType::Utf8).alias("stringvalue"),
                cast(c("datevalue"), timestamp(None)).alias("datevalue"),
                cast(c("dataintegrity"), DataType::Int32).alias("dataintegrity"),
                cast(c("t_stamp"), DataType::Int64).alias("t_stamp"),
            ])?;
        data = Some(match data {
            Some(union) => union.union(scan.build()?)?,
            None => scan,
        });
    }
    let Some(data) = data else {
        return Ok(Arc::new(ViewTable::new(empty(tags)?, None)));
    };
    let data = data.alias("d")?;
    let tags = LogicalPlanBuilder::scan(TAGS, provider_as_source(tags), None)?;
    let d = |column: &str| col(Column::new(Some("d"), column));
    let plan = data
        .join(
            tags.build()?,
            JoinType::Inner,
            (
                vec![Column::new(Some("d"), "tagid")],
                vec![Column::new(Some(TAGS), "id")],
            ),
            None,
        )?
        .project(columns(d, col(Column::new(Some(TAGS), "tagpath"))))?
        .build()?;
    Ok(Arc::new(ViewTable::new(plan, None)))
}

fn timestamp(zone: Option<&str>) -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, zone.map(Arc::from))
}

fn columns(d: impl Fn(&str) -> Expr, tagpath: Expr) -> Vec<Expr> {
    vec![
        cast(tagpath, DataType::Utf8).alias("tagpath"),
        cast(d("t_stamp") * lit(1000i64), timestamp(Some("+00:00"))).alias("ts"),
        when(d("floatvalue").is_not_null(), d("floatvalue"))
            .otherwise(cast(d("intvalue"), DataType::Float64))
            .unwrap_or_else(|_| d("floatvalue"))
            .alias("value"),
        d("intvalue").alias("intvalue"),
        d("floatvalue").alias("floatvalue"),
        d("stringvalue").alias("stringvalue"),
        d("datevalue").alias("datevalue"),
        d("dataintegrity").alias("quality"),
        d("tagid").alias("tagid"),
        d("t_stamp").alias("t_stamp"),
    ]
}

/// The view with no data table yet: its columns, no rows.
fn empty(tags: Arc<dyn TableProvider>) -> DfResult<datafusion::logical_expr::LogicalPlan> {
    let null = |t: DataType| cast(lit(datafusion::scalar::ScalarValue::Null), t);
    let d = |column: &str| match column {
        "intvalue" | "t_stamp" => null(DataType::Int64),
        "floatvalue" => null(DataType::Float64),
        "stringvalue" => null(DataType::Utf8),
        "datevalue" => null(timestamp(None)),
        _ => null(DataType::Int32),
    };
    LogicalPlanBuilder::scan(TAGS, provider_as_source(tags), None)?
        .filter(lit(false))?
        .project(columns(d, col(Column::new(Some(TAGS), "tagpath"))))?
        .build()
}

/// Whether a table of the schema feeds the view.
pub fn feeds(name: &str, meta: &crate::storage::TableMeta) -> bool {
    historian::is_data_table(name, meta)
}
