//! pgbench: PostgreSQL's own benchmark client against deltagate and PostgreSQL 15, in the same
//! run, on the same machine.
//!
//! Both servers get pgbench's scale-1 tables (1 branch, 10 tellers, 100,000 accounts, an empty
//! history), created by this bench rather than by `pgbench -i`, which deltagate does not run
//! (`COPY ... (FREEZE ON)`, `VACUUM`, `ALTER TABLE ... ADD PRIMARY KEY`): the primary keys are
//! declared in `CREATE TABLE` and the rows come from `INSERT ... SELECT generate_series`, the
//! same statements on both servers. Then, for each query mode (`-M simple`, `-M prepared`),
//! pgbench runs its two built-in scripts for `PGBENCH_SECONDS` each (default 25) with
//! `PGBENCH_CLIENTS` clients (default 4), deltagate first, then PostgreSQL:
//!
//! - `tpcb-like` (the default script: three `UPDATE`s, a `SELECT` and an `INSERT` in one
//!   transaction), with `--max-tries PGBENCH_MAX_TRIES` (default 100) so a serialization
//!   failure (40001) is retried as an application would, and counted; a transaction still
//!   failing after that many tries is reported as failed;
//! - `select-only` (`-S`: one primary-key lookup per transaction).
//!
//! `-n` skips pgbench's own `VACUUM` and `TRUNCATE pgbench_history`, so the runs accumulate.
//! After each tpcb-like run the balances are checked on both servers: every transaction adds
//! the same delta to an account, a teller and the branch and records it in the history, so
//! sum(abalance) = sum(tbalance) = sum(bbalance) = sum(delta). A difference is a lost (or
//! doubled) update; the bench prints every run, then fails if any check disagreed. The history
//! rows a run added are printed next to the transactions pgbench counted. pgbench's summary
//! counts the retries of transactions that finished; its per-statement report (`-r`) also
//! counts those of transactions still retrying when the time ran out, printed as "with
//! unfinished": a large difference means clients spent the run losing races.
//!
//! Run: `benches/run pgbench` (`PGBENCH_SECONDS`, `PGBENCH_CLIENTS`, `PGBENCH_MAX_TRIES`,
//! `PGBENCH` for another pgbench binary; pgbench 15 or newer, for `--max-tries`).

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Deltagate, PASSWORD, Postgres, USER};
use tokio_postgres::{Client, NoTls};

const ACCOUNTS: i64 = 100_000;
const TELLERS: i64 = 10;

/// pgbench's scale-1 tables, with the primary keys `pgbench -i` adds afterwards.
const SCHEMA: &str = "
CREATE TABLE pgbench_branches (bid int NOT NULL PRIMARY KEY, bbalance int, filler char(88));
CREATE TABLE pgbench_tellers (tid int NOT NULL PRIMARY KEY, bid int, tbalance int, filler char(84));
CREATE TABLE pgbench_accounts (aid int NOT NULL PRIMARY KEY, bid int, abalance int, filler char(84));
CREATE TABLE pgbench_history (tid int, bid int, aid int, delta int, mtime timestamp, filler char(22));
INSERT INTO pgbench_branches (bid, bbalance) SELECT bid, 0 FROM generate_series(1, 1) AS bid;
INSERT INTO pgbench_tellers (tid, bid, tbalance)
  SELECT tid, (tid - 1) / 10 + 1, 0 FROM generate_series(1, 10) AS tid;
INSERT INTO pgbench_accounts (aid, bid, abalance, filler)
  SELECT aid, (aid - 1) / 100000 + 1, 0, '' FROM generate_series(1, 100000) AS aid;
