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

Images are placed in one OCI image layout shared by all of them (`export_files(layout=...)`,
`layout.py`), under a lock, as an export of each image runs at once: its blobs are
content-addressed, so each is written only if absent; `index.json`, which names what the layout
holds, is replaced after every blob it references is in place, and blobs no longer referenced
are removed after it. A layer blob is a hardlink to the file the build left where it can be (the
store's own, or the sandbox's copy); a layer kept as a recipe (`recipe.py`) is stitched from it
and checked against its digest; across filesystems a blob is copied, once, however many images
hold it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any, Callable, Iterator, List, Mapping, Optional, Sequence, Tuple

from .errors import OciError
from .layer import Entry, same_content
from .layout import (
    LAYOUT_FILE,
    LAYOUT_FILE_BYTES,
    merged_index,
    reachable_blobs,
    read_index,
)

_COPY_CHUNK = 1 << 20
# The document of a layout that says what it holds, written after everything it references.
_LAYOUT_ROOT = "index.json"
_BLOBS = "blobs/sha256"
# Under `into`: the lock that one image's export of the shared layout holds.
_LOCK = ".ai-agent/layout.lock"
# Under `into`: where earlier versions kept a second name of blobs shared by per-image layouts.
_EARLIER_KEPT = ".ai-agent/blobs"
# Link errors that mean "copy instead": another filesystem, no hardlinks, too many links.
_LINK_REFUSED = {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EACCES}


class ExportError(OciError):
    """A file could not be placed; the message names it."""


@dataclass(frozen=True)
class LayoutImage:
    """An image's part of the shared layout `directory` (under `into`): its `blobs`, and its
    `entries` for `index.json` (`layout.layout_entries`), replacing those of `owner`; without
    entries, the owner's image leaves the layout."""

    directory: str
    owner: str
    blobs: Tuple[Entry, ...] = ()
    entries: Tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True)
class Exported:
    """What `export_files` did: the destination paths it wrote, and those already in place."""

    written: Tuple[str, ...]
    unchanged: Tuple[str, ...]


def partial_path(destination: Path) -> Path:
    """Where a file is written before it is renamed to `destination`."""
    return destination.with_name(f".{destination.name}.partial")


def export_files(
    into: Path,
    files: Sequence[Tuple[Path, str]],
    layout: Optional[LayoutImage] = None,
    remove: Sequence[str] = (),
) -> Exported:
    """Place the image of `layout`, if given, in its shared layout, then each `(source, relative
    path)` under `into`, in order, the last one last; the `remove` paths (what an earlier set
    held and this one does not) go."""
    if not files:
        return Exported((), ())
    if layout is None:
        return _export(into, files, None, remove)
    with _locked(into / _LOCK):
        return _export(into, files, layout, remove)


def _export(
    into: Path,
    files: Sequence[Tuple[Path, str]],
    layout: Optional[LayoutImage],
    remove: Sequence[str],
) -> Exported:
    destinations = [(source, _destination(into, relative)) for source, relative in files]
    unchanged = [_same_file(source, destination) for source, destination in destinations]
    names = [relative for _, relative in files]
    change: Optional[_LayoutChange] = None  # how the layout changes, if it does
    if layout is not None:
        layout_dir = _destination(into, layout.directory)
        change = _layout_change(layout_dir, layout)
        if layout.entries:
            names.insert(0, layout.directory)
            unchanged.insert(0, change is None)
    stale = [_destination(into, relative) for relative in (*remove, _EARLIER_KEPT)]
    stale = [path for path in stale if path.exists() or path.is_symlink()]
    if all(unchanged) and change is None and not stale:
        return Exported((), tuple(names))
    last = destinations[-1][1]
    for path in (last, *stale):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)  # a layout of an earlier version, or kept blobs
        elif path.exists() or path.is_symlink():
            path.unlink()
    if layout is not None and change is not None:
        _write_layout(layout_dir, layout, change)
    placed = unchanged[1:] if layout is not None and layout.entries else unchanged
    for (source, destination), in_place in zip(destinations, placed):
        if not in_place or destination == last:
            _place(source, destination)
    unchanged[-1] = False  # placed again: it says that the set is complete
    return Exported(
        tuple(name for name, in_place in zip(names, unchanged) if not in_place),
        tuple(name for name, in_place in zip(names, unchanged) if in_place),
    )


