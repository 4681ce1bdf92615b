//! The ingest path: rows acknowledged once in the write-ahead log, read back from the buffer
//! together with Delta, flushed in large commits carrying the log position, replayed exactly
//! once after a crash, and held back (not lost) while Delta cannot be written.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::harness::{self, TestServer, first_column, sqlstate};

/// Buffer rows for an hour: everything stays in the log and memory unless shutdown flushes it.
const HOLD: &[&str] = &["--flush-age", "1h", "--flush-rows", "10000000"];

/// Every action of a table's Delta log, in version order.
fn delta_commits(table_dir: &Path) -> Vec<serde_json::Value> {
    harness::commits(table_dir).into_iter().flatten().collect()
}

fn data_files(table_dir: &Path) -> usize {
    std::fs::read_dir(table_dir)
        .expect("table dir")
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "parquet"))
        .count()
}

#[tokio::test]
async fn buffered_rows_are_read_updated_and_survive_restart_and_crash() {
    let mut server = TestServer::start_with(HOLD);
    let client = server.client().await;
    client
        .batch_execute("CREATE TABLE m (id int8 PRIMARY KEY, tag text, v float8)")
        .await
        .expect("create");
    let table_dir = server.warehouse().join("public/m");
    let files_after_create = data_files(&table_dir);
    for i in 0..20i64 {
        client
            .execute(
                "INSERT INTO m VALUES ($1, $2, $3)",
                &[&i, &format!("t{}", i % 3), &(i as f64 / 2.0)],
            )
            .await
            .expect("insert");
    }
    // Nothing reached Delta yet, and every query sees the rows anyway.
    assert_eq!(data_files(&table_dir), files_after_create);
    let row = client
        .query_one("SELECT count(*), sum(v) FROM m WHERE tag = 't1'", &[])
        .await
        .expect("aggregate");
    assert_eq!((row.get::<_, i64>(0), row.get::<_, f64>(1)), (7, 35.0));
    let top: Vec<i64> = first_column(
        &client,
        "SELECT id FROM m WHERE v >= 5 ORDER BY v DESC LIMIT 3",
    )
    .await;
    assert_eq!(top, vec![19, 18, 17]);
    // Keys hold against buffered rows.
    let error = client
        .execute("INSERT INTO m VALUES (5, 'dup', 0)", &[])
        .await
        .expect_err("dup");
    assert_eq!(sqlstate(&error), "23505");
    // UPDATE and DELETE act on buffered rows as if stored.
    assert_eq!(
        client
            .execute("UPDATE m SET v = -1 WHERE id < 5", &[])
            .await
            .expect("update"),
        5
    );
    assert_eq!(
        client
            .execute("DELETE FROM m WHERE id >= 15", &[])
            .await
            .expect("delete"),
        5
    );
    let row = client
        .query_one("SELECT count(*), min(v) FROM m", &[])
        .await
        .expect("count");
    assert_eq!((row.get::<_, i64>(0), row.get::<_, f64>(1)), (15, -1.0));

    // More buffered rows, then a crash: the log brings them back exactly once.
    for i in 100..110i64 {
        client
            .execute("INSERT INTO m VALUES ($1, 'late', 1)", &[&i])
            .await
            .expect("insert");
    }
    drop(client);
    server.crash_and_restart();
    let client = server.client().await;
    let row = client
        .query_one(
            "SELECT count(*), count(DISTINCT id), count(*) FILTER (WHERE tag = 'late') FROM m",
            &[],
        )
        .await
        .expect("after crash");
    assert_eq!(
        (
            row.get::<_, i64>(0),
            row.get::<_, i64>(1),
            row.get::<_, i64>(2)
        ),
        (25, 25, 10)
    );
    let log = server.log_text();
    assert!(log.contains("write-ahead log replayed"), "{log}");

    // A clean shutdown flushes: the rows are in Delta with this server's transaction id.
    drop(client);
    server.restart();
    let commits = delta_commits(&table_dir);
    let txns: Vec<&serde_json::Value> = commits.iter().filter_map(|c| c.get("txn")).collect();
    assert!(
        !txns.is_empty(),
        "flush commits carry a txn action: {commits:?}"
    );
    assert!(txns.iter().all(|t| {
        t["appId"]
            .as_str()
            .is_some_and(|a| a.starts_with("deltagate-"))
    }));
    let client = server.client().await;
    let row = client
        .query_one("SELECT count(*), count(DISTINCT id) FROM m", &[])
        .await
        .expect("count");
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (25, 25));
}

