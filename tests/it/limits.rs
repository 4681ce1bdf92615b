//! Deeply nested statements: each either gives its value or SQLSTATE 54001, over both
//! protocols, and the server, the session and other sessions carry on.

use tokio_postgres::{Client, SimpleQueryMessage};

use crate::harness::{TestServer, sqlstate};

/// Sizes tried for a shape besides its small one: they give the value or 54001. Most shapes
/// nest one or two levels per unit, so 1,990 is at the limit of 4,000 levels or just under it.
const LARGE: &[usize] = &[1_990, 10_000];
/// For the shapes PostgreSQL runs at any length: long `OR` chains and `IN` lists (a 100,000
/// term `OR` chain is 1.3 MB of SQL).
const LONG: &[usize] = &[10_000, 100_000];
/// Largest size tried over the extended protocol, which plans a statement twice (Parse and
/// Execute): the debug build takes its time over a 100,000 term chain.
const EXTENDED_MAX: usize = 10_000;

/// A statement shape of `n` terms or levels and the value it gives (`None`: no rows).
struct Shape {
    name: &'static str,
    /// A size that must give the value.
    small: usize,
    /// Sizes that give the value or 54001.
    large: &'static [usize],
    sql: fn(usize) -> String,
    value: fn(usize) -> Option<String>,
}

fn repeat(part: &str, n: usize) -> String {
    part.repeat(n)
}

fn joined(n: usize, term: impl Fn(usize) -> String, separator: &str) -> String {
    (0..n).map(term).collect::<Vec<_>>().join(separator)
}

/// Queries over `t` (rows 1, 2, 3), in the shapes of issue 22.
fn query_shapes() -> Vec<Shape> {
    vec![
        Shape {
            name: "sum",
            small: 60,
            large: LARGE,
            sql: |n| format!("SELECT {}", joined(n, |_| "1".into(), "+")),
            value: |n| Some(n.to_string()),
        },
        Shape {
            name: "or",
            small: 60,
            large: LONG,
            sql: |n| {
                let or = joined(n, |i| format!("a = {i}"), " OR ");
                format!("SELECT count(*) FROM t WHERE {or}")
            },
            value: |_| Some("3".into()),
        },
        Shape {
            name: "and",
            small: 60,
            large: LARGE,
            sql: |n| {
                let and = joined(n, |i| format!("a <> {}", i + 4), " AND ");
                format!("SELECT count(*) FROM t WHERE {and}")
            },
            value: |_| Some("3".into()),
        },
        Shape {
            name: "in",
            small: 60,
            large: LONG,
            sql: |n| {
                let list = joined(n, |i| i.to_string(), ",");
                format!("SELECT count(*) FROM t WHERE a IN ({list})")
            },
            value: |_| Some("3".into()),
        },
        Shape {
            name: "parentheses",
            small: 60,
            large: LARGE,
            sql: |n| format!("SELECT {}1{}", repeat("(", n), repeat(")", n)),
            value: |_| Some("1".into()),
        },
        Shape {
            name: "case",
            small: 60,
            large: LARGE,
            sql: |n| {
                format!(
                    "SELECT {}1{}",
                    repeat("CASE WHEN true THEN ", n),
                    repeat(" END", n)
                )
            },
            value: |_| Some("1".into()),
        },
        Shape {
            name: "not",
            small: 60,
            large: LARGE,
            sql: |n| {
                format!(
                    "SELECT count(*) FROM t WHERE {}(a = 2)",
                    repeat("NOT ", 2 * n)
                )
            },
            value: |_| Some("1".into()),
        },
        Shape {
            name: "subquery",
            small: 8,
            large: LARGE,
            sql: |n| format!("SELECT {}1{}", repeat("(SELECT ", n), repeat(")", n)),
            value: |_| Some("1".into()),
        },
        Shape {
            name: "concat",
            small: 60,
            large: LARGE,
            sql: |n| format!("SELECT length({})", joined(n, |_| "'a'".into(), "||")),
            value: |n| Some(n.to_string()),
        },
        Shape {
            name: "cast",
            small: 60,
            large: LARGE,
            sql: |n| format!("SELECT 7{}", repeat("::bigint", n)),
            value: |_| Some("7".into()),
        },
        Shape {
            name: "union",
            small: 60,
            large: LARGE,
            sql: |n| {
                let union = joined(n, |_| "SELECT a FROM t".into(), " UNION ALL ");
                format!("SELECT count(*) FROM ({union}) u")
            },
            value: |n| Some((3 * n).to_string()),
        },
    ]
}

