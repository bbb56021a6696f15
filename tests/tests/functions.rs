//! The Lambda handlers and the `sluice` command against a real S3, Glue and
//! SQS API (moto's server on 127.0.0.1, started by the tests themselves):
//! raw files uploaded, the planner called with S3 event JSON, the transform
//! run on the tasks the planner queued, the catalog run on the commit records;
//! then the Glue table checked field by field and the Parquet read back from
//! S3 with pyarrow and compared with the raw input.

use std::collections::BTreeSet;
use std::path::Path;

use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutPayload};
use serde_json::{Value, json};
use sluice::catalog::Catalog;
use sluice::messages::TaskSpec;
use sluice::store::AwsOptions;
use sluice_functions::{
    Committer, Compactor, Deps, Planner, Settings, Transformer, catalog, compactor, planner,
    transform,
};
use sluice_tests::moto::{Stack, moto};
use sluice_tests::{check_lake_matches_raw, compare_script, python_json, repo_root, sluice_bin};

const RAW: &str = "examples/clickstream/raw/clickstream";

/// The queues of the stack that the functions' roles name, by logical id.
const QUEUES: [&str; 6] = [
    "ChunkQueue",
    "CatalogQueue",
    "CompactionQueue",
    "PlannerDeadLetterQueue",
    "SweepDeadLetterQueue",
    "StreamFailureQueue",
];

/// One test's world: its own buckets, queues and Glue database, and the
/// stack's roles deployed over them: every function reaches moto with its
/// own role's credentials, and a call its role would not allow on AWS is
/// refused (tests/iam.py).
struct World {
    raw: String,
    lake: String,
    database: String,
    queue_url: String,
    compaction_queue_url: String,
    /// The test's own access (set-up and checks), never refused.
    aws: AwsOptions,
    sqs: aws_sdk_sqs::Client,
    glue: aws_sdk_glue::Client,
    stack: Stack,
}

/// The four functions of one pipeline, each built as its `main` builds it
/// from the environment the template gives it, with its role's credentials.
struct Functions {
    planner: Function,
    transform: Function,
    catalog: Function,
    compactor: Function,
}

/// One function as deployed: its dependencies, and the `MemorySize` and
/// `Timeout` the template gives it, which every invocation ([`invoke!`])
/// must keep within.
struct Function {
    deps: Deps,
    name: &'static str,
    memory: u64,
    timeout: std::time::Duration,
}

impl std::ops::Deref for Function {
    type Target = Deps;
    fn deref(&self) -> &Deps {
        &self.deps
    }
}

/// Every allocation of this test process, counted: the live heap and its peak.
#[global_allocator]
static HEAP: peak_alloc::PeakAlloc = peak_alloc::PeakAlloc;

/// What a function's process holds before its first event, beside what an
/// invocation allocates: its code and data, the runtime and the state it
/// builds at start (the pipeline, clients, engine). Measured as the peak
/// resident size of this test process running one invocation of each
/// function alone: 36 MiB (planner), 45 (transform), 56 (catalog).
const FUNCTION_BASE: u64 = 64 << 20;

impl Function {
    /// Run one invocation of this function as Lambda would bound it: it
    /// fails if it takes longer than the function's `Timeout`, or if what
    /// it needs (its process's [`FUNCTION_BASE`] plus the most heap it
    /// holds at once beyond what was live when it started) passes its
    /// `MemorySize`. Invocations take turns (one at a time in this test
    /// process), so the peak is this one's, plus whatever the other tests
    /// allocate meanwhile (which can only raise it).
    async fn run<T>(&self, invocation: impl std::future::Future<Output = T>) -> T {
        static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
        let _turn = ONE_AT_A_TIME.lock().await;
        HEAP.reset_peak_usage();
        let live = HEAP.current_usage() as u64;
        let start = std::time::Instant::now();
        let out = invocation.await;
        let took = start.elapsed();
        let needs = FUNCTION_BASE + (HEAP.peak_usage() as u64).saturating_sub(live);
        // Shown with --nocapture: what each invocation took of its limits.
        eprintln!(
            "limits: {} took {took:.2?} of {:?}, needed {} MiB of {} MiB",
            self.name,
            self.timeout,
            needs >> 20,
            self.memory >> 20
        );
        assert!(
            took <= self.timeout,
            "{} took {took:.1?}, past its Timeout of {:?} (template.yaml)",
            self.name,
            self.timeout
        );
        assert!(
            needs <= self.memory,
            "{} needed {} MiB ({} MiB of heap at once beyond its start), past its MemorySize of {} MiB (template.yaml)",
            self.name,
            needs >> 20,
            (needs - FUNCTION_BASE) >> 20,
            self.memory >> 20
        );
        out
    }
}

/// `invoke!(deps.catalog, catalog::handle, event)`: the handler called
/// with the function's dependencies and the rest of the arguments, within
/// the function's memory and time ([`Function::run`]).
macro_rules! invoke {
    ($f:expr, $handler:path, $($arg:expr),+ $(,)?) => {
        $f.run($handler(&$f, $($arg),+))
    };
}

impl World {
    async fn new() -> World {
        World::deployed(|_| json!({})).await
    }

    /// A world whose stack is deployed with `parameters(raw bucket)` beside
    /// the ones every test uses: the test's buckets and database, a
    /// customer managed KMS key and Lake Formation grants (their statements
    /// are in the roles too).
    async fn deployed(parameters: impl FnOnce(&str) -> Value) -> World {
        let m = moto();
        let raw = m.unique("raw");
        let lake = m.unique("lake");
        m.create_bucket(&raw);
        m.create_bucket(&lake);
        let aws = m.aws();
        let sdk = aws.sdk_config().await;
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let glue = aws_sdk_glue::Client::new(&sdk);
        let mut queues = serde_json::Map::new();
        for q in QUEUES {
            let name = m.unique(q);
            let url = sqs
                .create_queue()
                .queue_name(&name)
                .send()
                .await
                .expect("queue created")
                .queue_url()
                .expect("queue url")
                .to_string();
            let arn = format!("arn:aws:sqs:us-east-1:123456789012:{name}");
            queues.insert(q.into(), json!({"Ref": url, "Arn": arn}));
        }
        // The stack creates the database (CreateGlueDatabase); no function may.
        let database = m.create_database(&glue, "db").await;
        let mut params = json!({
            "RawBucketName": raw,
            "LakeBucketName": lake,
            "GlueDatabaseName": database,
            "KmsKeyArn": "arn:aws:kms:us-east-1:123456789012:key/0b2c4d6e-1111-2222-3333-444455556666",
            "LakeFormationGrants": "true",
            // A stream, so that the stack has its stream function.
            "KafkaClusterArn": "arn:aws:kafka:us-east-1:123456789012:cluster/events/0b2c4d6e-1111-2222-3333-444455556666-1",
        });
        params
            .as_object_mut()
            .unwrap()
            .extend(parameters(&raw).as_object().unwrap().clone());
        let stack = m.deploy(params, Value::Object(queues.clone()));
        let url = |q: &str| queues[q]["Ref"].as_str().unwrap().to_string();
        World {
            queue_url: url("ChunkQueue"),
            compaction_queue_url: url("CompactionQueue"),
            raw,
            lake,
            database,
            aws,
            sqs,
            glue,
            stack,
        }
    }

    /// The `[lake]` section of a pipeline file in this world: the lake at
    /// the root of its bucket (`SLUICE_LAKE`), registered in its database.
    fn lake_section(&self) -> String {
        format!(
            "[lake]\nroot = \"s3://{}\"\ncatalog = \"glue\"\nglue_database = \"{}\"",
            self.lake, self.database
        )
    }

    /// The example pipeline, with its lake in S3, registered in Glue.
    fn pipeline(&self) -> String {
        let example =
            std::fs::read_to_string(repo_root().join("examples/clickstream/sluice.toml")).unwrap();
        let example = example
            .replace("[lake]\nroot = \"./lake\"", &self.lake_section())
            .replace(
                "[input]\nroot = \"examples/clickstream/raw\"",
                &format!("[input]\nroot = \"s3://{}/raw\"", self.raw),
            );
        assert!(
            example.contains("glue_database"),
            "the example changed shape"
        );
        example
    }

    async fn put(&self, bucket: &str, key: &str, bytes: Vec<u8>) {
        self.aws
            .s3(bucket)
            .unwrap()
            .put(&ObjectPath::parse(key).unwrap(), PutPayload::from(bytes))
            .await
            .unwrap_or_else(|e| panic!("uploading s3://{bucket}/{key}: {e}"));
    }

    /// The tasks of the manifest a planner's answer `planned` names.
    async fn manifest_tasks(&self, planned: &Value) -> Vec<Value> {
        let key = planned["manifest"]["key"].as_str().expect("a manifest");
        serde_json::from_slice(&self.get(&self.lake, key).await).unwrap()
    }

    async fn get(&self, bucket: &str, key: &str) -> Vec<u8> {
        let got = self
            .aws
            .s3(bucket)
            .unwrap()
            .get(&ObjectPath::parse(key).unwrap())
            .await;
        let bytes = got
            .unwrap_or_else(|e| panic!("s3://{bucket}/{key}: {e}"))
            .bytes()
            .await;
        bytes.unwrap().to_vec()
    }

    async fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let store = self.aws.s3(bucket).unwrap();
        let metas = sluice_tests::list_under(store.as_ref(), prefix).await;
        let mut keys: Vec<String> = metas.into_iter().map(|m| m.location.to_string()).collect();
        keys.sort();
        keys
    }

    /// The enrichment example's pipeline in this world, its products lookup
    /// uploaded to `s3://<raw>/ref/products.jsonl` (its customers lookup
    /// left for the test to place).
    async fn enrichment(&self) -> String {
        let example = repo_root().join("examples/enrichment");
        let products = std::fs::read(example.join("ref/products.jsonl")).unwrap();
        self.put(&self.raw, "ref/products.jsonl", products).await;
        let file = repo_root().join(sluice_tests::enrichment::EXAMPLE);
        std::fs::read_to_string(file)
            .unwrap()
            .replace("[lake]\nroot = \"./lake\"", &self.lake_section())
            .replace(
                "root = \"examples/enrichment/raw\"",
                &format!("root = \"s3://{}/raw\"", self.raw),
            )
            .replace(
                "\"examples/enrichment/ref/products.jsonl\"",
                &format!("\"s3://{}/ref/products.jsonl\"", self.raw),
            )
    }

    /// Put the pipeline file where the stack reads it and build the functions.
    async fn deps(&self, chunk_size: u64) -> Functions {
        self.deps_with(chunk_size, |_| {}).await
    }

    /// [`World::deps`], with settings changed by `change`.
    async fn deps_with(&self, chunk_size: u64, change: impl Fn(&mut Settings)) -> Functions {
        self.deps_from(self.pipeline(), chunk_size, change).await
    }

    /// [`World::deps_with`] with Delta tables.
    async fn delta_deps(&self, chunk_size: u64, change: impl Fn(&mut Settings)) -> Functions {
        let pipeline = self.pipeline().replacen(
            "catalog = \"glue\"",
            "catalog = \"glue\"\ntable_format = \"delta\"",
            1,
        );
        self.deps_from(pipeline, chunk_size, change).await
    }

    /// The functions with `pipeline` as the pipeline file (at the
    /// template's `ConfigKey`), each given the environment the template
    /// gives it and its role's credentials.
    async fn deps_from(
        &self,
        pipeline: String,
        chunk_size: u64,
        change: impl Fn(&mut Settings),
    ) -> Functions {
        self.put(&self.lake, CONFIG_KEY, pipeline.into_bytes())
            .await;
        Functions {
            planner: self.function("PlannerFunction", chunk_size, &change).await,
            transform: self
                .function("TransformFunction", chunk_size, &change)
                .await,
            catalog: self.function("CatalogFunction", chunk_size, &change).await,
            compactor: self
                .function("CompactorFunction", chunk_size, &change)
                .await,
        }
    }

    /// One function (a logical id of the template) on the pipeline file in
    /// the lake, built as its `main` builds it from the environment the
    /// template gives it, with its role's credentials.
    async fn function(
        &self,
        function: &'static str,
        chunk_size: u64,
        change: &impl Fn(&mut Settings),
    ) -> Function {
        let mut settings = Settings {
            config: format!("s3://{}/{CONFIG_KEY}", self.lake),
            lake: Some(format!("s3://{}", self.lake)),
            input: Some(format!("s3://{}/raw/", self.raw)),
            glue_database: Some(self.database.clone()),
            chunk_queue_url: (function == "PlannerFunction").then(|| self.queue_url.clone()),
            compaction_queue_url: (function == "CatalogFunction")
                .then(|| self.compaction_queue_url.clone()),
            chunk_size,
            aws: self.stack.aws(function),
            ..Settings::default()
        };
        change(&mut settings);
        // Each function's parts, as its `main` names them.
        let deps = match function {
            "PlannerFunction" => Deps::new(&settings, Planner).await,
            "TransformFunction" | "StreamFunction" => Deps::new(&settings, Transformer).await,
            "CompactorFunction" => Deps::new(&settings, Compactor).await,
            _ => Deps::new(&settings, Committer).await,
        }
        .unwrap_or_else(|e| panic!("{function} starts: {e:#}"));
        let (memory, timeout) = self.stack.limits(function);
        Function {
            deps,
            name: function,
            memory,
            timeout,
        }
    }

    /// Every message on the chunk queue, as (message id, body).
    /// The Glue table `name` (the test fails when there is none).
    async fn glue_table(&self, name: &str) -> aws_sdk_glue::types::Table {
        let got = self
            .glue
            .get_table()
            .database_name(&self.database)
            .name(name);
        let got = got.send().await;
        let got = got.unwrap_or_else(|e| panic!("the Glue table {name}: {e:?}"));
        got.table.unwrap()
    }

    /// The Glue partitions of table `name` (the first page).
    async fn glue_partitions(&self, name: &str) -> Vec<aws_sdk_glue::types::Partition> {
        let got = self.glue.get_partitions().database_name(&self.database);
        let got = got.table_name(name).send().await.unwrap();
        got.partitions.unwrap_or_default()
    }

    async fn drain(&self) -> Vec<(String, String)> {
        self.drain_queue(&self.queue_url).await
    }

    /// Every message on a queue, as (message id, body).
    async fn drain_queue(&self, queue_url: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        loop {
            let got = self
                .sqs
                .receive_message()
                .queue_url(queue_url)
                .max_number_of_messages(10)
                .visibility_timeout(600)
                .send()
                .await
                .unwrap();
            let messages = got.messages();
            if messages.is_empty() {
                return out;
            }
            for m in messages {
                out.push((
                    m.message_id().unwrap().to_string(),
                    m.body().unwrap().to_string(),
                ));
                self.sqs
                    .delete_message()
                    .queue_url(queue_url)
                    .receipt_handle(m.receipt_handle().unwrap())
                    .send()
                    .await
                    .unwrap();
            }
        }
    }
}

