"""Install a wheel into the image's virtual environment with PyPA's `installer`, as layer entries.

`installer` decides what pip decides: the root scheme from `Root-Is-Purelib`, where each
`<name>.data/<scheme>/` member goes, `#!python` shebangs of scripts, console and GUI entry-point
launchers, and the rewritten `RECORD`. This module adds only what an image needs on top:

- the scheme paths of a virtual environment at `<prefix>` (`_scheme_paths`), where pip puts
  them: purelib and platlib -> `<prefix>/lib/pythonX.Y/site-packages`, scripts -> `<prefix>/bin`,
  data -> `<prefix>`, headers -> `<prefix>/include/site/pythonX.Y/<project>`;
- files written into a scratch tree that mirrors the image root, streamed (no member is held in
  memory) and never overwritten, with modes that depend only on the wheel (0644, or 0755 for
  scripts and members the wheel marks executable), not on the builder's umask;
- the wheel's sha256 checked against the lock before anything is unpacked.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import (
    IO,
    AbstractSet,
    Any,
    BinaryIO,
    Dict,
    Iterable,
    Iterator,
    List,
    Optional,
    Tuple,
    Union,
    cast,
)

from installer import install
from installer.destinations import WheelDestination
from installer.exceptions import InstallerError
from installer.records import Hash, RecordEntry, parse_record_file
from installer.scripts import Script
from installer.sources import WheelContentElement, WheelFile
from installer.utils import Scheme, construct_record_file, fix_shebang
from packaging.utils import InvalidWheelFilename, parse_wheel_filename

from ..oci.layer import Entry
from .errors import UsageError, WheelsError
from .installed import CHUNK_SIZE, InstalledDistribution, InstalledFile, file_sha256
from .remote import WheelArchive

INSTALLER = b"ai-agent\n"


class WheelError(WheelsError):
    """A wheel cannot be installed; the message names the wheel and the member."""


class WheelHashMismatch(WheelError):
    """The wheel's bytes are not the ones the lock pinned."""


@dataclass(frozen=True)
class InstallLayout:
    """Where distributions go in the image: a virtual environment at `prefix` (relative, e.g.
    `opt/agent`) for the image's python `interpreter` (its X.Y is `python`), so that its
    site-packages is a real site directory (`.pth` files take effect) and every scheme lands
    where pip puts it in a venv."""

    prefix: str = "opt/agent"
    interpreter: str = "/usr/bin/python3"
    python: str = "3.11"

    def __post_init__(self) -> None:
        parts = self.prefix.split("/")
        if self.prefix.startswith("/") or any(part in ("", ".", "..") for part in parts):
            raise UsageError(f"prefix must be relative like `opt/agent`, got {self.prefix!r}")
        if not self.interpreter.startswith("/") or any(c.isspace() for c in self.interpreter):
            raise UsageError(f"interpreter must be an absolute path, got {self.interpreter!r}")

    @property
    def site_packages(self) -> str:
        return f"{self.prefix}/lib/python{self.python}/site-packages"

    @property
    def scripts(self) -> str:
        return f"{self.prefix}/bin"

    @property
    def venv_python(self) -> str:
        """The environment's python, which scripts and launchers name in their shebang."""
        return f"/{self.scripts}/python{self.python}"

    def headers(self, project: str) -> str:
        return f"{self.prefix}/include/site/python{self.python}/{project}"

    def venv_entries(self, version: str) -> List[Entry]:
        """`pyvenv.cfg` and the `bin/python*` links to the image's interpreter: what makes the
        prefix a virtual environment of that interpreter (CPython `version`, X.Y.Z; X.Y stands
        for X.Y.0)."""
        if version.count(".") == 1:
            version += ".0"
        home, _, executable = self.interpreter.rpartition("/")
        config = (
            f"home = {home or '/'}\ninclude-system-site-packages = false\nversion = {version}\n"
        )
        links = sorted({"python", "python3", f"python{self.python}", executable})
        return [
            Entry.content(f"{self.prefix}/pyvenv.cfg", config.encode(), mode=0o644),
            *(Entry.symlink(f"{self.scripts}/{name}", self.interpreter) for name in links),
        ]


def verify_sha256(path: Path, expected: str) -> None:
    """Stream `path` through sha256; a mismatch means the download is not what was locked."""
    try:
        actual = file_sha256(path)
    except OSError as error:
        raise WheelError(f"{path.name}: cannot read it: {error.strerror}") from None
    if actual != expected.lower():
        raise WheelHashMismatch(
            f"{path.name}: sha256 is {actual}, the lock pins {expected};"
            " the file is corrupt or not the locked artifact (delete it and download it again)"
        )


