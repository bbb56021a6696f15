//! Property: for random files and random cut points, the chunks together
//! yield exactly the records of the whole file, each once, through the real
//! readers (JSON Lines and CSV; CRLF; a last line without a newline; empty
//! lines; multi-byte UTF-8 split across a cut).

use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use proptest::prelude::*;
use sluice::config::Pipeline;
use sluice::plan::{Chunk, plan_text};
use sluice::read::{ReadOptions, SourceObject};

fn table(format: &str) -> sluice::config::Table {
    Pipeline::from_toml(&format!(
        "[[tables]]\nname = \"t\"\nsource = \"t/\"\nformat = \"{format}\"\n[tables.schema]\nid = \"int64\"\ntext = \"string\"\n"
    ))
    .unwrap()
    .tables
    .remove(0)
}

/// Read one chunk; (id, text) per record.
async fn read(
    table: &sluice::config::Table,
    obj: &SourceObject,
    chunk: Chunk,
) -> Vec<(i64, Option<String>)> {
    let options = ReadOptions {
        batch_rows: 3,
        ..Default::default()
    };
    let (r, batches) = sluice::read::read_chunk_whole(table, obj, chunk, options).await;
    let mut out = Vec::new();
    for b in batches {
        let b: RecordBatch = b.unwrap();
        let ids = b.column(0).as_primitive::<Int64Type>();
        let texts = b.column(1).as_string::<i32>();
        for i in 0..b.num_rows() {
            out.push((
                ids.value(i),
                (!texts.is_null(i)).then(|| texts.value(i).to_string()),
            ));
        }
    }
    r.unwrap();
    out
}

fn text_strategy() -> impl Strategy<Value = String> {
    // Multi-byte characters (2, 3 and 4 bytes), commas, quotes, spaces.
    proptest::collection::vec(
        prop_oneof![
            Just("a"),
            Just("é"),
            Just("€"),
            Just("𝄞"),
            Just(","),
            Just("\""),
            Just(" "),
            Just("z9"),
        ],
        1..12,
    )
    .prop_map(|v| v.concat())
}

#[derive(Debug, Clone)]
struct FileCase {
    texts: Vec<String>,
    crlf: bool,
    last_newline: bool,
    blank_after: Vec<bool>,
}

fn file_strategy() -> impl Strategy<Value = FileCase> {
    (
        proptest::collection::vec(text_strategy(), 1..40),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_flat_map(|(texts, crlf, last_newline)| {
            let n = texts.len();
            (
                Just(texts),
                Just(crlf),
                Just(last_newline),
                proptest::collection::vec(prop::bool::weighted(0.15), n),
            )
        })
        .prop_map(|(texts, crlf, last_newline, blank_after)| FileCase {
            texts,
            crlf,
            last_newline,
            blank_after,
        })
}

fn render(case: &FileCase, csv: bool) -> Vec<u8> {
    let nl = if case.crlf { "\r\n" } else { "\n" };
    let mut s = String::new();
    if csv {
        s.push_str("id,text");
        s.push_str(nl);
    }
    for (i, t) in case.texts.iter().enumerate() {
        if csv {
            s.push_str(&format!("{i},\"{}\"", t.replace('"', "\"\"")));
        } else {
            s.push_str(&serde_json::json!({"id": i, "text": t}).to_string());
        }
        let last = i + 1 == case.texts.len();
        if !last || case.last_newline {
            s.push_str(nl);
        }
        if case.blank_after[i] && !last {
            s.push_str(nl);
        }
    }
    s.into_bytes()
}

fn cuts_to_chunks(size: u64, mut cuts: Vec<u64>) -> Vec<Chunk> {
    cuts.retain(|&c| c > 0 && c < size);
    cuts.sort();
    cuts.dedup();
    let mut bounds = vec![0];
    bounds.extend(cuts);
    bounds.push(size);
    bounds
        .windows(2)
        .enumerate()
        .map(|(i, w)| Chunk {
            index: i as u32,
            start: w[0],
            end: w[1],
        })
        .collect()
}

fn check(case: FileCase, cuts: Vec<u64>, format: &str) -> Result<(), TestCaseError> {
    let csv = format == "csv";
    let bytes = render(&case, csv);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let path = Path::from("t/file");
        store
            .put(&path, PutPayload::from(bytes.clone()))
            .await
            .unwrap();
        let obj = SourceObject::new(store, path, "memory:///t/file".into(), bytes.len() as u64);
        let table = table(format);
        let size = bytes.len() as u64;
        let cuts: Vec<u64> = cuts.into_iter().map(|c| c % (size + 1)).collect();
        let mut got = Vec::new();
        for chunk in cuts_to_chunks(size, cuts) {
            got.extend(read(&table, &obj, chunk).await);
        }
        let want: Vec<(i64, Option<String>)> = case
            .texts
            .iter()
            .enumerate()
            .map(|(i, t)| (i as i64, Some(t.clone())))
            .collect();
        prop_assert_eq!(&got, &want);
        // The planner's even cuts obey the same rule.
        let mut planned = Vec::new();
        for chunk in plan_text(size, 7, true) {
            planned.extend(read(&table, &obj, chunk).await);
        }
        prop_assert_eq!(planned, want);
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn jsonl_chunks_yield_every_record_once(case in file_strategy(), cuts in proptest::collection::vec(any::<u64>(), 0..12)) {
        check(case, cuts, "jsonl")?;
    }

    #[test]
    fn csv_chunks_yield_every_record_once(case in file_strategy(), cuts in proptest::collection::vec(any::<u64>(), 0..12)) {
        check(case, cuts, "csv")?;
    }
}
