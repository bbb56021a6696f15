//! The catalog: tables (columns, partition keys, location) and their
//! partitions. A small trait with a local implementation kept in the lake
//! itself (`_sluice/catalog/`); the Glue implementation serves the same trait.
//!
//! The local catalog is lock-free and safe for concurrent writers: every
//! entry is its own object, created with a conditional put (`PutMode::Create`),
//! and an entry that already exists with the same content is success. Two
//! `sluice run` processes on one lake can therefore never corrupt it.

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::commit::{ColumnDef, CommitRecord};
use crate::config::TableFormat;
use crate::error::{Error, Result};
use crate::store::{Location, REQUESTS_AT_ONCE};

use crate::layout::CATALOG_DIR;

/// A table as the catalog knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableDef {
    pub name: String,
    /// The table's folder, relative to the lake root (`clickstream`).
    pub location: String,
    /// Data columns, in file order.
    pub columns: Vec<ColumnDef>,
    /// Partition columns, in path order.
    pub partition_keys: Vec<ColumnDef>,
    /// Hive-partitioned Parquet, or a Delta table (whose partitions are
    /// in its log, not the catalog).
    pub format: TableFormat,
    /// The Parquet compression codec of the files (`zstd`), for readers that want to know.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<String>,
}

/// A partition of a table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionDef {
    /// Values in the order of the partition keys.
    pub values: Vec<Option<String>>,
    /// `k=v/...` relative to the table's location.
    pub path: String,
}

/// A partition's figures, as compaction leaves them (Hive's `numFiles`,
/// `totalSize`, `numRows` in Glue).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionStats {
    pub files: u64,
    pub bytes: u64,
    pub rows: u64,
}

/// Tables and partitions.
#[async_trait]
pub trait Catalog: Send + Sync {
    /// Create the table, or check it matches. New columns appended at the end
    /// are added; any other change is an error naming the column.
    async fn ensure_table(&self, table: &TableDef) -> Result<()>;
    /// Add partitions; one that exists already is success. Returns how many were new.
    async fn add_partitions(&self, table: &str, partitions: &[PartitionDef]) -> Result<usize>;
    /// A table, if it exists.
    async fn table(&self, name: &str) -> Result<Option<TableDef>>;
    /// All tables, by name.
    async fn tables(&self) -> Result<Vec<TableDef>>;
    /// A table's partitions, by path.
    async fn partitions(&self, table: &str) -> Result<Vec<PartitionDef>>;
    /// Record a partition's figures (after compaction); replaces earlier ones.
    async fn set_partition_stats(
        &self,
        table: &str,
        partition: &PartitionDef,
        stats: &PartitionStats,
    ) -> Result<()>;
    /// A partition's recorded figures, if any were recorded.
    async fn partition_stats(
        &self,
        table: &str,
        partition: &PartitionDef,
    ) -> Result<Option<PartitionStats>>;
}

/// What a commit record means for the catalog: its table and partitions.
pub fn commit_entries(commit: &CommitRecord) -> (TableDef, Vec<PartitionDef>) {
    let table = TableDef {
        name: commit.table.clone(),
        location: commit.table.clone(),
        columns: commit.columns.clone(),
        partition_keys: commit.partition_keys.clone(),
        format: TableFormat::Hive,
        compression: commit.compression.clone(),
    };
    let mut parts: Vec<PartitionDef> = Vec::new();
    if !commit.partition_keys.is_empty() {
        for f in &commit.files {
            if !parts.iter().any(|p| p.path == f.partition_path) {
                parts.push(PartitionDef {
                    values: f.partition.clone(),
                    path: f.partition_path.clone(),
                });
            }
        }
    }
    (table, parts)
}

/// The catalog's definition of a Delta table, from one of its commit
/// records: its columns; no partitions are registered (the log has them).
pub fn delta_table_def(commit: &CommitRecord, columns: Vec<ColumnDef>) -> TableDef {
    TableDef {
        name: commit.table.clone(),
        location: commit.table.clone(),
        columns,
        partition_keys: commit.partition_keys.clone(),
        format: TableFormat::Delta,
        compression: None,
    }
}

