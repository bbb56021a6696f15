//! The stream function: record batches from a Kinesis or Kafka (Amazon MSK,
//! self-managed) event source mapping in, each shard's (or topic
//! partition's) records loaded as one chunk into the table whose `stream`
//! is the stream's name or the topic ([`sluice::stream::load_batch`]).
//!
//! Kinesis: a batch that fails (storage, the table's SQL) is answered with
//! `batchItemFailures` naming the first record its shard has not loaded, so
//! Lambda delivers the shard again from there; records before it are not
//! asked for again. Bad records never fail a batch: they are quarantined.
//! Kafka: a failure fails the invocation, and the whole batch comes again;
//! the partitions it had loaded find their records loaded and skip them.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use aws_lambda_events::kafka::{KafkaEvent, KafkaRecord};
use aws_lambda_events::streams::{KinesisBatchItemFailure, KinesisEventResponse};
use base64::Engine as _;
use bytes::Bytes;
use serde::Deserialize;
use serde::de::{Deserializer, SeqAccess, Visitor};
use serde_json::Value;
use sluice::pipeline::Counters;
use sluice::stream::{Batch, Kind, Outcome, Record, first_unloaded, load_batch};
use tracing::{Instrument, info, info_span, warn};

use crate::deps::Deps;
use crate::error::FunctionError;
use crate::metrics::{Record as Metrics, Unit};

/// The longest a Lambda invocation runs.
const MAX_RUN: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// What the stream function is invoked with.
///
/// Read straight from the invocation's bytes by the function's `main`
/// ([`crate::serve`]); told apart by the event's list of records: `Records`
/// for Kinesis, `records` for Kafka. Bytes to a JSON `Value`, then to the
/// event through serde's untagged enum (which buffers the whole event to try
/// each kind), took a quarter of a 10,000-record batch's time.
#[derive(Debug, Deserialize)]
#[serde(try_from = "EventOnTheWire")]
pub enum StreamEvent {
    /// A Kinesis event's records, by stream and shard (the event source
    /// mapping sends one shard's records; a hand-made event may mix them),
    /// in the order given.
    Kinesis(Vec<Batch>),
    Kafka(KafkaEvent),
}

/// The fields of either kind of event, read in one pass.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventOnTheWire {
    #[serde(rename = "Records")]
    kinesis: Option<KinesisRecords>,
    records: Option<HashMap<String, Vec<KafkaRecord>>>,
    event_source: Option<String>,
    event_source_arn: Option<String>,
    bootstrap_servers: Option<String>,
}

impl TryFrom<EventOnTheWire> for StreamEvent {
    type Error = &'static str;

    fn try_from(e: EventOnTheWire) -> Result<Self, Self::Error> {
        if let Some(KinesisRecords(batches)) = e.kinesis {
            Ok(StreamEvent::Kinesis(batches))
        } else if let Some(records) = e.records {
            let mut event = KafkaEvent::default();
            event.records = records;
            event.event_source = e.event_source;
            event.event_source_arn = e.event_source_arn;
            event.bootstrap_servers = e.bootstrap_servers;
            Ok(StreamEvent::Kafka(event))
        } else {
            Err("it has neither `Records` (Kinesis) nor `records` (Kafka)")
        }
    }
}

/// A Kinesis event's `Records`, read straight into batches.
///
/// `aws_lambda_events`' record keeps every field and gathers unknown ones
/// through `#[serde(flatten)]`, which buffers each record before reading
/// it: reading a 10,000-record event that way took a quarter of the stream
/// path's time (bench/stream.sh). This reads the four fields a batch needs,
/// borrowing the event's text where it has no escapes, and decodes every
/// record's data into one buffer that the records share.
struct KinesisRecords(Vec<Batch>);

/// One record of a Kinesis event: the fields a batch needs; the others
/// (`awsRegion`, `eventName`, `kinesis.partitionKey`, ...) are skipped.
#[derive(Deserialize)]
struct KinesisOnTheWire<'a> {
    #[serde(rename = "eventSourceARN", borrow, default)]
    event_source_arn: Option<Text<'a>>,
    #[serde(rename = "eventID", borrow, default)]
    event_id: Option<Text<'a>>,
    #[serde(borrow)]
    kinesis: KinesisDataOnTheWire<'a>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct KinesisDataOnTheWire<'a> {
    #[serde(borrow)]
    sequence_number: Text<'a>,
    /// Base64.
    #[serde(borrow)]
    data: Text<'a>,
}

