"""A CloudFormation custom-resource ResponseURL on loopback that keeps every answer PUT to it.

CloudFormation hands a custom resource's function a pre-signed S3 URL and waits for the function to PUT
its answer there (https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/crpg-ref-responses.html).
The rehearsal and the tests give the function this server's URL instead and read the answer it PUT.
"""

from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator


@contextmanager
def response_server() -> Iterator[tuple[str, list[dict]]]:
    """(ResponseURL, the answers received so far, parsed); clear the list to start over."""
    received: list[dict] = []

    class Answers(BaseHTTPRequestHandler):
        def do_PUT(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Answers)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/response", received
    finally:
        server.shutdown()
        server.server_close()
