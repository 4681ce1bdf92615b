//! Ignition's month tables as partitions of one Delta table per driver (ARCHITECTURE.md contract 3).
//!
//! ```text
//!   <schema>/sqlt_data_<drv>/                one Delta table, partitioned by `month`
//!     month=2026-11/part-....parquet         rows of the PostgreSQL table sqlt_data_<drv>_2026_11
//!     month=2026-12-01/...                   rows of the daily table sqlt_data_<drv>_20261201
//! ```
//!
//! `CREATE TABLE sqlt_data_1_2026_11 (...)` of the historian's shape (see `historian`) creates
//! the driver's Delta table if needed and registers the month in its properties:
//! `deltagate.partition.2026-11` holds the PostgreSQL table's name, an id unique to this
//! incarnation of the month, and its own metadata properties (primary key, indexes). Each
//! registered month is a [`TableHandle`] of its own, a *slice*: its columns are the Delta
//! table's minus `month`, reads filter on its month, writes add it, deletes are confined to it.
//! `DROP TABLE` deletes the month's rows (a metadata-only Delta delete: files go at VACUUM) and
//! unregisters it (an empty property value), leaving the other months alone.
//!
//! Invariants: slices of one Delta table share one commit lock, and every commit starts from
//! the newest version any of them reached ([`Container::latest`]), so their commits never race.
//! Each slice has its own Delta application id (`<server id>:<month>`) and its own write-ahead
//! log identity (`<delta id>/<incarnation id>`), so flushes and replays of one month never skip
//! or resurrect rows of another, nor of an earlier incarnation of the same month.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::logical_expr::{Expr, col, lit};
use deltalake::DeltaTable;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex as AsyncMutex;

use super::super::{Result, StorageError};

/// Table property naming the partition column of a Delta table holding historian months.
pub const COLUMN_PROPERTY: &str = "deltagate.partitionColumn";
/// Prefix of the table properties registering one month each.
pub const PROPERTY_PREFIX: &str = "deltagate.partition.";
/// The partition column of historian Delta tables.
pub const COLUMN: &str = "month";

/// One registered month, as stored in its table property.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Registration {
    /// The PostgreSQL table name (`sqlt_data_1_2026_11`).
    pub table: String,
    /// Unique to this incarnation of the month.
    pub id: String,
    /// The slice's own metadata properties (see `TableMeta::properties`).
    pub properties: HashMap<String, String>,
}

/// Which partition of its Delta table a slice is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slice {
    pub column: String,
    pub value: String,
    /// The registration's incarnation id.
    pub id: String,
}

impl Slice {
    /// The property holding this slice's registration.
    pub fn property(&self) -> String {
        format!("{PROPERTY_PREFIX}{}", self.value)
    }

    /// `column = value`: restricts a scan or delete to the slice.
    pub fn predicate(&self) -> Expr {
        col(self.column.as_str()).eq(lit(self.value.clone()))
    }

    /// The rows with the partition column appended, as Delta stores them.
    ///
    /// # Errors
    /// Arrow errors building the batch.
    pub fn with_column(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let values: ArrayRef = Arc::new(StringArray::from(vec![
            self.value.as_str();
            batch.num_rows()
        ]));
        super::super::append_column(
            batch,
            Field::new(&self.column, DataType::Utf8, true),
            values,
        )
        .map_err(|e| StorageError::DataFusion(e.into()))
    }

    /// Whether a data file (by its partition values) belongs to the slice.
    pub fn holds(&self, partition_values: &HashMap<String, Option<String>>) -> bool {
        partition_values
            .get(&self.column)
            .is_some_and(|v| v.as_deref() == Some(self.value.as_str()))
    }
}

/// What the slices of one Delta table share.
pub struct Container {
    /// Held by every commit to any of its slices.
    pub lock: Arc<AsyncMutex<()>>,
    /// The newest version a commit of any slice produced.
    pub latest: Mutex<DeltaTable>,
}

impl Container {
    pub fn new(table: DeltaTable) -> Arc<Container> {
        Arc::new(Container {
            lock: Arc::new(AsyncMutex::new(())),
            latest: Mutex::new(table),
        })
    }

    /// Records a commit's result if it is newer than what is known.
    pub fn advance(&self, table: &DeltaTable) {
        let mut latest = self.latest.lock();
        if table.version() > latest.version() {
            *latest = table.clone();
        }
    }
}

/// The partition column of a Delta table's configuration, if it holds historian months.
pub fn column(configuration: &HashMap<String, String>) -> Option<&str> {
    configuration.get(COLUMN_PROPERTY).map(String::as_str)
}

/// The months registered in a Delta table's configuration, by partition value.
///
/// # Errors
/// [`StorageError::Metadata`] for an unreadable registration.
pub fn registrations(
    configuration: &HashMap<String, String>,
) -> Result<Vec<(String, Registration)>> {
    let mut out = Vec::new();
    for (key, value) in configuration {
        let Some(month) = key.strip_prefix(PROPERTY_PREFIX) else {
            continue;
        };
        if value.is_empty() {
            continue;
        }
        out.push((month.to_string(), parse(key, value)?));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// The registration of one month.
///
/// # Errors
/// [`StorageError::Metadata`] when it is missing or unreadable.
pub fn registration(
    configuration: &HashMap<String, String>,
    slice: &Slice,
) -> Result<Registration> {
    let key = slice.property();
    match configuration.get(&key) {
        Some(value) if !value.is_empty() => parse(&key, value),
        _ => Err(StorageError::Metadata(format!("{key} is not registered"))),
    }
}

fn parse(key: &str, value: &str) -> Result<Registration> {
    serde_json::from_str(value).map_err(|e| StorageError::Metadata(format!("{key}: {e}")))
}

/// The property value registering a month.
///
/// # Errors
/// [`StorageError::Metadata`] if it cannot be serialized.
pub fn encode(registration: &Registration) -> Result<String> {
    serde_json::to_string(registration).map_err(|e| StorageError::Metadata(e.to_string()))
}

/// The folder (Delta table) holding the months of a historian driver.
pub(in crate::storage) fn folder(driver: u32) -> String {
    format!("sqlt_data_{driver}")
}
