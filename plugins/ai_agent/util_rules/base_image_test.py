"""Base image targets (`debian_base`, `oci_base`) as `BaseImage`s, up to the point where a process
would fetch their packages or blobs: one resolve name per base target, what may be a base, the
platforms a base has, and the lock each one reads (missing, malformed or made for other
settings), each refused naming the target, the field and the refresh command."""

from __future__ import annotations

import hashlib
import json
from typing import Optional, Tuple

import pytest
from pants.engine.addresses import Address
from pants.engine.target import InvalidTargetException
from pants.testutil.rule_runner import RuleRunner

from ai_agent.debian.lock import PYTHON_RUNTIME_PACKAGES, LockRequest
from ai_agent.oci.base import BaseLock, LockedImage, LockedLayer
from ai_agent.oci.types import OCI_CONFIG, OCI_LAYER_TAR_GZIP, OCI_MANIFEST, Descriptor
from ai_agent.testutil import CaseDir, failure
from ai_agent.util_rules.base_image import (
    BaseImageRequest,
    BaseLockProblem,
    BasePlatformProblem,
    BaseTargets,
    DuplicateBaseName,
    NotABaseImage,
)
from ai_agent.util_rules.image import BaseImage


def _base(case: CaseDir, name: str, platform: Optional[str] = None) -> BaseImageRequest:
    return BaseImageRequest(Address(case.path, target_name=name), platform)


def _fails(case: CaseDir, exception_type: type, request: BaseImageRequest, *parts: str) -> str:
    return failure(exception_type, case.rule_runner, BaseImage, [request], *parts)


def _digest(seed: str) -> str:
    return f"sha256:{hashlib.sha256(seed.encode()).hexdigest()}"


def _oci_lock(image: str, platforms: Tuple[str, ...]) -> str:
    """A well-formed lock of `image` for `platforms` (made-up blobs: no process reads them here)."""
    manifest = Descriptor(OCI_MANIFEST, _digest(f"{image} manifest"), 500)
    locked = LockedImage(
        manifest=manifest,
        config=Descriptor(OCI_CONFIG, _digest(f"{image} config"), 300),
        layers=(
            LockedLayer(
                Descriptor(OCI_LAYER_TAR_GZIP, _digest(f"{image} layer"), 1000),
                _digest(f"{image} diff"),
            ),
        ),
    )
    lock = BaseLock(image, manifest, {platform: locked for platform in platforms})
    return json.dumps(lock.to_json(), indent=2) + "\n"


def _debian_lock(request: LockRequest) -> str:
    """A lock whose `request` is `request` (the only part read before fetching packages)."""
    return json.dumps({"lockVersion": 1, "request": request.to_json(), "packages": {}}) + "\n"


def test_base_targets_are_listed_by_name(rule_runner: RuleRunner, case: CaseDir) -> None:
    case.write({"BUILD": 'debian_base(name="deb")\noci_base(name="reg", image="busybox:1")\n'})
    bases = rule_runner.request(BaseTargets, [])
    assert bases.by_name["deb"].address == Address(case.path, target_name="deb")
    assert bases.by_name["reg"].address == Address(case.path, target_name="reg")
    assert bases.by_name["bookworm-python"].address == Address(
        "agents/base", target_name="bookworm-python"
    )


def test_two_base_targets_of_one_name_are_refused(rule_runner: RuleRunner, case: CaseDir) -> None:
    case.write({"BUILD": 'debian_base(name="bookworm-python")\n'})
    expected = (
        f"agents/base:bookworm-python and {case.address('bookworm-python')} are base targets"
        " named `bookworm-python`, which names each one's lock resolve (`generate-lockfiles"
        " --resolve=bookworm-python`) and so would share a lock: give each its own name"
    )
    failure(DuplicateBaseName, rule_runner, BaseTargets, [], expected)
    # Building either of them, or anything on them, asks for the same list.
    _fails(case, DuplicateBaseName, _base(case, "bookworm-python"), expected)


