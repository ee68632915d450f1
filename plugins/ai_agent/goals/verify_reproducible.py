"""`./pants verify-reproducible ::`: every build step of each `ai_agent` image, the writing of its
SBOM and provenance included, is run again with no cache (neither the local nor the remote one)
on the same inputs, and must give the bytes that the build gave, which may come from this
machine's cache or from another machine's via a remote cache. A step that drifts is named with
the file it wrote and where that file first differs (the tar entry and header field, the JSON
field, the config field of the image), found by the OCI core's `compare` command.

Each step's inputs are the outputs of the steps before it, so if every step gives the same bytes
from the same inputs, the whole image does: checking steps one by one proves the image and
points at the culprit instead of at every layer after it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Tuple

from pants.engine.console import Console
from pants.engine.fs import AddPrefix, CreateDigest, Digest, FileContent, MergeDigests
from pants.engine.goal import Goal, GoalSubsystem
from pants.engine.process import ProcessCacheScope
from pants.engine.rules import Get, MultiGet, collect_rules, goal_rule, rule
from pants.engine.target import FilteredTargets
from pants.util.logging import LogLevel
from pants.util.strutil import softwrap

from ai_agent.goals.package import AgentPackageFieldSet
from ai_agent.util_rules.agent_image import AgentImage, AgentImageRequest
from ai_agent.util_rules.builder import BuildStep, BuildStepOutput, ImageBuilder
from ai_agent.util_rules.image import ImageArchive, ImageArchiveRequest
from ai_agent.util_rules.sbom import Sbom, SbomRequest

# What a step printed is compared too (`wheels plan` answers on stdout), as this file.
_STDOUT = "(stdout)"


class VerifyReproducibleSubsystem(GoalSubsystem):
    name = "verify-reproducible"
    help = softwrap(
        """
        Run every build step of the given `ai_agent` images (their SBOM and provenance
        included) again without any cache and check
        that each gives the same bytes as the build (cached locally, or by another machine in a
        remote cache). On a difference, name the step, the file and the first differing tar
        entry, header field or config field. Exits 1 if any image is not reproducible.
        """
    )


class VerifyReproducible(Goal):
    subsystem_cls = VerifyReproducibleSubsystem
    environment_behavior = Goal.EnvironmentBehavior.LOCAL_ONLY


class NoAgentsToVerify(Exception):
    pass


@dataclass(frozen=True)
class StepRerun:
    step: BuildStep


@dataclass(frozen=True)
class StepComparison:
    """`differences` between the step's build and its rerun: (file, where it first differs)."""

    step: BuildStep
    differences: Tuple[Tuple[str, str], ...]


async def _with_stdout(output: BuildStepOutput, prefix: str) -> Digest:
    stdout = await Get(Digest, CreateDigest([FileContent(_STDOUT, output.stdout)]))
    merged = await Get(Digest, MergeDigests([output.digest, stdout]))
    return await Get(Digest, AddPrefix(merged, prefix))


@rule(desc="Running a build step again without caches", level=LogLevel.DEBUG)
async def rerun_step(request: StepRerun, builder: ImageBuilder) -> StepComparison:
    step = request.step
    rerun = BuildStep(
        dataclasses.replace(
            step.process,
            description=f"Again, without caches: {step.process.description}",
            # Neither read from nor written to any cache: this run is the check.
            cache_scope=ProcessCacheScope.PER_SESSION,
            # Shown: a check that reruns every step takes a while.
            level=LogLevel.INFO,
        ),
        owner=step.owner,
    )
    built, rebuilt = await MultiGet(
        Get(BuildStepOutput, BuildStep, step), Get(BuildStepOutput, BuildStep, rerun)
    )
    if (built.digest, built.stdout) == (rebuilt.digest, rebuilt.stdout):
        return StepComparison(step, ())
    cached = await _with_stdout(built, "cached")
    again = await _with_stdout(rebuilt, "rebuilt")
    inputs = await Get(Digest, MergeDigests([cached, again]))
    comparison = await Get(
        BuildStepOutput,
        BuildStep(
            builder.oci_compare(
                first="cached",
                second="rebuilt",
                inputs=inputs,
                description=f"Comparing two runs of: {step.process.description}",
            ),
            owner=step.owner,
        ),
    )
    differences = comparison.stdout_json()
    return StepComparison(
        step, tuple((difference["path"], difference["detail"]) for difference in differences)
    )


@goal_rule
async def verify_reproducible(console: Console, targets: FilteredTargets) -> VerifyReproducible:
    field_sets = [
        AgentPackageFieldSet.create(target)
        for target in targets
        if AgentPackageFieldSet.is_applicable(target)
    ]
    if not field_sets:
        raise NoAgentsToVerify(
            "No `ai_agent` targets among the given targets: `verify-reproducible` checks"
            " `ai_agent` images (e.g. `./pants verify-reproducible ::`)."
        )
    images = await MultiGet(
        Get(
            AgentImage,
            AgentImageRequest(
                field_set.address, field_set.output_path.value_or_default(file_ending="tar")
            ),
        )
        for field_set in field_sets
    )
    # The archive too (`package` writes it unless told not to), and the SBOM and provenance
    # (with what they read that the image's steps did not write: a Debian base's description).
    archives = await MultiGet(
        Get(ImageArchive, ImageArchiveRequest, image.archive) for image in images
    )
    sboms = await MultiGet(Get(Sbom, SbomRequest, image.sbom) for image in images)
    steps_of = [
        (*image.steps, archive.step, *sbom.steps)
        for image, archive, sbom in zip(images, archives, sboms)
    ]
    # Agents share steps (a base, weights); each runs again once.
    steps = tuple(dict.fromkeys(step for image_steps in steps_of for step in image_steps))
    comparisons = await MultiGet(Get(StepComparison, StepRerun(step)) for step in steps)
    comparison_of = dict(zip(steps, comparisons))
    unreproducible = 0
    for field_set, image, image_steps in zip(field_sets, images, steps_of):
        digest = image.metadata["digest"]
        drifted = [comparison_of[step] for step in image_steps if comparison_of[step].differences]
        if not drifted:
            console.print_stdout(
                f"{console.sigil_succeeded()} {field_set.address}: {digest} is reproducible:"
                f" its {len(image_steps)} build steps, run again without caches, gave the same"
                " bytes"
            )
            continue
        unreproducible += 1
        console.print_stdout(
            f"{console.sigil_failed()} {field_set.address}: {digest} is NOT reproducible:"
            f" {len(drifted)} of its {len(image_steps)} build steps gave other bytes when run"
            " again without caches:"
        )
        for comparison in drifted:
            console.print_stdout(f"  {comparison.step.process.description}:")
            for path, detail in comparison.differences:
                console.print_stdout(f"    {path}: {detail}")
    return VerifyReproducible(exit_code=1 if unreproducible else 0)


def rules():
    return collect_rules()
