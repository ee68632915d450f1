"""Third-party packages as layers (`ai_agent.wheels`): the locked wheels, each fetched by its own
process keyed by its sha256, grouped into layers by one cheap process, then installed for the
base's Python and platform by one process per layer: a wheel that unpacks to more than
`[ai-agents].wheel_layer_threshold_mib` alone (shared by every agent that locks it), the rest
together.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Tuple

from pants.backend.python.util_rules.interpreter_constraints import InterpreterConstraints
from pants.backend.python.util_rules.pex import PythonExecutable
from pants.engine.fs import (
    Digest,
    DigestContents,
    DigestSubset,
    MergeDigests,
    PathGlobs,
)
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.util.logging import LogLevel

from ai_agent.subsystems import AiAgentSubsystem
from ai_agent.util_rules.builder import BuildStep, BuildStepOutput, ImageBuilder, NetworkLimitArgs
from ai_agent.util_rules.layers import PACKAGES_PREFIX, BuiltLayers, layer_info


@dataclass(frozen=True)
class WheelPlanRequest:
    """The locked wheels of `requirements` for one image platform and the base's Python."""

    owner: str
    lockfile_path: str
    lockfile: Digest
    requirements: Tuple[str, ...]
    python_version: str
    platform: str
    glibc: str

    def target_args(self) -> List[str]:
        return [
            "--lock",
            self.lockfile_path,
            *(arg for requirement in self.requirements for arg in ("--requirement", requirement)),
            "--python",
            self.python_version,
            "--platform",
            self.platform,
            "--glibc",
            self.glibc,
        ]


@dataclass(frozen=True)
class WheelPlan:
    """What `wheels plan` chose: `project`, `version`, `filename`, `url`, `sha256` per wheel."""

    wheels_json: str
    steps: Tuple[BuildStep, ...]

    @property
    def wheels(self) -> List[Dict[str, str]]:
        return list(json.loads(self.wheels_json))


@rule(desc="Choosing locked wheels", level=LogLevel.DEBUG)
async def plan_wheels(request: WheelPlanRequest, builder: ImageBuilder) -> WheelPlan:
    if not request.requirements:
        return WheelPlan("[]", ())
    step = BuildStep(
        builder.process(
            "wheels",
            ["plan", *request.target_args()],
            description=(
                f"Choosing the locked wheels of {request.owner} for {request.platform}"
                f" (CPython {request.python_version})"
            ),
            input_digest=request.lockfile,
        ),
        owner=f"{request.owner} (field `resolve`, lockfile {request.lockfile_path})",
    )
    plan = await Get(BuildStepOutput, BuildStep, step)
    return WheelPlan(plan.stdout.decode(), (step,))


@dataclass(frozen=True)
class ThirdPartyLayersRequest:
    """The planned wheels installed for the image's interpreter (`interpreter`, for scripts)."""

    plan: WheelPlanRequest
    interpreter: str


