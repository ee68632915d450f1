"""Unpacking .debs into layer entries. The .debs are real ones, built with `dpkg-deb`; the dpkg
database written is read back with the real `dpkg-query`."""

from __future__ import annotations

import hashlib
import io
import logging
import subprocess
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import pytest

from testkit.components import missing_component, require_binary

from ..oci.layer import Entry, write_layer
from .conftest import DebSpec, build_deb
from .lock import IndexSnapshot, Lock, LockedPackage, LockRequest
from .rootfs import (
    BytecodeUnavailable,
    RootfsError,
    build_rootfs,
    build_rootfs_with_packages,
    ca_bundle,
)

LIBRARY = DebSpec(
    control={
        "Package": "libfake1",
        "Version": "1.0-1",
        "Architecture": "amd64",
        "Multi-Arch": "same",
        "Depends": "libc6 (>= 2.34)",
        "Priority": "optional",
        "Section": "libs",
    },
    files={
        "lib/x86_64-linux-gnu/libfake.so.1.0": b"\x7fELF not really",
        "bin/fake-tool": b"#!/bin/sh\necho fake\n",
        "etc/fake.conf": b"setting = 1\n",
        "usr/share/doc/libfake1/copyright": b"public domain\n",
    },
    modes={"bin/fake-tool": 0o4755, "etc/fake-private": 0o700},
    symlinks={
        "lib/x86_64-linux-gnu/libfake.so.1": "libfake.so.1.0",
        "lib64/ld-fake.so.2": "/lib/x86_64-linux-gnu/libfake.so.1.0",
    },
    hard_links={"usr/bin/fake-alias": "bin/fake-tool"},
    directories=["etc/fake-private"],
    conffiles=["/etc/fake.conf"],
)
DATA = DebSpec(
    control={"Package": "fake-data", "Version": "2:3~rc1", "Architecture": "all"},
    files={
        "usr/share/ca-certificates/mozilla/B_Root.crt": b"-----B-----",
        "usr/share/ca-certificates/mozilla/A_Root.crt": b"-----A-----\n",
        "usr/share/zoneinfo/Etc/UTC": b"TZif2 utc",
        "usr/bin/python3.9": b"old interpreter",
        "usr/bin/python3.11": b"new interpreter",
    },
)


def _locked(deb: Path, spec: DebSpec) -> LockedPackage:
    data = deb.read_bytes()
    return LockedPackage(
        name=spec.control["Package"],
        version=spec.control["Version"],
        architecture=spec.control["Architecture"],
        suite="bookworm",
        filename=f"pool/main/f/fake/{deb.name}",
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )


def _lock_and_debs(tmp_path: Path, specs: Sequence[DebSpec]) -> Tuple[Lock, Dict[str, Path]]:
    debs = {spec.control["Package"]: build_deb(spec, tmp_path) for spec in specs}
    packages = tuple(
        sorted(
            (_locked(debs[spec.control["Package"]], spec) for spec in specs),
            key=lambda package: package.name,
        )
    )
    lock = Lock(
        LockRequest("bookworm", ("amd64",), tuple(debs)),
        (IndexSnapshot("bookworm", "Sat, 11 Jul 2026 10:16:37 UTC", "12.15", {}),),
        {"amd64": packages},
    )
    return lock, debs


def _build(
    tmp_path: Path, specs: Sequence[DebSpec], bytecode: str = "no", scratch_name: str = "scratch"
) -> List[Entry]:
    debs = {spec.control["Package"]: build_deb(spec, tmp_path) for spec in specs}
    packages = tuple(
        sorted(
            (_locked(debs[spec.control["Package"]], spec) for spec in specs),
            key=lambda package: package.name,
        )
    )
    lock = Lock(
        LockRequest("bookworm", ("amd64",), tuple(debs)),
        (IndexSnapshot("bookworm", "Sat, 11 Jul 2026 10:16:37 UTC", "12.15", {}),),
        {"amd64": packages},
    )
    return build_rootfs(lock, "amd64", debs, tmp_path / scratch_name, bytecode)


def _by_path(entries: List[Entry]) -> Dict[str, Entry]:
    return {entry.path: entry for entry in entries}


def _read(entry: Entry) -> bytes:
    if entry.data is not None:
        return entry.data
    assert entry.source is not None
    return Path(entry.source).read_bytes()


