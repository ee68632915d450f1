"""Fetching pinned .debs from mirrors: real HTTP servers on loopback serve temporary directories."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable

import pytest

from .conftest import Mirror
from .fetch import (
    FetchError,
    PackageNotOnMirrors,
    fetch_deb,
    fetch_debs,
    fetched_debs,
)
from .lock import LockedPackage

CONTENT = b"!<arch>\n" + b"pretend .deb bytes " * 1000
REFRESH = "pants generate-lockfiles --resolve=debian-base"


def _package(content: bytes = CONTENT, suite: str = "bookworm") -> LockedPackage:
    return LockedPackage(
        name="libexample1",
        version="1.2-3+deb12u1",
        architecture="amd64",
        suite=suite,
        filename="pool/main/e/example/libexample1_1.2-3+deb12u1_amd64.deb",
        size=len(content),
        sha256=hashlib.sha256(content).hexdigest(),
    )


def _serve(mirror: Mirror, content: bytes = CONTENT) -> None:
    mirror.put(_package().filename, content)


def test_mirrors_are_tried_in_order(mirrors: Callable[[], Mirror], tmp_path: Path) -> None:
    empty, serving, unused = mirrors(), mirrors(), mirrors()
    _serve(serving)
    _serve(unused)
    path = fetch_deb(_package(), [empty.url, serving.url, unused.url], tmp_path, REFRESH)
    assert path == tmp_path / "libexample1_1.2-3+deb12u1_amd64.deb"
    assert path.read_bytes() == CONTENT
    assert len(empty.requests) == 1 and len(serving.requests) == 1 and not unused.requests
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_a_fetched_file_is_reused(mirrors: Callable[[], Mirror], tmp_path: Path) -> None:
    mirror = mirrors()
    _serve(mirror)
    fetch_deb(_package(), [mirror.url], tmp_path, REFRESH)
    fetch_deb(_package(), [mirror.url], tmp_path, REFRESH)
    assert len(mirror.requests) == 1


def test_wrong_bytes_are_refused_and_leave_nothing(
    mirrors: Callable[[], Mirror], tmp_path: Path
) -> None:
    tampered = mirrors()
    _serve(tampered, CONTENT.replace(b"pretend", b"tampered"))
    with pytest.raises(FetchError) as error:
        fetch_deb(_package(), [tampered.url], tmp_path, REFRESH)
    assert "pinned" in str(error.value)
    assert not isinstance(error.value, PackageNotOnMirrors)
    assert list(tmp_path.iterdir()) == []


def test_a_mirror_serving_wrong_bytes_is_skipped(
    mirrors: Callable[[], Mirror], tmp_path: Path
) -> None:
    tampered, good = mirrors(), mirrors()
    _serve(tampered, CONTENT + b"extra")
    _serve(good)
    path = fetch_deb(_package(), [tampered.url, good.url], tmp_path, REFRESH)
    assert path.read_bytes() == CONTENT
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_a_stale_file_in_the_destination_is_replaced(
    mirrors: Callable[[], Mirror], tmp_path: Path
) -> None:
    mirror = mirrors()
    _serve(mirror)
    (tmp_path / "libexample1_1.2-3+deb12u1_amd64.deb").write_bytes(b"truncated")
    path = fetch_deb(_package(), [mirror.url], tmp_path, REFRESH)
    assert path.read_bytes() == CONTENT


def test_a_version_no_mirror_serves_names_package_mirrors_and_command(
    mirrors: Callable[[], Mirror], tmp_path: Path
) -> None:
    first, second = mirrors(), mirrors()
    with pytest.raises(PackageNotOnMirrors) as error:
        fetch_deb(_package(), [first.url, second.url], tmp_path, REFRESH)
    message = str(error.value)
    assert "libexample1 1.2-3+deb12u1 (amd64)" in message
    assert f"tried {first.url}, {second.url}" in message
    assert f"regenerate the lock with `{REFRESH}`" in message
    assert "snapshot.debian.org" in message
    assert error.value.mirrors == (first.url, second.url)
    assert list(tmp_path.iterdir()) == []


def test_security_packages_use_the_security_mirrors(
    mirrors: Callable[[], Mirror], tmp_path: Path
) -> None:
    main, security = mirrors(), mirrors()
    _serve(security)
    package = _package(suite="bookworm-security")
    paths = fetch_debs(
        [package], {"debian": (main.url,), "debian-security": (security.url,)}, tmp_path, REFRESH
    )
    assert paths == [tmp_path / package.basename] and not main.requests
    with pytest.raises(FetchError, match="no mirror of the `debian-security` archive"):
        fetch_debs([package], {"debian": (main.url,)}, tmp_path / "other", REFRESH)


def test_fetched_debs_are_checked_against_the_lock(tmp_path: Path) -> None:
    package = _package()
    with pytest.raises(FetchError, match="has no libexample1_1.2-3"):
        fetched_debs([package], tmp_path)
    (tmp_path / package.basename).write_bytes(CONTENT[:-1] + b"?")
    with pytest.raises(FetchError, match="does not match the lock"):
        fetched_debs([package], tmp_path)
    (tmp_path / package.basename).write_bytes(CONTENT)
    assert fetched_debs([package], tmp_path) == {"libexample1": tmp_path / package.basename}
