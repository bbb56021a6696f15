"""The Lambda functions' cold start and memory, on this machine (issue 37).

Each release binary is started as Lambda starts it: with
`AWS_LAMBDA_RUNTIME_API` pointing at a Runtime API served here (the
`/2018-06-01/runtime/invocation/next` long poll and its `response` and
`error` posts), against moto's S3 and Glue on 127.0.0.1 holding the bundled
example and the pipeline file, as scripts/lambda-local lays them out.

For each function it prints, over `--starts` fresh processes:
- init: from exec to the binary's first `next` (runtime, settings read from
  S3, engine and clients built), the median and the slowest;
- the first event's time, and the process's peak RSS after it (VmHWM), against
  the function's MemorySize default in template.yaml.

Each process runs on one core (`taskset`), as a function of up to 1,769 MB
has one vCPU.

Then one transform of a large chunk (`--big-mb` MB of generated clickstream,
one chunk), the transform's time and peak RSS, the figure that sizes the
function's memory.

Not measured here: Lambda's own part of a cold start (fetching and unpacking
the package, starting the microVM), which grows with the package's size.

    python bench/functions.py --bin target/release [--starts 5] [--big-mb 128] [--sluice target/release/sluice]
        [--functions planner,transform,...] [--runner "qemu-aarch64 -L /usr/aarch64-linux-gnu"]

`--runner` starts each binary through that command: an arm64 cross build
under qemu's user-mode emulator (Debian's qemu-user), to compare two builds
of it with each other in one run; its times are the emulator's, not arm64's.
"""

import argparse
import http.server
import json
import os
import queue
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


class Runtime:
    """Lambda's Runtime API for one process (a server of its own, so that a
    poll of a process already stopped cannot take the next one's event):
    `invoke(event)` hands the event to the next `next` poll and waits for
    its response."""

    def __init__(self):
        self.events = queue.Queue()
        self.answers = queue.Queue()
        self.first_poll = None
        runtime = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def reply(self, code, body=b"", headers=()):
                self.send_response(code)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                if not self.path.endswith("/runtime/invocation/next"):
                    return self.reply(404)
                if runtime.first_poll is None:
                    runtime.first_poll = time.perf_counter()
                event = runtime.events.get()
                if event is None:  # the process is being stopped
                    return self.reply(500)
                request_id, body = event
                deadline = int(time.time() * 1000) + 900_000
                self.reply(200, body, [
                    ("Lambda-Runtime-Aws-Request-Id", request_id),
                    ("Lambda-Runtime-Deadline-Ms", str(deadline)),
                    ("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:123456789012:function:bench"),
                    ("Lambda-Runtime-Trace-Id", "Root=1-00000000-000000000000000000000000"),
                    ("Content-Type", "application/json"),
                ])

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                m = re.search(r"/runtime/invocation/([^/]+)/(response|error)$", self.path)
                if m:
                    runtime.answers.put((m.group(2), body, time.perf_counter()))
                elif self.path.endswith("/runtime/init/error"):
                    runtime.answers.put(("init error", body, time.perf_counter()))
                self.reply(202, b"{}")

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.block_on_close = False  # a poll of a stopped process may hang: not waited for
        # A process stopped while it polls drops its connection: nothing to report.
        self.server.handle_error = lambda request, address: None
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.events.put(None)
        self.server.shutdown()
        self.server.server_close()

    def invoke(self, event, timeout=900):
        started = time.perf_counter()
        self.events.put((str(uuid.uuid4()), json.dumps(event).encode()))
        kind, body, done = self.answers.get(timeout=timeout)
        if kind != "response":
            sys.exit(f"the function answered with {kind}: {body.decode(errors='replace')}")
        return done - started, json.loads(body)


def memory_defaults():
    """Each function's MemorySize default in template.yaml (its `<X>MemorySize` parameter)."""
    text = (ROOT / "template.yaml").read_text()
    out = {}
    for name in ("Planner", "Transform", "Catalog", "Compactor", "Stream"):
        m = re.search(rf"^  {name}MemorySize:\n(?:    .*\n)*?    Default: (\d+)", text, re.M)
        out[name.lower()] = int(m.group(1))
    return out


