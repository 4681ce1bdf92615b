//! Both query protocols over tokio-postgres: types, parameters, portals, errors,
//! transactions, cancel, restart.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use tokio_postgres::SimpleQueryMessage;
use tokio_postgres::types::Type;

use crate::harness::{TestServer, first_column, sqlstate};
use crate::raw::{Raw, bind, cstring, describe_portal, execute, message};

fn rows_of(messages: &[SimpleQueryMessage]) -> Vec<Vec<Option<String>>> {
    messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_string))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

fn completions(messages: &[SimpleQueryMessage]) -> Vec<u64> {
    messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::CommandComplete(n) => Some(*n),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn simple_protocol_runs_multi_statement_strings() {
    let server = TestServer::start();
    let client = server.client().await;
    let messages = client
        .simple_query(
            "CREATE TABLE s (id int PRIMARY KEY, name text); \
             INSERT INTO s VALUES (1, 'one'), (2, 'two'); \
             SELECT id, name FROM s ORDER BY id; SELECT 1 + 1, 'x'::text",
        )
        .await
        .unwrap();
    assert_eq!(completions(&messages), vec![0, 2, 2, 1]);
    assert_eq!(
        rows_of(&messages),
        vec![
            vec![Some("1".into()), Some("one".into())],
            vec![Some("2".into()), Some("two".into())],
            vec![Some("2".into()), Some("x".into())],
        ]
    );
    // A failing statement in a string rolls back the whole implicit transaction.
    let err = client
        .simple_query("INSERT INTO s VALUES (3, 'three'); INSERT INTO s VALUES (1, 'dup')")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "23505");
    let messages = client.simple_query("SELECT count(*) FROM s").await.unwrap();
    assert_eq!(rows_of(&messages), vec![vec![Some("2".into())]]);
}

