//! What every handler needs besides its own work: the connection's session, the transaction
//! status to report, and the messages a statement leaves for the client besides its result
//! (notices, changed parameters).

use std::sync::Arc;

use futures::{Sink, SinkExt};
use pgwire::api::ClientInfo;
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::response::{NoticeResponse, TransactionStatus};
use pgwire::messages::startup::ParameterStatus;

use crate::sql::{Session, TxnStatus};

use super::errors;

/// The session of a connection, created at the end of authentication.
pub(super) fn session<C: ClientInfo>(client: &C) -> PgWireResult<Arc<Session>> {
    client
        .session_extensions()
        .get::<Arc<Session>>()
        .map(|s| s.as_ref().clone())
        .ok_or_else(errors::no_session)
}

/// The transaction status `ReadyForQuery` reports: the session's, never a guess from the
/// responses sent.
pub(super) fn ready_status(session: &Session) -> TransactionStatus {
    match session.txn_status() {
        TxnStatus::Idle => TransactionStatus::Idle,
        TxnStatus::InBlock => TransactionStatus::Transaction,
        TxnStatus::Failed => TransactionStatus::Error,
    }
}

/// Sends notices raised by the statement and `ParameterStatus` for changed parameters.
pub(super) async fn send_side_messages<C>(client: &mut C, session: &Session) -> PgWireResult<()>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    for notice in session.take_notices() {
        client
            .feed(PgWireBackendMessage::NoticeResponse(NoticeResponse::from(
                errors::notice(notice),
            )))
            .await?;
    }
    for (name, value) in session.take_unreported_settings() {
        client
            .feed(PgWireBackendMessage::ParameterStatus(ParameterStatus::new(
                name.to_string(),
                value,
            )))
            .await?;
    }
    Ok(())
}
