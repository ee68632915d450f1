"""`/etc/ld.so.cache` computed in Python, with the entries `ldconfig` of glibc >= 2.32 records,
in its `new` format.

The dynamic loader of a Debian image finds its libraries without a cache (it searches the
multiarch directories), but `ldconfig -p`, and through it `ctypes.util.find_library`, only read
the cache. Running the image's ldconfig would need `chroot` (root) and a host of the target
architecture; this needs neither, and its output depends only on the files.

What is recorded, as ldconfig does it:
- directories: those of `/etc/ld.so.conf` (with `include` globs), then the loader's system
  directories; one directory reached twice (`/lib/<triplet>` is `/usr/lib/<triplet>` after
  usr-merge) is read once, under the name it was first reached by;
- in each, files named `lib*.so*` or `ld-*.so*` that are ELF shared objects of the target
  machine, recorded under their SONAME (the file name without one), as `<dir>/<SONAME>`; a
  symlink to the file named by its SONAME (`libssl.so -> libssl.so.3`) is recorded under its
  own name; of several files with one SONAME a regular file wins over a symlink, else the
  higher version by `_dl_cache_libcmp`;
- entries sorted by `_dl_cache_libcmp`, highest first.
glibc-hwcaps subdirectories and the optional extension section (the generator string) are not
written; the loader and `ldconfig -p` do not need them.
"""

from __future__ import annotations

import functools
import glob
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Set, Tuple

from .errors import DebianError

_MAGIC = b"glibc-ld.so.cache1.1"
_HEADER = struct.Struct("<20sIIB3xI12x")
_ENTRY = struct.Struct("<iIIIQ")
_ENDIAN_LITTLE = 2
FLAG_ELF_LIBC6 = 0x0003
_DIGITS = "0123456789"


@dataclass(frozen=True)
class _Machine:
    """How ldconfig tags one architecture's libraries, and how to recognise them."""

    triplet: str
    elf_machine: int
    cache_flags: int


_MACHINES = {
    "amd64": _Machine("x86_64-linux-gnu", 62, FLAG_ELF_LIBC6 | 0x0300),  # FLAG_X8664_LIB64
    "arm64": _Machine("aarch64-linux-gnu", 183, FLAG_ELF_LIBC6 | 0x0A00),  # FLAG_AARCH64_LIB64
}


class LdCacheError(DebianError):
    """The cache cannot be computed for this architecture or configuration."""


@dataclass(frozen=True)
class _Library:
    name: str
    soname: str
    is_link: bool


def build_ld_cache(root: Path, architecture: str) -> bytes:
    """The bytes of `/etc/ld.so.cache` for the root filesystem unpacked at `root`."""
    machine = _MACHINES.get(architecture)
    if machine is None:
        raise LdCacheError(f"no ld.so.cache layout known for {architecture}")
    entries: List[Tuple[str, str]] = []
    seen: Set[Tuple[int, int]] = set()
    for directory in _directories(root, machine):
        host_directory = _inside(root, directory)
        if host_directory is None or not os.path.isdir(host_directory):
            continue
        identity = (os.stat(host_directory).st_dev, os.stat(host_directory).st_ino)
        if identity in seen:
            continue
        seen.add(identity)
        for library in _libraries(root, directory, machine):
            entries.append((library.soname, f"{directory}/{library.soname}"))
    # Highest first; the sort is stable, so one SONAME in two directories keeps directory order,
    # as ldconfig's sorted insertion does.
    ordered = sorted(entries, key=functools.cmp_to_key(_highest_first))
    return _encode(ordered, machine.cache_flags)


def _highest_first(left: Tuple[str, str], right: Tuple[str, str]) -> int:
    return _libcmp(right[0], left[0])


def _directories(root: Path, machine: _Machine) -> List[str]:
    """ld.so.conf's directories in order, then the system ones, each name once."""
    names: List[str] = []
    for directory in [*_configured(root, "/etc/ld.so.conf", set()), *_system(machine)]:
        normalized = "/" + "/".join(part for part in directory.split("/") if part)
        if normalized not in names:
            names.append(normalized)
    return names


def _system(machine: _Machine) -> Tuple[str, ...]:
    return (f"/lib/{machine.triplet}", f"/usr/lib/{machine.triplet}", "/lib", "/usr/lib")


def _configured(root: Path, config: str, visited: Set[str]) -> Iterator[str]:
    host_path = _inside(root, config)
    if host_path is None or config in visited or not os.path.isfile(host_path):
        return
    visited.add(config)
    with open(host_path, encoding="utf-8", errors="replace") as stream:
        lines = stream.read().splitlines()
    for line in lines:
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if words[0] == "include":
            for pattern in words[1:]:
                absolute = (
                    pattern
                    if pattern.startswith("/")
                    else os.path.join(os.path.dirname(config), pattern)
                )
                matches = glob.glob(glob.escape(str(root)) + absolute)
                for match in sorted(matches):
                    yield from _configured(root, match[len(str(root)) :], visited)
        elif words[0] != "hwcap":
            # `dir=TYPE` (libc5 era) and comma-separated lists are read as ldconfig reads them.
            for directory in " ".join(words).replace(",", " ").split():
                yield directory.split("=", 1)[0]


