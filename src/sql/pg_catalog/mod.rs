//! `pg_catalog`: PostgreSQL's system catalog as real relations DataFusion can query.
//!
//! ARCHITECTURE.md contract 5: clients introspect with ordinary SQL (joins, filters, functions)
//! over `pg_class`, `pg_attribute`, `pg_index`, ... so those must be tables with PostgreSQL's
//! names, column types and OIDs, filled from the live catalog — not canned answers to known
//! query texts. The relations describing user objects (namespaces, classes, attributes,
//! indexes, constraints, defaults, sequences, settings, roles, the database) are built here
//! from storage each time a statement resolves them; the built-in ones (`pg_type`, `pg_proc`,
//! `pg_am`, `pg_collation`, ...) are PostgreSQL's own rows, shipped by datafusion-pg-catalog.

pub(crate) mod objects;
pub(crate) mod relations;
mod system;
mod views;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{
    Array, ArrayRef, BooleanBuilder, Float32Builder, Int16Builder, Int32Builder, Int64Builder,
    ListBuilder, RecordBatch, StringBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::SchemaProvider;
use datafusion::datasource::{MemTable, TableProvider};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_pg_catalog::pg_catalog::{PgCatalogSchemaProvider, PgCatalogStaticTables};

use super::shared::SessionShared;
use super::{Result, SqlError};

/// OID of the `pg_catalog` namespace.
pub const PG_CATALOG_OID: u32 = 11;
/// OID of the `information_schema` namespace (as in a fresh PostgreSQL 16 cluster).
pub const INFORMATION_SCHEMA_OID: u32 = 13181;
/// OID of the bootstrap superuser, owner of everything.
pub const SUPERUSER_OID: u32 = 10;

/// The built-in catalog rows, loaded once per server.
pub struct StaticTables {
    provider: PgCatalogSchemaProvider<
        Arc<dyn datafusion::catalog::CatalogProviderList>,
        EmptyContextProvider,
    >,
    /// `pg_type.oid` by `typname`, for `to_regtype`.
    type_oids: HashMap<String, u32>,
}

impl StaticTables {
    /// Loads PostgreSQL's built-in catalog rows.
    ///
    /// # Errors
    /// [`SqlError::Internal`] if the embedded data cannot be decoded.
    pub fn load() -> Result<StaticTables> {
        let tables = PgCatalogStaticTables::try_new()
            .map_err(|e| SqlError::Internal(format!("built-in catalog: {e}")))?;
        let empty: Arc<dyn datafusion::catalog::CatalogProviderList> =
            Arc::new(datafusion::catalog::MemoryCatalogProviderList::new());
        let type_oids = type_oids(tables.pg_type.data())
            .map_err(|e| SqlError::Internal(format!("built-in pg_type: {e}")))?;
        let provider =
            PgCatalogSchemaProvider::try_new(empty, Arc::new(tables), EmptyContextProvider)
                .map_err(|e| SqlError::Internal(format!("built-in catalog: {e}")))?;
        Ok(StaticTables {
            provider,
            type_oids,
        })
    }

    /// The OID of a built-in type by name (`int4`, `integer`, `pg_catalog.text`).
    pub fn type_oid(&self, name: &str) -> Option<u32> {
        let name = name
            .trim()
            .trim_start_matches("pg_catalog.")
            .to_ascii_lowercase();
        self.type_oids.get(&name).copied().or_else(|| {
            crate::pgtypes::PgType::parse(&name)
                .ok()
                .map(crate::pgtypes::PgType::oid)
        })
    }

    fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        match self.provider.build_table_by_name(name)? {
            Some(table) => Ok(Some(table.try_into_table_provider()?)),
            None => Ok(None),
        }
    }

    fn names(&self) -> Vec<String> {
        SchemaProvider::table_names(&self.provider)
    }
}

fn type_oids(batches: &[RecordBatch]) -> DfResult<HashMap<String, u32>> {
    let mut out = HashMap::new();
    for batch in batches {
        let (Some(oid), Some(name)) =
            (batch.column_by_name("oid"), batch.column_by_name("typname"))
        else {
            continue;
        };
        let oid = datafusion::arrow::compute::cast(oid, &DataType::Int64)?;
        let name = datafusion::arrow::compute::cast(name, &DataType::Utf8)?;
        let oid = oid
            .as_any()
            .downcast_ref::<datafusion::arrow::array::Int64Array>();
        let name = name
            .as_any()
            .downcast_ref::<datafusion::arrow::array::StringArray>();
        if let (Some(oid), Some(name)) = (oid, name) {
            for i in 0..batch.num_rows() {
                if !oid.is_null(i) && !name.is_null(i) {
                    out.insert(name.value(i).to_string(), oid.value(i) as u32);
                }
            }
        }
    }
    Ok(out)
}

/// The `pg_catalog` schema of one session.
#[derive(Debug)]
pub struct PgCatalogSchema {
    shared: Arc<SessionShared>,
}

impl PgCatalogSchema {
    pub fn new(shared: Arc<SessionShared>) -> PgCatalogSchema {
        PgCatalogSchema { shared }
    }
}

