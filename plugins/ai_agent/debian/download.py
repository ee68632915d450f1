"""HTTP(S) downloads from Debian mirrors and PyPI: whole small files (indexes) or streamed big
ones (.debs, wheels).

urllib honours `http_proxy`/`https_proxy` and the system CA bundle, which is all a mirror needs.
Timeouts say what happened: no connection within `NetworkLimits.connect_s`, or a connection
over which nothing arrived for `NetworkLimits.read_s` (no answer, or a transfer that stalled).
Those, lost connections and 5xx answers are retried, each retry said on stderr (the build step's
log), until `NetworkLimits.attempts` or `.total_s` runs out; 404/410 are final (`NotFound`): a
mirror that lacks a file will not grow it on the second try.

`check_url` asks whether a pinned file is still served with HEAD, so a lock check downloads
nothing; a redirect keeps the HEAD. `read_range` reads part of a file (HTTP `Range`), so that a
wheel's zip directory is read where it lies without downloading the wheel.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import socket
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Callable, Dict, Optional, Tuple, Type, TypeVar

from ..oci.connection import TimedHTTPConnection, TimedHTTPSConnection
from ..oci.limits import NetworkLimits
from ..oci.types import GONE, MISMATCH, UNREACHABLE, Finding
from .errors import DebianError

# Streamed downloads are read in chunks of this size.
CHUNK_SIZE = 1 << 20
FIRST_RETRY_DELAY_S = 1.0
USER_AGENT = "ai-agent-debian/1"
# The limits of the command lines that download (`debian lock|fetch|check`, `wheels
# fetch|check`).
DOWNLOAD_LIMITS = NetworkLimits(attempts=3)
# HEAD requests in flight at once in a lock check: a lock's few dozen files take seconds instead of
# a minute, and no server sees more than a browser's worth of connections.
CHECK_JOBS = 8
# .debs fetched at once by one step: a base's hundred small files are latency-bound.
FETCH_JOBS = 8

T = TypeVar("T")
C = TypeVar("C", TimedHTTPConnection, TimedHTTPSConnection)


class DownloadError(DebianError):
    """A URL could not be read; the message names the URL and why."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"{url}: {reason}")


class NotFound(DownloadError):
    """The server answered that it does not have the file (HTTP 404 or 410)."""


class UnexpectedContent(DownloadError):
    """The server sent bytes other than the pinned ones (wrong size or sha256)."""


class RangesNotServed(DownloadError):
    """The server answered a byte-range request with the whole file, or not as a range."""


class _Transient(DownloadError):
    """A failure that another attempt may not meet: no connection, no data, a 5xx answer."""


def _opener(limits: NetworkLimits, state: Dict[str, bool]) -> urllib.request.OpenerDirector:
    """urllib with a connect timeout apart from the read timeout, noting in `state` whether
    the connection (TCP, and TLS for https) was made."""

    def timed(base: Type[C]) -> Type[C]:
        class Timed(base):  # type: ignore[valid-type,misc]
            connect_timeout, read_timeout = limits.connect_s, limits.read_s

            def connect(self) -> None:
                super().connect()
                state["connected"] = True

        return Timed

    Connection, TLSConnection = timed(TimedHTTPConnection), timed(TimedHTTPSConnection)

    class HTTPHandler(urllib.request.HTTPHandler):
        def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
            return self.do_open(Connection, req)

    class HTTPSHandler(urllib.request.HTTPSHandler):
        def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
            arguments = {"context": getattr(self, "_context", None)}
            if getattr(self, "_check_hostname", None) is not None:  # Python < 3.12
                arguments["check_hostname"] = self._check_hostname  # type: ignore[attr-defined]
            return self.do_open(TLSConnection, req, **arguments)  # type: ignore[arg-type]

    class KeepMethod(urllib.request.HTTPRedirectHandler):
        """Follows a redirect with the request's own method: urllib's turns a HEAD into a GET,
        which would download what a check only asks about."""

        def redirect_request(
            self,
            req: urllib.request.Request,
            fp: IO[bytes],
            code: int,
            msg: str,
            headers: http.client.HTTPMessage,
            newurl: str,
        ) -> Optional[urllib.request.Request]:
            redirected = super().redirect_request(req, fp, code, msg, headers, newurl)
            if redirected is not None:
                redirected.method = req.get_method()
            return redirected

    return urllib.request.build_opener(HTTPHandler, HTTPSHandler, KeepMethod)


def _timed_out(error: BaseException) -> bool:
    reason = getattr(error, "reason", error)
    return isinstance(reason, (socket.timeout, TimeoutError))


def _with_retries(url: str, limits: NetworkLimits, attempt: Callable[[], T]) -> T:
    """`attempt()` until it does not fail transiently, saying each retry on stderr, within
    `limits.attempts` and `limits.total_s`."""
    started = time.monotonic()
    for number in range(1, limits.attempts + 1):
        try:
            return attempt()
        except _Transient as error:
            reason = str(error)[len(url) + 2 :]
            elapsed = time.monotonic() - started
            delay = limits.retry_delay(number, elapsed, FIRST_RETRY_DELAY_S)
            if delay is None:
                raise DownloadError(url, f"{reason} ({limits.given_up(number, elapsed)})") from None
            print(
                f"retrying {url} in {delay:g} s (attempt {number + 1} of"
                f" {limits.attempts}): {reason}",
                file=sys.stderr,
                flush=True,
            )
            time.sleep(delay)
    raise AssertionError("unreachable: the last attempt returns or raises")


