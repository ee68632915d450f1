"""Install a wheel the way pip would into a flat prefix of the image, as layer entries.

`install_wheel` checks the wheel's sha256 against the lock, then streams every member into a
scratch tree that mirrors the image root (so no member is ever held in memory, and the bytecode
step can compile the tree in place), and returns `Entry.file` entries for it:

- purelib, platlib and `<name>.data/{purelib,platlib}` -> `<prefix>/site-packages/`;
- `<name>.data/scripts` -> `<prefix>/bin/`, mode 0755, a `#!python` shebang rewritten to the
  image's interpreter; console and GUI entry points become small launchers there too;
- `<name>.data/data` -> `<prefix>/`; `<name>.data/headers` is dropped (nothing compiles
  against it in a runtime image) and noted;
- `INSTALLER` says `ai-agent`; `RECORD` is rewritten with the installed paths, sorted, so it
  tells the truth; the wheel's `RECORD.jws`/`RECORD.p7s` signatures over the old RECORD and
  any `REQUESTED` are dropped.

The entries depend only on the wheel's bytes and the layout; modes are 0644, or 0755 for
scripts and members that the wheel marks executable.
"""

from __future__ import annotations

import base64
import configparser
import csv
import hashlib
import io
import os
import posixpath
import re
import zipfile
from dataclasses import dataclass, field, replace
from email.parser import HeaderParser
from pathlib import Path
from typing import IO, Dict, List, Optional, Tuple

from ..oci.layer import Entry
from .requirements import canonical_name
from .tags import WheelFilename

INSTALLER = "ai-agent"
CHUNK_SIZE = 1 << 20
# The longest shebang line read when looking for `#!python`; a script's first line is short.
_SHEBANG_LIMIT = 4096
_DROPPED_METADATA = {"RECORD", "RECORD.jws", "RECORD.p7s", "INSTALLER", "REQUESTED"}
_ENTRY_POINT = re.compile(
    r"^(?P<module>[A-Za-z_][\w.]*)\s*:\s*(?P<attribute>[A-Za-z_][\w.]*)\s*(?:\[[^\]]*\])?\s*$"
)
_SCRIPT_NAME = re.compile(r"^[A-Za-z0-9_.+-]+$")


class WheelError(Exception):
    """A wheel cannot be installed; the message names the wheel and the member."""


class WheelHashMismatch(WheelError):
    """The wheel's bytes are not the ones the lock pinned."""


@dataclass(frozen=True)
class InstallLayout:
    """Where distributions go in the image: `prefix` (relative, e.g. `opt/agent`) holds
    `site-packages/`, `bin/` and wheel data; `interpreter` is the image's python for shebangs."""

    prefix: str = "opt/agent"
    interpreter: str = "/usr/bin/python3"

    def __post_init__(self) -> None:
        parts = self.prefix.split("/")
        if self.prefix.startswith("/") or any(part in ("", ".", "..") for part in parts):
            raise ValueError(f"prefix must be relative like `opt/agent`, got {self.prefix!r}")
        if not self.interpreter.startswith("/") or any(c.isspace() for c in self.interpreter):
            raise ValueError(f"interpreter must be an absolute path, got {self.interpreter!r}")

    @property
    def site_packages(self) -> str:
        return f"{self.prefix}/site-packages"

    @property
    def scripts(self) -> str:
        return f"{self.prefix}/bin"


@dataclass(frozen=True)
class InstalledFile:
    """One installed file: its image path (relative), its mode and its size."""

    path: str
    mode: int
    size: int


@dataclass(frozen=True)
class InstalledDistribution:
    """A wheel unpacked under `root`, a scratch directory that mirrors the image root."""

    project: str
    version: str
    wheel: str
    root: Path
    files: Tuple[InstalledFile, ...]
    notes: Tuple[str, ...] = field(default=())

    @property
    def size(self) -> int:
        return sum(installed.size for installed in self.files)

    def entries(self) -> List[Entry]:
        return [
            Entry.file(installed.path, self.root / installed.path, mode=installed.mode)
            for installed in self.files
        ]

    def with_files(self, added: List[InstalledFile]) -> InstalledDistribution:
        files = sorted(self.files + tuple(added), key=lambda installed: installed.path)
        return replace(self, files=tuple(files))


