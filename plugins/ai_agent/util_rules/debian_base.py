"""A `debian_base` as a `BaseImage`: built from the .deb files its lock pins, through two
cacheable processes: fetching the pinned .debs by sha256, and unpacking them into one
deterministic layer.
"""

from __future__ import annotations

import json
from typing import Tuple

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
from ai_agent.util_rules.builder import BuildStep, BuildStepOutput, ImageBuilder, NetworkLimitArgs
from ai_agent.util_rules.image import BaseImage, BaseLayer

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


def mirror_args(subsystem: AiAgentSubsystem) -> Tuple[str, ...]:
    return tuple(arg for mirror in subsystem.debian_mirrors for arg in ("--mirror", mirror))


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
        raise missing_lock(target, lock_path)
    lock_contents = await Get(DigestContents, Digest, lock_snapshot.digest)
    lock = json.loads(lock_contents[0].content)
    if lock.get("request") != lock_request(target).to_json():
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
    platform = PLATFORM_OF_ARCHITECTURE[request.architecture]
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


def rules():
    return collect_rules()
