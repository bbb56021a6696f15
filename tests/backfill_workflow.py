"""The backfill workflow (infra/backfill.asl.json), run for real on this machine.

moto's server executes the state machine; the real planner, transform and
catalog binaries run under `cargo lambda watch`; the state machine's Lambda
invocations are forwarded to `cargo lambda watch` (moto cannot run Rust
functions itself). Then the Glue partitions and the Parquet data that result
are checked against the raw files, and every Map item's outcome is checked in
the execution history (this server reports a Distributed Map as succeeded even
when an item failed; the workflow's own Register step must catch it).

Each binary is held to its own role of template.yaml (tests/iam.py): a call
its role would refuse is refused, and fails the run.

Run by scripts/test; prints one `ok:` line per check, `FAILED:` and exits 1
on the first failure. Stops everything it started.
"""

import io
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import boto3
from botocore.response import StreamingBody
import duckdb
from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils

sys.path.insert(0, str(Path(__file__).resolve().parent))
import iam  # noqa: E402

logging.getLogger("werkzeug").setLevel(logging.ERROR)
# The interpreter logs every failure it handles (the failing chunk below) at length.
logging.getLogger("moto").setLevel(logging.CRITICAL)

REPO = Path(__file__).resolve().parent.parent
RAW_BUCKET = "sluice-raw"
LAKE_BUCKET = "sluice-lake"
DATABASE = "sluice_backfill"
ACCOUNT = "123456789012"
REGION = "us-east-1"
FUNCTIONS = ("planner", "transform", "catalog", "compactor")
CDC_TABLES = ("customers_dbz", "customers_dms", "customers_dmsp")

# Python deltalake (SLUICE_DELTA_PYTHON: its own environment) reading Delta
# tables in the moto S3: each table's rows as text, as expected.json holds them.
READ_DELTA = """
import json, os, sys, deltalake
opts = {k: os.environ[k] for k in ("AWS_ENDPOINT_URL", "AWS_REGION", "AWS_ACCESS_KEY_ID",
                                   "AWS_SECRET_ACCESS_KEY")}
opts["AWS_ALLOW_HTTP"] = "true"
def text(v):
    if v is None: return "None"
    if hasattr(v, "strftime") and hasattr(v, "hour"): return v.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return str(v)
cols = ["id", "email", "balance", "signup", "updated_at"]
out = {}
for t in sys.argv[2:]:
    rows = deltalake.DeltaTable(f"s3://{sys.argv[1]}/{t}", storage_options=opts).to_pyarrow_table().to_pylist()
    out[t] = sorted([text(r[c]) for c in cols] for r in rows)
print(json.dumps(out))
# The readers' threads can abort the interpreter's shutdown after the
# answer is out: end the process at once.
sys.stdout.flush()
os._exit(0)
"""


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def check(ok, what, detail=""):
    if ok:
        print(f"ok: {what}", flush=True)
    else:
        print(f"FAILED: {what}: {detail}", flush=True)
        raise SystemExit(1)


class LambdaForwarder:
    """What moto's state machine interpreter uses as its Lambda client. Its
    invoke goes to `cargo lambda watch`, with the function ARN of the
    definition turned into the binary's name, and answers as Lambda's Invoke
    API does: status 200, and `FunctionError: Unhandled` with the error
    document when the function failed (cargo lambda watch answers a failed
    invocation with HTTP 500 instead). Every call is recorded."""

    def __init__(self, endpoint):
        self.endpoint = endpoint
        self.calls = []

    def invoke(self, **params):
        name = params["FunctionName"]
        m = re.match(r"^arn:aws:lambda:[^:]+:\d+:function:([^:]+)(:.*)?$", name)
        binary = m.group(1) if m else name
        if binary not in FUNCTIONS:
            raise ValueError(f"the workflow invoked {name}, which is no function of functions/")
        payload = params.get("Payload") or b"{}"
        if isinstance(payload, str):
            payload = payload.encode()
        req = urllib.request.Request(
            f"{self.endpoint}/2015-03-31/functions/{binary}/invocations",
            data=payload, method="POST", headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=900) as r:
                body, error = r.read(), None
        except urllib.error.HTTPError as e:
            body = e.read()
            try:
                doc = json.loads(body)
            except ValueError:
                doc = None
            if not (isinstance(doc, dict) and "errorType" in doc):
                raise
            error = "Unhandled"
        self.calls.append({
            "function": binary,
            "input": json.loads(payload),
            "error": error,
            "output": json.loads(body),
        })
        response = {
            "StatusCode": 200,
            "ExecutedVersion": "$LATEST",
            "Payload": StreamingBody(io.BytesIO(body), len(body)),
            "ResponseMetadata": {"RequestId": str(uuid.uuid4()), "HTTPStatusCode": 200,
                                 "HTTPHeaders": {}, "RetryAttempts": 0},
        }
        if error:
            response["FunctionError"] = error
        return response

    def of(self, function):
        return [c for c in self.calls if c["function"] == function]


