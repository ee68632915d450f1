"""An `ai_agent` target as an image: its layers stacked on the base in the order of how often they
change (base, big packages, packages, weights, code, config), the image config that runs the
entry point, and the metadata JSON describing it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from pants.engine.addresses import Address
from pants.engine.fs import (
    Digest,
    DigestContents,
    DigestEntries,
    DigestSubset,
    FileEntry,
    MergeDigests,
    PathGlobs,
)
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.engine.target import WrappedTarget, WrappedTargetRequest
from pants.util.frozendict import FrozenDict
from pants.util.logging import LogLevel

from ai_agent.subsystems import AiAgentSubsystem
from ai_agent.target_types import (
    AgentAcceleratorField,
    AgentCommandField,
    AgentEntryPointField,
    AgentLabelsField,
    AgentPlatformsField,
    AgentUserField,
    AgentWorkdirField,
    BaseImageLockfileField,
    agent_image_names,
    agent_image_tags,
    agent_repository,
)
from ai_agent.util_rules.agent import Agent, AgentRequest, InvalidAgent
from ai_agent.util_rules.builder import BuildStep
from ai_agent.util_rules.dist import layout_metadata
from ai_agent.util_rules.frozen import frozen, thawed
from ai_agent.util_rules.image import ImageArchiveRequest, ImageDescription, PlatformImage
from ai_agent.util_rules.layers import (
    APP_DIR,
    CONFIG_PATH,
    PACKAGES_PREFIX,
    BuiltLayers,
    FileLayerRequest,
    ImageFile,
    LayerInfo,
)
from ai_agent.util_rules.platform_base import (
    BaseRuntime,
    ImageCuda,
    PlatformBase,
    PlatformBaseRequest,
)
from ai_agent.util_rules.sbom import (
    ImageFileFacts,
    SbomImage,
    SbomRequest,
    file_facts,
    installed_files,
)
from ai_agent.util_rules.wheel_layers import ThirdPartyLayersRequest, WheelPlan, WheelPlanRequest

MIB = 1 << 20


@dataclass(frozen=True)
class AgentImageRequest:
    address: Address
    output_path: str


@dataclass(frozen=True)
class AgentImage:
    """An agent's image: `archive` asks for its archive (built only where one is needed),
    `metadata` is what the JSON beside it says."""

    archive: ImageArchiveRequest
    metadata: FrozenDict[str, Any]
    # Every build step behind the image's layers and description, once each.
    steps: Tuple[BuildStep, ...]
    # What its SBOM and provenance are written from (`package` writes them).
    sbom: SbomRequest


def _python(agent: Agent, runtime: BaseRuntime) -> str:
    """The interpreter the agent runs: its third-party packages' virtual environment's (a real
    site directory, so `.pth` files take effect), else the base's."""
    if agent.requirements:
        return f"/{PACKAGES_PREFIX}/bin/python{runtime.major_minor}"
    return runtime.interpreter


def _entrypoint(agent: Agent, runtime: BaseRuntime) -> List[str]:
    command = agent.target[AgentCommandField].value
    if command:
        return list(command)
    entry_point = agent.target[AgentEntryPointField].value
    assert entry_point is not None, "validated by the target"
    module, _, function = entry_point.partition(":")
    if not function:
        return [_python(agent, runtime), "-m", module]
    return [
        _python(agent, runtime),
        "-c",
        f"import sys, {module} as entry; sys.exit(entry.{function}())",
    ]


def _site_packages(runtime: BaseRuntime) -> str:
    return f"/{PACKAGES_PREFIX}/lib/python{runtime.major_minor}/site-packages"


def _cuda_library_path(cuda: ImageCuda, runtime: BaseRuntime) -> Dict[str, str]:
    """The nvidia-* wheels' library directories, for native code that links CUDA's libraries
    by name (`ctypes.CDLL("libcudart.so.12")`); torch finds them itself. Then where the NVIDIA
    Container Toolkit may mount the driver, as nvidia/cuda images say."""
    if not cuda.library_dirs:
        return {}
    directories = [f"{_site_packages(runtime)}/{path}" for path in cuda.library_dirs]
    directories += ["/usr/local/nvidia/lib", "/usr/local/nvidia/lib64"]
    return {"LD_LIBRARY_PATH": ":".join(directories)}


