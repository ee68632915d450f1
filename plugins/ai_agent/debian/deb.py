"""Reading .deb files with the standard library: the `ar` container, the control stanza and the
members of `data.tar`, streamed (a member is never held in memory whole).

A .deb is an `ar` archive of `debian-binary` ("2.0\\n"), `control.tar[.xz|.gz]` and
`data.tar[.xz|.gz]`. Debian 12 compresses with xz; zstd (Ubuntu) is not in the standard library
and is refused with a message saying so.
"""

from __future__ import annotations

import io
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO, Dict, Iterator, Optional, Tuple

from .control import ControlSyntaxError, Stanza, parse_single_stanza
from .errors import DebianError

_AR_MAGIC = b"!<arch>\n"
_AR_HEADER_SIZE = 60
_AR_HEADER_END = b"`\n"
_TAR_MODES = {"": "r|", ".xz": "r|xz", ".gz": "r|gz"}
# The control members a dpkg database keeps (maintainer scripts are never run, so not kept).
KEPT_CONTROL_FILES = ("conffiles", "md5sums")


class DebError(DebianError):
    """A file is not a .deb this reader can unpack; the message names the file and the part."""


@dataclass(frozen=True)
class _Member:
    name: str
    offset: int
    size: int


@dataclass(frozen=True)
class Deb:
    """An opened .deb: where its members are, its control stanza and the control files kept."""

    path: Path
    control: Stanza
    control_files: Dict[str, bytes]
    data_member: _Member

    @property
    def name(self) -> str:
        return self.control["Package"]

    @property
    def version(self) -> str:
        return self.control["Version"]

    @property
    def architecture(self) -> str:
        return self.control["Architecture"]

    def data_members(self) -> Iterator[Tuple[tarfile.TarInfo, Optional[IO[bytes]]]]:
        """The members of data.tar in archive order, each regular file with a stream of its
        content that is valid until the next member is asked for."""
        with open(self.path, "rb") as stream:
            yield from _tar_members(stream, self.data_member, self.path)


def open_deb(path: Path) -> Deb:
    with open(path, "rb") as stream:
        members = _ar_members(stream, path)
        if not _read_member(stream, members, "debian-binary", path).startswith(b"2."):
            raise DebError(f"{path}: unsupported .deb format (debian-binary is not 2.x)")
        control_member = _compressed_member(members, "control.tar", path)
        data_member = _compressed_member(members, "data.tar", path)
        control_text: Optional[bytes] = None
        kept: Dict[str, bytes] = {}
        for member, content in _tar_members(stream, control_member, path):
            name = member.name[2:] if member.name.startswith("./") else member.name
            if content is None:
                continue
            if name == "control":
                control_text = content.read()
            elif name in KEPT_CONTROL_FILES:
                kept[name] = content.read()
    if control_text is None:
        raise DebError(f"{path}: control.tar has no control file")
    try:
        control = parse_single_stanza(control_text.decode("utf-8"), f"{path}: control")
    except (ControlSyntaxError, UnicodeDecodeError) as error:
        raise DebError(f"{path}: cannot read the control file: {error}") from None
    for required in ("Package", "Version", "Architecture"):
        if required not in control:
            raise DebError(f"{path}: the control file has no {required} field")
    return Deb(path, control, kept, data_member)


def _ar_members(stream: BinaryIO, path: Path) -> Dict[str, _Member]:
    if stream.read(len(_AR_MAGIC)) != _AR_MAGIC:
        raise DebError(f"{path}: not a .deb (no ar archive header)")
    members: Dict[str, _Member] = {}
    offset = len(_AR_MAGIC)
    while True:
        header = stream.read(_AR_HEADER_SIZE)
        if not header:
            return members
        if len(header) != _AR_HEADER_SIZE or header[58:60] != _AR_HEADER_END:
            raise DebError(f"{path}: corrupt ar member header at byte {offset}")
        name = header[:16].decode("ascii", "replace").rstrip(" ").rstrip("/")
        size_text = header[48:58].strip()
        if not size_text.isdigit():
            raise DebError(f"{path}: corrupt size of ar member {name!r}")
        size = int(size_text)
        offset += _AR_HEADER_SIZE
        members[name] = _Member(name, offset, size)
        offset += size + size % 2  # members are aligned to even offsets
        stream.seek(offset)


def _read_member(stream: BinaryIO, members: Dict[str, _Member], name: str, path: Path) -> bytes:
    member = members.get(name)
    if member is None:
        raise DebError(f"{path}: no {name} member")
    stream.seek(member.offset)
    return stream.read(member.size)


def _compressed_member(members: Dict[str, _Member], stem: str, path: Path) -> _Member:
    for name, member in members.items():
        if name == stem or name.startswith(stem + "."):
            suffix = name[len(stem) :]
            if suffix not in _TAR_MODES:
                raise DebError(
                    f"{path}: {name} is compressed with {suffix[1:]}, which Python's standard"
                    " library cannot read (Debian's own packages use xz)"
                )
            return member
    raise DebError(f"{path}: no {stem} member")


class _Region(io.RawIOBase):
    """A read-only window onto `size` bytes of `stream` starting at `offset`."""

    def __init__(self, stream: BinaryIO, offset: int, size: int) -> None:
        self._stream = stream
        self._position = offset
        self._remaining = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray) -> int:  # type: ignore[override]
        count = min(len(buffer), self._remaining)
        if count == 0:
            return 0
        self._stream.seek(self._position)
        data = self._stream.read(count)
        buffer[: len(data)] = data
        self._position += len(data)
        self._remaining -= len(data)
        return len(data)


def _tar_members(
    stream: BinaryIO, member: _Member, path: Path
) -> Iterator[Tuple[tarfile.TarInfo, Optional[IO[bytes]]]]:
    mode = _TAR_MODES[member.name[member.name.index(".tar") + len(".tar") :]]
    region = io.BufferedReader(_Region(stream, member.offset, member.size), 1 << 20)
    try:
        with tarfile.open(fileobj=region, mode=mode) as archive:
            for info in archive:
                content = archive.extractfile(info) if info.isreg() else None
                yield info, content
    except (tarfile.TarError, EOFError, OSError) as error:
        raise DebError(f"{path}: cannot read {member.name}: {error}") from None
