"""Deterministic layer tarballs, written in one streaming pass.

A layer is described by `Entry` values (a destination path plus a host file, bytes, a directory or
a symlink target). `plan_layer` turns them into normalised `TarMember`s and `write_layer` streams
those into a blob while hashing the tar stream (the diffID) and the blob (the digest), so a layer
of any size costs one read of its inputs and a few MiB of memory.

Normalisation, so that the same inputs give the same bytes on any machine and any CPython:
- members sorted by path components; every parent directory emitted explicitly (0755 unless the
  entries name it with another mode);
- one fixed mtime (`LayerOptions.mtime`, SOURCE_DATE_EPOCH-style, default 2000-01-01, which zip
  tools accept); numeric owner (default 0:0) and empty user/group names;
- files 0755 when the source has any exec bit, else 0644; directories 0755; symlinks 0777;
  setuid/setgid/sticky bits only from an explicit `mode` override (e.g. `tmp` with 0o1777);
- hard links are stored as the regular files they are, never as tar links;
- the tar format is pinned: headers written here (USTAR; a PAX header named `././@PaxHeader`
  carrying only `path`, `linkpath` or `size` records when a value does not fit USTAR or is not
  ASCII, as Go's archive/tar does), ending with two zero blocks and no record padding;
- gzip is written here too: raw deflate at a fixed level inside a header with mtime 0, no file
  name and OS byte 255, or (`Compression(parallel=True)`, for big layers) the same format made of
  independent 1 MiB blocks deflated on every core, whose bytes do not depend on the core count.
  Compressed bytes still depend on the zlib build, so the zlib version is recorded with the layer
  (`Compression.to_json`); the diffID does not depend on it.

Refused with `LayerError` naming the path: absolute or non-normal destinations (`..`, `.`, empty
components), one destination given twice with different content (identical duplicates collapse),
a path that is both a non-directory and the parent of another entry, relative symlink targets that
climb above the layer root, device/FIFO/socket sources and unreadable sources. Absolute symlink
targets are allowed: a runtime resolves them inside the image root (`/usr/bin/python3.11`).
Symlink targets are checked lexically, like a container runtime resolving a path would before any
link is followed.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import hashlib
import io
import os
import queue
import stat
import struct
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import (
    Any,
    BinaryIO,
    Callable,
    Deque,
    Dict,
    Iterable,
    Iterator,
    List,
    Optional,
    Sequence,
    Tuple,
    Union,
)

from .errors import OciError
from .recipe import RECIPE_SOURCE_MIN, BlobRecipe, RecipeError, RecipePart
from .types import OCI_LAYER_TAR, OCI_LAYER_TAR_GZIP, Descriptor, canonical_json, check_digest

# 2000-01-01T00:00:00Z: a fixed time that zip-based tools (wheels, jars) accept, unlike 0.
DEFAULT_MTIME = 946684800
DEFAULT_GZIP_LEVEL = 6
# The input each block of a parallel gzip covers: its output is fixed by this and the level.
PARALLEL_GZIP_BLOCK = 1 << 20
# Reads and hashes go in chunks this big: large enough that per-chunk Python work is noise.
CHUNK_SIZE = 1 << 20

FILE = "file"
DIRECTORY = "directory"
SYMLINK = "symlink"

OutputTarget = Union[str, "os.PathLike[str]", BinaryIO]


# The file, beside the blob, that describes a layer written by `write_layer_directory`.
LAYER_DESCRIPTOR = "descriptor.json"


class LayerError(OciError):
    """An entry cannot go into a layer as given; the message names the offending path."""


# Entries ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """What the caller wants at one destination path; build these with the class methods.

    `mode`, `uid` and `gid` override the normalised values; an explicit mode is kept as given,
    special bits included. `digest` (files only) is the sha256 the content must have: it is
    checked while the content streams, so a mismatch fails the write.
    """

    path: str
    kind: str
    source: Optional[str] = None
    data: Optional[bytes] = None
    recipe: Optional[BlobRecipe] = None
    target: Optional[str] = None
    mode: Optional[int] = None
    uid: Optional[int] = None
    gid: Optional[int] = None
    digest: Optional[str] = None

    @classmethod
    def file(
        cls,
        path: str,
        source: Union[str, os.PathLike[str]],
        *,
        mode: Optional[int] = None,
        uid: Optional[int] = None,
        gid: Optional[int] = None,
        digest: Optional[str] = None,
    ) -> Entry:
        """A regular file copied from the host file `source` (followed if it is a symlink)."""
        return cls(path, FILE, source=os.fspath(source), mode=mode, uid=uid, gid=gid, digest=digest)

    @classmethod
    def content(
        cls,
        path: str,
        data: bytes,
        *,
        mode: Optional[int] = None,
        uid: Optional[int] = None,
        gid: Optional[int] = None,
        digest: Optional[str] = None,
    ) -> Entry:
        """A regular file holding `data`."""
        return cls(path, FILE, data=bytes(data), mode=mode, uid=uid, gid=gid, digest=digest)

    @classmethod
    def stitched(cls, path: str, recipe: BlobRecipe, *, mode: int, digest: str) -> Entry:
        """A regular file made from `recipe` (a layer blob kept as one), checked against
        `digest` while it streams."""
        return cls(path, FILE, recipe=recipe, mode=mode, digest=digest)

    @classmethod
    def directory(
        cls,
        path: str,
        *,
        mode: Optional[int] = None,
        uid: Optional[int] = None,
        gid: Optional[int] = None,
    ) -> Entry:
        return cls(path, DIRECTORY, mode=mode, uid=uid, gid=gid)

    @classmethod
    def symlink(
        cls, path: str, target: str, *, uid: Optional[int] = None, gid: Optional[int] = None
    ) -> Entry:
        return cls(path, SYMLINK, target=target, uid=uid, gid=gid)


def expand_tree(
    source: Union[str, os.PathLike[str]],
    destination: str,
    *,
    uid: Optional[int] = None,
    gid: Optional[int] = None,
) -> List[Entry]:
    """The entries for a host directory placed at `destination` (`.` for the layer root).

    Symlinks inside are kept as symlinks (never followed), empty directories are kept, and every
    other node becomes a file entry, so a FIFO or device in the tree is refused when planned.
    """
    root = os.fspath(source)
    if not os.path.isdir(root):
        raise LayerError(f"{destination}: tree source {root} is not a directory")
    entries = [] if destination == "." else [Entry.directory(destination, uid=uid, gid=gid)]
    pending = [(root, destination)]
    while pending:
        host_dir, dest_dir = pending.pop()
        try:
            with os.scandir(host_dir) as listing:
                children = sorted(listing, key=lambda child: child.name)
        except OSError as error:
            raise LayerError(f"{dest_dir}: cannot list {host_dir}: {error.strerror}") from None
        for child in children:
            dest = child.name if dest_dir == "." else f"{dest_dir}/{child.name}"
            if child.is_symlink():
                entries.append(Entry.symlink(dest, os.readlink(child.path), uid=uid, gid=gid))
            elif child.is_dir(follow_symlinks=False):
                entries.append(Entry.directory(dest, uid=uid, gid=gid))
                pending.append((child.path, dest))
            else:
                entries.append(Entry.file(dest, child.path, uid=uid, gid=gid))
    return entries


# Options and results ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Compression:
    """How the tar stream becomes the blob: `none` (weights: disk speed) or `gzip` at `level`."""

    algorithm: str = "none"
    level: Optional[int] = None
    # gzip only: deflate independent 1 MiB blocks (each primed with the 32 KiB before it) on
    # every core, as a deterministic pigz does; the bytes depend on the input and level only.
    parallel: bool = False

    def __post_init__(self) -> None:
        if self.algorithm == "none":
            if self.level is not None:
                raise ValueError("compression `none` takes no level")
        elif self.algorithm == "gzip":
            if self.level is None:
                object.__setattr__(self, "level", DEFAULT_GZIP_LEVEL)
            elif not 1 <= self.level <= 9:
                raise ValueError(f"gzip level must be 1..9, got {self.level}")
        else:
            raise ValueError(f"compression must be `none` or `gzip`, got {self.algorithm!r}")
        if self.parallel and self.algorithm != "gzip":
            raise ValueError("only gzip compresses in parallel")

    @property
    def media_type(self) -> str:
        return OCI_LAYER_TAR if self.algorithm == "none" else OCI_LAYER_TAR_GZIP

    def to_json(self) -> Dict[str, Any]:
        """What produced the blob, zlib build included: gzip bytes differ between zlib builds."""
        if self.algorithm == "none":
            return {"algorithm": "none"}
        described = {"algorithm": "gzip", "level": self.level, "zlib": zlib.ZLIB_RUNTIME_VERSION}
        if self.parallel:
            described["blockSize"] = PARALLEL_GZIP_BLOCK
        return described


def _check_octal_field(what: str, value: int, width: int, name: str = "") -> int:
    """Header numbers are octal with `width - 1` digits; refuse what would not fit."""
    if not 0 <= value < 8 ** (width - 1):
        where = f"{name}: " if name else ""
        raise LayerError(
            f"{where}{what} {value} does not fit a tar header (0..{8 ** (width - 1) - 1})"
        )
    return value


@dataclass(frozen=True)
class LayerOptions:
    """Layer-wide settings: the compression, the one mtime and the default numeric owner."""

    compression: Compression = Compression()
    mtime: int = DEFAULT_MTIME
    uid: int = 0
    gid: int = 0

    def __post_init__(self) -> None:
        _check_octal_field("mtime", self.mtime, 12)
        _check_octal_field("uid", self.uid, 8)
        _check_octal_field("gid", self.gid, 8)


@dataclass(frozen=True)
class TarMember:
    """One normalised tar member: its header values and where its content comes from (`data`
    in memory or the host file `source`; neither for directories and symlinks)."""

    name: str
    kind: str
    mode: int
    uid: int
    gid: int
    mtime: int
    size: int = 0
    linkname: str = ""
    data: Optional[bytes] = None
    source: Optional[str] = None
    recipe: Optional[BlobRecipe] = None
    digest: Optional[str] = None

    def to_json(self) -> Dict[str, Any]:
        """The member as listed in a layer's descriptor.json (no host paths)."""
        document: Dict[str, Any] = {
            "path": self.name,
            "type": self.kind,
            "mode": f"{self.mode:04o}",
            "uid": self.uid,
            "gid": self.gid,
        }
        if self.kind == FILE:
            document["size"] = self.size
        if self.kind == SYMLINK:
            document["target"] = self.linkname
        return document


