//! The query protocols: simple `Query` and extended `Parse`/`Bind`/`Describe`/`Execute`.
//!
//! Thin by design: statements are parsed, described and executed by the [`Session`] stored
//! in the connection; this module converts between pgwire messages and
//! [`Outcome`](crate::sql::Outcome)s, decodes parameters (text or binary, with types declared
//! by the client or inferred by planning), and forwards notices and changed parameters.
//! pgwire drives portals, row limits (`PortalSuspended`) and pipelining up to `Sync`; runs of
//! Bind/Execute of one prepared INSERT are collected and run together by [`batch`].

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::sql::sqlparser::ast::{DiscardObject, Statement};
use futures::{Sink, SinkExt};
use pgwire::api::DEFAULT_NAME;
use pgwire::api::copy::CopyHandler;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::ExtendedQueryHandler;
use pgwire::api::query::send_describe_response;
use pgwire::api::results::{DescribePortalResponse, FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::stmt::{QueryParser, StoredStatement};
use pgwire::api::store::Entry;
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, PgWireConnectionState, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::copy::{CopyData, CopyDone, CopyFail};
use pgwire::messages::data::{NoData, ParameterDescription};
use pgwire::messages::extendedquery::{
    Bind, BindComplete, Close, CloseComplete, Describe, Execute, Flush, Parse, ParseComplete,
    Sync as PgSync, TARGET_TYPE_BYTE_PORTAL, TARGET_TYPE_BYTE_STATEMENT,
};
use pgwire::messages::response::ReadyForQuery;

use crate::sql::{Outcome, PreparedStatement, Session, Settings, SqlError};

use super::errors::{protocol, to_pgwire};
use super::fastpath::batch::{self, Then};
use super::fastpath::wire;
use super::reply::{ready_status, send_side_messages, session};
use super::{encode, params};

/// Runs the held batch (see [`batch`]) and stores the portal it stands for: what every
/// extended-protocol message but the batch's own does first; `then`: what follows.
async fn flush<C>(client: &mut C, batch: &batch::Batch, then: Then) -> PgWireResult<()>
where
    C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
    C::PortalStore: PortalStore<Statement = PreparedStatement>,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let ran = batch::flush(client, batch, then).await;
    batch::store_portal(client, batch)?;
    ran
}

pub(super) fn response(
    session: &Session,
    outcome: Outcome,
    format: &Format,
) -> PgWireResult<Response> {
    Ok(match outcome {
        Outcome::Rows {
            schema,
            stream,
            tag,
        } => {
            let tz = session.with_settings(Settings::time_zone);
            let (fields, rows) = encode::encode(&schema, stream, format, &tz)?;
            let mut response = QueryResponse::new(fields, rows);
            response.set_command_tag(&tag);
            Response::Query(response)
        }
        Outcome::Command { tag, rows } => {
            let tag = Tag::new(&tag);
            Response::Execution(match rows {
                Some(rows) => tag.with_rows(rows),
                None => tag,
            })
        }
        Outcome::Begin => Response::TransactionStart(Tag::new("BEGIN")),
        Outcome::End { tag } => Response::TransactionEnd(Tag::new(&tag)),
        Outcome::Empty => Response::EmptyQuery,
        Outcome::CopyIn { columns, binary } => {
            Response::CopyIn(super::copy::copy_in_response(columns, binary))
        }
        Outcome::CopyOut {
            format,
            schema,
            stream,
        } => {
            let tz = session.with_settings(Settings::time_zone);
            Response::CopyOut(super::copy::copy_out_response(
                format, &schema, stream, &tz,
            )?)
        }
    })
}

/// Clears prepared statements and portals when the statement asks for it.
pub(super) fn forget_prepared<C: ClientPortalStore>(client: &C, statement: &Statement)
where
    C::PortalStore: PortalStore,
{
    match statement {
        Statement::Deallocate { name, .. } if !name.value.eq_ignore_ascii_case("all") => {
            client.portal_store().rm_statement(&name.value);
        }
        Statement::Discard {
            object_type: DiscardObject::ALL,
        } => client.portal_store().clear_portals(),
        _ => {}
    }
}

