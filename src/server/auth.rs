//! Connection startup: checks of the startup packet, authentication, `ParameterStatus`, and
//! creation of the [`Session`].
//!
//! SCRAM-SHA-256 is the default; MD5, cleartext password and `trust` exist when configured
//! (trust only when asked for explicitly, contract 7). Whatever the method, the startup packet
//! must name a configured user and the served database (else FATAL 28000 / 3D000), and in
//! `require` TLS mode a plaintext connection is refused before any password is exchanged. The
//! pgwire handlers do the protocol; this module decides who may connect and what they see.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use futures::Sink;
use pgwire::api::auth::cleartext::CleartextPasswordAuthStartupHandler;
use pgwire::api::auth::md5pass::{Md5PasswordAuthStartupHandler, hash_md5_password};
use pgwire::api::auth::sasl::SASLAuthStartupHandler;
use pgwire::api::auth::sasl::scram::{ScramAuth, gen_salted_password};
use pgwire::api::auth::{
    AuthSource, LoginInfo, Password, ServerParameterProvider, StartupHandler,
    finish_authentication, protocol_negotiation, save_startup_parameters_to_metadata,
};
use pgwire::api::{
    ClientInfo, ConnectionHandle, ConnectionManager, PgWireConnectionState, PidSecretKeyGenerator,
    RandomPidSecretKeyGenerator,
};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use tracing::{info, warn};

use crate::sql::{Engine, Session, Settings};

use super::sqlstate::fatal;

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

/// Process IDs and cancel keys for all connections; one generator so PIDs are unique.
static PIDS: std::sync::LazyLock<Arc<RandomPidSecretKeyGenerator>> =
    std::sync::LazyLock::new(|| Arc::new(RandomPidSecretKeyGenerator::default()));

/// SCRAM iteration count, as PostgreSQL uses by default.
const SCRAM_ITERATIONS: usize = 4096;

/// The users allowed to connect, with their passwords.
#[derive(Clone)]
pub struct Users {
    passwords: HashMap<String, String>,
    /// Per-server SCRAM salt; salted passwords are derived once per connection attempt.
    salt: Vec<u8>,
}

impl Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Users")
            .field("names", &self.passwords.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Users {
    /// Users with their passwords.
    pub fn new(passwords: HashMap<String, String>) -> Users {
        let mut salt = vec![0u8; 16];
        rand::fill(&mut salt[..]);
        Users { passwords, salt }
    }

    fn password(&self, login: &LoginInfo<'_>) -> PgWireResult<&str> {
        let user = login.user().unwrap_or_default();
        self.passwords
            .get(user)
            .map(String::as_str)
            .ok_or_else(|| PgWireError::InvalidPassword(user.to_string()))
    }

    fn contains(&self, user: &str) -> bool {
        self.passwords.contains_key(user)
    }
}

#[derive(Debug)]
struct ScramSource(Users);

#[async_trait]
impl AuthSource for ScramSource {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        let password = self.0.password(login)?;
        let salted = gen_salted_password(password, &self.0.salt, SCRAM_ITERATIONS);
        Ok(Password::new(Some(self.0.salt.clone()), salted))
    }
}

#[derive(Debug)]
struct Md5Source(Users);

#[async_trait]
impl AuthSource for Md5Source {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        let password = self.0.password(login)?;
        let mut salt = vec![0u8; 4];
        rand::fill(&mut salt[..]);
        let user = login.user().unwrap_or_default();
        let hashed = hash_md5_password(user, password, &salt);
        Ok(Password::new(Some(salt), hashed.into_bytes()))
    }
}

#[derive(Debug)]
struct CleartextSource(Users);

#[async_trait]
impl AuthSource for CleartextSource {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        Ok(Password::new(
            None,
            self.0.password(login)?.as_bytes().to_vec(),
        ))
    }
}

