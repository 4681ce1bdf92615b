//! Historian ingest: deltagate against PostgreSQL 15 on the same machine, in the same run, with
//! default durability on both sides (fsync'd write-ahead log; PostgreSQL's fsync and
//! synchronous_commit on). The table has the shape of Ignition's `sqlt_data_1_2026_11`.
//!
//! 1. PgJDBC batched inserts: 4 connections, 256 rows per executeBatch, autocommit off, one
//!    commit per batch (`benches/jdbc/IngestJdbc.java`, run with Debian's PgJDBC).
//! 2. COPY FROM STDIN (CSV) of the same number of rows into an empty table with its primary key.
//!
//! Prints rows per second and the ratio deltagate / PostgreSQL (higher is better for deltagate),
//! deltagate's peak resident memory, and the Delta files it leaves after a clean shutdown.
//!
//! Run: `benches/run ingest` (rows: `INGEST_ROWS`, default 3,000,000).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Deltagate, PASSWORD, Postgres, USER, copy_csv};
use tokio_postgres::NoTls;

const JDBC_TABLE: &str = "sqlt_data_1_2026_11";
const COPY_TABLE: &str = "sqlt_data_1_2026_12";
const CONNECTIONS: usize = 4;
const BATCH: usize = 256;

fn create_sql(table: &str) -> String {
    format!(
        "CREATE TABLE {table} (tagid int4, intvalue int8, floatvalue float8, \
         stringvalue varchar(255), datevalue timestamp, dataintegrity int4, t_stamp int8, \
         PRIMARY KEY (tagid, t_stamp))"
    )
}

async fn client(conn: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(conn, NoTls).await.expect("connect");
    tokio::spawn(connection);
    client
}

/// PgJDBC as Debian packages it.
const JDBC_JAR: &str = "/usr/share/java/postgresql.jar";

/// Runs the JDBC loader; returns the elapsed time it measured.
fn jdbc_load(url: &str, rows: usize) -> Duration {
    let program = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/jdbc/IngestJdbc.java");
    assert!(
        Path::new(JDBC_JAR).exists(),
        "{JDBC_JAR} is missing: install libpostgresql-jdbc-java (benches/run does)"
    );
    let output = Command::new("java")
        .args(["-cp", JDBC_JAR])
        .arg(&program)
        .args([url, USER, PASSWORD, JDBC_TABLE])
        .args([rows.to_string(), CONNECTIONS.to_string(), BATCH.to_string()])
        .output()
        .expect("java (default-jre-headless) is needed");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "JDBC loader failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let millis: u64 = stdout
        .split_whitespace()
        .find_map(|w| w.strip_prefix("millis="))
        .and_then(|m| m.parse().ok())
        .expect("loader prints millis=");
    Duration::from_millis(millis)
}

/// The CSV of the COPY test: the same rows the JDBC loader sends.
fn csv(rows: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(rows * 48);
    for i in 0..rows {
        let tag = (i % 4000) + 1;
        let t_stamp = 1_793_491_200_000u64 + (i / 4000) as u64 * 1000;
        let value = (i % 977) as f64 * 0.125;
        out.extend_from_slice(format!("{tag},,{value},,,192,{t_stamp}\n").as_bytes());
    }
    out
}

async fn copy_load(conn: &str, data: &[u8]) -> Duration {
    let client = client(conn).await;
    let started = Instant::now();
    copy_csv(&client, COPY_TABLE, data).await;
    started.elapsed()
}

async fn count(conn: &str, table: &str) -> i64 {
    client(conn)
        .await
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .expect("count")
        .get(0)
}

fn report(name: &str, rows: usize, deltagate: Duration, postgres: Duration) {
    let rate = |d: Duration| rows as f64 / d.as_secs_f64();
    println!(
        "{name:<34} deltagate {:>10.0} rows/s   postgres {:>10.0} rows/s   ratio {:.2}",
        rate(deltagate),
        rate(postgres),
        postgres.as_secs_f64() / deltagate.as_secs_f64()
    );
}

/// Parquet files under a table directory: count and total bytes.
fn parquet_files(dir: &Path) -> (usize, u64) {
    let mut found = (0, 0);
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                let (n, bytes) = parquet_files(&path);
                found = (found.0 + n, found.1 + bytes);
            } else if path.extension().is_some_and(|e| e == "parquet") {
                found = (
                    found.0 + 1,
                    found.1 + entry.metadata().map_or(0, |m| m.len()),
                );
            }
        }
    }
    found
}

#[tokio::main]
async fn main() {
    let rows: usize = std::env::var("INGEST_ROWS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3_000_000);
    let postgres = Postgres::start();
    let mut deltagate = Deltagate::start();
    let (pg, dg) = (postgres.conn_string(), deltagate.conn_string());
    for conn in [&pg, &dg] {
        let c = client(conn).await;
        c.batch_execute(&create_sql(JDBC_TABLE))
            .await
            .expect("create");
        c.batch_execute(&create_sql(COPY_TABLE))
            .await
            .expect("create");
    }
    println!(
        "ingest of {rows} rows into {JDBC_TABLE}-shaped tables, default durability on both sides"
    );

    let dg_jdbc = jdbc_load(&deltagate.jdbc_url(), rows);
    let pg_jdbc = jdbc_load(&postgres.jdbc_url(), rows);
    assert_eq!(count(&dg, JDBC_TABLE).await, rows as i64);
    assert_eq!(count(&pg, JDBC_TABLE).await, rows as i64);
    report(
        &format!("PgJDBC executeBatch ({CONNECTIONS} conns, {BATCH}/batch)"),
        rows,
        dg_jdbc,
        pg_jdbc,
    );

    let data = csv(rows);
    let dg_copy = copy_load(&dg, &data).await;
    let pg_copy = copy_load(&pg, &data).await;
    assert_eq!(count(&dg, COPY_TABLE).await, rows as i64);
    assert_eq!(count(&pg, COPY_TABLE).await, rows as i64);
    report("COPY FROM STDIN (CSV)", rows, dg_copy, pg_copy);

    let peak = deltagate.peak_rss();
    deltagate.stop();
    println!(
        "deltagate peak resident memory: {:.0} MiB",
        peak as f64 / (1 << 20) as f64
    );
    // Both tables are months of Ignition driver 1: partitions of one Delta table.
    for (table, month) in [(JDBC_TABLE, "2026-11"), (COPY_TABLE, "2026-12")] {
        let (files, bytes) = parquet_files(
            &deltagate
                .warehouse
                .join("public/sqlt_data_1")
                .join(format!("month={month}")),
        );
        println!(
            "Delta files of {table}: {files} files, {:.1} MiB, {:.1} bytes/row",
            bytes as f64 / (1 << 20) as f64,
            bytes as f64 / rows as f64
        );
    }
}
