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

import hashlib

from pants.engine.fs import (
    Digest,
    DigestContents,
    PathGlobs,
    Snapshot,
)
from pants.engine.rules import Get, collect_rules, rule
from pants.engine.target import Target
from pants.util.logging import LogLevel

from ai_agent.oci.base import BaseLock, BaseLockError
from ai_agent.oci.types import Descriptor, digest_hex
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
from ai_agent.util_rules.builder import BuildStep, BuildStepOutput, ImageBuilder
from ai_agent.util_rules.frozen import frozen
from ai_agent.util_rules.image import BaseImage, BaseLayer
from ai_agent.util_rules.network import RegistryAccess

# Where pulled blobs land in a sandbox: named by digest alone, so that one blob is one process.
_BLOBS_DIR = "base-blobs/sha256"


def _blob_path(digest: str) -> str:
    return f"{_BLOBS_DIR}/{digest_hex(digest)}"


def _pull_blob_step(
    builder: ImageBuilder, access: RegistryAccess, repository: str, blob: Descriptor, owner: str
) -> BuildStep:
    """Pull one blob by digest: the process depends on the repository and the digest only."""
    process = builder.oci_pull_blob(
        access=access,
        repository=repository,
        digest=blob.digest,
        size=blob.size,
        output=_blob_path(blob.digest),
    )
    return BuildStep(process, owner=owner)


async def _checked_lock(target: Target, platform: str) -> BaseLock:
    """The target's lock, refused where it is missing, made for other settings, or lacks the
    platform."""
    refresh = refresh_command(target.address.target_name)
    lock_path = target[OciBaseLockfileField].value_or_default()
    lock_snapshot = await Get(Snapshot, PathGlobs([lock_path]))
    if not lock_snapshot.files:
        raise missing_lock(target, lock_path)
    lock_contents = await Get(DigestContents, Digest, lock_snapshot.digest)
    try:
        lock = BaseLock.loads(lock_contents[0].content, lock_path)
    except BaseLockError as error:
        raise BaseLockProblem(
            f"{target.address}: {error}. Regenerate it with `{refresh}`."
        ) from None
    image = target[OciBaseImageField].value
    platforms = target[OciBasePlatformsField].value
    if lock.image != image or sorted(lock.platforms) != sorted(platforms):
        raise BaseLockProblem(
            f"{target.address}: `{lock_path}` was made for other settings than the target's: it"
            f" locks {lock.image} for {', '.join(sorted(lock.platforms))}, the target asks for"
            f" {image} (field `image`) for {', '.join(sorted(platforms))} (field `platforms`)."
            f" Refresh it with `{refresh}`."
        )
    if platform not in platforms:
        raise BasePlatformProblem(
            f"{target.address}: no `{platform}` in field `platforms` {list(platforms)}; add it"
            f" and run `{refresh}`."
        )
    return lock


@rule(desc="Pinning a registry base", level=LogLevel.DEBUG)
async def build_registry_base(
    request: RegistryBaseRequest, builder: ImageBuilder, access: RegistryAccess
) -> BaseImage:
    target = request.target
    owner = str(target.address)
    lock = await _checked_lock(target, request.platform)
    locked = lock.image_for(request.platform)
    repository = str(lock.reference.repository)
    config_step = _pull_blob_step(builder, access, repository, locked.config, owner)
    config = await Get(BuildStepOutput, BuildStep, config_step)
    lock_path = target[OciBaseLockfileField].value_or_default()
    (lock_file,) = await Get(DigestContents, PathGlobs([lock_path]))
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
        sbom=frozen(
            {
                "kind": "registry",
                "repository": repository,
                "manifest": locked.manifest.digest,
                "download": f"{repository}@{locked.manifest.digest}",
                "lock": {
                    "path": lock_path,
                    "sha256": hashlib.sha256(lock_file.content).hexdigest(),
                },
            }
        ),
    )


def rules():
    return collect_rules()
