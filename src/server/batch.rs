//! Batched executions of a prepared INSERT: what makes PgJDBC's `executeBatch` cheap.
//!
//! A client batch arrives as one Bind/Execute pair per row of the same prepared INSERT, then a
//! Sync. Checking and recording each row on its own costs far more than storing it, so this
//! module holds such executions back (their parameters decoded, their BindComplete and
//! CommandComplete replies not yet sent) and runs them as one insert through
//! [`Session::execute_many`] as soon as anything else arrives: another statement, Describe,
//! Close, Flush, Sync, a simple query, or a full batch. The replies then go out in the order
//! PostgreSQL sends them.
//!
//! Invariants: nothing is acknowledged before it is recorded (a reply is only sent after the
//! batch ran; in autocommit mode that means committed to the write-ahead log); replies keep
//! the order of the messages they answer. When the batch fails (a duplicate key, a NULL in a
//! NOT NULL column) the first held execution reports the error and the rest are skipped, as
//! PostgreSQL skips everything after an error until Sync. None of the rows is stored in
//! either case: the error aborts the transaction (an explicit one, or the implicit one
//! PostgreSQL keeps until Sync), so only the reported position of the failure differs.
//!
//! Called by the extended-protocol handlers in `handlers`, which run [`flush`] before any
//! message that is not a Bind or Execute of the held statement.

use std::sync::Arc;

use datafusion::common::ParamValues;
use futures::{Sink, SinkExt};
use parking_lot::Mutex;
use pgwire::api::ClientInfo;
use pgwire::api::results::Tag;
use pgwire::api::stmt::StoredStatement;
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::data::NoData;
use pgwire::messages::extendedquery::BindComplete;
use pgwire::messages::response::CommandComplete;

use crate::sql::{PreparedStatement, Session};

use super::handlers::{reported, send_side_messages};
use super::sqlstate::to_pgwire;

/// Executions held back before they run together, bounding memory and reply latency for a
/// client that sends a very long batch without Sync.
const MAX_HELD: usize = 4096;

/// A reply not sent yet, in message order.
#[derive(Debug, Clone, Copy)]
enum Reply {
    BindComplete,
    /// The answer to Describe of a held portal: an INSERT returns no rows.
    NoData,
    /// The CommandComplete of an execution.
    Executed,
}

/// The executions held back on one connection.
#[derive(Debug, Default)]
pub(super) struct Held {
    statement: Option<Arc<StoredStatement<PreparedStatement>>>,
    executions: Vec<ParamValues>,
    replies: Vec<Reply>,
}

/// The connection's held executions, kept in the session extensions.
pub(super) type Batch = Arc<Mutex<Held>>;

/// The held executions of the connection.
pub(super) fn batch<C: ClientInfo>(client: &C) -> Batch {
    client
        .session_extensions()
        .get_or_insert_with(|| Mutex::new(Held::default()))
}

impl Held {
    /// Whether a Bind of `statement` may be held: nothing else is held.
    pub(super) fn takes(&self, statement: &Arc<StoredStatement<PreparedStatement>>) -> bool {
        self.statement
            .as_ref()
            .is_none_or(|held| Arc::ptr_eq(held, statement))
    }

    /// Holds the BindComplete of a Bind of `statement` (see [`Held::takes`]).
    pub(super) fn bind(&mut self, statement: &Arc<StoredStatement<PreparedStatement>>) {
        self.statement = Some(statement.clone());
        self.replies.push(Reply::BindComplete);
    }

    /// Holds the answer to Describe of a portal of `statement` (see [`Held::takes`]).
    pub(super) fn describe(&mut self, statement: &Arc<StoredStatement<PreparedStatement>>) {
        self.statement = Some(statement.clone());
        self.replies.push(Reply::NoData);
    }

    /// Holds an execution of `statement` (see [`Held::takes`]); true when the batch should
    /// run now.
    pub(super) fn execute(
        &mut self,
        statement: &Arc<StoredStatement<PreparedStatement>>,
        params: ParamValues,
    ) -> bool {
        self.statement = Some(statement.clone());
        self.replies.push(Reply::Executed);
        self.executions.push(params);
        self.executions.len() >= MAX_HELD
    }

    fn is_empty(&self) -> bool {
        self.replies.is_empty()
    }
}

/// Drops the held executions unanswered: an error was reported before them.
pub(super) fn discard<C: ClientInfo>(client: &C) {
    *batch(client).lock() = Held::default();
}

/// Runs the held executions and sends their replies; an error is for the caller to report
/// (the connection then skips messages until Sync).
///
/// # Errors
/// The batch's error, or a failure to send.
pub(super) async fn flush<C>(client: &mut C) -> PgWireResult<()>
where
    C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
    C::Error: std::fmt::Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let held = {
        let batch = batch(client);
        let mut held = batch.lock();
        if held.is_empty() {
            return Ok(());
        }
        std::mem::take(&mut *held)
    };
    // Boxed: running a batch is a large future, and this one is awaited on every message.
    Box::pin(run(client, held)).await
}

async fn run<C>(client: &mut C, held: Held) -> PgWireResult<()>
where
    C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
    C::Error: std::fmt::Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let stored = held.statement.clone();
    let Some(statement) = stored.as_ref().and_then(|s| s.statement.statement.as_ref()) else {
        return send_replies(client, &held.replies, 0).await;
    };
    if held.executions.is_empty() {
        return send_replies(client, &held.replies, 0).await;
    }
    let session = super::handlers::session(client)?;
    let before = reported(&session);
    let result = session.execute_many(statement, &held.executions).await;
    send_side_messages(client, &session, &before).await?;
    match result {
        Ok(Some(rows)) => send_replies(client, &held.replies, rows).await,
        Ok(None) => one_by_one(client, &session, statement, held).await,
        Err(e) => {
            // Only the first execution's BindComplete (and Describe) precede the error.
            let first = held
                .replies
                .iter()
                .position(|r| matches!(r, Reply::Executed))
                .unwrap_or(held.replies.len());
            send_replies(client, &held.replies[..first], 0).await?;
            Err(to_pgwire(&e))
        }
    }
}

async fn send_replies<C>(client: &mut C, replies: &[Reply], rows: usize) -> PgWireResult<()>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    for reply in replies {
        let message = match reply {
            Reply::BindComplete => PgWireBackendMessage::BindComplete(BindComplete::new()),
            Reply::NoData => PgWireBackendMessage::NoData(NoData::new()),
            Reply::Executed => PgWireBackendMessage::CommandComplete(CommandComplete::from(
                Tag::new("INSERT 0").with_rows(rows),
            )),
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
    statement: &datafusion::sql::sqlparser::ast::Statement,
    held: Held,
) -> PgWireResult<()>
where
    C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
    C::Error: std::fmt::Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let mut executions = held.executions.into_iter();
    for reply in held.replies {
        match reply {
            Reply::BindComplete | Reply::NoData => send_replies(client, &[reply], 0).await?,
            Reply::Executed => {
                let params = executions.next();
                let before = reported(session);
                let result = session.execute(statement, params).await;
                send_side_messages(client, session, &before).await?;
                let rows = match result.map_err(|e| to_pgwire(&e))? {
                    crate::sql::Outcome::Command { rows, .. } => rows.unwrap_or(0),
                    _ => 0,
                };
                send_replies(client, &[reply], rows).await?;
            }
        }
    }
    Ok(())
}