";

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn client(conn: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(conn, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect {conn}: {e}"));
    tokio::spawn(connection);
    client
}

/// One server as pgbench reaches it.
struct Target {
    name: &'static str,
    port: u16,
    database: &'static str,
    conn: String,
}

/// What one pgbench run reported.
#[derive(Default)]
struct Run {
    tps: f64,
    processed: u64,
    failed: u64,
    serialization_failures: u64,
    retried: u64,
    retries: u64,
    latency_ms: f64,
    /// Lines of the per-statement report (`-r`): latency, failures, retries.
    statements: Vec<String>,
    /// Retries the per-statement report counts: also those of transactions still retrying
    /// when the time ran out, which the summary's `retries` leaves out (they never finished).
    statement_retries: u64,
    /// Error output other than notices, and how many notices there were.
    errors: Vec<String>,
    notices: usize,
    exit: Option<i32>,
}

/// The number after `prefix` on the line starting with it.
fn number_after(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix(prefix))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

fn parse_report(stdout: &str) -> Run {
    let count = |prefix: &str| number_after(stdout, prefix).unwrap_or(0.0) as u64;
    let mut run = Run {
        tps: number_after(stdout, "tps =").unwrap_or(0.0),
        processed: count("number of transactions actually processed:"),
        failed: count("number of failed transactions:"),
        serialization_failures: count("number of serialization failures:"),
        retried: count("number of transactions retried:"),
        retries: count("total number of retries:"),
        latency_ms: number_after(stdout, "latency average =").unwrap_or(0.0),
        statements: stdout
            .lines()
            .skip_while(|l| !l.starts_with("statement latencies"))
            .skip(1)
            .filter(|l| !l.trim_start().starts_with('\\'))
            .map(str::to_string)
            .collect(),
        ..Run::default()
    };
    run.statement_retries = run
        .statements
        .iter()
        .filter_map(|l| l.split_whitespace().nth(2)?.parse::<u64>().ok())
        .sum();
    run
}

/// Runs pgbench against `target` and waits for it (killing it if it overruns by a minute).
fn pgbench(target: &Target, mode: &str, script: &[&str], seconds: u64, clients: u32) -> Run {
    let program = std::env::var("PGBENCH").unwrap_or_else(|_| "/usr/bin/pgbench".into());
    let max_tries: u32 = env_or("PGBENCH_MAX_TRIES", 100);
    let mut command = Command::new(&program);
    command
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &target.port.to_string(),
            "-U",
            USER,
        ])
        .args(["-n", "-r", "--failures-detailed", "-M", mode])
        .args(["-c", &clients.to_string(), "-T", &seconds.to_string()])
        .arg(format!("--max-tries={max_tries}"))
        .args(script)
        .arg(target.database)
        .env("PGPASSWORD", PASSWORD)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program} (PGBENCH; pgbench 15 or newer): {e}"));
    let pid = child.id();
    let deadline = seconds + 60;
    let watchdog = std::thread::spawn(move || {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(deadline) {
            std::thread::sleep(Duration::from_millis(200));
            if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                return false;
            }
        }
        let _ = Command::new("kill").arg(pid.to_string()).status();
        true
    });
    let output = child.wait_with_output().expect("pgbench output");
    let killed = watchdog.join().unwrap_or(false);
    assert!(
        !killed,
        "pgbench against {} ran {deadline} s, past its -T {seconds}: killed",
        target.name
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let mut run = parse_report(&stdout);
    run.exit = output.status.code();
    run.notices = stderr.lines().filter(|l| l.contains("NOTICE:")).count();
    run.errors = stderr
        .lines()
        .filter(|l| !l.contains("NOTICE:"))
        .map(str::to_string)
        .collect();
    assert!(
        run.processed > 0,
        "pgbench against {} completed no transaction (exit {:?}):\n{stdout}\n{stderr}",
        target.name,
        run.exit
    );
    run
}

/// The four sums that must agree, and the history's row count.
async fn balances(conn: &str) -> ([i64; 4], i64) {
    let client = client(conn).await;
    let row = client
        .query_one(
            "SELECT (SELECT coalesce(sum(abalance), 0) FROM pgbench_accounts)::int8, \
                    (SELECT coalesce(sum(tbalance), 0) FROM pgbench_tellers)::int8, \
                    (SELECT coalesce(sum(bbalance), 0) FROM pgbench_branches)::int8, \
                    (SELECT coalesce(sum(delta), 0) FROM pgbench_history)::int8, \
                    (SELECT count(*) FROM pgbench_history)::int8",
            &[],
        )
        .await
        .expect("balances");
    ([row.get(0), row.get(1), row.get(2), row.get(3)], row.get(4))
}

