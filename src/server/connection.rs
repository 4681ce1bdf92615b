//! One client connection up to its message loop: TLS negotiation, the authentication deadline,
//! and the bytes a client may not send before a TLS handshake.
//!
//! Until it is authenticated a connection has `--authentication-timeout` in all, TLS
//! negotiation included, then it is closed (as PostgreSQL closes it, without a message): the
//! deadline starts here, and the message loop (`fastpath`) watches it for every read until
//! authentication ends. Called by [`Server::run`](super::Server::run) for each accepted
//! socket, on a task of its own.

use std::io;
use std::time::Duration;

use pgwire::api::ClientInfo;
use pgwire::tokio::server::negotiate_tls;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use crate::sql::PreparedStatement;

use super::fastpath::wire::ProtocolError;
use super::fastpath::{self, Handlers};

/// Serves one client until it leaves, breaks the protocol, or fails to authenticate in
/// `authentication_timeout`.
pub(super) async fn serve(
    handlers: Handlers,
    socket: TcpStream,
    tls: Option<TlsAcceptor>,
    authentication_timeout: Duration,
) -> io::Result<()> {
    let deadline = tokio::time::sleep(authentication_timeout);
    tokio::pin!(deadline);
    let peer = socket.peer_addr()?;
    let negotiated = tokio::select! {
        _ = &mut deadline => return Ok(()),
        socket = negotiate_tls::<PreparedStatement>(socket, tls) => socket?,
    };
    // A direct TLS handshake without a certificate configured.
    let Some(mut socket) = negotiated else {
        return Ok(());
    };
    let early = std::mem::take(socket.read_buffer_mut());
    if !early.is_empty() && socket.is_secure() {
        // Sent in plaintext after SSLRequest, before the handshake: someone in the middle may
        // have put it there (PostgreSQL's CVE-2021-23214).
        return fastpath::end(&mut socket, &ProtocolError::UnencryptedData).await;
    }
    handlers.serve(socket, &early, deadline, peer).await
}
