//! A file that cannot be read costs only itself: `sluice run` loads every
//! other file to its commit, lists the failed file with its error and exits
//! non-zero; `--fail-fast` stops at the first failure instead.

use std::path::Path;

use object_store::ObjectStoreExt as _;

use sluice_tests::{assert_same_rows, files_under, repo_root};

const CONFIG: &str = r#"
[lake]
root = "lake"
[input]
root = "input"
[[tables]]
name = "events"
source = "events/"
format = "jsonl"
partition_by = ["part"]
[tables.schema]
id = "int64"
name = "string"
part = "int64"
"#;

/// Two good JSON Lines files (the second with six bad records among its
/// 2,508 lines) and a gzip file cut short; returns the good rows as CSV.
fn lay_out(dir: &Path) -> String {
    let events = dir.join("input/events");
    std::fs::create_dir_all(&events).unwrap();
    std::fs::copy(
        repo_root().join("tests/fixtures/bad/truncated.jsonl.gz"),
        events.join("cut.jsonl.gz"),
    )
    .unwrap();
    let mut expected = String::from("id,name,part\n");
    // Rows `ids` named `prefix{id}`, in `parts` partitions, as JSON Lines;
    // with `bad`, two bad records after every thousandth id.
    let mut rows = |ids: std::ops::Range<u64>, prefix: &str, parts: u64, bad: bool| {
        let mut lines = String::new();
        for i in ids {
            let (name, part) = (format!("{prefix}{i}"), i % parts);
            lines.push_str(&format!(
                "{{\"id\":{i},\"name\":\"{name}\",\"part\":{part}}}\n"
            ));
            expected.push_str(&format!("{i},{name},{part}\n"));
            if bad && i % 1000 == 0 {
                lines.push_str(
                    "{\"id\":\"not a number\",\"name\":\"x\",\"part\":1}\nnot json at all\n",
                );
            }
        }
        lines
    };
    let a = rows(0..2500, "a", 7, false);
    let b = rows(2500..5002, "b ", 5, true);
    std::fs::write(events.join("good-a.jsonl"), a).unwrap();
    std::fs::write(events.join("good-b.jsonl"), b).unwrap();
    std::fs::write(dir.join("pipeline.toml"), CONFIG).unwrap();
    expected
}