def _image_config(agent: Agent, chosen: PlatformBase) -> Dict[str, Any]:
    target, runtime, cuda = agent.target, chosen.runtime, chosen.cuda
    cuda_labels: Mapping[str, str] = FrozenDict()
    cuda_env: Mapping[str, str] = FrozenDict()
    if cuda:
        cuda_labels, cuda_env = cuda.labels, cuda.env
    labels: Dict[str, str] = {
        **agent.config.labels(),
        "ai-agent.target": str(agent.address),
        "ai-agent.accelerator": str(target[AgentAcceleratorField].value),
        "ai-agent.resolve": agent.resolve,
        "ai-agent.lock.sha256": agent.lockfile_sha256,
        "ai-agent.base": str(chosen.base_address),
        # The table's base is named only where it is the base.
        **{
            name: value
            for name, value in cuda_labels.items()
            if name != "ai-agent.cuda.base" or chosen.table_base
        },
        **dict(target[AgentLabelsField].value or {}),
    }
    config: Dict[str, Any] = {
        "Env": {
            "PATH": f"/{PACKAGES_PREFIX}/bin:${{PATH}}",
            # The site-packages too, for commands that name the base's interpreter itself.
            "PYTHONPATH": f"/{APP_DIR}:{_site_packages(runtime)}",
            # Bytecode is compiled at build time; nothing may be written at run time.
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONUNBUFFERED": "1",
            **cuda_env,
            **(_cuda_library_path(cuda, runtime) if cuda else {}),
            **dict(agent.env),
        },
        "Entrypoint": _entrypoint(agent, runtime),
        "Cmd": [],
        "User": target[AgentUserField].value,
        "WorkingDir": target[AgentWorkdirField].value,
        "Labels": labels,
        "StopSignal": "SIGTERM",
    }
    if agent.ports:
        config["ExposedPorts"] = list(agent.ports)
    if agent.config.healthcheck:
        config["Healthcheck"] = agent.config.healthcheck.to_oci()
    return config


def _check_overlaps(address: Address, layers: Tuple[LayerInfo, ...]) -> None:
    """Two layers writing one path would silently shadow each other: refuse it."""
    writer: Dict[str, LayerInfo] = {}
    for layer in layers:
        for path in layer.paths:
            earlier = writer.setdefault(path, layer)
            if earlier is not layer:
                raise InvalidAgent(
                    f"{address}: two layers write /{path}: the {earlier.kind} layer"
                    f" ({earlier.holds}) and the {layer.kind} layer ({layer.holds}). Move one:"
                    " e.g. set `weights_dir` to a directory the code does not use, or remove the"
                    " duplicate file from `dependencies` or `weights`."
                )


async def _weight_layer_requests(agent: Agent, threshold: int) -> List[FileLayerRequest]:
    """One layer per weight file of `threshold` bytes or more, one for the smaller ones."""
    # Sizes come from the digest's entries, without reading the files.
    entries = await Get(DigestEntries, Digest, agent.weights)
    sizes = {
        entry.path: entry.file_digest.serialized_bytes_length
        for entry in entries
        if isinstance(entry, FileEntry)
    }
    big = [weight for weight in agent.weight_files if sizes[weight.source] >= threshold]
    small = [weight for weight in agent.weight_files if sizes[weight.source] < threshold]
    groups = [(weight,) for weight in big] + ([tuple(small)] if small else [])
    inputs = await MultiGet(
        Get(Digest, DigestSubset(agent.weights, PathGlobs([weight.source for weight in group])))
        for group in groups
    )
    requests = []
    for group, group_inputs in zip(groups, inputs):
        files = [(weight.image_path, weight.source) for weight in group]
        key = hashlib.sha256(json.dumps(files).encode()).hexdigest()[:16]
        requests.append(
            FileLayerRequest(
                owner=f"{agent.address} (field `weights`)",
                directory=f"layers/weights-{key}",
                kind="weights",
                files=group,
                inputs=group_inputs,
                compression="none",
                # A big file's layer is the file with a few KiB around it: never copied.
                recipe=group[0] in big,
            )
        )
    return requests