/// Writes: to `w` (one row, `a` = 1), which each leaves so, and inserts of 1 into `v`.
fn write_shapes() -> Vec<Shape> {
    vec![
        Shape {
            name: "update where or",
            small: 60,
            large: LARGE,
            sql: |n| {
                let or = joined(n, |i| format!("a = {}", i + 1), " OR ");
                format!("UPDATE w SET a = a WHERE {or}")
            },
            value: |_| None,
        },
        Shape {
            name: "delete where or",
            small: 60,
            large: LARGE,
            sql: |n| {
                let or = joined(n, |i| format!("a = {}", i + 2), " OR ");
                format!("DELETE FROM w WHERE {or}")
            },
            value: |_| None,
        },
        Shape {
            name: "delete where sum",
            small: 60,
            large: LARGE,
            sql: |n| format!("DELETE FROM w WHERE a = 0{}", repeat("+1", n)),
            value: |_| None,
        },
        Shape {
            name: "insert values sum",
            small: 60,
            large: LARGE,
            sql: |n| format!("INSERT INTO v VALUES (1{})", repeat("+0", n)),
            value: |_| None,
        },
        Shape {
            name: "insert select where sum",
            small: 60,
            large: LARGE,
            sql: |n| {
                format!(
                    "INSERT INTO v SELECT a FROM t WHERE a = 1{}",
                    repeat("+0", n)
                )
            },
            value: |_| None,
        },
        Shape {
            name: "insert values parentheses",
            small: 60,
            large: LARGE,
            sql: |n| {
                format!(
                    "INSERT INTO v VALUES ({}1{})",
                    repeat("(", n),
                    repeat(")", n)
                )
            },
            value: |_| None,
        },
    ]
}

/// The first column of the first row, as text, or the SQLSTATE.
async fn simple(client: &Client, sql: &str) -> Result<Option<String>, String> {
    let messages = client.simple_query(sql).await.map_err(|e| sqlstate(&e))?;
    Ok(messages.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
        _ => None,
    }))
}

/// As [`simple`], over the extended protocol (Parse, Describe, Bind, Execute).
async fn extended(client: &Client, sql: &str) -> Result<Option<String>, String> {
    let rows = client.query(sql, &[]).await.map_err(|e| sqlstate(&e))?;
    Ok(rows.first().map(|row| {
        row.try_get::<_, i64>(0)
            .map(|v| v.to_string())
            .or_else(|_| row.try_get::<_, i32>(0).map(|v| v.to_string()))
            .or_else(|_| row.try_get::<_, String>(0))
            .unwrap_or_else(|e| panic!("unexpected column type: {e}"))
    }))
}

/// Whether the server process is still running (an aborted one stays a zombie until the
/// harness reaps it, so its state is read rather than signalled).
fn running(server: &TestServer) -> bool {
    std::fs::read_to_string(format!("/proc/{}/stat", server.pid()))
        .ok()
        .and_then(|stat| {
            let state = stat.rsplit_once(") ")?.1.chars().next()?;
            Some(state != 'Z' && state != 'X')
        })
        .unwrap_or(false)
}

