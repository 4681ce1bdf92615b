//! The message loop of one connection, forked from pgwire's `process_socket` (see the parent
//! module): reading the socket into the connection's own buffer, framing each message, and
//! handing it to its handler.
//!
//! A connection hands pgwire a message to decode only once `wire` framed and checked it, and
//! then that message alone: pgwire's decoders trust what they read. Bind, Describe and Execute
//! go to the query handler directly (pgwire's loop clones five handler `Arc`s for every
//! message, and a client's batched insert is three messages a row), and those of a held batch
//! are taken from the buffer before they are framed at all (see `batch`). A stream that cannot
//! be framed ends the connection with FATAL 08P01; a malformed message gets an ERROR 08P01 and
//! the connection goes on, as in PostgreSQL. Until the connection is authenticated, no read
//! waits past the deadline `connection` set; then the connection is closed (as PostgreSQL
//! closes it, without a message). Called by `connection` once TLS is negotiated.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use bytes::{Buf, BytesMut};
use pgwire::api::query::ExtendedQueryHandler;
use pgwire::api::{ClientInfo, PgWireConnectionState};
use pgwire::error::{ErrorInfo, PgWireError};
use pgwire::messages::PgWireFrontendMessage;
use pgwire::tokio::server::{MaybeTls, PgWireMessageServerCodec, process_error, process_message};
use tokio::io::AsyncReadExt;
use tokio::time::Sleep;
use tokio_util::codec::{Decoder, Framed};
use tracing::info;

use crate::server::{Canceller, auth, errors, handlers, reply};
use crate::sql::PreparedStatement;

use super::wire::{self, Frame, Phase, ProtocolError};

/// A connection's socket once TLS is negotiated, as pgwire frames it (its codec decodes the
/// messages `wire` framed, and keeps the connection's state).
pub(in crate::server) type Socket = Framed<MaybeTls, PgWireMessageServerCodec<PreparedStatement>>;

/// The read buffer of a connection: a client batch is tens of kilobytes, read in one call
/// rather than 8 KiB at a time. `bytes` keeps at most 64 KiB as the size of a buffer it renews,
/// as it does while pieces of the old one are still in use (a portal's parameters).
const READ_BUFFER: usize = 64 * 1024;

/// Room made at most at once for a message still arriving: its length alone must not make the
/// server allocate up to a gigabyte.
const MAX_RESERVE: usize = 1 << 20;

/// The handlers of one connection: what the loop hands messages to.
pub(in crate::server) struct Handlers {
    pub startup: Arc<auth::Startup>,
    pub queries: Arc<handlers::QueryHandler>,
    pub cancel: Arc<Canceller>,
}

/// A Sync message, whole: an Execute directly followed by one ends its pipeline.
const SYNC: &[u8] = &[b'S', 0, 0, 0, 4];

/// Which messages the connection reads in `state`.
fn phase(state: PgWireConnectionState) -> Phase {
    match state {
        PgWireConnectionState::AwaitingSslRequest | PgWireConnectionState::AwaitingStartup => {
            Phase::Startup
        }
        PgWireConnectionState::AuthenticationInProgress => Phase::Authentication,
        PgWireConnectionState::CopyInProgress(_) => Phase::Copy,
        _ => Phase::Query,
    }
}

/// Sends an error; false when it ends the connection (FATAL, after which PostgreSQL sends
/// nothing more, not even ReadyForQuery).
async fn report(socket: &mut Socket, error: PgWireError, extended: bool) -> io::Result<bool> {
    if let Ok(session) = reply::session(socket) {
        // As in PostgreSQL, every error fails the transaction: a block then answers 25P02
        // until it ends, an implicit one (the pipeline's, up to Sync) is rolled back.
        session.statement_failed();
        socket.set_transaction_status(reply::ready_status(&session));
    }
    let info = ErrorInfo::from(error);
    let fatal = info.is_fatal();
    process_error(
        socket,
        PgWireError::UserError(Box::new(info)),
        extended || fatal,
    )
    .await?;
    Ok(!fatal)
}

/// Ends the connection with a FATAL protocol violation.
pub(in crate::server) async fn end(socket: &mut Socket, error: &ProtocolError) -> io::Result<()> {
    report(socket, errors::protocol(error, true), true)
        .await
        .map(|_| ())
}

/// Reads more of the socket into `buffer`, which needs `needed` bytes for its first message;
/// 0 at the end of the stream.
async fn fill(socket: &mut Socket, buffer: &mut BytesMut, needed: usize) -> io::Result<usize> {
    buffer.reserve(needed.saturating_sub(buffer.len()).clamp(1, MAX_RESERVE));
    socket.get_mut().read_buf(buffer).await
}

