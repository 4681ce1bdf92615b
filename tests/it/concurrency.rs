//! Concurrent writers through a real client (tokio-postgres), checked the way an application
//! would check its books: increments that all count, transfers that keep the total and are each
//! applied exactly once, and a small tpcb-like workload (pgbench's script) whose account,
//! teller and branch balances agree with its history.
//!
//! deltagate takes no row locks: a transaction block whose change lost a race to another fails
//! at `COMMIT` with 40001 and stores nothing (README "Differences from PostgreSQL"). The
//! sessions here do what an application does with a serialization failure: roll back and run
//! the transaction again. Any other error fails the test.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio_postgres::Client;

use crate::harness::{TestServer, sqlstate};

const SESSIONS: usize = 4;

/// A committed transfer: session, sequence number, from, to, amount.
type Transfer = (i32, i32, i32, i32, i64);
/// A transaction retried this often is starved, which is a failure too.
const MAX_TRIES: u32 = 200;

async fn scalar(client: &Client, sql: &str) -> i64 {
    client
        .query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}

/// Runs `attempt` (one whole transaction block) until it commits, rolling back and trying
/// again after a serialization failure; returns how many tries it took.
async fn retrying<F, Fut>(client: &Client, what: &str, mut attempt: F) -> u32
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), tokio_postgres::Error>>,
{
    for tries in 1..=MAX_TRIES {
        match attempt().await {
            Ok(()) => return tries,
            Err(e) if sqlstate(&e) == "40001" => {
                // A failed COMMIT already ended the block; after a failed statement this ends it.
                client.batch_execute("ROLLBACK").await.expect("rollback");
                tokio::time::sleep(Duration::from_millis(rand::random_range(0..5))).await;
            }
            Err(e) => panic!("{what}: {e} (SQLSTATE {})", sqlstate(&e)),
        }
    }
    panic!("{what}: still failing with 40001 after {MAX_TRIES} tries");
}

#[tokio::test]
async fn autocommit_increments_from_four_sessions_all_count() {
    let server = TestServer::start();
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE t (id int4 PRIMARY KEY, n int8); INSERT INTO t VALUES (1, 0), (2, 0)",
        )
        .await
        .expect("create");
    let sessions = (0..SESSIONS).map(|_| async {
        let client = server.client().await;
        for _ in 0..50 {
            let n = client
                .execute("UPDATE t SET n = n + 1 WHERE id = 1", &[])
                .await
                .expect("update");
            assert_eq!(n, 1, "UPDATE reported {n} rows");
        }
    });
    futures::future::join_all(sessions).await;
    assert_eq!(scalar(&client, "SELECT n FROM t WHERE id = 1").await, 200);
    assert_eq!(scalar(&client, "SELECT n FROM t WHERE id = 2").await, 0);
}

/// One transfer as its own block: two updates and the history row, committed together.
async fn transfer(
    client: &Client,
    session: i32,
    seq: i32,
    (from, to, amount): (i32, i32, i64),
) -> Result<(), tokio_postgres::Error> {
    client.batch_execute("BEGIN").await?;
    let debited = client
        .execute(
            "UPDATE acc SET bal = bal - $1 WHERE id = $2",
            &[&amount, &from],
        )
        .await?;
    let credited = client
        .execute(
            "UPDATE acc SET bal = bal + $1 WHERE id = $2",
            &[&amount, &to],
        )
        .await?;
    assert_eq!((debited, credited), (1, 1), "transfer {from} -> {to}");
    client
        .execute(
            "INSERT INTO transfers (session, seq, src, dst, amount) VALUES ($1, $2, $3, $4, $5)",
            &[&session, &seq, &from, &to, &amount],
        )
        .await?;
    client.batch_execute("COMMIT").await
}

#[tokio::test]
async fn concurrent_transfers_keep_the_total_and_apply_each_once() {
    const ACCOUNTS: i32 = 8;
    const PER_SESSION: i32 = 10;
    const OPENING: i64 = 1_000;
    let server = TestServer::start();
    let client = server.client().await;
    client
        .batch_execute(&format!(
            "CREATE TABLE acc (id int4 PRIMARY KEY, bal int8 NOT NULL);
             CREATE TABLE transfers (session int4, seq int4, src int4, dst int4, amount int8,
               PRIMARY KEY (session, seq));
             INSERT INTO acc SELECT g, {OPENING} FROM generate_series(1, {ACCOUNTS}) g"
        ))
        .await
        .expect("create");
    // What each session saw commit, to compare with what the server stored.
    let committed: Arc<Mutex<Vec<Transfer>>> = Arc::default();
    let started = Instant::now();
    let sessions = (0..SESSIONS as i32).map(|session| {
        let (server, committed) = (&server, committed.clone());
        async move {
            let client = server.client().await;
            let mut retries = 0;
            for seq in 0..PER_SESSION {
                let from = rand::random_range(1..=ACCOUNTS);
                let to = (from + rand::random_range(1..ACCOUNTS) - 1) % ACCOUNTS + 1;
                let amount = rand::random_range(1..=100i64);
                let what = format!("transfer {session}/{seq}");
                let tries = retrying(&client, &what, || {
                    transfer(&client, session, seq, (from, to, amount))
                })
                .await;
                retries += tries - 1;
                committed.lock().push((session, seq, from, to, amount));
            }
            retries
        }
    });
    let retries: u32 = futures::future::join_all(sessions).await.iter().sum();
    let committed = std::mem::take(&mut *committed.lock());
    eprintln!(
        "{} transfers in {:?}, {retries} retried after 40001",
        committed.len(),
        started.elapsed()
    );

    let total = scalar(&client, "SELECT sum(bal)::int8 FROM acc").await;
    assert_eq!(total, OPENING * ACCOUNTS as i64, "the total moved");
    // Every committed transfer is in the history once, and nothing else is.
    let mut stored: Vec<Transfer> = client
        .query(
            "SELECT session, seq, src, dst, amount FROM transfers ORDER BY session, seq",
            &[],
        )
        .await
        .expect("transfers")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect();
    let mut expected = committed;
    expected.sort();
    stored.sort();
    assert_eq!(
        stored, expected,
        "the history is not the committed transfers"
    );
    // Each balance moved by exactly the transfers that committed.
    let mut want: HashMap<i32, i64> = (1..=ACCOUNTS).map(|a| (a, OPENING)).collect();
    for (_, _, from, to, amount) in &expected {
        *want.entry(*from).or_default() -= amount;
        *want.entry(*to).or_default() += amount;
    }
    let have: HashMap<i32, i64> = client
        .query("SELECT id, bal FROM acc", &[])
        .await
        .expect("balances")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(have, want, "balances differ from the committed transfers");
    // The same, computed by the server from its own history.
    let off = scalar(
        &client,
        &format!(
            "SELECT count(*) FROM acc a WHERE a.bal <> {OPENING} \
               + coalesce((SELECT sum(amount) FROM transfers WHERE dst = a.id), 0) \
               - coalesce((SELECT sum(amount) FROM transfers WHERE src = a.id), 0)"
        ),
    )
    .await;
    assert_eq!(off, 0, "accounts whose balance disagrees with the history");
}

