//! Decoding the events that start work into one shape: the objects (or
//! prefixes) they are about.
//!
//! Handled shapes:
//! - S3 event notifications (`{"Records": [{"eventSource": "aws:s3", ...}]}`), whose keys
//!   are URL-encoded with `+` for a space;
//! - EventBridge "Object Created" events from S3 (`{"detail-type": "Object Created", ...}`),
//!   whose keys are not encoded;
//! - SQS messages (`{"Records": [{"eventSource": "aws:sqs", "body": "..."}]}`) whose body is
//!   either of the above (decoded per message, so one bad message fails only itself);
//! - `s3:TestEvent`, which S3 sends when a notification is configured: ignored;
//! - a direct payload, for Step Functions and people: `{"bucket": "b", "key": "k"}`,
//!   `{"bucket": "b", "prefix": "p/"}` or `{"url": "s3://b/k"}`; keys are taken as written.

use aws_lambda_events::eventbridge::EventBridgeEvent;
use aws_lambda_events::s3::{S3Event, S3EventRecord};
use aws_lambda_events::sqs::SqsEvent;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};

/// An object an event is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRef {
    pub bucket: String,
    /// The key as stored in S3 (decoded).
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e_tag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The notification's `sequencer`: of two events for one key, the one
    /// with the greater sequencer (hex, compared at equal length) is the
    /// later write, however close the writes were.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequencer: Option<String>,
}

impl ObjectRef {
    /// `s3://bucket/key`.
    pub fn url(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }
}

/// What one event (or one SQS message) asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// One object.
    Object(ObjectRef),
    /// Every object under a prefix of a bucket.
    Prefix { bucket: String, prefix: String },
    /// An event that carries no work (`s3:TestEvent`, a delete): the reason.
    Ignored(String),
}

/// One SQS message of a batch: its id (for `batchItemFailures`) and body.
#[derive(Debug, Clone)]
pub struct SqsItem {
    pub message_id: String,
    pub body: String,
}

impl SqsItem {
    /// The body as JSON (an S3 or EventBridge event, or a task).
    pub fn json(&self) -> Result<Value> {
        serde_json::from_str(&self.body).map_err(|e| {
            Error::Event(format!(
                "SQS message {}: the body is not JSON: {e}",
                self.message_id
            ))
        })
    }
}

/// If `event` is an SQS batch, its messages.
pub fn sqs_messages(event: &Value) -> Option<Vec<SqsItem>> {
    let first = event.get("Records")?.as_array()?.first()?;
    if first.get("eventSource").and_then(Value::as_str) != Some("aws:sqs") {
        return None;
    }
    let batch: SqsEvent = serde_json::from_value(event.clone()).ok()?;
    Some(
        batch
            .records
            .into_iter()
            .map(|m| SqsItem {
                message_id: m.message_id.unwrap_or_default(),
                body: m.body.unwrap_or_default(),
            })
            .collect(),
    )
}

/// Decode an event that is not an SQS batch (or the body of one SQS message)
/// into the targets it names.
pub fn decode(event: &Value) -> Result<Vec<Target>> {
    let bad =
        |what: &str, e: &dyn std::fmt::Display| Error::Event(format!("not a valid {what}: {e}"));
    if event.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
        let bucket = event.get("Bucket").and_then(Value::as_str).unwrap_or("?");
        return Ok(vec![Target::Ignored(format!(
            "s3:TestEvent for bucket {bucket}"
        ))]);
    }
    if let Some(records) = event.get("Records").and_then(Value::as_array) {
        if records
            .first()
            .and_then(|r| r.get("eventSource"))
            .and_then(Value::as_str)
            == Some("aws:sqs")
        {
            return Err(Error::Event(
                "an SQS batch must be taken apart message by message".into(),
            ));
        }
        let parsed: S3Event =
            serde_json::from_value(event.clone()).map_err(|e| bad("S3 event notification", &e))?;
        return parsed.records.iter().map(s3_record).collect();
    }
    if let Some(detail_type) = event.get("detail-type").and_then(Value::as_str) {
        if detail_type != "Object Created" {
            return Ok(vec![Target::Ignored(format!(
                "EventBridge event of type {detail_type:?}"
            ))]);
        }
        let parsed: EventBridgeEvent<ObjectCreatedDetail> =
            serde_json::from_value(event.clone())
                .map_err(|e| bad("EventBridge Object Created event", &e))?;
        let d = parsed.detail;
        return Ok(vec![Target::Object(ObjectRef {
            bucket: d.bucket.name,
            key: d.object.key,
            size: d.object.size,
            e_tag: d.object.etag.map(|e| e.trim_matches('"').to_string()),
            version: d.object.version_id,
            sequencer: d.object.sequencer,
        })]);
    }
    let direct: Direct = serde_json::from_value(event.clone()).map_err(|e| {
        bad(
            "event (expected an S3 notification, an EventBridge Object Created event, an SQS \
             message, or {\"bucket\", \"key\"|\"prefix\"} or {\"url\"})",
            &e,
        )
    })?;
    direct.into_target()
}

