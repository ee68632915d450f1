"""How image-building work runs: as ordinary, cacheable Pants processes that execute the plugin's
Pants-free cores (`ai_agent.oci`, `.debian`, `.wheels`) with a Python interpreter found on the
machine and the packaging libraries of the `[ai-agents-builder]` lock.

The cores' source files and the libraries (a loose PEX that Pants builds from the lock, cached
like any other output) are inputs of every such process, so editing a core or bumping a library
invalidates exactly the outputs they produced, and nothing else does.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Optional, Tuple, cast

from pants.backend.python.target_types import PexLayout
from pants.backend.python.util_rules.interpreter_constraints import InterpreterConstraints
from pants.backend.python.util_rules.pex import Pex, PexRequest, PythonExecutable
from pants.engine.fs import (
    EMPTY_DIGEST,
    CreateDigest,
    Digest,
    DigestContents,
    DigestSubset,
    FileContent,
    MergeDigests,
    PathGlobs,
)
from pants.engine.process import FallibleProcessResult, Process, ProcessCacheScope
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.util.logging import LogLevel

from ai_agent.debian.download import DOWNLOAD_LIMITS
from ai_agent.oci.transport import REGISTRY_LIMITS
from ai_agent.subsystem import AiAgentSubsystem, ImageBuilderLibraries

# Where the cores' sources and libraries are mounted inside each sandbox (read-only, shared
# between processes).
_MOUNT = "__ai_agent_builder"
# Packages of the plugin that run inside sandboxes: the standard library plus the
# [ai-agents-builder] libraries, never Pants.
_SANDBOXED_PACKAGES = ("oci", "debian", "wheels")
# With a remote cache, Pants starts a process locally if the cache has not answered within this
# delay (default 0: at once), and cancels it on a hit. A miss answers at once either way; a hit
# that downloads a big layer takes a while, and on a small build machine racing it with a local
# rebuild of the same layer only takes CPU and disk from the steps that do need to run.
_REMOTE_CACHE_SPECULATION_DELAY_MILLIS = 2000


@dataclass(frozen=True)
class ImageBuilder:
    """The interpreter, sources and libraries that image-building processes run; `python_path`
    lists, relative to the sandbox, where the sources and each library are importable."""

    python: PythonExecutable
    sources: Digest
    python_path: Tuple[str, ...]

    def process(
        self,
        module: str,
        argv: Iterable[str],
        *,
        description: str,
        input_digest: Optional[Digest] = None,
        output_files: Iterable[str] = (),
        output_directories: Iterable[str] = (),
        env: Optional[Mapping[str, str]] = None,
        level: LogLevel = LogLevel.DEBUG,
        cache_scope: ProcessCacheScope = ProcessCacheScope.SUCCESSFUL,
    ) -> Process:
        """A process running `python -m ai_agent.<module> <argv>` in a sandbox."""
        return Process(
            argv=(self.python.path, "-B", "-s", "-m", f"ai_agent.{module}", *argv),
            description=description,
            input_digest=input_digest or EMPTY_DIGEST,
            # Pants annotates these as str but they hold digests (an interpreter provider's files).
            immutable_input_digests={
                **cast(Mapping[str, Digest], self.python.immutable_input_digests),
                _MOUNT: self.sources,
            },
            append_only_caches=self.python.append_only_caches,
            output_files=tuple(output_files),
            output_directories=tuple(output_directories),
            # Nothing from the host reaches the output: fixed locale, timezone and hash seed.
            env={
                "PYTHONPATH": ":".join(self.python_path),
                "PYTHONHASHSEED": "0",
                "LC_ALL": "C.UTF-8",
                "TZ": "UTC",
                **(env or {}),
            },
            level=level,
            cache_scope=cache_scope,
            remote_cache_speculation_delay_millis=_REMOTE_CACHE_SPECULATION_DELAY_MILLIS,
        )


@dataclass(frozen=True)
class NetworkLimitArgs:
    """The `[ai-agents]` network options as flags of the steps that download (Debian indexes and
    .debs, wheels) and of those that reach registries: only the limits that differ from the
    step's own defaults, so that default options leave every command line, and with it every
    cache key, as it was."""

    downloads: Tuple[str, ...]
    registries: Tuple[str, ...]


@rule
def network_limit_args(subsystem: AiAgentSubsystem) -> NetworkLimitArgs:
    return NetworkLimitArgs(
        downloads=subsystem.network_limits(DOWNLOAD_LIMITS).args(DOWNLOAD_LIMITS),
        registries=subsystem.network_limits(REGISTRY_LIMITS).args(REGISTRY_LIMITS),
    )


class BuildStepFailed(Exception):
    """A build process exited non-zero; the message names the target and carries its error."""


@dataclass(frozen=True)
class BuildStep:
    """A builder process run on behalf of a target, named in the error if it fails."""

    process: Process
    owner: str


@dataclass(frozen=True)
class BuildStepOutput:
    digest: Digest
    stdout: bytes


def _sandboxed_sources() -> tuple[FileContent, ...]:
    plugin_root = Path(__file__).resolve().parent
    files = [
        path
        for package in _SANDBOXED_PACKAGES
        for path in sorted((plugin_root / package).glob("*.py"))
        if not path.name.endswith("_test.py")
    ]
    return tuple(
        FileContent(f"ai_agent/{path.relative_to(plugin_root)}", path.read_bytes())
        for path in files
    )


class BuilderLibrariesError(Exception):
    """The [ai-agents-builder] lock holds a distribution that is not pure Python."""


async def _library_directories(libraries: Pex) -> Tuple[str, ...]:
    """The importable directory of each distribution in a loose PEX (`.deps/<wheel>/`, as
    PEX-INFO lists them), relative to the PEX."""
    [info] = await Get(
        DigestContents, DigestSubset(libraries.digest, PathGlobs([f"{libraries.name}/PEX-INFO"]))
    )
    wheels = sorted(json.loads(info.content)["distributions"])
    compiled = [wheel for wheel in wheels if not wheel.endswith("-none-any.whl")]
    if compiled:
        raise BuilderLibrariesError(
            f"[{ImageBuilderLibraries.options_scope}]: {', '.join(compiled)} are not pure Python"
            " (`*-none-any.whl`); build steps run on any interpreter the builder constraints"
            " allow, so lock only pure-Python libraries for them."
        )
    return tuple(f".deps/{wheel}" for wheel in wheels)


@rule(desc="Preparing the image builder", level=LogLevel.DEBUG)
async def prepare_image_builder(libraries: ImageBuilderLibraries) -> ImageBuilder:
    constraints = libraries.interpreter_constraints
    libraries_request = libraries.to_pex_request(interpreter_constraints=constraints)
    python, sources, libraries_pex = await MultiGet(
        Get(PythonExecutable, InterpreterConstraints, constraints),
        Get(Digest, CreateDigest(_sandboxed_sources())),
        Get(Pex, PexRequest, dataclasses.replace(libraries_request, layout=PexLayout.LOOSE)),
    )
    directories = await _library_directories(libraries_pex)
    mounted = await Get(Digest, MergeDigests([sources, libraries_pex.digest]))
    python_path = (_MOUNT, *(f"{_MOUNT}/{libraries_pex.name}/{path}" for path in directories))
    return ImageBuilder(python=python, sources=mounted, python_path=python_path)


@rule
async def run_build_step(step: BuildStep) -> BuildStepOutput:
    result = await Get(FallibleProcessResult, Process, step.process)
    if result.exit_code != 0:
        # The builder's CLI reports a bad input as one `error: ...` line naming the problem.
        output = (result.stderr or result.stdout).decode(errors="replace").strip()
        raise BuildStepFailed(
            f"{step.owner}: {step.process.description} failed (exit code {result.exit_code}):"
            f"\n{output}"
        )
    return BuildStepOutput(result.output_digest, result.stdout)


def rules():
    return collect_rules()
