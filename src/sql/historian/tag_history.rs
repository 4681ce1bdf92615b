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
//! Resolved by the session's catalog (`catalog::UserSchema`); described, like any view, in
//! `pg_class` (relkind `v`), `pg_attribute`, `pg_views` and `information_schema`, with a
//! definition ([`definition`]) that is the same query in SQL and runs unchanged on PostgreSQL.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::catalog::{SchemaProvider, TableProvider, view::ViewTable};
use datafusion::common::Column;
use datafusion::datasource::provider_as_source;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{Expr, JoinType, LogicalPlanBuilder, cast, col, lit, when};
use datafusion::sql::sqlparser::ast::ObjectName;

use super::super::rewrite::name_parts;
use super::super::shared::SessionShared;
use crate::pgtypes::PgType;
use crate::storage::{TableHandle, historian};

/// The view's name.
pub const NAME: &str = "tag_history";
/// The tag table it joins.
const TAGS: &str = "sqlth_te";

/// The view's columns and their types, in order (what [`view`] plans, as the catalog shows it).
pub const COLUMNS: [(&str, PgType); 10] = [
    ("tagpath", PgType::Text),
    ("ts", PgType::Timestamptz),
    ("value", PgType::Float8),
    ("intvalue", PgType::Int8),
    ("floatvalue", PgType::Float8),
    ("stringvalue", PgType::Text),
    ("datevalue", PgType::Timestamp),
    ("quality", PgType::Int4),
    ("tagid", PgType::Int4),
    ("t_stamp", PgType::Int8),
];

/// The data columns read from each historian table, in order.
const DATA: [&str; 7] = [
    "tagid",
    "intvalue",
    "floatvalue",
    "stringvalue",
    "datevalue",
    "dataintegrity",
    "t_stamp",
];

/// Whether a schema offers the view.
pub fn offered(schema: &dyn SchemaProvider) -> bool {
    schema.table_exist(TAGS)
}

/// The names of the tables feeding the view in a schema holding `tables`, in name order, or
/// `None` when the schema does not offer it (no `sqlth_te`, or a table of its own named so).
pub fn sources(tables: &[Arc<TableHandle>]) -> Option<Vec<String>> {
    let has = |name: &str| tables.iter().any(|t| t.name == name);
    if !has(TAGS) || has(NAME) {
        return None;
    }
    let mut names: Vec<String> = tables
        .iter()
        .filter(|t| feeds(&t.name, &t.state().meta))
        .map(|t| t.name.clone())
        .collect();
    names.sort();
    Some(names)
}

/// The schema-qualified view a statement's relation name resolves to (through the search path
/// when unqualified), if it names one.
pub fn resolve(shared: &SessionShared, name: &ObjectName) -> Option<String> {
    let storage = shared.engine.storage();
    let offers = |schema: &str| sources(&storage.tables(schema)).is_some();
    match name_parts(name).as_slice() {
        [view] if view == NAME => shared
            .existing_search_path()
            .into_iter()
            .find(|schema| offers(schema))
            .map(|schema| format!("{schema}.{NAME}")),
        [schema, view] | [_, schema, view] if view == NAME && offers(schema) => {
            Some(format!("{schema}.{NAME}"))
        }
        _ => None,
    }
}

/// The view's query in SQL over the data tables `tables`, as `pg_get_viewdef` prints it.
pub fn definition(tables: &[String]) -> String {
    let select = |from: &str| {
        format!(
            " SELECT te.tagpath::text AS tagpath,\n    \
             to_timestamp(d.t_stamp::double precision / 1000.0::double precision) AS ts,\n    \
             COALESCE(d.floatvalue, d.intvalue::double precision) AS value,\n    \
             d.intvalue,\n    d.floatvalue,\n    d.stringvalue::text AS stringvalue,\n    \
             d.datevalue,\n    d.dataintegrity AS quality,\n    d.tagid,\n    d.t_stamp\n   \
             FROM {from}"
        )
    };
    if tables.is_empty() {
        return select(&format!(
            "(SELECT NULL::integer AS tagid, NULL::bigint AS intvalue, \
             NULL::double precision AS floatvalue, NULL::text AS stringvalue, \
             NULL::timestamp without time zone AS datevalue, NULL::integer AS dataintegrity, \
             NULL::bigint AS t_stamp WHERE false) d\n     JOIN {TAGS} te ON te.id = d.tagid;"
        ));
    }
    let union = tables
        .iter()
        .map(|t| format!(" SELECT {}\n           FROM {t}", DATA.join(", ")))
        .collect::<Vec<_>>()
        .join("\n        UNION ALL\n        ");
    select(&format!(
        "( {union}) d\n     JOIN {TAGS} te ON te.id = d.tagid;"
    ))
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
        if DATA
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
fn feeds(name: &str, meta: &crate::storage::TableMeta) -> bool {
    historian::is_data_table(name, meta)
}
