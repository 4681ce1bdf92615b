//! Connection startup: checks of the startup packet, the password exchange, the connection
//! slot, `ParameterStatus`, and creation of the [`Session`].
//!
//! SCRAM-SHA-256 is the default; MD5, cleartext password and `trust` exist when configured
//! (trust only when asked for explicitly, ARCHITECTURE.md contract 7). The exchanges are run here rather than
//! by pgwire's handlers (see `scram`), as PostgreSQL runs them: a user that does not exist is
//! challenged like any other and fails at the end with the same error as a wrong password, so
//! that user names cannot be probed; password messages are parsed with PostgreSQL's checks. In
//! `require` TLS mode a plaintext connection is refused before any password is exchanged.
//! Once the password is proven, as in PostgreSQL: the database must exist (FATAL 3D000) and a
//! connection slot must be free (FATAL 53300). A connection counts against
//! `--max-connections` only from then on; until then it holds one of the few startup slots
//! (see `Server::run`), which this module gives back once authentication succeeded.

mod scram;
mod users;

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use futures::{Sink, SinkExt};
use parking_lot::Mutex;
use pgwire::api::auth::md5pass::hash_md5_password;
use pgwire::api::auth::{
    ServerParameterProvider, StartupHandler, protocol_negotiation,
    save_startup_parameters_to_metadata,
};
use pgwire::api::{
    ClientInfo, ConnectionHandle, ConnectionManager, PgWireConnectionState, PidSecretKeyGenerator,
    RandomPidSecretKeyGenerator,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::response::{ReadyForQuery, TransactionStatus};
use pgwire::messages::startup::{
    Authentication, BackendKeyData, MESSAGE_TYPE_BYTE_PASSWORD_MESSAGE_FAMILY, ParameterStatus,
    PasswordMessageFamily,
};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use subtle::ConstantTimeEq;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{info, warn};

use crate::sql::sqlstate::code;
use crate::sql::{Engine, Session, Settings};

use super::errors;
use super::fastpath::wire::ProtocolError;

pub use scram::ScramError;
pub use users::Users;

/// How clients prove who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthMethod {
    /// SCRAM-SHA-256 (PostgreSQL's default).
    #[value(name = "scram-sha-256")]
    ScramSha256,
    /// MD5 challenge-response (legacy clients).
    Md5,
    /// Cleartext password (only sensible over TLS).
    Password,
    /// No password at all. Only for trusted networks.
    Trust,
}

/// Why a connection is refused during startup, with PostgreSQL's messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no PostgreSQL user name specified in startup packet")]
    NoUser,
    #[error("connection without encryption rejected: this server requires SSL")]
    EncryptionRequired,
    #[error("role \"{0}\" does not exist")]
    UnknownRole(String),
    #[error("password authentication failed for user \"{0}\"")]
    Password(String),
    #[error("empty password returned by client")]
    EmptyPassword,
    #[error("database \"{0}\" does not exist")]
    UnknownDatabase(String),
    #[error("sorry, too many clients already")]
    TooManyClients,
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    #[error(transparent)]
    Scram(#[from] ScramError),
}

/// Process IDs and cancel keys for all connections; one generator so PIDs are unique.
static PIDS: std::sync::LazyLock<Arc<RandomPidSecretKeyGenerator>> =
    std::sync::LazyLock::new(|| Arc::new(RandomPidSecretKeyGenerator::default()));

/// `ParameterStatus` values: those of the session the connection will get.
#[derive(Debug)]
struct Parameters {
    engine: Arc<Engine>,
}

