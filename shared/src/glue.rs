//! The [`Catalog`] on the AWS Glue Data Catalog: tables defined as Athena,
//! Spark and Trino need them for Parquet, partitions added in batches.
//!
//! - A table is an `EXTERNAL_TABLE` with `classification=parquet`,
//!   `ParquetHiveSerDe` and `MapredParquetInputFormat`/`OutputFormat`, Hive
//!   column types and the partition keys; its location is `<lake>/<table>/`.
//! - Partitions go in with `BatchCreatePartition`, at most 100 per call; one
//!   that exists already counts as success.
//! - Throttling, concurrent modification and internal errors are retried
//!   with exponential backoff and jitter; what is still failing after that
//!   is [`Error::Unavailable`] (retryable by the caller).
//! - New columns are added with `UpdateTable`; a changed type is refused,
//!   naming the column ([`crate::catalog::evolve`]).
//! - A Delta table (`format = "delta"`) is registered as Athena reads it
//!   natively: `table_type = DELTA`, `spark.sql.sources.provider = delta`,
//!   every column, no partition keys and no partitions (its log has them).

use async_trait::async_trait;
use aws_sdk_glue::Client;
use aws_sdk_glue::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_glue::types::{
    Column, DatabaseInput, PartitionInput, SerDeInfo, StorageDescriptor, TableInput,
};
use futures::{StreamExt, TryStreamExt};

use crate::catalog::{Catalog, PartitionDef, PartitionStats, TableDef, evolve};
use crate::commit::ColumnDef;
use crate::config::TableFormat;
use crate::error::{Error, Result};
use crate::retry::Policy;

/// Why a read-modify-write of Glue did not finish.
enum Lost {
    /// Another writer changed (or created) it between our read and write:
    /// read again and merge.
    Conflict,
    Failed(Error),
}

impl Lost {
    fn is_conflict(&self) -> bool {
        matches!(self, Lost::Conflict)
    }

    /// `attempt` (read, merge, write) again while another writer wins, under
    /// [`Policy::CONFLICT`].
    async fn until_settled<F, Fut>(what: &str, attempt: F) -> Result<()>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = std::result::Result<(), Lost>>,
    {
        let (outcome, attempts) = Policy::CONFLICT.run(what, Lost::is_conflict, attempt).await;
        outcome.map_err(|l| l.into_error(what, attempts))
    }

    fn into_error(self, what: &str, attempts: u32) -> Error {
        match self {
            Lost::Conflict => Error::Unavailable(format!(
                "{what}: still modified concurrently after {attempts} attempts; try again"
            )),
            Lost::Failed(e) => e,
        }
    }
}

/// The answer to one write of a read-merge-write attempt: the error `code`
/// `conflict` means another writer got there first (read and merge again);
/// any other error ends the attempts.
fn settle<T>(r: std::result::Result<T, Failure>, conflict: &str) -> std::result::Result<(), Lost> {
    match r {
        Ok(_) => Ok(()),
        Err(Failure::Service(code, _)) if code == conflict => Err(Lost::Conflict),
        Err(f) => Err(f.into_error().into()),
    }
}

impl From<Error> for Lost {
    fn from(e: Error) -> Lost {
        Lost::Failed(e)
    }
}

impl std::fmt::Display for Lost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Lost::Conflict => f.write_str("changed by another writer"),
            Lost::Failed(e) => e.fmt(f),
        }
    }
}

/// The value Hive and Glue use for a null partition value.
pub const HIVE_NULL: &str = "__HIVE_DEFAULT_PARTITION__";

const INPUT_FORMAT: &str = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat";
const OUTPUT_FORMAT: &str = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat";
const SERDE: &str = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe";
/// BatchCreatePartition takes at most this many partitions per call.
pub const PARTITION_BATCH: usize = 100;
/// BatchCreatePartition calls in flight at once for one table.
pub const PARTITION_CONCURRENCY: usize = 4;

/// Tables of one Glue database whose data lives under one lake root.
#[derive(Debug, Clone)]
pub struct GlueCatalog {
    client: Client,
    database: String,
    /// `s3://bucket/prefix` (no trailing `/`): table locations are under it.
    lake_url: String,
}

