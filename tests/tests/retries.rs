//! Exactly-once effects of a chunk: a crash at any storage call followed by
//! a retry, a duplicate delivery running at the same time, and a duplicate
//! that fails after the first delivery committed, all leave the lake exactly
//! as one clean run does (the same objects, byte for byte).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::{FutureExt, TryStreamExt};
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use sluice::config::Pipeline;
use sluice::fault::{FaultKind, Faults, FaultyStore, Hook};
use sluice::pipeline::{ChunkTask, Counters, Engine, discover, plan_object, process_chunk};
use sluice::read::ReadOptions;
use sluice::retry::RetryStore;
use sluice::store::Location;
use sluice_tests::repo_root;

fn lake_on(store: Arc<dyn ObjectStore>) -> Location {
    Location {
        store,
        prefix: Path::default(),
        url: "memory://".into(),
    }
}

/// The example pipeline and the first 256 KiB chunk of its first raw file.
async fn setup() -> (Arc<Engine>, ChunkTask, tempfile::TempDir) {
    let pipeline =
        Pipeline::from_file(&repo_root().join("examples/clickstream/sluice.toml")).unwrap();
    let engine = Arc::new(Engine::new(pipeline).await.unwrap());
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("clickstream")).unwrap();
    std::fs::copy(
        repo_root().join("examples/clickstream/raw/clickstream/events-00000.jsonl"),
        dir.path().join("clickstream/events-00000.jsonl"),
    )
    .unwrap();
    let input = Location::open(dir.path().to_str().unwrap(), false).unwrap();
    let (objects, _) = discover(&engine, &input).await.unwrap();
    let (table, object) = &objects[0];
    let table = &engine.table(table).unwrap().table;
    let task = plan_object(table, object, 256 * 1024)
        .await
        .unwrap()
        .remove(0);
    (engine, task, dir)
}

async fn process(engine: &Engine, lake: &Location, task: &ChunkTask) -> sluice::error::Result<()> {
    process_chunk(
        engine,
        lake,
        task,
        &ReadOptions::default(),
        &Arc::new(Counters::default()),
    )
    .await
    .map(|_| ())
}

/// Every object of a store and its bytes.
async fn contents(store: &Arc<dyn ObjectStore>) -> BTreeMap<String, Vec<u8>> {
    let metas: Vec<_> = store.list(None).try_collect().await.unwrap();
    let mut out = BTreeMap::new();
    for m in metas {
        let bytes = store.get(&m.location).await.unwrap().bytes().await.unwrap();
        out.insert(m.location.to_string(), bytes.to_vec());
    }
    out
}

/// The objects one clean run of the chunk leaves.
async fn clean_run(engine: &Engine, task: &ChunkTask) -> BTreeMap<String, Vec<u8>> {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    process(engine, &lake_on(store.clone()), task)
        .await
        .unwrap();
    contents(&store).await
}