def test_usr_merge_folds_top_level_directories(tmp_path: Path) -> None:
    entries = _by_path(_build(tmp_path, [LIBRARY, DATA]))
    unfolded = [
        p for p in entries if "/" in p and p.split("/")[0] in ("bin", "lib", "lib64", "sbin")
    ]
    assert not unfolded
    assert _read(entries["usr/lib/x86_64-linux-gnu/libfake.so.1.0"]) == b"\x7fELF not really"
    assert entries["usr/bin/fake-tool"].kind == "file"
    links = {p: e.target for p, e in entries.items() if e.kind == "symlink" and "/" not in p}
    assert links == {"bin": "usr/bin", "lib": "usr/lib", "lib64": "usr/lib64", "sbin": "usr/sbin"}
    assert entries["usr/sbin"].kind == "directory"
    # Link targets stay as the package ships them; the runtime resolves them in the image.
    assert entries["usr/lib64/ld-fake.so.2"].target == "/lib/x86_64-linux-gnu/libfake.so.1.0"
    assert entries["usr/lib/x86_64-linux-gnu/libfake.so.1"].target == "libfake.so.1.0"
    # A hard link becomes a second copy of the same file.
    assert _read(entries["usr/bin/fake-alias"]) == _read(entries["usr/bin/fake-tool"])


def test_lib64_is_linked_only_when_used(tmp_path: Path) -> None:
    entries = _by_path(_build(tmp_path, [DATA]))
    assert "lib64" not in entries and entries["lib"].target == "usr/lib"


def test_users_groups_and_modes(tmp_path: Path) -> None:
    entries = _by_path(_build(tmp_path, [LIBRARY, DATA]))
    assert _read(entries["etc/passwd"]).decode() == (
        "root:x:0:0:root:/root:/sbin/nologin\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"
        "nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
    )
    assert _read(entries["etc/group"]).decode() == (
        "root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n"
    )
    assert (entries["tmp"].kind, entries["tmp"].mode) == ("directory", 0o1777)
    assert entries["root"].mode == 0o700
    home = entries["home/nonroot"]
    assert (home.mode, home.uid, home.gid) == (0o700, 65532, 65532)
    assert entries["etc/fake-private"].mode == 0o700
    assert entries["usr/bin/fake-tool"].mode == 0o755, "setuid is dropped"
    assert entries["etc/fake.conf"].mode == 0o644
    assert b"hosts:          files dns" in _read(entries["etc/nsswitch.conf"])


def test_what_maintainer_scripts_would_write(tmp_path: Path) -> None:
    entries = _by_path(_build(tmp_path, [LIBRARY, DATA]))
    assert entries["etc/localtime"].target == "/usr/share/zoneinfo/Etc/UTC"
    assert entries["usr/bin/python3"].target == "python3.11", "3.11 is newer than 3.9"
    assert _read(entries["etc/ssl/certs/ca-certificates.crt"]) == b"-----A-----\n-----B-----\n"
    assert entries["etc/os-release"].target == "../usr/lib/os-release"
    os_release = _read(entries["usr/lib/os-release"]).decode()
    assert 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"' in os_release
    assert 'VERSION_ID="12"' in os_release and "VERSION_CODENAME=bookworm" in os_release
    assert "etc/ld.so.cache" not in entries, "only with libc-bin's ldconfig"


def test_ca_bundle_matches_update_ca_certificates_on_this_host() -> None:
    """The host's bundle, written by update-ca-certificates from Debian's default selection,
    begins with exactly what ca_bundle builds from the same certificates (local ones follow)."""
    shared = Path("/usr/share/ca-certificates")
    bundle = Path("/etc/ssl/certs/ca-certificates.crt")
    config = Path("/etc/ca-certificates.conf")
    if not (shared.is_dir() and bundle.is_file() and config.is_file()):
        missing_component(
            "Debian's certificates on this host", "the Debian package `ca-certificates`"
        )
    if any(line.startswith("!") for line in config.read_text().splitlines()):
        pytest.skip("this host deselected some certificates in /etc/ca-certificates.conf")
    certificates = [
        (str(path.relative_to(shared)), path.read_bytes()) for path in shared.rglob("*.crt")
    ]
    ours = ca_bundle(certificates)
    assert len(certificates) > 100
    assert bundle.read_bytes().startswith(ours)


def test_dpkg_database_reads_back_with_dpkg_query(tmp_path: Path) -> None:
    dpkg_query = require_binary("dpkg-query", "dpkg")
    entries = _build(tmp_path, [LIBRARY, DATA])
    write_layer(entries, tmp_path / "layer.tar")
    root = tmp_path / "extracted"
    root.mkdir()
    subprocess.run(["tar", "-xf", str(tmp_path / "layer.tar"), "-C", str(root)], check=True)
    admin = str(root / "var/lib/dpkg")

    def query(*args: str) -> str:
        return subprocess.run(
            [dpkg_query, f"--admindir={admin}", *args], check=True, capture_output=True, text=True
        ).stdout

    assert query("-W", "-f", "${binary:Package} ${Version} ${Architecture} ${Status}\n") == (
        "fake-data 2:3~rc1 all install ok installed\n"
        "libfake1:amd64 1.0-1 amd64 install ok installed\n"
    )
    files = query("-L", "libfake1").split("\n")
    assert "/lib/x86_64-linux-gnu/libfake.so.1.0" in files, "dpkg lists paths as shipped"
    conffile_md5 = hashlib.md5(b"setting = 1\n").hexdigest()
    assert query("-W", "-f", "${Conffiles}", "libfake1").strip() == f"/etc/fake.conf {conffile_md5}"
    info = root / "var/lib/dpkg/info"
    assert (info / "format").read_text() == "1\n"
    assert sorted(path.name for path in info.iterdir()) == [
        "fake-data.list",
        "fake-data.md5sums",
        "format",
        "libfake1:amd64.conffiles",
        "libfake1:amd64.list",
        "libfake1:amd64.md5sums",
    ]
    status = (root / "var/lib/dpkg/status").read_text()
    assert status.startswith("Package: fake-data\nStatus: install ok installed\n")


