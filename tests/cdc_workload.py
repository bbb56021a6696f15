"""A random change workload, applied to a real database (SQLite) and
written as the change files Debezium and AWS DMS would write for it.

    python tests/cdc_workload.py OUT_DIR --seed 7 --changes 400 --files 8

writes
    OUT_DIR/debezium/changes-NNNN.jsonl   Debezium JSON (some events wrapped
                                          in schema/payload, some plain; a
                                          tombstone after each delete)
    OUT_DIR/dms/LOAD00000001.csv          the DMS full load (no Op column)
    OUT_DIR/dms/2026MMDD-HHMMSSmmm.csv    DMS change files: Op, ts, columns
    OUT_DIR/dms_parquet/*.parquet         with --parquet: the same DMS files as
                                          Parquet (Op column; none in LOAD*)
    OUT_DIR/expected.json                 the database table after every change

Keys are reused: about a third of the inserts take a key deleted (or moved
away from by a key change) earlier, so a merge must insert a key again
after its delete.

With --composite the key is (region, id): a text column first (with quotes,
commas, unicode, and values sharing a prefix longer than the 64 bytes
Parquet keeps of a statistic), and changes come in transactions of one to
four that share their source position (a MySQL binlog `file`/`pos` and
`ts_ms` for Debezium, the commit time for DMS), often changing one key
twice, so the change's place in its file decides, as documented. A
transaction never spans two Debezium files.

The database is the oracle: a test ingests the files (in any order, any
number of times) and compares the lake's table with expected.json.
Encodings as the connectors write them: the date as days since the epoch
(io.debezium.time.Date), the timestamp as microseconds
(io.debezium.time.MicroTimestamp), the decimal as base64 of its unscaled
two's-complement bytes (org.apache.kafka.connect.data.Decimal, scale 2).
"""

import argparse
import base64
import datetime as dt
import json
import os
import random
import sqlite3

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
START_US = 1_796_112_000_000_000  # 2026-12-01T00:00:00Z

LONG = "tenant-" + "a" * 70
REGIONS = ["ap-south-1", "eu-west-1", "us-east-1", 'zoë "quoted", region', LONG + "-1",
           LONG + "-2"]

FIELD_TYPES = {
    "region": {"type": "string", "optional": False},
    "id": {"type": "int64", "optional": False},
    "email": {"type": "string", "optional": True},
    "balance": {"type": "bytes", "optional": True, "name": "org.apache.kafka.connect.data.Decimal",
                "parameters": {"scale": "2", "connect.decimal.precision": "12"}},
    "signup": {"type": "int32", "optional": True, "name": "io.debezium.time.Date"},
    "updated_at": {"type": "int64", "optional": True, "name": "io.debezium.time.MicroTimestamp"},
}


def b64_decimal(cents):
    n = (cents.bit_length() + 8) // 8 or 1
    return base64.b64encode(cents.to_bytes(n, "big", signed=True)).decode()


def iso_date(days):
    return (EPOCH + dt.timedelta(days=days)).strftime("%Y-%m-%d")


