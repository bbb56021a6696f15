//! The deployment's contract with the code: every function of template.yaml
//! and every Lambda task of the backfill state machine names a binary that
//! exists in functions/, and what each task passes deserializes into that
//! handler's input type. The state machine is walked from `StartAt` with
//! the functions' real answer types, so a field renamed on either side fails
//! here, before any deployment.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};
use sluice::commit::SourceInfo;
use sluice::event::{Target, decode};
use sluice::messages::TaskSpec;
use sluice::messages::{Manifest, ManifestPayload};
use sluice::plan::Chunk;
use sluice_functions::catalog::CatalogResponse;
use sluice_functions::compactor::{CompactorResponse, ManifestRequest};
use sluice_functions::planner::{self, PlanResponse};
use sluice_functions::transform::TaskResult;
use sluice_tests::{python_json, repo_root};

/// template.yaml as JSON, CloudFormation tags (`!Ref`, `!GetAtt`, `!Sub`, ...)
/// turned into their long forms (`{"Ref": ...}`, `{"Fn::GetAtt": ...}`) by
/// tests/template_yaml.py.
fn template() -> Value {
    python_json(
        &repo_root(),
        r#"
import json, sys
sys.path.insert(0, "tests")
from template_yaml import load
print(json.dumps(load("template.yaml")))
"#,
    )
}

/// Binary name → the folder of functions/ whose Cargo.toml declares it.
fn binaries() -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(repo_root().join("functions")).unwrap() {
        let dir = entry.unwrap().path();
        let Ok(text) = std::fs::read_to_string(dir.join("Cargo.toml")) else {
            continue;
        };
        let manifest: toml::Value = toml::from_str(&text).unwrap();
        for bin in manifest
            .get("bin")
            .and_then(|b| b.as_array())
            .into_iter()
            .flatten()
        {
            let name = bin["name"].as_str().unwrap().to_string();
            let folder = format!("functions/{}", dir.file_name().unwrap().to_string_lossy());
            out.insert(name, folder);
        }
    }
    out
}

fn resources_of<'a>(t: &'a Value, kind: &str) -> Vec<(&'a String, &'a Value)> {
    t["Resources"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"] == kind)
        .collect()
}

/// The resource a `Fn::GetAtt [X, Arn]` substitution points at.
fn get_att_resource(v: &Value) -> Option<&str> {
    v.get("Fn::GetAtt")?.get(0)?.as_str()
}

#[test]
fn every_function_in_the_template_is_a_binary_of_functions() {
    let t = template();
    let bins = binaries();
    assert_eq!(
        bins.keys().cloned().collect::<Vec<_>>(),
        ["catalog", "compactor", "planner", "stream", "transform"],
        "functions/ changed: update template.yaml and this test"
    );
    let globals = &t["Globals"]["Function"];
    assert_eq!(globals["Runtime"], "provided.al2023");
    assert_eq!(globals["Handler"], "bootstrap");
    let mut deployed = BTreeSet::new();
    for (name, r) in resources_of(&t, "AWS::Serverless::Function") {
        assert_eq!(
            r["Metadata"]["BuildMethod"], "rust-cargolambda",
            "{name}: sam build must build it with cargo-lambda"
        );
        let binary = r["Metadata"]["BuildProperties"]["Binary"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: Metadata.BuildProperties.Binary is missing"));
        let folder = bins
            .get(binary)
            .unwrap_or_else(|| panic!("{name}: binary {binary:?} is not in functions/"));
        assert_eq!(
            r["Properties"]["CodeUri"].as_str(),
            Some(folder.as_str()),
            "{name}: CodeUri must be the package that declares {binary}"
        );
        deployed.insert(binary.to_string());
    }
    assert_eq!(
        deployed,
        bins.keys().cloned().collect::<BTreeSet<_>>(),
        "every binary in functions/ is deployed"
    );
}

#[test]
fn the_stream_mappings_keep_a_shard_in_order_and_report_what_they_give_up() {
    let t = template();
    let r = &t["Resources"];
    // No stream given, no stream function.
    assert_eq!(r["StreamFunction"]["Condition"], "HasStream");
    let kinesis = &r["StreamKinesisRecords"];
    assert_eq!(kinesis["Condition"], "HasKinesis");
    let p = &kinesis["Properties"];
    assert_eq!(p["FunctionName"], json!({"Ref": "StreamFunction"}));
    // The shard checkpoints need one batch of a shard at a time.
    assert_eq!(p["ParallelizationFactor"], 1);
    assert_eq!(p["BisectBatchOnFunctionError"], true);
    assert_eq!(
        p["FunctionResponseTypes"],
        json!(["ReportBatchItemFailures"])
    );
    assert_eq!(
        p["MaximumBatchingWindowInSeconds"],
        json!({"Ref": "StreamBatchingWindow"})
    );
    for mapping in ["StreamKinesisRecords", "StreamKafkaRecords"] {
        let dest = &r[mapping]["Properties"]["DestinationConfig"]["OnFailure"]["Destination"];
        assert_eq!(
            get_att_resource(dest),
            Some("StreamFailureQueue"),
            "{mapping}"
        );
    }
    assert_eq!(r["StreamKafkaRecords"]["Condition"], "HasKafka");
    assert_eq!(
        r["StreamKafkaRecords"]["Properties"]["Topics"],
        json!([{"Ref": "KafkaTopic"}])
    );
    assert_eq!(
        r["StreamIteratorAgeAlarm"]["Properties"]["MetricName"],
        "IteratorAge"
    );
    let defaults = &t["Parameters"];
    assert_eq!(defaults["KinesisStreamArn"]["Default"], "");
    assert_eq!(defaults["KafkaClusterArn"]["Default"], "");
    assert_eq!(defaults["StreamBatchingWindow"]["Default"], 60);
}

/// A JSONPath of the simple kind the definition uses (`$`, `$.a.b`).
fn path<'a>(doc: &'a Value, p: &str) -> &'a Value {
    path_opt(doc, p).unwrap_or_else(|| panic!("{p}: not in {doc}"))
}