impl Drop for World {
    /// Every test ends with no call refused: an error a function swallowed
    /// (a delete that failed quietly) is a failure all the same.
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.stack.assert_nothing_refused();
        }
    }
}

/// Where the template's functions read the pipeline file (`ConfigKey`'s default).
const CONFIG_KEY: &str = "_sluice/config/sluice.toml";

fn fixture(name: &str) -> Value {
    let text = std::fs::read_to_string(repo_root().join("events").join(name)).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("events/{name}: {e}"))
}

/// A key as S3 writes it into a notification: form-encoded, `+` for a space.
fn notification_key(key: &str) -> String {
    const KEEP: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'/')
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~')
        .remove(b' ');
    percent_encoding::utf8_percent_encode(key, KEEP)
        .to_string()
        .replace(' ', "+")
}

/// The S3 notification of `events/s3-put.json`, for these keys of `bucket`.
fn s3_event(bucket: &str, keys: &[&str]) -> Value {
    let template = fixture("s3-put.json")["Records"][0].clone();
    let records: Vec<Value> = keys
        .iter()
        .map(|k| {
            let mut r = template.clone();
            r["s3"]["bucket"]["name"] = json!(bucket);
            r["s3"]["bucket"]["arn"] = json!(format!("arn:aws:s3:::{bucket}"));
            r["s3"]["object"]["key"] = json!(notification_key(k));
            r
        })
        .collect();
    json!({ "Records": records })
}

/// The EventBridge event of `events/eventbridge-object-created.json` for one object.
fn eventbridge_event(bucket: &str, key: &str) -> Value {
    let mut e = fixture("eventbridge-object-created.json");
    e["detail"]["bucket"]["name"] = json!(bucket);
    e["detail"]["object"]["key"] = json!(key);
    e
}

/// The EventBridge event of every commit record of `table`, as (message
/// id, body) of the catalog queue.
async fn commit_events(w: &World, table: &str) -> Vec<(String, String)> {
    let commits = w.keys(&w.lake, &format!("_sluice/commits/{table}")).await;
    commits
        .iter()
        .enumerate()
        .map(|(i, k)| (format!("c{i}"), eventbridge_event(&w.lake, k).to_string()))
        .collect()
}

/// Kafka event-source events of `rows` lines of `source` on `topic`, `per`
/// records a batch, made by tests/stream_events.py in `dir`.
fn kafka_events(topic: &str, source: &Path, rows: u32, per: u32, dir: &Path) -> Vec<Value> {
    let out = std::process::Command::new(sluice_tests::python())
        .arg(repo_root().join("tests/stream_events.py"))
        .args(["kafka", topic])
        .arg(source)
        .args([rows.to_string(), per.to_string()])
        .arg(dir)
        .current_dir(repo_root())
        .output()
        .expect("python runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stream_events.py: {err}");
    serde_json::from_slice(&std::fs::read(dir.join("events.json")).unwrap()).unwrap()
}

/// A stream function's answer to batch `i` reports no failed record.
fn assert_no_batch_failures(r: &Value, i: usize) {
    let failed = r.get("batchItemFailures");
    let none = failed.is_none_or(|f| f.as_array().is_some_and(Vec::is_empty));
    assert!(none, "batch {i}: {r}");
}

