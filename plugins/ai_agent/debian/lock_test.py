"""The lock file: canonical, round-trips exactly, and names the field when it is malformed."""

from __future__ import annotations

import json

import pytest

from .conftest import fixture_indexes
from .lock import Lock, LockError, LockRequest, lock_from_indexes

REQUEST = LockRequest(
    suite="bookworm",
    architectures=("amd64",),
    packages=("python3.11-minimal", "tzdata"),
    excludes=("debconf",),
    variant="minimal",
)


def _lock(request: LockRequest = REQUEST) -> Lock:
    return lock_from_indexes(request, {"amd64": fixture_indexes()})


def test_round_trip_is_exact() -> None:
    text = _lock().dumps()
    assert Lock.loads(text, "lock.json").dumps() == text
    assert Lock.loads(text, "lock.json") == _lock()


def test_same_inputs_give_the_same_bytes_whatever_the_order() -> None:
    shuffled = LockRequest(
        suite="bookworm",
        architectures=("amd64", "amd64"),
        packages=("tzdata", "python3.11-minimal", "tzdata"),
        excludes=("debconf",),
        variant="minimal",
    )
    assert _lock(shuffled).dumps() == _lock().dumps()


def test_format() -> None:
    text = _lock().dumps().decode()
    assert text.endswith("}\n") and not text.endswith("\n\n")
    document = json.loads(text)
    assert text == json.dumps(document, indent=2, sort_keys=True) + "\n"
    assert document["lockVersion"] == 1
    assert document["request"] == {
        "suite": "bookworm",
        "architectures": ["amd64"],
        "packages": ["python3.11-minimal", "tzdata"],
        "excludes": ["debconf"],
        "variant": "minimal",
    }
    assert document["indexes"]["bookworm-security"] == {
        "date": "date of bookworm-security",
        "version": "12",
        "packages": {"amd64": "0" * 64},
    }
    packages = document["packages"]["amd64"]
    assert [p["name"] for p in packages] == sorted(p["name"] for p in packages)
    tzdata = next(p for p in packages if p["name"] == "tzdata")
    assert tzdata["architecture"] == "all" and tzdata["filename"].startswith("pool/main/t/tzdata/")
    assert set(tzdata) == {
        "name",
        "version",
        "architecture",
        "suite",
        "filename",
        "size",
        "sha256",
    }


def test_variant_adds_its_packages() -> None:
    shell = LockRequest("bookworm", ("amd64",), ("tzdata",), variant="shell")
    assert shell.installed_packages == ("coreutils", "dash", "libc-bin", "tzdata")
    with pytest.raises(LockError, match="unknown variant 'busybox'"):
        LockRequest("bookworm", ("amd64",), ("tzdata",), variant="busybox")


def test_malformed_locks_name_the_field() -> None:
    document = json.loads(_lock().dumps())
    document["packages"]["amd64"][0]["size"] = "12"
    with pytest.raises(
        LockError, match=r"lock.json: packages.amd64\[0\].size must be a JSON number"
    ):
        Lock.loads(json.dumps(document).encode(), "lock.json")
    document = json.loads(_lock().dumps())
    del document["request"]["variant"]
    with pytest.raises(LockError, match="request has no `variant`"):
        Lock.loads(json.dumps(document).encode(), "lock.json")
    document = json.loads(_lock().dumps())
    document["packages"]["amd64"][0]["filename"] = "../../etc/passwd"
    with pytest.raises(LockError, match="filename must be a pool path"):
        Lock.loads(json.dumps(document).encode(), "lock.json")
    with pytest.raises(LockError, match="lockVersion 7 is not 1; regenerate"):
        Lock.loads(b'{"lockVersion": 7}', "lock.json")


def test_an_architecture_the_lock_lacks_is_named() -> None:
    with pytest.raises(LockError, match="no packages for arm64; it covers amd64"):
        _lock().packages_for("arm64")