@dataclass(frozen=True)
class LayerResult:
    """A written layer: its blob descriptor, diffID, how it was compressed and what it holds."""

    descriptor: Descriptor
    diff_id: str
    compression: Compression
    members: Tuple[TarMember, ...]


# Planning ---------------------------------------------------------------------------------------


def plan_layer(entries: Iterable[Entry], options: LayerOptions = LayerOptions()) -> List[TarMember]:
    """Validate and normalise `entries` into the sorted members of a layer, parents included.

    Host sources are checked here (type, readability, size), before a single byte is written.
    """
    members: Dict[str, TarMember] = {}
    for entry in entries:
        member = _normalise(entry, options)
        existing = members.get(member.name)
        if existing is not None and not _same_member(existing, member):
            raise LayerError(
                f"{member.name}: given twice with different content"
                f" ({_describe(existing)} and {_describe(member)})"
            )
        if existing is None or member.digest is not None:
            members[member.name] = member  # of identical duplicates, keep one with a digest check
    for name in list(members):
        for parent in _parents(name):
            existing = members.get(parent)
            if existing is None:
                members[parent] = TarMember(
                    parent, DIRECTORY, 0o755, options.uid, options.gid, options.mtime
                )
            elif existing.kind != DIRECTORY:
                raise LayerError(
                    f"{parent}: is a {existing.kind} in this layer but also the parent of {name}"
                )
            else:
                break  # its own parents are (or will be) handled as a member of their own
    return sorted(members.values(), key=lambda member: member.name.split("/"))


