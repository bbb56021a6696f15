//! Entry points for the fuzz targets (`fuzz/`, run with `cargo fuzz`) and
//! their regression tests (`tests/tests/fuzz_regressions.rs`, over the
//! inputs kept in `fuzz/regressions/<target>/`). Each takes arbitrary bytes,
//! must never panic, and checks a property of the code it drives.

use std::sync::Arc;

use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::config::Pipeline;
use crate::plan::{Chunk, plan_text};
use crate::read::{ReadOptions, SourceObject};

const TYPES: &str = r#"
[tables.schema]
id = "int64"
n = "int32"
x = "float64"
flag = "bool"
day = "date"
at = "timestamp"
amount = "decimal(12,3)"
name = "string"
props = "json"
"#;

/// The readers (JSON Lines or CSV; none, gzip or zstd), on `data` after a
/// first byte that picks the format, codec, contract and a cut. Property:
/// an uncompressed file read whole and read as two chunks gives the same
/// rows and the same rejected records (JSON Lines and CSV alike), or fails
/// both ways; an uncompressed JSON Lines file always reads.
pub fn read(data: &[u8]) {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let csv = mode & 1 == 1;
    let codec = ["none", "gzip", "zstd"][((mode >> 1) % 3) as usize];
    let unknown = ["discard_value", "freeze", "evolve"][((mode >> 3) % 3) as usize];
    let wrong = ["freeze", "discard_value"][((mode >> 5) & 1) as usize];
    let config = format!(
        "[[tables]]\nname = \"t\"\nsource = \"t/\"\nformat = \"{}\"\ncompression = \"{codec}\"\nmax_record_size = \"1KiB\"\nmax_rejected_ratio = 1.0\ncontract = {{ unknown_fields = \"{unknown}\", wrong_type = \"{wrong}\" }}\n{}",
        if csv { "csv" } else { "jsonl" },
        if csv {
            "csv = { newlines_in_values = false }\n"
        } else {
            ""
        },
    ) + TYPES;
    let table = Pipeline::from_toml(&config)
        .expect("the fuzz table is valid")
        .tables
        .remove(0);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let path = Path::from("t/input");
        store
            .put(&path, PutPayload::from(body.to_vec()))
            .await
            .expect("in memory");
        let obj = SourceObject::new(store, path, "memory:///t/input".into(), body.len() as u64);
        let whole = read_all(&table, &obj, &plan_text(obj.size, u64::MAX, false)).await;
        if codec == "none" && body.len() > 2 {
            let cut = (mode as u64 * 7919) % body.len() as u64;
            let chunks = [
                Chunk {
                    index: 0,
                    start: 0,
                    end: cut,
                },
                Chunk {
                    index: 1,
                    start: cut,
                    end: body.len() as u64,
                },
            ];
            let split = read_all(&table, &obj, &chunks).await;
            // An uncompressed JSON Lines file never fails to read: what does
            // not parse is quarantined. A CSV file can (a header that is not
            // one), and then fails however it is cut.
            if !csv {
                assert!(whole.is_ok(), "{whole:?}");
            }
            // CSV chunks after the first take the header from the file's
            // first line, and a cut inside a quoted value is not a record
            // boundary (such files are read whole, as `newlines_in_values`
            // says): the property holds for a file with a plain, non-empty,
            // UTF-8 first line and no quotes.
            let header = body.split(|&b| b == b'\n').next().unwrap_or_default();
            let splittable = body.contains(&b'\n')
                && !header.is_empty()
                && header != b"\r"
                && !body.contains(&b'"')
                && std::str::from_utf8(header).is_ok();
            if !csv || splittable {
                match (&whole, &split) {
                    (Ok(w), Ok(s)) => assert_eq!(w, s, "cut at {cut}"),
                    (Err(_), Err(_)) => {}
                    _ => panic!("cut at {cut}: whole {whole:?}, split {split:?}"),
                }
            }
        }
    });
}

/// What reading some chunks gave: rows (as debug text) and rejected records
/// (offset, reason), or fields found to evolve; or the error.
type ReadAll = Result<(Vec<String>, Vec<(Option<u64>, String)>, Vec<String>), String>;

/// Read `chunks` one after the other; see [`ReadAll`].
async fn read_all(table: &crate::config::Table, obj: &SourceObject, chunks: &[Chunk]) -> ReadAll {
    let mut rows = Vec::new();
    let mut rejected = Vec::new();
    let mut discovered = Vec::new();
    for &chunk in chunks {
        let options = ReadOptions {
            batch_rows: 7,
            ..Default::default()
        };
        let (r, batches) = crate::read::read_chunk_whole(table, obj, chunk, options).await;
        let mut out = Vec::new();
        for b in batches {
            let b = b.expect("batches");
            for i in 0..b.num_rows() {
                out.push(format!("{:?}", b.slice(i, 1).columns()));
            }
        }
        let stats = r.map_err(|e| e.to_string())?;
        if !stats.discovered.is_empty() {
            // Under evolve, a chunk that found fields hands on no rows, and
            // says which fields: the same ones however the file is cut.
            let mut found: Vec<String> = stats.discovered.iter().map(|c| c.name.clone()).collect();
            found.sort();
            discovered.extend(found);
            discovered.sort();
            discovered.dedup();
            continue;
        }
        rows.extend(out);
        rejected.extend(stats.rejected.into_iter().map(|e| (e.offset, e.reason)));
    }
    if !discovered.is_empty() {
        return Ok((Vec::new(), Vec::new(), discovered));
    }
    Ok((rows, rejected, discovered))
}

/// Event decoding (S3 notifications, EventBridge, SQS batches, tasks) on
/// arbitrary JSON: never a panic; and a key decoded from its form encoding
/// (`+` is a space, `%XX` a byte), encoded again, decodes to itself.
pub fn events(data: &[u8]) {
    let Ok(event) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    if let Some(messages) = crate::event::sqs_messages(&event) {
        for m in messages {
            if let Ok(body) = m.json() {
                let _ = crate::event::decode(&body);
            }
        }
    }
    let _ = crate::event::decode(&event);
    if let Some(s) = event.as_str()
        && let Ok(key) = crate::event::decode_key(s)
    {
        let encoded =
            percent_encoding::utf8_percent_encode(&key, percent_encoding::NON_ALPHANUMERIC)
                .to_string();
        assert_eq!(
            crate::event::decode_key(&encoded).ok().as_deref(),
            Some(key.as_str()),
            "{s:?} -> {key:?} -> {encoded:?}"
        );
    }
}

/// Partition paths: any value escapes to one path segment (`k=<value>`),
/// and comes back unchanged.
pub fn partition_values(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for value in [Some(text), None] {
        let escaped = crate::partition::escape_value(value);
        assert!(!escaped.contains('/'), "{escaped:?}");
        let back = crate::partition::unescape_value(&escaped);
        // The empty string is stored as the default partition, as Hive does.
        let want = value.filter(|v| !v.is_empty()).map(str::to_string);
        assert_eq!(back, want, "{escaped:?}");
        let path =
            crate::partition::partition_path(&["k".to_string()], std::slice::from_ref(&back));
        assert!(!path.contains('/') && path.starts_with("k="), "{path:?}");
        assert_eq!(
            crate::partition::parse_partition_path(&path),
            vec![("k".to_string(), want)]
        );
    }
}

/// The pipeline file: any text is a pipeline or an error, never a panic.
pub fn pipeline_config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Pipeline::from_toml(text);
    }
}