def test_two_packages_shipping_one_path_are_refused(tmp_path: Path) -> None:
    clash = DebSpec(
        control={"Package": "clash", "Version": "1", "Architecture": "amd64"},
        files={"usr/bin/fake-tool": b"other"},
    )
    with pytest.raises(RootfsError, match="/usr/bin/fake-tool is shipped by both"):
        _build(tmp_path, [LIBRARY, clash])


def test_a_deb_that_is_not_the_locked_one_is_refused(tmp_path: Path) -> None:
    deb = build_deb(DATA, tmp_path)
    locked = LockedPackage("fake-data", "2:3~rc2", "all", "bookworm", "pool/x.deb", 1, "0" * 64)
    lock = Lock(
        LockRequest("bookworm", ("amd64",), ("fake-data",)),
        (IndexSnapshot("bookworm", "date", "12", {}),),
        {"amd64": (locked,)},
    )
    with pytest.raises(RootfsError, match="holds fake-data 2:3~rc1 .* pins fake-data 2:3~rc2"):
        build_rootfs(lock, "amd64", {"fake-data": deb}, tmp_path / "scratch", "no")


def test_entries_do_not_depend_on_the_scratch_path(tmp_path: Path) -> None:
    digests = set()
    for name in ("one", "two/deeper"):
        layer = io.BytesIO()
        result = write_layer(_build(tmp_path / name, [LIBRARY, DATA], scratch_name=name), layer)
        digests.add(result.diff_id)
    assert len(digests) == 1


def test_bytecode_needs_a_host_of_the_target_architecture(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr("platform.machine", lambda: "riscv64")
    with pytest.raises(BytecodeUnavailable, match=r"cannot run amd64 binaries"):
        _build(tmp_path / "strict", [DATA], bytecode="yes")
    with caplog.at_level(logging.WARNING):
        entries = _build(tmp_path / "lenient", [DATA], bytecode="auto")
    assert "not compiling Python bytecode" in caplog.text
    assert not [entry for entry in entries if entry.path.endswith(".pyc")]


DEP5 = (
    b"Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n"
    b"Files: *\nCopyright: someone\nLicense: GPL-2+\n text\n"
)
DOCUMENTED = DebSpec(
    control={
        "Package": "libdoc1",
        "Version": "1.2-3+b1",
        "Architecture": "amd64",
        "Source": "doc (1.2-3)",
        "Maintainer": "Someone <someone@example.org>",
        "Homepage": "https://example.org/doc",
    },
    files={"usr/share/doc/libdoc1/copyright": DEP5},
)
# Its doc directory is a link into libdoc1's, as Debian does for packages of one source.
LINKED = DebSpec(
    control={"Package": "libdoc-extra", "Version": "1.2-3", "Architecture": "all"},
    files={"usr/share/libdoc-extra/data": b"x"},
    symlinks={"usr/share/doc/libdoc-extra": "libdoc1"},
)


def test_what_the_sbom_says_of_each_package(tmp_path: Path) -> None:
    lock, debs = _lock_and_debs(tmp_path, [DOCUMENTED, LINKED, LIBRARY])
    _, packages = build_rootfs_with_packages(lock, "amd64", debs, tmp_path / "scratch", "no")
    by_name = {package["name"]: package for package in packages}
    assert [package["name"] for package in packages] == ["libdoc-extra", "libdoc1", "libfake1"]
    documented = by_name["libdoc1"]
    assert documented["source"] == "doc"
    assert documented["sourceVersion"] == "1.2-3"
    assert documented["maintainer"] == "Someone <someone@example.org>"
    assert documented["homepage"] == "https://example.org/doc"
    assert documented["copyright"] == "/usr/share/doc/libdoc1/copyright"
    assert documented["licenses"] == ["GPL-2+"]
    assert documented["sha256"] == _locked(debs["libdoc1"], DOCUMENTED).sha256
    assert by_name["libdoc-extra"]["licenses"] == ["GPL-2+"]
    assert by_name["libdoc-extra"]["source"] == "libdoc-extra"
    assert by_name["libdoc-extra"]["sourceVersion"] == "1.2-3"
    # A free-form copyright file states no licence a program can read.
    assert by_name["libfake1"]["copyright"] == "/usr/share/doc/libfake1/copyright"
    assert by_name["libfake1"]["licenses"] == []