async def _own_layers(agent: Agent, subsystem: AiAgentSubsystem) -> List[BuiltLayers]:
    """The layers of the agent's own files, the same on every platform, all built at once, in
    image order: weights, code, config."""
    owner = str(agent.address)
    requests = await _weight_layer_requests(agent, subsystem.weight_layer_threshold_mib * MIB)
    if agent.code.files:
        requests.append(
            FileLayerRequest(
                owner=owner,
                directory="layers/code",
                kind="code",
                files=tuple(ImageFile(path, f"{APP_DIR}/{path}") for path in agent.code.files),
                inputs=agent.code.digest,
                compression="gzip",
                root=APP_DIR,
            )
        )
    requests.append(
        FileLayerRequest(
            owner=owner,
            directory="layers/config",
            kind="config",
            files=(ImageFile(agent.config_path, CONFIG_PATH),),
            inputs=agent.config_file,
            compression="gzip",
        )
    )
    return list(await MultiGet(Get(BuiltLayers, FileLayerRequest, request) for request in requests))


@dataclass(frozen=True)
class _BuiltPlatform:
    image: PlatformImage
    layers: Tuple[LayerInfo, ...]
    chosen: PlatformBase
    # The steps behind the base and the layers, the shared ones included.
    steps: Tuple[BuildStep, ...]


async def _platform_images(
    agent: Agent, chosen: Sequence[PlatformBase], own: List[BuiltLayers]
) -> List[_BuiltPlatform]:
    """Each platform's image: its third-party layers (all platforms' built at once), then the
    agent's own layers, on its base."""
    packages: Sequence[Optional[BuiltLayers]] = [None] * len(chosen)
    if agent.requirements:
        packages = await MultiGet(
            Get(
                BuiltLayers,
                ThirdPartyLayersRequest(
                    plan=platform.plan_request, interpreter=platform.runtime.interpreter
                ),
            )
            for platform in chosen
        )
    built_platforms = []
    for platform, third_party in zip(chosen, packages):
        built = ([third_party] if third_party else []) + own
        layers = tuple(layer for group in built for layer in group.layers)
        _check_overlaps(agent.address, layers)
        inputs = await Get(Digest, MergeDigests(group.digest for group in built))
        image = PlatformImage.create(
            base=platform.base,
            inputs=inputs,
            layer_descriptors=tuple(layer.descriptor_path for layer in layers),
            config=_image_config(agent, platform),
        )
        steps = (*platform.base.steps, *(step for group in built for step in group.steps))
        built_platforms.append(_BuiltPlatform(image, layers, platform, steps))
    return built_platforms


async def _lock_hashes(agent: Agent, bases: Sequence[Address]) -> Dict[str, str]:
    """The sha256 of each lock the image is built from: the Python resolve's and the bases'."""
    hashes = {agent.lockfile_path: agent.lockfile_sha256}
    wrapped_bases = await MultiGet(
        Get(
            WrappedTarget,
            WrappedTargetRequest(base, description_of_origin=f"the base of {agent.address}"),
        )
        for base in bases
    )
    for wrapped in wrapped_bases:
        if not wrapped.target.has_field(BaseImageLockfileField):
            continue
        base_lock = wrapped.target[BaseImageLockfileField].value_or_default()
        contents = await Get(DigestContents, PathGlobs([base_lock]))
        for content in contents:
            hashes[content.path] = hashlib.sha256(content.content).hexdigest()
    return hashes


