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

use deltalake::table::config::TableProperty;
use tracing::info;
use url::Url;

use super::historian::HistorianName;
use super::meta::{self, ColumnMeta, IndexMeta, SequenceMeta, TableMeta};
use super::table::TableHandle;
use super::{Result, Storage, StorageError};
use crate::pgtypes::PgType;

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
        super::append_column(
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

/// Tables loaded at discovery, not yet registered: a historian container's months or one
/// plain table.
pub(super) struct Loaded {
    /// The container folder and its shared state, for months.
    pub container: Option<(String, Arc<Container>)>,
    pub tables: Vec<Arc<TableHandle>>,
}

impl Storage {
    /// The Delta table holding historian months in folder `name`, if it is one.
    pub(super) fn container(&self, schema: &str, name: &str) -> Option<Arc<Container>> {
        self.containers
            .lock()
            .get(&(schema.to_string(), name.to_string()))
            .cloned()
    }

    /// Creates a historian month as a partition of its driver's Delta table (created first if
    /// needed). `None` when the table is not a month of the historian's shape, or its columns
    /// differ from the months already stored: it is then an ordinary table.
    ///
    /// # Errors
    /// Delta errors creating or registering.
    pub(super) async fn create_month(
        &self,
        schema: &str,
        name: &str,
        columns: &[ColumnMeta],
        primary_key: &Option<IndexMeta>,
        sequences: &[SequenceMeta],
    ) -> Result<Option<Arc<TableHandle>>> {
        let Some(HistorianName::Partition { driver, period }) = HistorianName::parse(name) else {
            return Ok(None);
        };
        let keyed = primary_key
            .as_ref()
            .is_some_and(|pk| pk.columns == ["tagid", "t_stamp"]);
        if !keyed || !sequences.is_empty() || columns.iter().any(|c| c.name == COLUMN) {
            return Ok(None);
        }
        let folder = folder(driver);
        if self.table(schema, &folder).is_some() {
            return Ok(None);
        }
        let meta = TableMeta::new(
            columns.to_vec(),
            primary_key.clone(),
            Vec::new(),
            Vec::new(),
            0,
        );
        let registration = Registration {
            table: name.to_string(),
            id: format!("{:032x}", rand::random::<u128>()),
            properties: meta.properties()?,
        };
        let property = format!("{PROPERTY_PREFIX}{period}");
        let url = self.table_url(schema, &folder)?;
        let container = match self.container(schema, &folder) {
            Some(container) => {
                let _lock = container.lock.clone().lock_owned().await;
                let latest = container.latest.lock().clone();
                let stored = TableMeta::from_delta(
                    &latest.snapshot()?.schema(),
                    &latest.snapshot()?.snapshot().arrow_schema(),
                    &HashMap::new(),
                    0,
                    Some(COLUMN),
                )?;
                if stored.columns != columns {
                    info!(
                        schema,
                        table = name,
                        folder,
                        "columns differ from the stored months: an ordinary table"
                    );
                    return Ok(None);
                }
                let delta = latest
                    .set_tbl_properties()
                    .with_properties(HashMap::from([(property, encode(&registration)?)]))
                    .with_raise_if_not_exists(false)
                    .with_commit_properties(super::commit::commit_properties())
                    .await
                    .map_err(StorageError::commit(name))?;
                container.advance(&delta);
                container
            }
            None => {
                let mut fields: Vec<_> = columns.iter().map(meta::delta_field).collect();
                fields.push(meta::delta_field(&ColumnMeta {
                    name: COLUMN.to_string(),
                    pg_type: PgType::Text,
                    not_null: false,
                    default: None,
                }));
                let configuration = HashMap::from([
                    (
                        TableProperty::CheckpointInterval.as_ref().to_string(),
                        Some(self.config.checkpoint_interval.to_string()),
                    ),
                    (COLUMN_PROPERTY.to_string(), Some(COLUMN.to_string())),
                    (property, Some(encode(&registration)?)),
                ]);
                let delta = deltalake::operations::create::CreateBuilder::new()
                    .with_location(url.as_str())
                    .with_storage_options(self.config.storage_options.clone())
                    .with_table_name(folder.as_str())
                    .with_columns(fields)
                    .with_partition_columns([COLUMN])
                    .with_configuration(configuration)
                    .with_raise_if_key_not_exists(false)
                    .with_commit_properties(super::commit::commit_properties())
                    .await
                    .map_err(StorageError::commit(name))?;
                let container = Container::new(delta);
                self.containers
                    .lock()
                    .insert((schema.to_string(), folder.clone()), container.clone());
                info!(
                    schema,
                    table = folder,
                    "created partitioned historian table"
                );
                container
            }
        };
        let slice = Arc::new(Slice {
            column: COLUMN.to_string(),
            value: period,
            id: registration.id,
        });
        let handle = self.month_handle(schema, name, url, slice, container)?;
        self.insert_table(handle.clone());
        info!(schema, table = name, folder, "created month");
        Ok(Some(handle))
    }

    fn month_handle(
        &self,
        schema: &str,
        name: &str,
        url: Url,
        slice: Arc<Slice>,
        container: Arc<Container>,
    ) -> Result<Arc<TableHandle>> {
        let oid = self.unique_oid("table", schema, name);
        let delta = container.latest.lock().clone();
        TableHandle::new(
            schema,
            name,
            oid,
            url,
            delta,
            &self.runtime,
            Some((slice, container)),
        )
    }

    /// Loads the months of a Delta table found at discovery, for the caller to register.
    ///
    /// # Errors
    /// Unreadable registrations.
    pub(super) fn load_months(
        &self,
        schema: &str,
        folder: &str,
        url: Url,
        delta: DeltaTable,
    ) -> Result<Loaded> {
        let configuration = delta.snapshot()?.metadata().configuration().clone();
        let column = super::partition::column(&configuration)
            .unwrap_or(COLUMN)
            .to_string();
        let container = Container::new(delta);
        let mut months = Vec::new();
        for (value, registration) in registrations(&configuration)? {
            let slice = Arc::new(Slice {
                column: column.clone(),
                value,
                id: registration.id,
            });
            let handle = self.month_handle(
                schema,
                &registration.table,
                url.clone(),
                slice,
                container.clone(),
            )?;
            info!(schema, table = registration.table, folder, "loaded month");
            months.push(handle);
        }
        Ok(Loaded {
            container: Some((folder.to_string(), container)),
            tables: months,
        })
    }

    /// Drops a month: deletes its rows (a metadata-only Delta delete; files go at VACUUM) and
    /// unregisters it, in one Delta commit. Call with the DDL lock held.
    ///
    /// # Errors
    /// Delta errors; the month then still exists.
    pub(super) async fn drop_month(&self, table: &Arc<TableHandle>) -> Result<()> {
        let _admit = table.clone().lock_admit().await;
        let mut guard = self.lock_for_commit(vec![table.clone()]).await;
        guard.drop_month(table).await?;
        drop(guard);
        let _view = self.visibility.write().await;
        // Its log records name the registration's id, so they are never replayed into a
        // month re-created under the same name.
        table.discard_buffered();
        self.remove_table(table);
        info!(schema = table.schema, table = table.name, "dropped month");
        Ok(())
    }
}

/// The folder (Delta table) holding the months of a historian driver.
pub(super) fn folder(driver: u32) -> String {
    format!("sqlt_data_{driver}")
}
