"""Signed package indexes of a Debian archive: InRelease, checked with `gpgv`, then Packages.xz,
checked against the SHA256 list of the signed Release.

Trust flows as in apt: the keyring vouches for InRelease, InRelease names the sha256 and size of
each Packages file, and each record of Packages names the sha256 and size of its .deb (which the
lock keeps). So signatures are needed only here, when a lock is made; every later fetch is checked
against the lock alone.

A release `bookworm` is read from three suites, as a Debian 12 system's sources.list does:
`bookworm` and `bookworm-updates` from the `debian` archive and `bookworm-security` from the
`debian-security` archive.
"""

from __future__ import annotations

import datetime
import email.utils
import hashlib
import lzma
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from ..oci.limits import NetworkLimits
from .control import ControlSyntaxError, Stanza, parse_single_stanza, parse_stanzas
from .download import DOWNLOAD_LIMITS, DownloadError, NotFound, read_url
from .errors import DebianError
from .version import InvalidVersion, Version

DEBIAN_ARCHIVE_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
DEBIAN = "debian"
DEBIAN_SECURITY = "debian-security"
DEFAULT_MIRRORS: Mapping[str, Tuple[str, ...]] = {
    DEBIAN: ("http://deb.debian.org/debian",),
    DEBIAN_SECURITY: ("http://deb.debian.org/debian-security",),
}
COMPONENT = "main"

# The fields of a Packages record that resolving and locking read; the rest is skipped.
RECORD_FIELDS = (
    "Package",
    "Version",
    "Architecture",
    "Priority",
    "Essential",
    "Multi-Arch",
    "Provides",
    "Pre-Depends",
    "Depends",
    "Filename",
    "Size",
    "SHA256",
)


class ArchiveIndexError(DebianError):
    """An index cannot be read or trusted; the message names the suite, the file and the fix."""


class MissingTool(ArchiveIndexError):
    """`gpgv` or the Debian archive keyring is not installed."""


class SignatureError(ArchiveIndexError):
    """InRelease is not signed by a key in the keyring."""


def suites_of(suite: str) -> Tuple[str, ...]:
    """The suites a Debian system of release `suite` installs from, lowest precedence first."""
    return (suite, f"{suite}-updates", f"{suite}-security")


def archive_of(suite: str) -> str:
    """The archive (the mirror's top directory) that serves `suite`."""
    return DEBIAN_SECURITY if suite.endswith("-security") else DEBIAN


@dataclass(frozen=True)
class FileChecksum:
    sha256: str
    size: int


@dataclass(frozen=True)
class Release:
    """The signed description of one suite: when it was made and what its files hold."""

    suite: str
    url: str
    date: str
    version: str
    acquire_by_hash: bool
    files: Mapping[str, FileChecksum]


@dataclass(frozen=True)
class PackageRecord:
    """One binary package of a Packages index, with what resolving and locking need."""

    name: str
    version: Version
    architecture: str
    suite: str
    filename: str
    size: int
    sha256: str
    priority: str = "optional"
    essential: bool = False
    multi_arch: str = "no"
    provides: str = ""
    pre_depends: str = ""
    depends: str = ""

    def __str__(self) -> str:
        return f"{self.name} {self.version} ({self.suite})"


@dataclass(frozen=True)
class PackageIndex:
    """The packages of one suite for one architecture, and the signed Release they came from."""

    release: Release
    architecture: str
    sha256: str
    records: Tuple[PackageRecord, ...]

    @property
    def suite(self) -> str:
        return self.release.suite


# Release ----------------------------------------------------------------------------------------


def fetch_release(
    suite: str,
    archive_url: str,
    keyring: str = DEBIAN_ARCHIVE_KEYRING,
    check_valid_until: bool = True,
    limits: NetworkLimits = DOWNLOAD_LIMITS,
) -> Release:
    """Download `dists/<suite>/InRelease` from `archive_url`, check its signature against
    `keyring` with gpgv and parse it.

    `Valid-Until` guards against a mirror replaying an old, signed index; snapshot mirrors serve
    expired indexes on purpose, so the check can be turned off for them, as apt's
    `check-valid-until=no` does."""
    url = f"{archive_url.rstrip('/')}/dists/{suite}/InRelease"
    try:
        signed = read_url(url, limits)
    except DownloadError as error:
        raise ArchiveIndexError(f"cannot download the index of suite {suite}: {error}") from None
    text = verify_signature(signed, url, keyring)
    now = datetime.datetime.now(datetime.timezone.utc) if check_valid_until else None
    return parse_release(text, suite, archive_url.rstrip("/"), now)