/// The startup parameters a client sent, as saved by pgwire.
fn startup_parameters<C: ClientInfo>(client: &C) -> Vec<(String, String)> {
    client
        .metadata()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn user_of<C: ClientInfo>(client: &C) -> String {
    client
        .metadata()
        .get(pgwire::api::METADATA_USER)
        .cloned()
        .unwrap_or_default()
}

impl ServerParameterProvider for Parameters {
    fn server_parameters<C: ClientInfo>(&self, client: &C) -> Option<HashMap<String, String>> {
        let config = self.engine.config();
        let (version, defaults) = (&config.server_version, &config.setting_defaults);
        let settings = Settings::new(
            &user_of(client),
            version,
            defaults,
            &startup_parameters(client),
        )
        .or_else(|_| Settings::new(&user_of(client), version, defaults, &[]))
        .ok()?;
        let mut params: HashMap<String, String> = settings
            .reported()
            .into_iter()
            .map(|(name, value)| (name.to_string(), value))
            .collect();
        params.insert(
            "server_version_num".into(),
            settings.get("server_version_num").unwrap_or_default(),
        );
        Some(params)
    }
}

/// Startup settings shared by all connections.
#[derive(Debug, Clone)]
pub struct StartupConfig {
    pub method: AuthMethod,
    pub users: Users,
    /// Refuse connections that did not negotiate TLS.
    pub require_tls: bool,
}

/// What every connection's startup needs, shared by all.
#[derive(Debug)]
pub struct Context {
    pub engine: Arc<Engine>,
    pub config: StartupConfig,
    pub connections: Arc<ConnectionManager>,
    pub registry: Arc<super::CancelRegistry>,
    /// The slots of `--max-connections`, one taken by each authenticated connection.
    pub slots: Arc<Semaphore>,
}

/// Where a connection's password exchange stands.
#[derive(Debug, Default)]
enum Stage {
    /// Waiting for the startup packet.
    #[default]
    Startup,
    /// SCRAM: the mechanism list is sent.
    SaslInitial,
    /// SCRAM: the server-first-message is sent.
    SaslFinal(Box<scram::Challenge>),
    /// MD5: the salt is sent; the answer expected, `None` for a user that does not exist.
    Md5(Option<String>),
    /// The cleartext password is asked for.
    Password,
    /// Authenticated, or refused.
    Done,
}

/// The startup handler of one connection.
pub struct Startup {
    context: Arc<Context>,
    stage: Mutex<Stage>,
    /// The connection's startup slot, given back once it is authenticated; `None` when the
    /// connection got none and is refused.
    startup_slot: Mutex<Option<OwnedSemaphorePermit>>,
    refused: bool,
}

impl Startup {
    /// The handler of a new connection, holding one of the startup slots; without one the
    /// connection is refused with FATAL 53300 when its startup packet arrives.
    pub fn new(context: Arc<Context>, startup_slot: Option<OwnedSemaphorePermit>) -> Startup {
        Startup {
            context,
            stage: Mutex::new(Stage::Startup),
            refused: startup_slot.is_none(),
            startup_slot: Mutex::new(startup_slot),
        }
    }

    fn config(&self) -> &StartupConfig {
        &self.context.config
    }

    /// Checks the startup packet before any authentication exchange.
    fn admit<C: ClientInfo>(
        &self,
        client: &C,
        parameters: &std::collections::BTreeMap<String, String>,
    ) -> Result<(), AuthError> {
        if self.refused {
            return Err(AuthError::TooManyClients);
        }
        if self.config().require_tls && !client.is_secure() {
            return Err(AuthError::EncryptionRequired);
        }
        let user = parameters.get("user").ok_or(AuthError::NoUser)?;
        // Without a password to check, there is nothing to hide.
        if self.config().method == AuthMethod::Trust && !self.config().users.contains(user) {
            warn!(user, peer = %client.socket_addr(), "login for unknown role");
            return Err(AuthError::UnknownRole(user.clone()));
        }
        Ok(())
    }

    /// Handles the startup packet: starts the method's exchange.
    async fn start<C>(
        &self,
        client: &mut C,
        startup: &pgwire::messages::startup::Startup,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self.admit(client, &startup.parameters)
            .map_err(|e| refusal(&e))?;
        protocol_negotiation(client, startup).await?;
        save_startup_parameters_to_metadata(client, startup);
        let (request, stage) = match self.config().method {
            AuthMethod::Trust => return self.complete(client).await,
            AuthMethod::ScramSha256 => (
                Authentication::SASL(vec![scram::MECHANISM.to_owned()]),
                Stage::SaslInitial,
            ),
            AuthMethod::Md5 => {
                let mut salt = vec![0u8; 4];
                rand::fill(&mut salt[..]);
                let user = user_of(client);
                let expected = self
                    .config()
                    .users
                    .password(&user)
                    .map(|password| hash_md5_password(&user, password, &salt));
                (Authentication::MD5Password(salt), Stage::Md5(expected))
            }
            AuthMethod::Password => (Authentication::CleartextPassword, Stage::Password),
        };
        *self.stage.lock() = stage;
        client.set_state(PgWireConnectionState::AuthenticationInProgress);
        client
            .send(PgWireBackendMessage::Authentication(request))
            .await?;
        Ok(())
    }

    /// Handles a password message: the next step of the exchange.
    async fn respond<C>(&self, client: &mut C, body: &[u8]) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let user = user_of(client);
        let peer = client.socket_addr();
        let stage = std::mem::replace(&mut *self.stage.lock(), Stage::Done);
        let failed = |known: bool| {
            warn!(
                user,
                %peer,
                reason = if known { "wrong password" } else { "unknown role" },
                "password authentication failed"
            );
            refusal(&AuthError::Password(user.clone()))
        };
        let refused = |e: AuthError| refusal(&e);
        match stage {
            Stage::SaslInitial => {
                let data = sasl_initial_response(body).map_err(refused)?;
                let (verifier, known) = self.config().users.scram(&user);
                let (server_first, challenge) =
                    scram::challenge(verifier, !known, data).map_err(|e| refused(e.into()))?;
                *self.stage.lock() = Stage::SaslFinal(Box::new(challenge));
                client
                    .send(PgWireBackendMessage::Authentication(
                        Authentication::SASLContinue(server_first.into_bytes().into()),
                    ))
                    .await?;
                Ok(())
            }
            Stage::SaslFinal(challenge) => {
                let server_final = match challenge.verify(body) {
                    Ok(server_final) => server_final,
                    Err(ScramError::Failed) => {
                        return Err(failed(self.config().users.contains(&user)));
                    }
                    Err(e) => return Err(refused(e.into())),
                };
                client
                    .feed(PgWireBackendMessage::Authentication(
                        Authentication::SASLFinal(server_final.into_bytes().into()),
                    ))
                    .await?;
                self.complete(client).await
            }
            Stage::Md5(expected) => {
                let given = password_packet(body).map_err(refused)?;
                let known = expected.is_some();
                let matches = expected.is_some_and(|e| bool::from(e.as_bytes().ct_eq(given)));
                if !matches {
                    return Err(failed(known));
                }
                self.complete(client).await
            }
            Stage::Password => {
                let given = password_packet(body).map_err(refused)?;
                let expected = self.config().users.password(&user);
                let matches = expected.is_some_and(|e| bool::from(e.as_bytes().ct_eq(given)));
                if !matches {
                    return Err(failed(expected.is_some()));
                }
                self.complete(client).await
            }
            Stage::Startup | Stage::Done => Err(refused(
                ProtocolError::MessageType(MESSAGE_TYPE_BYTE_PASSWORD_MESSAGE_FAMILY).into(),
            )),
        }
    }

    /// After the password is proven: PostgreSQL's checks, a connection slot, the session, and
    /// the rest of the startup messages.
    async fn complete<C>(&self, client: &mut C) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        *self.stage.lock() = Stage::Done;
        client
            .feed(PgWireBackendMessage::Authentication(Authentication::Ok))
            .await?;
        let user = user_of(client);
        let database = client
            .metadata()
            .get(pgwire::api::METADATA_DATABASE)
            .cloned()
            .unwrap_or_else(|| user.clone());
        if database != self.context.engine.config().database {
            return Err(refusal(&AuthError::UnknownDatabase(database)));
        }
        let Ok(slot) = self.context.slots.clone().try_acquire_owned() else {
            warn!(%user, peer = %client.socket_addr(), "connection refused: too many clients");
            return Err(refusal(&AuthError::TooManyClients));
        };
        client.session_extensions().insert(slot);
        // No longer starting: the startup slot goes to the next connection.
        self.startup_slot.lock().take();
        let (pid, secret_key) = PIDS.generate(client);
        client.set_pid_and_secret_key(pid, secret_key.clone());
        self.open_session(client)?;
        let parameters = Parameters {
            engine: self.context.engine.clone(),
        };
        for (name, value) in parameters.server_parameters(client).unwrap_or_default() {
            client
                .feed(PgWireBackendMessage::ParameterStatus(ParameterStatus::new(
                    name, value,
                )))
                .await?;
        }
        client
            .feed(PgWireBackendMessage::BackendKeyData(BackendKeyData::new(
                pid, secret_key,
            )))
            .await?;
        client
            .send(PgWireBackendMessage::ReadyForQuery(ReadyForQuery::new(
                TransactionStatus::Idle,
            )))
            .await?;
        client.set_state(PgWireConnectionState::ReadyForQuery);
        Ok(())
    }

    /// Registers the connection for cancel requests and opens its session.
    fn open_session<C: ClientInfo>(&self, client: &C) -> PgWireResult<()> {
        let (pid, secret_key) = client.pid_and_secret_key();
        let (handle, guard) = self.context.connections.register(pid, secret_key.clone());
        client
            .session_extensions()
            .insert::<Arc<ConnectionHandle>>(handle);
        client.session_extensions().insert(guard);
        let user = user_of(client);
        let session = Session::new(
            self.context.engine.clone(),
            &user,
            pid,
            &startup_parameters(client),
        )
        .map_err(|e| errors::fatal_sql(&e))?;
        let cancel = self
            .context
            .registry
            .register(pid, secret_key, session.cancel_handle());
        client.session_extensions().insert(cancel);
        client.session_extensions().insert(Arc::new(session));
        info!(user, pid, peer = %client.socket_addr(), tls = client.is_secure(), "session started");
        Ok(())
    }
}

