"""HTTP connections whose timeouts say what happened: one to connect (`NetworkLimits.connect_s`,
`limits.py`), one for every answer or piece of data after that (`read_s`); `connected` tells the
two apart when a timeout is raised."""

from __future__ import annotations

import http.client
from typing import Optional


class _Timed:
    connect_timeout: float
    read_timeout: float
    timeout: Optional[float]  # http.client's, used while connecting
    connected = False

    def connect(self) -> None:
        self.timeout = self.connect_timeout
        super().connect()  # type: ignore[misc]
        self.sock.settimeout(self.read_timeout)  # type: ignore[attr-defined]
        self.connected = True


class TimedHTTPConnection(_Timed, http.client.HTTPConnection):
    pass


class TimedHTTPSConnection(_Timed, http.client.HTTPSConnection):
    pass