#[tokio::test]
async fn flushes_make_few_large_commits() {
    let server = TestServer::start_with(&["--flush-rows", "5000", "--flush-age", "1h"]);
    let client = server.client().await;
    client
        .batch_execute("CREATE TABLE f (k int4 PRIMARY KEY, v int8)")
        .await
        .expect("create");
    let table_dir = server.warehouse().join("public/f");
    let before = delta_commits(&table_dir)
        .iter()
        .filter(|c| c.get("add").is_some())
        .count();
    // 100 statements of 100 rows: 10,000 rows, two flushes by row threshold.
    for batch in 0..100i32 {
        let values: Vec<String> = (0..100)
            .map(|i| format!("({}, {i})", batch * 100 + i))
            .collect();
        client
            .batch_execute(&format!("INSERT INTO f VALUES {}", values.join(",")))
            .await
            .expect("insert");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let adds = loop {
        let adds = delta_commits(&table_dir)
            .iter()
            .filter(|c| c.get("add").is_some())
            .count()
            - before;
        if adds >= 2 || Instant::now() > deadline {
            break adds;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!((2..=3).contains(&adds), "10,000 rows in {adds} files");
    let row = client
        .query_one("SELECT count(*), sum(v) FROM f", &[])
        .await
        .expect("count");
    assert_eq!(
        (row.get::<_, i64>(0), row.get::<_, i64>(1)),
        (10_000, 100 * 4950)
    );
}

/// Writers insert batches of rows tagged with their batch number and record the batches the
/// server acknowledged, until the server is killed.
async fn load_until_killed(
    server: &TestServer,
    writers: i64,
    next_batch: Arc<std::sync::atomic::AtomicI64>,
) -> Vec<i64> {
    let mut tasks = Vec::new();
    for _ in 0..writers {
        // The kill may come before every writer is connected (a slow start on a busy machine).
        let Ok((client, connection)) =
            tokio_postgres::connect(&server.conn_string(), tokio_postgres::NoTls).await
        else {
            continue;
        };
        tokio::spawn(connection);
        let next_batch = next_batch.clone();
        tasks.push(tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            loop {
                let batch = next_batch.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let values: Vec<String> = (0..50)
                    .map(|i| format!("({}, {batch})", batch * 50 + i))
                    .collect();
                let sql = format!(
                    "BEGIN; INSERT INTO load VALUES {}; COMMIT",
                    values.join(",")
                );
                match client.batch_execute(&sql).await {
                    Ok(()) => acknowledged.push(batch),
                    Err(_) => return acknowledged,
                }
            }
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("writer"));
    }
    all
}

#[tokio::test]
async fn sigkill_during_load_loses_nothing_acknowledged_ten_times() {
    let mut server = TestServer::start_with(&["--flush-rows", "3000", "--flush-age", "300ms"]);
    server
        .client()
        .await
        .batch_execute("CREATE TABLE load (k int8 PRIMARY KEY, batch int8 NOT NULL)")
        .await
        .expect("create");
    let next_batch = Arc::new(std::sync::atomic::AtomicI64::new(0));
    let mut acknowledged = Vec::new();
    for round in 0..10u64 {
        let killer = {
            let pid = server.pid();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(700 + (round * 137) % 900));
                let _ = Command::new("kill")
                    .arg("-KILL")
                    .arg(pid.to_string())
                    .status();
            })
        };
        acknowledged.extend(load_until_killed(&server, 4, next_batch.clone()).await);
        killer.join().expect("killer");
        server.crash_and_restart();
        let client = server.client().await;
        let rows = client
            .query(
                "SELECT batch, count(*), count(DISTINCT k) FROM load GROUP BY batch",
                &[],
            )
            .await
            .expect("verify");
        let present: HashMap<i64, (i64, i64)> = rows
            .iter()
            .map(|r| (r.get(0), (r.get(1), r.get(2))))
            .collect();
        for batch in &acknowledged {
            assert_eq!(
                present.get(batch),
                Some(&(50, 50)),
                "round {round}: acknowledged batch {batch}"
            );
        }
        for (batch, counts) in &present {
            assert_eq!(
                *counts,
                (50, 50),
                "round {round}: batch {batch} is whole and once"
            );
        }
        let total: i64 = client
            .query_one("SELECT count(*) FROM load", &[])
            .await
            .expect("total")
            .get(0);
        assert_eq!(total, present.len() as i64 * 50);
    }
    assert!(
        acknowledged.len() > 50,
        "the load made progress: {} batches",
        acknowledged.len()
    );
}

