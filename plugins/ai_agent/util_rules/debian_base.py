"""A `debian_base` as a `BaseImage`: built from the .deb files its lock pins, through two
cacheable processes: fetching the pinned .debs by sha256, and unpacking them into one
deterministic layer.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Dict, Mapping, Tuple

from pants.engine.fs import (
    CreateDigest,
    Digest,
    DigestContents,
    DigestSubset,
    FileContent,
    MergeDigests,
    PathGlobs,
    Snapshot,
)
from pants.engine.rules import Get, collect_rules, rule
from pants.engine.target import (
    Target,
)
from pants.util.logging import LogLevel

from ai_agent.debian.lock import LockRequest
from ai_agent.oci.types import Platform, canonical_json
from ai_agent.subsystems import AiAgentSubsystem
from ai_agent.target_types import (
    DebianArchitecturesField,
    DebianExcludesField,
    DebianLockfileField,
    DebianPackagesField,
    DebianSuiteField,
    DebianVariantField,
)
from ai_agent.util_rules.base_image import (
    PLATFORM_OF_ARCHITECTURE,
    BaseLockProblem,
    BasePlatformProblem,
    DebianBaseRequest,
    missing_lock,
    refresh_command,
)
from ai_agent.util_rules.builder import BuildStep, BuildStepOutput, ImageBuilder, read_json
from ai_agent.util_rules.frozen import frozen
from ai_agent.util_rules.image import BaseImage, BaseLayer
from ai_agent.util_rules.network import DownloadAccess

# What Debian's own images set; the rest of the config belongs to the image built on top.
_DEBIAN_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
}


def lock_request(target: Target) -> LockRequest:
    return LockRequest(
        suite=target[DebianSuiteField].value or DebianSuiteField.default,
        architectures=tuple(target[DebianArchitecturesField].value or ()),
        packages=tuple(target[DebianPackagesField].value or ()),
        excludes=tuple(target[DebianExcludesField].value or ()),
        variant=target[DebianVariantField].value or DebianVariantField.default,
    )


async def _checked_lock(target: Target, architecture: str) -> Tuple[str, Snapshot, Dict[str, Any]]:
    """The target's lock, refused where it is missing, made for other settings, or lacks the
    architecture."""
    resolve_name = target.address.target_name
    lock_path = target[DebianLockfileField].value_or_default()
    lock_snapshot = await Get(Snapshot, PathGlobs([lock_path]))
    if not lock_snapshot.files:
        raise missing_lock(target, lock_path)
    lock_contents = await Get(DigestContents, Digest, lock_snapshot.digest)
    lock = json.loads(lock_contents[0].content)
    if lock.get("request") != lock_request(target).to_json():
        raise BaseLockProblem(
            f"{target.address}: `{lock_path}` was made for other settings than the target's"
            " (suite, architectures, packages, excludes, variant). Refresh it with"
            f" `{refresh_command(resolve_name)}`."
        )
    if architecture not in lock["request"]["architectures"]:
        raise BasePlatformProblem(
            f"{target.address}: no `{architecture}` in field `architectures`"
            f" {lock['request']['architectures']}; add it and run"
            f" `{refresh_command(resolve_name)}`."
        )
    return lock_path, lock_snapshot, lock


def _base_config(platform: str, descriptor: Mapping[str, Any]) -> Dict[str, Any]:
    return {
        **Platform.parse(platform).to_json(),
        "config": {"Env": [f"{name}={value}" for name, value in _DEBIAN_ENV.items()]},
        "rootfs": {"type": "layers", "diff_ids": [descriptor["diffID"]]},
        "history": [{"created_by": descriptor["createdBy"]}],
    }


async def _base_steps(
    target: Target,
    architecture: str,
    lock_path: str,
    lock: Digest,
    builder: ImageBuilder,
    access: DownloadAccess,
    source_date_epoch: int,
) -> Tuple[BuildStep, BuildStep, str]:
    """The steps fetching the pinned .debs and unpacking them into the layer (in its directory,
    returned too), the first run to give the second its input."""
    owner = str(target.address)
    fetch_step = BuildStep(
        builder.debian_fetch(
            access=access,
            lock=lock_path,
            architecture=architecture,
            output_dir="debs",
            refresh_command=refresh_command(target.address.target_name),
            inputs=lock,
            description=f"Fetching the Debian packages of {owner} ({architecture})",
        ),
        owner=owner,
    )
    debs = await Get(BuildStepOutput, BuildStep, fetch_step)
    layer_dir = f"base/{target.address.path_safe_spec}/{architecture}"
    layer_step = BuildStep(
        builder.debian_layer(
            lock=lock_path,
            architecture=architecture,
            debs="debs",
            output_dir=layer_dir,
            source_date_epoch=source_date_epoch,
            inputs=await Get(Digest, MergeDigests([lock, debs.digest])),
            description=f"Writing the Debian base layer of {owner} ({architecture})",
        ),
        owner=owner,
    )
    return fetch_step, layer_step, layer_dir


@rule(desc="Building a Debian base", level=LogLevel.DEBUG)
async def build_debian_base(
    request: DebianBaseRequest,
    builder: ImageBuilder,
    subsystem: AiAgentSubsystem,
    access: DownloadAccess,
) -> BaseImage:
    target, architecture = request.target, request.architecture
    lock_path, lock_snapshot, lock = await _checked_lock(target, architecture)
    fetch_step, layer_step, layer_dir = await _base_steps(
        target,
        architecture,
        lock_path,
        lock_snapshot.digest,
        builder,
        access,
        subsystem.source_date_epoch,
    )
    layer = await Get(BuildStepOutput, BuildStep, layer_step)
    descriptor = await read_json(layer.digest, f"{layer_dir}/descriptor.json")
    packages_file = f"{layer_dir}/packages.json"
    (lock_file,) = await Get(DigestContents, Digest, lock_snapshot.digest)
    packages_facts = await Get(Digest, DigestSubset(layer.digest, PathGlobs([packages_file])))
    platform = PLATFORM_OF_ARCHITECTURE[architecture]
    config_path = f"{layer_dir}/config.json"
    config = await Get(
        Digest,
        CreateDigest(
            [FileContent(config_path, canonical_json(_base_config(platform, descriptor)))]
        ),
    )
    return BaseImage(
        address=target.address,
        platform=platform,
        config=config,
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
            f"{package['name']}={package['version']}" for package in lock["packages"][architecture]
        ),
        described_by=(fetch_step, layer_step),
        sbom=frozen(
            {
                "kind": "debian",
                "repository": target.address.target_name,
                "lock": {
                    "path": lock_path,
                    "sha256": hashlib.sha256(lock_file.content).hexdigest(),
                },
            }
        ),
        packages_file=packages_file,
        packages_facts=packages_facts,
    )


def rules():
    return collect_rules()
