//! Tables as statements name them: resolved through the session's search path, or reported
//! unavailable when their Delta log cannot be read; and storage work run detached from the
//! client, so a connection that goes away cannot leave a table half changed.

use std::future::Future;

use datafusion::sql::sqlparser::ast::ObjectName;

use crate::storage::StorageError;

use super::rewrite::name_parts;
use super::session::Session;
use super::{Result, SqlError};

/// Runs a storage operation to completion even if the client goes away.
pub(crate) async fn detached<T: Send + 'static>(
    work: impl Future<Output = Result<T>> + Send + 'static,
) -> Result<T> {
    tokio::spawn(work)
        .await
        .map_err(|e| SqlError::Internal(format!("background task failed: {e}")))?
}

/// Resolves a table name to (schema, table) through the search path.
pub(crate) fn resolve_table(session: &Session, name: &ObjectName) -> Option<(String, String)> {
    let parts = name_parts(name);
    let storage = session.engine().storage();
    match parts.as_slice() {
        [table] => session
            .shared
            .existing_search_path()
            .into_iter()
            .find(|schema| storage.table(schema, table).is_some())
            .map(|schema| (schema, table.clone())),
        [schema, table] | [_, schema, table] => storage
            .table(schema, table)
            .map(|_| (schema.clone(), table.clone())),
        _ => None,
    }
}

/// The error for a statement naming a table whose Delta log cannot be read (see
/// `storage::recovery`), if `name` resolves to one.
pub(crate) fn unavailable_table(session: &Session, name: &ObjectName) -> Option<StorageError> {
    let storage = session.engine().storage();
    match name_parts(name).as_slice() {
        [table] => session
            .shared
            .existing_search_path()
            .iter()
            .find_map(|schema| storage.unavailable(schema, table)),
        [schema, table] | [_, schema, table] => storage.unavailable(schema, table),
        _ => None,
    }
}