def _normalise(entry: Entry, options: LayerOptions) -> TarMember:
    name = _check_destination(entry.path)
    uid = options.uid if entry.uid is None else _check_octal_field("uid", entry.uid, 8, name)
    gid = options.gid if entry.gid is None else _check_octal_field("gid", entry.gid, 8, name)
    if entry.mode is not None and not 0 <= entry.mode <= 0o7777:
        raise LayerError(f"{name}: mode {entry.mode:#o} is not a permission mode (0..0o7777)")
    if entry.kind == DIRECTORY:
        mode = 0o755 if entry.mode is None else entry.mode
        return TarMember(name, DIRECTORY, mode, uid, gid, options.mtime)
    if entry.kind == SYMLINK:
        target = _check_symlink_target(name, entry.target)
        return TarMember(name, SYMLINK, 0o777, uid, gid, options.mtime, linkname=target)
    if entry.kind != FILE:
        raise LayerError(f"{name}: unknown entry kind {entry.kind!r}")
    digest = None if entry.digest is None else _check_content_digest(name, entry.digest)
    given_size = _given_size(name, entry)
    if given_size is not None:
        return TarMember(
            name,
            FILE,
            0o644 if entry.mode is None else entry.mode,
            uid,
            gid,
            options.mtime,
            given_size,
            data=entry.data,
            recipe=entry.recipe,
            digest=digest,
        )
    if entry.source is None:
        raise LayerError(f"{name}: a file entry needs a source or data")
    source_stat = _stat_source(name, entry.source)
    if entry.mode is not None:
        mode = entry.mode
    else:
        mode = 0o755 if source_stat.st_mode & 0o111 else 0o644
    return TarMember(
        name,
        FILE,
        mode,
        uid,
        gid,
        options.mtime,
        source_stat.st_size,
        source=entry.source,
        digest=digest,
    )


