"""Base images: what every agent image is stacked on.

A `debian_base` is built from the .deb files its lock pins: lock generation hooks into
`./pants generate-lockfiles` (it reads the live, signed Debian indexes, so it is never cached),
while building reads only the lock, through two cacheable processes — fetching the pinned .debs
by sha256, and unpacking them into one deterministic layer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Iterable, Tuple

from pants.core.goals.generate_lockfiles import (
    GenerateLockfile,
    GenerateLockfileResult,
    KnownUserResolveNames,
    KnownUserResolveNamesRequest,
    RequestedUserResolveNames,
    UserGenerateLockfiles,
    WrappedGenerateLockfile,
)
from pants.core.goals.package import (
    BuiltPackage,
    BuiltPackageArtifact,
    OutputPathField,
    PackageFieldSet,
)
from pants.engine.addresses import Address
from pants.engine.fs import Digest, DigestContents, MergeDigests, PathGlobs, Snapshot
from pants.engine.process import ProcessCacheScope
from pants.engine.rules import Get, collect_rules, rule
from pants.engine.target import AllTargets, Target, WrappedTarget, WrappedTargetRequest
from pants.engine.unions import UnionRule
from pants.util.docutil import bin_name
from pants.util.logging import LogLevel

from ai_agent.builder import BuildStep, BuildStepOutput, ImageBuilder
from ai_agent.debian.lock import LockRequest
from ai_agent.image import ImageArchive, ImageArchiveRequest
from ai_agent.oci.types import canonical_json
from ai_agent.subsystem import AiAgentSubsystem
from ai_agent.target_types import (
    DebianArchitecturesField,
    DebianBaseTarget,
    DebianExcludesField,
    DebianLockfileField,
    DebianPackagesField,
    DebianSuiteField,
    DebianVariantField,
)

# What Debian's own images set; the rest of the config belongs to the image built on top.
_DEBIAN_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
}
_PLATFORM_OF_ARCHITECTURE = {"amd64": "linux/amd64", "arm64": "linux/arm64/v8"}


class DebianLockProblem(Exception):
    """A debian_base's lock is missing or was made for other settings."""


@dataclass(frozen=True)
class BaseImageRequest:
    address: Address
    architecture: str


@dataclass(frozen=True)
class BaseImage:
    """What an image is stacked on, whichever kind of base target made it: layers (each a
    `descriptor.json` beside its blob, all in `digest`), the config it sets, its platform and
    the packages inside (`name=version`, for the SBOM)."""

    address: Address
    platform: str
    digest: Digest
    layer_descriptors: Tuple[str, ...]
    config_json: str
    packages: Tuple[str, ...]


def _refresh_command(resolve_name: str) -> str:
    return f"{bin_name()} generate-lockfiles --resolve={resolve_name}"


def _lock_request(target: Target) -> LockRequest:
    return LockRequest(
        suite=target[DebianSuiteField].value or DebianSuiteField.default,
        architectures=tuple(target[DebianArchitecturesField].value or ()),
        packages=tuple(target[DebianPackagesField].value or ()),
        excludes=tuple(target[DebianExcludesField].value or ()),
        variant=target[DebianVariantField].value or DebianVariantField.default,
    )


def _mirror_args(subsystem: AiAgentSubsystem) -> Tuple[str, ...]:
    return tuple(arg for mirror in subsystem.debian_mirrors for arg in ("--mirror", mirror))


# Lock generation ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class GenerateDebianLockfile(GenerateLockfile):
    request_json: str


class KnownDebianBaseResolveNamesRequest(KnownUserResolveNamesRequest):
    pass


class RequestedDebianBaseResolveNames(RequestedUserResolveNames):
    pass


def _debian_bases(all_targets: Iterable[Target]) -> Tuple[Target, ...]:
    return tuple(t for t in all_targets if isinstance(t, DebianBaseTarget))


@rule
def wrap_debian_lockfile_request(request: GenerateDebianLockfile) -> WrappedGenerateLockfile:
    return WrappedGenerateLockfile(request)


@rule
def known_debian_base_resolves(
    _: KnownDebianBaseResolveNamesRequest, all_targets: AllTargets
) -> KnownUserResolveNames:
    return KnownUserResolveNames(
        names=tuple(t.address.target_name for t in _debian_bases(all_targets)),
        option_name="the names of `debian_base` targets",
        requested_resolve_names_cls=RequestedDebianBaseResolveNames,
    )


@rule
def debian_base_lockfile_requests(
    requested: RequestedDebianBaseResolveNames, all_targets: AllTargets
) -> UserGenerateLockfiles:
    by_name = {t.address.target_name: t for t in _debian_bases(all_targets)}
    return UserGenerateLockfiles(
        GenerateDebianLockfile(
            resolve_name=name,
            lockfile_dest=by_name[name][DebianLockfileField].value_or_default(),
            diff=False,
            request_json=canonical_json(_lock_request(by_name[name]).to_json()).decode(),
        )
        for name in requested
    )


@rule(desc="Generating a Debian package lock", level=LogLevel.DEBUG)
async def generate_debian_lockfile(
    request: GenerateDebianLockfile, builder: ImageBuilder, subsystem: AiAgentSubsystem
) -> GenerateLockfileResult:
    lock_request = json.loads(request.request_json)
    argv = ["lock", "--suite", lock_request["suite"], "--variant", lock_request["variant"]]
    argv += [arg for arch in lock_request["architectures"] for arg in ("--arch", arch)]
    argv += [arg for package in lock_request["packages"] for arg in ("--package", package)]
    argv += [arg for package in lock_request["excludes"] for arg in ("--exclude", package)]
    process = builder.process(
        "debian",
        [*argv, *_mirror_args(subsystem), "--output", request.lockfile_dest],
        description=f"Locking Debian packages for `{request.resolve_name}`",
        output_files=(request.lockfile_dest,),
        # gpgv checks the indexes' signatures; it is found on the PATH.
        env={"PATH": "/usr/bin:/bin"},
        level=LogLevel.INFO,
        # A lock must reflect the archive as it is now, never a cached earlier answer.
        cache_scope=ProcessCacheScope.PER_SESSION,
    )
    output = await Get(BuildStepOutput, BuildStep(process, owner=request.resolve_name))
    return GenerateLockfileResult(output.digest, request.resolve_name, request.lockfile_dest)


