//! Ignition's SQL tag historian against the real server: `tests/ignition/IgnitionEmulator.java`
//! (PgJDBC from Debian's libpostgresql-jdbc-java) runs the historian's whole life cycle, checking
//! every answer against its own model. The same program passes against PostgreSQL 15 in strict
//! mode (`tests/ignition/run-against-postgres.sh`), which shows it asks what Ignition asks.

use std::path::PathBuf;

use crate::clients::{jdbc_jar, run_client};
use crate::harness::{PASSWORD, TestServer, USER};

fn emulate(server: &TestServer, url_options: &str, mode: &str) -> String {
    let program =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/ignition/IgnitionEmulator.java");
    let url = format!(
        "jdbc:postgresql://127.0.0.1:{}/{USER}{url_options}",
        server.port
    );
    let out = run_client(
        server,
        "java",
        &[
            "-cp",
            &jdbc_jar(),
            &program.to_string_lossy(),
            &url,
            USER,
            PASSWORD,
            mode,
        ],
    );
    assert!(
        out.contains(&format!("IGNITION EMULATOR OK mode={mode}")),
        "{out}"
    );
    out
}

/// The default: a re-sent batch succeeds, each (tagid, t_stamp) is stored once, first value kept.
#[test]
fn ignition_historian_life_cycle_skipping_resent_rows() {
    let server = TestServer::start();
    emulate(&server, "", "dedup");
}

/// `deltagate.historian_duplicates=error` (here from the JDBC URL) restores PostgreSQL's 23505.
#[test]
fn ignition_historian_life_cycle_strict_duplicates() {
    let server = TestServer::start();
    emulate(
        &server,
        "?options=-c%20deltagate.historian_duplicates%3Derror",
        "strict",
    );
}
