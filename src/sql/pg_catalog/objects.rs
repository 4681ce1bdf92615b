//! The user objects the catalog relations describe, read once per relation from storage: the
//! tables and built-in views of every schema, with their indexes and sequences as PostgreSQL
//! numbers them, and the quoting and index definitions PostgreSQL prints for them.
//!
//! OIDs come from [`crate::storage::stable_oid`], so every relation, view and catalog function
//! that lists an object gives it the same OID. Used by `relations` and `views` here, by
//! `information_schema`, and by the catalog functions (`functions::catalog`).

use std::sync::Arc;

use crate::pgtypes::PgType;
use crate::storage::{ColumnMeta, TableHandle, TableMeta, stable_oid};

use super::super::historian::tag_history;
use super::super::shared::SessionShared;

/// A user table with what the catalog relations need of it.
pub(crate) struct TableInfo {
    pub schema: String,
    pub schema_oid: u32,
    pub handle: Arc<TableHandle>,
    pub meta: Arc<TableMeta>,
}

/// An index (primary key or secondary) of a user table.
pub(crate) struct IndexInfo {
    pub oid: u32,
    pub name: String,
    pub columns: Vec<String>,
    pub unique: bool,
    pub primary: bool,
    pub method: String,
}

/// A sequence owned by a column of a user table.
pub(crate) struct SequenceInfo {
    pub oid: u32,
    pub name: String,
    pub start: i64,
    pub increment: i64,
    pub max: i64,
    pub data_type: PgType,
    pub last_value: Option<i64>,
}

/// A built-in view of a user schema (`tag_history`) with what the catalog relations need of it.
pub(crate) struct ViewInfo {
    pub schema: String,
    pub schema_oid: u32,
    pub oid: u32,
    pub name: &'static str,
    pub columns: Vec<ColumnMeta>,
    /// The query, as `pg_get_viewdef` prints it.
    pub definition: String,
}

/// Every built-in view, in schema order.
pub(crate) fn views(shared: &SessionShared) -> Vec<ViewInfo> {
    let storage = shared.engine.storage();
    let columns: Vec<ColumnMeta> = tag_history::COLUMNS
        .iter()
        .map(|(name, pg_type)| ColumnMeta {
            name: (*name).into(),
            pg_type: *pg_type,
            not_null: false,
            default: None,
        })
        .collect();
    storage
        .schemas()
        .into_iter()
        .filter_map(|(schema, schema_oid)| {
            let sources = tag_history::sources(&storage.tables(&schema))?;
            Some(ViewInfo {
                oid: stable_oid("view", &schema, tag_history::NAME),
                name: tag_history::NAME,
                columns: columns.clone(),
                definition: tag_history::definition(&sources),
                schema,
                schema_oid,
            })
        })
        .collect()
}

/// Every user table, in schema and name order.
pub(crate) fn tables(shared: &SessionShared) -> Vec<TableInfo> {
    let storage = shared.engine.storage();
    let mut out = Vec::new();
    for (schema, schema_oid) in storage.schemas() {
        for handle in storage.tables(&schema) {
            let meta = handle.state().meta;
            out.push(TableInfo {
                schema: schema.clone(),
                schema_oid,
                handle,
                meta,
            });
        }
    }
    out
}

impl TableInfo {
    pub(crate) fn indexes(&self) -> Vec<IndexInfo> {
        let mut out = Vec::new();
        if let Some(pk) = &self.meta.primary_key {
            out.push(IndexInfo {
                oid: stable_oid("index", &self.schema, &pk.name),
                name: pk.name.clone(),
                columns: pk.columns.clone(),
                unique: true,
                primary: true,
                method: "btree".into(),
            });
        }
        for index in &self.meta.indexes {
            out.push(IndexInfo {
                oid: stable_oid("index", &self.schema, &index.name),
                name: index.name.clone(),
                columns: index.columns.clone(),
                unique: index.unique,
                primary: false,
                method: index.method.clone(),
            });
        }
        out
    }

    pub(crate) fn sequences(&self) -> Vec<SequenceInfo> {
        self.meta
            .sequences
            .iter()
            .map(|s| SequenceInfo {
                oid: stable_oid("sequence", &self.schema, &s.name),
                name: s.name.clone(),
                start: s.start,
                increment: s.increment,
                max: s.max_value,
                data_type: self
                    .meta
                    .column_index(&s.column)
                    .map_or(PgType::Int8, |i| self.meta.columns[i].pg_type),
                last_value: self
                    .handle
                    .sequence_position(&s.name)
                    .filter(|v| *v >= s.start),
            })
            .collect()
    }

    pub(crate) fn attnums(&self, columns: &[String]) -> Vec<i16> {
        columns
            .iter()
            .filter_map(|c| self.meta.column_index(c).map(|i| i as i16 + 1))
            .collect()
    }

    pub(crate) fn qualified(&self) -> String {
        format!(
            "{}.{}",
            quote_ident(&self.schema),
            quote_ident(&self.handle.name)
        )
    }
}

/// Quotes an identifier when PostgreSQL would.
pub(crate) fn quote_ident(name: &str) -> String {
    let plain = !name.is_empty()
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// `CREATE INDEX` text as `pg_get_indexdef` prints it.
pub(crate) fn index_definition(table: &TableInfo, index: &IndexInfo) -> String {
    format!(
        "CREATE {}INDEX {} ON {} USING {} ({})",
        if index.unique { "UNIQUE " } else { "" },
        quote_ident(&index.name),
        table.qualified(),
        index.method,
        index
            .columns
            .iter()
            .map(|c| quote_ident(c))
            .collect::<Vec<_>>()
            .join(", ")
    )
}
