//! The catalog function: commit records in, tables and partitions registered.
//!
//! Triggered by the commit records the transform writes (an S3 notification
//! or EventBridge event, directly or through SQS), or by a direct payload:
//! `{"bucket", "prefix"}` over `_sluice/commits/`, or the planner's
//! `{"manifest": {...}}` (what the backfill workflow sends after its Map),
//! which registers the commit record of every task in the manifest and names
//! the tasks that have none, so a failed Map item cannot go unnoticed. The
//! records of one invocation are grouped by table and published through the
//! table's sink (`sluice::sink`): a Hive table's partitions in batches of
//! 100, a Delta table's batch in one commit, a CDC table's changes merged,
//! both under the table's lease.
//! With SQS, a failure is reported for exactly the messages whose records it
//! concerns.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Instant;

use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sluice::catalog::commit_entries;
use sluice::commit::CommitRecord;
use sluice::config::TableFormat;
use sluice::event::{Target, decode, sqs_messages};
use sluice::layout::{COMMITS_DIR, MANIFESTS_DIR};
use sluice::messages::{Manifest, ManifestPayload, PartitionTask, TaskSpec};
use sluice::pipeline::CdcSummary;
use sluice::sink::{Batch, Lease};
use tracing::{Instrument, info, info_span, warn};

use crate::deps::Deps;
use crate::error::FunctionError;
use crate::metrics::{Record, Unit};

/// What the catalog function did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CatalogResponse {
    /// Commit records read.
    pub commits: usize,
    /// Tables created or checked, by name.
    pub tables: Vec<String>,
    /// Partitions that were new.
    pub partitions_added: usize,
    /// Objects that are not commit records, and events without work.
    pub ignored: Vec<String>,
    /// For a manifest: how many of its tasks have no commit record (they
    /// failed, or have not run).
    pub missing_total: usize,
    /// The first [`crate::planner::LISTED`] of them.
    pub missing: Vec<String>,
    /// Partitions queued for the compactor (`SLUICE_COMPACTION_QUEUE_URL`).
    pub compactions_queued: usize,
    /// What the merges of CDC tables did (all tables of the invocation).
    pub cdc: CdcSummary,
}

/// Handle one invocation.
pub async fn handle(deps: &Deps, event: Value) -> Result<Value, FunctionError> {
    let started = Instant::now();
    if let Some(messages) = sqs_messages(&event) {
        let mut response = CatalogResponse::default();
        let (loaded, failed) = crate::for_each_message(messages, "message", |m| async move {
            let mut ignored = Vec::new();
            let records = load(deps, &m.json()?, &mut ignored).await?;
            Ok((records, ignored))
        })
        .await;
        let mut failed: HashSet<String> = failed.into_iter().collect();
        // (message id, its records)
        let loaded: Vec<(String, Vec<CommitRecord>)> = loaded
            .into_iter()
            .map(|(id, (records, ignored))| {
                response.ignored.extend(ignored);
                (id, records)
            })
            .collect();
        let all: Vec<&CommitRecord> = loaded.iter().flat_map(|(_, r)| r).collect();
        let (done, errors) = register(deps, &all, &mut response).await;
        for (table, e) in &errors {
            warn!(table = %table, retryable = e.retryable, error = %e, "registration failed");
            for (id, records) in &loaded {
                if records.iter().any(|r| &r.table == table) {
                    failed.insert(id.clone());
                }
            }
        }
        response.compactions_queued = queue_compactions(deps, &all, &done).await;
        response.tables = done;
        emit(&response, failed.len(), started);
        return Ok(crate::sqs_batch_response(failed));
    }
    let mut response = CatalogResponse::default();
    let from_manifest = event.get("manifest").is_some();
    let records = if from_manifest {
        let payload: ManifestPayload = serde_json::from_value(event).map_err(|e| {
            FunctionError::permanent(format!(
                "not a manifest payload (expected {{\"manifest\": {{\"url\", \"key\", ...}}}} as the planner answers): {e}"
            ))
        })?;
        manifest_records(deps, &payload.manifest, &mut response).await?
    } else {
        load(deps, &event, &mut response.ignored).await?
    };
    let all: Vec<&CommitRecord> = records.iter().collect();
    let (done, mut errors) = register(deps, &all, &mut response).await;
    if !from_manifest {
        // (The backfill workflow compacts what its manifest touched itself.)
        response.compactions_queued = queue_compactions(deps, &all, &done).await;
    }
    response.tables = done;
    emit(&response, errors.len(), started);
    if let Some((_, e)) = errors.pop() {
        return Err(e);
    }
    Ok(crate::answer("registered", &response))
}

fn emit(r: &CatalogResponse, failed: usize, started: Instant) {
    Record::new("catalog")
        .metric("Commits", r.commits as f64, Unit::Count)
        .metric("PartitionsAdded", r.partitions_added as f64, Unit::Count)
        .metric("Failures", failed as f64, Unit::Count)
        .duration(started)
        .emit();
}