/// Runs every shape at every size over one protocol and checks what must hold after each.
async fn run_shapes(server: &TestServer, shapes: &[Shape], over_extended: bool) {
    let bystander = server.client().await;
    let client = server.client().await;
    for shape in shapes {
        let large = shape.large.iter().copied();
        let large = large.filter(|n| !over_extended || *n <= EXTENDED_MAX);
        for n in std::iter::once(shape.small).chain(large) {
            let sql = (shape.sql)(n);
            let result = if over_extended {
                extended(&client, &sql).await
            } else {
                simple(&client, &sql).await
            };
            let what = format!(
                "{} of {n} ({})",
                shape.name,
                if over_extended { "extended" } else { "simple" }
            );
            assert!(
                running(server),
                "{what} stopped the server:\n{}",
                server.log_text()
            );
            match result {
                Ok(value) => assert_eq!(value, (shape.value)(n), "{what}"),
                Err(code) if n > shape.small => assert_eq!(code, "54001", "{what}"),
                Err(code) => panic!("{what} failed with {code}"),
            }
            assert_eq!(
                simple(&client, "SELECT 1").await,
                Ok(Some("1".into())),
                "{what}"
            );
        }
    }
    assert_eq!(simple(&bystander, "SELECT 2").await, Ok(Some("2".into())));
    let fresh = server.client().await;
    assert_eq!(simple(&fresh, "SELECT 3").await, Ok(Some("3".into())));
}

async fn setup(server: &TestServer) {
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE t (a bigint); INSERT INTO t VALUES (1), (2), (3);
             CREATE TABLE w (a bigint); INSERT INTO w VALUES (1);
             CREATE TABLE v (a bigint)",
        )
        .await
        .expect("setup");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_deep_queries_simple_protocol() {
    let server = TestServer::start();
    setup(&server).await;
    run_shapes(&server, &query_shapes(), false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_deep_queries_extended_protocol() {
    let server = TestServer::start();
    setup(&server).await;
    run_shapes(&server, &query_shapes(), true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_deep_writes_both_protocols() {
    let server = TestServer::start();
    setup(&server).await;
    run_shapes(&server, &write_shapes(), false).await;
    run_shapes(&server, &write_shapes(), true).await;
    let client = server.client().await;
    assert_eq!(
        simple(&client, "SELECT a FROM w").await,
        Ok(Some("1".into()))
    );
    assert_eq!(
        simple(&client, "SELECT count(*) FROM v WHERE a <> 1").await,
        Ok(Some("0".into()))
    );
    let inserted = simple(&client, "SELECT count(*) FROM v").await;
    assert!(
        matches!(&inserted, Ok(Some(n)) if n.parse::<usize>().is_ok_and(|n| n >= 6)),
        "the small inserts, three per protocol: {inserted:?}"
    );
}

/// An update by subquery and an upsert rewrite the rows they change by their keys, a value per
/// row in the predicate that chooses them (delta-rs would walk such a list recursively, a stack
/// frame per value, if it were handed it): 50,000 rows at once work, over both protocols.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_rows_rewritten_by_key() {
    const ROWS: usize = 50_000;
    let server = TestServer::start();
    let client = server.client().await;
    client
        .batch_execute(&format!(
            "CREATE TABLE k (id bigint PRIMARY KEY, v bigint);
             INSERT INTO k SELECT g, 0 FROM generate_series(1, {ROWS}) g"
        ))
        .await
        .expect("setup");
    let statements = [
        "UPDATE k SET v = v + 1 WHERE id IN (SELECT id FROM k WHERE v >= 0)".to_string(),
        format!(
            "INSERT INTO k SELECT g, 1 FROM generate_series(1, {ROWS}) g \
             ON CONFLICT (id) DO UPDATE SET v = k.v + excluded.v"
        ),
    ];
    for sql in &statements {
        for over_extended in [false, true] {
            let result = if over_extended {
                extended(&client, sql).await
            } else {
                simple(&client, sql).await
            };
            assert_eq!(result, Ok(None), "{sql}");
            assert!(running(&server), "{sql}:\n{}", server.log_text());
        }
    }
    assert_eq!(
        simple(&client, "SELECT count(*) FROM k").await,
        Ok(Some(ROWS.to_string()))
    );
    assert_eq!(
        simple(&client, "SELECT count(*) FROM k WHERE v = 4").await,
        Ok(Some(ROWS.to_string())),
        "every row changed by each of the four statements"
    );
}
