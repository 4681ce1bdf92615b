//! Error responses: SQLSTATEs (assigned in [`sqlstate`](crate::sql::sqlstate)) as the wire
//! sends them, with severity, detail and COPY context.
//!
//! A statement's error is an ERROR the session survives; failures of startup, authentication
//! and framing are FATAL and end the connection.

use pgwire::error::{ErrorInfo, PgWireError};

use crate::sql::SqlError;
use crate::sql::sqlstate::{Coded, classify, code};

use super::fastpath::wire::ProtocolError;

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

/// The error for a Bind parameter value whose decoder failed outright:
/// `invalid_binary_representation`, as PostgreSQL answers a binary value it cannot read.
pub(crate) fn undecodable_parameter() -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_string(),
        code::INVALID_BINARY_REPRESENTATION.to_string(),
        "a parameter value cannot be decoded as its type".to_string(),
    )))
}

/// The code of a protocol violation: a protocol version is not supported, a format code is an
/// invalid parameter value, anything else violates the protocol.
pub(super) fn protocol_code(error: &ProtocolError) -> &'static str {
    match error {
        ProtocolError::UnsupportedProtocol(..) => code::FEATURE_NOT_SUPPORTED,
        ProtocolError::FormatCode(_) => code::INVALID_PARAMETER_VALUE,
        _ => code::PROTOCOL_VIOLATION,
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

/// The error for a message that needs a session on a connection that has none.
pub(crate) fn no_session() -> PgWireError {
    fatal(
        code::PROTOCOL_VIOLATION,
        "no session: authentication did not complete",
    )
}

/// A NOTICE raised by a statement.
pub(crate) fn notice(message: String) -> ErrorInfo {
    ErrorInfo::new("NOTICE".into(), code::SUCCESSFUL_COMPLETION.into(), message)
}

/// The error that ends a `COPY ... FROM STDIN` the client abandoned with CopyFail.
pub(crate) fn copy_failed(message: &str) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".into(),
        code::QUERY_CANCELED.into(),
        format!("COPY from stdin failed: {message}"),
    )))
}