def _given_size(name: str, entry: Entry) -> Optional[int]:
    """The size of a file entry's `data` or `recipe` (its sources checked), None for a host
    file."""
    if entry.data is not None:
        return len(entry.data)
    if entry.recipe is None:
        return None
    try:
        entry.recipe.check_sources(name)
    except RecipeError as error:
        raise LayerError(str(error)) from None
    return entry.recipe.size


def _check_destination(path: str) -> str:
    parts = path.split("/")
    if not path or path.startswith("/") or any(part in ("", ".", "..") for part in parts):
        raise LayerError(
            f"{path!r}: destinations are relative paths inside the image without empty, `.` or"
            " `..` components (write `usr/bin/tool`, not `/usr/bin/tool` or `usr/../tool`)"
        )
    if "\0" in path:
        raise LayerError(f"{path!r}: destination contains a NUL byte")
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        raise LayerError(f"{path!r}: destination is not valid UTF-8") from None
    return path


def _check_symlink_target(name: str, target: Optional[str]) -> str:
    """Refuse relative targets that climb above the layer root from the link's directory."""
    if not target or "\0" in target:
        raise LayerError(f"{name}: symlink target must be a non-empty string without NUL bytes")
    try:
        target.encode("utf-8")
    except UnicodeEncodeError:
        raise LayerError(f"{name}: symlink target {target!r} is not valid UTF-8") from None
    if target.startswith("/"):
        return target
    depth = name.count("/")
    for part in target.split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                raise LayerError(
                    f"{name}: symlink target {target!r} escapes the layer root; use a target"
                    " that stays inside the image (an absolute one resolves inside the image)"
                )
        elif part not in ("", "."):
            depth += 1
    return target


def _check_content_digest(name: str, digest: str) -> str:
    try:
        return check_digest(digest)
    except ValueError as error:
        raise LayerError(f"{name}: {error}") from None


def _stat_source(name: str, source: str) -> os.stat_result:
    try:
        source_stat = os.stat(source)
    except OSError as error:
        raise LayerError(f"{name}: cannot read source {source}: {error.strerror}") from None
    if not stat.S_ISREG(source_stat.st_mode):
        raise LayerError(
            f"{name}: source {source} is a {_node_kind(source_stat.st_mode)}; only regular files,"
            " directories and symlinks can go into a layer"
        )
    if not os.access(source, os.R_OK):
        raise LayerError(f"{name}: source {source} is not readable")
    return source_stat


def _node_kind(mode: int) -> str:
    for test, kind in (
        (stat.S_ISDIR, "directory (use a tree entry)"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISSOCK, "socket"),
    ):
        if test(mode):
            return kind
    return f"special file (mode {mode:#o})"


def _parents(name: str) -> Iterator[str]:
    """The parent directories of `name`, nearest first."""
    while "/" in name:
        name = name.rsplit("/", 1)[0]
        yield name


def _same_member(first: TarMember, second: TarMember) -> bool:
    """Two members for one path are duplicates when their headers and content are equal."""
    if _header_values(first) != _header_values(second):
        return False
    if first.kind != FILE:
        return True
    with _open_content(first) as one, _open_content(second) as other:
        return same_content(one, other)


def same_content(one: BinaryIO, other: BinaryIO) -> bool:
    """Whether two streams hold the same bytes, read a chunk at a time (stopping at the first
    difference)."""
    while True:
        chunk = one.read(CHUNK_SIZE)
        if chunk != other.read(CHUNK_SIZE):
            return False
        if not chunk:
            return True


def _header_values(member: TarMember) -> Tuple[Any, ...]:
    return (member.kind, member.mode, member.uid, member.gid, member.size, member.linkname)


def _open_content(member: TarMember) -> BinaryIO:
    if member.data is not None:
        return io.BytesIO(member.data)
    if member.recipe is not None:
        return member.recipe.open()
    assert member.source is not None, "file members have data or a source"
    try:
        return open(member.source, "rb")
    except OSError as error:
        raise LayerError(f"{member.name}: cannot read {member.source}: {error.strerror}") from None


def _describe(member: TarMember) -> str:
    if member.kind == SYMLINK:
        return f"symlink to {member.linkname!r}"
    if member.kind == FILE:
        return f"file from {_origin(member)}, {member.size} bytes, mode {member.mode:04o}"
    return f"directory, mode {member.mode:04o}"


# The tar format ---------------------------------------------------------------------------------

_BLOCK = 512
_TYPEFLAGS = {FILE: b"0", SYMLINK: b"2", DIRECTORY: b"5"}
_PAX_TYPEFLAG = b"x"
# A fixed name: GNU tar puts the process id here, which would make the bytes differ per run.
_PAX_HEADER_NAME = b"././@PaxHeader"
_USTAR_MAGIC_AND_VERSION = b"ustar\x0000"
_END_OF_ARCHIVE = bytes(2 * _BLOCK)
_MAX_USTAR_SIZE = 8**11 - 1


