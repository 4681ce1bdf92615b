//! From query text to statements: `CHECKPOINT` (which sqlparser does not know), else sqlparser
//! within the nesting bounds of [`limits`](super::limits), statements asking for row locks
//! refused (see [`row_locks`](super::row_locks)), then PostgreSQL's spellings rewritten (see
//! `rewrite`).

use datafusion::sql::sqlparser::ast::{FlushType, Statement};

use super::{Result, limits, rewrite, row_locks};

/// Parses a query string into statements, with PostgreSQL spellings rewritten.
///
/// # Errors
/// [`SqlError::Parse`](super::SqlError::Parse) for syntax errors,
/// [`SqlError::TooComplex`](super::SqlError::TooComplex) for statements nested too deeply to
/// handle.
pub fn parse(sql: &str) -> Result<Vec<Statement>> {
    if let Some(checkpoint) = parse_checkpoint(sql) {
        return Ok(vec![checkpoint]);
    }
    let statements = limits::parse(sql).map_err(|e| row_locks::refuse_unparsed(sql, e))?;
    statements
        .into_iter()
        .map(|mut statement| {
            row_locks::refuse(&statement)?;
            rewrite::datetime_spellings(&mut statement)?;
            Ok(rewrite::pg_compat(statement))
        })
        .collect()
}

/// `CHECKPOINT` (sqlparser has no such statement): carried as the `FLUSH TABLES` statement,
/// which PostgreSQL does not have, so nothing else reaches `maintenance::checkpoint` that way.
pub fn parse_checkpoint(sql: &str) -> Option<Statement> {
    let text = sql.trim().trim_end_matches(';').trim_end();
    text.eq_ignore_ascii_case("checkpoint")
        .then_some(Statement::Flush {
            object_type: FlushType::Tables,
            location: None,
            channel: None,
            read_lock: false,
            export: false,
            tables: Vec::new(),
        })
}

/// Whether `statement` is a `CHECKPOINT` made by [`parse_checkpoint`].
pub fn is_checkpoint(statement: &Statement) -> bool {
    matches!(
        statement,
        Statement::Flush {
            object_type: FlushType::Tables,
            tables,
            ..
        } if tables.is_empty()
    )
}