/// A string of the event: borrowed from its text unless it has escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> Visitor<'de> for Visit {
            type Value = Cow<'de, str>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Cow::Borrowed(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Cow::Owned(v.to_owned()))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Cow::Owned(v))
            }
        }
        d.deserialize_str(Visit).map(Text)
    }
}

impl<'de> Deserialize<'de> for KinesisRecords {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_seq(KinesisRecords(Vec::new()))
    }
}

impl<'de> Visitor<'de> for KinesisRecords {
    type Value = KinesisRecords;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a list of Kinesis records")
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<Self::Value, A::Error> {
        use serde::de::Error as _;
        // Each batch's records as (sequence number, where its data is in `data`).
        let mut found: Vec<Vec<(String, std::ops::Range<usize>)>> = Vec::new();
        let mut data = Vec::new();
        while let Some(r) = seq.next_element::<KinesisOnTheWire>()? {
            let seq_no = r.kinesis.sequence_number.0;
            let arn = r.event_source_arn.as_ref().map_or("", |t| &t.0);
            let stream = arn.rsplit_once(":stream/").map(|(_, s)| s).ok_or_else(|| {
                A::Error::custom(format!(
                    "Kinesis record {seq_no}: eventSourceARN {arn:?} does not name a stream"
                ))
            })?;
            // eventID is "<shard id>:<sequence number>".
            let id = r.event_id.as_ref().map_or("", |t| &t.0);
            let shard = id.split_once(':').map(|(s, _)| s).ok_or_else(|| {
                A::Error::custom(format!(
                    "Kinesis record {seq_no}: eventID {id:?} does not name a shard"
                ))
            })?;
            let start = data.len();
            base64::engine::general_purpose::STANDARD
                .decode_vec(r.kinesis.data.0.as_bytes(), &mut data)
                .map_err(|e| {
                    A::Error::custom(format!("Kinesis record {seq_no}: data is not base64: {e}"))
                })?;
            let at = match self
                .0
                .iter()
                .rposition(|b| b.stream == stream && b.shard == shard)
            {
                Some(at) => at,
                None => {
                    self.0.push(Batch {
                        kind: Kind::Kinesis,
                        stream: stream.to_string(),
                        shard: shard.to_string(),
                        cluster: None,
                        records: Vec::new(),
                    });
                    found.push(Vec::new());
                    found.len() - 1
                }
            };
            found[at].push((seq_no.into_owned(), start..data.len()));
        }
        let data = Bytes::from(data);
        for (batch, records) in self.0.iter_mut().zip(found) {
            batch.records = records
                .into_iter()
                .map(|(position, at)| Record {
                    position,
                    data: Some(data.slice(at)),
                })
                .collect();
        }
        Ok(self)
    }
}

/// Handle one invocation given as JSON (as the tests and local emulators
/// give it); see [`handle_event`].
pub async fn handle(
    deps: &Deps,
    event: Value,
    deadline: Option<Instant>,
) -> Result<Value, FunctionError> {
    let event = StreamEvent::deserialize(event)
        .map_err(|e| FunctionError::permanent(format!("not a Kinesis or Kafka event: {e}")))?;
    handle_event(deps, event, deadline).await
}