def test_only_base_targets_are_bases(case: CaseDir) -> None:
    case.write(
        {
            "BUILD": 'python_sources(name="src", sources=["app/*.py"])\n'
            'ai_agent(name="agent", entry_point="app", dependencies=[":src"])\n',
            "agent.yaml": "name: agent\n",
            "app/__main__.py": "",
        }
    )
    _fails(
        case,
        NotABaseImage,
        _base(case, "agent"),
        f"{case.address()} is a `ai_agent` target; a base must be a `debian_base` or an"
        " `oci_base` target",
    )


# debian_base --------------------------------------------------------------------------------


def test_a_debian_base_without_its_lock_says_how_to_create_it(case: CaseDir) -> None:
    case.write(
        {"BUILD": 'debian_base(name="py")\ndebian_base(name="own", lockfile="locks/own.json")\n'}
    )
    _fails(
        case,
        BaseLockProblem,
        _base(case, "py"),
        f"{case.address('py')}: its lock `lockfiles/debian-py.lock.json` does not exist (field"
        " `lockfile`). Create it with `",
        " generate-lockfiles --resolve=py`.",
    )
    _fails(
        case,
        BaseLockProblem,
        _base(case, "own"),
        f"{case.address('own')}: its lock `locks/own.json` does not exist (field `lockfile`).",
        "generate-lockfiles --resolve=own`",
    )


@pytest.mark.parametrize(
    "fields",
    [
        'variant="shell"',
        'suite="trixie"',
        'architectures=["amd64", "arm64"]',
        'packages=["python3.11-minimal"]',
        'excludes=["tzdata"]',
    ],
)
def test_a_debian_base_whose_lock_was_made_for_other_settings_says_how_to_refresh(
    case: CaseDir, fields: str
) -> None:
    name = f"stale-{case.name[-12:]}".replace("_", "-")
    case.write({"BUILD": f'debian_base(name="{name}", {fields})\n'})
    case.rule_runner.write_files(
        {f"lockfiles/debian-{name}.lock.json": _debian_lock(_default_debian_request())}
    )
    _fails(
        case,
        BaseLockProblem,
        _base(case, name),
        f"{case.address(name)}: `lockfiles/debian-{name}.lock.json` was made for other settings"
        " than the target's (suite, architectures, packages, excludes, variant). Refresh it with",
        f"generate-lockfiles --resolve={name}`.",
    )


def _default_debian_request() -> LockRequest:
    return LockRequest(
        suite="bookworm",
        architectures=("amd64",),
        packages=PYTHON_RUNTIME_PACKAGES,
        excludes=(),
        variant="minimal",
    )


def test_a_debian_base_has_only_the_platforms_of_its_architectures(case: CaseDir) -> None:
    case.write({"BUILD": 'debian_base(name="amd")\n'})
    case.rule_runner.write_files(
        {"lockfiles/debian-amd.lock.json": _debian_lock(_default_debian_request())}
    )
    _fails(
        case,
        BasePlatformProblem,
        _base(case, "amd", "linux/arm64"),
        f"{case.address('amd')}: no `arm64` in field `architectures` ['amd64']; add it and run",
        "generate-lockfiles --resolve=amd`.",
    )
    _fails(
        case,
        BasePlatformProblem,
        _base(case, "amd", "linux/s390x"),
        f"{case.address('amd')}: a `debian_base` has no linux/s390x image; it builds linux/amd64,"
        " linux/arm64/v8 (field `architectures`)",
    )


def test_debian_architectures_are_checked_when_read(case: CaseDir) -> None:
    case.write({"BUILD": 'debian_base(name="deb", architectures=["i386"])\n'})
    _fails(case, InvalidTargetException, _base(case, "deb"), f"{case.path}/BUILD:1:", "i386")


# oci_base -----------------------------------------------------------------------------------

IMAGE = "registry.example.com/org/python:3.11-slim"


def test_an_oci_base_without_its_lock_says_how_to_create_it(case: CaseDir) -> None:
    case.write({"BUILD": f'oci_base(name="unpinned", image="{IMAGE}")\n'})
    _fails(
        case,
        BaseLockProblem,
        _base(case, "unpinned"),
        f"{case.address('unpinned')}: its lock `lockfiles/oci-unpinned.lock.json` does not exist"
        " (field `lockfile`). Create it with `",
        "generate-lockfiles --resolve=unpinned`.",
    )


