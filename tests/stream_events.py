"""Build stream-function events from JSON Lines records, shaped exactly as
Lambda's event source mappings shape them, for the stream tests and the
sample events (events/kinesis.json, events/msk.json).

  stream_events.py kinesis ENDPOINT STREAM SOURCE.jsonl COUNT BATCH OUT_DIR
      On the Kinesis API at ENDPOINT (moto's server): create STREAM with two
      shards, put the first COUNT records of SOURCE (some gzip-compressed,
      some aggregated as the Kinesis Producer Library does, some malformed),
      read every shard back with GetRecords, and cut each shard's records
      into events of BATCH records.
  stream_events.py kafka TOPIC SOURCE.jsonl COUNT BATCH OUT_DIR
      The same records as an MSK event source mapping delivers a topic of
      two partitions: offsets from 0, values base64, BATCH records a
      partition per event.

Writes OUT_DIR/events.json (the events, in delivery order),
OUT_DIR/recut.json (the same records delivered again, cut otherwise, the
deliveries overlapping), OUT_DIR/shards.json (each shard's records),
OUT_DIR/raw/good.jsonl (the records that must land, once each; for Kinesis,
also each shard's in OUT_DIR/raw/shards/<shard id>.jsonl) and prints
{"events": n, "good": n, "malformed": ["<shard or partition>:<position>", ...]}.
"""
import base64
import gzip
import hashlib
import json
import os
import sys
import time

KPL_MAGIC = bytes([0xF3, 0x89, 0x9A, 0xC2])


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field(tag, wire, payload):
    key = varint((tag << 3) | wire)
    if wire == 0:
        return key + varint(payload)
    return key + varint(len(payload)) + payload


def kpl_aggregate(records):
    """The KPL's aggregated record: magic, protobuf AggregatedRecord, MD5."""
    body = field(1, 2, b"pk")  # partition_key_table = ["pk"]
    for data in records:
        record = field(1, 0, 0) + field(3, 2, data)  # partition_key_index, data
        body += field(3, 2, record)
    return KPL_MAGIC + body + hashlib.md5(body).digest()


def payloads(lines):
    """(payload bytes, [good lines it carries], malformed?) for each record to put."""
    out = []
    i = 0
    while i < len(lines):
        line = lines[i].encode()
        if i % 11 == 3:
            out.append((b"{not json", [], True))
        if i % 13 == 5:
            # A gzip member cut short: cannot be decompressed.
            out.append((gzip.compress(line)[:12], [], True))
        if i % 7 == 1:
            out.append((gzip.compress(line), [lines[i]], False))
            i += 1
        elif i % 9 == 2 and i + 3 <= len(lines):
            group = lines[i : i + 3]
            out.append((kpl_aggregate([g.encode() for g in group]), group, False))
            i += 3
        else:
            out.append((line, [lines[i]], False))
            i += 1
    return out


def kinesis_event(stream_arn, shard, records):
    return {
        "Records": [
            {
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": r["partitionKey"],
                    "sequenceNumber": r["sequenceNumber"],
                    "data": r["data"],
                    "approximateArrivalTimestamp": r["approximateArrivalTimestamp"],
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": f"{shard}:{r['sequenceNumber']}",
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": "arn:aws:iam::123456789012:role/sluice-stream",
                "awsRegion": "us-east-1",
                "eventSourceARN": stream_arn,
            }
            for r in records
        ]
    }


def kafka_event(topic, partition, records):
    return {
        "eventSource": "aws:kafka",
        "eventSourceArn": "arn:aws:kafka:us-east-1:123456789012:cluster/sluice/a1b2c3d4-0000-0000-0000-000000000000-1",
        "bootstrapServers": "b-1.sluice.abc123.c2.kafka.us-east-1.amazonaws.com:9098",
        "records": {f"{topic}-{partition}": records},
    }


