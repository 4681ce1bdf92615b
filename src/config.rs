//! Command-line and environment configuration of the `deltagate` binary.
//!
//! Every flag has an environment variable (`DELTAGATE_*`). Defaults give a working server with
//! no setup: a local warehouse in `./data`, PostgreSQL's port on localhost, SCRAM-SHA-256
//! authentication for the user `deltagate`. [`Config::build`] validates everything and turns
//! it into the plain configuration structs of the library.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytesize::ByteSize;
use clap::Parser;
use url::Url;

use crate::server::{AuthMethod, ServerConfig, StartupConfig, Users, tls};
use crate::sql::EngineConfig;
use crate::storage::{BufferConfig, StorageConfig};
use crate::wal::Durability;

/// TLS policy for client connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TlsMode {
    /// Offer TLS when a certificate is configured; accept plaintext too.
    Prefer,
    /// Refuse connections that do not use TLS (needs a certificate).
    Require,
}

/// What inserts into Ignition historian data tables do with a key that is already stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum HistorianDuplicates {
    /// Store each (tagid, t_stamp) once, keep the first value, let re-sent batches succeed.
    Skip,
    /// Refuse the statement with 23505, as PostgreSQL does.
    Error,
}

impl HistorianDuplicates {
    fn as_setting(self) -> &'static str {
        match self {
            HistorianDuplicates::Skip => "skip",
            HistorianDuplicates::Error => "error",
        }
    }
}

/// deltagate: a PostgreSQL-wire server over Delta Lake tables.
#[derive(Debug, Clone, Parser)]
#[command(version, about)]
pub struct Config {
    /// Address and port to listen on.
    #[arg(long, env = "DELTAGATE_LISTEN", default_value = "127.0.0.1:5432")]
    pub listen: SocketAddr,

    /// Warehouse location: a local directory or a URL (s3://bucket/prefix, file:///path).
    #[arg(long, env = "DELTAGATE_WAREHOUSE", default_value = "./data")]
    pub warehouse: String,

    /// Object store option KEY=VALUE (repeatable), e.g. AWS_ENDPOINT_URL=http://minio:9000.
    #[arg(
        long = "storage-option",
        env = "DELTAGATE_STORAGE_OPTIONS",
        value_delimiter = ','
    )]
    pub storage_options: Vec<String>,

    /// Name of the database clients connect to.
    #[arg(long, env = "DELTAGATE_DATABASE", default_value = "deltagate")]
    pub database: String,

    /// Name of the user allowed to connect.
    #[arg(long, env = "DELTAGATE_USER", default_value = "deltagate")]
    pub user: String,

    /// The user's password. If unset, a random one is generated and logged at start.
    #[arg(long, env = "DELTAGATE_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,

    /// Inserts into Ignition historian data tables (sqlt_data_<drv>_..., sqlth_<drv>_data, keyed
    /// by tagid and t_stamp): skip rows whose key is already stored, or fail with 23505 as
    /// PostgreSQL does. Sessions may change it with SET deltagate.historian_duplicates.
    #[arg(
        long,
        env = "DELTAGATE_HISTORIAN_DUPLICATES",
        value_enum,
        default_value = "skip"
    )]
    pub historian_duplicates: HistorianDuplicates,

    /// Authentication method.
    #[arg(
        long,
        env = "DELTAGATE_AUTH",
        value_enum,
        default_value = "scram-sha-256"
    )]
    pub auth: AuthMethod,

    /// PEM certificate chain for TLS.
    #[arg(long, env = "DELTAGATE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key for TLS.
    #[arg(long, env = "DELTAGATE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Whether plaintext connections are allowed when TLS is configured.
    #[arg(long, env = "DELTAGATE_TLS_MODE", value_enum, default_value = "prefer")]
    pub tls_mode: TlsMode,

    /// Maximum number of concurrent client connections, counted once authenticated.
    #[arg(long, env = "DELTAGATE_MAX_CONNECTIONS", default_value_t = 100)]
    pub max_connections: usize,

    /// Maximum number of connections still authenticating (apart from --max-connections, so
    /// that clients which never log in cannot keep others out).
    #[arg(long, env = "DELTAGATE_MAX_STARTUP_CONNECTIONS", default_value_t = 64)]
    pub max_startup_connections: usize,

    /// How long a client may take from connecting to the end of authentication; then the
    /// connection is closed (PostgreSQL's authentication_timeout).
    #[arg(long, env = "DELTAGATE_AUTHENTICATION_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub authentication_timeout: Duration,

    /// Delta checkpoint interval (commits) for new tables.
    #[arg(long, env = "DELTAGATE_CHECKPOINT_INTERVAL", default_value_t = 10)]
    pub checkpoint_interval: u32,

    /// How long shutdown waits for open connections.
    #[arg(long, env = "DELTAGATE_SHUTDOWN_GRACE", default_value = "10s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,

    /// How often to look for tables other engines placed in the warehouse.
    #[arg(long, env = "DELTAGATE_RESCAN_INTERVAL", default_value = "30s", value_parser = humantime::parse_duration)]
    pub rescan_interval: Duration,

    /// Directory of the write-ahead log (must be local disk). Defaults to `.deltagate/wal` inside
    /// a local warehouse; required for a remote one.
    #[arg(long, env = "DELTAGATE_WAL_DIR")]
    pub wal_dir: Option<PathBuf>,

    /// When a write is acknowledged: `fsync` (after fdatasync of the log; survives power loss)
    /// or `os` (after the write reaches the OS; survives a crash of deltagate only).
    #[arg(
        long,
        env = "DELTAGATE_DURABILITY",
        value_enum,
        default_value = "fsync"
    )]
    pub durability: Durability,

    /// Flush a table's buffer to Delta once it holds this many rows.
    #[arg(long, env = "DELTAGATE_FLUSH_ROWS", default_value_t = 2_000_000)]
    pub flush_rows: usize,

    /// Flush a table's buffer to Delta once it holds this much data (Arrow bytes).
    #[arg(long, env = "DELTAGATE_FLUSH_BYTES", default_value = "128MiB")]
    pub flush_bytes: ByteSize,

    /// Flush a table's buffer to Delta once its oldest row is this old.
    #[arg(long, env = "DELTAGATE_FLUSH_AGE", default_value = "30s", value_parser = humantime::parse_duration)]
    pub flush_age: Duration,

    /// Memory all write buffers may hold together; past it the oldest buffered rows are kept in
    /// the write-ahead log only (and read back from there) until they reach Delta.
    #[arg(long, env = "DELTAGATE_BUFFER_MEMORY", default_value = "1GiB")]
    pub buffer_memory: ByteSize,

    /// Disk the write-ahead log may use while Delta is behind (slow or unreachable); writers
    /// wait while it is exceeded.
    #[arg(long, env = "DELTAGATE_LOG_DISK_BUDGET", default_value = "16GiB")]
    pub log_disk_budget: ByteSize,

    /// How long a writer waits for log space before failing with SQLSTATE 53000.
    #[arg(long, env = "DELTAGATE_BACKPRESSURE_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub backpressure_timeout: Duration,

    /// Let the kernel back this process with transparent huge pages. Off by default, as most
    /// databases advise: a huge-page fault zeroes 2 MiB at once, which makes first touches of
    /// memory (a growing key index, a flush's sorted copy) slow on VMs whose host reclaims
    /// freed guest memory, and compaction stalls add latency.
    #[arg(long, env = "DELTAGATE_HUGE_PAGES")]
    pub huge_pages: bool,

    /// Log filter (tracing EnvFilter syntax).
    #[arg(
        long,
        env = "DELTAGATE_LOG",
        default_value = "info,buoyant_kernel=warn,deltalake_core=warn"
    )]
    pub log: String,
}

