//! Connection setup and `SELECT 1` round trip: deltagate against PostgreSQL 15, same machine,
//! same client (tokio-postgres, SCRAM-SHA-256, no TLS), same run. Prints medians and the ratio
//! deltagate / PostgreSQL (lower is better for deltagate).
//!
//! Run: `benches/run` (or `cargo bench --bench wire`).

mod common;

use std::time::{Duration, Instant};

use common::{Deltagate, Postgres, median};
use tokio_postgres::NoTls;

const CONNECTIONS: usize = 200;
const ROUND_TRIPS: usize = 5000;

async fn connect_times(conn: &str) -> Vec<Duration> {
    let mut samples = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        let started = Instant::now();
        let (client, connection) = tokio_postgres::connect(conn, NoTls).await.expect("connect");
        let task = tokio::spawn(connection);
        client.simple_query("").await.expect("ready");
        samples.push(started.elapsed());
        drop(client);
        let _ = task.await;
    }
    samples
}

async fn select_one_times(conn: &str, extended: bool) -> Vec<Duration> {
    let (client, connection) = tokio_postgres::connect(conn, NoTls).await.expect("connect");
    tokio::spawn(connection);
    let stmt = client.prepare("SELECT 1").await.expect("prepare");
    let mut samples = Vec::with_capacity(ROUND_TRIPS);
    for _ in 0..ROUND_TRIPS {
        let started = Instant::now();
        if extended {
            let rows = client.query(&stmt, &[]).await.expect("select");
            assert_eq!(rows.len(), 1);
        } else {
            client.simple_query("SELECT 1").await.expect("select");
        }
        samples.push(started.elapsed());
    }
    samples
}

fn report(name: &str, deltagate: Duration, postgres: Duration) {
    println!(
        "{name:<32} deltagate {:>9.1} µs   postgres {:>9.1} µs   ratio {:.2}",
        deltagate.as_secs_f64() * 1e6,
        postgres.as_secs_f64() * 1e6,
        deltagate.as_secs_f64() / postgres.as_secs_f64()
    );
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let postgres = Postgres::start();
    let deltagate = Deltagate::start();
    let (pg, dg) = (postgres.conn_string(), deltagate.conn_string());
    // Warm both servers up.
    let _ = connect_times(&pg).await;
    let _ = connect_times(&dg).await;
    println!("connection setup: {CONNECTIONS} sequential connects (SCRAM), median");
    report(
        "connect + auth + ready",
        median(connect_times(&dg).await),
        median(connect_times(&pg).await),
    );
    println!("SELECT 1: {ROUND_TRIPS} sequential round trips on one connection, median");
    report(
        "SELECT 1 (simple protocol)",
        median(select_one_times(&dg, false).await),
        median(select_one_times(&pg, false).await),
    );
    report(
        "SELECT 1 (extended, prepared)",
        median(select_one_times(&dg, true).await),
        median(select_one_times(&pg, true).await),
    );
}
