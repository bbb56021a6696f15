//! Helpers for the end-to-end tests: the `sluice` binary, run as a user runs
//! it, and independent readers (DuckDB and pyarrow, through Python) to check
//! what it wrote.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

pub mod moto;

use serde_json::Value;

/// The repository's root folder.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the repository")
        .to_path_buf()
}

/// The `sluice` binary of this build: the `sluice-under-test` target of this
/// crate, which is the `sluice` command (`sluice_cli::main`), or `SLUICE_BIN`.
pub fn sluice_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| match std::env::var("SLUICE_BIN") {
        Ok(p) => PathBuf::from(p),
        Err(_) => {
            let exe = std::env::current_exe().expect("test binary path");
            let dir = exe
                .parent()
                .and_then(Path::parent)
                .expect("target/<profile>/deps/<test>");
            let bin = dir.join(format!("sluice-under-test{}", std::env::consts::EXE_SUFFIX));
            assert!(
                bin.exists(),
                "{} is missing: run the tests with cargo test",
                bin.display()
            );
            bin
        }
    })
}

/// Run `sluice` with `args` in `cwd`.
pub fn sluice(cwd: &Path, args: &[&str]) -> Output {
    Command::new(sluice_bin())
        .args(args)
        .current_dir(cwd)
        .env_remove("SLUICE_LOG")
        .output()
        .expect("sluice runs")
}

/// Run `sluice` and require success; returns stdout.
pub fn sluice_ok(cwd: &Path, args: &[&str]) -> String {
    let out = sluice(cwd, args);
    assert!(
        out.status.success(),
        "sluice {args:?} failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// Run `sluice`, require failure; returns stderr.
pub fn sluice_err(cwd: &Path, args: &[&str]) -> String {
    let out = sluice(cwd, args);
    assert!(
        !out.status.success(),
        "sluice {args:?} should have failed:\nstdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stderr).expect("utf-8 output")
}

/// The Python interpreter with duckdb and pyarrow (`SLUICE_PYTHON`, else `python3`).
pub fn python() -> String {
    std::env::var("SLUICE_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Run a Python script (with duckdb and pyarrow importable) in `cwd`; it must
/// print one JSON document, which is returned.
pub fn python_json(cwd: &Path, script: &str) -> serde_json::Value {
    let out = Command::new(python())
        .arg("-c")
        .arg(script)
        .current_dir(cwd)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "the Python check failed (the test command installs duckdb and pyarrow: see README):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "Python printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Every file under `dir`, relative, sorted.
pub fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).expect("readable folder") {
            let e = e.expect("entry");
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.push(
                    p.strip_prefix(base)
                        .expect("under base")
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    if dir.exists() {
        walk(dir, dir, &mut out);
    }
    out.sort();
    out
}

/// Per (dt, event_type): rows, sum of price, distinct event ids, sum of user ids,
/// from the lake (DuckDB, Hive partitioning) and from the raw input (DuckDB's
/// own JSON reader), plus the lake's row count through pyarrow.
pub fn compare_script(lake: &Path, raw_glob: &str, raw_reader: &str) -> String {
    let types = "{'event_id':'VARCHAR','event_time':'VARCHAR','user_id':'BIGINT','event_type':'VARCHAR','price':'DECIMAL(10,2)'}";
    let source = match raw_reader {
        "read_csv" => format!("read_csv('{raw_glob}', header=true, types={types})"),
        _ => format!("read_json('{raw_glob}', columns={types})"),
    };
    format!(
        r#"
import duckdb, json, pyarrow.dataset as ds
con = duckdb.connect()
con.sql("SET TimeZone='UTC'")
lake = {lake:?}
q = lambda s: [list(map(str, r)) for r in con.sql(s).fetchall()]
got = q(f"""SELECT CAST(dt AS VARCHAR), event_type, count(*), sum(price), count(DISTINCT event_id), sum(user_id)
          FROM read_parquet('{{lake}}/clickstream/**/*.parquet', hive_partitioning=true)
          GROUP BY ALL ORDER BY ALL""")
want = q("""SELECT CAST(CAST(event_time AS TIMESTAMPTZ) AS DATE)::VARCHAR, event_type, count(*), sum(price), count(DISTINCT event_id), sum(user_id)
          FROM {source}
          GROUP BY ALL ORDER BY ALL""")
hashes = q(f"""SELECT count(*) FROM read_parquet('{{lake}}/clickstream/**/*.parquet', hive_partitioning=true)
          WHERE length(ip_hash) <> 64 OR country <> lower(country)""")
table = ds.dataset(f"{{lake}}/clickstream", format="parquet", partitioning="hive").to_table()
print(json.dumps({{"got": got, "want": want, "bad": hashes[0][0], "pyarrow_rows": table.num_rows,
                  "columns": table.schema.names}}))
"#
    )
}

pub fn check_lake_matches_raw(v: &Value) {
    let got = v["got"].as_array().unwrap();
    let want = v["want"].as_array().unwrap();
    assert!(!want.is_empty());
    assert_eq!(
        got, want,
        "per-partition figures differ between the lake and the raw input"
    );
    assert_eq!(
        v["bad"], "0",
        "ip_hash and lower(country) were applied to every row"
    );
    let total: u64 = want
        .iter()
        .map(|r| r[2].as_str().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(v["pyarrow_rows"].as_u64().unwrap(), total);
}
