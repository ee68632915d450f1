"""The Python that runs build steps, or compiles an image's bytecode, found without Pants' own
interpreter search: that search starts pex, which asks every interpreter it can see, on every run
without pantsd (1.9 s each time on the 2-core CI machine, on the critical path of every build).

Here each `pythonX.Y` the constraints allow is looked up on `[python-bootstrap].search_path`
(oldest X.Y first, then the search path's order, as pex prefers) and run once to confirm what it
is; the first that satisfies the constraints is the one. Only if none does (e.g. an interpreter
named just `python3`) does Pants' search run. Both answers are kept for the life of pantsd, as
Pants keeps its own."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from pants.backend.python.subsystems.setup import PythonSetup
from pants.backend.python.util_rules.interpreter_constraints import InterpreterConstraints
from pants.backend.python.util_rules.pex import PythonExecutable
from pants.core.subsystems.python_bootstrap import PythonBootstrap
from pants.core.util_rules.environments import EnvironmentTarget
from pants.core.util_rules.system_binaries import BinaryPath, BinaryPathRequest, BinaryPaths
from pants.engine.process import FallibleProcessResult, Process
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.util.logging import LogLevel

# Isolated (`-I`): no PYTHON* variable or user site changes what it reports.
_PROBE = (
    "import os, platform, sys;"
    " print(platform.python_implementation(), platform.python_version(),"
    " os.path.realpath(sys.executable))"
)


@dataclass(frozen=True)
class StepPythonRequest:
    constraints: InterpreterConstraints


def _confirmed(constraints: InterpreterConstraints, probe: FallibleProcessResult) -> Optional[str]:
    """The real path of the probed interpreter if it ran and any of the constraints allows its
    implementation (e.g. CPython) and version (X.Y.Z)."""
    if probe.exit_code != 0:
        return None
    fields = probe.stdout.decode(errors="replace").strip().split(" ", 2)
    if len(fields) != 3:
        return None
    implementation, version, path = fields
    allowed = any(
        constraint.project_name.lower() == implementation.lower()
        and constraint.specifier.contains(version)  # type: ignore[attr-defined]
        for constraint in constraints
    )
    return path if allowed else None


@rule(desc="Finding a Python for build steps", level=LogLevel.DEBUG)
async def find_step_python(
    request: StepPythonRequest,
    bootstrap: PythonBootstrap,
    python_setup: PythonSetup,
    env_target: EnvironmentTarget,
) -> PythonExecutable:
    constraints = request.constraints
    versions = constraints.partition_into_major_minor_versions(
        python_setup.interpreter_versions_universe
    )
    found = await MultiGet(
        Get(
            BinaryPaths,
            BinaryPathRequest(
                binary_name=f"python{version}", search_path=bootstrap.interpreter_search_paths
            ),
        )
        for version in versions
    )
    candidates = [binary.path for paths in found for binary in paths.paths]
    probes = await MultiGet(
        Get(
            FallibleProcessResult,
            Process(
                argv=(candidate, "-I", "-c", _PROBE),
                description=f"Asking {candidate} what it is",
                level=LogLevel.DEBUG,
                # What is installed where may change between runs; failures are answers too.
                cache_scope=env_target.executable_search_path_cache_scope(cache_failures=True),
            ),
        )
        for candidate in candidates
    )
    for probe in probes:
        path = _confirmed(constraints, probe)
        if path:
            return PythonExecutable(path, BinaryPath.fingerprinted(path, probe.stdout).fingerprint)
    return await Get(PythonExecutable, InterpreterConstraints, constraints)


def rules():
    return collect_rules()
