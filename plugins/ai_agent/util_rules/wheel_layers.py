"""Third-party packages as layers (`ai_agent.wheels`): the locked wheels grouped into layers by one
cheap process that reads each wheel's directory where it is served (HTTP byte ranges), then
installed for the base's Python and platform by one process per layer, which downloads its own
wheels: a wheel that unpacks to more than `[ai-agents].wheel_layer_threshold_mib` alone (shared
by every agent that locks it), the rest together.

No wheel is a process output: Pants' store (and a remote cache) holds the layers, not the
gigabytes of wheels they came from, and the layer steps start as soon as grouping ends instead
of after every wheel is downloaded, so the first layers build while later wheels arrive.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Mapping, Tuple

from pants.backend.python.util_rules.interpreter_constraints import InterpreterConstraints
from pants.backend.python.util_rules.pex import PythonExecutable
from pants.engine.fs import Digest, MergeDigests
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.util.logging import LogLevel

from ai_agent.subsystems import AiAgentSubsystem
from ai_agent.util_rules.builder import (
    BuildStep,
    BuildStepOutput,
    GroupedWheel,
    LibraryImageBuilder,
    WheelEnvironment,
    WheelTarget,
    read_json_files,
)
from ai_agent.util_rules.layers import PACKAGES_PREFIX, BuiltLayers, layer_info
from ai_agent.util_rules.network import DownloadAccess
from ai_agent.util_rules.step_python import StepPythonRequest


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


@dataclass(frozen=True)
class WheelPlan:
    wheels: Tuple[LockedWheel, ...]
    steps: Tuple[BuildStep, ...]


@rule(desc="Choosing locked wheels", level=LogLevel.DEBUG)
async def plan_wheels(request: WheelPlanRequest, builder: LibraryImageBuilder) -> WheelPlan:
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


@rule(desc="Building the third-party layers", level=LogLevel.DEBUG)
async def third_party_layers(
    third_party: ThirdPartyLayersRequest,
    builder: LibraryImageBuilder,
    subsystem: AiAgentSubsystem,
    access: DownloadAccess,
) -> BuiltLayers:
    """Group the wheels into layers (`wheels group`), then write every layer in a step of its
    own (`wheels layer`), all at once, the biggest first. A big wheel's step sees that wheel
    only, so agents locking the same torch share one step and its layer, locally and
    remotely."""
    request = third_party.plan
    target = request.target
    plan = await Get(WheelPlan, WheelPlanRequest, request)
    major_minor = ".".join(target.python_version.split(".")[:2])
    environment = WheelEnvironment(major_minor, PACKAGES_PREFIX, third_party.interpreter)
    group_step = BuildStep(
        builder.wheels_group(
            access=access,
            environment=environment,
            threshold_mib=subsystem.wheel_layer_threshold_mib,
            wheels=[(wheel.url, wheel.sha256) for wheel in plan.wheels],
            description=f"Grouping the {len(plan.wheels)} wheels of {request.owner} into layers"
            f" ({target.platform})",
        ),
        owner=request.owner,
    )
    grouping = (await Get(BuildStepOutput, BuildStep, group_step)).stdout_json()
    compiler = await Get(
        PythonExecutable, StepPythonRequest(InterpreterConstraints([f"CPython=={major_minor}.*"]))
    )
    filenames = {wheel.url: wheel.filename for wheel in plan.wheels}
    planned = [
        _wheel_layer_step(
            layer,
            request,
            filenames,
            builder,
            access,
            environment=environment,
            bytecode_interpreter=compiler.path,
            source_date_epoch=subsystem.source_date_epoch,
        )
        for layer in grouping["layers"]
    ]
    # Pants starts processes in the order they are asked for: the longest first, so that the
    # last to finish is a short one.
    unpacked = [
        sum(wheel["unpackedSize"] for wheel in layer["wheels"]) for layer in grouping["layers"]
    ]
    longest_first = sorted(range(len(planned)), key=lambda index: -unpacked[index])
    done = await MultiGet(
        Get(BuildStepOutput, BuildStep, planned[index][1]) for index in longest_first
    )
    outputs = [output for _, output in sorted(zip(longest_first, done))]
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
        (*plan.steps, group_step, *(step for _, step in planned)),
    )


def _wheel_layer_step(
    layer: Mapping[str, Any],
    request: WheelPlanRequest,
    filenames: Mapping[str, str],
    builder: LibraryImageBuilder,
    access: DownloadAccess,
    *,
    environment: WheelEnvironment,
    bytecode_interpreter: str,
    source_date_epoch: int,
) -> Tuple[str, BuildStep]:
    """The `wheels layer` step of one grouped layer and its output directory (`filenames`: each
    wheel's file name by URL). A big wheel's
    directory and arguments name nothing of the agent, so its step is the same in every agent
    whose grouping gives it the same paths to skip and to measure; the shared layer's is per
    platform."""
    wheels = [GroupedWheel.from_json(wheel) for wheel in layer["wheels"]]
    skips = sorted(path for wheel in wheels for path in wheel.skip)
    if layer["kind"] == "big":
        (wheel,) = layer["wheels"]
        directory = f"layers/{filenames[wheel['wheel']][: -len('.whl')]}"
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
            access=access,
            environment=environment,
            bytecode_interpreter=bytecode_interpreter,
            source_date_epoch=source_date_epoch,
            kind=layer["kind"],
            wheels=wheels,
            venv_version=venv_version,
            output_dir=directory,
            description=description,
        ),
        owner=request.owner,
    )
    return directory, step


def rules():
    return collect_rules()