/// The SASLInitialResponse's data: the mechanism's name, then the data's length (-1 for none)
/// and the data, read as PostgreSQL reads them.
fn sasl_initial_response(body: &[u8]) -> Result<&[u8], AuthError> {
    let end = body
        .iter()
        .position(|b| *b == 0)
        .ok_or(ProtocolError::String)?;
    let (mechanism, rest) = body.split_at(end);
    if mechanism != scram::MECHANISM.as_bytes() {
        return Err(ScramError::Mechanism.into());
    }
    let rest = rest.get(1..).unwrap_or_default();
    let (len, data) = match rest.split_first_chunk::<4>() {
        Some((len, data)) => (i32::from_be_bytes(*len), data),
        None => return Err(ProtocolError::Insufficient.into()),
    };
    if len == -1 {
        return if data.is_empty() {
            Ok(&[])
        } else {
            Err(ProtocolError::Format.into())
        };
    }
    let len = usize::try_from(len).map_err(|_| ProtocolError::Insufficient)?;
    match data.len().cmp(&len) {
        std::cmp::Ordering::Less => Err(ProtocolError::Insufficient.into()),
        std::cmp::Ordering::Greater => Err(ProtocolError::Format.into()),
        std::cmp::Ordering::Equal => Ok(data),
    }
}

