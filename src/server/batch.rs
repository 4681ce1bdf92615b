//! Batched executions of a prepared INSERT: what makes PgJDBC's `executeBatch` cheap.
//!
//! A client batch arrives as one Bind/Execute pair per row of the same prepared INSERT, then a
//! Sync. Checking and recording each row on its own costs far more than storing it, so this
//! module holds such executions back (their parameter values copied out of the Binds, their
//! BindComplete and CommandComplete replies not yet sent) and runs them as one insert through
//! [`Session::execute_many`] as soon as anything else arrives: another statement, Describe of
//! something else, Close, Flush, Sync, a simple query, or a full batch. Their parameters are
//! then decoded column by column (see `params`). The replies go out in the order PostgreSQL
//! sends them. Once a batch is held, the connection loop hands the rest of its messages
//! here straight from the read buffer ([`absorb`]), undecoded by pgwire.
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

use bytes::{Buf, BytesMut};
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
use pgwire::messages::extendedquery::{Bind, BindComplete, TARGET_TYPE_BYTE_PORTAL};
use pgwire::messages::response::CommandComplete;

use crate::sql::{Executions, PreparedStatement, Session};

use super::errors::to_pgwire;
use super::params::{self, Rows};
use super::reply::{send_side_messages, session};

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
pub(super) type Batch = Mutex<Held>;

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
    pub(super) fn takes(
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
    pub(super) fn statement_named(
        &self,
        name: &str,
    ) -> Option<Arc<StoredStatement<PreparedStatement>>> {
        self.statement.as_ref().filter(|s| s.id == name).cloned()
    }

    /// Holds a Bind of `statement` (see [`Held::takes`]).
    pub(super) fn bind(&mut self, statement: &Arc<StoredStatement<PreparedStatement>>, bind: Bind) {
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
    pub(super) fn holds(&self, name: &str) -> bool {
        self.bound && self.portal == name
    }

    /// Holds the answer to Describe of the held portal (see [`Held::holds`]).
    pub(super) fn describe(&mut self) {
        self.replies.push(Reply::NoData);
    }

    /// Holds the execution of the held portal (see [`Held::holds`]); true when the batch
    /// should run now.
    pub(super) fn execute(&mut self) -> bool {
        if std::mem::take(&mut self.bound) {
            self.replies.push(Reply::Executed);
        }
        self.rows.len() >= MAX_HELD || self.rows.bytes() >= params::ROWS_BYTES
    }

    fn is_empty(&self) -> bool {
        self.replies.is_empty()
    }
}

/// One complete message at the start of `buffer`: its type, its body, and its whole length.
fn message(buffer: &[u8]) -> Option<(u8, &[u8], usize)> {
    let header = buffer.get(..5)?;
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    if !(4..=MAX_ABSORBED).contains(&len) {
        return None;
    }
    let body = buffer.get(5..1 + len)?;
    Some((header[0], body, 1 + len))
}

/// A Bind, Describe or Execute bigger than this goes through pgwire (and its size limit).
const MAX_ABSORBED: usize = 1 << 20;

/// Reads the fields of a message body in order; `None` past its end.
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (taken, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(taken)
    }

    fn cstring(&mut self) -> Option<&'a str> {
        let end = self.0.iter().position(|b| *b == 0)?;
        let text = std::str::from_utf8(self.take(end)?).ok()?;
        self.take(1)?;
        Some(text)
    }

    /// A statement or portal name, the empty one as pgwire names it.
    fn name(&mut self) -> Option<&'a str> {
        self.cstring()
            .map(|name| if name.is_empty() { DEFAULT_NAME } else { name })
    }

    fn i16(&mut self) -> Option<i16> {
        self.take(2).map(|b| i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self) -> Option<i32> {
        self.take(4)
            .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A count, then that many values of `width` bytes, returned together.
    fn counted(&mut self, width: usize) -> Option<&'a [u8]> {
        let count = usize::try_from(self.i16()?).ok()?;
        self.take(count * width)
    }

    /// A Bind's parameter values: a count, then each as a length (-1 for NULL) and its bytes.
    /// Returns the count and the bytes that hold them (see [`Rows::push_wire`]).
    fn values(&mut self) -> Option<(usize, &'a [u8])> {
        let count = usize::try_from(self.i16()?).ok()?;
        let start = self.0;
        for _ in 0..count {
            let len = self.i32()?;
            if len != -1 {
                self.take(usize::try_from(len).ok()?)?;
            }
        }
        Some((count, &start[..start.len() - self.0.len()]))
    }
}

