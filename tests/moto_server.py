"""Start moto's S3/Glue/SQS API server on a free port of 127.0.0.1 for one test
process: prints the port, then serves until its stdin closes (when the test
process that started it exits, however it exits), and stops."""
import logging
import socket
import sys

from moto.server import ThreadedMotoServer

logging.getLogger("werkzeug").setLevel(logging.ERROR)
sock = socket.socket()
sock.bind(("127.0.0.1", 0))
port = sock.getsockname()[1]
sock.close()
server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
server.start()
print(port, flush=True)
sys.stdin.read()
server.stop()
