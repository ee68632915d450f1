"""Signed indexes: gpgv against the real Debian keyring on a real InRelease, the Release checks,
and Packages.xz downloads from a real HTTP server checked against the Release's sha256."""

from __future__ import annotations

import datetime
import hashlib
import lzma
import os
from pathlib import Path
from typing import Callable

import pytest

from testkit.components import missing_component, require_binary

from .conftest import TESTDATA, Mirror
from .index import (
    DEBIAN_ARCHIVE_KEYRING,
    ArchiveIndexError,
    FileChecksum,
    MissingTool,
    Release,
    SignatureError,
    archive_of,
    fetch_package_index,
    parse_packages,
    parse_release,
    suites_of,
    verify_signature,
)

SIGNED = (TESTDATA / "bookworm-security.InRelease").read_bytes()
SECURITY_URL = "http://deb.debian.org/debian-security"
# The fixture's Date is 2026-11-25 and its Valid-Until 2026-12-02.
INSIDE_WINDOW = datetime.datetime(2026, 11, 26, tzinfo=datetime.timezone.utc)
AFTER_WINDOW = datetime.datetime(2026, 12, 3, tzinfo=datetime.timezone.utc)


@pytest.fixture
def gpgv() -> None:
    require_binary("gpgv", "gpgv")
    if not os.path.isfile(DEBIAN_ARCHIVE_KEYRING):
        missing_component(
            f"the Debian archive keyring {DEBIAN_ARCHIVE_KEYRING}",
            "the Debian package `debian-archive-keyring`",
        )


@pytest.mark.usefixtures("gpgv")
def test_a_real_inrelease_verifies_and_parses() -> None:
    text = verify_signature(SIGNED, "InRelease")
    assert "BEGIN PGP" not in text
    release = parse_release(text, "bookworm-security", SECURITY_URL, INSIDE_WINDOW)
    assert release.date == "Wed, 25 Nov 2026 02:22:30 UTC"
    assert release.acquire_by_hash
    packages = release.files["main/binary-amd64/Packages.xz"]
    assert packages == FileChecksum(
        "a59b44d3150ec5621306ce98e42bcb14f95451fe82ca7e6b83d1da7454a1ea3d", 379936
    )


@pytest.mark.usefixtures("gpgv")
def test_a_tampered_inrelease_is_refused() -> None:
    tampered = SIGNED.replace(b"Codename: bookworm-security", b"Codename: bookworm-securitz")
    assert tampered != SIGNED
    with pytest.raises(SignatureError, match="not signed by a key in"):
        verify_signature(tampered, "http://mirror/dists/bookworm-security/InRelease")


def test_missing_keyring_names_the_package(tmp_path: Path) -> None:
    require_binary("gpgv", "gpgv")
    with pytest.raises(MissingTool, match="install the Debian package `debian-archive-keyring`"):
        verify_signature(SIGNED, "InRelease", str(tmp_path / "absent.gpg"))


def test_missing_gpgv_names_the_package(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(MissingTool, match="install the Debian package `gpgv`"):
        verify_signature(SIGNED, "InRelease")


@pytest.mark.usefixtures("gpgv")
def test_expired_and_substituted_releases_are_refused() -> None:
    text = verify_signature(SIGNED, "InRelease")
    with pytest.raises(ArchiveIndexError, match="expired on Wed, 02 Dec 2026"):
        parse_release(text, "bookworm-security", SECURITY_URL, AFTER_WINDOW)
    # Snapshot mirrors serve expired indexes on purpose: no `now`, no check.
    assert parse_release(text, "bookworm-security", SECURITY_URL, None).suite == "bookworm-security"
    with pytest.raises(
        ArchiveIndexError, match="describes suite 'bookworm-security', not 'bookworm'"
    ):
        parse_release(text, "bookworm", SECURITY_URL, INSIDE_WINDOW)


def test_suites_and_archives() -> None:
    assert suites_of("bookworm") == ("bookworm", "bookworm-updates", "bookworm-security")
    assert [archive_of(suite) for suite in suites_of("trixie")] == [
        "debian",
        "debian",
        "debian-security",
    ]


# Packages downloads ----------------------------------------------------------------------------

PACKAGES_TEXT = (TESTDATA / "bookworm-security_amd64.Packages").read_text()
PACKAGES_XZ = lzma.compress(PACKAGES_TEXT.encode())
PACKAGES_SHA256 = hashlib.sha256(PACKAGES_XZ).hexdigest()
DIRECTORY = "dists/bookworm-security/main/binary-amd64"


def _release(mirror: Mirror, by_hash: bool, xz: bytes = PACKAGES_XZ) -> Release:
    files = {
        "main/binary-amd64/Packages.xz": FileChecksum(hashlib.sha256(xz).hexdigest(), len(xz)),
        "main/binary-arm64/Packages.xz": FileChecksum("0" * 64, 1),
    }
    return Release("bookworm-security", mirror.url, "date", "12", by_hash, files)


def test_packages_are_read_by_hash(mirrors: Callable[[], Mirror]) -> None:
    mirror = mirrors()
    mirror.put(f"{DIRECTORY}/by-hash/SHA256/{PACKAGES_SHA256}", PACKAGES_XZ)
    index = fetch_package_index(_release(mirror, by_hash=True), "amd64")
    assert mirror.requests == [f"/{DIRECTORY}/by-hash/SHA256/{PACKAGES_SHA256}"]
    assert index.sha256 == PACKAGES_SHA256
    names = {record.name for record in index.records}
    assert names == {"libexpat1", "libpython3.11-minimal", "libssl3", "python3.11-minimal"}
    assert all(record.suite == "bookworm-security" for record in index.records)


def test_packages_fall_back_to_the_plain_path(mirrors: Callable[[], Mirror]) -> None:
    mirror = mirrors()
    mirror.put(f"{DIRECTORY}/Packages.xz", PACKAGES_XZ)
    index = fetch_package_index(_release(mirror, by_hash=True), "amd64")
    assert len(index.records) == 4
    assert mirror.requests[-1] == f"/{DIRECTORY}/Packages.xz"


def test_packages_that_do_not_match_the_release_are_refused(
    mirrors: Callable[[], Mirror],
) -> None:
    mirror = mirrors()
    mirror.put(f"{DIRECTORY}/Packages.xz", lzma.compress(b"Package: evil\n"))
    with pytest.raises(ArchiveIndexError, match="the mirror is inconsistent"):
        fetch_package_index(_release(mirror, by_hash=False), "amd64")


def test_an_architecture_the_suite_lacks_is_named(mirrors: Callable[[], Mirror]) -> None:
    with pytest.raises(ArchiveIndexError, match="no main/binary-riscv64.*lists: amd64, arm64"):
        fetch_package_index(_release(mirrors(), by_hash=False), "riscv64")


def test_records_keep_what_resolving_needs() -> None:
    records = {r.name: r for r in parse_packages(PACKAGES_TEXT, "bookworm-security", "x")}
    python = records["python3.11-minimal"]
    assert str(python.version) == "3.11.2-6+deb12u9"
    assert python.pre_depends == "libc6 (>= 2.35)"
    assert "libpython3.11-minimal (= 3.11.2-6+deb12u9)" in python.depends
    assert python.filename.startswith("pool/updates/main/p/python3.11/python3.11-minimal_")
    assert python.multi_arch == "allowed" and python.priority == "optional"


def test_a_record_without_a_checksum_is_refused() -> None:
    with pytest.raises(ArchiveIndexError, match=r"x:1: record lacks Filename, Size, SHA256"):
        parse_packages("Package: a\nVersion: 1\nArchitecture: all\n", "bookworm", "x")
