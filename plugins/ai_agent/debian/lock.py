"""The lock: which .deb files make up a base image, pinned by sha256, and what asked for them.

Format (JSON, keys sorted, two-space indent, one trailing newline; regenerating from the same
indexes and request gives the same bytes):

    {"lockVersion": 1,
     "request": {"suite": "bookworm", "architectures": ["amd64", "arm64"],
                 "packages": ["python3.11-minimal", ...], "excludes": [], "variant": "minimal"},
     "indexes": {"bookworm": {"date": "Sat, 11 Jul 2026 10:16:37 UTC", "version": "12.15",
                              "packages": {"amd64": "<sha256 of main/binary-amd64/Packages.xz>"}},
                 "bookworm-updates": {...}, "bookworm-security": {...}},
     "packages": {"amd64": [{"name": "libc6", "version": "2.36-9+deb12u14",
                             "architecture": "amd64", "suite": "bookworm",
                             "filename": "pool/main/g/glibc/libc6_2.36-9+deb12u14_amd64.deb",
                             "size": 2757936, "sha256": "<hex>"}, ...]}}

`packages` lists every target architecture's closure sorted by name; a package's own
`architecture` is `all` for architecture-independent ones. `filename` is relative to the archive
of its suite (`debian` or `debian-security`), so any mirror of that archive can serve it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Sequence, Tuple

from ..oci.limits import NetworkLimits
from .download import DOWNLOAD_LIMITS
from .errors import DebianError
from .index import DEBIAN_ARCHIVE_KEYRING, PackageIndex, fetch_indexes
from .resolve import resolve

LOCK_VERSION = 1
# The packages of a Python 3.11 runtime: the interpreter and its full standard library, TLS
# roots, time zones, and the C++/OpenMP runtimes that numeric wheels link against.
PYTHON_RUNTIME_PACKAGES = (
    "ca-certificates",
    "libgomp1",
    "libpython3.11-stdlib",
    "libstdc++6",
    "python3.11-minimal",
    "tzdata",
)
# What each variant adds to the requested packages. `shell` gives /bin/sh (`shell=True`), the
# core utilities and ldconfig (which `ctypes.util.find_library` runs).
VARIANTS: Mapping[str, Tuple[str, ...]] = {
    "minimal": (),
    "shell": ("coreutils", "dash", "libc-bin"),
}


class LockError(DebianError):
    """A lock file is malformed or does not fit its use; the message names the field."""


@dataclass(frozen=True)
class LockRequest:
    """What the lock was made for; kept in the lock so that it can be regenerated."""

    suite: str
    architectures: Tuple[str, ...]
    packages: Tuple[str, ...]
    excludes: Tuple[str, ...] = ()
    variant: str = "minimal"

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise LockError(f"unknown variant {self.variant!r}; choose one of {sorted(VARIANTS)}")
        if not self.architectures:
            raise LockError("a lock request needs at least one architecture")
        object.__setattr__(self, "architectures", tuple(sorted(set(self.architectures))))
        object.__setattr__(self, "packages", tuple(sorted(set(self.packages))))
        object.__setattr__(self, "excludes", tuple(sorted(set(self.excludes))))

    @property
    def installed_packages(self) -> Tuple[str, ...]:
        """The requested packages plus the variant's."""
        return tuple(sorted({*self.packages, *VARIANTS[self.variant]}))

    def to_json(self) -> Dict[str, Any]:
        return {
            "suite": self.suite,
            "architectures": list(self.architectures),
            "packages": list(self.packages),
            "excludes": list(self.excludes),
            "variant": self.variant,
        }


@dataclass(frozen=True)
class LockedPackage:
    name: str
    version: str
    architecture: str
    suite: str
    filename: str
    size: int
    sha256: str

    @property
    def basename(self) -> str:
        """The .deb's file name, as the pool and a downloads directory name it."""
        return self.filename.rsplit("/", 1)[-1]

    def to_json(self) -> Dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "architecture": self.architecture,
            "suite": self.suite,
            "filename": self.filename,
            "size": self.size,
            "sha256": self.sha256,
        }


@dataclass(frozen=True)
class IndexSnapshot:
    """The signed index a lock was resolved from: its Release date and version, and the sha256
    of the Packages file read per architecture."""

    suite: str
    date: str
    version: str
    packages_sha256: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> Dict[str, Any]:
        return {"date": self.date, "version": self.version, "packages": dict(self.packages_sha256)}