impl GlueCatalog {
    /// One `BatchCreatePartition` call (at most [`PARTITION_BATCH`]): how
    /// many of its partitions were new.
    async fn create_partitions(
        &self,
        table: &str,
        base: &str,
        def: &TableDef,
        batch: &[PartitionDef],
    ) -> Result<usize> {
        let inputs = batch
            .iter()
            .map(|p| {
                Ok(PartitionInput::builder()
                    .set_values(Some(
                        p.values
                            .iter()
                            .map(|v| v.clone().unwrap_or_else(|| HIVE_NULL.to_string()))
                            .collect(),
                    ))
                    .storage_descriptor(self.storage(
                        &format!("{base}{}/", p.path),
                        &def.columns,
                        None,
                    )?)
                    .build())
            })
            .collect::<Result<Vec<_>>>()?;
        let what = format!(
            "adding {} partitions to Glue table {}.{table}",
            inputs.len(),
            self.database
        );
        let out = retry(&what, || {
            self.client
                .batch_create_partition()
                .database_name(&self.database)
                .table_name(table)
                .set_partition_input_list(Some(inputs.clone()))
                .send()
        })
        .await
        .map_err(Failure::into_error)?;
        let mut failed = 0;
        let mut first_error = None;
        for e in out.errors() {
            let code = e.error_detail().and_then(|d| d.error_code()).unwrap_or("");
            if code == "AlreadyExistsException" {
                failed += 1;
                continue;
            }
            first_error.get_or_insert_with(|| {
                format!(
                    "{what}: partition ({}): {code}: {}",
                    e.partition_values().join(", "),
                    e.error_detail()
                        .and_then(|d| d.error_message())
                        .unwrap_or("")
                )
            });
        }
        if let Some(message) = first_error {
            return Err(Error::Unavailable(message));
        }
        Ok::<_, Error>(batch.len() - failed)
    }
    /// A catalog in `database` for the lake at `lake_url`. With
    /// `create_database`, the database is created if missing.
    pub async fn new(
        client: Client,
        database: &str,
        lake_url: &str,
        create_database: bool,
    ) -> Result<GlueCatalog> {
        let catalog = GlueCatalog {
            client,
            database: database.to_string(),
            lake_url: lake_url.trim_end_matches('/').to_string(),
        };
        if create_database {
            let input = DatabaseInput::builder()
                .name(database)
                .description("Tables written by Sluice")
                .build()
                .map_err(|e| Error::Catalog(format!("database '{database}': {e}")))?;
            let r = retry(&format!("creating Glue database '{database}'"), || {
                catalog
                    .client
                    .create_database()
                    .database_input(input.clone())
                    .send()
            })
            .await;
            match r {
                Ok(_) => {}
                Err(Failure::Service(code, _)) if code == "AlreadyExistsException" => {}
                Err(f) => return Err(f.into_error()),
            }
        }
        Ok(catalog)
    }

    /// The database this catalog writes to.
    pub fn database(&self) -> &str {
        &self.database
    }

    fn table_location(&self, table: &TableDef) -> String {
        format!("{}/{}/", self.lake_url, table.location)
    }

    /// Parquet files of `columns` at `location`; with `path`, the SerDe's
    /// `path` parameter (how Spark finds a Delta table's root).
    fn storage(
        &self,
        location: &str,
        columns: &[ColumnDef],
        path: Option<&str>,
    ) -> Result<StorageDescriptor> {
        let serde = SerDeInfo::builder()
            .serialization_library(SERDE)
            .parameters("serialization.format", "1");
        let serde = match path {
            Some(p) => serde.parameters("path", p),
            None => serde,
        };
        Ok(StorageDescriptor::builder()
            .set_columns(Some(glue_columns(columns)?))
            .location(location)
            .input_format(INPUT_FORMAT)
            .output_format(OUTPUT_FORMAT)
            .compressed(false)
            .serde_info(serde.build())
            .build())
    }

    fn table_input(&self, table: &TableDef) -> Result<TableInput> {
        if table.format == TableFormat::Delta {
            return self.delta_table_input(table);
        }
        let mut b = TableInput::builder()
            .name(&table.name)
            .description("Written by Sluice")
            .table_type("EXTERNAL_TABLE")
            .parameters("classification", "parquet")
            .parameters("EXTERNAL", "TRUE")
            .parameters("sluice.location", &table.location)
            .storage_descriptor(self.storage(&self.table_location(table), &table.columns, None)?)
            .set_partition_keys(Some(glue_columns(&table.partition_keys)?));
        if let Some(c) = &table.compression {
            b = b.parameters("parquet.compression", c.to_ascii_uppercase());
        }
        b.build()
            .map_err(|e| Error::Catalog(format!("table '{}': {e}", table.name)))
    }