def verify_sha256(path: Path, expected: str) -> None:
    """Stream `path` through sha256; a mismatch means the download is not what was locked."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as stream:
            for chunk in iter(lambda: stream.read(CHUNK_SIZE), b""):
                digest.update(chunk)
    except OSError as error:
        raise WheelError(f"{path.name}: cannot read it: {error.strerror}") from None
    if digest.hexdigest() != expected.lower():
        raise WheelHashMismatch(
            f"{path.name}: sha256 is {digest.hexdigest()}, the lock pins {expected};"
            " the file is corrupt or not the locked artifact (delete it and download it again)"
        )


def install_wheel(
    wheel_path: Path, sha256: str, layout: InstallLayout, root: Path
) -> InstalledDistribution:
    """Verify and unpack `wheel_path` into the empty-or-missing directory `root`."""
    verify_sha256(wheel_path, sha256)
    name = WheelFilename.parse(wheel_path.name)
    root.mkdir(parents=True, exist_ok=True)
    if any(root.iterdir()):
        raise WheelError(f"{wheel_path.name}: scratch directory {root} is not empty")
    try:
        with zipfile.ZipFile(wheel_path) as archive:
            installer = _Installer(archive, name, layout, root)
            return installer.install()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as error:
        raise WheelError(f"{wheel_path.name}: not a readable wheel: {error}") from None


class _Installer:
    def __init__(
        self, archive: zipfile.ZipFile, name: WheelFilename, layout: InstallLayout, root: Path
    ) -> None:
        self.archive = archive
        self.name = name
        self.layout = layout
        self.root = root
        self.dist_info = self._dist_info_directory()
        self.data = self.dist_info[: -len(".dist-info")] + ".data"
        self.files: Dict[str, InstalledFile] = {}
        self.sha256s: Dict[str, str] = {}
        self.notes: List[str] = []

    def install(self) -> InstalledDistribution:
        self._check_wheel_version()
        for member in sorted(self.archive.infolist(), key=lambda info: info.filename):
            if not member.is_dir():
                self._install_member(member)
        self._write_launchers()
        self._write(f"{self.layout.site_packages}/{self.dist_info}/INSTALLER", INSTALLER.encode())
        self._write_record()
        return InstalledDistribution(
            project=self.name.name,
            version=self.name.version,
            wheel=self.name.filename,
            root=self.root,
            files=tuple(self.files[path] for path in sorted(self.files)),
            notes=tuple(self.notes),
        )

    def _error(self, message: str) -> WheelError:
        return WheelError(f"{self.name.filename}: {message}")

    def _dist_info_directory(self) -> str:
        tops = {info.filename.split("/", 1)[0] for info in self.archive.infolist()}
        candidates = sorted(top for top in tops if top.endswith(".dist-info"))
        if len(candidates) != 1:
            raise self._error(f"expected one top-level .dist-info directory, found {candidates}")
        dist_name = candidates[0][: -len(".dist-info")].rsplit("-", 1)[0]
        if canonical_name(dist_name) != self.name.name:
            raise self._error(f"{candidates[0]} does not belong to project {self.name.name}")
        return candidates[0]

    def _check_wheel_version(self) -> None:
        metadata = self._read_small(f"{self.dist_info}/WHEEL")
        if metadata is None:
            raise self._error(f"{self.dist_info}/WHEEL is missing")
        version = HeaderParser().parsestr(metadata.decode("utf-8")).get("Wheel-Version", "")
        if version.split(".")[0] != "1":
            raise self._error(f"Wheel-Version {version!r} is not supported (only 1.x)")

    def _read_small(self, member: str) -> Optional[bytes]:
        try:
            return self.archive.read(member)
        except KeyError:
            return None

    def _install_member(self, member: zipfile.ZipInfo) -> None:
        name = member.filename
        parts = name.split("/")
        if name.startswith("/") or "\\" in name or any(p in ("", ".", "..") for p in parts):
            raise self._error(f"member {name!r} is not a plain relative path")
        if parts[0] == self.dist_info and len(parts) == 2 and parts[1] in _DROPPED_METADATA:
            return
        executable = bool((member.external_attr >> 16) & 0o111)
        if parts[0] != self.data:
            self._extract(member, f"{self.layout.site_packages}/{name}", executable)
            return
        if len(parts) < 3:
            raise self._error(f"member {name!r} sits directly in {self.data}/")
        scheme, rest = parts[1], "/".join(parts[2:])
        if scheme in ("purelib", "platlib"):
            self._extract(member, f"{self.layout.site_packages}/{rest}", executable)
        elif scheme == "scripts":
            self._extract(member, f"{self.layout.scripts}/{rest}", True, rewrite_shebang=True)
        elif scheme == "data":
            self._extract(member, f"{self.layout.prefix}/{rest}", executable)
        elif scheme == "headers":
            self.notes.append(f"dropped C header {rest} (headers are not installed in images)")
        else:
            raise self._error(f"member {name!r}: unknown install scheme {scheme!r}")

    def _extract(
        self,
        member: zipfile.ZipInfo,
        path: str,
        executable: bool,
        rewrite_shebang: bool = False,
    ) -> None:
        with self.archive.open(member) as source, self._create(path) as target:
            digest = hashlib.sha256()
            size = 0
            if rewrite_shebang:
                first_line = _rewritten_shebang(source.readline(_SHEBANG_LIMIT), self.layout)
                target.write(first_line)
                digest.update(first_line)
                size += len(first_line)
            for chunk in iter(lambda: source.read(CHUNK_SIZE), b""):
                target.write(chunk)
                digest.update(chunk)
                size += len(chunk)
        self._record(path, executable, digest.hexdigest(), size)

    def _write(self, path: str, data: bytes, executable: bool = False) -> None:
        with self._create(path) as target:
            target.write(data)
        self._record(path, executable, hashlib.sha256(data).hexdigest(), len(data))

    def _create(self, path: str) -> IO[bytes]:
        if path in self.files:
            raise self._error(f"{path} would be installed twice")
        host_path = self.root / path
        host_path.parent.mkdir(parents=True, exist_ok=True)
        return open(os.open(host_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb")

    def _record(self, path: str, executable: bool, sha256: str, size: int) -> None:
        self.files[path] = InstalledFile(path, 0o755 if executable else 0o644, size)
        self.sha256s[path] = sha256

    def _write_launchers(self) -> None:
        text = self._read_small(f"{self.dist_info}/entry_points.txt")
        if text is None:
            return
        parser = configparser.ConfigParser(delimiters=("=",), interpolation=None)
        parser.optionxform = str  # type: ignore[assignment,method-assign]
        try:
            parser.read_string(text.decode("utf-8"))
        except (configparser.Error, UnicodeDecodeError) as error:
            raise self._error(f"entry_points.txt is malformed: {error}") from None
        for section in ("console_scripts", "gui_scripts"):
            if not parser.has_section(section):
                continue
            for script, reference in sorted(parser.items(section)):
                launcher = _launcher(script, reference, self.layout.interpreter)
                if launcher is None:
                    raise self._error(
                        f"entry point `{script} = {reference}` is not `name = module:attribute`"
                    )
                self._write(f"{self.layout.scripts}/{script}", launcher, executable=True)

    def _write_record(self) -> None:
        record = f"{self.layout.site_packages}/{self.dist_info}/RECORD"
        rows = [
            (
                posixpath.relpath(installed.path, self.layout.site_packages),
                "sha256=" + _urlsafe_digest(self.sha256s[installed.path]),
                str(installed.size),
            )
            for installed in self.files.values()
        ]
        rows.append((posixpath.relpath(record, self.layout.site_packages), "", ""))
        text = io.StringIO()
        csv.writer(text, lineterminator="\n").writerows(sorted(rows))
        self._write(record, text.getvalue().encode("utf-8"))


def _rewritten_shebang(first_line: bytes, layout: InstallLayout) -> bytes:
    """PEP 427: `#!python` (or `#!pythonw`) and its arguments -> the image's interpreter."""
    match = re.match(rb"^#!pythonw?(?P<arguments>[ \t][^\r\n]*)?(?P<end>\r?\n)?$", first_line)
    if not match:
        return first_line
    arguments = match["arguments"] or b""
    return b"#!" + layout.interpreter.encode() + arguments + (match["end"] or b"\n")


def _launcher(script: str, reference: str, interpreter: str) -> Optional[bytes]:
    match = _ENTRY_POINT.match(reference)
    if not match or not _SCRIPT_NAME.match(script) or script in (".", ".."):
        return None
    module, attribute = match["module"], match["attribute"]
    first, _, _ = attribute.partition(".")
    return (
        f"#!{interpreter}\n"
        f"# The `{script}` entry point: {module}:{attribute}\n"
        "import sys\n"
        "\n"
        f"from {module} import {first}\n"
        "\n"
        'if __name__ == "__main__":\n'
        f"    sys.exit({attribute}())\n"
    ).encode()


def _urlsafe_digest(hex_digest: str) -> str:
    return base64.urlsafe_b64encode(bytes.fromhex(hex_digest)).rstrip(b"=").decode("ascii")
