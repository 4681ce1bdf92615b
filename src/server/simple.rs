//! The simple query protocol: a `Query` message's statements run, their responses, and the
//! `ReadyForQuery` that ends them.
//!
//! pgwire's own `on_query` guesses the transaction status it reports from the responses it
//! sends (`BEGIN` opens, an error fails, `COMMIT`/`ROLLBACK` end); it cannot know that
//! `ROLLBACK TO SAVEPOINT` repairs a failed block, or that a multi-statement string's
//! implicit transaction ended. So this one reports the session's own state
//! ([`reply::ready_status`](super::reply::ready_status)), and otherwise sends what pgwire's
//! does. Any error fails the transaction as in PostgreSQL, also a syntax error and one met
//! while rows are sent (that one is reported by the connection loop).

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use futures::future::{Either, select};
use futures::{Sink, SinkExt};
use pgwire::api::copy::{send_copy_both_response, send_copy_in_response, send_copy_out_response};
use pgwire::api::portal::Format;
use pgwire::api::query::{
    SimpleQueryHandler, send_execution_response, send_query_response, send_ready_for_query,
};
use pgwire::api::results::Response;
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, ConnectionHandle, PgWireConnectionState};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::response::EmptyQueryResponse;
use pgwire::messages::simplequery::Query;

use crate::sql::{Session, SqlError};

use super::errors::to_error_info;
use super::fastpath::batch::{self, Then};
use super::handlers::{QueryHandler, forget_prepared, response};
use super::reply::{ready_status, send_side_messages, session};

/// A string of only semicolons and white space is an empty query, as in PostgreSQL.
fn is_empty_query(query: &str) -> bool {
    query.chars().all(|c| c == ';' || c.is_whitespace())
}

/// The error of a failed statement, which fails the session's transaction.
fn failed(session: &Session, error: &SqlError) -> Response {
    session.statement_failed();
    Response::Error(Box::new(to_error_info(error)))
}

#[async_trait]
impl SimpleQueryHandler for QueryHandler {
    async fn on_query<C>(&self, client: &mut C, query: Query) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        batch::flush(client, &self.held, Then::More).await?;
        batch::forget_unnamed_portal(&self.held);
        if !matches!(client.state(), PgWireConnectionState::ReadyForQuery) {
            return Err(PgWireError::NotReadyForQuery);
        }
        let session = session(client)?;
        client.set_state(PgWireConnectionState::QueryInProgress);
        if is_empty_query(&query.query) {
            client
                .feed(PgWireBackendMessage::EmptyQueryResponse(
                    EmptyQueryResponse::new(),
                ))
                .await?;
        } else {
            let handle = client
                .session_extensions()
                .get::<Arc<ConnectionHandle>>()
                .map(|h| h.as_ref().clone());
            let responses = match handle {
                Some(handle) => {
                    let cancelled = handle.start_query().await;
                    match select(self.do_query(client, &query.query), cancelled).await {
                        Either::Left((responses, _)) => responses,
                        Either::Right(_) => Err(PgWireError::QueryCanceled),
                    }
                }
                None => self.do_query(client, &query.query).await,
            }?;
            for response in responses {
                send(client, response).await?;
            }
        }
        if !matches!(client.state(), PgWireConnectionState::CopyInProgress(_)) {
            // A COPY FROM STDIN sends ReadyForQuery when it ends.
            client.set_state(PgWireConnectionState::ReadyForQuery);
            let status = ready_status(&session);
            client.set_transaction_status(status);
            send_ready_for_query(client, status).await?;
        }
        Ok(())
    }

    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let session = session(client)?;
        let statements = match session.parse(query) {
            Ok(statements) => statements,
            Err(e) => return Ok(vec![failed(&session, &e)]),
        };
        for statement in &statements {
            forget_prepared(client, statement);
        }
        let results = session.execute_batch(statements).await;
        send_side_messages(client, &session).await?;
        let mut responses = Vec::with_capacity(results.len());
        for result in results {
            match result.and_then(|o| {
                response(&session, o, &Format::UnifiedText)
                    .map_err(|e| SqlError::Internal(e.to_string()))
            }) {
                Ok(r) => responses.push(r),
                Err(e) => {
                    responses.push(failed(&session, &e));
                    break;
                }
            }
        }
        Ok(responses)
    }
}

/// Sends one statement's response, as pgwire's `on_query` does.
async fn send<C>(client: &mut C, response: Response) -> PgWireResult<()>
where
    C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    match response {
        Response::EmptyQuery => {
            client
                .feed(PgWireBackendMessage::EmptyQueryResponse(
                    EmptyQueryResponse::new(),
                ))
                .await?;
        }
        Response::Query(results) => send_query_response(client, results, true).await?,
        Response::Execution(tag)
        | Response::TransactionStart(tag)
        | Response::TransactionEnd(tag) => send_execution_response(client, tag).await?,
        Response::Error(e) => {
            client
                .feed(PgWireBackendMessage::ErrorResponse((*e).into()))
                .await?;
        }
        Response::CopyIn(result) => {
            send_copy_in_response(client, result).await?;
            client.set_state(PgWireConnectionState::CopyInProgress(false));
        }
        Response::CopyOut(result) => send_copy_out_response(client, result).await?,
        Response::CopyBoth(result) => {
            send_copy_both_response(client, result).await?;
            client.set_state(PgWireConnectionState::CopyInProgress(false));
        }
    }
    Ok(())
}
