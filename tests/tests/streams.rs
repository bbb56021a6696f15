//! The stream function, fed as Lambda's event source mappings feed it:
//! Kinesis records put to moto's Kinesis API and read back with GetRecords
//! per shard, Kafka batches shaped as an MSK mapping sends them. DuckDB reads
//! back every good record exactly once, row for row; the malformed ones are
//! in quarantine under their sequence numbers; deliveries again, cut
//! otherwise or overlapping, write nothing new; a batch that fails at any
//! storage call answers the first record its shard has not loaded, and
//! delivering from there loads every record once.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use serde_json::{Value, json};
use sluice::fault::{FaultKind, Faults, FaultyStore};
use sluice_functions::{Deps, Settings, Transformer};
use sluice_tests::moto::moto;
use sluice_tests::{
    assert_same_rows, check_lake_matches_raw, compare_script, files_under, python, python_json,
    repo_root,
};

const EXAMPLE: &str = "examples/streams/sluice.toml";
/// The example stream's ARN, as its events name it.
const STREAM_ARN: &str = "arn:aws:kinesis:us-east-1:123456789012:stream/clickstream-events";
const SOURCE: &str = "examples/clickstream/raw/clickstream/events-00000.jsonl";

/// The stream function's dependencies, on the example pipeline, with its
/// lake in `lake` (a local folder).
async fn deps(lake: &Path) -> Deps {
    deps_with(&repo_root().join(EXAMPLE), lake).await
}

/// The stream function's dependencies on the pipeline `config`, with its
/// lake in `lake`.
async fn deps_with(config: &Path, lake: &Path) -> Deps {
    let settings = Settings {
        config: config.to_string_lossy().into_owned(),
        lake: Some(lake.to_string_lossy().into_owned()),
        ..Settings::default()
    };
    Deps::new(&settings, Transformer)
        .await
        .expect("the stream function starts")
}

/// Build events with `tests/stream_events.py` into `out`; what it printed.
fn build_events(args: &[&str], out: &Path) -> Value {
    let mut cmd = Command::new(python());
    cmd.arg(repo_root().join("tests/stream_events.py"))
        .args(args)
        .arg(out)
        .current_dir(repo_root());
    let done = cmd.output().expect("python runs");
    assert!(
        done.status.success(),
        "stream_events.py failed: {}",
        String::from_utf8_lossy(&done.stderr)
    );
    serde_json::from_slice(&done.stdout).expect("it prints JSON")
}

fn events(path: PathBuf) -> Vec<Value> {
    serde_json::from_slice(&std::fs::read(&path).expect("events written")).expect("JSON events")
}

/// Hand each event to the handler; every answer.
async fn feed(deps: &Deps, events: &[Value]) -> Vec<Result<Value, String>> {
    let mut out = Vec::new();
    for e in events {
        out.push(
            sluice_functions::stream::handle(deps, e.clone(), None)
                .await
                .map_err(|e| e.to_string()),
        );
    }
    out
}

/// Hand each event to the handler, requiring that every batch loads.
async fn feed_ok(deps: &Deps, events: &[Value]) {
    for (i, r) in feed(deps, events).await.into_iter().enumerate() {
        let r = r.unwrap_or_else(|e| panic!("event {i} failed: {e}"));
        assert!(
            r.get("batchItemFailures")
                .is_none_or(|f| f.as_array().is_some_and(Vec::is_empty)),
            "event {i}: {r}"
        );
    }
}

/// The data files and commit records of the lake (what a retry must not add to).
fn lake_files(lake: &Path) -> Vec<String> {
    files_under(lake)
        .into_iter()
        .filter(|f| f.ends_with(".parquet") || f.contains("_sluice/commits/"))
        .collect()
}

