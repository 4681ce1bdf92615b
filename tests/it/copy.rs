//! COPY FROM STDIN and TO STDOUT over tokio-postgres: text, CSV and binary formats, errors that
//! name the line and store nothing, a client that disconnects mid-COPY, COPY in transactions.

use bytes::Bytes;
use futures::{SinkExt, TryStreamExt};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;

use crate::harness::{TestServer, sqlstate};

const TABLE: &str = "CREATE TABLE c (id int4 PRIMARY KEY, name varchar(10) NOT NULL, v float8, \
     n numeric(10,2), ts timestamp, ok boolean, raw bytea, note text DEFAULT 'none')";

async fn copy_in(
    client: &tokio_postgres::Client,
    statement: &str,
    data: &str,
) -> Result<u64, tokio_postgres::Error> {
    let sink = client.copy_in(statement).await?;
    futures::pin_mut!(sink);
    for chunk in data.as_bytes().chunks(7) {
        sink.send(Bytes::copy_from_slice(chunk)).await?;
    }
    sink.finish().await
}

async fn copy_out(client: &tokio_postgres::Client, statement: &str) -> String {
    let stream = client.copy_out(statement).await.expect("copy out");
    let chunks: Vec<Bytes> = stream.try_collect().await.expect("copy out data");
    String::from_utf8(chunks.concat()).expect("utf8")
}

