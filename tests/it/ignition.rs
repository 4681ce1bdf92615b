//! Ignition's SQL tag historian against the real server: `tests/ignition/IgnitionEmulator.java`
//! (PgJDBC from Debian's libpostgresql-jdbc-java) runs the historian's whole life cycle, checking
//! every answer against its own model. The same program passes against PostgreSQL 15 in strict
//! mode (`tests/ignition/run-against-postgres.sh`), which shows it asks what Ignition asks.

use std::path::PathBuf;

use crate::clients::{jdbc_jar, psql, python, run_client};
use crate::harness::{PASSWORD, TestServer, USER, first_column};

fn emulate(server: &TestServer, url_options: &str, mode: &str) -> String {
    let program =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/ignition/IgnitionEmulator.java");
    let url = format!(
        "jdbc:postgresql://127.0.0.1:{}/{USER}{url_options}",
        server.port
    );
    let out = run_client(
        server,
        "java",
        &[
            "-cp",
            &jdbc_jar(),
            &program.to_string_lossy(),
            &url,
            USER,
            PASSWORD,
            mode,
        ],
    );
    assert!(
        out.contains(&format!("IGNITION EMULATOR OK mode={mode}")),
        "{out}"
    );
    out
}

/// The default: a re-sent batch succeeds, each (tagid, t_stamp) is stored once, first value kept.
#[test]
fn ignition_historian_life_cycle_skipping_resent_rows() {
    let server = TestServer::start();
    emulate(&server, "", "dedup");
}

/// `deltagate.historian_duplicates=error` (here from the JDBC URL) restores PostgreSQL's 23505.
#[test]
fn ignition_historian_life_cycle_strict_duplicates() {
    let server = TestServer::start();
    emulate(
        &server,
        "?options=-c%20deltagate.historian_duplicates%3Derror",
        "strict",
    );
}

const MONTH_DDL: &str = "(tagid int4 NOT NULL, intvalue int8, floatvalue float8, stringvalue varchar(255), datevalue timestamp, dataintegrity int4, t_stamp int8 NOT NULL, PRIMARY KEY (tagid, t_stamp))";

async fn count(client: &tokio_postgres::Client, table: &str) -> i64 {
    client
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap_or_else(|e| panic!("{table}: {e}"))
        .get(0)
}

fn parquet_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "parquet"))
            .count()
    })
}

