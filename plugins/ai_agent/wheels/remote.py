"""A wheel read where its index serves it, by HTTP byte ranges.

What grouping needs of a wheel is its zip directory and a few small members (`.dist-info`, the
files another wheel installs too): for torch, about a megabyte of its 900. Read by ranges, the
grouping of an image's wheels takes seconds and needs no wheel downloaded, so each layer's step
can download its own wheels (`steps.run_layer`) and the first layers build while the last
wheels arrive. Nothing read this way is trusted for the image: the layer step checks the listing
grouping saw against the wheel it downloaded and verified (`plan.PlannedWheel.listing`).
"""

from __future__ import annotations

import io
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Dict, Iterable, List, Optional, Tuple, Type, Union

from ..debian.download import (
    DOWNLOAD_LIMITS,
    FETCH_JOBS,
    RangesNotServed,
    download_verified,
    read_range,
)
from ..oci.limits import NetworkLimits

# The first read of a wheel: its end, where the zip directory and (written last by every wheel
# builder) the `.dist-info` files are.
TAIL_BYTES = 1 << 20
# Any other read asks for at least this much: a member's local header and a small member in one.
READ_AHEAD = 256 << 10


def is_url(location: str) -> bool:
    return location.startswith(("https://", "http://", "file://"))


class RangeFile(io.RawIOBase):
    """A read-only, seekable file over `url`, read by byte ranges: what `zipfile` reads. Small
    reads are kept (the tail, and READ_AHEAD-sized reads), so the zip directory and the members
    near each other cost one request; `requests` counts them, `received` their bytes."""

    def __init__(self, url: str, name: str, limits: NetworkLimits = DOWNLOAD_LIMITS) -> None:
        super().__init__()
        self.url = url
        self.name = name
        self.limits = limits
        first, data, self.size = read_range(url, None, TAIL_BYTES, limits)
        self.requests = 1
        self.received = len(data)
        self._kept: List[Tuple[int, bytes]] = [(first, data)]
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        origin = {os.SEEK_SET: 0, os.SEEK_CUR: self._position, os.SEEK_END: self.size}[whence]
        if origin + offset < 0:
            raise OSError(f"{self.name}: seek before the start")
        self._position = origin + offset
        return self._position

    def readinto(self, buffer: Union[bytearray, memoryview]) -> int:  # type: ignore[override]
        wanted = min(len(buffer), self.size - self._position)
        if wanted <= 0:
            return 0
        data = self._read(self._position, wanted)
        buffer[: len(data)] = data
        self._position += len(data)
        return len(data)

    def _read(self, start: int, length: int) -> bytes:
        for first, data in self._kept:
            if first <= start and start + length <= first + len(data):
                return data[start - first : start - first + length]
        asked = min(max(length, READ_AHEAD), self.size - start)
        _, data, _ = read_range(self.url, start, asked, self.limits)
        self.requests += 1
        self.received += len(data)
        if asked == READ_AHEAD:
            self._kept.append((start, data))
        return data[:length]


WheelArchive = Union[Path, RangeFile]


class WheelArchives:
    """Each wheel's archive to list, by location: a local file as it is, a URL as a `RangeFile`
    (opened FETCH_JOBS at a time), or, where the server serves no ranges (`file://` URLs, some
    private indexes), downloaded whole into a temporary directory and verified by its sha256
    first. A context manager: the directory goes on exit."""

    def __init__(self, limits: NetworkLimits = DOWNLOAD_LIMITS) -> None:
        self.limits = limits
        self._archives: Dict[str, WheelArchive] = {}
        self._downloads: Optional[tempfile.TemporaryDirectory] = None

    def __enter__(self) -> WheelArchives:
        self._downloads = tempfile.TemporaryDirectory(prefix="wheels-")
        return self

    def __exit__(
        self,
        kind: Optional[Type[BaseException]],
        error: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> None:
        if self._downloads is not None:
            self._downloads.cleanup()

    def open_all(self, wheels: Iterable[Tuple[str, str, str]]) -> None:
        """Open every (location, filename, sha256) at once, FETCH_JOBS at a time."""
        wanted = [wheel for wheel in wheels if wheel[0] not in self._archives]
        with ThreadPoolExecutor(FETCH_JOBS) as pool:
            for (location, _, _), archive in zip(wanted, pool.map(self._open, wanted)):
                self._archives[location] = archive

    def __getitem__(self, location: str) -> WheelArchive:
        return self._archives[location]

    def _open(self, wheel: Tuple[str, str, str]) -> WheelArchive:
        location, filename, sha256 = wheel
        if not is_url(location):
            return Path(location)
        try:
            return RangeFile(location, filename, self.limits)
        except RangesNotServed:
            assert self._downloads is not None, "used outside its `with` block"
            target = Path(self._downloads.name) / sha256 / filename
            target.parent.mkdir(exist_ok=True)
            download_verified(location, target, sha256, limits=self.limits)
            return target
