//! Lookups joined on the way in, end to end with the `sluice` command: the
//! lake equals DuckDB's own join of the raw files with the reference files,
//! row for row (unmatched rows, null keys and duplicate keys included), a
//! changed lookup is read again by the next run, a lake table serves as a
//! lookup, and a lookup that is too large or cannot be read stops the run
//! before any chunk is written.

use std::path::Path;

use sluice_tests::enrichment::{EXAMPLE, lake_orders, oracle};
use sluice_tests::{assert_same_rows, repo_root, sluice_err, sluice_ok};

/// Nothing was written to the lake under `dir`.
fn assert_lake_empty(dir: &Path) {
    let files = sluice_tests::parquet_files_under(&dir.join("lake"));
    assert!(files.is_empty(), "{files:?}");
}

#[test]
fn the_enrichment_example_equals_duckdbs_join_of_the_raw_files() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let out = sluice(&[
        "run",
        "--config",
        EXAMPLE,
        "--lake",
        lake.to_str().unwrap(),
        "--chunk-size",
        "64KiB",
        "--workers",
        "2",
    ]);
    assert!(out.contains("partitions"), "{out}");
    let raw = repo_root().join("examples/enrichment/raw/orders/*.jsonl");
    let customers = repo_root().join("examples/enrichment/ref/customers.csv");
    let rows = assert_same_rows(
        &repo_root(),
        &lake_orders(&lake),
        &oracle(raw.to_str().unwrap(), customers.to_str().unwrap()),
    );
    assert_eq!(rows, 3000);
    // Some orders match no customer (unknown ids, null ids) and keep their
    // row with nulls; most match.
    let v = sluice_tests::python_json(
        &repo_root(),
        &format!(
            "import duckdb, json\nprint(json.dumps(duckdb.sql(\"SELECT count(*) FILTER (WHERE segment IS NULL), count(*) FILTER (WHERE customer_id IS NULL), count(*) FILTER (WHERE product IS NULL) FROM ({})\").fetchall()[0]))",
            lake_orders(&lake)
        ),
    );
    let (no_segment, no_id, no_product) = (
        v[0].as_u64().unwrap(),
        v[1].as_u64().unwrap(),
        v[2].as_u64().unwrap(),
    );
    assert!(no_id > 0 && no_segment > no_id && no_segment < 600, "{v}");
    assert!(no_product > 0 && no_product < 600, "{v}");
}

