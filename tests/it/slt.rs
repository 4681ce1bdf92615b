//! The SQL behaviour suite: `tests/slt/*.slt`, run over the wire through both protocols.
//!
//! Each file runs against a fresh server, once with the simple protocol (psql-like text
//! results) and once with the extended protocol (binary results, converted to PostgreSQL's
//! text forms). The statement `RESTART SERVER` stops the server with SIGTERM and starts it
//! again on the same warehouse, so files can check what survives a restart.

use std::path::PathBuf;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use rust_decimal::Decimal;
use sqllogictest::{DBOutput, DefaultColumnType};
use tokio_postgres::types::Type;
use tokio_postgres::{Client, Row, SimpleQueryMessage};

use crate::harness::TestServer;

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
struct DbError {
    message: String,
}

impl From<tokio_postgres::Error> for DbError {
    fn from(e: tokio_postgres::Error) -> Self {
        let message = match e.as_db_error() {
            Some(db) => format!("{}: {}", db.code().code(), db.message()),
            None => e.to_string(),
        };
        DbError { message }
    }
}

struct Db {
    server: TestServer,
    client: Client,
    extended: bool,
}

fn column_type(ty: &Type) -> DefaultColumnType {
    match *ty {
        Type::INT2 | Type::INT4 | Type::INT8 | Type::OID => DefaultColumnType::Integer,
        Type::FLOAT4 | Type::FLOAT8 | Type::NUMERIC => DefaultColumnType::FloatingPoint,
        _ => DefaultColumnType::Text,
    }
}

fn fraction(micros: u32) -> String {
    if micros == 0 {
        String::new()
    } else {
        format!(".{micros:06}").trim_end_matches('0').to_string()
    }
}

/// A binary value in PostgreSQL's text form.
fn text_of(row: &Row, i: usize) -> String {
    use chrono::Timelike;
    let ty = row.columns()[i].type_().clone();
    let value: Option<String> = match ty {
        Type::BOOL => row
            .get::<_, Option<bool>>(i)
            .map(|b| if b { "t" } else { "f" }.to_string()),
        Type::INT2 => row.get::<_, Option<i16>>(i).map(|v| v.to_string()),
        Type::INT4 => row.get::<_, Option<i32>>(i).map(|v| v.to_string()),
        Type::INT8 => row.get::<_, Option<i64>>(i).map(|v| v.to_string()),
        Type::OID => row.get::<_, Option<u32>>(i).map(|v| v.to_string()),
        Type::FLOAT4 => row.get::<_, Option<f32>>(i).map(|v| v.to_string()),
        Type::FLOAT8 => row.get::<_, Option<f64>>(i).map(|v| v.to_string()),
        Type::NUMERIC => row.get::<_, Option<Decimal>>(i).map(|v| v.to_string()),
        Type::DATE => row
            .get::<_, Option<NaiveDate>>(i)
            .map(|d| d.format("%Y-%m-%d").to_string()),
        Type::TIMESTAMP => row.get::<_, Option<NaiveDateTime>>(i).map(|t| {
            format!(
                "{}{}",
                t.format("%Y-%m-%d %H:%M:%S"),
                fraction(t.nanosecond() / 1000)
            )
        }),
        Type::TIMESTAMPTZ => row.get::<_, Option<DateTime<Utc>>>(i).map(|t| {
            format!(
                "{}{}+00",
                t.format("%Y-%m-%d %H:%M:%S"),
                fraction(t.nanosecond() / 1000)
            )
        }),
        Type::BYTEA => row.get::<_, Option<Vec<u8>>>(i).map(|b| {
            format!(
                "\\x{}",
                b.iter().map(|x| format!("{x:02x}")).collect::<String>()
            )
        }),
        Type::JSON | Type::JSONB => row.get::<_, Option<JsonText>>(i).map(|j| j.0),
        Type::CHAR => row
            .get::<_, Option<i8>>(i)
            .map(|c| (c as u8 as char).to_string()),
        Type::UUID => row.get::<_, Option<uuid::Uuid>>(i).map(|u| u.to_string()),
        _ => row.get::<_, Option<String>>(i),
    };
    shown(value)
}

