"""`./pants check-locks ::`: whether everything the given targets' locks pin is still served, asked
with HEAD requests (nothing is downloaded), so that a lock that rotted is found by a daily job
instead of by the next build that needs it.

The locks: each `debian_base`'s (every pinned .deb, from any of `[ai-agents].debian_mirrors`, with
its pinned size), each `oci_base`'s (every digest, from its registry) and each Python resolve lock
of the given `ai_agent` targets (every artifact URL), plus the base each agent names (its `base`,
else `[ai-agents].default_base`). The asking is done by the cores' `check` commands, run as
processes that are never cached: a health check must ask the network every time.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Dict, List, Tuple

from pants.backend.python.subsystems.setup import PythonSetup
from pants.engine.addresses import UnparsedAddressInputs
from pants.engine.console import Console
from pants.engine.fs import PathGlobs, Snapshot
from pants.engine.goal import Goal, GoalSubsystem
from pants.engine.rules import Get, MultiGet, collect_rules, goal_rule, rule
from pants.engine.target import FilteredTargets, Target, Targets
from pants.util.logging import LogLevel
from pants.util.strutil import softwrap

from ai_agent.oci.types import GONE, MISMATCH, UNREACHABLE, Finding
from ai_agent.subsystems import AiAgentSubsystem
from ai_agent.target_types import (
    AgentResolveField,
    AiAgentTarget,
    BaseImageLockfileField,
    OciBaseTarget,
)
from ai_agent.util_rules.agent import base_spec
from ai_agent.util_rules.base_image import BaseTargets, refresh_command
from ai_agent.util_rules.builder import (
    BuildStep,
    BuildStepOutput,
    ImageBuilder,
    LibraryImageBuilder,
)
from ai_agent.util_rules.network import DownloadAccess, RegistryAccess

# How each status reads after the pinned item, and what to do about it.
_SAID = {
    GONE: ("is gone", "refresh the lock"),
    MISMATCH: ("is served with another size than the lock pins", "refresh the lock"),
    UNREACHABLE: (
        "could not be checked (unreachable)",
        "ask again later; if it stays so, refresh the lock",
    ),
}


class CheckLocksSubsystem(GoalSubsystem):
    name = "check-locks"
    help = softwrap(
        """
        Ask the Debian mirrors, the Python package index and the registries whether every
        .deb, wheel and digest that the given targets' locks pin is still served (HEAD requests:
        nothing is downloaded). Prints one line per item that is gone, served with another size
        or unreachable, with the command that refreshes its lock. Exits 1 if anything is gone or
        served with another size, 2 if nothing is but something could not be checked, else 0.
        """
    )


class CheckLocks(Goal):
    subsystem_cls = CheckLocksSubsystem
    environment_behavior = Goal.EnvironmentBehavior.LOCAL_ONLY


class NoLocksToCheck(Exception):
    pass


@dataclass(frozen=True)
class LockCheck:
    """One lock to ask about: the targets using it, the resolve that regenerates it, and which
    kind of lock it is (`debian`, `registry` or `wheels`: which core command asks)."""

    owners: Tuple[str, ...]
    path: str
    resolve: str
    kind: str


@dataclass(frozen=True)
class LockCheckResult:
    check: LockCheck
    found: bool
    checked: int
    findings: Tuple[Finding, ...]


@rule(desc="Checking that a lock's pins are still served", level=LogLevel.DEBUG)
async def check_lock(
    check: LockCheck,
    builder: ImageBuilder,
    downloads: DownloadAccess,
    registries: RegistryAccess,
) -> LockCheckResult:
    lock = await Get(Snapshot, PathGlobs([check.path]))
    if not lock.files:
        return LockCheckResult(check, found=False, checked=0, findings=())
    description = f"Asking whether what {check.path} pins is still served"
    if check.kind == "registry":
        process = builder.oci_check_base(
            access=registries, lock=check.path, inputs=lock.digest, description=description
        )
    elif check.kind == "debian":
        process = builder.debian_check(
            access=downloads, lock=check.path, inputs=lock.digest, description=description
        )
    else:
        with_libraries = await Get(LibraryImageBuilder)
        process = with_libraries.wheels_check(
            access=downloads, lock=check.path, inputs=lock.digest, description=description
        )
    output = await Get(BuildStepOutput, BuildStep(process, owner=", ".join(check.owners)))
    report = output.stdout_json()
    findings = tuple(Finding(**problem) for problem in report["problems"])
    return LockCheckResult(check, found=True, checked=report["checked"], findings=findings)


def _base_check(target: Target) -> LockCheck:
    path = target[BaseImageLockfileField].value_or_default()
    kind = "registry" if isinstance(target, OciBaseTarget) else "debian"
    return LockCheck((str(target.address),), path, target.address.target_name, kind)


async def _lock_checks(
    targets: FilteredTargets, subsystem: AiAgentSubsystem, python_setup: PythonSetup
) -> List[LockCheck]:
    agents = [target for target in targets if isinstance(target, AiAgentTarget)]
    base_specs = [base_spec(agent, subsystem) for agent in agents]
    agent_bases = await MultiGet(
        Get(
            Targets,
            UnparsedAddressInputs(
                [spec] if spec else [],
                owning_address=agent.address,
                description_of_origin=f"the `base` field of {agent.address}",
            ),
        )
        for agent, spec in zip(agents, base_specs)
    )
    bases = {
        target.address: target
        for target in [*targets, *(base for found in agent_bases for base in found)]
        if target.has_field(BaseImageLockfileField)
    }
    if bases:
        await Get(BaseTargets)  # refuses two bases of one name, which is their lock's resolve
    agents_of_resolve: Dict[str, List[str]] = {}
    for agent in agents:
        resolve = agent[AgentResolveField].normalized_value(python_setup)
        agents_of_resolve.setdefault(resolve, []).append(str(agent.address))
    return [
        *(_base_check(bases[address]) for address in sorted(bases)),
        *(
            LockCheck(tuple(owners), python_setup.resolves[resolve], resolve, "wheels")
            for resolve, owners in sorted(agents_of_resolve.items())
        ),
    ]


@goal_rule
async def check_locks(
    console: Console,
    targets: FilteredTargets,
    subsystem: AiAgentSubsystem,
    python_setup: PythonSetup,
) -> CheckLocks:
    checks = await _lock_checks(targets, subsystem, python_setup)
    if not checks:
        raise NoLocksToCheck(
            "No locks among the given targets: `check-locks` checks the locks of `debian_base`,"
            " `oci_base` and `ai_agent` targets (e.g. `./pants check-locks ::`)."
        )
    results = await MultiGet(Get(LockCheckResult, LockCheck, check) for check in checks)
    counts: Counter[str] = Counter()
    for result in results:
        check = result.check
        where = f"{', '.join(check.owners)}: {check.path}"
        refresh = refresh_command(check.resolve)
        if not result.found:
            counts[GONE] += 1
            console.print_stdout(
                f"{console.sigil_failed()} {where} does not exist; create it with `{refresh}`"
            )
        elif not result.findings:
            console.print_stdout(
                f"{console.sigil_succeeded()} {where}: all {result.checked} pinned items are"
                " still served"
            )
        for finding in result.findings:
            counts[finding.status] += 1
            said, advice = _SAID[finding.status]
            sigil = console.sigil_skipped() if finding.status == UNREACHABLE else None
            console.print_stdout(
                f"{sigil or console.sigil_failed()} {where}: {finding.item} {said}"
                f" ({finding.detail}); {advice} with `{refresh}`"
            )
    checked = sum(result.checked for result in results)
    console.print_stdout(
        f"Checked {checked} pinned items in {len(results)} locks: {counts[GONE]} gone or missing,"
        f" {counts[MISMATCH]} served with another size, {counts[UNREACHABLE]} unreachable."
    )
    if counts[GONE] or counts[MISMATCH]:
        return CheckLocks(exit_code=1)
    return CheckLocks(exit_code=2 if counts[UNREACHABLE] else 0)


def rules():
    return collect_rules()
