"""An `ai_agent` target as an image archive: its layers stacked on the base in the order of how
often they change (base, big packages, packages, weights, code, config), the image config that
runs the entry point, and `./pants package`, which writes the archive and a JSON describing it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from pants.backend.python.subsystems.setup import PythonSetup
from pants.backend.python.util_rules.interpreter_constraints import InterpreterConstraints
from pants.core.goals.package import (
    BuiltPackage,
    OutputPathField,
    PackageFieldSet,
)
from pants.core.util_rules.distdir import DistDir
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
from pants.engine.target import AllTargets, WrappedTarget, WrappedTargetRequest
from pants.engine.unions import UnionRule
from pants.util.logging import LogLevel

from ai_agent.agent import Agent, AgentRequest, InvalidAgent
from ai_agent.base_images import BaseImageRequest
from ai_agent.builder import BuildStep
from ai_agent.cuda.lock import LockedCuda
from ai_agent.cuda.select import CudaChoice, select_cuda
from ai_agent.cuda.table import BASE, DEFAULT_TABLE, CudaProblem, merge_table
from ai_agent.image import (
    BaseImage,
    ImageArchiveRequest,
    ImageDescription,
    PlatformImage,
    checked_output_path,
    exported_package,
    layout_path,
)
from ai_agent.layers import (
    APP_DIR,
    CONFIG_PATH,
    PACKAGES_PREFIX,
    BuiltLayers,
    FileLayerRequest,
    LayerInfo,
    ThirdPartyLayersRequest,
    WheelPlan,
    WheelPlanRequest,
)
from ai_agent.oci.name import Reference
from ai_agent.subsystem import AiAgentSubsystem
from ai_agent.target_types import (
    AgentAcceleratorField,
    AgentCommandField,
    AgentConfigSourceField,
    AgentCudaFlavourField,
    AgentEntryPointField,
    AgentGpuArchsField,
    AgentImageTagsField,
    AgentLabelsField,
    AgentPlatformsField,
    AgentRepositoryField,
    AgentUserField,
    AgentWorkdirField,
    BaseImageLockfileField,
    OciBaseImageField,
    OciBaseTarget,
)

logger = logging.getLogger(__name__)

MIB = 1 << 20
# The newest glibc of the CUDA table's Ubuntu bases (24.04), to read a lock before a base is known.
_CUDA_TABLE_GLIBC = "2.39"
_PYTHON_PACKAGE = re.compile(r"^python3\.(\d+)-minimal=(3\.\d+\.\d+)")
_LIBC = re.compile(r"^libc6=(\d+\.\d+)")
# A registry base says nothing of its glibc; manylinux2014's floor refuses no wheel it can run.
_UNKNOWN_GLIBC = "2.17"
_UBUNTU_GLIBC = {"20.04": "2.31", "22.04": "2.35", "24.04": "2.39"}


def _registry_glibc(base_config: Dict[str, Any]) -> str:
    """A registry base's glibc, from the Ubuntu release its labels name (the `nvidia/cuda`
    images inherit them from `ubuntu`); else manylinux2014's floor, which refuses no wheel the
    base can run but may refuse a newer manylinux wheel it could."""
    labels = base_config.get("config", {}).get("Labels") or {}
    if labels.get("org.opencontainers.image.ref.name") == "ubuntu":
        return _UBUNTU_GLIBC.get(labels.get("org.opencontainers.image.version", ""), _UNKNOWN_GLIBC)
    return _UNKNOWN_GLIBC


@dataclass(frozen=True)
class BaseRuntime:
    """The base's Python, as wheels and bytecode must target it."""

    python_version: str
    interpreter: str
    glibc: str

    @classmethod
    def of(cls, base: BaseImage, base_config: Dict[str, Any]) -> Optional[BaseRuntime]:
        python = next(filter(None, map(_PYTHON_PACKAGE.match, base.packages)), None)
        libc = next(filter(None, map(_LIBC.match, base.packages)), None)
        if python:
            glibc = libc.group(1) if libc else _UNKNOWN_GLIBC
            return cls(python.group(2), f"/usr/bin/python3.{python.group(1)}", glibc)
        # Official `python` images install from source into /usr/local and say so in Env.
        env = dict(item.split("=", 1) for item in base_config.get("config", {}).get("Env") or ())
        version = env.get("PYTHON_VERSION", "")
        if re.match(r"^3\.\d+\.\d+$", version):
            minor = ".".join(version.split(".")[:2])
            return cls(version, f"/usr/local/bin/python{minor}", _registry_glibc(base_config))
        return None

    @property
    def major_minor(self) -> str:
        return ".".join(self.python_version.split(".")[:2])