/// Data at production's shapes: two order files of 15,000 rows over two
/// days (partitions of 15,000 rows), a customers lookup of three CSV files
/// and 12,000 rows (past the 8,192-row batch a reader returns), row groups
/// of at most 4,000 rows. Loaded in 256 KiB chunks, compacted into one file
/// a partition (several row groups, read back in several batches), then
/// one order file replaced by a new version whose rows are cut out of the
/// merged files: after each step the lake is DuckDB's own join of the raw
/// files, row for row.
#[test]
fn partitions_of_fifteen_thousand_rows_and_a_lookup_of_three_files_equal_duckdbs_join() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let generate = |seed: u64, orders: usize| {
        let script = format!(
            r#"
import json, random, os
rnd = random.Random({seed})
os.makedirs("raw/orders", exist_ok=True)
os.makedirs("customers", exist_ok=True)
ids = list(range(1, 12001))
random.Random(1).shuffle(ids)
for f in range(3):
    with open(f"customers/part-{{f}}.csv", "w") as out:
        out.write("id,name,segment,country,since\n")
        for i in ids[f * 4000:(f + 1) * 4000]:
            out.write(f"{{i}},name {{i}},{{['retail', 'enterprise', 'public'][i % 3]}},{{['DE', 'FR', 'JP', 'US'][i % 4]}},2024-0{{i % 9 + 1}}-1{{i % 10}}\n")
for f in range(2):
    if {orders} < 15000 and f == 0:
        continue
    with open(f"raw/orders/orders-{{f}}.jsonl", "w") as out:
        for n in range({orders}):
            day = 20 + n % 2
            cust = rnd.choice([None] + list(range(1, 12601)))
            out.write(json.dumps({{"order_id": f"o-{{f}}-{{n:05d}}",
                "order_time": f"2026-11-{{day}}T{{rnd.randint(0, 23):02d}}:{{rnd.randint(0, 59):02d}}:0{{n % 10}}.000Z",
                "customer_id": cust, "sku": f"SKU-{{rnd.randint(1, 60):04d}}",
                "quantity": rnd.randint(1, 9), "amount": rnd.randint(100, 99999) / 100}}) + "\n")
print("{{}}")
"#
        );
        sluice_tests::python_json(dir, &script);
    };
    generate(5, 15_000);
    let config = pipeline_in(dir, |t| {
        t.replace(
            &format!("source = {:?}", dir.join("customers.csv").to_str().unwrap()),
            &format!("source = {:?}", dir.join("customers").to_str().unwrap()),
        )
        .replace(
            "amount = \"decimal(10,2)\"\n",
            "amount = \"decimal(10,2)\"\n\n[tables.parquet]\nrow_group_rows = 4000\n",
        )
    });
    assert!(
        std::fs::read_to_string(&config)
            .unwrap()
            .contains("row_group_rows")
    );
    let config = config.to_str().unwrap();
    let lake = dir.join("lake");
    let lake_s = lake.to_str().unwrap();
    let raw = dir.join("raw/orders/*.jsonl");
    let customers = dir.join("customers/*.csv");
    let check = |what: &str| -> u64 {
        let rows = assert_same_rows(
            dir,
            &lake_orders(&lake),
            &oracle(raw.to_str().unwrap(), customers.to_str().unwrap()),
        );
        println!("{what}: {rows} rows equal");
        rows
    };
    let run = || {
        sluice_ok(
            dir,
            &[
                "run",
                "--config",
                config,
                "--chunk-size",
                "256KiB",
                "--workers",
                "2",
            ],
        )
    };
    run();
    assert_eq!(check("loaded"), 30_000);
    sluice_ok(dir, &["compact", "--lake", lake_s, "--min-age", "0s"]);
    assert_eq!(check("compacted"), 30_000);
    // One file a partition, of 15,000 rows in several row groups.
    let shape = sluice_tests::python_json(
        dir,
        r#"
import glob, json, pyarrow.parquet as pq
files = sorted(glob.glob("lake/orders/**/*.parquet", recursive=True))
print(json.dumps([[pq.ParquetFile(f).metadata.num_rows, pq.ParquetFile(f).metadata.num_row_groups] for f in files]))
"#,
    );
    assert_eq!(shape.as_array().unwrap().len(), 2, "{shape}");
    for f in shape.as_array().unwrap() {
        assert!(
            f[0].as_u64().unwrap() >= 14_000 && f[1].as_u64().unwrap() >= 4,
            "{shape}"
        );
    }
    // A new version of orders-1.jsonl: 9,000 rows, all of them changed.
    generate(6, 9_000);
    run();
    assert_eq!(check("after the new version"), 24_000);
}

/// Run `sluice` in the repository; its stdout and stderr.
fn sluice(args: &[&str]) -> String {
    let out = sluice_tests::sluice(&repo_root(), args);
    let text = sluice_tests::printed(&out);
    assert!(out.status.success(), "sluice {args:?} failed:\n{text}");
    text
}

