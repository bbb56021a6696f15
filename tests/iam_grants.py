"""Least privilege, checked from the other side: every grant of every
function's role is used by some test run, and no call was refused.

    python tests/iam_grants.py <usage folder>

The tests' moto servers (tests/moto_server.py, tests/iam.py) write, into the
folder named by SLUICE_IAM_USAGE, which (statement, action, resource) grants
each function's calls used and which calls were refused. This check runs
after every test (scripts/test). It expands template.yaml with every optional
grant on (a KMS key, lookups, Lake Formation, Kinesis and Kafka), lists each
function's (statement, action, resource) grants, and fails on:

- a grant no test used: a permission no code needs, or a path no test
  reaches, unless it is one that AWS itself exercises with the role, which
  moto cannot (listed below with the reason);
- any call a role refused in any test (also the ones a function swallowed).

Prints `ok: ...` or `FAILED: ...` lines, for scripts/test's closing count.
"""

import glob
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import iam  # noqa: E402

# Grants that AWS uses on the function's behalf with its role, not the
# function's code: no test here can reach them. (prefix of the action, why)
USED_BY_AWS = [
    ("sqs:ReceiveMessage", "the SQS event source mapping polls the queue with the function's role"),
    ("sqs:DeleteMessage", "the SQS event source mapping deletes what the function answered for"),
    ("sqs:ChangeMessageVisibility", "the SQS event source mapping returns failed messages"),
    ("sqs:GetQueueAttributes", "the SQS event source mapping reads the queue's settings"),
    ("kms:", "S3 and SQS call KMS with the caller's credentials to encrypt and decrypt (moto does not)"),
    ("kinesis:", "the Kinesis event source mapping reads the stream with the function's role"),
    ("kafka:", "the MSK event source mapping finds the brokers with the function's role"),
    ("kafka-cluster:", "the MSK event source mapping reads the topic with the function's role"),
    ("ec2:", "the MSK event source mapping reaches the cluster's VPC with the function's role"),
]
# Statements Lambda itself uses: the on-failure destination of asynchronous
# invocations (SAM's EventInvokeConfig), the stream mapping's failure queue.
SENT_BY_LAMBDA = ("EventInvokeConfigOnFailureSQSPolicy", "ReportUnloadedBatches")


def grants():
    params = {
        "RawBucketName": "raw-bucket", "LakeBucketName": "lake-bucket",
        "KmsKeyArn": "arn:aws:kms:us-east-1:123456789012:key/0b2c4d6e-1111-2222-3333-444455556666",
        "LakeFormationGrants": "true", "LookupBucketName": "lookup-bucket", "LookupPrefix": "ref/",
        "KinesisStreamArn": "arn:aws:kinesis:us-east-1:123456789012:stream/events",
        "KafkaClusterArn": "arn:aws:kafka:us-east-1:123456789012:cluster/c/0b2c4d6e-1111",
    }
    template = iam.expanded_template()
    queues = {q: {"Ref": f"https://sqs/{iam.ACCOUNT}/{q}", "Arn": iam.sqs_arn(q)}
              for q, r in template["Resources"].items() if r["Type"] == "AWS::SQS::Queue"}
    stack = iam.Stack(template, params, queues)
    for function, f in stack.functions().items():
        for s in f["statements"]:
            if s.get("Effect") != "Allow":
                continue
            for a in iam.as_list(s["Action"]):
                for i, r in enumerate(iam.as_list(s["Resource"])):
                    yield f"{function}|{s['Sid']}|{a}|{i}", function, s["Sid"], a, r


def aws_reason(sid, action):
    if any(k in sid for k in SENT_BY_LAMBDA):
        return "Lambda sends failed invocations there with the function's role"
    for prefix, why in USED_BY_AWS:
        if action.startswith(prefix):
            return why
    return None


def main(folder):
    used, denials = {}, []
    files = glob.glob(os.path.join(folder, "*.json"))
    for path in files:
        with open(path) as f:
            u = json.load(f)
        used.update(u["used"])
        denials += u["denials"]
    status = 0
    if not files:
        print(f"FAILED: IAM grants: no usage was recorded in {folder} (did the tests run with SLUICE_IAM_USAGE?)")
        return 1
    if denials:
        status = 1
        print(f"FAILED: IAM: {len(denials)} calls refused by the functions' roles:")
        seen = set()
        for d in denials:
            line = f"  {d['function']}: {d['action']} on {d['resource']} ({d['why']})"
            if line not in seen:
                seen.add(line)
                print(line)
    else:
        print("ok: IAM: no call of any function was refused by its role")
    unused, by_aws, n = [], 0, 0
    every = list(grants())
    for key, function, sid, action, resource in every:
        n += 1
        if key in used:
            continue
        if aws_reason(sid, action):
            by_aws += 1
            continue
        unused.append(f"  {function} {sid}: {action} on {resource}")
    # A statement that never was the only one allowing a call is redundant:
    # removing it would fail no test (another statement grants the same).
    redundant = sorted({f"  {function} {sid}" for _, function, sid, action, _ in every
                        if f"needed|{function}|{sid}" not in used and not aws_reason(sid, action)})
    if redundant:
        status = 1
        print(f"FAILED: IAM statements: {len(redundant)} statements only ever grant what another statement "
              "of the role grants too (remove or narrow them):")
        print("\n".join(redundant))
    if unused:
        status = 1
        print(f"FAILED: IAM grants: {len(unused)} of {n} grants were never used by any test "
              "(a permission no code needs, or a path no test reaches):")
        print("\n".join(unused))
    else:
        print(f"ok: IAM grants: each of {n - by_aws} grants the code needs was used by a test "
              f"({by_aws} more are used by AWS itself with the role)")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