@dataclass(frozen=True)
class CudaTable:
    """The built-in CUDA base table with `[ai-agents].cuda_bases` applied."""

    entries_json: str

    @classmethod
    def create(cls, overrides: Mapping[str, str]) -> CudaTable:
        try:
            merged = merge_table(DEFAULT_TABLE, overrides)
        except CudaProblem as problem:
            raise InvalidAgent(f"`[ai-agents].cuda_bases`: {problem}") from None
        return cls(json.dumps(merged, sort_keys=True))

    def entries(self) -> Dict[str, Dict[str, str]]:
        return dict(json.loads(self.entries_json))


@dataclass(frozen=True)
class AgentImageRequest:
    address: Address
    output_path: str


@dataclass(frozen=True)
class AgentImage:
    """An agent's image: `archive` asks for its archive (built only where one is needed),
    `metadata_json` is what the JSON beside it says."""

    archive: ImageArchiveRequest
    metadata_json: str
    # Every build step behind the image's layers and description, once each.
    steps: Tuple[BuildStep, ...]


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


def _cuda_library_path(cuda: CudaChoice, runtime: BaseRuntime) -> Dict[str, str]:
    """The nvidia-* wheels' library directories, for native code that links CUDA's libraries
    by name (`ctypes.CDLL("libcudart.so.12")`); torch finds them itself. Then where the NVIDIA
    Container Toolkit may mount the driver, as nvidia/cuda images say."""
    if not cuda.library_dirs:
        return {}
    directories = [f"{_site_packages(runtime)}/{path}" for path in cuda.library_dirs]
    directories += ["/usr/local/nvidia/lib", "/usr/local/nvidia/lib64"]
    return {"LD_LIBRARY_PATH": ":".join(directories)}