def _open(
    url: str, limits: NetworkLimits, method: str = "GET", byte_range: Optional[str] = None
) -> http.client.HTTPResponse:
    """One attempt at a response for `url` (for `byte_range`, a `Range` header's value)."""
    state = {"connected": False}
    headers = {"User-Agent": USER_AGENT}
    if byte_range is not None:
        headers["Range"] = byte_range
    request = urllib.request.Request(url, headers=headers, method=method)
    try:
        return _opener(limits, state).open(request)
    except urllib.error.HTTPError as error:
        if error.code in (404, 410):
            raise NotFound(url, f"HTTP {error.code} {error.reason}") from None
        if error.code >= 500:
            raise _Transient(url, f"HTTP {error.code} {error.reason}") from None
        raise DownloadError(url, f"HTTP {error.code} {error.reason}") from None
    except (urllib.error.URLError, OSError) as error:
        if _timed_out(error):
            raise _Transient(
                url,
                f"connected, but no answer within {limits.read_s:g} s"
                if state["connected"]
                else f"cannot connect within {limits.connect_s:g} s",
            ) from None
        reason = getattr(error, "reason", error)
        where = "connection lost" if state["connected"] else "cannot connect"
        raise _Transient(url, f"{where}: {reason}") from None


def _read_failed(url: str, error: OSError, limits: NetworkLimits, received: int) -> _Transient:
    if _timed_out(error):
        return _Transient(
            url, f"connected, but no data for {limits.read_s:g} s after {received} bytes"
        )
    return _Transient(url, f"connection lost after {received} bytes: {error}")


def read_url(url: str, limits: NetworkLimits = DOWNLOAD_LIMITS) -> bytes:
    """The whole body of `url` (for indexes: a few MiB at most)."""

    def attempt() -> bytes:
        with _open(url, limits) as response:
            try:
                return response.read()
            except OSError as error:
                raise _read_failed(url, error, limits, 0) from None

    return _with_retries(url, limits, attempt)


_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")


def read_range(
    url: str, start: Optional[int], length: int, limits: NetworkLimits = DOWNLOAD_LIMITS
) -> Tuple[int, bytes, int]:
    """Up to `length` bytes of `url` from `start` (None: its last `length` bytes), asked with an
    HTTP `Range` header: where they begin, the bytes, and the file's size. `RangesNotServed` if
    the server answers with anything but that range (a 200 with the whole file: nothing of its
    body is read)."""
    if start is None:
        byte_range = f"bytes=-{length}"
    else:
        byte_range = f"bytes={start}-{start + length - 1}"

    def attempt() -> Tuple[int, bytes, int]:
        with _open(url, limits, byte_range=byte_range) as response:
            match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
            if getattr(response, "status", None) != 206 or match is None:
                raise RangesNotServed(url, f"the answer to `Range: {byte_range}` is not a range")
            first, last, size = (int(group) for group in match.groups())
            try:
                data = response.read()
            except OSError as error:
                raise _read_failed(url, error, limits, 0) from None
        if len(data) != last - first + 1 or (start is not None and first != start):
            raise _Transient(url, f"served {len(data)} bytes at {first} for `{byte_range}`")
        return first, data, size

    return _with_retries(url, limits, attempt)


def download_verified(
    url: str,
    target: Path,
    sha256: str,
    size: Optional[int] = None,
    limits: NetworkLimits = DOWNLOAD_LIMITS,
) -> None:
    """Stream `url` into a temporary file beside `target`, checking the size (when pinned) and
    sha256 as it arrives, and rename it into place only if both match: an interrupted or refused
    download leaves nothing behind. A transfer that stalls or breaks starts again."""
    descriptor, temporary = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=".partial", dir=target.parent
    )
    os.close(descriptor)

    def attempt() -> Tuple[int, str]:
        digest = hashlib.sha256()
        received = 0
        with open(temporary, "wb") as output, _open(url, limits) as response:
            while True:
                try:
                    # What has arrived, up to a chunk: a stall is then reported where it began.
                    chunk = response.read1(CHUNK_SIZE)
                except OSError as error:
                    raise _read_failed(url, error, limits, received) from None
                if not chunk:
                    return received, digest.hexdigest()
                received += len(chunk)
                if size is not None and received > size:
                    raise UnexpectedContent(url, f"serves more than the {size} pinned bytes")
                digest.update(chunk)
                output.write(chunk)

    try:
        received, actual = _with_retries(url, limits, attempt)
        if (size is not None and received != size) or actual != sha256.lower():
            pinned = (
                f"{size} bytes with sha256 {sha256}" if size is not None else f"sha256 {sha256}"
            )
            raise UnexpectedContent(
                url, f"served {received} bytes with sha256 {actual}, pinned: {pinned}"
            )
        os.chmod(temporary, 0o644)
        os.replace(temporary, target)
    except BaseException:
        os.unlink(temporary)
        raise


def served_size(url: str, limits: NetworkLimits = DOWNLOAD_LIMITS) -> Optional[int]:
    """The size the server states for `url` (None if it states none), asked with HEAD, after
    retrying transient failures; `NotFound` if it has no such file."""

    def attempt() -> Optional[int]:
        with _open(url, limits, "HEAD") as response:
            length = response.headers.get("Content-Length", "")
        return int(length) if length.isdigit() else None

    return _with_retries(url, limits, attempt)


def check_url(
    url: str, item: str, size: Optional[int], limits: NetworkLimits = DOWNLOAD_LIMITS
) -> Optional[Finding]:
    """None if `url` is served (with `size` bytes, when pinned and stated), else what is wrong
    with `item`, the pinned thing it serves."""
    try:
        served = served_size(url, limits)
    except NotFound as error:
        return Finding(item, GONE, str(error))
    except DownloadError as error:
        return Finding(item, UNREACHABLE, str(error))
    if size is not None and served is not None and served != size:
        return Finding(item, MISMATCH, f"{url}: the server states {served} bytes, pinned: {size}")
    return None
