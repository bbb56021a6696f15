//! The `sluice` command end to end, on real files, read back with DuckDB and pyarrow.

use std::path::Path;

use serde_json::Value;
use sluice_tests::{
    check_lake_matches_raw, compare_script, files_under, python_json, repo_root, sluice,
    sluice_err, sluice_ok,
};

const EXAMPLE: &str = "examples/clickstream/sluice.toml";

#[test]
fn the_example_lake_holds_exactly_the_raw_rows_transformed() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let lake_s = lake.to_str().unwrap();
    let out = sluice_tests::run_into(
        &repo_root(),
        EXAMPLE,
        lake_s,
        &["--chunk-size", "200KiB", "--workers", "2"],
    );
    assert!(out.contains("partitions"), "{out}");
    let v = sluice_tests::check_example_lake(&lake);
    let cols = sluice_tests::columns_of(&v);
    assert!(
        cols.contains(&"ip_hash") && !cols.contains(&"ip"),
        "{cols:?}"
    );

    // Each file's statistics in its commit record (a Delta `add` action's
    // stats) are what pyarrow reads in the file's footer: row count, nulls,
    // and bounds that hold every value DuckDB reads in the file.
    let v = python_json(&repo_root(), &stats_script(&lake));
    assert!(
        v["files"].as_u64().unwrap() >= 56 && v["bounded"].as_u64().unwrap() > 56 * 8,
        "{v}"
    );
    assert_eq!(v["mismatches"], serde_json::json!([]), "{v}");

    // The catalog knows the table and every partition; queries prune by partition.
    let tables = sluice_ok(&repo_root(), &["tables", "--lake", lake_s]);
    assert!(
        tables.contains("clickstream") && tables.contains("dt date, event_type string"),
        "{tables}"
    );
    let parts = sluice_tests::partitions_of(lake_s, "clickstream");
    assert!(parts.contains("56 partitions"), "{parts}");
    let q = sluice_tests::query_csv(
        &repo_root(),
        lake_s,
        "SELECT count(*) AS n FROM clickstream WHERE dt = DATE '2026-11-20' AND event_type = 'purchase'",
    );
    let n: u64 = q.lines().nth(1).unwrap().trim().parse().unwrap();
    let want = python_json(
        &repo_root(),
        r#"
import duckdb, json
con = duckdb.connect(); con.sql("SET TimeZone='UTC'")
print(json.dumps(con.sql("SELECT count(*) FROM read_json('examples/clickstream/raw/clickstream/*') WHERE event_type='purchase' AND CAST(CAST(event_time AS TIMESTAMPTZ) AS DATE) = DATE '2026-11-20'").fetchall()[0][0]))
"#,
    );
    assert_eq!(n, want.as_u64().unwrap());
}

/// A Python script that checks every file's `stats` in the commit records of
/// `lake` against pyarrow's reading of the file's footer, and checks each
/// bound against DuckDB's min and max of the column in that file. Prints
/// the number of files, of bounded columns, and the mismatches.
fn stats_script(lake: &Path) -> String {
    format!(
        r#"
import datetime, decimal, glob, json, os
import duckdb, pyarrow.parquet as pq
lake = {lake:?}
con = duckdb.connect(); con.sql("SET TimeZone='UTC'")
def delta(v):
    if isinstance(v, datetime.datetime):
        v = v.astimezone(datetime.timezone.utc) if v.tzinfo else v
        z = "Z" if v.tzinfo else ""
        return v.strftime("%Y-%m-%dT%H:%M:%S.") + f"{{v.microsecond // 1000:03d}}" + z
    if isinstance(v, datetime.date):
        return v.isoformat()
    if isinstance(v, decimal.Decimal):
        return float(v)
    return v
files = bounded = 0
bad = []
for rec in sorted(glob.glob(os.path.join(lake, "_sluice/commits/*/*.json"))):
    for f in json.load(open(rec))["files"]:
        files += 1
        path = os.path.join(lake, f["path"])
        st = f["stats"]
        meta = pq.ParquetFile(path).metadata
        if st["numRecords"] != meta.num_rows:
            bad.append([f["path"], "numRecords", st["numRecords"], meta.num_rows])
        for i in range(meta.num_columns):
            name = meta.schema.column(i).name
            groups = [meta.row_group(g).column(i).statistics for g in range(meta.num_row_groups)]
            nulls = sum(s.null_count for s in groups)
            if st["nullCount"].get(name) != nulls:
                bad.append([f["path"], name, "nullCount", st["nullCount"].get(name), nulls])
            if name not in st["minValues"]:
                continue
            bounded += 1
            lo, hi = con.sql(f'SELECT min("{{name}}"), max("{{name}}") FROM read_parquet(?)', params=[path]).fetchall()[0]
            # pyarrow's bounds of the footer, formatted as Delta writes them.
            have = [s for s in groups if s.has_min_max]
            want_lo = delta(min(s.min for s in have))
            want_hi = delta(max(s.max for s in have))
            if [st["minValues"][name], st["maxValues"][name]] != [want_lo, want_hi]:
                bad.append([f["path"], name, "bounds", st["minValues"][name], st["maxValues"][name], want_lo, want_hi])
            # And they hold the data as DuckDB reads it.
            if delta(lo) < st["minValues"][name] or delta(hi) > st["maxValues"][name]:
                bad.append([f["path"], name, "data outside", delta(lo), delta(hi)])
print(json.dumps({{"files": files, "bounded": bounded, "mismatches": bad[:10]}}, default=str))
"#
    )
}

