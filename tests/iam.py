"""What AWS refuses, the tests' server refuses: every function's calls are
judged against exactly its role's statements in the deployed stack.

moto lets every call through. This module gives the tests' moto server
(tests/moto_server.py) IAM as AWS applies it to a Lambda function's role:

- `Stack`: template.yaml expanded by the SAM translator (infra/expand.py, as
  `sam deploy` does), its intrinsics resolved with the parameters a user
  deploys with and the test's own buckets and queues; each function's role
  statements, `MemorySize` and `Timeout`.
- `request_actions`: an HTTP request to S3, Glue or SQS as IAM sees it: the
  action and every resource ARN it needs (a Glue table call needs the
  catalog, the database and the table; a copy needs GetObject on its
  source; a bulk delete DeleteObject on each key).
- `evaluate`: an explicit Deny first, then an Allow whose action, resource and
  condition all match (`*`/`?` wildcards, `StringLike`/`StringEquals`).
- `Gate`: WSGI middleware in front of moto. A request signed with a
  function's access key (`<stack>.<Function>`) that its role would not allow
  is answered as AWS answers (S3 403 AccessDenied, Glue/SQS
  AccessDeniedException) with a message naming the function, action and
  resource; requests signed with any other key (the tests' own set-up and
  checks) pass. Every allowed call marks the (statement, action, resource)
  grants it used, and every refusal is kept; both are written to
  `$SLUICE_IAM_USAGE/<pid>.json` as they change, for the unused-grant check
  (tests/iam_grants.py).

Admin calls, never forwarded: `POST /__iam/stack` {"stack", "parameters",
"resources", "programs"} answers each function's access key, memory and
timeout (with `"programs": true`, a call from a process running a function's
binary, `planner`, `transform`, ..., as `cargo lambda watch` runs them, is
that function's, whatever key it signs with);
`GET /__iam/denials?stack=S` answers the refusals so far; `POST
/__iam/forgive?stack=S` forgets them (a test that meant them).
"""

import json
import os
import re
import subprocess
import sys
import threading
from io import BytesIO
from pathlib import Path
from urllib.parse import parse_qs, unquote
from xml.etree import ElementTree

ACCOUNT = "123456789012"
REGION = "us-east-1"
ROOT = Path(__file__).resolve().parent.parent
NO_VALUE = object()

_expanded = None
_expanded_lock = threading.Lock()


def expanded_template():
    """template.yaml as CloudFormation deploys it (infra/expand.py), once per process."""
    global _expanded
    with _expanded_lock:
        if _expanded is None:
            out = subprocess.run(
                [sys.executable, str(ROOT / "infra/expand.py"), str(ROOT / "template.yaml")],
                check=True, capture_output=True, text=True,
            )
            _expanded = json.loads(out.stdout)
        return _expanded


