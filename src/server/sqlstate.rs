//! The one place errors become SQLSTATEs (contract 6 of DESIGN.md).
//!
//! Every [`SqlError`] maps to a code and a severity here and nowhere else. DataFusion reports
//! user mistakes as typed errors where it can (`SchemaError`, `SQL`) and as plan-error text
//! where it cannot; the root cause is found with `find_root`, our own errors wrapped in
//! `External` are unwrapped, and the remaining plan messages are classified by the phrases
//! DataFusion uses. A user's mistake is never `XX000`; internal errors are logged with their
//! detail and reported with a short message.

use datafusion::common::SchemaError;
use datafusion::error::DataFusionError;
use pgwire::error::{ErrorInfo, PgWireError};
use tracing::error;

use crate::pgtypes::TypeError;
use crate::sql::SqlError;
use crate::storage::StorageError;
use crate::storage::names::NameError;

use super::auth::{AuthError, ScramError};
use super::wire::ProtocolError;

/// A SQLSTATE and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coded {
    pub code: &'static str,
    pub message: String,
    pub detail: Option<String>,
}

fn coded(code: &'static str, message: impl Into<String>) -> Coded {
    Coded {
        code,
        message: message.into(),
        detail: None,
    }
}

/// Maps a SQL-layer error to its SQLSTATE.
pub fn classify(error: &SqlError) -> Coded {
    match error {
        SqlError::Parse(e) => coded("42601", e.to_string()),
        SqlError::Syntax(m) => coded("42601", m),
        SqlError::Storage(e) => storage(e),
        SqlError::DataFusion(e) => datafusion(e),
        SqlError::Arrow(e) => arrow(&e.to_string()),
        SqlError::Type(TypeError::Unknown(_)) => coded("42704", error.to_string()),
        SqlError::Type(TypeError::Unsupported(_)) => coded("0A000", error.to_string()),
        SqlError::Type(TypeError::InvalidModifier(_)) => coded("22023", error.to_string()),
        SqlError::UndefinedTable(_) => coded("42P01", error.to_string()),
        SqlError::UndefinedColumn { .. } => coded("42703", error.to_string()),
        SqlError::DuplicateColumn(_) => coded("42701", error.to_string()),
        SqlError::MultiplePrimaryKeys(_) => coded("42P16", error.to_string()),
        SqlError::NotNullViolation { .. } => coded("23502", error.to_string()),
        SqlError::StringTooLong(_) => coded("22001", error.to_string()),
        SqlError::UniqueViolation { detail, .. } => Coded {
            code: "23505",
            message: error.to_string(),
            detail: Some(detail.clone()),
        },
        SqlError::InFailedTransaction => coded("25P02", error.to_string()),
        SqlError::ActiveTransaction(m) => coded("25P01", m),
        SqlError::InTransactionBlock(m) => coded("25001", m),
        SqlError::Unsupported(m) => coded("0A000", m),
        SqlError::UndefinedParameter(_) => coded("42704", error.to_string()),
        SqlError::InvalidParameterValue(m) => coded("22023", m),
        SqlError::InvalidTextRepresentation(m) => coded("22P02", m),
        SqlError::UndefinedFunction(m) => coded("42883", m),
        SqlError::NoSchemaSelected => coded("3F000", error.to_string()),
        SqlError::ReadOnly(_) => coded("25006", error.to_string()),
        SqlError::UndefinedPreparedStatement(_) => coded("26000", error.to_string()),
        SqlError::ParameterCount { .. } => coded("08P01", error.to_string()),
        SqlError::Canceled => coded("57014", error.to_string()),
        // statement_too_complex, PostgreSQL's code for "stack depth limit exceeded".
        SqlError::TooComplex(_) => coded("54001", error.to_string()),
        SqlError::Copy { code, message, .. } => coded(code, message),
        SqlError::InvalidConflictTarget(m) => coded("42P10", m),
        SqlError::UndefinedObject(m) => coded("42704", m),
        SqlError::CardinalityViolation(m) => coded("21000", m),
        SqlError::Internal(m) => internal(m),
    }
}

