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

/// Every seed a target starts from: its kept inputs, and for `read` the
/// bad-input corpus (under a mode byte each) and the example's first lines;
/// for `events` the sample events.
fn seeds(target: &str) -> Vec<Vec<u8>> {
    let mut seeds: Vec<Vec<u8>> = kept(target).into_iter().map(|(_, d)| d).collect();
    let files_of = |dir: &str| {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(repo().join(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_none_or(|e| e != "toml"))
            .collect();
        paths.sort();
        paths
    };
    match target {
        "read" => {
            for (i, p) in files_of("tests/fixtures/bad").iter().enumerate() {
                let mut data = vec![(i * 7) as u8];
                data.extend(std::fs::read(p).unwrap());
                seeds.push(data);
            }
            let example = repo().join("examples/clickstream/raw/clickstream/events-00000.jsonl");
            let text = std::fs::read(example).unwrap();
            seeds.push([&[0u8][..], &text[..4096]].concat());
        }
        "events" => seeds.extend(files_of("events").iter().map(|p| std::fs::read(p).unwrap())),
        _ => {}
    }
    seeds
}

/// One change to an input, as a mutation fuzzer makes them.
#[derive(Debug, Clone)]
enum Mutation {
    /// The byte at (a share of the length) xor-ed with a value.
    Flip(usize, u8),
    /// A byte put in.
    Insert(usize, u8),
    /// A run of up to 64 bytes taken out.
    Remove(usize, usize),
    /// A run of up to 64 bytes repeated in place.
    Repeat(usize, usize),
    /// The input cut short.
    Truncate(usize),
    /// Bytes that mean something to the parsers put in.
    Token(usize, usize),
}

const TOKENS: &[&[u8]] = &[
    b"\"",
    b"\\",
    b"\n",
    b"\r\n",
    b",",
    b"{",
    b"}",
    b"[",
    b"]",
    b"=",
    b"/",
    b"%",
    b"\0",
    b"null",
    b"\xff\xfe",
    b"\xc3\xa9",
    b"9999999999999999999999",
    b"-0.0e-400",
    b"\"\"\"",
    b"__HIVE_DEFAULT_PARTITION__",
];

fn mutate(mut data: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let at = |i: usize, len: usize| if len == 0 { 0 } else { i % len };
        let len = data.len();
        match *m {
            Mutation::Flip(i, x) if len > 0 => data[at(i, len)] ^= x | 1,
            Mutation::Insert(i, b) => data.insert(at(i, len + 1), b),
            Mutation::Remove(i, n) if len > 0 => {
                let from = at(i, len);
                data.drain(from..(from + n % 64 + 1).min(len));
            }
            Mutation::Repeat(i, n) if len > 0 => {
                let from = at(i, len);
                let run = data[from..(from + n % 64 + 1).min(len)].to_vec();
                data.splice(from..from, run);
            }
            Mutation::Truncate(i) => data.truncate(at(i, len + 1)),
            Mutation::Token(i, t) => {
                let token = TOKENS[t % TOKENS.len()];
                data.splice(at(i, len + 1)..at(i, len + 1), token.iter().copied());
            }
            _ => {}
        }
    }
    data
}

fn mutation() -> impl proptest::strategy::Strategy<Value = Mutation> {
    use proptest::prelude::*;
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, x)| Mutation::Flip(i, x)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        (any::<usize>(), any::<usize>()).prop_map(|(i, n)| Mutation::Remove(i, n)),
        (any::<usize>(), any::<usize>()).prop_map(|(i, n)| Mutation::Repeat(i, n)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), any::<usize>()).prop_map(|(i, t)| Mutation::Token(i, t)),
    ]
}

/// Each fuzz target on `cases` inputs made by mutating its seeds (a few
/// flips, insertions, cuts and parser tokens each): none may panic or break
/// the target's property. The stable toolchain's stand-in for `cargo fuzz`
/// (scripts/fuzz, nightly): 20,000 inputs a target take about two seconds
/// in all, so CI runs them every time, from a new random seed each run;
/// proptest shrinks a failure to its fewest mutations and prints the input
/// (`PROPTEST_CASES` runs more).
fn mutation_fuzz(target: &str, run: Target, cases: u32) {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    let seeds = seeds(target);
    assert!(!seeds.is_empty(), "{target}: no seed");
    let config = Config {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(cases),
        failure_persistence: None,
        ..Config::default()
    };
    let input = (0..seeds.len(), prop::collection::vec(mutation(), 1..8));
    TestRunner::new(config)
        .run(&input, |(seed, mutations)| {
            let data = mutate(seeds[seed].clone(), &mutations);
            let r = std::panic::catch_unwind(|| run(&data));
            prop_assert!(
                r.is_ok(),
                "{target} panicked on {:?}",
                String::from_utf8_lossy(&data)
            );
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{target}: {e}"));
}

/// A fuzz target's body: arbitrary bytes in, a panic on a broken property.
type Target = fn(&[u8]);

#[test]
fn every_fuzz_target_survives_mutations_of_its_seeds() {
    let targets: [(&str, Target); 4] = [
        ("read", sluice::fuzz::read),
        ("events", sluice::fuzz::events),
        ("partition_values", sluice::fuzz::partition_values),
        ("pipeline_config", sluice::fuzz::pipeline_config),
    ];
    for (target, run) in targets {
        mutation_fuzz(target, run, 20_000);
    }
}
