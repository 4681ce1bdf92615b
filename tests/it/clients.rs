//! Real client programs against the real server: Python drivers (psycopg 3, psycopg2,
//! SQLAlchemy), PgJDBC and psql. Prerequisites are installed by `scripts/test`; a missing
//! one fails the test with a message saying so.

use std::path::PathBuf;
use std::process::Command;

use crate::harness::{PASSWORD, TestServer, USER};

fn clients_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

/// The Python interpreter with the client packages (set by `scripts/test`).
pub fn python() -> String {
    std::env::var("DELTAGATE_TEST_PYTHON").unwrap_or_else(|_| {
        panic!(
            "DELTAGATE_TEST_PYTHON is not set: run the suite with scripts/test, which creates a \
             virtualenv with tests/clients/requirements.txt"
        )
    })
}

/// Runs a program with the server's connection settings in the environment.
pub fn run_client(server: &TestServer, program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .current_dir(clients_dir())
        .env("PGHOST", "127.0.0.1")
        .env("PGPORT", server.port.to_string())
        .env("PGUSER", USER)
        .env("PGPASSWORD", PASSWORD)
        .env("PGDATABASE", USER)
        .env("DELTAGATE_WAREHOUSE", server.warehouse())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    assert!(
        output.status.success(),
        "{program} {args:?} failed ({}):\n{stdout}\n{stderr}\n--- server log ---\n{}",
        output.status,
        server.log_text()
    );
    stdout
}

#[test]
fn python_drivers_and_sqlalchemy_reflection() {
    let server = TestServer::start();
    let out = run_client(&server, &python(), &["python_clients.py"]);
    assert!(out.contains("python clients: ok"), "{out}");
}
