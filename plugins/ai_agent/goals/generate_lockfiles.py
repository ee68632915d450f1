"""`./pants generate-lockfiles` for base images: each `debian_base` and `oci_base` target is a
resolve named after it, locked by a process that asks the live Debian archive or registry (never
cached: a lock must say what is served now).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

from pants.core.goals.generate_lockfiles import (
    GenerateLockfile,
    GenerateLockfileResult,
    KnownUserResolveNames,
    KnownUserResolveNamesRequest,
    RequestedUserResolveNames,
    UserGenerateLockfiles,
    WrappedGenerateLockfile,
)
from pants.engine.rules import Get, collect_rules, rule
from pants.engine.target import (
    Target,
)
from pants.engine.unions import UnionRule
from pants.util.logging import LogLevel

from ai_agent.debian.lock import LockRequest
from ai_agent.target_types import (
    BaseImageLockfileField,
    OciBaseImageField,
    OciBasePlatformsField,
    OciBaseTarget,
)
from ai_agent.util_rules.base_image import BaseTargets
from ai_agent.util_rules.builder import BuildStep, BuildStepOutput, ImageBuilder
from ai_agent.util_rules.debian_base import lock_request
from ai_agent.util_rules.network import DownloadAccess, RegistryAccess


@dataclass(frozen=True)
class GenerateDebianLockfile(GenerateLockfile):
    request: LockRequest


@dataclass(frozen=True)
class GenerateRegistryBaseLockfile(GenerateLockfile):
    image: str
    platforms: Tuple[str, ...]


class KnownBaseImageResolveNamesRequest(KnownUserResolveNamesRequest):
    pass


class RequestedBaseImageResolveNames(RequestedUserResolveNames):
    pass


def _lockfile_request(target: Target) -> GenerateLockfile:
    name = target.address.target_name
    lockfile_dest = target[BaseImageLockfileField].value_or_default()
    if isinstance(target, OciBaseTarget):
        return GenerateRegistryBaseLockfile(
            resolve_name=name,
            lockfile_dest=lockfile_dest,
            diff=False,
            image=target[OciBaseImageField].value,
            platforms=target[OciBasePlatformsField].value,
        )
    return GenerateDebianLockfile(
        resolve_name=name,
        lockfile_dest=lockfile_dest,
        diff=False,
        request=lock_request(target),
    )


@rule
def wrap_debian_lockfile_request(request: GenerateDebianLockfile) -> WrappedGenerateLockfile:
    return WrappedGenerateLockfile(request)


@rule
def wrap_registry_base_lockfile_request(
    request: GenerateRegistryBaseLockfile,
) -> WrappedGenerateLockfile:
    return WrappedGenerateLockfile(request)


@rule
def known_base_image_resolves(
    _: KnownBaseImageResolveNamesRequest, bases: BaseTargets
) -> KnownUserResolveNames:
    return KnownUserResolveNames(
        names=tuple(bases.by_name),
        option_name="the names of `debian_base` and `oci_base` targets",
        requested_resolve_names_cls=RequestedBaseImageResolveNames,
    )


@rule
def base_image_lockfile_requests(
    requested: RequestedBaseImageResolveNames, bases: BaseTargets
) -> UserGenerateLockfiles:
    return UserGenerateLockfiles(_lockfile_request(bases.by_name[name]) for name in requested)


@rule(desc="Generating a Debian package lock", level=LogLevel.DEBUG)
async def generate_debian_lockfile(
    request: GenerateDebianLockfile, builder: ImageBuilder, access: DownloadAccess
) -> GenerateLockfileResult:
    process = builder.debian_lock(
        access=access,
        request=request.request,
        output=request.lockfile_dest,
        description=f"Locking Debian packages for `{request.resolve_name}`",
    )
    output = await Get(BuildStepOutput, BuildStep(process, owner=request.resolve_name))
    return GenerateLockfileResult(output.digest, request.resolve_name, request.lockfile_dest)


@rule(desc="Generating a registry base lock", level=LogLevel.DEBUG)
async def generate_registry_base_lockfile(
    request: GenerateRegistryBaseLockfile, builder: ImageBuilder, access: RegistryAccess
) -> GenerateLockfileResult:
    process = builder.oci_lock_base(
        access=access,
        image=request.image,
        platforms=request.platforms,
        output=request.lockfile_dest,
        description=f"Locking registry base `{request.resolve_name}` ({request.image})",
    )
    output = await Get(BuildStepOutput, BuildStep(process, owner=request.resolve_name))
    return GenerateLockfileResult(output.digest, request.resolve_name, request.lockfile_dest)


def rules():
    return [
        *collect_rules(),
        UnionRule(GenerateLockfile, GenerateDebianLockfile),
        UnionRule(GenerateLockfile, GenerateRegistryBaseLockfile),
        UnionRule(KnownUserResolveNamesRequest, KnownBaseImageResolveNamesRequest),
        UnionRule(RequestedUserResolveNames, RequestedBaseImageResolveNames),
    ]