def _image_config(
    agent: Agent,
    base: Address,
    runtime: BaseRuntime,
    cuda: Optional[CudaChoice],
    table_base: bool,
) -> Dict:
    target = agent.target
    labels: Dict[str, str] = {
        **agent.config.labels(),
        "ai-agent.target": str(agent.address),
        "ai-agent.accelerator": str(target[AgentAcceleratorField].value),
        "ai-agent.resolve": agent.resolve,
        "ai-agent.lock.sha256": agent.lockfile_sha256,
        "ai-agent.base": str(base),
        # The table's base is named only where it is the base.
        **{
            name: value
            for name, value in (cuda.labels if cuda else {}).items()
            if name != "ai-agent.cuda.base" or table_base
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
            **(cuda.env if cuda else {}),
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


async def _weight_layers(agent: Agent, threshold: int) -> List[BuiltLayers]:
    # Sizes come from the digest's entries, without reading the files.
    entries = await Get(DigestEntries, Digest, agent.weights)
    sizes = {
        entry.path: entry.file_digest.serialized_bytes_length
        for entry in entries
        if isinstance(entry, FileEntry)
    }
    big = [weight for weight in agent.weight_files if sizes[weight.source] >= threshold]
    small = [weight for weight in agent.weight_files if sizes[weight.source] < threshold]
    requests = []
    for group in [[weight] for weight in big] + ([small] if small else []):
        files = tuple((weight.image_path, weight.source, weight.sha256) for weight in group)
        inputs = await Get(
            Digest, DigestSubset(agent.weights, PathGlobs([weight.source for weight in group]))
        )
        key = hashlib.sha256(json.dumps(files).encode()).hexdigest()[:16]
        requests.append(
            FileLayerRequest(
                owner=(
                    f"{agent.address} (field `weights`; a `sha256` in {agent.config_path}"
                    " `models` must be the file's: fix the file or the pin)"
                ),
                directory=f"layers/weights-{key}",
                kind="weights",
                files=files,
                inputs=inputs,
                compression="none",
            )
        )
    return list(await MultiGet(Get(BuiltLayers, FileLayerRequest, request) for request in requests))


def _plan_request(agent: Agent, platform: str, python_version: str, glibc: str) -> WheelPlanRequest:
    return WheelPlanRequest(
        owner=str(agent.address),
        lockfile_path=agent.lockfile_path,
        lockfile=agent.lockfile,
        requirements=agent.requirements,
        python_version=python_version,
        platform=platform,
        glibc=glibc,
    )


async def _choose_cuda(
    agent: Agent, plan_request: WheelPlanRequest, table: CudaTable, warn: bool = True
) -> CudaChoice:
    """Decide the CUDA of an image from the wheels locked for it, or refuse with the fix."""
    plan = await Get(WheelPlan, WheelPlanRequest, plan_request)
    target = agent.target
    try:
        choice = select_cuda(
            target[AgentAcceleratorField].value,
            LockedCuda.analyse(plan.wheels),
            target[AgentCudaFlavourField].value,
            target[AgentGpuArchsField].value or (),
            table.entries(),
        )
    except CudaProblem as problem:
        raise InvalidAgent(f"{agent.address}: {problem}") from None
    if warn:
        for warning in choice.warnings:
            logger.warning(f"{agent.address}: {warning}")
    return choice


async def _table_base(reference: str) -> Optional[Address]:
    """The `oci_base` target that pins the CUDA table's image (tag-for-tag, references compared
    normalised: `nvidia/cuda:…` is `docker.io/nvidia/cuda:…`), if one does."""
    wanted = Reference.parse(reference)
    all_targets = await Get(AllTargets)
    owners = sorted(
        target.address
        for target in all_targets
        if isinstance(target, OciBaseTarget)
        and Reference.parse(target[OciBaseImageField].value) == wanted
    )
    return owners[0] if owners else None


async def _cuda_agent_base(
    agent: Agent, platform: str, python_setup: PythonSetup, table: CudaTable
) -> Tuple[Address, Optional[CudaChoice]]:
    """The base of a CUDA agent without `base`. When its wheels carry CUDA (nvidia-* wheels),
    the default Python base: no nvidia/cuda image is needed, and CUDA is chosen for that base's
    Python and glibc once it is read. Otherwise the `oci_base` pinning the CUDA table's image for
    what the lock needs, with the CUDA chosen for the table's glibc."""
    constraints = InterpreterConstraints(agent.interpreter_constraints)
    python = constraints.minimum_python_version(python_setup.interpreter_versions_universe)
    request = _plan_request(agent, platform, python or "3.11", _CUDA_TABLE_GLIBC)
    cuda = await _choose_cuda(agent, request, table, warn=False)
    if cuda.wheels_carry_cuda:
        if agent.base is None:
            raise InvalidAgent(
                f"{agent.address}: no base image: its lock ships CUDA's libraries as nvidia-*"
                " wheels, so it builds on a Python base with the NVIDIA settings: set the `base`"
                ' field (e.g. base="//agents/base:bookworm-python") or'
                " `[ai-agents].default_base`."
            )
        return agent.base, None
    for warning in cuda.warnings:
        logger.warning(f"{agent.address}: {warning}")
    owner = await _table_base(cuda.base_reference)
    if owner is None:
        raise InvalidAgent(
            f"{agent.address}: no CUDA base: the agent needs CUDA {cuda.version}'s libraries"
            f" (the `{cuda.flavour}` flavour, from {cuda.origin}) and no locked wheel ships"
            " them. Either lock"
            f" them as wheels (the hermetic route): add {_quoted(cuda.libraries_to_lock)} to the"
            " resolve's requirements and regenerate the lockfile; or set `base` to an image"
            " with CUDA and the resolve's Python; or pin the CUDA table's image with"
            f' `oci_base(name="cuda", image="{cuda.base_reference}")` (through'
            " `[ai-agents].cuda_bases`, a mirror that adds Python) and run"
            " `./pants generate-lockfiles --resolve=cuda`."
        )
    return owner, cuda


def _quoted(requirements: Sequence[str]) -> str:
    return ", ".join(f"`{requirement}`" for requirement in requirements)


@dataclass(frozen=True)
class _PlatformBase:
    """One platform's base, its Python and CUDA: all checked before any layer is built."""

    base: BaseImage
    base_address: Address
    runtime: BaseRuntime
    cuda: Optional[CudaChoice]
    # Whether the base is the CUDA table's image (labelled as such).
    table_base: bool
    plan_request: WheelPlanRequest


async def _platform_base(
    agent: Agent, platform: str, python_setup: PythonSetup, table: CudaTable
) -> _PlatformBase:
    constraints = InterpreterConstraints(agent.interpreter_constraints)
    cuda: Optional[CudaChoice] = None
    base_address = agent.base
    if agent.target[AgentAcceleratorField].value != "cpu" and not agent.base_from_field:
        base_address, cuda = await _cuda_agent_base(agent, platform, python_setup, table)
    assert base_address is not None  # a CPU agent without one is refused when it is read
    table_base = cuda is not None
    base = await Get(BaseImage, BaseImageRequest(base_address, platform))
    (base_config_file,) = await Get(DigestContents, Digest, base.config)
    runtime = BaseRuntime.of(base, json.loads(base_config_file.content))
    if runtime is None:
        raise InvalidAgent(
            f"{agent.address}: field `base`: cannot tell which Python {base_address} runs (a"
            " `debian_base` with python3.X-minimal, or a registry image whose Env sets"
            " PYTHON_VERSION, like the official python images). Use such a base."
            + (
                " `nvidia/cuda` images carry no Python: point `[ai-agents].cuda_bases` at a"
                " CUDA image that adds the resolve's CPython (and sets PYTHON_VERSION), or lock"
                " CUDA's libraries as nvidia-* wheels so that the agent builds on a Python base."
                if table_base
                else ""
            )
        )
    if not constraints.contains(
        InterpreterConstraints([f"CPython=={runtime.python_version}"]),
        python_setup.interpreter_versions_universe,
    ):
        raise InvalidAgent(
            f"{agent.address}: field `resolve`: the resolve `{agent.resolve}` is for"
            f" {' or '.join(agent.interpreter_constraints)}, but the base {base_address} runs"
            f" CPython {runtime.python_version}. Use a resolve whose"
            " `[python].resolves_to_interpreter_constraints` is"
            f" `CPython=={runtime.major_minor}.*`, or a base with a matching Python."
        )
    plan_request = _plan_request(agent, platform, runtime.python_version, runtime.glibc)
    if cuda is None and agent.target[AgentAcceleratorField].value != "cpu":
        cuda = await _choose_cuda(agent, plan_request, table)
        if base.packages and cuda.flavour != BASE:
            # A Debian base carries no CUDA: only the "pip ships CUDA" route works on it.
            raise InvalidAgent(
                f"{agent.address}: field `base`: {base_address} has no CUDA libraries, but"
                f" the agent needs the `{cuda.flavour}` flavour (nothing in the lock ships"
                " them as `nvidia-*` wheels). Lock the CUDA wheels"
                f" ({_quoted(cuda.libraries_to_lock or ('nvidia-cuda-runtime-cu12',))}), or"
                " remove `base` so that the CUDA table's"
                f" `{cuda.base_reference}` is used."
            )
    return _PlatformBase(base, base_address, runtime, cuda, table_base, plan_request)


@dataclass(frozen=True)
class _BuiltPlatform:
    image: PlatformImage
    layers: Tuple[LayerInfo, ...]
    base: BaseImage
    # The steps behind the base and the layers, the shared ones included.
    steps: Tuple[BuildStep, ...]


async def _platform_image(
    agent: Agent, chosen: _PlatformBase, shared: List[BuiltLayers]
) -> _BuiltPlatform:
    packages: List[BuiltLayers] = []
    if agent.requirements:
        packages.append(
            await Get(
                BuiltLayers,
                ThirdPartyLayersRequest(
                    plan=chosen.plan_request, interpreter=chosen.runtime.interpreter
                ),
            )
        )
    built = packages + shared
    layers = tuple(layer for group in built for layer in group.layers)
    _check_overlaps(agent.address, layers)
    inputs = await Get(Digest, MergeDigests(group.digest for group in built))
    image = PlatformImage.create(
        base=chosen.base,
        inputs=inputs,
        layer_descriptors=tuple(layer.descriptor_path for layer in layers),
        config=_image_config(
            agent, chosen.base_address, chosen.runtime, chosen.cuda, chosen.table_base
        ),
    )
    steps = (*chosen.base.steps, *(step for group in built for step in group.steps))
    return _BuiltPlatform(image, layers, chosen.base, steps)


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


@rule(desc="Building an agent image", level=LogLevel.DEBUG)
async def build_agent_image(
    request: AgentImageRequest, subsystem: AiAgentSubsystem, python_setup: PythonSetup
) -> AgentImage:
    agent = await Get(Agent, AgentRequest(request.address))
    owner = str(agent.address)
    table = CudaTable.create(subsystem.cuda_bases)
    platforms = agent.target[AgentPlatformsField].value
    # Bases, Pythons and CUDA first: a bad `base`, `resolve` or `accelerator` fails before any
    # layer of the agent's own is built.
    chosen = [await _platform_base(agent, platform, python_setup, table) for platform in platforms]
    # Platform-independent layers, in order: weights, code, config.
    shared = await _weight_layers(agent, subsystem.weight_layer_threshold_mib * MIB)
    if agent.code.files:
        shared.append(
            await Get(
                BuiltLayers,
                FileLayerRequest(
                    owner=owner,
                    directory="layers/code",
                    kind="code",
                    files=tuple((f"{APP_DIR}/{path}", path, None) for path in agent.code.files),
                    inputs=agent.code.digest,
                    compression="gzip",
                    root=APP_DIR,
                ),
            )
        )
    shared.append(
        await Get(
            BuiltLayers,
            FileLayerRequest(
                owner=owner,
                directory="layers/config",
                kind="config",
                files=((CONFIG_PATH, agent.config_path, None),),
                inputs=agent.config_file,
                compression="gzip",
            ),
        )
    )
    built = [await _platform_image(agent, platform_base, shared) for platform_base in chosen]
    lock_hashes = await _lock_hashes(agent, sorted({platform.base.address for platform in built}))
    repository = agent.target[AgentRepositoryField].value or agent.address.target_name
    tags = agent.target[AgentImageTagsField].value
    accelerator = agent.target[AgentAcceleratorField].value
    if tags == AgentImageTagsField.default and accelerator != "cpu":
        # The variants of `accelerator=parametrize(...)` must not load as the same image.
        tags = (f"latest-{accelerator}",)
    archive = ImageArchiveRequest(
        owner=owner,
        tags=tuple(f"{repository}:{tag}" for tag in tags),
        images=tuple(platform.image for platform in built),
        output_path=request.output_path,
    )
    description = await Get(ImageDescription, ImageArchiveRequest, archive)
    written_metadata = json.loads(description.metadata_json)
    metadata = {
        "target": owner,
        "archive": archive.output_path if subsystem.archives else None,
        "layout": layout_path(archive.output_path),
        "mediaType": written_metadata["mediaType"],
        "digest": description.manifest_digest,
        "size": written_metadata["size"],
        "repository": repository,
        "tags": list(tags),
        "accelerator": agent.target[AgentAcceleratorField].value,
        "exposedPorts": list(agent.ports),
        "docker": written_metadata["docker"],
        "locks": [{"path": path, "sha256": sha} for path, sha in sorted(lock_hashes.items())],
        "images": [
            {
                "platform": image_metadata["platform"],
                "manifest": image_metadata["manifest"],
                "config": image_metadata["config"],
                "imageID": image_metadata["imageID"],
                "base": {
                    "target": str(platform.base.address),
                    "layers": [
                        {"digest": layer.digest, "size": layer.size, "mediaType": layer.media_type}
                        for layer in platform.base.layers
                    ],
                },
                "layers": [
                    {"kind": "base", "holds": str(platform.base.address), **entry}
                    for entry in image_metadata["layers"][: len(platform.base.layers)]
                ]
                + [layer.to_json() for layer in platform.layers],
            }
            for platform, image_metadata in zip(built, written_metadata["images"])
        ],
    }
    metadata_json = json.dumps(metadata, indent=2, sort_keys=True) + "\n"
    steps = (*(step for platform in built for step in platform.steps), description.step)
    return AgentImage(
        archive=archive, metadata_json=metadata_json, steps=tuple(dict.fromkeys(steps))
    )


@dataclass(frozen=True)
class AgentPackageFieldSet(PackageFieldSet):
    required_fields = (AgentConfigSourceField,)

    output_path: OutputPathField


@rule(desc="Packaging an ai_agent image", level=LogLevel.DEBUG)
async def package_agent(
    field_set: AgentPackageFieldSet, dist_dir: DistDir, subsystem: AiAgentSubsystem
) -> BuiltPackage:
    output_path = await checked_output_path(field_set.address, field_set.output_path)
    image = await Get(AgentImage, AgentImageRequest(field_set.address, output_path))
    metadata = json.loads(image.metadata_json)
    layers = metadata["images"][0]["layers"]
    size = sum(layer["size"] for layer in layers)
    tags = ", ".join(f"{metadata['repository']}:{tag}" for tag in metadata["tags"])
    return await exported_package(
        image.archive,
        image.metadata_json,
        f"{field_set.address}: {metadata['digest']} ({len(layers)} layers, {size / MIB:.1f} MiB,"
        f" tagged {tags}; details in {dist_dir.relpath / output_path}.json)",
        dist_dir,
        subsystem,
    )


def rules():
    return [*collect_rules(), UnionRule(PackageFieldSet, AgentPackageFieldSet)]
