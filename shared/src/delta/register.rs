//! A Delta table registered in a catalog (Glue reads Delta tables natively).

use crate::commit::{ColumnDef, CommitRecord};
use crate::error::Result;

/// Register a Delta table in `catalog` (Glue: as Athena reads Delta tables
/// natively), with every column its chunks in `records` hold; a catalog
/// that has the table already gains only the new columns. No partitions.
pub async fn register(
    catalog: &dyn crate::catalog::Catalog,
    records: &[CommitRecord],
) -> Result<()> {
    let Some(first) = records.first() else {
        return Ok(());
    };
    let mut columns: Vec<ColumnDef> = Vec::new();
    for r in records {
        for c in &r.columns {
            if !columns.iter().any(|o| o.name == c.name) {
                columns.push(c.clone());
            }
        }
    }
    catalog
        .ensure_table(&crate::catalog::delta_table_def(first, columns))
        .await
}