@contextlib.contextmanager
def _locked(lock: Path) -> Iterator[None]:
    """Hold `lock` (a file, created if absent) exclusively: the exports of other images wait."""
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        handle = open(lock, "a")
    except OSError as error:
        raise ExportError(f"{lock}: {error.strerror or error}") from None
    with handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        yield


# What an image's metadata JSON names under `sbom` may be removed with `sbom_named_by`: only
# these kinds of file.
_SBOM_SUFFIXES = (".spdx.json", ".provenance.json")


def sbom_named_by(into: Path, metadata: str) -> List[str]:
    """The SBOM and provenance files that the metadata JSON at `metadata` (relative to `into`)
    names under `sbom` (`{"spdx": [...], "provenance": "..."}`), if it is there and readable:
    what an earlier package of the image placed, so that those a new set lacks (an image now
    for several platforms has other SPDX file names) can go. Anything else it may name, or a
    file it cannot read, is ignored: this only tidies."""
    try:
        document = json.loads(_destination(into, metadata).read_bytes())
        sbom = document["sbom"]
        named = [*sbom["spdx"], sbom["provenance"]]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    return [
        path
        for path in named
        if isinstance(path, str) and path.endswith(_SBOM_SUFFIXES) and _inside(into, path)
    ]


def _inside(into: Path, relative: str) -> bool:
    try:
        _destination(into, relative)
    except ExportError:
        return False
    return True


def _entry_size(entry: Entry) -> int:
    if entry.data is not None:
        return len(entry.data)
    if entry.recipe is not None:
        return entry.recipe.size
    return os.stat(str(entry.source)).st_size


def _entry_in_place(directory: Path, entry: Entry) -> bool:
    """A blob is in place if a file of its size has its name (the names are digests, and blobs
    are only ever renamed into place whole); a document, if it holds the same bytes."""
    path = directory / entry.path
    try:
        if path.is_symlink() or not path.is_file():
            return False
        if entry.path.startswith(f"{_BLOBS}/"):
            return path.stat().st_size == _entry_size(entry)
        return path.read_bytes() == entry.data
    except OSError as error:
        raise ExportError(f"{path}: {error.strerror or error}") from None


@dataclass(frozen=True)
class _LayoutChange:
    """The layout's new `index.json`, and whether it drops an image the old one named (only
    then can a blob become garbage)."""

    index: bytes
    drops: bool


def _layout_change(directory: Path, layout: LayoutImage) -> Optional[_LayoutChange]:
    """How the layout changes, or None if it already holds `layout` as it is."""
    index_path = directory / _LAYOUT_ROOT
    try:
        current = index_path.read_bytes() if index_path.is_file() else None
    except OSError as error:
        raise ExportError(f"{index_path}: {error.strerror or error}") from None
    before = read_index(current, str(index_path))
    index = merged_index(before, layout.owner, layout.entries)
    kept = {entry.get("digest") for entry in read_index(index, str(index_path))}
    change = _LayoutChange(index, any(entry.get("digest") not in kept for entry in before))
    if not layout.entries:
        return None if current is None or index == current else change
    in_place = index == current and all(
        _entry_in_place(directory, entry)
        for entry in (*layout.blobs, Entry.content(LAYOUT_FILE, LAYOUT_FILE_BYTES))
    )
    return None if in_place else change