/// The (name, type) of a Glue storage descriptor's columns.
fn glue_columns(sd: &aws_sdk_glue::types::StorageDescriptor) -> Vec<(String, String)> {
    let columns = sd.columns().iter();
    columns
        .map(|c| (c.name().to_string(), c.r#type().unwrap().to_string()))
        .collect()
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// The example clickstream table's data columns as Glue lists them.
fn example_columns() -> Vec<(String, String)> {
    pairs(&[
        ("event_id", "string"),
        ("event_time", "timestamp"),
        ("user_id", "bigint"),
        ("session_id", "string"),
        ("page", "string"),
        ("referrer", "string"),
        ("country", "string"),
        ("device", "string"),
        ("ip_hash", "string"),
        ("price", "decimal(10,2)"),
        ("properties", "string"),
    ])
}

/// An SQS batch (shaped as `events/sqs-transform-tasks.json`) carrying these bodies.
fn sqs_event(messages: &[(String, String)]) -> Value {
    let template = fixture("sqs-transform-tasks.json")["Records"][0].clone();
    let records: Vec<Value> = messages
        .iter()
        .map(|(id, body)| {
            let mut r = template.clone();
            r["messageId"] = json!(id);
            r["body"] = json!(body);
            r
        })
        .collect();
    json!({ "Records": records })
}

fn failures(response: &Value) -> Vec<String> {
    response["batchItemFailures"]
        .as_array()
        .unwrap_or_else(|| panic!("not an SQS batch response: {response}"))
        .iter()
        .map(|f| f["itemIdentifier"].as_str().unwrap().to_string())
        .collect()
}

/// Download the S3 lake's clickstream table (pyarrow's own S3 client) and
/// check it holds exactly the raw rows, transformed; the download and the
/// figures stay for further checks.
fn lake_matches_raw(w: &World) -> (tempfile::TempDir, Value) {
    let local = tempfile::tempdir().unwrap();
    download(&w.lake, "clickstream", &local.path().join("clickstream"));
    let v = python_json(
        &repo_root(),
        &compare_script(local.path(), &format!("{RAW}/*"), "read_json"),
    );
    check_lake_matches_raw(&v);
    (local, v)
}

/// Download `s3://bucket/prefix` with pyarrow's own S3 client into `dir`.
fn download(bucket: &str, prefix: &str, dir: &Path) {
    let v = python_json(
        &repo_root(),
        &format!(
            r#"
import json, pyarrow.fs as fs
s3 = fs.S3FileSystem(endpoint_override={ep:?}, scheme="http", access_key="testing", secret_key="testing", region="us-east-1")
fs.copy_files("{bucket}/{prefix}", {dir:?}, source_filesystem=s3, destination_filesystem=fs.LocalFileSystem())
print(json.dumps({{"ok": True}}))
"#,
            ep = moto().endpoint,
            dir = dir.to_str().unwrap()
        ),
    );
    assert_eq!(v["ok"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_become_parquet_and_glue_partitions_through_the_three_functions() {
    // Deployed with the pipeline's one table named: the catalog may
    // register that table and no other.
    let w = World::deployed(|_| json!({"Tables": "clickstream"})).await;
    // Keys with a space and a `+`: S3 notifications encode both.
    let plain = "raw/clickstream/2026-11-25/events 00000.jsonl";
    let gzip = "raw/clickstream/c++/events-00001.jsonl.gz";
    for (key, file) in [
        (plain, "events-00000.jsonl"),
        (gzip, "events-00001.jsonl.gz"),
    ] {
        let bytes = std::fs::read(repo_root().join(RAW).join(file)).unwrap();
        w.put(&w.raw, key, bytes).await;
    }
    w.put(&w.raw, "raw/other/readme.txt", b"not data".to_vec())
        .await;
    let deps = w.deps(256 * 1024).await;

    // Planner: an S3 notification for the three uploads.
    let event = s3_event(&w.raw, &[plain, gzip, "raw/other/readme.txt"]);
    let planned = invoke!(deps.planner, planner::handle, event)
        .await
        .expect("planner");
    assert_eq!(planned["objects"], 2, "{planned}");
    // 1.5 MB plain in 256 KiB chunks, plus the gzip file whole.
    let tasks = planned["tasks"].as_u64().unwrap();
    assert_eq!(tasks, 6 + 1, "{planned}");
    assert_eq!(planned["queued"], tasks, "{planned}");
    let skipped = planned["skipped"].as_array().unwrap();
    assert_eq!(skipped.len(), 1, "{planned}");
    assert!(
        skipped[0].as_str().unwrap().contains("matches no table"),
        "{planned}"
    );

    // Transform: the queued tasks, as SQS delivers them, in batches of up to 10.
    let messages = w.drain().await;
    assert_eq!(messages.len() as u64, tasks);
    for m in &messages {
        let spec: TaskSpec = serde_json::from_str(&m.1).expect("tasks are TaskSpec JSON");
        assert_eq!(spec.table, "clickstream");
        assert!(
            spec.source.url.ends_with("events 00000.jsonl")
                || spec.source.url.ends_with("c++/events-00001.jsonl.gz"),
            "keys are decoded: {}",
            spec.source.url
        );
    }
    let batch = sqs_event(&messages);
    let response = invoke!(deps.transform, transform::handle, batch.clone())
        .await
        .expect("transform");
    assert_eq!(failures(&response), Vec::<String>::new());
    let files = w.keys(&w.lake, "clickstream").await;
    assert!(files.iter().all(|k| k.ends_with(".parquet")), "{files:?}");
    let commits = w.keys(&w.lake, "_sluice/commits/clickstream").await;
    assert_eq!(commits.len() as u64, tasks);

    // A duplicate delivery of the whole batch writes nothing: its chunks are committed.
    let again = invoke!(deps.transform, transform::handle, batch)
        .await
        .expect("transform");
    assert_eq!(failures(&again), Vec::<String>::new());
    assert_eq!(w.keys(&w.lake, "clickstream").await, files);

    // Catalog: the commit records' Object Created events, through SQS.
    let events = commit_events(&w, "clickstream").await;
    let response = invoke!(deps.catalog, catalog::handle, sqs_event(&events))
        .await
        .expect("catalog");
    assert_eq!(failures(&response), Vec::<String>::new());

    // The Glue table, field by field.
    let table = w.glue_table("clickstream").await;
    assert_eq!(table.table_type(), Some("EXTERNAL_TABLE"));
    let params = table.parameters().unwrap();
    assert_eq!(params.get("classification").unwrap(), "parquet");
    assert_eq!(params.get("parquet.compression").unwrap(), "ZSTD");
    assert_eq!(params.get("EXTERNAL").unwrap(), "TRUE");
    let sd = table.storage_descriptor().unwrap();
    let table_location = format!("s3://{}/clickstream/", w.lake);
    assert_eq!(sd.location(), Some(table_location.as_str()));
    assert_eq!(
        sd.input_format(),
        Some("org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat")
    );
    assert_eq!(
        sd.output_format(),
        Some("org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat")
    );
    assert_eq!(
        sd.serde_info().unwrap().serialization_library(),
        Some("org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe")
    );
    let columns = glue_columns(sd);
    let want = example_columns();
    assert_eq!(columns, want);
    let keys: Vec<(&str, Option<&str>)> = table
        .partition_keys()
        .iter()
        .map(|c| (c.name(), c.r#type()))
        .collect();
    assert_eq!(keys, [("dt", Some("date")), ("event_type", Some("string"))]);

    // The partitions: one per (day, event type) in the data, each where its files are.
    let mut partitions = Vec::new();
    let mut token = None;
    loop {
        let page = w
            .glue
            .get_partitions()
            .database_name(&w.database)
            .table_name("clickstream")
            .set_next_token(token)
            .send()
            .await
            .unwrap();
        partitions.extend(page.partitions().iter().cloned());
        token = page.next_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    let dirs: BTreeSet<String> = files
        .iter()
        .map(|k| {
            let rest = k.strip_prefix("clickstream/").unwrap();
            rest[..rest.rfind('/').unwrap()].to_string()
        })
        .collect();
    assert_eq!(partitions.len(), dirs.len());
    assert_eq!(partitions.len(), 56);
    for p in &partitions {
        let values = p.values();
        let path = format!("dt={}/event_type={}", values[0], values[1]);
        assert!(dirs.contains(&path), "{path} has no files");
        let sd = p.storage_descriptor().unwrap();
        assert_eq!(
            sd.location(),
            Some(format!("{table_location}{path}/").as_str())
        );
        assert_eq!(
            sd.serde_info().unwrap().serialization_library(),
            Some("org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe")
        );
    }

    // Registering the same commit records again adds nothing and fails nothing.
    let again = invoke!(
        deps.catalog,
        catalog::handle,
        json!({"bucket": w.lake, "prefix": "_sluice/commits/clickstream/"}),
    )
    .await
    .expect("catalog, direct");
    assert_eq!(again["commits"], tasks);
    assert_eq!(again["partitions_added"], 0);

    // The Parquet, read back from S3 by pyarrow, holds exactly the raw rows, transformed.
    lake_matches_raw(&w);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planner_takes_every_event_shape_in_events() {
    let w = World::new().await;
    let deps = w.deps(64 * 1024 * 1024).await;
    let plan = async |event: Value| invoke!(deps.planner, planner::handle, event).await.unwrap();
    let body = b"{\"event_id\":\"e1\",\"event_time\":\"2026-11-25T10:00:00Z\",\"user_id\":1,\"event_type\":\"click\"}\n".to_vec();
    // The objects the fixtures name, in this test's raw bucket.
    let special = fixture("s3-put-special-keys.json");
    let mut decoded = Vec::new();
    for r in special["Records"].as_array().unwrap() {
        let key = sluice::event::decode_key(r["s3"]["object"]["key"].as_str().unwrap()).unwrap();
        w.put(&w.raw, &key, body.clone()).await;
        decoded.push(key);
    }
    assert_eq!(
        decoded[..3],
        [
            "raw/clickstream/2026-11-25/events with spaces.jsonl",
            "raw/clickstream/c++/events+1.jsonl",
            "raw/clickstream/café/日本 ü.jsonl",
        ]
    );
    for f in ["events-00000.jsonl", "events-00001.jsonl.gz"] {
        let bytes = std::fs::read(repo_root().join(RAW).join(f)).unwrap();
        w.put(&w.raw, &format!("raw/clickstream/{f}"), bytes).await;
    }
    let retarget = |mut v: Value| -> Value {
        let text = v.to_string().replace("example-raw-bucket", &w.raw);
        v = serde_json::from_str(&text).unwrap();
        v
    };

    // S3 notification with encoded keys: three planned, one skipped.
    let r = plan(retarget(special)).await;
    assert_eq!(
        (r["objects"].as_u64(), r["queued"].as_u64()),
        (Some(3), Some(3)),
        "{r}"
    );
    assert!(
        r["skipped"][0]
            .as_str()
            .unwrap()
            .contains("not-a-table.txt"),
        "{r}"
    );
    // S3 notification, EventBridge, and the S3 test event.
    let r = plan(retarget(fixture("s3-put.json"))).await;
    assert_eq!(r["objects"], 1, "{r}");
    let r = plan(retarget(fixture("eventbridge-object-created.json"))).await;
    assert_eq!(r["objects"], 1, "{r}");
    let r = plan(retarget(fixture("s3-test-event.json"))).await;
    assert_eq!(r["objects"], 0);
    assert!(
        r["ignored"][0].as_str().unwrap().contains("s3:TestEvent"),
        "{r}"
    );
    // SQS carrying an S3 notification, an EventBridge event and a test event,
    // plus one message that is not JSON: only that one is reported failed.
    let mut sqs = retarget(fixture("sqs-s3-and-eventbridge.json"));
    let mut broken = sqs["Records"][0].clone();
    broken["messageId"] = json!("broken-message");
    broken["body"] = json!("{not json");
    sqs["Records"].as_array_mut().unwrap().push(broken);
    let r = plan(sqs).await;
    assert_eq!(failures(&r), ["broken-message"]);
    let queued = w.drain().await;
    // 3 + 1 + 1 + 2 tasks (one chunk per object at 64 MiB).
    assert_eq!(queued.len(), 7);

    // Direct payloads write a manifest (a JSON array of TaskSpecs) and say where.
    let r = plan(retarget(fixture("direct-prefix.json"))).await;
    assert_eq!(r["objects"], 5, "{r}");
    let manifest = r["manifest"].clone();
    assert_eq!(manifest["bucket"], json!(w.lake));
    assert_eq!(manifest["tasks"], 5);
    let key = manifest["key"].as_str().unwrap();
    assert!(
        key.starts_with("_sluice/manifests/") && key.ends_with(".json"),
        "{key}"
    );
    let bytes = w.get(&w.lake, key).await;
    let lines: Vec<TaskSpec> = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(lines.len(), 5);
    assert_eq!(
        bytes.iter().filter(|b| **b == b'\n').count(),
        7,
        "one task per line"
    );
    assert!(
        lines
            .iter()
            .any(|t| t.source.url.ends_with("café/日本 ü.jsonl"))
    );
    assert!(
        w.drain().await.is_empty(),
        "a direct payload queues nothing"
    );
    // The input root itself as the prefix: everything, the stray file skipped.
    let r = plan(json!({"bucket": w.raw, "prefix": "raw"})).await;
    assert_eq!(
        (r["objects"].as_u64(), r["skipped_total"].as_u64()),
        (Some(5), Some(1)),
        "{r}"
    );
    let r = plan(retarget(fixture("direct-object.json"))).await;
    assert_eq!(r["manifest"]["tasks"], 1, "{r}");

    // One task from the manifest, run directly as a Step Functions Map item would.
    let item = serde_json::to_value(&lines[0]).unwrap();
    let result = invoke!(deps.transform, transform::handle, item)
        .await
        .expect("transform task");
    assert_eq!(result["rows_out"], 1, "{result}");
    // The workflow's catalog step on the manifest: the one committed chunk is
    // registered, the four that never ran are named.
    let r = invoke!(
        deps.catalog,
        catalog::handle,
        json!({ "manifest": manifest })
    )
    .await
    .expect("catalog on a manifest");
    assert_eq!(r["commits"], 1, "{r}");
    assert_eq!(r["missing_total"], 4, "{r}");
    assert!(
        r["missing"][0]
            .as_str()
            .unwrap()
            .contains("no commit record s3://"),
        "{r}"
    );
    let e = invoke!(
        deps.catalog, catalog::handle,
        json!({"manifest": {"url": format!("s3://{}/elsewhere.json", w.raw), "key": "x", "tasks": 1}}),
    )
    .await
    .unwrap_err();
    assert!(
        !e.retryable && e.message.contains("is not under the lake"),
        "{e}"
    );

    // Errors: a payload that is no event is permanent; so is a task outside the input.
    let e = invoke!(deps.planner, planner::handle, json!({"hello": 1}))
        .await
        .unwrap_err();
    assert!(
        !e.retryable && e.message.contains("not a valid event"),
        "{e}"
    );
    let mut outside = lines[0].clone();
    outside.source.url = "s3://somewhere-else/x.jsonl".into();
    let e = invoke!(
        deps.transform,
        transform::handle,
        serde_json::to_value(&outside).unwrap()
    )
    .await
    .unwrap_err();
    assert!(
        !e.retryable && e.message.contains("not under the input root"),
        "{e}"
    );
    // A truncated gzip fails its chunk for good, naming the file.
    let gz = std::fs::read(repo_root().join(RAW).join("events-00001.jsonl.gz")).unwrap();
    w.put(
        &w.raw,
        "raw/clickstream/cut.jsonl.gz",
        gz[..gz.len() / 2].to_vec(),
    )
    .await;
    let r = invoke!(
        deps.planner,
        planner::handle,
        json!({"bucket": w.raw, "key": "raw/clickstream/cut.jsonl.gz"}),
    )
    .await
    .unwrap();
    let task = w.manifest_tasks(&r).await[0].clone();
    let e = invoke!(deps.transform, transform::handle, task)
        .await
        .unwrap_err();
    assert!(!e.retryable && e.message.contains("cut.jsonl.gz"), "{e}");
    let d: lambda_runtime::Diagnostic = e.into();
    assert_eq!(d.error_type, "Sluice.Permanent");
}

/// A backfill of a prefix plans every object from the listing alone: its
/// keys, sizes and ETags, with no HEAD per object (the planner's answer and
/// the manifest name every object; the proxy in front of S3 counts the
/// requests it forwards, by method).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefix_is_planned_from_its_listing_with_no_head_per_object() {
    let w = World::new().await;
    let line = std::fs::read_to_string(repo_root().join(RAW).join("events-00000.jsonl"))
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_string();
    for n in 0..40 {
        w.put(
            &w.raw,
            &format!("raw/clickstream/part-{n:03}.jsonl"),
            format!("{line}\n").repeat(n + 1).into_bytes(),
        )
        .await;
    }
    let proxy = sluice_tests::moto::FaultProxy::start(0);
    let deps = w
        .deps_with(1 << 20, |s| s.aws.endpoint = Some(proxy.endpoint.clone()))
        .await;
    let before = proxy.counts();
    let planned = invoke!(
        deps.planner,
        planner::handle,
        json!({"bucket": w.raw, "prefix": "raw/clickstream/"}),
    )
    .await
    .unwrap();
    let after = proxy.counts();
    assert_eq!(planned["objects"], 40, "{planned}");
    let heads = |c: &Value| c["forwarded_HEAD"].as_u64().unwrap_or(0);
    assert_eq!(heads(&after), heads(&before), "{before} then {after}");
    let tasks: Vec<TaskSpec> =
        serde_json::from_value(Value::Array(w.manifest_tasks(&planned).await)).unwrap();
    let mut sizes: Vec<(String, u64)> = tasks
        .iter()
        .map(|t| (t.source.url.clone(), t.source.size))
        .collect();
    sizes.sort();
    let want: Vec<(String, u64)> = (0..40)
        .map(|n| {
            (
                format!("s3://{}/raw/clickstream/part-{n:03}.jsonl", w.raw),
                ((line.len() + 1) * (n + 1)) as u64,
            )
        })
        .collect();
    assert_eq!(sizes, want);
    assert!(
        tasks
            .iter()
            .all(|t| t.source.e_tag.is_some() && t.source.modified.is_some()),
        "every version told apart by its ETag and time: {tasks:?}"
    );
}

/// A backfill planned and registered in pages: 40 objects (and two that
/// are skipped) planned 7 a page give manifests that together hold every
/// object's task once, each page starting after the last key the page
/// before it looked at, down to an empty last page; the same prefix sent
/// through the queue goes out page by page in one invocation. Transformed,
/// then registered one page's manifest at a time, the lake holds every raw
/// row once (DuckDB) and Glue a partition for each folder of Parquet files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_planned_and_registered_in_pages_loses_and_doubles_nothing() {
    let w = World::new().await;
    let lines: Vec<String> =
        std::fs::read_to_string(repo_root().join(RAW).join("events-00000.jsonl"))
            .unwrap()
            .lines()
            .map(|l| format!("{l}\n"))
            .collect();
    let local = tempfile::tempdir().unwrap();
    let mut from = 0;
    for n in 0..40 {
        // Part n holds the next n + 1 lines of the example.
        let body: String = lines[from..from + n + 1].concat();
        from += n + 1;
        std::fs::write(local.path().join(format!("part-{n:03}.jsonl")), &body).unwrap();
        w.put(
            &w.raw,
            &format!("raw/clickstream/part-{n:03}.jsonl"),
            body.into_bytes(),
        )
        .await;
    }
    w.put(&w.raw, "raw/clickstream/_SUCCESS", Vec::new()).await;
    w.put(
        &w.raw,
        "raw/clickstream/.staging/part.jsonl",
        lines[0].clone().into_bytes(),
    )
    .await;
    let deps = w.deps(1 << 20).await;
    let prefix = json!({"bucket": w.raw, "prefix": "raw/clickstream/"});

    let whole = invoke!(deps.planner, planner::handle, prefix.clone())
        .await
        .unwrap();
    assert_eq!(whole["next"], Value::Null, "one page: {whole}");
    let mut want: Vec<String> = w
        .manifest_tasks(&whole)
        .await
        .iter()
        .map(Value::to_string)
        .collect();
    want.sort();
    assert_eq!(want.len(), 40);

    // 42 objects listed, 7 a page: six full pages, then an empty one.
    let mut pages = Vec::new();
    let mut after = Value::Null;
    loop {
        let mut event = prefix.clone();
        event["after"] = after.clone();
        event["page_tasks"] = json!(7);
        let page = invoke!(deps.planner, planner::handle, event).await.unwrap();
        after = page["next"].clone();
        pages.push(page);
        if after.is_null() {
            break;
        }
        assert!(pages.len() < 10, "the pages never end: {pages:?}");
    }
    let sizes: Vec<u64> = pages
        .iter()
        .map(|p| p["tasks"].as_u64().unwrap() + p["skipped_total"].as_u64().unwrap())
        .collect();
    assert_eq!(sizes, [7, 7, 7, 7, 7, 7, 0], "{pages:?}");
    let nexts: Vec<&str> = pages[..6]
        .iter()
        .map(|p| p["next"].as_str().unwrap())
        .collect();
    // (`.staging/` and `_SUCCESS` sort first, and are skipped.)
    assert_eq!(nexts[0], "raw/clickstream/part-004.jsonl");
    assert_eq!(nexts[5], "raw/clickstream/part-039.jsonl");
    assert!(nexts.windows(2).all(|k| k[0] < k[1]), "{nexts:?}");
    let mut paged = Vec::new();
    for page in &pages {
        let tasks = w.manifest_tasks(page).await;
        assert_eq!(tasks.len() as u64, page["tasks"].as_u64().unwrap());
        paged.extend(tasks.iter().map(Value::to_string));
    }
    paged.sort();
    assert_eq!(
        paged, want,
        "the pages hold the whole plan's tasks, once each"
    );

    // Through the queue: one invocation sends every page.
    let message = json!({"bucket": w.raw, "prefix": "raw/clickstream/", "page_tasks": 7});
    let queued = invoke!(
        deps.planner,
        planner::handle,
        sqs_event(&[("m-1".into(), message.to_string())])
    )
    .await
    .unwrap();
    assert_eq!(failures(&queued), Vec::<String>::new());
    let mut sent: Vec<String> = w
        .drain()
        .await
        .into_iter()
        .map(|(_, body)| serde_json::from_str::<Value>(&body).unwrap().to_string())
        .collect();
    sent.sort();
    assert_eq!(
        sent, want,
        "the queue got the whole plan's tasks, once each"
    );

    for task in w.manifest_tasks(&whole).await {
        invoke!(deps.transform, transform::handle, task)
            .await
            .expect("transform");
    }
    let mut commits = 0;
    for page in &pages {
        let registered = invoke!(
            deps.catalog,
            catalog::handle,
            json!({"manifest": page["manifest"]})
        )
        .await
        .unwrap();
        assert_eq!(registered["missing_total"], 0, "{registered}");
        assert_eq!(registered["commits"], page["tasks"], "{registered}");
        commits += registered["commits"].as_u64().unwrap();
    }
    assert_eq!(commits, 40);
    let lake = tempfile::tempdir().unwrap();
    download(&w.lake, "clickstream", &lake.path().join("clickstream"));
    check_clickstream_matches(
        lake.path(),
        &format!("{}/*.jsonl", local.path().display()),
        false,
    );
    let mut folders: Vec<String> = w
        .keys(&w.lake, "clickstream/")
        .await
        .iter()
        .filter(|k| k.ends_with(".parquet"))
        .map(|k| format!("s3://{}/{}/", w.lake, k.rsplit_once('/').unwrap().0))
        .collect();
    folders.sort();
    folders.dedup();
    let mut partitions: Vec<String> = w
        .glue_partitions("clickstream")
        .await
        .iter()
        .map(|p| {
            let sd = p.storage_descriptor().unwrap();
            sd.location().unwrap().to_string()
        })
        .collect();
    partitions.sort();
    assert_eq!(partitions, folders, "a Glue partition for each folder");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn glue_catalog_keeps_the_catalog_contract() {
    let w = World::new().await;
    let client = aws_sdk_glue::Client::new(&w.aws.sdk_config().await);
    let glue =
        sluice::glue::GlueCatalog::new(client, &w.database, &format!("s3://{}/lake", w.lake), true)
            .await
            .unwrap();
    sluice::catalog::contract::run(&glue).await;
    // The partitions of the contract are where Athena looks for them.
    let p = w
        .glue
        .get_partition()
        .database_name(&w.database)
        .table_name("t")
        .set_partition_values(Some(vec!["2026-01-02".into()]))
        .send()
        .await
        .unwrap();
    assert_eq!(
        p.partition()
            .unwrap()
            .storage_descriptor()
            .unwrap()
            .location(),
        Some(format!("s3://{}/lake/t/dt=2026-01-02/", w.lake).as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sluice_run_writes_an_s3_lake_registered_in_glue() {
    let w = World::new().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sluice.toml");
    // The input stays local; the lake is in S3 and the catalog is Glue.
    let text = w.pipeline().replace(
        &format!("root = \"s3://{}/raw\"", w.raw),
        &format!("root = {:?}", repo_root().join("examples/clickstream/raw")),
    );
    std::fs::write(&config, text).unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(sluice_bin())
            .args(args)
            .envs(moto().env())
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "sluice {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let c = config.to_str().unwrap();
    let summary = run(&["run", "--config", c, "--chunk-size", "512KiB"]);
    assert!(summary.contains(&format!("s3://{}", w.lake)), "{summary}");
    let tables = run(&["tables", "--config", c]);
    assert!(
        tables.contains("clickstream") && tables.contains(" 56 "),
        "{tables}"
    );
    let count = run(&[
        "query",
        "--config",
        c,
        "--format",
        "csv",
        "SELECT count(*) AS n FROM clickstream",
    ]);
    let partitions = w.glue_partitions("clickstream").await;
    assert!(!partitions.is_empty());
    let (_local, v) = lake_matches_raw(&w);
    let total: u64 = v["pyarrow_rows"].as_u64().unwrap();
    assert_eq!(count.trim(), format!("n\n{total}"), "{count}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalog_queues_partitions_and_the_compactor_merges_them_in_s3_and_glue() {
    let w = World::new().await;
    for file in ["events-00000.jsonl", "events-00001.jsonl.gz"] {
        let bytes = std::fs::read(repo_root().join(RAW).join(file)).unwrap();
        w.put(&w.raw, &format!("raw/clickstream/{file}"), bytes)
            .await;
    }
    let deps = w
        .deps_with(256 * 1024, |s| {
            s.compact.min_age = std::time::Duration::ZERO;
            s.compact.min_files = 2;
        })
        .await;
    // Plan and transform every chunk (as the backfill's Map does).
    let planned = invoke!(
        deps.planner,
        planner::handle,
        json!({"bucket": w.raw, "prefix": "raw/clickstream/"}),
    )
    .await
    .unwrap();
    let manifest = planned["manifest"].clone();
    let tasks = w.manifest_tasks(&planned).await;
    for t in &tasks {
        invoke!(deps.transform, transform::handle, t.clone())
            .await
            .expect("transform");
    }
    let before = w.keys(&w.lake, "clickstream").await;
    // The catalog, on the commit records' events: it registers them and
    // queues every partition with two or more small files.
    let events = commit_events(&w, "clickstream").await;
    let r = invoke!(deps.catalog, catalog::handle, sqs_event(&events))
        .await
        .unwrap();
    assert_eq!(failures(&r), Vec::<String>::new());
    let queued = w.drain_queue(&w.compaction_queue_url).await;
    let multi: BTreeSet<String> = {
        let mut count = std::collections::BTreeMap::<String, usize>::new();
        for k in &before {
            let dir = k[..k.rfind('/').unwrap()].to_string();
            *count.entry(dir).or_default() += 1;
        }
        count
            .into_iter()
            .filter(|(_, n)| *n >= 2)
            .map(|(d, _)| d)
            .collect()
    };
    assert!(!multi.is_empty());
    assert_eq!(
        queued.len(),
        multi.len(),
        "one message per partition worth compacting"
    );

    // The compactor on the queued partitions.
    let r = invoke!(deps.compactor, compactor::handle, sqs_event(&queued), None)
        .await
        .expect("compactor");
    assert_eq!(failures(&r), Vec::<String>::new());
    let after = w.keys(&w.lake, "clickstream").await;
    assert_eq!(after.len(), 56, "one file per partition: {after:?}");
    assert!(after.iter().all(|k| k.contains("/part-m")), "{after:?}");
    // Glue knows each compacted partition's figures.
    let p = w
        .glue
        .get_partition()
        .database_name(&w.database)
        .table_name("clickstream")
        .partition_values("2026-11-20")
        .partition_values("click")
        .send()
        .await
        .unwrap()
        .partition
        .unwrap();
    let params = p.parameters().unwrap();
    assert_eq!(
        params.get("numFiles").map(String::as_str),
        Some("1"),
        "{params:?}"
    );
    assert!(params.get("numRows").unwrap().parse::<u64>().unwrap() > 0);
    assert!(
        p.storage_descriptor()
            .unwrap()
            .location()
            .unwrap()
            .ends_with("dt=2026-11-20/event_type=click/")
    );

    // The backfill's last step on the same manifest, and a scheduled sweep:
    // nothing left to merge; a duplicate chunk delivery writes nothing.
    let r = invoke!(
        deps.compactor,
        compactor::handle,
        json!({"manifest": manifest, "min_age": "0s"}),
        None
    )
    .await
    .unwrap();
    assert_eq!(
        (r["total"].as_u64(), r["outputs"].as_u64()),
        (Some(56), Some(0)),
        "{r}"
    );
    assert!(r.get("next").is_none(), "{r}");
    let scheduled = json!({"version": "0", "id": "x", "detail-type": "Scheduled Event", "source": "aws.events",
                           "account": "123456789012", "time": "2026-11-26T03:00:00Z", "region": "us-east-1",
                           "resources": [], "detail": {}});
    let r = invoke!(deps.compactor, compactor::handle, scheduled, None)
        .await
        .unwrap();
    assert_eq!(
        (
            r["partitions"].as_u64(),
            r["outputs"].as_u64(),
            // Left out of the answer when none.
            r["files_vacuumed"].as_u64().unwrap_or(0)
        ),
        (Some(56), Some(0), 0),
        "every file is committed: {r}"
    );
    invoke!(deps.transform, transform::handle, tasks[0].clone())
        .await
        .unwrap();
    assert_eq!(w.keys(&w.lake, "clickstream").await, after);
    // A deadline already near: the manifest request says where to go on.
    let soon = std::time::Instant::now() + std::time::Duration::from_secs(1);
    let r = invoke!(
        deps.compactor,
        compactor::handle,
        json!({"manifest": manifest, "start": 3}),
        Some(soon)
    )
    .await
    .unwrap();
    assert_eq!(r["next"], 4, "one partition per call at least: {r}");
    assert_eq!(r["partitions"], 1, "{r}");
    // Bad requests are permanent errors that say what was expected.
    let e = invoke!(
        deps.compactor,
        compactor::handle,
        json!({"table": "clickstream", "partition": "day=1"}),
        None,
    )
    .await
    .unwrap_err();
    assert!(
        !e.retryable && e.message.contains("not a partition path"),
        "{e}"
    );

    // pyarrow reads exactly the raw rows back from the compacted lake.
    lake_matches_raw(&w);
}

/// Chunks of an `evolve` table finding different new fields update the Glue
/// table at once. Glue refuses an update whose VersionId is stale, and the
/// writer must read the table again and merge, or a column is lost. moto
/// ignores VersionId, so the calls go through the proxy, which checks it as
/// Glue does (first shown to refuse a stale update here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn glue_keeps_every_column_when_writers_evolve_a_table_at_once() {
    let w = World::new().await;
    let proxy = sluice_tests::moto::FaultProxy::start(0);
    // The catalog function's Glue code, with its role's credentials.
    let catalog_role = sluice::store::AwsOptions {
        endpoint: Some(proxy.endpoint.clone()),
        ..w.stack.aws("CatalogFunction")
    };
    let client = aws_sdk_glue::Client::new(&catalog_role.sdk_config().await);
    let glue = sluice::glue::GlueCatalog::new(
        client.clone(),
        &w.database,
        &format!("s3://{}/lake", w.lake),
        false,
    )
    .await
    .unwrap();

    // The proxy keeps Glue's promise: an update from a stale version fails.
    let t = sluice::catalog::contract::table(vec![sluice::commit::ColumnDef {
        name: "a".into(),
        hive_type: "bigint".into(),
    }]);
    glue.ensure_table(&t).await.unwrap();
    let current = client
        .get_table()
        .database_name(&w.database)
        .name("t")
        .send()
        .await
        .unwrap();
    let current = current.table().unwrap();
    let version = current.version_id().unwrap().to_string();
    let input = aws_sdk_glue::types::TableInput::builder()
        .name("t")
        .set_storage_descriptor(current.storage_descriptor().cloned())
        .build()
        .unwrap();
    let update = |v: &str| {
        client
            .update_table()
            .database_name(&w.database)
            .table_input(input.clone())
            .version_id(v)
            .send()
    };
    update(&version)
        .await
        .expect("an update from the current version");
    let e = update(&version).await.unwrap_err();
    assert_eq!(
        e.as_service_error().and_then(|e| e.meta().code()),
        Some("ConcurrentModificationException"),
        "{e:?}"
    );

    sluice::catalog::contract::concurrent_evolution(&glue).await;
    println!("faults: {}", proxy.counts());
}

/// A multipart upload whose completion is applied by S3 and whose answer is
/// lost: the retry meets NoSuchUpload, and the object is there. The write
/// succeeds, once, with every byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_to_completing_an_upload_is_a_completed_upload() {
    let w = World::new().await;
    let proxy = sluice_tests::moto::FaultProxy::losing_first(0, &["complete"]);
    let lake =
        sluice::store::Location::open_with(&format!("s3://{}/lake", w.lake), true, &proxy.aws())
            .unwrap();
    let path = lake.child("t/big.bin").unwrap();
    // 12 MiB in parts of 5 MiB: three parts, one completion.
    let data: Vec<u8> = (0..12u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut writer =
        object_store::buffered::BufWriter::with_capacity(lake.store.clone(), path.clone(), 5 << 20);
    tokio::io::AsyncWriteExt::write_all(&mut writer, &data)
        .await
        .unwrap();
    tokio::io::AsyncWriteExt::shutdown(&mut writer)
        .await
        .expect("the completed upload is taken as completed");
    let counts = proxy.counts();
    assert_eq!(counts["lost_complete"], 1, "{counts}");
    let got = lake.get_bytes(&path).await.unwrap().unwrap();
    assert!(
        got[..] == data[..],
        "{} bytes back of {}",
        got.len(),
        data.len()
    );
}

/// `sluice run` and `sluice compact` on an S3 input and lake registered in
/// Glue, through a network that spoils every fourth request (S3 503 SlowDown
/// and Glue ThrottlingException, reset connections, 500s, GET bodies cut
/// halfway, writes applied with their answers lost): every fault is retried with backoff, and the lake holds exactly
/// the raw rows, once, with every partition in Glue. (Four partitions are
/// compacted: all 56 take about 100 s of backoff here.)
/// A multipart upload that S3 will not complete (`InvalidPart`) is
/// aborted, under the role of each function that writes files: a file
/// too large for one PUT, refused, leaves neither an object nor an
/// upload billed for its parts behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_upload_is_aborted_under_each_writers_role() {
    let w = World::new().await;
    let proxy = sluice_tests::moto::FaultProxy::losing_first(0, &["!complete"]);
    // 6 MiB in parts of 5 MiB: two parts, a refused completion.
    let data: Vec<u8> = (0..6u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    for (function, key) in [
        (
            "TransformFunction",
            "t/dt=2026-12-05/part-0a1b-00000.parquet",
        ),
        ("StreamFunction", "t/dt=2026-12-05/part-2c3d-00000.parquet"),
        // A merged file cut (Delta), a file a CDC merge rewrites.
        ("CatalogFunction", "t/part-m4e5f.parquet"),
        ("CatalogFunction", "t/part-u8c9d-00000.parquet"),
        ("CompactorFunction", "t/dt=2026-12-05/part-m6a7b.parquet"),
    ] {
        let role = AwsOptions {
            endpoint: Some(proxy.endpoint.clone()),
            ..w.stack.aws(function)
        };
        let lake =
            sluice::store::Location::open_with(&format!("s3://{}", w.lake), true, &role).unwrap();
        let path = lake.child(key).unwrap();
        let mut writer = object_store::buffered::BufWriter::with_capacity(
            lake.store.clone(),
            path.clone(),
            sluice::write::UPLOAD_BUFFER,
        );
        tokio::io::AsyncWriteExt::write_all(&mut writer, &data)
            .await
            .unwrap();
        let e = tokio::io::AsyncWriteExt::shutdown(&mut writer)
            .await
            .expect_err("S3 refuses the completion");
        assert!(e.to_string().contains("InvalidPart"), "{function}: {e}");
        assert!(
            lake.get_bytes(&path).await.unwrap().is_none(),
            "{function}: no object"
        );
        assert_eq!(
            multipart_uploads(&w.lake),
            Vec::<String>::new(),
            "{function}: the upload is aborted"
        );
    }
    assert_eq!(proxy.counts()["refused_complete"], 5);
}

/// The keys of the multipart uploads in progress in `bucket`, as S3's
/// ListMultipartUploads answers them (asked as the tests' own user).
fn multipart_uploads(bucket: &str) -> Vec<String> {
    use std::io::{Read, Write};
    let endpoint = moto().endpoint.clone();
    let mut s = std::net::TcpStream::connect(endpoint.trim_start_matches("http://")).unwrap();
    write!(
        s,
        "GET /{bucket}?uploads HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    answer
        .split("<Key>")
        .skip(1)
        .map(|k| k[..k.find("</Key>").unwrap()].to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_faulty_network_loses_and_doubles_nothing() {
    let w = World::new().await;
    for entry in std::fs::read_dir(repo_root().join(RAW)).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        w.put(
            &w.raw,
            &format!("raw/clickstream/{name}"),
            std::fs::read(&path).unwrap(),
        )
        .await;
    }
    // Besides every fourth request, the first plain PUT, conditional PUT
    // (lease, commit record), delete and Glue call lose their answers after
    // they were applied.
    let proxy =
        sluice_tests::moto::FaultProxy::losing_first(4, &["put", "create", "delete", "glue"]);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sluice.toml");
    std::fs::write(&config, w.pipeline()).unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(sluice_bin())
            .args(args)
            .envs(proxy.env())
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "sluice {args:?} through the faulty network: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let c = config.to_str().unwrap();
    let summary = run(&["run", "--config", c, "--chunk-size", "1MiB"]);
    let compacted = run(&[
        "compact",
        "--config",
        c,
        "--min-age",
        "0s",
        "--min-files",
        "2",
        "--table",
        "clickstream",
        "--partition",
        "dt=2026-11-18/event_type=click",
        "--partition",
        "dt=2026-11-19/event_type=page_view",
        "--partition",
        "dt=2026-11-20/event_type=purchase",
        "--partition",
        "dt=2026-11-21/event_type=search",
    ]);
    let counts = proxy.counts();
    println!("faults: {counts}\n{summary}\n{compacted}");
    for kind in [
        "throttle",
        "reset",
        "error",
        "cut",
        "lost",
        "glue",
        "lost_put",
        "lost_create",
        "lost_delete",
        "lost_glue",
    ] {
        assert!(
            counts[kind].as_u64().unwrap() > 0,
            "no {kind} fault was injected: {counts}"
        );
    }
    let partitions = w.glue_partitions("clickstream").await;
    assert_eq!(partitions.len(), 56);
    let (local, _) = lake_matches_raw(&w);
    let files = sluice_tests::files_under(&local.path().join("clickstream"));
    // The four compacted partitions have one file each; the others their three.
    assert_eq!(
        files.len(),
        168 - 4 * 2,
        "files after compacting four partitions: {}",
        files.len()
    );
}

/// The planner, transform, catalog and compactor functions on a Delta lake
/// in S3 (moto): the catalog commits the chunks to the table's log and
/// registers a Glue table Athena reads natively (checked field by field);
/// the table, downloaded with its log, is read by DuckDB's `delta_scan` and
/// Python `deltalake` and compared row for row with the raw files; a second
/// delivery of every commit record adds nothing; the scheduled compactor
/// merges the table's small files in one commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_functions_keep_a_delta_table_in_s3_registered_in_glue_for_athena() {
    let w = World::new().await;
    for file in ["events-00000.jsonl", "events-00001.jsonl.gz"] {
        let bytes = std::fs::read(repo_root().join(RAW).join(file)).unwrap();
        w.put(&w.raw, &format!("raw/clickstream/{file}"), bytes)
            .await;
    }
    let deps = w.delta_deps(256 * 1024, |_| {}).await;
    assert!(
        deps.transform
            .engine()
            .table("clickstream")
            .unwrap()
            .table
            .table_format
            == sluice::config::TableFormat::Delta,
        "the Delta pipeline"
    );
    let event = s3_event(
        &w.raw,
        &[
            "raw/clickstream/events-00000.jsonl",
            "raw/clickstream/events-00001.jsonl.gz",
        ],
    );
    invoke!(deps.planner, planner::handle, event)
        .await
        .expect("planner");
    let messages = w.drain().await;
    let response = invoke!(deps.transform, transform::handle, sqs_event(&messages))
        .await
        .expect("transform");
    assert_eq!(failures(&response), Vec::<String>::new());
    // Nothing is visible to a Delta reader before the catalog commits.
    assert!(w.keys(&w.lake, "clickstream/_delta_log").await.is_empty());
    let events = commit_events(&w, "clickstream").await;
    let response = invoke!(deps.catalog, catalog::handle, sqs_event(&events))
        .await
        .expect("catalog");
    assert_eq!(failures(&response), Vec::<String>::new());
    let log = w.keys(&w.lake, "clickstream/_delta_log").await;
    assert_eq!(
        log.iter().filter(|k| k.ends_with(".json")).count(),
        2,
        "the table's creation and one commit of the batch: {log:?}"
    );
    // Delivered again: nothing added.
    let again = invoke!(deps.catalog, catalog::handle, sqs_event(&events))
        .await
        .expect("catalog");
    assert_eq!(failures(&again), Vec::<String>::new());
    assert_eq!(w.keys(&w.lake, "clickstream/_delta_log").await, log);
    // No lease left behind.
    assert!(w.keys(&w.lake, "_sluice/committers").await.is_empty());

    // The Glue table, field by field.
    let table = w.glue_table("clickstream").await;
    assert_eq!(table.table_type(), Some("EXTERNAL_TABLE"));
    let params = table.parameters().unwrap();
    assert_eq!(params.get("table_type").map(String::as_str), Some("DELTA"));
    assert_eq!(
        params.get("spark.sql.sources.provider").map(String::as_str),
        Some("delta")
    );
    assert_eq!(params.get("classification"), None);
    assert!(table.partition_keys().is_empty(), "{table:?}");
    let sd = table.storage_descriptor().unwrap();
    let location = format!("s3://{}/clickstream/", w.lake);
    assert_eq!(sd.location(), Some(location.as_str()));
    assert_eq!(
        sd.serde_info().unwrap().parameters().unwrap().get("path"),
        Some(&location)
    );
    let columns = glue_columns(sd);
    let mut want = example_columns();
    want.extend(pairs(&[("dt", "date"), ("event_type", "string")]));
    assert_eq!(columns, want);
    let partitions = w.glue_partitions("clickstream").await;
    assert!(partitions.is_empty());

    let check = |w: &World| {
        let local = tempfile::tempdir().unwrap();
        download(&w.lake, "clickstream", &local.path().join("clickstream"));
        let v = sluice_tests::delta_python_json(
            &repo_root(),
            &sluice_tests::compare_delta_script(local.path(), &format!("{RAW}/*"), None),
        );
        sluice_tests::check_delta_matches_raw(&v);
        v
    };
    let before = check(&w);

    // The scheduled sweep compacts the Delta table whole, in one commit.
    let deps = w
        .delta_deps(256 * 1024, |s| {
            s.compact.min_age = std::time::Duration::ZERO
        })
        .await;
    sweep(&deps).await;
    let after = check(&w);
    assert_eq!(after["version"], before["version"].as_u64().unwrap() + 1);
    assert!(
        after["files"].as_u64() < before["files"].as_u64(),
        "{after}"
    );
}

/// Change files of a source table (a Debezium stream, DMS CSV and DMS
/// Parquet folders, made by applying a random workload to SQLite) uploaded
/// to S3 (moto) and taken through the three functions: the catalog merges
/// each table's staged changes under its lease and registers Delta tables
/// in Glue; the tables, downloaded with their logs, are read by DuckDB's
/// `delta_scan` and Python `deltalake` and must equal the database's table
/// row for row; every commit record delivered again changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_functions_merge_change_files_into_tables_equal_to_the_source_database() {
    use sluice_tests::cdc::{
        KEY, TABLES, check_tables, columns as mirror_columns, config, workload,
    };
    let w = World::new().await;
    let made = tempfile::tempdir().unwrap();
    let raw = made.path().join("raw");
    workload(&raw, 5, 160, 3);
    let mut keys = Vec::new();
    for folder in ["debezium", "dms", "dms_parquet"] {
        let mut files: Vec<_> = std::fs::read_dir(raw.join(folder))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        for f in files {
            let key = format!("raw/{folder}/{f}");
            w.put(
                &w.raw,
                &key,
                std::fs::read(raw.join(folder).join(&f)).unwrap(),
            )
            .await;
            keys.push(key);
        }
    }
    let pipeline = config()
        .replace("[lake]\nroot = \"./cdc-lake\"", &w.lake_section())
        .replace(
            "[input]\nroot = \"examples/cdc/raw\"",
            &format!("[input]\nroot = \"s3://{}/raw\"", w.raw),
        );
    assert!(
        pipeline.contains("glue_database"),
        "the example changed shape"
    );
    let deps = w.deps_from(pipeline, 8 * 1024, |_| {}).await;
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    invoke!(deps.planner, planner::handle, s3_event(&w.raw, &refs))
        .await
        .expect("planner");
    let messages = w.drain().await;
    assert!(
        messages.len() > keys.len(),
        "small chunks: {}",
        messages.len()
    );
    let response = invoke!(deps.transform, transform::handle, sqs_event(&messages))
        .await
        .expect("transform");
    assert_eq!(failures(&response), Vec::<String>::new());
    let mut events = Vec::new();
    for t in TABLES {
        for k in w.keys(&w.lake, &format!("_sluice/commits/{t}")).await {
            events.push((
                format!("commit-{}", events.len()),
                eventbridge_event(&w.lake, &k).to_string(),
            ));
        }
    }
    assert_eq!(events.len(), messages.len(), "a commit record per chunk");
    let response = invoke!(deps.catalog, catalog::handle, sqs_event(&events))
        .await
        .expect("catalog");
    assert_eq!(failures(&response), Vec::<String>::new());

    let logs = async |w: &World| {
        let mut out = Vec::new();
        for t in TABLES.iter().copied().chain(["customers_dbz_changes"]) {
            out.push(w.keys(&w.lake, &format!("{t}/_delta_log")).await);
        }
        out
    };
    let before = logs(&w).await;
    assert!(before.iter().all(|l| !l.is_empty()), "{before:?}");
    let local = tempfile::tempdir().unwrap();
    for t in TABLES.iter().copied().chain(["customers_dbz_changes"]) {
        download(&w.lake, t, &local.path().join("lake").join(t));
    }
    let got = check_tables(local.path(), &raw, "after the functions");
    assert_eq!(
        got["changes"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v[1].as_u64().unwrap())
            .sum::<u64>(),
        got["events"].as_u64().unwrap(),
        "every Debezium change once in the change table: {got}"
    );

    // Delivered again: nothing merged, nothing committed.
    let again = invoke!(deps.catalog, catalog::handle, sqs_event(&events))
        .await
        .expect("catalog");
    assert_eq!(failures(&again), Vec::<String>::new());
    assert_eq!(logs(&w).await, before);
    assert!(w.keys(&w.lake, "_sluice/committers").await.is_empty());

    for t in TABLES {
        let table = w.glue_table(t).await;
        let params = table.parameters().unwrap();
        assert_eq!(params.get("table_type").map(String::as_str), Some("DELTA"));
        let columns: Vec<&str> = table
            .storage_descriptor()
            .unwrap()
            .columns()
            .iter()
            .map(|c| c.name())
            .collect();
        assert_eq!(columns, mirror_columns(KEY), "{t}");
    }
}

/// The transform function joins lookups read from S3, and reads a lookup
/// again when its object changes between two invocations (`refresh = 0`):
/// the orders of the first upload carry the first customers file's
/// segments, those of the second upload the second's, as DuckDB's join of
/// each upload with the file that stood beside it says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_transform_reads_a_changed_lookup_again_between_invocations() {
    use sluice_tests::enrichment::{lake_orders, oracle};
    // The lookup files sit beside the raw files, under ref/: the stack is
    // told so (LookupBucketName, LookupPrefix), as its README asks.
    let w = World::deployed(|raw| json!({"LookupBucketName": raw, "LookupPrefix": "ref/"})).await;
    let example = repo_root().join("examples/enrichment");
    let customers_v1 = std::fs::read(example.join("ref/customers.csv")).unwrap();
    let customers_v2 = String::from_utf8(customers_v1.clone())
        .unwrap()
        .replace(",consumer,", ",retail,")
        .into_bytes();
    w.put(&w.raw, "ref/customers.csv", customers_v1.clone())
        .await;
    let pipeline = w.enrichment().await.replace(
        "\"examples/enrichment/ref/customers.csv\"",
        &format!("\"s3://{}/ref/customers.csv\"\nrefresh = 0", w.raw),
    );
    assert!(pipeline.contains("refresh = 0") && !pipeline.contains("\"examples/"));
    let deps = w.deps_from(pipeline, 1 << 30, |_| {}).await;

    let local = tempfile::tempdir().unwrap();
    for (i, (file, customers)) in [
        ("orders-00000.jsonl", &customers_v1),
        ("orders-00001.jsonl", &customers_v2),
    ]
    .into_iter()
    .enumerate()
    {
        if i == 1 {
            w.put(&w.raw, "ref/customers.csv", customers.clone()).await;
        }
        std::fs::write(local.path().join(format!("customers-{i}.csv")), customers).unwrap();
        let key = format!("raw/orders/{file}");
        let bytes = std::fs::read(example.join("raw/orders").join(file)).unwrap();
        w.put(&w.raw, &key, bytes).await;
        let planned = plan_and_transform(&w, &deps, &[&key]).await;
        assert_eq!(planned["tasks"], 1, "{planned}");
    }

    download(&w.lake, "orders", &local.path().join("lake/orders"));
    let raw = example.join("raw/orders");
    let want = format!(
        "{} UNION ALL {}",
        oracle(
            raw.join("orders-00000.jsonl").to_str().unwrap(),
            local.path().join("customers-0.csv").to_str().unwrap()
        ),
        oracle(
            raw.join("orders-00001.jsonl").to_str().unwrap(),
            local.path().join("customers-1.csv").to_str().unwrap()
        )
    );
    let rows = sluice_tests::assert_same_rows(
        local.path(),
        &lake_orders(&local.path().join("lake")),
        &want,
    );
    assert_eq!(rows, 3000);
}

/// The stream function under its own role, on a lake in S3: Kafka batches
/// (as an MSK mapping delivers them) land once, row for row as DuckDB or
/// Python `deltalake` read them back; a Delta table's batches are committed
/// by the catalog function under its role; a second delivery of every batch
/// adds nothing.
async fn streams_land_in_s3_under_the_stream_role(delta: bool) {
    let w = World::new().await;
    let tmp = tempfile::tempdir().unwrap();
    let source = format!("{RAW}/events-00000.jsonl");
    let events = kafka_events(
        "clickstream-events",
        Path::new(&source),
        300,
        60,
        tmp.path(),
    );
    let mut pipeline = std::fs::read_to_string(repo_root().join("examples/streams/sluice.toml"))
        .unwrap()
        .replace("[lake]\nroot = \"./lake\"", &w.lake_section());
    if delta {
        pipeline = pipeline.replacen(
            "catalog = \"glue\"",
            "catalog = \"glue\"\ntable_format = \"delta\"",
            1,
        );
    }
    assert!(
        pipeline.contains("glue_database"),
        "the example changed shape"
    );
    w.put(&w.lake, CONFIG_KEY, pipeline.into_bytes()).await;
    let mut stream = w.function("StreamFunction", 0, &|_| {}).await;
    // The first batch's first delivery dies at its sixth storage call (its
    // process stops: every call after fails), at its deadline (a timeout,
    // after which Lambda retries it halved): the next delivery finds the
    // files it left and deletes them before loading the batch again.
    let store = stream.deps.lake.store.clone();
    stream.deps.lake.store = std::sync::Arc::new(
        sluice::fault::FaultyStore::new(store.clone(), sluice::fault::Faults::CrashAt(6))
            .with_kind(sluice::fault::FaultKind::AnswerLost),
    );
    let crashed = invoke!(
        stream,
        sluice_functions::stream::handle,
        events[0].clone(),
        Some(std::time::Instant::now())
    )
    .await;
    assert!(
        crashed.is_err()
            || crashed.as_ref().unwrap()["batchItemFailures"]
                .as_array()
                .is_some_and(|f| !f.is_empty()),
        "the crashed delivery fails: {crashed:?}"
    );
    if let Err(e) = &crashed {
        assert!(e.retryable, "a storage failure is worth a retry: {e}");
    }
    stream.deps.lake.store = store;
    // A topic no table reads fails for good, naming the topic.
    let mut stray = events[0].clone();
    let records = stray["records"].as_object().unwrap().clone();
    stray["records"] = json!({});
    for (k, v) in records {
        let mut v = v.clone();
        for r in v.as_array_mut().unwrap() {
            r["topic"] = json!("no-such-topic");
        }
        stray["records"][k.replace("clickstream-events", "no-such-topic")] = v;
    }
    let e = invoke!(stream, sluice_functions::stream::handle, stray, None)
        .await
        .unwrap_err();
    assert!(!e.retryable && e.message.contains("no-such-topic"), "{e}");
    // Delivered again halved, as a mapping cuts a failed batch: the first
    // half finds the crashed chunk's files and deletes them.
    let halves: Vec<Value> = (0..2)
        .map(|half| {
            let mut e = events[0].clone();
            for (k, records) in events[0]["records"].as_object().unwrap() {
                let records = records.as_array().unwrap();
                let n = records.len() / 2;
                let part = if half == 0 {
                    &records[..n]
                } else {
                    &records[n..]
                };
                e["records"][k] = json!(part);
            }
            e
        })
        .collect();
    let feed = async |events: &[Value]| {
        for (i, e) in events.iter().enumerate() {
            let r = invoke!(stream, sluice_functions::stream::handle, e.clone(), None)
                .await
                .unwrap_or_else(|e| panic!("batch {i}: {e}"));
            assert_no_batch_failures(&r, i);
        }
    };
    feed(&halves).await;
    feed(&events).await;
    let files = w.keys(&w.lake, "clickstream").await;
    assert!(!files.is_empty());
    feed(&events).await;
    assert_eq!(
        w.keys(&w.lake, "clickstream").await,
        files,
        "a redelivery writes nothing"
    );
    let good = tmp.path().join("raw/good.jsonl");
    let local = tempfile::tempdir().unwrap();
    if delta {
        let catalog = w.function("CatalogFunction", 0, &|_| {}).await;
        let events = commit_events(&w, "clickstream").await;
        let r = invoke!(catalog, catalog::handle, sqs_event(&events))
            .await
            .expect("catalog");
        assert_eq!(failures(&r), Vec::<String>::new());
        download(&w.lake, "clickstream", &local.path().join("clickstream"));
        let v = sluice_tests::delta_python_json(
            &repo_root(),
            &sluice_tests::compare_delta_script(local.path(), good.to_str().unwrap(), None),
        );
        sluice_tests::check_delta_matches_raw(&v);
    } else {
        download(&w.lake, "clickstream", &local.path().join("clickstream"));
        let v = python_json(
            &repo_root(),
            &compare_script(local.path(), good.to_str().unwrap(), "read_json"),
        );
        check_lake_matches_raw(&v);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_batches_land_in_an_s3_hive_table_under_the_stream_role() {
    streams_land_in_s3_under_the_stream_role(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_batches_land_in_an_s3_delta_table_under_the_stream_and_catalog_roles() {
    streams_land_in_s3_under_the_stream_role(true).await;
}

/// Plan `keys` of the raw bucket and transform every task the planner
/// queued, as the chunk queue delivers them; the planner's answer.
async fn plan_and_transform(w: &World, deps: &Functions, keys: &[&str]) -> Value {
    plan_and_transform_event(w, deps, s3_event(&w.raw, keys)).await
}

/// Plan `event` and transform the tasks it queues, as the queue delivers them.
async fn plan_and_transform_event(w: &World, deps: &Functions, event: Value) -> Value {
    let planned = invoke!(deps.planner, planner::handle, event)
        .await
        .expect("planner");
    let tasks = sqs_event(&w.drain().await);
    let response = invoke!(deps.transform, transform::handle, tasks)
        .await
        .expect("transform");
    assert_eq!(failures(&response), Vec::<String>::new());
    planned
}

/// Plan, transform and commit `keys` of the raw bucket (files of `table`)
/// through the functions, as their queues deliver them, and register every
/// commit record of the table not registered yet (`registered` holds them).
async fn load(
    w: &World,
    deps: &Functions,
    table: &str,
    keys: &[&str],
    registered: &mut BTreeSet<String>,
) {
    load_event(w, deps, table, s3_event(&w.raw, keys), registered).await;
}

/// [`load`] for the objects of one event.
async fn load_event(
    w: &World,
    deps: &Functions,
    table: &str,
    event: Value,
    registered: &mut BTreeSet<String>,
) {
    plan_and_transform_event(w, deps, event).await;
    let events: Vec<(String, String)> = w
        .keys(&w.lake, &format!("_sluice/commits/{table}"))
        .await
        .into_iter()
        .filter(|k| registered.insert(k.clone()))
        .map(|k| (k.clone(), eventbridge_event(&w.lake, &k).to_string()))
        .collect();
    let response = invoke!(deps.catalog, catalog::handle, sqs_event(&events))
        .await
        .expect("catalog");
    assert_eq!(failures(&response), Vec::<String>::new());
}

/// A new version of a raw file uploaded over the old one, after the
/// compactor merged the old rows with another file's: under their roles,
/// the functions replace exactly its rows (Hive: the transform rewrites
/// the merged files; Delta: the catalog cuts them out in its commit), as
/// DuckDB or Python `deltalake` read the lake back.
async fn a_reupload_replaces_compacted_rows_under_the_roles(delta: bool) {
    let w = World::new().await;
    let input = tempfile::tempdir().unwrap();
    let dir = input.path().join("clickstream");
    std::fs::create_dir_all(&dir).unwrap();
    let files = ["events-00000.jsonl", "events-00001.jsonl.gz"];
    for file in files {
        let bytes = std::fs::read(repo_root().join(RAW).join(file)).unwrap();
        std::fs::write(dir.join(file), &bytes).unwrap();
        w.put(&w.raw, &format!("raw/clickstream/{file}"), bytes)
            .await;
    }
    let merge_now = |s: &mut Settings| {
        s.compact.min_age = std::time::Duration::ZERO;
        s.compact.min_files = 2;
    };
    let deps = if delta {
        w.delta_deps(256 * 1024, merge_now).await
    } else {
        w.deps_with(256 * 1024, merge_now).await
    };
    let keys = files.map(|f| format!("raw/clickstream/{f}"));
    let mut registered = BTreeSet::new();
    load(
        &w,
        &deps,
        "clickstream",
        &[&keys[0], &keys[1]],
        &mut registered,
    )
    .await;
    if delta {
        // The table's owner checkpoints it at every commit and keeps no
        // log history (`ALTER TABLE ... SET TBLPROPERTIES`, here by Python
        // deltalake): the catalog's next commit writes a checkpoint and
        // deletes the log entries before it, under its role.
        let script = format!(
            "import deltalake, json\n\
             t = deltalake.DeltaTable('s3://{lake}/clickstream', storage_options={{\n\
             'AWS_ENDPOINT_URL': '{endpoint}', 'AWS_REGION': 'us-east-1',\n\
             'AWS_ACCESS_KEY_ID': 'testing', 'AWS_SECRET_ACCESS_KEY': 'testing',\n\
             'AWS_ALLOW_HTTP': 'true', 'AWS_S3_ALLOW_UNSAFE_RENAME': 'true'}})\n\
             t.alter.set_table_properties({{'delta.checkpointInterval': '1',\n\
             'delta.logRetentionDuration': 'interval 0 seconds'}})\n\
             print(json.dumps({{'version': t.version()}}))",
            lake = w.lake,
            endpoint = moto().endpoint
        );
        let v = sluice_tests::delta_python_json(&repo_root(), &script);
        assert_eq!(v["version"], 2, "{v}");
    }
    sweep(&deps).await;

    let new = sluice_tests::new_version();
    std::fs::write(dir.join(files[0]), &new).unwrap();
    w.put(&w.raw, &keys[0], new.into_bytes()).await;
    load(&w, &deps, "clickstream", &[&keys[0]], &mut registered).await;

    let glob = format!("{}/*", dir.display());
    let local = tempfile::tempdir().unwrap();
    download(&w.lake, "clickstream", &local.path().join("clickstream"));
    if delta {
        // The sweep's commit (3) and the catalog's (4) each wrote a
        // checkpoint; the entries before the catalog's are gone.
        let log = w.keys(&w.lake, "clickstream/_delta_log").await;
        let entry = |v: u32| format!("clickstream/_delta_log/{v:020}.json");
        assert!(log.contains(&entry(4)), "{log:?}");
        assert!(
            !log.contains(&entry(3)) && !log.contains(&entry(0)),
            "{log:?}"
        );
    }
    check_clickstream_matches(local.path(), &glob, delta);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reupload_replaces_compacted_rows_of_an_s3_hive_table_under_the_roles() {
    a_reupload_replaces_compacted_rows_under_the_roles(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reupload_replaces_compacted_rows_of_an_s3_delta_table_under_the_roles() {
    a_reupload_replaces_compacted_rows_under_the_roles(true).await;
}

/// The S3 notification of the object now at `key` of the raw bucket, with
/// its ETag and `sequencer`, as S3 sends it for that write.
async fn notification(w: &World, key: &str, sequencer: &str) -> (Value, String) {
    let head = w
        .aws
        .s3(&w.raw)
        .unwrap()
        .head(&ObjectPath::parse(key).unwrap())
        .await
        .unwrap();
    let e_tag = head.e_tag.unwrap().trim_matches('"').to_string();
    let mut event = s3_event(&w.raw, &[key]);
    event["Records"][0]["s3"]["object"]["eTag"] = json!(e_tag);
    event["Records"][0]["s3"]["object"]["sequencer"] = json!(sequencer);
    (event, e_tag)
}

/// Two writes of one key whose S3 events' sequencers order them against
/// their Last-Modified, as a multipart upload's does (stamped when it
/// began, it completes after a PUT that began later): under the roles, the
/// table keeps the write the sequencer puts last, as DuckDB or Python
/// `deltalake` read it. (Here the "multipart" version is written first,
/// so that its Last-Modified is the earlier one.)
async fn the_write_with_the_later_sequencer_is_kept(delta: bool) {
    let w = World::new().await;
    let key = "raw/clickstream/events-00000.jsonl";
    let deps = if delta {
        w.delta_deps(256 * 1024, |_| {}).await
    } else {
        w.deps(256 * 1024).await
    };
    let later = sluice_tests::new_version();
    let mut registered = BTreeSet::new();
    w.put(&w.raw, key, later.clone().into_bytes()).await;
    let (completed, _) = notification(&w, key, "0055AED6DCD90281F0").await;
    load_event(&w, &deps, "clickstream", completed.clone(), &mut registered).await;
    // A second later by Last-Modified; earlier by its sequencer.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let earlier = std::fs::read(repo_root().join(RAW).join("events-00000.jsonl")).unwrap();
    w.put(&w.raw, key, earlier).await;
    let (put, e_tag) = notification(&w, key, "0055AED6DCD90281E5").await;
    load_event(&w, &deps, "clickstream", put, &mut registered).await;

    // The first write's event delivered again plans what is there now, and
    // does not lend it the first write's sequencer.
    invoke!(deps.planner, planner::handle, completed)
        .await
        .expect("planner");
    let tasks = w.drain().await;
    assert!(!tasks.is_empty());
    for (_, body) in &tasks {
        let task: TaskSpec = serde_json::from_str(body).unwrap();
        assert_eq!(
            (
                task.source.e_tag.as_deref().map(|e| e.trim_matches('"')),
                task.source.sequencer.as_deref()
            ),
            (Some(e_tag.as_str()), None),
            "{body}"
        );
    }

    let input = tempfile::tempdir().unwrap();
    let dir = input.path().join("clickstream");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("events-00000.jsonl"), &later).unwrap();
    let glob = format!("{}/*", dir.display());
    let local = tempfile::tempdir().unwrap();
    download(&w.lake, "clickstream", &local.path().join("clickstream"));
    check_clickstream_matches(local.path(), &glob, delta);
}

/// The clickstream table downloaded to `lake` holds exactly the JSON Lines
/// rows of `glob`, as DuckDB reads the Hive table, or DuckDB's `delta_scan`
/// and Python `deltalake` the Delta table.
fn check_clickstream_matches(lake: &Path, glob: &str, delta: bool) {
    if delta {
        let v = sluice_tests::delta_python_json(
            &repo_root(),
            &sluice_tests::compare_delta_script(lake, glob, None),
        );
        sluice_tests::check_delta_matches_raw(&v);
    } else {
        let v = python_json(&repo_root(), &compare_script(lake, glob, "read_json"));
        check_lake_matches_raw(&v);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_write_with_the_later_sequencer_is_kept_in_an_s3_hive_table() {
    the_write_with_the_later_sequencer_is_kept(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_write_with_the_later_sequencer_is_kept_in_an_s3_delta_table() {
    the_write_with_the_later_sequencer_is_kept(true).await;
}

/// The memory check can fail: a planner deployed with 64 MB (below what
/// its process holds before any event) fails its first invocation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[should_panic(expected = "past its MemorySize of 64 MiB")]
async fn an_invocation_past_its_memory_size_fails() {
    let w = World::deployed(|_| json!({"PlannerMemorySize": 64})).await;
    let deps = w.deps(64 * 1024 * 1024).await;
    let _ = invoke!(
        deps.planner,
        planner::handle,
        json!({"bucket": w.raw, "prefix": "raw/"})
    )
    .await;
}

/// A lookup that is a table of the lake, under the roles: the customers
/// file is loaded as a table (registered in Glue by the catalog), then the
/// transform finds it through Glue (`glue:GetTable`) and reads its files to
/// join the orders, as DuckDB's join of the raw files says.
/// Lookups, bad records and new fields under the transform's and the
/// stream's roles: the orders join a customers table of the lake (found in
/// Glue) and a folder of product files (listed under the lookup prefix);
/// a malformed order goes to the quarantine, with its offset; orders
/// carrying a field the schema lacks add it to the table's evolved columns
/// (`unknown_fields = "evolve"`). The same orders then arrive on a Kafka
/// topic, with the stream's own malformed records, for a second table. Both
/// tables hold DuckDB's own join of the good orders, row for row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_transform_and_the_stream_join_a_lake_table_and_a_lookup_folder() {
    use sluice_tests::enrichment::{lake_orders, oracle};
    let w = World::deployed(|raw| json!({"LookupBucketName": raw, "LookupPrefix": "ref/"})).await;
    let example = repo_root().join("examples/enrichment");
    let customers = std::fs::read(example.join("ref/customers.csv")).unwrap();
    w.put(&w.raw, "raw/customers/customers.csv", customers)
        .await;
    // The products lookup as a folder of two files.
    let products = std::fs::read_to_string(example.join("ref/products.jsonl")).unwrap();
    let lines: Vec<&str> = products.lines().collect();
    let (a, b) = lines.split_at(lines.len() / 2);
    for (name, part) in [("a", a), ("b", b)] {
        let body = format!("{}\n", part.join("\n"));
        w.put(
            &w.raw,
            &format!("ref/products/{name}.jsonl"),
            body.into_bytes(),
        )
        .await;
    }
    let customers_table = "[[tables]]\nname = \"customers\"\nsource = \"customers/\"\nformat = \"csv\"\n\
        [tables.schema]\nid = \"int64\"\nname = \"string\"\nsegment = \"string\"\n\
        country = \"string\"\nsince = \"date\"\n\n";
    let enrichment = w.enrichment().await;
    let orders_sql = &enrichment[enrichment.find("sql = \"\"\"").unwrap()..];
    let orders_sql = &orders_sql[..orders_sql.find("[tables.schema]").unwrap()];
    let orders_schema = &enrichment[enrichment.find("[tables.schema]").unwrap()..];
    let evolve = "[tables.contract]\nunknown_fields = \"evolve\"\n\n";
    let live = format!(
        "\n[[tables]]\nname = \"orders_live\"\nstream = \"orders\"\nformat = \"jsonl\"\n\
         partition_by = [\"dt\"]\n{orders_sql}{evolve}{orders_schema}"
    );
    let pipeline = enrichment
        .replace(
            "source = \"examples/enrichment/ref/customers.csv\"\nformat = \"csv\"\nmax_size = \"64MiB\"\n\n\
             [lookups.schema]\nid = \"int64\"\nname = \"string\"\nsegment = \"string\"\ncountry = \"string\"\nsince = \"date\"\n",
            "table = \"customers\"\n",
        )
        .replace(
            &format!("\"s3://{}/ref/products.jsonl\"", w.raw),
            &format!("\"s3://{}/ref/products/\"", w.raw),
        )
        .replace("[[tables]]\nname = \"orders\"", &format!("{customers_table}[[tables]]\nname = \"orders\""))
        .replace("\n[tables.schema]\norder_id", &format!("\n{evolve}[tables.schema]\norder_id"))
        + &live;
    assert!(
        pipeline.contains("table = \"customers\"")
            && pipeline.contains("name = \"customers\"\nsource")
            && pipeline.contains("ref/products/\"")
            && pipeline.matches("unknown_fields").count() == 2,
        "the example changed shape: {pipeline}"
    );
    // The customers first, with a pipeline file of that table alone (a
    // lookup must be loaded before the tables that join it): a table of
    // the lake, registered in Glue.
    let first = format!(
        "{}\n[input]\nroot = \"s3://{}/raw\"\n\n{customers_table}",
        w.lake_section(),
        w.raw
    );
    let deps = w.deps_from(first, 1 << 30, |_| {}).await;
    let customers = "raw/customers/customers.csv";
    load(&w, &deps, "customers", &[customers], &mut BTreeSet::new()).await;

    // The orders file, with a malformed record after its tenth and a new
    // field (`coupon`) on every fifth order.
    let local = tempfile::tempdir().unwrap();
    let orders = std::fs::read_to_string(example.join("raw/orders/orders-00000.jsonl")).unwrap();
    let mut raw = String::new();
    let mut good = String::new();
    let mut bad_offset = 0;
    for (i, line) in orders.lines().enumerate() {
        let line = if i % 5 == 0 {
            format!(
                "{},\"coupon\":\"C{i}\"}}",
                line.trim_end().trim_end_matches('}')
            )
        } else {
            line.to_string()
        };
        if i == 10 {
            bad_offset = raw.len();
            raw.push_str("{\"order_id\": \"broken\n");
        }
        raw.push_str(&line);
        raw.push('\n');
        good.push_str(&line);
        good.push('\n');
    }
    let good_orders = local.path().join("good-orders.jsonl");
    std::fs::write(&good_orders, &good).unwrap();

    // Then the whole pipeline file: a transform started now finds the
    // table in Glue, lists the products folder and joins both.
    let deps = w.deps_from(pipeline, 1 << 30, |_| {}).await;
    let key = "raw/orders/orders-00000.jsonl";
    w.put(&w.raw, key, raw.into_bytes()).await;
    plan_and_transform(&w, &deps, &[key]).await;
    let quarantined = w.keys(&w.lake, "_quarantine/orders").await;
    assert_eq!(quarantined.len(), 1, "{quarantined:?}");
    let rejected: Vec<Value> = String::from_utf8(w.get(&w.lake, &quarantined[0]).await)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert_eq!(rejected[0]["offset"], bad_offset, "{rejected:?}");
    assert_eq!(
        rejected[0]["raw"], "{\"order_id\": \"broken",
        "{rejected:?}"
    );
    assert!(
        rejected[0]["source"].as_str().unwrap().ends_with(key),
        "{rejected:?}"
    );
    let evolved = |table: &'static str| {
        let w = &w;
        async move {
            let bytes = w
                .get(&w.lake, &format!("_sluice/schemas/{table}.json"))
                .await;
            serde_json::from_slice::<Value>(&bytes).unwrap()["columns"].clone()
        }
    };
    assert_eq!(
        evolved("orders").await,
        json!([{"name": "coupon", "type": "string"}])
    );
    download(&w.lake, "orders", &local.path().join("lake/orders"));
    let customers_csv = example.join("ref/customers.csv");
    let rows = sluice_tests::assert_same_rows(
        local.path(),
        &lake_orders(&local.path().join("lake")),
        &oracle(
            good_orders.to_str().unwrap(),
            customers_csv.to_str().unwrap(),
        ),
    );
    assert_eq!(rows, orders.lines().count() as u64);

    // The same orders on a Kafka topic, delivered to the stream function.
    let events = kafka_events(
        "orders",
        &good_orders,
        400,
        100,
        &local.path().join("stream"),
    );
    let stream = w.function("StreamFunction", 0, &|_| {}).await;
    for (i, e) in events.into_iter().enumerate() {
        let r = invoke!(stream, sluice_functions::stream::handle, e, None)
            .await
            .unwrap_or_else(|e| panic!("batch {i}: {e}"));
        assert_no_batch_failures(&r, i);
    }
    assert_eq!(
        evolved("orders_live").await,
        json!([{"name": "coupon", "type": "string"}])
    );
    assert!(!w.keys(&w.lake, "_quarantine/orders_live").await.is_empty());
    let live = tempfile::tempdir().unwrap();
    download(&w.lake, "orders_live", &live.path().join("lake/orders"));
    let streamed = local.path().join("stream/raw/good.jsonl");
    let rows = sluice_tests::assert_same_rows(
        live.path(),
        &lake_orders(&live.path().join("lake")),
        &oracle(streamed.to_str().unwrap(), customers_csv.to_str().unwrap()),
    );
    assert_eq!(rows, 400);
}

/// The compactor's scheduled sweep over every table, which must merge something.
async fn sweep(deps: &Functions) -> Value {
    let swept = invoke!(
        deps.compactor,
        compactor::handle,
        fixture("scheduled-event.json"),
        None
    )
    .await
    .expect("compactor");
    assert!(swept["outputs"].as_u64().unwrap() > 0, "{swept}");
    swept
}

/// Deployed with `Tables` naming one table of a pipeline of two, the
/// transform may not write the other's files: S3 refuses, its chunk fails
/// (to be retried, and dead-lettered) and nothing of it lands, while the
/// named table's chunk lands. The catalog may not register the other in
/// Glue either, even from a commit record that got there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_functions_write_and_register_only_the_tables_the_stack_names() {
    let w = World::deployed(|_| json!({"Tables": "clickstream"})).await;
    // The pipeline file has a second table the stack does not name.
    let pipeline = w.pipeline()
        + "\n[[tables]]\nname = \"sessions\"\nsource = \"sessions/\"\nformat = \"jsonl\"\n\
           [tables.schema]\nsession_id = \"string\"\nuser_id = \"int64\"\n";
    let bytes = std::fs::read(repo_root().join(RAW).join("events-00001.jsonl.gz")).unwrap();
    let clicks = "raw/clickstream/events-00001.jsonl.gz";
    let sessions = "raw/sessions/sessions.jsonl";
    w.put(&w.raw, clicks, bytes).await;
    w.put(
        &w.raw,
        sessions,
        b"{\"session_id\": \"s1\", \"user_id\": 1}\n".to_vec(),
    )
    .await;
    let deps = w.deps_from(pipeline, 64 << 20, |_| {}).await;
    invoke!(
        deps.planner,
        planner::handle,
        s3_event(&w.raw, &[clicks, sessions])
    )
    .await
    .expect("planner");
    let tasks = w.drain().await;
    assert_eq!(tasks.len(), 2);
    let response = invoke!(deps.transform, transform::handle, sqs_event(&tasks))
        .await
        .expect("transform");
    // The sessions chunk fails, refused (its write, and the clean-up of
    // what it wrote); the clickstream chunk lands.
    let sessions_task = tasks
        .iter()
        .find(|(_, body)| body.contains("\"sessions\""))
        .unwrap();
    assert_eq!(
        failures(&response),
        vec![sessions_task.0.clone()],
        "{response}"
    );
    let denials = w.stack.denials();
    assert!(
        !denials.is_empty()
            && denials.iter().all(|d| d["function"] == "TransformFunction"
                && (d["action"] == "s3:PutObject" || d["action"] == "s3:DeleteObject")
                && d["resource"]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("arn:aws:s3:::{}/sessions/", w.lake))),
        "{denials:?}"
    );
    w.stack.forgive();
    assert!(w.keys(&w.lake, "sessions").await.is_empty());
    assert!(!w.keys(&w.lake, "clickstream").await.is_empty());

    // A commit record of the unnamed table, however it came to be there:
    // the catalog may not register it in Glue.
    let events = commit_events(&w, "clickstream").await;
    let response = invoke!(deps.catalog, catalog::handle, sqs_event(&events))
        .await
        .expect("catalog");
    assert_eq!(failures(&response), Vec::<String>::new());
    let record = w.keys(&w.lake, "_sluice/commits/clickstream").await[0].clone();
    let mut forged: Value = serde_json::from_slice(&w.get(&w.lake, &record).await).unwrap();
    forged["table"] = json!("sessions");
    let forged_key = record.replace("/clickstream/", "/sessions/");
    w.put(&w.lake, &forged_key, forged.to_string().into_bytes())
        .await;
    let response = invoke!(
        deps.catalog,
        catalog::handle,
        sqs_event(&[(
            "forged".into(),
            eventbridge_event(&w.lake, &forged_key).to_string()
        )])
    )
    .await
    .expect("catalog");
    assert_eq!(
        failures(&response),
        vec!["forged".to_string()],
        "{response}"
    );
    let denials = w.stack.denials();
    assert!(
        denials
            .iter()
            .any(|d| d["action"].as_str().unwrap().starts_with("glue:")
                && d["resource"]
                    .as_str()
                    .unwrap()
                    .ends_with(&format!("table/{}/sessions", w.database))),
        "{denials:?}"
    );
    w.stack.forgive();
    let tables = w
        .glue
        .get_tables()
        .database_name(&w.database)
        .send()
        .await
        .unwrap();
    let names: Vec<&str> = tables.table_list().iter().map(|t| t.name()).collect();
    assert_eq!(names, ["clickstream"]);
}

/// backfill-bench has moto answer S3 LISTs from a sorted index of the
/// bucket's keys (moto walks the whole bucket per listing); that index
/// answers every listing (V1 and V2, prefix, delimiter, start-after,
/// max-keys, after puts, overwrites and deletes) as moto itself does.
#[test]
fn the_benchmarks_indexed_listing_answers_as_moto_does() {
    let out = std::process::Command::new(sluice_tests::python())
        .arg(repo_root().join("tests/moto_indexed_list.py"))
        .arg("check")
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
