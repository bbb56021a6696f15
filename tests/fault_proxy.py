"""A faulty network between sluice and the S3/Glue server, for the fault tests.

    python fault_proxy.py <upstream port> <every>

Listens on a free port of 127.0.0.1 (printed first), forwards each request to
127.0.0.1:<upstream port>, and spoils every <every>-th request, taking turns:

- throttle: S3 answers 503 SlowDown, Glue 400 ThrottlingException;
- reset:    the connection is reset before any answer;
- error:    S3 answers 500 InternalError, Glue 500 InternalServiceException;
- cut:      a GET's answer stops halfway through its body (the connection
            closes), other requests get `throttle` instead.

Only `cut` lets a request reach the server; the others spoil it before it is
forwarded, so a write is never applied without its answer. `GET /__faults`
answers the counts of each fault, of faults on Glue calls (`glue`) and of
requests forwarded (itself neither forwarded nor counted). Serves until
its stdin closes (when the test that started it ends), then stops.
"""

import http.client
import json
import socket
import struct
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

UPSTREAM = int(sys.argv[1])
EVERY = int(sys.argv[2])
KINDS = ["throttle", "reset", "error", "cut"]
lock = threading.Lock()
state = {"requests": 0, "turn": 0}
counts = {k: 0 for k in KINDS}
counts["forwarded"] = 0
counts["glue"] = 0

S3_SLOWDOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message><RequestId>fault</RequestId></Error>"
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

    def handle_one(self):
        data = self.body()
        if self.path == "/__faults":
            return self.answer(200, json.dumps(counts).encode(), "application/json")
        glue = self.headers.get("X-Amz-Target", "").startswith("AWSGlue")
        with lock:
            state["requests"] += 1
            kind = None
            if state["requests"] % EVERY == 0:
                kind = KINDS[state["turn"] % len(KINDS)]
                state["turn"] += 1
                if kind == "cut" and self.command != "GET":
                    kind = "throttle"
                counts[kind] += 1
                counts["glue"] += int(glue)
            else:
                counts["forwarded"] += 1
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
        up = http.client.HTTPConnection("127.0.0.1", UPSTREAM, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() != "transfer-encoding"}
        headers["Content-Length"] = str(len(data))
        up.request(self.command, self.path, body=data, headers=headers)
        r = up.getresponse()
        payload = r.read()
        up.close()
        self.send_response(r.status)
        for k, v in r.getheaders():
            if k.lower() not in ("transfer-encoding", "content-length", "connection", "server", "date"):
                self.send_header(k, v)
        length = r.getheader("Content-Length") if self.command == "HEAD" else None
        self.send_header("Content-Length", length or str(len(payload)))
        self.end_headers()
        if kind == "cut" and len(payload) > 1:
            self.wfile.write(payload[: len(payload) // 2])
            self.wfile.flush()
            return self.reset()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_one


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
print(server.server_address[1], flush=True)
threading.Thread(target=server.serve_forever, daemon=True).start()
sys.stdin.read()
server.shutdown()