def main():
    mode = sys.argv[1]
    if mode == "kinesis":
        endpoint, stream, source, count, batch, out = sys.argv[2:8]
    else:
        stream, source, count, batch, out = sys.argv[2:7]
    count, batch = int(count), int(batch)
    with open(source) as f:
        lines = [l.rstrip("\n") for l in f if l.strip()][:count]
    records = payloads(lines)
    os.makedirs(f"{out}/raw", exist_ok=True)
    with open(f"{out}/raw/good.jsonl", "w") as f:
        for _, good, _ in records:
            for g in good:
                f.write(g + "\n")
    shards = {}
    malformed = []
    events = []
    if mode == "kinesis":
        import boto3

        k = boto3.client("kinesis", endpoint_url=endpoint, region_name="us-east-1",
                         aws_access_key_id="testing", aws_secret_access_key="testing")
        k.create_stream(StreamName=stream, ShardCount=2)
        arn = k.describe_stream(StreamName=stream)["StreamDescription"]["StreamARN"]
        put = []
        for n, (data, _, bad) in enumerate(records):
            r = k.put_record(StreamName=stream, Data=data, PartitionKey=f"user-{n % 17}")
            put.append((r["ShardId"], r["SequenceNumber"], bad))
        malformed = [f"{sid}:{seq}" for sid, seq, bad in put if bad]
        # Each shard's good records on their own, for a test that loads one shard.
        os.makedirs(f"{out}/raw/shards", exist_ok=True)
        for (sid, _, _), (_, good, _) in zip(put, records):
            with open(f"{out}/raw/shards/{sid}.jsonl", "a") as f:
                f.writelines(g + "\n" for g in good)
        for shard in k.list_shards(StreamName=stream)["Shards"]:
            sid = shard["ShardId"]
            it = k.get_shard_iterator(StreamName=stream, ShardId=sid,
                                      ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
            got = []
            while it:
                r = k.get_records(ShardIterator=it, Limit=1000)
                got += r["Records"]
                it = r.get("NextShardIterator") if r["Records"] else None
            shards[sid] = [
                {
                    "partitionKey": g["PartitionKey"],
                    "sequenceNumber": g["SequenceNumber"],
                    "data": base64.b64encode(g["Data"]).decode(),
                    "approximateArrivalTimestamp": g["ApproximateArrivalTimestamp"].timestamp(),
                }
                for g in got
            ]
        assert sum(len(v) for v in shards.values()) == len(records), "GetRecords returned every record"
        make = lambda sid, recs: kinesis_event(arn, sid, recs)
        meta = {"arn": arn}
    else:
        now = int(time.time() * 1000)
        for n, (data, _, bad) in enumerate(records):
            p = n % 2
            recs = shards.setdefault(str(p), [])
            recs.append({
                "topic": stream, "partition": p, "offset": len(recs), "timestamp": now + n,
                "timestampType": "CREATE_TIME", "key": base64.b64encode(f"user-{n % 17}".encode()).decode(),
                "value": base64.b64encode(data).decode(), "headers": [],
            })
            if bad:
                malformed.append(f"{p}:{len(recs) - 1}")
        make = lambda p, recs: kafka_event(stream, int(p), recs)
        meta = {}
    for key, recs in sorted(shards.items()):
        for i in range(0, len(recs), batch):
            events.append(make(key, recs[i : i + batch]))
    # Deliveries again, cut otherwise and overlapping: windows of half a
    # batch, each starting two records before the last one ended (as a
    # halved retry after a partial commit would).
    half = max(batch // 2, 3)
    recut = []
    for key, recs in sorted(shards.items()):
        i = 0
        while i < len(recs):
            recut.append(make(key, recs[max(i - 2, 0) : i + half]))
            i += half
    with open(f"{out}/events.json", "w") as f:
        json.dump(events, f)
    with open(f"{out}/recut.json", "w") as f:
        json.dump(recut, f)
    with open(f"{out}/shards.json", "w") as f:
        json.dump({"shards": shards, **meta}, f)
    print(json.dumps({"events": len(events), "good": sum(len(g) for _, g, _ in records),
                      "malformed": malformed}))


if __name__ == "__main__":
    main()