class Stack:
    """The expanded template with its intrinsics resolved for one deploy.

    `parameters` override the template's defaults; `resources` give the
    `Ref` and attributes (`Arn`) of resources the test made itself (queues),
    by logical id."""

    def __init__(self, template, parameters, resources):
        self.t = template
        self.params = {k: str(v.get("Default", "")) for k, v in template.get("Parameters", {}).items()}
        self.params.update({k: str(v) for k, v in parameters.items()})
        self.resources = resources
        self.conditions = {}

    def condition(self, name):
        if name not in self.conditions:
            self.conditions[name] = bool(self.ev(self.t["Conditions"][name]))
        return self.conditions[name]

    def sub(self, text, extra):
        def one(m):
            name = m.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in extra:
                return str(extra[name])
            if "." in name:
                res, attr = name.split(".", 1)
                return str(self.getatt(res, attr))
            return str(self.ref(name))
        return re.sub(r"\$\{([^}]+)\}", one, text)

    def ref(self, name):
        pseudo = {"AWS::Partition": "aws", "AWS::Region": REGION, "AWS::AccountId": ACCOUNT,
                  "AWS::NoValue": NO_VALUE, "AWS::StackName": "sluice", "AWS::URLSuffix": "amazonaws.com"}
        if name in pseudo:
            return pseudo[name]
        if name in self.params:
            return self.params[name]
        if name in self.resources:
            return self.resources[name]["Ref"]
        raise KeyError(f"Ref {name}: neither a parameter nor a resource the test made")

    def getatt(self, res, attr):
        if res in self.resources and attr in self.resources[res]:
            return self.resources[res][attr]
        raise KeyError(f"GetAtt {res}.{attr}: not a resource the test made")

    def ev(self, node):
        if isinstance(node, list):
            return [x for x in (self.ev(n) for n in node) if x is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (k, v), = node.items()
            if k == "Ref":
                return self.ref(v)
            if k == "Condition":
                return self.condition(v)
            if k == "Fn::GetAtt":
                res, attr = v if isinstance(v, list) else v.split(".", 1)
                return self.getatt(res, attr)
            if k == "Fn::Sub":
                if isinstance(v, str):
                    return self.sub(v, {})
                return self.sub(v[0], {n: self.ev(x) for n, x in v[1].items()})
            if k == "Fn::If":
                return self.ev(v[1] if self.condition(v[0]) else v[2])
            if k == "Fn::Equals":
                a, b = (self.ev(x) for x in v)
                return str(a) == str(b)
            if k == "Fn::Not":
                return not self.ev(v[0])
            if k == "Fn::Or":
                return any(self.ev(x) for x in v)
            if k == "Fn::And":
                return all(self.ev(x) for x in v)
            if k == "Fn::Select":
                return self.ev(v[1])[int(self.ev(v[0]))]
            if k == "Fn::Split":
                return str(self.ev(v[1])).split(v[0])
            if k == "Fn::Join":
                return v[0].join(str(x) for x in self.ev(v[1]))
        out = {}
        for k, v in node.items():
            x = self.ev(v)
            if x is not NO_VALUE:
                out[k] = x
        return out

    def functions(self):
        """Each function's role statements (every inline policy of its role,
        in order, with their Sids), memory and timeout, by logical id."""
        res = self.t["Resources"]
        out = {}
        for name, r in res.items():
            if r["Type"] != "AWS::Lambda::Function":
                continue
            if "Condition" in r and not self.condition(r["Condition"]):
                continue
            props = r["Properties"]
            role = props["Role"]["Fn::GetAtt"][0]
            statements = []
            # SLUICE_IAM_DROP=Function:Sid,...: deploy without those
            # statements, to see which tests fail without each.
            dropped = set(filter(None, os.environ.get("SLUICE_IAM_DROP", "").split(",")))
            for policy in res[role]["Properties"].get("Policies", []):
                doc = self.ev(policy["PolicyDocument"])
                for i, s in enumerate(as_list(doc["Statement"])):
                    s = dict(s)
                    s.setdefault("Sid", f"{policy['PolicyName']}#{i}")
                    if f"{name}:{s['Sid']}" not in dropped:
                        statements.append(s)
            out[name] = {
                "statements": statements,
                "memory": int(self.ev(props.get("MemorySize", 128))),
                "timeout": int(self.ev(props.get("Timeout", 3))),
            }
        return out


def as_list(x):
    return x if isinstance(x, list) else [x]


def wildcard(pattern, value, case=True):
    """IAM's match: `*` any run of characters (`/` too), `?` any one."""
    if not case:
        pattern, value = pattern.lower(), value.lower()
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.S) is not None


def condition_holds(condition, context):
    """The statement's Condition block against the request's context keys;
    an operator or key this evaluator does not know never holds (fail closed)."""
    for op, tests in (condition or {}).items():
        for key, want in tests.items():
            have = context.get(key)
            if have is None:
                return False
            if op == "StringLike":
                if not any(wildcard(w, have) for w in as_list(want)):
                    return False
            elif op == "StringEquals":
                if have not in as_list(want):
                    return False
            else:
                return False
    return True


def statement_matches(s, action, resource, context):
    """Which (action entry, resource entry) pairs of `s` match, or [] if it does not apply."""
    if "NotAction" in s or ("NotResource" in s and s.get("Effect") != "Deny"):
        raise ValueError(f"statement {s.get('Sid')}: NotAction, and NotResource in an Allow, are not evaluated here")
    actions = [a for a in as_list(s.get("Action", [])) if wildcard(a, action, case=False)]
    if "NotResource" in s:
        # A Deny of every resource but these.
        resources = [] if any(wildcard(r, resource) for r in as_list(s["NotResource"])) else [0]
    else:
        resources = [i for i, r in enumerate(as_list(s.get("Resource", []))) if wildcard(r, resource)]
    if not actions or not resources or not condition_holds(s.get("Condition"), context):
        return []
    return [(a, i) for a in actions for i in resources]


