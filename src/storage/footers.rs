//! Parquet footers, page index included, in the metadata cache every session's scans share.
//!
//! Used by the scans (`provider`), the key seeks (`seek`) and by a table when a new Delta
//! version appears (`TableHandle::cache_page_indexes`).

use std::sync::Arc;

use chrono::DateTime;
use datafusion::datasource::physical_plan::parquet::metadata::DFParquetMetadata;
use datafusion::error::Result as DfResult;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::runtime_env::RuntimeEnv;
use deltalake::parquet::file::metadata::{PageIndexPolicy, ParquetMetaData};
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore};
use url::Url;

/// Puts the footers of a Delta table's data files (`files`: path relative to `root`, size), page
/// index included, in the metadata cache every session's Parquet scans consult.
///
/// DataFusion 55's Parquet opener fetches footers without the page index (and caches them so),
/// then parses the page index again on every query; a cached footer that already holds it is
/// used as is. For a one-tag lookup that parse was a tenth of the query. The entries match the
/// ones delta-rs's scan looks up (location from the file URL, size, modification time 0).
/// Best effort: a file that cannot be read here is read the slower way by the scan.
pub(super) async fn cache_page_indexes(
    runtime: Arc<RuntimeEnv>,
    root: Url,
    files: Vec<(String, u64)>,
) {
    for (path, size) in files {
        let Some((store, object)) = file_object(&runtime, &root, &path, size) else {
            continue;
        };
        if let Err(e) = parquet_metadata(&runtime, store.as_ref(), &object).await {
            tracing::debug!(file = %object.location, error = %e, "page index not cached");
        }
    }
}

/// The object store holding a data file of the table at `root`, and the file's object as the
/// scans and the metadata cache name it (`path` relative to `root`; modification time 0, as
/// delta-rs's scan gives it). `None` for a path that does not resolve to a registered store.
pub(super) fn file_object(
    runtime: &RuntimeEnv,
    root: &Url,
    path: &str,
    size: u64,
) -> Option<(Arc<dyn ObjectStore>, ObjectMeta)> {
    let mut root = root.clone();
    if !root.path().ends_with('/') {
        root.set_path(&format!("{}/", root.path()));
    }
    let url = root.join(path).ok()?;
    let store = ObjectStoreUrl::parse(format!(
        "{}://{}",
        url.scheme(),
        &url[url::Position::BeforeHost..url::Position::AfterPort]
    ))
    .and_then(|store| runtime.object_store(&store))
    .ok()?;
    let location = Path::from_url_path(url.path()).ok()?;
    let meta = ObjectMeta {
        location,
        size,
        last_modified: DateTime::from_timestamp_nanos(0),
        e_tag: None,
        version: None,
    };
    Some((store, meta))
}

/// A data file's Parquet footer with its page index, from the metadata cache every session's
/// scans share (read and cached on a miss).
///
/// # Errors
/// Object store and Parquet errors reading the footer.
pub(super) async fn parquet_metadata(
    runtime: &RuntimeEnv,
    store: &dyn ObjectStore,
    object: &ObjectMeta,
) -> DfResult<Arc<ParquetMetaData>> {
    DFParquetMetadata::new(store, object)
        .with_file_metadata_cache(Some(runtime.cache_manager.get_file_metadata_cache()))
        .with_page_index_policy(Some(PageIndexPolicy::Optional))
        .fetch_metadata()
        .await
}
