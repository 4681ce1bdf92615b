//! PostgreSQL's transaction state machine in both protocols and in pipelines: an error fails a
//! block until it ends (25P02 for everything else, `COMMIT` answers `ROLLBACK`), `ROLLBACK TO
//! SAVEPOINT` repairs it, `ReadyForQuery` reports the true state, and outside a block what
//! runs up to a Sync (or in one query string) commits all or nothing. With tokio-postgres and
//! by hand on the wire; psycopg and PgJDBC check the same in `clients`.

use tokio_postgres::Client;

use crate::harness::{TestServer, sqlstate};
use crate::raw::{Raw, bind, error_of, execute, kinds, parse, query, sync};

async fn ids(client: &Client, table: &str) -> Vec<i32> {
    client
        .query(&format!("SELECT id FROM {table} ORDER BY id"), &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// The transaction status of the ReadyForQuery that ends `replies`.
fn status(replies: &[(u8, Vec<u8>)]) -> u8 {
    match replies.last() {
        Some((b'Z', body)) if body.len() == 1 => body[0],
        _ => panic!("no ReadyForQuery: {}", kinds(replies)),
    }
}

/// tokio-postgres runs every statement with Parse/Bind/Execute: errors met while planning and
/// while rows are computed fail the block alike, and savepoints repair it.
#[tokio::test]
async fn extended_protocol_errors_fail_the_block_until_it_ends() {
    let server = TestServer::start();
    let mut client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE tx (id int PRIMARY KEY, n int); INSERT INTO tx VALUES (1, 1), (100, 0)",
        )
        .await
        .unwrap();
    let insert = "INSERT INTO tx VALUES ($1, 1)";
    for failing in [
        "SELECT 1 / n FROM tx WHERE id = $1",
        "SELECT nosuch FROM tx WHERE id = $1",
    ] {
        let txn = client.transaction().await.unwrap();
        txn.execute(insert, &[&2i32]).await.unwrap();
        let err = txn.query(failing, &[&100i32]).await.unwrap_err();
        assert!(
            ["22012", "42703"].contains(&sqlstate(&err).as_str()),
            "{err}"
        );
        let err = txn.execute(insert, &[&3i32]).await.unwrap_err();
        assert_eq!(sqlstate(&err), "25P02", "{failing}");
        let err = txn.query_one("SELECT $1::int", &[&1i32]).await.unwrap_err();
        assert_eq!(sqlstate(&err), "25P02");
        // Preparing is refused too, before planning (the table does not exist).
        let err = txn.prepare("SELECT * FROM nosuch").await.unwrap_err();
        assert_eq!(sqlstate(&err), "25P02");
        // COMMIT of a failed block rolls it back.
        txn.commit().await.unwrap();
        assert_eq!(ids(&client, "tx").await, [1, 100], "{failing}");
    }
    // Nested transactions are savepoints: the inner one's failure leaves the outer usable.
    let mut txn = client.transaction().await.unwrap();
    txn.execute(insert, &[&4i32]).await.unwrap();
    {
        let inner = txn.transaction().await.unwrap();
        inner.execute(insert, &[&5i32]).await.unwrap();
        let err = inner.execute(insert, &[&4i32]).await.unwrap_err();
        assert_eq!(sqlstate(&err), "23505");
        let err = inner.execute(insert, &[&6i32]).await.unwrap_err();
        assert_eq!(sqlstate(&err), "25P02");
        inner.rollback().await.unwrap();
    }
    txn.execute(insert, &[&7i32]).await.unwrap();
    txn.commit().await.unwrap();
    assert_eq!(ids(&client, "tx").await, [1, 4, 7, 100]);
    // An unknown savepoint is 3B001, and fails the block.
    client.batch_execute("BEGIN; SAVEPOINT a").await.unwrap();
    let err = client
        .batch_execute("ROLLBACK TO SAVEPOINT b")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "3B001");
    let err = client.execute(insert, &[&8i32]).await.unwrap_err();
    assert_eq!(sqlstate(&err), "25P02");
    client.batch_execute("ROLLBACK TO a").await.unwrap();
    client.execute(insert, &[&9i32]).await.unwrap();
    client.batch_execute("COMMIT").await.unwrap();
    assert_eq!(ids(&client, "tx").await, [1, 4, 7, 9, 100]);
}

/// ReadyForQuery reports the session's state, also after `ROLLBACK TO SAVEPOINT` repaired a
/// failed block; an error while a query string's last rows are sent rolls back its implicit
/// transaction; a syntax error fails a block.
#[tokio::test]
async fn simple_protocol_reports_the_true_transaction_status() {
    let server = TestServer::start_with(&["--auth", "trust"]);
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE st (id int PRIMARY KEY, n int); INSERT INTO st VALUES (1, 1), (100, 0)",
        )
        .await
        .unwrap();
    let mut raw = Raw::trusted(&server).await;
    let mut run = async |sql: &str| {
        raw.send(&query(sql)).await;
        raw.until_ready().await
    };
    assert_eq!(status(&run("BEGIN; SAVEPOINT a").await), b'T');
    let replies = run("INSERT INTO st VALUES (2, 1); SELECT 1 / n FROM st").await;
    assert_eq!(error_of(&replies).1, "22012", "{}", kinds(&replies));
    assert_eq!(status(&replies), b'E');
    let replies = run("SELECT 1").await;
    assert_eq!(error_of(&replies).1, "25P02");
    assert_eq!(status(&replies), b'E');
    assert_eq!(status(&run("ROLLBACK TO SAVEPOINT a").await), b'T');
    assert_eq!(status(&run("INSERT INTO st VALUES (3, 1)").await), b'T');
    let replies = run("SELEC 1").await;
    assert_eq!(error_of(&replies).1, "42601");
    assert_eq!(status(&replies), b'E');
    let replies = run("COMMIT").await;
    assert_eq!(status(&replies), b'I');
    assert!(
        replies
            .iter()
            .any(|(k, body)| *k == b'C' && body.as_slice() == b"ROLLBACK\0"),
        "{}",
        kinds(&replies)
    );
    // The failure is in the last statement's rows, after the insert ran.
    let replies = run("INSERT INTO st VALUES (4, 1); SELECT 1 / n FROM st ORDER BY id").await;
    assert_eq!(error_of(&replies).1, "22012");
    assert_eq!(status(&replies), b'I');
    assert_eq!(ids(&client, "st").await, [1, 100]);
}