impl Held {
    /// Holds a Bind of the held statement, given as its body; `None` (holding nothing) when
    /// it is for something else or malformed.
    fn absorb_bind(
        &mut self,
        statement: &StoredStatement<PreparedStatement>,
        mut fields: Fields,
    ) -> Option<()> {
        let portal = fields.name()?;
        let name = fields.name()?;
        let formats = fields.counted(2)?;
        let (count, values) = fields.values()?;
        let result_formats = fields.counted(2)?;
        let holds = name == statement.id
            && fields.0.is_empty()
            && self.accepts(statement, portal, formats, count, result_formats);
        (holds && self.rows.push_wire(values)).then(|| {
            self.bound = true;
            self.replies.push(Reply::BindComplete);
        })
    }

    /// Holds a Describe of the held portal, given as its body.
    fn absorb_describe(&mut self, mut fields: Fields) -> Option<()> {
        let target = fields.take(1)?;
        let name = fields.name()?;
        (target == [TARGET_TYPE_BYTE_PORTAL] && fields.0.is_empty() && self.holds(name))
            .then(|| self.describe())
    }

    /// Holds an Execute of the held portal, given as its body; whether the batch is full.
    fn absorb_execute(&mut self, mut fields: Fields) -> Option<bool> {
        let name = fields.name()?;
        fields.i32()?;
        (fields.0.is_empty() && self.holds(name)).then(|| self.execute())
    }
}