def evaluate(statements, action, resource, context):
    """("allow", [(sid, action entry, resource index)...]) or ("deny", why)."""
    for s in statements:
        if s.get("Effect") == "Deny" and statement_matches(s, action, resource, context):
            return "deny", f"explicitly denied by statement {s['Sid']}"
    used = []
    for s in statements:
        if s.get("Effect") == "Allow":
            used += [(s["Sid"], a, i) for a, i in statement_matches(s, action, resource, context)]
    if used:
        return "allow", used
    return "deny", "no statement of the role allows it"


def s3_arn(bucket, key=None):
    return f"arn:aws:s3:::{bucket}" + ("" if key is None else f"/{key}")


def glue_arns(kind, body):
    catalog = f"arn:aws:glue:{REGION}:{ACCOUNT}:catalog"
    db = body.get("DatabaseName") or (body.get("DatabaseInput") or {}).get("Name")
    if kind in ("GetDatabase", "DeleteDatabase", "UpdateDatabase"):
        db = body.get("Name")
    out = [catalog]
    if db:
        out.append(f"arn:aws:glue:{REGION}:{ACCOUNT}:database/{db}")
    table = body.get("TableName") or (body.get("TableInput") or {}).get("Name")
    if kind in ("GetTable", "DeleteTable"):
        table = body.get("Name")
    if kind == "GetTables":
        table = "*"
    if db and table:
        out.append(f"arn:aws:glue:{REGION}:{ACCOUNT}:table/{db}/{table}")
    return out


def sqs_arn(url_or_name):
    return f"arn:aws:sqs:{REGION}:{ACCOUNT}:{url_or_name.rstrip('/').rsplit('/', 1)[-1]}"


SQS_BATCH = {"SendMessageBatch": "SendMessage", "DeleteMessageBatch": "DeleteMessage",
             "ChangeMessageVisibilityBatch": "ChangeMessageVisibility"}


def request_actions(method, path, query, headers, body):
    """The (action, resource, context) triples IAM checks for one request."""
    target = headers.get("x-amz-target", "")
    if target.startswith("AWSGlue."):
        kind = target.split(".", 1)[1]
        data = json.loads(body or b"{}")
        return [(f"glue:{kind}", arn, {}) for arn in glue_arns(kind, data)]
    if target.startswith("AmazonSQS."):
        kind = target.split(".", 1)[1]
        data = json.loads(body or b"{}")
        queue = data.get("QueueUrl") or data.get("QueueName") or "*"
        return [(f"sqs:{SQS_BATCH.get(kind, kind)}", sqs_arn(queue), {})]
    if target:
        service, kind = target.split(".", 1)
        return [(f"{service.split('_')[0].lower()}:{kind}", "*", {})]
    q = parse_qs(query, keep_blank_values=True)
    if "Action" in q:  # the SQS query protocol
        kind = q["Action"][0]
        return [(f"sqs:{SQS_BATCH.get(kind, kind)}", sqs_arn(q.get("QueueUrl", [path])[0]), {})]
    parts = unquote(path).lstrip("/").split("/", 1)
    bucket, key = parts[0], (parts[1] if len(parts) > 1 and parts[1] else None)
    if key is None:
        if method == "POST" and "delete" in q:
            keys = [e.text for e in ElementTree.fromstring(body).iter() if e.tag.endswith("Key")]
            return [("s3:DeleteObject", s3_arn(bucket, k), {}) for k in keys]
        if method in ("GET", "HEAD"):
            if "uploads" in q:
                return [("s3:ListBucketMultipartUploads", s3_arn(bucket), {})]
            if "location" in q:
                return [("s3:GetBucketLocation", s3_arn(bucket), {})]
            if "versions" in q:
                return [("s3:ListBucketVersions", s3_arn(bucket), {})]
            return [("s3:ListBucket", s3_arn(bucket), {"s3:prefix": q.get("prefix", [""])[0]})]
        return [({"PUT": "s3:CreateBucket", "DELETE": "s3:DeleteBucket"}.get(method, f"s3:{method}Bucket"),
                 s3_arn(bucket), {})]
    if method in ("GET", "HEAD"):
        return [("s3:GetObject", s3_arn(bucket, key), {})]
    if method == "DELETE":
        return [("s3:AbortMultipartUpload" if "uploadId" in q else "s3:DeleteObject", s3_arn(bucket, key), {})]
    out = [("s3:PutObject", s3_arn(bucket, key), {})]
    source = headers.get("x-amz-copy-source")
    if method == "PUT" and source:
        src = unquote(source.split("?", 1)[0]).lstrip("/")
        b, k = src.split("/", 1)
        out.append(("s3:GetObject", s3_arn(b, k), {}))
    return out