#[test]
fn running_the_same_input_twice_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let lake_s = lake.to_str().unwrap();
    let run = || sluice_tests::run_into(&repo_root(), EXAMPLE, lake_s, &["--chunk-size", "300KiB"]);
    run();
    let first = files_under(&lake);
    let count =
        |_: ()| sluice_tests::query_csv(&repo_root(), lake_s, "SELECT count(*) FROM clickstream");
    let n1 = count(());
    let bytes = |lake: &Path| -> Vec<(String, Vec<u8>)> {
        sluice_tests::parquet_files_under(lake)
            .into_iter()
            .map(|f| {
                let b = std::fs::read(lake.join(&f)).unwrap();
                (f, b)
            })
            .collect()
    };
    let parquet = bytes(&lake);
    assert!(parquet.len() > 56);
    run();
    assert_eq!(files_under(&lake), first, "a rerun wrote different files");
    assert_eq!(count(()), n1, "a rerun changed the row count");
    assert!(bytes(&lake) == parquet, "a rerun changed a file's bytes");
    // The output is deterministic: the same input into a new lake gives the
    // same Parquet files, byte for byte.
    let again = tmp.path().join("again");
    let run_again = &["--chunk-size", "300KiB"];
    sluice_tests::run_into(&repo_root(), EXAMPLE, again.to_str().unwrap(), run_again);
    let other = bytes(&again);
    assert_eq!(
        other.iter().map(|(f, _)| f).collect::<Vec<_>>(),
        parquet.iter().map(|(f, _)| f).collect::<Vec<_>>()
    );
    for ((f, a), (_, b)) in parquet.iter().zip(&other) {
        assert!(a == b, "{f} differs between two lakes of the same input");
    }
}

#[test]
fn two_runs_at_once_leave_the_catalog_intact() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let lake_s = lake.to_str().unwrap().to_string();
    let spawn = || {
        std::process::Command::new(sluice_tests::sluice_bin())
            .args([
                "run",
                "--config",
                EXAMPLE,
                "--lake",
                &lake_s,
                "--chunk-size",
                "100KiB",
                "--workers",
                "2",
            ])
            .current_dir(repo_root())
            .output()
    };
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(spawn);
        let b = s.spawn(spawn);
        (a.join().unwrap().unwrap(), b.join().unwrap().unwrap())
    });
    for o in [&a, &b] {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    // Every catalog entry parses, and the catalog lists exactly the partitions on disk.
    let catalog = files_under(&lake.join("_sluice/catalog"));
    for f in &catalog {
        let text = std::fs::read_to_string(lake.join("_sluice/catalog").join(f)).unwrap();
        serde_json::from_str::<Value>(&text).unwrap_or_else(|e| panic!("{f} is corrupt: {e}"));
    }
    let parts = sluice_tests::partitions_of(&lake_s, "clickstream");
    assert!(parts.contains("56 partitions"), "{parts}");
    sluice_tests::check_example_lake(&lake);
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[test]
fn csv_gzip_and_zstd_inputs_land_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let raw = root.join("raw");
    let raw_s = raw.to_str().unwrap();
    sluice_ok(
        root,
        &[
            "generate", "--out", raw_s, "--size", "700KB", "--format", "csv", "--files", "2",
            "--seed", "5",
        ],
    );
    sluice_ok(
        root,
        &[
            "generate",
            "--out",
            root.join("gz").to_str().unwrap(),
            "--size",
            "300KB",
            "--format",
            "csv",
            "--compress",
            "gzip",
            "--seed",
            "6",
        ],
    );
    sluice_ok(
        root,
        &[
            "generate",
            "--out",
            root.join("zst").to_str().unwrap(),
            "--size",
            "300KB",
            "--format",
            "csv",
            "--compress",
            "zstd",
            "--seed",
            "7",
        ],
    );
    std::fs::rename(
        root.join("gz/clickstream/events-00000.csv.gz"),
        raw.join("clickstream/more.csv.gz"),
    )
    .unwrap();
    std::fs::rename(
        root.join("zst/clickstream/events-00000.csv.zst"),
        raw.join("clickstream/more.csv.zst"),
    )
    .unwrap();
    let config = root.join("csv.toml");
    let example = std::fs::read_to_string(repo_root().join(EXAMPLE)).unwrap();
    write(
        &config,
        &example
            .replace("format = \"jsonl\"", "format = \"csv\"")
            .replace(
                "root = \"examples/clickstream/raw\"",
                &format!("root = {raw_s:?}"),
            ),
    );
    let lake = root.join("lake");
    sluice_tests::run_into(
        root,
        config.to_str().unwrap(),
        lake.to_str().unwrap(),
        &["--chunk-size", "64KiB"],
    );
    let v = python_json(
        root,
        &compare_script(&lake, &format!("{raw_s}/clickstream/*"), "read_csv"),
    );
    check_lake_matches_raw(&v);
}