/// A password message's password (cleartext, or MD5's answer), checked as PostgreSQL's
/// `recv_password_packet` does.
fn password_packet(body: &[u8]) -> Result<&[u8], AuthError> {
    match body.iter().position(|b| *b == 0) {
        Some(0) if body.len() == 1 => Err(AuthError::EmptyPassword),
        Some(end) if end + 1 == body.len() => Ok(body.get(..end).unwrap_or_default()),
        _ => Err(ProtocolError::PasswordPacket.into()),
    }
}

/// For the fuzz target (see `fuzzing`): a password message's body through every parser and
/// the SCRAM exchange.
pub(super) fn decode_password_message(body: &[u8]) {
    let _ = password_packet(body);
    let verifier = || scram::Verifier::mock([7; scram::SALT_LEN]);
    if let Ok(data) = sasl_initial_response(body)
        && let Ok((_, challenge)) = scram::challenge(verifier(), false, data)
    {
        let _ = challenge.verify(data);
    }
    if let Ok((_, challenge)) = scram::challenge(verifier(), false, b"n,,n=,r=fuzz") {
        let _ = challenge.verify(body);
    }
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match message {
            PgWireFrontendMessage::Startup(startup) => self.start(client, &startup).await,
            PgWireFrontendMessage::PasswordMessageFamily(PasswordMessageFamily::Raw(body)) => {
                self.respond(client, &body).await
            }
            // The connection only passes the startup packet and password messages here.
            _ => Err(refusal(&AuthError::Protocol(ProtocolError::Format))),
        }
    }
}

