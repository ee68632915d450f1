"""Fetching pinned .debs from mirrors, and checking that mirrors still serve them: real HTTP
servers on loopback serve temporary directories, and deb.debian.org the example lock's pins."""

from __future__ import annotations

import dataclasses
import hashlib
import socket
from pathlib import Path
from typing import Callable

import pytest

from testkit.components import missing_component

from ..oci.limits import NetworkLimits
from ..oci.types import GONE, MISMATCH, UNREACHABLE
from .conftest import Mirror
from .fetch import (
    FetchError,
    PackageNotOnMirrors,
    check_deb,
    check_debs,
    fetch_deb,
    fetch_debs,
    fetched_debs,
)
from .index import DEFAULT_MIRRORS
from .lock import Lock, LockedPackage

# The repo's own Debian lock (in the sandbox through //:repo-config).
EXAMPLE_LOCK = Path(__file__).parents[3] / "lockfiles" / "debian-bookworm-python.lock.json"
FAST = NetworkLimits(connect_s=2, read_s=2, attempts=1, total_s=10)

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


def test_debs_are_fetched_several_at_once_and_returned_in_lock_order(
    mirrors: Callable[[], Mirror], tmp_path: Path
) -> None:
    mirror = mirrors()
    mirror.delay = 0.2
    packages = []
    for number in range(6):
        content = CONTENT + bytes([number])
        package = dataclasses.replace(
            _package(content),
            name=f"libexample{number}",
            filename=f"pool/main/e/example/libexample{number}_1.2-3+deb12u1_amd64.deb",
        )
        mirror.put(package.filename, content)
        packages.append(package)
    paths = fetch_debs(packages, {"debian": (mirror.url,)}, tmp_path, REFRESH)
    assert [path.name for path in paths] == [
        package.filename.rsplit("/", 1)[1] for package in packages
    ]
    assert mirror.most_at_once > 1, "the .debs were fetched one after the other"


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


def test_a_deb_is_served_if_any_mirror_serves_its_pinned_size(
    mirrors: Callable[[], Mirror],
) -> None:
    empty, serving = mirrors(), mirrors()
    _serve(serving)
    assert check_deb(_package(), [empty.url, serving.url], FAST) is None
    # Asked with HEAD: nothing downloaded.
    assert empty.heads == serving.heads == [f"/{_package().filename}"]
    assert not empty.requests and not serving.requests


def test_a_deb_no_mirror_serves_is_gone_other_size_or_unreachable(
    mirrors: Callable[[], Mirror],
) -> None:
    first, second = mirrors(), mirrors()
    package = _package()
    gone = check_deb(package, [first.url, second.url], FAST)
    assert gone is not None and gone.status == GONE
    assert gone.item == "libexample1=1.2-3+deb12u1 (amd64)"
    assert gone.detail == "; ".join(
        f"{mirror.url}/{package.filename}: HTTP 404 File not found" for mirror in (first, second)
    )

    _serve(second, CONTENT + b"more")
    mismatch = check_deb(package, [first.url, second.url], FAST)
    assert mismatch is not None and mismatch.status == MISMATCH
    assert f"the server states {len(CONTENT) + 4} bytes, pinned: {len(CONTENT)}" in mismatch.detail

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        nobody = f"http://127.0.0.1:{probe.getsockname()[1]}"
    # A mirror that did not answer may have it: not gone, but not known to be served either.
    unknown = check_deb(package, [first.url, nobody], FAST)
    assert unknown is not None and unknown.status == UNREACHABLE
    assert f"{nobody}/{package.filename}: cannot connect" in unknown.detail


def test_each_deb_is_checked_once_from_its_archive_mirrors(mirrors: Callable[[], Mirror]) -> None:
    main, security = mirrors(), mirrors()
    _serve(security)
    package = _package(suite="bookworm-security")
    # A lock for amd64 and arm64 lists an `all` package under both.
    checked, findings = check_debs(
        [package, package], {"debian": (main.url,), "debian-security": (security.url,)}, FAST
    )
    assert (checked, findings) == (1, [])
    assert security.heads == [f"/{package.filename}"] and not main.heads
    with pytest.raises(FetchError, match="no mirror of the `debian-security` archive"):
        check_debs([package], {"debian": (main.url,)}, FAST)


def test_deb_debian_org_serves_a_pin_of_the_example_lock_and_not_a_made_up_version() -> None:
    lock = Lock.loads(EXAMPLE_LOCK.read_bytes(), str(EXAMPLE_LOCK))
    # A package of the release itself: point releases and security updates replace the others.
    pinned = next(package for package in lock.packages["amd64"] if package.suite == "bookworm")
    mirror = DEFAULT_MIRRORS["debian"]
    served = check_deb(pinned, mirror)
    if served is not None and served.status == UNREACHABLE:
        missing_component("deb.debian.org", f"network access to it ({served.detail})")
    assert served is None

    made_up = dataclasses.replace(
        pinned,
        version="99:0-0",
        filename=pinned.filename.replace(pinned.basename, f"{pinned.name}_0-0_all.deb"),
    )
    gone = check_deb(made_up, mirror)
    assert gone is not None and gone.status == GONE
    assert gone.detail == f"{mirror[0]}/{made_up.filename}: HTTP 404 Not Found"