#[test]
fn errors_are_one_clear_line_naming_table_and_field() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let raw = root.join("raw");
    write(
        &raw.join("t/a.jsonl"),
        "{\"id\": 1, \"kind\": \"a\"}\n{\"id\": \"two\", \"kind\": \"b\"}\n",
    );
    let config = |extra: &str| {
        let p = root.join("p.toml");
        write(
            &p,
            &format!(
                "[input]\nroot = {:?}\n[lake]\nroot = {:?}\n[[tables]]\nname = \"t\"\nsource = \"t/\"\nformat = \"jsonl\"\n{extra}\n[tables.schema]\nid = \"int64\"\nkind = \"string\"\n",
                raw.to_str().unwrap(),
                root.join("lake").to_str().unwrap()
            ),
        );
        p.to_str().unwrap().to_string()
    };
    let one_line = |e: &str| {
        assert_eq!(e.trim_end().lines().count(), 1, "not one line: {e}");
        assert!(e.starts_with("error: "), "{e}");
    };

    // A bad query fails before any data is read: no lake is written.
    let e = sluice_err(
        root,
        &[
            "run",
            "--config",
            &config("sql = \"SELECT nope FROM input\""),
        ],
    );
    one_line(&e);
    assert!(e.contains("table 't'") && e.contains("nope"), "{e}");
    assert!(!root.join("lake/t").exists());

    let e = sluice_err(
        root,
        &["run", "--config", &config("partition_by = [\"day\"]")],
    );
    one_line(&e);
    assert!(
        e.contains("table 't'") && e.contains("partition column 'day'"),
        "{e}"
    );

    let e = sluice_err(
        root,
        &["run", "--config", &config("partitoin_by = [\"kind\"]")],
    );
    one_line(&e);
    assert!(e.contains("partitoin_by"), "{e}");

    // A record that does not fit names the file, where it is, and the field:
    // one line for the failed chunk, then one error line.
    let e = sluice_err(
        root,
        &["run", "--config", &config("partition_by = [\"kind\"]")],
    );
    let lines: Vec<&str> = e.trim_end().lines().collect();
    assert_eq!(lines.len(), 3, "{e}");
    assert!(lines[0].starts_with("1 of 1 files failed"), "{e}");
    assert!(
        lines[1].contains("a.jsonl chunk 0: ")
            && lines[1].contains("byte 23")
            && lines[1].contains("field 'id'")
            && lines[1].contains("table 't'"),
        "{e}"
    );
    assert!(lines[2].starts_with("error: 1 of 1 files failed"), "{e}");
    assert!(
        files_under(&root.join("lake/_sluice/commits")).is_empty(),
        "no commit for a failed chunk"
    );

    let e = sluice_err(
        root,
        &["run", "--config", &config(""), "--chunk-size", "12parsecs"],
    );
    assert!(e.contains("12parsecs"), "{e}");
}

