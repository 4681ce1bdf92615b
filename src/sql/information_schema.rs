//! `information_schema`: the SQL-standard catalog views, filled from the same live catalog as
//! `pg_catalog`, with PostgreSQL's column names and spellings (`character varying`,
//! `timestamp without time zone`, `udt_name = varchar`).

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::catalog::SchemaProvider;
use datafusion::datasource::{MemTable, TableProvider};
use datafusion::error::Result as DfResult;

use crate::pgtypes::PgType;

use super::pg_catalog::{self, Kind, Rows, V};
use super::shared::SessionShared;
use super::shared::{INFORMATION_SCHEMA, PG_CATALOG};

const RELATIONS: &[&str] = &[
    "tables",
    "columns",
    "schemata",
    "table_constraints",
    "key_column_usage",
    "views",
    "sequences",
];

/// The `information_schema` of one session.
#[derive(Debug)]
pub struct InformationSchema {
    shared: Arc<SessionShared>,
}

impl InformationSchema {
    pub fn new(shared: Arc<SessionShared>) -> InformationSchema {
        InformationSchema { shared }
    }

    fn database(&self) -> String {
        self.shared.engine.config().database.clone()
    }

    fn tables(&self) -> DfResult<RecordBatch> {
        let mut rows = Rows::new(&[
            ("table_catalog", Kind::Text),
            ("table_schema", Kind::Text),
            ("table_name", Kind::Text),
            ("table_type", Kind::Text),
            ("self_referencing_column_name", Kind::Text),
            ("reference_generation", Kind::Text),
            ("user_defined_type_catalog", Kind::Text),
            ("user_defined_type_schema", Kind::Text),
            ("user_defined_type_name", Kind::Text),
            ("is_insertable_into", Kind::Text),
            ("is_typed", Kind::Text),
            ("commit_action", Kind::Text),
        ]);
        let db = self.database();
        let mut push = |schema: &str, name: &str, kind: &str| {
            rows.push(vec![
                db.clone().into(),
                schema.into(),
                name.into(),
                kind.into(),
                V::Null,
                V::Null,
                V::Null,
                V::Null,
                V::Null,
                (if kind == "BASE TABLE" { "YES" } else { "NO" }).into(),
                "NO".into(),
                V::Null,
            ]);
        };
        for table in pg_catalog::objects::tables(&self.shared) {
            push(&table.schema, &table.handle.name, "BASE TABLE");
        }
        for view in pg_catalog::objects::views(&self.shared) {
            push(&view.schema, view.name, "VIEW");
        }
        for name in pg_catalog::PgCatalogSchema::new(self.shared.clone()).table_names() {
            push(PG_CATALOG, &name, "BASE TABLE");
        }
        for name in RELATIONS {
            push(INFORMATION_SCHEMA, name, "VIEW");
        }
        rows.finish()
    }

