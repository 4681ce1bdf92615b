//! Catalog relations describing user objects: namespaces, tables, columns, indexes,
//! constraints, defaults and sequences. OIDs come from [`crate::storage::stable_oid`], so they
//! agree across relations and survive restarts.
//!
//! Each is built from the user objects (`objects`) every time a statement resolves it.

use datafusion::arrow::array::RecordBatch;
use datafusion::error::Result as DfResult;

use crate::pgtypes::PgType;
use crate::storage::stable_oid;

use super::super::shared::SessionShared;
use super::super::shared::{INFORMATION_SCHEMA, PG_CATALOG};
use super::objects::{tables, views};
use super::{INFORMATION_SCHEMA_OID, Kind, PG_CATALOG_OID, Rows, SUPERUSER_OID, V};

/// OID of the `heap` access method.
const HEAP_AM: u32 = 2;
/// OID of the `btree` access method.
const BTREE_AM: u32 = 403;
/// OID of the default collation.
const DEFAULT_COLLATION: u32 = 100;
/// Known OIDs of system catalog relations (from PostgreSQL's `pg_class.dat`).
const SYSTEM_RELATIONS: &[(&str, u32, &str)] = &[
    ("pg_type", 1247, "r"),
    ("pg_attribute", 1249, "r"),
    ("pg_proc", 1255, "r"),
    ("pg_class", 1259, "r"),
    ("pg_database", 1262, "r"),
    ("pg_authid", 1260, "r"),
    ("pg_namespace", 2615, "r"),
    ("pg_index", 2610, "r"),
    ("pg_constraint", 2606, "r"),
    ("pg_attrdef", 2604, "r"),
    ("pg_description", 2609, "r"),
    ("pg_am", 2601, "r"),
    ("pg_sequence", 2224, "r"),
    ("pg_settings", 12_000, "v"),
    ("pg_roles", 12_001, "v"),
    ("pg_tables", 12_002, "v"),
    ("pg_indexes", 12_003, "v"),
    ("pg_views", 12_004, "v"),
    ("pg_sequences", 12_005, "v"),
    ("pg_stat_activity", 12_006, "v"),
    ("pg_user", 12_007, "v"),
];

pub(crate) fn pg_namespace(shared: &SessionShared) -> DfResult<RecordBatch> {
    let mut rows = Rows::new(&[
        ("oid", Kind::Oid),
        ("nspname", Kind::Text),
        ("nspowner", Kind::Oid),
        ("nspacl", Kind::TextArray),
    ]);
    rows.push(vec![
        PG_CATALOG_OID.into(),
        PG_CATALOG.into(),
        SUPERUSER_OID.into(),
        V::Null,
    ]);
    rows.push(vec![
        INFORMATION_SCHEMA_OID.into(),
        INFORMATION_SCHEMA.into(),
        SUPERUSER_OID.into(),
        V::Null,
    ]);
    for (name, oid) in shared.engine.storage().schemas() {
        rows.push(vec![oid.into(), name.into(), SUPERUSER_OID.into(), V::Null]);
    }
    rows.finish()
}

const PG_CLASS_COLUMNS: &[(&str, Kind)] = &[
    ("oid", Kind::Oid),
    ("relname", Kind::Text),
    ("relnamespace", Kind::Oid),
    ("reltype", Kind::Oid),
    ("reloftype", Kind::Oid),
    ("relowner", Kind::Oid),
    ("relam", Kind::Oid),
    ("relfilenode", Kind::Oid),
    ("reltablespace", Kind::Oid),
    ("relpages", Kind::I32),
    ("reltuples", Kind::F32),
    ("relallvisible", Kind::I32),
    ("reltoastrelid", Kind::Oid),
    ("relhasindex", Kind::Bool),
    ("relisshared", Kind::Bool),
    ("relpersistence", Kind::Char),
    ("relkind", Kind::Char),
    ("relnatts", Kind::I16),
    ("relchecks", Kind::I16),
    ("relhasrules", Kind::Bool),
    ("relhastriggers", Kind::Bool),
    ("relhassubclass", Kind::Bool),
    ("relrowsecurity", Kind::Bool),
    ("relforcerowsecurity", Kind::Bool),
    ("relispopulated", Kind::Bool),
    ("relreplident", Kind::Char),
    ("relispartition", Kind::Bool),
    ("relrewrite", Kind::Oid),
    ("relfrozenxid", Kind::I32),
    ("relminmxid", Kind::I32),
    ("relacl", Kind::TextArray),
    ("reloptions", Kind::TextArray),
    ("relpartbound", Kind::Text),
];

