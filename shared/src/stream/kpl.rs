//! The Kinesis Producer Library's aggregation format: many user records in
//! one Kinesis record. The bytes are a 4-byte magic number, a protobuf
//! `AggregatedRecord`, then the MD5 digest of the protobuf bytes.
//! (<https://github.com/awslabs/amazon-kinesis-producer/blob/master/aggregation-format.md>)

use md5::{Digest, Md5};
use prost::Message;

/// What every aggregated record starts with.
pub const MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];

const DIGEST_LEN: usize = 16;

/// `message AggregatedRecord` (proto2).
#[derive(Clone, PartialEq, Message)]
pub struct AggregatedRecord {
    #[prost(string, repeated, tag = "1")]
    pub partition_key_table: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    pub explicit_hash_key_table: Vec<String>,
    #[prost(message, repeated, tag = "3")]
    pub records: Vec<UserRecord>,
}

/// `message Record`: one user record.
#[derive(Clone, PartialEq, Message)]
pub struct UserRecord {
    #[prost(uint64, required, tag = "1")]
    pub partition_key_index: u64,
    #[prost(uint64, optional, tag = "2")]
    pub explicit_hash_key_index: Option<u64>,
    #[prost(bytes = "vec", required, tag = "3")]
    pub data: Vec<u8>,
    #[prost(message, repeated, tag = "4")]
    pub tags: Vec<Tag>,
}

/// `message Tag`.
#[derive(Clone, PartialEq, Message)]
pub struct Tag {
    #[prost(string, required, tag = "1")]
    pub key: String,
    #[prost(string, optional, tag = "2")]
    pub value: Option<String>,
}

/// Whether `data` is an aggregated record (its magic number, and room for a digest).
pub fn is_aggregated(data: &[u8]) -> bool {
    data.len() >= MAGIC.len() + DIGEST_LEN && data.starts_with(&MAGIC)
}

/// The user records of an aggregated record, in order; the reason it is
/// not one (a wrong digest, an undecodable message).
pub fn deaggregate(data: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    if !is_aggregated(data) {
        return Err("not a KPL aggregated record".into());
    }
    let body = &data[MAGIC.len()..data.len() - DIGEST_LEN];
    let digest = &data[data.len() - DIGEST_LEN..];
    if Md5::digest(body).as_slice() != digest {
        return Err("KPL aggregated record: its MD5 digest does not match its contents".into());
    }
    let record = AggregatedRecord::decode(body)
        .map_err(|e| format!("KPL aggregated record: cannot decode its protobuf message: {e}"))?;
    Ok(record.records.into_iter().map(|r| r.data).collect())
}

/// Aggregate `records` as the KPL does (for tests and benchmarks).
pub fn aggregate(records: &[&[u8]]) -> Vec<u8> {
    let message = AggregatedRecord {
        partition_key_table: vec!["k".into()],
        explicit_hash_key_table: Vec::new(),
        records: records
            .iter()
            .map(|d| UserRecord {
                partition_key_index: 0,
                explicit_hash_key_index: None,
                data: d.to_vec(),
                tags: Vec::new(),
            })
            .collect(),
    };
    let body = message.encode_to_vec();
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&body);
    out.extend_from_slice(&Md5::digest(&body));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_records_come_back_in_order() {
        let data = aggregate(&[b"{\"a\":1}", b"", b"{\"a\":3}"]);
        assert!(is_aggregated(&data));
        assert_eq!(
            deaggregate(&data).unwrap(),
            vec![b"{\"a\":1}".to_vec(), Vec::new(), b"{\"a\":3}".to_vec()]
        );
    }

    #[test]
    fn a_damaged_aggregate_is_refused_by_its_digest() {
        let mut data = aggregate(&[b"{\"a\":1}"]);
        let i = MAGIC.len() + 3;
        data[i] ^= 1;
        let e = deaggregate(&data).unwrap_err();
        assert!(e.contains("MD5"), "{e}");
        // A short record with the magic is not taken for an aggregate.
        assert!(!is_aggregated(&MAGIC));
    }

    #[test]
    fn a_message_that_is_not_protobuf_is_refused() {
        let body = [0xFFu8; 8];
        let mut data = MAGIC.to_vec();
        data.extend_from_slice(&body);
        data.extend_from_slice(&Md5::digest(body));
        let e = deaggregate(&data).unwrap_err();
        assert!(e.contains("protobuf"), "{e}");
    }
}