def main():
    work = Path(tempfile.mkdtemp(prefix="sluice-backfill-"))
    watch = None
    server = None
    try:
        # 1. moto, with state machine execution on. Its interpreter reaches S3
        #    (ItemReader, ResultWriter) through MOTO_PORT.
        port = free_port()
        os.environ["MOTO_PORT"] = str(port)
        endpoint = f"http://127.0.0.1:{port}"
        # Each function binary held to its own role (tests/iam.py).
        server, gate = iam.serve(port)
        req = urllib.request.Request(
            f"{endpoint}/moto-api/config",
            data=json.dumps({"stepfunctions": {"execute_state_machine": True}}).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        urllib.request.urlopen(req).read()
        env = {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ALLOW_HTTP": "true",
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        os.environ.update(env)
        s3 = boto3.client("s3", endpoint_url=endpoint)
        glue = boto3.client("glue", endpoint_url=endpoint)
        sfn = boto3.client("stepfunctions", endpoint_url=endpoint)

        # 2. What the template creates (buckets, database) and what a user
        #    uploads (the pipeline file, raw files: the example data cut into
        #    several files, plus a file no table matches).
        for b in (RAW_BUCKET, LAKE_BUCKET):
            s3.create_bucket(Bucket=b)
        glue.create_database(DatabaseInput={"Name": DATABASE})
        # The stack's roles over them: the server tells the function binaries
        # (planner, transform, ...) apart by the process holding each
        # connection, and refuses what their roles do not allow.
        queues = ["ChunkQueue", "CatalogQueue", "CompactionQueue", "PlannerDeadLetterQueue",
                  "SweepDeadLetterQueue", "StreamFailureQueue"]
        ask = {"stack": "backfill", "programs": True,
               "parameters": {"RawBucketName": RAW_BUCKET, "LakeBucketName": LAKE_BUCKET,
                              "GlueDatabaseName": DATABASE},
               "resources": {q: {"Ref": q, "Arn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{q}"} for q in queues}}
        req = urllib.request.Request(f"{endpoint}/__iam/stack", data=json.dumps(ask).encode(), method="POST")
        roles = json.load(urllib.request.urlopen(req))
        check("CatalogFunction" in roles, "the stack's roles are deployed over the buckets", roles)
        # The example's pipeline file without [lake] and [input]: deployed, the
        # functions take both roots and the Glue database from the stack.
        config = (REPO / "examples/clickstream/sluice.toml").read_text()
        config = config.replace('[lake]\nroot = "./lake"\n', "").replace(
            '[input]\nroot = "examples/clickstream/raw"\n', "")
        assert "[lake]" not in config and "[input]" not in config, "the example changed shape"
        # And the CDC example's tables (Delta, merged by key), their change
        # files under raw/cdc/.
        cdc = (REPO / "examples/cdc/sluice.toml").read_text()
        cdc = cdc[cdc.index("[[tables]]"):]
        cdc = re.sub(r'source = "(debezium|dms|dms_parquet)/"', r'source = "cdc/\1/"\ntable_format = "delta"', cdc)
        assert cdc.count('table_format = "delta"') == len(CDC_TABLES), "the CDC example changed shape"
        config += "\n" + cdc
        s3.put_object(Bucket=LAKE_BUCKET, Key="_sluice/config/sluice.toml", Body=config.encode())
        raw = REPO / "examples/clickstream/raw/clickstream"
        lines = (raw / "events-00000.jsonl").read_bytes().splitlines(keepends=True)
        local = work / "raw"
        local.mkdir()
        quarter = len(lines) // 4
        parts = [lines[i * quarter : (i + 1) * quarter if i < 3 else len(lines)] for i in range(4)]
        for i, part in enumerate(parts):
            (local / f"part-{i}.jsonl").write_bytes(b"".join(part))
        shutil.copy(raw / "events-00001.jsonl.gz", local / "events-00001.jsonl.gz")
        for f in sorted(local.iterdir()):
            s3.upload_file(str(f), RAW_BUCKET, f"raw/clickstream/2026/{f.name}")
        s3.put_object(Bucket=RAW_BUCKET, Key="raw/clickstream/2026/_SUCCESS", Body=b"")
        s3.put_object(Bucket=RAW_BUCKET, Key="raw/other/readme.txt", Body=b"not data")

        # 3. The real functions under cargo lambda watch, configured as the
        #    template configures them (small chunks: many Map items).
        lambda_env = dict(
            env,
            SLUICE_CONFIG=f"s3://{LAKE_BUCKET}/_sluice/config/sluice.toml",
            SLUICE_LAKE=f"s3://{LAKE_BUCKET}",
            SLUICE_INPUT=f"s3://{RAW_BUCKET}/raw/",
            SLUICE_GLUE_DATABASE=DATABASE,
            SLUICE_CHUNK_SIZE="256KiB",
            SLUICE_COMPACT_MIN_FILES="2",
            # Pages of 3 tasks: every backfill below spans several pages
            # (manifests, Maps, Register and Compact calls).
            SLUICE_PLAN_PAGE="3",
            RUST_LOG="info",
        )
        env_file = work / "lambda.env"
        env_file.write_text("".join(f"{k}={v}\n" for k, v in lambda_env.items()))
        invoke_port = free_port()
        watch_log = open(work / "watch.log", "wb")
        watch = subprocess.Popen(
            # --timeout: the deadline the functions see (the template gives 900 s).
            ["cargo", "lambda", "watch", "--quiet", "--timeout", "900", "--env-file", str(env_file),
             "-A", "127.0.0.1", "-P", str(invoke_port)],
            cwd=REPO, stdout=watch_log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        for _ in range(600):
            try:
                socket.create_connection(("127.0.0.1", invoke_port), 1).close()
                break
            except OSError:
                time.sleep(0.5)
        forwarder = LambdaForwarder(f"http://127.0.0.1:{invoke_port}")
        original = lambda_eval_utils.boto_client_for

        def boto_client_for(region, service, state_credentials=None):
            if service == "lambda":
                return forwarder
            return original(region=region, service=service, state_credentials=state_credentials)

        lambda_eval_utils.boto_client_for = boto_client_for

        # 4. The state machine from infra/, with the substitutions the
        #    template makes.
        definition = (REPO / "infra/backfill.asl.json").read_text()
        substitutions = {
            "PlannerFunctionArn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:planner",
            "TransformFunctionArn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:transform",
            "CatalogFunctionArn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:catalog",
            "CompactorFunctionArn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:compactor",
            "LakeBucket": LAKE_BUCKET,
            "MapMaxConcurrency": "4",
            "MapToleratedFailurePercentage": "0",
            "Partition": "aws",
        }
        for k, v in substitutions.items():
            definition = definition.replace("${" + k + "}", v)
        left = re.findall(r"\$\{[^}]+\}", definition)
        check(not left, "every placeholder of the definition is substituted", left)
        machine = sfn.create_state_machine(
            name="sluice-backfill",
            definition=definition,
            roleArn=f"arn:aws:iam::{ACCOUNT}:role/sluice-backfill",
            type="STANDARD",
        )["stateMachineArn"]

        def run(name, payload):
            arn = sfn.start_execution(
                stateMachineArn=machine, name=name, input=json.dumps(payload)
            )["executionArn"]
            deadline = time.time() + 600
            while True:
                d = sfn.describe_execution(executionArn=arn)
                if d["status"] != "RUNNING":
                    break
                if time.time() > deadline:
                    raise SystemExit(f"FAILED: execution {name} still running after 600 s")
                time.sleep(0.5)
            events = []
            kwargs = {"executionArn": arn, "maxResults": 1000}
            while True:
                page = sfn.get_execution_history(**kwargs)
                events += page["events"]
                if not page.get("nextToken"):
                    break
                kwargs["nextToken"] = page["nextToken"]
            return d, events

        # 5. A backfill of the prefix.
        started = time.time()
        d, events = run("backfill-1", {"bucket": RAW_BUCKET, "prefix": "raw/clickstream/2026/"})
        took = time.time() - started
        if d["status"] != "SUCCEEDED":
            sys.stdout.write((work / "watch.log").read_text()[-4000:])
        check(d["status"] == "SUCCEEDED", f"backfill execution succeeded ({took:.1f} s)",
              json.dumps({k: str(v) for k, v in d.items()})[:3000])
        out = json.loads(d["output"])
        totals = out["totals"]
        check(totals["objects"] == 5 and totals["skipped_total"] == 1,
              "the planner planned 5 objects and skipped _SUCCESS", totals)
        tasks = totals["tasks"]
        check(tasks >= 8, f"the planner cut them into {tasks} chunk tasks", totals)
        plans = forwarder.of("planner")
        pages = len(plans)
        check(pages >= 3 and totals["pages"] == pages and out["plan"]["next"] is None,
              f"the plan came in {pages} pages (a page closes at 3 tasks), the last one saying so",
              [c["output"] for c in plans])
        afters = [c["input"].get("after") for c in plans]
        check(afters == [""] + [c["output"]["next"] for c in plans[:-1]],
              "each page started after the last key the page before it looked at", afters)
        manifests = [c["output"]["manifest"] for c in plans]
        pages_tasks = [json.loads(s3.get_object(Bucket=LAKE_BUCKET, Key=m["key"])["Body"].read())
                       for m in manifests]
        check(all(len(t) == m["tasks"] for t, m in zip(pages_tasks, manifests)),
              "each page's manifest holds its page's tasks", [len(t) for t in pages_tasks])
        manifest = [t for page in pages_tasks for t in page]
        check(len(manifest) == tasks
              and len({json.dumps(t, sort_keys=True) for t in manifest}) == tasks,
              "the manifests hold every task once", len(manifest))

        # Every Map item, as the forwarder saw it: each task of the manifests
        # went to the transform once, and its answer names its own commit
        # record (this server's history has no per-item events).
        items = forwarder.of("transform")
        inputs = sorted(json.dumps(c["input"], sort_keys=True) for c in items)
        check(inputs == sorted(json.dumps(t, sort_keys=True) for t in manifest),
              f"the Maps ran each of the {tasks} tasks once, as the planner wrote it",
              f"{len(items)} transform calls")
        failed = [c for c in items if c["error"]]
        check(not failed, "every Map item succeeded", failed[:2])
        commits = {c["output"]["commit"] for c in items}
        check(len(commits) == tasks
              and all(c["output"]["rows_rejected"] == 0 and c["output"]["files"] > 0 for c in items),
              "every item's output names its own commit record, no rejected rows",
              [c["output"] for c in items][:2])
        registers = forwarder.of("catalog")
        compacts = forwarder.of("compactor")
        check(len(registers) == pages and len(compacts) == pages
              and [c["input"]["manifest"] for c in registers] == manifests,
              "the workflow registered and compacted each page once, with that page's manifest",
              [c["function"] for c in forwarder.calls])
        check(totals["commits"] == tasks and totals["missing_total"] == 0
              and all(c["output"]["tables"] == ["clickstream"] for c in registers)
              and totals["partitions_added"] > 0,
              f"the Register steps registered {totals['commits']} commit records, "
              f"{totals['partitions_added']} partitions", totals)

        reports = [c["output"] for c in compacts]
        check(all("next" not in r for r in reports) and sum(r["compacted"] for r in reports) > 0,
              f"the Compact steps merged {sum(r['inputs'] for r in reports)} files into "
              f"{sum(r['outputs'] for r in reports)} (an output and its inputs were both listed "
              f"for at most {max(r['max_overlap_ms'] for r in reports)} ms)", reports)

        # 6. Glue: the table and its partitions, where the files are.
        table = glue.get_table(DatabaseName=DATABASE, Name="clickstream")["Table"]
        check(table["StorageDescriptor"]["Location"] == f"s3://{LAKE_BUCKET}/clickstream/"
              and [k["Name"] for k in table["PartitionKeys"]] == ["dt", "event_type"]
              and table["Parameters"].get("classification") == "parquet",
              "Glue table clickstream: Parquet, partitioned by (dt, event_type)", table)
        partitions = []
        for page in glue.get_paginator("get_partitions").paginate(
            DatabaseName=DATABASE, TableName="clickstream"
        ):
            partitions += page["Partitions"]
        keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=LAKE_BUCKET, Prefix="clickstream/") for o in page.get("Contents", [])]
        folders = {k.rsplit("/", 1)[0] + "/" for k in keys if k.endswith(".parquet")}
        locations = {p["StorageDescriptor"]["Location"].removeprefix(f"s3://{LAKE_BUCKET}/")
                     for p in partitions}
        check(len(partitions) == totals["partitions_added"] and locations == folders,
              f"{len(partitions)} Glue partitions, each at a folder of Parquet files",
              f"{sorted(locations ^ folders)[:5]}")
        per_folder = {}
        for k in keys:
            if k.endswith(".parquet"):
                per_folder[k.rsplit("/", 1)[0]] = per_folder.get(k.rsplit("/", 1)[0], 0) + 1
        check(all(n == 1 for n in per_folder.values()),
              "after the backfill every partition holds one file",
              {f: n for f, n in per_folder.items() if n != 1})
        with_figures = [p for p in partitions if "numFiles" in p.get("Parameters", {})]
        # (A partition two pages wrote to is compacted by both.)
        check(0 < len(with_figures) <= sum(r["compacted"] for r in reports)
              and all(p["Parameters"]["numFiles"] == "1" for p in with_figures),
              "Glue has the file and row counts of every compacted partition",
              [p.get("Parameters") for p in partitions][:3])

        # 7. The Parquet data, read back with DuckDB, against the raw files.
        lake = work / "lake"
        for k in keys:
            dest = lake / k
            dest.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(LAKE_BUCKET, k, str(dest))
        con = duckdb.connect()
        con.sql("SET TimeZone='UTC'")
        q = lambda s: [tuple(map(str, r)) for r in con.sql(s).fetchall()]
        types_ = ("{'event_id':'VARCHAR','event_time':'VARCHAR','user_id':'BIGINT','session_id':'VARCHAR',"
                  "'event_type':'VARCHAR','page':'VARCHAR','referrer':'VARCHAR','country':'VARCHAR',"
                  "'device':'VARCHAR','ip':'VARCHAR','price':'DECIMAL(10,2)','properties':'VARCHAR'}")
        # Every column of every row, the example's SQL applied on DuckDB's side;
        # compared as multisets (EXCEPT ALL both ways).
        con.sql(f"""CREATE TABLE lake_rows AS
            SELECT event_id, CAST(event_time AS TIMESTAMPTZ) AS event_time, user_id, session_id, page, referrer,
                   country, device, ip_hash, price, json(properties)::VARCHAR AS properties,
                   CAST(dt AS VARCHAR) AS dt, event_type
            FROM read_parquet('{lake}/clickstream/**/*.parquet', hive_partitioning=true)""")
        con.sql(f"""CREATE TABLE raw_rows AS
            SELECT event_id, CAST(event_time AS TIMESTAMPTZ) AS event_time, user_id, session_id, page, referrer,
                   lower(country) AS country, device, sha256(ip) AS ip_hash, price,
                   json(properties)::VARCHAR AS properties,
                   CAST(CAST(CAST(event_time AS TIMESTAMPTZ) AS DATE) AS VARCHAR) AS dt, event_type
            FROM read_json('{local}/*', columns={types_})
            WHERE event_type IS NOT NULL""")
        only_lake = q("SELECT * FROM (SELECT * FROM lake_rows EXCEPT ALL SELECT * FROM raw_rows) ORDER BY ALL")
        only_raw = q("SELECT * FROM (SELECT * FROM raw_rows EXCEPT ALL SELECT * FROM lake_rows) ORDER BY ALL")
        rows = int(q("SELECT count(*) FROM raw_rows")[0][0])
        check(rows > 0 and not only_lake and not only_raw,
              f"the lake holds exactly the raw rows, every column compared: {rows} rows",
              f"only in the lake: {len(only_lake)} {only_lake[:3]}; only in the raw files: {len(only_raw)} {only_raw[:3]}")
        want = q("SELECT dt, event_type, count(*) FROM raw_rows GROUP BY ALL ORDER BY ALL")
        check({tuple(sorted(p["Values"])) for p in partitions}
              == {tuple(sorted(r[:2])) for r in want},
              "the Glue partition values are the (dt, event_type) pairs of the data")

        # 8. Run again: nothing new, nothing doubled.
        before = len(keys)
        d, _ = run("backfill-2", {"bucket": RAW_BUCKET, "prefix": "raw/clickstream/2026/"})
        out = json.loads(d.get("output") or "{}")
        keys2 = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=LAKE_BUCKET, Prefix="clickstream/") for o in page.get("Contents", [])]
        check(d["status"] == "SUCCEEDED" and out["totals"]["partitions_added"] == 0
              and out["totals"]["commits"] == tasks and len(keys2) == before,
              "a second backfill of the same prefix adds no partition and no file",
              f"{d['status']} {out.get('totals')} {len(keys2)} vs {before}")

        # 9. A chunk that fails (a gzip cut short): the Map still "succeeds"
        #    on this server with tolerance 0 or not, but the execution must fail,
        #    naming the chunk, after registering the good ones.
        gz = (raw / "events-00001.jsonl.gz").read_bytes()
        s3.put_object(Bucket=RAW_BUCKET, Key="raw/clickstream/2027/cut.jsonl.gz", Body=gz[: len(gz) // 2])
        s3.put_object(Bucket=RAW_BUCKET, Key="raw/clickstream/2027/good.jsonl",
                      Body=b"".join(parts[0][:100]).replace(b'"2026-', b'"2027-'))
        forwarder.calls.clear()
        d, events = run("backfill-broken", {"bucket": RAW_BUCKET, "prefix": "raw/clickstream/2027/"})
        cause = d.get("cause", "")
        check(d["status"] == "FAILED" and d.get("error") == "Sluice.ChunksFailed"
              and "cut.jsonl.gz" in cause and "1 of 2 chunks" in cause,
              "a backfill with a failed chunk ends FAILED (Sluice.ChunksFailed), naming the file",
              f"{d['status']} {d.get('error')} {cause[:500]}")
        good = glue.get_partitions(DatabaseName=DATABASE, TableName="clickstream",
                                   Expression="dt >= '2027-01-01'")["Partitions"]
        check(len(good) > 0, "the good chunk of that backfill is registered all the same",
              len(good))
        failed = [c for c in forwarder.of("transform") if c["error"]]
        check(len(failed) == 1 and failed[0]["output"].get("errorType") == "Sluice.Permanent"
              and "cut.jsonl.gz" in failed[0]["output"].get("errorMessage", ""),
              "the failed item failed for good (Sluice.Permanent, not retried), naming the file",
              failed)
        map_state = [e for e in events if e["type"].startswith("MapRun")]
        print(f"   (this server recorded {[e['type'] for e in map_state]} for that Map)")

        # 10. Change data capture: the CDC example's Debezium, DMS CSV and DMS
        #     Parquet files backfilled; the Register step merges each table's
        #     staged changes into its Delta table, which must then equal the
        #     source database's table (examples/cdc/expected.json), twice.
        cdc_raw = REPO / "examples/cdc/raw"
        for f in sorted(cdc_raw.rglob("*")):
            if f.is_file():
                s3.upload_file(str(f), RAW_BUCKET, f"raw/cdc/{f.relative_to(cdc_raw)}")
        want = sorted([("None" if v is None else str(v)) for v in r]
                      for r in json.loads((REPO / "examples/cdc/expected.json").read_text()))
        delta_python = os.environ.get("SLUICE_DELTA_PYTHON", str(REPO / ".venv-delta/bin/python"))
        for attempt in ("backfill-cdc", "backfill-cdc-again"):
            forwarder.calls.clear()
            d, _ = run(attempt, {"bucket": RAW_BUCKET, "prefix": "raw/cdc/"})
            if d["status"] != "SUCCEEDED":
                sys.stdout.write((work / "watch.log").read_text()[-4000:])
            out = json.loads(d.get("output") or "{}")
            totals = out.get("totals", {})
            # Merged page by page: what every Register call merged, summed.
            registers = [c["output"] for c in forwarder.of("catalog")]
            tables = sorted({t for r in registers for t in r.get("tables", [])})
            merged = {k: sum(r.get("cdc", {}).get(k, 0) for r in registers)
                      for k in ("changes", "upserted", "deleted", "stale")}
            if attempt == "backfill-cdc":
                check(d["status"] == "SUCCEEDED" and tables == sorted(CDC_TABLES)
                      and merged["changes"] > 0 and totals.get("missing_total") == 0
                      and totals.get("pages", 0) > 1,
                      f"a backfill of CDC change files merges them, in {totals.get('pages')} pages: {merged}",
                      f"{d['status']} {d.get('cause', '')[:500]} {totals} {registers}")
            else:
                check(d["status"] == "SUCCEEDED" and merged["changes"] == 0,
                      "a second backfill of the same change files merges nothing", f"{d['status']} {registers}")
            read = subprocess.run([delta_python, "-c", READ_DELTA, LAKE_BUCKET, *CDC_TABLES],
                                  capture_output=True, text=True, env=dict(os.environ))
            check(read.returncode == 0, "Python deltalake reads the CDC tables in S3", read.stderr[-2000:])
            got = json.loads(read.stdout)
            for t in CDC_TABLES:
                check(got[t] == want, f"{t} equals the source database's table, row for row ({len(want)} rows)",
                      f"only in the lake: {[r for r in got[t] if r not in want][:3]}; "
                      f"only in the source: {[r for r in want if r not in got[t]][:3]}")

        # 11. The Compact loop's cap: the definition's CompactFrom and
        #     CompactCap states, fed a compactor answer that always says "go
        #     on", stop after 100 calls and go on to MorePages.
        states = json.loads(definition)["States"]
        settings = {k: v for k, v in states["Settings"]["Parameters"].items() if not k.endswith(".$")}
        loop = {
            "StartAt": "Settings",
            "States": {
                "Settings": {"Type": "Pass",
                             "Result": settings | {"max_concurrency": 1, "tolerated_failure_percentage": 0},
                             "ResultPath": "$.settings", "Next": "Compact"},
                "Compact": {"Type": "Pass", "Result": {"next": 3}, "ResultPath": "$.compact.report",
                            "Next": "CompactFrom"},
                "CompactFrom": states["CompactFrom"],
                "CompactCap": states["CompactCap"],
                "MorePages": {"Type": "Succeed"},
            },
        }
        capped = sfn.create_state_machine(name="sluice-compact-cap", definition=json.dumps(loop),
                                          roleArn=f"arn:aws:iam::{ACCOUNT}:role/sluice-backfill",
                                          type="STANDARD")["stateMachineArn"]
        arn = sfn.start_execution(stateMachineArn=capped, input="{}")["executionArn"]
        deadline = time.time() + 120
        while (d := sfn.describe_execution(executionArn=arn))["status"] == "RUNNING" and time.time() < deadline:
            time.sleep(0.2)
        settings = json.loads(d.get("output") or "{}").get("settings", {})
        check(d["status"] == "SUCCEEDED" and settings.get("compact_calls") == 100
              and settings.get("compact_from") == 3,
              "the Compact loop stops after 100 calls (the sweep does the rest)", f"{d['status']} {settings}")
        denied = gate.denials
        check(not denied, "every function binary kept to its role",
              [f"{d['function']}: {d['action']} on {d['resource']}" for d in denied][:10])
        print("backfill-workflow: all checks passed", flush=True)
    finally:
        if watch is not None:
            try:
                os.killpg(watch.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                watch.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(watch.pid, signal.SIGKILL)
        if server is not None:
            server.shutdown()
        if os.environ.get("SLUICE_KEEP_WORK"):
            print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
