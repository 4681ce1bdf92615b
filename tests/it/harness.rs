//! Test harness: the real `deltagate` binary on a free port with a temporary warehouse.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;
use tokio_postgres::{Client, NoTls};

/// Password of the test user.
pub const PASSWORD: &str = "test-password";
/// Name of the test user and database.
pub const USER: &str = "deltagate";

/// A running deltagate server.
pub struct TestServer {
    child: Option<Child>,
    pub port: u16,
    pub warehouse: PathBuf,
    /// `--warehouse`: the local `warehouse`, or an object store URL.
    location: String,
    log: PathBuf,
    args: Vec<String>,
    _dir: Option<TempDir>,
}

/// What the server logs once it accepts connections.
const LISTENING: &str = "deltagate listening";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

impl TestServer {
    /// A server with a fresh warehouse and default settings.
    pub fn start() -> TestServer {
        Self::start_with(&[])
    }

    /// A server with a fresh warehouse and extra command-line arguments.
    pub fn start_with(args: &[&str]) -> TestServer {
        Self::start_at(None, args)
    }

    /// A server whose warehouse is `location` (an object store URL; a fresh local directory
    /// for `None`), with its write-ahead log in a fresh local directory.
    pub fn start_at(location: Option<&str>, args: &[&str]) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let warehouse = dir.path().join("warehouse");
        let mut args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        if location.is_some() {
            args.push("--wal-dir".into());
            args.push(dir.path().join("wal").display().to_string());
        }
        let mut server = TestServer {
            child: None,
            port: free_port(),
            log: dir.path().join("server.log"),
            location: location.map_or_else(|| warehouse.display().to_string(), str::to_string),
            warehouse,
            args,
            _dir: Some(dir),
        };
        server.spawn().unwrap_or_else(|e| panic!("{e}"));
        server
    }

    /// Runs the binary with arbitrary arguments and waits for it to exit (for startup failures).
    pub fn run_to_exit(args: &[&str]) -> (Option<i32>, String) {
        let output = Command::new(env!("CARGO_BIN_EXE_deltagate"))
            .args(args)
            .env("DELTAGATE_PASSWORD", PASSWORD)
            .output()
            .expect("run deltagate");
        let mut text = String::from_utf8_lossy(&output.stdout).to_string();
        text.push_str(&String::from_utf8_lossy(&output.stderr));
        (output.status.code(), text)
    }

    fn spawn(&mut self) -> Result<(), String> {
        let started = self.log_text().matches(LISTENING).count();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| e.to_string())?;
        let child = Command::new(env!("CARGO_BIN_EXE_deltagate"))
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--warehouse")
            .arg(&self.location)
            .args(&self.args)
            .env("DELTAGATE_PASSWORD", PASSWORD)
            .env(
                "DELTAGATE_LOG",
                "info,deltagate=debug,buoyant_kernel=warn,deltalake_core=warn",
            )
            .stdout(Stdio::from(log.try_clone().map_err(|e| e.to_string())?))
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(|e| format!("cannot start deltagate: {e}"))?;
        self.child = Some(child);
        // Generous: a restart replays the log first, and the suite runs tests side by side.
        let deadline = Instant::now() + Duration::from_secs(180);
        while Instant::now() < deadline {
            // The log line proves the port is this server's, not another test's that happened
            // to draw the same free port.
            if self.log_text().matches(LISTENING).count() > started
                && std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(format!(
                    "deltagate exited with {status}:\n{}",
                    self.log_text()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!(
            "deltagate did not start listening:\n{}",
            self.log_text()
        ))
    }

    /// The server's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops the server with SIGTERM and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the server with SIGKILL (no shutdown at all) and starts it again on the same
    /// warehouse and port.
    pub fn crash_and_restart(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.spawn().unwrap_or_else(|e| panic!("{e}"));
    }

    /// Stops and starts the server on the same warehouse and port.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn().unwrap_or_else(|e| panic!("{e}"));
    }

    /// A libpq-style connection string.
    pub fn conn_string(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user={USER} password={PASSWORD} dbname={USER}",
            self.port
        )
    }

    /// A connected tokio-postgres client.
    pub async fn client(&self) -> Client {
        let (client, connection) = tokio_postgres::connect(&self.conn_string(), NoTls)
            .await
            .unwrap_or_else(|e| panic!("connect: {e}\n{}", self.log_text()));
        tokio::spawn(async move {
            let _ = connection.await;
        });
        client
    }

    /// Process id of the running server.
    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .map(std::process::Child::id)
            .expect("server running")
    }

    /// Path of the warehouse.
    pub fn warehouse(&self) -> &Path {
        &self.warehouse
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The first column of a query's rows.
pub async fn first_column<T: tokio_postgres::types::FromSqlOwned>(
    client: &Client,
    sql: &str,
) -> Vec<T> {
    client
        .query(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// The SQLSTATE of a tokio-postgres error.
pub fn sqlstate(error: &tokio_postgres::Error) -> String {
    error
        .code()
        .map(|c| c.code().to_string())
        .unwrap_or_else(|| format!("no SQLSTATE: {error}"))
}

/// The JSON commit files of a Delta table's log, in version order.
pub fn commit_files(table_dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(table_dir.join("_delta_log"))
        .expect("delta log")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
}

/// The actions of each Delta commit of a table, in version order.
pub fn commits(table_dir: &Path) -> Vec<Vec<serde_json::Value>> {
    commit_files(table_dir)
        .iter()
        .map(|f| {
            std::fs::read_to_string(f)
                .expect("read commit")
                .lines()
                .map(|l| serde_json::from_str(l).expect("json"))
                .collect()
        })
        .collect()
}
