"""`POST /triage` and `GET /healthz` over the standard library's threading HTTP server.

It serves the same bundled intent model as the router agent, in batches: one request sorts many
tickets. Configured by environment only (the image has no shell to pass flags through): `PORT`
(default 8081) and `MODEL_DIR` (default /models/router). The model is loaded before the port
opens, so a missing or mismatched model fails the container at start.
"""

import json
import os
import signal
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any

from router_model import Router

MAX_BODY_BYTES = 1024 * 1024


class RequestError(Exception):
    """A client error, answered with its status and message."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


def triage(router: Router, tickets: list[str]) -> dict[str, Any]:
    """Ticket indices per intent and their counts; every intent is listed, empty or not."""
    queues: dict[str, list[int]] = {label: [] for label in router.labels}
    for index, (intent, _score) in enumerate(router.route_many(tickets)):
        queues[intent].append(index)
    counts = {label: len(indices) for label, indices in queues.items()}
    return {"queues": queues, "counts": counts, "model": router.version}


class Handler(BaseHTTPRequestHandler):
    """Answers JSON requests with the router the server was started with."""

    server: "TriageServer"
    server_version = "triage-agent"
    sys_version = ""
    # Bounds how long a stalled client can hold a thread, and so how long shutdown can wait.
    timeout = 5

    def do_GET(self) -> None:
        if self.path == "/healthz":
            self.reply(HTTPStatus.OK, {"status": "ok"})
        else:
            self.reply(HTTPStatus.NOT_FOUND, {"error": f"no such endpoint: GET {self.path}"})

    def do_POST(self) -> None:
        if self.path != "/triage":
            self.reply(HTTPStatus.NOT_FOUND, {"error": f"no such endpoint: POST {self.path}"})
            return
        try:
            body = self.read_json()
            tickets = body.get("tickets") if isinstance(body, dict) else None
            if not isinstance(tickets, list) or not all(
                isinstance(ticket, str) and ticket.strip() for ticket in tickets
            ):
                raise RequestError(HTTPStatus.BAD_REQUEST, 'expected {"tickets": ["<non-empty>"]}')
        except RequestError as error:
            self.reply(error.status, {"error": str(error)})
            return
        self.reply(HTTPStatus.OK, triage(self.server.router, tickets))

    def read_json(self) -> Any:
        """The request body, parsed as JSON."""
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            raise RequestError(HTTPStatus.LENGTH_REQUIRED, "Content-Length required") from None
        if not 0 <= length <= MAX_BODY_BYTES:
            raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "body over 1 MiB")
        try:
            return json.loads(self.rfile.read(length))
        except ValueError:
            raise RequestError(HTTPStatus.BAD_REQUEST, "body is not JSON") from None

    def reply(self, status: HTTPStatus, body: dict[str, Any]) -> None:
        """Sends `body` as JSON; `send_response` also logs the request's one line to stderr."""
        data = json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class TriageServer(ThreadingHTTPServer):
    """A threading HTTP server that carries the loaded model to its handlers."""

    # Non-daemon handler threads are joined by server_close(): requests in flight at SIGTERM end.
    daemon_threads = False

    def __init__(self, address: tuple[str, int], router: Router) -> None:
        super().__init__(address, Handler)
        self.router = router


def main() -> int:
    """Loads the model, serves until SIGTERM or SIGINT, finishes open requests, returns 0."""
    router = Router.load(os.environ.get("MODEL_DIR", "/models/router"))
    server = TriageServer(("0.0.0.0", int(os.environ.get("PORT", "8081"))), router)

    def stop(signum: int, frame: FrameType | None) -> None:
        # shutdown() waits for serve_forever() to return, and that runs in this (the main) thread.
        threading.Thread(target=server.shutdown).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    labels = ", ".join(router.labels)
    print(f"triage: model {router.version} ({labels}), port {server.server_port}", file=sys.stderr)
    server.serve_forever()
    server.server_close()
    print("triage: stopped", file=sys.stderr)
    return 0
