//! The stream function's throughput on one core (bench/README.md,
//! "Streams"): clickstream records in Kinesis events of `batch` records,
//! handed to the stream function's handler one after the other (base64,
//! decode, SQL, partitions, Parquet, commit record, checkpoint), beside the
//! file path (`sluice run`'s engine, one worker) on the same rows, in the
//! same process; then the cost per TB at Lambda arm64 prices.
//!
//!   cargo run --release -p sluice-tests --bin stream-bench -- <file.jsonl> <work dir> [batch] [latency ms] [generated|arrival]
//!
//! `file.jsonl` is clickstream records (`sluice generate`); the lakes go
//! under `work dir`. With a latency, every request to either lake waits that
//! long first (a model of S3, whose small PUTs and GETs take tens of
//! milliseconds; a local folder answers in microseconds). The records go in
//! the order generated, their event times scattered over a week, so every
//! batch touches every day; with `arrival`, in the order of their event
//! times, as a stream delivers them, so a batch touches one day or two. Both
//! paths get the same rows in the same order. Prints one JSON document.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures::FutureExt;
use object_store::ObjectStore;
use serde_json::json;
use sluice::fault::{Faults, FaultyStore};
use sluice::pipeline::{Counters, Engine, RunOptions};
use sluice::store::Location;
use sluice_functions::stream::StreamEvent;
use sluice_functions::{Deps, Settings, Transformer};
use sluice_tests::repo_root;

// The stream function's allocator (functions/stream/src/main.rs), so the
// handler allocates here as it does on Lambda.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Lambda arm64 price per GB-second and per request (us-east-1, first tier).
const GB_SECOND: f64 = 0.000_013_333_4;
const REQUEST: f64 = 0.000_000_2;
/// The template's StreamMemorySize: one full vCPU.
const MEMORY_MB: f64 = 1769.0;

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// A Kinesis event of `lines`, as the event source mapping builds it.
fn event(lines: &[&str], first: u64) -> serde_json::Value {
    let b64 = base64::engine::general_purpose::STANDARD;
    json!({"Records": lines.iter().enumerate().map(|(i, l)| {
        let seq = (first + i as u64).to_string();
        json!({
            "kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": "k", "sequenceNumber": seq,
                        "data": b64.encode(l), "approximateArrivalTimestamp": 1796212800.0},
            "eventSource": "aws:kinesis", "eventVersion": "1.0",
            "eventID": format!("shardId-000000000000:{seq}"),
            "eventName": "aws:kinesis:record", "awsRegion": "us-east-1",
            "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/clickstream-events",
        })
    }).collect::<Vec<_>>()})
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (file, work) = match (args.get(1), args.get(2)) {
        (Some(f), Some(w)) => (f.clone(), std::path::PathBuf::from(w)),
        _ => {
            eprintln!(
                "usage: stream-bench <file.jsonl> <work dir> [batch records] [latency ms] [generated|arrival]"
            );
            std::process::exit(2);
        }
    };
    let batch: usize = args.get(3).map_or(10_000, |b| b.parse().expect("a number"));
    let latency = Duration::from_millis(
        args.get(4)
            .map_or(0, |ms| ms.parse().expect("milliseconds")),
    );
    let arrival = match args.get(5).map(String::as_str) {
        None | Some("generated") => false,
        Some("arrival") => true,
        Some(other) => {
            eprintln!("stream-bench: order {other:?} is neither `generated` nor `arrival`");
            std::process::exit(2);
        }
    };
    // One core: everything on this thread.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(&file, &work, batch, latency, arrival));
}

/// `store`, with every request made to wait `latency` first.
fn slowed(store: Arc<dyn ObjectStore>, latency: Duration) -> Arc<dyn ObjectStore> {
    if latency.is_zero() {
        return store;
    }
    Arc::new(
        FaultyStore::new(store, Faults::None)
            .with_hook(Arc::new(move |_| tokio::time::sleep(latency).boxed())),
    )
}

/// A clickstream record's `event_time`, which sorts as text (ISO 8601, UTC).
fn event_time(line: &str) -> &str {
    let key = "\"event_time\":\"";
    line.find(key)
        .map(|i| &line[i + key.len()..])
        .and_then(|rest| rest.split_once('"'))
        .map_or("", |(time, _)| time)
}