/// Decide whether `existing` can become `wanted`: the same partition keys,
/// and the same columns with new ones only appended. Returns the merged table.
pub fn evolve(existing: &TableDef, wanted: &TableDef) -> Result<TableDef> {
    let t = &existing.name;
    if existing.partition_keys != wanted.partition_keys {
        return Err(Error::Catalog(format!(
            "table '{t}': partition keys are ({}) in the catalog but ({}) now; a table's partitioning cannot change",
            keys(&existing.partition_keys),
            keys(&wanted.partition_keys)
        )));
    }
    let mut merged = existing.clone();
    for c in &wanted.columns {
        match existing.columns.iter().find(|e| e.name == c.name) {
            Some(e) if e.hive_type == c.hive_type => {}
            Some(e) => {
                return Err(Error::Catalog(format!(
                    "table '{t}', column '{}': type is {} in the catalog but {} now; incompatible type change",
                    c.name, e.hive_type, c.hive_type
                )));
            }
            None => merged.columns.push(c.clone()),
        }
    }
    Ok(merged)
}

fn keys(k: &[ColumnDef]) -> String {
    k.iter()
        .map(|c| format!("{} {}", c.name, c.hive_type))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The time now, as a catalog or a compaction sees it (tests give their own).
pub type Clock = std::sync::Arc<dyn Fn() -> chrono::DateTime<chrono::Utc> + Send + Sync>;

/// The catalog kept in the lake under `_sluice/catalog/`.
#[derive(Clone)]
pub struct LocalCatalog {
    lake: Location,
    /// For the age of a table's lock.
    clock: Clock,
}

impl std::fmt::Debug for LocalCatalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LocalCatalog({})", self.lake.url)
    }
}

impl LocalCatalog {
    pub fn new(lake: &Location) -> Self {
        Self::with_clock(lake, std::sync::Arc::new(chrono::Utc::now))
    }

    /// The local catalog of `lake`, reading the time from `clock`.
    pub fn with_clock(lake: &Location, clock: Clock) -> Self {
        LocalCatalog {
            lake: lake.clone(),
            clock,
        }
    }

    fn table_path(&self, name: &str) -> Result<object_store::path::Path> {
        self.lake.child(&format!("{CATALOG_DIR}/{name}/table.json"))
    }

    async fn read_json<T: for<'de> Deserialize<'de>>(
        &self,
        path: &object_store::path::Path,
    ) -> Result<Option<T>> {
        self.lake.get_json(path).await
    }
}

impl LocalCatalog {
    /// Take the lock of a table's definition (`table.lock`, created only if
    /// absent); one older than a minute is taken to be left by a crash.
    async fn lock(&self, table: &str) -> Result<crate::lease::Held> {
        let path = self
            .lake
            .child(&format!("{CATALOG_DIR}/{table}/table.lock"))?;
        let ttl = std::time::Duration::from_secs(60);
        let wait = crate::retry::Policy {
            cap: std::time::Duration::from_millis(50),
            ..crate::retry::Policy::lease(std::time::Duration::from_secs(120))
        };
        let held = crate::lease::wait_for(
            self.lake.store.as_ref(),
            &path,
            ttl,
            || (self.clock)(),
            wait,
        )
        .await?;
        if let Some(held) = held {
            return Ok(held);
        }
        Err(Error::Unavailable(format!(
            "table '{table}': its definition stayed locked ({})",
            self.lake.url_of(&path)
        )))
    }
}

fn partition_id(p: &PartitionDef) -> String {
    hex::encode(&Sha256::digest(p.path.as_bytes())[..12])
}

fn create() -> PutOptions {
    PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    }
}