#[tokio::test]
async fn extended_protocol_round_trips_every_type_in_binary() {
    let server = TestServer::start();
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE types (
                id bigserial PRIMARY KEY, i2 smallint, i4 integer, i8 bigint, f4 real,
                f8 double precision, n numeric(12,3), b boolean, t text, vc varchar(5),
                c char(3), d date, ts timestamp, tz timestamptz, bin bytea, j json, jb jsonb)",
        )
        .await
        .unwrap();
    let insert = client
        .prepare(
            "INSERT INTO types (i2, i4, i8, f4, f8, b, t, vc, c, d, ts, tz, bin)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING id",
        )
        .await
        .unwrap();
    assert_eq!(insert.params()[0], Type::INT2);
    assert_eq!(insert.params()[2], Type::INT8);
    assert_eq!(insert.params()[9], Type::DATE);
    let date = NaiveDate::from_ymd_opt(2024, 2, 29).unwrap();
    let ts: NaiveDateTime = date.and_hms_micro_opt(13, 14, 15, 123_456).unwrap();
    let tz: DateTime<Utc> = DateTime::from_naive_utc_and_offset(ts, Utc);
    let row = client
        .query_one(
            &insert,
            &[
                &7i16,
                &-42i32,
                &9_000_000_000i64,
                &1.5f32,
                &-2.25f64,
                &true,
                &"héllo",
                &"abc",
                &"xy",
                &date,
                &ts,
                &tz,
                &vec![0u8, 1, 255],
            ],
        )
        .await
        .unwrap();
    let id: i64 = row.get(0);
    assert_eq!(id, 1);
    client
        .execute(
            "UPDATE types SET n = 1234.5678, j = '{\"k\": [1, 2]}', jb = '{\"a\": true}' WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    let row = client
        .query_one(
            "SELECT i2, i4, i8, f4, f8, n::text, b, t, vc, c, d, ts, tz, bin, j, jb FROM types WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i16>(0), 7);
    assert_eq!(row.get::<_, i32>(1), -42);
    assert_eq!(row.get::<_, i64>(2), 9_000_000_000);
    assert_eq!(row.get::<_, f32>(3), 1.5);
    assert_eq!(row.get::<_, f64>(4), -2.25);
    assert_eq!(row.get::<_, String>(5), "1234.568");
    assert!(row.get::<_, bool>(6));
    assert_eq!(row.get::<_, String>(7), "héllo");
    assert_eq!(row.get::<_, String>(8), "abc");
    assert_eq!(row.get::<_, String>(9), "xy ");
    assert_eq!(row.get::<_, NaiveDate>(10), date);
    assert_eq!(row.get::<_, NaiveDateTime>(11), ts);
    assert_eq!(row.get::<_, DateTime<Utc>>(12), tz);
    assert_eq!(row.get::<_, Vec<u8>>(13), vec![0u8, 1, 255]);
    let columns = row.columns();
    assert_eq!(columns[8].type_(), &Type::VARCHAR);
    assert_eq!(columns[9].type_(), &Type::BPCHAR);
    assert_eq!(columns[11].type_(), &Type::TIMESTAMP);
    assert_eq!(columns[12].type_(), &Type::TIMESTAMPTZ);
    assert_eq!(columns[14].type_(), &Type::JSON);
    assert_eq!(columns[15].type_(), &Type::JSONB);
    let json: serde_json::Value = row.get(14);
    assert_eq!(json, serde_json::json!({"k": [1, 2]}));
    let jsonb: serde_json::Value = row.get(15);
    assert_eq!(jsonb, serde_json::json!({"a": true}));
}

#[tokio::test]
async fn untyped_parameters_are_inferred_and_described() {
    let server = TestServer::start();
    let client = server.client().await;
    client
        .batch_execute("CREATE TABLE p (k integer, v text)")
        .await
        .unwrap();
    // Parameter types come from the target columns and comparisons, as in PostgreSQL.
    let stmt = client
        .prepare("INSERT INTO p (k, v) VALUES ($1, $2)")
        .await
        .unwrap();
    assert_eq!(stmt.params(), &[Type::INT4, Type::TEXT]);
    client.execute(&stmt, &[&5i32, &"five"]).await.unwrap();
    let stmt = client
        .prepare("SELECT v FROM p WHERE k = $1")
        .await
        .unwrap();
    assert_eq!(stmt.params(), &[Type::INT4]);
    assert_eq!(stmt.columns()[0].type_(), &Type::TEXT);
    let v: String = client.query_one(&stmt, &[&5i32]).await.unwrap().get(0);
    assert_eq!(v, "five");
}

#[tokio::test]
async fn portals_suspend_at_row_limits() {
    let server = TestServer::start();
    let mut client = server.client().await;
    client
        .batch_execute("CREATE TABLE r (n int); INSERT INTO r SELECT * FROM generate_series(1, 5)")
        .await
        .unwrap();
    let txn = client.transaction().await.unwrap();
    let stmt = txn.prepare("SELECT n FROM r ORDER BY n").await.unwrap();
    let portal = txn.bind(&stmt, &[]).await.unwrap();
    let mut seen = Vec::new();
    loop {
        let rows = txn.query_portal(&portal, 2).await.unwrap();
        if rows.is_empty() {
            break;
        }
        assert!(rows.len() <= 2);
        seen.extend(rows.iter().map(|r| r.get::<_, i32>(0)));
    }
    assert_eq!(seen, vec![1, 2, 3, 4, 5]);
    txn.commit().await.unwrap();
}

#[tokio::test]
async fn errors_carry_postgres_sqlstates() {
    let server = TestServer::start();
    let client = server.client().await;
    client
        .batch_execute("CREATE TABLE e (id int PRIMARY KEY, name varchar(3) NOT NULL)")
        .await
        .unwrap();
    let cases = [
        ("SELECT * FROM nosuch", "42P01"),
        ("SELECT nosuch FROM e", "42703"),
        ("SELEC 1", "42601"),
        ("CREATE TABLE e (x int)", "42P07"),
        ("INSERT INTO e VALUES (1, NULL)", "23502"),
        ("INSERT INTO e VALUES (1, 'toolong')", "22001"),
        ("SELECT nosuchfunction(1)", "42883"),
        ("SELECT 'abc'::int", "22P02"),
        ("SET nosuch_parameter = 1", "42704"),
        ("CREATE TABLE u (x int UNIQUE)", "0A000"),
        ("SELECT 1/0", "22012"),
    ];
    for (sql, code) in cases {
        let err = client.simple_query(sql).await.unwrap_err();
        assert_eq!(sqlstate(&err), code, "{sql}: {err:?}");
        // Same through the extended protocol (errors at Parse or Execute).
        let extended = match client.prepare(sql).await {
            Err(e) => e,
            Ok(stmt) => client.execute(&stmt, &[]).await.unwrap_err(),
        };
        assert_eq!(sqlstate(&extended), code, "{sql} (extended): {extended:?}");
    }
    client
        .execute("INSERT INTO e VALUES (1, 'a')", &[])
        .await
        .unwrap();
    let err = client
        .execute("INSERT INTO e VALUES (1, 'b')", &[])
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "23505");
    // The session survives every error.
    let n: i64 = client
        .query_one("SELECT count(*) FROM e", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
}

#[tokio::test]
async fn transactions_are_atomic_and_isolated() {
    let server = TestServer::start();
    let a = server.client().await;
    let b = server.client().await;
    a.batch_execute("CREATE TABLE x (id int PRIMARY KEY, v int); CREATE TABLE y (id int)")
        .await
        .unwrap();
    a.batch_execute("BEGIN; INSERT INTO x VALUES (1, 10), (2, 20); INSERT INTO y VALUES (1)")
        .await
        .unwrap();
    // Own writes are visible inside the transaction, not outside.
    let inside: i64 = a
        .query_one("SELECT count(*) FROM x", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(inside, 2);
    let outside: i64 = b
        .query_one("SELECT count(*) FROM x", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(outside, 0);
    a.batch_execute("UPDATE x SET v = v + 1 WHERE id = 2; DELETE FROM x WHERE id = 1")
        .await
        .unwrap();
    let row = a.query_one("SELECT id, v FROM x", &[]).await.unwrap();
    assert_eq!((row.get::<_, i32>(0), row.get::<_, i32>(1)), (2, 21));
    // Duplicate keys are caught within the transaction too.
    let err = a
        .execute("INSERT INTO x VALUES (2, 0)", &[])
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "23505");
    // After an error the block is aborted until ROLLBACK.
    let err = a.execute("SELECT 1", &[]).await.unwrap_err();
    assert_eq!(sqlstate(&err), "25P02");
    a.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(
        b.query_one("SELECT count(*) FROM x", &[])
            .await
            .unwrap()
            .get::<_, i64>(0),
        0
    );

    a.batch_execute("BEGIN; INSERT INTO x VALUES (3, 30); INSERT INTO y VALUES (3); COMMIT")
        .await
        .unwrap();
    let row = b
        .query_one(
            "SELECT (SELECT count(*) FROM x), (SELECT count(*) FROM y)",
            &[],
        )
        .await
        .unwrap();
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (1, 1));
    // A key committed by another session conflicts with a later insert.
    b.execute("INSERT INTO x VALUES (4, 40)", &[])
        .await
        .unwrap();
    let err = a
        .execute("INSERT INTO x VALUES (4, 41)", &[])
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "23505");
}

