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

SCHEMA_FIELDS = [
    {"type": "int64", "optional": False, "field": "id"},
    {"type": "string", "optional": True, "field": "email"},
    {"type": "bytes", "optional": True, "name": "org.apache.kafka.connect.data.Decimal",
     "parameters": {"scale": "2", "connect.decimal.precision": "12"}, "field": "balance"},
    {"type": "int32", "optional": True, "name": "io.debezium.time.Date", "field": "signup"},
    {"type": "int64", "optional": True, "name": "io.debezium.time.MicroTimestamp",
     "field": "updated_at"},
]


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
    a = ap.parse_args()
    rnd = random.Random(a.seed)
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, email TEXT, balance INTEGER,"
               " signup INTEGER, updated_at INTEGER)")
    lsn = [1000]
    clock = [START_US]

    def tick():
        lsn[0] += rnd.randint(1, 50)
        clock[0] += rnd.randint(1, 5_000_000)
        return lsn[0], clock[0]

    def new_row(id_):
        return {
            "id": id_,
            "email": rnd.choice([None, f"user{id_}.{rnd.randint(0, 999)}@example.com",
                                 f"Zoë \"{id_}\", o'hara@example.com"]),
            "balance": rnd.randint(-100_000, 10_000_000),
            "signup": rnd.randint(15_000, 20_800),
            "updated_at": clock[0],
        }

    def row_of(id_):
        r = db.execute("SELECT id, email, balance, signup, updated_at FROM customers WHERE id=?",
                       (id_,)).fetchone()
        return dict(zip(["id", "email", "balance", "signup", "updated_at"], r)) if r else None

    def put(r):
        db.execute("INSERT OR REPLACE INTO customers VALUES (?,?,?,?,?)",
                   (r["id"], r["email"], r["balance"], r["signup"], r["updated_at"]))

    next_id = [1]

    def fresh_id():
        next_id[0] += rnd.randint(1, 3)
        return next_id[0]

    # The full load: rows that exist before change capture starts.
    load = []
    for _ in range(a.initial):
        r = new_row(fresh_id())
        put(r)
        load.append(r)
    snapshot_lsn, snapshot_us = tick()
    changes = []  # (op, before, after, lsn, us); a key change is 'u' with both
    deleted = []  # keys deleted (or moved away from) and not in use again
    for _ in range(a.changes):
        ids = [x[0] for x in db.execute("SELECT id FROM customers")]
        roll = rnd.random()
        pos, us = tick()
        if roll < 0.3 or not ids:
            # A third of the inserts take a key deleted before: the merge
            # must insert it again, not find it gone for good.
            reuse = deleted and rnd.random() < 0.35
            r = new_row(deleted.pop(rnd.randrange(len(deleted))) if reuse else fresh_id())
            put(r)
            changes.append(("c", None, r, pos, us))
        elif roll < 0.75:
            before = row_of(rnd.choice(ids))
            after = dict(before)
            after["email"] = rnd.choice([None, f"u{pos}@example.com", after["email"]])
            after["balance"] = rnd.randint(-100_000, 10_000_000)
            after["updated_at"] = us
            put(after)
            changes.append(("u", before, after, pos, us))
        elif roll < 0.9:
            before = row_of(rnd.choice(ids))
            db.execute("DELETE FROM customers WHERE id=?", (before["id"],))
            deleted.append(before["id"])
            changes.append(("d", before, None, pos, us))
        else:
            before = row_of(rnd.choice(ids))
            after = dict(before)
            after["id"] = fresh_id()
            after["updated_at"] = us
            db.execute("UPDATE customers SET id=?, updated_at=? WHERE id=?",
                       (after["id"], us, before["id"]))
            deleted.append(before["id"])
            changes.append(("u", before, after, pos, us))

    os.makedirs(os.path.join(a.out, "debezium"), exist_ok=True)
    os.makedirs(os.path.join(a.out, "dms"), exist_ok=True)

    def dbz_row(r):
        if r is None:
            return None
        return {"id": r["id"], "email": r["email"], "balance": b64_decimal(r["balance"]),
                "signup": r["signup"], "updated_at": r["updated_at"]}

    def dbz_event(op, before, after, pos, us):
        payload = {"before": dbz_row(before), "after": dbz_row(after),
                   "source": {"connector": "postgresql", "name": "shop", "lsn": pos,
                              "ts_ms": us // 1000, "db": "shop", "schema": "public",
                              "table": "customers", "txId": pos // 7},
                   "op": op, "ts_ms": us // 1000 + 3}
        if rnd.random() < 0.5:
            return json.dumps({"schema": {"type": "struct", "fields": [
                {"type": "struct", "fields": SCHEMA_FIELDS, "optional": True, "field": "before"},
                {"type": "struct", "fields": SCHEMA_FIELDS, "optional": True, "field": "after"},
            ], "name": "shop.public.customers.Envelope"}, "payload": payload})
        return json.dumps(payload)

    events = [("r", None, r, snapshot_lsn, snapshot_us) for r in load] + changes
    per_file = max(1, len(events) // a.files + 1)
    for f in range(0, len(events), per_file):
        lines = []
        for op, before, after, pos, us in events[f:f + per_file]:
            if op == "u" and before["id"] != after["id"] and rnd.random() < 0.5:
                # As the PostgreSQL connector writes a key change: a delete
                # (and its tombstone), then a create.
                lines.append(dbz_event("d", before, None, pos, us))
                lines.append("null")
                lines.append(dbz_event("c", None, after, pos, us))
                continue
            lines.append(dbz_event(op, before, after, pos, us))
            if op == "d":
                lines.append("null")
        name = os.path.join(a.out, "debezium", f"changes-{f // per_file:04d}.jsonl")
        with open(name, "w") as out:
            out.write("\n".join(lines) + "\n")

    def csv_field(v):
        if v is None:
            return ""
        s = str(v)
        if any(c in s for c in ',"\n'):
            return '"' + s.replace('"', '""') + '"'
        return s

    def dms_line(op, r, us):
        cols = [dms_ts(us), r["id"], r["email"], cents_text(r["balance"]),
                iso_date(r["signup"]), iso_ts(r["updated_at"])]
        if op:
            cols = [op] + cols
        return ",".join(csv_field(c) for c in cols)

    with open(os.path.join(a.out, "dms", "LOAD00000001.csv"), "w") as out:
        for r in load:
            out.write(dms_line(None, r, snapshot_us) + "\n")
    per_file = max(1, len(changes) // a.files + 1)
    for f in range(0, len(changes), per_file):
        part = changes[f:f + per_file]
        lines = []
        for op, before, after, pos, us in part:
            if op == "c":
                lines.append(dms_line("I", after, us))
            elif op == "d":
                lines.append(dms_line("D", before, us))
            elif before["id"] != after["id"]:
                lines.append(dms_line("D", before, us))
                lines.append(dms_line("I", after, us))
            else:
                lines.append(dms_line("U", after, us))
        first_us = part[0][4]
        stamp = (EPOCH + dt.timedelta(microseconds=first_us)).strftime("%Y%m%d-%H%M%S%f")[:-3]
        with open(os.path.join(a.out, "dms", f"{stamp}.csv"), "w") as out:
            out.write("\n".join(lines) + "\n")

    if a.parquet:
        write_dms_parquet(a.out, load, snapshot_us, changes, per_file)

    rows = [dict(zip(["id", "email", "balance", "signup", "updated_at"], r)) for r in
            db.execute("SELECT id, email, balance, signup, updated_at FROM customers ORDER BY id")]
    expected = [[r["id"], r["email"], cents_text(r["balance"]), iso_date(r["signup"]),
                 iso_ts(r["updated_at"])] for r in rows]
    with open(os.path.join(a.out, "expected.json"), "w") as out:
        json.dump(expected, out)


def write_dms_parquet(out_dir, load, snapshot_us, changes, per_file):
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
        cols = {}
        if with_op:
            cols["Op"] = pa.array([op for op, _, _ in items], pa.string())
        cols["ts"] = pa.array([ts(us) for _, _, us in items], pa.timestamp("us"))
        cols["id"] = pa.array([r["id"] for _, r, _ in items], pa.int64())
        cols["email"] = pa.array([r["email"] for _, r, _ in items], pa.string())
        cols["balance"] = pa.array(
            [decimal.Decimal(r["balance"]).scaleb(-2) for _, r, _ in items], pa.decimal128(12, 2))
        cols["signup"] = pa.array(
            [(EPOCH + dt.timedelta(days=r["signup"])).date() for _, r, _ in items], pa.date32())
        cols["updated_at"] = pa.array(
            [ts(r["updated_at"]) for _, r, _ in items], pa.timestamp("us", tz="UTC"))
        return pa.table(cols)

    pq.write_table(table([(None, r, snapshot_us) for r in load], False),
                   os.path.join(folder, "LOAD00000001.parquet"))
    for f in range(0, len(changes), per_file):
        part = changes[f:f + per_file]
        items = []
        for op, before, after, pos, us in part:
            if op == "c":
                items.append(("I", after, us))
            elif op == "d":
                items.append(("D", before, us))
            elif before["id"] != after["id"]:
                items.append(("D", before, us))
                items.append(("I", after, us))
            else:
                items.append(("U", after, us))
        stamp = (EPOCH + dt.timedelta(microseconds=part[0][4])).strftime("%Y%m%d-%H%M%S%f")[:-3]
        pq.write_table(table(items, True), os.path.join(folder, f"{stamp}.parquet"))


if __name__ == "__main__":
    main()
