//! Running the held executions of a batch as one insert, and sending their replies in the
//! order of the messages they answer (see [`flush`]).
//!
//! The rows of a held batch go to [`Session::execute_many`] decoded column by column, or value
//! by value when a column does not decode that way; when the batch path does not take the
//! statement after all they run one by one, as if never held. An error is reported at the
//! first held execution, with only the replies before it (see the parent module's invariants).
//! Outside a transaction block, a batch run at Sync commits on its own; one run while more of
//! the pipeline follows joins the implicit transaction that the Sync commits ([`Then`]).
//! Called by the handlers before any message that is not the batch's own, and by the
//! connection loop when a batch is full or a malformed message follows it.

use std::sync::Arc;

use futures::{Sink, SinkExt};
use pgwire::api::ClientInfo;
use pgwire::api::results::Tag;
use pgwire::api::stmt::StoredStatement;
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::data::NoData;
use pgwire::messages::extendedquery::BindComplete;
use pgwire::messages::response::CommandComplete;

use crate::server::errors::to_pgwire;
use crate::server::params;
use crate::server::reply::{send_side_messages, session};
use crate::sql::{Executions, PreparedStatement, Session};

use super::{Batch, Held, Reply, Then};

/// Runs the held executions and sends their replies; an error is for the caller to report
/// (the connection then skips messages until Sync). The latest Bind keeps standing for its
/// portal (see [`store_portal`](super::store_portal)).
///
/// # Errors
/// The batch's error, or a failure to send.
pub(in crate::server) async fn flush<C>(
    client: &mut C,
    batch: &Batch,
    then: Then,
) -> PgWireResult<()>
where
    C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
    C::Error: std::fmt::Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let held = {
        let mut held = batch.lock();
        if held.is_empty() {
            return Ok(());
        }
        let mut taken = std::mem::take(&mut *held);
        let latest = taken
            .rows
            .len()
            .checked_sub(1)
            .map(|row| taken.rows.bind(row, &taken.portal, &taken.result_formats));
        if std::mem::take(&mut taken.bound) {
            taken.rows.pop();
        }
        held.unstored = taken.statement.clone().zip(latest);
        taken
    };
    // Boxed: running a batch is a large future, and this one is awaited on every message.
    Box::pin(run(client, held, then)).await
}

async fn run<C>(client: &mut C, held: Held, then: Then) -> PgWireResult<()>
where
    C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
    C::Error: std::fmt::Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let Some(stored) = held.statement.clone() else {
        return send_replies(client, &held.replies, &[]).await;
    };
    let Some(statement) = stored.statement.statement.as_ref() else {
        return send_replies(client, &held.replies, &[]).await;
    };
    if held.rows.is_empty() {
        return send_replies(client, &held.replies, &[]).await;
    }
    let session = session(client)?;
    if then == Then::More {
        session.open_pipeline();
    }
    let result = match params::columns(&stored, &held.rows) {
        Some(columns) => {
            let executions = Executions::Columns {
                params: &columns,
                count: held.rows.len(),
            };
            session.execute_many(statement, executions).await
        }
        None => match params::each(&stored, &held.rows) {
            Ok(values) => {
                let values: Vec<_> = values.iter().map(Some).collect();
                session
                    .execute_many(statement, Executions::Each(&values))
                    .await
            }
            Err(e) => return fail(client, &held.replies, e).await,
        },
    };
    send_side_messages(client, &session).await?;
    match result {
        Ok(Some(rows)) => send_replies(client, &held.replies, &rows).await,
        Ok(None) => one_by_one(client, &session, &stored, statement, held).await,
        Err(e) => fail(client, &held.replies, to_pgwire(&e)).await,
    }
}

/// Reports the batch's error at its first execution: only that execution's BindComplete (and
/// Describe) precede it.
async fn fail<C>(client: &mut C, replies: &[Reply], error: PgWireError) -> PgWireResult<()>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let first = replies
        .iter()
        .position(|r| matches!(r, Reply::Executed))
        .unwrap_or(replies.len());
    send_replies(client, &replies[..first], &[]).await?;
    Err(error)
}

/// Sends the held replies; the n-th execution reports `rows[n]` rows (0 past the end).
async fn send_replies<C>(client: &mut C, replies: &[Reply], rows: &[usize]) -> PgWireResult<()>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let mut executed = rows.iter();
    // Formatted once per distinct count (a batch's rows mostly all say `INSERT 0 1`).
    let mut tag: Option<(usize, String)> = None;
    for reply in replies {
        let message = match reply {
            Reply::BindComplete => PgWireBackendMessage::BindComplete(BindComplete::new()),
            Reply::NoData => PgWireBackendMessage::NoData(NoData::new()),
            Reply::Executed => {
                let rows = executed.next().copied().unwrap_or(0);
                let text = match &tag {
                    Some((n, text)) if *n == rows => text.clone(),
                    _ => {
                        let text = CommandComplete::from(Tag::new("INSERT 0").with_rows(rows)).tag;
                        tag = Some((rows, text.clone()));
                        text
                    }
                };
                PgWireBackendMessage::CommandComplete(CommandComplete::new(text))
            }
        };
        client.feed(message).await?;
    }
    Ok(())
}

/// The executions of a statement the batch path does not take after all (a value the
/// planner must cast, say), each run on its own as if it had never been held.
async fn one_by_one<C>(
    client: &mut C,
    session: &Session,
    stored: &Arc<StoredStatement<PreparedStatement>>,
    statement: &datafusion::sql::sqlparser::ast::Statement,
    held: Held,
) -> PgWireResult<()>
where
    C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
    C::Error: std::fmt::Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    if held.rows.len() > 1 {
        // One by one, the executions still succeed or fail together.
        session.open_pipeline();
    }
    let mut executions = match params::each(stored, &held.rows) {
        Ok(values) => values.into_iter(),
        Err(e) => return fail(client, &held.replies, e).await,
    };
    for reply in held.replies {
        match reply {
            Reply::BindComplete | Reply::NoData => send_replies(client, &[reply], &[]).await?,
            Reply::Executed => {
                let params = executions.next();
                let result = session.execute(statement, params).await;
                send_side_messages(client, session).await?;
                let rows = match result.map_err(|e| to_pgwire(&e))? {
                    crate::sql::Outcome::Command { rows, .. } => rows.unwrap_or(0),
                    _ => 0,
                };
                send_replies(client, &[reply], &[rows]).await?;
            }
        }
    }
    Ok(())
}
