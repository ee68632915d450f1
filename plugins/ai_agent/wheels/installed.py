"""What an installed distribution is: its files in a scratch tree that mirrors the image root,
with the mode, size and sha256 each gets in a layer. No third-party imports: the Debian base
step uses the bytecode compiler, which works on these, without installing any wheel."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, List, Tuple

from ..oci.layer import Entry

CHUNK_SIZE = 1 << 20


@dataclass(frozen=True)
class InstalledFile:
    """One installed file: its image path (relative), mode, size and sha256 (hex)."""

    path: str
    mode: int
    size: int
    sha256: str


@dataclass(frozen=True)
class InstalledDistribution:
    """A wheel unpacked under `root`, a scratch directory that mirrors the image root."""

    project: str
    version: str
    wheel: str
    root: Path
    files: Tuple[InstalledFile, ...]
    notes: Tuple[str, ...] = field(default=())
    # Paths the wheel installs that an earlier layer writes (the same bytes): not in `files`.
    skipped: Tuple[str, ...] = field(default=())

    @property
    def size(self) -> int:
        return sum(installed.size for installed in self.files)

    def entries(self) -> List[Entry]:
        return [
            Entry.file(installed.path, self.root / installed.path, mode=installed.mode)
            for installed in self.files
        ]

    def with_files(self, added: Iterable[InstalledFile]) -> InstalledDistribution:
        files = sorted(self.files + tuple(added), key=lambda installed: installed.path)
        return replace(self, files=tuple(files))


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(CHUNK_SIZE), b""):
            digest.update(chunk)
    return digest.hexdigest()