async fn load(target: &Target) {
    let client = client(&target.conn).await;
    let started = Instant::now();
    client.batch_execute(SCHEMA).await.expect("pgbench tables");
    // Both servers start from their tables at rest: deltagate's rows in Delta files,
    // PostgreSQL's vacuumed and analyzed, as `pgbench -i` leaves them.
    let settle = if target.name == "deltagate" {
        "CHECKPOINT"
    } else {
        "VACUUM ANALYZE"
    };
    client.batch_execute(settle).await.expect(settle);
    let accounts: i64 = client
        .query_one("SELECT count(*) FROM pgbench_accounts", &[])
        .await
        .expect("count")
        .get(0);
    let tellers: i64 = client
        .query_one("SELECT count(*) FROM pgbench_tellers", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!((accounts, tellers), (ACCOUNTS, TELLERS), "{}", target.name);
    println!(
        "{}: scale 1 loaded in {:.1} s",
        target.name,
        started.elapsed().as_secs_f64()
    );
}

fn print_run(target: &Target, mode: &str, script: &str, run: &Run) {
    println!(
        "{:<9} {mode:<8} {script:<11} tps {:>9.1}  latency {:>8.2} ms  transactions {:>7}  \
         failed {:>4} (serialization {})  retried {:>5}  retries {:>6} \
         (with unfinished {})  exit {:?}",
        target.name,
        run.tps,
        run.latency_ms,
        run.processed,
        run.failed,
        run.serialization_failures,
        run.retried,
        run.retries,
        run.statement_retries,
        run.exit
    );
    if run.statement_retries > 0 || run.failed > 0 {
        for line in &run.statements {
            println!("            {line}");
        }
    }
    if run.notices > 0 {
        println!("            {} notices on stderr", run.notices);
    }
    for line in run.errors.iter().take(5) {
        println!("            stderr: {line}");
    }
}

#[tokio::main]
async fn main() {
    let seconds: u64 = env_or("PGBENCH_SECONDS", 25);
    let clients: u32 = env_or("PGBENCH_CLIENTS", 4);
    let postgres = Postgres::start();
    let deltagate = Deltagate::start();
    let targets = [
        Target {
            name: "deltagate",
            port: deltagate.port,
            database: USER,
            conn: deltagate.conn_string(),
        },
        Target {
            name: "postgres",
            port: postgres.port,
            database: "postgres",
            conn: postgres.conn_string(),
        },
    ];
    for target in &targets {
        load(target).await;
    }
    println!("pgbench: {clients} clients, {seconds} s per run, scale 1");

    let mut summary = Vec::new();
    let mut disagreements = Vec::new();
    let mut history = [0i64; 2];
    for mode in ["simple", "prepared"] {
        for (script, args) in [("tpcb-like", &[][..]), ("select-only", &["-S"][..])] {
            let mut tps = [0.0; 2];
            for (i, target) in targets.iter().enumerate() {
                let run = pgbench(target, mode, args, seconds, clients);
                print_run(target, mode, script, &run);
                tps[i] = run.tps;
                if script == "tpcb-like" {
                    let (sums, rows) = balances(&target.conn).await;
                    let added = rows - history[i];
                    history[i] = rows;
                    println!(
                        "            balances: accounts {} tellers {} branches {} history {} \
                         ({added} history rows added, {} transactions counted)",
                        sums[0], sums[1], sums[2], sums[3], run.processed
                    );
                    if sums.iter().any(|s| *s != sums[3]) {
                        disagreements.push(format!(
                            "{} after {mode} tpcb-like: sum(abalance) {}, sum(tbalance) {}, \
                             sum(bbalance) {}, sum(delta) {}",
                            target.name, sums[0], sums[1], sums[2], sums[3]
                        ));
                    }
                }
                summary.push((target.name, mode, script, run));
            }
            println!(
                "{mode} {script}: deltagate / PostgreSQL tps = {:.3}",
                tps[0] / tps[1]
            );
        }
    }

    println!("\nsummary ({clients} clients, {seconds} s per run):");
    println!(
        "| mode | script | deltagate tps | PostgreSQL tps | ratio | deltagate failed | \
         deltagate retried (retries; with unfinished) |"
    );
    println!("|---|---|---|---|---|---|---|");
    for pair in summary.chunks(2) {
        let [(_, mode, script, dg), (_, _, _, pg)] = pair else {
            continue;
        };
        println!(
            "| {mode} | {script} | {:.1} | {:.1} | {:.3} | {} | {} ({}; {}) |",
            dg.tps,
            pg.tps,
            dg.tps / pg.tps,
            dg.failed,
            dg.retried,
            dg.retries,
            dg.statement_retries
        );
    }
    assert!(
        disagreements.is_empty(),
        "BALANCES DISAGREE (lost or doubled updates):\n{}",
        disagreements.join("\n")
    );
    println!("balances agree on both servers after every tpcb-like run");
}
