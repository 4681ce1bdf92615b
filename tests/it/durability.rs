//! Acknowledged rows survive what an unlucky operator meets: a record larger than any frame, a
//! table whose Delta log cannot be read at start, SQL aimed at the server's own files.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::SinkExt;

use crate::harness::{self, TestServer, sqlstate};

/// Buffer rows for an hour: everything stays in the log unless a CHECKPOINT flushes it.
const HOLD: &[&str] = &["--flush-age", "1h", "--flush-rows", "100000000"];

async fn count(client: &tokio_postgres::Client, table: &str) -> i64 {
    client
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap_or_else(|e| panic!("count {table}: {e}"))
        .get(0)
}

fn wal_dir(server: &TestServer) -> PathBuf {
    server.warehouse().join(".deltagate/wal")
}

#[tokio::test]
async fn a_copy_larger_than_a_gigabyte_survives_sigkill() {
    const ROWS: usize = 1_200_000;
    const WIDTH: usize = 1000;
    let mut server = TestServer::start_with(HOLD);
    let client = server.client().await;
    client
        .batch_execute("CREATE TABLE wide (id int8 PRIMARY KEY, payload text NOT NULL)")
        .await
        .expect("create");
    let sink = client
        .copy_in("COPY wide FROM STDIN")
        .await
        .expect("copy in");
    futures::pin_mut!(sink);
    let filler = "x".repeat(WIDTH - 8);
    let mut chunk = String::with_capacity(1 << 20);
    for id in 0..ROWS {
        chunk.push_str(&format!("{id}\t{id:08}{filler}\n"));
        if chunk.len() >= 1 << 20 {
            sink.send(Bytes::from(std::mem::take(&mut chunk)))
                .await
                .expect("copy data");
        }
    }
    sink.send(Bytes::from(chunk)).await.expect("copy data");
    let stored = sink.finish().await.expect("copy acknowledged");
    assert_eq!(stored, ROWS as u64);
    // One record of more than a gigabyte is in the log, in frames none longer than the limit.
    let on_disk: u64 = std::fs::read_dir(wal_dir(&server))
        .expect("wal dir")
        .filter_map(Result::ok)
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();
    assert!(on_disk > (ROWS * WIDTH) as u64, "log holds {on_disk} bytes");
    server.crash_and_restart();
    let client = server.client().await;
    let row = client
        .query_one(
            "SELECT count(*), count(DISTINCT id), min(length(payload)), max(substr(payload, 1, 8))
             FROM wide",
            &[],
        )
        .await
        .expect("verify");
    assert_eq!(row.get::<_, i64>(0), ROWS as i64);
    assert_eq!(row.get::<_, i64>(1), ROWS as i64);
    assert_eq!(row.get::<_, i32>(2), WIDTH as i32);
    assert_eq!(row.get::<_, String>(3), format!("{:08}", ROWS - 1));
}

/// The newest commit file of a Delta table.
fn newest_commit(table_dir: &Path) -> PathBuf {
    harness::commit_files(table_dir).pop().expect("a commit")
}

#[tokio::test]
async fn a_table_that_cannot_be_read_keeps_its_log_until_it_can() {
    let mut args = HOLD.to_vec();
    args.extend(["--rescan-interval", "500ms"]);
    let mut server = TestServer::start_with(&args);
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE t (id int8 PRIMARY KEY, v text);
             CREATE TABLE other (id int8 PRIMARY KEY);
             INSERT INTO t SELECT g, 'flushed' FROM generate_series(1, 10) g",
        )
        .await
        .expect("load");
    client
        .batch_execute("CHECKPOINT")
        .await
        .expect("checkpoint");
    client
        .batch_execute(
            "INSERT INTO t SELECT g, 'buffered' FROM generate_series(11, 16) g;
             INSERT INTO other VALUES (1), (2)",
        )
        .await
        .expect("buffered rows");
    // The last commit of t's Delta log becomes unreadable while the server is down.
    let commit = newest_commit(&server.warehouse().join("public/t"));
    let original = std::fs::read(&commit).expect("read commit");
    server.crash_and_restart();
    std::fs::write(&commit, b"{\"this is\": not json").expect("corrupt");
    server.crash_and_restart();
    let client = server.client().await;
    let error = client
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .expect_err("t is unavailable");
    assert_eq!(sqlstate(&error), "XX001", "{error}");
    let message = error.as_db_error().map(|e| e.message().to_string());
    assert!(
        message
            .as_deref()
            .is_some_and(|m| m.contains("is unavailable")),
        "{message:?}"
    );
    let error = client
        .execute("INSERT INTO t VALUES (99, 'x')", &[])
        .await
        .expect_err("t is unavailable");
    assert_eq!(sqlstate(&error), "XX001", "{error}");
    for statement in [
        "CREATE TABLE t (id int8)",
        "DROP TABLE t",
        "DROP TABLE IF EXISTS t",
    ] {
        let error = client
            .batch_execute(statement)
            .await
            .expect_err("t is there");
        assert_eq!(sqlstate(&error), "XX001", "{statement}: {error}");
    }
    // Everything else works, and flushing and releasing the log keeps t's records.
    assert_eq!(count(&client, "other").await, 2);
    client
        .batch_execute("CHECKPOINT")
        .await
        .expect("checkpoint");
    server.crash_and_restart();
    let client = server.client().await;
    assert_eq!(count(&client, "other").await, 2);
    // Repaired, the table comes back at the next rescan with every acknowledged row.
    std::fs::write(&commit, &original).expect("repair");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match client.query_one("SELECT count(*) FROM t", &[]).await {
            Ok(row) => {
                assert_eq!(row.get::<_, i64>(0), 16);
                break;
            }
            Err(e) if Instant::now() < deadline => {
                assert_eq!(sqlstate(&e), "XX001", "{e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("t did not come back: {e}\n{}", server.log_text()),
        }
    }
    let buffered = client
        .query_one("SELECT count(*) FROM t WHERE v = 'buffered'", &[])
        .await
        .expect("buffered rows")
        .get::<_, i64>(0);
    assert_eq!(buffered, 6);
    server.crash_and_restart();
    assert_eq!(count(&server.client().await, "t").await, 16);
}

#[tokio::test]
async fn sql_cannot_reach_the_servers_own_files() {
    let mut server = TestServer::start_with(HOLD);
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE kept (id int8 PRIMARY KEY);
             INSERT INTO kept SELECT g FROM generate_series(1, 60) g",
        )
        .await
        .expect("load");
    let server_id = std::fs::read_to_string(wal_dir(&server).join("server-id")).expect("id");
    for schema in [".deltagate", ".deltagate/wal", "..", "."] {
        let quoted = schema.replace('"', "\"\"");
        client
            .batch_execute(&format!(
                "CREATE SCHEMA \"{quoted}\";
                 CREATE TABLE \"{quoted}\".wal (id int8);
                 INSERT INTO \"{quoted}\".wal VALUES (1);
                 DROP SCHEMA \"{quoted}\" CASCADE"
            ))
            .await
            .unwrap_or_else(|e| panic!("{schema}: {e}"));
    }
    assert_eq!(
        std::fs::read_to_string(wal_dir(&server).join("server-id")).expect("id"),
        server_id
    );
    server.crash_and_restart();
    let client = server.client().await;
    assert_eq!(count(&client, "kept").await, 60);
    // LSNs went on from where they were: a new row is not taken for an old one.
    client
        .batch_execute("INSERT INTO kept VALUES (61)")
        .await
        .expect("insert");
    server.crash_and_restart();
    assert_eq!(count(&server.client().await, "kept").await, 61);
}