def access_key(headers):
    m = re.search(r"Credential=([^/,\s]+)/", headers.get("authorization", ""))
    return m.group(1) if m else None


_HOLDERS = {}  # socket inode -> the pid last seen holding it


def caller_program(port, server_port, cache=_HOLDERS):
    """The program (its executable's file name) that holds the loopback
    connection from client port `port` to `server_port`: /proc/net/tcp gives
    the socket's inode, /proc/<pid>/fd the process holding it. None if not
    found. The server's port is matched too: Linux gives one ephemeral port
    to several connections with different destinations (a function binary's
    connection to its runtime API, the test's own to this server)."""
    inode = None
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, remote = fields[1], fields[2]
            if (local.endswith(f":{port:04X}") and local[:-5].endswith("0100007F")
                    and remote.endswith(f":{server_port:04X}") and remote[:-5].endswith("0100007F")):
                inode = fields[9]
                break
        if inode:
            break
    if not inode or inode == "0":
        return None
    link = f"socket:[{inode}]"

    def holds(pid):
        try:
            return any(os.readlink(f"/proc/{pid}/fd/{fd}") == link for fd in os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            return False

    # A closed socket's inode is soon another's: the process remembered for
    # it must still hold it.
    pid = cache.get(inode)
    if pid is None or not holds(pid):
        pid = next((p for p in filter(str.isdigit, os.listdir("/proc")) if holds(p)), None)
        if pid is None:
            return None
        cache[inode] = pid
    try:
        return os.path.basename(os.readlink(f"/proc/{pid}/exe"))
    except OSError:
        return None


def refusal(service, message):
    """AWS's answer to a refused call: (status, content type, body)."""
    if service == "s3":
        body = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code>'
                f"<Message>{message}</Message><RequestId>iam</RequestId></Error>").encode()
        return "403 Forbidden", "application/xml", body
    body = json.dumps({"__type": "AccessDeniedException", "message": message}).encode()
    return "400 Bad Request", "application/x-amz-json-1.1", body


