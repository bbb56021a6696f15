//! Change data capture workloads and their checks, shared by the CLI's
//! and the functions' CDC tests: a random workload applied to SQLite
//! (`tests/cdc_workload.py`) and written as Debezium and DMS change files,
//! and two Delta readers nobody here wrote comparing the lake with it.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

use crate::{DUCKDB_DELTA, delta_python_json, python, repo_root};

/// The key of the example's tables.
pub const KEY: &[&str] = &["id"];

/// The key of the `--composite` workload's tables: text first.
pub const COMPOSITE_KEY: &[&str] = &["region", "id"];

/// The columns after the key in every workload.
const VALUES: [&str; 4] = ["email", "balance", "signup", "updated_at"];

/// The columns of a mirror table keyed by `key`: the declared ones, then
/// the position.
pub fn columns<'a>(key: &[&'a str]) -> Vec<&'a str> {
    let mut out = key.to_vec();
    out.extend(VALUES);
    out.push("_sluice_position");
    out
}

pub const TABLES: [&str; 3] = ["customers_dbz", "customers_dms", "customers_dmsp"];

/// The example's pipeline: Debezium, DMS CSV and DMS Parquet tables.
pub fn config() -> String {
    std::fs::read_to_string(repo_root().join("examples/cdc/sluice.toml")).unwrap()
}

/// The example's pipeline with its tables keyed by `key` ([`KEY`] or
/// [`COMPOSITE_KEY`]), for [`workload_keyed`]'s files.
pub fn config_keyed(key: &[&str]) -> String {
    if key == KEY {
        config()
    } else {
        composite_config()
    }
}

/// The example's pipeline keyed by (region, id), for the `--composite`
/// workload: `region` is declared first in each table.
fn composite_config() -> String {
    let text = config()
        .replace("key = [\"id\"]", "key = [\"region\", \"id\"]")
        .replace("id = \"int64\"\n", "region = \"string\"\nid = \"int64\"\n");
    assert_eq!(text.matches("region = \"string\"").count(), TABLES.len());
    text
}

/// Generate the workload into `out`: `debezium/`, `dms/`, `dms_parquet/`
/// and `expected.json`.
pub fn workload(out: &Path, seed: u64, changes: u64, files: u64) {
    workload_keyed(out, seed, changes, files, KEY);
}

/// [`workload`] with the tables keyed by `key`: [`KEY`] or
/// [`COMPOSITE_KEY`] (changes in transactions that share a position).
pub fn workload_keyed(out: &Path, seed: u64, changes: u64, files: u64, key: &[&str]) {
    let status = std::process::Command::new(python())
        .arg(repo_root().join("tests/cdc_workload.py"))
        .arg(out)
        .args(["--seed", &seed.to_string()])
        .args(["--changes", &changes.to_string()])
        .args(["--files", &files.to_string()])
        .arg("--parquet")
        .args((key == COMPOSITE_KEY).then_some("--composite"))
        .status()
        .expect("the test Python runs (scripts/test installs tests/requirements.txt)");
    assert!(status.success(), "cdc_workload.py failed");
}

/// The database's rows, as the readers' rows are canonicalised below.
pub fn expected(raw: &Path) -> Vec<Vec<String>> {
    let rows: Vec<Vec<Value>> =
        serde_json::from_str(&std::fs::read_to_string(raw.join("expected.json")).unwrap()).unwrap();
    let mut out: Vec<Vec<String>> = rows
        .into_iter()
        .map(|r| {
            r.into_iter()
                .map(|v| match v {
                    Value::String(s) => s,
                    Value::Null => "None".into(),
                    other => other.to_string(),
                })
                .collect()
        })
        .collect();
    out.sort();
    out
}

/// Python reading each table (keyed by `key`) of the lake `lake` with
/// `deltalake` and with DuckDB's `delta_scan`, as sorted rows of text and
/// its columns, and the change table's operations;
/// also the number of changes in the Debezium files under `raw` (events, a
/// key-moving update counted as a delete and an insert).
pub fn readers_script(lake: &Path, raw: &Path, key: &[&str]) -> String {
    let keys: String = key.iter().map(|k| format!("{k}::VARCHAR, ")).collect();
    format!(
        r#"{DUCKDB_DELTA}
import json, glob, deltalake
lake, raw, key = {lake:?}, {raw:?}, {key:?}
def text(v):
    if v is None: return "None"
    if hasattr(v, "strftime") and hasattr(v, "hour"): return v.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return str(v)
cols = key + {VALUES:?}
out = {{}}
for t in {tables:?}:
    table = deltalake.DeltaTable(f"{{lake}}/{{t}}")
    by_deltalake = sorted([text(r[c]) for c in cols] for r in table.to_pyarrow_table().to_pylist())
    scan = con.sql(f"""SELECT {keys}coalesce(email, 'None'), balance::VARCHAR, signup::VARCHAR,
        strftime(updated_at, '%Y-%m-%dT%H:%M:%S.%fZ') FROM delta_scan('{{lake}}/{{t}}')""").fetchall()
    by_scan = sorted(list(r) for r in scan)
    columns = [f.name for f in table.schema().fields]
    out[t] = {{"deltalake": by_deltalake, "scan": by_scan, "columns": columns}}
changes = con.sql(f"""SELECT _op, count(*), count(DISTINCT _sluice_position)
    FROM delta_scan('{{lake}}/customers_dbz_changes') GROUP BY ALL ORDER BY ALL""").fetchall()
out["changes"] = {{op: [n, distinct] for op, n, distinct in changes}}
events = 0
for f in glob.glob(raw + "/debezium/*.jsonl"):
    for line in open(f):
        if line.strip() == "null": continue
        e = json.loads(line); e = e.get("payload", e)
        moved = e["op"] == "u" and any(e["before"][k] != e["after"][k] for k in key)
        events += 2 if moved else 1
out["events"] = events
print(json.dumps(out))
"#,
        tables = TABLES
    )
}

/// Require both readers to find every table equal to the database.
pub fn check_tables(dir: &Path, raw: &Path, stage: &str) -> Value {
    check_tables_keyed(dir, raw, stage, KEY)
}

/// [`check_tables`] for tables keyed by `key`.
pub fn check_tables_keyed(dir: &Path, raw: &Path, stage: &str, key: &[&str]) -> Value {
    let want = expected(raw);
    assert!(want.len() > 20, "{stage}: a small oracle: {}", want.len());
    let got = delta_python_json(dir, &readers_script(&dir.join("lake"), raw, key));
    for t in TABLES {
        for reader in ["deltalake", "scan"] {
            let rows: Vec<Vec<String>> = serde_json::from_value(got[t][reader].clone()).unwrap();
            if rows != want {
                let g: BTreeSet<_> = rows.iter().collect();
                let w: BTreeSet<_> = want.iter().collect();
                panic!(
                    "{stage}: {t} read by {reader} is not the source table ({} rows, want {}): only in the lake {:?}, only in the source {:?}",
                    rows.len(),
                    want.len(),
                    g.difference(&w).take(3).collect::<Vec<_>>(),
                    w.difference(&g).take(3).collect::<Vec<_>>()
                );
            }
        }
        assert_eq!(
            got[t]["columns"],
            serde_json::json!(columns(key)),
            "{stage}: {t}'s columns"
        );
    }
    got
}