/// `ParameterStatus` values: those of the session the connection will get.
#[derive(Debug)]
pub struct Parameters {
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

/// The password exchange, by method.
enum Method {
    Scram(SASLAuthStartupHandler<Parameters>),
    Md5(Md5PasswordAuthStartupHandler<Md5Source, Parameters>),
    Password(CleartextPasswordAuthStartupHandler<CleartextSource, Parameters>),
    Trust(Arc<Parameters>),
}

/// Startup settings shared by all connections.
#[derive(Debug, Clone)]
pub struct StartupConfig {
    pub method: AuthMethod,
    pub users: Users,
    /// Refuse connections that did not negotiate TLS.
    pub require_tls: bool,
}

/// The startup handler of one connection.
pub struct Startup {
    method: Method,
    engine: Arc<Engine>,
    config: StartupConfig,
    connections: Arc<ConnectionManager>,
    registry: Arc<super::CancelRegistry>,
}

impl Startup {
    /// A handler for a new connection.
    pub fn new(
        engine: Arc<Engine>,
        config: StartupConfig,
        connections: Arc<ConnectionManager>,
        registry: Arc<super::CancelRegistry>,
    ) -> Startup {
        let parameters = || Parameters {
            engine: engine.clone(),
        };
        let method = match config.method {
            AuthMethod::ScramSha256 => {
                let mut scram = ScramAuth::new(Arc::new(ScramSource(config.users.clone())));
                scram.set_iterations(SCRAM_ITERATIONS);
                Method::Scram(
                    SASLAuthStartupHandler::new(Arc::new(parameters()))
                        .with_scram(scram)
                        .with_pid_secret_key_generator(PIDS.clone()),
                )
            }
            AuthMethod::Md5 => Method::Md5(
                Md5PasswordAuthStartupHandler::new(
                    Arc::new(Md5Source(config.users.clone())),
                    Arc::new(parameters()),
                )
                .with_pid_secret_key_generator(PIDS.clone()),
            ),
            AuthMethod::Password => Method::Password(
                CleartextPasswordAuthStartupHandler::new(
                    CleartextSource(config.users.clone()),
                    parameters(),
                )
                .with_pid_secret_key_generator(PIDS.clone()),
            ),
            AuthMethod::Trust => Method::Trust(Arc::new(parameters())),
        };
        Startup {
            method,
            engine,
            config,
            connections,
            registry,
        }
    }

    /// Checks the startup packet before any authentication exchange.
    fn admit<C: ClientInfo>(
        &self,
        client: &C,
        parameters: &std::collections::BTreeMap<String, String>,
    ) -> PgWireResult<()> {
        if self.config.require_tls && !client.is_secure() {
            return Err(fatal(
                "28000",
                "connection without encryption rejected: this server requires SSL",
            ));
        }
        let user = parameters.get("user").ok_or_else(|| {
            fatal(
                "28000",
                "no PostgreSQL user name specified in startup packet",
            )
        })?;
        if !self.config.users.contains(user) {
            warn!(user, peer = %client.socket_addr(), "login for unknown role");
            let message = match self.config.method {
                AuthMethod::Trust => format!("role \"{user}\" does not exist"),
                _ => format!("password authentication failed for user \"{user}\""),
            };
            let code = if self.config.method == AuthMethod::Trust {
                "28000"
            } else {
                "28P01"
            };
            return Err(fatal(code, message));
        }
        let database = parameters.get("database").unwrap_or(user);
        if database != &self.engine.config().database {
            return Err(fatal(
                "3D000",
                format!("database \"{database}\" does not exist"),
            ));
        }
        Ok(())
    }

    /// After authentication: register for cancel requests and open the session.
    fn open_session<C: ClientInfo>(&self, client: &C) -> PgWireResult<()> {
        let (pid, secret_key) = client.pid_and_secret_key();
        let (handle, guard) = self.connections.register(pid, secret_key.clone());
        client
            .session_extensions()
            .insert::<Arc<ConnectionHandle>>(handle);
        client.session_extensions().insert(guard);
        let user = user_of(client);
        let session = Session::new(self.engine.clone(), &user, pid, &startup_parameters(client))
            .map_err(|e| match super::sqlstate::to_pgwire(&e) {
                PgWireError::UserError(mut info) => {
                    info.severity = "FATAL".into();
                    PgWireError::UserError(info)
                }
                other => other,
            })?;
        let cancel = self
            .registry
            .register(pid, secret_key, session.cancel_handle());
        client.session_extensions().insert(cancel);
        client.session_extensions().insert(Arc::new(session));
        info!(user, pid, peer = %client.socket_addr(), tls = client.is_secure(), "session started");
        Ok(())
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
        if let PgWireFrontendMessage::Startup(startup) = &message {
            self.admit(client, &startup.parameters)?;
        }
        match &self.method {
            Method::Scram(h) => h.on_startup(client, message).await?,
            Method::Md5(h) => h.on_startup(client, message).await?,
            Method::Password(h) => h.on_startup(client, message).await?,
            Method::Trust(parameters) => {
                if let PgWireFrontendMessage::Startup(startup) = &message {
                    protocol_negotiation(client, startup).await?;
                    save_startup_parameters_to_metadata(client, startup);
                    let (pid, key) = PIDS.generate(client);
                    client.set_pid_and_secret_key(pid, key);
                    finish_authentication(client, parameters.as_ref()).await?;
                }
            }
        }
        let authenticated = matches!(client.state(), PgWireConnectionState::ReadyForQuery);
        if authenticated && client.session_extensions().get::<Arc<Session>>().is_none() {
            self.open_session(client)?;
        }
        Ok(())
    }
}