/// The body of an EventBridge "Object Created" event from S3.
#[derive(Debug, Serialize, Deserialize)]
struct ObjectCreatedDetail {
    bucket: DetailBucket,
    object: DetailObject,
}

#[derive(Debug, Serialize, Deserialize)]
struct DetailBucket {
    name: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct DetailObject {
    key: String,
    size: Option<u64>,
    etag: Option<String>,
    #[serde(default, rename = "version-id")]
    version_id: Option<String>,
    #[serde(default)]
    sequencer: Option<String>,
}

/// A payload written by hand or by Step Functions.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Direct {
    bucket: Option<String>,
    key: Option<String>,
    prefix: Option<String>,
    url: Option<String>,
}

impl Direct {
    fn into_target(self) -> Result<Vec<Target>> {
        let missing = || {
            Error::Event(
                "a direct payload needs {\"bucket\", \"key\"}, {\"bucket\", \"prefix\"} or {\"url\": \"s3://bucket/key-or-prefix/\"}"
                    .into(),
            )
        };
        let (bucket, key, prefix) = match (self.url, self.bucket) {
            (Some(url), None) => {
                let rest = url.strip_prefix("s3://").ok_or_else(missing)?;
                let (bucket, path) = rest.split_once('/').unwrap_or((rest, ""));
                if path.is_empty() || path.ends_with('/') {
                    (bucket.to_string(), None, Some(path.to_string()))
                } else {
                    (bucket.to_string(), Some(path.to_string()), None)
                }
            }
            (None, Some(bucket)) => (bucket, self.key, self.prefix),
            _ => return Err(missing()),
        };
        if bucket.is_empty() {
            return Err(missing());
        }
        Ok(vec![match (key, prefix) {
            (Some(key), None) if !key.is_empty() => Target::Object(ObjectRef {
                bucket,
                key,
                size: None,
                e_tag: None,
                version: None,
                sequencer: None,
            }),
            (None, Some(prefix)) => Target::Prefix { bucket, prefix },
            _ => return Err(missing()),
        }])
    }
}

fn s3_record(record: &S3EventRecord) -> Result<Target> {
    let name = record.event_name.as_deref().unwrap_or("");
    if !name.starts_with("ObjectCreated:") {
        return Ok(Target::Ignored(format!("S3 event {name:?}")));
    }
    let bucket = record
        .s3
        .bucket
        .name
        .clone()
        .ok_or_else(|| Error::Event("an S3 event record without s3.bucket.name".into()))?;
    let raw = record
        .s3
        .object
        .key
        .as_deref()
        .ok_or_else(|| Error::Event("an S3 event record without s3.object.key".into()))?;
    Ok(Target::Object(ObjectRef {
        key: decode_key(raw)?,
        bucket,
        size: record.s3.object.size.and_then(|s| u64::try_from(s).ok()),
        e_tag: record
            .s3
            .object
            .e_tag
            .as_ref()
            .map(|e| e.trim_matches('"').to_string()),
        version: record.s3.object.version_id.clone(),
        sequencer: record.s3.object.sequencer.clone(),
    }))
}

