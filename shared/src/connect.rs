//! Opening what a pipeline file names, for the edges (the `sluice` command,
//! the functions' start-up): the catalog, local or Glue. Kept apart from
//! [`crate::catalog`] and [`crate::glue`] so that the trait does not know its
//! implementations.

use crate::error::{Error, Result};
use crate::store::Location;

/// Open the catalog a pipeline names: the local one in `lake`, or Glue.
pub async fn catalog(
    kind: &crate::config::CatalogKind,
    lake: &Location,
    aws: &crate::store::AwsOptions,
) -> Result<std::sync::Arc<dyn crate::catalog::Catalog>> {
    use crate::config::CatalogKind;
    Ok(match kind {
        CatalogKind::Local => std::sync::Arc::new(crate::catalog::LocalCatalog::new(lake)),
        CatalogKind::Glue {
            database,
            create_database,
        } => {
            if !lake.url.starts_with("s3://") {
                return Err(Error::Config(format!(
                    "the Glue catalog needs an s3:// lake (Athena reads tables from S3), not {}",
                    lake.url
                )));
            }
            let client = aws_sdk_glue::Client::new(&aws.sdk_config().await);
            std::sync::Arc::new(
                crate::glue::GlueCatalog::new(client, database, &lake.url, *create_database)
                    .await?,
            )
        }
    })
}