#[test]
fn partition_values_cannot_move_files_out_of_the_table() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let raw = root.join("raw");
    let values = [
        "../../escape",
        "a/b",
        "k=v",
        "50%",
        "new york",
        "café",
        "..",
        "x\ty",
    ];
    let mut text = String::new();
    for (i, v) in values.iter().enumerate() {
        text.push_str(&serde_json::json!({"id": i, "kind": v}).to_string());
        text.push('\n');
    }
    text.push_str("{\"id\": 99, \"kind\": null}\n");
    write(&raw.join("t/a.jsonl"), &text);
    let p = root.join("p.toml");
    write(
        &p,
        &format!(
            "[input]\nroot = {:?}\n[[tables]]\nname = \"t\"\nsource = \"t/\"\nformat = \"jsonl\"\npartition_by = [\"kind\"]\n[tables.schema]\nid = \"int64\"\nkind = \"string\"\n",
            raw.to_str().unwrap()
        ),
    );
    let lake = root.join("lake");
    sluice_tests::run_into(root, p.to_str().unwrap(), lake.to_str().unwrap(), &[]);
    let files = sluice_tests::parquet_files_under(&lake);
    assert_eq!(files.len(), values.len() + 1, "{files:?}");
    for f in &files {
        let parts: Vec<_> = f.split('/').collect();
        assert_eq!(parts.len(), 3, "{f} is not <table>/<kind=..>/<file>");
        assert_eq!(parts[0], "t");
        assert!(parts[1].starts_with("kind="), "{f}");
    }
    assert!(
        files.contains(&"t/kind=..%2F..%2Fescape".to_string())
            || files
                .iter()
                .any(|f| f.starts_with("t/kind=..%2F..%2Fescape/"))
    );
    assert!(
        files
            .iter()
            .any(|f| f.starts_with("t/kind=__HIVE_DEFAULT_PARTITION__/"))
    );
    assert!(!root.join("escape").exists() && !root.join("a").exists());
    // pyarrow reads every row back, partition values decoded.
    let v = python_json(
        root,
        r#"
import json, pyarrow.dataset as ds
t = ds.dataset("lake/t", format="parquet", partitioning="hive").to_table()
print(json.dumps(sorted([str(k) for k in t.column("kind").to_pylist()])))
"#,
    );
    let mut want: Vec<String> = values.iter().map(|s| s.to_string()).collect();
    // pyarrow reads Hive's null partition back as null.
    want.push("None".into());
    want.sort();
    let got: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    assert_eq!(got, want);
    // sluice query decodes values too, and Hive's null partition is null.
    let lake_s = lake.to_str().unwrap();
    let q = sluice_tests::query_csv(
        root,
        lake_s,
        "SELECT count(*) FILTER (WHERE kind IS NULL) AS nulls, count(*) FILTER (WHERE kind = '../../escape') AS esc FROM t",
    );
    assert_eq!(q.lines().nth(1), Some("1,1"), "{q}");
    assert!(sluice(root, &["tables", "--lake", lake_s]).status.success());
}

#[test]
fn parquet_input_is_cut_by_row_groups_and_output_rolls_at_the_target_size() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    // 200,000 rows in row groups of 5,000, written by pyarrow.
    let v = python_json(
        root,
        r#"
import json, os, pyarrow as pa, pyarrow.parquet as pq, datetime as dt
os.makedirs("raw/p", exist_ok=True)
n = 200000
t = pa.table({
    "id": pa.array(range(n), pa.int64()),
    "name": pa.array([f"name-{i % 977}-{'x' * (i % 50)}" for i in range(n)]),
    "at": pa.array([dt.datetime(2026, 11, 1 + i % 3, tzinfo=dt.timezone.utc) for i in range(n)], pa.timestamp("ms", tz="UTC")),
    "amount": pa.array([i * 0.5 for i in range(n)]),
    "ignored": pa.array([i for i in range(n)], pa.int32()),
})
pq.write_table(t, "raw/p/data.parquet", row_group_size=5000)
print(json.dumps({"rows": n, "groups": pq.ParquetFile("raw/p/data.parquet").num_row_groups, "size": os.path.getsize("raw/p/data.parquet")}))
"#,
    );
    assert_eq!(v["groups"], 40);
    write(
        &root.join("p.toml"),
        "[input]\nroot = \"raw\"\n[[tables]]\nname = \"p\"\nsource = \"p/\"\nformat = \"parquet\"\nsql = \"SELECT id, name, at, amount * 2 AS doubled FROM input\"\n[tables.schema]\nid = \"int64\"\nname = \"string\"\nat = \"timestamp\"\namount = \"float64\"\n[tables.parquet]\ncompression = \"none\"\ntarget_file_mb = 1\nrow_group_rows = 4096\n",
    );
    let chunk = (v["size"].as_u64().unwrap() / 5).to_string();
    let out = sluice_tests::run_into(root, "p.toml", "lake", &["--chunk-size", &chunk]);
    assert!(
        out.contains("5 chunks") || out.contains("6 chunks") || out.contains("4 chunks"),
        "{out}"
    );
    let files = sluice_tests::parquet_files_under(&root.join("lake/p"));
    let check = python_json(
        root,
        r#"
import json, glob, os, pyarrow.parquet as pq, pyarrow.compute as pc
files = sorted(glob.glob("lake/p/*.parquet"))
t = pq.read_table(files)
print(json.dumps({"rows": t.num_rows, "distinct": len(pc.unique(t["id"])), "sum": pc.sum(t["doubled"]).as_py(),
                  "max_mb": max(os.path.getsize(f) for f in files) / 1e6, "tz": str(t.schema.field("at").type)}))
"#,
    );
    assert_eq!(check["rows"], 200000);
    assert_eq!(check["distinct"], 200000);
    assert_eq!(
        check["sum"].as_f64().unwrap(),
        (0..200000).map(|i| i as f64).sum::<f64>()
    );
    assert_eq!(check["tz"], "timestamp[us, tz=UTC]");
    // Files rolled: more than one per chunk's worth, none far past the 1 MB target.
    assert!(files.len() > 5, "{files:?}");
    assert!(check["max_mb"].as_f64().unwrap() < 2.0, "{check}");
}

