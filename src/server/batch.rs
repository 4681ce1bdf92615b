//! Batched executions of a prepared INSERT: what makes PgJDBC's `executeBatch` cheap.
//!
//! A client batch arrives as one Bind/Execute pair per row of the same prepared INSERT, then a
//! Sync. Checking and recording each row on its own costs far more than storing it, so this
//! module holds such executions back (their Bind messages as received, their BindComplete and
//! CommandComplete replies not yet sent) and runs them as one insert through
//! [`Session::execute_many`] as soon as anything else arrives: another statement, Describe of
//! something else, Close, Flush, Sync, a simple query, or a full batch. Their parameters are
//! then decoded column by column (see `params`). The replies go out in the order PostgreSQL
//! sends them.
//!
//! Invariants: nothing is acknowledged before it is recorded (a reply is only sent after the
//! batch ran; in autocommit mode that means committed to the write-ahead log); replies keep
//! the order of the messages they answer. When the batch fails (a duplicate key, a NULL in a
//! NOT NULL column) the first held execution reports the error and the rest are skipped, as
//! PostgreSQL skips everything after an error until Sync (a parameter that does not decode
//! counts as such an error). None of the rows is stored in either case: the error aborts the
//! transaction (an explicit one, or the implicit one PostgreSQL keeps until Sync), so only the
//! reported position of the failure differs.
//!
//! Called by the extended-protocol handlers in `handlers`, which run [`flush`] and
//! [`store_portal`] before any message that is not a Bind, Describe or Execute of the held
//! statement.

use std::sync::Arc;

use futures::{Sink, SinkExt};
use parking_lot::Mutex;
use pgwire::api::portal::Portal;
use pgwire::api::results::Tag;
use pgwire::api::stmt::StoredStatement;
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, DEFAULT_NAME};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::data::NoData;
use pgwire::messages::extendedquery::{Bind, BindComplete};
use pgwire::messages::response::CommandComplete;

use crate::sql::{Executions, PreparedStatement, Session};

use super::handlers::send_side_messages;
use super::params;
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
///
/// The portals of held Binds are not made when they arrive: a client binds a portal per row,
/// and making and storing each costs more than the row. The latest Bind stands for the portal
/// of its name (the same for all held Binds, see [`Held::takes`]) until [`store_portal`].
#[derive(Debug, Default)]
pub(super) struct Held {
    statement: Option<Arc<StoredStatement<PreparedStatement>>>,
    /// The latest Bind, while it has not been executed.
    bound: Option<Bind>,
    /// The executed Binds, in order.
    executions: Vec<Bind>,
    replies: Vec<Reply>,
    /// The latest Bind of a batch that ran, and its statement, until its portal is stored.
    unstored: Option<(Arc<StoredStatement<PreparedStatement>>, Bind)>,
}

/// The executions held back on a connection, owned by its query handler.
pub(super) type Batch = Mutex<Held>;

/// A copy of a Bind (pgwire's is not `Clone`); the values are shared, not copied.
fn copy(bind: &Bind) -> Bind {
    Bind::new(
        bind.portal_name.clone(),
        bind.statement_name.clone(),
        bind.parameter_format_codes.clone(),
        bind.parameters.clone(),
        bind.result_column_format_codes.clone(),
    )
}

fn portal_name(bind: &Bind) -> &str {
    bind.portal_name.as_deref().unwrap_or(DEFAULT_NAME)
}

impl Held {
    /// Whether `bind` of `statement` may be held: nothing else is held, or executions of the
    /// same statement into the same portal.
    pub(super) fn takes(
        &self,
        statement: &Arc<StoredStatement<PreparedStatement>>,
        bind: &Bind,
    ) -> bool {
        let same_statement = self
            .statement
            .as_ref()
            .is_none_or(|held| Arc::ptr_eq(held, statement));
        let same_portal = self
            .executions
            .last()
            .is_none_or(|last| portal_name(last) == portal_name(bind));
        same_statement && same_portal && self.bound.is_none()
    }