@pytest.mark.parametrize(
    "lock, expected",
    [
        ("not json", "lockfiles/oci-bad.lock.json: not a JSON document"),
        ('{"lockVersion": 0}', "lockfiles/oci-bad.lock.json: not a base lock of version 1"),
    ],
    ids=["not_json", "old_version"],
)
def test_a_malformed_oci_lock_says_how_to_regenerate_it(
    case: CaseDir, lock: str, expected: str
) -> None:
    case.write({"BUILD": f'oci_base(name="bad", image="{IMAGE}")\n'})
    case.rule_runner.write_files({"lockfiles/oci-bad.lock.json": lock})
    _fails(
        case,
        BaseLockProblem,
        _base(case, "bad"),
        f"{case.address('bad')}: {expected}",
        "Regenerate it with `",
        "generate-lockfiles --resolve=bad`.",
    )


@pytest.mark.parametrize(
    "fields, locked_image, locked_platforms, asks",
    [
        (
            'platforms=["linux/amd64", "linux/arm64"]',
            IMAGE,
            ("linux/amd64",),
            f"the target asks for {IMAGE} (field `image`) for linux/amd64, linux/arm64 (field"
            " `platforms`)",
        ),
        (
            "",
            "registry.example.com/org/python:3.12-slim",
            ("linux/amd64",),
            f"the target asks for {IMAGE} (field `image`) for linux/amd64 (field `platforms`)",
        ),
    ],
    ids=["platforms", "image"],
)
def test_an_oci_lock_made_for_other_settings_says_how_to_refresh(
    case: CaseDir, fields: str, locked_image: str, locked_platforms: Tuple[str, ...], asks: str
) -> None:
    name = f"stale-{case.name[-8:]}".replace("_", "-")
    case.write({"BUILD": f'oci_base(name="{name}", image="{IMAGE}", {fields})\n'})
    lock_path = f"lockfiles/oci-{name}.lock.json"
    case.rule_runner.write_files({lock_path: _oci_lock(locked_image, locked_platforms)})
    _fails(
        case,
        BaseLockProblem,
        _base(case, name),
        f"{case.address(name)}: `{lock_path}` was made for other settings than the target's: it"
        f" locks {locked_image} for {', '.join(locked_platforms)}, {asks}. Refresh it with `",
        f"generate-lockfiles --resolve={name}`.",
    )


def test_an_oci_base_has_only_the_platforms_it_lists(case: CaseDir) -> None:
    case.write({"BUILD": f'oci_base(name="one", image="{IMAGE}")\n'})
    case.rule_runner.write_files(
        {"lockfiles/oci-one.lock.json": _oci_lock(IMAGE, ("linux/amd64",))}
    )
    _fails(
        case,
        BasePlatformProblem,
        _base(case, "one", "linux/arm64"),
        f"{case.address('one')}: no `linux/arm64` in field `platforms` ['linux/amd64']; add it"
        " and run `",
        "generate-lockfiles --resolve=one`.",
    )


@pytest.mark.parametrize(
    "fields, expected",
    [
        ('image="Not A Reference"', "The `image` field of {address} is not an image reference"),
        (
            'image="busybox", platforms=[]',
            "The `platforms` field of {address} must list at"
            ' least one platform, e.g. ["linux/amd64"].',
        ),
        ('image="busybox", platforms=["linux"]', "The `platforms` field of {address}: "),
    ],
    ids=["image", "no_platforms", "bad_platform"],
)
def test_oci_base_fields_are_checked_when_read(case: CaseDir, fields: str, expected: str) -> None:
    case.write({"BUILD": f'oci_base(name="reg", {fields})\n'})
    _fails(
        case,
        InvalidTargetException,
        _base(case, "reg"),
        f"{case.path}/BUILD:1: " + expected.format(address=case.address("reg")),
    )