/// Relations built from the live catalog rather than taken from the built-in rows.
const DYNAMIC: &[&str] = &[
    "pg_namespace",
    "pg_class",
    "pg_attribute",
    "pg_index",
    "pg_constraint",
    "pg_attrdef",
    "pg_sequence",
    "pg_sequences",
    "pg_tables",
    "pg_indexes",
    "pg_views",
    "pg_matviews",
    "pg_database",
    "pg_settings",
    "pg_roles",
    "pg_user",
    "pg_authid",
    "pg_stat_activity",
    "pg_stat_user_tables",
    "pg_statio_user_tables",
    "pg_policy",
    "pg_inherits",
    "pg_statistic_ext",
    "pg_publication",
    "pg_publication_rel",
    "pg_publication_namespace",
    "pg_trigger",
    "pg_rewrite",
    "pg_partitioned_table",
    "pg_foreign_table",
];

/// Whether `name` is a relation of `pg_catalog`.
pub fn is_catalog_relation(engine: &super::Engine, name: &str) -> bool {
    DYNAMIC.contains(&name) || engine.pg_static.names().iter().any(|n| n == name)
}

#[async_trait]
impl SchemaProvider for PgCatalogSchema {
    fn table_names(&self) -> Vec<String> {
        let mut names: Vec<String> = DYNAMIC.iter().map(|s| s.to_string()).collect();
        for name in self.shared.engine.pg_static.names() {
            if !names.contains(&name) {
                names.push(name);
            }
        }
        names
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let batch = match name {
            "pg_namespace" => relations::pg_namespace(&self.shared),
            "pg_class" => relations::pg_class(&self.shared),
            "pg_attribute" => relations::pg_attribute(&self.shared),
            "pg_index" => relations::pg_index(&self.shared),
            "pg_constraint" => relations::pg_constraint(&self.shared),
            "pg_attrdef" => relations::pg_attrdef(&self.shared),
            "pg_sequence" => views::pg_sequence(&self.shared),
            "pg_sequences" => views::pg_sequences(&self.shared),
            "pg_tables" => views::pg_tables(&self.shared),
            "pg_indexes" => views::pg_indexes(&self.shared),
            "pg_views" => views::pg_views(&self.shared),
            "pg_matviews" => views::pg_matviews(),
            "pg_database" => system::pg_database(&self.shared),
            "pg_settings" => system::pg_settings(&self.shared),
            "pg_roles" | "pg_authid" => system::pg_roles(&self.shared),
            "pg_user" => system::pg_user(&self.shared),
            "pg_stat_activity" => system::pg_stat_activity(&self.shared),
            "pg_stat_user_tables" | "pg_statio_user_tables" => {
                views::pg_stat_user_tables(&self.shared)
            }
            other => match views::empty(other) {
                Some(batch) => batch,
                None => return self.shared.engine.pg_static.table(other),
            },
        }?;
        let table = MemTable::try_new(batch.schema(), vec![vec![batch]])?;
        Ok(Some(Arc::new(table)))
    }

    fn table_exist(&self, name: &str) -> bool {
        is_catalog_relation(&self.shared.engine, name)
    }
}

/// Column kinds of catalog relations.
#[derive(Clone, Copy)]
pub(crate) enum Kind {
    /// `oid` (and the reg* aliases): Int32 tagged so clients see type 26.
    Oid,
    /// `name`, `text`: Utf8.
    Text,
    /// PostgreSQL's one-byte `"char"`.
    Char,
    Bool,
    I16,
    I32,
    I64,
    F32,
    /// `int2vector`/`int2[]`.
    I16Array,
    /// `oidvector`/`oid[]`.
    OidArray,
    /// `text[]`, `aclitem[]`.
    TextArray,
}

/// A value of a catalog row.
#[derive(Clone, Debug)]
pub(crate) enum V {
    Null,
    B(bool),
    I(i64),
    F(f64),
    S(String),
    I16s(Vec<i16>),
    Oids(Vec<u32>),
}

impl From<&str> for V {
    fn from(s: &str) -> V {
        V::S(s.to_string())
    }
}
impl From<String> for V {
    fn from(s: String) -> V {
        V::S(s)
    }
}
impl From<bool> for V {
    fn from(b: bool) -> V {
        V::B(b)
    }
}
impl From<u32> for V {
    fn from(i: u32) -> V {
        V::I(i as i64)
    }
}
impl From<i32> for V {
    fn from(i: i32) -> V {
        V::I(i as i64)
    }
}
impl From<i64> for V {
    fn from(i: i64) -> V {
        V::I(i)
    }
}
impl<T: Into<V>> From<Option<T>> for V {
    fn from(o: Option<T>) -> V {
        o.map_or(V::Null, Into::into)
    }
}