/// The example's pipeline with its paths under `dir` (raw orders in
/// `dir/raw/orders/`, customers in `dir/customers.csv`) and `change` applied.
fn pipeline_in(dir: &Path, change: impl Fn(String) -> String) -> std::path::PathBuf {
    let text = std::fs::read_to_string(repo_root().join(EXAMPLE)).unwrap();
    let text = text
        .replace(
            "root = \"./lake\"",
            &format!("root = {:?}", dir.join("lake").to_str().unwrap()),
        )
        .replace(
            "root = \"examples/enrichment/raw\"",
            &format!("root = {:?}", dir.join("raw").to_str().unwrap()),
        )
        .replace(
            "source = \"examples/enrichment/ref/customers.csv\"",
            &format!("source = {:?}", dir.join("customers.csv").to_str().unwrap()),
        )
        .replace(
            "source = \"examples/enrichment/ref/products.jsonl\"",
            &format!(
                "source = {:?}",
                repo_root()
                    .join("examples/enrichment/ref/products.jsonl")
                    .to_str()
                    .unwrap()
            ),
        );
    let text = change(text);
    let path = dir.join("sluice.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A pipeline loading the example's customers CSV (`customers/` under
/// `raw`) into a table `customers` of `format` in `lake`.
fn customers_table(lake: &str, format: &str, raw: &str) -> String {
    format!(
        "[lake]\nroot = {lake:?}\ntable_format = \"{format}\"\n[input]\nroot = {raw:?}\n\
         [[tables]]\nname = \"customers\"\nsource = \"customers/\"\nformat = \"csv\"\n\
         [tables.schema]\nid = \"int64\"\nname = \"string\"\nsegment = \"string\"\n\
         country = \"string\"\nsince = \"date\"\n"
    )
}

/// The example's pipeline in `dir` with its customers lookup read from the
/// lake's table `customers` instead of a CSV file.
fn joining_the_lakes_customers(dir: &Path) -> std::path::PathBuf {
    pipeline_in(dir, |t| {
        t.replace(
            &format!(
                "source = {:?}\nformat = \"csv\"\nmax_size = \"64MiB\"",
                dir.join("customers.csv").to_str().unwrap()
            ),
            "table = \"customers\"",
        )
        .replace(
            "[lookups.schema]\nid = \"int64\"\nname = \"string\"\nsegment = \"string\"\ncountry = \"string\"\nsince = \"date\"\n",
            "",
        )
    })
}

fn copy_orders(dir: &Path, files: &[&str]) {
    std::fs::create_dir_all(dir.join("raw/orders")).unwrap();
    for f in files {
        std::fs::copy(
            repo_root().join("examples/enrichment/raw/orders").join(f),
            dir.join("raw/orders").join(f),
        )
        .unwrap();
    }
}

#[test]
fn duplicate_and_null_keys_join_as_sql_says_and_a_changed_lookup_is_read_again() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    copy_orders(dir, &["orders-00000.jsonl"]);
    // Customer 5 twice (every match is joined: their orders appear twice),
    // and a customer without an id (matches nothing, not even a null id).
    let example =
        std::fs::read_to_string(repo_root().join("examples/enrichment/ref/customers.csv")).unwrap();
    let v1 = format!(
        "{example}5,Second Five,public sector,NO,2021-01-01\n,No Id,consumer,XX,2021-01-01\n"
    );
    std::fs::write(dir.join("customers.csv"), &v1).unwrap();
    std::fs::write(dir.join("customers-v1.csv"), &v1).unwrap();
    let config = pipeline_in(dir, |t| t);
    let out = sluice(&[
        "run",
        "--config",
        config.to_str().unwrap(),
        "--chunk-size",
        "100KiB",
    ]);
    assert!(out.contains("lookup customers: 302 rows"), "{out}");
    let first = dir.join("raw/orders/orders-00000.jsonl");
    let rows = assert_same_rows(
        dir,
        &lake_orders(&dir.join("lake")),
        &oracle(
            first.to_str().unwrap(),
            dir.join("customers-v1.csv").to_str().unwrap(),
        ),
    );
    let fives = sluice_tests::python_json(
        dir,
        &format!(
            "import duckdb, json\nprint(json.dumps(duckdb.sql(\"SELECT count(*) FROM read_json('{}') WHERE customer_id = 5\").fetchall()[0][0]))",
            first.display()
        ),
    );
    assert!(
        fives.as_u64().unwrap() > 0,
        "the test needs orders of customer 5"
    );
    assert_eq!(rows, 1500 + fives.as_u64().unwrap());

    // Every customer changes segment; the next run reads the new file for
    // the new orders, and the orders already loaded keep what they were
    // joined with.
    let v2: String = v1
        .lines()
        .map(|l| {
            l.replace(",consumer,", ",retail,")
                .replace(",enterprise,", ",corporate,")
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n";
    assert_ne!(v1, v2);
    std::fs::write(dir.join("customers.csv"), &v2).unwrap();
    std::fs::write(dir.join("customers-v2.csv"), &v2).unwrap();
    copy_orders(dir, &["orders-00001.jsonl"]);
    sluice(&[
        "run",
        "--config",
        config.to_str().unwrap(),
        "--chunk-size",
        "100KiB",
    ]);
    let second = dir.join("raw/orders/orders-00001.jsonl");
    let want = format!(
        "{} UNION ALL {}",
        oracle(
            first.to_str().unwrap(),
            dir.join("customers-v1.csv").to_str().unwrap()
        ),
        oracle(
            second.to_str().unwrap(),
            dir.join("customers-v2.csv").to_str().unwrap()
        )
    );
    assert_same_rows(dir, &lake_orders(&dir.join("lake")), &want);
}

#[test]
fn a_table_of_the_lake_is_a_lookup() {
    for format in ["hive", "delta"] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        copy_orders(dir, &["orders-00000.jsonl"]);
        let customers = repo_root().join("examples/enrichment/ref/customers.csv");
        std::fs::create_dir_all(dir.join("raw/customers")).unwrap();
        std::fs::copy(&customers, dir.join("raw/customers/customers.csv")).unwrap();
        // First the customers become a table of the lake...
        let load = dir.join("customers.toml");
        std::fs::write(
            &load,
            customers_table(
                dir.join("lake").to_str().unwrap(),
                format,
                dir.join("raw").to_str().unwrap(),
            ),
        )
        .unwrap();
        sluice(&["run", "--config", load.to_str().unwrap()]);
        // ...then the orders (a Hive table) join it.
        let config = joining_the_lakes_customers(dir);
        let text = std::fs::read_to_string(&config).unwrap();
        assert!(text.contains("table = \"customers\""), "{text}");
        assert!(!text.contains("since = \"date\""), "{text}");
        let out = sluice(&["run", "--config", config.to_str().unwrap()]);
        assert!(
            out.contains("lookup customers: 300 rows"),
            "{format}: {out}"
        );
        let first = dir.join("raw/orders/orders-00000.jsonl");
        assert_same_rows(
            dir,
            &lake_orders(&dir.join("lake")),
            &oracle(first.to_str().unwrap(), customers.to_str().unwrap()),
        );
    }
}

/// A folder with the example's first orders file under `raw/orders/` and
/// its customers file as `customers.csv`.
fn first_orders_and_the_customers() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    copy_orders(tmp.path(), &["orders-00000.jsonl"]);
    std::fs::copy(
        repo_root().join("examples/enrichment/ref/customers.csv"),
        tmp.path().join("customers.csv"),
    )
    .unwrap();
    tmp
}

#[test]
fn a_lookup_too_large_or_unreadable_stops_the_run_before_any_chunk() {
    let tmp = first_orders_and_the_customers();
    let dir = tmp.path();
    let small = pipeline_in(dir, |t| {
        t.replace("max_size = \"64MiB\"", "max_size = \"4KiB\"")
    });
    let e = sluice_err(dir, &["run", "--config", small.to_str().unwrap()]);
    assert!(
        e.contains("lookup 'customers'")
            && e.contains("max_size of 4.0 KiB")
            && e.contains("read so far"),
        "{e}"
    );
    assert_lake_empty(dir);

    // Each lookup fits its own max_size; together (19.1 KiB of customers,
    // 2.7 KiB of products) they do not fit the bound all lookups share.
    let shared = pipeline_in(dir, |t| t + "\n[limits]\nlookup_memory = \"20KiB\"\n");
    let e = sluice_err(dir, &["run", "--config", shared.to_str().unwrap()]);
    assert!(
        e.contains("lookup 'products'")
            && e.contains(
                "does not fit in the 20.0 KiB all lookups share ([limits] lookup_memory)"
            )
            && e.contains("19.1 KiB held by the other lookups"),
        "{e}"
    );
    assert_lake_empty(dir);

    let missing = pipeline_in(dir, |t| t.replace("customers.csv", "no-such-customers.csv"));
    let e = sluice_err(dir, &["run", "--config", missing.to_str().unwrap()]);
    assert!(
        e.contains("lookup 'customers'") && e.contains("no-such-customers.csv"),
        "{e}"
    );
    assert_lake_empty(dir);

    // A file that is not the CSV the schema says.
    std::fs::write(
        dir.join("customers.csv"),
        "id,name,segment,country,since\nseven,x,y,z,never\n",
    )
    .unwrap();
    let bad = pipeline_in(dir, |t| t);
    let e = sluice_err(dir, &["run", "--config", bad.to_str().unwrap()]);
    assert!(
        e.contains("lookup 'customers'") && e.contains("customers.csv"),
        "{e}"
    );
    assert_lake_empty(dir);
}

#[test]
fn explain_shows_the_lookup_as_the_build_side_and_bad_joins_are_config_errors() {
    let out = sluice_ok(&repo_root(), &["explain", "--config", EXAMPLE]);
    // The chunk streams (the probe side, last child of each hash join); each
    // lookup is collected into the hash table (the first child).
    let lines: Vec<&str> = out.lines().collect();
    let joins: Vec<usize> = (0..lines.len())
        .filter(|i| lines[*i].contains("HashJoinExec"))
        .collect();
    assert_eq!(joins.len(), 2, "{out}");
    for name in [
        "lookup 'customers'",
        "lookup 'products'",
        "the chunk (input)",
    ] {
        assert_eq!(out.matches(name).count(), 1, "{name}: {out}");
    }
    for &j in &joins {
        assert!(lines[j].contains("join_type=Right"), "{out}");
        let depth = lines[j].len() - lines[j].trim_start().len();
        let first_child = lines[j + 1];
        assert_eq!(
            first_child.len() - first_child.trim_start().len(),
            depth + 2,
            "{out}"
        );
        // The build side reads no chunk: its subtree has no StreamingTableExec.
        let build: Vec<&str> = lines[j + 1..]
            .iter()
            .take_while(|l| l.len() - l.trim_start().len() > depth)
            .copied()
            .collect();
        let second = build
            .iter()
            .skip(1)
            .position(|l| l.len() - l.trim_start().len() == depth + 2)
            .map(|p| p + 1)
            .unwrap_or_else(|| panic!("a join with two children: {out}"));
        assert!(
            !build[..second]
                .iter()
                .any(|l| l.contains("StreamingTableExec")),
            "the chunk is on the build side:\n{out}"
        );
        assert!(
            build[second..]
                .iter()
                .any(|l| l.contains("StreamingTableExec")),
            "{out}"
        );
    }

    let tmp = first_orders_and_the_customers();
    let dir = tmp.path();
    for (from, to, says) in [
        (
            "FROM input o\nLEFT JOIN customers c",
            "FROM input o\nRIGHT JOIN customers c",
            "keeps rows of the lookup that match nothing",
        ),
        (
            "FROM input o\nLEFT JOIN customers c",
            "FROM input o\nFULL JOIN customers c",
            "keeps rows of the lookup that match nothing",
        ),
        (
            "ON o.customer_id = c.id",
            "ON o.customer_id > c.id",
            "must be an equi-join",
        ),
        (
            "LEFT JOIN customers c",
            "LEFT JOIN suppliers c",
            "the sql reads the tables: input, customers, products",
        ),
        (
            "LEFT JOIN products p ON o.sku = p.sku",
            "LEFT JOIN (SELECT sku, order_id AS title, order_id AS category FROM input) p ON o.sku = p.sku",
            "joins `input` with itself",
        ),
    ] {
        let config = pipeline_in(dir, |t| {
            assert!(t.contains(from), "{from}");
            t.replace(from, to)
        });
        let e = sluice_err(dir, &["explain", "--config", config.to_str().unwrap()]);
        assert!(
            e.contains("table 'orders'") && e.contains(says),
            "{to}: {e}"
        );
        let e = sluice_err(dir, &["run", "--config", config.to_str().unwrap()]);
        assert!(
            e.contains("table 'orders'") && e.contains(says),
            "{to}: {e}"
        );
        assert_lake_empty(dir);
    }
}

/// A load whose lookup is a table of the lake (Hive, then Delta), crashed
/// at each of its store calls in turn (the lookup's catalog and log reads,
/// its file reads, the chunk writes, commits and catalog updates), then with
/// each call's answer lost in turn, then run again cleanly: the lake's
/// orders are the rows of a load that never failed, which are DuckDB's own
/// join of the raw files. A lookup read that failed part way must fail the
/// run, never join against the rows it did read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_at_any_call_of_a_load_joining_a_lake_table_then_a_rerun_equals_duckdbs_join() {
    use std::sync::Arc;

    use object_store::ObjectStore;
    use object_store::memory::InMemory;
    use sluice::catalog::LocalCatalog;
    use sluice::config::Pipeline;
    use sluice::fault::{Faults, FaultyStore};
    use sluice::lookup::Sources;
    use sluice::pipeline::Engine;
    use sluice::store::{AwsOptions, Location};
    use sluice_tests::memory::{copy_of, crashes_then_lost_answers, lake_on, load_with};

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    copy_orders(dir, &["orders-00000.jsonl"]);
    let customers = repo_root().join("examples/enrichment/ref/customers.csv");
    std::fs::create_dir_all(dir.join("ref/customers")).unwrap();
    std::fs::copy(&customers, dir.join("ref/customers/customers.csv")).unwrap();
    let orders_input = Location::open(dir.join("raw").to_str().unwrap(), false).unwrap();
    let customers_input = Location::open(dir.join("ref").to_str().unwrap(), false).unwrap();
    let orders_config = std::fs::read_to_string(joining_the_lakes_customers(dir)).unwrap();
    assert!(orders_config.contains("table = \"customers\""));
    let orders = Pipeline::from_toml(&orders_config).unwrap();
    // The orders' engine is read (its lookup with it) from the lake it loads
    // into, as a Lambda container or `sluice run` does.
    let load = |lake: Location| {
        let (orders, input) = (orders.clone(), orders_input.clone());
        async move {
            let catalog = LocalCatalog::new(&lake);
            let aws = AwsOptions::default();
            let sources = Sources {
                lake: &lake,
                catalog: &catalog,
                aws: &aws,
            };
            let engine = Arc::new(Engine::load(orders, sources, true).await?);
            load_with(&engine, &input, &lake, 1, 100 << 10, true).await
        }
    };
    // Every row of every Parquet file under `orders/`, sorted.
    let rows = |store: Arc<dyn ObjectStore>| async move {
        let mut rows = Vec::new();
        for m in sluice_tests::list_under(store.as_ref(), "orders").await {
            if m.location.as_ref().ends_with(".parquet") {
                let bytes = sluice_tests::object_bytes(store.as_ref(), &m.location).await;
                rows.extend(sluice_tests::parquet_json_rows(bytes));
            }
        }
        rows.sort();
        rows
    };

    for format in ["hive", "delta"] {
        // The lake with the customers table in it, and nothing else.
        let base: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let customers_table =
            Pipeline::from_toml(&customers_table("unused", format, "unused")).unwrap();
        let engine = Arc::new(Engine::new(customers_table).await.unwrap());
        load_with(
            &engine,
            &customers_input,
            &lake_on(base.clone()),
            1,
            1 << 20,
            true,
        )
        .await
        .unwrap();

        // A load that never failed: its calls, and its rows, which DuckDB
        // confirms are its own join of the raw files.
        let counted = Arc::new(FaultyStore::new(copy_of(&base).await, Faults::None));
        load(lake_on(counted.clone())).await.unwrap();
        let calls = counted.calls();
        let clean = rows(counted.clone()).await;
        let on_disk = dir.join(format!("lake-{format}"));
        for m in sluice_tests::list_under(counted.as_ref(), "orders").await {
            let bytes = sluice_tests::object_bytes(counted.as_ref(), &m.location).await;
            let path = on_disk.join(m.location.as_ref());
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
        }
        let raw = dir.join("raw/orders/orders-00000.jsonl");
        let equal = assert_same_rows(
            dir,
            &lake_orders(&on_disk),
            &oracle(raw.to_str().unwrap(), customers.to_str().unwrap()),
        );
        assert_eq!(equal, clean.len() as u64);
        assert!(calls > 20, "{format}: {calls} store calls");
        println!("{format} lookup: {calls} store calls, each crashed at, each answer lost");

        for (n, fault, kind) in crashes_then_lost_answers(calls) {
            let store = copy_of(&base).await;
            let faulty = Arc::new(FaultyStore::new(store.clone(), fault).with_kind(kind));
            let first = load(lake_on(faulty)).await;
            if let Faults::CrashAt(_) = fault {
                assert!(
                    first.is_err(),
                    "{format}: call {n}: the crash went unnoticed"
                );
            }
            // Every fault here is transient: a Lambda must retry it, never
            // drop the chunk as a configuration error.
            if let Err(e) = &first {
                assert!(
                    e.is_retryable(),
                    "{format} {fault:?} {kind:?} at call {n}: not retryable: {e}"
                );
            }
            load(lake_on(store.clone()))
                .await
                .unwrap_or_else(|e| panic!("{format} {fault:?} {kind:?}: the rerun failed: {e}"));
            let got = rows(store).await;
            if got != clean {
                let extra: Vec<_> = got.iter().filter(|r| !clean.contains(r)).take(2).collect();
                let missing: Vec<_> = clean.iter().filter(|r| !got.contains(r)).take(2).collect();
                panic!(
                    "{format} {fault:?} {kind:?} at call {n} of {calls} ({first:?}): {} rows, {} wanted; extra {extra:?}; missing {missing:?}",
                    got.len(),
                    clean.len()
                );
            }
        }
    }
}