/// Outside a block, the statements of a pipeline up to its Sync are one transaction, as in
/// PostgreSQL (PgJDBC's executeBatch of different statements, psycopg's pipeline mode): an
/// error rolls back what ran before it and skips the rest; success commits all at the Sync.
/// Also when the earlier part is a held run of one prepared INSERT.
#[tokio::test]
async fn a_pipeline_commits_at_its_sync_all_or_nothing() {
    let server = TestServer::start_with(&["--auth", "trust"]);
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE pl (id int PRIMARY KEY, n int); INSERT INTO pl VALUES (1, 1), (100, 0)",
        )
        .await
        .unwrap();
    let mut raw = Raw::trusted(&server).await;
    let text = |v: i32| Some(v.to_string().into_bytes());
    let statement = |name: &str, sql: &str, value: i32| {
        let mut out = parse(name, sql);
        out.extend(bind("", name, &[], &[text(value)]));
        out.extend(execute(""));
        out
    };
    let insert = "INSERT INTO pl VALUES ($1, 1)";
    let update = "UPDATE pl SET n = n + 1 WHERE id = $1";
    let divide = "SELECT 1 / n FROM pl WHERE id = $1";

    // Insert, update, then an error: nothing stays; the statement after it is skipped.
    let mut bytes = statement("", insert, 2);
    bytes.extend(statement("", update, 1));
    bytes.extend(statement("", divide, 100));
    bytes.extend(statement("", insert, 3));
    bytes.extend(sync());
    raw.send(&bytes).await;
    let replies = raw.until_ready().await;
    assert_eq!(error_of(&replies).1, "22012", "{}", kinds(&replies));
    assert_eq!(kinds(&replies), "12C12C12EZ");
    assert_eq!(status(&replies), b'I');
    assert_eq!(ids(&client, "pl").await, [1, 100]);
    let n: i32 = client
        .query_one("SELECT n FROM pl WHERE id = 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1, "the update was rolled back");

    // A held run of one prepared INSERT, then a failing statement: the run is rolled back.
    let mut bytes = parse("ins", insert);
    for id in 10..20 {
        bytes.extend(bind("", "ins", &[], &[text(id)]));
        bytes.extend(execute(""));
    }
    bytes.extend(statement("", insert, 1));
    bytes.extend(sync());
    raw.send(&bytes).await;
    let replies = raw.until_ready().await;
    assert_eq!(error_of(&replies).1, "23505", "{}", kinds(&replies));
    assert_eq!(ids(&client, "pl").await, [1, 100]);

    // Two Syncs are two transactions: the first commits although the second fails.
    let mut bytes = statement("", insert, 20);
    bytes.extend(statement("", insert, 21));
    bytes.extend(sync());
    bytes.extend(statement("", insert, 22));
    bytes.extend(statement("", insert, 20));
    bytes.extend(sync());
    raw.send(&bytes).await;
    let first = raw.until_ready().await;
    assert_eq!(kinds(&first), "12C12CZ");
    let second = raw.until_ready().await;
    assert_eq!(error_of(&second).1, "23505");
    assert_eq!(ids(&client, "pl").await, [1, 20, 21, 100]);

    // Success: the pipeline reads its own writes, and all of it is committed at the Sync.
    let mut bytes = statement("", insert, 30);
    bytes.extend(statement("", update, 30));
    bytes.extend(statement("", "SELECT n FROM pl WHERE id = $1", 30));
    bytes.extend(sync());
    raw.send(&bytes).await;
    let replies = raw.until_ready().await;
    assert_eq!(kinds(&replies), "12C12C12DCZ");
    assert_eq!(status(&replies), b'I');
    let row = replies.iter().find(|(k, _)| *k == b'D').unwrap();
    assert!(row.1.ends_with(b"2"), "{:?}", row.1);
    assert_eq!(ids(&client, "pl").await, [1, 20, 21, 30, 100]);

    // Inside a block, a pipeline's error fails the block.
    let mut bytes = parse("", "BEGIN");
    bytes.extend(bind("", "", &[], &[]));
    bytes.extend(execute(""));
    bytes.extend(statement("", insert, 40));
    bytes.extend(statement("", divide, 100));
    bytes.extend(sync());
    raw.send(&bytes).await;
    let replies = raw.until_ready().await;
    assert_eq!(error_of(&replies).1, "22012");
    assert_eq!(status(&replies), b'E');
    raw.send(&query("COMMIT")).await;
    assert_eq!(status(&raw.until_ready().await), b'I');
    assert_eq!(ids(&client, "pl").await, [1, 20, 21, 30, 100]);
}
