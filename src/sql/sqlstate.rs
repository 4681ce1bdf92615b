//! The one place errors become SQLSTATEs (ARCHITECTURE.md contract 6).
//!
//! Every code deltagate sends is written in this module and nowhere else: a test reads the
//! source tree for stray ones. [`classify`] maps every [`SqlError`] to a code and a message.
//! DataFusion reports user mistakes as typed errors where it can (`SchemaError`, `SQL`) and as
//! plan-error text where it cannot; the root cause is found with `find_root`, our own errors
//! wrapped in `External` are unwrapped, and the remaining plan messages are classified by the
//! phrases DataFusion uses. A user's mistake is never `XX000`; internal errors are logged with
//! their detail and reported with a short message. Conditions the server meets outside any
//! statement (startup, authentication, framing) take the named codes of [`code`]. The server
//! layer turns a [`Coded`] into an error response; nothing here knows the wire.

use datafusion::common::SchemaError;
use datafusion::error::DataFusionError;
use tracing::error;

use crate::pgtypes::TypeError;
use crate::pgtypes::datetime::DateTimeError;
use crate::storage::StorageError;
use crate::storage::names::NameError;

use super::{CopyFault, SqlError};

/// Codes of conditions the server layer meets outside any statement, named as in
/// PostgreSQL's `errcodes.txt`.
pub mod code {
    /// Notices.
    pub const SUCCESSFUL_COMPLETION: &str = "00000";
    pub const PROTOCOL_VIOLATION: &str = "08P01";
    pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
    pub const INVALID_PARAMETER_VALUE: &str = "22023";
    pub const INVALID_BINARY_REPRESENTATION: &str = "22P03";
    pub const INVALID_AUTHORIZATION_SPECIFICATION: &str = "28000";
    pub const INVALID_PASSWORD: &str = "28P01";
    pub const INVALID_CATALOG_NAME: &str = "3D000";
    pub const TOO_MANY_CONNECTIONS: &str = "53300";
    pub const QUERY_CANCELED: &str = "57014";
}

fn copy_fault(fault: CopyFault) -> &'static str {
    match fault {
        CopyFault::BadCopyFileFormat => "22P04",
        CopyFault::InvalidTextRepresentation => "22P02",
        CopyFault::InvalidBinaryRepresentation => "22P03",
        CopyFault::NumericValueOutOfRange => "22003",
        CopyFault::UntranslatableCharacter => "22021",
        CopyFault::StringDataRightTruncation => "22001",
        CopyFault::NotNullViolation => "23502",
    }
}

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
        SqlError::Type(TypeError::NumericOverflow) => coded("22003", error.to_string()),
        SqlError::UndefinedTable(_) => coded("42P01", error.to_string()),
        SqlError::UndefinedColumn { .. } => coded("42703", error.to_string()),
        SqlError::DuplicateColumn(_) => coded("42701", error.to_string()),
        SqlError::MultiplePrimaryKeys(_) => coded("42P16", error.to_string()),
        SqlError::NotNullViolation { .. } => coded("23502", error.to_string()),
        SqlError::StringTooLong(_) => coded("22001", error.to_string()),
        SqlError::InFailedTransaction => coded("25P02", error.to_string()),
        SqlError::ActiveTransaction(m) => coded("25P01", m),
        SqlError::NoSavepoint(_) => coded("3B001", error.to_string()),
        SqlError::InTransactionBlock(m) => coded("25001", m),
        SqlError::Unsupported(m) => coded("0A000", m),
        SqlError::UndefinedParameter(_) => coded("42704", error.to_string()),
        SqlError::InvalidParameterValue(m) => coded("22023", m),
        SqlError::InvalidTextRepresentation(m) => coded("22P02", m),
        SqlError::DateTime(e) => coded(
            match e {
                DateTimeError::Syntax(..) => "22007",
                DateTimeError::Range(_) => "22008",
                DateTimeError::Unsupported(_) => "0A000",
            },
            error.to_string(),
        ),
        SqlError::InvalidFormat(m) => coded("22007", m),
        SqlError::NumericOverflow(m) => coded("22003", m),
        SqlError::UndefinedFunction(m) => coded("42883", m),
        SqlError::NoSchemaSelected => coded("3F000", error.to_string()),
        SqlError::ReadOnly(_) => coded("25006", error.to_string()),
        SqlError::UndefinedPreparedStatement(_) => coded("26000", error.to_string()),
        SqlError::ParameterCount { .. } => coded("08P01", error.to_string()),
        SqlError::Canceled => coded("57014", error.to_string()),
        // statement_too_complex, PostgreSQL's code for "stack depth limit exceeded".
        SqlError::TooComplex(_) => coded("54001", error.to_string()),
        SqlError::Copy { fault, message, .. } => coded(copy_fault(*fault), message),
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
        StorageError::UniqueViolation { detail, .. } => Coded {
            code: "23505",
            message,
            detail: Some(detail.clone()),
        },
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
    } else if lower.contains("invalid function")
        || lower.contains("no function matches")
        || (lower.contains("does not support") && lower.contains("argument"))
    {
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

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
                StorageError::UniqueViolation {
                    constraint: "t_pkey".into(),
                    detail: "d".into(),
                }
                .into(),
                "23505",
            ),
            (SqlError::InFailedTransaction, "25P02"),
            (SqlError::NoSavepoint("a".into()), "3B001"),
            (SqlError::Unsupported("x".into()), "0A000"),
            (SqlError::InvalidTextRepresentation("x".into()), "22P02"),
            (DateTimeError::Syntax("date", "x".into()).into(), "22007"),
            (DateTimeError::Range("x".into()).into(), "22008"),
            (SqlError::InvalidFormat("x".into()), "22007"),
            (SqlError::NumericOverflow("x".into()), "22003"),
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

    /// Whether a string literal's text looks like a SQLSTATE: five digits or capitals, at
    /// least one a digit (so words such as `RESET` do not count).
    fn looks_like_sqlstate(text: &str) -> bool {
        text.len() == 5
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
            && text.bytes().any(|b| b.is_ascii_digit())
    }

    fn stray_codes(dir: &Path, stray: &mut Vec<String>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .expect("source folder")
            .map(|e| e.expect("entry").path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                stray_codes(&path, stray);
            } else if path.extension().is_some_and(|e| e == "rs") && !path.ends_with(file!()) {
                let text = std::fs::read_to_string(&path).expect("source file");
                for (n, line) in text.lines().enumerate() {
                    // Odd pieces between quotes are string literals' texts.
                    if line.split('"').skip(1).step_by(2).any(looks_like_sqlstate) {
                        stray.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
                    }
                }
            }
        }
    }

    #[test]
    fn codes_are_assigned_only_here() {
        assert!(looks_like_sqlstate("22P04") && looks_like_sqlstate("08006"));
        assert!(!looks_like_sqlstate("RESET") && !looks_like_sqlstate("22p04"));
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut stray = Vec::new();
        stray_codes(&src, &mut stray);
        assert!(
            stray.is_empty(),
            "SQLSTATE literals outside src/sql/sqlstate.rs:\n{}",
            stray.join("\n")
        );
        // The test reads the tree: it must have found this file's own codes to skip.
        assert!(
            std::fs::read_to_string(src.join("sql/sqlstate.rs"))
                .is_ok_and(|t| t.contains("\"42P01\""))
        );
    }
}