def _origin(member: TarMember) -> str:
    if member.source is not None:
        return member.source
    return "a recipe" if member.recipe is not None else "inline data"


def _octal(value: int, width: int) -> bytes:
    return b"%0*o\0" % (width - 1, value)


def _field(value: bytes, width: int) -> bytes:
    return value[:width].ljust(width, b"\0")


def _header(
    name: bytes, typeflag: bytes, mode: int, uid: int, gid: int, size: int, mtime: int, link: bytes
) -> bytes:
    header = b"".join(
        (
            _field(name, 100),
            _octal(mode, 8),
            _octal(uid, 8),
            _octal(gid, 8),
            _octal(size, 12),
            _octal(mtime, 12),
            b" " * 8,  # the checksum counts its own field as spaces
            typeflag,
            _field(link, 100),
            _USTAR_MAGIC_AND_VERSION,
            bytes(32 + 32),  # uname, gname: numeric owners only
            _octal(0, 8),
            _octal(0, 8),
            bytes(155 + 12),  # prefix (long names go into PAX records instead), padding
        )
    )
    return header[:148] + b"%06o\0 " % sum(header) + header[156:]


def _pax_record(keyword: bytes, value: bytes) -> bytes:
    """`<length> <keyword>=<value>\\n`, where the length counts its own digits."""
    payload = b" " + keyword + b"=" + value + b"\n"
    length = len(payload) + len(str(len(payload)))
    if len(str(length)) > len(str(len(payload))):
        length += 1
    return b"%d" % length + payload


def _padding(size: int) -> bytes:
    return bytes(-size % _BLOCK)


def _member_headers(member: TarMember) -> bytes:
    """The header block(s) for `member`: PAX records first when a value does not fit USTAR."""
    name = member.name.encode("utf-8") + (b"/" if member.kind == DIRECTORY else b"")
    link = member.linkname.encode("utf-8")
    records = b""
    if len(name) > 100 or not name.isascii():
        records += _pax_record(b"path", name)
    if len(link) > 100 or not link.isascii():
        records += _pax_record(b"linkpath", link)
    size = member.size
    if size > _MAX_USTAR_SIZE:
        records += _pax_record(b"size", b"%d" % size)
        size = 0
    header = _header(
        name, _TYPEFLAGS[member.kind], member.mode, member.uid, member.gid, size, member.mtime, link
    )
    if not records:
        return header
    pax_header = _header(
        _PAX_HEADER_NAME, _PAX_TYPEFLAG, 0o644, 0, 0, len(records), member.mtime, b""
    )
    return pax_header + records + _padding(len(records)) + header


class TarWriter:
    """Writes `TarMember`s as one tar stream to `sink`, streaming host files in fixed chunks.

    `sink.write` must take ownership of the bytes it is given (they are never reused).
    """

    def __init__(self, sink: Any) -> None:
        self._sink = sink

    def add(self, member: TarMember) -> None:
        self._sink.write(_member_headers(member))
        if member.kind != FILE:
            return
        if member.data is not None:
            self._write_data(member)
        else:
            self._stream_source(member)
        self._sink.write(_padding(member.size))

    def close(self) -> None:
        self._sink.write(_END_OF_ARCHIVE)

    def _write_data(self, member: TarMember) -> None:
        assert member.data is not None
        if member.digest is not None:
            _check_streamed_digest(member, hashlib.sha256(member.data))
        self._sink.write(member.data)

    def _stream_source(self, member: TarMember) -> None:
        """Copy exactly `member.size` bytes of the source; a source that changed size since it
        was planned is an error, since its header is already written."""
        content_hash = hashlib.sha256() if member.digest is not None else None
        opened = member.recipe.open() if member.recipe is not None else _open_regular_file(member)
        with opened as source:
            remaining = member.size
            while remaining:
                chunk = source.read(min(CHUNK_SIZE, remaining))
                if not chunk:
                    raise LayerError(f"{member.name}: {_origin(member)} shrank while being read")
                if content_hash is not None:
                    content_hash.update(chunk)
                self._sink.write(chunk)
                remaining -= len(chunk)
            if source.read(1):
                raise LayerError(f"{member.name}: {_origin(member)} grew while being read")
        if content_hash is not None:
            _check_streamed_digest(member, content_hash)


