//! Every insert path takes the one key check: a planned INSERT, the planner-free INSERT of
//! prepared statements, and COPY in text, CSV and binary give the same 23505 (with the same
//! detail) on a keyed table and skip the same duplicates on a historian data table — against
//! stored rows, buffered rows and their own rows, in autocommit and inside a transaction that
//! deleted rows of the table.

use bytes::Bytes;
use futures::SinkExt;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};

use crate::harness::{TestServer, sqlstate};

/// 2026-12-01T00:00Z in milliseconds: stamps of the December historian table.
const DECEMBER: i64 = 1_796_083_200_000;

#[derive(Debug, Clone, Copy)]
enum Path {
    /// An INSERT whose values are expressions: planned by DataFusion.
    Planned,
    /// A prepared INSERT of parameters: the planner-free path.
    Prepared,
    CopyText,
    CopyCsv,
    CopyBinary,
}

const PATHS: [Path; 5] = [
    Path::Planned,
    Path::Prepared,
    Path::CopyText,
    Path::CopyCsv,
    Path::CopyBinary,
];

/// Inserts `(tagid, t_stamp)` rows (with a value in `value`) into `table` by `path`; the row
/// count the server reports.
async fn insert(
    client: &tokio_postgres::Client,
    path: Path,
    table: &str,
    value: &str,
    rows: &[(i32, i64)],
) -> Result<u64, tokio_postgres::Error> {
    let columns = format!("(tagid, t_stamp, {value})");
    match path {
        Path::Planned => {
            let values: Vec<String> = rows
                .iter()
                .map(|(tag, t)| format!("({tag} + 0, {t}, 0.5 * 3)"))
                .collect();
            let sql = format!("INSERT INTO {table} {columns} VALUES {}", values.join(", "));
            client.execute(&sql, &[]).await
        }
        Path::Prepared => {
            let placeholders: Vec<String> = (0..rows.len())
                .map(|i| format!("(${}, ${}, ${})", 3 * i + 1, 3 * i + 2, 3 * i + 3))
                .collect();
            let sql = format!(
                "INSERT INTO {table} {columns} VALUES {}",
                placeholders.join(", ")
            );
            let values: Vec<(i32, i64, f64)> = rows.iter().map(|(g, t)| (*g, *t, 1.5)).collect();
            let params: Vec<&(dyn ToSql + Sync)> = values
                .iter()
                .flat_map(|(g, t, v)| [g as &(dyn ToSql + Sync), t, v])
                .collect();
            client.execute(&sql, &params).await
        }
        Path::CopyText | Path::CopyCsv => {
            let (options, separator) = match path {
                Path::CopyCsv => (" (FORMAT csv)", ','),
                _ => ("", '\t'),
            };
            let data: String = rows
                .iter()
                .map(|(tag, t)| format!("{tag}{separator}{t}{separator}1.5\n"))
                .collect();
            let sink = client
                .copy_in(&format!("COPY {table} {columns} FROM STDIN{options}"))
                .await?;
            futures::pin_mut!(sink);
            sink.send(Bytes::from(data)).await?;
            sink.finish().await
        }
        Path::CopyBinary => {
            let sink = client
                .copy_in(&format!(
                    "COPY {table} {columns} FROM STDIN (FORMAT binary)"
                ))
                .await?;
            let writer = BinaryCopyInWriter::new(sink, &[Type::INT4, Type::INT8, Type::FLOAT8]);
            futures::pin_mut!(writer);
            for (tag, t) in rows {
                writer.as_mut().write(&[tag, t, &1.5f64]).await?;
            }
            writer.finish().await
        }
    }
}

async fn count(client: &tokio_postgres::Client, table: &str) -> i64 {
    client
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .expect("count")
        .get(0)
}

/// Asserts a 23505 naming the key `(tag, t)`.
fn assert_duplicate(result: Result<u64, tokio_postgres::Error>, (tag, t): (i32, i64), what: &str) {
    let error = result.expect_err(what);
    assert_eq!(sqlstate(&error), "23505", "{what}: {error:?}");
    let detail = error.as_db_error().and_then(|e| e.detail()).unwrap_or("");
    assert_eq!(
        detail,
        format!("Key (tagid, t_stamp)=({tag}, {t}) already exists."),
        "{what}"
    );
}