#[tokio::test]
async fn cancel_request_stops_a_running_query() {
    let server = TestServer::start();
    let client = server.client().await;
    let token = client.cancel_token();
    let long = tokio::spawn(async move {
        client
            .query_one(
                "SELECT count(*) FROM generate_series(1, 20000000000) a",
                &[],
            )
            .await
    });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    let result = tokio::time::timeout(std::time::Duration::from_secs(30), long)
        .await
        .expect("query did not stop")
        .unwrap();
    assert_eq!(sqlstate(&result.unwrap_err()), "57014");
}

#[tokio::test]
async fn tables_sequences_and_keys_survive_restart() {
    let mut server = TestServer::start();
    {
        let client = server.client().await;
        client
            .batch_execute(
                "CREATE SCHEMA plant;
                 CREATE TABLE plant.tags (id serial PRIMARY KEY, path varchar(255) NOT NULL, v int DEFAULT 7);
                 CREATE INDEX tags_path_idx ON plant.tags (path);
                 INSERT INTO plant.tags (path) VALUES ('a'), ('b');",
            )
            .await
            .unwrap();
    }
    server.restart();
    let client = server.client().await;
    let id: i32 = client
        .query_one(
            "INSERT INTO plant.tags (path) VALUES ('c') RETURNING id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(id, 3);
    let rows = client
        .query(
            "SELECT column_name, data_type, character_maximum_length, is_nullable, column_default
             FROM information_schema.columns WHERE table_schema = 'plant' AND table_name = 'tags'
             ORDER BY ordinal_position",
            &[],
        )
        .await
        .unwrap();
    /// name, type, length, nullable, default
    type Column = (String, String, Option<i32>, String, Option<String>);
    let described: Vec<Column> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect();
    assert_eq!(
        described,
        vec![
            (
                "id".into(),
                "integer".into(),
                None,
                "NO".into(),
                Some("nextval('plant.tags_id_seq'::regclass)".into())
            ),
            (
                "path".into(),
                "character varying".into(),
                Some(255),
                "NO".into(),
                None
            ),
            (
                "v".into(),
                "integer".into(),
                None,
                "YES".into(),
                Some("7".into())
            ),
        ]
    );
    let indexes: Vec<String> = first_column(
        &client,
        "SELECT indexname FROM pg_indexes WHERE schemaname = 'plant' ORDER BY 1",
    )
    .await;
    assert_eq!(indexes, vec!["tags_path_idx", "tags_pkey"]);
    let err = client
        .execute("INSERT INTO plant.tags (id, path) VALUES (1, 'dup')", &[])
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "23505");
    let v: i32 = client
        .query_one("SELECT v FROM plant.tags WHERE path = 'c'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(v, 7);
}

/// A PgJDBC-style batch (Bind, Describe, Execute a row, one Sync), cut into pieces on the
/// wire, with changes of format codes and of portal in the middle and NULLs: every row is
/// answered in order and stored with its values; a duplicate key deep in a batch fails all of
/// it, reported once, and stores nothing.
#[tokio::test]
async fn batched_executions_are_answered_in_order_and_stored() {
    let server = TestServer::start_with(&["--auth", "trust"]);
    let client = server.client().await;
    client
        .batch_execute("CREATE TABLE b (k int PRIMARY KEY, v text, f float8)")
        .await
        .unwrap();
    let mut raw = Raw::trusted(&server).await;
    let mut parse = Vec::new();
    cstring(&mut parse, "s1");
    cstring(&mut parse, "INSERT INTO b VALUES ($1, $2, $3)");
    parse.extend_from_slice(&3i16.to_be_bytes());
    for oid in [23u32, 25, 701] {
        parse.extend_from_slice(&oid.to_be_bytes());
    }
    let row = |k: i32, portal: &str| {
        let v = (k % 2 == 1).then(|| format!("v{k}").into_bytes());
        if (201..=250).contains(&k) {
            // All in text.
            let f = format!("{}", f64::from(k) / 4.0).into_bytes();
            bind(
                portal,
                "s1",
                &[0],
                &[Some(k.to_string().into_bytes()), v, Some(f)],
            )
        } else {
            let f = (f64::from(k) / 4.0).to_be_bytes().to_vec();
            bind(
                portal,
                "s1",
                &[1, 0, 1],
                &[Some(k.to_be_bytes().to_vec()), v, Some(f)],
            )
        }
    };
    let pipeline = |keys: std::ops::RangeInclusive<i32>| {
        let mut out = message(b'P', &parse);
        let mut expected = vec![b'1'];
        for k in keys {
            let portal = if k > 250 { "p" } else { "" };
            out.extend(row(k, portal));
            expected.push(b'2');
            if k <= 100 || k > 280 {
                out.extend(describe_portal(portal));
                expected.push(b'n');
            }
            out.extend(execute(portal));
            expected.push(b'C');
        }
        out.extend(message(b'S', &[]));
        expected.push(b'Z');
        (out, expected)
    };
    let (bytes, expected) = pipeline(1..=300);
    raw.send_in_pieces(&bytes).await;
    let replies = raw.until_ready().await;
    let kinds: Vec<u8> = replies.iter().map(|(k, _)| *k).collect();
    assert_eq!(
        String::from_utf8_lossy(&kinds),
        String::from_utf8_lossy(&expected)
    );
    for (kind, body) in &replies {
        if *kind == b'C' {
            assert_eq!(body.as_slice(), b"INSERT 0 1\0");
        }
    }
    let row = client
        .query_one(
            "SELECT count(*), sum(k), count(v), sum(f), min(v), max(v) FROM b",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 300);
    assert_eq!(row.get::<_, i64>(1), 300 * 301 / 2);
    assert_eq!(row.get::<_, i64>(2), 150);
    assert_eq!(row.get::<_, f64>(3), 300.0 * 301.0 / 2.0 / 4.0);
    assert_eq!(row.get::<_, String>(4), "v1");
    assert_eq!(row.get::<_, String>(5), "v99");
    let picked: Vec<(i32, Option<String>, f64)> = client
        .query(
            "SELECT k, v, f FROM b WHERE k IN (2, 201, 299) ORDER BY k",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        picked,
        vec![
            (2, None, 0.5),
            (201, Some("v201".into()), 50.25),
            (299, Some("v299".into()), 74.75)
        ]
    );
    // Key 170 is stored: the pipeline 151..=300 fails at its first execution, as a whole.
    client
        .batch_execute("DELETE FROM b WHERE k > 150 AND k <> 170")
        .await
        .unwrap();
    let (bytes, _) = pipeline(151..=300);
    raw.send_in_pieces(&bytes).await;
    let replies = raw.until_ready().await;
    let kinds: Vec<u8> = replies.iter().map(|(k, _)| *k).collect();
    assert_eq!(String::from_utf8_lossy(&kinds), "12EZ");
    let error = String::from_utf8_lossy(&replies[2].1).to_string();
    assert!(error.contains("C23505"), "{error}");
    let count: i64 = client
        .query_one("SELECT count(*) FROM b", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 151);
}
