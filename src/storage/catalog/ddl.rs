//! DDL of the catalog: creating and dropping schemas and tables.
//!
//! Creation writes storage first (a schema's marker object, a table's first Delta commit) and
//! the in-memory map second, so a crash in between is repaired by the next start's discovery.
//! Dropping a table takes it out of the map first, under its locks and the visibility write
//! lock, then deletes its files one by one: a crash in between leaves a partial folder for the
//! next discovery (a known gap, see `docs/ARCHITECTURE.md`). Called by the SQL layer's DDL
//! (`sql::ddl`, and `sql::dml` for CREATE TABLE AS), and by `Storage::open` for `public`.

use std::collections::HashMap;
use std::sync::Arc;

use deltalake::kernel::StructType;
use deltalake::table::config::TableProperty;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use tracing::info;

use crate::storage::meta::{self, ColumnMeta, IndexMeta, SequenceMeta, TableMeta};
use crate::storage::names;
use crate::storage::table::TableHandle;

use super::{Result, Storage, StorageError};

/// The marker object that makes an empty schema folder exist.
const SCHEMA_MARKER: &str = ".deltagate_schema";

impl Storage {
    /// Creates a schema. Returns false when it existed and `if_not_exists` was given.
    ///
    /// # Errors
    /// [`StorageError::DuplicateSchema`], or object store errors.
    pub async fn create_schema(&self, schema: &str, if_not_exists: bool) -> Result<bool> {
        if self.has_schema(schema) {
            return if if_not_exists {
                Ok(false)
            } else {
                Err(StorageError::DuplicateSchema(schema.to_string()))
            };
        }
        names::check_new(schema)?;
        let marker = schema_path(schema)?.join(SCHEMA_MARKER);
        self.store.put(&marker, PutPayload::new()).await?;
        self.insert_schema(schema);
        info!(schema, "created schema");
        Ok(true)
    }

    /// Drops a schema; with `cascade`, its tables too.
    ///
    /// # Errors
    /// [`StorageError::UndefinedSchema`], [`StorageError::SchemaNotEmpty`], or storage errors.
    pub async fn drop_schema(&self, schema: &str, cascade: bool) -> Result<()> {
        if !self.has_schema(schema) {
            return Err(StorageError::UndefinedSchema(schema.to_string()));
        }
        let tables = self.tables(schema);
        if !tables.is_empty() && !cascade {
            return Err(StorageError::SchemaNotEmpty(schema.to_string()));
        }
        for table in tables {
            self.drop_table(&table).await?;
        }
        self.delete_prefix(&schema_path(schema)?).await?;
        self.schemas.write().remove(schema);
        self.containers.lock().retain(|(s, _), _| s != schema);
        info!(schema, "dropped schema");
        Ok(())
    }

    /// Creates a table as a new Delta table.
    ///
    /// # Errors
    /// [`StorageError::DuplicateTable`] if a relation of that name exists, or storage errors.
    pub async fn create_table(
        &self,
        schema: &str,
        name: &str,
        columns: Vec<ColumnMeta>,
        primary_key: Option<IndexMeta>,
        sequences: Vec<SequenceMeta>,
    ) -> Result<Arc<TableHandle>> {
        names::check_new(name)?;
        let _ddl = self.ddl.lock().await;
        if !self.has_schema(schema) {
            return Err(StorageError::UndefinedSchema(schema.to_string()));
        }
        if self.relation_exists(schema, name) || self.container(schema, name).is_some() {
            return Err(StorageError::DuplicateTable(name.to_string()));
        }
        if let Some(error) = self.unavailable(schema, name) {
            return Err(error);
        }
        if let Some(month) = self
            .create_month(schema, name, &columns, &primary_key, &sequences)
            .await?
        {
            return Ok(month);
        }
        let url = self.table_url(schema, name)?;
        let delta_schema = StructType::try_new(columns.iter().map(meta::delta_field))
            .map_err(|e| StorageError::Metadata(e.to_string()))?;
        let table_meta = TableMeta::new(columns, primary_key, Vec::new(), sequences, 0);
        let mut configuration: HashMap<String, Option<String>> = table_meta
            .properties()?
            .into_iter()
            .map(|(k, v)| (k, Some(v)))
            .collect();
        configuration.insert(
            TableProperty::CheckpointInterval.as_ref().to_string(),
            Some(self.config.checkpoint_interval.to_string()),
        );
        let table = deltalake::operations::create::CreateBuilder::new()
            .with_location(url.as_str())
            .with_storage_options(self.config.storage_options.clone())
            .with_table_name(name)
            .with_columns(delta_schema.fields().cloned())
            .with_configuration(configuration)
            .with_raise_if_key_not_exists(false)
            .with_commit_properties(crate::storage::rows::commit_properties())
            .await
            .map_err(StorageError::commit(name))?;
        let oid = self.unique_oid("table", schema, name);
        let handle = TableHandle::new(schema, name, oid, url, table, &self.runtime, None)?;
        self.insert_table(handle.clone());
        info!(schema, table = name, "created table");
        Ok(handle)
    }

    /// Drops a table and deletes its files.
    ///
    /// # Errors
    /// Object store errors while deleting.
    pub async fn drop_table(&self, table: &Arc<TableHandle>) -> Result<()> {
        let _ddl = self.ddl.lock().await;
        if table.slice().is_some() {
            return self.drop_month(table).await;
        }
        let _admit = table.clone().lock_admit().await;
        let _commit = table.commit_lock().lock().await;
        let _view = self.visibility.write().await;
        // Its log records name the Delta table id, so they are never replayed into a new table
        // of the same name.
        table.discard_buffered();
        self.remove_table(table);
        drop(_view);
        let prefix = schema_path(&table.schema)?.join(names::encode(&table.name)?);
        self.delete_prefix(&prefix).await?;
        info!(schema = table.schema, table = table.name, "dropped table");
        Ok(())
    }
    async fn delete_prefix(&self, prefix: &Path) -> Result<()> {
        let locations = self
            .store
            .list(Some(prefix))
            .map_ok(|meta| meta.location)
            .boxed();
        self.store
            .delete_stream(locations)
            .try_collect::<Vec<_>>()
            .await?;
        if self.config.warehouse.scheme() == "file"
            && let Ok(root) = self.config.warehouse.to_file_path()
        {
            // Local folders outlive their files; remove the empty tree so rediscovery agrees.
            let dir = root.join(prefix.as_ref());
            if dir.exists() {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
        Ok(())
    }
}

/// The object-store path of a schema's folder, relative to the warehouse.
fn schema_path(schema: &str) -> Result<Path> {
    // Encoded names hold no character `object_store` escapes, so the folder is the encoding.
    Ok(Path::from(names::encode(schema)?))
}