def peak_rss_mb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_moto():
    moto = subprocess.Popen([PY, str(ROOT / "tests/moto_server.py")], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    port = int(moto.stdout.readline())
    return moto, f"http://127.0.0.1:{port}"


def lay_out(endpoint, big):
    """The buckets, the example file (and the big one), the pipeline file and the Glue database."""
    import boto3

    s3 = boto3.client("s3", endpoint_url=endpoint)
    for b in ("example-raw-bucket", "example-lake-bucket"):
        s3.create_bucket(Bucket=b)
    s3.upload_file(str(ROOT / "examples/clickstream/raw/clickstream/events-00000.jsonl"), "example-raw-bucket",
                   "raw/clickstream/events-00000.jsonl")
    if big:
        s3.upload_file(str(big), "example-raw-bucket", "raw/clickstream/big.jsonl")
    live = (ROOT / "examples/streams/sluice.toml").read_text()
    live = live[live.index("[[tables]]"):].replace('name = "clickstream"', 'name = "clickstream_live"', 1)
    config = (ROOT / "examples/clickstream/sluice.toml").read_text() + "\n" + live
    config = config.replace('[lake]\nroot = "./lake"', '[lake]\nroot = "s3://example-lake-bucket"\n'
                            'catalog = "glue"\nglue_database = "sluice_local"')
    config = config.replace('[input]\nroot = "examples/clickstream/raw"', '[input]\nroot = "s3://example-raw-bucket/raw"')
    assert "glue_database" in config and "clickstream_live" in config
    s3.put_object(Bucket="example-lake-bucket", Key="_sluice/config/sluice.toml", Body=config.encode())
    boto3.client("glue", endpoint_url=endpoint).create_database(DatabaseInput={"Name": "sluice_local"})


def event(name):
    return json.loads((ROOT / "events" / name).read_text())


RUNNER = []


def run_function(binary, env, events):
    """Start `binary`, wait for its first poll, hand it `events` one by one:
    (init s, [(s, response)], peak RSS MB)."""
    runtime = Runtime()
    env = dict(env, AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{runtime.port}")
    started = time.perf_counter()
    # One core, as a function of up to 1,769 MB has one vCPU.
    # Its log goes to a file: a pipe nobody reads would stall it once full.
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(["taskset", "-c", "0", *RUNNER, str(binary)], env=env, stdout=log, stderr=log)
    try:
        while runtime.first_poll is None:
            if proc.poll() is not None or time.perf_counter() - started > 60:
                log.seek(0)
                sys.exit(f"{binary} did not poll the Runtime API: {log.read().decode(errors='replace')[-2000:]}")
            time.sleep(0.0005)
        init = runtime.first_poll - started
        answers = [runtime.invoke(e) for e in events]
        # The process has polled again by now (or is about to): its peak is in.
        return init, answers, peak_rss_mb(proc.pid)
    finally:
        proc.kill()
        proc.wait()
        log.close()
        runtime.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=str(ROOT / "target/release"))
    ap.add_argument("--starts", type=int, default=5)
    ap.add_argument("--big-mb", type=int, default=128)
    ap.add_argument("--sluice", default=str(ROOT / "target/release/sluice"))
    ap.add_argument("--functions", default="planner,transform,catalog,compactor,stream")
    ap.add_argument("--runner", default="")
    args = ap.parse_args()
    RUNNER.extend(shlex.split(args.runner))
    only = set(args.functions.split(","))
    bins = Path(args.bin)
    memory = memory_defaults()
    work = Path(tempfile.mkdtemp())
    big = None
    if args.big_mb:
        subprocess.run([args.sluice, "generate", "--out", str(work / "gen"), "--size", f"{args.big_mb}MB"],
                       check=True, stdout=subprocess.DEVNULL)
        big = next((work / "gen").rglob("*.jsonl"))
    # moto's credentials and region, for boto3 here and the functions alike.
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_REGION="us-east-1",
                      AWS_DEFAULT_REGION="us-east-1")
    moto, endpoint = start_moto()
    try:
        lay_out(endpoint, big)
        base = dict(os.environ, AWS_ENDPOINT_URL=endpoint, AWS_ALLOW_HTTP="true",
                    AWS_EC2_METADATA_DISABLED="true", RUST_LOG="warn",
                    SLUICE_CONFIG="s3://example-lake-bucket/_sluice/config/sluice.toml",
                    AWS_LAMBDA_FUNCTION_VERSION="$LATEST",
                    AWS_LAMBDA_LOG_STREAM_NAME="bench", AWS_LAMBDA_LOG_GROUP_NAME="bench")
        # In the order the pipeline runs them: each finds what the one before wrote.
        plan = [
            ("planner", "direct-object.json"),
            ("transform", "transform-task.json"),
            ("catalog", "direct-commits-prefix.json"),
            ("compactor", "compactor-partition.json"),
            ("stream", "kinesis.json"),
        ]
        print(f"{'function':<10} {'init median':>12} {'init max':>9} {'first event':>12} {'peak RSS':>9} "
              f"{'MemorySize':>11}")
        for name, ev in [(n, e) for n, e in plan if n in only]:
            env = dict(base, AWS_LAMBDA_FUNCTION_NAME=f"sluice-{name}",
                       AWS_LAMBDA_FUNCTION_MEMORY_SIZE=str(memory[name]))
            # The first start does the work; the others start, answer a
            # cheap event (a test event, or the same work already done) and stop.
            starts = [run_function(bins / name, env, [event(ev)]) for _ in range(args.starts)]
            inits = [init for init, _, _ in starts]
            _, [(took, _)], rss = starts[0]
            print(f"{name:<10} {statistics.median(inits) * 1000:>9.0f} ms {max(inits) * 1000:>6.0f} ms "
                  f"{took * 1000:>9.0f} ms {rss:>6.0f} MB {memory[name]:>8} MB")
        if big and "transform" in only:
            size = big.stat().st_size
            task = {"table": "clickstream",
                    "source": {"url": "s3://example-raw-bucket/raw/clickstream/big.jsonl", "size": size,
                               "e_tag": None, "version": None},
                    "chunk": {"index": 0, "start": 0, "end": size}, "chunks": 1}
            env = dict(base, AWS_LAMBDA_FUNCTION_NAME="sluice-transform",
                       AWS_LAMBDA_FUNCTION_MEMORY_SIZE=str(memory["transform"]))
            _, answers, rss = run_function(bins / "transform", env, [task])
            took, r = answers[0]
            print(f"transform of one {size / 1e6:.0f} MB chunk: {took:.1f} s, {size / 1e6 / took:.1f} MB/s, "
                  f"{r['rows_out']} rows, {r['files']} files, peak RSS {rss:.0f} MB of {memory['transform']} MB")
    finally:
        moto.stdin.close()
        moto.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
