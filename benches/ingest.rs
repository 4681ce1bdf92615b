//! Historian ingest: deltagate against PostgreSQL 15 on the same machine, in the same run, with
//! default durability on both sides (fsync'd write-ahead log; PostgreSQL's fsync and
//! synchronous_commit on). The table has the shape of Ignition's `sqlt_data_1_2026_11`.
//!
//! 1. PgJDBC batched inserts: 4 connections, 256 rows per executeBatch, autocommit off, one
//!    commit per batch (`benches/jdbc/IngestJdbc.java`, run with Debian's PgJDBC).
//! 2. COPY FROM STDIN (CSV) of the same number of rows into an empty table with its primary key.
//!
//! Both loads run `INGEST_ROUNDS` times (default 3), each round into new months (fresh tables
//! on both sides) and with the two servers' order swapped from the round before, so that one
//! run's noise (these machines are shared) and the order do not decide the ratio. Before each
//! measured load both servers settle, so that neither pays for the loads before it during the
//! load: PostgreSQL runs `VACUUM ANALYZE` (else autovacuum of the table just loaded runs
//! during the next load, on either server) and `CHECKPOINT` (dirty buffers, WAL recycling),
//! deltagate `CHECKPOINT` (earlier months' buffered rows flushed to Delta). Prints each
//! round's rows per second, the ratio deltagate / PostgreSQL (higher is better for deltagate)
//! and the median ratio; deltagate's peak resident memory; and the Delta files it leaves after
//! a clean shutdown for the first round's months.
//!
//! Run: `benches/run ingest` (rows: `INGEST_ROWS`, default 3,000,000).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Deltagate, PASSWORD, Postgres, USER, copy_csv};
use tokio_postgres::NoTls;

/// The months of round `round`: the JDBC load's and the COPY's (2026-11 and 2026-12 first).
fn months(round: usize) -> [String; 2] {
    [0, 1].map(|k| {
        let index = 2026 * 12 + 10 + 2 * round + k;
        format!("{}_{:02}", index / 12, index % 12 + 1)
    })
}

fn table(month: &str) -> String {
    format!("sqlt_data_1_{month}")
}

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
fn jdbc_load(url: &str, table: &str, rows: usize) -> Duration {
    let program = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/jdbc/IngestJdbc.java");
    assert!(
        Path::new(JDBC_JAR).exists(),
        "{JDBC_JAR} is missing: install libpostgresql-jdbc-java (benches/run does)"
    );
    let output = Command::new("java")
        .args(["-cp", JDBC_JAR])
        .arg(&program)
        .args([url, USER, PASSWORD, table])
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

async fn copy_load(conn: &str, table: &str, data: &[u8]) -> Duration {
    let client = client(conn).await;
    let started = Instant::now();
    copy_csv(&client, table, data).await;
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

/// Lets each server finish what earlier loads left to do before the next measured load.
async fn settle(pg: &str, dg: &str) {
    for (conn, sql) in [
        (pg, "VACUUM ANALYZE"),
        (pg, "CHECKPOINT"),
        (dg, "CHECKPOINT"),
    ] {
        client(conn).await.batch_execute(sql).await.expect(sql);
    }
}

/// Prints one round's rates and returns the ratio.
fn report(name: &str, rows: usize, deltagate: Duration, postgres: Duration) -> f64 {
    let rate = |d: Duration| rows as f64 / d.as_secs_f64();
    let ratio = postgres.as_secs_f64() / deltagate.as_secs_f64();
    println!(
        "{name:<34} deltagate {:>10.0} rows/s   postgres {:>10.0} rows/s   ratio {ratio:.2}",
        rate(deltagate),
        rate(postgres),
    );
    ratio
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len().is_multiple_of(2) {
        (values[middle - 1] + values[middle]) / 2.0
    } else {
        values[middle]
    }
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
    let rounds: usize = std::env::var("INGEST_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3)
        .max(1);
    println!(
        "ingest of {rows} rows into sqlt_data_1_<month> tables, {rounds} rounds, default \
         durability on both sides"
    );
    let jdbc_name = format!("PgJDBC executeBatch ({CONNECTIONS} conns, {BATCH}/batch)");
    let copy_name = "COPY FROM STDIN (CSV)";
    let data = csv(rows);
    let (mut jdbc_ratios, mut copy_ratios) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let [jdbc_table, copy_table] = months(round).map(|m| table(&m));
        for conn in [&pg, &dg] {
            let c = client(conn).await;
            for name in [&jdbc_table, &copy_table] {
                c.batch_execute(&create_sql(name)).await.expect("create");
            }
        }
        // Swapped every round: whichever runs second finds the machine as the first left it.
        let deltagate_first = round % 2 == 0;
        settle(&pg, &dg).await;
        let (dg_jdbc, pg_jdbc) = if deltagate_first {
            let dg_time = jdbc_load(&deltagate.jdbc_url(), &jdbc_table, rows);
            (dg_time, jdbc_load(&postgres.jdbc_url(), &jdbc_table, rows))
        } else {
            let pg_time = jdbc_load(&postgres.jdbc_url(), &jdbc_table, rows);
            (jdbc_load(&deltagate.jdbc_url(), &jdbc_table, rows), pg_time)
        };
        for conn in [&dg, &pg] {
            assert_eq!(count(conn, &jdbc_table).await, rows as i64);
        }
        jdbc_ratios.push(report(&jdbc_name, rows, dg_jdbc, pg_jdbc));
        settle(&pg, &dg).await;
        let (dg_copy, pg_copy) = if deltagate_first {
            let dg_time = copy_load(&dg, &copy_table, &data).await;
            (dg_time, copy_load(&pg, &copy_table, &data).await)
        } else {
            let pg_time = copy_load(&pg, &copy_table, &data).await;
            (copy_load(&dg, &copy_table, &data).await, pg_time)
        };
        for conn in [&dg, &pg] {
            assert_eq!(count(conn, &copy_table).await, rows as i64);
        }
        copy_ratios.push(report(copy_name, rows, dg_copy, pg_copy));
    }
    println!(
        "median ratio: PgJDBC {:.2}, COPY {:.2}",
        median(jdbc_ratios),
        median(copy_ratios)
    );

    let peak = deltagate.peak_rss();
    deltagate.stop();
    println!(
        "deltagate peak resident memory: {:.0} MiB",
        peak as f64 / (1 << 20) as f64
    );
    // Both tables are months of Ignition driver 1: partitions of one Delta table.
    for month in months(0) {
        let (files, bytes) = parquet_files(
            &deltagate
                .warehouse
                .join("public/sqlt_data_1")
                .join(format!("month={}", month.replace('_', "-"))),
        );
        let table = table(&month);
        println!(
            "Delta files of {table}: {files} files, {:.1} MiB, {:.1} bytes/row",
            bytes as f64 / (1 << 20) as f64,
            bytes as f64 / rows as f64
        );
    }
}
