//! Maintenance statements: `VACUUM [FULL] [table]` and `CHECKPOINT`.
//!
//! PostgreSQL's VACUUM reclaims the space of dead rows; deltagate's dead rows are Delta files
//! that deletes, updates and dropped historian months left behind, and `VACUUM` deletes them
//! (see `storage::vacuum` for the retention rules). Like PostgreSQL, it cannot run inside a
//! transaction block. `CHECKPOINT` writes every table's buffered rows to Delta and releases
//! the write-ahead log behind them, as PostgreSQL's writes dirty buffers and recycles WAL: an
//! operator runs it before a backup or a Spark job that must see everything, and benchmarks
//! before each measured load. Called by the session's statement parsing and dispatch.

use std::sync::Arc;

use datafusion::sql::sqlparser::ast::VacuumStatement;

use super::rewrite::name_parts;
use super::session::Session;
use super::tables::{detached, resolve_table};
use super::{Outcome, Result, SqlError};

/// Runs `VACUUM`: on one table, or on every table (each Delta table once).
///
/// # Errors
/// 25001 inside a transaction block, 42P01 for an unknown table, storage errors.
pub async fn vacuum(session: &Session, statement: &VacuumStatement) -> Result<Outcome> {
    // Also an implicit block: PostgreSQL refuses VACUUM in a multi-statement query string.
    if session.shared.txn.is_open() {
        return Err(SqlError::InTransactionBlock(
            "VACUUM cannot run inside a transaction block".into(),
        ));
    }
    session.check_writable("VACUUM")?;
    let storage = session.engine().storage().clone();
    let tables = match &statement.table_name {
        Some(name) => vec![
            resolve_table(session, name)
                .and_then(|(schema, table)| storage.table(&schema, &table))
                .ok_or_else(|| SqlError::UndefinedTable(name_parts(name).join(".")))?,
        ],
        None => {
            let mut tables = storage.all_tables();
            // Historian months share their Delta table: vacuum it once.
            tables.sort_by(|a, b| a.location.as_str().cmp(b.location.as_str()));
            tables.dedup_by(|a, b| a.location == b.location);
            tables
        }
    };
    let full = statement.full;
    detached(async move {
        for table in tables {
            storage.vacuum(&Arc::clone(&table), full).await?;
        }
        Ok(())
    })
    .await?;
    Ok(Outcome::Command {
        tag: "VACUUM".into(),
        rows: None,
    })
}

/// Runs `CHECKPOINT`: flushes every table's buffered rows to Delta.
///
/// # Errors
/// The first flush error; the rows it concerns stay buffered and logged.
pub async fn checkpoint(session: &Session) -> Result<Outcome> {
    session.engine().storage().flush_all().await?;
    Ok(Outcome::Command {
        tag: "CHECKPOINT".into(),
        rows: None,
    })
}
