"""Where two builds of the same step part ways: the first differing tar entry (and which header
field or its content), the first differing JSON field, or, inside an image archive, the manifest,
config or layer that differs, followed down to its field or tar entry.

`verify-reproducible` runs this on a step's cached outputs and on the outputs of the same step
run again without caches. Everything streams: layers of weights are never held in memory.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Iterator, List, Optional, Tuple

FIRST = "the cached build"
SECOND = "the rebuild"
_CHUNK = 1 << 20
# Tar header fields, in the order a reader would look at them.
_MEMBER_FIELDS = (
    "type",
    "mode",
    "uid",
    "gid",
    "uname",
    "gname",
    "mtime",
    "size",
    "linkname",
    "devmajor",
    "devminor",
    "pax_headers",
)


@dataclass(frozen=True)
class Difference:
    """`path` (relative to the compared directories) differs; `detail` says where first."""

    path: str
    detail: str

    def to_json(self) -> dict:
        return {"path": self.path, "detail": self.detail}


def compare_directories(first: Path, second: Path) -> List[Difference]:
    """Every file of either directory whose bytes differ from the other's, explained."""
    first_files = _relative_files(first)
    second_files = _relative_files(second)
    differences = []
    for path in sorted(first_files | second_files):
        if path not in second_files:
            differences.append(Difference(path, f"only in {FIRST}"))
        elif path not in first_files:
            differences.append(Difference(path, f"only in {SECOND}"))
        else:
            detail = compare_files(first / path, second / path)
            if detail is not None:
                differences.append(Difference(path, detail))
    return differences


def _relative_files(root: Path) -> set:
    return {str(path.relative_to(root)) for path in root.rglob("*") if not path.is_dir()}


def compare_files(first: Path, second: Path) -> Optional[str]:
    """None if the files hold the same bytes; else where they first differ."""
    if _file_sha256(first) == _file_sha256(second):
        return None
    if _is_image_archive(first) and _is_image_archive(second):
        with tarfile.open(first, "r:") as first_tar, tarfile.open(second, "r:") as second_tar:
            return _ArchivePair(first_tar, second_tar).difference()
    if tarfile.is_tarfile(first) and tarfile.is_tarfile(second):
        with open(first, "rb") as first_file, open(second, "rb") as second_file:
            detail = compare_tar_streams(first_file, second_file)
        # Equal members, unequal files: the compression (or the tar's end padding) differs.
        return detail or "the same tar entries, stored as different bytes (compression?)"
    first_json, second_json = _json_or_none(first), _json_or_none(second)
    if first_json is not None and second_json is not None:
        return compare_json(first_json[0], second_json[0]) or "the same JSON, encoded differently"
    return _first_differing_byte(first, second)


# tar ----------------------------------------------------------------------------------------------


def compare_tar_streams(first: IO[bytes], second: IO[bytes]) -> Optional[str]:
    """The first entry (in tar order) whose name, header field or content differs; plain or
    gzip-compressed tars, read as streams."""
    with tarfile.open(fileobj=first, mode="r|*") as first_tar, tarfile.open(
        fileobj=second, mode="r|*"
    ) as second_tar:
        first_members, second_members = iter(first_tar), iter(second_tar)
        while True:
            first_member = next(first_members, None)
            second_member = next(second_members, None)
            if first_member is None and second_member is None:
                return None
            if first_member is None or second_member is None:
                present = first_member or second_member
                assert present is not None
                where = FIRST if second_member is None else SECOND
                return f"tar entry {present.name} is only in {where}"
            if first_member.name != second_member.name:
                return (
                    f"tar entries part ways: {first_member.name} in {FIRST},"
                    f" {second_member.name} in {SECOND}"
                )
            detail = _member_difference(first_tar, first_member, second_tar, second_member)
            if detail is not None:
                return f"tar entry {first_member.name}: {detail}"


def _member_difference(
    first_tar: tarfile.TarFile,
    first: tarfile.TarInfo,
    second_tar: tarfile.TarFile,
    second: tarfile.TarInfo,
) -> Optional[str]:
    for field in _MEMBER_FIELDS:
        first_value, second_value = getattr(first, field), getattr(second, field)
        if first_value != second_value:
            return _versus(field, _shown(field, first_value), _shown(field, second_value))
    if first.isfile():
        first_hash, second_hash = _member_sha256(first_tar, first), _member_sha256(
            second_tar, second
        )
        if first_hash != second_hash:
            return _versus("content sha256", first_hash, second_hash)
    return None


def _shown(field: str, value: Any) -> str:
    if field == "mode":
        return oct(value)
    if field == "type":
        return repr(value.decode(errors="replace"))
    return repr(value)


def _member_sha256(archive: tarfile.TarFile, member: tarfile.TarInfo) -> str:
    content = archive.extractfile(member)
    assert content is not None
    return _stream_sha256(content)


# JSON ---------------------------------------------------------------------------------------------


def compare_json(first: Any, second: Any, where: str = "") -> Optional[str]:
    """The first field (a path like `.config.Env[2]`) whose value differs, keys in sorted order."""
    if isinstance(first, dict) and isinstance(second, dict):
        for key in sorted(set(first) | set(second)):
            field = f"{where}.{key}"
            if key not in second:
                return f"field {field} is only in {FIRST}"
            if key not in first:
                return f"field {field} is only in {SECOND}"
            detail = compare_json(first[key], second[key], field)
            if detail is not None:
                return detail
        return None
    if isinstance(first, list) and isinstance(second, list):
        for index, (first_item, second_item) in enumerate(zip(first, second)):
            detail = compare_json(first_item, second_item, f"{where}[{index}]")
            if detail is not None:
                return detail
        if len(first) != len(second):
            return _versus(f"field {where or '.'} length", str(len(first)), str(len(second)))
        return None
    if first != second or type(first) is not type(second):
        return _versus(f"field {where or '.'}", json.dumps(first), json.dumps(second))
    return None


