//! A backfill at scale (bench/README.md, "Backfill at scale"): N small
//! JSON Lines objects through the functions' plan, transform and register
//! steps against moto's S3 and Glue on 127.0.0.1, as the backfill workflow
//! runs them (pages of the planner, a Map of transforms, one Register per
//! page). Prints each step's time and calls per 1,000 objects, so that how
//! they grow with N can be read off.
//!
//!   cargo run -p sluice-tests --bin backfill-bench -- [hive|delta|plan] N...
//!
//! Every call reaches moto through tests/fault_proxy.py (no faults), which
//! counts them by method (S3: GET, PUT, HEAD, DELETE; Glue: POST). The
//! transforms run `MAP` at a time, as the Map's MaxConcurrency would run
//! them. moto (one Python process) answers every call: the times say how the
//! work grows, not how fast S3 is. moto's S3 LIST walks the whole bucket for
//! every listing, which S3's does not, so the bench has it answer from a
//! sorted index instead (`moto::index_listings`, checked against moto's own
//! by tests/moto_indexed_list.py).

use std::time::Instant;

use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutPayload};
use serde_json::{Value, json};
use sluice_functions::{
    Committer, Deps, Planner, Settings, Transformer, catalog, planner, transform,
};
use sluice_tests::moto::{FaultProxy, index_listings, moto};
use sluice_tests::repo_root;

/// Transforms in flight, as a Distributed Map's MaxConcurrency.
const MAP: usize = 16;
/// Lines of the example per object.
const LINES: usize = 5;

/// Calls the proxy forwarded, by method.
fn calls(proxy: &FaultProxy) -> [u64; 5] {
    let c = proxy.counts();
    let n = |m: &str| c[format!("forwarded_{m}")].as_u64().unwrap_or(0);
    [n("GET"), n("PUT"), n("HEAD"), n("DELETE"), n("POST")]
}

struct Step {
    name: &'static str,
    invocations: usize,
    secs: f64,
    calls: [u64; 5],
}

async fn measure<T>(
    proxy: &FaultProxy,
    name: &'static str,
    work: impl std::future::Future<Output = (T, usize)>,
) -> (T, Step) {
    let before = calls(proxy);
    let t = Instant::now();
    let (out, invocations) = work.await;
    let secs = t.elapsed().as_secs_f64();
    let after = calls(proxy);
    let mut d = [0; 5];
    for i in 0..5 {
        d[i] = after[i] - before[i];
    }
    (
        out,
        Step {
            name,
            invocations,
            secs,
            calls: d,
        },
    )
}