/// pgbench's tpcb-like transaction, through prepared statements.
async fn tpcb(
    client: &Client,
    aid: i32,
    tid: i32,
    delta: i32,
) -> Result<(), tokio_postgres::Error> {
    client.batch_execute("BEGIN").await?;
    client
        .execute(
            "UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2",
            &[&delta, &aid],
        )
        .await?;
    client
        .query_one(
            "SELECT abalance FROM pgbench_accounts WHERE aid = $1",
            &[&aid],
        )
        .await?;
    client
        .execute(
            "UPDATE pgbench_tellers SET tbalance = tbalance + $1 WHERE tid = $2",
            &[&delta, &tid],
        )
        .await?;
    client
        .execute(
            "UPDATE pgbench_branches SET bbalance = bbalance + $1 WHERE bid = 1",
            &[&delta],
        )
        .await?;
    client
        .execute(
            "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) \
             VALUES ($1, 1, $2, $3, CURRENT_TIMESTAMP)",
            &[&tid, &aid, &delta],
        )
        .await?;
    client.batch_execute("END").await
}

#[tokio::test]
async fn tpcb_like_balances_agree_with_the_history() {
    const PER_SESSION: usize = 25;
    let server = TestServer::start();
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE pgbench_branches (bid int PRIMARY KEY, bbalance int, filler char(88));
             CREATE TABLE pgbench_tellers (tid int PRIMARY KEY, bid int, tbalance int, filler char(84));
             CREATE TABLE pgbench_accounts (aid int PRIMARY KEY, bid int, abalance int, filler char(84));
             CREATE TABLE pgbench_history (tid int, bid int, aid int, delta int, mtime timestamp, filler char(22));
             INSERT INTO pgbench_branches (bid, bbalance) VALUES (1, 0);
             INSERT INTO pgbench_tellers (tid, bid, tbalance) SELECT g, 1, 0 FROM generate_series(1, 10) g;
             INSERT INTO pgbench_accounts (aid, bid, abalance, filler)
               SELECT g, 1, 0, '' FROM generate_series(1, 1000) g",
        )
        .await
        .expect("create");
    let started = Instant::now();
    let sessions = (0..SESSIONS).map(|session| {
        let server = &server;
        async move {
            let client = server.client().await;
            let (mut sum, mut retries) = (0i64, 0);
            for n in 0..PER_SESSION {
                let aid = rand::random_range(1..=1_000);
                let tid = rand::random_range(1..=10);
                let delta = rand::random_range(-5000..=5000);
                let what = format!("tpcb {session}/{n}");
                retries += retrying(&client, &what, || tpcb(&client, aid, tid, delta)).await - 1;
                sum += i64::from(delta);
            }
            (sum, retries)
        }
    });
    let results = futures::future::join_all(sessions).await;
    let delta: i64 = results.iter().map(|r| r.0).sum();
    let retries: u32 = results.iter().map(|r| r.1).sum();
    eprintln!(
        "{} tpcb-like transactions in {:?}, {retries} retried after 40001",
        SESSIONS * PER_SESSION,
        started.elapsed()
    );
    let row = client
        .query_one(
            "SELECT (SELECT sum(abalance) FROM pgbench_accounts)::int8,
                    (SELECT sum(tbalance) FROM pgbench_tellers)::int8,
                    (SELECT sum(bbalance) FROM pgbench_branches)::int8,
                    (SELECT sum(delta) FROM pgbench_history)::int8,
                    (SELECT count(*) FROM pgbench_history)::int8",
            &[],
        )
        .await
        .expect("balances");
    let sums: [i64; 4] = [row.get(0), row.get(1), row.get(2), row.get(3)];
    assert_eq!(
        sums, [delta; 4],
        "accounts, tellers, branches, history vs the committed deltas"
    );
    assert_eq!(row.get::<_, i64>(4), (SESSIONS * PER_SESSION) as i64);
}
