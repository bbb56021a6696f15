//! A file that cannot be read costs only itself: `sluice run` loads every
//! other file to its commit, lists the failed file with its error and exits
//! non-zero; `--fail-fast` stops at the first failure instead.

use std::path::Path;

use sluice_tests::{assert_same_rows, files_under, repo_root, sluice};

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
    let mut a = String::new();
    for i in 0..2500 {
        a.push_str(&format!(
            "{{\"id\":{i},\"name\":\"a{i}\",\"part\":{}}}\n",
            i % 7
        ));
        expected.push_str(&format!("{i},a{i},{}\n", i % 7));
    }
    let mut b = String::new();
    for i in 2500..5002 {
        b.push_str(&format!(
            "{{\"id\":{i},\"name\":\"b {i}\",\"part\":{}}}\n",
            i % 5
        ));
        expected.push_str(&format!("{i},b {i},{}\n", i % 5));
        if i % 1000 == 0 {
            b.push_str("{\"id\":\"not a number\",\"name\":\"x\",\"part\":1}\nnot json at all\n");
        }
    }
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
        let out = sluice(
            dir,
            &[
                "run",
                "--config",
                "pipeline.toml",
                "--chunk-size",
                "8KiB",
                "--workers",
                "4",
            ],
        );
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
        let again = sluice(
            dir,
            &["run", "--config", "pipeline.toml", "--chunk-size", "8KiB"],
        );
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
    let out = sluice(
        dir,
        &[
            "run",
            "--config",
            "pipeline.toml",
            "--fail-fast",
            "--workers",
            "1",
        ],
    );
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
