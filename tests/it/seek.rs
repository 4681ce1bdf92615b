//! Key seeks: Ignition's seed query and its relatives give exactly the rows a planned scan
//! gives (`SET enable_indexscan = off`), whether the rows sit in Delta files written in key
//! order, in files rewritten by UPDATE, in the write buffer, or in the session's own
//! transaction; `pg_stat_user_tables.idx_scan` counts the queries a seek answered.

use tokio_postgres::Client;
use tokio_postgres::types::ToSql;

use crate::harness::{TestServer, first_column};

/// Rows of a query in text form, in order.
async fn text_rows(client: &Client, sql: &str) -> Vec<Vec<Option<String>>> {
    client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_string))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

/// Rows of a prepared query with parameters, decoded from binary, as text.
async fn bound_rows(
    client: &Client,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Vec<Vec<String>> {
    client
        .query(sql, params)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|row| {
            vec![
                row.get::<_, i32>("tagid").to_string(),
                format!("{:?}", row.get::<_, Option<i64>>("intvalue")),
                format!("{:?}", row.get::<_, Option<f64>>("floatvalue")),
                format!("{:?}", row.get::<_, Option<String>>("stringvalue")),
                format!(
                    "{:?}",
                    row.get::<_, Option<chrono::NaiveDateTime>>("datevalue")
                ),
                row.get::<_, i64>("t_stamp").to_string(),
                format!("{:?}", row.get::<_, Option<i32>>("dataintegrity")),
            ]
        })
        .collect()
}

async fn idx_scans(client: &Client, table: &str) -> i64 {
    first_column::<i64>(
        client,
        &format!("SELECT idx_scan FROM pg_stat_user_tables WHERE relname = '{table}'"),
    )
    .await[0]
}

/// A small deterministic generator, so a failure names a reproducible case.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

/// The columns as Ignition writes them in its queries, and plainly.
const COLUMNS: &str =
    r#""tagid","intvalue","floatvalue","stringvalue","datevalue","t_stamp","dataintegrity""#;
const NAMES: &str = "tagid, intvalue, floatvalue, stringvalue, datevalue, t_stamp, dataintegrity";
const BASE: i64 = 1_764_547_200_000;
const ROWS: i64 = 3_000;