class Gate:
    """WSGI middleware: moto behind each function's role."""

    def __init__(self, app):
        self.app = app
        self.lock = threading.Lock()
        self.keys = {}  # access key -> (function logical id, statements)
        # Function binaries (planner, transform, ...) run as separate
        # processes sharing one key (`cargo lambda watch`): program -> key.
        self.programs = {}
        self.used = {}  # "fn|sid|action|resource index" -> example resource
        self.denials = []
        self.out = os.environ.get("SLUICE_IAM_USAGE")

    def save(self):
        if not self.out:
            return
        os.makedirs(self.out, exist_ok=True)
        path = os.path.join(self.out, f"{os.getpid()}.json")
        with open(path + ".tmp", "w") as f:
            json.dump({"used": self.used, "denials": self.denials}, f)
        os.replace(path + ".tmp", path)

    def admin(self, environ, method, path, query, body):
        if method == "POST" and path == "/__iam/stack":
            ask = json.loads(body)
            stack = Stack(expanded_template(), ask.get("parameters", {}), ask.get("resources", {}))
            answer = {}
            with self.lock:
                for name, fn in stack.functions().items():
                    key = f"{ask['stack']}.{name}"
                    self.keys[key] = (name, fn["statements"])
                    if ask.get("programs"):
                        # PlannerFunction is the binary `planner`, and so on.
                        self.programs[name.removesuffix("Function").lower()] = key
                    answer[name] = {"access_key": key, "memory": fn["memory"], "timeout": fn["timeout"],
                                    "statements": fn["statements"]}
            return answer
        if method == "POST" and path == "/__iam/forgive":
            # A test that meant these refusals: they fail nothing later.
            stack = parse_qs(query).get("stack", [""])[0]
            with self.lock:
                self.denials = [d for d in self.denials if not d["access_key"].startswith(stack + ".")]
                self.save()
            return []
        if path == "/__iam/denials":
            stack = parse_qs(query).get("stack", [""])[0]
            with self.lock:
                return [d for d in self.denials if d["access_key"].startswith(stack + ".")]
        return None

    def __call__(self, environ, start_response):
        method = environ["REQUEST_METHOD"]
        path = environ.get("PATH_INFO", "")
        query = environ.get("QUERY_STRING", "")
        if path.startswith("/__iam/"):
            n = int(environ.get("CONTENT_LENGTH") or 0)
            answer = self.admin(environ, method, path, query, environ["wsgi.input"].read(n) if n else b"")
            payload = json.dumps(answer).encode()
            start_response("200 OK" if answer is not None else "404 Not Found",
                           [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))])
            return [payload]
        headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")}
        key = access_key(headers)
        if key not in self.keys and self.programs and environ.get("REMOTE_PORT"):
            key = self.programs.get(
                caller_program(int(environ["REMOTE_PORT"]), int(environ["SERVER_PORT"])), key)
        with self.lock:
            role = self.keys.get(key)
        if role is None:
            return self.app(environ, start_response)
        function, statements = role
        if environ.get("CONTENT_LENGTH"):
            body = environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"]))
        elif "chunked" in headers.get("transfer-encoding", ""):
            body = environ["wsgi.input"].read()
        else:
            body = b""
        environ["wsgi.input"] = BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        refused = []
        marks = []
        for action, resource, context in request_actions(method, path, query, headers, body):
            verdict, detail = evaluate(statements, action, resource, context)
            if verdict == "deny":
                refused.append((action, resource, detail))
            else:
                marks += [(f"{function}|{sid}|{a}|{i}", resource) for sid, a, i in detail]
                sids = {sid for sid, _, _ in detail}
                if len(sids) == 1:
                    # The only statement that allows this call: without it, it fails.
                    marks.append((f"needed|{function}|{sids.pop()}", resource))
        with self.lock:
            if os.environ.get("SLUICE_IAM_LOG"):
                # Every call judged, one line each, to see what a role's code does.
                with open(os.environ["SLUICE_IAM_LOG"], "a") as log:
                    for action, resource, _ in request_actions(method, path, query, headers, body):
                        log.write(f"{function} {action} {resource}\n")
            changed = False
            for action, resource, why in refused:
                self.denials.append({"access_key": key, "function": function, "action": action,
                                     "resource": resource, "why": why, "request": f"{method} {path}?{query}"})
                changed = True
            for k, resource in marks:
                if k not in self.used:
                    self.used[k] = resource
                    changed = True
            if changed:
                self.save()
        if not refused:
            return self.app(environ, start_response)

        def message(action, resource, why):
            return (f"User: arn:aws:sts::{ACCOUNT}:assumed-role/{function}Role/{function} is not "
                    f"authorized to perform: {action} on resource: {resource} because {why}")

        if method == "POST" and "delete" in parse_qs(query, keep_blank_values=True):
            # S3's bulk delete answers 200 and refuses key by key; the keys
            # the role may delete are deleted.
            return self.bulk_delete(environ, start_response, body, refused, message)
        action, resource, why = refused[0]
        status, ctype, payload = refusal(action.split(":", 1)[0], message(action, resource, why))
        start_response(status, [("Content-Type", ctype), ("Content-Length", str(len(payload)))])
        return [payload]

    def bulk_delete(self, environ, start_response, body, refused, message):
        denied = {r.split(":::", 1)[1].split("/", 1)[1]: (a, r, why) for a, r, why in refused}
        root = ElementTree.fromstring(body)
        ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
        for obj in list(root.findall(f"{ns}Object")):
            if obj.findtext(f"{ns}Key") in denied:
                root.remove(obj)
        results = b""
        if root.findall(f"{ns}Object"):
            rest = ElementTree.tostring(root)
            environ["wsgi.input"] = BytesIO(rest)
            environ["CONTENT_LENGTH"] = str(len(rest))
            for h in ("HTTP_CONTENT_MD5", "HTTP_X_AMZ_CHECKSUM_CRC32", "HTTP_X_AMZ_CHECKSUM_SHA256"):
                environ.pop(h, None)
            captured = {}
            answer = b"".join(self.app(environ, lambda status, headers, exc=None: captured.update(s=status)))
            results = re.sub(rb"^.*?<DeleteResult[^>]*>|</DeleteResult>.*$", b"", answer, flags=re.S)
        for key, (action, resource, why) in denied.items():
            text = message(action, resource, why).replace("&", "&amp;").replace("<", "&lt;")
            results += (f"<Error><Key>{key}</Key><Code>AccessDenied</Code>"
                        f"<Message>{text}</Message></Error>").encode()
        payload = (b'<?xml version="1.0" encoding="UTF-8"?>'
                   b'<DeleteResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">' + results + b"</DeleteResult>")
        start_response("200 OK", [("Content-Type", "application/xml"), ("Content-Length", str(len(payload)))])
        return [payload]