# image archives -----------------------------------------------------------------------------------


def _is_image_archive(path: Path) -> bool:
    """An uncompressed tar whose first entries include the OCI layout's `index.json`."""
    if not tarfile.is_tarfile(path):
        return False
    try:
        with tarfile.open(path, "r:") as archive:
            archive.getmember("index.json")
            return True
    except (KeyError, tarfile.ReadError):
        return False


@dataclass
class _ArchivePair:
    """Two OCI-layout archives, compared from `index.json` down the descriptors that differ."""

    first: tarfile.TarFile
    second: tarfile.TarFile

    def difference(self) -> str:
        first_index, second_index = (
            _read_json(tar, "index.json") for tar in (self.first, self.second)
        )
        detail = self._documents("index.json", first_index, second_index)
        if detail is not None:
            return detail
        # Same images; the difference is elsewhere (docker's manifest.json, an extra file).
        first_names = [member.name for member in self.first.getmembers()]
        second_names = [member.name for member in self.second.getmembers()]
        for name in sorted(set(first_names) & set(second_names)):
            first_blob, second_blob = self.first.extractfile(name), self.second.extractfile(name)
            if first_blob is None or second_blob is None:
                continue
            if _stream_sha256(first_blob) != _stream_sha256(second_blob):
                detail = compare_json(_read_json(self.first, name), _read_json(self.second, name))
                return f"{name}: {detail or 'differs'}"
        only = sorted(set(first_names) ^ set(second_names))
        return f"archive entries {only} are in one build only" if only else "archive bytes differ"

    def _documents(self, label: str, first: Any, second: Any) -> Optional[str]:
        """Follow the first descriptor whose digest differs down to its blob, a layer before
        the config (whose diffIDs change with any layer: a consequence, not the cause); else
        report the document's own first differing field."""
        differing = [
            (where, first_descriptor, second_descriptor)
            for where, first_descriptor, second_descriptor in _descriptor_pairs(first, second)
            if first_descriptor["digest"] != second_descriptor["digest"]
        ]
        differing.sort(key=lambda pair: not pair[0].startswith(".layers"))
        for where, first_descriptor, second_descriptor in differing[:1]:
            child = f"{label} {where} ({first_descriptor.get('mediaType', 'blob')})"
            return self._blobs(child, first_descriptor["digest"], second_descriptor["digest"])
        detail = compare_json(first, second)
        return None if detail is None else f"{label}: {detail}"

    def _blobs(self, label: str, first_digest: str, second_digest: str) -> str:
        first_name, second_name = (
            f"blobs/sha256/{digest.split(':', 1)[1]}" for digest in (first_digest, second_digest)
        )
        first_blob = self.first.extractfile(first_name)
        second_blob = self.second.extractfile(second_name)
        assert first_blob is not None and second_blob is not None
        try:
            first_document = json.loads(first_blob.read(_CHUNK * 4).decode())
            second_document = json.loads(second_blob.read(_CHUNK * 4).decode())
        except ValueError:  # a layer: compare it as a tar
            first_blob.seek(0)
            second_blob.seek(0)
            detail = compare_tar_streams(first_blob, second_blob)
            return f"{label}: {detail or 'the same tar entries, compressed differently'}"
        detail = self._documents(label, first_document, second_document)
        return detail or f"{label}: the same JSON, encoded differently"


def _descriptor_pairs(first: Any, second: Any, where: str = "") -> Iterator[Tuple[str, Any, Any]]:
    """Descriptors (objects with a digest) at the same place in two documents, in order."""
    if isinstance(first, dict) and isinstance(second, dict):
        if "digest" in first and "digest" in second:
            yield where or ".", first, second
            return
        for key in sorted(set(first) & set(second)):
            yield from _descriptor_pairs(first[key], second[key], f"{where}.{key}")
    elif isinstance(first, list) and isinstance(second, list):
        for index, (first_item, second_item) in enumerate(zip(first, second)):
            yield from _descriptor_pairs(first_item, second_item, f"{where}[{index}]")


def _read_json(archive: tarfile.TarFile, name: str) -> Any:
    content = archive.extractfile(name)
    assert content is not None, name
    return json.loads(content.read())


# bytes --------------------------------------------------------------------------------------------


def _versus(what: str, first: str, second: str) -> str:
    return f"{what} {first} in {FIRST}, {second} in {SECOND}"


def _stream_sha256(stream: IO[bytes]) -> str:
    digest = hashlib.sha256()
    for chunk in iter(lambda: stream.read(_CHUNK), b""):
        digest.update(chunk)
    return digest.hexdigest()


def _file_sha256(path: Path) -> str:
    with open(path, "rb") as file:
        return _stream_sha256(file)


def _json_or_none(path: Path) -> Optional[Tuple[Any]]:
    """The parsed document (in a 1-tuple, as `null` is a document), or None if not JSON."""
    if path.stat().st_size > 64 * _CHUNK:
        return None
    try:
        return (json.loads(path.read_bytes()),)
    except ValueError:
        return None


def _first_differing_byte(first: Path, second: Path) -> str:
    offset = 0
    with open(first, "rb") as first_file, open(second, "rb") as second_file:
        while True:
            first_chunk, second_chunk = first_file.read(_CHUNK), second_file.read(_CHUNK)
            if first_chunk != second_chunk:
                common = next(
                    (i for i, (a, b) in enumerate(zip(first_chunk, second_chunk)) if a != b),
                    min(len(first_chunk), len(second_chunk)),
                )
                return f"bytes differ from offset {offset + common}"
            if not first_chunk:
                return "the same bytes"
            offset += len(first_chunk)
