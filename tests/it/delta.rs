//! ARCHITECTURE.md contract 4: what deltagate writes is read correctly by independent Delta readers and keeps
//! Spark's protocol; and Delta tables written by another engine are served.

use crate::clients::{python, run_client};
use crate::harness::{TestServer, first_column};

#[tokio::test]
async fn independent_readers_see_every_type() {
    let server = TestServer::start();
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE all_types (id int PRIMARY KEY, i2 smallint, i4 integer, i8 bigint, f4 real,
               f8 double precision, n numeric(10,3), b boolean, t text, vc varchar(5), c char(4),
               d date, ts timestamp, tz timestamptz, by bytea, j json, u uuid)",
        )
        .await
        .unwrap();
    client
        .batch_execute(
            "INSERT INTO all_types VALUES (1, -7, 123456, 9000000000, 1.5, -2.25, 1234.567, true,
               'héllo', 'abc', 'xy', '2024-02-29', '2024-02-29 13:14:15.123456',
               '2024-02-29 13:14:15+00', '\\x00ff', '{\"a\": 1}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11');
             INSERT INTO all_types (id) VALUES (2)",
        )
        .await
        .unwrap();
    // Enough commits for a checkpoint (delta.checkpointInterval = 10), leaving the data as is:
    // each DELETE flushes the buffered insert (one commit) and deletes it (another).
    for i in 0..6 {
        let id = 100 + i;
        client
            .execute(&format!("INSERT INTO all_types (id) VALUES ({id})"), &[])
            .await
            .unwrap();
        client
            .execute(&format!("DELETE FROM all_types WHERE id = {id}"), &[])
            .await
            .unwrap();
    }
    let table = server.warehouse().join("public/all_types");
    let out = run_client(
        &server,
        &python(),
        &["delta_readers.py", "check", table.to_str().unwrap()],
    );
    assert!(out.contains("delta readers: ok"), "{out}");
}

#[tokio::test]
async fn tables_written_by_other_engines_are_served() {
    let mut server = TestServer::start();
    let client = server.client().await;
    let path = server.warehouse().join("public/external_readings");
    run_client(
        &server,
        &python(),
        &["delta_readers.py", "write-external", path.to_str().unwrap()],
    );
    // Found while running: the first statement that names it triggers a rescan.
    let rows = client
        .query(
            "SELECT sensor, reading, n FROM external_readings ORDER BY sensor",
            &[],
        )
        .await
        .unwrap();
    let got: Vec<(String, Option<f64>, i64)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        got,
        vec![
            ("a".into(), Some(1.5), 1),
            ("b".into(), Some(2.5), 2),
            ("c".into(), None, 3)
        ]
    );
    let types: Vec<String> = first_column(&client, "SELECT data_type FROM information_schema.columns WHERE table_name = 'external_readings' ORDER BY ordinal_position").await;
    assert_eq!(
        types,
        vec![
            "text",
            "double precision",
            "timestamp with time zone",
            "bigint"
        ]
    );
    // Writable too, as any table.
    client
        .execute(
            "INSERT INTO external_readings (sensor, n) VALUES ('d', 4)",
            &[],
        )
        .await
        .unwrap();
    let n: i64 = client
        .query_one("SELECT count(*) FROM external_readings", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 4);
    // And after a restart, from the warehouse alone.
    drop(client);
    server.restart();
    let client = server.client().await;
    let n: i64 = client
        .query_one("SELECT count(*) FROM external_readings", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 4);
}
