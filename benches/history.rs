//! Historian reads: deltagate against PostgreSQL 15 on the same machine, in the same run, on a
//! month of Ignition history (`sqlt_data_1_2026_11`, by default 3,000,000 rows: 1,000 tags
//! sampled evenly over November 2026) plus `sqlth_te`.
//!
//! The queries are the ones Ignition sends (see `../shared/ref/ignition.md`), as prepared
//! statements with parameters, and one a dashboard sends:
//!
//! 1. range over 10 tags: an OR-chain of 10 tag ids and a one-day t_stamp range, by t_stamp;
//! 2. seed value: the last value of one tag before a start time at the end of the month, so the
//!    whole month lies before it (`... ORDER BY t_stamp DESC LIMIT 1`);
//! 3. 100-tag trend over the whole month (an IN list of 100 ids), by t_stamp;
//! 4. per-minute averages per tag over the month, for 100 tags.
//!
//! Each query runs warm, several times; the median is reported with the ratio
//! PostgreSQL / deltagate (higher is better for deltagate), after checking both return the same
//! rows (count and checksum). deltagate is measured in both states a live plant's rows are in:
//! first *buffered* (durable in the write-ahead log, not yet in Delta: the server runs with
//! flushes held back, as the newest rows always are), then *flushed* (after a clean restart
//! wrote them to Delta). Then the bytes per row each stores: deltagate's Parquet files of the
//! month, PostgreSQL's `pg_total_relation_size` (heap, TOAST and indexes).
//!
//! Run: `benches/run history` (rows: `HISTORY_ROWS`).

mod common;

use std::time::{Duration, Instant};

use common::{Deltagate, Postgres, copy_csv, median};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, Row};

const TABLE: &str = "sqlt_data_1_2026_11";
const TAGS: i32 = 1_000;
/// 2026-11-01T00:00:00Z and the month's length, in milliseconds.
const MONTH_START: i64 = 1_793_491_200_000;
const MONTH_MS: i64 = 30 * 86_400_000;
const RUNS: usize = 7;

async fn client(conn: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(conn, NoTls).await.expect("connect");
    tokio::spawn(connection);
    client
}

/// The month's rows as CSV: every tag sampled `per_tag` times, evenly over the month.
fn csv(per_tag: i64) -> Vec<u8> {
    let step = MONTH_MS / per_tag;
    let mut out = Vec::with_capacity((per_tag * TAGS as i64 * 40) as usize);
    for sample in 0..per_tag {
        for tag in 1..=TAGS {
            let t_stamp = MONTH_START + sample * step + tag as i64;
            let value = ((sample * 7 + tag as i64) % 1000) as f64 * 0.25;
            out.extend_from_slice(format!("{tag},,{value},,,192,{t_stamp}\n").as_bytes());
        }
    }
    out
}

async fn load(conn: &str, data: &[u8]) {
    let client = client(conn).await;
    client
        .batch_execute(&format!(
            "CREATE TABLE sqlth_te (id serial PRIMARY KEY, tagpath varchar(255), scid int4, \
               datatype int4, querymode int4, created int8, retired int8);
             CREATE TABLE {TABLE} (tagid int4 NOT NULL, intvalue int8, floatvalue float8, \
               stringvalue varchar(255), datevalue timestamp, dataintegrity int4, \
               t_stamp int8 NOT NULL, PRIMARY KEY (tagid, t_stamp));
             CREATE INDEX {TABLE}t_stampndx ON {TABLE} (t_stamp);
             INSERT INTO sqlth_te (tagpath, scid, datatype, querymode, created) \
               SELECT 'plant/line/tag' || v, 1 AS scid, 1 AS datatype, 3 AS querymode, {MONTH_START} AS created \
               FROM generate_series(1, {TAGS}) AS t(v)"
        ))
        .await
        .expect("schema");
    copy_csv(&client, TABLE, data).await;
}

/// A query with its parameters, as Ignition prepares it.
struct Query {
    name: &'static str,
    sql: String,
    params: Vec<Box<dyn ToSql + Sync + Send>>,
}