def _inside(root: Path, path: str) -> Optional[str]:
    """`path` of the image, resolved inside `root`: symlinks (absolute ones included) are
    followed as a chroot would, never onto the host."""
    resolved: List[str] = []
    pending = [part for part in path.split("/") if part]
    hops = 0
    while pending:
        part = pending.pop(0)
        if part == ".":
            continue
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(str(root), *resolved, part)
        if os.path.islink(candidate):
            hops += 1
            if hops > 40:
                return None
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            pending = [p for p in target.split("/") if p] + pending
            continue
        resolved.append(part)
    return os.path.join(str(root), *resolved)


def _libraries(root: Path, directory: str, machine: _Machine) -> List[_Library]:
    host_directory = _inside(root, directory)
    assert host_directory is not None
    chosen: Dict[str, _Library] = {}
    for name in sorted(os.listdir(host_directory)):
        if not (name.startswith("lib") or name.startswith("ld-")) or ".so" not in name:
            continue
        path = os.path.join(host_directory, name)
        is_link = os.path.islink(path)
        real = _inside(root, f"{directory}/{name}")
        if real is None or not os.path.isfile(real):
            continue
        soname = _elf_soname(real, machine)
        if soname is None:
            continue
        soname = soname or name
        if is_link:
            real_name = os.path.basename(real)
            if real_name != soname and not (
                real_name.endswith(".so") and soname.startswith(real_name)
            ):
                is_link = False
            else:
                soname = name
        library = _Library(name, soname, is_link)
        current = chosen.get(soname)
        if current is None or (
            (current.is_link and not is_link)
            or (current.is_link == is_link and _libcmp(current.name, name) < 0)
        ):
            chosen[soname] = library
    return list(chosen.values())


def _elf_soname(path: str, machine: _Machine) -> Optional[str]:
    """The DT_SONAME of a 64-bit little-endian ELF shared object for `machine` ("" when it has
    none), or None when the file is something else."""
    try:
        with open(path, "rb") as stream:
            header = stream.read(64)
            if len(header) < 64 or header[:4] != b"\x7fELF" or header[4:6] != b"\x02\x01":
                return None
            file_type, elf_machine = struct.unpack_from("<HH", header, 16)
            if elf_machine != machine.elf_machine or file_type != 3:  # ET_DYN
                return None
            (program_offset,) = struct.unpack_from("<Q", header, 32)
            entry_size, count = struct.unpack_from("<HH", header, 54)
            stream.seek(program_offset)
            table = stream.read(entry_size * count)
            loads = []
            dynamic = None
            for index in range(count):
                kind, _, offset, address, _, file_size, _, _ = struct.unpack_from(
                    "<IIQQQQQQ", table, index * entry_size
                )
                if kind == 1:  # PT_LOAD
                    loads.append((address, offset, file_size))
                elif kind == 2:  # PT_DYNAMIC
                    dynamic = (offset, file_size)
            if dynamic is None:
                return None
            stream.seek(dynamic[0])
            data = stream.read(dynamic[1])
            string_table = None
            soname_offset = None
            for position in range(0, len(data) - 15, 16):
                tag, value = struct.unpack_from("<qQ", data, position)
                if tag == 0:  # DT_NULL
                    break
                if tag == 5:  # DT_STRTAB
                    string_table = value
                elif tag == 14:  # DT_SONAME
                    soname_offset = value
            if soname_offset is None:
                return ""
            if string_table is None:
                return None
            for address, offset, size in loads:
                if address <= string_table < address + size:
                    stream.seek(offset + string_table - address + soname_offset)
                    return stream.read(256).split(b"\0", 1)[0].decode("utf-8", "replace")
            return None
    except (OSError, struct.error):
        return None


def _libcmp(left: str, right: str) -> int:
    """glibc's `_dl_cache_libcmp`: digit runs compare as numbers, everything else bytewise."""
    i = j = 0
    while i < len(left):
        if left[i] in _DIGITS:
            if j < len(right) and right[j] in _DIGITS:
                start = i
                while i < len(left) and left[i] in _DIGITS:
                    i += 1
                left_number = int(left[start:i])
                start = j
                while j < len(right) and right[j] in _DIGITS:
                    j += 1
                right_number = int(right[start:j])
                if left_number != right_number:
                    return left_number - right_number
            else:
                return 1
        elif j < len(right) and right[j] in _DIGITS:
            return -1
        elif j >= len(right) or left[i] != right[j]:
            return ord(left[i]) - (ord(right[j]) if j < len(right) else 0)
        else:
            i += 1
            j += 1
    return 0 - (ord(right[j]) if j < len(right) else 0)


def _encode(entries: List[Tuple[str, str]], flags: int) -> bytes:
    """The `new` cache format: header, fixed-size entries, then the NUL-terminated strings;
    string offsets count from the start of the file."""
    strings = bytearray()
    offsets: Dict[str, int] = {}
    start = _HEADER.size + _ENTRY.size * len(entries)

    def offset_of(text: str) -> int:
        if text not in offsets:
            offsets[text] = start + len(strings)
            strings.extend(text.encode("utf-8") + b"\0")
        return offsets[text]

    packed = b"".join(
        _ENTRY.pack(flags, offset_of(key), offset_of(value), 0, 0) for key, value in entries
    )
    header = _HEADER.pack(_MAGIC, len(entries), len(strings), _ENDIAN_LITTLE, 0)
    return header + packed + bytes(strings)
