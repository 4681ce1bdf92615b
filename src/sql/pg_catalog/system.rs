//! Catalog relations describing the server rather than its tables: the database, settings,
//! roles and sessions.

use datafusion::arrow::array::RecordBatch;
use datafusion::error::Result as DfResult;

use crate::storage::stable_oid;

use super::super::shared::SessionShared;
use super::{Kind, Rows, SUPERUSER_OID, V};

/// `pg_database.encoding` of UTF8.
const UTF8_ENCODING: i32 = 6;
/// OID of the `pg_default` tablespace.
const DEFAULT_TABLESPACE: u32 = 1663;

/// The OID of the served database.
pub(crate) fn database_oid(name: &str) -> u32 {
    stable_oid("database", "", name)
}

pub(crate) fn pg_database(shared: &SessionShared) -> DfResult<RecordBatch> {
    let mut rows = Rows::new(&[
        ("oid", Kind::Oid),
        ("datname", Kind::Text),
        ("datdba", Kind::Oid),
        ("encoding", Kind::I32),
        ("datlocprovider", Kind::Char),
        ("datistemplate", Kind::Bool),
        ("datallowconn", Kind::Bool),
        ("datconnlimit", Kind::I32),
        ("datfrozenxid", Kind::I32),
        ("datminmxid", Kind::I32),
        ("dattablespace", Kind::Oid),
        ("datcollate", Kind::Text),
        ("datctype", Kind::Text),
        ("daticulocale", Kind::Text),
        ("daticurules", Kind::Text),
        ("datcollversion", Kind::Text),
        ("datacl", Kind::TextArray),
    ]);
    let name = shared.engine.config().database.clone();
    rows.push(vec![
        database_oid(&name).into(),
        name.into(),
        SUPERUSER_OID.into(),
        UTF8_ENCODING.into(),
        "c".into(),
        false.into(),
        true.into(),
        (-1i32).into(),
        0i32.into(),
        0i32.into(),
        DEFAULT_TABLESPACE.into(),
        "C".into(),
        "C".into(),
        V::Null,
        V::Null,
        V::Null,
        V::Null,
    ]);
    rows.finish()
}

pub(crate) fn pg_settings(shared: &SessionShared) -> DfResult<RecordBatch> {
    let mut rows = Rows::new(&[
        ("name", Kind::Text),
        ("setting", Kind::Text),
        ("unit", Kind::Text),
        ("category", Kind::Text),
        ("short_desc", Kind::Text),
        ("extra_desc", Kind::Text),
        ("context", Kind::Text),
        ("vartype", Kind::Text),
        ("source", Kind::Text),
        ("min_val", Kind::Text),
        ("max_val", Kind::Text),
        ("enumvals", Kind::TextArray),
        ("boot_val", Kind::Text),
        ("reset_val", Kind::Text),
        ("sourcefile", Kind::Text),
        ("sourceline", Kind::I32),
        ("pending_restart", Kind::Bool),
    ]);
    for (name, value, description) in shared.settings.lock().all() {
        rows.push(vec![
            name.into(),
            value.clone().into(),
            V::Null,
            "Client Connection Defaults".into(),
            description.into(),
            V::Null,
            "user".into(),
            "string".into(),
            "session".into(),
            V::Null,
            V::Null,
            V::Null,
            value.clone().into(),
            value.into(),
            V::Null,
            V::Null,
            false.into(),
        ]);
    }
    rows.finish()
}

pub(crate) fn pg_roles(shared: &SessionShared) -> DfResult<RecordBatch> {
    let mut rows = Rows::new(&[
        ("oid", Kind::Oid),
        ("rolname", Kind::Text),
        ("rolsuper", Kind::Bool),
        ("rolinherit", Kind::Bool),
        ("rolcreaterole", Kind::Bool),
        ("rolcreatedb", Kind::Bool),
        ("rolcanlogin", Kind::Bool),
        ("rolreplication", Kind::Bool),
        ("rolconnlimit", Kind::I32),
        ("rolpassword", Kind::Text),
        ("rolvaliduntil", Kind::Text),
        ("rolbypassrls", Kind::Bool),
        ("rolconfig", Kind::TextArray),
    ]);
    rows.push(vec![
        SUPERUSER_OID.into(),
        shared.engine.config().superuser.clone().into(),
        true.into(),
        true.into(),
        true.into(),
        true.into(),
        true.into(),
        false.into(),
        (-1i32).into(),
        "********".into(),
        V::Null,
        true.into(),
        V::Null,
    ]);
    rows.finish()
}

pub(crate) fn pg_user(shared: &SessionShared) -> DfResult<RecordBatch> {
    let mut rows = Rows::new(&[
        ("usename", Kind::Text),
        ("usesysid", Kind::Oid),
        ("usecreatedb", Kind::Bool),
        ("usesuper", Kind::Bool),
        ("userepl", Kind::Bool),
        ("usebypassrls", Kind::Bool),
        ("passwd", Kind::Text),
        ("valuntil", Kind::Text),
        ("useconfig", Kind::TextArray),
    ]);
    rows.push(vec![
        shared.engine.config().superuser.clone().into(),
        SUPERUSER_OID.into(),
        true.into(),
        true.into(),
        false.into(),
        true.into(),
        "********".into(),
        V::Null,
        V::Null,
    ]);
    rows.finish()
}

pub(crate) fn pg_stat_activity(shared: &SessionShared) -> DfResult<RecordBatch> {
    let mut rows = Rows::new(&[
        ("datid", Kind::Oid),
        ("datname", Kind::Text),
        ("pid", Kind::I32),
        ("usesysid", Kind::Oid),
        ("usename", Kind::Text),
        ("application_name", Kind::Text),
        ("client_addr", Kind::Text),
        ("state", Kind::Text),
        ("query", Kind::Text),
        ("backend_type", Kind::Text),
    ]);
    let database = shared.engine.config().database.clone();
    let application = shared
        .settings
        .lock()
        .get("application_name")
        .unwrap_or_default();
    rows.push(vec![
        database_oid(&database).into(),
        database.into(),
        shared.pid.into(),
        SUPERUSER_OID.into(),
        shared.user.clone().into(),
        application.into(),
        V::Null,
        "active".into(),
        V::Null,
        "client backend".into(),
    ]);
    rows.finish()
}