#[tokio::test]
async fn every_insert_path_takes_the_same_key_check() {
    let server = TestServer::start_with(&["--flush-age", "1h"]);
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE k (tagid int4, t_stamp int8, v float8, PRIMARY KEY (tagid, t_stamp));
             CREATE TABLE sqlt_data_1_2026_12 (tagid int4 NOT NULL, intvalue int8, \
               floatvalue float8, stringvalue varchar(255), datevalue timestamp, \
               dataintegrity int4, t_stamp int8 NOT NULL, PRIMARY KEY (tagid, t_stamp))",
        )
        .await
        .expect("create");
    let history = "sqlt_data_1_2026_12";
    // Keys (1, 0..4) stored in Delta, (1, 4..8) buffered, in both tables.
    for (from, checkpoint) in [(0, true), (4, false)] {
        let stored: Vec<(i32, i64)> = (from..from + 4).map(|t| (1, t)).collect();
        insert(&client, Path::Prepared, "k", "v", &stored)
            .await
            .expect("keyed rows");
        let stamps: Vec<(i32, i64)> = stored.iter().map(|(g, t)| (*g, DECEMBER + t)).collect();
        insert(&client, Path::Prepared, history, "floatvalue", &stamps)
            .await
            .expect("historian rows");
        if checkpoint {
            client
                .batch_execute("CHECKPOINT")
                .await
                .expect("checkpoint");
        }
    }

    for (n, path) in PATHS.into_iter().enumerate() {
        let n = n as i64;
        let what = |case: &str| format!("{path:?}: {case}");
        // A keyed table refuses a stored, a buffered and a repeated key, and stores nothing.
        let keyed = |rows: Vec<(i32, i64)>| {
            let client = &client;
            async move { insert(client, path, "k", "v", &rows).await }
        };
        assert_duplicate(
            keyed(vec![(9, 100 + n), (1, 1)]).await,
            (1, 1),
            &what("stored"),
        );
        assert_duplicate(keyed(vec![(1, 6)]).await, (1, 6), &what("buffered"));
        assert_duplicate(
            keyed(vec![(2, 200 + n), (2, 200 + n)]).await,
            (2, 200 + n),
            &what("repeated"),
        );
        assert_eq!(
            count(&client, "k").await,
            8 + n,
            "{}",
            what("nothing stored")
        );
        assert_eq!(
            keyed(vec![(3, 300 + n)]).await.expect("a new key"),
            1,
            "{}",
            what("new")
        );
        // A historian data table skips the same keys and stores the rest once.
        let fresh = DECEMBER + 1000 + n;
        let rows = [(1, DECEMBER + 1), (1, DECEMBER + 6), (5, fresh), (5, fresh)];
        let stored = insert(&client, path, history, "floatvalue", &rows).await;
        assert_eq!(
            stored.expect("duplicates skipped"),
            1,
            "{}",
            what("skipped")
        );
        assert_eq!(
            count(&client, history).await,
            9 + n,
            "{}",
            what("kept once")
        );

        // Inside a transaction that deleted rows, against the table as it would leave it.
        client.batch_execute("BEGIN").await.expect("begin");
        client
            .batch_execute("DELETE FROM k WHERE tagid = 1 AND t_stamp = 1")
            .await
            .expect("delete");
        assert_eq!(keyed(vec![(1, 1)]).await.expect("freed key"), 1);
        assert_duplicate(keyed(vec![(1, 6)]).await, (1, 6), &what("after a delete"));
        client.batch_execute("ROLLBACK").await.expect("rollback");
        client.batch_execute("BEGIN").await.expect("begin");
        client
            .batch_execute(&format!(
                "DELETE FROM {history} WHERE tagid = 1 AND t_stamp = {DECEMBER}"
            ))
            .await
            .expect("delete");
        let rows = [(1, DECEMBER), (1, DECEMBER + 2), (1, DECEMBER)];
        let stored = insert(&client, path, history, "floatvalue", &rows).await;
        assert_eq!(
            stored.expect("skipped after a delete"),
            1,
            "{}",
            what("view")
        );
        assert_eq!(count(&client, history).await, 9 + n);
        client.batch_execute("ROLLBACK").await.expect("rollback");
    }
    assert_eq!(count(&client, "k").await, 13);
    assert_eq!(count(&client, history).await, 13);
}