/// Builds a catalog relation row by row.
pub(crate) struct Rows {
    columns: Vec<(&'static str, Kind)>,
    rows: Vec<Vec<V>>,
}

impl Rows {
    pub(crate) fn new(columns: &[(&'static str, Kind)]) -> Rows {
        Rows {
            columns: columns.to_vec(),
            rows: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, row: Vec<V>) {
        debug_assert_eq!(row.len(), self.columns.len(), "catalog row width");
        self.rows.push(row);
    }

    pub(crate) fn finish(self) -> DfResult<RecordBatch> {
        let mut fields = Vec::with_capacity(self.columns.len());
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(self.columns.len());
        for (i, (name, kind)) in self.columns.iter().enumerate() {
            let values = self.rows.iter().map(|r| &r[i]);
            let (field, array) = build_column(name, *kind, values)?;
            fields.push(field);
            arrays.push(array);
        }
        let schema: SchemaRef = Arc::new(Schema::new(fields));
        Ok(RecordBatch::try_new(schema, arrays)?)
    }
}

fn build_column<'a>(
    name: &str,
    kind: Kind,
    values: impl Iterator<Item = &'a V>,
) -> DfResult<(Field, ArrayRef)> {
    let mismatch =
        |v: &V| DataFusionError::Internal(format!("catalog column {name}: unexpected value {v:?}"));
    let tagged = |field: Field, key: &str, value: &str| {
        field.with_metadata(HashMap::from([(key.to_string(), value.to_string())]))
    };
    Ok(match kind {
        Kind::Oid | Kind::I32 => {
            let mut b = Int32Builder::new();
            for v in values {
                match v {
                    V::Null => b.append_null(),
                    V::I(i) => b.append_value(*i as i32),
                    other => return Err(mismatch(other)),
                }
            }
            let field = Field::new(name, DataType::Int32, true);
            let field = if matches!(kind, Kind::Oid) {
                tagged(field, arrow_pg::datatypes::PG_OID_ALIAS_KEY, "oid")
            } else {
                field
            };
            (field, Arc::new(b.finish()))
        }
        Kind::I16 => {
            let mut b = Int16Builder::new();
            for v in values {
                match v {
                    V::Null => b.append_null(),
                    V::I(i) => b.append_value(*i as i16),
                    other => return Err(mismatch(other)),
                }
            }
            (
                Field::new(name, DataType::Int16, true),
                Arc::new(b.finish()),
            )
        }
        Kind::I64 => {
            let mut b = Int64Builder::new();
            for v in values {
                match v {
                    V::Null => b.append_null(),
                    V::I(i) => b.append_value(*i),
                    other => return Err(mismatch(other)),
                }
            }
            (
                Field::new(name, DataType::Int64, true),
                Arc::new(b.finish()),
            )
        }
        Kind::F32 => {
            let mut b = Float32Builder::new();
            for v in values {
                match v {
                    V::Null => b.append_null(),
                    V::F(f) => b.append_value(*f as f32),
                    V::I(i) => b.append_value(*i as f32),
                    other => return Err(mismatch(other)),
                }
            }
            (
                Field::new(name, DataType::Float32, true),
                Arc::new(b.finish()),
            )
        }
        Kind::Bool => {
            let mut b = BooleanBuilder::new();
            for v in values {
                match v {
                    V::Null => b.append_null(),
                    V::B(x) => b.append_value(*x),
                    other => return Err(mismatch(other)),
                }
            }
            (
                Field::new(name, DataType::Boolean, true),
                Arc::new(b.finish()),
            )
        }
        Kind::Text | Kind::Char => {
            let mut b = StringBuilder::new();
            for v in values {
                match v {
                    V::Null => b.append_null(),
                    V::S(s) => b.append_value(s),
                    other => return Err(mismatch(other)),
                }
            }
            let field = Field::new(name, DataType::Utf8, true);
            let field = if matches!(kind, Kind::Char) {
                tagged(field, arrow_pg::datatypes::PG_CHAR_KEY, "char")
            } else {
                field
            };
            (field, Arc::new(b.finish()))
        }
        Kind::I16Array => {
            let mut b = ListBuilder::new(Int16Builder::new());
            for v in values {
                match v {
                    V::Null => b.append_null(),
                    V::I16s(xs) => {
                        for x in xs {
                            b.values().append_value(*x);
                        }
                        b.append(true);
                    }
                    other => return Err(mismatch(other)),
                }
            }
            let array = b.finish();
            (
                Field::new(name, array.data_type().clone(), true),
                Arc::new(array),
            )
        }
        Kind::OidArray => {
            let mut b = ListBuilder::new(Int32Builder::new());
            for v in values {
                match v {
                    V::Null => b.append_null(),
                    V::Oids(xs) => {
                        for x in xs {
                            b.values().append_value(*x as i32);
                        }
                        b.append(true);
                    }
                    other => return Err(mismatch(other)),
                }
            }
            let array = b.finish();
            (
                Field::new(name, array.data_type().clone(), true),
                Arc::new(array),
            )
        }
        Kind::TextArray => {
            // No catalog row carries privileges or options yet: these columns are NULL.
            let mut b = ListBuilder::new(StringBuilder::new());
            for v in values {
                match v {
                    V::Null => b.append_null(),
                    other => return Err(mismatch(other)),
                }
            }
            let array = b.finish();
            (
                Field::new(name, array.data_type().clone(), true),
                Arc::new(array),
            )
        }
    })
}