def _write_layout(directory: Path, layout: LayoutImage, change: _LayoutChange) -> None:
    """Every blob of `layout` not yet there, then `oci-layout`, then `index.json`; then, if it
    dropped an image, the blobs that no entry of `index.json` reaches go (another image's old
    layers among them), and always what a killed export left half-written. Reading every
    image's manifest only when an image is dropped keeps a cold `package` of N images from
    reading N² manifests."""
    for entry in (*layout.blobs, Entry.content(LAYOUT_FILE, LAYOUT_FILE_BYTES)):
        if _entry_in_place(directory, entry):
            continue
        if entry.data is not None:
            _place_bytes(entry.data, directory / entry.path)
        else:
            _place_blob(entry, directory / entry.path)
    _place_bytes(change.index, directory / _LAYOUT_ROOT)
    blobs = directory / _BLOBS
    names = [blob.name for blob in blobs.iterdir()] if blobs.is_dir() else []
    garbage = {name for name in names if name.startswith(".")}  # partial files
    if change.drops:

        def read_blob(hex_digest: str) -> Optional[bytes]:
            try:
                return (blobs / hex_digest).read_bytes()
            except FileNotFoundError:
                return None

        entries = read_index(change.index, str(directory / _LAYOUT_ROOT))
        garbage |= set(names) - reachable_blobs(entries, read_blob)
    for name in garbage:
        (blobs / name).unlink()


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
        if source.stat().st_size != destination.stat().st_size:
            return False
        # Pants' store rewrites a file whenever a step captures the same bytes again (another
        # checkout sharing the store, say): then only the bytes say whether it is unchanged.
        return _same_bytes(source, destination)
    except OSError as error:
        raise ExportError(f"{destination}: {error.strerror or error}") from None


def _same_bytes(first: Path, second: Path) -> bool:
    with open(first, "rb") as one, open(second, "rb") as other:
        return same_content(one, other)


def _linked(source: Path, partial: Path) -> bool:
    """Whether `partial` could be made a hardlink to `source`; not across filesystems."""
    try:
        os.link(source, partial)
    except OSError as error:
        if error.errno in _LINK_REFUSED:
            return False
        raise
    return True


def _copier(source: Path) -> Callable[[IO[bytes]], None]:
    def copy(writer: IO[bytes]) -> None:
        with open(source, "rb") as reader:
            shutil.copyfileobj(reader, writer, _COPY_CHUNK)  # type: ignore[misc]

    return copy


def _place(source: Path, destination: Path) -> None:
    """`destination` becomes `source`: a hardlink to it, else (across filesystems) a copy."""

    def link_or_copy(partial: Path) -> None:
        if not _linked(source, partial):
            _write(partial, _copier(source))

    _renamed_into_place(destination, link_or_copy)


def _place_blob(entry: Entry, destination: Path) -> None:
    """`destination` becomes the blob of `entry`: a hardlink to the build's file (Pants' store's,
    or the sandbox's own copy of a file under 512 KiB, which the link keeps when the sandbox
    goes) where the filesystem allows, else a copy of it; or the blob stitched from
    `entry.recipe`."""

    def link_or_write(partial: Path) -> None:
        if entry.recipe is not None:
            _write(partial, lambda writer: _stitch(entry, writer))
            return
        source = Path(str(entry.source))
        if not _linked(source, partial):
            _write(partial, _copier(source))

    _renamed_into_place(destination, link_or_write)


def _stitch(entry: Entry, writer: IO[bytes]) -> None:
    assert entry.recipe is not None
    hasher = hashlib.sha256()
    with entry.recipe.open() as reader:
        for chunk in iter(lambda: reader.read(_COPY_CHUNK), b""):
            hasher.update(chunk)
            writer.write(chunk)
    if f"sha256:{hasher.hexdigest()}" != entry.digest:
        raise ExportError(
            f"{entry.path}: its recipe makes sha256:{hasher.hexdigest()}, not {entry.digest}"
        )


def _place_bytes(data: bytes, destination: Path) -> None:
    _renamed_into_place(destination, lambda partial: _write(partial, lambda out: out.write(data)))


def _write(partial: Path, fill: Callable[[IO[bytes]], object]) -> None:
    with open(partial, "wb") as writer:
        fill(writer)
        writer.flush()
        os.fsync(writer.fileno())
    os.chmod(partial, 0o644)


def _renamed_into_place(destination: Path, make: Callable[[Path], None]) -> None:
    """`make` the file beside `destination` under a temporary name, then rename it into place;
    on failure the temporary file goes too."""
    partial = partial_path(destination)
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        if partial.exists() or partial.is_symlink():
            partial.unlink()
        make(partial)
        os.replace(partial, destination)
    except BaseException as error:
        with contextlib.suppress(OSError):
            partial.unlink()
        if isinstance(error, OSError):
            raise ExportError(f"{destination}: {error.strerror or error}") from None
        raise
