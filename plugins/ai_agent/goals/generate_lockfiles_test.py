"""`generate-lockfiles` knows every base target's name as a resolve, and asks for each requested
one the lock its target's fields describe, written where its `lockfile` field says."""

from __future__ import annotations

from pants.core.goals.generate_lockfiles import KnownUserResolveNames, UserGenerateLockfiles
from pants.testutil.rule_runner import RuleRunner

from ai_agent.debian.lock import LockRequest
from ai_agent.goals.generate_lockfiles import (
    GenerateDebianLockfile,
    GenerateRegistryBaseLockfile,
    KnownBaseImageResolveNamesRequest,
    RequestedBaseImageResolveNames,
)
from ai_agent.testutil import CaseDir, failure
from ai_agent.util_rules.base_image import DuplicateBaseName


def test_base_targets_are_the_known_resolves(rule_runner: RuleRunner, case: CaseDir) -> None:
    case.write({"BUILD": 'debian_base(name="deb")\noci_base(name="reg", image="busybox:1")\n'})
    known = rule_runner.request(KnownUserResolveNames, [KnownBaseImageResolveNamesRequest()])
    assert {"bookworm-python", "deb", "reg"} == set(known.names)
    assert known.requested_resolve_names_cls is RequestedBaseImageResolveNames


def test_each_requested_base_gets_the_lock_its_fields_describe(
    rule_runner: RuleRunner, case: CaseDir
) -> None:
    case.write(
        {
            "BUILD": 'debian_base(name="deb", variant="shell", packages=["python3.11-minimal"],'
            ' excludes=["tzdata"], architectures=["amd64", "arm64"])\n'
            'oci_base(name="reg", image="registry.example.com/org/python:3.11-slim",'
            ' platforms=["linux/arm64", "linux/amd64"], lockfile="locks/reg.json")\n'
        }
    )
    requests = rule_runner.request(
        UserGenerateLockfiles, [RequestedBaseImageResolveNames(["deb", "reg"])]
    )
    debian, registry = requests
    assert isinstance(debian, GenerateDebianLockfile)
    assert (debian.resolve_name, debian.lockfile_dest) == ("deb", "lockfiles/debian-deb.lock.json")
    assert debian.request == LockRequest(
        suite="bookworm",
        architectures=("amd64", "arm64"),
        packages=("python3.11-minimal",),
        excludes=("tzdata",),
        variant="shell",
    )
    assert isinstance(registry, GenerateRegistryBaseLockfile)
    assert (registry.resolve_name, registry.lockfile_dest) == ("reg", "locks/reg.json")
    assert registry.image == "registry.example.com/org/python:3.11-slim"
    assert registry.platforms == ("linux/arm64", "linux/amd64")


def test_two_bases_of_one_name_cannot_be_locked(rule_runner: RuleRunner, case: CaseDir) -> None:
    case.write({"BUILD": 'oci_base(name="bookworm-python", image="busybox:1")\n'})
    failure(
        DuplicateBaseName,
        rule_runner,
        KnownUserResolveNames,
        [KnownBaseImageResolveNamesRequest()],
        f"agents/base:bookworm-python and {case.address('bookworm-python')} are base targets"
        " named `bookworm-python`",
    )