fn class_row(
    oid: u32,
    name: &str,
    namespace: u32,
    am: u32,
    has_index: bool,
    kind: &str,
    natts: usize,
) -> Vec<V> {
    vec![
        oid.into(),
        name.into(),
        namespace.into(),
        0u32.into(),
        0u32.into(),
        SUPERUSER_OID.into(),
        am.into(),
        oid.into(),
        0u32.into(),
        0i32.into(),
        V::F(-1.0),
        0i32.into(),
        0u32.into(),
        has_index.into(),
        false.into(),
        "p".into(),
        kind.into(),
        (natts as i32).into(),
        0i32.into(),
        false.into(),
        false.into(),
        false.into(),
        false.into(),
        false.into(),
        true.into(),
        "d".into(),
        false.into(),
        0u32.into(),
        0i32.into(),
        0i32.into(),
        V::Null,
        V::Null,
        V::Null,
    ]
}

pub(crate) fn pg_class(shared: &SessionShared) -> DfResult<RecordBatch> {
    let mut rows = Rows::new(PG_CLASS_COLUMNS);
    for (name, oid, kind) in SYSTEM_RELATIONS {
        let am = if *kind == "r" { HEAP_AM } else { 0 };
        rows.push(class_row(*oid, name, PG_CATALOG_OID, am, false, kind, 0));
    }
    for table in tables(shared) {
        let indexes = table.indexes();
        rows.push(class_row(
            table.handle.oid,
            &table.handle.name,
            table.schema_oid,
            HEAP_AM,
            !indexes.is_empty(),
            "r",
            table.meta.columns.len(),
        ));
        for index in &indexes {
            rows.push(class_row(
                index.oid,
                &index.name,
                table.schema_oid,
                BTREE_AM,
                false,
                "i",
                index.columns.len(),
            ));
        }
        for seq in table.sequences() {
            rows.push(class_row(
                seq.oid,
                &seq.name,
                table.schema_oid,
                0,
                false,
                "S",
                3,
            ));
        }
    }
    for view in views(shared) {
        rows.push(class_row(
            view.oid,
            view.name,
            view.schema_oid,
            0,
            false,
            "v",
            view.columns.len(),
        ));
    }
    rows.finish()
}

/// Storage properties of a type: (attbyval, attalign, attstorage).
fn type_storage(t: PgType) -> (bool, &'static str, &'static str) {
    match t.typlen() {
        1 => (true, "c", "p"),
        2 => (true, "s", "p"),
        4 => (true, "i", "p"),
        8 => (true, "d", "p"),
        16 => (false, "c", "p"),
        _ => (false, "i", "x"),
    }
}

fn collation_of(t: PgType) -> u32 {
    match t {
        PgType::Text | PgType::Varchar(_) | PgType::Bpchar(_) => DEFAULT_COLLATION,
        _ => 0,
    }
}

pub(crate) fn pg_attribute(shared: &SessionShared) -> DfResult<RecordBatch> {
    let mut rows = Rows::new(&[
        ("attrelid", Kind::Oid),
        ("attname", Kind::Text),
        ("atttypid", Kind::Oid),
        ("attstattarget", Kind::I16),
        ("attlen", Kind::I16),
        ("attnum", Kind::I16),
        ("attndims", Kind::I16),
        ("attcacheoff", Kind::I32),
        ("atttypmod", Kind::I32),
        ("attbyval", Kind::Bool),
        ("attalign", Kind::Char),
        ("attstorage", Kind::Char),
        ("attcompression", Kind::Char),
        ("attnotnull", Kind::Bool),
        ("atthasdef", Kind::Bool),
        ("atthasmissing", Kind::Bool),
        ("attidentity", Kind::Char),
        ("attgenerated", Kind::Char),
        ("attisdropped", Kind::Bool),
        ("attislocal", Kind::Bool),
        ("attinhcount", Kind::I16),
        ("attcollation", Kind::Oid),
        ("attacl", Kind::TextArray),
        ("attoptions", Kind::TextArray),
        ("attfdwoptions", Kind::TextArray),
        ("attmissingval", Kind::TextArray),
    ]);
    let mut push =
        |relid: u32, name: &str, t: PgType, num: usize, not_null: bool, has_def: bool| {
            let (byval, align, storage) = type_storage(t);
            rows.push(vec![
                relid.into(),
                name.into(),
                t.oid().into(),
                V::Null,
                (t.typlen() as i32).into(),
                (num as i32).into(),
                0i32.into(),
                (-1i32).into(),
                t.typmod().into(),
                byval.into(),
                align.into(),
                storage.into(),
                "".into(),
                not_null.into(),
                has_def.into(),
                false.into(),
                "".into(),
                "".into(),
                false.into(),
                true.into(),
                0i32.into(),
                collation_of(t).into(),
                V::Null,
                V::Null,
                V::Null,
                V::Null,
            ]);
        };
    for table in tables(shared) {
        for (i, column) in table.meta.columns.iter().enumerate() {
            push(
                table.handle.oid,
                &column.name,
                column.pg_type,
                i + 1,
                column.not_null,
                column.default.is_some(),
            );
        }
        for index in table.indexes() {
            for (i, name) in index.columns.iter().enumerate() {
                if let Some(c) = table.meta.column_index(name) {
                    let column = &table.meta.columns[c];
                    push(index.oid, &column.name, column.pg_type, i + 1, false, false);
                }
            }
        }
    }
    for view in views(shared) {
        for (i, column) in view.columns.iter().enumerate() {
            push(view.oid, &column.name, column.pg_type, i + 1, false, false);
        }
    }
    rows.finish()
}