class _RecipeTarWriter(TarWriter):
    """A `TarWriter` into a `_RecipeSink`: it tells the sink where a big source's content
    begins and ends, so that the recipe names the file instead of holding its bytes."""

    def __init__(self, sink: _RecipeSink) -> None:
        super().__init__(sink)
        self._recipe_sink = sink

    def _stream_source(self, member: TarMember) -> None:
        if member.source is None or member.size < RECIPE_SOURCE_MIN:
            super()._stream_source(member)
            return
        self._recipe_sink.begin_source(member.source)
        super()._stream_source(member)
        self._recipe_sink.end_source()


def _open_regular_file(member: TarMember) -> BinaryIO:
    """Open without blocking (a FIFO swapped in since planning must not hang the build) and
    refuse anything but a regular file."""
    assert member.source is not None
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        descriptor = os.open(member.source, flags)
    except OSError as error:
        raise LayerError(f"{member.name}: cannot read {member.source}: {error.strerror}") from None
    stream = open(descriptor, "rb", buffering=0)
    if not stat.S_ISREG(os.fstat(descriptor).st_mode):
        stream.close()
        raise LayerError(f"{member.name}: {member.source} is no longer a regular file")
    return stream


def _check_streamed_digest(member: TarMember, content_hash: Any) -> None:
    actual = "sha256:" + content_hash.hexdigest()
    if actual != member.digest:
        raise LayerError(
            f"{member.name}: {_origin(member)} has digest {actual}, expected {member.digest}"
        )


# Writing ----------------------------------------------------------------------------------------

# Writes smaller than this are gathered so that many small files cost few queue hand-offs.
_GATHER_BELOW = 64 * 1024
_WRITES_IN_FLIGHT = 4


class _BackgroundWriter:
    """Writes to `output` on a helper thread, so the kernel's copy into the page cache overlaps
    with hashing and compressing (hashlib, zlib and file I/O all release the GIL; on the 2-core
    build machines this made uncompressed layers written to disk about a third faster). At most
    `_WRITES_IN_FLIGHT` chunks wait, which bounds memory. Use as a context manager."""

    def __init__(self, output: BinaryIO) -> None:
        self._output = output
        self._queue: queue.Queue[Optional[bytes]] = queue.Queue(maxsize=_WRITES_IN_FLIGHT)
        self._gathered = bytearray()
        self._error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._run, name="oci-layer-writer", daemon=True)

    def __enter__(self) -> _BackgroundWriter:
        self._thread.start()
        return self

    def write(self, data: bytes) -> None:
        if len(data) < _GATHER_BELOW:
            self._gathered += data
            if len(self._gathered) >= CHUNK_SIZE:
                self._hand_off_gathered()
            return
        self._hand_off_gathered()
        self._hand_off(data)

    def __exit__(self, *exc_info: object) -> None:
        if exc_info[0] is None:
            self._hand_off_gathered()
        self._queue.put(None)
        self._thread.join()
        if exc_info[0] is None:
            self._raise_if_failed()

    def _hand_off_gathered(self) -> None:
        if self._gathered:
            self._hand_off(bytes(self._gathered))
            self._gathered = bytearray()

    def _hand_off(self, data: bytes) -> None:
        self._raise_if_failed()
        self._queue.put(data)

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        while True:
            data = self._queue.get()
            if data is None:
                return
            if self._error is None:
                try:
                    self._output.write(data)
                except BaseException as error:  # re-raised on the producing thread
                    self._error = error


class _BlobSink:
    """Receives the tar stream: hashes it (diffID), compresses it if asked, hashes and counts
    the resulting blob (digest, size) and passes the blob on. Uncompressed, the two hashes are
    one and the same."""

    def __init__(self, output: _BackgroundWriter, compression: Compression) -> None:
        self._output = output
        self._blob_hash = hashlib.sha256()
        self._blob_size = 0
        self._deflate: Any = None
        if compression.algorithm == "none":
            self._diff_hash = self._blob_hash
            return
        assert compression.level is not None, "Compression defaults the gzip level"
        self._diff_hash = hashlib.sha256()
        self._crc = 0
        self._tar_size = 0
        self._deflate = (
            _ParallelDeflate(compression.level, self._emit)
            if compression.parallel
            else _Deflate(compression.level, self._emit)
        )
        self._emit(gzip_header(compression.level))

    def write(self, data: bytes) -> None:
        if self._deflate is None:
            self._emit(data)
            return
        self._diff_hash.update(data)
        self._crc = zlib.crc32(data, self._crc)
        self._tar_size += len(data)
        self._deflate.write(data)

    def finish(self) -> Tuple[str, str, int]:
        """Flush and return (digest, diff_id, size)."""
        if self._deflate is not None:
            self._deflate.finish()
            self._emit(struct.pack("<II", self._crc, self._tar_size & 0xFFFFFFFF))
        digest = "sha256:" + self._blob_hash.hexdigest()
        return digest, "sha256:" + self._diff_hash.hexdigest(), self._blob_size

    def _emit(self, data: bytes) -> None:
        if data:
            self._blob_hash.update(data)
            self._blob_size += len(data)
            self._output.write(data)