/// Gives a directory made immutable back, even when the test fails.
struct Immutable<'a>(&'a Path);

impl Drop for Immutable<'_> {
    fn drop(&mut self) {
        set_immutable(self.0, false);
    }
}

/// Makes a directory unwritable, for root too (`chattr +i`), or gives it back.
fn set_immutable(dir: &Path, on: bool) {
    let status = Command::new("chattr")
        .arg(if on { "+i" } else { "-i" })
        .arg(dir)
        .status()
        .expect("chattr (e2fsprogs) is needed to make the Delta log unwritable");
    assert!(status.success(), "chattr failed on {}", dir.display());
}

#[tokio::test]
async fn writes_continue_while_delta_is_unwritable_and_land_when_it_recovers() {
    const BIG: usize = 64 * 1024;
    let server = TestServer::start_with(&[
        "--flush-age",
        "200ms",
        "--flush-bytes",
        "1MiB",
        "--buffer-memory",
        "256KiB",
        "--log-disk-budget",
        "4MiB",
        "--backpressure-timeout",
        "2s",
    ]);
    let client = server.client().await;
    client
        .batch_execute("CREATE TABLE u (k int4 PRIMARY KEY, pad text)")
        .await
        .expect("create");
    let log_dir = server.warehouse().join("public/u/_delta_log");
    set_immutable(&log_dir, true);
    let guard = Immutable(&log_dir);
    let result = async {
        // Acknowledged from the log while every flush fails.
        for k in 0..20i32 {
            client
                .execute("INSERT INTO u VALUES ($1, 'x')", &[&k])
                .await
                .expect("insert while Delta is down");
        }
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert_eq!(
            client
                .query_one("SELECT count(*) FROM u", &[])
                .await
                .expect("count")
                .get::<_, i64>(0),
            20
        );
        // Past the memory budget rows are still acknowledged (kept in the log only); past the
        // log's disk budget writers wait, then get a clear error; nothing is half-stored.
        let big = "y".repeat(BIG);
        let mut refused = None;
        for k in 100..200i32 {
            if let Err(e) = client
                .execute("INSERT INTO u VALUES ($1, $2)", &[&k, &big])
                .await
            {
                refused = Some((k, e));
                break;
            }
        }
        let (k, error) = refused.expect("the log's disk budget is enforced");
        let accepted = i64::from(k - 100);
        assert!(
            accepted as usize * BIG > 4 * 256 * 1024,
            "rows well past the memory budget are accepted: {accepted}"
        );
        // Rows dropped from memory are read back from the log, byte for byte.
        let row = client
            .query_one(
                "SELECT count(*), sum(length(pad)), count(DISTINCT pad) FROM u",
                &[],
            )
            .await
            .expect("read spilled rows");
        assert_eq!(row.get::<_, i64>(0), 20 + accepted);
        assert_eq!(row.get::<_, i64>(1), 20 + accepted * BIG as i64);
        assert_eq!(row.get::<_, i64>(2), 2);
        (k, error)
    }
    .await;
    drop(guard);
    let (k, error) = result;
    assert_eq!(sqlstate(&error), "53000", "{error:?}");
    // Delta is back: the flusher catches up, a commit of at most --flush-bytes at a time, and
    // every acknowledged row is stored once.
    let versions = |server: &TestServer| -> Vec<i64> {
        delta_commits(&server.warehouse().join("public/u"))
            .iter()
            .filter_map(|c| {
                c.pointer("/txn/version")
                    .and_then(serde_json::Value::as_i64)
            })
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while versions(&server).len() < 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let flushed = versions(&server);
    assert!(
        flushed.len() >= 3,
        "the backlog is flushed in chunks: {flushed:?}"
    );
    assert!(
        flushed.windows(2).all(|w| w[0] < w[1]),
        "each chunk's transaction version is its last log position: {flushed:?}"
    );
    let row = client
        .query_one("SELECT count(*), count(DISTINCT k), max(k) FROM u", &[])
        .await
        .expect("count");
    assert_eq!(row.get::<_, i64>(0), row.get::<_, i64>(1));
    assert_eq!(row.get::<_, i64>(0), 20 + i64::from(k - 100));
    let log = server.log_text();
    assert!(log.contains("flush failed"), "flush failures are logged");
    assert!(
        log.contains("oldest rows now read from the log"),
        "spilling is logged"
    );
    assert!(
        log.contains("over its disk budget"),
        "backpressure is logged"
    );
    // The log shrinks back once everything reached Delta, so writers are not held back.
    client
        .execute("INSERT INTO u VALUES (1000, 'after')", &[])
        .await
        .expect("writes resume");
}

#[tokio::test]
async fn primary_keys_hold_across_buffer_flushed_files_and_open_transactions() {
    let server = TestServer::start_with(&["--flush-rows", "100", "--flush-age", "1h"]);
    let a = server.client().await;
    let b = server.client().await;
    a.batch_execute(
        "CREATE TABLE k (tagid int4, t_stamp int8, v float8, PRIMARY KEY (tagid, t_stamp))",
    )
    .await
    .expect("create");
    let sql = "INSERT INTO k (tagid, t_stamp, v) VALUES ($1, $2, $3)";
    let insert = a.prepare(sql).await.expect("prepare");
    let insert_b = b.prepare(sql).await.expect("prepare");
    // 150 rows: 100 reach Delta by the row threshold, 50 stay buffered.
    for i in 0..150i64 {
        a.execute(&insert, &[&((i % 10) as i32), &i, &1.0f64])
            .await
            .expect("insert");
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while data_files(&server.warehouse().join("public/k")) == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        data_files(&server.warehouse().join("public/k")) > 0,
        "a flush happened"
    );
    // Against a stored row and against a buffered row.
    for (tag, t) in [(0i32, 0i64), (9, 149)] {
        let error = b
            .execute(&insert_b, &[&tag, &t, &2.0f64])
            .await
            .expect_err("duplicate");
        assert_eq!(sqlstate(&error), "23505", "({tag}, {t})");
        let detail = error
            .as_db_error()
            .and_then(|e| e.detail())
            .unwrap_or_default()
            .to_string();
        assert_eq!(
            detail,
            format!("Key (tagid, t_stamp)=({tag}, {t}) already exists.")
        );
    }
    // Within one statement, and within one transaction.
    let error = b
        .batch_execute("INSERT INTO k VALUES (50, 1, 0), (50, 1, 0)")
        .await
        .expect_err("duplicate in statement");
    assert_eq!(sqlstate(&error), "23505");
    b.batch_execute("BEGIN").await.expect("begin");
    b.execute(&insert_b, &[&60i32, &1i64, &0.0f64])
        .await
        .expect("first");
    let error = b
        .execute(&insert_b, &[&60i32, &1i64, &0.0f64])
        .await
        .expect_err("second");
    assert_eq!(sqlstate(&error), "23505");
    b.batch_execute("ROLLBACK").await.expect("rollback");
    // Two open transactions insert the same key: the second to commit fails, as a whole.
    a.batch_execute("BEGIN").await.expect("begin a");
    b.batch_execute("BEGIN").await.expect("begin b");
    a.execute(&insert, &[&70i32, &1i64, &0.0f64])
        .await
        .expect("a inserts");
    b.execute(&insert_b, &[&70i32, &1i64, &0.0f64])
        .await
        .expect("b inserts");
    b.execute(&insert_b, &[&71i32, &1i64, &0.0f64])
        .await
        .expect("b inserts another");
    a.batch_execute("COMMIT").await.expect("a commits");
    let error = b.batch_execute("COMMIT").await.expect_err("b conflicts");
    assert_eq!(sqlstate(&error), "23505");
    let row = a
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE tagid = 71) FROM k",
            &[],
        )
        .await
        .expect("count");
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (151, 0));
    // A key freed by DELETE can be used again.
    a.execute("DELETE FROM k WHERE tagid = 0 AND t_stamp = 0", &[])
        .await
        .expect("delete");
    a.execute(&insert, &[&0i32, &0i64, &3.0f64])
        .await
        .expect("reinsert");
    let v: f64 = a
        .query_one("SELECT v FROM k WHERE tagid = 0 AND t_stamp = 0", &[])
        .await
        .expect("v")
        .get(0);
    assert_eq!(v, 3.0);
}