/// Handles both query protocols for a connection.
#[derive(Debug, Default)]
pub struct QueryHandler {
    parser: Arc<StatementParser>,
    /// The connection's held executions (see [`batch`]).
    pub(super) held: batch::Batch,
}

impl QueryHandler {
    /// Takes the held batch's own messages from the connection's read buffer (see
    /// [`batch::absorb`]); true when the batch is full and [`QueryHandler::run_held`] must run.
    pub(super) fn absorb(&self, buffer: &mut bytes::BytesMut) -> bool {
        batch::absorb(buffer, &self.held)
    }

    /// Runs the held batch.
    pub(super) async fn run_held<C>(&self, client: &mut C) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        batch::flush(client, &self.held, Then::More).await
    }

    /// Execute, `sync_follows` when the next message the client sent is Sync (the connection
    /// loop looks): outside a transaction block, a statement alone in its pipeline runs in
    /// autocommit mode; one that more of the pipeline follows runs in the implicit
    /// transaction the Sync commits.
    pub(super) async fn execute<C>(
        &self,
        client: &mut C,
        message: Execute,
        sync_follows: bool,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = PreparedStatement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
        if matches!(client.state(), PgWireConnectionState::ReadyForQuery) {
            let full = {
                let mut held = self.held.lock();
                held.holds(name).then(|| held.execute())
            };
            if let Some(full) = full {
                if full {
                    batch::flush(client, &self.held, Then::More).await?;
                }
                return Ok(());
            }
        }
        flush(client, &self.held, Then::More).await?;
        if !sync_follows {
            session(client)?.open_pipeline();
        }
        // A row limit of zero or less means all rows, as in PostgreSQL (pgwire would take a
        // negative one as a huge count).
        let message = Execute::new(message.name, message.max_rows.max(0));
        // Boxed so that the batched path above does not carry (and move) this large future.
        Box::pin(self._on_execute(client, message)).await
    }
}