fn internal(detail: &str) -> Coded {
    error!(detail, "internal error");
    coded("XX000", format!("internal error: {detail}"))
}

fn storage(e: &StorageError) -> Coded {
    let message = e.to_string();
    match e {
        StorageError::UndefinedTable(_) | StorageError::UndefinedSequence(_) => {
            coded("42P01", message)
        }
        StorageError::DuplicateTable(_) => coded("42P07", message),
        StorageError::UndefinedSchema(_) => coded("3F000", message),
        StorageError::DuplicateSchema(_) => coded("42P06", message),
        StorageError::SchemaNotEmpty(_) => coded("2BP01", message),
        StorageError::UndefinedIndex(_) => coded("42704", message),
        StorageError::DuplicateColumn { .. } => coded("42701", message),
        StorageError::UndefinedColumn { .. } => coded("42703", message),
        StorageError::SequenceExhausted { .. } => coded("2200H", message),
        StorageError::SequenceOutOfBounds { .. } => coded("22003", message),
        StorageError::Commit { source, .. } => {
            if source.to_string().contains("onflict") {
                coded("40001", message)
            } else {
                error!(error = %source, "commit failed");
                coded("58030", message)
            }
        }
        StorageError::ObjectStore(_) | StorageError::Location(_) => {
            error!(error = %e, "storage unavailable");
            coded("58030", message)
        }
        // insufficient_resources: the client may retry later; nothing of the write is stored.
        StorageError::BufferFull { .. } => coded("53000", message),
        StorageError::Unsupported(_) => coded("0A000", message),
        StorageError::Wal(_) => {
            error!(error = %e, "write-ahead log failed");
            coded("58030", message)
        }
        StorageError::DataFusion(inner) => datafusion(inner),
        StorageError::Conflict { .. } => coded("40001", message),
        StorageError::Unavailable { .. } => coded("XX001", message),
        StorageError::Name(NameError::Empty) => coded("42601", message),
        StorageError::Name(NameError::TooLong(_)) => coded("42622", message),
        StorageError::Delta(_) | StorageError::Metadata(_) => internal(&message),
    }
}

fn arrow(message: &str) -> Coded {
    let lower = message.to_lowercase();
    if lower.contains("divide by zero") || lower.contains("division by zero") {
        coded("22012", "division by zero")
    } else if lower.contains("overflow")
        || lower.contains("out of range")
        || lower.contains("too large")
    {
        coded("22003", message)
    } else if lower.contains("cannot cast")
        || lower.contains("cast error")
        || lower.contains("parser error")
        || lower.contains("invalid")
        || lower.contains("parse")
    {
        coded("22P02", message)
    } else {
        coded("22000", message)
    }
}

/// Maps a DataFusion error to its SQLSTATE.
pub fn datafusion(e: &DataFusionError) -> Coded {
    let root = e.find_root();
    match root {
        DataFusionError::External(inner) => {
            if let Some(s) = inner.downcast_ref::<StorageError>() {
                return storage(s);
            }
            if let Some(s) = inner.downcast_ref::<SqlError>() {
                return classify(s);
            }
            if let Some(d) = inner.downcast_ref::<DataFusionError>() {
                return datafusion(d);
            }
            coded("XX000", inner.to_string())
        }
        DataFusionError::SchemaError(schema, _) => match schema.as_ref() {
            SchemaError::FieldNotFound { field, .. } => {
                coded("42703", format!("column \"{}\" does not exist", field.name))
            }
            SchemaError::AmbiguousReference { field } => coded(
                "42702",
                format!("column reference \"{}\" is ambiguous", field.name),
            ),
            SchemaError::DuplicateQualifiedField { .. }
            | SchemaError::DuplicateUnqualifiedField { .. } => coded("42701", root.to_string()),
        },
        DataFusionError::SQL(parse, _) => coded("42601", parse.to_string()),
        DataFusionError::NotImplemented(m) => coded("0A000", m.clone()),
        DataFusionError::ArrowError(a, _) => arrow(&a.to_string()),
        DataFusionError::ResourcesExhausted(m) => coded("53200", m.clone()),
        DataFusionError::Plan(m) => plan(m),
        DataFusionError::Execution(m) => execution(m),
        DataFusionError::Configuration(m) => coded("22023", m.clone()),
        DataFusionError::Context(_, inner) => datafusion(inner),
        DataFusionError::Shared(inner) => datafusion(inner),
        DataFusionError::Internal(m) => {
            // Some user errors surface as internal ones (bad casts in literals).
            if m.contains("Cannot cast") || m.contains("Unsupported CAST") {
                coded("22P02", m.clone())
            } else {
                internal(m)
            }
        }
        other => internal(&other.to_string()),
    }
}