impl Handlers {
    /// Serves the messages of one client, starting with `early` (bytes read while TLS was
    /// negotiated), until it leaves, breaks the protocol, or is still not authenticated at
    /// `deadline`.
    pub(in crate::server) async fn serve(
        self,
        mut socket: Socket,
        early: &[u8],
        mut deadline: Pin<&mut Sleep>,
        peer: SocketAddr,
    ) -> io::Result<()> {
        let mut buffer = BytesMut::with_capacity(READ_BUFFER);
        buffer.extend_from_slice(early);
        loop {
            let state = socket.state();
            if matches!(state, PgWireConnectionState::ReadyForQuery)
                && self.queries.absorb(&mut buffer)
            {
                if let Err(error) = self.queries.run_held(&mut socket).await
                    && !report(&mut socket, error, true).await?
                {
                    return Ok(());
                }
                continue;
            }
            let go_on = match wire::frame(&buffer, phase(state)) {
                Frame::Incomplete(needed) => {
                    let starting = matches!(phase(state), Phase::Startup | Phase::Authentication);
                    let read = if starting {
                        tokio::select! {
                            _ = &mut deadline => {
                                info!(%peer, "authentication timed out: connection closed");
                                return Ok(());
                            }
                            read = fill(&mut socket, &mut buffer, needed) => read?,
                        }
                    } else {
                        fill(&mut socket, &mut buffer, needed).await?
                    };
                    read > 0
                }
                Frame::Broken(error) => {
                    info!(%peer, %error, "protocol violation: connection closed");
                    end(&mut socket, &error).await?;
                    false
                }
                Frame::Malformed { len, kind, error } => {
                    buffer.advance(len);
                    self.malformed(&mut socket, state, kind, &error).await?
                }
                Frame::Message(len) => {
                    // On its own: pgwire's decoder must not see the messages after it.
                    let mut message = buffer.split_to(len);
                    let sync_follows = buffer.starts_with(SYNC);
                    match socket.codec_mut().decode(&mut message) {
                        Ok(Some(message)) => {
                            self.dispatch(&mut socket, state, message, sync_follows)
                                .await?
                        }
                        Ok(None) => {
                            end(&mut socket, &ProtocolError::Format).await?;
                            false
                        }
                        Err(error) => {
                            let mut info = ErrorInfo::from(error);
                            info.severity = "FATAL".into();
                            report(&mut socket, PgWireError::UserError(Box::new(info)), true)
                                .await?
                        }
                    }
                }
            };
            if !go_on {
                return Ok(());
            }
        }
    }

    /// Answers a whole message that is malformed, as PostgreSQL does; false when the
    /// connection ends.
    async fn malformed(
        &self,
        socket: &mut Socket,
        state: PgWireConnectionState,
        kind: u8,
        error: &ProtocolError,
    ) -> io::Result<bool> {
        match state {
            // After an error everything up to Sync is skipped unread (but a Sync is read).
            PgWireConnectionState::AwaitingSync if kind != b'S' => Ok(true),
            PgWireConnectionState::AwaitingSync => {
                report(socket, errors::protocol(error, false), true).await
            }
            PgWireConnectionState::ReadyForQuery | PgWireConnectionState::QueryInProgress => {
                // Held executions came first, and so do their replies.
                if let Err(held) = self.queries.run_held(socket).await {
                    return report(socket, held, true).await;
                }
                let extended = kind != b'Q';
                report(socket, errors::protocol(error, false), extended).await
            }
            // During COPY (where only Query, Parse, Bind, Describe, Close and Execute can be
            // malformed, and none belongs), and before authentication (where none can be).
            _ => {
                end(socket, error).await?;
                Ok(false)
            }
        }
    }

    /// Hands a decoded message to its handler (`sync_follows`: Sync is the next message the
    /// client sent); false when the connection ends.
    async fn dispatch(
        &self,
        socket: &mut Socket,
        state: PgWireConnectionState,
        message: PgWireFrontendMessage,
        sync_follows: bool,
    ) -> io::Result<bool> {
        let ends = match &message {
            PgWireFrontendMessage::Terminate(_) => return Ok(false),
            // Answered (or not) on a connection of its own, which pgwire then closes.
            PgWireFrontendMessage::CancelRequest(_) => true,
            _ => false,
        };
        let extended = match state {
            PgWireConnectionState::CopyInProgress(extended) => extended,
            _ => message.is_extended_query(),
        };
        // The states in which pgwire hands these messages to the query handler.
        let querying = matches!(
            state,
            PgWireConnectionState::ReadyForQuery | PgWireConnectionState::QueryInProgress
        );
        let result = match message {
            PgWireFrontendMessage::Bind(bind) if querying => {
                self.queries.on_bind(socket, bind).await
            }
            PgWireFrontendMessage::Describe(describe) if querying => {
                self.queries.on_describe(socket, describe).await
            }
            PgWireFrontendMessage::Execute(execute) if querying => {
                self.queries.execute(socket, execute, sync_follows).await
            }
            message => {
                process_message(
                    message,
                    socket,
                    self.startup.clone(),
                    self.queries.clone(),
                    self.queries.clone(),
                    self.queries.clone(),
                    self.cancel.clone(),
                )
                .await
            }
        };
        match result {
            Err(error) => report(socket, error, extended).await,
            Ok(()) => Ok(!ends),
        }
    }
}
