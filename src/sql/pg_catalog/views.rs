//! Catalog views over user objects (`pg_sequences`, `pg_tables`, `pg_indexes`, statistics)
//! and the relations deltagate has no rows for, with PostgreSQL's columns.

use std::sync::atomic::Ordering;

use datafusion::arrow::array::RecordBatch;
use datafusion::error::Result as DfResult;

use super::super::shared::SessionShared;
use super::objects::{index_definition, tables, views};
use super::{Kind, Rows, V};

pub(crate) fn pg_sequence(shared: &SessionShared) -> DfResult<RecordBatch> {
    let mut rows = Rows::new(&[
        ("seqrelid", Kind::Oid),
        ("seqtypid", Kind::Oid),
        ("seqstart", Kind::I64),
        ("seqincrement", Kind::I64),
        ("seqmax", Kind::I64),
        ("seqmin", Kind::I64),
        ("seqcache", Kind::I64),
        ("seqcycle", Kind::Bool),
    ]);
    for table in tables(shared) {
        for seq in table.sequences() {
            rows.push(vec![
                seq.oid.into(),
                seq.data_type.oid().into(),
                seq.start.into(),
                seq.increment.into(),
                seq.max.into(),
                1i64.into(),
                1i64.into(),
                false.into(),
            ]);
        }
    }
    rows.finish()
}

pub(crate) fn pg_sequences(shared: &SessionShared) -> DfResult<RecordBatch> {
    let mut rows = Rows::new(&[
        ("schemaname", Kind::Text),
        ("sequencename", Kind::Text),
        ("sequenceowner", Kind::Text),
        ("data_type", Kind::Text),
        ("start_value", Kind::I64),
        ("min_value", Kind::I64),
        ("max_value", Kind::I64),
        ("increment_by", Kind::I64),
        ("cycle", Kind::Bool),
        ("cache_size", Kind::I64),
        ("last_value", Kind::I64),
    ]);
    let owner = shared.engine.config().superuser.clone();
    for table in tables(shared) {
        for seq in table.sequences() {
            rows.push(vec![
                table.schema.clone().into(),
                seq.name.clone().into(),
                owner.clone().into(),
                seq.data_type.sql_standard_name().into(),
                seq.start.into(),
                1i64.into(),
                seq.max.into(),
                seq.increment.into(),
                false.into(),
                1i64.into(),
                seq.last_value.into(),
            ]);
        }
    }
    rows.finish()
}

pub(crate) fn pg_tables(shared: &SessionShared) -> DfResult<RecordBatch> {
    let mut rows = Rows::new(&[
        ("schemaname", Kind::Text),
        ("tablename", Kind::Text),
        ("tableowner", Kind::Text),
        ("tablespace", Kind::Text),
        ("hasindexes", Kind::Bool),
        ("hasrules", Kind::Bool),
        ("hastriggers", Kind::Bool),
        ("rowsecurity", Kind::Bool),
    ]);
    let owner = shared.engine.config().superuser.clone();
    for table in tables(shared) {
        rows.push(vec![
            table.schema.clone().into(),
            table.handle.name.clone().into(),
            owner.clone().into(),
            V::Null,
            (!table.indexes().is_empty()).into(),
            false.into(),
            false.into(),
            false.into(),
        ]);
    }
    rows.finish()
}

pub(crate) fn pg_indexes(shared: &SessionShared) -> DfResult<RecordBatch> {
    let mut rows = Rows::new(&[
        ("schemaname", Kind::Text),
        ("tablename", Kind::Text),
        ("indexname", Kind::Text),
        ("tablespace", Kind::Text),
        ("indexdef", Kind::Text),
    ]);
    for table in tables(shared) {
        for index in table.indexes() {
            rows.push(vec![
                table.schema.clone().into(),
                table.handle.name.clone().into(),
                index.name.clone().into(),
                V::Null,
                index_definition(&table, &index).into(),
            ]);
        }
    }
    rows.finish()
}

pub(crate) fn pg_views(shared: &SessionShared) -> DfResult<RecordBatch> {
    let mut rows = Rows::new(&[
        ("schemaname", Kind::Text),
        ("viewname", Kind::Text),
        ("viewowner", Kind::Text),
        ("definition", Kind::Text),
    ]);
    let owner = shared.engine.config().superuser.clone();
    for view in views(shared) {
        rows.push(vec![
            view.schema.into(),
            view.name.into(),
            owner.clone().into(),
            view.definition.into(),
        ]);
    }
    rows.finish()
}

pub(crate) fn pg_matviews() -> DfResult<RecordBatch> {
    Rows::new(&[
        ("schemaname", Kind::Text),
        ("matviewname", Kind::Text),
        ("matviewowner", Kind::Text),
        ("tablespace", Kind::Text),
        ("hasindexes", Kind::Bool),
        ("ispopulated", Kind::Bool),
        ("definition", Kind::Text),
    ])
    .finish()
}