/// JSON as the server sent it (jsonb's binary form is a version byte and the text).
struct JsonText(String);

impl<'a> tokio_postgres::types::FromSql<'a> for JsonText {
    fn from_sql(
        ty: &Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let text = if *ty == Type::JSONB { &raw[1..] } else { raw };
        Ok(JsonText(std::str::from_utf8(text)?.to_string()))
    }

    fn accepts(ty: &Type) -> bool {
        matches!(*ty, Type::JSON | Type::JSONB)
    }
}

/// How the suite writes values: NULL, and `(empty)` for the empty string.
fn shown(value: Option<String>) -> String {
    match value {
        None => "NULL".to_string(),
        Some(v) if v.is_empty() => "(empty)".to_string(),
        Some(v) => v,
    }
}

#[async_trait]
impl sqllogictest::AsyncDB for Db {
    type Error = DbError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, DbError> {
        if sql.trim().eq_ignore_ascii_case("RESTART SERVER") {
            self.server.restart();
            self.client = self.server.client().await;
            return Ok(DBOutput::StatementComplete(0));
        }
        if self.extended {
            let stmt = self.client.prepare(sql).await?;
            if stmt.columns().is_empty() {
                let n = self.client.execute(&stmt, &[]).await?;
                return Ok(DBOutput::StatementComplete(n));
            }
            let rows = self.client.query(&stmt, &[]).await?;
            let types = stmt
                .columns()
                .iter()
                .map(|c| column_type(c.type_()))
                .collect();
            let rows = rows
                .iter()
                .map(|row| (0..row.len()).map(|i| text_of(row, i)).collect())
                .collect();
            return Ok(DBOutput::Rows { types, rows });
        }
        let messages = self.client.simple_query(sql).await?;
        let mut rows = Vec::new();
        let mut width = None;
        let mut count = 0;
        for message in messages {
            match message {
                SimpleQueryMessage::RowDescription(columns) => width = Some(columns.len()),
                SimpleQueryMessage::Row(row) => {
                    width = Some(row.len());
                    rows.push(
                        (0..row.len())
                            .map(|i| shown(row.get(i).map(str::to_string)))
                            .collect::<Vec<_>>(),
                    );
                }
                SimpleQueryMessage::CommandComplete(n) => count = n,
                _ => {}
            }
        }
        match width {
            Some(width) => Ok(DBOutput::Rows {
                types: vec![DefaultColumnType::Any; width],
                rows,
            }),
            None => Ok(DBOutput::StatementComplete(count)),
        }
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        if self.extended { "extended" } else { "simple" }
    }

    async fn sleep(duration: std::time::Duration) {
        tokio::time::sleep(duration).await;
    }
}

fn slt_files() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/slt");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/slt")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "slt"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .slt files in {}", dir.display());
    files
}

async fn run_all(extended: bool) {
    let mut failures = Vec::new();
    for file in slt_files() {
        let server = TestServer::start();
        let client = server.client().await;
        let mut db = Some(Db {
            server,
            client,
            extended,
        });
        let mut runner = sqllogictest::Runner::new(move || {
            let db = db.take().expect("one connection per file");
            async move { Ok(db) }
        });
        runner.with_column_validator(|_, _| true);
        if let Err(e) = runner.run_file_async(&file).await {
            failures.push(format!("{}: {e}", file.display()));
        }
    }
    assert!(
        failures.is_empty(),
        "slt failures:\n{}",
        failures.join("\n\n")
    );
}

#[tokio::test]
async fn slt_simple_protocol() {
    run_all(false).await;
}

#[tokio::test]
async fn slt_extended_protocol() {
    run_all(true).await;
}