/// Handle one invocation; `deadline` is when Lambda stops it (none where an
/// emulator sets none: then Lambda's longest run, 15 minutes, from now).
pub async fn handle_event(
    deps: &Deps,
    event: StreamEvent,
    deadline: Option<Instant>,
) -> Result<Value, FunctionError> {
    let left = deadline.map_or(MAX_RUN, |d| d.saturating_duration_since(Instant::now()));
    let until = chrono::Utc::now() + left;
    match event {
        StreamEvent::Kinesis(batches) => {
            let mut response = KinesisEventResponse::default();
            for batch in &batches {
                if let Err(e) = load(deps, batch, until).await {
                    let from = first_unloaded(&deps.engine(), &deps.lake, batch)
                        .await
                        .unwrap_or_else(|_| batch.records.first().map(|r| r.position.clone()));
                    warn!(stream = %batch.stream, shard = %batch.shard, retry_from = ?from, retryable = e.retryable, error = %e, "batch failed");
                    if let Some(from) = from {
                        let mut f = KinesisBatchItemFailure::default();
                        f.item_identifier = Some(from);
                        response.batch_item_failures.push(f);
                    }
                }
            }
            Ok(serde_json::to_value(response).expect("serializes"))
        }
        StreamEvent::Kafka(e) => {
            let batches = kafka_batches(e)?;
            let mut failed = Vec::new();
            let mut retryable = false;
            for batch in &batches {
                if let Err(e) = load(deps, batch, until).await {
                    retryable |= e.retryable;
                    failed.push(format!("{}-{}: {e}", batch.stream, batch.shard));
                }
            }
            if failed.is_empty() {
                return Ok(serde_json::json!({ "batches": batches.len() }));
            }
            let message = format!(
                "{} of {} topic partitions failed (loaded ones are skipped when the batch comes again): {}",
                failed.len(),
                batches.len(),
                failed.join("; ")
            );
            // The batch comes again either way (Kafka mappings retry until the
            // records expire); a failure no retry can mend says so.
            Err(if retryable {
                FunctionError::retryable(message)
            } else {
                FunctionError::permanent(message)
            })
        }
    }
}

/// A Kafka event's records, by topic and partition, in offset order.
fn kafka_batches(event: KafkaEvent) -> Result<Vec<Batch>, FunctionError> {
    match event.event_source.as_deref() {
        Some("aws:kafka" | "SelfManagedKafka") => {}
        other => {
            return Err(FunctionError::permanent(format!(
                "not a Kinesis or Kafka event (eventSource {other:?}; a Kinesis event has \"Records\", a Kafka one \"eventSource\": \"aws:kafka\" or \"SelfManagedKafka\")"
            )));
        }
    }
    // The cluster: an MSK event names its ARN, a self-managed one its
    // bootstrap servers.
    let cluster = event.event_source_arn.or(event.bootstrap_servers);
    let mut batches = Vec::new();
    let mut groups: Vec<_> = event.records.into_iter().collect();
    groups.sort_by(|a, b| a.0.cmp(&b.0));
    for (key, mut records) in groups {
        records.sort_by_key(|r| r.offset);
        let Some(first) = records.first() else {
            continue;
        };
        let topic = first.topic.clone().unwrap_or_else(|| {
            // "<topic>-<partition>", as the event's map is keyed.
            key.rsplit_once('-')
                .map_or(key.clone(), |(t, _)| t.to_string())
        });
        let partition = first.partition;
        let mut batch = Batch {
            kind: Kind::Kafka,
            stream: topic,
            shard: partition.to_string(),
            cluster: cluster.clone(),
            records: Vec::with_capacity(records.len()),
        };
        for r in records {
            let data = match r.value {
                None => None,
                Some(v) => Some(Bytes::from(
                    base64::engine::general_purpose::STANDARD
                        .decode(v.as_bytes())
                        .map_err(|e| {
                            FunctionError::permanent(format!(
                                "Kafka record {key}@{}: the value is not base64: {e}",
                                r.offset
                            ))
                        })?,
                )),
            };
            batch.records.push(Record {
                position: r.offset.to_string(),
                data,
            });
        }
        batches.push(batch);
    }
    Ok(batches)
}