    /// A Delta table as Athena reads it natively (`table_type = DELTA`) and
    /// Spark and Trino find it (`spark.sql.sources.provider = delta`, the
    /// SerDe's `path`): its location and every column (partition columns
    /// too, as Glue consumers list them), and no partition keys: the
    /// table's log holds its files and partitions.
    fn delta_table_input(&self, table: &TableDef) -> Result<TableInput> {
        let location = self.table_location(table);
        let mut columns = table.columns.clone();
        columns.extend(table.partition_keys.iter().cloned());
        let keys: Vec<&str> = table
            .partition_keys
            .iter()
            .map(|k| k.name.as_str())
            .collect();
        let storage = self.storage(&location, &columns, Some(&location))?;
        TableInput::builder()
            .name(&table.name)
            .description("Delta Lake table written by Sluice")
            .table_type("EXTERNAL_TABLE")
            .parameters("table_type", "DELTA")
            .parameters("spark.sql.sources.provider", "delta")
            .parameters("EXTERNAL", "TRUE")
            .parameters("sluice.location", &table.location)
            .parameters("sluice.partition_keys", keys.join(","))
            .storage_descriptor(storage)
            .build()
            .map_err(|e| Error::Catalog(format!("table '{}': {e}", table.name)))
    }

    fn table_def(&self, t: &aws_sdk_glue::types::Table) -> Result<TableDef> {
        let name = t.name().to_string();
        let sd = t.storage_descriptor();
        let params = t.parameters();
        let location = params
            .and_then(|p| p.get("sluice.location").cloned())
            .or_else(|| {
                sd.and_then(|s| s.location()).map(|l| {
                    l.trim_end_matches('/')
                        .strip_prefix(&format!("{}/", self.lake_url))
                        .unwrap_or(l)
                        .to_string()
                })
            })
            .unwrap_or_else(|| name.clone());
        if params.and_then(|p| p.get("table_type")).map(String::as_str) == Some("DELTA") {
            let keys: Vec<String> = params
                .and_then(|p| p.get("sluice.partition_keys"))
                .map(|k| {
                    k.split(',')
                        .filter(|k| !k.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            let (partition_keys, columns) =
                sluice_columns(sd.map(|s| s.columns()).unwrap_or_default())
                    .into_iter()
                    .partition(|c| keys.contains(&c.name));
            return Ok(TableDef {
                columns,
                partition_keys,
                format: TableFormat::Delta,
                compression: None,
                location,
                name,
            });
        }
        Ok(TableDef {
            columns: sluice_columns(sd.map(|s| s.columns()).unwrap_or_default()),
            partition_keys: sluice_columns(t.partition_keys()),
            format: TableFormat::Hive,
            compression: params
                .and_then(|p| p.get("parquet.compression"))
                .map(|c| c.to_ascii_lowercase()),
            location,
            name,
        })
    }

    /// A partition of `table`, if it exists.
    async fn get_partition(
        &self,
        table: &str,
        values: &[String],
    ) -> Result<Option<aws_sdk_glue::types::Partition>> {
        let got = retry(
            &format!(
                "reading partition ({}) of Glue table {}.{table}",
                values.join(", "),
                self.database
            ),
            || {
                self.client
                    .get_partition()
                    .database_name(&self.database)
                    .table_name(table)
                    .set_partition_values(Some(values.to_vec()))
                    .send()
            },
        )
        .await;
        match got {
            Ok(out) => Ok(out.partition),
            Err(Failure::Service(code, _)) if code == "EntityNotFoundException" => Ok(None),
            Err(f) => Err(f.into_error()),
        }
    }

    async fn get(&self, name: &str) -> Result<Option<TableDef>> {
        Ok(self.get_versioned(name).await?.map(|(t, _)| t))
    }

    /// A table and its Glue version id (for updates that must not overwrite
    /// a concurrent writer's).
    async fn get_versioned(&self, name: &str) -> Result<Option<(TableDef, Option<String>)>> {
        let r = retry(
            &format!("reading Glue table {}.{name}", self.database),
            || {
                self.client
                    .get_table()
                    .database_name(&self.database)
                    .name(name)
                    .send()
            },
        )
        .await;
        match r {
            Ok(out) => match out.table() {
                Some(t) => Ok(Some((
                    self.table_def(t)?,
                    t.version_id().map(str::to_string),
                ))),
                None => Ok(None),
            },
            Err(Failure::Service(code, _)) if code == "EntityNotFoundException" => Ok(None),
            Err(f) => Err(f.into_error()),
        }
    }
}

#[async_trait]
impl Catalog for GlueCatalog {
    async fn ensure_table(&self, table: &TableDef) -> Result<()> {
        let what = format!("Glue table {}.{}", self.database, table.name);
        let what = what.as_str();
        let attempt = || async move {
            let Some((existing, version)) = self.get_versioned(&table.name).await? else {
                let input = self.table_input(table)?;
                let r = retry(&format!("creating {what}"), || {
                    self.client
                        .create_table()
                        .database_name(&self.database)
                        .table_input(input.clone())
                        .send()
                })
                .await;
                // Another writer created it first: check it as an existing table.
                return settle(r, "AlreadyExistsException");
            };
            let merged = evolve(&existing, table)?;
            if merged == existing {
                return Ok::<(), Lost>(());
            }
            let input = self.table_input(&merged)?;
            // With the version read, Glue refuses the update if another
            // writer changed the table since (ConcurrentModificationException):
            // then read, merge and try again, so no writer's columns are lost.
            let r = retry_with(&format!("adding columns to {what}"), true, || {
                self.client
                    .update_table()
                    .database_name(&self.database)
                    .table_input(input.clone())
                    .set_version_id(version.clone())
                    .send()
            })
            .await;
            settle(r, "ConcurrentModificationException")
        };
        Lost::until_settled(what, attempt).await
    }

    async fn add_partitions(&self, table: &str, partitions: &[PartitionDef]) -> Result<usize> {
        if partitions.is_empty() {
            return Ok(0);
        }
        let def = self.get(table).await?.ok_or_else(|| {
            Error::Catalog(format!(
                "Glue table {}.{table} does not exist; cannot add partitions",
                self.database
            ))
        })?;
        let base = self.table_location(&def);
        // Batches of 100, [`PARTITION_CONCURRENCY`] calls in flight: a
        // backfill's page of 10^4 partitions in a few seconds.
        let calls: Vec<_> = partitions
            .chunks(PARTITION_BATCH)
            .map(|batch| self.create_partitions(table, &base, &def, batch))
            .collect();
        let added = futures::stream::iter(calls)
            .buffer_unordered(PARTITION_CONCURRENCY)
            .try_fold(0, |sum, n| async move { Ok(sum + n) })
            .await?;
        Ok(added)
    }

    async fn table(&self, name: &str) -> Result<Option<TableDef>> {
        self.get(name).await
    }

    async fn tables(&self) -> Result<Vec<TableDef>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = retry(&format!("listing Glue tables of {}", self.database), || {
                self.client
                    .get_tables()
                    .database_name(&self.database)
                    .set_next_token(token.clone())
                    .send()
            })
            .await
            .map_err(Failure::into_error)?;
            for t in page.table_list() {
                out.push(self.table_def(t)?);
            }
            token = page.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn partitions(&self, table: &str) -> Result<Vec<PartitionDef>> {
        let Some(def) = self.get(table).await? else {
            return Ok(Vec::new());
        };
        let base = self.table_location(&def);
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = retry(
                &format!("listing partitions of Glue table {}.{table}", self.database),
                || {
                    self.client
                        .get_partitions()
                        .database_name(&self.database)
                        .table_name(table)
                        .set_next_token(token.clone())
                        .send()
                },
            )
            .await
            .map_err(Failure::into_error)?;
            for p in page.partitions() {
                let values: Vec<Option<String>> = p
                    .values()
                    .iter()
                    .map(|v| (v != HIVE_NULL).then(|| v.clone()))
                    .collect();
                let location = p.storage_descriptor().and_then(|s| s.location());
                let path = match location.and_then(|l| l.strip_prefix(&base)) {
                    Some(rest) => rest.trim_end_matches('/').to_string(),
                    None => def
                        .partition_keys
                        .iter()
                        .zip(p.values())
                        .map(|(k, v)| format!("{}={v}", k.name))
                        .collect::<Vec<_>>()
                        .join("/"),
                };
                out.push(PartitionDef { values, path });
            }
            token = page.next_token().map(str::to_string);
            if token.is_none() {
                break;
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
        let values = glue_values(partition);
        let what = format!(
            "partition ({}) of Glue table {}.{table}",
            values.join(", "),
            self.database
        );
        let (what, values) = (what.as_str(), &values);
        let attempt = || async move {
            let Some(p) = self.get_partition(table, values).await? else {
                return Err(Error::Catalog(format!("{what} does not exist")).into());
            };
            let mut parameters = p.parameters().cloned().unwrap_or_default();
            parameters.insert("numFiles".into(), stats.files.to_string());
            parameters.insert("totalSize".into(), stats.bytes.to_string());
            parameters.insert("numRows".into(), stats.rows.to_string());
            let input = PartitionInput::builder()
                .set_values(Some(values.clone()))
                .set_storage_descriptor(p.storage_descriptor().cloned())
                .set_parameters(Some(parameters))
                .build();
            // A conflict comes back at once: the loop reads the partition
            // again rather than sending the stale input again.
            let r = retry_with(&format!("updating {what}"), true, || {
                self.client
                    .update_partition()
                    .database_name(&self.database)
                    .table_name(table)
                    .set_partition_value_list(Some(values.clone()))
                    .partition_input(input.clone())
                    .send()
            })
            .await;
            settle(r, "ConcurrentModificationException")
        };
        Lost::until_settled(what, attempt).await
    }

    async fn partition_stats(
        &self,
        table: &str,
        partition: &PartitionDef,
    ) -> Result<Option<PartitionStats>> {
        let p = self.get_partition(table, &glue_values(partition)).await?;
        let Some(params) = p.and_then(|p| p.parameters) else {
            return Ok(None);
        };
        let num = |k: &str| params.get(k).and_then(|v| v.parse::<u64>().ok());
        Ok(match (num("numFiles"), num("totalSize"), num("numRows")) {
            (Some(files), Some(bytes), Some(rows)) => Some(PartitionStats { files, bytes, rows }),
            _ => None,
        })
    }
}

/// A partition's values as Glue stores them (null as Hive's default partition).
fn glue_values(p: &PartitionDef) -> Vec<String> {
    p.values
        .iter()
        .map(|v| v.clone().unwrap_or_else(|| HIVE_NULL.to_string()))
        .collect()
}

fn glue_columns(columns: &[ColumnDef]) -> Result<Vec<Column>> {
    columns
        .iter()
        .map(|c| {
            Column::builder()
                .name(&c.name)
                .r#type(&c.hive_type)
                .build()
                .map_err(|e| Error::Catalog(format!("column '{}': {e}", c.name)))
        })
        .collect()
}

fn sluice_columns(columns: &[Column]) -> Vec<ColumnDef> {
    columns
        .iter()
        .map(|c| ColumnDef {
            name: c.name().to_string(),
            hive_type: c.r#type().unwrap_or("string").to_string(),
        })
        .collect()
}

/// A failed call, after retries.
enum Failure {
    /// The service answered with an error code (and message).
    Service(String, String),
    /// Out of retries on a retryable error, or no answer at all.
    Unavailable(String),
}

impl Failure {
    fn into_error(self) -> Error {
        match self {
            Failure::Service(_, message) => Error::Catalog(message),
            Failure::Unavailable(message) => Error::Unavailable(message),
        }
    }
}

/// Error codes worth another try.
fn retryable(code: &str) -> bool {
    matches!(
        code,
        "ThrottlingException"
            | "ConcurrentModificationException"
            | "InternalServiceException"
            | "OperationTimeoutException"
            | "ResourceNumberLimitExceededException"
    ) || code.contains("Throttl")
}

/// Call `f` until it succeeds, fails for good, or runs out of attempts
/// ([`Policy::SERVICE`]).
async fn retry<T, E, R, F, Fut>(what: &str, f: F) -> std::result::Result<T, Failure>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<T, SdkError<E, R>>>,
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    retry_with(what, false, f).await
}

/// [`retry`], but a `ConcurrentModificationException` is returned at once
/// (the caller reads again and retries with what it read).
async fn retry_with<T, E, R, F, Fut>(
    what: &str,
    conflict_is_final: bool,
    mut f: F,
) -> std::result::Result<T, Failure>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<T, SdkError<E, R>>>,
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let worth = |err: &SdkError<E, R>| match err {
        SdkError::ServiceError(s) => {
            let code = s.err().code().unwrap_or("Unknown");
            retryable(code) && !(conflict_is_final && code == "ConcurrentModificationException")
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        _ => false,
    };
    let (outcome, attempts) = Policy::SERVICE.run(what, &worth, &mut f).await;
    let err = match outcome {
        Ok(v) => return Ok(v),
        Err(e) => e,
    };
    if worth(&err) {
        return Err(Failure::Unavailable(format!(
            "{what}: still failing after {attempts} attempts: {}",
            DisplayErrorContext(&err)
        )));
    }
    let message = format!("{what}: {}", DisplayErrorContext(&err));
    Err(match &err {
        SdkError::ServiceError(s) => {
            Failure::Service(s.err().code().unwrap_or("Unknown").to_string(), message)
        }
        _ => Failure::Unavailable(message),
    })
}