class _Deflate:
    """One raw deflate stream at `level`, passing what it makes to `emit`."""

    def __init__(self, level: int, emit: Callable[[bytes], None]) -> None:
        self._compressor = zlib.compressobj(
            level, zlib.DEFLATED, -zlib.MAX_WBITS, 8, zlib.Z_DEFAULT_STRATEGY
        )
        self._emit = emit

    def write(self, data: bytes) -> None:
        self._emit(self._compressor.compress(data))

    def finish(self) -> None:
        self._emit(self._compressor.flush())


class _ParallelDeflate:
    """The same raw deflate stream format made from independent blocks on a thread pool (zlib
    releases the GIL): each PARALLEL_GZIP_BLOCK of input is deflated with the 32 KiB before it
    as its dictionary and ends with a sync flush (the last with the final block), and the
    blocks are emitted in order. At most two blocks per thread are in flight, which bounds
    memory; the bytes do not depend on the number of threads."""

    def __init__(self, level: int, emit: Callable[[bytes], None]) -> None:
        self._level = level
        self._emit = emit
        self._threads = max(1, len(os.sched_getaffinity(0)))
        self._pool = concurrent.futures.ThreadPoolExecutor(self._threads, "oci-layer-gzip")
        self._pending: Deque[concurrent.futures.Future[bytes]] = collections.deque()
        self._buffer = bytearray()
        self._dictionary = b""

    def write(self, data: bytes) -> None:
        self._buffer += data
        while len(self._buffer) >= PARALLEL_GZIP_BLOCK:
            block = bytes(self._buffer[:PARALLEL_GZIP_BLOCK])
            del self._buffer[:PARALLEL_GZIP_BLOCK]
            self._submit(block, final=False)

    def finish(self) -> None:
        try:
            self._submit(bytes(self._buffer), final=True)
            while self._pending:
                self._emit(self._pending.popleft().result())
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def _submit(self, block: bytes, final: bool) -> None:
        self._pending.append(
            self._pool.submit(_deflate_block, block, self._dictionary, self._level, final)
        )
        self._dictionary = block[-_DEFLATE_WINDOW:]
        while len(self._pending) > 2 * self._threads:
            self._emit(self._pending.popleft().result())


_DEFLATE_WINDOW = 32 * 1024


def _deflate_block(block: bytes, dictionary: bytes, level: int, final: bool) -> bytes:
    """`block` deflated after `dictionary`, ending with the final block or a sync flush.

    The sync flush comes after a `Z_BLOCK` flush that empties zlib's pending output: zlib emits
    a second empty stored block when a sync flush fills the caller's output buffer exactly and
    the caller asks again, and CPython versions size that buffer differently (3.9 added 5 bytes
    to 3 of torch's 9 big layers). After `Z_BLOCK` the sync flush has only its few bytes to
    write and is the same on every CPython."""
    if dictionary:
        compressor = zlib.compressobj(
            level, zlib.DEFLATED, -zlib.MAX_WBITS, 8, zlib.Z_DEFAULT_STRATEGY, dictionary
        )
    else:
        compressor = zlib.compressobj(
            level, zlib.DEFLATED, -zlib.MAX_WBITS, 8, zlib.Z_DEFAULT_STRATEGY
        )
    if final:
        return compressor.compress(block) + compressor.flush(zlib.Z_FINISH)
    return (
        compressor.compress(block)
        + compressor.flush(zlib.Z_BLOCK)
        + compressor.flush(zlib.Z_SYNC_FLUSH)
    )


