"""A faulty network between sluice and the S3/Glue server, for the fault tests.

    python fault_proxy.py <upstream port> <every> [<class>,<class>...]

Listens on a free port of 127.0.0.1 (printed first), forwards each request to
127.0.0.1:<upstream port>, and spoils every <every>-th request (never if 0),
taking turns:

- throttle: S3 answers 503 SlowDown, Glue 400 ThrottlingException;
- reset:    the connection is reset before any answer;
- error:    S3 answers 500 InternalError, Glue 500 InternalServiceException;
- cut:      a GET's answer stops halfway through its body (the connection
            closes); any other request gets `lost` instead:
- lost:     the request is forwarded and applied, and its answer is lost (the
            connection is reset after the server acted), as when a timeout or
            a reset hits after the write. Counted by class of request: `put`,
            `create` (a PUT with If-None-Match), `complete` (a multipart
            upload's completion), `delete` (DELETE or a bulk delete), `glue`
            and `other` (`lost_<class>`).

The optional third argument lists classes whose first request loses its
answer, whatever the turn; a class written `!<class>` is refused instead,
every time, with a 400 S3 will not take again (`InvalidPart`, counted as
`refused_<class>`), as when a part went missing.

Two things of the real services that the server (moto) does not do, this
proxy does, so that the tests check sluice against AWS's behaviour rather
than moto's:

- Glue's optimistic locking: an UpdateTable whose VersionId is not the
  table's current one is refused with ConcurrentModificationException (moto
  ignores VersionId, so a lost update would pass unnoticed);
- an upload completed twice (the retry of a completion whose answer was
  lost) answers 404 NoSuchUpload, the least helpful answer S3 may give,
  instead of moto's 500.

`GET /__faults` answers the counts of each fault, of faults on Glue calls
(`glue`), of refused stale Glue updates (`stale_updates`) and of requests
forwarded (itself neither forwarded nor counted). Serves until its stdin
closes (when the test that started it ends), then stops.
"""

import http.client
import json
import socket
import struct
import sys
import threading
from urllib.parse import parse_qs, urlsplit
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

UPSTREAM = int(sys.argv[1])
EVERY = int(sys.argv[2])
CLASS_ARGS = set(sys.argv[3].split(",")) if len(sys.argv) > 3 and sys.argv[3] else set()
LOSE_FIRST = {c for c in CLASS_ARGS if not c.startswith("!")}
REFUSE = {c[1:] for c in CLASS_ARGS if c.startswith("!")}
KINDS = ["throttle", "reset", "error", "cut", "lost"]
CLASSES = ["put", "create", "complete", "delete", "glue", "other"]
lock = threading.Lock()
# Held from reading a table's version to forwarding its update.
glue_update_lock = threading.Lock()
state = {"requests": 0, "turn": 0, "seen": set(), "completed": set()}
counts = {k: 0 for k in KINDS}
counts.update({f"lost_{c}": 0 for c in CLASSES})
counts.update({f"refused_{c}": 0 for c in CLASSES})
counts["forwarded"] = 0
counts["glue"] = 0
counts["stale_updates"] = 0