/// ARCHITECTURE.md contract 3: every month of a driver is a partition of one Delta table, which
/// independent readers see whole; to PostgreSQL clients each month is a table of its own; DROP
/// removes one month and VACUUM FULL its files; a re-created month starts empty; all of it
/// survives restarts.
#[tokio::test]
async fn historian_months_are_partitions_of_one_delta_table() {
    let mut server = TestServer::start();
    let client = server.client().await;
    let schema = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schemas/ignition/postgres.sql");
    let ddl = std::fs::read_to_string(schema).expect("schemas/ignition/postgres.sql");
    client.batch_execute(&ddl).await.unwrap();
    for table in [
        "sqlt_data_1_2026_10",
        "sqlt_data_1_20261201",
        "sqlt_data_2_2026_11",
    ] {
        client
            .batch_execute(&format!(
                "CREATE TABLE {table} {MONTH_DDL}; CREATE INDEX {table}t_stampndx ON {table} (t_stamp)"
            ))
            .await
            .unwrap();
    }
    let fill = |table: &'static str, tags: i32, t_stamp: i64| {
        format!(
            "INSERT INTO {table} (tagid, floatvalue, dataintegrity, t_stamp) \
             SELECT v, v * 0.5, 192, {t_stamp} FROM generate_series(1, {tags}) AS t(v)"
        )
    };
    client
        .batch_execute(
            &[
                fill("sqlt_data_1_2026_10", 100, 1_000),
                fill("sqlt_data_1_2026_11", 50, 2_000),
                fill("sqlt_data_1_20261201", 5, 3_000),
                fill("sqlt_data_2_2026_11", 7, 4_000),
            ]
            .join(";"),
        )
        .await
        .unwrap();
    // Each month is a table with its own keys and indexes.
    let indexes: Vec<String> = first_column(
        &client,
        "SELECT indexname FROM pg_indexes WHERE tablename = 'sqlt_data_1_2026_10' ORDER BY 1",
    )
    .await;
    assert_eq!(
        indexes,
        ["sqlt_data_1_2026_10_pkey", "sqlt_data_1_2026_10t_stampndx"]
    );
    // Months of one Delta table still have their own keys.
    client
        .batch_execute(&fill("sqlt_data_1_2026_11", 100, 1_000))
        .await
        .unwrap();
    assert_eq!(count(&client, "sqlt_data_1_2026_11").await, 150);
    assert_eq!(count(&client, "sqlt_data_1_2026_10").await, 100);
    drop(client);

    // A clean restart flushes everything to Delta and rediscovers the months.
    server.restart();
    let client = server.client().await;
    let public = server.warehouse().join("public");
    assert!(public.join("sqlt_data_1/_delta_log").is_dir());
    assert!(public.join("sqlt_data_2/_delta_log").is_dir());
    assert!(!public.join("sqlt_data_1_2026_10").exists());
    let table = public.join("sqlt_data_1");
    let read = |server: &TestServer| {
        run_client(
            server,
            &python(),
            &["delta_readers.py", "months", table.to_str().unwrap()],
        )
    };
    let out = read(&server);
    for line in [
        "month 2026-10 100 5050 100000",
        "month 2026-11 150 6325 200000",
        "month 2026-12-01 5 15 15000",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
    assert_eq!(count(&client, "sqlt_data_1_2026_11").await, 150);
    assert_eq!(count(&client, "sqlt_data_2_2026_11").await, 7);

    // DROP removes that month only; VACUUM FULL deletes its files.
    client
        .batch_execute("DROP TABLE sqlt_data_1_2026_10")
        .await
        .unwrap();
    let error = client
        .query("SELECT * FROM sqlt_data_1_2026_10", &[])
        .await
        .expect_err("dropped month");
    assert_eq!(crate::harness::sqlstate(&error), "42P01");
    assert_eq!(count(&client, "sqlt_data_1_2026_11").await, 150);
    let out = read(&server);
    assert!(!out.contains("month 2026-10"), "{out}");
    assert!(out.contains("month 2026-11 150 6325 200000"), "{out}");
    let october = table.join("month=2026-10");
    assert!(parquet_files(&october) > 0, "files stay until VACUUM");
    client
        .batch_execute("VACUUM sqlt_data_1_2026_11")
        .await
        .unwrap();
    assert!(
        parquet_files(&october) > 0,
        "plain VACUUM keeps files within the retention"
    );
    // As in PostgreSQL, not inside a transaction block, explicit or implicit.
    for sql in ["BEGIN; VACUUM FULL", "SELECT 1; VACUUM FULL"] {
        let error = client.batch_execute(sql).await.expect_err(sql);
        assert_eq!(crate::harness::sqlstate(&error), "25001", "{sql}: {error}");
        client.batch_execute("ROLLBACK").await.unwrap();
    }
    assert!(
        parquet_files(&october) > 0,
        "a refused VACUUM deletes nothing"
    );
    client.batch_execute("VACUUM FULL").await.unwrap();
    assert_eq!(
        parquet_files(&october),
        0,
        "VACUUM FULL deletes the month's files"
    );
    assert!(parquet_files(&table.join("month=2026-11")) > 0);

    // A re-created month starts empty, also after a crash replays the log.
    client
        .batch_execute(&format!("CREATE TABLE sqlt_data_1_2026_10 {MONTH_DDL}"))
        .await
        .unwrap();
    assert_eq!(count(&client, "sqlt_data_1_2026_10").await, 0);
    client
        .batch_execute(&fill("sqlt_data_1_2026_10", 3, 9_000))
        .await
        .unwrap();
    drop(client);
    server.crash_and_restart();
    let client = server.client().await;
    assert_eq!(count(&client, "sqlt_data_1_2026_10").await, 3);
    assert_eq!(count(&client, "sqlt_data_1_2026_11").await, 150);
    assert_eq!(count(&client, "sqlt_data_1_20261201").await, 5);
    let names: Vec<String> = first_column(&client, "SELECT table_name FROM information_schema.tables WHERE table_name LIKE 'sqlt_data%' ORDER BY 1").await;
    assert_eq!(
        names,
        [
            "sqlt_data_1_20261201",
            "sqlt_data_1_2026_10",
            "sqlt_data_1_2026_11",
            "sqlt_data_2_2026_11"
        ]
    );
    // A month cannot grow columns the other months do not have.
    let error = client
        .batch_execute("ALTER TABLE sqlt_data_1_2026_11 ADD COLUMN extra int4")
        .await
        .expect_err("month columns are fixed");
    assert_eq!(crate::harness::sqlstate(&error), "0A000");
}

