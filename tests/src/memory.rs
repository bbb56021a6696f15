//! Lakes in memory, for the tests that run the engine in process and crash
//! it at chosen store calls.

use std::sync::Arc;

use futures::TryStreamExt;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use sluice::catalog::{Catalog, LocalCatalog};
use sluice::fault::{FaultKind, Faults, FaultyStore};
use sluice::pipeline::{Counters, Engine, RunOptions, run};
use sluice::store::Location;

/// A lake at the root of `store`.
pub fn lake_on(store: Arc<dyn ObjectStore>) -> Location {
    Location {
        store,
        prefix: Path::default(),
        url: "memory://".into(),
    }
}

/// A lake on `store` whose store calls are counted: the counter, and the lake.
pub fn counted_lake(store: Arc<dyn ObjectStore>) -> (Arc<FaultyStore>, Location) {
    let counted = Arc::new(FaultyStore::new(store, Faults::None));
    (counted.clone(), lake_on(counted))
}

/// A new in-memory store holding a copy of every object of `store` (what a
/// crashed run left, for the rerun).
pub async fn copy_of(store: &Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> {
    let out = Arc::new(InMemory::new());
    let metas: Vec<_> = store.list(None).try_collect().await.unwrap();
    for m in metas {
        let bytes = store.get(&m.location).await.unwrap().bytes().await.unwrap();
        out.put(&m.location, PutPayload::from(bytes)).await.unwrap();
    }
    out
}

/// Run `engine` over `input` into `lake` (local catalog in the lake) with
/// `workers` workers and chunks of `chunk_size` bytes; the first failed
/// chunk is the error.
pub async fn load_with(
    engine: &Arc<Engine>,
    input: &Location,
    lake: &Location,
    workers: usize,
    chunk_size: u64,
    fail_fast: bool,
) -> sluice::Result<()> {
    let catalog: Arc<dyn Catalog> = Arc::new(LocalCatalog::new(lake));
    let options = RunOptions {
        fail_fast,
        ..RunOptions::new(workers, chunk_size)
    };
    let counters = Arc::new(Counters::default());
    let summary = run(engine, input, lake, &catalog, &options, &counters).await?;
    match summary.failed.first() {
        Some(f) => Err(sluice::Error::Unavailable(f.error.clone())),
        None => Ok(()),
    }
}

/// Each of `calls` store calls crashed at in turn (it and every later call
/// refused), then each call's answer lost in turn (the store applied it, its
/// caller was told it failed), with the call's number.
pub fn crashes_then_lost_answers(calls: u64) -> impl Iterator<Item = (u64, Faults, FaultKind)> {
    (1..=calls)
        .map(|n| (n, Faults::CrashAt(n), FaultKind::Refused))
        .chain((1..=calls).map(|n| (n, Faults::Once(n), FaultKind::AnswerLost)))
}