def verify_signature(signed: bytes, source: str, keyring: str = DEBIAN_ARCHIVE_KEYRING) -> str:
    """The text that gpgv vouches for in the clearsigned `signed` (never the unsigned parts)."""
    gpgv = shutil.which("gpgv")
    if gpgv is None:
        raise MissingTool(
            "`gpgv` is not installed; it checks the signatures of Debian indexes when a lock is"
            " made: install the Debian package `gpgv` (apt-get install gpgv)"
        )
    if not os.path.isfile(keyring):
        raise MissingTool(
            f"the keyring {keyring} does not exist; it holds the keys that sign Debian indexes:"
            " install the Debian package `debian-archive-keyring`"
        )
    with tempfile.TemporaryDirectory(prefix="ai-agent-gpgv-") as scratch:
        signed_path = os.path.join(scratch, "InRelease")
        with open(signed_path, "wb") as stream:
            stream.write(signed)
        result = subprocess.run(
            # An absolute path: gpgv looks for a bare file name in its home directory.
            [gpgv, "--keyring", os.path.abspath(keyring), "--output", "-", signed_path],
            capture_output=True,
            env={"LC_ALL": "C", "PATH": os.environ.get("PATH", "")},
        )
    if result.returncode != 0:
        details = result.stderr.decode("utf-8", "replace").replace(signed_path, source).strip()
        raise SignatureError(
            f"{source} is not signed by a key in {keyring} (gpgv exited {result.returncode}):"
            f" {details}. Update `debian-archive-keyring`, or check the mirror."
        )
    return result.stdout.decode("utf-8")


def parse_release(
    text: str, suite: str, archive_url: str, now: Optional[datetime.datetime]
) -> Release:
    """The verified text of InRelease for `suite`, with its SHA256 file list; `now`, unless
    None, must lie before the Release's `Valid-Until`."""
    source = f"{archive_url}/dists/{suite}/InRelease"
    try:
        fields = parse_single_stanza(text, source)
    except ControlSyntaxError as error:
        raise ArchiveIndexError(str(error)) from None
    codename = fields.get("Codename")
    if codename != suite:
        # A validly signed Release of another suite (an older one, say) must not stand in.
        raise ArchiveIndexError(f"{source} describes suite {codename!r}, not {suite!r}")
    for required in ("Date", "SHA256"):
        if required not in fields:
            raise ArchiveIndexError(f"{source} has no {required} field")
    if now is not None:
        _check_valid_until(fields, source, now)
    return Release(
        suite=suite,
        url=archive_url,
        date=fields["Date"],
        version=fields.get("Version", ""),
        acquire_by_hash=fields.get("Acquire-By-Hash", "no") == "yes",
        files=_checksums(fields["SHA256"], source),
    )


def _check_valid_until(fields: Stanza, source: str, now: datetime.datetime) -> None:
    valid_until = fields.get("Valid-Until")
    if valid_until is None:
        return
    try:
        expiry = email.utils.parsedate_to_datetime(valid_until)
    except (TypeError, ValueError):
        raise ArchiveIndexError(f"{source}: cannot read Valid-Until {valid_until!r}") from None
    if expiry.tzinfo is None:
        expiry = expiry.replace(tzinfo=datetime.timezone.utc)
    if now > expiry:
        raise ArchiveIndexError(
            f"{source} expired on {valid_until}: the mirror serves a stale index, or this"
            " machine's clock is wrong"
        )


def _checksums(listing: str, source: str) -> Dict[str, FileChecksum]:
    files: Dict[str, FileChecksum] = {}
    for line in listing.strip().splitlines():
        parts = line.split()
        if len(parts) != 3 or not parts[1].isdigit():
            raise ArchiveIndexError(f"{source}: malformed SHA256 line {line!r}")
        files[parts[2]] = FileChecksum(parts[0], int(parts[1]))
    return files


# Packages ---------------------------------------------------------------------------------------


