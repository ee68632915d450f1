"""`POST /route` and `GET /healthz` over the standard library's threading HTTP server, for any
intent model (the router's centroids, the classifier agent's torch model).

Configured by environment only (the image has no shell to pass flags through): `PORT` (default
8080) and `MODEL_DIR` (default /models/router, where the image's model layer puts the weights).
The model is loaded before the port opens, so a missing or mismatched model fails the container at
start instead of on its first request.
"""

import json
import os
import signal
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any, Protocol

MAX_BODY_BYTES = 64 * 1024


class IntentModel(Protocol):
    """What the server asks of a model: its labels, its version, and one text's best intent."""

    labels: tuple[str, ...]
    version: str

    def route(self, text: str) -> tuple[str, float]:
        ...


class RequestError(Exception):
    """A client error, answered with its status and message."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


class Handler(BaseHTTPRequestHandler):
    """Answers JSON requests with the router the server was started with."""

    server: "RouterServer"
    server_version = "router-agent"
    sys_version = ""
    # Bounds how long a stalled client can hold a thread, and so how long shutdown can wait.
    timeout = 5

    def do_GET(self) -> None:
        if self.path == "/healthz":
            self.reply(HTTPStatus.OK, {"status": "ok", **self.server.health})
        else:
            self.reply(HTTPStatus.NOT_FOUND, {"error": f"no such endpoint: GET {self.path}"})

    def do_POST(self) -> None:
        if self.path != "/route":
            self.reply(HTTPStatus.NOT_FOUND, {"error": f"no such endpoint: POST {self.path}"})
            return
        try:
            body = self.read_json()
            text = body.get("text") if isinstance(body, dict) else None
            if not isinstance(text, str) or not text.strip():
                raise RequestError(HTTPStatus.BAD_REQUEST, 'expected {"text": "<non-empty>"}')
        except RequestError as error:
            self.reply(error.status, {"error": str(error)})
            return
        intent, score = self.server.router.route(text)
        model = self.server.router.version
        self.reply(HTTPStatus.OK, {"intent": intent, "score": round(score, 4), "model": model})

    def read_json(self) -> Any:
        """The request body, parsed as JSON."""
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            raise RequestError(HTTPStatus.LENGTH_REQUIRED, "Content-Length required") from None
        if not 0 <= length <= MAX_BODY_BYTES:
            raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "body over 64 KiB")
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


class RouterServer(ThreadingHTTPServer):
    """A threading HTTP server that carries the loaded model to its handlers."""

    # Non-daemon handler threads are joined by server_close(): requests in flight at SIGTERM end.
    daemon_threads = False

    def __init__(
        self, address: tuple[str, int], router: IntentModel, health: dict[str, Any]
    ) -> None:
        super().__init__(address, Handler)
        self.router = router
        # Probed once (the GPUs a container sees do not change while it runs), shown at /healthz.
        self.health = health


def serve(name: str, router: IntentModel, health: dict[str, Any]) -> int:
    """Serves `router` on `PORT` until SIGTERM or SIGINT, finishes open requests, returns 0."""
    server = RouterServer(("0.0.0.0", int(os.environ.get("PORT", "8080"))), router, health)

    def stop(signum: int, frame: FrameType | None) -> None:
        # shutdown() waits for serve_forever() to return, and that runs in this (the main) thread.
        threading.Thread(target=server.shutdown).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    labels = ", ".join(router.labels)
    print(f"{name}: model {router.version} ({labels}), port {server.server_port}", file=sys.stderr)
    print(f"{name}: {json.dumps(health)}", file=sys.stderr)
    server.serve_forever()
    server.server_close()
    print(f"{name}: stopped", file=sys.stderr)
    return 0