#[tokio::test]
async fn copy_text_csv_and_binary_in_and_out() {
    let server = TestServer::start();
    let client = server.client().await;
    client.batch_execute(TABLE).await.expect("create");

    let text = "1\talpha\t1.5\t3.25\t2026-11-01 10:00:00\tt\t\\\\x0001\tfirst\n\
                2\tbe\\tta\t\\N\t\\N\t\\N\tf\t\\N\t\\N\n";
    let rows = copy_in(&client, "COPY c FROM STDIN", text)
        .await
        .expect("text copy");
    assert_eq!(rows, 2);

    let csv = "id,name,v,ok\n3,\"gam,ma\",2.5,true\n4,\"\",,false\n";
    let rows = copy_in(
        &client,
        "COPY c (id, name, v, ok) FROM STDIN WITH (FORMAT csv, HEADER)",
        csv,
    )
    .await
    .expect("csv copy");
    assert_eq!(rows, 2);
    // Legacy syntax, as psql's \copy sends it, with other delimiter and NULL.
    let rows = copy_in(
        &client,
        "COPY c (id, name, v) FROM STDIN CSV DELIMITER ';' NULL 'NA'",
        "5;five;NA\n",
    )
    .await
    .expect("legacy csv copy");
    assert_eq!(rows, 1);

    let sink = client
        .copy_in("COPY c (id, name, v, ts) FROM STDIN (FORMAT binary)")
        .await
        .expect("binary");
    let writer = BinaryCopyInWriter::new(
        sink,
        &[Type::INT4, Type::VARCHAR, Type::FLOAT8, Type::TIMESTAMP],
    );
    futures::pin_mut!(writer);
    let ts = chrono::NaiveDate::from_ymd_opt(2026, 11, 2)
        .and_then(|d| d.and_hms_micro_opt(3, 4, 5, 600))
        .expect("timestamp");
    for i in 6..9i32 {
        let name = format!("bin{i}");
        writer
            .as_mut()
            .write(&[&i, &name, &(f64::from(i) / 4.0), &ts])
            .await
            .expect("write");
    }
    assert_eq!(writer.finish().await.expect("finish"), 3);

    let rows = client
        .query(
            "SELECT id, name, v, n::text, ts, ok, raw, note FROM c ORDER BY id",
            &[],
        )
        .await
        .expect("select");
    let ids: Vec<i32> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(ids, vec![1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(rows[0].get::<_, String>(1), "alpha");
    assert_eq!(rows[0].get::<_, Option<String>>(3).as_deref(), Some("3.25"));
    let at = |y, mo, d, h, mi, s, us| {
        chrono::NaiveDate::from_ymd_opt(y, mo, d).and_then(|d| d.and_hms_micro_opt(h, mi, s, us))
    };
    assert_eq!(
        rows[0].get::<_, Option<chrono::NaiveDateTime>>(4),
        at(2026, 11, 1, 10, 0, 0, 0)
    );
    assert_eq!(rows[0].get::<_, Option<Vec<u8>>>(6), Some(vec![0, 1]));
    assert_eq!(
        rows[0].get::<_, Option<String>>(7).as_deref(),
        Some("first")
    );
    assert_eq!(rows[1].get::<_, String>(1), "be\tta");
    assert_eq!(rows[1].get::<_, Option<f64>>(2), None);
    assert_eq!(
        rows[1].get::<_, Option<String>>(7),
        None,
        "an explicit NULL is not replaced by the default"
    );
    assert_eq!(rows[2].get::<_, String>(1), "gam,ma");
    assert_eq!(
        rows[2].get::<_, Option<String>>(7).as_deref(),
        Some("none"),
        "omitted column takes its default"
    );
    assert_eq!(
        rows[3].get::<_, String>(1),
        "",
        "a quoted empty CSV field is an empty string"
    );
    assert_eq!(
        rows[3].get::<_, Option<f64>>(2),
        None,
        "an unquoted empty CSV field is NULL"
    );
    assert_eq!(rows[4].get::<_, Option<f64>>(2), None);
    assert_eq!(rows[6].get::<_, String>(1), "bin7");
    assert_eq!(rows[6].get::<_, Option<f64>>(2), Some(1.75));
    assert_eq!(
        rows[6].get::<_, Option<chrono::NaiveDateTime>>(4),
        at(2026, 11, 2, 3, 4, 5, 600)
    );

    // Out again, in each format.
    let text = copy_out(
        &client,
        "COPY (SELECT id, name, v FROM c WHERE id <= 2 ORDER BY id) TO STDOUT",
    )
    .await;
    assert_eq!(text, "1\talpha\t1.5\n2\tbe\\tta\t\\N\n");
    let csv = copy_out(
        &client,
        "COPY c (id, name, v) TO STDOUT WITH (FORMAT csv, HEADER)",
    )
    .await;
    let mut lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.remove(0), "id,name,v");
    lines.sort();
    assert!(lines.contains(&"3,\"gam,ma\",2.5"), "{csv}");
    assert!(lines.contains(&"4,\"\","), "{csv}");
    let binary = client
        .copy_out("COPY (SELECT id FROM c WHERE id = 7) TO STDOUT (FORMAT binary)")
        .await
        .expect("binary out");
    let reader = tokio_postgres::binary_copy::BinaryCopyOutStream::new(binary, &[Type::INT4]);
    let out: Vec<i32> = reader
        .map_ok(|row| row.get::<i32>(0))
        .try_collect()
        .await
        .expect("binary rows");
    assert_eq!(out, vec![7]);
}

#[tokio::test]
async fn copy_errors_name_the_line_and_store_nothing() {
    let server = TestServer::start();
    let client = server.client().await;
    client.batch_execute(TABLE).await.expect("create");
    let count = || async {
        client
            .query_one("SELECT count(*) FROM c", &[])
            .await
            .expect("count")
            .get::<_, i64>(0)
    };

    let bad = "1\tok\t1\n2\tfine\t2\n3\tbad\tnot-a-number\n";
    let error = copy_in(&client, "COPY c (id, name, v) FROM STDIN", bad)
        .await
        .expect_err("bad float");
    assert_eq!(sqlstate(&error), "22P02", "{error:?}");
    let db = error.as_db_error().expect("db error");
    assert!(db.message().contains("not-a-number"), "{db:?}");
    assert!(db.where_().unwrap_or_default().contains("line 3"), "{db:?}");
    assert_eq!(count().await, 0);

    let error = copy_in(&client, "COPY c (id, name) FROM STDIN CSV", "1,a\n2\n")
        .await
        .expect_err("short line");
    assert_eq!(sqlstate(&error), "22P04");
    assert_eq!(
        error.as_db_error().map(|e| e.message()),
        Some("missing data for column \"name\"")
    );
    let error = copy_in(&client, "COPY c (id, name) FROM STDIN CSV", "1,a\n2,\n")
        .await
        .expect_err("null name");
    assert_eq!(sqlstate(&error), "23502");
    assert!(
        error
            .as_db_error()
            .and_then(|e| e.where_())
            .unwrap_or_default()
            .contains("line 2")
    );
    let error = copy_in(
        &client,
        "COPY c (id, name) FROM STDIN CSV",
        "1,a\n2,elevenchars\n",
    )
    .await
    .expect_err("too long");
    assert_eq!(sqlstate(&error), "22001");
    let error = copy_in(&client, "COPY c (id, name) FROM STDIN CSV", "1,a\n1,b\n")
        .await
        .expect_err("duplicate key");
    assert_eq!(sqlstate(&error), "23505");
    // Statement-level errors, before any data (tokio-postgres's copy_in cannot take those: it
    // answers them with an extra Sync, so they are sent as simple queries).
    let error = client
        .batch_execute("COPY nosuch FROM STDIN")
        .await
        .expect_err("unknown table");
    assert_eq!(sqlstate(&error), "42P01");
    let error = client
        .batch_execute("COPY c (id, nosuch) FROM STDIN")
        .await
        .expect_err("unknown column");
    assert_eq!(sqlstate(&error), "42703");
    let error = client
        .batch_execute("COPY c FROM '/etc/passwd'")
        .await
        .expect_err("server file");
    assert_eq!(sqlstate(&error), "0A000");
    assert_eq!(count().await, 0);

    // Inside a transaction: the COPY's rows commit or roll back with it.
    client.batch_execute("BEGIN").await.expect("begin");
    copy_in(&client, "COPY c (id, name) FROM STDIN CSV", "10,a\n11,b\n")
        .await
        .expect("copy in txn");
    assert_eq!(count().await, 2);
    client.batch_execute("ROLLBACK").await.expect("rollback");
    assert_eq!(count().await, 0);
    client.batch_execute("BEGIN").await.expect("begin");
    copy_in(&client, "COPY c (id, name) FROM STDIN CSV", "10,a\n11,b\n")
        .await
        .expect("copy in txn");
    client.batch_execute("COMMIT").await.expect("commit");
    assert_eq!(count().await, 2);

    // A client that goes away mid-COPY stores nothing, and the server carries on.
    let (lost, connection) = tokio_postgres::connect(&server.conn_string(), tokio_postgres::NoTls)
        .await
        .expect("connect");
    let task = tokio::spawn(connection);
    let sink = lost
        .copy_in("COPY c (id, name) FROM STDIN CSV")
        .await
        .expect("copy");
    futures::pin_mut!(sink);
    sink.send(Bytes::from_static(b"100,x\n101,y\n"))
        .await
        .expect("send");
    sink.flush().await.expect("flush");
    task.abort();
    drop(lost);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(count().await, 2);
    let again = server.client().await;
    assert_eq!(
        again
            .query_one("SELECT count(*) FROM c WHERE id >= 100", &[])
            .await
            .expect("q")
            .get::<_, i64>(0),
        0
    );
}