    fn columns(&self) -> DfResult<RecordBatch> {
        let mut rows = Rows::new(&[
            ("table_catalog", Kind::Text),
            ("table_schema", Kind::Text),
            ("table_name", Kind::Text),
            ("column_name", Kind::Text),
            ("ordinal_position", Kind::I32),
            ("column_default", Kind::Text),
            ("is_nullable", Kind::Text),
            ("data_type", Kind::Text),
            ("character_maximum_length", Kind::I32),
            ("character_octet_length", Kind::I32),
            ("numeric_precision", Kind::I32),
            ("numeric_precision_radix", Kind::I32),
            ("numeric_scale", Kind::I32),
            ("datetime_precision", Kind::I32),
            ("interval_type", Kind::Text),
            ("udt_catalog", Kind::Text),
            ("udt_schema", Kind::Text),
            ("udt_name", Kind::Text),
            ("dtd_identifier", Kind::Text),
            ("is_self_referencing", Kind::Text),
            ("is_identity", Kind::Text),
            ("identity_generation", Kind::Text),
            ("is_generated", Kind::Text),
            ("generation_expression", Kind::Text),
            ("is_updatable", Kind::Text),
        ]);
        let db = self.database();
        // (schema, relation, columns, updatable): tables, then the built-in views.
        let tables = pg_catalog::objects::tables(&self.shared);
        let views = pg_catalog::objects::views(&self.shared);
        let relations = tables
            .iter()
            .map(|t| (&t.schema, t.handle.name.as_str(), &t.meta.columns, "YES"))
            .chain(views.iter().map(|v| (&v.schema, v.name, &v.columns, "NO")));
        for (schema, relation, columns, updatable) in relations {
            for (i, column) in columns.iter().enumerate() {
                let t = column.pg_type;
                let (precision, radix, scale) = numeric_facts(t);
                let length = t.char_length().map(|n| n as i32);
                rows.push(vec![
                    db.clone().into(),
                    schema.clone().into(),
                    relation.into(),
                    column.name.clone().into(),
                    (i as i32 + 1).into(),
                    column.default.clone().into(),
                    (if column.not_null { "NO" } else { "YES" }).into(),
                    t.sql_standard_name().into(),
                    length.into(),
                    length
                        .map(|n| n.saturating_mul(4))
                        .or(match t {
                            PgType::Text | PgType::Varchar(None) => Some(1_073_741_824),
                            _ => None,
                        })
                        .into(),
                    precision.into(),
                    radix.into(),
                    scale.into(),
                    (matches!(t, PgType::Date | PgType::Timestamp | PgType::Timestamptz)
                        .then_some(if t == PgType::Date { 0 } else { 6 }))
                    .into(),
                    V::Null,
                    db.clone().into(),
                    PG_CATALOG.into(),
                    t.typname().into(),
                    (i as i32 + 1).to_string().into(),
                    "NO".into(),
                    "NO".into(),
                    V::Null,
                    "NEVER".into(),
                    V::Null,
                    updatable.into(),
                ]);
            }
        }
        rows.finish()
    }

    fn schemata(&self) -> DfResult<RecordBatch> {
        let mut rows = Rows::new(&[
            ("catalog_name", Kind::Text),
            ("schema_name", Kind::Text),
            ("schema_owner", Kind::Text),
            ("default_character_set_catalog", Kind::Text),
            ("default_character_set_schema", Kind::Text),
            ("default_character_set_name", Kind::Text),
            ("sql_path", Kind::Text),
        ]);
        let db = self.database();
        let owner = self.shared.engine.config().superuser.clone();
        let mut names: Vec<String> = vec![PG_CATALOG.into(), INFORMATION_SCHEMA.into()];
        names.extend(
            self.shared
                .engine
                .storage()
                .schemas()
                .into_iter()
                .map(|(n, _)| n),
        );
        for name in names {
            rows.push(vec![
                db.clone().into(),
                name.into(),
                owner.clone().into(),
                V::Null,
                V::Null,
                V::Null,
                V::Null,
            ]);
        }
        rows.finish()
    }

    fn table_constraints(&self) -> DfResult<RecordBatch> {
        let mut rows = Rows::new(&[
            ("constraint_catalog", Kind::Text),
            ("constraint_schema", Kind::Text),
            ("constraint_name", Kind::Text),
            ("table_catalog", Kind::Text),
            ("table_schema", Kind::Text),
            ("table_name", Kind::Text),
            ("constraint_type", Kind::Text),
            ("is_deferrable", Kind::Text),
            ("initially_deferred", Kind::Text),
            ("enforced", Kind::Text),
            ("nulls_distinct", Kind::Text),
        ]);
        let db = self.database();
        for table in pg_catalog::objects::tables(&self.shared) {
            for index in table.indexes().into_iter().filter(|i| i.primary) {
                rows.push(vec![
                    db.clone().into(),
                    table.schema.clone().into(),
                    index.name.clone().into(),
                    db.clone().into(),
                    table.schema.clone().into(),
                    table.handle.name.clone().into(),
                    "PRIMARY KEY".into(),
                    "NO".into(),
                    "NO".into(),
                    "YES".into(),
                    V::Null,
                ]);
            }
        }
        rows.finish()
    }

