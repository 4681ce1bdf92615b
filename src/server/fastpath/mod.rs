//! deltagate's fork of part of pgwire's extended-protocol message loop, as of pgwire 0.41.1
//! (pinned `=0.41.1` in `Cargo.toml` for this reason): how a connection's bytes become
//! messages, and which handler each goes to.
//!
//! **What is forked.** pgwire serves a connection with `tokio::server::process_socket`, whose
//! `process_socket_messages!` loop reads a `Framed` socket, lets its
//! `PgWireMessageServerCodec` decode each message straight from the read buffer, and hands
//! every message to `process_message` together with a clone of each of the five handler
//! `Arc`s. deltagate keeps pgwire's TLS negotiation, decoder, `process_message` and
//! `process_error`, and replaces four things:
//!
//! - the read loop (`message_loop`): a connection reads its socket into a buffer of its own
//!   and ends at Terminate, as pgwire's does; pgwire's fixed 60 s startup timeout is
//!   `--authentication-timeout` instead (set in `connection`);
//! - framing (`wire`): each message's length, type for the connection's phase, and field
//!   layout are checked as PostgreSQL reads them before pgwire decodes that message, and only
//!   that message; `wire::check_bind` checks the counts a Bind must agree on with its statement
//!   before pgwire indexes format codes by them;
//! - dispatch of Bind, Describe and Execute while the connection is ready for queries or in
//!   one (the states in which `process_message` hands them to the extended-query handler):
//!   they go to `QueryHandler` directly, and every other message still goes through
//!   `process_message`;
//! - decoding of a held batch's own Binds, Describes and Executes (`batch`): `batch::absorb`
//!   reads them from the buffer with a parser of its own and holds them as rows, without
//!   pgwire's decoder.
//!
//! **Why.** Performance: pgwire's loop clones five handler `Arc`s for every message, and its
//! decoder makes a `Bytes` of every parameter value and a `String` of every name, while a
//! client's batched insert is three messages a row. Safety: pgwire's decoders trust lengths: a
//! message whose fields run past its length panics the connection's task or reads into the
//! next message, bytes a message leaves over are decoded as another message, and format codes
//! that disagree with the statement panic later.
//!
//! **What it relies on in pgwire.** `tokio::server::{negotiate_tls, MaybeTls,
//! PgWireMessageServerCodec, process_message, process_error}`; the framed socket's
//! `ClientInfo` (`state`, `is_secure`) and its read buffer (bytes read during negotiation);
//! `PgWireConnectionState` and where `process_message` routes each state;
//! `PgWireFrontendMessage::{Terminate, CancelRequest, is_extended_query}`; `ErrorInfo` and
//! `is_fatal`; the decoder's size limits (`wire::LARGE_MESSAGE` and `wire::SMALL_MESSAGE` are
//! its `LARGE_PACKET_SIZE_LIMIT` and `SMALL_PACKET_SIZE_LIMIT`); `DEFAULT_NAME` for the unnamed
//! statement and portal; `TARGET_TYPE_BYTE_PORTAL`; `Bind`'s fields, and `Portal::try_new`
//! for the portal a held Bind stands for.
//!
//! **When pgwire is upgraded**, re-verify:
//!
//! 1. `process_socket_messages!` does nothing per message beyond what `message_loop` does:
//!    Terminate ends the connection; COPY's flag, or else `is_extended_query`, tells
//!    `process_error` whether to wait for Sync; its `ErrorHandler` (deltagate sets none) is
//!    still a no-op by default.
//! 2. `process_message` still hands Bind, Describe and Execute in `ReadyForQuery` and
//!    `QueryInProgress` to the extended-query handler and does nothing else with them, and
//!    closes the socket after a CancelRequest (`message_loop`'s `dispatch`).
//! 3. The decoder reads every frontend message as `wire::layout` checks it (no new message
//!    type, field or protocol version that `wire::frame` does not know), with the same size
//!    limits, and decodes only from the buffer it is given.
//! 4. `negotiate_tls` still leaves the bytes it read past an SSLRequest in the read buffer
//!    (`connection` refuses them on a TLS connection, CVE-2021-23214), and sets
//!    `AwaitingStartup`.
//! 5. `process_error` still closes the socket after a FATAL error and sets `AwaitingSync`
//!    when told to wait for Sync.
//! 6. A Bind that `batch::absorb` read gives the same portal as one pgwire decoded: the empty
//!    name is `DEFAULT_NAME`, and `Bind`'s fields and `Portal::try_new` mean what
//!    `params::Rows::bind` assumes.
//! 7. The unit tests of `wire` and `batch` and the kept `messages` fuzz corpus (`fuzzing`)
//!    pass, and so does `tests/it/protocol_violations.rs`.

pub(super) mod batch;
mod message_loop;
pub(super) mod wire;

pub(super) use message_loop::{Handlers, end};
