//! The database as DataFusion sees it from one session.
//!
//! One catalog (named after the database) with a schema per warehouse schema, plus
//! `pg_catalog` and `information_schema`. Tables resolve to the current published snapshot of
//! their Delta table (or the one pinned for a statement that deletes from it, see `dml::Pin`);
//! if the session's transaction has pending writes on a table, the table resolves to the
//! overlay of those writes instead. Resolution happens while the statement
//! holds [`Storage::read_view`](crate::storage::Storage::read_view), so a statement sees every
//! table at one consistent point.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, SchemaProvider};
use datafusion::common::TableReference;
use datafusion::datasource::TableProvider;
use datafusion::error::{DataFusionError, Result as DfResult};

use crate::storage::PgTableProvider;

use super::historian::tag_history;
use super::information_schema::InformationSchema;
use super::pg_catalog::PgCatalogSchema;
use super::shared::{INFORMATION_SCHEMA, PG_CATALOG, SessionShared};
use super::txn;

/// The session's view of the database.
#[derive(Debug)]
pub struct DatabaseCatalog {
    shared: Arc<SessionShared>,
}

impl DatabaseCatalog {
    pub fn new(shared: Arc<SessionShared>) -> DatabaseCatalog {
        DatabaseCatalog { shared }
    }
}

impl CatalogProvider for DatabaseCatalog {
    fn schema_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .shared
            .engine
            .storage()
            .schemas()
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        names.push(PG_CATALOG.to_string());
        names.push(INFORMATION_SCHEMA.to_string());
        names
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        match name {
            PG_CATALOG => Some(Arc::new(PgCatalogSchema::new(self.shared.clone()))),
            INFORMATION_SCHEMA => Some(Arc::new(InformationSchema::new(self.shared.clone()))),
            _ if self.shared.engine.storage().has_schema(name) => Some(Arc::new(UserSchema {
                shared: self.shared.clone(),
                name: name.to_string(),
            })),
            _ => None,
        }
    }
}

/// A warehouse schema: its tables are Delta tables.
#[derive(Debug)]
pub struct UserSchema {
    shared: Arc<SessionShared>,
    name: String,
}

#[async_trait]
impl SchemaProvider for UserSchema {
    fn table_names(&self) -> Vec<String> {
        self.shared
            .engine
            .storage()
            .tables(&self.name)
            .into_iter()
            .map(|t| t.name.clone())
            .collect()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let storage = self.shared.engine.storage();
        let Some(handle) = storage.table(&self.name, name) else {
            if let Some(error) = storage.unavailable(&self.name, name) {
                return Err(DataFusionError::External(Box::new(error)));
            }
            if name == tag_history::NAME && tag_history::offered(self) {
                return self.tag_history().await.map(Some);
            }
            return Ok(None);
        };
        let state = self.shared.table_state(&handle);
        handle.cache_page_indexes(&state, storage.runtime());
        let base: Arc<dyn TableProvider> = Arc::new(
            PgTableProvider::try_new(&state)
                .await
                .map_err(|e| DataFusionError::External(Box::new(e)))?,
        );
        match self.shared.txn.pending_ops(handle.oid) {
            Some(ops) => txn::overlay(
                TableReference::full(
                    self.shared.engine.config().database.clone(),
                    self.name.clone(),
                    name.to_string(),
                ),
                base,
                &ops,
            )
            .map(Some),
            None => Ok(Some(base)),
        }
    }

    fn table_exist(&self, name: &str) -> bool {
        self.shared
            .engine
            .storage()
            .table(&self.name, name)
            .is_some()
            || (name == tag_history::NAME && tag_history::offered(self))
    }
}

impl UserSchema {
    /// The built-in `tag_history` view over the schema's historian data tables.
    async fn tag_history(&self) -> DfResult<Arc<dyn TableProvider>> {
        let names = tag_history::sources(&self.shared.engine.storage().tables(&self.name))
            .unwrap_or_default();
        let mut tables = Vec::new();
        for name in names {
            if let Some(provider) = self.table(&name).await? {
                tables.push((name, provider));
            }
        }
        let tags = self
            .table("sqlth_te")
            .await?
            .ok_or_else(|| DataFusionError::Plan("sqlth_te does not exist".into()))?;
        tag_history::view(tags, tables)
    }
}
