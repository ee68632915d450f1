"""An `oci_base` as a `BaseImage`: an image from a registry, pinned per platform by digest in its
lock. Each blob (the config, each layer) is pulled by digest by its own cacheable process whose
only inputs are the repository and the digest, so a blob is cached by digest, locally and
remotely, and shared by every base that lists it. Layers are carried byte for byte and pulled
only where their bytes are needed; the lock alone gives their digests, diffIDs and sizes.

Registry processes find credentials through `DOCKER_CONFIG` (`[ai-agents].docker_config`, else
the environment's `DOCKER_CONFIG`, else `$HOME/.docker`): only that path enters their cache
keys, never the credentials, and not HOME itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

from pants.engine.env_vars import EnvironmentVars, EnvironmentVarsRequest
from pants.engine.fs import (
    Digest,
    DigestContents,
    PathGlobs,
    Snapshot,
)
from pants.engine.rules import Get, collect_rules, rule
from pants.util.frozendict import FrozenDict
from pants.util.logging import LogLevel

from ai_agent.oci.base import BaseLock, BaseLockError
from ai_agent.oci.types import Descriptor, digest_hex
from ai_agent.subsystems import AiAgentSubsystem
from ai_agent.target_types import (
    OciBaseImageField,
    OciBaseLockfileField,
    OciBasePlatformsField,
)
from ai_agent.util_rules.base_image import (
    BaseLockProblem,
    BasePlatformProblem,
    RegistryBaseRequest,
    missing_lock,
    refresh_command,
)
from ai_agent.util_rules.builder import BuildStep, BuildStepOutput, ImageBuilder, NetworkLimitArgs
from ai_agent.util_rules.image import BaseImage, BaseLayer

# Where Docker credential helpers (`docker-credential-*`) are looked for; fixed, so that it is the
# same in every machine's cache keys.
_CREDENTIAL_HELPER_PATH = "/usr/local/bin:/usr/bin:/bin"


# Where pulled blobs land in a sandbox: named by digest alone, so that one blob is one process.
_BLOBS_DIR = "base-blobs/sha256"


@dataclass(frozen=True)
class RegistryAccess:
    """What every registry process gets: the Docker config's directory (a path, never its
    content), the registries it may reach over plain HTTP and the network limits."""

    env: FrozenDict[str, str]
    args: Tuple[str, ...]


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
        raise missing_lock(target, lock_path)
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


def rules():
    return collect_rules()