S3_SLOWDOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message><RequestId>fault</RequestId></Error>"
)
S3_NO_SUCH_UPLOAD = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchUpload</Code>'
    b"<Message>The specified upload does not exist.</Message><RequestId>fault</RequestId></Error>"
)
S3_INVALID_PART = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>InvalidPart</Code>'
    b"<Message>One or more of the specified parts could not be found.</Message><RequestId>fault</RequestId></Error>"
)
S3_INTERNAL = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>InternalError</Code>'
    b"<Message>We encountered an internal error. Please try again.</Message><RequestId>fault</RequestId></Error>"
)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def answer(self, status, body, content_type):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def reset(self):
        # SO_LINGER 0: close with a TCP reset, as a dropped connection looks.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True

    def request_class(self, glue):
        query = parse_qs(urlsplit(self.path).query, keep_blank_values=True)
        if glue:
            return "glue"
        if self.command == "DELETE" or (self.command == "POST" and "delete" in query):
            return "delete"
        if self.command == "POST" and "uploadId" in query:
            return "complete"
        if self.command == "PUT" and "partNumber" not in query:
            return "create" if self.headers.get("If-None-Match") else "put"
        return "other"

    def upload_id(self):
        ids = parse_qs(urlsplit(self.path).query).get("uploadId")
        return ids[0] if ids else None

    def handle_one(self):
        data = self.body()
        if self.path == "/__faults":
            return self.answer(200, json.dumps(counts).encode(), "application/json")
        target = self.headers.get("X-Amz-Target", "")
        glue = target.startswith("AWSGlue")
        write = self.command not in ("GET", "HEAD")
        klass = self.request_class(glue) if write else None
        with lock:
            state["requests"] += 1
            if write and klass in REFUSE:
                counts[f"refused_{klass}"] += 1
                refused = True
            else:
                refused = False
        if refused:
            return self.answer(400, S3_INVALID_PART, "application/xml")
        with lock:
            kind = None
            if write and klass in LOSE_FIRST and klass not in state["seen"]:
                state["seen"].add(klass)
                kind = "lost"
            elif EVERY and state["requests"] % EVERY == 0:
                kind = KINDS[state["turn"] % len(KINDS)]
                state["turn"] += 1
                if kind in ("cut", "lost"):
                    kind = "lost" if write else "cut"
            if kind:
                counts[kind] += 1
                counts["glue"] += int(glue)
                if kind == "lost":
                    counts[f"lost_{klass}"] += 1
            else:
                counts["forwarded"] += 1
                # By method too: a test can tell a HEAD per object from a listing.
                key = f"forwarded_{self.command}"
                counts[key] = counts.get(key, 0) + 1
            if klass == "complete" and self.upload_id() in state["completed"]:
                return self.answer(404, S3_NO_SUCH_UPLOAD, "application/xml")
        if kind == "throttle":
            if glue:
                body = json.dumps({"__type": "ThrottlingException", "message": "Rate exceeded"}).encode()
                return self.answer(400, body, "application/x-amz-json-1.1")
            return self.answer(503, S3_SLOWDOWN, "application/xml")
        if kind == "error":
            if glue:
                body = json.dumps({"__type": "InternalServiceException", "message": "Internal error"}).encode()
                return self.answer(500, body, "application/x-amz-json-1.1")
            return self.answer(500, S3_INTERNAL, "application/xml")
        if kind == "reset":
            return self.reset()
        if target == "AWSGlue.UpdateTable":
            with glue_update_lock:
                stale = self.stale_update(data)
                if stale:
                    with lock:
                        counts["stale_updates"] += 1
                    return self.answer(400, stale, "application/x-amz-json-1.1")
                status, headers, payload = self.forward(data)
        else:
            status, headers, payload = self.forward(data)
        if klass == "complete" and status == 200 and b"<Error>" not in payload:
            with lock:
                state["completed"].add(self.upload_id())
        if kind == "lost":
            return self.reset()
        self.send_response(status)
        for k, v in headers:
            if k.lower() not in ("transfer-encoding", "content-length", "connection", "server", "date"):
                self.send_header(k, v)
        length = dict((k.lower(), v) for k, v in headers).get("content-length") if self.command == "HEAD" else None
        self.send_header("Content-Length", length or str(len(payload)))
        self.end_headers()
        if kind == "cut" and len(payload) > 1:
            self.wfile.write(payload[: len(payload) // 2])
            self.wfile.flush()
            return self.reset()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def forward(self, data, path=None, headers=None):
        up = http.client.HTTPConnection("127.0.0.1", UPSTREAM, timeout=60)
        if headers is None:
            headers = {k: v for k, v in self.headers.items() if k.lower() != "transfer-encoding"}
        headers["Content-Length"] = str(len(data))
        up.request(self.command if path is None else "POST", path or self.path, body=data, headers=headers)
        r = up.getresponse()
        payload = r.read()
        up.close()
        return r.status, r.getheaders(), payload

    def stale_update(self, data):
        """Glue's check of UpdateTable's VersionId against the table's current
        version: the refusal to answer, or None to go ahead."""
        update = json.loads(data or b"{}")
        version = update.get("VersionId")
        if version is None:
            return None
        ask = {"DatabaseName": update.get("DatabaseName"), "Name": update.get("TableInput", {}).get("Name")}
        if update.get("CatalogId"):
            ask["CatalogId"] = update["CatalogId"]
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("transfer-encoding", "x-amz-target")}
        headers["X-Amz-Target"] = "AWSGlue.GetTable"
        status, _, payload = self.forward(json.dumps(ask).encode(), path="/", headers=headers)
        if status != 200:
            return None
        current = json.loads(payload)["Table"].get("VersionId")
        if current is None or current == version:
            return None
        message = f"Update table failed due to concurrent modifications (version {version}, now {current})"
        return json.dumps({"__type": "ConcurrentModificationException", "Message": message}).encode()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_one


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
print(server.server_address[1], flush=True)
threading.Thread(target=server.serve_forever, daemon=True).start()
sys.stdin.read()
server.shutdown()
