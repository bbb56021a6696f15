//! SQL over a lake: every table in the catalog is registered with DataFusion
//! as a Hive-partitioned Parquet listing table, so filters on partition
//! columns prune whole folders.
//!
//! Partition values are read as text and exposed through a view that turns
//! Hive's `__HIVE_DEFAULT_PARTITION__` into null and casts to the column's
//! type; filters on the view still prune, since they involve only partition
//! columns.

use std::sync::Arc;

use arrow::datatypes::DataType;
use datafusion::catalog::TableProvider;

use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::catalog::Catalog;
use crate::commit::arrow_type;
use crate::partition::HIVE_DEFAULT_PARTITION;

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
use crate::error::{Error, Result};
use crate::store::Location;

/// A DataFusion context with every table of the lake registered: the
/// catalog's Hive tables, and the lake's Delta tables at their latest
/// snapshot, or `as_of` a version or a time (`3`, `2026-12-01T10:00:00Z`).
pub async fn lake_context(
    lake: &Location,
    catalog: &dyn Catalog,
    as_of: Option<&str>,
) -> Result<SessionContext> {
    let config = SessionConfig::new()
        .set_bool(
            "datafusion.execution.parquet.schema_force_view_types",
            false,
        )
        .set_bool(
            "datafusion.execution.listing_table_ignore_subdirectory",
            false,
        );
    let ctx = SessionContext::new_with_config(config);
    // Every table is read through the lake's own store (its retries, its
    // credentials), whatever the scheme: a bucket, the file system's root,
    // or memory.
    let base = url::Url::parse(&lake.url)
        .map_err(|e| Error::Config(format!("the lake's URL {}: {e}", lake.url)))?;
    let store_url = url::Url::parse(&format!(
        "{}://{}",
        base.scheme(),
        base.host_str().unwrap_or_default()
    ))
    .map_err(|e| Error::Config(format!("the lake's URL {}: {e}", lake.url)))?;
    ctx.register_object_store(&store_url, lake.store.clone());
    let delta_tables = register_delta_tables(&ctx, lake, as_of).await?;
    for table in catalog.tables().await? {
        if delta_tables.contains(&table.name) {
            continue;
        }
        let url = format!("{}/{}/", lake.url, table.location);
        let table_url =
            ListingTableUrl::parse(&url).map_err(|e| Error::Catalog(format!("{url}: {e}")))?;
        let mut partition_cols = Vec::new();
        for k in &table.partition_keys {
            if arrow_type(&k.hive_type).is_none() {
                return Err(Error::Catalog(format!(
                    "table '{}': partition column '{}' has type {} that cannot be queried",
                    table.name, k.name, k.hive_type
                )));
            }
            partition_cols.push((k.name.clone(), DataType::Utf8));
        }
        let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
            .with_file_extension(".parquet")
            .with_table_partition_cols(partition_cols);
        let state = ctx.state();
        let schema = match options.infer_schema(&state, &table_url).await {
            Ok(s) => s,
            // A storage failure (transient: worth a retry; or an answer such
            // as access denied) is the caller's error, naming the table's
            // folder; only a table with no files to read yet is skipped.
            Err(e) if crate::retry::classify(&e) != crate::retry::Verdict::Unknown => {
                return Err(Error::read(&url, e));
            }
            Err(e) => {
                tracing::warn!(table = %table.name, error = %e, "table has no readable files yet; skipped");
                continue;
            }
        };
        let config = ListingTableConfig::new(table_url)
            .with_listing_options(options)
            .with_schema(schema);
        let provider = ListingTable::try_new(config)
            .map_err(|e| Error::Catalog(format!("table '{}': {e}", table.name)))?;
        let data_columns: Vec<String> = provider
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .filter(|n| !table.partition_keys.iter().any(|k| &k.name == n))
            .collect();
        let raw = format!("__sluice_files_{}", table.name);
        ctx.register_table(raw.as_str(), Arc::new(provider))
            .map_err(|e| Error::Catalog(format!("table '{}': {e}", table.name)))?;
        let mut select: Vec<String> = data_columns.iter().map(|c| quote(c)).collect();
        for k in &table.partition_keys {
            let value = format!("NULLIF({}, '{HIVE_DEFAULT_PARTITION}')", quote(&k.name));
            select.push(match k.hive_type.as_str() {
                "string" => format!("{value} AS {}", quote(&k.name)),
                t => format!(
                    "CAST({value} AS {}) AS {}",
                    t.to_ascii_uppercase(),
                    quote(&k.name)
                ),
            });
        }
        let view = format!(
            "CREATE VIEW {} AS SELECT {} FROM {}",
            quote(&table.name),
            select.join(", "),
            quote(&raw)
        );
        ctx.sql(&view)
            .await
            .map_err(|e| Error::Catalog(format!("table '{}': {e}", table.name)))?;
    }
    Ok(ctx)
}

/// Register the lake's Delta tables (as of `as_of`); their names.
async fn register_delta_tables(
    ctx: &SessionContext,
    lake: &Location,
    as_of: Option<&str>,
) -> Result<Vec<String>> {
    use crate::delta::{self, AsOf};
    let at = match as_of {
        Some(text) => AsOf::parse(text)?,
        None => AsOf::Latest,
    };
    let names = delta::tables(lake).await?;
    for name in &names {
        let table = match delta::open(lake, name, at).await {
            Ok(Some(t)) => t,
            Ok(None) => continue,
            // A table that did not exist yet at that time or version: only a
            // query that names it fails (DataFusion names the missing table).
            Err(e) if at != AsOf::Latest => {
                tracing::warn!(table = %name, error = %e, "not registered at --as-of");
                continue;
            }
            Err(e) => return Err(e),
        };
        table
            .update_datafusion_session(&ctx.state())
            .map_err(|e| delta::error(name, e))?;
        let provider = table
            .table_provider()
            .await
            .map_err(|e| Error::Catalog(format!("table '{name}': {e}")))?;
        ctx.register_table(name.as_str(), provider)
            .map_err(|e| Error::Catalog(format!("table '{name}': {e}")))?;
    }
    Ok(names)
}
