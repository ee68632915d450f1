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

An image can also be placed as an OCI image layout directory (`export_files(layout=...)`): its
blobs are content-addressed, so each is written only if absent; `index.json`, which names what
the layout holds, is replaced after every blob it references is in place, and blobs no longer
referenced are removed after it. A layout blob that cannot be a hardlink to a file of Pants' store
(a layer kept as a recipe, `recipe.py`, which is stitched from it and checked against its digest;
a sandbox file with no other name, as Pants writes files under 512 KiB, which its store keeps in
a database; any blob when `into` is on another filesystem than the sandbox) is placed the first
time any layout under `into` needs it and kept once more under `.ai-agent/blobs`, from where every
other layout hardlinks it: however many layouts hold a blob, `into` gets its bytes once. A kept
blob that no layout links any more is removed at the end of the export that unlinked it.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Callable, List, Optional, Sequence, Tuple

from .archive import ImageFiles
from .errors import OciError
from .layer import Entry, same_content

_COPY_CHUNK = 1 << 20
# The document of a layout that says what it holds, written after everything it references.
_LAYOUT_ROOT = "index.json"
_BLOBS = "blobs/sha256"
# Under `into`: one more link to each layout blob that is not one to Pants' store, for the next
# layout to link.
_KEPT = ".ai-agent/blobs"
# Link errors that mean "copy instead": another filesystem, no hardlinks, too many links.
_LINK_REFUSED = {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EACCES}


class ExportError(OciError):
    """A file could not be placed; the message names it."""


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
    layout: Optional[Tuple[str, ImageFiles]] = None,
    remove: Sequence[str] = (),
) -> Exported:
    """Place `layout` (a relative directory and the image files to put there), if given, then
    each `(source, relative path)` under `into`, in order, the last one last; the `remove`
    paths (what an earlier set held and this one does not) go."""
    if not files:
        return Exported((), ())
    destinations = [(source, _destination(into, relative)) for source, relative in files]
    unchanged = [_same_file(source, destination) for source, destination in destinations]
    names = [relative for _, relative in files]
    if layout is not None:
        layout_dir = _destination(into, layout[0])
        names.insert(0, layout[0])
        unchanged.insert(0, _layout_in_place(layout_dir, layout[1]))
    stale = [_destination(into, relative) for relative in remove]
    stale = [path for path in stale if path.exists() or path.is_symlink()]
    if all(unchanged) and not stale:
        return Exported((), tuple(names))
    last = destinations[-1][1]
    for path in (last, *stale):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)  # a layout no longer wanted
        elif path.exists() or path.is_symlink():
            path.unlink()
    if layout is not None and not unchanged[0]:
        _write_layout(layout_dir, layout[1], into / _KEPT)
    _remove_unlinked(into / _KEPT)
    placed = unchanged[1:] if layout is not None else unchanged
    for (source, destination), in_place in zip(destinations, placed):
        if not in_place or destination == last:
            _place(source, destination)
    unchanged[-1] = False  # placed again: it says that the set is complete
    return Exported(
        tuple(name for name, in_place in zip(names, unchanged) if not in_place),
        tuple(name for name, in_place in zip(names, unchanged) if in_place),
    )


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


def _layout_in_place(directory: Path, files: ImageFiles) -> bool:
    return all(_entry_in_place(directory, entry) for entry in (*files.blobs, *files.documents))


def _write_layout(directory: Path, files: ImageFiles, kept_dir: Path) -> None:
    documents = sorted(files.documents, key=lambda entry: entry.path == _LAYOUT_ROOT)
    for entry in (*files.blobs, *documents):
        if _entry_in_place(directory, entry):
            continue
        if entry.data is not None:
            _place_bytes(entry.data, directory / entry.path)
        else:
            _place_blob(entry, directory / entry.path, kept_dir)
    kept = {Path(entry.path).name for entry in files.blobs}
    for blob in (directory / _BLOBS).iterdir():
        if blob.name not in kept:
            blob.unlink()


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


def _linked(source: Path, partial: Path, missing_ok: bool = False) -> bool:
    """Whether `partial` could be made a hardlink to `source`; not across filesystems, nor (if
    `missing_ok`) to a `source` that is not there."""
    try:
        os.link(source, partial)
    except OSError as error:
        if error.errno in _LINK_REFUSED or (missing_ok and error.errno == errno.ENOENT):
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


def _place_blob(entry: Entry, destination: Path, kept_dir: Path) -> None:
    """`destination` becomes the blob of `entry`: a hardlink to the build's file if that file
    has other names (Pants' store's) and the filesystem allows; else to the copy kept in
    `kept_dir` that another layout placed; else to the build's file itself (a sandbox's own
    copy, made by Pants for this step), or a copy of it, or the blob stitched from
    `entry.recipe`, which is then kept there."""
    kept = kept_dir / destination.name
    source = None if entry.recipe is not None else Path(str(entry.source))
    placed_anew = False

    def link_or_write(partial: Path) -> None:
        nonlocal placed_anew
        if source is not None and source.stat().st_nlink > 1 and _linked(source, partial):
            return
        if _linked(kept, partial, missing_ok=True):
            if partial.stat().st_size == _entry_size(entry):
                return
            partial.unlink()
        placed_anew = True
        if source is None:
            _write(partial, lambda writer: _stitch(entry, writer))
        elif not _linked(source, partial):
            _write(partial, _copier(source))

    _renamed_into_place(destination, link_or_write)
    if not placed_anew:
        return
    try:
        kept_dir.mkdir(parents=True, exist_ok=True)
        os.link(destination, kept)
    except FileExistsError:
        pass
    except OSError as error:
        if error.errno not in _LINK_REFUSED:
            raise ExportError(f"{kept}: {error.strerror or error}") from None


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


def _remove_unlinked(kept_dir: Path) -> None:
    """Kept blobs that no layout links any more go (a layout removed or changed)."""
    if not kept_dir.is_dir():
        return
    for kept in kept_dir.iterdir():
        with contextlib.suppress(FileNotFoundError):
            if kept.stat().st_nlink == 1:
                kept.unlink()


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