#[async_trait]
impl ExtendedQueryHandler for QueryHandler {
    type Statement = PreparedStatement;
    type QueryParser = StatementParser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        self.parser.clone()
    }

    async fn on_parse<C>(&self, client: &mut C, message: Parse) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        batch::flush(client, &self.held, Then::More).await?;
        let name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
        match StoredStatement::parse(client, &message, self.parser.clone()).await? {
            Some(statement) => client.portal_store().put_statement(Arc::new(statement)),
            None => client.portal_store().put_empty_statement(name),
        }
        client
            .feed(PgWireBackendMessage::ParseComplete(ParseComplete::new()))
            .await?;
        Ok(())
    }

    /// As pgwire's, except that a Bind of a batchable INSERT holds its reply back (see
    /// [`batch`]) and replies are buffered until Flush or Sync, as PostgreSQL does.
    async fn on_bind<C>(&self, client: &mut C, message: Bind) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let name = message.statement_name.as_deref().unwrap_or(DEFAULT_NAME);
        let held = self.held.lock().statement_named(name);
        let statement = match held
            .map(Entry::Value)
            .or_else(|| client.portal_store().get_statement(name))
        {
            Some(Entry::Value(statement)) => statement,
            Some(Entry::Empty) => {
                flush(client, &self.held, Then::More).await?;
                wire::check_bind(&message, name, 0, 0).map_err(|e| protocol(&e, false))?;
                let portal = message.portal_name.as_deref().unwrap_or(DEFAULT_NAME);
                client.portal_store().put_empty_portal(portal);
                return client
                    .feed(PgWireBackendMessage::BindComplete(BindComplete::new()))
                    .await
                    .map_err(Into::into);
            }
            None => {
                flush(client, &self.held, Then::More).await?;
                return Err(PgWireError::StatementNotFound(name.to_owned()));
            }
        };
        // pgwire takes format codes by position: counts that disagree would panic later.
        let prepared = &statement.statement;
        let columns = prepared.fields.as_ref().map_or(0, |f| f.fields().len());
        if let Err(e) = wire::check_bind(&message, name, prepared.param_types.len(), columns) {
            flush(client, &self.held, Then::More).await?;
            return Err(protocol(&e, false));
        }
        if statement.statement.batchable && self.held.lock().takes(&statement, &message) {
            batch::store_portal(client, &self.held)?;
            self.held.lock().bind(&statement, message);
            return Ok(());
        }
        flush(client, &self.held, Then::More).await?;
        let portal = Portal::try_new(&message, statement)?;
        client.portal_store().put_portal(Arc::new(portal));
        client
            .feed(PgWireBackendMessage::BindComplete(BindComplete::new()))
            .await
            .map_err(Into::into)
    }

    /// As [`QueryHandler::execute`] when the next message is not known (the connection loop
    /// calls that one).
    async fn on_execute<C>(&self, client: &mut C, message: Execute) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self.execute(client, message, false).await
    }

    async fn on_flush<C>(&self, client: &mut C, _message: Flush) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        batch::flush(client, &self.held, Then::More).await?;
        client.flush().await?;
        Ok(())
    }

    /// Runs the held batch and commits the pipeline's implicit transaction; an error of either
    /// is reported before ReadyForQuery (pgwire would only report it and wait for another
    /// Sync). After an error the pipeline's rest was skipped, and so is what was held.
    async fn on_sync<C>(&self, client: &mut C, _message: PgSync) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let session = session(client)?;
        let ran = if matches!(client.state(), PgWireConnectionState::AwaitingSync) {
            batch::discard(&self.held);
            Ok(())
        } else {
            flush(client, &self.held, Then::Sync).await
        };
        // After an error the implicit transaction is gone; a COPY leaves the state AwaitingSync
        // also when it succeeded, and its pipeline still commits.
        let synced = match ran {
            Ok(()) => session.sync().await.map_err(|e| to_pgwire(&e)),
            Err(e) => Err(e),
        };
        if let Err(e) = synced {
            session.statement_failed();
            let info: ErrorInfo = e.into();
            client
                .feed(PgWireBackendMessage::ErrorResponse(info.into()))
                .await?;
        }
        client.portal_store().rm_portal(DEFAULT_NAME);
        let status = ready_status(&session);
        client.set_transaction_status(status);
        client
            .send(PgWireBackendMessage::ReadyForQuery(ReadyForQuery::new(
                status,
            )))
            .await?;
        Ok(())
    }

    async fn on_close<C>(&self, client: &mut C, message: Close) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        flush(client, &self.held, Then::More).await?;
        let name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
        match message.target_type {
            TARGET_TYPE_BYTE_STATEMENT => client.portal_store().rm_statement(name),
            TARGET_TYPE_BYTE_PORTAL => client.portal_store().rm_portal(name),
            _ => {}
        }
        client
            .feed(PgWireBackendMessage::CloseComplete(CloseComplete::new()))
            .await?;
        Ok(())
    }

    /// Like pgwire's, except that a statement with parameters and no result columns answers
    /// `NoData` (pgwire sends an empty `RowDescription`, which makes PgJDBC treat an INSERT
    /// as a query and report 0 rows from `executeBatch`).
    async fn on_describe<C>(&self, client: &mut C, message: Describe) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if message.target_type != TARGET_TYPE_BYTE_STATEMENT {
            // PgJDBC describes the portal of every execution of a batch.
            let name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
            {
                let mut held = self.held.lock();
                if held.holds(name) {
                    held.describe();
                    return Ok(());
                }
            }
            flush(client, &self.held, Then::More).await?;
            return Box::pin(self._on_describe(client, message)).await;
        }
        flush(client, &self.held, Then::More).await?;
        let name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
        let stored = match client.portal_store().get_statement(name) {
            Some(Entry::Value(stored)) => stored,
            Some(Entry::Empty) => {
                client
                    .feed(PgWireBackendMessage::ParameterDescription(
                        ParameterDescription::new(vec![]),
                    ))
                    .await?;
                client
                    .send(PgWireBackendMessage::NoData(NoData::new()))
                    .await?;
                return Ok(());
            }
            None => return Err(PgWireError::StatementNotFound(name.to_owned())),
        };
        let described = self.parser.get_parameter_types(&stored.statement)?;
        let count = described.len().max(stored.parameter_types.len());
        let types: Vec<u32> = (0..count)
            .map(|i| {
                stored
                    .parameter_types
                    .get(i)
                    .cloned()
                    .flatten()
                    .or_else(|| described.get(i).cloned())
                    .unwrap_or(Type::TEXT)
                    .oid()
            })
            .collect();
        client
            .feed(PgWireBackendMessage::ParameterDescription(
                ParameterDescription::new(types),
            ))
            .await?;
        if stored.statement.fields.is_none() {
            client
                .send(PgWireBackendMessage::NoData(NoData::new()))
                .await?;
            return Ok(());
        }
        let fields = self.parser.get_result_schema(&stored.statement, None)?;
        // Parameters were sent above; describe only the row.
        let row = DescribePortalResponse::new(fields);
        send_describe_response(client, &row).await
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Self::Statement>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let session = session(client)?;
        let prepared = &portal.statement.statement;
        let Some(statement) = &prepared.statement else {
            return Ok(Response::EmptyQuery);
        };
        let params = params::parameters(portal)?;
        forget_prepared(client, statement);
        let outcome = session
            .execute(statement, params)
            .await
            .map_err(|e| to_pgwire(&e));
        send_side_messages(client, &session).await?;
        response(&session, outcome?, &portal.result_column_format)
    }
}