def role_table():
    """Markdown: each function's memory, timeout and role, statement by
    statement, with every optional grant on, the tables named (`Tables`) and
    placeholders for names."""
    params = {"RawBucketName": "RAW", "LakeBucketName": "LAKE", "GlueDatabaseName": "DATABASE",
              "KmsKeyArn": "arn:aws:kms:REGION:ACCOUNT:key/KEY", "LookupBucketName": "LOOKUPS",
              "LookupPrefix": "LOOKUP_PREFIX/", "KinesisStreamArn": "arn:aws:kinesis:REGION:ACCOUNT:stream/STREAM",
              "KafkaClusterArn": "arn:aws:kafka:REGION:ACCOUNT:cluster/CLUSTER/UUID", "LakeFormationGrants": "true",
              "Tables": "TABLE"}
    template = expanded_template()
    queues = {q: {"Ref": q, "Arn": q} for q, r in template["Resources"].items() if r["Type"] == "AWS::SQS::Queue"}
    stack = Stack(template, params, queues)
    short = [(f"arn:aws:s3:::", ""), (f"arn:aws:glue:{REGION}:{ACCOUNT}:", "glue:"),
             (f"arn:aws:kafka:{REGION}:{ACCOUNT}:", "kafka:"), ("arn:aws:kms:REGION:ACCOUNT:", "kms:"), ("arn:aws:kafka:REGION:ACCOUNT:", "kafka:"), ("arn:aws:kinesis:REGION:ACCOUNT:", "kinesis:")]

    def name(r):
        for a, b in short:
            r = r.replace(a, b)
        return f"`{r}`"

    rows = ["| Function (memory, timeout) | Statement | Effect | Actions | Resources |",
            "| --- | --- | --- | --- | --- |"]
    for function, f in sorted(stack.functions().items()):
        first = f"**{function.removesuffix('Function').lower()}** ({f['memory']} MB, {f['timeout']} s)"
        for s in f["statements"]:
            sid = s["Sid"].replace(function + "EventInvokeConfigOnFailureSQSPolicy#0", "OnFailureDestination")
            actions = ", ".join(f"`{a}`" for a in as_list(s["Action"]))
            if "NotResource" in s:
                resources = "all but " + ", ".join(name(r) for r in as_list(s["NotResource"]))
            else:
                resources = ", ".join(name(r) for r in as_list(s["Resource"]))
            if s.get("Condition"):
                resources += " if " + ", ".join(
                    f"`{k} {op} {v}`" for op, t in s["Condition"].items() for k, v in t.items())
            rows.append(f"| {first} | {sid} | {s['Effect']} | {actions} | {resources} |")
            first = ""
    return "\n".join(rows) + "\n"


START, END = "<!-- roles: made by `python tests/iam.py table` -->", "<!-- roles end -->"


def check_readme(path):
    text = Path(path).read_text()
    if START not in text or END not in text:
        return f"{path} has no role table between {START} and {END}"
    have = text.split(START, 1)[1].split(END, 1)[0].strip()
    if have != role_table().strip():
        return f"{path}'s role table is not the template's: run python tests/iam.py table --write {path}"
    return None


def serve(port):
    """moto's S3/Glue/SQS/... server on 127.0.0.1:`port` behind a [`Gate`],
    serving in a thread; returns (the server, to `shutdown()`; the gate)."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    gate = Gate(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", port, gate, True, request_handler=MotoRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, gate


if __name__ == "__main__":
    # python tests/iam.py table [--write docs/deploy.md | --check docs/deploy.md]
    # prints (or writes into, or checks) the deploy guide's role table.
    if len(sys.argv) > 1 and sys.argv[1] == "table":
        if len(sys.argv) > 3 and sys.argv[2] == "--check":
            problem = check_readme(sys.argv[3])
            print(problem or f"{sys.argv[3]}'s role table is the template's")
            sys.exit(1 if problem else 0)
        if len(sys.argv) > 3 and sys.argv[2] == "--write":
            text = Path(sys.argv[3]).read_text()
            head, rest = text.split(START, 1)
            tail = rest.split(END, 1)[1]
            Path(sys.argv[3]).write_text(head + START + "\n" + role_table() + END + tail)
            sys.exit(0)
        sys.stdout.write(role_table())
        sys.exit(0)
    stack = Stack(expanded_template(), {"RawBucketName": "raw-bucket", "LakeBucketName": "lake-bucket"},
                  {q: {"Ref": f"https://sqs/{ACCOUNT}/{q}", "Arn": sqs_arn(q)}
                   for q, r in expanded_template()["Resources"].items() if r["Type"] == "AWS::SQS::Queue"})
    json.dump(stack.functions(), sys.stdout, indent=1)
    print()