pub(crate) fn pg_index(shared: &SessionShared) -> DfResult<RecordBatch> {
    let mut rows = Rows::new(&[
        ("indexrelid", Kind::Oid),
        ("indrelid", Kind::Oid),
        ("indnatts", Kind::I16),
        ("indnkeyatts", Kind::I16),
        ("indisunique", Kind::Bool),
        ("indnullsnotdistinct", Kind::Bool),
        ("indisprimary", Kind::Bool),
        ("indisexclusion", Kind::Bool),
        ("indimmediate", Kind::Bool),
        ("indisclustered", Kind::Bool),
        ("indisvalid", Kind::Bool),
        ("indcheckxmin", Kind::Bool),
        ("indisready", Kind::Bool),
        ("indislive", Kind::Bool),
        ("indisreplident", Kind::Bool),
        ("indkey", Kind::I16Array),
        ("indcollation", Kind::OidArray),
        ("indclass", Kind::OidArray),
        ("indoption", Kind::I16Array),
        ("indexprs", Kind::Text),
        ("indpred", Kind::Text),
    ]);
    for table in tables(shared) {
        for index in table.indexes() {
            let keys = table.attnums(&index.columns);
            let n = keys.len() as i32;
            rows.push(vec![
                index.oid.into(),
                table.handle.oid.into(),
                n.into(),
                n.into(),
                index.unique.into(),
                false.into(),
                index.primary.into(),
                false.into(),
                true.into(),
                false.into(),
                true.into(),
                false.into(),
                true.into(),
                true.into(),
                false.into(),
                V::I16s(keys.clone()),
                V::Oids(vec![0; keys.len()]),
                V::Oids(vec![0; keys.len()]),
                V::I16s(vec![0; keys.len()]),
                V::Null,
                V::Null,
            ]);
        }
    }
    rows.finish()
}

pub(crate) fn pg_constraint(shared: &SessionShared) -> DfResult<RecordBatch> {
    let mut rows = Rows::new(&[
        ("oid", Kind::Oid),
        ("conname", Kind::Text),
        ("connamespace", Kind::Oid),
        ("contype", Kind::Char),
        ("condeferrable", Kind::Bool),
        ("condeferred", Kind::Bool),
        ("convalidated", Kind::Bool),
        ("conrelid", Kind::Oid),
        ("contypid", Kind::Oid),
        ("conindid", Kind::Oid),
        ("conparentid", Kind::Oid),
        ("confrelid", Kind::Oid),
        ("confupdtype", Kind::Char),
        ("confdeltype", Kind::Char),
        ("confmatchtype", Kind::Char),
        ("conislocal", Kind::Bool),
        ("coninhcount", Kind::I16),
        ("connoinherit", Kind::Bool),
        ("conkey", Kind::I16Array),
        ("confkey", Kind::I16Array),
        ("conpfeqop", Kind::OidArray),
        ("conppeqop", Kind::OidArray),
        ("conffeqop", Kind::OidArray),
        ("conexclop", Kind::OidArray),
        ("conbin", Kind::Text),
    ]);
    for table in tables(shared) {
        for index in table.indexes().into_iter().filter(|i| i.primary) {
            rows.push(vec![
                stable_oid("constraint", &table.schema, &index.name).into(),
                index.name.clone().into(),
                table.schema_oid.into(),
                "p".into(),
                false.into(),
                false.into(),
                true.into(),
                table.handle.oid.into(),
                0u32.into(),
                index.oid.into(),
                0u32.into(),
                0u32.into(),
                " ".into(),
                " ".into(),
                " ".into(),
                true.into(),
                0i32.into(),
                true.into(),
                V::I16s(table.attnums(&index.columns)),
                V::Null,
                V::Null,
                V::Null,
                V::Null,
                V::Null,
                V::Null,
            ]);
        }
    }
    rows.finish()
}

pub(crate) fn pg_attrdef(shared: &SessionShared) -> DfResult<RecordBatch> {
    let mut rows = Rows::new(&[
        ("oid", Kind::Oid),
        ("adrelid", Kind::Oid),
        ("adnum", Kind::I16),
        ("adbin", Kind::Text),
    ]);
    for table in tables(shared) {
        for (i, column) in table.meta.columns.iter().enumerate() {
            if let Some(default) = &column.default {
                rows.push(vec![
                    stable_oid("attrdef", &table.qualified(), &column.name).into(),
                    table.handle.oid.into(),
                    (i as i32 + 1).into(),
                    default.clone().into(),
                ]);
            }
        }
    }
    rows.finish()
}
