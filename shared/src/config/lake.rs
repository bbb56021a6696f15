//! `[lake]`: where the tables live and which catalog registers them.

use serde::Deserialize;

use crate::error::{Error, Result};

/// `[lake]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LakeConfig {
    /// A path, `file://` or `s3://` URL. `--lake` overrides it.
    pub root: String,
    /// Where tables and partitions are registered: `local` (a catalog kept in
    /// the lake itself, `_sluice/catalog/`) or `glue` (the AWS Glue Data Catalog).
    pub catalog: String,
    /// The Glue database of the tables (`catalog = "glue"` only).
    pub glue_database: Option<String>,
    /// Create the Glue database if it does not exist (off by default: in
    /// production the database usually comes with the deployment).
    pub glue_create_database: bool,
    /// How tables are kept: `hive` (Hive-partitioned Parquet plus catalog
    /// partitions, the default) or `delta` (Delta Lake tables: the same files,
    /// made visible by atomic commits to `<table>/_delta_log/`). A table may
    /// override it.
    pub table_format: Option<String>,
}

impl Default for LakeConfig {
    fn default() -> Self {
        LakeConfig {
            root: "./lake".to_string(),
            catalog: "local".to_string(),
            glue_database: None,
            glue_create_database: false,
            table_format: None,
        }
    }
}

/// Which catalog a lake's tables are registered in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatalogKind {
    /// Kept in the lake itself, under `_sluice/catalog/`.
    Local,
    /// The AWS Glue Data Catalog.
    Glue {
        database: String,
        create_database: bool,
    },
}

impl LakeConfig {
    pub(super) fn catalog_kind(&self) -> Result<CatalogKind> {
        match self.catalog.as_str() {
            "local" => {
                if self.glue_database.is_some() {
                    return Err(Error::config(
                        None,
                        "lake.glue_database",
                        "is set but lake.catalog is \"local\"; set catalog = \"glue\" to use Glue",
                    ));
                }
                Ok(CatalogKind::Local)
            }
            "glue" => {
                let database = self.glue_database.clone().ok_or_else(|| {
                    Error::config(
                        None,
                        "lake.glue_database",
                        "is required when catalog = \"glue\"",
                    )
                })?;
                if database.is_empty()
                    || !database
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                {
                    return Err(Error::config(
                        None,
                        "lake.glue_database",
                        format!(
                            "{database:?} is not a valid Glue database name (lower-case letters, digits and _)"
                        ),
                    ));
                }
                if !(self.root.starts_with("s3://") || self.root.starts_with("s3a://")) {
                    return Err(Error::config(
                        None,
                        "lake.catalog",
                        format!(
                            "\"glue\" needs an s3:// lake root (Athena reads tables from S3), not {:?}",
                            self.root
                        ),
                    ));
                }
                Ok(CatalogKind::Glue {
                    database,
                    create_database: self.glue_create_database,
                })
            }
            other => Err(Error::config(
                None,
                "lake.catalog",
                format!("{other:?} is not a catalog; use \"local\" or \"glue\""),
            )),
        }
    }
}
