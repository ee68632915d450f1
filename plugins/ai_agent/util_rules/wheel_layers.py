"""Third-party packages as layers (`ai_agent.wheels`): the locked wheels, each fetched by its own
process keyed by its sha256, grouped into layers by one cheap process, then installed for the
base's Python and platform by one process per layer: a wheel that unpacks to more than
`[ai-agents].wheel_layer_threshold_mib` alone (shared by every agent that locks it), the rest
together.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Tuple

from pants.backend.python.util_rules.interpreter_constraints import InterpreterConstraints
from pants.backend.python.util_rules.pex import PythonExecutable
from pants.engine.fs import (
    Digest,
    MergeDigests,
)
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.util.logging import LogLevel

from ai_agent.subsystems import AiAgentSubsystem
from ai_agent.util_rules.builder import (
    BuildStep,
    BuildStepOutput,
    ImageBuilder,
    WheelEnvironment,
    WheelTarget,
    read_json_files,
)
from ai_agent.util_rules.layers import PACKAGES_PREFIX, BuiltLayers, layer_info
from ai_agent.util_rules.network import DownloadAccess


@dataclass(frozen=True)
class WheelPlanRequest:
    """The locked wheels for `target` (a lock's requirements, one image platform and the
    base's Python), the lock being `lockfile`."""

    owner: str
    lockfile: Digest
    target: WheelTarget


@dataclass(frozen=True)
class LockedWheel:
    """One wheel `wheels plan` chose."""

    project: str
    version: str
    filename: str
    url: str
    sha256: str

    @property
    def path(self) -> str:
        """Where its `wheels fetch` step writes it."""
        return f"wheels/{self.filename}"


@dataclass(frozen=True)
class WheelPlan:
    wheels: Tuple[LockedWheel, ...]
    steps: Tuple[BuildStep, ...]


@rule(desc="Choosing locked wheels", level=LogLevel.DEBUG)
async def plan_wheels(request: WheelPlanRequest, builder: ImageBuilder) -> WheelPlan:
    target = request.target
    if not target.requirements:
        return WheelPlan((), ())
    step = BuildStep(
        builder.wheels_plan(
            target=target,
            inputs=request.lockfile,
            description=(
                f"Choosing the locked wheels of {request.owner} for {target.platform}"
                f" (CPython {target.python_version})"
            ),
        ),
        owner=f"{request.owner} (field `resolve`, lockfile {target.lock})",
    )
    plan = await Get(BuildStepOutput, BuildStep, step)
    return WheelPlan(tuple(LockedWheel(**wheel) for wheel in plan.stdout_json()), (step,))


@dataclass(frozen=True)
class ThirdPartyLayersRequest:
    """The planned wheels installed for the image's interpreter (`interpreter`, for scripts)."""

    plan: WheelPlanRequest
    interpreter: str


async def _fetched_wheels(
    plan: WheelPlan, owner: str, builder: ImageBuilder, access: DownloadAccess
) -> Tuple[Tuple[BuildStep, ...], Dict[str, Digest]]:
    """Each wheel fetched by its own step, keyed by its sha256: the steps, and each wheel's
    digest by its path."""
    steps = tuple(
        BuildStep(
            builder.wheels_fetch(
                access=access, url=wheel.url, sha256=wheel.sha256, output=wheel.path
            ),
            owner=owner,
        )
        for wheel in plan.wheels
    )
    fetched = await MultiGet(Get(BuildStepOutput, BuildStep, step) for step in steps)
    return steps, {wheel.path: result.digest for wheel, result in zip(plan.wheels, fetched)}


@rule(desc="Building the third-party layers", level=LogLevel.DEBUG)
async def third_party_layers(
    third_party: ThirdPartyLayersRequest,
    builder: ImageBuilder,
    subsystem: AiAgentSubsystem,
    access: DownloadAccess,
) -> BuiltLayers:
    """Fetch each wheel, group them into layers (`wheels group`), then write every layer in a
    step of its own (`wheels layer`), all at once. A big wheel's step sees that wheel only, so
    agents locking the same torch share one step and its layer, locally and remotely."""
    request = third_party.plan
    target = request.target
    plan = await Get(WheelPlan, WheelPlanRequest, request)
    fetch_steps, wheel_digests = await _fetched_wheels(plan, request.owner, builder, access)
    major_minor = ".".join(target.python_version.split(".")[:2])
    environment = WheelEnvironment(major_minor, PACKAGES_PREFIX, third_party.interpreter)
    group_step = BuildStep(
        builder.wheels_group(
            environment=environment,
            threshold_mib=subsystem.wheel_layer_threshold_mib,
            wheels=[(wheel.path, wheel.sha256) for wheel in plan.wheels],
            inputs=await Get(Digest, MergeDigests(wheel_digests.values())),
            description=f"Grouping the {len(plan.wheels)} wheels of {request.owner} into layers"
            f" ({target.platform})",
        ),
        owner=request.owner,
    )
    grouping = (await Get(BuildStepOutput, BuildStep, group_step)).stdout_json()
    compiler = await Get(PythonExecutable, InterpreterConstraints([f"CPython=={major_minor}.*"]))
    inputs = await MultiGet(
        Get(Digest, MergeDigests(wheel_digests[wheel["wheel"]] for wheel in layer["wheels"]))
        for layer in grouping["layers"]
    )
    planned = [
        _wheel_layer_step(
            layer,
            request,
            layer_inputs,
            builder,
            environment=environment,
            bytecode_interpreter=compiler.path,
            source_date_epoch=subsystem.source_date_epoch,
        )
        for layer, layer_inputs in zip(grouping["layers"], inputs)
    ]
    outputs = await MultiGet(Get(BuildStepOutput, BuildStep, step) for _, step in planned)
    descriptors = await read_json_files(
        (output.digest, f"{directory}/descriptor.json")
        for (directory, _), output in zip(planned, outputs)
    )
    layers = []
    for layer, (directory, _), descriptor in zip(grouping["layers"], planned, descriptors):
        holds = ", ".join(f"{wheel['project']} {wheel['version']}" for wheel in layer["wheels"])
        kind = "big package" if layer["kind"] == "big" else "packages"
        layers.append(layer_info(kind, holds, f"{directory}/descriptor.json", descriptor))
    return BuiltLayers(
        await Get(Digest, MergeDigests(output.digest for output in outputs)),
        tuple(layers),
        (*plan.steps, *fetch_steps, group_step, *(step for _, step in planned)),
    )


def _wheel_layer_step(
    layer: Mapping[str, Any],
    request: WheelPlanRequest,
    inputs: Digest,
    builder: ImageBuilder,
    *,
    environment: WheelEnvironment,
    bytecode_interpreter: str,
    source_date_epoch: int,
) -> Tuple[str, BuildStep]:
    """The `wheels layer` step of one grouped layer and its output directory. A big wheel's
    directory and arguments name nothing of the agent, so its step is the same in every agent
    whose grouping gives it the same paths to skip; the shared layer's is per platform."""
    wheels = layer["wheels"]
    skips = sorted(path for wheel in wheels for path in wheel["skip"])
    if layer["kind"] == "big":
        (wheel,) = wheels
        directory = f"layers/{wheel['wheel'].rsplit('/', 1)[-1][: -len('.whl')]}"
        if skips:
            directory += "-" + hashlib.sha256("\n".join(skips).encode()).hexdigest()[:12]
        description = f"Installing {wheel['project']} {wheel['version']} into its layer"
        venv_version = None
    else:
        directory = f"layers/site-packages-{request.target.platform.replace('/', '-')}"
        description = (
            f"Installing the small packages of {request.owner}"
            f" ({len(wheels)} wheels, {request.target.platform})"
        )
        venv_version = request.target.python_version
    step = BuildStep(
        builder.wheels_layer(
            environment=environment,
            bytecode_interpreter=bytecode_interpreter,
            source_date_epoch=source_date_epoch,
            kind=layer["kind"],
            wheels=[(wheel["wheel"], wheel["sha256"], wheel["skip"]) for wheel in wheels],
            venv_version=venv_version,
            output_dir=directory,
            inputs=inputs,
            description=description,
        ),
        owner=request.owner,
    )
    return directory, step


def rules():
    return collect_rules()