@rule(desc="Building the third-party layers", level=LogLevel.DEBUG)
async def third_party_layers(
    third_party: ThirdPartyLayersRequest,
    builder: ImageBuilder,
    subsystem: AiAgentSubsystem,
    limits: NetworkLimitArgs,
) -> BuiltLayers:
    """Fetch each wheel, group them into layers (`wheels group`), then write every layer in a
    step of its own (`wheels layer`), all at once. A big wheel's step sees that wheel only, so
    agents locking the same torch share one step and its layer, locally and remotely."""
    request = third_party.plan
    plan = await Get(WheelPlan, WheelPlanRequest, request)
    fetch_steps = tuple(
        BuildStep(
            builder.process(
                "wheels",
                ["fetch", "--url", wheel["url"], "--sha256", wheel["sha256"]]
                + ["--output", f"wheels/{wheel['filename']}", *limits.downloads],
                description=f"Fetching {wheel['filename']}",
                output_files=(f"wheels/{wheel['filename']}",),
            ),
            owner=request.owner,
        )
        for wheel in plan.wheels
    )
    fetched = await MultiGet(Get(BuildStepOutput, BuildStep, step) for step in fetch_steps)
    wheel_digests = {
        f"wheels/{wheel['filename']}": result.digest for wheel, result in zip(plan.wheels, fetched)
    }
    major_minor = ".".join(request.python_version.split(".")[:2])
    layout_args = ["--python", major_minor, "--prefix", PACKAGES_PREFIX]
    layout_args += ["--interpreter", third_party.interpreter]
    group_step = BuildStep(
        builder.process(
            "wheels",
            ["group", *layout_args, "--threshold-mib", str(subsystem.wheel_layer_threshold_mib)]
            + [f"--wheel=wheels/{wheel['filename']}={wheel['sha256']}" for wheel in plan.wheels],
            description=f"Grouping the {len(plan.wheels)} wheels of {request.owner} into layers"
            f" ({request.platform})",
            input_digest=await Get(Digest, MergeDigests(wheel_digests.values())),
        ),
        owner=request.owner,
    )
    grouping = json.loads((await Get(BuildStepOutput, BuildStep, group_step)).stdout)
    compiler = await Get(PythonExecutable, InterpreterConstraints([f"CPython=={major_minor}.*"]))
    layer_args = [*layout_args, "--bytecode-interpreter", compiler.path]
    layer_args += ["--source-date-epoch", str(subsystem.source_date_epoch)]
    inputs = await MultiGet(
        Get(Digest, MergeDigests(wheel_digests[wheel["wheel"]] for wheel in layer["wheels"]))
        for layer in grouping["layers"]
    )
    planned = [
        _wheel_layer_step(layer, request, layer_inputs, layer_args, builder)
        for layer, layer_inputs in zip(grouping["layers"], inputs)
    ]
    outputs = await MultiGet(Get(BuildStepOutput, BuildStep, step) for _, step in planned)
    descriptors = await MultiGet(
        Get(
            DigestContents, DigestSubset(output.digest, PathGlobs([f"{directory}/descriptor.json"]))
        )
        for (directory, _), output in zip(planned, outputs)
    )
    layers = []
    for layer, (descriptor,) in zip(grouping["layers"], descriptors):
        holds = ", ".join(f"{wheel['project']} {wheel['version']}" for wheel in layer["wheels"])
        kind = "big package" if layer["kind"] == "big" else "packages"
        layers.append(layer_info(kind, holds, descriptor.path, json.loads(descriptor.content)))
    return BuiltLayers(
        await Get(Digest, MergeDigests(output.digest for output in outputs)),
        tuple(layers),
        (*plan.steps, *fetch_steps, group_step, *(step for _, step in planned)),
    )


def _wheel_layer_step(
    layer: Mapping[str, Any],
    request: WheelPlanRequest,
    inputs: Digest,
    layer_args: List[str],
    builder: ImageBuilder,
) -> Tuple[str, BuildStep]:
    """The `wheels layer` step of one grouped layer and its output directory. A big wheel's
    directory and arguments name nothing of the agent, so its step is the same in every agent
    whose grouping gives it the same paths to skip; the shared layer's is per platform."""
    wheels = layer["wheels"]
    skips = sorted(path for wheel in wheels for path in wheel["skip"])
    arguments = ["layer", *layer_args, "--kind", layer["kind"]]
    for wheel in wheels:
        arguments += [f"--wheel={wheel['wheel']}={wheel['sha256']}"]
        arguments += [f"--skip={path}" for path in wheel["skip"]]
    if layer["kind"] == "big":
        (wheel,) = wheels
        directory = f"layers/{wheel['wheel'].rsplit('/', 1)[-1][: -len('.whl')]}"
        if skips:
            directory += "-" + hashlib.sha256("\n".join(skips).encode()).hexdigest()[:12]
        description = f"Installing {wheel['project']} {wheel['version']} into its layer"
    else:
        directory = f"layers/site-packages-{request.platform.replace('/', '-')}"
        arguments += ["--venv-version", request.python_version]
        description = (
            f"Installing the small packages of {request.owner}"
            f" ({len(wheels)} wheels, {request.platform})"
        )
    step = BuildStep(
        builder.process(
            "wheels",
            [*arguments, "--output-dir", directory],
            description=description,
            input_digest=inputs,
            output_directories=(directory,),
        ),
        owner=request.owner,
    )
    return directory, step


def rules():
    return collect_rules()
