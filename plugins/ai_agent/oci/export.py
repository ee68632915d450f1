"""Placing finished outputs in a directory that people and tools read (`dist/`): every file
appears whole or not at all, and a set of files (an image archive and the metadata describing
it) appears complete or not at all.

Each file is hardlinked from where the build left it (a sandbox file that Pants hardlinks from
its store: no byte is copied) or, across filesystems, copied and flushed, under a temporary name
beside its destination, then renamed into place. The last file of a set is removed first and
placed last, so a reader that finds it finds everything it describes; a kill at any moment leaves
either the complete set or one without its last file. A destination that already is the file
(the same inode, or the same bytes for a small file) is left alone: packaging again what did not
change writes nothing.
"""

from __future__ import annotations

import errno
import os
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Sequence, Tuple

# Files up to this size are compared byte for byte when they are not the same inode.
_COMPARED_BYTES = 1 << 20
_COPY_CHUNK = 1 << 20
# Link errors that mean "copy instead": another filesystem, no hardlinks, too many links.
_LINK_REFUSED = {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EACCES}


class ExportError(Exception):
    """A file could not be placed; the message names it."""


@dataclass(frozen=True)
class Exported:
    """What `export_files` did: the destination paths it wrote, and those already in place."""

    written: Tuple[str, ...]
    unchanged: Tuple[str, ...]


def partial_path(destination: Path) -> Path:
    """Where a file is written before it is renamed to `destination`."""
    return destination.with_name(f".{destination.name}.partial")


def export_files(into: Path, files: Sequence[Tuple[Path, str]]) -> Exported:
    """Place each `(source, relative path)` under `into`, in order, the last one last."""
    if not files:
        return Exported((), ())
    destinations = [(source, _destination(into, relative)) for source, relative in files]
    unchanged = [_same_file(source, destination) for source, destination in destinations]
    if all(unchanged):
        return Exported((), tuple(relative for _, relative in files))
    last = destinations[-1][1]
    if last.exists() or last.is_symlink():
        last.unlink()
    for (source, destination), in_place in zip(destinations, unchanged):
        if not in_place or destination == last:
            _place(source, destination)
    unchanged[-1] = False  # placed again: it says that the set is complete
    return Exported(
        tuple(relative for (_, relative), in_place in zip(files, unchanged) if not in_place),
        tuple(relative for (_, relative), in_place in zip(files, unchanged) if in_place),
    )


def _destination(into: Path, relative: str) -> Path:
    path = PurePosixPath(relative)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise ExportError(f"{relative!r}: not a relative path inside {into}")
    return into.joinpath(*path.parts)


def _same_file(source: Path, destination: Path) -> bool:
    try:
        if destination.is_symlink() or not destination.is_file():
            return False
        if os.path.samefile(source, destination):
            return True
        size = source.stat().st_size
        if size != destination.stat().st_size or size > _COMPARED_BYTES:
            return False
        return source.read_bytes() == destination.read_bytes()
    except OSError as error:
        raise ExportError(f"{destination}: {error.strerror or error}") from None


def _place(source: Path, destination: Path) -> None:
    partial = partial_path(destination)
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        if partial.exists() or partial.is_symlink():
            partial.unlink()
        try:
            os.link(source, partial)
        except OSError as error:
            if error.errno not in _LINK_REFUSED:
                raise
            _copy(source, partial)
        os.replace(partial, destination)
    except OSError as error:
        raise ExportError(f"{destination}: {error.strerror or error}") from None


def _copy(source: Path, partial: Path) -> None:
    with open(source, "rb") as reader, open(partial, "wb") as writer:
        shutil.copyfileobj(reader, writer, _COPY_CHUNK)
        writer.flush()
        os.fsync(writer.fileno())
    os.chmod(partial, 0o644)
