//! UPDATE, DELETE, TRUNCATE and ALTER: one atomic Delta commit per table, never deleting a row
//! the statement did not read, never losing a concurrent update — checked with SIGKILL in the
//! middle of a rewrite, with inserts running beside updates, and with sessions racing.

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::harness::{TestServer, commits, first_column, sqlstate};

fn count(actions: &[serde_json::Value], kind: &str) -> usize {
    actions.iter().filter(|a| a.get(kind).is_some()).count()
}

/// Writes every buffered row to Delta (`CHECKPOINT` is a statement of its own).
async fn checkpoint(server: &TestServer) {
    server
        .client()
        .await
        .batch_execute("CHECKPOINT")
        .await
        .expect("checkpoint");
}

async fn scalar(client: &tokio_postgres::Client, sql: &str) -> i64 {
    client
        .query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}

#[tokio::test]
async fn sigkill_during_update_leaves_all_of_it_or_none() {
    const ROWS: i64 = 1_000_000;
    let mut server = TestServer::start();
    server
        .client()
        .await
        .batch_execute(&format!(
            "CREATE TABLE up (id int8 PRIMARY KEY, v int8 NOT NULL);
             INSERT INTO up SELECT g, 0 FROM generate_series(1, {ROWS}) g"
        ))
        .await
        .expect("load");
    checkpoint(&server).await;
    let mut expected = 0;
    // Kill the rewrite at different points, the last ones late enough to let some finish.
    for delay in [100u64, 400, 900, 1600, 2500, 4000, 6000] {
        let client = server.client().await;
        let pid = server.pid();
        let killer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(delay));
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .status();
        });
        let updated = client.execute("UPDATE up SET v = v + 1", &[]).await;
        killer.join().expect("killer");
        server.crash_and_restart();
        let row = server
            .client()
            .await
            .query_one("SELECT count(*), min(v), max(v) FROM up", &[])
            .await
            .expect("verify");
        let (rows, low, high): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
        assert_eq!(rows, ROWS, "after a kill {delay} ms into the UPDATE");
        assert_eq!(low, high, "half an UPDATE is visible after {delay} ms");
        // An acknowledged update is there; an unacknowledged one is all or nothing.
        match updated {
            Ok(n) => {
                assert_eq!(n, ROWS as u64);
                expected += 1;
                assert_eq!(low, expected, "an acknowledged UPDATE was lost");
            }
            Err(_) => {
                assert!(low == expected || low == expected + 1, "v = {low}");
                expected = low;
            }
        }
        eprintln!(
            "kill after {delay} ms: acknowledged {}, v = {low}",
            updated.is_ok()
        );
        // Every commit that removes files adds their replacement in the same commit.
        for actions in commits(&server.warehouse().join("public/up")) {
            if count(&actions, "remove") > 0 {
                assert!(count(&actions, "add") > 0, "a commit removed rows only");
            }
        }
    }
    // And one that is acknowledged survives the next crash whole.
    let updated = server
        .client()
        .await
        .execute("UPDATE up SET v = v + 1", &[])
        .await
        .expect("update");
    assert_eq!(updated, ROWS as u64);
    server.crash_and_restart();
    let row = server
        .client()
        .await
        .query_one("SELECT count(*), min(v), max(v) FROM up", &[])
        .await
        .expect("verify");
    assert_eq!(
        (
            row.get::<_, i64>(0),
            row.get::<_, i64>(1),
            row.get::<_, i64>(2)
        ),
        (ROWS, expected + 1, expected + 1)
    );
}

/// Inserts rows `next, next+1, ...` one statement at a time until `stop`; returns the ids the
/// server acknowledged.
async fn insert_until(server: &TestServer, first: i64, stop: Arc<AtomicBool>) -> Vec<i64> {
    let client = server.client().await;
    let mut acknowledged = Vec::new();
    let mut id = first;
    while !stop.load(Ordering::Relaxed) {
        let rows: Vec<i64> = (id..id + 10).collect();
        let values: Vec<String> = rows.iter().map(|i| format!("({i}, false, 0)")).collect();
        let sql = format!("INSERT INTO t VALUES {}", values.join(", "));
        if client.batch_execute(&sql).await.is_ok() {
            acknowledged.extend(rows);
        }
        id += 10;
    }
    acknowledged
}