fn plan(m: &str) -> Coded {
    let lower = m.to_lowercase();
    if lower.contains("table") && lower.contains("not found") {
        // DataFusion: "table 'db.public.t' not found"
        let name = m
            .split('\'')
            .nth(1)
            .map(|q| q.rsplit('.').next().unwrap_or(q).to_string())
            .unwrap_or_default();
        coded("42P01", format!("relation \"{name}\" does not exist"))
    } else if lower.contains("invalid function") || lower.contains("no function matches") {
        coded("42883", m)
    } else if lower.contains("does not support") && lower.contains("argument") {
        coded("42883", m)
    } else if lower.contains("cannot be cast")
        || lower.contains("cannot cast")
        || lower.contains("coercion")
    {
        coded("42804", m)
    } else if lower.contains("placeholder") {
        coded("42P18", m)
    } else if lower.contains("column count") || lower.contains("doesn't match") {
        coded("42601", m)
    } else if lower.contains("must appear in the group by")
        || lower.contains("projection references non-aggregate")
    {
        coded("42803", m)
    } else if lower.contains("ambiguous") {
        coded("42702", m)
    } else if lower.contains("unsupported") || lower.contains("not supported") {
        coded("0A000", m)
    } else {
        coded("42601", m)
    }
}

fn execution(m: &str) -> Coded {
    let lower = m.to_lowercase();
    if lower.contains("currval") || lower.contains("lastval") {
        coded("55000", m)
    } else if lower.contains("divide by zero") || lower.contains("division by zero") {
        coded("22012", "division by zero")
    } else if lower.contains("overflow") || lower.contains("out of range") {
        coded("22003", m)
    } else if lower.contains("cast") || lower.contains("parse") || lower.contains("invalid") {
        coded("22P02", m)
    } else if lower.contains("more than one row") || lower.contains("scalar subquery") {
        coded("21000", m)
    } else {
        coded("22000", m)
    }
}

/// The wire error for a SQL-layer error.
pub fn to_pgwire(error: &SqlError) -> PgWireError {
    let Coded {
        code,
        message,
        detail,
    } = classify(error);
    let mut info = ErrorInfo::new("ERROR".to_string(), code.to_string(), message);
    info.detail = detail;
    if let SqlError::Copy { context, .. } = error {
        info.where_context = Some(context.clone());
    }
    PgWireError::UserError(Box::new(info))
}

/// The `ErrorResponse` body for a SQL-layer error.
pub fn to_error_info(error: &SqlError) -> ErrorInfo {
    match to_pgwire(error) {
        PgWireError::UserError(info) => *info,
        other => ErrorInfo::from(other),
    }
}

/// A FATAL error ending the connection, for startup and authentication.
pub fn fatal(code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "FATAL".to_string(),
        code.to_string(),
        message.into(),
    )))
}

/// A FATAL error for a SQL-layer error, for one that ends the connection (opening a session).
pub(crate) fn fatal_sql(error: &SqlError) -> PgWireError {
    let mut info = to_error_info(error);
    info.severity = "FATAL".into();
    PgWireError::UserError(Box::new(info))
}

