"""Start moto's S3/Glue/SQS API server on a free port of 127.0.0.1 for one test
process: prints the port, then serves until its stdin closes (when the test
process that started it exits, however it exits), and stops.

The server sits behind each function's IAM role (tests/iam.py): a request
signed with a function's access key is refused as AWS would refuse it when
the role's statements do not allow it."""
import logging
import os
import socket
import sys
import threading

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from iam import Gate  # noqa: E402

logging.getLogger("werkzeug").setLevel(logging.ERROR)
sock = socket.socket()
sock.bind(("127.0.0.1", 0))
port = sock.getsockname()[1]
sock.close()
app = Gate(DomainDispatcherApplication(create_backend_app))
server = make_server("127.0.0.1", port, app, True, request_handler=MotoRequestHandler)
threading.Thread(target=server.serve_forever, daemon=True).start()
print(port, flush=True)
sys.stdin.read()
server.shutdown()
