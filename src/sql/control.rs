//! Session and transaction statements, handled on the parsed statement (never on SQL text):
//! `BEGIN`/`COMMIT`/`ROLLBACK`/savepoints, `SET`/`SHOW`/`RESET`, `DISCARD`, `DEALLOCATE`,
//! `CLOSE`, `UNLISTEN`.

use std::sync::Arc;

use datafusion::arrow::array::{RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::sql::sqlparser::ast::{
    CloseCursor, ContextModifier, DiscardObject, Expr, Ident, Reset, Set, Statement,
    TransactionAccessMode, TransactionIsolationLevel, TransactionMode, Value, ValueWithSpan,
};

use super::rewrite::name_parts;
use super::session::{Session, rows_outcome, text_rows};
use super::settings::{Settings, unsupported_isolation};
use super::txn::Transaction;
use super::{Outcome, Result, SqlError, dml};

/// Whether a statement starts or ends a transaction block.
pub fn is_transaction_control(statement: &Statement) -> bool {
    matches!(
        statement,
        Statement::StartTransaction { .. } | Statement::Commit { .. } | Statement::Rollback { .. }
    )
}

/// Statements a failed transaction block still accepts.
pub fn allowed_in_failed_transaction(statement: &Statement) -> bool {
    matches!(
        statement,
        Statement::Commit { .. } | Statement::Rollback { .. }
    )
}

/// Executes a session or transaction statement; `None` if the statement is not one.
///
/// # Errors
/// Invalid settings, or commit failures.
pub async fn execute(session: &Session, statement: &Statement) -> Result<Option<Outcome>> {
    let outcome = match statement {
        Statement::StartTransaction { modes, .. } => begin(session, modes)?,
        Statement::Commit { .. } => commit(session).await?,
        Statement::Rollback {
            savepoint: Some(name),
            ..
        } => {
            rollback_to(session, name)?;
            command("ROLLBACK")
        }
        Statement::Rollback { .. } => {
            let had = session.shared.txn.take().is_some_and(|t| t.explicit);
            if !had {
                session.shared.notice("there is no transaction in progress");
            }
            Outcome::End {
                tag: "ROLLBACK".into(),
            }
        }
        Statement::Savepoint { name } => {
            with_block(session, "SAVEPOINT", |t| {
                t.savepoint(&name.value);
                Ok(())
            })?;
            command("SAVEPOINT")
        }
        Statement::ReleaseSavepoint { name } => {
            with_block(session, "RELEASE SAVEPOINT", |t| {
                if t.release(&name.value) {
                    Ok(())
                } else {
                    Err(no_savepoint(name))
                }
            })?;
            command("RELEASE")
        }
        Statement::Set(set) => {
            set_statement(session, set)?;
            command("SET")
        }
        Statement::ShowVariable { variable } => show(session, &variable_name(variable))?,
        Statement::Reset(reset) => {
            let mut settings = session.shared.settings.lock();
            match &reset.reset {
                Reset::ALL => settings.reset_all(),
                Reset::ConfigurationParameter(name) => {
                    settings.reset(&name_parts(name).join("."))?
                }
            }
            command("RESET")
        }
        Statement::Discard { object_type } => discard(session, object_type),
        Statement::Deallocate { name, .. } => {
            if name.value.eq_ignore_ascii_case("all") {
                command("DEALLOCATE ALL")
            } else {
                command("DEALLOCATE")
            }
        }
        Statement::Close { cursor } => match cursor {
            CloseCursor::All => command("CLOSE CURSOR ALL"),
            CloseCursor::Specific { name } => {
                return Err(SqlError::Unsupported(format!(
                    "cursor \"{}\" does not exist",
                    name.value
                )));
            }
        },
        Statement::UNLISTEN { .. } => command("UNLISTEN"),
        _ => return Ok(None),
    };
    if matches!(
        statement,
        Statement::Set(_) | Statement::Reset(_) | Statement::Discard { .. }
    ) {
        session.sync_time_zone();
    }
    Ok(Some(outcome))
}

fn command(tag: &str) -> Outcome {
    Outcome::Command {
        tag: tag.to_string(),
        rows: None,
    }
}

fn no_savepoint(name: &Ident) -> SqlError {
    SqlError::NoSavepoint(name.value.clone())
}

/// Runs `f` on the open transaction block, or fails as PostgreSQL does outside one.
fn with_block(
    session: &Session,
    what: &str,
    f: impl FnOnce(&mut Transaction) -> Result<()>,
) -> Result<()> {
    session.shared.txn.with_block(f).unwrap_or_else(|| {
        Err(SqlError::ActiveTransaction(format!(
            "{what} can only be used in transaction blocks"
        )))
    })
}

/// `BEGIN` / `START TRANSACTION`. Only READ COMMITTED (and READ UNCOMMITTED, which
/// PostgreSQL runs as READ COMMITTED) is what deltagate gives, so a stronger level is refused
/// before the block opens (see [`unsupported_isolation`]).
fn begin(session: &Session, modes: &[TransactionMode]) -> Result<Outcome> {
    for mode in modes {
        if let TransactionMode::IsolationLevel(level) = mode {
            check_isolation(level)?;
        }
    }
    let read_only = modes.iter().any(|m| {
        matches!(
            m,
            TransactionMode::AccessMode(TransactionAccessMode::ReadOnly)
        )
    });
    // BEGIN inside an implicit block turns it into an explicit one.
    if !session.shared.txn.begin(read_only) {
        session
            .shared
            .notice("there is already a transaction in progress");
    }
    Ok(Outcome::Begin)
}

/// The setting's spelling of an isolation level, or the refusal of one deltagate does not give.
fn check_isolation(level: &TransactionIsolationLevel) -> Result<&'static str> {
    match level {
        TransactionIsolationLevel::ReadUncommitted => Ok("read uncommitted"),
        TransactionIsolationLevel::ReadCommitted => Ok("read committed"),
        TransactionIsolationLevel::RepeatableRead => Err(unsupported_isolation("repeatable read")),
        // SERIALIZABLE, and SNAPSHOT (SQL Server's), which is stronger than READ COMMITTED too.
        _ => Err(unsupported_isolation("serializable")),
    }
}