#[tokio::test]
async fn checkpoint_writes_buffered_rows_to_delta_and_releases_the_log() {
    let mut server = TestServer::start_with(HOLD);
    let client = server.client().await;
    client
        .batch_execute("CREATE TABLE cp (id int8 PRIMARY KEY, v text)")
        .await
        .expect("create");
    let table_dir = server.warehouse().join("public/cp");
    let files_before = data_files(&table_dir);
    for i in 0..50i64 {
        client
            .execute("INSERT INTO cp VALUES ($1, $2)", &[&i, &format!("v{i}")])
            .await
            .expect("insert");
    }
    assert_eq!(
        data_files(&table_dir),
        files_before,
        "rows wait in the buffer"
    );
    // Simple protocol: the command tag.
    let messages = client
        .simple_query("checkpoint;")
        .await
        .expect("checkpoint");
    let tag = messages.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::CommandComplete(n) => Some(*n),
        _ => None,
    });
    assert_eq!(tag, Some(0));
    assert_eq!(data_files(&table_dir), files_before + 1, "one flush commit");
    let txn = delta_commits(&table_dir)
        .into_iter()
        .find_map(|c| c.get("txn").cloned())
        .expect("the flush carries an application transaction");
    assert!(txn["version"].as_i64().is_some_and(|v| v > 0), "{txn}");
    // Extended protocol, with nothing left to flush.
    for i in 50..60i64 {
        client
            .execute("INSERT INTO cp VALUES ($1, $2)", &[&i, &format!("v{i}")])
            .await
            .expect("insert");
    }
    assert_eq!(
        client.execute("CHECKPOINT", &[]).await.expect("checkpoint"),
        0
    );
    assert_eq!(data_files(&table_dir), files_before + 2);
    // The log behind the flushed rows is released: a crash replays nothing twice.
    server.crash_and_restart();
    let client = server.client().await;
    let row = client
        .query_one("SELECT count(*), count(DISTINCT id), max(v) FROM cp", &[])
        .await
        .expect("count");
    assert_eq!(row.get::<_, i64>(0), 60);
    assert_eq!(row.get::<_, i64>(1), 60);
    assert_eq!(row.get::<_, String>(2), "v9");
}