pub(crate) fn pg_stat_user_tables(shared: &SessionShared) -> DfResult<RecordBatch> {
    let mut rows = Rows::new(&[
        ("relid", Kind::Oid),
        ("schemaname", Kind::Text),
        ("relname", Kind::Text),
        ("seq_scan", Kind::I64),
        ("idx_scan", Kind::I64),
        ("n_live_tup", Kind::I64),
        ("n_dead_tup", Kind::I64),
    ]);
    for table in tables(shared) {
        rows.push(vec![
            table.handle.oid.into(),
            table.schema.clone().into(),
            table.handle.name.clone().into(),
            0i64.into(),
            (table.handle.seeks.load(Ordering::Relaxed) as i64).into(),
            0i64.into(),
            0i64.into(),
        ]);
    }
    rows.finish()
}

/// Relations deltagate has no rows for (no policies, inheritance, publications, triggers,
/// extended statistics), with PostgreSQL's column types so client queries over them plan.
pub(crate) fn empty(name: &str) -> Option<DfResult<RecordBatch>> {
    let columns: &[(&str, Kind)] = match name {
        "pg_policy" => &[
            ("oid", Kind::Oid),
            ("polname", Kind::Text),
            ("polrelid", Kind::Oid),
            ("polcmd", Kind::Char),
            ("polpermissive", Kind::Bool),
            ("polroles", Kind::OidArray),
            ("polqual", Kind::Text),
            ("polwithcheck", Kind::Text),
        ],
        "pg_inherits" => &[
            ("inhrelid", Kind::Oid),
            ("inhparent", Kind::Oid),
            ("inhseqno", Kind::I32),
            ("inhdetachpending", Kind::Bool),
        ],
        "pg_statistic_ext" => &[
            ("oid", Kind::Oid),
            ("stxrelid", Kind::Oid),
            ("stxname", Kind::Text),
            ("stxnamespace", Kind::Oid),
            ("stxowner", Kind::Oid),
            ("stxstattarget", Kind::I32),
            ("stxkeys", Kind::I16Array),
            ("stxkind", Kind::TextArray),
            ("stxexprs", Kind::Text),
        ],
        "pg_publication" => &[
            ("oid", Kind::Oid),
            ("pubname", Kind::Text),
            ("pubowner", Kind::Oid),
            ("puballtables", Kind::Bool),
            ("pubinsert", Kind::Bool),
            ("pubupdate", Kind::Bool),
            ("pubdelete", Kind::Bool),
            ("pubtruncate", Kind::Bool),
            ("pubviaroot", Kind::Bool),
        ],
        "pg_publication_rel" => &[
            ("oid", Kind::Oid),
            ("prpubid", Kind::Oid),
            ("prrelid", Kind::Oid),
            ("prqual", Kind::Text),
            ("prattrs", Kind::I16Array),
        ],
        "pg_publication_namespace" => &[
            ("oid", Kind::Oid),
            ("pnpubid", Kind::Oid),
            ("pnnspid", Kind::Oid),
        ],
        "pg_trigger" => &[
            ("oid", Kind::Oid),
            ("tgrelid", Kind::Oid),
            ("tgparentid", Kind::Oid),
            ("tgname", Kind::Text),
            ("tgfoid", Kind::Oid),
            ("tgtype", Kind::I16),
            ("tgenabled", Kind::Char),
            ("tgisinternal", Kind::Bool),
            ("tgconstrrelid", Kind::Oid),
            ("tgconstrindid", Kind::Oid),
            ("tgconstraint", Kind::Oid),
            ("tgdeferrable", Kind::Bool),
            ("tginitdeferred", Kind::Bool),
            ("tgnargs", Kind::I16),
            ("tgattr", Kind::I16Array),
            ("tgqual", Kind::Text),
        ],
        "pg_rewrite" => &[
            ("oid", Kind::Oid),
            ("rulename", Kind::Text),
            ("ev_class", Kind::Oid),
            ("ev_type", Kind::Char),
            ("ev_enabled", Kind::Char),
            ("is_instead", Kind::Bool),
            ("ev_qual", Kind::Text),
            ("ev_action", Kind::Text),
        ],
        "pg_partitioned_table" => &[
            ("partrelid", Kind::Oid),
            ("partstrat", Kind::Char),
            ("partnatts", Kind::I16),
            ("partdefid", Kind::Oid),
            ("partattrs", Kind::I16Array),
        ],
        "pg_foreign_table" => &[
            ("ftrelid", Kind::Oid),
            ("ftserver", Kind::Oid),
            ("ftoptions", Kind::TextArray),
        ],
        _ => return None,
    };
    Some(Rows::new(columns).finish())
}