/// Parses and describes statements for the extended protocol.
#[derive(Debug, Default)]
pub struct StatementParser;

#[async_trait]
impl QueryParser for StatementParser {
    type Statement = PreparedStatement;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        types: &[Option<Type>],
    ) -> PgWireResult<Option<PreparedStatement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let session = session(client)?;
        let mut statements = session.parse(sql).map_err(|e| to_pgwire(&e))?;
        if statements.len() > 1 {
            return Err(to_pgwire(&SqlError::Syntax(
                "cannot insert multiple commands into a prepared statement".into(),
            )));
        }
        let Some(statement) = statements.pop() else {
            return Ok(None);
        };
        let mut prepared = session
            .describe(Some(statement))
            .await
            .map_err(|e| to_pgwire(&e))?;
        if prepared.param_types.len() < types.len() {
            prepared.param_types.resize(types.len(), None);
        }
        prepared.param_oids = self
            .get_parameter_types(&prepared)?
            .iter()
            .map(Type::oid)
            .collect();
        Ok(Some(prepared))
    }

    fn get_parameter_types(&self, stmt: &PreparedStatement) -> PgWireResult<Vec<Type>> {
        Ok(stmt
            .param_types
            .iter()
            .map(|f| f.as_ref().map_or(Type::TEXT, encode::parameter_type))
            .collect())
    }

    fn get_result_schema(
        &self,
        stmt: &PreparedStatement,
        format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        match &stmt.fields {
            Some(schema) => {
                encode::field_infos(schema, format.unwrap_or(&Format::UnifiedText), "UTC")
            }
            None => Ok(Vec::new()),
        }
    }
}

#[async_trait]
impl CopyHandler for QueryHandler {
    async fn on_copy_data<C>(&self, client: &mut C, copy_data: CopyData) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        session(client)?
            .copy_data(&copy_data.data)
            .map_err(|e| to_pgwire(&e))
    }

    async fn on_copy_done<C>(&self, client: &mut C, _done: CopyDone) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let session = session(client)?;
        match session.copy_done().await {
            Ok(Outcome::Command { rows, .. }) => {
                // pgwire reports this status in the ReadyForQuery after a simple-protocol COPY.
                client.set_transaction_status(ready_status(&session));
                let tag = Tag::new("COPY").with_rows(rows.unwrap_or(0));
                client
                    .send(PgWireBackendMessage::CommandComplete(tag.into()))
                    .await?;
                Ok(())
            }
            Ok(other) => Err(PgWireError::ApiError(
                format!("unexpected COPY outcome {other:?}").into(),
            )),
            Err(e) => Err(to_pgwire(&e)),
        }
    }

    async fn on_copy_fail<C>(&self, client: &mut C, fail: CopyFail) -> PgWireError
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if let Ok(session) = session(client) {
            session.copy_fail();
        }
        super::errors::copy_failed(&fail.message)
    }
}