fn queries() -> Vec<Query> {
    let columns = "tagid, intvalue, floatvalue, stringvalue, datevalue, dataintegrity, t_stamp";
    let or_chain = (1..=10)
        .map(|i| format!("tagid = ${i}"))
        .collect::<Vec<_>>()
        .join(" OR ");
    let in_list = (1..=100)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let ten: Vec<Box<dyn ToSql + Sync + Send>> = (0..10)
        .map(|i| Box::new(1 + i * 97) as Box<dyn ToSql + Sync + Send>)
        .collect();
    let hundred = || -> Vec<Box<dyn ToSql + Sync + Send>> {
        (0..100)
            .map(|i| Box::new(5 + i * 9) as Box<dyn ToSql + Sync + Send>)
            .collect()
    };
    let day = MONTH_START + 14 * 86_400_000;
    let mut range = ten;
    range.push(Box::new(day));
    range.push(Box::new(day + 86_400_000));
    let mut trend = hundred();
    trend.push(Box::new(MONTH_START));
    trend.push(Box::new(MONTH_START + MONTH_MS));
    let mut minutes = hundred();
    minutes.push(Box::new(MONTH_START));
    minutes.push(Box::new(MONTH_START + MONTH_MS));
    vec![
        Query {
            name: "range over 10 tags (1 day)",
            sql: format!(
                "SELECT {columns} FROM {TABLE} WHERE ({or_chain}) AND t_stamp >= $11 AND t_stamp <= $12 ORDER BY t_stamp"
            ),
            params: range,
        },
        Query {
            name: "seed value (whole month before)",
            // Ignition's text, confirmed (../shared/ref/ignition.md).
            sql: format!(
                "SELECT \"tagid\",\"intvalue\",\"floatvalue\",\"stringvalue\",\"datevalue\",\"t_stamp\",\"dataintegrity\" \
                 FROM {TABLE} WHERE \"tagid\" IN ($1) and \"t_stamp\"<$2 ORDER BY \"t_stamp\" DESC LIMIT 1"
            ),
            params: vec![Box::new(421i32), Box::new(MONTH_START + MONTH_MS)],
        },
        Query {
            name: "100-tag trend (whole month)",
            sql: format!(
                "SELECT {columns} FROM {TABLE} WHERE tagid IN ({in_list}) AND t_stamp >= $101 AND t_stamp < $102 ORDER BY t_stamp"
            ),
            params: trend,
        },
        Query {
            name: "per-minute averages, 100 tags",
            sql: format!(
                "SELECT tagid, t_stamp / 60000 AS minute, avg(floatvalue) AS value FROM {TABLE} \
                 WHERE tagid IN ({in_list}) AND t_stamp >= $101 AND t_stamp < $102 \
                 GROUP BY tagid, t_stamp / 60000 ORDER BY tagid, minute"
            ),
            params: minutes,
        },
    ]
}

/// Row count and an order-sensitive checksum of the first and last columns.
fn digest(rows: &[Row]) -> (usize, f64) {
    let mut sum = 0.0;
    for (i, row) in rows.iter().enumerate() {
        let first: i32 = row.get(0);
        let at = row.len() - 1;
        let last = match row.columns()[at].type_().name() {
            "float8" => row.get::<_, Option<f64>>(at).unwrap_or(0.0),
            "int4" => row.get::<_, Option<i32>>(at).unwrap_or(0) as f64,
            _ => row.get::<_, Option<i64>>(at).unwrap_or(0) as f64,
        };
        sum += (first as f64 + last) * ((i % 7) + 1) as f64;
    }
    (rows.len(), sum)
}

/// Median time of the query over `RUNS` warm runs, and its result's digest.
async fn time(client: &Client, query: &Query) -> (Duration, (usize, f64)) {
    let statement = client.prepare(&query.sql).await.expect("prepare");
    let params: Vec<&(dyn ToSql + Sync)> = query
        .params
        .iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect();
    let mut samples = Vec::with_capacity(RUNS);
    let mut result = (0, 0.0);
    // One warm-up run, then the measured ones.
    for run in 0..=RUNS {
        let started = Instant::now();
        let rows = client.query(&statement, &params).await.expect(query.name);
        let elapsed = started.elapsed();
        result = digest(&rows);
        if run > 0 {
            samples.push(elapsed);
        }
    }
    (median(samples), result)
}

