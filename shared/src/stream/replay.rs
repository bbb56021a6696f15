//! Replaying a Kinesis batch the event source mapping gave up on.
//!
//! With a finite `MaximumRetryAttempts` (or `MaximumRecordAgeInSeconds`),
//! Lambda stops retrying a batch that keeps failing, sends a failure record
//! naming it (shard, first and last sequence numbers) to the mapping's
//! on-failure destination, and goes on with the shard. The stream function
//! had recorded the batch's records as a gap in the shard's checkpoint when
//! it failed them ([`super::load_batch`]), so they are not taken as loaded
//! when later batches move the checkpoint past them. A replay reads the
//! failure record, fetches the records again from the stream (GetShardIterator
//! `AT_SEQUENCE_NUMBER`, GetRecords to the last one) and loads them as the
//! function would: the records of the gap load, once; any the function had
//! loaded before it failed are skipped. A replay run twice loads nothing
//! the second time. It must run while the records are still in the stream
//! (its retention: 24 hours by default).

use std::sync::Arc;

use aws_sdk_kinesis::types::ShardIteratorType;
use bytes::Bytes;
use chrono::Utc;
use serde_json::Value;

use super::{Batch, Kind, Outcome, Record, key, load_batch};
use crate::error::{Error, Result};
use crate::pipeline::{Counters, Engine};
use crate::read::ReadOptions;
use crate::store::Location;

/// A batch a Kinesis event source mapping gave up on, as its failure record
/// (`KinesisBatchInfo`) names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GivenUp {
    pub stream_arn: String,
    pub shard: String,
    pub first: String,
    pub last: String,
    /// Records in the batch, as the failure record counts them.
    pub batch_size: Option<u64>,
}

impl GivenUp {
    /// The stream's name (the ARN's last part).
    pub fn stream(&self) -> &str {
        self.stream_arn
            .rsplit_once(":stream/")
            .map_or(self.stream_arn.as_str(), |(_, s)| s)
    }
}

impl std::fmt::Display for GivenUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "kinesis://{}/{} records {}..={}",
            self.stream(),
            self.shard,
            self.first,
            self.last
        )
    }
}

/// The failure records in `text`: one Lambda failure record, or several (a
/// JSON array, or one per line), as the destination delivered them: an SQS
/// message body, `aws sqs receive-message` output (`{"Messages": [...]}`),
/// an SNS notification (`{"Message": "..."}`) or an S3 object. `what` names
/// the text in errors.
pub fn failure_records(text: &str, what: &str) -> Result<Vec<GivenUp>> {
    let mut out = Vec::new();
    for value in serde_json::Deserializer::from_str(text).into_iter::<Value>() {
        let value = value.map_err(|e| Error::Event(format!("{what}: not JSON: {e}")))?;
        collect(&value, what, &mut out)?;
    }
    if out.is_empty() {
        return Err(Error::Event(format!(
            "{what}: no Kinesis failure record (an object with \"KinesisBatchInfo\")"
        )));
    }
    Ok(out)
}

fn collect(value: &Value, what: &str, out: &mut Vec<GivenUp>) -> Result<()> {
    let bad = |m: &str| Error::Event(format!("{what}: {m}"));
    match value {
        Value::Array(items) => {
            for item in items {
                collect(item, what, out)?;
            }
            Ok(())
        }
        Value::Object(o) => {
            if let Some(info) = o.get("KinesisBatchInfo") {
                let field = |name: &str| {
                    info.get(name)
                        .and_then(Value::as_str)
                        .map(str::to_string)
                        .ok_or_else(|| bad(&format!("KinesisBatchInfo has no {name}")))
                };
                let given = GivenUp {
                    stream_arn: field("streamArn")?,
                    shard: field("shardId")?,
                    first: field("startSequenceNumber")?,
                    last: field("endSequenceNumber")?,
                    batch_size: info.get("batchSize").and_then(Value::as_u64),
                };
                for p in [&given.first, &given.last] {
                    if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                        return Err(bad(&format!("sequence number {p:?} is not a number")));
                    }
                }
                out.push(given);
                return Ok(());
            }
            if let Some(messages) = o.get("Messages") {
                return collect(messages, what, out);
            }
            // An SQS message's body, an SNS notification's message: JSON
            // in a string.
            for wrapper in ["Body", "body", "Message"] {
                if let Some(Value::String(inner)) = o.get(wrapper) {
                    out.extend(failure_records(inner, what)?);
                    return Ok(());
                }
            }
            if o.contains_key("KafkaBatchInfo") {
                return Err(bad(
                    "a Kafka failure record: Kafka mappings retry until the records expire, and a topic is replayed by resetting the consumer group",
                ));
            }
            Err(bad(
                "an object that is neither a Kinesis failure record nor a message holding one",
            ))
        }
        _ => Err(bad("not an object")),
    }
}