/// `tag_history` is a view to clients: psql lists and describes it, with its definition, and
/// that definition (from `pg_views`) is a query giving the view's own answer.
#[tokio::test]
async fn tag_history_is_a_view_clients_can_describe() {
    let server = TestServer::start();
    let client = server.client().await;
    let schema = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schemas/ignition/postgres.sql");
    let ddl = std::fs::read_to_string(schema).expect("schemas/ignition/postgres.sql");
    client.batch_execute(&ddl).await.unwrap();
    let mut statements = vec![
        "INSERT INTO sqlth_te (tagpath, scid, datatype, querymode, created) \
         SELECT 'site/tag' || v, 1, 1, 3, 0 FROM generate_series(1, 20) AS t(v)"
            .to_string(),
    ];
    for (table, tags, t_stamp) in [
        ("sqlt_data_1_2026_10", 30, 1_790_812_800_000i64),
        ("sqlt_data_1_2026_11", 20, 1_793_491_200_000),
        ("sqlt_data_2_2026_11", 10, 1_793_491_260_000),
    ] {
        statements.push(format!("CREATE TABLE IF NOT EXISTS {table} {MONTH_DDL}"));
        statements.push(format!(
            "INSERT INTO {table} (tagid, intvalue, floatvalue, dataintegrity, t_stamp) \
             SELECT v, v, CASE WHEN v % 2 = 0 THEN v * 0.5 END, 192, {t_stamp} + v \
             FROM generate_series(1, {tags}) AS t(v)"
        ));
    }
    client.batch_execute(&statements.join(";")).await.unwrap();
    let definition: String = client
        .query_one(
            "SELECT definition FROM pg_views WHERE schemaname = 'public' AND viewname = 'tag_history'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let summary = |from: &str| {
        format!(
            "SELECT count(*), sum(value), min(ts)::text, max(ts)::text, max(tagpath), \
             sum(quality)::bigint FROM {from}"
        )
    };
    let answer = |row: tokio_postgres::Row| {
        (
            row.get::<_, i64>(0),
            row.get::<_, f64>(1),
            row.get::<_, String>(2),
            row.get::<_, String>(3),
            row.get::<_, String>(4),
            row.get::<_, i64>(5),
        )
    };
    let view = answer(
        client
            .query_one(&summary("tag_history"), &[])
            .await
            .unwrap(),
    );
    // Tags 21..30 of October are not in sqlth_te: the join leaves them out.
    assert_eq!(
        view,
        (
            50,
            // value: the float value where there is one, else the integer value.
            (1..=20)
                .map(|v| if v % 2 == 0 { v as f64 * 0.5 } else { v as f64 })
                .sum::<f64>()
                * 2.0
                + (1..=10)
                    .map(|v| if v % 2 == 0 { v as f64 * 0.5 } else { v as f64 })
                    .sum::<f64>(),
            "2026-10-01 00:00:00.001+00".to_string(),
            "2026-11-01 00:01:00.01+00".to_string(),
            "site/tag9".to_string(),
            50 * 192,
        )
    );
    let inline = format!("({}) AS v", definition.trim().trim_end_matches(';'));
    let rerun = answer(client.query_one(&summary(&inline), &[]).await.unwrap());
    assert_eq!(rerun, view, "definition:\n{definition}");

    let out = psql(&server, &["\\dv"]);
    assert!(
        out.contains(" public | tag_history | view | deltagate"),
        "{out}"
    );
    let out = psql(&server, &["\\d+ tag_history"]);
    for expected in [
        "View \"public.tag_history\"",
        " tagpath     | text                        |",
        " ts          | timestamp with time zone    |",
        " datevalue   | timestamp without time zone |",
        "View definition:",
        "FROM sqlt_data_2_2026_11",
        "JOIN sqlth_te te ON te.id = d.tagid;",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
}
