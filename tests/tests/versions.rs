//! A new version of a raw file replaces what the old version loaded, once
//! the new one is complete, whether or not compaction merged the old rows
//! with other files' since; the same file loaded again changes nothing.
//! Checked with `sluice run` / `sluice compact` and DuckDB.

use std::path::Path;

use sluice_tests::{
    check_lake_matches_raw, compare_script, new_version, python_json, repo_root, sluice_ok,
};

const EXAMPLE: &str = "examples/clickstream/sluice.toml";
const RAW: &str = "examples/clickstream/raw/clickstream";

fn run(lake: &Path, input: &Path) -> String {
    sluice_tests::run_into(
        &repo_root(),
        EXAMPLE,
        lake.to_str().unwrap(),
        &["--input", input.to_str().unwrap(), "--chunk-size", "256KiB"],
    )
}

fn compact(lake: &Path) -> String {
    sluice_ok(
        &repo_root(),
        &[
            "compact",
            "--lake",
            lake.to_str().unwrap(),
            "--min-age",
            "0s",
            "--min-files",
            "2",
        ],
    )
}

/// The lake holds exactly the rows of the raw files in `input`.
fn check(lake: &Path, input: &Path) {
    let glob = format!("{}/clickstream/*", input.display());
    let v = python_json(&repo_root(), &compare_script(lake, &glob, "read_json"));
    check_lake_matches_raw(&v);
}

fn input_with(dir: &Path, files: &[(&str, Vec<u8>)]) {
    let sub = dir.join("clickstream");
    std::fs::create_dir_all(&sub).unwrap();
    for (name, bytes) in files {
        std::fs::write(sub.join(name), bytes).unwrap();
    }
}

fn raw(name: &str) -> Vec<u8> {
    std::fs::read(repo_root().join(RAW).join(name)).unwrap()
}

#[test]
fn the_new_version_differs_in_rows_values_and_partitions() {
    let old = std::fs::read_to_string(repo_root().join(RAW).join("events-00000.jsonl")).unwrap();
    let new = new_version();
    let (old_rows, new_rows) = (old.lines().count(), new.lines().count());
    assert!(
        new_rows < old_rows && new_rows > old_rows / 4,
        "{old_rows} -> {new_rows}"
    );
    assert!(old.contains("\"event_type\":\"scroll\"") && !new.contains("\"scroll\""));
    assert!(new.contains("\"event_id\":\"new-"));
    // As values (key order aside): most rows changed, some moved to days the
    // old version has no rows of.
    let parse = |text: &str| -> Vec<serde_json::Value> {
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let (old_v, new_v) = (parse(&old), parse(&new));
    let old_set: std::collections::HashSet<String> = old_v.iter().map(|v| v.to_string()).collect();
    let kept = new_v
        .iter()
        .filter(|v| old_set.contains(&v.to_string()))
        .count();
    assert!(
        kept < new_rows / 2,
        "{kept} of {new_rows} rows are unchanged"
    );
    let day = |v: &serde_json::Value| v["event_time"].as_str().unwrap()[..10].to_string();
    let old_days: std::collections::HashSet<String> = old_v.iter().map(day).collect();
    assert!(
        new_v.iter().any(|v| !old_days.contains(&day(v))),
        "no row moved to a new day"
    );
}

#[test]
fn a_new_version_of_a_file_replaces_its_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let (lake, input) = (tmp.path().join("lake"), tmp.path().join("input"));
    input_with(&input, &[("events-00000.jsonl", raw("events-00000.jsonl"))]);
    run(&lake, &input);
    check(&lake, &input);
    // The same bytes written again: a new version in the local store (its
    // ETag has the time in it), the same rows.
    input_with(&input, &[("events-00000.jsonl", raw("events-00000.jsonl"))]);
    let out = run(&lake, &input);
    assert!(out.contains("were replaced"), "{out}");
    check(&lake, &input);
    // A new version with other rows.
    input_with(
        &input,
        &[("events-00000.jsonl", new_version().into_bytes())],
    );
    let out = run(&lake, &input);
    assert!(out.contains("chunks of older versions"), "{out}");
    check(&lake, &input);
}

#[test]
fn a_new_version_replaces_rows_that_compaction_merged_with_other_files() {
    let tmp = tempfile::tempdir().unwrap();
    let (lake, input) = (tmp.path().join("lake"), tmp.path().join("input"));
    input_with(
        &input,
        &[
            ("events-00000.jsonl", raw("events-00000.jsonl")),
            ("events-00001.jsonl.gz", raw("events-00001.jsonl.gz")),
        ],
    );
    run(&lake, &input);
    let out = compact(&lake);
    assert!(out.contains("-> 56"), "{out}");
    check(&lake, &input);
    // Every partition is one merged file holding rows of both raw files;
    // the new version of the first must cut its old rows out of each.
    input_with(
        &input,
        &[("events-00000.jsonl", new_version().into_bytes())],
    );
    run(&lake, &input);
    check(&lake, &input);
    // And merged again, the lake still holds exactly the raw rows.
    compact(&lake);
    check(&lake, &input);
    // A third version after that second compaction.
    input_with(&input, &[("events-00000.jsonl", raw("events-00000.jsonl"))]);
    run(&lake, &input);
    check(&lake, &input);
}
