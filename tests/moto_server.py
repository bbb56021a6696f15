"""Start moto's S3/Glue/SQS API server on a free port of 127.0.0.1 for one test
process: prints the port, then serves until its stdin closes (when the test
process that started it exits, however it exits), and stops.

The server sits behind each function's IAM role (tests/iam.py): a request
of a function whose role's statements do not allow it is refused as AWS
would refuse it.

With SLUICE_MOTO_INDEXED_LIST=1 (benchmarks only), S3 LISTs are answered
from a sorted index of each bucket's keys (tests/moto_indexed_list.py)."""
import logging
import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from iam import serve  # noqa: E402

if os.environ.get("SLUICE_MOTO_INDEXED_LIST") == "1":
    import moto_indexed_list  # noqa: E402

    moto_indexed_list.install()

logging.getLogger("werkzeug").setLevel(logging.ERROR)

# moto finds the service of every request by listing its own package folder
# (`list_of_moto_modules`: a listdir and a stat per service, each time), a
# fifth of its time under the tests; the folder does not change while it runs.
from moto import backends  # noqa: E402

_modules = tuple(backends.list_of_moto_modules())
backends.list_of_moto_modules = lambda: _modules
sock = socket.socket()
sock.bind(("127.0.0.1", 0))
port = sock.getsockname()[1]
sock.close()
server, _ = serve(port)
print(port, flush=True)
sys.stdin.read()
server.shutdown()