#[async_trait]
impl Catalog for LocalCatalog {
    async fn ensure_table(&self, table: &TableDef) -> Result<()> {
        let path = self.table_path(&table.name)?;
        let body = serde_json::to_vec_pretty(table).expect("serializes");
        for _ in 0..10 {
            match self
                .lake
                .store
                .put_opts(&path, PutPayload::from(body.clone()), create())
                .await
            {
                Ok(_) => return Ok(()),
                Err(object_store::Error::AlreadyExists { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            let Some(existing) = self.read_json::<TableDef>(&path).await? else {
                continue;
            };
            let merged = evolve(&existing, table)?;
            if merged == existing {
                return Ok(());
            }
            // Read, merge and write again under the table's lock, so that two
            // writers adding different columns at once both keep theirs.
            let lock = self.lock(&table.name).await?;
            let result = async {
                let existing = self.read_json::<TableDef>(&path).await?.unwrap_or(existing);
                let merged = evolve(&existing, table)?;
                if merged != existing {
                    let body = serde_json::to_vec_pretty(&merged).expect("serializes");
                    self.lake.store.put(&path, PutPayload::from(body)).await?;
                }
                Ok(())
            }
            .await;
            lock.release(self.lake.store.as_ref()).await?;
            return result;
        }
        Err(Error::Catalog(format!(
            "table '{}': could not create its definition",
            table.name
        )))
    }

    async fn add_partitions(&self, table: &str, partitions: &[PartitionDef]) -> Result<usize> {
        // One create-only PUT per partition, up to REQUESTS_AT_ONCE at once.
        let create_one = |p: &PartitionDef| {
            let path = self.lake.child(&format!(
                "{CATALOG_DIR}/{table}/partitions/{}.json",
                partition_id(p)
            ));
            let body = serde_json::to_vec(p).expect("serializes");
            async move {
                match self
                    .lake
                    .store
                    .put_opts(&path?, PutPayload::from(body), create())
                    .await
                {
                    Ok(_) => Ok(true),
                    Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
                    Err(e) => Err(Error::from(e)),
                }
            }
        };
        let created: Vec<bool> = futures::stream::iter(partitions)
            .map(create_one)
            .buffer_unordered(REQUESTS_AT_ONCE)
            .try_collect()
            .await?;
        Ok(created.into_iter().filter(|c| *c).count())
    }

    async fn table(&self, name: &str) -> Result<Option<TableDef>> {
        self.read_json(&self.table_path(name)?).await
    }

    async fn tables(&self) -> Result<Vec<TableDef>> {
        let prefix = self.lake.child(CATALOG_DIR)?;
        let listed = self.lake.store.list_with_delimiter(Some(&prefix)).await?;
        let mut out = Vec::new();
        for dir in listed.common_prefixes {
            if let Some(name) = dir.filename()
                && let Some(t) = self.table(name).await?
            {
                out.push(t);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn partitions(&self, table: &str) -> Result<Vec<PartitionDef>> {
        let prefix = self
            .lake
            .child(&format!("{CATALOG_DIR}/{table}/partitions"))?;
        let metas: Vec<_> = self.lake.store.list(Some(&prefix)).try_collect().await?;
        let mut out: Vec<PartitionDef> = Vec::with_capacity(metas.len());
        for m in metas {
            if let Some(p) = self.read_json::<PartitionDef>(&m.location).await? {
                out.push(p);
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    async fn set_partition_stats(
        &self,
        table: &str,
        partition: &PartitionDef,
        stats: &PartitionStats,
    ) -> Result<()> {
        let path = self.lake.child(&format!(
            "{CATALOG_DIR}/{table}/stats/{}.json",
            partition_id(partition)
        ))?;
        let body = serde_json::to_vec(stats).expect("serializes");
        self.lake.store.put(&path, PutPayload::from(body)).await?;
        Ok(())
    }

    async fn partition_stats(
        &self,
        table: &str,
        partition: &PartitionDef,
    ) -> Result<Option<PartitionStats>> {
        let path = self.lake.child(&format!(
            "{CATALOG_DIR}/{table}/stats/{}.json",
            partition_id(partition)
        ))?;
        self.read_json(&path).await
    }
}

/// The contract every catalog keeps, as one suite to run against each
/// implementation (the local catalog in unit tests, Glue in integration tests
/// against an S3/Glue API server). Panics on a breach; uses a table named `t`,
/// so give it an empty catalog (a fresh lake, a fresh Glue database).
#[cfg(any(test, feature = "testing"))]
pub mod contract {
    use super::*;

    fn col(n: &str, t: &str) -> ColumnDef {
        ColumnDef {
            name: n.into(),
            hive_type: t.into(),
        }
    }

    /// A table `t` partitioned by `dt`, with these columns.
    pub fn table(cols: Vec<ColumnDef>) -> TableDef {
        TableDef {
            name: "t".into(),
            location: "t".into(),
            columns: cols,
            partition_keys: vec![col("dt", "date")],
            format: TableFormat::Hive,
            compression: Some("zstd".into()),
        }
    }

    /// Run the suite.
    pub async fn run(c: &dyn Catalog) {
        let t = table(vec![col("a", "bigint")]);
        c.ensure_table(&t).await.unwrap();
        c.ensure_table(&t).await.unwrap();
        assert_eq!(c.table("t").await.unwrap(), Some(t.clone()));
        assert_eq!(c.table("missing").await.unwrap(), None);
        // A new column is added; a changed type is refused, naming the column.
        let wider = table(vec![col("a", "bigint"), col("b", "string")]);
        c.ensure_table(&wider).await.unwrap();
        assert_eq!(c.table("t").await.unwrap(), Some(wider.clone()));
        let e = c
            .ensure_table(&table(vec![col("a", "string")]))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("column 'a'") && e.contains("bigint"), "{e}");
        // An older writer without the new column changes nothing.
        c.ensure_table(&t).await.unwrap();
        assert_eq!(c.table("t").await.unwrap(), Some(wider));
        let p = |v: &str| PartitionDef {
            values: vec![Some(v.into())],
            path: format!("dt={v}"),
        };
        assert_eq!(
            c.add_partitions("t", &[p("2026-01-01"), p("2026-01-02")])
                .await
                .unwrap(),
            2
        );
        assert_eq!(
            c.add_partitions("t", &[p("2026-01-02"), p("2026-01-03")])
                .await
                .unwrap(),
            1
        );
        // A null partition value round-trips.
        let null = PartitionDef {
            values: vec![None],
            path: "dt=__HIVE_DEFAULT_PARTITION__".into(),
        };
        assert_eq!(
            c.add_partitions("t", std::slice::from_ref(&null))
                .await
                .unwrap(),
            1
        );
        // More than one batch (Glue takes at most 100 per call).
        let many: Vec<_> = (0..230).map(|i| p(&format!("2027-{i:03}"))).collect();
        assert_eq!(c.add_partitions("t", &many).await.unwrap(), 230);
        assert_eq!(c.add_partitions("t", &many).await.unwrap(), 0);
        let got = c.partitions("t").await.unwrap();
        assert_eq!(got.len(), 234);
        let paths: Vec<_> = got.iter().take(3).map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["dt=2026-01-01", "dt=2026-01-02", "dt=2026-01-03"]);
        assert!(got.contains(&null), "{:?}", &got[230..]);
        assert_eq!(c.tables().await.unwrap().len(), 1);
        // Figures recorded after compaction, replaced by later ones.
        let first = p("2026-01-01");
        assert_eq!(c.partition_stats("t", &first).await.unwrap(), None);
        let stats = PartitionStats {
            files: 3,
            bytes: 3000,
            rows: 42,
        };
        c.set_partition_stats("t", &first, &stats).await.unwrap();
        assert_eq!(c.partition_stats("t", &first).await.unwrap(), Some(stats));
        let fewer = PartitionStats {
            files: 1,
            bytes: 2900,
            rows: 42,
        };
        c.set_partition_stats("t", &first, &fewer).await.unwrap();
        assert_eq!(c.partition_stats("t", &first).await.unwrap(), Some(fewer));
        c.set_partition_stats("t", &null, &PartitionStats::default())
            .await
            .unwrap();
        assert_eq!(
            c.partitions("t").await.unwrap().len(),
            234,
            "no partition is added"
        );
        // Four writers at once (the catalog function's concurrency, or a
        // duplicate delivery), each adding an overlapping run of partitions:
        // every partition ends up there once, and no call fails.
        let runs: Vec<Vec<PartitionDef>> = (0..4)
            .map(|k| {
                (0..30)
                    .map(|i| p(&format!("2028-{:03}", i + k * 10)))
                    .collect()
            })
            .collect();
        let calls = runs.iter().map(|run| async move {
            c.ensure_table(&table(vec![col("a", "bigint")])).await?;
            c.add_partitions("t", run).await
        });
        let added: usize = futures::future::join_all(calls)
            .await
            .into_iter()
            .map(|r| r.expect("a concurrent writer succeeds"))
            .sum();
        assert!(added >= 60, "{added} added, 60 new");
        let got = c.partitions("t").await.unwrap();
        let mut paths: Vec<&str> = got.iter().map(|p| p.path.as_str()).collect();
        paths.sort();
        paths.dedup();
        assert_eq!((got.len(), paths.len()), (294, 294), "each partition once");
    }

    /// Four writers evolving table `t2` at once, each adding a column of its
    /// own (chunks of an `evolve` table finding different fields): every
    /// column is kept.
    pub async fn concurrent_evolution(c: &dyn Catalog) {
        let base = || vec![col("a", "bigint")];
        let mut t = table(base());
        t.name = "t2".into();
        t.location = "t2".into();
        c.ensure_table(&t).await.unwrap();
        let calls = (0..4).map(|k| {
            let mut t = t.clone();
            t.columns.push(col(&format!("w{k}"), "int"));
            async move { c.ensure_table(&t).await }
        });
        for r in futures::future::join_all(calls).await {
            r.expect("a concurrent writer succeeds");
        }
        let got = c.table("t2").await.unwrap().unwrap();
        let names: Vec<&str> = got.columns.iter().map(|c| c.name.as_str()).collect();
        for w in ["a", "w0", "w1", "w2", "w3"] {
            assert!(
                names.contains(&w),
                "column {w} lost by a concurrent writer: {names:?}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::contract::table;

    fn col(n: &str, t: &str) -> ColumnDef {
        ColumnDef {
            name: n.into(),
            hive_type: t.into(),
        }
    }

    #[tokio::test]
    async fn local_catalog_keeps_the_contract_in_memory_and_on_disk() {
        contract::run(&LocalCatalog::new(&Location::memory())).await;
        contract::concurrent_evolution(&LocalCatalog::new(&Location::memory())).await;
        let dir = tempfile::tempdir().unwrap();
        let on_disk =
            LocalCatalog::new(&Location::open(dir.path().to_str().unwrap(), true).unwrap());
        contract::run(&on_disk).await;
        contract::concurrent_evolution(&on_disk).await;
    }

    #[tokio::test]
    async fn concurrent_writers_agree() {
        let lake = Location::memory();
        let mut tasks = Vec::new();
        for i in 0..8 {
            let c = LocalCatalog::new(&lake);
            tasks.push(tokio::spawn(async move {
                let t = table(vec![col("a", "bigint")]);
                c.ensure_table(&t).await.unwrap();
                let parts: Vec<_> = (0..20)
                    .map(|d| PartitionDef {
                        values: vec![Some(format!("{}", (d + i) % 20))],
                        path: format!("dt={}", (d + i) % 20),
                    })
                    .collect();
                c.add_partitions("t", &parts).await.unwrap()
            }));
        }
        let mut added = 0;
        for t in tasks {
            added += t.await.unwrap();
        }
        assert_eq!(added, 20);
        assert_eq!(
            LocalCatalog::new(&lake)
                .partitions("t")
                .await
                .unwrap()
                .len(),
            20
        );
    }
}
