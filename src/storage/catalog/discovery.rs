//! Discovery: the schemas and tables found in the warehouse, at start and on every rescan.
//!
//! A schema is a top-level folder and a table any folder below it with a `_delta_log`,
//! whoever wrote it; folders whose names are not deltagate's encoding of a name are ignored
//! (and warned about once). A table whose log cannot be read is marked unavailable, and its
//! held log records wait for it (see `recovery`). Runs under the catalog's `ddl` lock, so it
//! never registers a table being created or dropped. Called by `Storage::open` and
//! `Storage::rescan`.

use deltalake::DeltaTableBuilder;
use futures::StreamExt;
use object_store::ObjectStore;
use object_store::path::Path;
use tracing::{info, warn};

use crate::storage::historian::months::Loaded;
use crate::storage::names;
use crate::storage::table::TableHandle;

use super::{Result, Storage};

impl Storage {
    /// Looks for schemas and tables that appeared in the warehouse since the last scan (written
    /// by another engine). Returns how many tables were added.
    ///
    /// # Errors
    /// Object store errors while listing.
    pub async fn rescan(&self) -> Result<usize> {
        let before = self.all_tables().len();
        self.discover().await?;
        Ok(self.all_tables().len().saturating_sub(before))
    }

    pub(super) async fn discover(&self) -> Result<()> {
        let _ddl = self.ddl.lock().await;
        let listing = self.store.list_with_delimiter(None).await?;
        for schema_prefix in listing.common_prefixes {
            // Hidden folders (deltagate's own `.deltagate`) never decode to a name.
            let Some(schema) = self.folder_name(&schema_prefix) else {
                continue;
            };
            self.insert_schema(&schema);
            let tables = self.store.list_with_delimiter(Some(&schema_prefix)).await?;
            for table_prefix in tables.common_prefixes {
                let Some(name) = self.folder_name(&table_prefix) else {
                    continue;
                };
                if self.table(&schema, &name).is_some() || self.container(&schema, &name).is_some()
                {
                    continue;
                }
                let log = table_prefix.clone().join("_delta_log");
                let has_log = self.store.list(Some(&log)).next().await.is_some();
                if !has_log {
                    continue;
                }
                match self.load_table(&schema, &name).await {
                    // Held log records go in before the tables are registered, so no reader
                    // sees a table without the rows it acknowledged.
                    Ok(loaded) => self.register_loaded(&schema, &name, loaded).await?,
                    Err(e) => self.mark_unavailable(&schema, &name, &e),
                }
            }
        }
        Ok(())
    }
    /// The schema or table name a folder of the warehouse holds; `None` (logged once, unless
    /// hidden) for a folder whose name is not the encoding of one (see `names`).
    fn folder_name(&self, prefix: &Path) -> Option<String> {
        let folder = prefix.filename()?;
        let name = names::decode(folder);
        if name.is_none()
            && !folder.starts_with('.')
            && self.ignored_folders.lock().insert(prefix.to_string())
        {
            warn!(
                folder = prefix.as_ref(),
                "ignoring a warehouse folder whose name is not a deltagate name encoding"
            );
        }
        name
    }
    /// Loads the Delta table in folder `name`; `None` when it holds historian months, which
    /// are registered as tables of their own instead.
    async fn load_table(&self, schema: &str, name: &str) -> Result<Loaded> {
        let url = self.table_url(schema, name)?;
        let table = DeltaTableBuilder::from_url(url.clone())?
            .with_storage_options(self.config.storage_options.clone())
            .load()
            .await?;
        if crate::storage::historian::partition::column(
            table.snapshot()?.metadata().configuration(),
        )
        .is_some()
        {
            return self.load_months(schema, name, url, table);
        }
        let oid = self.unique_oid("table", schema, name);
        let handle = TableHandle::new(schema, name, oid, url, table, &self.runtime, None)?;
        info!(
            schema,
            table = name,
            version = handle.state().version,
            "loaded table"
        );
        Ok(Loaded {
            container: None,
            tables: vec![handle],
        })
    }

    /// Registers tables loaded at discovery under `folder` of `schema`, after giving them the
    /// log records held while they were unavailable (see `recovery`).
    ///
    /// # Errors
    /// Log read errors; nothing is registered then and the records stay held.
    async fn register_loaded(&self, schema: &str, folder: &str, loaded: Loaded) -> Result<()> {
        self.replay_held(schema, folder, &loaded.tables).await?;
        if let Some((folder, container)) = loaded.container {
            self.containers
                .lock()
                .insert((schema.to_string(), folder), container);
        }
        for handle in loaded.tables {
            self.insert_table(handle);
        }
        self.mark_available(schema, folder);
        Ok(())
    }
}