/// The wire error for a refused startup or authentication: always FATAL.
pub(super) fn refusal(error: &AuthError) -> PgWireError {
    let code = match error {
        AuthError::NoUser | AuthError::EncryptionRequired | AuthError::UnknownRole(_) => {
            code::INVALID_AUTHORIZATION_SPECIFICATION
        }
        AuthError::Password(_) | AuthError::EmptyPassword => code::INVALID_PASSWORD,
        AuthError::UnknownDatabase(_) => code::INVALID_CATALOG_NAME,
        AuthError::TooManyClients => code::TOO_MANY_CONNECTIONS,
        AuthError::Protocol(e) => errors::protocol_code(e),
        AuthError::Scram(ScramError::Authzid | ScramError::Extension) => {
            code::FEATURE_NOT_SUPPORTED
        }
        AuthError::Scram(ScramError::Failed) => code::INVALID_PASSWORD,
        AuthError::Scram(
            ScramError::Mechanism
            | ScramError::Malformed(_)
            | ScramError::Nonce
            | ScramError::ChannelBinding,
        ) => code::PROTOCOL_VIOLATION,
    };
    let mut info = ErrorInfo::new("FATAL".to_string(), code.to_string(), error.to_string());
    if let AuthError::Scram(ScramError::Malformed(detail)) = error {
        info.detail = Some(detail.clone());
    }
    PgWireError::UserError(Box::new(info))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_messages_are_checked_as_postgres_does() {
        assert_eq!(password_packet(b"secret\0"), Ok(&b"secret"[..]));
        assert_eq!(password_packet(b"\0"), Err(AuthError::EmptyPassword));
        for bad in [&b""[..], b"secret", b"a\0b", b"a\0\0"] {
            assert_eq!(
                password_packet(bad),
                Err(AuthError::Protocol(ProtocolError::PasswordPacket)),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn sasl_initial_responses_are_checked_as_postgres_does() {
        let message = |mechanism: &[u8], len: i32, data: &[u8]| {
            let mut out = mechanism.to_vec();
            out.push(0);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(data);
            out
        };
        assert_eq!(
            sasl_initial_response(&message(b"SCRAM-SHA-256", 3, b"abc")),
            Ok(&b"abc"[..])
        );
        assert_eq!(
            sasl_initial_response(&message(b"SCRAM-SHA-256", -1, b"")),
            Ok(&b""[..])
        );
        assert_eq!(
            sasl_initial_response(&message(b"SCRAM-SHA-256-PLUS", 3, b"abc")),
            Err(AuthError::Scram(ScramError::Mechanism))
        );
        assert_eq!(
            sasl_initial_response(&message(b"SCRAM-SHA-256", 9, b"abc")),
            Err(AuthError::Protocol(ProtocolError::Insufficient))
        );
        assert_eq!(
            sasl_initial_response(&message(b"SCRAM-SHA-256", 1, b"abc")),
            Err(AuthError::Protocol(ProtocolError::Format))
        );
        assert_eq!(
            sasl_initial_response(&message(b"SCRAM-SHA-256", -2, b"")),
            Err(AuthError::Protocol(ProtocolError::Insufficient))
        );
        assert_eq!(
            sasl_initial_response(b""),
            Err(AuthError::Protocol(ProtocolError::String))
        );
        assert_eq!(
            sasl_initial_response(b"SCRAM-SHA-256\0\0\0"),
            Err(AuthError::Protocol(ProtocolError::Insufficient))
        );
    }
}
