//! Batched executions of a prepared INSERT: what makes PgJDBC's `executeBatch` cheap.
//!
//! A client batch arrives as one Bind/Execute pair per row of the same prepared INSERT, then a
//! Sync. Checking and recording each row on its own costs far more than storing it, so this
//! module holds such executions back (their parameter values copied out of the Binds, their
//! BindComplete and CommandComplete replies not yet sent) and runs them as one insert through
//! [`Session::execute_many`](crate::sql::Session::execute_many) as soon as anything else
//! arrives: another statement, Describe of something else, Close, Flush, Sync, a simple query,
//! or a full batch. Their parameters are then decoded column by column (see `params`). The
//! replies go out in the order PostgreSQL sends them. Once a batch is held, the connection loop
//! hands the rest of its messages here straight from the read buffer ([`absorb()`]), undecoded by
//! pgwire.
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
//! This file holds what is held ([`Held`]) and its portal; `absorb` takes a held batch's own
//! messages from the read buffer, `flush` runs the held executions and sends their replies.
//! Called by the extended-protocol handlers in `handlers`, which run [`flush()`] and
//! [`store_portal`] before any message that is not a Bind, Describe or Execute of the held
//! statement, and by the connection loop (`message_loop`), which calls [`absorb()`].

use std::sync::Arc;

use bytes::BytesMut;
use parking_lot::Mutex;
use pgwire::api::portal::Portal;
use pgwire::api::stmt::StoredStatement;
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, DEFAULT_NAME};
use pgwire::error::PgWireResult;
use pgwire::messages::extendedquery::Bind;

use crate::server::params::{self, Rows};
use crate::sql::PreparedStatement;

mod absorb;
mod flush;
#[cfg(test)]
mod tests;

pub(in crate::server) use absorb::absorb;
pub(in crate::server) use flush::flush;

/// What may follow a held batch's run before the pipeline's Sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::server) enum Then {
    /// The Sync itself: outside a block, the batch alone commits (as one insert).
    Sync,
    /// More of the pipeline: the batch joins the implicit transaction the Sync commits, so
    /// that an error later in the pipeline rolls it back, as in PostgreSQL.
    More,
}

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
pub(in crate::server) struct Held {
    statement: Option<Arc<StoredStatement<PreparedStatement>>>,
    /// The portal all held Binds bind.
    portal: String,
    /// Their result format codes, as sent.
    result_formats: Vec<u8>,
    /// The values of the held Binds, in order; the last one is not executed yet while `bound`.
    rows: Rows,
    bound: bool,
    replies: Vec<Reply>,
    /// The latest Bind of a batch that ran, and its statement, until its portal is stored.
    unstored: Option<(Arc<StoredStatement<PreparedStatement>>, Bind)>,
}

/// The executions held back on a connection, owned by its query handler.
pub(in crate::server) type Batch = Mutex<Held>;

fn portal_name(bind: &Bind) -> &str {
    bind.portal_name.as_deref().unwrap_or(DEFAULT_NAME)
}

impl Held {
    /// Whether a Bind of `statement` into `portal` with these format codes and `values` values
    /// may be held: nothing is held, or executed Binds of the same statement into the same
    /// portal, with the same formats.
    fn accepts(
        &self,
        statement: &StoredStatement<PreparedStatement>,
        portal: &str,
        formats: &[u8],
        values: usize,
        result_formats: &[u8],
    ) -> bool {
        if self.bound || values != statement.statement.param_types.len() {
            return false;
        }
        match &self.statement {
            None => true,
            Some(held) => {
                std::ptr::eq(held.as_ref(), statement)
                    && self.portal == portal
                    && self.rows.fits(formats, values)
                    && params::same_bytes(&self.result_formats, result_formats)
            }
        }
    }

    /// Whether `bind` of `statement` may be held (see [`Held::accepts`]).
    pub(in crate::server) fn takes(
        &self,
        statement: &StoredStatement<PreparedStatement>,
        bind: &Bind,
    ) -> bool {
        self.accepts(
            statement,
            portal_name(bind),
            &params::format_bytes(&bind.parameter_format_codes),
            bind.parameters.len(),
            &params::format_bytes(&bind.result_column_format_codes),
        )
    }

    /// The held statement when `name` names it, found without the statement store: a client
    /// batch binds it for every row, and it cannot change under its name while held (Parse and
    /// Close run the held executions first, which lets it go).
    pub(in crate::server) fn statement_named(
        &self,
        name: &str,
    ) -> Option<Arc<StoredStatement<PreparedStatement>>> {
        self.statement.as_ref().filter(|s| s.id == name).cloned()
    }

    /// Holds a Bind of `statement` (see [`Held::takes`]).
    pub(in crate::server) fn bind(
        &mut self,
        statement: &Arc<StoredStatement<PreparedStatement>>,
        bind: Bind,
    ) {
        if self.statement.is_none() {
            self.statement = Some(statement.clone());
            self.portal = portal_name(&bind).to_owned();
            self.result_formats = params::format_bytes(&bind.result_column_format_codes);
            self.rows = Rows::new(
                params::format_bytes(&bind.parameter_format_codes),
                bind.parameters.len(),
            );
        }
        self.rows.push(bind.parameters.iter().map(Option::as_deref));
        self.bound = true;
        self.replies.push(Reply::BindComplete);
    }

    /// Whether the portal `name` is a held Bind not executed yet.
    pub(in crate::server) fn holds(&self, name: &str) -> bool {
        self.bound && self.portal == name
    }

    /// Holds the answer to Describe of the held portal (see [`Held::holds`]).
    pub(in crate::server) fn describe(&mut self) {
        self.replies.push(Reply::NoData);
    }

    /// Holds the execution of the held portal (see [`Held::holds`]); true when the batch
    /// should run now.
    pub(in crate::server) fn execute(&mut self) -> bool {
        if std::mem::take(&mut self.bound) {
            self.replies.push(Reply::Executed);
        }
        self.rows.len() >= MAX_HELD || self.rows.bytes() >= params::ROWS_BYTES
    }

    fn is_empty(&self) -> bool {
        self.replies.is_empty()
    }
}

/// Drops the held executions unanswered (an error was reported before them), and their portal.
pub(in crate::server) fn discard(batch: &Batch) {
    *batch.lock() = Held::default();
}

/// Stores the portal of the latest held Bind: call before looking a portal up or changing one.
///
/// # Errors
/// None in practice: pgwire makes a portal of any Bind.
pub(in crate::server) fn store_portal<C>(client: &C, batch: &Batch) -> PgWireResult<()>
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
pub(in crate::server) fn forget_unnamed_portal(batch: &Batch) {
    let mut held = batch.lock();
    if held
        .unstored
        .as_ref()
        .is_some_and(|(_, bind)| portal_name(bind) == DEFAULT_NAME)
    {
        held.unstored = None;
    }
}

/// For the fuzz target (see `fuzzing`): holds `bind` of `statement` as the first execution of
/// a batch, takes what follows in `buffer` as a connection would, and decodes the held values
/// as running the batch would.
pub(in crate::server) fn decode_held(
    statement: &Arc<StoredStatement<PreparedStatement>>,
    bind: Bind,
    buffer: &mut BytesMut,
) {
    let batch = Batch::default();
    {
        let mut held = batch.lock();
        if !held.takes(statement, &bind) {
            return;
        }
        held.bind(statement, bind);
        held.execute();
    }
    absorb(buffer, &batch);
    let held = batch.lock();
    let _ = params::columns(statement, &held.rows);
    let _ = params::each(statement, &held.rows);
}