def _metadata(
    agent: Agent,
    archive: ImageArchiveRequest,
    subsystem: AiAgentSubsystem,
    description: ImageDescription,
    built: Sequence[_BuiltPlatform],
    lock_hashes: Mapping[str, str],
) -> Dict[str, Any]:
    """The JSON beside the image in `dist/`: the image's own metadata (`description`) with what
    only the target knows: where it came from, its layers' kinds and contents, its locks."""
    described = thawed(description.metadata)
    return {
        "target": str(agent.address),
        "archive": archive.output_path if subsystem.archives else None,
        "layout": layout_metadata(archive.tags) if subsystem.layouts else None,
        "mediaType": described["mediaType"],
        "digest": description.manifest_digest,
        "size": described["size"],
        "repository": agent_repository(agent.target),
        "tags": list(agent_image_tags(agent.target)),
        "accelerator": agent.target[AgentAcceleratorField].value,
        "exposedPorts": list(agent.ports),
        "docker": described["docker"],
        "locks": [{"path": path, "sha256": sha} for path, sha in sorted(lock_hashes.items())],
        "images": [
            {
                "platform": image_metadata["platform"],
                "manifest": image_metadata["manifest"],
                "config": image_metadata["config"],
                "imageID": image_metadata["imageID"],
                "base": {
                    "target": str(platform.chosen.base.address),
                    "layers": [
                        {"digest": layer.digest, "size": layer.size, "mediaType": layer.media_type}
                        for layer in platform.chosen.base.layers
                    ],
                },
                "layers": [
                    {"kind": "base", "holds": str(platform.chosen.base.address), **entry}
                    for entry in image_metadata["layers"][: len(platform.chosen.base.layers)]
                ]
                + [layer.to_json() for layer in platform.layers],
            }
            for platform, image_metadata in zip(built, described["images"])
        ],
    }


async def _agent_files(agent: Agent) -> Tuple[ImageFileFacts, ...]:
    """The agent's own files in its image, with their sha256 and size, for the SBOM."""
    weights = await file_facts(
        "weights",
        agent.weights,
        tuple((weight.source, weight.image_path) for weight in agent.weight_files),
    )
    code = await file_facts(
        "code", agent.code.digest, tuple((path, f"{APP_DIR}/{path}") for path in agent.code.files)
    )
    config = await file_facts("config", agent.config_file, ((agent.config_path, CONFIG_PATH),))
    return (*weights, *code, *config)


async def _sbom_request(
    agent: Agent,
    archive: ImageArchiveRequest,
    description: ImageDescription,
    built: Sequence[_BuiltPlatform],
    lock_hashes: Mapping[str, str],
) -> SbomRequest:
    described = thawed(description.metadata)
    files = await _agent_files(agent)
    plans: Sequence[Optional[WheelPlan]] = [None] * len(built)
    if agent.requirements:
        plans = await MultiGet(
            Get(WheelPlan, WheelPlanRequest, platform.chosen.plan_request) for platform in built
        )
    images = []
    for platform, image_metadata, plan in zip(built, described["images"], plans):
        base = platform.chosen.base
        images.append(
            SbomImage(
                platform=image_metadata["platform"],
                manifest=image_metadata["manifest"]["digest"],
                config=image_metadata["config"]["digest"],
                base=base,
                packages=base if base.packages_file else None,
                wheels=plan.wheels if plan else (),
                layers=platform.image.inputs,
                installed=installed_files(platform.image),
                files=files,
            )
        )
    return SbomRequest(
        owner=str(agent.address),
        output_path=archive.output_path,
        repository=agent_repository(agent.target),
        tags=agent_image_tags(agent.target),
        digest=description.manifest_digest,
        images=tuple(images),
        locks=FrozenDict(lock_hashes),
    )


@rule(desc="Building an agent image", level=LogLevel.DEBUG)
async def build_agent_image(request: AgentImageRequest, subsystem: AiAgentSubsystem) -> AgentImage:
    agent = await Get(Agent, AgentRequest(request.address))
    # Bases, Pythons and CUDA first: a bad `base`, `resolve` or `accelerator` fails before any
    # layer of the agent's own is built.
    chosen = await MultiGet(
        Get(PlatformBase, PlatformBaseRequest(agent, platform))
        for platform in agent.target[AgentPlatformsField].value
    )
    own = await _own_layers(agent, subsystem)
    built = await _platform_images(agent, chosen, own)
    lock_hashes = await _lock_hashes(
        agent, sorted({platform.chosen.base.address for platform in built})
    )
    archive = ImageArchiveRequest(
        owner=str(agent.address),
        tags=agent_image_names(agent.target),
        images=tuple(platform.image for platform in built),
        output_path=request.output_path,
    )
    description = await Get(ImageDescription, ImageArchiveRequest, archive)
    metadata = _metadata(agent, archive, subsystem, description, built, lock_hashes)
    steps = (*(step for platform in built for step in platform.steps), description.step)
    sbom = await _sbom_request(agent, archive, description, built, lock_hashes)
    return AgentImage(archive, frozen(metadata), tuple(dict.fromkeys(steps)), sbom)


def rules():
    return collect_rules()