@dataclass(frozen=True)
class Lock:
    request: LockRequest
    indexes: Tuple[IndexSnapshot, ...]
    packages: Mapping[str, Tuple[LockedPackage, ...]]

    def packages_for(self, architecture: str) -> Tuple[LockedPackage, ...]:
        if architecture not in self.packages:
            raise LockError(
                f"the lock has no packages for {architecture}; it covers"
                f" {', '.join(sorted(self.packages))}: add the architecture to the lock request"
                " and regenerate it"
            )
        return self.packages[architecture]

    def index(self, suite: str) -> IndexSnapshot:
        for snapshot in self.indexes:
            if snapshot.suite == suite:
                return snapshot
        raise LockError(f"the lock records no index for suite {suite}")

    def to_json(self) -> Dict[str, Any]:
        return {
            "lockVersion": LOCK_VERSION,
            "request": self.request.to_json(),
            "indexes": {snapshot.suite: snapshot.to_json() for snapshot in self.indexes},
            "packages": {
                architecture: [package.to_json() for package in packages]
                for architecture, packages in self.packages.items()
            },
        }

    def dumps(self) -> bytes:
        """The canonical text of the lock."""
        return (
            json.dumps(self.to_json(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        ).encode("utf-8")

    @classmethod
    def loads(cls, data: bytes, source: str) -> Lock:
        try:
            document = json.loads(data.decode("utf-8"))
        except ValueError as error:
            raise LockError(f"{source}: not a JSON document: {error}") from None
        return _LockReader(source).lock(document)


class _LockReader:
    """Reads a lock document, naming the field that is missing or has the wrong type."""

    def __init__(self, source: str) -> None:
        self.source = source

    def lock(self, document: Any) -> Lock:
        self._require(document, dict, "the lock")
        version = document.get("lockVersion")
        if version != LOCK_VERSION:
            raise LockError(
                f"{self.source}: lockVersion {version!r} is not {LOCK_VERSION}; regenerate the"
                " lock with this version of the tool"
            )
        request = self._field(document, "request", dict, "the lock")
        indexes = self._field(document, "indexes", dict, "the lock")
        packages = self._field(document, "packages", dict, "the lock")
        try:
            lock_request = LockRequest(
                suite=self._field(request, "suite", str, "request"),
                architectures=tuple(self._strings(request, "architectures", "request")),
                packages=tuple(self._strings(request, "packages", "request")),
                excludes=tuple(self._strings(request, "excludes", "request")),
                variant=self._field(request, "variant", str, "request"),
            )
        except LockError as error:
            raise LockError(f"{self.source}: {error}") from None
        return Lock(
            request=lock_request,
            indexes=tuple(self._snapshot(suite, value) for suite, value in sorted(indexes.items())),
            packages={
                architecture: tuple(
                    self._package(entry, f"packages.{architecture}[{number}]")
                    for number, entry in enumerate(self._require(entries, list, architecture))
                )
                for architecture, entries in sorted(packages.items())
            },
        )

    def _snapshot(self, suite: str, value: Any) -> IndexSnapshot:
        where = f"indexes.{suite}"
        self._require(value, dict, where)
        sha256s = self._field(value, "packages", dict, where)
        for architecture, digest in sha256s.items():
            self._require(digest, str, f"{where}.packages.{architecture}")
        return IndexSnapshot(
            suite,
            self._field(value, "date", str, where),
            self._field(value, "version", str, where),
            dict(sha256s),
        )

    def _package(self, value: Any, where: str) -> LockedPackage:
        self._require(value, dict, where)
        package = LockedPackage(
            name=self._field(value, "name", str, where),
            version=self._field(value, "version", str, where),
            architecture=self._field(value, "architecture", str, where),
            suite=self._field(value, "suite", str, where),
            filename=self._field(value, "filename", str, where),
            size=self._field(value, "size", int, where),
            sha256=self._field(value, "sha256", str, where),
        )
        if len(package.sha256) != 64 or not all(c in "0123456789abcdef" for c in package.sha256):
            raise LockError(f"{self.source}: {where}.sha256 is not a sha256 hex digest")
        if package.filename.startswith("/") or ".." in package.filename.split("/"):
            raise LockError(f"{self.source}: {where}.filename must be a pool path")
        return package

    def _strings(self, value: Dict[str, Any], key: str, where: str) -> List[str]:
        items = self._field(value, key, list, where)
        for number, item in enumerate(items):
            self._require(item, str, f"{where}.{key}[{number}]")
        return items

    def _field(self, value: Dict[str, Any], key: str, kind: type, where: str) -> Any:
        if key not in value:
            raise LockError(f"{self.source}: {where} has no `{key}`")
        return self._require(value[key], kind, f"{where}.{key}")

    def _require(self, value: Any, kind: type, where: str) -> Any:
        if not isinstance(value, kind) or isinstance(value, bool):
            raise LockError(
                f"{self.source}: {where} must be a JSON {_JSON_TYPES[kind]}, got {value!r}"
            )
        return value


_JSON_TYPES = {dict: "object", list: "array", str: "string", int: "number"}


def lock_from_indexes(
    request: LockRequest, indexes_by_architecture: Mapping[str, Sequence[PackageIndex]]
) -> Lock:
    """Resolve `request` against already fetched indexes (one list per architecture)."""
    packages = {}
    releases = {}
    packages_sha256: Dict[str, Dict[str, str]] = {}
    for architecture in request.architectures:
        indexes = indexes_by_architecture[architecture]
        records = resolve(indexes, request.installed_packages, architecture, request.excludes)
        packages[architecture] = tuple(
            LockedPackage(
                name=record.name,
                version=str(record.version),
                architecture=record.architecture,
                suite=record.suite,
                filename=record.filename,
                size=record.size,
                sha256=record.sha256,
            )
            for record in records
        )
        for index in indexes:
            releases[index.suite] = index.release
            packages_sha256.setdefault(index.suite, {})[architecture] = index.sha256
    snapshots = tuple(
        IndexSnapshot(suite, releases[suite].date, releases[suite].version, packages_sha256[suite])
        for suite in sorted(releases)
    )
    return Lock(request, snapshots, packages)


def generate_lock(
    request: LockRequest,
    archive_urls: Mapping[str, str],
    keyring: str = DEBIAN_ARCHIVE_KEYRING,
    check_valid_until: bool = True,
    limits: NetworkLimits = DOWNLOAD_LIMITS,
) -> Lock:
    """Fetch and verify the indexes of `request.suite` from `archive_urls` (archive name
    to mirror URL) and resolve the request for every architecture."""
    indexes = fetch_indexes(
        request.suite, request.architectures, archive_urls, keyring, check_valid_until, limits
    )
    return lock_from_indexes(request, indexes)
