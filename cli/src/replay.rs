//! `sluice replay`: Kinesis batches the stream function's event source
//! mapping gave up on, loaded from their failure records
//! ([`sluice::stream::replay`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use sluice::catalog::Catalog;
use sluice::config::Pipeline;
use sluice::pipeline::{Counters, Engine};
use sluice::read::ReadOptions;
use sluice::sink::{Batch, Lease};
use sluice::store::{AwsOptions, Location};
use sluice::stream::replay::{GivenUp, failure_records, replay};

/// The catalog function's committer lease (a replay commits beside it).
const LEASE: Lease = Lease {
    ttl: Duration::from_secs(360),
    wait: Duration::from_secs(60),
};

/// What a replay needs: the engine, the lake and its catalog, Kinesis.
struct Replayer {
    engine: Engine,
    lake: Location,
    catalog: Arc<dyn Catalog>,
    kinesis: aws_sdk_kinesis::Client,
    counters: Arc<Counters>,
}

impl Replayer {
    /// Load the records of `given` the shard never loaded and publish the
    /// chunk (the catalog function would too, on its commit record's
    /// event; publishing twice changes nothing).
    async fn one(&self, given: &GivenUp) -> Result<()> {
        let outcome = replay(
            &self.engine,
            &self.lake,
            &self.kinesis,
            given,
            &ReadOptions::default(),
            &self.counters,
        )
        .await?;
        if !outcome.commits.is_empty() {
            self.engine
                .sink(&outcome.table)
                .publish(
                    Batch::new(&self.lake, self.catalog.as_ref(), &outcome.commits).leased(LEASE),
                )
                .await
                .with_context(|| format!("{given}: publishing into table {}", outcome.table))?;
        }
        println!(
            "{given}: {} records, {} loaded into table {}, {} loaded before",
            outcome.records,
            outcome.records - outcome.already_loaded - outcome.null_values,
            outcome.table,
            outcome.already_loaded
        );
        Ok(())
    }
}

/// Replay the failure records in `files` and, with `queue`, every message
/// of that SQS queue (each deleted once its batches are loaded).
pub async fn run(
    config: &Path,
    lake: Option<String>,
    queue: Option<String>,
    files: Vec<PathBuf>,
) -> Result<()> {
    if queue.is_none() && files.is_empty() {
        bail!(
            "name failure record files, or the stream's failure queue with --queue <url> (the stack's StreamFailureQueue)"
        );
    }
    let pipeline = Pipeline::from_file(config)?;
    let root = lake.unwrap_or_else(|| pipeline.lake_root.clone());
    let lake = Location::open(&root, true).with_context(|| format!("lake {root}"))?;
    let (engine, catalog) = crate::engine_on(pipeline, &lake, true).await?;
    let sdk = AwsOptions::default().sdk_config().await;
    let replayer = Replayer {
        engine,
        lake,
        catalog,
        kinesis: aws_sdk_kinesis::Client::new(&sdk),
        counters: Arc::new(Counters::default()),
    };
    let (mut done, mut failed) = (0usize, 0usize);
    let mut tally = |r: Result<()>, what: &dyn std::fmt::Display| match r {
        Ok(()) => {
            done += 1;
            true
        }
        Err(e) => {
            eprintln!("{what}: {}", crate::one_line(&format!("{e:#}")));
            failed += 1;
            false
        }
    };
    for f in &files {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?;
        for given in failure_records(&text, &f.display().to_string())? {
            tally(replayer.one(&given).await, &given);
        }
    }
    if let Some(url) = queue {
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        loop {
            let got = sqs
                .receive_message()
                .queue_url(&url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                // Past a replay's longest run: a message whose batch
                // failed comes back only after this command is over.
                .visibility_timeout(900)
                .send()
                .await
                .map_err(|e| sqs_failed(format!("receiving from {url}"), e))?;
            let messages = got.messages.unwrap_or_default();
            if messages.is_empty() {
                break;
            }
            for m in messages {
                let id = m.message_id.clone().unwrap_or_default();
                let what = format!("message {id} of {url}");
                let records = failure_records(m.body.as_deref().unwrap_or_default(), &what);
                let mut all = true;
                match records {
                    Ok(records) => {
                        for given in records {
                            all &= tally(replayer.one(&given).await, &given);
                        }
                    }
                    Err(e) => all = tally(Err(e.into()), &what),
                }
                if all && let Some(receipt) = &m.receipt_handle {
                    sqs.delete_message()
                        .queue_url(&url)
                        .receipt_handle(receipt)
                        .send()
                        .await
                        .map_err(|e| {
                            sqs_failed(format!("deleting {what} (its batches are loaded)"), e)
                        })?;
                }
            }
        }
    }
    if failed > 0 {
        bail!(
            "{failed} of {} batches failed (their messages stay in the queue); run again once mended: records loaded are not loaded twice",
            done + failed
        );
    }
    println!("{done} batches replayed");
    Ok(())
}

/// An SQS call that failed, with every cause AWS gave.
fn sqs_failed(what: String, e: impl std::error::Error) -> anyhow::Error {
    anyhow::anyhow!("{what}: {}", aws_sdk_sqs::error::DisplayErrorContext(e))
}