def install_wheel(
    wheel_path: Path,
    sha256: str,
    layout: InstallLayout,
    root: Path,
    skip: AbstractSet[str] = frozenset(),
    *,
    verified: bool = False,
) -> InstalledDistribution:
    """Verify (unless `verified`: downloaded and checked just now) and unpack `wheel_path` into
    the empty-or-missing directory `root`, except the image paths in `skip` (an earlier layer
    writes the same bytes there); RECORD lists them as pip's would."""
    if not verified:
        verify_sha256(wheel_path, sha256)
    name, version = _name_and_version(wheel_path.name)
    root.mkdir(parents=True, exist_ok=True)
    if any(root.iterdir()):
        raise WheelError(f"{wheel_path.name}: scratch directory {root} is not empty")
    destination = _ImageDestination(
        _scheme_paths(layout, name), layout.venv_python, root=root, skip=skip
    )
    _run_installer(wheel_path, wheel_path.name, destination)
    notes: Tuple[str, ...] = ()
    if destination.skipped:
        shown = ", ".join(destination.skipped[:3])
        notes = (
            f"{len(destination.skipped)} file(s) with the same bytes as in an earlier layer are"
            f" installed once, by that layer: {shown}"
            + (" ..." if len(destination.skipped) > 3 else ""),
        )
    return InstalledDistribution(
        project=name,
        version=version,
        wheel=wheel_path.name,
        root=root,
        files=tuple(destination.files[path] for path in sorted(destination.files)),
        notes=notes,
        skipped=tuple(destination.skipped),
    )


@dataclass(frozen=True)
class ListedWheel:
    """What a wheel installs, known without unpacking it."""

    project: str
    version: str
    # The bytes of its members, unpacked: what decides whether it gets a layer of its own.
    unpacked_size: int
    # Image path -> the installed file for the paths that were measured, else None.
    files: Dict[str, Optional[InstalledFile]]

    def digest(self) -> str:
        """The sha256 of all of the above: what a layer step compares with the listing its
        wheels were grouped by."""
        files = {
            path: None if file is None else [file.mode, file.size, file.sha256]
            for path, file in self.files.items()
        }
        listing = [self.project, self.version, self.unpacked_size, sorted(files.items())]
        return hashlib.sha256(json.dumps(listing, separators=(",", ":")).encode()).hexdigest()


def list_wheel(
    archive: WheelArchive, layout: InstallLayout, measure: AbstractSet[str] = frozenset()
) -> ListedWheel:
    """The image paths the wheel `archive` installs, found by running `installer` without
    writing or reading a member (so a GB wheel costs its central directory), except the paths
    in `measure`, whose bytes (as installed: shebangs rewritten) are hashed."""
    name, version = _name_and_version(archive.name)
    destination = _ImageDestination(
        _scheme_paths(layout, name), layout.venv_python, root=None, measure=measure
    )
    size = _run_installer(archive, archive.name, destination)
    return ListedWheel(name, version, size, destination.listed)


def _name_and_version(filename: str) -> Tuple[str, str]:
    try:
        name, version, _, _ = parse_wheel_filename(filename)
    except InvalidWheelFilename as error:
        raise WheelError(f"{filename}: {error}") from None
    return name, str(version)


def _run_installer(archive: WheelArchive, filename: str, destination: _ImageDestination) -> int:
    """Install with `installer` into `destination` (only listing, without a root: no member is
    opened unless read); returns the members' unpacked size."""
    source = WheelFile if destination.root is not None else _LazyWheelFile
    try:
        # A RangeFile is a binary file (`io.RawIOBase`), which typeshed's IO[bytes] does not name.
        with zipfile.ZipFile(cast(Union[Path, IO[bytes]], archive)) as opened:
            _check_member_names(opened.namelist(), filename)
            install(source(opened), destination, {"INSTALLER": INSTALLER})
            return sum(member.file_size for member in opened.infolist())
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as error:
        raise WheelError(f"{filename}: not a readable wheel: {error}") from None
    except (InstallerError, ValueError, KeyError, AssertionError) as error:
        # installer reports malformed wheels (no or two .dist-info, a bad Wheel-Version, an
        # unknown .data scheme, a bad entry point) with these.
        raise WheelError(f"{filename}: {error or type(error).__name__}") from None


class _LazyWheelFile(WheelFile):
    """`installer`'s wheel whose members are opened only when read: opening one reads its local
    header, which for a wheel read by ranges (`remote.RangeFile`) would be a request per
    member. What it yields is `WheelFile.get_contents`'s, stream aside."""

    def get_contents(self) -> Iterator[WheelContentElement]:
        records = parse_record_file(self.read_dist_info("RECORD").splitlines())
        record_mapping = {record[0]: record for record in records}
        for item in self._zipfile.infolist():
            if item.filename.endswith("/"):
                continue
            record = record_mapping.pop(item.filename, (item.filename, "", ""))
            mode = item.external_attr >> 16
            is_executable = bool(mode and stat.S_ISREG(mode) and mode & 0o111)
            member = _LazyMember(self._zipfile, item)
            try:
                yield record, member, is_executable  # type: ignore[misc]
            finally:
                member.close_if_opened()