/// Read the commit record of every task in a planner's manifest; the tasks
/// without one are counted and named in `response.missing`.
pub async fn manifest_records(
    deps: &Deps,
    manifest: &Manifest,
    response: &mut CatalogResponse,
) -> Result<Vec<CommitRecord>, FunctionError> {
    let relative = manifest
        .url
        .strip_prefix(&format!("{}/", deps.lake.url))
        .filter(|r| r.starts_with(MANIFESTS_DIR))
        .ok_or_else(|| {
            FunctionError::permanent(format!(
                "manifest {} is not under the lake's {}/{MANIFESTS_DIR}/",
                manifest.url, deps.lake.url
            ))
        })?;
    let bytes = get(deps, relative).await?.ok_or_else(|| {
        FunctionError::permanent(format!("manifest {} does not exist", manifest.url))
    })?;
    let tasks: Vec<TaskSpec> = serde_json::from_slice(&bytes).map_err(|e| {
        FunctionError::permanent(format!(
            "manifest {}: not a JSON array of chunk tasks: {e}",
            manifest.url
        ))
    })?;
    let mut records = Vec::with_capacity(tasks.len());
    // The records are read [`READ_CONCURRENCY`] at a time, in the
    // manifest's order: 10,000 of them in seconds, not minutes.
    let mut read = futures::stream::iter(&tasks)
        .map(|t| async move {
            let path = t.commit_path();
            let url = format!("{}/{path}", deps.lake.url);
            let bytes = get(deps, &path).await?;
            Ok::<_, FunctionError>((t, url, bytes))
        })
        .buffered(READ_CONCURRENCY);
    while let Some((t, url, bytes)) = read.try_next().await? {
        match bytes {
            Some(bytes) => records.push(CommitRecord::from_json(&bytes, &url)?),
            None => {
                response.missing_total += 1;
                if response.missing.len() < crate::planner::LISTED {
                    response.missing.push(format!(
                        "{} chunk {} of {} (table {}): no commit record {url}",
                        t.source.url,
                        t.chunk.index + 1,
                        t.chunks,
                        t.table
                    ));
                }
            }
        }
    }
    if response.missing_total > 0 {
        warn!(
            manifest = %manifest.url,
            missing = response.missing_total,
            tasks = tasks.len(),
            "chunks without a commit record"
        );
    }
    Ok(records)
}

/// Commit records read at once (GETs of the lake's bucket in flight).
pub const READ_CONCURRENCY: usize = 32;

/// An object of the lake, or `None` if there is none.
async fn get(deps: &Deps, relative: &str) -> Result<Option<Vec<u8>>, FunctionError> {
    let path = deps.lake.child(relative)?;
    Ok(deps.lake.get_bytes(&path).await?.map(|b| b.to_vec()))
}

/// Read the commit records an (unwrapped) event names.
async fn load(
    deps: &Deps,
    event: &Value,
    ignored: &mut Vec<String>,
) -> Result<Vec<CommitRecord>, FunctionError> {
    let commits_url = format!("{}/{COMMITS_DIR}/", deps.lake.url);
    let mut urls = Vec::new();
    for target in decode(event).map_err(|e| FunctionError::permanent(e.to_string()))? {
        match target {
            Target::Ignored(what) => ignored.push(what),
            Target::Object(o) => {
                let url = o.url();
                if url.starts_with(&commits_url) && url.ends_with(".json") {
                    urls.push(url);
                } else {
                    info!(object = %url, "ignored: not a commit record");
                    ignored.push(format!("{url}: not a commit record under {commits_url}"));
                }
            }
            Target::Prefix { bucket, prefix } => {
                let url = format!("s3://{bucket}/{prefix}");
                let relative = url
                    .strip_prefix(&format!("{}/", deps.lake.url))
                    .filter(|r| r.starts_with(COMMITS_DIR))
                    .ok_or_else(|| {
                        FunctionError::permanent(format!(
                            "{url} is not under the lake's commit records {commits_url}"
                        ))
                    })?;
                let path = deps.lake.child(relative.trim_end_matches('/'))?;
                let metas: Vec<_> = deps
                    .lake
                    .store
                    .list(Some(&path))
                    .try_collect()
                    .await
                    .map_err(|e| FunctionError::from(sluice::Error::Store(e)))?;
                for m in metas {
                    if m.location.as_ref().ends_with(".json") {
                        urls.push(deps.lake.url_of(&m.location));
                    }
                }
            }
        }
    }
    futures::stream::iter(urls)
        .map(|url| async move {
            let relative = &url[deps.lake.url.len() + 1..];
            // A commit record is only ever replaced, never deleted, by the
            // transform: a missing one is an event that raced its PUT.
            let bytes = get(deps, relative).await?.ok_or_else(|| {
                FunctionError::retryable(format!("commit record {url} does not exist (yet)"))
            })?;
            Ok(CommitRecord::from_json(&bytes, &url)?)
        })
        .buffered(READ_CONCURRENCY)
        .try_collect()
        .await
}