fn describe(a: &BTreeMap<String, Vec<u8>>, b: &BTreeMap<String, Vec<u8>>) -> String {
    let only_a: Vec<_> = a.keys().filter(|k| !b.contains_key(*k)).collect();
    let only_b: Vec<_> = b.keys().filter(|k| !a.contains_key(*k)).collect();
    let differ: Vec<_> = a
        .iter()
        .filter(|(k, v)| b.get(*k).is_some_and(|w| w != *v))
        .map(|(k, _)| k)
        .collect();
    format!("missing {only_a:?}, extra {only_b:?}, different {differ:?}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_at_any_call_then_a_retry_leaves_what_one_clean_run_leaves() {
    let (engine, task, _dir) = setup().await;
    let clean_store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let counted = Arc::new(FaultyStore::new(clean_store.clone(), Faults::None));
    process(&engine, &lake_on(counted.clone()), &task)
        .await
        .unwrap();
    let calls = counted.calls();
    let clean = contents(&clean_store).await;
    assert!(clean.keys().any(|k| k.starts_with("_sluice/commits/")));
    assert!(
        clean.len() > 50,
        "the chunk writes many files: {}",
        clean.len()
    );
    for n in 1..=calls {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let faulty = lake_on(Arc::new(FaultyStore::new(
            store.clone(),
            Faults::CrashAt(n),
        )));
        let crashed = process(&engine, &faulty, &task).await;
        // The last call writes the commit record: a crash there fails it too.
        assert!(
            crashed.is_err(),
            "call {n} of {calls}: the crash was not seen"
        );
        process(&engine, &lake_on(store.clone()), &task)
            .await
            .unwrap_or_else(|e| panic!("the retry after a crash at call {n}: {e}"));
        let got = contents(&store).await;
        assert!(
            got == clean,
            "crash at call {n} of {calls}, then a retry: {}",
            describe(&clean, &got)
        );
    }
    println!(
        "crashed at each of {calls} storage calls of a chunk; each retry left the clean run's objects"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_deliveries_of_a_chunk_at_once_leave_what_one_leaves() {
    let (engine, task, _dir) = setup().await;
    let clean = clean_run(&engine, &task).await;
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let lake = lake_on(store.clone());
    let (a, b) = tokio::join!(
        process(&engine, &lake, &task),
        process(&engine, &lake, &task)
    );
    a.unwrap();
    b.unwrap();
    let got = contents(&store).await;
    assert!(got == clean, "{}", describe(&clean, &got));
}

/// A duplicate delivery starts before the first commits, then fails (a
/// storage outage) after the first delivery committed: its clean-up must not
/// remove the files the first delivery committed under the same names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_duplicate_does_not_remove_the_committed_files() {
    let (engine, task, _dir) = setup().await;
    let clean = clean_run(&engine, &task).await;
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    // The duplicate: before its third call, the first delivery runs to its
    // end; the duplicate's call 10 fails, and its clean-up deletes work.
    let first_done = Arc::new(AtomicBool::new(false));
    let hook: Hook = {
        let engine = engine.clone();
        let task = task.clone();
        let store = store.clone();
        let first_done = first_done.clone();
        Arc::new(move |n| {
            let engine = engine.clone();
            let task = task.clone();
            let store = store.clone();
            let first_done = first_done.clone();
            async move {
                if n == 3 && !first_done.swap(true, Ordering::SeqCst) {
                    process(&engine, &lake_on(store), &task).await.unwrap();
                }
            }
            .boxed()
        })
    };
    let duplicate = lake_on(Arc::new(
        FaultyStore::new(store.clone(), Faults::Once(10)).with_hook(hook),
    ));
    let r = process(&engine, &duplicate, &task).await;
    println!("duplicate: {r:?}");
    assert!(r.is_err());
    assert!(first_done.load(Ordering::SeqCst));
    let got = contents(&store).await;
    assert!(got == clean, "{}", describe(&clean, &got));
}

/// A store like the S3 lakes' (retrying transient failures in place) over
/// one that fails call `faults` as `kind`.
fn failing(
    store: Arc<dyn ObjectStore>,
    faults: Faults,
    kind: FaultKind,
) -> (Arc<FaultyStore>, Location) {
    let faulty = Arc::new(FaultyStore::new(store, faults).with_kind(kind));
    let lake = lake_on(Arc::new(RetryStore::new(faulty.clone())));
    (faulty, lake)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_or_a_503_at_any_call_ends_as_one_clean_run_and_a_403_fails_for_good() {
    let (engine, task, _dir) = setup().await;
    let clean = clean_run(&engine, &task).await;
    let counted = Arc::new(FaultyStore::new(Arc::new(InMemory::new()), Faults::None));
    process(&engine, &lake_on(counted.clone()), &task)
        .await
        .unwrap();
    let calls = counted.calls();
    for n in 1..=calls {
        for kind in [FaultKind::AnswerLost, FaultKind::Status(503)] {
            // The write is applied and its answer lost, or a 503: retried in
            // place where the call is idempotent; otherwise the chunk fails
            // as retryable and the next delivery finishes it.
            let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
            let (_, lake) = failing(store.clone(), Faults::Once(n), kind);
            if let Err(e) = process(&engine, &lake, &task).await {
                assert!(e.is_retryable(), "call {n}, {kind:?}: {e}");
                process(&engine, &lake_on(store.clone()), &task)
                    .await
                    .unwrap_or_else(|e| panic!("call {n}, {kind:?}: the retry failed: {e}"));
            }
            let got = contents(&store).await;
            assert!(
                got == clean,
                "call {n}, {kind:?}: {}",
                describe(&clean, &got)
            );
        }
        // Access denied from call n on: a permanent error, not retried.
        let (faulty, lake) = failing(
            Arc::new(InMemory::new()),
            Faults::CrashAt(n),
            FaultKind::Status(403),
        );
        match process(&engine, &lake, &task).await {
            Err(e) => assert!(!e.is_retryable(), "call {n}: {e}"),
            Ok(()) => panic!("call {n}: a 403 from then on was swallowed"),
        }
        assert!(faulty.calls() >= n);
    }
}

#[tokio::test]
async fn a_503_listing_the_input_or_reading_the_pipeline_file_is_retried_and_a_403_is_not() {
    let (engine, _task, dir) = setup().await;
    let input = Location::open(dir.path().to_str().unwrap(), false).unwrap();
    let (want, _) = discover(&engine, &input).await.unwrap();
    let config = std::fs::read(repo_root().join("examples/clickstream/sluice.toml")).unwrap();
    let on = |faults, kind| {
        let (faulty, mut location) = failing(input.store.clone(), faults, kind);
        location.url = input.url.clone();
        location.prefix = input.prefix.clone();
        (faulty, location)
    };
    // Once: retried in place.
    let (_, flaky) = on(Faults::Once(1), FaultKind::Status(503));
    let (got, _) = discover(&engine, &flaky).await.unwrap();
    assert_eq!(got.len(), want.len());
    // Past every in-place attempt: an error the caller may retry.
    let (_, down) = on(Faults::CrashAt(1), FaultKind::Status(503));
    let e = discover(&engine, &down).await.unwrap_err();
    assert!(e.is_retryable(), "{e}");
    assert!(e.to_string().contains(&input.url), "{e}");
    // Forbidden: once, and for good.
    let (faulty, denied) = on(Faults::CrashAt(1), FaultKind::Status(403));
    let e = discover(&engine, &denied).await.unwrap_err();
    assert!(!e.is_retryable(), "{e}");
    assert_eq!(faulty.calls(), 1, "a 403 is not asked again");

    // The pipeline file, as the functions read it at start-up.
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    store
        .put(&Path::from("config/sluice.toml"), config.clone().into())
        .await
        .unwrap();
    let (_, flaky) = failing(store.clone(), Faults::Once(1), FaultKind::Status(503));
    assert_eq!(
        flaky
            .read_text("config/sluice.toml")
            .await
            .unwrap()
            .as_bytes(),
        &config[..]
    );
    let (_, down) = failing(store.clone(), Faults::CrashAt(1), FaultKind::Status(503));
    let e = down.read_text("config/sluice.toml").await.unwrap_err();
    assert!(
        e.is_retryable() && e.to_string().contains("config/sluice.toml"),
        "{e}"
    );
    let (faulty, denied) = failing(store, Faults::CrashAt(1), FaultKind::Status(403));
    let e = denied.read_text("config/sluice.toml").await.unwrap_err();
    assert!(!e.is_retryable(), "{e}");
    assert_eq!(faulty.calls(), 1, "a 403 is not asked again");
}