async fn commit(session: &Session) -> Result<Outcome> {
    let txn = session.shared.txn.take();
    match txn {
        None => {
            session.shared.notice("there is no transaction in progress");
            Ok(Outcome::End {
                tag: "COMMIT".into(),
            })
        }
        Some(t) if t.failed => Ok(Outcome::End {
            tag: "ROLLBACK".into(),
        }),
        Some(t) => {
            dml::commit_changes(session, t).await?;
            Ok(Outcome::End {
                tag: "COMMIT".into(),
            })
        }
    }
}

fn rollback_to(session: &Session, name: &Ident) -> Result<()> {
    with_block(session, "ROLLBACK TO SAVEPOINT", |t| {
        if t.rollback_to(&name.value) {
            t.failed = false;
            Ok(())
        } else {
            Err(no_savepoint(name))
        }
    })
}

/// The text of a `SET` value as PostgreSQL stores it.
fn value_text(expr: &Expr) -> String {
    match expr {
        Expr::Value(ValueWithSpan {
            value: Value::SingleQuotedString(s) | Value::DoubleQuotedString(s),
            ..
        }) => s.clone(),
        Expr::Value(ValueWithSpan { value, .. }) => value.to_string(),
        Expr::Identifier(ident) if ident.quote_style.is_some() => format!("\"{}\"", ident.value),
        Expr::Identifier(ident) => ident.value.to_lowercase(),
        other => other.to_string(),
    }
}

fn is_default(values: &[Expr]) -> bool {
    matches!(values, [Expr::Identifier(i)] if i.quote_style.is_none() && i.value.eq_ignore_ascii_case("default"))
}