/// Load one shard's batch, with its metrics and log line.
async fn load(
    deps: &Deps,
    batch: &Batch,
    until: chrono::DateTime<chrono::Utc>,
) -> Result<Outcome, FunctionError> {
    let span = info_span!("batch", stream = %batch.stream, shard = %batch.shard, records = batch.records.len());
    async {
        let started = Instant::now();
        let counters = Arc::new(Counters::default());
        let result = async {
            let engine = deps.fresh_engine().await?;
            load_batch(&engine, &deps.lake, batch, &deps.read, &counters, until)
                .await
                .map_err(FunctionError::from)
        }
        .await;
        let metrics = Metrics::new("stream").dimension("Stream", &batch.stream);
        match result {
            Ok(outcome) => {
                let c = &outcome.commits;
                let rows_out: u64 = c.iter().map(|c| c.rows_out).sum();
                let rejected: u64 = c.iter().map(|c| c.rows_rejected).sum();
                let bytes_out: u64 = c.iter().flat_map(|c| &c.files).map(|f| f.bytes).sum();
                let files: usize = c.iter().map(|c| c.files.len()).sum();
                metrics
                    .metric("Records", outcome.records as f64, Unit::Count)
                    .metric(
                        "RecordsAlreadyLoaded",
                        outcome.already_loaded as f64,
                        Unit::Count,
                    )
                    .metric("RowsOut", rows_out as f64, Unit::Count)
                    .metric("RowsRejected", rejected as f64, Unit::Count)
                    .metric("BytesOut", bytes_out as f64, Unit::Bytes)
                    .metric("FilesOut", files as f64, Unit::Count)
                    .metric("BatchesFailed", 0.0, Unit::Count)
                    .duration(started)
                    .emit();
                info!(
                    table = %outcome.table,
                    already_loaded = outcome.already_loaded,
                    null_values = outcome.null_values,
                    rows_out,
                    rows_rejected = rejected,
                    files,
                    "batch done"
                );
                Ok(outcome)
            }
            Err(e) => {
                metrics
                    .metric("BatchesFailed", 1.0, Unit::Count)
                    .duration(started)
                    .emit();
                Err(e)
            }
        }
    }
    .instrument(span)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(file: &str) -> Value {
        let path = format!("{}/../../events/{file}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(&path).expect("the sample event")).unwrap()
    }

    #[test]
    fn an_event_is_told_kinesis_or_kafka_by_its_records() {
        let read = |file: &str| serde_json::from_value::<StreamEvent>(event(file));
        match read("kinesis.json").unwrap() {
            StreamEvent::Kinesis(batches) => {
                assert_eq!(batches.iter().map(|b| b.records.len()).sum::<usize>(), 21)
            }
            other => panic!("read as {other:?}"),
        }
        match read("msk.json").unwrap() {
            StreamEvent::Kafka(e) => {
                assert_eq!(e.records.values().map(Vec::len).sum::<usize>(), 22);
                assert_eq!(e.event_source.as_deref(), Some("aws:kafka"));
                assert!(
                    e.event_source_arn
                        .is_some_and(|a| a.starts_with("arn:aws:kafka:"))
                );
            }
            other => panic!("read as {other:?}"),
        }
    }

    /// Every record of the sample event, read by `aws_lambda_events` (which
    /// keeps every field): its sequence number and decoded data.
    fn records_as_aws_lambda_events_reads_them(
        event: Value,
    ) -> Vec<(String, String, String, Vec<u8>)> {
        let e: aws_lambda_events::kinesis::KinesisEvent = serde_json::from_value(event).unwrap();
        e.records
            .into_iter()
            .map(|r| {
                let arn = r.event_source_arn.unwrap();
                let id = r.event_id.unwrap();
                (
                    arn.rsplit_once(":stream/").unwrap().1.to_string(),
                    id.split_once(':').unwrap().0.to_string(),
                    r.kinesis.sequence_number,
                    r.kinesis.data.0,
                )
            })
            .collect()
    }

    fn records_as_read(event: StreamEvent) -> Vec<(String, String, String, Vec<u8>)> {
        let StreamEvent::Kinesis(batches) = event else {
            panic!("not read as Kinesis: {event:?}");
        };
        batches
            .into_iter()
            .flat_map(|b| {
                b.records.into_iter().map(move |r| {
                    (
                        b.stream.clone(),
                        b.shard.clone(),
                        r.position,
                        r.data.unwrap().to_vec(),
                    )
                })
            })
            .collect()
    }

    #[test]
    fn a_kinesis_event_reads_as_aws_lambda_events_reads_it() {
        let sample = event("kinesis.json");
        let expected = records_as_aws_lambda_events_reads_them(sample.clone());
        assert_eq!(expected.len(), 21);
        // From the text (strings borrowed) and from a JSON value (owned).
        let text = sample.to_string();
        assert_eq!(
            records_as_read(serde_json::from_str(&text).unwrap()),
            expected
        );
        assert_eq!(
            records_as_read(serde_json::from_value(sample).unwrap()),
            expected
        );
    }

    /// A batch as read: stream, shard, and each record's position and data.
    type Shard<'a> = (&'a str, &'a str, Vec<(&'a str, &'a [u8])>);

    #[test]
    fn a_kinesis_event_of_two_shards_is_two_batches_in_the_order_given() {
        let b64 = base64::engine::general_purpose::STANDARD;
        let record = |stream: &str, shard: &str, seq: u32, data: &str| {
            serde_json::json!({
                "eventSourceARN": format!("arn:aws:kinesis:eu-west-1:123456789012:stream/{stream}"),
                "eventID": format!("{shard}:{seq}"),
                "awsRegion": "eu-west-1",
                "kinesis": {"sequenceNumber": seq.to_string(), "data": b64.encode(data),
                            "partitionKey": "k", "approximateArrivalTimestamp": 1.5},
            })
        };
        let records = [
            record("clicks", "shardId-1", 1, "{\"a\":1}"),
            record("clicks", "shardId-2", 2, "{\"a\":2}\n"),
            record("clicks", "shardId-1", 3, ""),
            record("views", "shardId-1", 4, "{\"é\":\"\\u00e9\"}"),
            record("clicks", "shardId-2", 5, "x"),
        ];
        // An escaped slash, as any JSON writer may send it, is read as a slash.
        let text = serde_json::json!({ "Records": records })
            .to_string()
            .replace("stream/views", "stream\\/views");
        assert!(text.contains("stream\\/views"));
        let StreamEvent::Kinesis(batches) = serde_json::from_str(&text).unwrap() else {
            panic!("not Kinesis");
        };
        let read: Vec<Shard> = batches
            .iter()
            .map(|b| {
                let records = b
                    .records
                    .iter()
                    .map(|r| (r.position.as_str(), r.data.as_deref().unwrap()))
                    .collect();
                (b.stream.as_str(), b.shard.as_str(), records)
            })
            .collect();
        let expected: Vec<Shard> = vec![
            ("clicks", "shardId-1", vec![("1", b"{\"a\":1}"), ("3", b"")]),
            (
                "clicks",
                "shardId-2",
                vec![("2", b"{\"a\":2}\n"), ("5", b"x")],
            ),
            (
                "views",
                "shardId-1",
                vec![("4", "{\"é\":\"\\u00e9\"}".as_bytes())],
            ),
        ];
        assert_eq!(read, expected);
    }

    #[test]
    fn a_kinesis_record_that_cannot_be_read_is_named_by_its_sequence_number() {
        let read = |record: Value| {
            serde_json::from_value::<StreamEvent>(serde_json::json!({ "Records": [record] }))
                .unwrap_err()
                .to_string()
        };
        let arn = "arn:aws:kinesis:eu-west-1:123456789012:stream/clicks";
        let e = read(
            serde_json::json!({"eventSourceARN": arn, "eventID": "shardId-1:7",
            "kinesis": {"sequenceNumber": "7", "data": "not base64!"}}),
        );
        assert!(e.starts_with("Kinesis record 7: data is not base64"), "{e}");
        let e = read(
            serde_json::json!({"eventSourceARN": "arn:aws:sqs:x", "eventID": "shardId-1:7",
            "kinesis": {"sequenceNumber": "7", "data": ""}}),
        );
        assert!(
            e.starts_with(
                "Kinesis record 7: eventSourceARN \"arn:aws:sqs:x\" does not name a stream"
            ),
            "{e}"
        );
        let e = read(serde_json::json!({"eventSourceARN": arn,
            "kinesis": {"sequenceNumber": "7", "data": ""}}));
        assert!(
            e.starts_with("Kinesis record 7: eventID \"\" does not name a shard"),
            "{e}"
        );
    }

    #[test]
    fn an_event_of_neither_kind_says_what_it_lacks() {
        let read = |text: &str| {
            serde_json::from_str::<StreamEvent>(text)
                .unwrap_err()
                .to_string()
        };
        // An S3 event has `Records` too: it fails as a Kinesis event, naming the field.
        let s3 = std::fs::read_to_string(format!(
            "{}/../../events/s3-put.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let e = read(&s3);
        assert!(e.starts_with("missing field `kinesis`"), "{e}");
        let e = read(r#"{"detail": {}}"#);
        assert!(
            e.contains("neither `Records` (Kinesis) nor `records` (Kafka)"),
            "{e}"
        );
    }
}
