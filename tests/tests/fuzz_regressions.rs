//! The fuzz targets' properties as tests (see `sluice::fuzz` and `fuzz/`):
//! every input kept in `fuzz/regressions/<target>/` (crashes found by
//! `cargo fuzz`, fixed, and kept), and the bad-input corpus
//! (`tests/fixtures/bad/`) read under every format, codec and contract the
//! `read` target can pick.

use std::path::PathBuf;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the repository")
        .to_path_buf()
}

fn kept(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = repo().join("fuzz/regressions").join(target);
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .map(|e| e.expect("an entry").path())
                .filter(|p| p.is_file() && p.file_name().is_some_and(|n| n != ".gitkeep"))
                .map(|p| {
                    (
                        p.display().to_string(),
                        std::fs::read(&p).expect("readable"),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn run_kept(target: &str, f: fn(&[u8])) -> usize {
    let inputs = kept(target);
    assert!(
        !inputs.is_empty(),
        "fuzz/regressions/{target}/ keeps no input: a target without any cannot fail here"
    );
    for (name, data) in &inputs {
        let r = std::panic::catch_unwind(|| f(data));
        assert!(r.is_ok(), "{target}: {name} fails again");
    }
    inputs.len()
}

#[test]
fn kept_fuzz_inputs_pass() {
    let n = run_kept("read", sluice::fuzz::read)
        + run_kept("events", sluice::fuzz::events)
        + run_kept("partition_values", sluice::fuzz::partition_values)
        + run_kept("pipeline_config", sluice::fuzz::pipeline_config);
    println!("{n} kept fuzz inputs pass");
}

#[test]
fn the_bad_corpus_reads_under_every_mode_of_the_read_target() {
    let dir = repo().join("tests/fixtures/bad");
    let mut files = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            continue;
        }
        let body = std::fs::read(&path).unwrap();
        files += 1;
        for mode in 0..64u8 {
            let mut data = vec![mode];
            data.extend_from_slice(&body);
            let r = std::panic::catch_unwind(|| sluice::fuzz::read(&data));
            assert!(r.is_ok(), "{} with mode {mode}", path.display());
        }
    }
    assert!(files >= 20, "{files} corpus files");
}

#[test]
fn partition_values_and_events_hold_their_properties_on_samples() {
    for v in [
        "",
        ".",
        "..",
        "a/b",
        "%2F",
        "\u{0}\n\r\t",
        "__HIVE_DEFAULT_PARTITION__",
        "é/ü",
    ] {
        sluice::fuzz::partition_values(v.as_bytes());
    }
    for e in std::fs::read_dir(repo().join("events")).unwrap() {
        sluice::fuzz::events(&std::fs::read(e.unwrap().path()).unwrap());
    }
}
