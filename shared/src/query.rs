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

/// A DataFusion context with every table of the lake registered.
pub async fn lake_context(lake: &Location, catalog: &dyn Catalog) -> Result<SessionContext> {
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
    if lake.url.starts_with("s3://") {
        let base = url::Url::parse(&lake.url).map_err(|e| Error::Config(e.to_string()))?;
        let bucket_url = url::Url::parse(&format!("s3://{}", base.host_str().unwrap_or_default()))
            .map_err(|e| Error::Config(e.to_string()))?;
        ctx.register_object_store(&bucket_url, lake.store.clone());
    }
    for table in catalog.tables().await? {
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