/// The error for a Bind parameter value whose decoder failed outright: 22P03
/// (`invalid_binary_representation`), as PostgreSQL answers a binary value it cannot read.
pub(crate) fn undecodable_parameter() -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_string(),
        "22P03".to_string(),
        "a parameter value cannot be decoded as its type".to_string(),
    )))
}

/// The code of a protocol violation: `0A000` for a protocol version, `22023` for a format code,
/// else `08P01`.
fn protocol_code(error: &ProtocolError) -> &'static str {
    match error {
        ProtocolError::UnsupportedProtocol(..) => "0A000",
        ProtocolError::FormatCode(_) => "22023",
        _ => "08P01",
    }
}

/// The wire error for a protocol violation: FATAL when the connection ends with it (a stream
/// that cannot be framed), else an ERROR the connection survives (a malformed message).
pub(crate) fn protocol(error: &ProtocolError, fatal: bool) -> PgWireError {
    let severity = if fatal { "FATAL" } else { "ERROR" };
    PgWireError::UserError(Box::new(ErrorInfo::new(
        severity.to_string(),
        protocol_code(error).to_string(),
        error.to_string(),
    )))
}

/// The wire error for a refused startup or authentication: always FATAL.
pub(crate) fn authentication(error: &AuthError) -> PgWireError {
    let code = match error {
        AuthError::NoUser | AuthError::EncryptionRequired | AuthError::UnknownRole(_) => "28000",
        AuthError::Password(_) | AuthError::EmptyPassword => "28P01",
        AuthError::UnknownDatabase(_) => "3D000",
        AuthError::TooManyClients => "53300",
        AuthError::Protocol(e) => protocol_code(e),
        AuthError::Scram(ScramError::Authzid | ScramError::Extension) => "0A000",
        AuthError::Scram(ScramError::Failed) => "28P01",
        AuthError::Scram(
            ScramError::Mechanism
            | ScramError::Malformed(_)
            | ScramError::Nonce
            | ScramError::ChannelBinding,
        ) => "08P01",
    };
    let mut info = ErrorInfo::new("FATAL".to_string(), code.to_string(), error.to_string());
    if let AuthError::Scram(ScramError::Malformed(detail)) = error {
        info.detail = Some(detail.clone());
    }
    PgWireError::UserError(Box::new(info))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::SqlError;

    #[test]
    fn each_client_visible_error_has_its_code() {
        let cases: Vec<(SqlError, &str)> = vec![
            (SqlError::UndefinedTable("t".into()), "42P01"),
            (
                SqlError::UndefinedColumn {
                    table: "t".into(),
                    column: "c".into(),
                },
                "42703",
            ),
            (StorageError::DuplicateTable("t".into()).into(), "42P07"),
            (SqlError::Syntax("x".into()), "42601"),
            (
                SqlError::StringTooLong("character varying(3)".into()),
                "22001",
            ),
            (
                SqlError::NotNullViolation {
                    table: "t".into(),
                    column: "c".into(),
                },
                "23502",
            ),
            (
                SqlError::UniqueViolation {
                    constraint: "t_pkey".into(),
                    detail: "d".into(),
                },
                "23505",
            ),
            (SqlError::InFailedTransaction, "25P02"),
            (SqlError::Unsupported("x".into()), "0A000"),
            (SqlError::InvalidTextRepresentation("x".into()), "22P02"),
            (SqlError::TooComplex("x".into()), "54001"),
            (
                DataFusionError::Plan("table 'db.public.nosuch' not found".into()).into(),
                "42P01",
            ),
            (
                DataFusionError::Plan("Invalid function 'nosuch'.".into()).into(),
                "42883",
            ),
            (
                DataFusionError::ResourcesExhausted("mem".into()).into(),
                "53200",
            ),
        ];
        for (error, code) in cases {
            assert_eq!(classify(&error).code, code, "{error}");
        }
        assert_eq!(
            classify(&DataFusionError::Plan("table 'db.public.nosuch' not found".into()).into())
                .message,
            "relation \"nosuch\" does not exist"
        );
    }
}