class _RecipeSink:
    """Receives an uncompressed layer's tar stream: hashes all of it (digest = diffID), keeps
    the tar's own bytes and, for a big source's content, only the file's name and size."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self._size = 0
        self._parts: List[RecipePart] = []
        self._inline = bytearray()
        self._source: Optional[str] = None
        self._source_size = 0

    def write(self, data: bytes) -> None:
        self._hash.update(data)
        self._size += len(data)
        if self._source is None:
            self._inline += data
        else:
            self._source_size += len(data)

    def begin_source(self, source: str) -> None:
        self._keep_inline()
        self._source, self._source_size = source, 0

    def end_source(self) -> None:
        assert self._source is not None
        self._parts.append(RecipePart(self._source_size, source=self._source))
        self._source = None

    def finish(self) -> Tuple[str, int, BlobRecipe]:
        self._keep_inline()
        return "sha256:" + self._hash.hexdigest(), self._size, BlobRecipe(tuple(self._parts))

    def _keep_inline(self) -> None:
        if self._inline:
            self._parts.append(RecipePart(len(self._inline), data=bytes(self._inline)))
            self._inline = bytearray()


def gzip_header(level: int) -> bytes:
    """RFC 1952 header: deflate, no flags, mtime 0, the conventional XFL for the level and OS 255
    (unknown), where CPython >= 3.11's gzip module would write the host's OS."""
    extra_flags = 2 if level == 9 else 4 if level == 1 else 0
    return b"\x1f\x8b\x08\x00" + bytes(4) + bytes((extra_flags, 255))


@contextlib.contextmanager
def _opened(output: OutputTarget) -> Iterator[BinaryIO]:
    """A path is opened for writing, and removed again if writing fails, so no half-written
    blob is left behind to be mistaken for a good one (devices such as /dev/null are kept)."""
    if not isinstance(output, (str, os.PathLike)):
        yield output
        return
    try:
        with open(output, "wb") as stream:
            yield stream
    except BaseException:
        if os.path.isfile(output):
            os.unlink(output)
        raise


def write_layer(
    entries: Iterable[Entry], output: OutputTarget, options: LayerOptions = LayerOptions()
) -> LayerResult:
    """Plan `entries` and stream the layer blob to `output` (a path, or a binary file object whose
    `write` takes everything it is given), hashing as it goes."""
    members = plan_layer(entries, options)
    with _opened(output) as stream, _BackgroundWriter(stream) as background:
        sink = _BlobSink(background, options.compression)
        _write_members(members, sink)
        digest, diff_id, size = sink.finish()
    descriptor = Descriptor(options.compression.media_type, digest, size)
    return LayerResult(descriptor, diff_id, options.compression, tuple(members))


def write_layer_recipe(
    entries: Iterable[Entry], options: LayerOptions = LayerOptions()
) -> Tuple[LayerResult, BlobRecipe]:
    """Plan `entries` and hash the uncompressed layer they make, keeping it as a `BlobRecipe`
    (big files' content named, not copied): one read of every input, nothing written."""
    if options.compression.algorithm != "none":
        raise LayerError(
            "a layer kept as a recipe is uncompressed (its files' bytes are the blob's)"
        )
    members = plan_layer(entries, options)
    sink = _RecipeSink()
    writer = _RecipeTarWriter(sink)
    for member in members:
        writer.add(member)
    writer.close()
    digest, size, recipe = sink.finish()
    descriptor = Descriptor(options.compression.media_type, digest, size)
    return LayerResult(descriptor, digest, options.compression, tuple(members)), recipe


def write_layer_directory(
    entries: Iterable[Entry],
    output_dir: Path,
    options: LayerOptions,
    created_by: str,
    *,
    discard_blob: bool = False,
    recipe: bool = False,
) -> Dict[str, Any]:
    """Write a layer in the on-disk form that the `image` command stacks: the blob (`layer.tar` or
    `layer.tar.gz`, or /dev/null with `discard_blob`), then `descriptor.json` with its digest,
    diffID, size, compression, history text and members; return that descriptor. With `recipe`
    (uncompressed layers), no blob: the descriptor holds the `recipe` to make it from.

    The blob is renamed into place only when complete and the descriptor is written last, so a
    failure never leaves a finished-looking layer behind.
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    blob_name = "layer.tar.gz" if options.compression.algorithm == "gzip" else "layer.tar"
    kept_as: Dict[str, Any] = {}
    if recipe:
        result, blob_recipe = write_layer_recipe(entries, options)
        kept_as["recipe"] = blob_recipe.to_json(output_dir)
    elif discard_blob:
        result = write_layer(entries, os.devnull, options)
    else:
        partial = output_dir / f".{blob_name}.partial"
        try:
            result = write_layer(entries, partial, options)
        except BaseException:
            if partial.exists():
                partial.unlink()
            raise
        os.replace(partial, output_dir / blob_name)
        kept_as["blob"] = blob_name
    descriptor: Dict[str, Any] = {
        **result.descriptor.to_json(),
        "diffID": result.diff_id,
        "compression": result.compression.to_json(),
        "createdBy": created_by,
        "entries": [member.to_json() for member in result.members],
        **kept_as,
    }
    (output_dir / LAYER_DESCRIPTOR).write_bytes(canonical_json(descriptor))
    return descriptor


def write_tar(members: Sequence[TarMember], output: OutputTarget) -> None:
    """Stream planned `members` as a plain tar to `output` (the archive writer uses this)."""
    with _opened(output) as stream, _BackgroundWriter(stream) as background:
        _write_members(members, background)


def _write_members(members: Iterable[TarMember], sink: Any) -> None:
    writer = TarWriter(sink)
    for member in members:
        writer.add(member)
    writer.close()
