"""HTTP(S) downloads from Debian mirrors: whole small files (indexes) or streamed big ones (.debs).

urllib honours `http_proxy`/`https_proxy` and the system CA bundle, which is all a mirror needs.
Connection failures and 5xx answers are retried a few times; 404/410 are final (`NotFound`): a
mirror that lacks a file will not grow it on the second try.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import BinaryIO, Iterator, Optional

TIMEOUT_S = 60
# Streamed downloads are read in chunks of this size.
CHUNK_SIZE = 1 << 20
ATTEMPTS = 3
FIRST_RETRY_DELAY_S = 1.0
USER_AGENT = "ai-agent-debian/1"


class DownloadError(Exception):
    """A URL could not be read; the message names the URL and why."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"{url}: {reason}")


class NotFound(DownloadError):
    """The server answered that it does not have the file (HTTP 404 or 410)."""


class UnexpectedContent(DownloadError):
    """The server sent bytes other than the pinned ones (wrong size or sha256)."""


@contextlib.contextmanager
def open_url(url: str) -> Iterator[BinaryIO]:
    """A readable response for `url`, after retrying transient failures."""
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    delay = FIRST_RETRY_DELAY_S
    for attempt in range(1, ATTEMPTS + 1):
        try:
            response = urllib.request.urlopen(request, timeout=TIMEOUT_S)
            break
        except urllib.error.HTTPError as error:
            if error.code in (404, 410):
                raise NotFound(url, f"HTTP {error.code} {error.reason}") from None
            if error.code < 500 or attempt == ATTEMPTS:
                raise DownloadError(url, f"HTTP {error.code} {error.reason}") from None
        except (urllib.error.URLError, OSError) as error:
            if attempt == ATTEMPTS:
                reason = getattr(error, "reason", error)
                raise DownloadError(url, f"cannot connect: {reason}") from None
        time.sleep(delay)
        delay *= 2
    with response:
        yield response


def read_url(url: str) -> bytes:
    """The whole body of `url` (for indexes: a few MiB at most)."""
    with open_url(url) as response:
        try:
            return response.read()
        except OSError as error:
            raise DownloadError(url, f"connection lost while reading: {error}") from None


def download_verified(url: str, target: Path, sha256: str, size: Optional[int] = None) -> None:
    """Stream `url` into a temporary file beside `target`, checking the size (when pinned) and
    sha256 as it arrives, and rename it into place only if both match: an interrupted or refused
    download leaves nothing behind."""
    descriptor, temporary = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=".partial", dir=target.parent
    )
    try:
        with os.fdopen(descriptor, "wb") as output, open_url(url) as response:
            digest = hashlib.sha256()
            received = 0
            while True:
                try:
                    chunk = response.read(CHUNK_SIZE)
                except OSError as error:
                    raise DownloadError(url, f"connection lost: {error}") from None
                if not chunk:
                    break
                received += len(chunk)
                if size is not None and received > size:
                    raise UnexpectedContent(url, f"serves more than the {size} pinned bytes")
                digest.update(chunk)
                output.write(chunk)
        if (size is not None and received != size) or digest.hexdigest() != sha256.lower():
            pinned = (
                f"{size} bytes with sha256 {sha256}" if size is not None else f"sha256 {sha256}"
            )
            raise UnexpectedContent(
                url, f"served {received} bytes with sha256 {digest.hexdigest()}, pinned: {pinned}"
            )
        os.chmod(temporary, 0o644)
        os.replace(temporary, target)
    except BaseException:
        os.unlink(temporary)
        raise
