//! COPY FROM STDIN and TO STDOUT over tokio-postgres: text, CSV and binary formats, errors that
//! name the line and store nothing, a client that disconnects mid-COPY, COPY in transactions,
//! binary COPY of every column type storing what text COPY stores.

use bytes::Bytes;
use futures::{SinkExt, TryStreamExt};
use tokio_postgres::SimpleQueryMessage;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{IsNull, ToSql, Type};

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

/// A numeric as its binary form, for values rust_decimal cannot hold.
#[derive(Debug)]
struct RawNumeric(Vec<u8>);

impl RawNumeric {
    fn new(sign: u16, weight: i16, dscale: u16, digits: &[u16]) -> RawNumeric {
        let header = [digits.len() as u16, weight as u16, sign, dscale];
        RawNumeric(
            header
                .iter()
                .chain(digits)
                .flat_map(|w| w.to_be_bytes())
                .collect(),
        )
    }
}

impl ToSql for RawNumeric {
    fn to_sql(
        &self,
        _: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.extend_from_slice(&self.0);
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::NUMERIC
    }

    postgres_types::to_sql_checked!();
}

/// A NULL of any type.
#[derive(Debug)]
struct Null;

impl ToSql for Null {
    fn to_sql(
        &self,
        _: &Type,
        _: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        Ok(IsNull::Yes)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    postgres_types::to_sql_checked!();
}

/// Every column's values as the simple query protocol renders them, for ids in `range`.
async fn rendered(client: &tokio_postgres::Client, range: &str) -> Vec<Vec<Option<String>>> {
    // `nu` as text: result rows encode numerics through rust_decimal, which holds 28 digits.
    let query = format!(
        "SELECT id, b, i2, i8, f4, f8, n, nu::text, t, vc, c, d, ts, tz, raw, j, jb, u \
         FROM every WHERE id {range} ORDER BY id"
    );
    let messages = client.simple_query(&query).await.expect("select");
    messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(
                // Every column but the id, which differs between the copies.
                (1..row.len())
                    .map(|i| row.get(i).map(str::to_string))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn binary_copy_of_every_type_stores_what_text_copy_stores() {
    let server = TestServer::start();
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE every (id int4 PRIMARY KEY, b boolean, i2 int2, i8 int8, f4 real, \
             f8 double precision, n numeric(20,4), nu numeric, t text, vc varchar(6), c char(4), \
             d date, ts timestamp, tz timestamptz, raw bytea, j json, jb jsonb, u uuid)",
        )
        .await
        .expect("create");
    let text = "1\tt\t-7\t9000000000\t1.5\t-2.25\t1234.5678\t0.1234567891\théllo\tabc\txy\t\
                2024-02-29\t2024-02-29 13:14:15.123456\t2024-02-29 13:14:15.123456+00\t\
                \\\\x0001ff\t{\"k\":[1,2]}\t{\"a\":true}\ta0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11\n\
                2\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\n\
                3\tf\t-32768\t9223372036854775807\t0.1\t1e+300\t-1234567890123456.7891\t\
                1234567890123456789012345678.1234567891\t\tabcdef\ta\t1970-01-01\t\
                1999-12-31 23:59:59.999999\t2000-01-01 00:00:00+00\t\\\\x\t[]\t{}\t\
                00000000-0000-0000-0000-000000000000\n";
    copy_in(&client, "COPY every FROM STDIN", text)
        .await
        .expect("text copy");

    let sink = client
        .copy_in("COPY every FROM STDIN (FORMAT binary)")
        .await
        .expect("binary");
    let types = [
        Type::INT4,
        Type::BOOL,
        Type::INT2,
        Type::INT8,
        Type::FLOAT4,
        Type::FLOAT8,
        Type::NUMERIC,
        Type::NUMERIC,
        Type::TEXT,
        Type::VARCHAR,
        Type::BPCHAR,
        Type::DATE,
        Type::TIMESTAMP,
        Type::TIMESTAMPTZ,
        Type::BYTEA,
        Type::JSON,
        Type::JSONB,
        Type::UUID,
    ];
    let writer = BinaryCopyInWriter::new(sink, &types);
    futures::pin_mut!(writer);
    let date = |y, m, d| chrono::NaiveDate::from_ymd_opt(y, m, d).expect("date");
    let at = |d: chrono::NaiveDate, h, mi, s, us| d.and_hms_micro_opt(h, mi, s, us).expect("time");
    let leap = at(date(2024, 2, 29), 13, 14, 15, 123_456);
    let decimal = |s: &str| s.parse::<rust_decimal::Decimal>().expect("decimal");
    let uuid = |s: &str| uuid::Uuid::parse_str(s).expect("uuid");
    let json = |s: &str| serde_json::from_str::<serde_json::Value>(s).expect("json");
    let first: Vec<Box<dyn ToSql + Sync + Send>> = vec![
        Box::new(101i32),
        Box::new(true),
        Box::new(-7i16),
        Box::new(9_000_000_000i64),
        Box::new(1.5f32),
        Box::new(-2.25f64),
        Box::new(decimal("1234.5678")),
        Box::new(decimal("0.1234567891")),
        Box::new("héllo"),
        Box::new("abc"),
        Box::new("xy"),
        Box::new(date(2024, 2, 29)),
        Box::new(leap),
        Box::new(leap.and_utc()),
        Box::new(vec![0u8, 1, 255]),
        Box::new(json("{\"k\":[1,2]}")),
        Box::new(json("{\"a\":true}")),
        Box::new(uuid("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")),
    ];
    let nulls: Vec<Box<dyn ToSql + Sync + Send>> = std::iter::once(Box::new(102i32) as Box<_>)
        .chain((1..types.len()).map(|_| Box::new(Null) as Box<_>))
        .collect();
    let edges: Vec<Box<dyn ToSql + Sync + Send>> = vec![
        Box::new(103i32),
        Box::new(false),
        Box::new(i16::MIN),
        Box::new(i64::MAX),
        Box::new(0.1f32),
        Box::new(1e300f64),
        Box::new(decimal("-1234567890123456.7891")),
        // 38 digits: beyond rust_decimal, decoded from its base-10000 digits.
        Box::new(RawNumeric::new(
            0,
            6,
            10,
            &[1234, 5678, 9012, 3456, 7890, 1234, 5678, 1234, 5678, 9100],
        )),
        Box::new(""),
        Box::new("abcdef"),
        Box::new("a"),
        Box::new(date(1970, 1, 1)),
        Box::new(at(date(1999, 12, 31), 23, 59, 59, 999_999)),
        Box::new(at(date(2000, 1, 1), 0, 0, 0, 0).and_utc()),
        Box::new(Vec::<u8>::new()),
        Box::new(json("[]")),
        Box::new(json("{}")),
        Box::new(uuid("00000000-0000-0000-0000-000000000000")),
    ];
    for row in [&first, &nulls, &edges] {
        let values: Vec<&(dyn ToSql + Sync)> = row.iter().map(|v| &**v as _).collect();
        writer.as_mut().write(&values).await.expect("write");
    }
    assert_eq!(writer.finish().await.expect("finish"), 3);

    let by_text = rendered(&client, "< 100").await;
    let by_binary = rendered(&client, "> 100").await;
    assert_eq!(by_text.len(), 3);
    assert_eq!(by_binary, by_text);
    let first = &by_binary[0];
    assert_eq!(first[5].as_deref(), Some("1234.5678"));
    assert_eq!(first[9].as_deref(), Some("xy  "), "char(4) is padded");
    assert_eq!(first[12].as_deref(), Some("2024-02-29 13:14:15.123456+00"));
    assert_eq!(
        first[16].as_deref(),
        Some("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")
    );
    assert!(by_binary[1].iter().all(Option::is_none));
    assert_eq!(
        by_binary[2][6].as_deref(),
        Some("1234567890123456789012345678.1234567891")
    );
}

#[tokio::test]
async fn binary_copy_errors_name_the_tuple_and_store_nothing() {
    let server = TestServer::start();
    let client = server.client().await;
    client.batch_execute(TABLE).await.expect("create");
    let tuple = |fields: &[&[u8]]| {
        let mut out = (fields.len() as i16).to_be_bytes().to_vec();
        for field in fields {
            out.extend_from_slice(&(field.len() as i32).to_be_bytes());
            out.extend_from_slice(field);
        }
        out
    };
    let send = |tuples: Vec<Vec<u8>>| {
        let client = &client;
        async move {
            let mut data = b"PGCOPY\n\xff\r\n\0".to_vec();
            data.extend_from_slice(&[0; 8]);
            data.extend(tuples.concat());
            data.extend_from_slice(&(-1i16).to_be_bytes());
            let sink = client
                .copy_in("COPY c (id, name, n) FROM STDIN (FORMAT binary)")
                .await?;
            futures::pin_mut!(sink);
            sink.send(Bytes::from(data)).await?;
            sink.finish().await
        }
    };
    // numeric 12.5 and 123456789 (too big for numeric(10,2)), as base-10000 digits.
    let small = RawNumeric::new(0, 0, 1, &[12, 5000]).0;
    let big = RawNumeric::new(0, 2, 0, &[1, 2345, 6789]).0;
    let good = tuple(&[&1i32.to_be_bytes(), b"a", &small]);

    let short_id = tuple(&[&[0, 2], b"b", &small]);
    let error = send(vec![good.clone(), short_id])
        .await
        .expect_err("wrong length");
    assert_eq!(sqlstate(&error), "22P03", "{error:?}");
    let db = error.as_db_error().expect("db error");
    assert!(
        db.message().starts_with("incorrect binary data format"),
        "{db:?}"
    );
    let context = db.where_().unwrap_or_default();
    assert!(context.contains("line 2, column id"), "{db:?}");

    let not_utf8 = tuple(&[&2i32.to_be_bytes(), b"\xff", &small]);
    let error = send(vec![not_utf8]).await.expect_err("not UTF-8");
    assert_eq!(sqlstate(&error), "22021", "{error:?}");

    let too_big = tuple(&[&2i32.to_be_bytes(), b"b", &big]);
    let error = send(vec![good.clone(), too_big])
        .await
        .expect_err("beyond numeric(10,2)");
    assert_eq!(sqlstate(&error), "22003", "{error:?}");

    let too_long = tuple(&[&2i32.to_be_bytes(), b"elevenchars", &small]);
    let error = send(vec![too_long]).await.expect_err("too long");
    assert_eq!(sqlstate(&error), "22001", "{error:?}");
    assert_eq!(
        client
            .query_one("SELECT count(*) FROM c", &[])
            .await
            .expect("count")
            .get::<_, i64>(0),
        0
    );
    assert_eq!(send(vec![good]).await.expect("good copy"), 1);
    let row = client
        .query_one("SELECT name, n::text FROM c", &[])
        .await
        .expect("select");
    assert_eq!(row.get::<_, String>(0), "a");
    assert_eq!(row.get::<_, String>(1), "12.50");
}
