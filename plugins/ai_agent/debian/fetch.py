"""Download the .deb files a lock pins, trying mirrors in order; the lock's size and sha256 decide
what is accepted, so any mirror (deb.debian.org, a snapshot.debian.org timestamp, a local cache)
may serve.

A .deb lands in the destination directory under its pool file name only once it is complete and
verified: it is written to a hidden temporary file beside it and renamed, so an interrupted or
refused download leaves nothing behind. A file already there is checked and reused.

`check_debs` asks the same mirrors, with HEAD, whether they still serve what a lock pins, so that
a lock whose versions left the pool is found before a build needs it.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from ..oci.limits import NetworkLimits
from ..oci.types import GONE, MISMATCH, UNREACHABLE, Finding
from .download import (
    CHECK_JOBS,
    CHUNK_SIZE,
    DOWNLOAD_LIMITS,
    FETCH_JOBS,
    DownloadError,
    NotFound,
    check_url,
    download_verified,
)
from .errors import DebianError
from .index import archive_of
from .lock import LockedPackage


class FetchError(DebianError):
    """A pinned .deb could not be downloaded; the message lists each mirror and what failed."""


class PackageNotOnMirrors(FetchError):
    """No mirror has the pinned .deb any more: the lock is older than the mirrors' pools."""

    def __init__(
        self, package: LockedPackage, mirrors: Sequence[str], refresh_command: str
    ) -> None:
        super().__init__(
            f"{package.name} {package.version} ({package.architecture}) is pinned by the lock but"
            f" no mirror serves {package.filename} any more (tried {', '.join(mirrors)}). Debian"
            " removes superseded versions from its pool; regenerate the lock with"
            f" `{refresh_command}`, or add a mirror that keeps old versions, such as"
            " https://snapshot.debian.org/archive/debian/<timestamp>/ (and .../debian-security/)"
        )
        self.package = package
        self.mirrors = tuple(mirrors)
        self.refresh_command = refresh_command


def _url(mirror: str, package: LockedPackage) -> str:
    return f"{mirror.rstrip('/')}/{package.filename}"


def fetch_deb(
    package: LockedPackage,
    mirrors: Sequence[str],
    destination: Path,
    refresh_command: str,
    limits: NetworkLimits = DOWNLOAD_LIMITS,
) -> Path:
    """`package`'s .deb in `destination`, downloaded from the first of `mirrors` (URLs of the
    archive that holds its suite) that serves the pinned bytes."""
    target = destination / package.basename
    if target.is_file() and file_matches(target, package):
        return target
    reasons: List[str] = []
    not_found = 0
    for mirror in mirrors:
        try:
            download_verified(_url(mirror, package), target, package.sha256, package.size, limits)
            return target
        except NotFound as error:
            not_found += 1
            reasons.append(str(error))
        except DownloadError as error:
            reasons.append(str(error))
    if mirrors and not_found == len(mirrors):
        raise PackageNotOnMirrors(package, mirrors, refresh_command)
    details = "; ".join(reasons) or "no mirror configured"
    raise FetchError(f"cannot fetch {package.name} {package.version}: {details}")


def _mirrors_of(package: LockedPackage, mirrors: Mapping[str, Sequence[str]]) -> Sequence[str]:
    archive = archive_of(package.suite)
    if not mirrors.get(archive):
        raise FetchError(
            f"{package.name} comes from suite {package.suite}, but no mirror of the"
            f" `{archive}` archive is configured"
        )
    return mirrors[archive]


def fetch_debs(
    packages: Sequence[LockedPackage],
    mirrors: Mapping[str, Sequence[str]],
    destination: Path,
    refresh_command: str,
    limits: NetworkLimits = DOWNLOAD_LIMITS,
) -> List[Path]:
    """Every package's .deb in `destination`, in the order given. `mirrors` maps each archive
    (`debian`, `debian-security`) to its mirror URLs, tried in order."""
    destination.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(FETCH_JOBS) as pool:
        return list(
            pool.map(
                lambda package: fetch_deb(
                    package, _mirrors_of(package, mirrors), destination, refresh_command, limits
                ),
                packages,
            )
        )


def check_deb(
    package: LockedPackage, mirrors: Sequence[str], limits: NetworkLimits = DOWNLOAD_LIMITS
) -> Optional[Finding]:
    """None if any of `mirrors` serves the pinned .deb with its pinned size (asked with HEAD),
    else what they said: unreachable while a mirror did not answer (it may have it), served with
    another size if one did so, else gone."""
    item = f"{package.name}={package.version} ({package.architecture})"
    findings = []
    for mirror in mirrors:
        finding = check_url(_url(mirror, package), item, package.size, limits)
        if finding is None:
            return None
        findings.append(finding)
    statuses = {finding.status for finding in findings}
    status = next(status for status in (UNREACHABLE, MISMATCH, GONE) if status in statuses)
    return Finding(item, status, "; ".join(finding.detail for finding in findings))


def check_debs(
    packages: Sequence[LockedPackage],
    mirrors: Mapping[str, Sequence[str]],
    limits: NetworkLimits = DOWNLOAD_LIMITS,
) -> Tuple[int, List[Finding]]:
    """How many .debs were asked about (each once: a lock for two architectures lists the `all`
    ones twice), and the findings of those no mirror serves as pinned."""
    unique = list({package.filename: package for package in packages}.values())
    mirrors_of = {package.filename: _mirrors_of(package, mirrors) for package in unique}
    with ThreadPoolExecutor(CHECK_JOBS) as pool:
        found = pool.map(
            lambda package: check_deb(package, mirrors_of[package.filename], limits), unique
        )
        findings = [finding for finding in found if finding is not None]
    return len(unique), findings


def file_matches(path: Path, package: LockedPackage) -> bool:
    """Whether `path` holds exactly the bytes the lock pins for `package`."""
    if path.stat().st_size != package.size:
        return False
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(CHUNK_SIZE), b""):
            digest.update(chunk)
    return digest.hexdigest() == package.sha256


def fetched_debs(packages: Sequence[LockedPackage], directory: Path) -> Dict[str, Path]:
    """Each package's .deb in `directory` (as `fetch` leaves them), checked against the lock."""
    found = {}
    for package in packages:
        path = directory / package.basename
        if not path.is_file():
            raise FetchError(
                f"{directory} has no {package.basename} ({package.name} {package.version});"
                " fetch the lock's packages into it first"
            )
        if not file_matches(path, package):
            raise FetchError(
                f"{path} does not match the lock ({package.size} bytes, sha256 {package.sha256});"
                " delete it and fetch it again"
            )
        found[package.name] = path
    return found
