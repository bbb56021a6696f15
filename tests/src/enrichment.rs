//! The enrichment example (`examples/enrichment/`): the lake's orders and
//! DuckDB's own join of the raw files, typed alike, for `assert_same_rows`.

use std::path::Path;

use crate::repo_root;

/// The example's pipeline file, relative to the repository.
pub const EXAMPLE: &str = "examples/enrichment/sluice.toml";

/// The lake's orders, typed as the oracle types them.
pub fn lake_orders(lake: &Path) -> String {
    format!(
        "SELECT order_id, CAST(order_time AS TIMESTAMPTZ) AS order_time, customer_id, segment, \
         customer_country, sku, product, category, CAST(quantity AS BIGINT) AS quantity, \
         CAST(amount AS DECIMAL(10,2)) AS amount, CAST(dt AS DATE) AS dt \
         FROM read_parquet('{}/orders/**/*.parquet', hive_partitioning = true)",
        lake.display()
    )
}

/// DuckDB's join of raw order files with a customers CSV and the example's
/// products, as the example's SQL asks.
pub fn oracle(orders_glob: &str, customers_csv: &str) -> String {
    format!(
        "SELECT o.order_id, CAST(o.order_time AS TIMESTAMPTZ) AS order_time, o.customer_id, \
         c.segment, c.country AS customer_country, o.sku, p.title AS product, p.category, \
         CAST(o.quantity AS BIGINT) AS quantity, o.amount, \
         CAST(CAST(o.order_time AS TIMESTAMPTZ) AS DATE) AS dt \
         FROM read_json('{orders_glob}', columns = {{order_id: 'VARCHAR', order_time: 'VARCHAR', \
           customer_id: 'BIGINT', sku: 'VARCHAR', quantity: 'INTEGER', amount: 'DECIMAL(10,2)'}}) o \
         LEFT JOIN read_csv('{customers_csv}', header = true, columns = {{id: 'BIGINT', \
           name: 'VARCHAR', segment: 'VARCHAR', country: 'VARCHAR', since: 'DATE'}}) c \
           ON o.customer_id = c.id \
         LEFT JOIN read_json('{products}') p ON o.sku = p.sku",
        products = repo_root()
            .join("examples/enrichment/ref/products.jsonl")
            .display()
    )
}