def fetch_package_index(
    release: Release, architecture: str, limits: NetworkLimits = DOWNLOAD_LIMITS
) -> PackageIndex:
    """Download the suite's Packages.xz for `architecture`, check it against the Release and
    parse it. With Acquire-By-Hash the file is read by its hash, so an index updated between the
    two downloads cannot mismatch (apt does the same)."""
    directory = f"{COMPONENT}/binary-{architecture}"
    path = f"{directory}/Packages.xz"
    checksum = release.files.get(path)
    if checksum is None:
        listed = sorted(
            name.split("/")[1][len("binary-") :]
            for name in release.files
            if name.startswith(f"{COMPONENT}/binary-") and name.endswith("/Packages.xz")
        )
        raise ArchiveIndexError(
            f"suite {release.suite} has no {path}; architectures it lists: {', '.join(listed)}"
        )
    base = f"{release.url}/dists/{release.suite}"
    urls = [f"{base}/{path}"]
    if release.acquire_by_hash:
        urls.insert(0, f"{base}/{directory}/by-hash/SHA256/{checksum.sha256}")
    compressed = _download_first(urls, release.suite, limits)
    actual = hashlib.sha256(compressed).hexdigest()
    if len(compressed) != checksum.size or actual != checksum.sha256:
        raise ArchiveIndexError(
            f"{urls[-1]}: got {len(compressed)} bytes with sha256 {actual}, the signed Release"
            f" says {checksum.size} bytes with sha256 {checksum.sha256}; the mirror is"
            " inconsistent, retry later or use another mirror"
        )
    try:
        text = lzma.decompress(compressed).decode("utf-8")
    except (lzma.LZMAError, UnicodeDecodeError) as error:
        raise ArchiveIndexError(f"{urls[-1]}: cannot decompress: {error}") from None
    records = parse_packages(text, release.suite, f"{release.suite} {path}")
    return PackageIndex(release, architecture, checksum.sha256, tuple(records))


def _download_first(urls: List[str], suite: str, limits: NetworkLimits) -> bytes:
    for url in urls[:-1]:
        try:
            return read_url(url, limits)
        except NotFound:
            continue
        except DownloadError as error:
            raise ArchiveIndexError(
                f"cannot download the index of suite {suite}: {error}"
            ) from None
    try:
        return read_url(urls[-1], limits)
    except DownloadError as error:
        raise ArchiveIndexError(f"cannot download the index of suite {suite}: {error}") from None


def parse_packages(text: str, suite: str, source: str) -> List[PackageRecord]:
    """The records of a Packages index of `suite`; `source` names it in error messages."""
    records = []
    try:
        for line, fields in parse_stanzas(text, source, keep=RECORD_FIELDS):
            records.append(_record(fields, suite, f"{source}:{line}"))
    except ControlSyntaxError as error:
        raise ArchiveIndexError(str(error)) from None
    return records


def _record(fields: Stanza, suite: str, where: str) -> PackageRecord:
    missing = [
        name
        for name in ("Package", "Version", "Architecture", "Filename", "Size", "SHA256")
        if name not in fields
    ]
    if missing:
        raise ArchiveIndexError(f"{where}: record lacks {', '.join(missing)}")
    try:
        version = Version.parse(fields["Version"])
    except InvalidVersion as error:
        raise ArchiveIndexError(f"{where}: {error}") from None
    if not fields["Size"].isdigit():
        raise ArchiveIndexError(f"{where}: Size {fields['Size']!r} is not a number")
    return PackageRecord(
        name=fields["Package"],
        version=version,
        architecture=fields["Architecture"],
        suite=suite,
        filename=fields["Filename"],
        size=int(fields["Size"]),
        sha256=fields["SHA256"],
        priority=fields.get("Priority", "optional"),
        essential=fields.get("Essential") == "yes",
        multi_arch=fields.get("Multi-Arch", "no"),
        provides=fields.get("Provides", ""),
        pre_depends=fields.get("Pre-Depends", ""),
        depends=fields.get("Depends", ""),
    )


def fetch_indexes(
    suite: str,
    architectures: Sequence[str],
    archive_urls: Mapping[str, str],
    keyring: str = DEBIAN_ARCHIVE_KEYRING,
    check_valid_until: bool = True,
    limits: NetworkLimits = DOWNLOAD_LIMITS,
) -> Dict[str, List[PackageIndex]]:
    """The verified indexes of release `suite` and its -updates and -security suites, per
    architecture. Each Release is read once, so every architecture is resolved against the same
    snapshot.

    `archive_urls` maps each archive (`debian`, `debian-security`) to the mirror to read.
    """
    indexes: Dict[str, List[PackageIndex]] = {architecture: [] for architecture in architectures}
    for name in suites_of(suite):
        archive_url = archive_urls[archive_of(name)]
        release = fetch_release(name, archive_url, keyring, check_valid_until, limits)
        for architecture in architectures:
            indexes[architecture].append(fetch_package_index(release, architecture, limits))
    return indexes