/// Two open transactions store the same historian key (a store-and-forward batch re-sent while
/// the first was still open): the second commit drops its copy and stores the rest, first value
/// kept; nothing fails.
#[tokio::test]
async fn concurrent_historian_duplicates_are_dropped_at_commit() {
    let server = TestServer::start_with(HOLD);
    let a = server.client().await;
    let b = server.client().await;
    a.batch_execute(
        "CREATE TABLE sqlt_data_1_2026_11 (tagid int4, intvalue int8, floatvalue float8, \
         stringvalue varchar(255), datevalue timestamp, dataintegrity int4, t_stamp int8, \
         PRIMARY KEY (tagid, t_stamp))",
    )
    .await
    .expect("create");
    let insert = "INSERT INTO sqlt_data_1_2026_11 (tagid, floatvalue, dataintegrity, t_stamp) \
                  VALUES ($1, $2, 192, $3)";
    a.batch_execute("BEGIN").await.expect("begin a");
    b.batch_execute("BEGIN").await.expect("begin b");
    for (tag, v) in [(1i32, 1.0f64), (2, 2.0)] {
        a.execute(insert, &[&tag, &v, &1_000i64])
            .await
            .expect("a inserts");
    }
    for (tag, v) in [(2i32, 20.0f64), (3, 30.0)] {
        b.execute(insert, &[&tag, &v, &1_000i64])
            .await
            .expect("b inserts");
    }
    a.batch_execute("COMMIT").await.expect("a commits");
    b.batch_execute("COMMIT")
        .await
        .expect("b commits, skipping its copy of tag 2");
    let rows = a
        .query(
            "SELECT tagid, floatvalue FROM sqlt_data_1_2026_11 ORDER BY tagid",
            &[],
        )
        .await
        .expect("select");
    let got: Vec<(i32, f64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(got, vec![(1, 1.0), (2, 2.0), (3, 30.0)]);
}

/// The acknowledgement path takes no lock a planner holds (ARCHITECTURE.md contract 9): while
/// one session's statement is planned (Parse/Describe of a query over many tables, which
/// resolves every table in one view of the warehouse), another session's inserts are still
/// acknowledged, and a statement planned meanwhile sees each transaction across two tables
/// whole.
#[tokio::test]
async fn inserts_are_acknowledged_while_a_slow_plan_holds_its_view() {
    let server = TestServer::start_with(HOLD);
    let planner = server.client().await;
    let writer = server.client().await;
    planner
        .batch_execute("CREATE TABLE a (n int8); CREATE TABLE b (n int8)")
        .await
        .expect("tables");
    // Each branch resolves both tables again: planning alone takes seconds in a debug build.
    let branches = std::env::var("SLOW_PLAN_BRANCHES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1200);
    let slow = (0..branches)
        .map(|i| format!("SELECT {i} AS i, a.n FROM a JOIN b ON a.n = b.n"))
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    let started = Instant::now();
    let planning = tokio::spawn(async move {
        planner.prepare(&slow).await.expect("prepare");
        started.elapsed()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut acknowledged = Vec::new();
    let mut n = 0i64;
    while !planning.is_finished() {
        let begun = Instant::now();
        n += 1;
        writer
            .batch_execute(&format!(
                "BEGIN; INSERT INTO a VALUES ({n}); INSERT INTO b VALUES ({n}); COMMIT"
            ))
            .await
            .expect("insert");
        acknowledged.push((begun.elapsed(), planning.is_finished()));
    }
    let planned = planning.await.expect("planner task");
    let during: Vec<Duration> = acknowledged
        .iter()
        .filter(|(_, done)| !done)
        .map(|(t, _)| *t)
        .collect();
    let slowest = during.iter().max().copied().unwrap_or_default();
    eprintln!(
        "planning took {planned:?}; {} inserts acknowledged meanwhile, the slowest in {slowest:?}",
        during.len()
    );
    assert!(
        planned > Duration::from_secs(2),
        "the plan must take long enough to overlap inserts (took {planned:?}); raise \
         SLOW_PLAN_BRANCHES"
    );
    // Had the acknowledgement waited for the planner, the first insert would have taken about
    // as long as the plan, and hardly any would have been answered before it ended.
    assert!(
        during.len() >= 3 && slowest < planned / 2,
        "inserts must be acknowledged while the plan runs ({planned:?}): {} answered, the \
         slowest in {slowest:?}",
        during.len()
    );
    let reader = server.client().await;
    let rows = reader
        .query(
            "SELECT (SELECT count(*) FROM a) AS a, (SELECT count(*) FROM b) AS b",
            &[],
        )
        .await
        .expect("counts");
    assert_eq!(rows[0].get::<_, i64>(0), n);
    assert_eq!(rows[0].get::<_, i64>(1), n);
}
