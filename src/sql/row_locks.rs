//! Row-level locking clauses (`SELECT ... FOR UPDATE`, `FOR NO KEY UPDATE`, `FOR SHARE`,
//! `FOR KEY SHARE`, each with or without `OF`, `NOWAIT` or `SKIP LOCKED`): refused with 0A000,
//! in this one place.
//!
//! deltagate takes no row locks: a change conflicts with another only when both rewrote the
//! same data file, and the loser learns it at `COMMIT` (40001, see README "Differences from
//! PostgreSQL"). A `SELECT ... FOR UPDATE` that returned its rows as if they were locked would
//! let an application read-modify-write them believing no one else can, and lose updates; a
//! job queue's `FOR UPDATE SKIP LOCKED` would hand the same job to every worker. So every
//! statement holding a locking clause anywhere (also in a subquery, a CTE or the subquery of
//! an `UPDATE`) is refused when it is parsed, before it runs or is prepared.
//!
//! Called by `parse::parse` for every statement of both protocols. When row locks exist, this
//! module is what to replace: [`refuse`] would hand the clauses to them instead.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{Query, Statement, Visit, Visitor};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

use super::{Result, SqlError};

fn not_supported(clause: &str) -> SqlError {
    SqlError::Unsupported(format!(
        "row locks are not supported yet: {clause} would not lock anything in deltagate \
         (a concurrent change is detected only at COMMIT, with SQLSTATE 40001)"
    ))
}

/// Refuses a statement that asks for row locks.
///
/// # Errors
/// [`SqlError::Unsupported`] (0A000) naming the first locking clause found.
pub fn refuse(statement: &Statement) -> Result<()> {
    struct Locks;
    impl Visitor for Locks {
        type Break = String;
        fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<String> {
            match query.locks.first() {
                Some(lock) => ControlFlow::Break(lock.to_string()),
                None => ControlFlow::Continue(()),
            }
        }
    }
    match statement.visit(&mut Locks) {
        ControlFlow::Break(clause) => Err(not_supported(&clause)),
        ControlFlow::Continue(()) => Ok(()),
    }
}

/// The error for text that failed to parse: sqlparser knows only `FOR UPDATE` and `FOR SHARE`,
/// so `FOR NO KEY UPDATE` and `FOR KEY SHARE` are syntax errors to it. Text holding one of
/// those keyword sequences gets the row-lock refusal instead (what PostgreSQL accepts must not
/// look like a syntax error); anything else keeps its syntax error.
pub fn refuse_unparsed(sql: &str, error: SqlError) -> SqlError {
    if !matches!(error, SqlError::Parse(_)) {
        return error;
    }
    let Ok(tokens) = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize() else {
        return error;
    };
    let words: Vec<Keyword> = tokens
        .iter()
        .filter_map(|t| match t {
            Token::Word(w) => Some(w.keyword),
            Token::Whitespace(_) => None,
            // Anything else separates keywords, so it never completes a sequence.
            _ => Some(Keyword::NoKeyword),
        })
        .collect();
    let strength = words.windows(4).find_map(|w| match w {
        [Keyword::FOR, Keyword::NO, Keyword::KEY, Keyword::UPDATE] => Some("FOR NO KEY UPDATE"),
        [Keyword::FOR, Keyword::KEY, Keyword::SHARE, _] => Some("FOR KEY SHARE"),
        _ => None,
    });
    // A three-keyword `FOR KEY SHARE` at the very end of the text has no fourth word.
    let strength = strength.or_else(|| {
        words
            .ends_with(&[Keyword::FOR, Keyword::KEY, Keyword::SHARE])
            .then_some("FOR KEY SHARE")
    });
    match strength {
        Some(clause) => not_supported(clause),
        None => error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(sql: &str) -> Result<Vec<Statement>> {
        super::super::parse::parse(sql)
    }

    fn refused(sql: &str) -> bool {
        matches!(parse(sql), Err(SqlError::Unsupported(m)) if m.starts_with("row locks are not supported yet"))
    }

    #[test]
    fn every_locking_clause_is_refused() {
        for sql in [
            "SELECT * FROM t FOR UPDATE",
            "SELECT * FROM t FOR SHARE",
            "SELECT * FROM t FOR NO KEY UPDATE",
            "SELECT * FROM t FOR KEY SHARE",
            "SELECT * FROM t FOR KEY SHARE;",
            "SELECT * FROM t WHERE id = 1 FOR UPDATE NOWAIT",
            "SELECT * FROM t FOR UPDATE OF t SKIP LOCKED",
            "SELECT * FROM t FOR NO KEY UPDATE SKIP LOCKED",
            "SELECT * FROM (SELECT * FROM t FOR UPDATE) s",
            "WITH j AS (SELECT id FROM t FOR UPDATE SKIP LOCKED) SELECT * FROM j",
            "UPDATE t SET n = 1 WHERE id IN (SELECT id FROM t LIMIT 1 FOR UPDATE SKIP LOCKED)",
        ] {
            assert!(refused(sql), "{sql}: {:?}", parse(sql));
        }
    }

    #[test]
    fn other_statements_and_syntax_errors_are_untouched() {
        for sql in [
            "SELECT * FROM t",
            "SELECT key, share FROM t",
            "UPDATE t SET n = n + 1 WHERE id = 1",
        ] {
            assert!(parse(sql).is_ok(), "{sql}");
        }
        assert!(matches!(
            parse("SELECT * FROM t FOR"),
            Err(SqlError::Parse(_))
        ));
        assert!(matches!(parse("SELEC 1"), Err(SqlError::Parse(_))));
    }
}
