"""Start moto's S3/Glue/SQS API server on a free port of 127.0.0.1 for one test
process: prints the port, then serves until its stdin closes (when the test
process that started it exits, however it exits), and stops.

The server sits behind each function's IAM role (tests/iam.py): a request
of a function whose role's statements do not allow it is refused as AWS
would refuse it."""
import logging
import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from iam import serve  # noqa: E402

logging.getLogger("werkzeug").setLevel(logging.ERROR)
sock = socket.socket()
sock.bind(("127.0.0.1", 0))
port = sock.getsockname()[1]
sock.close()
server, _ = serve(port)
print(port, flush=True)
sys.stdin.read()
server.shutdown()