    fn key_column_usage(&self) -> DfResult<RecordBatch> {
        let mut rows = Rows::new(&[
            ("constraint_catalog", Kind::Text),
            ("constraint_schema", Kind::Text),
            ("constraint_name", Kind::Text),
            ("table_catalog", Kind::Text),
            ("table_schema", Kind::Text),
            ("table_name", Kind::Text),
            ("column_name", Kind::Text),
            ("ordinal_position", Kind::I32),
            ("position_in_unique_constraint", Kind::I32),
        ]);
        let db = self.database();
        for table in pg_catalog::objects::tables(&self.shared) {
            for index in table.indexes().into_iter().filter(|i| i.primary) {
                for (i, column) in index.columns.iter().enumerate() {
                    rows.push(vec![
                        db.clone().into(),
                        table.schema.clone().into(),
                        index.name.clone().into(),
                        db.clone().into(),
                        table.schema.clone().into(),
                        table.handle.name.clone().into(),
                        column.clone().into(),
                        (i as i32 + 1).into(),
                        V::Null,
                    ]);
                }
            }
        }
        rows.finish()
    }

    fn views(&self) -> DfResult<RecordBatch> {
        let mut rows = Rows::new(&[
            ("table_catalog", Kind::Text),
            ("table_schema", Kind::Text),
            ("table_name", Kind::Text),
            ("view_definition", Kind::Text),
            ("check_option", Kind::Text),
            ("is_updatable", Kind::Text),
            ("is_insertable_into", Kind::Text),
        ]);
        for view in pg_catalog::objects::views(&self.shared) {
            rows.push(vec![
                self.database().into(),
                view.schema.into(),
                view.name.into(),
                view.definition.into(),
                "NONE".into(),
                "NO".into(),
                "NO".into(),
            ]);
        }
        rows.finish()
    }

    fn sequences(&self) -> DfResult<RecordBatch> {
        let mut rows = Rows::new(&[
            ("sequence_catalog", Kind::Text),
            ("sequence_schema", Kind::Text),
            ("sequence_name", Kind::Text),
            ("data_type", Kind::Text),
            ("numeric_precision", Kind::I32),
            ("numeric_precision_radix", Kind::I32),
            ("numeric_scale", Kind::I32),
            ("start_value", Kind::Text),
            ("minimum_value", Kind::Text),
            ("maximum_value", Kind::Text),
            ("increment", Kind::Text),
            ("cycle_option", Kind::Text),
        ]);
        let db = self.database();
        for table in pg_catalog::objects::tables(&self.shared) {
            for seq in table.sequences() {
                let (precision, radix, scale) = numeric_facts(seq.data_type);
                rows.push(vec![
                    db.clone().into(),
                    table.schema.clone().into(),
                    seq.name.clone().into(),
                    seq.data_type.sql_standard_name().into(),
                    precision.into(),
                    radix.into(),
                    scale.into(),
                    seq.start.to_string().into(),
                    "1".into(),
                    seq.max.to_string().into(),
                    seq.increment.to_string().into(),
                    "NO".into(),
                ]);
            }
        }
        rows.finish()
    }
}

/// (numeric_precision, numeric_precision_radix, numeric_scale) as PostgreSQL reports them.
fn numeric_facts(t: PgType) -> (Option<i32>, Option<i32>, Option<i32>) {
    match t {
        PgType::Int2 => (Some(16), Some(2), Some(0)),
        PgType::Int4 => (Some(32), Some(2), Some(0)),
        PgType::Int8 => (Some(64), Some(2), Some(0)),
        PgType::Float4 => (Some(24), Some(2), None),
        PgType::Float8 => (Some(53), Some(2), None),
        PgType::Numeric(Some((p, s))) => (Some(p as i32), Some(10), Some(s as i32)),
        PgType::Numeric(None) => (None, Some(10), None),
        _ => (None, None, None),
    }
}

#[async_trait]
impl SchemaProvider for InformationSchema {
    fn table_names(&self) -> Vec<String> {
        RELATIONS.iter().map(|s| s.to_string()).collect()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let batch = match name {
            "tables" => self.tables(),
            "columns" => self.columns(),
            "schemata" => self.schemata(),
            "table_constraints" => self.table_constraints(),
            "key_column_usage" => self.key_column_usage(),
            "views" => self.views(),
            "sequences" => self.sequences(),
            _ => return Ok(None),
        }?;
        Ok(Some(Arc::new(MemTable::try_new(
            batch.schema(),
            vec![vec![batch]],
        )?)))
    }

    fn table_exist(&self, name: &str) -> bool {
        RELATIONS.contains(&name)
    }
}
