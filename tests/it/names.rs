//! Names never become paths unescaped: every schema and table name, whatever its bytes, is its
//! own folder strictly inside the warehouse, and VACUUM deletes nothing but the table's own
//! old files.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::harness::{TestServer, first_column};
use crate::objectstore::S3Server;

/// Names an attacker or an unlucky user might choose.
const HOSTILE: &[&str] = &[
    "..",
    ".",
    "../../x2",
    "../../../../escape",
    "../../tmp/evil",
    "a/b",
    "a%2Fb",
    "%2e%2e",
    "a\\b",
    "ta\tb",
    "tab",
    "TAB",
    ".deltagate",
    "_delta_log",
    "x?y#z",
    "c:",
    "name with spaces",
    "Ölmenge_℃_🌡",
    "!21",
    "a!b",
    "\u{1}\u{7f}",
    "-",
];

/// Every file below `dir`.
fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Creates a schema and two tables under every hostile name, then checks each is its own
/// table, before and after a restart reads the folders back.
async fn create_hostile_tables(server: &mut TestServer) {
    let client = server.client().await;
    for (i, name) in HOSTILE.iter().enumerate() {
        let q = quote(name);
        client
            .batch_execute(&format!(
                "CREATE SCHEMA {q};
                 CREATE TABLE {q}.{q} (id int8 PRIMARY KEY, n text);
                 CREATE TABLE public.{q} (id int8 PRIMARY KEY, n text);
                 INSERT INTO {q}.{q} VALUES ({i}, 'in own schema');
                 INSERT INTO public.{q} VALUES ({i}, 'in public')"
            ))
            .await
            .unwrap_or_else(|e| panic!("{name:?}: {:?}", e.as_db_error()));
    }
    client
        .batch_execute("CHECKPOINT")
        .await
        .expect("checkpoint");
    for restarted in [false, true] {
        if restarted {
            server.restart();
        }
        let client = server.client().await;
        for (i, name) in HOSTILE.iter().enumerate() {
            let q = quote(name);
            let rows: Vec<String> = first_column(
                &client,
                &format!(
                    "SELECT n || id FROM {q}.{q} UNION ALL SELECT n || id FROM public.{q} ORDER BY 1"
                ),
            )
            .await;
            assert_eq!(
                rows,
                vec![format!("in own schema{i}"), format!("in public{i}")],
                "{name:?}, restarted: {restarted}"
            );
        }
        let schemas: BTreeSet<String> =
            first_column(&client, "SELECT nspname::text FROM pg_namespace")
                .await
                .into_iter()
                .collect();
        for name in HOSTILE {
            assert!(
                schemas.contains(*name),
                "schema {name:?}, restarted: {restarted}"
            );
        }
    }
}

#[tokio::test]
async fn hostile_names_stay_inside_the_warehouse_and_apart() {
    let mut server = TestServer::start();
    let root = server
        .warehouse()
        .parent()
        .expect("the test's directory")
        .to_path_buf();
    let before: BTreeSet<PathBuf> = files_below(&root).into_iter().collect();
    create_hostile_tables(&mut server).await;
    // Nothing was written outside the warehouse.
    let outside: Vec<PathBuf> = files_below(&root)
        .into_iter()
        .filter(|p| !p.starts_with(server.warehouse()) && !before.contains(p))
        .collect();
    assert!(
        outside.is_empty(),
        "written outside the warehouse: {outside:?}"
    );
    for escaped in ["x2", "escape", "tmp/evil", "evil"] {
        assert!(!root.join(escaped).exists() && !root.join("..").join(escaped).exists());
    }
}

#[tokio::test]
async fn hostile_names_stay_inside_an_s3_warehouse_and_apart() {
    let s3 = S3Server::start("names");
    let mut server = s3.deltagate("lake/plant", &[]);
    create_hostile_tables(&mut server).await;
    let keys = s3.keys();
    assert!(keys.len() > HOSTILE.len() * 3, "{keys:?}");
    let outside: Vec<&String> = keys
        .iter()
        .filter(|k| !k.starts_with("lake/plant/"))
        .collect();
    assert!(
        outside.is_empty(),
        "written outside the warehouse: {outside:?}"
    );
    // Every key lies in the folders of one schema and one table.
    for key in &keys {
        let parts: Vec<&str> = key.split('/').collect();
        assert!(
            parts.len() >= 4
                && !parts
                    .iter()
                    .any(|p| p.is_empty() || *p == ".." || *p == "."),
            "{key}"
        );
    }
}

#[tokio::test]
async fn vacuum_deletes_only_the_tables_own_old_files() {
    let server = TestServer::start();
    let root = server
        .warehouse()
        .parent()
        .expect("the test's directory")
        .to_path_buf();
    // A file the old mapping let `"../../victim"`'s VACUUM FULL reach, one in the table's own
    // folder that its log never named, and one of another table.
    let victim = root.join("victim");
    std::fs::create_dir_all(&victim).expect("victim dir");
    std::fs::write(victim.join("precious.txt"), "keep me").expect("victim");
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE \"../../victim\" (id int8 PRIMARY KEY, v text);
             CREATE TABLE neighbour (id int8 PRIMARY KEY);
             INSERT INTO \"../../victim\" VALUES (1, 'a'), (2, 'b');
             INSERT INTO neighbour VALUES (1)",
        )
        .await
        .expect("load");
    client
        .batch_execute("CHECKPOINT")
        .await
        .expect("checkpoint");
    client
        .batch_execute(
            "UPDATE \"../../victim\" SET v = 'c' WHERE id = 1;
             DELETE FROM \"../../victim\" WHERE id = 2",
        )
        .await
        .expect("change");
    let table_dir = server.warehouse().join("public").join("!2E.!2F..!2Fvictim");
    assert!(table_dir.join("_delta_log").is_dir(), "{table_dir:?}");
    let stray = table_dir.join("not-in-the-log.parquet");
    std::fs::write(&stray, "someone else's file").expect("stray");
    let parquet = |dir: &Path| {
        files_below(dir)
            .into_iter()
            .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
            .count()
    };
    let before = parquet(&table_dir);
    let neighbour_before = files_below(&server.warehouse().join("public/neighbour")).len();
    client.batch_execute("VACUUM FULL").await.expect("vacuum");
    // The rewritten files went; nothing else did.
    assert!(parquet(&table_dir) < before);
    assert!(stray.exists(), "VACUUM deleted a file its log never named");
    assert_eq!(
        std::fs::read_to_string(victim.join("precious.txt")).expect("victim"),
        "keep me"
    );
    assert_eq!(
        files_below(&server.warehouse().join("public/neighbour")).len(),
        neighbour_before
    );
    let rows: Vec<String> = first_column(&client, "SELECT v FROM \"../../victim\"").await;
    assert_eq!(rows, vec!["c"]);
}