/// Queue for the compactor each partition that the records of the
/// `registered` tables wrote to and that now has enough small files to
/// merge, delayed by the quiet period (at most SQS's 15 minutes). Best
/// effort: a failure is logged, and the compactor's scheduled sweep finds
/// the partition later.
async fn queue_compactions(deps: &Deps, records: &[&CommitRecord], registered: &[String]) -> usize {
    let Some(queue) = &deps.compaction_queue_url else {
        return 0;
    };
    let touched: BTreeSet<(String, String, String)> = records
        .iter()
        .filter(|r| registered.contains(&r.table))
        // A Delta table is compacted by OPTIMIZE (`sluice compact`), never
        // by rewriting the files its log names.
        .filter(|r| deps.engine().sink(&r.table).format() == TableFormat::Hive)
        .flat_map(|r| {
            let location = commit_entries(r).0.location;
            r.files
                .iter()
                .map(move |f| (r.table.clone(), location.clone(), f.partition_path.clone()))
        })
        .collect();
    let small = deps.compact.target_size / 4 * 3;
    let mut bodies = Vec::new();
    for (table, location, partition) in touched {
        let folder = if partition.is_empty() {
            location.trim_end_matches('/').to_string()
        } else {
            format!("{}/{partition}", location.trim_end_matches('/'))
        };
        let listed = match deps.lake.child(&folder) {
            Ok(prefix) => deps.lake.store.list_with_delimiter(Some(&prefix)).await,
            Err(e) => {
                warn!(table = %table, partition = %partition, error = %e, "cannot list the partition");
                continue;
            }
        };
        let small_files = match listed {
            Ok(l) => l
                .objects
                .iter()
                .filter(|m| m.location.as_ref().ends_with(".parquet") && m.size < small)
                .count(),
            Err(e) => {
                warn!(table = %table, partition = %partition, error = %e, "cannot list the partition");
                continue;
            }
        };
        if small_files >= deps.compact.min_files {
            let task = PartitionTask { table, partition };
            bodies.push(serde_json::to_string(&task).expect("serializes"));
        }
    }
    if bodies.is_empty() {
        return 0;
    }
    let delay = deps.compact.min_age.as_secs().min(900) as i32;
    match crate::send_messages(&deps.sqs, queue, &bodies, Some(delay)).await {
        Ok(n) => {
            info!(partitions = n, delay_s = delay, "queued for compaction");
            n
        }
        Err(e) => {
            warn!(error = %e, "could not queue partitions for compaction; the scheduled sweep will find them");
            0
        }
    }
}

/// A Delta table's committer lease outlives the longest invocation (the
/// function's timeout is 300 s): one left by a crashed invocation is taken
/// over after `ttl`; a batch waits at most `wait` for another invocation
/// committing the same table.
const COMMITTER_LEASE: Lease = Lease {
    ttl: std::time::Duration::from_secs(360),
    wait: std::time::Duration::from_secs(60),
};

/// Publish records grouped by table, each table through its sink (Hive:
/// the table and partitions in the catalog; Delta: one commit of the batch
/// under the table's lease; CDC: the batch's changes merged under the same
/// lease). Returns the tables done and, per table that failed, its error.
async fn register(
    deps: &Deps,
    records: &[&CommitRecord],
    response: &mut CatalogResponse,
) -> (Vec<String>, Vec<(String, FunctionError)>) {
    response.commits += records.len();
    let mut by_table: BTreeMap<&str, Vec<CommitRecord>> = BTreeMap::new();
    for r in records {
        by_table
            .entry(r.table.as_str())
            .or_default()
            .push((*r).clone());
    }
    let engine = deps.engine();
    let mut done = Vec::new();
    let mut errors = Vec::new();
    for (table, batch) in by_table {
        let sink = engine.sink(table);
        let published = sink
            .publish(Batch::new(&deps.lake, deps.catalog(), &batch).leased(COMMITTER_LEASE))
            .instrument(info_span!("table", table = %table))
            .await;
        match published {
            Ok(p) => {
                let mut metrics = Record::new("catalog").dimension("Table", table);
                if let Some(m) = &p.merged {
                    response.cdc.add(m);
                    metrics = metrics
                        .metric("ChangesMerged", m.changes as f64, Unit::Count)
                        .metric("RowsUpserted", m.upserted as f64, Unit::Count)
                        .metric("RowsDeleted", m.deleted as f64, Unit::Count)
                        .metric("ChangesStale", m.stale as f64, Unit::Count);
                }
                metrics = match sink.format() {
                    TableFormat::Delta => {
                        metrics.metric("DeltaChunksAdded", p.chunks_added as f64, Unit::Count)
                    }
                    TableFormat::Hive => {
                        response.partitions_added += p.partitions_added;
                        metrics.metric("PartitionsAdded", p.partitions_added as f64, Unit::Count)
                    }
                };
                metrics.emit();
                done.push(table.to_string());
            }
            Err(e) => errors.push((table.to_string(), FunctionError::from(e))),
        }
    }
    (done, errors)
}
