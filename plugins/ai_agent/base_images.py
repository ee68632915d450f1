"""Base images: what every agent image is stacked on, as one `BaseImage` whatever the kind.

A `debian_base` is built from the .deb files its lock pins, through two cacheable processes:
fetching the pinned .debs by sha256, and unpacking them into one deterministic layer.

An `oci_base` is an image from a registry, pinned per platform by digest in its lock. Each blob
(the config, each layer) is pulled by digest by its own cacheable process whose only inputs are
the repository and the digest, so a blob is cached by digest, locally and remotely, and shared by
every base that lists it. Layers are carried byte for byte and pulled only where their bytes are
needed; the lock alone gives their digests, diffIDs and sizes.

Both kinds of lock are written by `./pants generate-lockfiles --resolve=<target name>`, whose
processes ask the live archive or registry and are therefore never cached; builds read only the
lock, and a missing or stale one is an error that says how to refresh it.

Registry processes find credentials through `DOCKER_CONFIG` (`[ai-agents].docker_config`, else
the environment's `DOCKER_CONFIG`, else `$HOME/.docker`): only that path enters their cache keys,
never the credentials, and not HOME itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Tuple

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
    OutputPathField,
    PackageFieldSet,
)
from pants.core.util_rules.distdir import DistDir
from pants.engine.addresses import Address
from pants.engine.env_vars import EnvironmentVars, EnvironmentVarsRequest
from pants.engine.fs import (
    EMPTY_DIGEST,
    CreateDigest,
    Digest,
    DigestContents,
    DigestSubset,
    FileContent,
    MergeDigests,
    PathGlobs,
    Snapshot,
)
from pants.engine.internals.graph import Owners, OwnersRequest
from pants.engine.process import ProcessCacheScope
from pants.engine.rules import Get, collect_rules, rule
from pants.engine.target import (
    AllTargets,
    FieldSet,
    InferDependenciesRequest,
    InferredDependencies,
    Target,
    WrappedTarget,
    WrappedTargetRequest,
)
from pants.engine.unions import UnionRule
from pants.util.docutil import bin_name
from pants.util.frozendict import FrozenDict
from pants.util.logging import LogLevel

from ai_agent.builder import BuildStep, BuildStepOutput, ImageBuilder, NetworkLimitArgs
from ai_agent.debian.lock import LockRequest
from ai_agent.image import (
    BaseImage,
    BaseLayer,
    ImageArchiveRequest,
    ImageDescription,
    PlatformImage,
    checked_output_path,
    exported_package,
)
from ai_agent.oci.base import BaseLock, BaseLockError
from ai_agent.oci.types import Descriptor, Platform, canonical_json, digest_hex
from ai_agent.subsystem import AiAgentSubsystem
from ai_agent.target_types import (
    BaseImageDependenciesField,
    BaseImageLockfileField,
    DebianArchitecturesField,
    DebianBaseTarget,
    DebianExcludesField,
    DebianLockfileField,
    DebianPackagesField,
    DebianSuiteField,
    DebianVariantField,
    OciBaseImageField,
    OciBaseLockfileField,
    OciBasePlatformsField,
    OciBaseTarget,
)

# What Debian's own images set; the rest of the config belongs to the image built on top.
_DEBIAN_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
}
_PLATFORM_OF_ARCHITECTURE = {"amd64": "linux/amd64", "arm64": "linux/arm64/v8"}
# Where Docker credential helpers (`docker-credential-*`) are looked for; fixed, so that it is the
# same in every machine's cache keys.
_CREDENTIAL_HELPER_PATH = "/usr/local/bin:/usr/bin:/bin"
# Where pulled blobs land in a sandbox: named by digest alone, so that one blob is one process.
_BLOBS_DIR = "base-blobs/sha256"


class BaseLockProblem(Exception):
    """A base's lock is missing, or was made for other settings than the target's."""


class NotABaseImage(Exception):
    """An address given as a base names a target that is not a base image."""


class BasePlatformProblem(Exception):
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


@dataclass(frozen=True)
class RegistryAccess:
    """What every registry process gets: the Docker config's directory (a path, never its
    content), the registries it may reach over plain HTTP and the network limits."""

    env: FrozenDict[str, str]
    args: Tuple[str, ...]


def refresh_command(resolve_name: str) -> str:
    return f"{bin_name()} generate-lockfiles --resolve={resolve_name}"


def _lock_request(target: Target) -> LockRequest:
    return LockRequest(
        suite=target[DebianSuiteField].value or DebianSuiteField.default,
        architectures=tuple(target[DebianArchitecturesField].value or ()),
        packages=tuple(target[DebianPackagesField].value or ()),
        excludes=tuple(target[DebianExcludesField].value or ()),
        variant=target[DebianVariantField].value or DebianVariantField.default,
    )


def mirror_args(subsystem: AiAgentSubsystem) -> Tuple[str, ...]:
    return tuple(arg for mirror in subsystem.debian_mirrors for arg in ("--mirror", mirror))


def _missing_lock(target: Target, lock_path: str) -> BaseLockProblem:
    return BaseLockProblem(
        f"{target.address}: its lock `{lock_path}` does not exist (field `lockfile`). Create it"
        f" with `{refresh_command(target.address.target_name)}`."
    )


@rule
async def registry_access(subsystem: AiAgentSubsystem, limits: NetworkLimitArgs) -> RegistryAccess:
    environment = await Get(EnvironmentVars, EnvironmentVarsRequest(["DOCKER_CONFIG", "HOME"]))
    docker_config = subsystem.docker_config or environment.get("DOCKER_CONFIG")
    if not docker_config and environment.get("HOME"):
        docker_config = f"{environment['HOME']}/.docker"
    env = {"PATH": _CREDENTIAL_HELPER_PATH}
    if docker_config:
        env["DOCKER_CONFIG"] = docker_config
    insecure = subsystem.insecure_registries
    args = tuple(arg for host in insecure for arg in ("--insecure-registry", host))
    return RegistryAccess(FrozenDict(env), args + limits.registries)


# Lock generation ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class GenerateDebianLockfile(GenerateLockfile):
    request_json: str


@dataclass(frozen=True)
class GenerateRegistryBaseLockfile(GenerateLockfile):
    image: str
    platforms: Tuple[str, ...]


class KnownBaseImageResolveNamesRequest(KnownUserResolveNamesRequest):
    pass


class RequestedBaseImageResolveNames(RequestedUserResolveNames):
    pass


def _base_targets(all_targets: Iterable[Target]) -> Tuple[Target, ...]:
    return tuple(t for t in all_targets if t.has_field(BaseImageLockfileField))


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
        request_json=canonical_json(_lock_request(target).to_json()).decode(),
    )


@rule
def wrap_debian_lockfile_request(request: GenerateDebianLockfile) -> WrappedGenerateLockfile:
    return WrappedGenerateLockfile(request)


@rule
def wrap_registry_base_lockfile_request(
    request: GenerateRegistryBaseLockfile,
) -> WrappedGenerateLockfile:
    return WrappedGenerateLockfile(request)


class DuplicateBaseName(Exception):
    """Two base targets share a name, which names each one's lock resolve."""