async fn run(file: &str, work: &std::path::Path, batch: usize, latency: Duration, arrival: bool) {
    let text = std::fs::read_to_string(file).expect("the records file");
    let mut lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    if arrival {
        lines.sort_by_key(|l| event_time(l));
    }
    let bytes: u64 = lines.iter().map(|l| l.len() as u64 + 1).sum();
    // The events, built before the clock starts (Lambda hands them over).
    let events: Vec<String> = lines
        .chunks(batch)
        .enumerate()
        .map(|(i, c)| event(c, (i * batch) as u64 + 1).to_string())
        .collect();

    // 1. The stream function.
    let stream_lake = work.join("stream-lake");
    let mut deps = Deps::new(
        &Settings {
            config: repo_root()
                .join("examples/streams/sluice.toml")
                .to_string_lossy()
                .into_owned(),
            lake: Some(stream_lake.to_string_lossy().into_owned()),
            ..Settings::default()
        },
        Transformer,
    )
    .await
    .expect("the stream function starts");
    deps.lake.store = slowed(deps.lake.store.clone(), latency);
    let mut per_batch = Vec::new();
    let mut files = 0usize;
    let started = Instant::now();
    for e in &events {
        let t = Instant::now();
        // As the function's runtime reads the invocation's bytes.
        let event: StreamEvent = serde_json::from_str(e).unwrap();
        let r = sluice_functions::stream::handle_event(&deps, event, None)
            .await
            .expect("the batch loads");
        assert_eq!(r["batchItemFailures"], json!([]), "{r}");
        per_batch.push(t.elapsed().as_secs_f64());
    }
    let stream_secs = started.elapsed().as_secs_f64();
    let stream_peak = peak_rss_mb();
    for f in sluice_tests::files_under(&stream_lake) {
        if f.ends_with(".parquet") {
            files += 1;
        }
    }

    // 2. The file path on the same rows: the clickstream example's table
    // (the same SQL), one worker, 128 MiB chunks.
    let input = work.join("raw");
    std::fs::create_dir_all(input.join("clickstream")).unwrap();
    let mut records = lines.join("\n");
    records.push('\n');
    std::fs::write(input.join("clickstream/records.jsonl"), records).unwrap();
    let config =
        std::fs::read_to_string(repo_root().join("examples/clickstream/sluice.toml")).unwrap();
    let pipeline = sluice::config::Pipeline::from_toml(&config).unwrap();
    let engine = Arc::new(Engine::new(pipeline.clone()).await.unwrap());
    let mut file_lake = Location::open(&work.join("file-lake").to_string_lossy(), true).unwrap();
    file_lake.store = slowed(file_lake.store.clone(), latency);
    let input = Location::open(&input.to_string_lossy(), false).unwrap();
    let catalog = sluice::connect::catalog(
        &pipeline.catalog,
        &file_lake,
        &sluice::store::AwsOptions::default(),
    )
    .await
    .unwrap();
    let options = RunOptions {
        fail_fast: true,
        ..RunOptions::new(1, 128 << 20)
    };
    let started = Instant::now();
    let summary = sluice::pipeline::run(
        &engine,
        &input,
        &file_lake,
        &catalog,
        &options,
        &Arc::new(Counters::default()),
    )
    .await
    .expect("the file path runs");
    let file_secs = started.elapsed().as_secs_f64();

    per_batch.sort_by(f64::total_cmp);
    let mb = bytes as f64 / 1e6;
    let stream_mb_s = mb / stream_secs;
    let seconds_per_tb = 1e6 / stream_mb_s;
    let invocations_per_tb = 1e12 / (bytes as f64 / events.len() as f64);
    let cost_per_tb =
        seconds_per_tb * MEMORY_MB / 1024.0 * GB_SECOND + invocations_per_tb * REQUEST;
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({
            "records": lines.len(),
            "mb": (mb * 10.0).round() / 10.0,
            "batch_records": batch,
            "batches": events.len(),
            "request_latency_ms": latency.as_millis() as u64,
            "order": if arrival { "arrival" } else { "generated" },
            "stream": {
                "seconds": stream_secs,
                "records_per_s": (lines.len() as f64 / stream_secs).round(),
                "mb_per_s": stream_mb_s,
                "batch_seconds_p50": per_batch[per_batch.len() / 2],
                "batch_seconds_max": per_batch[per_batch.len() - 1],
                "files": files,
                "files_per_batch": files as f64 / events.len() as f64,
                "peak_rss_mb": stream_peak,
            },
            "file": {
                "seconds": file_secs,
                "records_per_s": (summary.rows_in as f64 / file_secs).round(),
                "mb_per_s": mb / file_secs,
                "rows_out": summary.rows_out,
                "files": summary.files_out,
            },
            "stream_vs_file_time": stream_secs / file_secs,
            "cost_per_tb_usd": {
                "stream_arm64_1769mb": cost_per_tb,
                "of_which_requests": invocations_per_tb * REQUEST,
            },
        }))
        .unwrap()
    );
}