def iso_ts(us):
    return (EPOCH + dt.timedelta(microseconds=us)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def dms_ts(us):
    return (EPOCH + dt.timedelta(microseconds=us)).strftime("%Y-%m-%d %H:%M:%S.%f")


def cents_text(cents):
    sign = "-" if cents < 0 else ""
    return f"{sign}{abs(cents) // 100}.{abs(cents) % 100:02d}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--changes", type=int, default=400)
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--initial", type=int, default=30)
    ap.add_argument("--parquet", action="store_true", help="also write DMS Parquet (pyarrow)")
    ap.add_argument("--composite", action="store_true",
                    help="key (region, id); transactions that share a position")
    a = ap.parse_args()
    rnd = random.Random(a.seed)
    key_cols = ["region", "id"] if a.composite else ["id"]
    cols = key_cols + ["email", "balance", "signup", "updated_at"]
    db = sqlite3.connect(":memory:")
    db.execute(f"CREATE TABLE t ({', '.join(cols)}, PRIMARY KEY ({', '.join(key_cols)}))")
    where = " AND ".join(f"{k}=?" for k in key_cols)
    lsn = [1000]
    clock = [START_US]

    def tick():
        lsn[0] += rnd.randint(1, 50)
        clock[0] += rnd.randint(1, 5_000_000)
        return lsn[0], clock[0]

    def key(r):
        return tuple(r[k] for k in key_cols)

    def new_row(k):
        r = dict(zip(key_cols, k))
        r.update({
            "email": rnd.choice([None, f"user{r['id']}.{rnd.randint(0, 999)}@example.com",
                                 f"Zoë \"{r['id']}\", o'hara@example.com"]),
            "balance": rnd.randint(-100_000, 10_000_000),
            "signup": rnd.randint(15_000, 20_800),
            "updated_at": clock[0],
        })
        return r

    def row_of(k):
        r = db.execute(f"SELECT {', '.join(cols)} FROM t WHERE {where}", k).fetchone()
        return dict(zip(cols, r)) if r else None

    def put(r):
        db.execute(f"INSERT OR REPLACE INTO t VALUES ({', '.join('?' * len(cols))})",
                   [r[c] for c in cols])

    next_id = [1]

    def fresh_key():
        next_id[0] += rnd.randint(1, 3)
        return (rnd.choice(REGIONS), next_id[0]) if a.composite else (next_id[0],)

    # The full load: rows that exist before change capture starts.
    load = []
    for _ in range(a.initial):
        r = new_row(fresh_key())
        put(r)
        load.append(r)
    snapshot_lsn, snapshot_us = tick()
    # (op, before, after, pos, us, txn); a key change is 'u' with both.
    changes = []
    deleted = []  # keys deleted (or moved away from) and not in use again
    txn = 0
    left_in_txn = 0
    last_key = None
    for _ in range(a.changes):
        keys = [tuple(x) for x in db.execute(f"SELECT {', '.join(key_cols)} FROM t")]
        roll = rnd.random()
        if left_in_txn == 0:
            # Without --composite every change is a transaction of its own.
            txn += 1
            left_in_txn = rnd.randint(1, 4) if a.composite else 1
            pos, us = tick()
            last_key = None
        left_in_txn -= 1
        if roll < 0.3 or not keys:
            # A third of the inserts take a key deleted before: the merge
            # must insert it again, not find it gone for good.
            reuse = deleted and rnd.random() < 0.35
            r = new_row(deleted.pop(rnd.randrange(len(deleted))) if reuse else fresh_key())
            put(r)
            changes.append(("c", None, r, pos, us, txn))
            last_key = key(r)
            continue
        # In a transaction, the key changed last is often changed again:
        # two changes of one key at one source position.
        k = last_key if last_key in keys and rnd.random() < 0.6 else rnd.choice(keys)
        before = row_of(k)
        if roll < 0.75:
            after = dict(before)
            after["email"] = rnd.choice([None, f"u{pos}.{len(changes)}@example.com",
                                         after["email"]])
            after["balance"] = rnd.randint(-100_000, 10_000_000)
            after["updated_at"] = us
            put(after)
            changes.append(("u", before, after, pos, us, txn))
            last_key = k
        elif roll < 0.9:
            db.execute(f"DELETE FROM t WHERE {where}", k)
            deleted.append(k)
            changes.append(("d", before, None, pos, us, txn))
            last_key = None
        else:
            after = dict(before)
            new_key = fresh_key()
            if a.composite and rnd.random() < 0.5:
                # Moved to another region, the same id.
                others = [x for x in REGIONS if x != before["region"]
                          and row_of((x, before["id"])) is None]
                new_key = (rnd.choice(others), before["id"]) if others else new_key
            if new_key in deleted:
                deleted.remove(new_key)
            after.update(zip(key_cols, new_key))
            after["updated_at"] = us
            db.execute(f"DELETE FROM t WHERE {where}", k)
            put(after)
            deleted.append(k)
            changes.append(("u", before, after, pos, us, txn))
            last_key = new_key

    os.makedirs(os.path.join(a.out, "debezium"), exist_ok=True)
    os.makedirs(os.path.join(a.out, "dms"), exist_ok=True)

    schema_fields = [dict(FIELD_TYPES[c], field=c) for c in cols]

    def dbz_row(r):
        if r is None:
            return None
        out = {c: r[c] for c in cols}
        out["balance"] = b64_decimal(r["balance"])
        return out

    def dbz_event(op, before, after, pos, us):
        if a.composite:
            source = {"connector": "mysql", "name": "shop", "file": "mysql-bin.000042",
                      "pos": pos, "row": 0, "ts_ms": us // 1000, "db": "shop",
                      "table": "customers"}
        else:
            source = {"connector": "postgresql", "name": "shop", "lsn": pos,
                      "ts_ms": us // 1000, "db": "shop", "schema": "public",
                      "table": "customers", "txId": pos // 7}
        payload = {"before": dbz_row(before), "after": dbz_row(after), "source": source,
                   "op": op, "ts_ms": us // 1000 + 3}
        if rnd.random() < 0.5:
            return json.dumps({"schema": {"type": "struct", "fields": [
                {"type": "struct", "fields": schema_fields, "optional": True, "field": "before"},
                {"type": "struct", "fields": schema_fields, "optional": True, "field": "after"},
            ], "name": "shop.public.customers.Envelope"}, "payload": payload})
        return json.dumps(payload)

    # Debezium files: about len/files events each, cut only between
    # transactions (the full load's reads are one transaction each).
    events = [("r", None, r, snapshot_lsn, snapshot_us, -i) for i, r in enumerate(load)]
    events += changes
    per_file = max(1, len(events) // a.files + 1)
    files, current = [], []
    for e in events:
        if len(current) >= per_file and current[-1][5] != e[5]:
            files.append(current)
            current = []
        current.append(e)
    files.append(current)
    for n, part in enumerate(files):
        lines = []
        for op, before, after, pos, us, _ in part:
            if op == "u" and key(before) != key(after) and rnd.random() < 0.5:
                # As the PostgreSQL connector writes a key change: a delete
                # (and its tombstone), then a create.
                lines.append(dbz_event("d", before, None, pos, us))
                lines.append("null")
                lines.append(dbz_event("c", None, after, pos, us))
                continue
            lines.append(dbz_event(op, before, after, pos, us))
            if op == "d":
                lines.append("null")
        with open(os.path.join(a.out, "debezium", f"changes-{n:04d}.jsonl"), "w") as out:
            out.write("\n".join(lines) + "\n")

    def csv_field(v):
        if v is None:
            return ""
        s = str(v)
        if any(c in s for c in ',"\n'):
            return '"' + s.replace('"', '""') + '"'
        return s

    def dms_line(op, r, us):
        values = [r[c] for c in cols]
        values[cols.index("balance")] = cents_text(r["balance"])
        values[cols.index("signup")] = iso_date(r["signup"])
        values[cols.index("updated_at")] = iso_ts(r["updated_at"])
        line = [dms_ts(us)] + values
        if op:
            line = [op] + line
        return ",".join(csv_field(c) for c in line)

    def dms_items(part):
        items = []
        for op, before, after, pos, us, _ in part:
            if op == "c":
                items.append(("I", after, us))
            elif op == "d":
                items.append(("D", before, us))
            elif key(before) != key(after):
                items.append(("D", before, us))
                items.append(("I", after, us))
            else:
                items.append(("U", after, us))
        return items

    with open(os.path.join(a.out, "dms", "LOAD00000001.csv"), "w") as out:
        for r in load:
            out.write(dms_line(None, r, snapshot_us) + "\n")
    # DMS files may cut a transaction: its shared commit time orders it
    # across files by the files' names.
    per_file = max(1, len(changes) // a.files + 1)
    dms_parts = []
    for f in range(0, len(changes), per_file):
        part = changes[f:f + per_file]
        stamp = (EPOCH + dt.timedelta(microseconds=part[0][4])).strftime("%Y%m%d-%H%M%S%f")[:-3]
        assert all(stamp != p for p, _ in dms_parts), f"two DMS files named {stamp}"
        dms_parts.append((stamp, dms_items(part)))
        with open(os.path.join(a.out, "dms", f"{stamp}.csv"), "w") as out:
            out.write("\n".join(dms_line(op, r, us) for op, r, us in dms_parts[-1][1]) + "\n")

    if a.parquet:
        write_dms_parquet(a.out, cols, load, snapshot_us, dms_parts)

    rows = [dict(zip(cols, r)) for r in
            db.execute(f"SELECT {', '.join(cols)} FROM t ORDER BY {', '.join(key_cols)}")]
    expected = [[r[c] for c in key_cols] + [r["email"], cents_text(r["balance"]),
                iso_date(r["signup"]), iso_ts(r["updated_at"])] for r in rows]
    with open(os.path.join(a.out, "expected.json"), "w") as out:
        json.dump(expected, out)


def write_dms_parquet(out_dir, cols, load, snapshot_us, parts):
    """The DMS files as the Parquet target endpoint writes them: native types,
    `Op` first in change files, no `Op` in the full load."""
    import decimal
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = os.path.join(out_dir, "dms_parquet")
    os.makedirs(folder, exist_ok=True)

    def ts(us):
        return EPOCH + dt.timedelta(microseconds=us)

    def table(items, with_op):
        out = {}
        if with_op:
            out["Op"] = pa.array([op for op, _, _ in items], pa.string())
        out["ts"] = pa.array([ts(us) for _, _, us in items], pa.timestamp("us"))
        for c in cols:
            values = [r[c] for _, r, _ in items]
            if c == "region":
                out[c] = pa.array(values, pa.string())
            elif c == "id":
                out[c] = pa.array(values, pa.int64())
            elif c == "email":
                out[c] = pa.array(values, pa.string())
            elif c == "balance":
                out[c] = pa.array([decimal.Decimal(v).scaleb(-2) for v in values],
                                  pa.decimal128(12, 2))
            elif c == "signup":
                out[c] = pa.array([(EPOCH + dt.timedelta(days=v)).date() for v in values],
                                  pa.date32())
            else:
                out[c] = pa.array([ts(v) for v in values], pa.timestamp("us", tz="UTC"))
        return pa.table(out)

    pq.write_table(table([(None, r, snapshot_us) for r in load], False),
                   os.path.join(folder, "LOAD00000001.parquet"))
    for stamp, items in parts:
        pq.write_table(table(items, True), os.path.join(folder, f"{stamp}.parquet"))


if __name__ == "__main__":
    main()