# Building -----------------------------------------------------------------------------------------


@rule(desc="Building a Debian base", level=LogLevel.DEBUG)
async def build_debian_base(
    request: BaseImageRequest, builder: ImageBuilder, subsystem: AiAgentSubsystem
) -> BaseImage:
    wrapped = await Get(
        WrappedTarget,
        WrappedTargetRequest(request.address, description_of_origin="an image's `base` field"),
    )
    target = wrapped.target
    owner = str(target.address)
    resolve_name = target.address.target_name
    lock_path = target[DebianLockfileField].value_or_default()
    lock_snapshot = await Get(Snapshot, PathGlobs([lock_path]))
    if not lock_snapshot.files:
        raise DebianLockProblem(
            f"{owner}: its lock `{lock_path}` does not exist (field `lockfile`). Create it with"
            f" `{_refresh_command(resolve_name)}`."
        )
    lock_contents = await Get(DigestContents, Digest, lock_snapshot.digest)
    lock = json.loads(lock_contents[0].content)
    if lock.get("request") != _lock_request(target).to_json():
        raise DebianLockProblem(
            f"{owner}: `{lock_path}` was made for other settings than the target's (suite,"
            f" architectures, packages, excludes, variant). Refresh it with"
            f" `{_refresh_command(resolve_name)}`."
        )
    if request.architecture not in lock["request"]["architectures"]:
        raise DebianLockProblem(
            f"{owner}: no `{request.architecture}` in field `architectures`"
            f" {lock['request']['architectures']}; add it and run"
            f" `{_refresh_command(resolve_name)}`."
        )

    debs = await Get(
        BuildStepOutput,
        BuildStep(
            builder.process(
                "debian",
                ["fetch", "--lock", lock_path, "--arch", request.architecture]
                + ["--output-dir", "debs", *_mirror_args(subsystem)]
                + ["--refresh-command", _refresh_command(resolve_name)],
                description=f"Fetching the Debian packages of {owner} ({request.architecture})",
                input_digest=lock_snapshot.digest,
                output_directories=("debs",),
                level=LogLevel.INFO,
            ),
            owner=owner,
        ),
    )
    layer_dir = f"base/{target.address.path_safe_spec}/{request.architecture}"
    layer_inputs = await Get(Digest, MergeDigests([lock_snapshot.digest, debs.digest]))
    layer = await Get(
        BuildStepOutput,
        BuildStep(
            builder.process(
                "debian",
                ["layer", "--lock", lock_path, "--arch", request.architecture, "--debs", "debs"]
                + ["--output-dir", layer_dir]
                + ["--source-date-epoch", str(subsystem.source_date_epoch)],
                description=f"Writing the Debian base layer of {owner} ({request.architecture})",
                input_digest=layer_inputs,
                output_directories=(layer_dir,),
                level=LogLevel.INFO,
            ),
            owner=owner,
        ),
    )
    return BaseImage(
        address=target.address,
        platform=_PLATFORM_OF_ARCHITECTURE[request.architecture],
        digest=layer.digest,
        layer_descriptors=(f"{layer_dir}/descriptor.json",),
        config_json=canonical_json({"Env": _DEBIAN_ENV}).decode(),
        packages=tuple(
            f"{package['name']}={package['version']}"
            for package in lock["packages"][request.architecture]
        ),
    )


# Packaging a base on its own ----------------------------------------------------------------------


@dataclass(frozen=True)
class DebianBasePackageFieldSet(PackageFieldSet):
    required_fields = (DebianLockfileField,)

    lockfile: DebianLockfileField
    architectures: DebianArchitecturesField
    output_path: OutputPathField


@rule(desc="Packaging a Debian base image", level=LogLevel.DEBUG)
async def package_debian_base(field_set: DebianBasePackageFieldSet) -> BuiltPackage:
    architecture = (field_set.architectures.value or DebianArchitecturesField.default)[0]
    base = await Get(BaseImage, BaseImageRequest(field_set.address, architecture))
    output_path = field_set.output_path.value_or_default(file_ending="tar")
    archive = await Get(
        ImageArchive,
        ImageArchiveRequest.create(
            owner=str(field_set.address),
            tag=f"{field_set.address.target_name}:latest",
            platform=base.platform,
            inputs=base.digest,
            layer_descriptors=base.layer_descriptors,
            config=json.loads(base.config_json),
            output_path=output_path,
        ),
    )
    return BuiltPackage(
        archive.digest,
        (
            BuiltPackageArtifact(
                archive.archive_path,
                extra_log_lines=(f"    manifest {archive.manifest_digest}",),
            ),
            BuiltPackageArtifact(archive.metadata_path),
        ),
    )


def rules():
    return [
        *collect_rules(),
        UnionRule(GenerateLockfile, GenerateDebianLockfile),
        UnionRule(KnownUserResolveNamesRequest, KnownDebianBaseResolveNamesRequest),
        UnionRule(RequestedUserResolveNames, RequestedDebianBaseResolveNames),
        UnionRule(PackageFieldSet, DebianBasePackageFieldSet),
    ]
