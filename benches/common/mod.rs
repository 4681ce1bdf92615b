//! Benchmark fixtures: a throwaway PostgreSQL 15 cluster and a deltagate server, side by side
//! on this machine, reached over TCP with the same client.

#![allow(dead_code)] // each benchmark uses part of the fixtures

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const USER: &str = "bench";
pub const PASSWORD: &str = "bench-password";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn wait_for(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} did not start on port {port}");
}

/// PostgreSQL 15 from Debian's `postgresql` package, in a temporary cluster.
pub struct Postgres {
    pub port: u16,
    data: PathBuf,
    bin: PathBuf,
    _dir: tempfile::TempDir,
}

impl Postgres {
    pub fn start() -> Postgres {
        let bin = PathBuf::from(
            std::env::var("PG_BIN").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into()),
        );
        assert!(
            bin.join("initdb").exists(),
            "PostgreSQL 15 not found in {} (apt-get install postgresql-15)",
            bin.display()
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("pgdata");
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, PASSWORD).expect("password file");
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                USER,
                "--auth=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .stdout(Stdio::null());
        // initdb refuses to run as root; run it as the owner of the directory when we are root.
        let as_root = unsafe_is_root();
        if as_root {
            let _ = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status();
            let status = Command::new("su")
                .args(["postgres", "-c"])
                .arg(format!(
                    "{} -D {} -U {USER} --auth=scram-sha-256 -E UTF8 --locale=C --pwfile={} >/dev/null",
                    bin.join("initdb").display(),
                    data.display(),
                    pwfile.display()
                ))
                .status()
                .expect("initdb");
            assert!(status.success(), "initdb failed");
        } else {
            assert!(initdb.status().expect("initdb").success(), "initdb failed");
        }
        let port = free_port();
        let opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1",
            dir.path().display()
        );
        let log = dir.path().join("pg.log");
        let start = format!(
            "{} -D {} -o '{opts}' -l {} -w start >/dev/null",
            bin.join("pg_ctl").display(),
            data.display(),
            log.display()
        );
        let status = if as_root {
            Command::new("su").args(["postgres", "-c", &start]).status()
        } else {
            Command::new("sh").args(["-c", &start]).status()
        }
        .expect("pg_ctl");
        assert!(
            status.success(),
            "pg_ctl start failed: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        wait_for(port, "PostgreSQL");
        Postgres {
            port,
            data,
            bin,
            _dir: dir,
        }
    }

    pub fn conn_string(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user={USER} password={PASSWORD} dbname=postgres",
            self.port
        )
    }

    pub fn jdbc_url(&self) -> String {
        format!("jdbc:postgresql://127.0.0.1:{}/postgres", self.port)
    }
}

fn unsafe_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0"))
        .unwrap_or(false)
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let stop = format!(
            "{} -D {} -m fast stop >/dev/null",
            self.bin.join("pg_ctl").display(),
            self.data.display()
        );
        if unsafe_is_root() {
            let _ = Command::new("su").args(["postgres", "-c", &stop]).status();
        } else {
            let _ = Command::new("sh").args(["-c", &stop]).status();
        }
    }
}

/// The deltagate binary of this build, on a temporary warehouse.
pub struct Deltagate {
    pub port: u16,
    pub warehouse: PathBuf,
    settings: Vec<(String, String)>,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Deltagate {
    pub fn start() -> Deltagate {
        Deltagate::start_with(&[])
    }

    /// Starts the server with these settings (environment variables, e.g.
    /// `DELTAGATE_FLUSH_AGE`), kept for restarts.
    pub fn start_with(settings: &[(&str, &str)]) -> Deltagate {
        let dir = tempfile::tempdir().expect("tempdir");
        let warehouse = dir.path().join("warehouse");
        let port = free_port();
        let settings: Vec<(String, String)> = settings
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let child = Deltagate::spawn(port, &warehouse, &settings);
        Deltagate {
            port,
            warehouse,
            settings,
            child,
            _dir: dir,
        }
    }

    fn spawn(port: u16, warehouse: &std::path::Path, settings: &[(String, String)]) -> Child {
        let child = Command::new(env!("CARGO_BIN_EXE_deltagate"))
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--warehouse")
            .arg(warehouse)
            .args(["--user", USER, "--database", USER])
            .env("DELTAGATE_PASSWORD", PASSWORD)
            .env("DELTAGATE_LOG", "warn")
            .envs(settings.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start deltagate");
        wait_for(port, "deltagate");
        child
    }

    /// Stops the server cleanly (everything flushed to Delta) and starts it again.
    #[allow(dead_code)]
    pub fn restart(&mut self) {
        self.stop();
        self.child = Deltagate::spawn(self.port, &self.warehouse, &self.settings);
    }

    /// Peak resident memory so far (VmHWM), in bytes.
    pub fn peak_rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    }

    /// Stops the server with SIGTERM (which flushes every buffer to Delta) and waits.
    pub fn stop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }

    pub fn conn_string(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user={USER} password={PASSWORD} dbname={USER}",
            self.port
        )
    }

    pub fn jdbc_url(&self) -> String {
        format!("jdbc:postgresql://127.0.0.1:{}/{USER}", self.port)
    }
}

impl Drop for Deltagate {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Median of a set of durations.
pub fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Sends `data` (CSV rows of Ignition's data table columns) to `table` with COPY FROM STDIN.
#[allow(dead_code)]
pub async fn copy_csv(client: &tokio_postgres::Client, table: &str, data: &[u8]) {
    use futures::SinkExt;
    let sink = client
        .copy_in(&format!(
            "COPY {table} (tagid, intvalue, floatvalue, stringvalue, datevalue, dataintegrity, t_stamp) \
             FROM STDIN WITH (FORMAT csv)"
        ))
        .await
        .expect("copy");
    futures::pin_mut!(sink);
    for chunk in data.chunks(1 << 20) {
        sink.send(bytes::Bytes::copy_from_slice(chunk))
            .await
            .expect("send");
    }
    sink.finish().await.expect("finish");
}
