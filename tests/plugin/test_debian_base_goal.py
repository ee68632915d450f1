"""`debian_base` end to end through Pants: lock a fresh closure from the live Debian mirror,
package it in two repos that differ in path, umask, TZ and locale (the second with the local
process cache off, so every step really runs again) → the same bytes; then run it read-only as
the nonroot user under dockerd. Needs the network to deb.debian.org, gpgv and dockerd. (A
missing or stale lock is refused before any fetch: that is
`plugins/ai_agent/util_rules/base_image_test.py`'s.)"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from testkit.pants_output import succeeded
from testkit.pants_repo import ScratchRepo

pytestmark = pytest.mark.integration

BUILD = 'debian_base(name="py")\n'
LOCK = "lockfiles/debian-py.lock.json"
ARCHIVE = "dist/base/py.tar"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_locked_base_packages_identically_in_two_repos_and_runs(
    tmp_path: Path, docker_client: object
) -> None:
    first = ScratchRepo.create(tmp_path / "first")
    first.write({"base/BUILD": BUILD})
    succeeded(first.run("generate-lockfiles", "--resolve=py"))
    lock = json.loads((first.root / LOCK).read_text())
    assert lock["request"]["packages"][0] == "ca-certificates"
    names = {package["name"] for package in lock["packages"]["amd64"]}
    assert {"python3.11-minimal", "libc6", "ca-certificates"} <= names
    succeeded(first.run("package", "base:py"))

    second = ScratchRepo.create(tmp_path / "elsewhere" / "deeper" / "second")
    second.write({"base/BUILD": BUILD})
    shutil.copy(first.root / LOCK, second.root / LOCK)
    succeeded(
        second.run(
            "--no-local-cache",
            "package",
            "base:py",
            extra_env={"TZ": "Pacific/Kiritimati", "LANG": "tr_TR.UTF-8"},
            umask=0o077,
        )
    )
    assert _sha256(first.root / ARCHIVE) == _sha256(second.root / ARCHIVE)
    metadata = json.loads((first.root / f"{ARCHIVE}.json").read_text())

    with open(first.root / ARCHIVE, "rb") as archive:
        docker_client.images.load(archive)  # type: ignore[attr-defined]
    try:
        output = docker_client.containers.run(  # type: ignore[attr-defined]
            "py:latest",
            ["python3", "-c", "import ssl, sqlite3, zlib, ctypes, json, zoneinfo; print('ok')"],
            read_only=True,
            user="65532",
            remove=True,
        )
        assert output == b"ok\n"
        loaded = docker_client.images.get("py:latest")  # type: ignore[attr-defined]
        assert loaded.id == metadata["docker"]["imageID"]
    finally:
        docker_client.images.remove("py:latest", force=True)  # type: ignore[attr-defined]