/// Configuration errors, reported before the server starts.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid warehouse location {0:?}: {1}")]
    Warehouse(String, String),
    #[error("invalid storage option {0:?}: expected KEY=VALUE")]
    StorageOption(String),
    #[error("--tls-mode require needs --tls-cert and --tls-key")]
    TlsRequiresCertificate,
    #[error("TLS configuration: {0}")]
    Tls(#[from] tls::TlsError),
}

/// Everything the binary needs to start.
#[derive(Debug)]
pub struct Built {
    pub storage: StorageConfig,
    pub engine: EngineConfig,
    pub server: ServerConfig,
    /// The password in effect, when it was generated rather than given.
    pub generated_password: Option<String>,
}

impl Config {
    /// Validates the configuration and builds the library configurations.
    ///
    /// # Errors
    /// [`ConfigError`] for invalid values, and a TLS setup that cannot be loaded.
    pub fn build(&self) -> Result<Built, ConfigError> {
        let mut storage = match Url::parse(&self.warehouse) {
            Ok(url) if url.scheme().len() > 1 => StorageConfig::new(url),
            _ => StorageConfig::local(std::path::Path::new(&self.warehouse))
                .map_err(|e| ConfigError::Warehouse(self.warehouse.clone(), e.to_string()))?,
        };
        storage.checkpoint_interval = self.checkpoint_interval;
        storage.wal_dir.clone_from(&self.wal_dir);
        storage.durability = self.durability;
        storage.buffer = BufferConfig {
            flush_rows: self.flush_rows,
            flush_bytes: byte_count(self.flush_bytes),
            flush_age: self.flush_age,
            memory_budget: byte_count(self.buffer_memory),
            disk_budget: self.log_disk_budget.as_u64(),
            backpressure_timeout: self.backpressure_timeout,
        };
        for option in &self.storage_options {
            let (k, v) = option
                .split_once('=')
                .ok_or_else(|| ConfigError::StorageOption(option.clone()))?;
            storage
                .storage_options
                .insert(k.trim().to_string(), v.to_string());
        }
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(tls::acceptor(cert, key)?),
            _ => None,
        };
        if self.tls_mode == TlsMode::Require && tls.is_none() {
            return Err(ConfigError::TlsRequiresCertificate);
        }
        let (password, generated_password) = match &self.password {
            Some(p) => (p.clone(), None),
            None => {
                let generated: String = (0..20)
                    .map(|_| {
                        let alphabet = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
                        alphabet[rand::random_range(0..alphabet.len())] as char
                    })
                    .collect();
                (generated.clone(), Some(generated))
            }
        };
        let users = Users::new(HashMap::from([(self.user.clone(), password)]));
        Ok(Built {
            storage,
            engine: EngineConfig {
                database: self.database.clone(),
                superuser: self.user.clone(),
                setting_defaults: vec![(
                    "deltagate.historian_duplicates".into(),
                    self.historian_duplicates.as_setting().into(),
                )],
                ..EngineConfig::default()
            },
            server: ServerConfig {
                startup: StartupConfig {
                    method: self.auth,
                    users,
                    require_tls: self.tls_mode == TlsMode::Require,
                },
                tls,
                max_connections: self.max_connections,
                max_startup_connections: self.max_startup_connections,
                authentication_timeout: self.authentication_timeout,
                shutdown_grace: self.shutdown_grace,
            },
            generated_password: generated_password.filter(|_| self.auth != AuthMethod::Trust),
        })
    }
}

fn byte_count(size: ByteSize) -> usize {
    usize::try_from(size.as_u64()).unwrap_or(usize::MAX)
}
