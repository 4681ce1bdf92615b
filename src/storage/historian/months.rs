//! The month lifecycle of historian tables in the catalog: creating a month (and its driver's
//! Delta table), loading a container's months at discovery, dropping one month. See
//! `partition` for what a month is.

use std::collections::HashMap;
use std::sync::Arc;

use deltalake::DeltaTable;

use deltalake::table::config::TableProperty;
use tracing::info;
use url::Url;

use super::super::meta::{self, ColumnMeta, IndexMeta, SequenceMeta, TableMeta};
use super::super::table::TableHandle;
use super::super::{Result, Storage, StorageError};
use super::HistorianName;
use super::partition::*;
use crate::pgtypes::PgType;

/// Tables loaded at discovery, not yet registered: a historian container's months or one
/// plain table.
pub(in crate::storage) struct Loaded {
    /// The container folder and its shared state, for months.
    pub container: Option<(String, Arc<Container>)>,
    pub tables: Vec<Arc<TableHandle>>,
}

impl Storage {
    /// The Delta table holding historian months in folder `name`, if it is one.
    pub(in crate::storage) fn container(&self, schema: &str, name: &str) -> Option<Arc<Container>> {
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
    pub(in crate::storage) async fn create_month(
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
                    .with_commit_properties(super::super::rows::commit_properties())
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
                    .with_commit_properties(super::super::rows::commit_properties())
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
    pub(in crate::storage) fn load_months(
        &self,
        schema: &str,
        folder: &str,
        url: Url,
        delta: DeltaTable,
    ) -> Result<Loaded> {
        let configuration = delta.snapshot()?.metadata().configuration().clone();
        let column = column(&configuration).unwrap_or(COLUMN).to_string();
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
    pub(in crate::storage) async fn drop_month(&self, table: &Arc<TableHandle>) -> Result<()> {
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