#[test]
fn bad_records_are_quarantined_with_their_reason_and_the_rest_lands() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let mut text = String::new();
    for i in 0..20 {
        text.push_str(&format!("{{\"id\": {i}, \"kind\": \"k{}\"}}\n", i % 3));
    }
    let bad_json_at = text.len();
    text.push_str("{\"id\": 20, \"kind\": \n");
    let bad_type_at = text.len();
    text.push_str("{\"id\": \"twenty-one\", \"kind\": \"k0\"}\n");
    write(&root.join("raw/t/a.jsonl"), &text);
    write(
        &root.join("p.toml"),
        "[input]\nroot = \"raw\"\n[[tables]]\nname = \"t\"\nsource = \"t/\"\nformat = \"jsonl\"\npartition_by = [\"kind\"]\n[tables.schema]\nid = \"int64\"\nkind = \"string\"\n",
    );
    let out = sluice_ok(root, &["run", "--config", "p.toml", "--lake", "lake"]);
    assert!(out.contains("20 rows (2 rejected)"), "{out}");
    let quarantine = files_under(&root.join("lake/_quarantine/t"));
    assert_eq!(quarantine.len(), 1, "{quarantine:?}");
    let read_q =
        || std::fs::read_to_string(root.join("lake/_quarantine/t").join(&quarantine[0])).unwrap();
    let entries: Vec<Value> = read_q()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["offset"], bad_json_at as u64);
    assert_eq!(entries[0]["raw"], "{\"id\": 20, \"kind\": ");
    assert_eq!(entries[1]["offset"], bad_type_at as u64);
    assert!(
        entries[1]["reason"]
            .as_str()
            .unwrap()
            .contains("field 'id'"),
        "{}",
        entries[1]
    );
    assert!(
        entries[1]["source"]
            .as_str()
            .unwrap()
            .ends_with("raw/t/a.jsonl")
    );
    assert_eq!(entries[1]["table"], "t");
    let commits = files_under(&root.join("lake/_sluice/commits/t"));
    let commit: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("lake/_sluice/commits/t").join(&commits[0])).unwrap(),
    )
    .unwrap();
    assert_eq!(commit["rows_rejected"], 2);
    let v = python_json(
        root,
        "import duckdb, json\nprint(json.dumps(duckdb.sql(\"SELECT count(*), sum(id) FROM read_parquet('lake/t/**/*.parquet', hive_partitioning=true)\").fetchall()[0]))",
    );
    assert_eq!(v, serde_json::json!([20, 190]));
    // A rerun leaves the same quarantine, not a second copy.
    let before = read_q();
    sluice_ok(root, &["run", "--config", "p.toml", "--lake", "lake"]);
    assert_eq!(files_under(&root.join("lake/_quarantine/t")), quarantine);
    assert_eq!(read_q(), before);

    // Past max_rejected_ratio the chunk fails, naming the table, the share and the first reason.
    write(
        &root.join("p.toml"),
        "[input]\nroot = \"raw\"\n[[tables]]\nname = \"t\"\nsource = \"t/\"\nformat = \"jsonl\"\nmax_rejected_ratio = 0.05\n[tables.schema]\nid = \"int64\"\nkind = \"string\"\n",
    );
    let e = sluice_err(root, &["run", "--config", "p.toml", "--lake", "lake2"]);
    assert!(
        e.contains("table 't'")
            && e.contains("2 of 22 records rejected")
            && e.contains("max_rejected_ratio = 0.05"),
        "{e}"
    );
    assert!(!root.join("lake2/_quarantine").exists());
}