/// Decode a key from an S3 event notification: `+` is a space, then
/// percent-decoding (so `%2B` is a `+`), as UTF-8.
pub fn decode_key(raw: &str) -> Result<String> {
    let spaced = raw.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .map(|k| k.into_owned())
        .map_err(|e| Error::Event(format!("key {raw:?} is not UTF-8 once decoded: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_are_form_decoded() {
        for (raw, key) in [
            ("raw/a+b.jsonl", "raw/a b.jsonl"),
            ("raw/c%2B%2B.jsonl", "raw/c++.jsonl"),
            ("raw/dt%3D2026-11-25/x.csv", "raw/dt=2026-11-25/x.csv"),
            (
                "raw/caf%C3%A9+%E6%97%A5%E6%9C%AC.jsonl",
                "raw/café 日本.jsonl",
            ),
            ("plain.jsonl", "plain.jsonl"),
        ] {
            assert_eq!(decode_key(raw).unwrap(), key, "{raw}");
        }
        assert!(decode_key("bad%FF%FE").is_err());
    }

    #[test]
    fn direct_payloads() {
        let one = |v: Value| decode(&v).unwrap().remove(0);
        assert_eq!(
            one(json!({"bucket": "b", "key": "raw/a+b.jsonl"})),
            Target::Object(ObjectRef {
                bucket: "b".into(),
                key: "raw/a+b.jsonl".into(),
                size: None,
                e_tag: None,
                version: None,
                sequencer: None,
            })
        );
        assert_eq!(
            one(json!({"bucket": "b", "prefix": "raw/"})),
            Target::Prefix {
                bucket: "b".into(),
                prefix: "raw/".into()
            }
        );
        assert_eq!(
            one(json!({"url": "s3://b/raw/"})),
            Target::Prefix {
                bucket: "b".into(),
                prefix: "raw/".into()
            }
        );
        assert!(
            matches!(one(json!({"url": "s3://b/raw/x.csv"})), Target::Object(o) if o.key == "raw/x.csv")
        );
        assert!(decode(&json!({"bucket": "b"})).is_err());
        assert!(decode(&json!({"bucket": "b", "key": "k", "other": 1})).is_err());
        assert!(decode(&json!([1, 2])).is_err());
    }

    fn fixture(name: &str) -> Value {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../events")
            .join(name);
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
    }

    fn keys(targets: &[Target]) -> Vec<&str> {
        targets
            .iter()
            .filter_map(|t| match t {
                Target::Object(o) => Some(o.key.as_str()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn every_sample_event_decodes_to_the_objects_it_names() {
        let t = decode(&fixture("s3-put-special-keys.json")).unwrap();
        assert_eq!(
            keys(&t),
            [
                "raw/clickstream/2026-11-25/events with spaces.jsonl",
                "raw/clickstream/c++/events+1.jsonl",
                "raw/clickstream/café/日本 ü.jsonl",
                "raw/elsewhere/not-a-table.txt"
            ]
        );
        let t = decode(&fixture("s3-put.json")).unwrap();
        assert_eq!(
            t,
            [Target::Object(ObjectRef {
                bucket: "example-raw-bucket".into(),
                key: "raw/clickstream/events-00000.jsonl".into(),
                size: Some(1500159),
                e_tag: Some("d41d8cd98f00b204e9800998ecf8427e".into()),
                version: None,
                sequencer: Some("0055AED6DCD90281E5".into()),
            })]
        );
        let t = decode(&fixture("eventbridge-object-created.json")).unwrap();
        assert!(
            matches!(&t[..], [Target::Object(o)] if o.key == "raw/clickstream/events-00001.jsonl.gz"
                && o.version.as_deref() == Some("IYV3p45BT0ac8hjHg1houSdS1a.Mro8e")
                && o.sequencer.as_deref() == Some("00617F08299329D189"))
        );
        assert!(matches!(
            &decode(&fixture("s3-test-event.json")).unwrap()[..],
            [Target::Ignored(_)]
        ));
        assert!(matches!(
            &decode(&fixture("direct-prefix.json")).unwrap()[..],
            [Target::Prefix { prefix, .. }] if prefix == "raw/clickstream/"
        ));
        // SQS: each body decodes on its own; decoding the batch whole is refused.
        let sqs = fixture("sqs-s3-and-eventbridge.json");
        assert!(decode(&sqs).is_err());
        let messages = sqs_messages(&sqs).unwrap();
        assert_eq!(messages.len(), 3);
        let bodies: Vec<Vec<Target>> = messages
            .iter()
            .map(|m| decode(&serde_json::from_str(&m.body).unwrap()).unwrap())
            .collect();
        assert_eq!(keys(&bodies[0]), ["raw/clickstream/events-00000.jsonl"]);
        assert_eq!(keys(&bodies[1]), ["raw/clickstream/events-00001.jsonl.gz"]);
        assert!(matches!(&bodies[2][..], [Target::Ignored(_)]));
        let commits = sqs_messages(&fixture("sqs-commit-records.json")).unwrap();
        let t = decode(&serde_json::from_str(&commits[0].body).unwrap()).unwrap();
        assert!(keys(&t)[0].starts_with("lake/_sluice/commits/clickstream/"));
        // Not SQS: no messages.
        assert!(sqs_messages(&fixture("s3-put.json")).is_none());
    }

    #[test]
    fn a_delete_is_ignored() {
        let mut v = fixture("s3-put.json");
        v["Records"][0]["eventName"] = json!("ObjectRemoved:Delete");
        assert!(matches!(&decode(&v).unwrap()[..], [Target::Ignored(_)]));
    }

    #[test]
    fn test_event_is_ignored() {
        let v = json!({"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "2026-11-25T10:00:00.000Z", "Bucket": "raw", "RequestId": "X", "HostId": "Y"});
        assert!(matches!(&decode(&v).unwrap()[..], [Target::Ignored(_)]));
    }
}