fn set_statement(session: &Session, set: &Set) -> Result<()> {
    let mut settings = session.shared.settings.lock();
    match set {
        Set::SingleAssignment {
            variable,
            values,
            scope,
            ..
        } => {
            let name = name_parts(variable).join(".");
            if is_default(values) {
                return settings.reset(&name);
            }
            let value = values.iter().map(value_text).collect::<Vec<_>>().join(", ");
            if matches!(scope, Some(ContextModifier::Local)) {
                // Transaction-scoped values are kept for the session; deltagate has no
                // per-transaction settings yet.
                session
                    .shared
                    .notice(format!("SET LOCAL {name} applies to the session"));
            }
            settings.set(&name, &value)
        }
        Set::MultipleAssignments { assignments } => {
            for a in assignments {
                let name = name_parts(&a.name).join(".");
                settings.set(&name, &value_text(&a.value))?;
            }
            Ok(())
        }
        Set::SetTimeZone { value, .. } => settings.set("TimeZone", &value_text(value)),
        Set::SetNames { charset_name, .. } => settings.set("client_encoding", &charset_name.value),
        Set::SetNamesDefault {} => settings.reset("client_encoding"),
        Set::SetTransaction {
            modes,
            session: characteristics,
            ..
        } => {
            // Refused before anything is set, so a refused statement changes nothing.
            for mode in modes {
                if let TransactionMode::IsolationLevel(level) = mode {
                    check_isolation(level)?;
                }
            }
            for mode in modes {
                match mode {
                    TransactionMode::IsolationLevel(level) => {
                        let level = check_isolation(level)?;
                        let name = if *characteristics {
                            "default_transaction_isolation"
                        } else {
                            "transaction_isolation"
                        };
                        settings.set(name, level)?;
                    }
                    TransactionMode::AccessMode(mode) => {
                        let value = matches!(mode, TransactionAccessMode::ReadOnly);
                        let name = if *characteristics {
                            "default_transaction_read_only"
                        } else {
                            "transaction_read_only"
                        };
                        settings.set(name, if value { "on" } else { "off" })?;
                    }
                }
            }
            Ok(())
        }
        Set::SetRole { role_name, .. } => match role_name {
            Some(role)
                if role.value != session.shared.user
                    && !role.value.eq_ignore_ascii_case("none") =>
            {
                Err(SqlError::Unsupported(format!(
                    "role \"{}\" does not exist",
                    role.value
                )))
            }
            _ => Ok(()),
        },
        other => Err(SqlError::Unsupported(format!("{other} is not supported"))),
    }
}

/// The parameter a `SHOW` names.
pub fn variable_name(variable: &[Ident]) -> String {
    let words: Vec<String> = variable.iter().map(|i| i.value.to_lowercase()).collect();
    match words.join(" ").as_str() {
        "transaction isolation level" => "transaction_isolation".into(),
        "time zone" => "TimeZone".into(),
        "session authorization" => "session_authorization".into(),
        other => other.replace(' ', "."),
    }
}

/// Result columns of `SHOW name`.
pub fn show_schema(name: &str) -> SchemaRef {
    if name == "all" {
        Arc::new(Schema::new(vec![
            Field::new("name", DataType::Utf8, true),
            Field::new("setting", DataType::Utf8, true),
            Field::new("description", DataType::Utf8, true),
        ]))
    } else {
        Arc::new(Schema::new(vec![Field::new(
            Settings::canonical_name(name),
            DataType::Utf8,
            true,
        )]))
    }
}

fn show(session: &Session, name: &str) -> Result<Outcome> {
    let settings = session.shared.settings.lock();
    let batch = if name == "all" {
        let all = settings.all();
        RecordBatch::try_new(
            show_schema(name),
            vec![
                Arc::new(StringArray::from_iter_values(
                    all.iter().map(|r| r.0.as_str()),
                )),
                Arc::new(StringArray::from_iter_values(
                    all.iter().map(|r| r.1.as_str()),
                )),
                Arc::new(StringArray::from_iter_values(
                    all.iter().map(|r| r.2.as_str()),
                )),
            ],
        )?
    } else {
        text_rows(&Settings::canonical_name(name), vec![settings.get(name)?])?
    };
    rows_outcome(batch, "SHOW")
}

fn discard(session: &Session, what: &DiscardObject) -> Outcome {
    match what {
        DiscardObject::ALL => {
            session.shared.settings.lock().reset_all();
            *session.shared.sequences.lock() = Default::default();
            command("DISCARD ALL")
        }
        DiscardObject::SEQUENCES => {
            *session.shared.sequences.lock() = Default::default();
            command("DISCARD SEQUENCES")
        }
        DiscardObject::PLANS => command("DISCARD PLANS"),
        DiscardObject::TEMP => command("DISCARD TEMP"),
    }
}