#[test]
fn a_file_that_cannot_be_read_does_not_cost_the_others_their_rows() {
    let mut layouts = Vec::new();
    for run in 0..4 {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let expected = lay_out(dir);
        std::fs::write(dir.join("expected.csv"), expected).unwrap();
        let out = sluice_tests::sluice_run(dir, &["--chunk-size", "8KiB", "--workers", "4"]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "run {run}: should fail: {stdout}");
        assert!(
            stderr.contains("1 of 3 files failed")
                && stderr.contains("cut.jsonl.gz")
                && stderr.contains("cannot decompress"),
            "run {run}: the failed file and its error are listed: {stderr}"
        );
        assert!(
            !stderr.contains("good-a") && !stderr.contains("good-b"),
            "run {run}: {stderr}"
        );
        // The summary is printed all the same.
        assert!(stdout.contains("in:  3 files"), "run {run}: {stdout}");
        // Every good row, every column, once; nothing of the cut file.
        let rows = assert_same_rows(
            dir,
            "SELECT id, name, part FROM read_parquet('lake/events/**/*.parquet', hive_partitioning=true)",
            "SELECT id, name, part FROM read_csv('expected.csv', header=true, columns={'id':'BIGINT','name':'VARCHAR','part':'BIGINT'})",
        );
        assert_eq!(rows, 5002, "run {run}");
        // The bad records are quarantined, with their reasons.
        let quarantined: Vec<String> = files_under(&dir.join("lake/_quarantine/events"))
            .iter()
            .flat_map(|f| {
                std::fs::read_to_string(dir.join("lake/_quarantine/events").join(f))
                    .unwrap()
                    .lines()
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(quarantined.len(), 6, "run {run}: {quarantined:?}");
        assert!(
            quarantined.iter().all(|q| q.contains("good-b.jsonl")),
            "{quarantined:?}"
        );
        // The same partitions, with the same number of files (names carry
        // the local ETag, which differs between copies of a file).
        let mut layout = std::collections::BTreeMap::<String, usize>::new();
        for f in files_under(&dir.join("lake/events")) {
            let partition = f
                .rsplit_once('/')
                .map(|(d, _)| d.to_string())
                .unwrap_or_default();
            *layout.entry(partition).or_default() += 1;
        }
        layouts.push(layout);
        // Run again: what was committed is not loaded twice; the cut file fails again.
        let again = sluice_tests::sluice_run(dir, &["--chunk-size", "8KiB"]);
        assert!(!again.status.success());
        assert_eq!(
            assert_same_rows(
                dir,
                "SELECT id, name, part FROM read_parquet('lake/events/**/*.parquet', hive_partitioning=true)",
                "SELECT id, name, part FROM read_csv('expected.csv', header=true, columns={'id':'BIGINT','name':'VARCHAR','part':'BIGINT'})",
            ),
            5002
        );
    }
    assert!(
        layouts.windows(2).all(|w| w[0] == w[1]),
        "every run leaves the same files: {layouts:?}"
    );
}

#[test]
fn fail_fast_stops_at_the_first_failure() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    lay_out(dir);
    let out = sluice_tests::sluice_run(dir, &["--fail-fast", "--workers", "1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("cut.jsonl.gz") && stderr.contains("cannot decompress"),
        "{stderr}"
    );
    // With one worker and the cut file first, nothing after it was started.
    assert!(
        files_under(&dir.join("lake/events")).is_empty(),
        "{:?}",
        files_under(&dir.join("lake"))
    );
}

/// Every row in the Parquet files under `prefix` of `store` (what a Hive
/// reader listing the table's folders reads), as JSON, sorted; with the
/// files' chunk ids.
async fn listed_rows(
    store: &std::sync::Arc<dyn object_store::ObjectStore>,
    prefix: &str,
) -> (Vec<String>, std::collections::BTreeSet<String>) {
    let metas = sluice_tests::list_under(store.as_ref(), prefix).await;
    let mut rows = Vec::new();
    let mut chunks = std::collections::BTreeSet::new();
    for m in metas {
        let name = m.location.filename().unwrap().to_string();
        if !name.ends_with(".parquet") {
            continue;
        }
        chunks.insert(name[5..29].to_string());
        let bytes = sluice_tests::object_bytes(store.as_ref(), &m.location).await;
        rows.extend(sluice_tests::parquet_json_rows(bytes));
    }
    rows.sort();
    (rows, chunks)
}

/// A load of a Hive table killed at each store call in turn (every call
/// after it fails, as when a process dies), and never retried (its chunk
/// ended in the dead-letter queue): the files its chunks wrote without a
/// commit record are listed by any reader of the table's folders, until
/// the vacuum sweeps them, once older than the grace; then what the folders
/// hold is exactly the committed chunks' rows. Younger files stay (a chunk
/// may be at work on them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_of_a_chunk_killed_mid_write_are_swept_once_past_the_grace() {
    use sluice::fault::{FaultKind, Faults, FaultyStore};
    use sluice_tests::memory::{lake_on, load_with};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events");
    std::fs::create_dir_all(&events).unwrap();
    let mut text = String::new();
    for i in 0..3000 {
        text.push_str(&format!(
            "{{\"id\":{i},\"name\":\"a{i}\",\"part\":{}}}\n",
            i % 3
        ));
    }
    std::fs::write(events.join("a.jsonl"), &text).unwrap();
    let pipeline = sluice::config::Pipeline::from_toml(CONFIG).unwrap();
    let engine = Arc::new(sluice::pipeline::Engine::new(pipeline).await.unwrap());
    let input = sluice::store::Location::open(dir.path().to_str().unwrap(), false).unwrap();
    let counted = Arc::new(FaultyStore::new(
        Arc::new(object_store::memory::InMemory::new()),
        Faults::None,
    ));
    load_with(
        &engine,
        &input,
        &lake_on(counted.clone()),
        1,
        16 << 10,
        false,
    )
    .await
    .unwrap();
    let mut leftovers = 0;
    for n in 1..=counted.calls() {
        let store: Arc<dyn object_store::ObjectStore> =
            Arc::new(object_store::memory::InMemory::new());
        let faulty =
            FaultyStore::new(store.clone(), Faults::CrashAt(n)).with_kind(FaultKind::Refused);
        let _ = load_with(
            &engine,
            &input,
            &lake_on(Arc::new(faulty)),
            1,
            16 << 10,
            false,
        )
        .await;
        let lake = lake_on(store.clone());
        let (_, chunks) = listed_rows(&store, "events").await;
        let mut committed_rows = Vec::new();
        let mut uncommitted = false;
        for id in &chunks {
            let record =
                object_store::path::Path::from(format!("_sluice/commits/events/{id}.json"));
            match store.get(&record).await {
                Ok(r) => {
                    let bytes = r.bytes().await.unwrap();
                    let record = sluice::commit::CommitRecord::from_json(&bytes, "record").unwrap();
                    for f in record.files {
                        let p = object_store::path::Path::from(f.path.as_str());
                        let bytes = sluice_tests::object_bytes(store.as_ref(), &p).await;
                        committed_rows.extend(sluice_tests::parquet_json_rows(bytes));
                    }
                }
                Err(_) => uncommitted = true,
            }
        }
        committed_rows.sort();
        let now = chrono::Utc::now();
        // Young: left alone.
        let young = sluice::compact::sweep_uncommitted(&lake, "events", false, now)
            .await
            .unwrap();
        assert!(young.is_empty(), "call {n}: {young:?}");
        let later = now + chrono::Duration::hours(3);
        let swept = sluice::compact::sweep_uncommitted(&lake, "events", false, later)
            .await
            .unwrap();
        assert_eq!(!swept.is_empty(), uncommitted, "call {n}: {swept:?}");
        leftovers += usize::from(uncommitted);
        assert_eq!(
            listed_rows(&store, "events").await.0,
            committed_rows,
            "call {n}: the folders hold exactly the committed chunks' rows"
        );
    }
    assert!(
        leftovers > 0,
        "some crash left a chunk's files without its record"
    );
}
