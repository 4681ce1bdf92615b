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
    let out = run_client(&server, &python(), &["python_transactions.py"]);
    assert!(out.contains("transactions: ok"), "{out}");
}

/// The PgJDBC jar from Debian's libpostgresql-jdbc-java.
pub fn jdbc_jar() -> String {
    let jar = "/usr/share/java/postgresql.jar";
    assert!(
        std::path::Path::new(jar).exists(),
        "{jar} is missing: run the suite with scripts/test, which installs libpostgresql-jdbc-java"
    );
    jar.to_string()
}

#[test]
fn pgjdbc_batches_metadata_keys_and_cancel() {
    let server = TestServer::start();
    let out = run_client(&server, "java", &["-cp", &jdbc_jar(), "JdbcClient.java"]);
    assert!(out.contains("jdbc: ok"), "{out}");
}

pub fn psql(server: &TestServer, commands: &[&str]) -> String {
    let mut args = vec!["-X", "-v", "ON_ERROR_STOP=1", "--no-psqlrc"];
    for command in commands {
        args.push("-c");
        args.push(command);
    }
    run_client(server, "psql", &args)
}

#[test]
fn psql_describes_tables_like_postgres() {
    let server = TestServer::start();
    psql(
        &server,
        &[
            "CREATE TABLE readings (id serial PRIMARY KEY, tag varchar(255) NOT NULL, v double precision DEFAULT 0, ts timestamp)",
            "CREATE INDEX readings_tsndx ON readings (ts)",
            "CREATE SCHEMA ignition",
        ],
    );
    let out = psql(&server, &["\\dt"]);
    assert!(
        out.contains(" public | readings | table | deltagate"),
        "{out}"
    );
    let out = psql(&server, &["\\d readings"]);
    for expected in [
        "Table \"public.readings\"",
        " id     | integer                     |           | not null | nextval('readings_id_seq'::regclass)",
        " tag    | character varying(255)      |           | not null | ",
        " v      | double precision            |           |          | 0",
        " ts     | timestamp without time zone |           |          | ",
        "\"readings_pkey\" PRIMARY KEY, btree (id)",
        "\"readings_tsndx\" btree (ts)",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
    let out = psql(&server, &["\\dn"]);
    assert!(
        out.contains(" ignition | deltagate") && out.contains(" public   | deltagate"),
        "{out}"
    );
    let out = psql(&server, &["\\l"]);
    assert!(out.contains(" deltagate | deltagate | UTF8"), "{out}");
    let out = psql(&server, &["\\di"]);
    assert!(
        out.contains("readings_pkey") && out.contains("readings_tsndx"),
        "{out}"
    );
}

#[test]
fn psql_copy_both_ways() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.csv");
    let mut csv = String::from("tagid,t_stamp,floatvalue,stringvalue\n");
    for i in 0..1000 {
        csv.push_str(&format!(
            "{},{},{}.5,\"s,{i}\"\n",
            i % 10,
            1_700_000_000_000i64 + i,
            i
        ));
    }
    std::fs::write(&input, csv).expect("write csv");
    psql(
        &server,
        &[
            "CREATE TABLE h (tagid int4, t_stamp int8, floatvalue float8, stringvalue varchar(255), \
           PRIMARY KEY (tagid, t_stamp))",
        ],
    );
    let out = psql(
        &server,
        &[&format!(
            "\\copy h from '{}' with (format csv, header)",
            input.display()
        )],
    );
    assert!(out.contains("COPY 1000"), "{out}");
    let out = psql(
        &server,
        &["SELECT count(*), sum(tagid), max(stringvalue) FROM h"],
    );
    assert!(out.contains(" 1000 | 4500 | s,999"), "{out}");
    // Text format, both ways, through a file.
    let output = dir.path().join("out.tsv");
    let out = psql(
        &server,
        &[&format!(
            "\\copy (SELECT tagid, t_stamp, stringvalue FROM h WHERE t_stamp < 1700000000003 ORDER BY t_stamp) to '{}'",
            output.display()
        )],
    );
    assert!(out.contains("COPY 3"), "{out}");
    let text = std::fs::read_to_string(&output).expect("read output");
    assert_eq!(
        text,
        "0\t1700000000000\ts,0\n1\t1700000000001\ts,1\n2\t1700000000002\ts,2\n"
    );
    psql(
        &server,
        &["CREATE TABLE h2 (tagid int4, t_stamp int8, stringvalue text)"],
    );
    let out = psql(
        &server,
        &[&format!("\\copy h2 from '{}'", output.display())],
    );
    assert!(out.contains("COPY 3"), "{out}");
    let out = psql(
        &server,
        &["SELECT string_agg(stringvalue, '|' ORDER BY t_stamp) FROM h2"],
    );
    assert!(out.contains("s,0|s,1|s,2"), "{out}");
}

/// A self-signed certificate and key for 127.0.0.1, made with openssl.
pub(crate) fn certificate(dir: &std::path::Path) -> (PathBuf, PathBuf) {
    let cert = dir.join("server.crt");
    let key = dir.join("server.key");
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl must be installed");
    assert!(status.status.success(), "openssl failed: {status:?}");
    (cert, key)
}

fn psql_url(server: &TestServer, sslmode: &str) -> String {
    format!(
        "postgresql://{USER}:{PASSWORD}@127.0.0.1:{}/{USER}?sslmode={sslmode}",
        server.port
    )
}

#[test]
fn tls_is_negotiated_required_and_fails_closed() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(dir.path());
    let cert = cert.to_str().unwrap().to_string();
    let key = key.to_str().unwrap().to_string();

    // With a certificate, SSLRequest is accepted and the session is encrypted.
    let server = TestServer::start_with(&["--tls-cert", &cert, "--tls-key", &key]);
    let out = run_client(
        &server,
        "psql",
        &["-X", &psql_url(&server, "require"), "-c", "\\conninfo"],
    );
    assert!(out.contains("SSL connection"), "{out}");
    // Plaintext is still allowed in the default (prefer) mode.
    let out = run_client(
        &server,
        "psql",
        &["-X", &psql_url(&server, "disable"), "-tAc", "SELECT 1"],
    );
    assert_eq!(out.trim(), "1");
    drop(server);

    // require: plaintext connections are refused before authentication.
    let server = TestServer::start_with(&[
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
        "--tls-mode",
        "require",
    ]);
    let out = Command::new("psql")
        .args(["-X", &psql_url(&server, "disable"), "-c", "SELECT 1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("requires SSL"),
        "{out:?}"
    );
    let out = run_client(
        &server,
        "psql",
        &["-X", &psql_url(&server, "require"), "-tAc", "SELECT 2"],
    );
    assert_eq!(out.trim(), "2");
    drop(server);

    // A broken certificate stops the server from starting instead of serving plaintext.
    let broken = dir.path().join("broken.crt");
    std::fs::write(&broken, "not a certificate").unwrap();
    let (code, output) = TestServer::run_to_exit(&[
        "--tls-cert",
        broken.to_str().unwrap(),
        "--tls-key",
        &key,
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_ne!(code, Some(0), "{output}");
    assert!(output.contains("TLS configuration"), "{output}");
    // require without a certificate is a configuration error too.
    let (code, output) =
        TestServer::run_to_exit(&["--tls-mode", "require", "--listen", "127.0.0.1:0"]);
    assert_ne!(code, Some(0), "{output}");
}