fn path_opt<'a>(doc: &'a Value, p: &str) -> Option<&'a Value> {
    assert!(p.starts_with('$'), "{p} is not a path");
    let mut v = doc;
    for part in p
        .trim_start_matches('$')
        .split('.')
        .filter(|s| !s.is_empty())
    {
        v = v.get(part)?;
    }
    Some(v)
}

/// A Parameters / ResultSelector template evaluated against `doc`. Of the
/// intrinsic functions, `States.MathAdd(path, n)` is evaluated; the others
/// (`States.…`) become null.
fn eval(template: &Value, doc: &Value) -> Value {
    match template {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                match k.strip_suffix(".$") {
                    Some(key) => {
                        let expr = v.as_str().unwrap();
                        let value = if let Some(args) = expr
                            .strip_prefix("States.MathAdd(")
                            .and_then(|a| a.strip_suffix(')'))
                        {
                            let (p, n) = args.split_once(',').unwrap();
                            let base = path(doc, p.trim()).as_i64().expect("a number");
                            let n = n.trim();
                            let add = match n.parse::<i64>() {
                                Ok(k) => k,
                                Err(_) => path(doc, n).as_i64().expect("a number"),
                            };
                            json!(base + add)
                        } else if expr.starts_with("States.") {
                            Value::Null
                        } else {
                            path(doc, expr).clone()
                        };
                        out.insert(key.to_string(), value);
                    }
                    None => {
                        out.insert(k.clone(), eval(v, doc));
                    }
                }
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

/// Put `value` at a ResultPath (`$.a`) of `doc`.
fn set(doc: &mut Value, result_path: &str, value: Value) {
    let key = result_path
        .strip_prefix("$.")
        .unwrap_or_else(|| panic!("ResultPath {result_path} is not $.field"));
    let parts: Vec<&str> = key.split('.').collect();
    let mut at = doc;
    for part in &parts[..parts.len() - 1] {
        at = at
            .get_mut(*part)
            .unwrap_or_else(|| panic!("ResultPath {result_path}: no {part}"));
    }
    at[parts[parts.len() - 1]] = value;
}

#[test]
fn the_backfill_state_machine_passes_each_function_its_own_input_type() {
    let t = template();
    let bins = binaries();
    let machines = resources_of(&t, "AWS::Serverless::StateMachine");
    assert_eq!(machines.len(), 1);
    let machine = machines[0].1;
    let uri = machine["Properties"]["DefinitionUri"].as_str().unwrap();
    let text = std::fs::read_to_string(repo_root().join(uri)).unwrap();
    let subs = machine["Properties"]["DefinitionSubstitutions"]
        .as_object()
        .unwrap();
    // Every placeholder has a substitution and every substitution is used.
    let used: BTreeSet<String> = text
        .split("${")
        .skip(1)
        .map(|s| s.split('}').next().unwrap().to_string())
        .collect();
    assert_eq!(
        used,
        subs.keys().cloned().collect::<BTreeSet<_>>(),
        "the placeholders of {uri} and the template's DefinitionSubstitutions"
    );
    let definition: Value = serde_json::from_str(&text).unwrap();

    // Which binary each Lambda task runs.
    let function_binary = |resource: &str| -> String {
        let r = &t["Resources"][resource];
        r["Metadata"]["BuildProperties"]["Binary"]
            .as_str()
            .unwrap_or_else(|| panic!("{resource} is not a function of the template"))
            .to_string()
    };
    let binary_of = |task: &Value| -> String {
        // ${Partition}: the template's AWS::Partition, so that the workflow
        // deploys in every partition (aws, aws-cn, aws-us-gov).
        assert_eq!(task["Resource"], "arn:${Partition}:states:::lambda:invoke");
        let name = task["Parameters"]["FunctionName"].as_str().unwrap();
        let key = name
            .strip_prefix("${")
            .and_then(|n| n.strip_suffix('}'))
            .unwrap_or_else(|| panic!("FunctionName {name} is not a substitution"));
        let resource = get_att_resource(&subs[key])
            .unwrap_or_else(|| panic!("{key} is not a Fn::GetAtt of a function"));
        let binary = function_binary(resource);
        assert!(bins.contains_key(&binary), "{binary} is not in functions/");
        binary
    };

    // Walk the workflow from StartAt with the handlers' real answer types.
    let manifest = Manifest {
        url: "s3://lake-bucket/_sluice/manifests/abc.json".into(),
        bucket: Some("lake-bucket".into()),
        key: "_sluice/manifests/abc.json".into(),
        tasks: 2,
    };
    let item = TaskSpec {
        table: "clickstream".into(),
        source: SourceInfo {
            modified: None,
            sequencer: None,
            url: "s3://raw-bucket/raw/clickstream/a.jsonl".into(),
            size: 10,
            e_tag: Some("\"e\"".into()),
            version: None,
        },
        chunk: Chunk {
            index: 0,
            start: 0,
            end: 10,
        },
        chunks: 2,
    };
    // Two pages: the first planner call says where the second starts.
    let planner_calls = std::cell::Cell::new(0);
    let compactor_calls = std::cell::Cell::new(0);
    let answers = |binary: &str| -> Value {
        match binary {
            "planner" => {
                planner_calls.set(planner_calls.get() + 1);
                serde_json::to_value(PlanResponse {
                    objects: 1,
                    tasks: 2,
                    manifest: Some(manifest.clone()),
                    next: (planner_calls.get() == 1).then(|| "raw/clickstream/k".to_string()),
                    ..PlanResponse::default()
                })
                .unwrap()
            }
            "transform" => serde_json::to_value(TaskResult {
                table: "clickstream".into(),
                source: item.source.url.clone(),
                chunk: 0,
                commit: "s3://lake-bucket/_sluice/commits/clickstream/x.json".into(),
                rows_in: 1,
                rows_out: 1,
                rows_rejected: 0,
                values_discarded: 0,
                files: 1,
                bytes_out: 1,
                partitions: 1,
            })
            .unwrap(),
            "catalog" => serde_json::to_value(CatalogResponse {
                commits: 2,
                tables: vec!["clickstream".into()],
                partitions_added: 3,
                ..CatalogResponse::default()
            })
            .unwrap(),
            "compactor" => {
                // "Go on from 5" once, as when the deadline nears.
                compactor_calls.set(compactor_calls.get() + 1);
                serde_json::to_value(CompactorResponse {
                    total: 8,
                    next: (compactor_calls.get() == 1).then_some(5),
                    ..CompactorResponse::default()
                })
                .unwrap()
            }
            other => panic!("no answer for {other}"),
        }
    };
    let check_input = |binary: &str, payload: &Value| match binary {
        "planner" => {
            let mut event = payload.clone();
            let paging = planner::Paging::take(&mut event)
                .unwrap_or_else(|e| panic!("planner input {payload}: {e}"));
            let want = if planner_calls.get() == 0 {
                ""
            } else {
                "raw/clickstream/k"
            };
            assert_eq!(
                paging.after.as_deref(),
                Some(want),
                "each page starts after the last key of the page before it"
            );
            let targets = decode(&event).unwrap_or_else(|e| panic!("planner input {payload}: {e}"));
            assert!(
                matches!(&targets[..], [Target::Prefix { bucket, prefix }]
                    if bucket == "raw-bucket" && prefix == "raw/clickstream/"),
                "the planner gets the execution's prefix: {targets:?}"
            );
        }
        "transform" => {
            let spec: TaskSpec = serde_json::from_value(payload.clone())
                .unwrap_or_else(|e| panic!("transform input {payload}: {e}"));
            assert_eq!(spec, item, "a Map item reaches the transform unchanged");
        }
        "catalog" => {
            let p: ManifestPayload = serde_json::from_value(payload.clone())
                .unwrap_or_else(|e| panic!("catalog input {payload}: {e}"));
            assert_eq!(
                p.manifest, manifest,
                "the catalog gets the planner's manifest"
            );
        }
        "compactor" => {
            let r: ManifestRequest = serde_json::from_value(payload.clone())
                .unwrap_or_else(|e| panic!("compactor input {payload}: {e}"));
            assert_eq!(
                r.payload.manifest, manifest,
                "the compactor gets the manifest"
            );
            // Page 1: from 0, then from 5 where it stopped; page 2: from 0.
            let want = if compactor_calls.get() == 1 { 5 } else { 0 };
            assert_eq!(
                r.start, want,
                "each Compact call starts where the last stopped, each page from 0"
            );
            assert_eq!(r.min_age.as_deref(), Some("0s"));
        }
        other => panic!("no input type for {other}"),
    };

    let mut doc = json!({"bucket": "raw-bucket", "prefix": "raw/clickstream/"});
    let states = definition["States"].as_object().unwrap();
    let mut at = definition["StartAt"].as_str().unwrap().to_string();
    let mut invoked = Vec::new();
    for _ in 0..50 {
        let s = &states[&at];
        let next = match s["Type"].as_str().unwrap() {
            "Pass" => {
                let v = match (s["InputPath"].as_str(), s.get("Result")) {
                    (Some(p), _) => path(&doc, p).clone(),
                    (None, Some(result)) => result.clone(),
                    (None, None) => eval(&s["Parameters"], &doc),
                };
                set(&mut doc, s["ResultPath"].as_str().unwrap(), v);
                s["Next"].as_str()
            }
            "Task" => {
                let binary = binary_of(s);
                let payload = eval(&s["Parameters"], &doc)["Payload"].clone();
                check_input(&binary, &payload);
                let result = json!({ "Payload": answers(&binary) });
                let selected = if s.get("ResultSelector").is_some() {
                    eval(&s["ResultSelector"], &result)
                } else {
                    result
                };
                set(&mut doc, s["ResultPath"].as_str().unwrap(), selected);
                invoked.push(binary);
                s["Next"].as_str()
            }
            "Choice" => {
                let mut next = s["Default"].as_str();
                for c in s["Choices"].as_array().unwrap() {
                    let variable = c["Variable"].as_str().unwrap();
                    let taken = match (c["IsPresent"].as_bool(), c["IsString"].as_bool()) {
                        (Some(present), _) => {
                            path_opt(&doc, variable).is_some_and(|v| !v.is_null()) == present
                        }
                        (None, Some(string)) => {
                            path_opt(&doc, variable).is_some_and(Value::is_string) == string
                        }
                        (None, None) => {
                            let bound = c["NumericGreaterThan"].as_f64().expect(
                                "only NumericGreaterThan, IsPresent and IsString are modelled here",
                            );
                            path(&doc, variable).as_f64().expect("a number") > bound
                        }
                    };
                    if taken {
                        next = c["Next"].as_str();
                        break;
                    }
                }
                next
            }
            "Map" => {
                let reader = eval(&s["ItemReader"]["Parameters"], &doc);
                assert_eq!(reader["Bucket"], json!(manifest.bucket));
                assert_eq!(reader["Key"], json!(manifest.key));
                assert_eq!(s["ItemReader"]["ReaderConfig"]["InputType"], "JSON");
                for p in ["MaxConcurrencyPath", "ToleratedFailurePercentagePath"] {
                    if let Some(p) = s[p].as_str() {
                        path(&doc, p);
                    }
                }
                let processor = &s["ItemProcessor"];
                let start = processor["StartAt"].as_str().unwrap();
                let chunk = &processor["States"][start];
                let binary = binary_of(chunk);
                let item_value = serde_json::to_value(&item).unwrap();
                check_input(&binary, &eval(&chunk["Parameters"], &item_value)["Payload"]);
                let out = json!({ "Payload": answers(&binary) });
                path(&out, chunk["OutputPath"].as_str().unwrap());
                invoked.push(binary);
                set(
                    &mut doc,
                    s["ResultPath"].as_str().unwrap(),
                    json!({"MapRunArn": "arn", "ResultWriterDetails": {}}),
                );
                s["Next"].as_str()
            }
            "Succeed" | "Fail" => None,
            other => panic!("state type {other} is not modelled here"),
        };
        match next {
            Some(n) => at = n.to_string(),
            None => break,
        }
    }
    assert_eq!(at, "Done", "the happy path ends in Done");
    assert_eq!(
        invoked,
        [
            "planner",
            "transform",
            "catalog",
            "compactor",
            "compactor",
            "planner",
            "transform",
            "catalog",
            "compactor"
        ]
    );
    assert_eq!(
        doc["totals"],
        json!({"pages": 2, "objects": 2, "tasks": 4, "skipped_total": 0, "commits": 4,
               "partitions_added": 6, "missing_total": 0}),
        "the pages summed"
    );
}
