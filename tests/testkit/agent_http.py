"""Talking to an agent's HTTP service as the tests do: JSON requests, and waiting for /healthz."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any, Callable, Optional, Tuple

import pytest


def request_json(url: str, body: Optional[Any] = None, timeout: float = 10) -> Tuple[int, Any]:
    """POST `body` as JSON (GET without one); the status and the parsed answer (text on errors)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, headers={"Content-Type": "application/json"} if data else {}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


def wait_until_healthy(
    url: str,
    timeout: float,
    still_running: Callable[[], bool],
    diagnostics: Callable[[], str],
) -> None:
    """Poll `url` (a /healthz) until it answers 200; fail with `diagnostics()` if it does not
    within `timeout`, or as soon as `still_running()` turns false."""
    deadline = time.monotonic() + timeout
    last_error: object = None
    while time.monotonic() < deadline:
        if not still_running():
            pytest.fail(f"stopped before {url} answered:\n{diagnostics()}", pytrace=False)
        try:
            status, body = request_json(url, timeout=2)
            if status == 200:
                assert body["status"] == "ok", body
                return
            last_error = f"HTTP {status}: {body}"
        except (OSError, ValueError) as error:  # refused, reset, not JSON yet
            last_error = error
        time.sleep(0.25)
    pytest.fail(
        f"{url} did not answer 200 within {timeout:.0f}s ({last_error}):\n{diagnostics()}",
        pytrace=False,
    )


def wait_until_container_healthy(container: Any, url: str, timeout: float) -> None:
    """`wait_until_healthy` for a docker-py container: fail, with its logs, if it stops first."""

    def running() -> bool:
        container.reload()
        return bool(container.status == "running")

    wait_until_healthy(
        url,
        timeout=timeout,
        still_running=running,
        diagnostics=lambda: container.logs().decode(errors="replace"),
    )
