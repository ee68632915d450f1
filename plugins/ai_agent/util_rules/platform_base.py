"""One platform's base for an agent, with its Python and its CUDA, all decided and checked before
any layer of the agent's own is built: the `base` field (or the default), else for a CUDA agent
the default Python base when the lock ships CUDA as `nvidia-*` wheels, else the CUDA table's
image; then the base's Python read from its packages or config, matched against the resolve.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence, Tuple

from pants.backend.python.subsystems.setup import PythonSetup
from pants.backend.python.util_rules.interpreter_constraints import InterpreterConstraints
from pants.engine.addresses import Address
from pants.engine.fs import (
    Digest,
    DigestContents,
)
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.engine.target import AllTargets
from pants.util.frozendict import FrozenDict
from pants.util.logging import LogLevel

from ai_agent.cuda.lock import LockedCuda
from ai_agent.cuda.select import CudaChoice, select_cuda
from ai_agent.cuda.table import BASE, DEFAULT_TABLE, CudaProblem, merge_table
from ai_agent.oci.name import Reference
from ai_agent.subsystems import AiAgentSubsystem
from ai_agent.target_types import (
    AgentAcceleratorField,
    AgentCudaFlavourField,
    AgentGpuArchsField,
    OciBaseImageField,
    OciBaseTarget,
)
from ai_agent.util_rules.agent import Agent, InvalidAgent
from ai_agent.util_rules.base_image import BaseImageRequest
from ai_agent.util_rules.builder import LibraryImageBuilder, WheelTarget
from ai_agent.util_rules.frozen import frozen
from ai_agent.util_rules.image import BaseImage
from ai_agent.util_rules.wheel_layers import WheelPlan, WheelPlanRequest

logger = logging.getLogger(__name__)


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

    entries: FrozenDict[str, FrozenDict[str, str]]


class InvalidCudaBases(Exception):
    """`[ai-agents].cuda_bases` does not fit the CUDA table."""


@rule
def cuda_table(subsystem: AiAgentSubsystem) -> CudaTable:
    try:
        merged = merge_table(DEFAULT_TABLE, subsystem.cuda_bases)
    except CudaProblem as problem:
        raise InvalidCudaBases(f"`[ai-agents].cuda_bases`: {problem}") from None
    return CudaTable(frozen(merged))


def _wheel_plan_request(
    agent: Agent, platform: str, python_version: str, glibc: str
) -> WheelPlanRequest:
    target = WheelTarget(agent.lockfile_path, agent.requirements, python_version, platform, glibc)
    return WheelPlanRequest(str(agent.address), agent.lockfile, target)


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
            table.entries,
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
    request = _wheel_plan_request(agent, platform, python or "3.11", _CUDA_TABLE_GLIBC)
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
class ImageCuda:
    """What the CUDA chosen for an image puts in its config."""

    env: FrozenDict[str, str]
    labels: FrozenDict[str, str]
    # The nvidia-* wheels' library directories, relative to site-packages.
    library_dirs: Tuple[str, ...]

    @classmethod
    def of(cls, choice: CudaChoice) -> ImageCuda:
        return cls(FrozenDict(choice.env), FrozenDict(choice.labels), choice.library_dirs)


@dataclass(frozen=True)
class PlatformBaseRequest:
    agent: Agent
    platform: str


@dataclass(frozen=True)
class PlatformBase:
    """One platform's base, its Python and CUDA: all checked before any layer is built."""

    base: BaseImage
    base_address: Address
    runtime: BaseRuntime
    cuda: Optional[ImageCuda]
    # Whether the base is the CUDA table's image (labelled as such).
    table_base: bool
    plan_request: WheelPlanRequest


async def _base_runtime(agent: Agent, base: BaseImage, table_base: bool) -> BaseRuntime:
    """The base's Python, refused (with what to do) where it cannot be told."""
    (base_config_file,) = await Get(DigestContents, Digest, base.config)
    runtime = BaseRuntime.of(base, json.loads(base_config_file.content))
    if runtime is None:
        raise InvalidAgent(
            f"{agent.address}: field `base`: cannot tell which Python {base.address} runs (a"
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
    return runtime


def _check_resolve_runs_on(
    agent: Agent, base: Address, runtime: BaseRuntime, python_setup: PythonSetup
) -> None:
    constraints = InterpreterConstraints(agent.interpreter_constraints)
    if not constraints.contains(
        InterpreterConstraints([f"CPython=={runtime.python_version}"]),
        python_setup.interpreter_versions_universe,
    ):
        raise InvalidAgent(
            f"{agent.address}: field `resolve`: the resolve `{agent.resolve}` is for"
            f" {' or '.join(agent.interpreter_constraints)}, but the base {base} runs"
            f" CPython {runtime.python_version}. Use a resolve whose"
            " `[python].resolves_to_interpreter_constraints` is"
            f" `CPython=={runtime.major_minor}.*`, or a base with a matching Python."
        )


@rule(desc="Choosing an agent's base, Python and CUDA", level=LogLevel.DEBUG)
async def platform_base(
    request: PlatformBaseRequest, python_setup: PythonSetup, table: CudaTable
) -> PlatformBase:
    agent, platform = request.agent, request.platform
    accelerated = agent.target[AgentAcceleratorField].value != "cpu"
    cuda: Optional[CudaChoice] = None
    base_address = agent.base
    if accelerated and not agent.base_from_field:
        base_address, cuda = await _cuda_agent_base(agent, platform, python_setup, table)
    assert base_address is not None  # a CPU agent without one is refused when it is read
    table_base = cuda is not None
    # The builder's libraries, which the wheel plan below and every wheel layer need next, are
    # built while the base is: with empty caches each takes seconds, and neither needs the other.
    base, _ = await MultiGet(
        Get(BaseImage, BaseImageRequest(base_address, platform)), Get(LibraryImageBuilder)
    )
    runtime = await _base_runtime(agent, base, table_base)
    _check_resolve_runs_on(agent, base_address, runtime, python_setup)
    plan_request = _wheel_plan_request(agent, platform, runtime.python_version, runtime.glibc)
    if cuda is None and accelerated:
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
    image_cuda = ImageCuda.of(cuda) if cuda else None
    return PlatformBase(base, base_address, runtime, image_cuda, table_base, plan_request)


def rules():
    return collect_rules()
