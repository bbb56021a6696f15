//! A new version of a raw file replaces what the old version loaded, once
//! the new one is complete, whether or not compaction merged the old rows
//! with other files' since; the same file loaded again changes nothing.
//! Checked with `sluice run` / `sluice compact` and DuckDB.

use std::path::Path;

use sluice_tests::{check_lake_matches_raw, compare_script, python_json, repo_root, sluice_ok};

const EXAMPLE: &str = "examples/clickstream/sluice.toml";
const RAW: &str = "examples/clickstream/raw/clickstream";

fn run(lake: &Path, input: &Path) -> String {
    sluice_ok(
        &repo_root(),
        &[
            "run",
            "--config",
            EXAMPLE,
            "--lake",
            lake.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--chunk-size",
            "256KiB",
        ],
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

/// The example's first raw file with every other line: a new version with
/// fewer rows, some of them changed.
fn new_version() -> String {
    let text = std::fs::read_to_string(repo_root().join(RAW).join("events-00000.jsonl")).unwrap();
    text.lines()
        .step_by(2)
        .map(|l| l.replace("\"price\": 1", "\"price\": 2"))
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
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