async fn run(delta: bool, plan_only: bool, n: usize, lines: &[String]) {
    let m = moto();
    let raw = m.unique("bench-raw");
    let lake = m.unique("bench-lake");
    m.create_bucket(&raw);
    m.create_bucket(&lake);
    let aws = m.aws();
    let glue = aws_sdk_glue::Client::new(&aws.sdk_config().await);
    let database = m.create_database(&glue, "bench_db").await;

    // N objects of LINES lines each, uploaded straight to moto (not measured).
    let store = aws.s3(&raw).unwrap();
    let t = Instant::now();
    futures::stream::iter(0..n)
        .map(|i| {
            let store = store.clone();
            let body: String = (0..LINES)
                .map(|j| lines[(i * LINES + j) % lines.len()].as_str())
                .collect();
            async move {
                store
                    .put(
                        &ObjectPath::parse(format!("raw/clickstream/{i:07}.jsonl")).unwrap(),
                        PutPayload::from(body.into_bytes()),
                    )
                    .await
                    .map(|_| ())
            }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<()>>()
        .await
        .expect("uploads");
    eprintln!(
        "  ({n} objects uploaded in {:.1} s)",
        t.elapsed().as_secs_f64()
    );

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sluice.toml");
    let example =
        std::fs::read_to_string(repo_root().join("examples/clickstream/sluice.toml")).unwrap();
    let format = if delta {
        "\ntable_format = \"delta\""
    } else {
        ""
    };
    let pipeline = example.replace(
        "[lake]\nroot = \"./lake\"",
        &format!("[lake]\nroot = \"s3://{lake}\"\ncatalog = \"glue\"\nglue_database = \"{database}\"{format}"),
    );
    std::fs::write(&config, pipeline).unwrap();
    let proxy = FaultProxy::start(0);
    let settings = Settings {
        config: config.display().to_string(),
        lake: Some(format!("s3://{lake}")),
        input: Some(format!("s3://{raw}/raw/")),
        glue_database: Some(database.clone()),
        aws: proxy.aws(),
        chunk_size: sluice::plan::DEFAULT_CHUNK_SIZE,
        ..Settings::default()
    };
    let planner_deps = Deps::new(&settings, Planner).await.expect("planner");
    let transform_deps = Deps::new(&settings, Transformer).await.expect("transform");
    let catalog_deps = Deps::new(&settings, Committer).await.expect("catalog");

    // Plan: one call per page, each starting after the last.
    let (pages, plan) = measure(&proxy, "plan", async {
        let mut pages = Vec::new();
        let mut after = Value::Null;
        loop {
            let event = json!({"bucket": raw, "prefix": "raw/clickstream/", "after": after});
            let page = planner::handle(&planner_deps, event).await.expect("plan");
            after = page["next"].clone();
            pages.push(page);
            if after.is_null() {
                break;
            }
        }
        let calls = pages.len();
        (pages, calls)
    })
    .await;
    if plan_only {
        print_steps("plan", n, &[&plan]);
        return;
    }
    let lake_store = aws.s3(&lake).unwrap();
    let mut tasks: Vec<Value> = Vec::new();
    for page in &pages {
        let key = page["manifest"]["key"].as_str().unwrap();
        let bytes = lake_store
            .get(&ObjectPath::parse(key).unwrap())
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        tasks.extend(serde_json::from_slice::<Vec<Value>>(&bytes).unwrap());
    }
    assert_eq!(tasks.len(), n, "one task per small object");

    // Transform: every task, MAP at a time.
    let ((), transform_step) = measure(&proxy, "transform", async {
        futures::stream::iter(&tasks)
            .map(|t| transform::handle(&transform_deps, t.clone()))
            .buffer_unordered(MAP)
            .try_collect::<Vec<Value>>()
            .await
            .expect("transform");
        ((), tasks.len())
    })
    .await;

    // Register: one call per page, as the workflow makes them.
    let (registered, register) = measure(&proxy, "register", async {
        let mut commits = 0;
        for page in &pages {
            let r = catalog::handle(&catalog_deps, json!({"manifest": page["manifest"]}))
                .await
                .expect("register");
            assert_eq!(r["missing_total"], 0, "{r}");
            commits += r["commits"].as_u64().unwrap();
        }
        (commits, pages.len())
    })
    .await;
    assert_eq!(registered as usize, n, "every chunk registered");

    print_steps(
        if delta { "delta" } else { "hive" },
        n,
        &[&plan, &transform_step, &register],
    );
    if delta {
        let location = sluice::store::Location::open_with(&format!("s3://{lake}"), true, &aws)
            .expect("the lake");
        let t = Instant::now();
        let table = sluice::delta::open(&location, "clickstream", sluice::delta::AsOf::Latest)
            .await
            .expect("open")
            .expect("a table");
        let version = table.version().unwrap_or_default();
        println!(
            "delta {n:>7} opening the table after the backfill: {:.2} s (version {version})",
            t.elapsed().as_secs_f64()
        );
    }
}

/// Prints each step's time and calls, in all and per 1,000 objects.
fn print_steps(what: &str, n: usize, steps: &[&Step]) {
    for s in steps {
        let total: u64 = s.calls.iter().sum();
        let per = |x: f64| x * 1000.0 / n as f64;
        println!(
            "{what:>5} {n:>7} {:>9} {:>5} calls {:>8.1} s {:>7.2} s/1k  {:>8} calls {:>7.0}/1k  (GET {} PUT {} HEAD {} DELETE {} Glue {})",
            s.name,
            s.invocations,
            s.secs,
            per(s.secs),
            total,
            per(total as f64),
            s.calls[0],
            s.calls[1],
            s.calls[2],
            s.calls[3],
            s.calls[4],
        );
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `plan`: the plan step alone (of a Hive table), for the planner's pages.
    let (delta, plan_only) = match args.first().map(String::as_str) {
        Some("hive") => (false, false),
        Some("delta") => (true, false),
        Some("plan") => (false, true),
        _ => panic!("usage: backfill-bench hive|delta|plan N..."),
    };
    index_listings();
    let sizes: Vec<usize> = args[1..]
        .iter()
        .map(|a| a.parse().expect("a number of objects"))
        .collect();
    let lines: Vec<String> = std::fs::read_to_string(
        repo_root().join("examples/clickstream/raw/clickstream/events-00000.jsonl"),
    )
    .unwrap()
    .lines()
    .map(|l| format!("{l}\n"))
    .collect();
    println!(
        "backfill: N objects of {LINES} lines, plan (pages of {}) -> transform ({MAP} at a time) -> register, on moto",
        sluice_functions::planner::DEFAULT_PAGE_TASKS
    );
    for n in sizes {
        run(delta, plan_only, n, &lines).await;
    }
}