/// The records of `given` read again from its stream, as one batch.
pub async fn fetch(client: &aws_sdk_kinesis::Client, given: &GivenUp) -> Result<Batch> {
    let unavailable = |call: &str, e: &dyn std::fmt::Display| {
        Error::Unavailable(format!("{given}: Kinesis {call}: {e}"))
    };
    let iterator = client
        .get_shard_iterator()
        .stream_name(given.stream())
        .shard_id(&given.shard)
        .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
        .starting_sequence_number(&given.first)
        .send()
        .await
        .map_err(|e| {
            let e = aws_sdk_kinesis::error::DisplayErrorContext(e);
            unavailable("GetShardIterator", &e)
        })?;
    let mut iterator = iterator.shard_iterator;
    let mut records = Vec::new();
    let end = key(&given.last);
    let mut idle = 0;
    'read: while let Some(it) = iterator {
        let got = client
            .get_records()
            .shard_iterator(it)
            .limit(10_000)
            .send()
            .await
            .map_err(|e| {
                let e = aws_sdk_kinesis::error::DisplayErrorContext(e);
                unavailable("GetRecords", &e)
            })?;
        if got.records.is_empty() {
            // At the shard's tip (or a quiet stretch of it): the batch's
            // last record is behind us or gone.
            idle += 1;
            if got.millis_behind_latest == Some(0) || idle >= 5 {
                break;
            }
        }
        for r in got.records {
            if key(&r.sequence_number) > end {
                break 'read;
            }
            records.push(Record {
                position: r.sequence_number,
                data: Some(Bytes::from(r.data.into_inner())),
            });
        }
        iterator = got.next_shard_iterator;
    }
    match records.first() {
        Some(r) if key(&r.position) == key(&given.first) => {}
        _ => {
            return Err(Error::Event(format!(
                "{given}: the stream no longer holds the batch's first record (past its retention period?): it cannot be replayed from the stream"
            )));
        }
    }
    if records.last().is_none_or(|r| key(&r.position) != end) {
        return Err(Error::Event(format!(
            "{given}: the stream no longer holds the batch's last record ({} read): it cannot be replayed whole",
            records.len()
        )));
    }
    Ok(Batch {
        kind: Kind::Kinesis,
        stream: given.stream().to_string(),
        shard: given.shard.clone(),
        cluster: None,
        records,
    })
}

/// Fetch `given`'s records and load those the shard never loaded.
pub async fn replay(
    engine: &Engine,
    lake: &Location,
    client: &aws_sdk_kinesis::Client,
    given: &GivenUp,
    options: &ReadOptions,
    counters: &Arc<Counters>,
) -> Result<Outcome> {
    let batch = fetch(client, given).await?;
    if let Some(expected) = given.batch_size
        && expected != batch.records.len() as u64
    {
        tracing::warn!(batch = %given, expected, read = batch.records.len(), "the stream holds a different number of records in the batch's range than the failure record counts");
    }
    load_batch(
        engine,
        lake,
        &batch,
        options,
        counters,
        Utc::now() + chrono::Duration::minutes(15),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    const RECORD: &str = r#"{
      "requestContext": {"requestId": "r", "functionArn": "arn:aws:lambda:us-east-1:1:function:f",
                         "condition": "RetryAttemptsExhausted", "approximateInvokeCount": 4},
      "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
      "version": "1.0", "timestamp": "2026-12-06T01:00:00.000Z",
      "KinesisBatchInfo": {"shardId": "shardId-000000000001",
        "startSequenceNumber": "49590338271490256608559692538361571095921575989136588898",
        "endSequenceNumber": "49590338271490256608559692540925702759324208523137515618",
        "approximateArrivalOfFirstRecord": "2026-12-06T00:59:00Z",
        "approximateArrivalOfLastRecord": "2026-12-06T00:59:01Z",
        "batchSize": 500, "streamArn": "arn:aws:kinesis:us-east-1:123456789012:stream/clicks"}
    }"#;

    #[test]
    fn failure_records_are_read_bare_from_sqs_and_sns_and_several_at_once() {
        let one = failure_records(RECORD, "f.json").unwrap();
        assert_eq!(
            one,
            [GivenUp {
                stream_arn: "arn:aws:kinesis:us-east-1:123456789012:stream/clicks".into(),
                shard: "shardId-000000000001".into(),
                first: "49590338271490256608559692538361571095921575989136588898".into(),
                last: "49590338271490256608559692540925702759324208523137515618".into(),
                batch_size: Some(500),
            }]
        );
        assert_eq!(one[0].stream(), "clicks");
        let body = serde_json::to_string(&RECORD.replace('\n', " ")).unwrap();
        let sqs = format!(
            r#"{{"Messages": [{{"MessageId": "m", "Body": {body}}}, {{"Body": {body}}}]}}"#
        );
        assert_eq!(failure_records(&sqs, "out.json").unwrap().len(), 2);
        let sns = format!(r#"{{"Type": "Notification", "Message": {body}}}"#);
        assert_eq!(failure_records(&sns, "n.json").unwrap(), one);
        let lines = format!(
            "{}\n{}\n",
            RECORD.replace('\n', " "),
            RECORD.replace('\n', " ")
        );
        assert_eq!(failure_records(&lines, "l.jsonl").unwrap().len(), 2);
    }

    #[test]
    fn what_is_not_a_kinesis_failure_record_is_refused_naming_the_file() {
        let e = failure_records("{}", "f.json").unwrap_err().to_string();
        assert!(e.contains("f.json") && e.contains("neither"), "{e}");
        let e = failure_records("", "empty.json").unwrap_err().to_string();
        assert!(
            e.contains("empty.json") && e.contains("no Kinesis failure record"),
            "{e}"
        );
        let e = failure_records(r#"{"KafkaBatchInfo": {}}"#, "k.json")
            .unwrap_err()
            .to_string();
        assert!(e.contains("Kafka"), "{e}");
        let bad = RECORD.replace(
            "49590338271490256608559692538361571095921575989136588898",
            "x1",
        );
        let e = failure_records(&bad, "b.json").unwrap_err().to_string();
        assert!(e.contains("\"x1\""), "{e}");
    }
}