/// Rows in scrambled key order, in several flushes (files with overlapping key ranges), one
/// file rewritten by UPDATE and thinned by DELETE, and the last rows left in the buffer.
async fn load(client: &Client, table: &str) {
    client
        .batch_execute(&format!(
            "CREATE TABLE {table} (tagid int4, intvalue int8, floatvalue float8, \
             stringvalue varchar(255), datevalue timestamp, dataintegrity int4, \
             t_stamp int8, PRIMARY KEY (tagid, t_stamp))"
        ))
        .await
        .expect("create");
    // Every t_stamp is distinct, so ORDER BY t_stamp has one right answer.
    let mut values = Vec::new();
    for i in 0..ROWS {
        let k = (i * 7_919) % ROWS;
        let tag = k % 20 + 1;
        let t_stamp = BASE + k * 1_000 + tag;
        values.push(format!(
            "({tag}, {i}, {}.5, 's{k}', '2026-12-01 00:00:00'::timestamp + interval '{k} seconds', {t_stamp}, 192)",
            k % 97
        ));
    }
    for chunk in values.chunks(250) {
        client
            .batch_execute(&format!(
                "INSERT INTO {table} ({NAMES}) VALUES {}",
                chunk.join(",")
            ))
            .await
            .expect("insert");
        // Let the flusher write a file now and then (every 400 rows, see the server flags).
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    client
        .batch_execute(&format!(
            "UPDATE {table} SET floatvalue = floatvalue + 1000 WHERE tagid = 3 AND t_stamp % 3 = 0; \
             DELETE FROM {table} WHERE tagid = 4 AND t_stamp % 5 = 0"
        ))
        .await
        .expect("update and delete");
    client
        .batch_execute(&format!(
            "INSERT INTO {table} ({NAMES}) VALUES \
             (5, NULL, NULL, NULL, NULL, {}, NULL), (6, 1, 2.5, 'late', NULL, {}, 192)",
            BASE + ROWS * 1_000 + 5,
            BASE + 7 * 1_000 + 99
        ))
        .await
        .expect("buffered rows");
}

/// A random seek-shaped query in SQL text (with literals) and its prepared twin.
fn random_query(rng: &mut Lcg, table: &str) -> (String, String, Vec<i32>, i64) {
    let tags: Vec<i32> = (0..=rng.below(4)).map(|_| rng.below(23) as i32).collect();
    let bound = BASE - 5_000 + rng.below((ROWS as u64 + 10) * 1_000) as i64;
    let op = ["<", "<=", ">", ">=", "="][rng.below(5) as usize];
    let direction = ["DESC", "ASC", ""][rng.below(3) as usize];
    let limit = rng.below(6);
    let or_chain = rng.below(2) == 1;
    let tag_list = |items: Vec<String>| match or_chain {
        false => format!(r#""tagid" IN ({})"#, items.join(", ")),
        true => format!(
            "({})",
            items
                .iter()
                .map(|t| format!(r#""tagid"={t}"#))
                .collect::<Vec<_>>()
                .join(" OR ")
        ),
    };
    let literal = format!(
        r#"SELECT {COLUMNS} FROM {table} WHERE {} and "t_stamp"{op}{bound} ORDER BY "t_stamp" {direction} LIMIT {limit}"#,
        tag_list(tags.iter().map(i32::to_string).collect())
    );
    let prepared = format!(
        r#"SELECT {COLUMNS} FROM {table} WHERE {} and "t_stamp"{op}${} ORDER BY "t_stamp" {direction} LIMIT {limit}"#,
        tag_list((1..=tags.len()).map(|i| format!("${i}")).collect()),
        tags.len() + 1
    );
    (literal, prepared, tags, bound)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeks_answer_exactly_as_scans_do() {
    let server = TestServer::start_with(&["--flush-rows", "400", "--flush-age", "1h"]);
    let seeking = server.client().await;
    let scanning = server.client().await;
    scanning
        .batch_execute("SET enable_indexscan = off")
        .await
        .expect("set");
    // A historian month (a partition of the driver's Delta table) and an ordinary table.
    for table in ["sqlt_data_1_2026_12", "readings"] {
        load(&seeking, table).await;
        let before = idx_scans(&seeking, table).await;
        let mut rng = Lcg(7);
        let mut answered = 0;
        let mut nonempty = 0;
        for case in 0..150 {
            let (literal, prepared, tags, bound) = random_query(&mut rng, table);
            let expected = text_rows(&scanning, &literal).await;
            let got = text_rows(&seeking, &literal).await;
            assert_eq!(got, expected, "case {case}: {literal}");
            nonempty += usize::from(!expected.is_empty());
            let mut params: Vec<&(dyn ToSql + Sync)> =
                tags.iter().map(|t| t as &(dyn ToSql + Sync)).collect();
            params.push(&bound);
            assert_eq!(
                bound_rows(&seeking, &prepared, &params).await,
                bound_rows(&scanning, &prepared, &params).await,
                "case {case}: {prepared} with {tags:?}, {bound}"
            );
            answered += 2;
        }
        assert!(nonempty > 60, "too few cases found rows: {nonempty}");
        assert_eq!(idx_scans(&seeking, table).await - before, answered);

        // Ignition's seed query: the buffered row past all files is the answer for tag 5, the
        // rewritten file's rows for tag 3.
        let seed = format!(
            r#"SELECT {COLUMNS} FROM {table} WHERE "tagid" IN ($1) and "t_stamp"<$2 ORDER BY "t_stamp" DESC LIMIT 1"#
        );
        let late = BASE + ROWS * 1_000 + 5;
        let rows = seeking
            .query(&seed, &[&5i32, &(late + 1)])
            .await
            .expect("seed");
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].get::<_, i64>("t_stamp"), late);
        assert_eq!(rows[0].get::<_, Option<f64>>("floatvalue"), None);
        let rows = seeking
            .query(&seed, &[&3i32, &(BASE + 10_000_000)])
            .await
            .expect("seed");
        let t_stamp: i64 = rows[0].get("t_stamp");
        let float: f64 = rows[0].get("floatvalue");
        assert_eq!(
            (t_stamp - BASE) % 3 == 0,
            float >= 1000.0,
            "{t_stamp} {float}"
        );

        // The session's own uncommitted rows are seen (the planner answers while they are
        // pending), and gone after ROLLBACK.
        seeking.batch_execute("BEGIN").await.expect("begin");
        seeking
            .execute(
                &format!("INSERT INTO {table} (tagid, t_stamp, intvalue) VALUES (5, $1, 42)"),
                &[&(late + 1)],
            )
            .await
            .expect("insert in transaction");
        let rows = seeking
            .query(&seed, &[&5i32, &(late + 10)])
            .await
            .expect("seed");
        assert_eq!(rows[0].get::<_, Option<i64>>("intvalue"), Some(42));
        seeking.batch_execute("ROLLBACK").await.expect("rollback");
        let rows = seeking
            .query(&seed, &[&5i32, &(late + 10)])
            .await
            .expect("seed");
        assert_eq!(rows[0].get::<_, i64>("t_stamp"), late);
    }

    // Shapes that look alike but mean something else go to the planner and still agree: an
    // output column named like the key, a range on the wrong column, OFFSET.
    for sql in [
        "SELECT tagid AS t_stamp, t_stamp AS ts FROM readings WHERE tagid IN (1, 2) \
         ORDER BY t_stamp DESC LIMIT 3",
        "SELECT tagid, t_stamp FROM readings WHERE tagid IN (1, 2) AND intvalue < 100 \
         ORDER BY t_stamp DESC LIMIT 3",
        "SELECT tagid, t_stamp FROM readings WHERE tagid = 1 ORDER BY t_stamp DESC LIMIT 2 OFFSET 1",
        "SELECT r.tagid, r.t_stamp FROM readings r WHERE r.tagid = 2 AND r.t_stamp <= 1764547300000 \
         ORDER BY r.t_stamp DESC LIMIT 2",
    ] {
        assert_eq!(
            text_rows(&seeking, sql).await,
            text_rows(&scanning, sql).await,
            "{sql}"
        );
    }
}

/// A seek that would read more than 128k rows leaves the query to the planner (which scans in
/// parallel and streams), with the same answer; a small LIMIT over a few pages is sought.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_key_ranges_are_left_to_the_planner() {
    let mut server = TestServer::start_with(&["--flush-rows", "1000", "--flush-age", "1h"]);
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE wide (tagid int4, t_stamp int8, v float8, PRIMARY KEY (tagid, t_stamp)); \
             INSERT INTO wide SELECT g % 4, g, g * 0.5 FROM generate_series(1, 200000) AS s(g)",
        )
        .await
        .expect("load");
    // A clean restart flushes everything to Delta: the cap counts rows read from files.
    server.restart();
    let client = server.client().await;
    let large =
        "SELECT t_stamp FROM wide WHERE tagid IN (1, 2, 3) ORDER BY t_stamp DESC LIMIT 140000";
    // With a lower bound on t_stamp only the last page of each tag's run is read.
    let small = "SELECT t_stamp FROM wide WHERE tagid IN (1, 2, 3) AND t_stamp > 190000 \
                 ORDER BY t_stamp DESC LIMIT 3";
    let before = idx_scans(&client, "wide").await;
    let rows: Vec<i64> = first_column(&client, large).await;
    assert_eq!(rows.len(), 140_000);
    assert_eq!(rows[0], 199_999);
    assert_eq!(
        rows[139_999],
        199_999 - (139_999 / 3 * 4 + [0, 1, 2][139_999 % 3])
    );
    assert_eq!(
        idx_scans(&client, "wide").await,
        before,
        "a large range was sought"
    );
    assert_eq!(
        first_column::<i64>(&client, small).await,
        vec![199_999, 199_998, 199_997]
    );
    assert_eq!(idx_scans(&client, "wide").await, before + 1);
}