    /// The held statement when `name` names it, found without the statement store: a client
    /// batch binds it for every row, and it cannot change under its name while held (Parse and
    /// Close run the held executions first, which lets it go).
    pub(super) fn statement_named(
        &self,
        name: &str,
    ) -> Option<Arc<StoredStatement<PreparedStatement>>> {
        self.statement.as_ref().filter(|s| s.id == name).cloned()
    }

    /// Holds a Bind of `statement` (see [`Held::takes`]).
    pub(super) fn bind(&mut self, statement: &Arc<StoredStatement<PreparedStatement>>, bind: Bind) {
        if !self
            .statement
            .as_ref()
            .is_some_and(|held| Arc::ptr_eq(held, statement))
        {
            self.statement = Some(statement.clone());
        }
        self.bound = Some(bind);
        self.replies.push(Reply::BindComplete);
    }

    /// Whether the portal `name` is a held Bind not executed yet.
    pub(super) fn holds(&self, name: &str) -> bool {
        self.bound.as_ref().is_some_and(|b| portal_name(b) == name)
    }

    /// Holds the answer to Describe of the held portal (see [`Held::holds`]).
    pub(super) fn describe(&mut self) {
        self.replies.push(Reply::NoData);
    }

    /// Holds the execution of the held portal (see [`Held::holds`]); true when the batch
    /// should run now.
    pub(super) fn execute(&mut self) -> bool {
        if let Some(bind) = self.bound.take() {
            self.executions.push(bind);
            self.replies.push(Reply::Executed);
        }
        self.executions.len() >= MAX_HELD
    }

    fn is_empty(&self) -> bool {
        self.replies.is_empty()
    }
}

/// Drops the held executions unanswered (an error was reported before them), and their portal.
pub(super) fn discard(batch: &Batch) {
    *batch.lock() = Held::default();
}

/// Stores the portal of the latest held Bind: call before looking a portal up or changing one.
///
/// # Errors
/// None in practice: pgwire makes a portal of any Bind.
pub(super) fn store_portal<C>(client: &C, batch: &Batch) -> PgWireResult<()>
where
    C: ClientInfo + ClientPortalStore,
    C::PortalStore: PortalStore<Statement = PreparedStatement>,
{
    let unstored = batch.lock().unstored.take();
    if let Some((statement, bind)) = unstored {
        let portal = Portal::try_new(&bind, statement)?;
        client.portal_store().put_portal(Arc::new(portal));
    }
    Ok(())
}

/// Forgets the unnamed portal of the latest held Bind: a simple Query drops the unnamed portal.
pub(super) fn forget_unnamed_portal(batch: &Batch) {
    let mut held = batch.lock();
    if held
        .unstored
        .as_ref()
        .is_some_and(|(_, bind)| portal_name(bind) == DEFAULT_NAME)
    {
        held.unstored = None;
    }
}

/// Runs the held executions and sends their replies; an error is for the caller to report
/// (the connection then skips messages until Sync). The latest Bind keeps standing for its
/// portal (see [`store_portal`]).
///
/// # Errors
/// The batch's error, or a failure to send.
pub(super) async fn flush<C>(client: &mut C, batch: &Batch) -> PgWireResult<()>
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
            .bound
            .take()
            .or_else(|| taken.executions.last().map(copy));
        held.unstored = taken.statement.clone().zip(latest);
        taken
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
    let Some(stored) = held.statement.clone() else {
        return send_replies(client, &held.replies, &[]).await;
    };
    let Some(statement) = stored.statement.statement.as_ref() else {
        return send_replies(client, &held.replies, &[]).await;
    };
    if held.executions.is_empty() {
        return send_replies(client, &held.replies, &[]).await;
    }
    let session = super::handlers::session(client)?;
    let result = match params::columns(&stored, &held.executions) {
        Some(columns) => {
            let executions = Executions::Columns {
                params: &columns,
                count: held.executions.len(),
            };
            session.execute_many(statement, executions).await
        }
        None => match params::each(&stored, &held.executions) {
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
    let mut executions = match params::each(stored, &held.executions) {
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