/// Takes the Binds, Describes and Executes of the held batch straight from the connection's
/// read buffer, as long as complete ones come first, without decoding them into pgwire
/// messages: a client batch is three such messages a row, and pgwire makes a `Bytes` of every
/// value and a `String` of every name. Anything else (another statement or portal, a
/// malformed message, a Sync) is left in the buffer for pgwire and the handlers, which then
/// see what they would have seen after these messages. Call only while the connection is
/// ready for queries. Returns whether the batch is full and must run now.
pub(super) fn absorb(buffer: &mut BytesMut, batch: &Batch) -> bool {
    let mut held = batch.lock();
    let Some(statement) = held.statement.clone() else {
        return false;
    };
    while let Some((kind, body, len)) = message(buffer) {
        let full = match kind {
            b'B' => held.absorb_bind(&statement, Fields(body)).map(|()| false),
            b'D' => held.absorb_describe(Fields(body)).map(|()| false),
            b'E' => held.absorb_execute(Fields(body)),
            _ => None,
        };
        let Some(full) = full else {
            break;
        };
        buffer.advance(len);
        if full {
            return true;
        }
    }
    false
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
    if held.rows.is_empty() {
        return send_replies(client, &held.replies, &[]).await;
    }
    let session = session(client)?;
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

/// For the fuzz target (see `fuzzing`): holds `bind` of `statement` as the first execution of
/// a batch, takes what follows in `buffer` as a connection would, and decodes the held values
/// as running the batch would.
pub(super) fn decode_held(
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

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::super::params::tests::wire;
    use super::super::wire::tests::typed;
    use super::*;

    /// The prepared INSERT `ins` of `params` text parameters.
    fn statement(params: usize) -> Arc<StoredStatement<PreparedStatement>> {
        Arc::new(StoredStatement::new(
            "ins".into(),
            PreparedStatement {
                statement: None,
                param_types: vec![None; params],
                fields: None,
                batchable: true,
                param_oids: vec![23; params],
            },
            Vec::new(),
        ))
    }

    /// A Bind of statement `name` into the unnamed portal, text values, no result formats.
    fn bind(name: &str, values: &[Option<&str>]) -> Vec<u8> {
        let values: Vec<Option<&[u8]>> = values.iter().map(|v| v.map(str::as_bytes)).collect();
        let mut body = format!("\0{name}\0").into_bytes();
        body.extend_from_slice(&[0, 0]);
        body.extend_from_slice(&(values.len() as u16).to_be_bytes());
        body.extend_from_slice(&wire(&values));
        body.extend_from_slice(&[0, 0]);
        typed(b'B', &body)
    }

    fn execute() -> Vec<u8> {
        typed(b'E', b"\0\0\0\0\0")
    }

    /// A batch holding one executed Bind of `ins` with values `1, NULL`.
    fn holding_one() -> (Batch, Arc<StoredStatement<PreparedStatement>>) {
        let batch = Batch::default();
        let statement = statement(2);
        let first = Bind::new(
            None,
            Some("ins".into()),
            Vec::new(),
            vec![Some(Bytes::from_static(b"1")), None],
            Vec::new(),
        );
        assert!(batch.lock().takes(&statement, &first));
        batch.lock().bind(&statement, first);
        assert!(!batch.lock().execute());
        (batch, statement)
    }

    #[test]
    fn the_batchs_own_messages_are_taken_from_the_buffer_and_the_rest_is_left() {
        let (batch, statement) = holding_one();
        let mut buffer = BytesMut::new();
        for n in 2..5 {
            buffer.extend_from_slice(&bind("ins", &[Some(&n.to_string()), None]));
            buffer.extend_from_slice(&typed(b'D', b"P\0"));
            buffer.extend_from_slice(&execute());
        }
        let sync = typed(b'S', &[]);
        buffer.extend_from_slice(&sync);
        assert!(!absorb(&mut buffer, &batch));
        assert_eq!(&buffer[..], &sync[..], "only the Sync is left for pgwire");
        let held = batch.lock();
        assert_eq!(held.rows.len(), 4);
        // BindComplete and CommandComplete for the first row, then NoData for each Describe.
        assert_eq!(held.replies.len(), 2 + 3 * 3);
        assert!(!held.bound);
        assert_eq!(
            held.statement_named("ins").map(|s| s.id.clone()),
            Some("ins".into())
        );
        assert!(held.statement_named("other").is_none());
        drop(held);
        assert!(batch.lock().takes(
            &statement,
            &Bind::new(
                None,
                Some("ins".into()),
                Vec::new(),
                vec![None, None],
                Vec::new()
            )
        ));
    }

    #[test]
    fn anything_else_stops_the_batch_where_it_stands() {
        let others = [
            bind("other", &[Some("2"), None]), // another statement
            bind("ins", &[Some("2")]),         // another number of values
            typed(b'B', b"\0ins\0\0"),         // malformed
            typed(b'D', b"Sins\0"),            // Describe of the statement, not the portal
            typed(b'Q', b"SELECT 1\0"),
            typed(b'E', b"p\0\0\0\0\0"), // Execute of another portal
        ];
        for other in others {
            let (batch, _) = holding_one();
            let mut buffer = BytesMut::from(&other[..]);
            buffer.extend_from_slice(&execute());
            let before = buffer.clone();
            assert!(!absorb(&mut buffer, &batch));
            assert_eq!(buffer, before, "{other:?} and what follows stay");
            assert_eq!(batch.lock().rows.len(), 1);
        }
        // A Bind that is not executed yet holds the batch: a second Bind is not taken.
        let (batch, _) = holding_one();
        let mut buffer = BytesMut::new();
        buffer.extend_from_slice(&bind("ins", &[Some("2"), None]));
        buffer.extend_from_slice(&bind("ins", &[Some("3"), None]));
        assert!(!absorb(&mut buffer, &batch));
        assert_eq!(&buffer[..], &bind("ins", &[Some("3"), None])[..]);
        assert!(batch.lock().holds(DEFAULT_NAME));
    }
}
