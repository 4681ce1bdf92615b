//! The PostgreSQL wire front end: listener, connection limits, TLS, startup and query
//! handlers, and shutdown.
//!
//! [`Server::run`] accepts connections until `shutdown` resolves, serving each on its own task
//! (see `connection`). A connection that has not authenticated yet holds one of
//! `--max-startup-connections` startup slots, so that sockets which never authenticate cannot
//! take the `--max-connections` slots of those that do; a slot of those is taken once the
//! password is proven (see `auth`). Over either limit a client gets FATAL 53300 instead of a
//! dropped socket. On shutdown it stops accepting, gives open connections a grace period, and
//! records exact sequence positions. This module and its children are the only code that
//! knows pgwire; the part of pgwire's message loop that deltagate forks (reading and framing
//! messages, dispatch, a held batch's own messages) is `fastpath`.

mod auth;
mod connection;
mod copy;
mod encode;
mod errors;
mod fastpath;
#[doc(hidden)]
pub mod fuzzing;
mod handlers;
mod params;
mod reply;
mod simple;
pub mod tls;

use std::collections::HashMap;
use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pgwire::api::ConnectionManager;
use pgwire::api::cancel::{CancelHandler, DefaultCancelHandler};
use pgwire::messages::cancel::CancelRequest;
use pgwire::messages::startup::SecretKey;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::sql::{CancelHandle, Engine};

pub use auth::{AuthMethod, StartupConfig, Users};

use fastpath::Handlers;

/// Server settings.
#[derive(Clone)]
pub struct ServerConfig {
    pub startup: StartupConfig,
    /// TLS acceptor when a certificate is configured.
    pub tls: Option<TlsAcceptor>,
    /// Maximum concurrent authenticated connections.
    pub max_connections: usize,
    /// Maximum concurrent connections not authenticated yet.
    pub max_startup_connections: usize,
    /// How long a client may take from connecting to the end of authentication.
    pub authentication_timeout: Duration,
    /// How long shutdown waits for open connections.
    pub shutdown_grace: Duration,
}

impl Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("startup", &self.startup)
            .field("tls", &self.tls.is_some())
            .field("max_connections", &self.max_connections)
            .field("max_startup_connections", &self.max_startup_connections)
            .field("authentication_timeout", &self.authentication_timeout)
            .finish()
    }
}

/// Sessions that can be cancelled, by backend PID and secret key.
#[derive(Debug, Default)]
pub struct CancelRegistry {
    sessions: parking_lot::Mutex<HashMap<i32, (bytes::Bytes, CancelHandle)>>,
}

impl CancelRegistry {
    fn register(self: &Arc<Self>, pid: i32, key: SecretKey, handle: CancelHandle) -> CancelGuard {
        self.sessions.lock().insert(pid, (key.to_bytes(), handle));
        CancelGuard {
            registry: self.clone(),
            pid,
        }
    }
}

/// Removes a session from the registry when its connection ends.
#[derive(Debug)]
struct CancelGuard {
    registry: Arc<CancelRegistry>,
    pid: i32,
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        self.registry.sessions.lock().remove(&self.pid);
    }
}

/// Cancels both the statement being planned (pgwire) and its result stream (the session).
struct Canceller {
    pgwire: DefaultCancelHandler,
    registry: Arc<CancelRegistry>,
}

#[async_trait]
impl CancelHandler for Canceller {
    async fn on_cancel_request(&self, request: CancelRequest) {
        let handle = {
            let sessions = self.registry.sessions.lock();
            sessions
                .get(&request.pid)
                .filter(|(key, _)| *key == request.secret_key.to_bytes())
                .map(|(_, handle)| handle.clone())
        };
        match handle {
            Some(handle) => {
                info!(pid = request.pid, "cancel request");
                handle.cancel();
                self.pgwire.on_cancel_request(request).await;
            }
            None => warn!(
                pid = request.pid,
                "cancel request for unknown backend ignored"
            ),
        }
    }
}

/// The PostgreSQL-wire server.
pub struct Server {
    engine: Arc<Engine>,
    config: ServerConfig,
    connections: Arc<ConnectionManager>,
    registry: Arc<CancelRegistry>,
}

impl Server {
    pub fn new(engine: Arc<Engine>, config: ServerConfig) -> Server {
        Server {
            engine,
            config,
            connections: Arc::new(ConnectionManager::new()),
            registry: Arc::new(CancelRegistry::default()),
        }
    }

    /// Serves connections until `shutdown` resolves, then drains and closes.
    ///
    /// # Errors
    /// Storage errors while recording final state at shutdown.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), crate::sql::SqlError> {
        let context = Arc::new(auth::Context {
            engine: self.engine.clone(),
            config: self.config.startup.clone(),
            connections: self.connections.clone(),
            registry: self.registry.clone(),
            slots: Arc::new(Semaphore::new(self.config.max_connections)),
        });
        let starting = Arc::new(Semaphore::new(self.config.max_startup_connections));
        let tracker = TaskTracker::new();
        tokio::pin!(shutdown);
        let mut backoff = Duration::from_millis(10);
        loop {
            let accepted = tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => accepted,
            };
            let (socket, peer) = match accepted {
                Ok(pair) => {
                    backoff = Duration::from_millis(10);
                    pair
                }
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            };
            // Without a startup slot the connection is still served, to answer its startup
            // packet with 53300 (or its cancel request), within the authentication timeout.
            let startup_slot = starting.clone().try_acquire_owned().ok();
            if startup_slot.is_none() {
                warn!(%peer, limit = self.config.max_startup_connections, "connection refused: too many connections authenticating");
            }
            let handlers = Handlers {
                startup: Arc::new(auth::Startup::new(context.clone(), startup_slot)),
                queries: Arc::new(handlers::QueryHandler::default()),
                // The connection's own: pgwire clones its handlers for every message, and a
                // counter shared by all connections would bounce between cores.
                cancel: Arc::new(Canceller {
                    pgwire: DefaultCancelHandler::new(self.connections.clone()),
                    registry: self.registry.clone(),
                }),
            };
            let tls = self.config.tls.clone();
            let timeout = self.config.authentication_timeout;
            tracker.spawn(async move {
                if let Err(e) = connection::serve(handlers, socket, tls, timeout).await {
                    info!(%peer, error = %e, "connection ended with error");
                }
            });
        }
        info!("shutting down: no longer accepting connections");
        drop(listener);
        tracker.close();
        if tokio::time::timeout(self.config.shutdown_grace, tracker.wait())
            .await
            .is_err()
        {
            warn!(grace = ?self.config.shutdown_grace, "closing connections still open after the grace period");
        }
        self.engine.shutdown().await?;
        info!("shutdown complete");
        Ok(())
    }
}
