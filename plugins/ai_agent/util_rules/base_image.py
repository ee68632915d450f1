"""What every image is stacked on: a base image target's `BaseImage`, whichever kind of target it
is (`debian_base.py`, `registry_base.py` build them), and the rules every kind shares: one
resolve name per base target, the lock each one's target owns, the refresh command.

Both kinds of lock are written by `./pants generate-lockfiles --resolve=<target name>`
(`goals/generate_lockfiles.py`), whose processes ask the live archive or registry and are
therefore never cached; builds read only the lock, and a missing or stale one is an error that
says how to refresh it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional

from pants.engine.addresses import Address
from pants.engine.internals.graph import Owners, OwnersRequest
from pants.engine.rules import Get, collect_rules, rule
from pants.engine.target import (
    AllTargets,
    FieldSet,
    InferDependenciesRequest,
    InferredDependencies,
    InvalidFieldException,
    Target,
    WrappedTarget,
    WrappedTargetRequest,
)
from pants.engine.unions import UnionRule
from pants.util.docutil import bin_name
from pants.util.frozendict import FrozenDict
from pants.util.logging import LogLevel

from ai_agent.oci.types import Platform
from ai_agent.target_types import (
    BaseImageDependenciesField,
    BaseImageLockfileField,
    DebianArchitecturesField,
    DebianBaseTarget,
    OciBasePlatformsField,
    OciBaseTarget,
)
from ai_agent.util_rules.image import BaseImage


class BaseLockProblem(InvalidFieldException):
    """A base's lock is missing, or was made for other settings than the target's."""


class NotABaseImage(InvalidFieldException):
    """An address given as a base names a target that is not a base image."""


class BasePlatformProblem(InvalidFieldException):
    """A base is asked for a platform that its target does not list."""


@dataclass(frozen=True)
class BaseImageRequest:
    """The base image target at `address`, for `platform` (`os/arch[/variant]`); None means
    the first platform the target lists."""

    address: Address
    platform: Optional[str] = None


@dataclass(frozen=True)
class DebianBaseRequest:
    target: Target
    architecture: str


@dataclass(frozen=True)
class RegistryBaseRequest:
    target: Target
    platform: str


def refresh_command(resolve_name: str) -> str:
    return f"{bin_name()} generate-lockfiles --resolve={resolve_name}"


def missing_lock(target: Target, lock_path: str) -> BaseLockProblem:
    return BaseLockProblem(
        f"{target.address}: its lock `{lock_path}` does not exist (field `lockfile`). Create it"
        f" with `{refresh_command(target.address.target_name)}`."
    )


class DuplicateBaseName(Exception):
    """Two base targets share a name, which names each one's lock resolve."""


@dataclass(frozen=True)
class BaseTargets:
    """Every `debian_base` and `oci_base` target, by name: the name is its lock's resolve."""

    by_name: FrozenDict[str, Target]


@rule(desc="Listing the base image targets", level=LogLevel.DEBUG)
def base_targets(all_targets: AllTargets) -> BaseTargets:
    by_name: Dict[str, List[Target]] = {}
    for target in all_targets:
        if not target.has_field(BaseImageLockfileField):
            continue
        by_name.setdefault(target.address.target_name, []).append(target)
    for name, targets in sorted(by_name.items()):
        if len(targets) > 1:
            addresses = sorted(str(target.address) for target in targets)
            raise DuplicateBaseName(
                f"{' and '.join(addresses)} are base targets"
                f" named `{name}`, which names each one's lock resolve (`generate-lockfiles"
                f" --resolve={name}`) and so would share a lock: give each its own name"
            )
    return BaseTargets(FrozenDict((name, targets[0]) for name, targets in by_name.items()))


@rule(desc="Finding a base image", level=LogLevel.DEBUG)
async def find_base_image(request: BaseImageRequest) -> BaseImage:
    wrapped = await Get(
        WrappedTarget,
        WrappedTargetRequest(request.address, description_of_origin="an image's `base` field"),
    )
    target = wrapped.target
    if target.has_field(BaseImageLockfileField):
        await Get(BaseTargets)  # refuses a name that another base target has too
    if isinstance(target, OciBaseTarget):
        platforms = target[OciBasePlatformsField].value
        platform = str(Platform.parse(request.platform)) if request.platform else platforms[0]
        return await Get(BaseImage, RegistryBaseRequest(target, platform))
    if isinstance(target, DebianBaseTarget):
        architectures = target[DebianArchitecturesField].value or DebianArchitecturesField.default
        architecture = debian_architecture(target, request.platform) or architectures[0]
        return await Get(BaseImage, DebianBaseRequest(target, architecture))
    raise NotABaseImage(
        f"{request.address} is a `{target.alias}` target; a base must be a `debian_base` or an"
        " `oci_base` target"
    )


PLATFORM_OF_ARCHITECTURE = {"amd64": "linux/amd64", "arm64": "linux/arm64/v8"}


def debian_architecture(target: Target, platform: Optional[str]) -> Optional[str]:
    if platform is None:
        return None
    for architecture, known_platform in PLATFORM_OF_ARCHITECTURE.items():
        if Platform.parse(known_platform).matches(Platform.parse(platform)):
            return architecture
    raise BasePlatformProblem(
        f"{target.address}: a `debian_base` has no {platform} image; it builds"
        f" {', '.join(PLATFORM_OF_ARCHITECTURE.values())} (field `architectures`)"
    )


@dataclass(frozen=True)
class BaseLockOwnerFieldSet(FieldSet):
    required_fields = (BaseImageLockfileField, BaseImageDependenciesField)

    lockfile: BaseImageLockfileField


class InferBaseLockOwner(InferDependenciesRequest):
    infer_from = BaseLockOwnerFieldSet


@rule(desc="Finding the owner of a base image's lock", level=LogLevel.DEBUG)
async def infer_base_lock_owner(request: InferBaseLockOwner) -> InferredDependencies:
    owners = await Get(Owners, OwnersRequest((request.field_set.lockfile.value_or_default(),)))
    return InferredDependencies(owners.keys())


def rules():
    return [*collect_rules(), UnionRule(InferDependenciesRequest, InferBaseLockOwner)]