/// Every quarantined record as `<shard or partition>:<position>`, sorted,
/// with the reasons.
fn quarantined(lake: &Path) -> (Vec<String>, Vec<String>) {
    let dir = lake.join("_quarantine/clickstream");
    let mut records = Vec::new();
    let mut reasons = Vec::new();
    for f in files_under(&dir) {
        for line in std::fs::read_to_string(dir.join(&f)).unwrap().lines() {
            let e: Value = serde_json::from_str(line).unwrap();
            // kafka://<topic>/<partition>/<first>-<last>, kinesis://<stream>/<shard>/...
            let source = e["source"].as_str().unwrap();
            let shard = source.split('/').nth(3).unwrap();
            records.push(format!("{shard}:{}", e["record"].as_str().unwrap()));
            reasons.push(e["reason"].as_str().unwrap().to_string());
        }
    }
    records.sort();
    (records, reasons)
}

/// The malformed records `stream_events.py` put, as `<shard>:<position>`, sorted.
fn malformed(built: &Value) -> Vec<String> {
    let mut want: Vec<String> = built["malformed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    want.sort();
    want
}

fn check_rows(lake: &Path, good: &Path) {
    let v = python_json(
        &repo_root(),
        &compare_script(lake, &good.to_string_lossy(), "read_json"),
    );
    check_lake_matches_raw(&v);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kinesis_records_land_once_with_the_malformed_ones_in_quarantine() {
    let tmp = tempfile::tempdir().unwrap();
    let m = moto();
    let stream = m.unique("clickstream-events");
    let built = build_events(
        &["kinesis", &m.endpoint, &stream, SOURCE, "300", "40"],
        tmp.path(),
    );
    // The example's table reads "clickstream-events": name this run's stream
    // in a copy of the events (moto's streams are shared by the tests).
    let rename = |events: Vec<Value>| -> Vec<Value> {
        let text = serde_json::to_string(&events)
            .unwrap()
            .replace(&format!("stream/{stream}\""), "stream/clickstream-events\"");
        serde_json::from_str(&text).unwrap()
    };
    let first = rename(events(tmp.path().join("events.json")));
    let recut = rename(events(tmp.path().join("recut.json")));
    assert!(first.len() >= 8, "several batches a shard: {built}");
    let lake = tmp.path().join("lake");
    let deps = deps(&lake).await;
    feed_ok(&deps, &first).await;
    let good = tmp.path().join("raw/good.jsonl");
    check_rows(&lake, &good);
    let want = malformed(&built);
    let (got, reasons) = quarantined(&lake);
    assert_eq!(
        got, want,
        "the malformed records, by shard and sequence number"
    );
    assert!(reasons.iter().any(|r| r.contains("gzip")), "{reasons:?}");
    // A batch never has a newer version to replace it: no source ledger.
    let ledger: Vec<_> = files_under(&lake)
        .into_iter()
        .filter(|f| f.contains("_sluice/sources/"))
        .collect();
    assert!(ledger.is_empty(), "{ledger:?}");
    // Every batch delivered again, then again cut otherwise and overlapping:
    // nothing is written, nothing changes.
    let files = lake_files(&lake);
    feed_ok(&deps, &first).await;
    feed_ok(&deps, &recut).await;
    assert_eq!(lake_files(&lake), files);
    check_rows(&lake, &good);
    assert_eq!(quarantined(&lake).0, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_batches_land_once_and_a_replayed_batch_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let built = build_events(
        &["kafka", "clickstream-events", SOURCE, "300", "40"],
        tmp.path(),
    );
    let first = events(tmp.path().join("events.json"));
    let recut = events(tmp.path().join("recut.json"));
    // Two topic partitions an event, as an MSK mapping may send them: the
    // n-th batch of partition 0 with the n-th of partition 1.
    let of = |p: &str| -> Vec<&Value> {
        first
            .iter()
            .filter(|e| {
                e["records"]
                    .get(format!("clickstream-events-{p}"))
                    .is_some()
            })
            .collect()
    };
    let (p0, p1) = (of("0"), of("1"));
    assert_eq!(p0.len() + p1.len(), first.len());
    let paired: Vec<Value> = (0..p0.len().max(p1.len()))
        .map(|i| {
            let mut e = json!({"eventSource": "aws:kafka", "records": {}});
            for side in [&p0, &p1] {
                if let Some(other) = side.get(i) {
                    e["eventSourceArn"] = other["eventSourceArn"].clone();
                    for (k, v) in other["records"].as_object().unwrap() {
                        e["records"][k] = v.clone();
                    }
                }
            }
            e
        })
        .collect();
    let lake = tmp.path().join("lake");
    let deps = deps(&lake).await;
    for (i, r) in feed(&deps, &paired).await.into_iter().enumerate() {
        let r = r.unwrap_or_else(|e| panic!("event {i}: {e}"));
        assert_eq!(
            r["batches"],
            json!(paired[i]["records"].as_object().unwrap().len())
        );
    }
    let good = tmp.path().join("raw/good.jsonl");
    check_rows(&lake, &good);
    let want = malformed(&built);
    assert_eq!(quarantined(&lake).0, want);
    let files = lake_files(&lake);
    feed_ok(&deps, &first).await;
    feed_ok(&deps, &recut).await;
    assert_eq!(lake_files(&lake), files);
    check_rows(&lake, &good);
    // The topic of the same name on another cluster is another stream, whose
    // offsets are its own: its records load, though their offsets are loaded
    // ones of the first cluster's topic.
    let elsewhere: Vec<Value> = first
        .iter()
        .map(|e| {
            let mut e = e.clone();
            e["eventSourceArn"] = json!("arn:aws:kafka:us-east-1:123456789012:cluster/other/7e57");
            e
        })
        .collect();
    feed_ok(&deps, &elsewhere).await;
    let more = lake_files(&lake);
    let new: Vec<_> = more.iter().filter(|f| !files.contains(f)).collect();
    assert!(
        new.iter().any(|f| f.contains("_sluice/commits/")),
        "another cluster's topic loads: {new:?}"
    );
}

/// Put 60 records to a new stream on moto's Kinesis (named from `prefix`),
/// with events written under `dir`: the stream's name and the records of
/// its first shard as GetRecords returned them.
fn first_shard(m: &sluice_tests::moto::Moto, prefix: &str, dir: &Path) -> (String, Vec<Value>) {
    let stream = m.unique(prefix);
    build_events(&["kinesis", &m.endpoint, &stream, SOURCE, "60", "9"], dir);
    let shards: Value =
        serde_json::from_slice(&std::fs::read(dir.join("shards.json")).unwrap()).unwrap();
    let shard = shards["shards"]["shardId-000000000000"]
        .as_array()
        .unwrap()
        .clone();
    (stream, shard)
}

/// The file of the good records [`first_shard`]'s shard holds (written
/// there by tests/stream_events.py), for DuckDB to read.
fn shard_records(dir: &Path) -> String {
    let file = dir.join("raw/shards/shardId-000000000000.jsonl");
    assert!(file.exists(), "{} is missing", file.display());
    file.to_str().unwrap().to_string()
}

/// The records of one shard from `from` (a sequence number) on, delivered
/// as Lambda delivers them after a failure: in events of `batch` records.
fn deliveries(shard: &[Value], arn: &str, from: usize, batch: usize) -> Vec<Value> {
    shard[from..]
        .chunks(batch)
        .map(|recs| {
            json!({"Records": recs.iter().map(|r| json!({
                "kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": r["partitionKey"],
                            "sequenceNumber": r["sequenceNumber"], "data": r["data"],
                            "approximateArrivalTimestamp": r["approximateArrivalTimestamp"]},
                "eventSource": "aws:kinesis", "eventVersion": "1.0",
                "eventID": format!("shardId-000000000000:{}", r["sequenceNumber"].as_str().unwrap()),
                "eventName": "aws:kinesis:record", "awsRegion": "us-east-1",
                "eventSourceARN": arn,
            })).collect::<Vec<_>>()})
        })
        .collect()
}

/// Deliver one shard's records as Lambda would, through a lake store that
/// fails at call `fault` (as `kind`): after an answer naming a record, the
/// shard is delivered again from that record, in halved batches (as
/// Every one of the first `calls` store calls failing once (refused, or a
/// write applied whose answer is lost), or the process dying there.
fn stream_faults(calls: u64) -> impl Iterator<Item = (Faults, FaultKind)> {
    (1..=calls).flat_map(|n| {
        [
            (Faults::Once(n), FaultKind::Refused),
            (Faults::Once(n), FaultKind::AnswerLost),
            (Faults::CrashAt(n), FaultKind::AnswerLost),
        ]
    })
}

/// `BisectBatchOnFunctionError` cuts them after a crash), by a process
/// whose store works (a crash, `Faults::CrashAt`, fails every call after it
/// until the function restarts). Returns how many failures were answered.
async fn deliver_with_fault(
    config: &Path,
    lake: &Path,
    shard: &[Value],
    fault: Faults,
    kind: FaultKind,
) -> usize {
    let mut deps = deps_with(config, lake).await;
    let inner = deps.lake.store.clone();
    deps.lake.store = Arc::new(FaultyStore::new(inner.clone(), fault).with_kind(kind));
    let mut from = 0;
    let mut batch = 9;
    let mut failures = 0;
    'deliver: while from < shard.len() {
        for event in deliveries(shard, STREAM_ARN, from, batch) {
            // Each invocation is over when its answer is in (a crash's retry
            // comes after its deadline): the next may take its chunk over.
            let over = Some(std::time::Instant::now());
            let r = sluice_functions::stream::handle(&deps, event.clone(), over)
                .await
                .expect("a Kinesis batch is answered, not failed");
            let failed = r["batchItemFailures"].as_array().unwrap();
            if let Some(f) = failed.first() {
                failures += 1;
                assert!(failures < 10, "the same batch keeps failing");
                let seq = f["itemIdentifier"].as_str().unwrap();
                let i = shard
                    .iter()
                    .position(|r| r["sequenceNumber"] == seq)
                    .expect("the answer names a record of the batch");
                let first = event["Records"][0]["kinesis"]["sequenceNumber"]
                    .as_str()
                    .unwrap();
                let first = shard
                    .iter()
                    .position(|r| r["sequenceNumber"] == first)
                    .unwrap();
                assert!(i >= first, "a record before the batch: {seq}");
                from = i;
                batch = 4;
                deps.lake.store = inner.clone();
                continue 'deliver;
            }
        }
        break;
    }
    failures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_failing_at_any_storage_call_is_loaded_once_from_the_record_it_answers() {
    let tmp = tempfile::tempdir().unwrap();
    let m = moto();
    let (_, shard) = first_shard(m, "faults", tmp.path());
    // A clean delivery, to compare with: it holds exactly the shard's good
    // records, transformed (DuckDB reads and transforms them itself).
    let clean = tmp.path().join("clean");
    let example = repo_root().join(EXAMPLE);
    deliver_with_fault(&example, &clean, &shard, Faults::None, FaultKind::Refused).await;
    let raw = shard_records(tmp.path());
    let v = sluice_tests::python_json(&repo_root(), &compare_script(&clean, &raw, "read_json"));
    sluice_tests::check_lake_matches_raw(&v);
    let rows: u64 = v["lake_rows"].as_str().unwrap().parse().unwrap();
    assert!(rows > 20, "{rows}");
    let parquet = |lake: &Path| {
        format!(
            "SELECT * EXCLUDE (dt, event_type), CAST(dt AS VARCHAR) AS dt, event_type FROM read_parquet('{}/clickstream/**/*.parquet', hive_partitioning=true)",
            lake.display()
        )
    };
    let mut answered = 0;
    // Every call of the first batches, failing once (refused, or a write
    // applied whose answer is lost), or the process dying there.
    let faults = stream_faults(36);
    for (fault, kind) in faults {
        let lake = tmp.path().join(format!("{fault:?}-{kind:?}"));
        answered += deliver_with_fault(&example, &lake, &shard, fault, kind).await;
        assert_eq!(
            assert_same_rows(&repo_root(), &parquet(&lake), &parquet(&clean)),
            rows,
            "{fault:?} ({kind:?})"
        );
    }
    assert!(answered >= 60, "the faults failed batches: {answered}");
}

/// A Kinesis event of `data` records on one shard, positions from `first`.
fn kinesis(data: &[Vec<u8>], first: u64) -> Value {
    use base64::Engine;
    json!({"Records": data.iter().enumerate().map(|(i, d)| {
        let seq = (first + i as u64).to_string();
        json!({
            "kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": "k", "sequenceNumber": seq,
                        "data": base64::engine::general_purpose::STANDARD.encode(d),
                        "approximateArrivalTimestamp": 1796212800.0},
            "eventSource": "aws:kinesis", "eventVersion": "1.0",
            "eventID": format!("shardId-000000000007:{seq}"),
            "eventName": "aws:kinesis:record", "awsRegion": "us-east-1",
            "eventSourceARN": STREAM_ARN,
        })
    }).collect::<Vec<_>>()})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_of_one_byte_to_one_megabyte_empty_batches_and_ten_thousand_records() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let deps = deps(&lake).await;
    let lines: Vec<String> = std::fs::read_to_string(repo_root().join(SOURCE))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    // An empty batch: nothing to do, nothing written.
    feed_ok(&deps, &[json!({"Records": []})]).await;
    assert!(lake_files(&lake).is_empty());
    // 10,000 records in one batch: one chunk, one commit record.
    let many: Vec<Vec<u8>> = (0..10_000)
        .map(|i| lines[i % lines.len()].clone().into_bytes())
        .collect();
    feed_ok(&deps, &[kinesis(&many, 1_000)]).await;
    let commits = |lake: &Path| {
        lake_files(lake)
            .into_iter()
            .filter(|f| f.contains("_sluice/commits/"))
            .count()
    };
    assert_eq!(commits(&lake), 1);
    // One byte (not a JSON object: quarantined) and one megabyte (kept).
    let mut big: Value = serde_json::from_str(&lines[0]).unwrap();
    big["page"] = json!("p".repeat(1 << 20));
    big["event_type"] = json!("big");
    let big = serde_json::to_vec(&big).unwrap();
    assert!(big.len() > 1 << 20);
    feed_ok(&deps, &[kinesis(&[b"x".to_vec(), big.clone()], 20_000)]).await;
    assert_eq!(commits(&lake), 2);
    let (q, _) = quarantined(&lake);
    assert_eq!(q, ["shardId-000000000007:20000"]);
    let raw = tmp.path().join("raw.jsonl");
    let mut text = many
        .iter()
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect::<Vec<_>>()
        .join("\n");
    text.push('\n');
    text.push_str(&String::from_utf8_lossy(&big));
    text.push('\n');
    std::fs::write(&raw, text).unwrap();
    check_rows(&lake, &raw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sample_events_load_and_a_stream_no_table_reads_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let deps = deps(&lake).await;
    for sample in ["events/kinesis.json", "events/msk.json"] {
        let e: Value =
            serde_json::from_slice(&std::fs::read(repo_root().join(sample)).unwrap()).unwrap();
        feed_ok(&deps, &[e]).await;
    }
    // Each sample carries 24 good clickstream records and 3 malformed ones.
    let v = python_json(
        &repo_root(),
        &format!(
            "import duckdb, json\nprint(json.dumps(duckdb.sql(\"SELECT count(*), count(DISTINCT event_id) FROM read_parquet('{}/clickstream/**/*.parquet')\").fetchall()[0]))",
            lake.display()
        ),
    );
    assert_eq!(v, json!([48, 24]));
    assert_eq!(quarantined(&lake).0.len(), 6);
    // A stream no table reads: the batch is answered as failed from its
    // first record, and nothing is written.
    let mut other: Value =
        serde_json::from_slice(&std::fs::read(repo_root().join("events/kinesis.json")).unwrap())
            .unwrap();
    for r in other["Records"].as_array_mut().unwrap() {
        r["eventSourceARN"] = json!("arn:aws:kinesis:us-east-1:123456789012:stream/unknown");
    }
    let before = lake_files(&lake);
    let r = sluice_functions::stream::handle(&deps, other.clone(), None)
        .await
        .unwrap();
    assert_eq!(
        r["batchItemFailures"][0]["itemIdentifier"],
        other["Records"][0]["kinesis"]["sequenceNumber"]
    );
    assert_eq!(lake_files(&lake), before);
    // Not a stream event at all: refused, naming what was expected.
    let e = sluice_functions::stream::handle(&deps, json!({"hello": 1}), None)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("Kinesis or Kafka"), "{e}");
}

/// The Lambda failure record of a Kinesis batch the mapping gave up on.
fn failure_record(batch: &Value) -> Value {
    let records = batch["Records"].as_array().unwrap();
    let seq = |r: &Value| r["kinesis"]["sequenceNumber"].as_str().unwrap().to_string();
    json!({
        "requestContext": {"requestId": "0f6a1b6e", "condition": "RetryAttemptsExhausted",
                           "functionArn": "arn:aws:lambda:us-east-1:123456789012:function:stream",
                           "approximateInvokeCount": 3},
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST"},
        "version": "1.0", "timestamp": "2026-12-06T01:00:00.000Z",
        "KinesisBatchInfo": {
            "shardId": "shardId-000000000000",
            "startSequenceNumber": seq(&records[0]),
            "endSequenceNumber": seq(records.last().unwrap()),
            "approximateArrivalOfFirstRecord": "2026-12-06T00:59:00Z",
            "approximateArrivalOfLastRecord": "2026-12-06T00:59:01Z",
            "batchSize": records.len(),
            "streamArn": records[0]["eventSourceARN"],
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_the_mapping_gave_up_on_is_replayed_from_its_failure_record_once() {
    let tmp = tempfile::tempdir().unwrap();
    let m = moto();
    let (stream, shard) = first_shard(m, "given-up", tmp.path());
    let arn = format!("arn:aws:kinesis:us-east-1:123456789012:stream/{stream}");
    let batches = deliveries(&shard, &arn, 0, 9);
    assert!(batches.len() >= 3, "{}", batches.len());
    // The example pipeline, reading this test's stream.
    let pipeline = |lake: &Path| {
        let text = std::fs::read_to_string(repo_root().join(EXAMPLE))
            .unwrap()
            .replace(
                "stream = \"clickstream-events\"",
                &format!("stream = {stream:?}"),
            )
            .replace(
                "root = \"./lake\"",
                &format!("root = {:?}", lake.to_str().unwrap()),
            );
        let path = lake.with_extension("toml");
        std::fs::write(&path, text).unwrap();
        path
    };
    let start = |lake: &Path| {
        let settings = Settings {
            config: pipeline(lake).to_string_lossy().into_owned(),
            ..Settings::default()
        };
        async move {
            Deps::new(&settings, Transformer)
                .await
                .expect("the stream function starts")
        }
    };
    let parquet = |lake: &Path| {
        format!(
            "SELECT * EXCLUDE (dt, event_type), CAST(dt AS VARCHAR) AS dt, event_type FROM read_parquet('{}/clickstream/**/*.parquet', hive_partitioning=true)",
            lake.display()
        )
    };
    // Every batch delivered and loaded: what the lake must end up holding.
    let clean = tmp.path().join("clean");
    let deps = start(&clean).await;
    feed_ok(&deps, &batches).await;
    let rows = assert_same_rows(&repo_root(), &parquet(&clean), &parquet(&clean));

    // The second batch fails on every attempt (MaximumRetryAttempts 2:
    // three in all), and the mapping goes on: failing at its checkpoint's
    // first write or at its first data write. Either way the chunk is left
    // pending, and the next batch, cut otherwise, keeps its records as a gap.
    for fail_at in [2, 3] {
        given_up_and_replayed(m, &tmp, &batches, fail_at, rows, &clean, &pipeline, &start).await;
    }
}

#[allow(clippy::too_many_arguments)]
async fn given_up_and_replayed<P, S, F>(
    m: &sluice_tests::moto::Moto,
    tmp: &tempfile::TempDir,
    batches: &[Value],
    fail_at: u64,
    rows: u64,
    clean: &Path,
    pipeline: &P,
    start: &S,
) where
    P: Fn(&Path) -> PathBuf,
    S: Fn(&Path) -> F,
    F: std::future::Future<Output = Deps>,
{
    let parquet = |lake: &Path| {
        format!(
            "SELECT * EXCLUDE (dt, event_type), CAST(dt AS VARCHAR) AS dt, event_type FROM read_parquet('{}/clickstream/**/*.parquet', hive_partitioning=true)",
            lake.display()
        )
    };
    let lake = tmp.path().join(format!("lake-{fail_at}"));
    let mut deps = start(&lake).await;
    feed_ok(&deps, &batches[..1]).await;
    let inner = deps.lake.store.clone();
    for _ in 0..3 {
        deps.lake.store = Arc::new(
            FaultyStore::new(inner.clone(), Faults::Once(fail_at)).with_kind(FaultKind::Refused),
        );
        let answer = sluice_functions::stream::handle(
            &deps,
            batches[1].clone(),
            Some(std::time::Instant::now()),
        )
        .await
        .unwrap();
        assert_eq!(
            answer["batchItemFailures"][0]["itemIdentifier"],
            batches[1]["Records"][0]["kinesis"]["sequenceNumber"],
            "{answer}"
        );
    }
    deps.lake.store = inner;
    feed_ok(&deps, &batches[2..]).await;
    let before = python_json(
        &repo_root(),
        &format!(
            "import duckdb, json\nprint(json.dumps(duckdb.sql(\"SELECT count(*) FROM ({})\").fetchall()[0][0]))",
            parquet(&lake).replace('"', "\\\"")
        ),
    );
    assert!(
        before.as_u64().unwrap() < rows,
        "the given-up batch is missing: {before} of {rows}"
    );

    // The failure record, in the mapping's on-failure queue; the documented
    // command replays every message of the queue and deletes it.
    let sdk = m.aws().sdk_config().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let queue = sqs
        .create_queue()
        .queue_name(m.unique("stream-failures"))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let record = failure_record(&batches[1]);
    sqs.send_message()
        .queue_url(&queue)
        .message_body(record.to_string())
        .send()
        .await
        .unwrap();
    let config = pipeline(&lake);
    let replay = |args: &[&str]| {
        let out = Command::new(sluice_tests::sluice_bin())
            .arg("replay")
            .arg("--config")
            .arg(&config)
            .args(args)
            .envs(m.env())
            .output()
            .expect("sluice runs");
        let text = sluice_tests::printed(&out);
        assert!(out.status.success(), "sluice replay {args:?}: {text}");
        text
    };
    let said = replay(&["--queue", &queue]);
    assert!(said.contains("1 batches replayed"), "{said}");
    assert_eq!(
        assert_same_rows(&repo_root(), &parquet(&lake), &parquet(clean)),
        rows,
        "after the replay, every record once (failed at call {fail_at})"
    );
    let left = sqs
        .receive_message()
        .queue_url(&queue)
        .send()
        .await
        .unwrap()
        .messages
        .unwrap_or_default();
    assert!(left.is_empty(), "the replayed message is deleted: {left:?}");

    // The same record replayed again (a file this time) loads nothing.
    let files = lake_files(&lake);
    let saved = tmp.path().join(format!("failure-{fail_at}.json"));
    std::fs::write(&saved, record.to_string()).unwrap();
    let said = replay(&[saved.to_str().unwrap()]);
    assert!(said.contains(", 0 loaded into table clickstream"), "{said}");
    assert_eq!(lake_files(&lake), files);
    // So does a batch the shard loaded (the first), though it is long
    // behind the checkpoint.
    std::fs::write(&saved, failure_record(&batches[0]).to_string()).unwrap();
    let said = replay(&[saved.to_str().unwrap()]);
    assert!(said.contains(", 0 loaded into table clickstream"), "{said}");
    assert_eq!(lake_files(&lake), files);
}

/// Every commit record of table `clickstream` in `lake`, published as the
/// catalog function publishes them (into a Delta table: commits); then the
/// table's rows as its latest snapshot lists its files, each with its
/// partition folder.
async fn published_delta_rows(config: &Path, lake: &Path) -> Vec<String> {
    let deps = deps_with(config, lake).await;
    let mut records = Vec::new();
    for f in files_under(lake) {
        if f.starts_with("_sluice/commits/clickstream/") && f.ends_with(".json") {
            records.push(
                serde_json::from_slice::<sluice::commit::CommitRecord>(
                    &std::fs::read(lake.join(&f)).unwrap(),
                )
                .unwrap(),
            );
        }
    }
    assert!(
        !records.is_empty(),
        "no commit record in {}",
        lake.display()
    );
    deps.engine()
        .sink("clickstream")
        .publish(sluice::sink::Batch::new(
            &deps.lake,
            deps.catalog(),
            &records,
        ))
        .await
        .unwrap_or_else(|e| panic!("publishing {} failed: {e}", lake.display()));
    let t = sluice::delta::open(&deps.lake, "clickstream", sluice::delta::AsOf::Latest)
        .await
        .unwrap()
        .expect("a Delta table");
    let files: Vec<String> = t
        .snapshot()
        .unwrap()
        .log_data()
        .iter()
        .map(|f| f.path().to_string())
        .collect();
    let mut rows = Vec::new();
    for f in files {
        let bytes = std::fs::read(lake.join("clickstream").join(&f)).unwrap();
        let folder = f.rsplit_once('/').map_or("", |(d, _)| d).to_string();
        for line in sluice_tests::parquet_json_rows(bytes::Bytes::from(bytes)) {
            rows.push(format!("{folder}|{line}"));
        }
    }
    rows.sort();
    rows
}

/// The fault sweep above into a Delta table: a batch failing at any of the
/// first storage calls (refused, its answer lost, or the process dying
/// there) and delivered again from the record it answers, halved; then the
/// catalog publishes every commit record. The table holds exactly the rows
/// a clean delivery gives, none twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delta_table_fed_by_a_stream_failing_at_any_call_holds_each_record_once() {
    let tmp = tempfile::tempdir().unwrap();
    let m = moto();
    let (_, shard) = first_shard(m, "delta-faults", tmp.path());
    let text = std::fs::read_to_string(repo_root().join(EXAMPLE)).unwrap();
    assert!(text.contains("stream = \"clickstream-events\"\n"));
    let config = tmp.path().join("delta.toml");
    std::fs::write(
        &config,
        text.replace(
            "stream = \"clickstream-events\"\n",
            "stream = \"clickstream-events\"\ntable_format = \"delta\"\n",
        ),
    )
    .unwrap();
    let clean = tmp.path().join("clean");
    deliver_with_fault(&config, &clean, &shard, Faults::None, FaultKind::Refused).await;
    let want = published_delta_rows(&config, &clean).await;
    assert!(want.len() > 20, "{} rows", want.len());
    // The clean table holds exactly the shard's good records, transformed,
    // as delta_scan and Python deltalake read it.
    let raw = shard_records(tmp.path());
    let v = sluice_tests::delta_python_json(
        &repo_root(),
        &sluice_tests::compare_delta_script(&clean, &raw, None),
    );
    sluice_tests::check_delta_matches_raw(&v);
    let faults = stream_faults(30);
    for (fault, kind) in faults {
        let lake = tmp.path().join(format!("{fault:?}-{kind:?}"));
        deliver_with_fault(&config, &lake, &shard, fault, kind).await;
        assert_eq!(
            published_delta_rows(&config, &lake).await,
            want,
            "{fault:?} ({kind:?})"
        );
    }
}