class _LazyMember:
    """A zip member's stream, opened on first use."""

    def __init__(self, archive: zipfile.ZipFile, item: zipfile.ZipInfo) -> None:
        self._archive = archive
        self._item = item
        self._stream: Optional[BinaryIO] = None

    def __getattr__(self, name: str) -> Any:
        if self._stream is None:
            self._stream = self._archive.open(self._item)  # type: ignore[assignment]
        return getattr(self._stream, name)

    def close_if_opened(self) -> None:
        if self._stream is not None:
            self._stream.close()


def _scheme_paths(layout: InstallLayout, project: str) -> Dict[str, str]:
    return {
        "purelib": layout.site_packages,
        "platlib": layout.site_packages,
        "scripts": layout.scripts,
        "data": layout.prefix,
        "headers": layout.headers(project),
    }


def _check_member_names(names: Iterable[str], wheel: str) -> None:
    """Refuse members that would land outside their scheme directory (installer joins paths as
    given, like pip before its own check)."""
    for name in names:
        parts = name.rstrip("/").split("/")
        if name.startswith("/") or "\\" in name or any(p in ("", ".", "..") for p in parts):
            raise WheelError(f"{wheel}: member {name!r} is not a plain relative path")


class _ImageDestination(WheelDestination):
    """Writes `installer`'s output below `root`, recording each file's mode, size and sha256;
    paths in `skip` are hashed for RECORD but not written. Without a `root` it only lists
    (`listed`: image path -> the file for paths in `measure`, else None), reading no bytes
    but those of `measure`."""

    def __init__(
        self,
        schemes: Dict[str, str],
        interpreter: str,
        *,
        root: Optional[Path],
        skip: AbstractSet[str] = frozenset(),
        measure: AbstractSet[str] = frozenset(),
    ) -> None:
        self.root = root
        self.schemes = schemes
        self.interpreter = interpreter
        self.skip = skip
        self.measure = measure
        self.files: Dict[str, InstalledFile] = {}
        self.skipped: List[str] = []
        self.listed: Dict[str, Optional[InstalledFile]] = {}

    def write_file(
        self,
        scheme: Scheme,
        path: Union[str, os.PathLike],
        stream: BinaryIO,
        is_executable: bool,
    ) -> RecordEntry:
        if scheme == "scripts":
            with fix_shebang(stream, self.interpreter) as rewritten:
                return self._write(scheme, os.fspath(path), rewritten, is_executable=True)
        return self._write(scheme, os.fspath(path), stream, is_executable)

    def write_script(self, name: str, module: str, attr: str, section: str) -> RecordEntry:
        script = Script(name, module, attr, section)  # type: ignore[arg-type]
        launcher_name, data = script.generate(self.interpreter, "posix")
        with io.BytesIO(data) as stream:
            return self._write(Scheme("scripts"), launcher_name, stream, is_executable=True)

    def finalize_installation(
        self,
        scheme: Scheme,
        record_file_path: str,
        records: Iterable[Tuple[Scheme, RecordEntry]],
    ) -> None:
        base = self.schemes[scheme]

        def prefix_for_scheme(file_scheme: Scheme) -> Optional[str]:
            if self.schemes[file_scheme] == base:
                return None
            return os.path.relpath(self.schemes[file_scheme], base) + "/"

        # Sorted like pip's, so RECORD depends on the files only.
        rows = sorted(records, key=lambda row: row[1].to_row(prefix_for_scheme(row[0])))
        with construct_record_file(rows, prefix_for_scheme) as record:
            self._write(scheme, record_file_path, record, is_executable=False)

    def _write(
        self, scheme: Scheme, path: str, stream: BinaryIO, is_executable: bool
    ) -> RecordEntry:
        image_path = f"{self.schemes[scheme]}/{path}"
        if image_path in self.files or image_path in self.listed or image_path in self.skipped:
            raise WheelError(f"{image_path} would be installed twice")
        mode = 0o755 if is_executable else 0o644
        if self.root is None:
            measured = None
            if image_path in self.measure:
                size, digest = _consume(stream, None)
                measured = InstalledFile(image_path, mode, size, digest.hexdigest())
            self.listed[image_path] = measured
            return RecordEntry(path, None, None)
        if image_path in self.skip:
            self.skipped.append(image_path)
            size, digest = _consume(stream, None)
        else:
            host_path = self.root / image_path
            host_path.parent.mkdir(parents=True, exist_ok=True)
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
            with open(os.open(host_path, flags, 0o600), "wb") as out:
                size, digest = _consume(stream, out)
            self.files[image_path] = InstalledFile(image_path, mode, size, digest.hexdigest())
        return RecordEntry(path, Hash("sha256", _urlsafe_b64(digest.digest())), size)


def _consume(stream: BinaryIO, out: Optional[BinaryIO]) -> Tuple[int, hashlib._Hash]:
    """Read `stream` to its end in chunks, hashing it and copying it to `out` if given."""
    digest = hashlib.sha256()
    size = 0
    for chunk in iter(lambda: stream.read(CHUNK_SIZE), b""):
        if out is not None:
            out.write(chunk)
        digest.update(chunk)
        size += len(chunk)
    return size, digest


def _urlsafe_b64(digest: bytes) -> str:
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