/// Runs every query on both servers, checks they agree, and prints the times; `state`: where
/// deltagate's rows are.
async fn compare(dg: &Client, pg: &Client, rows: i64, state: &str) {
    for (name, c) in [("deltagate", dg), ("postgres", pg)] {
        let n: i64 = c
            .query_one(&format!("SELECT count(*) FROM {TABLE}"), &[])
            .await
            .expect("count")
            .get(0);
        assert_eq!(n, rows, "{name} holds {n} rows");
    }
    for query in queries() {
        let (dg_time, dg_result) = time(dg, &query).await;
        let (pg_time, pg_result) = time(pg, &query).await;
        assert_eq!(
            dg_result.0, pg_result.0,
            "{}: deltagate returned {} rows, PostgreSQL {}",
            query.name, dg_result.0, pg_result.0
        );
        assert!(
            (dg_result.1 - pg_result.1).abs() <= 1e-6 * pg_result.1.abs().max(1.0),
            "{}: results differ ({} vs {})",
            query.name,
            dg_result.1,
            pg_result.1
        );
        println!(
            "{state:<9} {:<34} {:>7} rows   deltagate {:>9.2} ms   postgres {:>9.2} ms   ratio {:.2}",
            query.name,
            dg_result.0,
            dg_time.as_secs_f64() * 1e3,
            pg_time.as_secs_f64() * 1e3,
            pg_time.as_secs_f64() / dg_time.as_secs_f64()
        );
    }
}

/// Parquet bytes under a directory.
fn parquet_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "parquet"))
            .map(|e| e.metadata().map_or(0, |m| m.len()))
            .sum()
    })
}

#[tokio::main]
async fn main() {
    let rows: i64 = std::env::var("HISTORY_ROWS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3_000_000);
    let per_tag = (rows / TAGS as i64).max(1);
    let rows = per_tag * TAGS as i64;
    let postgres = Postgres::start();
    // Every row stays in the write buffer until the restart below.
    let mut deltagate = Deltagate::start_with(&[
        ("DELTAGATE_FLUSH_AGE", "1h"),
        ("DELTAGATE_FLUSH_ROWS", "100000000"),
        ("DELTAGATE_FLUSH_BYTES", "16GiB"),
        ("DELTAGATE_BUFFER_MEMORY", "8GiB"),
    ]);
    let data = csv(per_tag);
    load(&postgres.conn_string(), &data).await;
    load(&deltagate.conn_string(), &data).await;
    drop(data);
    // PostgreSQL's table vacuumed and analyzed: settled, as a live plant's is.
    let pg = client(&postgres.conn_string()).await;
    for table in [TABLE, "sqlth_te"] {
        pg.batch_execute(&format!("VACUUM ANALYZE {table}"))
            .await
            .expect("vacuum");
    }
    println!("historian reads on a month of {rows} rows ({TAGS} tags), median of {RUNS} warm runs");
    let dg = client(&deltagate.conn_string()).await;
    assert_eq!(
        parquet_bytes(&deltagate.warehouse.join("public/sqlt_data_1/month=2026-11")),
        0,
        "rows are still buffered"
    );
    compare(&dg, &pg, rows, "buffered").await;
    drop(dg);
    // A clean restart writes every buffered row to Delta.
    deltagate.restart();
    let dg = client(&deltagate.conn_string()).await;
    compare(&dg, &pg, rows, "flushed").await;
    let pg_bytes: i64 = pg
        .query_one(&format!("SELECT pg_total_relation_size('{TABLE}')"), &[])
        .await
        .expect("size")
        .get(0);
    let dg_bytes = parquet_bytes(&deltagate.warehouse.join("public/sqlt_data_1/month=2026-11"));
    println!(
        "bytes per row: deltagate {:.1} (Parquet), postgres {:.1} (heap + indexes), ratio {:.3}",
        dg_bytes as f64 / rows as f64,
        pg_bytes as f64 / rows as f64,
        dg_bytes as f64 / pg_bytes as f64
    );
    deltagate.stop();
}