#[tokio::test]
async fn updates_beside_concurrent_inserts_keep_every_acknowledged_row() {
    // Flush often, so rows reach Delta while the updates read and rewrite.
    let server = TestServer::start_with(&["--flush-rows", "200", "--flush-age", "50ms"]);
    let client = server.client().await;
    client
        .batch_execute("CREATE TABLE t (id int8 PRIMARY KEY, flag bool NOT NULL, v int8)")
        .await
        .expect("create");
    let stop = Arc::new(AtomicBool::new(false));
    let inserters: Vec<_> = (0..2)
        .map(|k| {
            let stop = stop.clone();
            let server = &server;
            async move { insert_until(server, k * 1_000_000_000, stop).await }
        })
        .collect();
    let updates = async {
        let mut done = 0;
        for round in 0..40 {
            let sql = if round % 2 == 0 {
                "UPDATE t SET v = v + 1"
            } else {
                "UPDATE t SET flag = true WHERE flag = false"
            };
            client.execute(sql, &[]).await.expect("update");
            done += 1;
        }
        client
            .execute("DELETE FROM t WHERE id % 7 = 3", &[])
            .await
            .expect("delete");
        stop.store(true, Ordering::Relaxed);
        done
    };
    let (acknowledged, done) = futures::join!(futures::future::join_all(inserters), updates);
    assert_eq!(done, 40);
    let acknowledged: Vec<i64> = acknowledged.into_iter().flatten().collect();
    assert!(
        acknowledged.len() > 100,
        "too few inserts ran beside the updates"
    );
    let present: Vec<i64> = first_column(&client, "SELECT id FROM t").await;
    let unique: HashSet<i64> = present.iter().copied().collect();
    assert_eq!(unique.len(), present.len(), "a row is there twice");
    let missing: Vec<&i64> = acknowledged
        .iter()
        .filter(|id| *id % 7 != 3 && !unique.contains(id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged rows vanished, e.g. {:?}",
        missing.len(),
        acknowledged.len(),
        &missing[..missing.len().min(5)]
    );
}

#[tokio::test]
async fn concurrent_increments_are_never_lost() {
    let server = TestServer::start();
    let client = server.client().await;
    client
        .batch_execute("CREATE TABLE c (id int4 PRIMARY KEY, n int8); INSERT INTO c VALUES (1, 0)")
        .await
        .expect("create");
    let sessions: Vec<_> = (0..2)
        .map(|_| async {
            let client = server.client().await;
            for _ in 0..500 {
                let n = client
                    .execute("UPDATE c SET n = n + 1", &[])
                    .await
                    .expect("update");
                assert_eq!(n, 1);
            }
        })
        .collect();
    futures::future::join_all(sessions).await;
    assert_eq!(scalar(&client, "SELECT n FROM c").await, 1000);

    // In transaction blocks the loser of a race gets 40001 and nothing of it is stored.
    let committed = Arc::new(std::sync::atomic::AtomicI64::new(0));
    let sessions: Vec<_> = (0..2)
        .map(|_| {
            let committed = committed.clone();
            let server = &server;
            async move {
                let client = server.client().await;
                for _ in 0..30 {
                    client.batch_execute("BEGIN").await.expect("begin");
                    client
                        .execute("UPDATE c SET n = n + 1 WHERE id = 1", &[])
                        .await
                        .expect("update");
                    match client.batch_execute("COMMIT").await {
                        Ok(()) => {
                            committed.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => assert_eq!(sqlstate(&e), "40001", "{e}"),
                    }
                }
            }
        })
        .collect();
    futures::future::join_all(sessions).await;
    assert_eq!(
        scalar(&client, "SELECT n FROM c").await,
        1000 + committed.load(Ordering::Relaxed)
    );
}

#[tokio::test]
async fn each_change_is_one_delta_commit() {
    let server = TestServer::start();
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE a (id int8 PRIMARY KEY, v text);
             INSERT INTO a SELECT g, 'x' || g FROM generate_series(1, 1000) g",
        )
        .await
        .expect("load");
    checkpoint(&server).await;
    let dir = server.warehouse().join("public/a");
    let last_commit = |dir: &Path| commits(dir).pop().expect("a commit");
    let versions = |dir: &Path| commits(dir).len();

    let before = versions(&dir);
    client
        .execute("UPDATE a SET v = 'y' WHERE id <= 10", &[])
        .await
        .expect("update");
    assert_eq!(versions(&dir), before + 1);
    let update = last_commit(&dir);
    assert!(count(&update, "remove") > 0 && count(&update, "add") > 0);

    // A transaction's changes to a table: one commit, whatever the statements.
    let before = versions(&dir);
    client
        .batch_execute(
            "BEGIN;
             DELETE FROM a WHERE id > 990;
             UPDATE a SET v = 'z' WHERE id = 500;
             INSERT INTO a VALUES (5000, 'new');
             UPDATE a SET v = 'w' WHERE id = 5000;
             COMMIT",
        )
        .await
        .expect("transaction");
    assert_eq!(versions(&dir), before + 1);
    let rows: Vec<String> = first_column(
        &client,
        "SELECT id::text || v FROM a WHERE id IN (10, 11, 500, 991, 5000) ORDER BY id",
    )
    .await;
    assert_eq!(rows, vec!["10y", "11x11", "500z", "5000w"]);
    assert_eq!(scalar(&client, "SELECT count(*) FROM a").await, 991);

    // ALTER TABLE ... ADD COLUMN ... DEFAULT: the new schema and the filled rows together.
    let before = versions(&dir);
    client
        .batch_execute("ALTER TABLE a ADD COLUMN w int4 NOT NULL DEFAULT 7")
        .await
        .expect("alter");
    assert_eq!(versions(&dir), before + 1);
    let alter = last_commit(&dir);
    assert_eq!(count(&alter, "metaData"), 1);
    assert!(count(&alter, "remove") > 0 && count(&alter, "add") > 0);
    assert_eq!(
        scalar(&client, "SELECT count(*) FROM a WHERE w = 7").await,
        991
    );

    // Not with rows this transaction has not committed: they would be committed with it.
    client
        .batch_execute("BEGIN; INSERT INTO a VALUES (6000, 'pending', 1)")
        .await
        .expect("begin");
    let error = client
        .batch_execute("ALTER TABLE a ADD COLUMN u int4 DEFAULT 1")
        .await
        .expect_err("pending rows");
    assert_eq!(sqlstate(&error), "0A000", "{error}");
    client.batch_execute("ROLLBACK").await.expect("rollback");

    let before = versions(&dir);
    client.batch_execute("TRUNCATE a").await.expect("truncate");
    assert_eq!(versions(&dir), before + 1);
    assert_eq!(count(&last_commit(&dir), "add"), 0);
    assert_eq!(scalar(&client, "SELECT count(*) FROM a").await, 0);

    // Dropping a historian month: its rows and its registration in one commit.
    client
        .batch_execute(
            "CREATE TABLE sqlt_data_1_2026_10 (tagid int4, intvalue int8, floatvalue float8,
                stringvalue varchar(255), datevalue timestamp, dataintegrity int4,
                t_stamp int8, PRIMARY KEY (tagid, t_stamp));
             CREATE TABLE sqlt_data_1_2026_11 (tagid int4, intvalue int8, floatvalue float8,
                stringvalue varchar(255), datevalue timestamp, dataintegrity int4,
                t_stamp int8, PRIMARY KEY (tagid, t_stamp));
             INSERT INTO sqlt_data_1_2026_10 (tagid, floatvalue, t_stamp) VALUES (1, 1.5, 10), (2, 2.5, 20);
             INSERT INTO sqlt_data_1_2026_11 (tagid, floatvalue, t_stamp) VALUES (1, 3.5, 30)",
        )
        .await
        .expect("months");
    checkpoint(&server).await;
    let dir = server.warehouse().join("public/sqlt_data_1");
    let before = versions(&dir);
    client
        .batch_execute("DROP TABLE sqlt_data_1_2026_10")
        .await
        .expect("drop month");
    assert_eq!(versions(&dir), before + 1);
    let drop = last_commit(&dir);
    assert_eq!(count(&drop, "metaData"), 1);
    assert!(count(&drop, "remove") > 0);
    assert_eq!(
        scalar(&client, "SELECT count(*) FROM sqlt_data_1_2026_11").await,
        1
    );
}