@dataclass(frozen=True)
class BaseTargets:
    """Every `debian_base` and `oci_base` target, by name: the name is its lock's resolve."""

    by_name: FrozenDict[str, Target]


@rule(desc="Listing the base image targets", level=LogLevel.DEBUG)
def base_targets(all_targets: AllTargets) -> BaseTargets:
    by_name: Dict[str, List[Target]] = {}
    for target in _base_targets(all_targets):
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
    request: GenerateDebianLockfile,
    builder: ImageBuilder,
    subsystem: AiAgentSubsystem,
    limits: NetworkLimitArgs,
) -> GenerateLockfileResult:
    lock_request = json.loads(request.request_json)
    argv = ["lock", "--suite", lock_request["suite"], "--variant", lock_request["variant"]]
    argv += [arg for arch in lock_request["architectures"] for arg in ("--arch", arch)]
    argv += [arg for package in lock_request["packages"] for arg in ("--package", package)]
    argv += [arg for package in lock_request["excludes"] for arg in ("--exclude", package)]
    process = builder.process(
        "debian",
        [*argv, *mirror_args(subsystem), *limits.downloads, "--output", request.lockfile_dest],
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


@rule(desc="Generating a registry base lock", level=LogLevel.DEBUG)
async def generate_registry_base_lockfile(
    request: GenerateRegistryBaseLockfile, builder: ImageBuilder, access: RegistryAccess
) -> GenerateLockfileResult:
    argv = ["lock-base", "--image", request.image]
    argv += [arg for platform in request.platforms for arg in ("--platform", platform)]
    process = builder.process(
        "oci",
        [*argv, *access.args, "--output", request.lockfile_dest],
        description=f"Locking registry base `{request.resolve_name}` ({request.image})",
        output_files=(request.lockfile_dest,),
        env=access.env,
        level=LogLevel.INFO,
        # A lock must reflect what the tag names now, never a cached earlier answer.
        cache_scope=ProcessCacheScope.PER_SESSION,
    )
    output = await Get(BuildStepOutput, BuildStep(process, owner=request.resolve_name))
    return GenerateLockfileResult(output.digest, request.resolve_name, request.lockfile_dest)


# Building -----------------------------------------------------------------------------------------


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
        architecture = _debian_architecture(target, request.platform) or architectures[0]
        return await Get(BaseImage, DebianBaseRequest(target, architecture))
    raise NotABaseImage(
        f"{request.address} is a `{target.alias}` target; a base must be a `debian_base` or an"
        " `oci_base` target"
    )


def _debian_architecture(target: Target, platform: Optional[str]) -> Optional[str]:
    if platform is None:
        return None
    for architecture, known_platform in _PLATFORM_OF_ARCHITECTURE.items():
        if Platform.parse(known_platform).matches(Platform.parse(platform)):
            return architecture
    raise BasePlatformProblem(
        f"{target.address}: a `debian_base` has no {platform} image; it builds"
        f" {', '.join(_PLATFORM_OF_ARCHITECTURE.values())} (field `architectures`)"
    )


@rule(desc="Building a Debian base", level=LogLevel.DEBUG)
async def build_debian_base(
    request: DebianBaseRequest,
    builder: ImageBuilder,
    subsystem: AiAgentSubsystem,
    limits: NetworkLimitArgs,
) -> BaseImage:
    target = request.target
    owner = str(target.address)
    resolve_name = target.address.target_name
    lock_path = target[DebianLockfileField].value_or_default()
    lock_snapshot = await Get(Snapshot, PathGlobs([lock_path]))
    if not lock_snapshot.files:
        raise _missing_lock(target, lock_path)
    lock_contents = await Get(DigestContents, Digest, lock_snapshot.digest)
    lock = json.loads(lock_contents[0].content)
    if lock.get("request") != _lock_request(target).to_json():
        raise BaseLockProblem(
            f"{owner}: `{lock_path}` was made for other settings than the target's (suite,"
            f" architectures, packages, excludes, variant). Refresh it with"
            f" `{refresh_command(resolve_name)}`."
        )
    if request.architecture not in lock["request"]["architectures"]:
        raise BasePlatformProblem(
            f"{owner}: no `{request.architecture}` in field `architectures`"
            f" {lock['request']['architectures']}; add it and run"
            f" `{refresh_command(resolve_name)}`."
        )

    fetch_step = BuildStep(
        builder.process(
            "debian",
            ["fetch", "--lock", lock_path, "--arch", request.architecture]
            + ["--output-dir", "debs", *mirror_args(subsystem)]
            + ["--refresh-command", refresh_command(resolve_name), *limits.downloads],
            description=f"Fetching the Debian packages of {owner} ({request.architecture})",
            input_digest=lock_snapshot.digest,
            output_directories=("debs",),
            level=LogLevel.INFO,
        ),
        owner=owner,
    )
    debs = await Get(BuildStepOutput, BuildStep, fetch_step)
    layer_dir = f"base/{target.address.path_safe_spec}/{request.architecture}"
    layer_inputs = await Get(Digest, MergeDigests([lock_snapshot.digest, debs.digest]))
    layer_step = BuildStep(
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
    )
    layer = await Get(BuildStepOutput, BuildStep, layer_step)
    descriptor_path = f"{layer_dir}/descriptor.json"
    descriptor_contents = await Get(
        DigestContents, DigestSubset(layer.digest, PathGlobs([descriptor_path]))
    )
    descriptor = json.loads(descriptor_contents[0].content)
    platform = _PLATFORM_OF_ARCHITECTURE[request.architecture]
    config = {
        **Platform.parse(platform).to_json(),
        "config": {"Env": [f"{name}={value}" for name, value in _DEBIAN_ENV.items()]},
        "rootfs": {"type": "layers", "diff_ids": [descriptor["diffID"]]},
        "history": [{"created_by": descriptor["createdBy"]}],
    }
    config_path = f"{layer_dir}/config.json"
    config_digest = await Get(
        Digest, CreateDigest([FileContent(config_path, canonical_json(config))])
    )
    return BaseImage(
        address=target.address,
        platform=platform,
        config=config_digest,
        config_path=config_path,
        layers=(
            BaseLayer(
                media_type=descriptor["mediaType"],
                digest=descriptor["digest"],
                size=descriptor["size"],
                diff_id=descriptor["diffID"],
                path=f"{layer_dir}/{descriptor['blob']}",
            ),
        ),
        # Already run for the descriptor; asking again is answered from memory.
        layer_blob_steps=(layer_step,),
        packages=tuple(
            f"{package['name']}={package['version']}"
            for package in lock["packages"][request.architecture]
        ),
        described_by=(fetch_step, layer_step),
    )


def _blob_path(digest: str) -> str:
    return f"{_BLOBS_DIR}/{digest_hex(digest)}"


def _pull_blob_step(
    builder: ImageBuilder, access: RegistryAccess, repository: str, blob: Descriptor, owner: str
) -> BuildStep:
    """Pull one blob by digest: the process depends on the repository and the digest only."""
    return BuildStep(
        builder.process(
            "oci",
            ["pull-blob", "--repository", repository, "--digest", blob.digest]
            + ["--size", str(blob.size), "--output", _blob_path(blob.digest), *access.args],
            description=f"Pulling {blob.digest} from {repository}",
            output_files=(_blob_path(blob.digest),),
            env=access.env,
            level=LogLevel.INFO,
        ),
        owner=owner,
    )


@rule(desc="Pinning a registry base", level=LogLevel.DEBUG)
async def build_registry_base(
    request: RegistryBaseRequest, builder: ImageBuilder, access: RegistryAccess
) -> BaseImage:
    target = request.target
    owner = str(target.address)
    refresh = refresh_command(target.address.target_name)
    lock_path = target[OciBaseLockfileField].value_or_default()
    lock_snapshot = await Get(Snapshot, PathGlobs([lock_path]))
    if not lock_snapshot.files:
        raise _missing_lock(target, lock_path)
    lock_contents = await Get(DigestContents, Digest, lock_snapshot.digest)
    try:
        lock = BaseLock.loads(lock_contents[0].content, lock_path)
    except BaseLockError as error:
        raise BaseLockProblem(f"{owner}: {error}. Regenerate it with `{refresh}`.") from None
    image = target[OciBaseImageField].value
    platforms = target[OciBasePlatformsField].value
    if lock.image != image or sorted(lock.platforms) != sorted(platforms):
        raise BaseLockProblem(
            f"{owner}: `{lock_path}` was made for other settings than the target's: it locks"
            f" {lock.image} for {', '.join(sorted(lock.platforms))}, the target asks for {image}"
            f" (field `image`) for {', '.join(sorted(platforms))} (field `platforms`). Refresh"
            f" it with `{refresh}`."
        )
    if request.platform not in platforms:
        raise BasePlatformProblem(
            f"{owner}: no `{request.platform}` in field `platforms` {list(platforms)}; add it and"
            f" run `{refresh}`."
        )
    locked = lock.image_for(request.platform)
    repository = str(lock.reference.repository)
    config_step = _pull_blob_step(builder, access, repository, locked.config, owner)
    config = await Get(BuildStepOutput, BuildStep, config_step)
    return BaseImage(
        address=target.address,
        platform=request.platform,
        config=config.digest,
        config_path=_blob_path(locked.config.digest),
        layers=tuple(
            BaseLayer(
                media_type=layer.descriptor.media_type,
                digest=layer.descriptor.digest,
                size=layer.descriptor.size,
                diff_id=layer.diff_id,
                path=_blob_path(layer.descriptor.digest),
            )
            for layer in locked.layers
        ),
        layer_blob_steps=tuple(
            _pull_blob_step(builder, access, repository, layer.descriptor, owner)
            for layer in locked.layers
        ),
        # What a registry image holds is known only from its layers' bytes (a scanner's job).
        packages=(),
        described_by=(config_step,),
    )


# Packaging a base on its own ----------------------------------------------------------------------


@dataclass(frozen=True)
class BaseImagePackageFieldSet(PackageFieldSet):
    required_fields = (BaseImageLockfileField,)

    lockfile: BaseImageLockfileField
    output_path: OutputPathField


@rule(desc="Packaging a base image", level=LogLevel.DEBUG)
async def package_base_image(
    field_set: BaseImagePackageFieldSet, dist_dir: DistDir, subsystem: AiAgentSubsystem
) -> BuiltPackage:
    output_path = await checked_output_path(field_set.address, field_set.output_path)
    base = await Get(BaseImage, BaseImageRequest(field_set.address))
    request = ImageArchiveRequest(
        owner=str(field_set.address),
        tags=(f"{field_set.address.target_name}:latest",),
        images=(
            PlatformImage.create(base=base, inputs=EMPTY_DIGEST, layer_descriptors=(), config={}),
        ),
        output_path=output_path,
    )
    description = await Get(ImageDescription, ImageArchiveRequest, request)
    return await exported_package(
        request,
        description.metadata_json,
        f"    manifest {description.manifest_digest}",
        dist_dir,
        subsystem,
    )


# Lock ownership ---------------------------------------------------------------------------------


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
    return [
        *collect_rules(),
        UnionRule(GenerateLockfile, GenerateDebianLockfile),
        UnionRule(GenerateLockfile, GenerateRegistryBaseLockfile),
        UnionRule(KnownUserResolveNamesRequest, KnownBaseImageResolveNamesRequest),
        UnionRule(RequestedUserResolveNames, RequestedBaseImageResolveNames),
        UnionRule(InferDependenciesRequest, InferBaseLockOwner),
        UnionRule(PackageFieldSet, BaseImagePackageFieldSet),
    ]
