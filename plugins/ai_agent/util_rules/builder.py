"""How image-building work runs: as ordinary, cacheable Pants processes that execute the plugin's
Pants-free cores (`ai_agent.oci`, `.debian`, `.wheels`, `.sbom`) with a Python interpreter found
on the machine and, for the `wheels` steps, the packaging libraries of the `[ai-agents-builder]`
lock.

The cores' source files are inputs of every such process, and the libraries (a loose PEX that
Pants builds from the lock, cached like any other output) of the steps that import them
(`LibraryImageBuilder`), so editing a core or bumping a library invalidates exactly the outputs
they produced, and nothing else does. The other steps (the `oci`, `debian` and `sbom` cores use
the standard library only) do not wait for the libraries: on a machine with empty caches the
Debian base is fetched and written while the libraries are built.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, List, Mapping, Optional, Sequence, Tuple, cast

from pants.backend.python.target_types import PexLayout
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

from ai_agent.debian.lock import LockRequest
from ai_agent.subsystems import ImageBuilderLibraries
from ai_agent.util_rules.network import DownloadAccess, RegistryAccess
from ai_agent.util_rules.step_python import StepPythonRequest

# Where the cores' sources and libraries are mounted inside each sandbox (read-only, shared
# between processes).
_MOUNT = "__ai_agent_builder"
# Packages of the plugin that run inside sandboxes: the standard library plus the
# [ai-agents-builder] libraries, never Pants.
_SANDBOXED_PACKAGES = ("oci", "debian", "wheels", "sbom")
# With a remote cache, Pants starts a process locally if the cache has not answered within this
# delay (default 0: at once), and cancels it on a hit. A miss answers at once either way; a hit
# that downloads a big layer takes a while, and on a small build machine racing it with a local
# rebuild of the same layer only takes CPU and disk from the steps that do need to run.
_REMOTE_CACHE_SPECULATION_DELAY_MILLIS = 2000


@dataclass(frozen=True)
class ImageBuilder:
    """The interpreter and sources that image-building processes run; `python_path` lists,
    relative to the sandbox, where the sources (and, in a `LibraryImageBuilder`, each library)
    are importable.

    One method per command of the cores' command lines, each returning the `Process` that runs
    it; the flags are the command's, in a fixed order (they are the process's cache key)."""

    python: PythonExecutable
    sources: Digest
    python_path: Tuple[str, ...]

    # `python -m ai_agent.oci` -------------------------------------------------------------------

    def oci_layer(
        self, *, spec: str, output_dir: str, inputs: Digest, description: str, recipe: bool = False
    ) -> Process:
        return self._process(
            "oci",
            [
                "layer",
                "--spec",
                spec,
                "--output-dir",
                output_dir,
                *(["--recipe"] if recipe else []),
            ],
            description=description,
            input_digest=inputs,
            output_directories=(output_dir,),
        )

    def oci_image(
        self, *, spec: str, archive: Optional[str], metadata: str, inputs: Digest, description: str
    ) -> Process:
        """The image's metadata JSON at `metadata`, and its archive at `archive` unless None."""
        archive_args = ["--output", archive] if archive else []
        return self._process(
            "oci",
            ["image", "--spec", spec, *archive_args, "--metadata", metadata],
            description=description,
            input_digest=inputs,
            output_files=(*([archive] if archive else []), metadata),
        )

    def oci_image_stream(self, *, spec: str, metadata: str, inputs: Digest) -> Process:
        """The image's archive written to stdout, for `./pants run` to pipe into `docker load`:
        its argv and env are run by the runner, outside Pants (nothing to cache)."""
        return self._process(
            "oci",
            ["image", "--spec", spec, "--output", "-", "--metadata", metadata],
            description="Streaming an image archive",
            input_digest=inputs,
            cache_scope=ProcessCacheScope.PER_SESSION,
        )

    def oci_export(
        self,
        *,
        into: str,
        layout: str,
        owner: str,
        spec: Optional[str],
        paths: Sequence[str],
        remove: Sequence[str],
        remove_sbom_named_by: Optional[str] = None,
        inputs: Digest,
        description: str,
    ) -> Process:
        """Place `paths` under `into`, after the image of `spec` as `owner`'s in the shared OCI
        layout `layout` (without `spec`, `owner`'s image leaves it); remove `remove`, and the
        SBOM files that the metadata JSON at `remove_sbom_named_by` names (as an earlier
        package left it) and `paths` lack."""
        layout_args = ["--layout", layout, "--owner", owner, *(["--spec", spec] if spec else [])]
        sbom_args = (
            [f"--remove-sbom-named-by={remove_sbom_named_by}"] if remove_sbom_named_by else []
        )
        return self._process(
            "oci",
            ["export", "--into", into, *layout_args, *sbom_args]
            + [f"--remove={path}" for path in remove]
            + list(paths),
            description=description,
            input_digest=inputs,
            # `dist/` is outside every cache: look at it on every run.
            cache_scope=ProcessCacheScope.PER_SESSION,
        )

    def oci_pull_blob(
        self, *, access: RegistryAccess, repository: str, digest: str, size: int, output: str
    ) -> Process:
        return self._process(
            "oci",
            ["pull-blob", "--repository", repository, "--digest", digest]
            + ["--size", str(size), "--output", output, *access.args],
            description=f"Pulling {digest} from {repository}",
            output_files=(output,),
            env=access.env,
            level=LogLevel.INFO,
        )

    def oci_lock_base(
        self,
        *,
        access: RegistryAccess,
        image: str,
        platforms: Sequence[str],
        output: str,
        description: str,
    ) -> Process:
        return self._process(
            "oci",
            ["lock-base", "--image", image]
            + [arg for platform in platforms for arg in ("--platform", platform)]
            + [*access.args, "--output", output],
            description=description,
            output_files=(output,),
            env=access.env,
            level=LogLevel.INFO,
            # A lock must reflect what the tag names now, never a cached earlier answer.
            cache_scope=ProcessCacheScope.PER_SESSION,
        )

    def oci_check_base(
        self, *, access: RegistryAccess, lock: str, inputs: Digest, description: str
    ) -> Process:
        return self._check(
            "oci", ["check-base", "--lock", lock, *access.args], inputs, description, access.env
        )

    def oci_push(
        self,
        *,
        access: RegistryAccess,
        spec: str,
        refs: Sequence[str],
        mount_from: Sequence[str],
        attach: Sequence[Tuple[str, str, str]] = (),
        inputs: Digest,
        description: str,
    ) -> Process:
        """Push the image of `spec`, then attach each document of `attach` ((media type, the
        digest of the manifest it is about, its path in `inputs`)) as an OCI 1.1 referrer;
        `inputs` need hold only the layer files that neither the registry nor a `mount_from`
        repository of it has."""
        return self._process(
            "oci",
            ["push", "--spec", spec]
            + [arg for ref in refs for arg in ("--ref", ref)]
            + [arg for document in attach for arg in ("--attach", *document)]
            + [arg for source in mount_from for arg in ("--mount-from", source)]
            + list(access.args),
            description=description,
            input_digest=inputs,
            env=access.env,
            level=LogLevel.INFO,
        )

    def oci_missing_layers(
        self,
        *,
        access: RegistryAccess,
        spec: str,
        repository: str,
        mount_from: Sequence[str],
        inputs: Digest,
        description: str,
    ) -> Process:
        return self._process(
            "oci",
            ["missing-layers", "--spec", spec, "--repository", repository]
            + [arg for source in mount_from for arg in ("--mount-from", source)]
            + list(access.args),
            description=description,
            input_digest=inputs,
            env=access.env,
            level=LogLevel.INFO,
            # The answer is about the registry as it is now.
            cache_scope=ProcessCacheScope.PER_SESSION,
        )

    def oci_compare(self, *, first: str, second: str, inputs: Digest, description: str) -> Process:
        return self._process(
            "oci",
            ["compare", "--first", first, "--second", second],
            description=description,
            input_digest=inputs,
        )

    # `python -m ai_agent.debian` ----------------------------------------------------------------

    def debian_lock(
        self, *, access: DownloadAccess, request: LockRequest, output: str, description: str
    ) -> Process:
        return self._process(
            "debian",
            ["lock", "--suite", request.suite, "--variant", request.variant]
            + [arg for arch in request.architectures for arg in ("--arch", arch)]
            + [arg for package in request.packages for arg in ("--package", package)]
            + [arg for package in request.excludes for arg in ("--exclude", package)]
            + [*_mirror_args(access), *access.limit_args, "--output", output],
            description=description,
            output_files=(output,),
            # gpgv checks the indexes' signatures; it is found on the PATH.
            env={"PATH": "/usr/bin:/bin"},
            level=LogLevel.INFO,
            # A lock must reflect the archive as it is now, never a cached earlier answer.
            cache_scope=ProcessCacheScope.PER_SESSION,
        )

    def debian_fetch(
        self,
        *,
        access: DownloadAccess,
        lock: str,
        architecture: str,
        output_dir: str,
        refresh_command: str,
        inputs: Digest,
        description: str,
    ) -> Process:
        return self._process(
            "debian",
            ["fetch", "--lock", lock, "--arch", architecture]
            + ["--output-dir", output_dir, *_mirror_args(access)]
            + ["--refresh-command", refresh_command, *access.limit_args],
            description=description,
            input_digest=inputs,
            output_directories=(output_dir,),
            level=LogLevel.INFO,
        )

    def debian_layer(
        self,
        *,
        lock: str,
        architecture: str,
        debs: str,
        output_dir: str,
        source_date_epoch: int,
        inputs: Digest,
        description: str,
    ) -> Process:
        return self._process(
            "debian",
            ["layer", "--lock", lock, "--arch", architecture, "--debs", debs]
            + ["--output-dir", output_dir, "--source-date-epoch", str(source_date_epoch)],
            description=description,
            input_digest=inputs,
            output_directories=(output_dir,),
            level=LogLevel.INFO,
        )

    def debian_check(
        self, *, access: DownloadAccess, lock: str, inputs: Digest, description: str
    ) -> Process:
        argv = ["check", "--lock", lock, *_mirror_args(access), *access.limit_args]
        return self._check("debian", argv, inputs, description)

    # `python -m ai_agent.wheels` ----------------------------------------------------------------

    def wheels_plan(self, *, target: WheelTarget, inputs: Digest, description: str) -> Process:
        return self._process(
            "wheels",
            ["plan", *target.args()],
            description=description,
            input_digest=inputs,
            libraries=True,
        )

    def wheels_group(
        self,
        *,
        access: DownloadAccess,
        environment: WheelEnvironment,
        threshold_mib: int,
        wheels: Sequence[Tuple[str, str]],
        description: str,
    ) -> Process:
        """`wheels`: (URL, sha256) of each locked wheel, read where it is served."""
        return self._process(
            "wheels",
            ["group", *environment.args(), "--threshold-mib", str(threshold_mib)]
            + [f"--wheel={url}={sha256}" for url, sha256 in wheels]
            + list(access.limit_args),
            description=description,
            libraries=True,
        )

    def wheels_layer(
        self,
        *,
        access: DownloadAccess,
        environment: WheelEnvironment,
        bytecode_interpreter: str,
        source_date_epoch: int,
        kind: str,
        wheels: Sequence[GroupedWheel],
        venv_version: Optional[str],
        output_dir: str,
        description: str,
    ) -> Process:
        """The layer of `wheels`, each downloaded by the step (no wheel enters Pants' store);
        a virtual environment's own files for CPython `venv_version` unless None."""
        argv = ["layer", *environment.args(), "--bytecode-interpreter", bytecode_interpreter]
        argv += ["--source-date-epoch", str(source_date_epoch), "--kind", kind]
        for wheel in wheels:
            argv += [f"--wheel={wheel.url}={wheel.sha256}", f"--listing={wheel.listing}"]
            argv += [f"--skip={path}" for path in wheel.skip]
            argv += [f"--measure={path}" for path in wheel.measure]
        if venv_version:
            argv += ["--venv-version", venv_version]
        return self._process(
            "wheels",
            [*argv, "--output-dir", output_dir, *access.limit_args],
            description=description,
            output_directories=(output_dir,),
            libraries=True,
        )

    def wheels_check(
        self, *, access: DownloadAccess, lock: str, inputs: Digest, description: str
    ) -> Process:
        argv = ["check", "--lock", lock, *access.limit_args]
        return self._check("wheels", argv, inputs, description, libraries=True)

    # `python -m ai_agent.sbom` ------------------------------------------------------------------

    def sbom_write(
        self, *, spec: str, outputs: Sequence[str], inputs: Digest, description: str
    ) -> Process:
        """The SPDX documents and the provenance statement at `outputs`, as `spec` names them."""
        return self._process(
            "sbom",
            ["write", "--spec", spec],
            description=description,
            input_digest=inputs,
            output_files=tuple(outputs),
        )

    # ---------------------------------------------------------------------------------------------

    def _check(
        self,
        module: str,
        argv: List[str],
        inputs: Digest,
        description: str,
        env: Optional[Mapping[str, str]] = None,
        libraries: bool = False,
    ) -> Process:
        """A lock check: its answer is about the servers as they are now, so never cached."""
        return self._process(
            module,
            argv,
            description=description,
            input_digest=inputs,
            env=env,
            level=LogLevel.INFO,
            cache_scope=ProcessCacheScope.PER_SESSION,
            libraries=libraries,
        )

    def _process(
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
        libraries: bool = False,
    ) -> Process:
        """A process running `python -m ai_agent.<module> <argv>` in a sandbox; `libraries`: the
        command imports the builder's libraries (only a `LibraryImageBuilder` mounts them)."""
        if libraries and not isinstance(self, LibraryImageBuilder):
            raise TypeError(
                f"`python -m ai_agent.{module}` imports the builder's libraries: a rule that"
                " runs it needs a LibraryImageBuilder"
            )
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
class LibraryImageBuilder(ImageBuilder):
    """An `ImageBuilder` whose processes can also import the `[ai-agents-builder]` libraries
    (`packaging`, `installer`): what the `wheels` steps need (plan, group, layer, check)."""


def _mirror_args(access: DownloadAccess) -> List[str]:
    return [arg for mirror in access.debian_mirrors for arg in ("--mirror", mirror)]


@dataclass(frozen=True)
class GroupedWheel:
    """A wheel as `wheels group` placed it in a layer: its URL and sha256, the digest of the
    listing it was grouped by, and the paths it skips or whose bytes that listing holds."""

    url: str
    sha256: str
    listing: str
    skip: Tuple[str, ...]
    measure: Tuple[str, ...]

    @classmethod
    def from_json(cls, wheel: Mapping[str, Any]) -> GroupedWheel:
        return cls(
            wheel["wheel"],
            wheel["sha256"],
            wheel["listing"],
            tuple(wheel["skip"]),
            tuple(wheel["measure"]),
        )


@dataclass(frozen=True)
class WheelTarget:
    """What `wheels plan` chooses wheels for: the lock's `requirements`, the image's CPython,
    platform and glibc."""

    lock: str
    requirements: Tuple[str, ...]
    python_version: str
    platform: str
    glibc: str

    def args(self) -> List[str]:
        return [
            "--lock",
            self.lock,
            *(arg for requirement in self.requirements for arg in ("--requirement", requirement)),
            "--python",
            self.python_version,
            "--platform",
            self.platform,
            "--glibc",
            self.glibc,
        ]


@dataclass(frozen=True)
class WheelEnvironment:
    """Where wheels are installed in the image: the virtual environment at `prefix` for CPython
    `python` (X.Y), whose scripts run `interpreter`."""

    python: str
    prefix: str
    interpreter: str

    def args(self) -> List[str]:
        return ["--python", self.python, "--prefix", self.prefix, "--interpreter", self.interpreter]


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

    def stdout_json(self) -> Any:
        """What the step printed: the cores' commands that answer print one JSON value."""
        return json.loads(self.stdout)


async def read_json(digest: Digest, path: str) -> Any:
    """The JSON file at `path` in `digest` (a step's descriptor or metadata)."""
    (value,) = await read_json_files([(digest, path)])
    return value


async def read_json_files(files: Iterable[Tuple[Digest, str]]) -> Tuple[Any, ...]:
    """Each (digest, path)'s JSON file, read together."""
    contents = await MultiGet(
        Get(DigestContents, DigestSubset(digest, PathGlobs([path]))) for digest, path in files
    )
    return tuple(json.loads(content.content) for (content,) in contents)


def _sandboxed_sources() -> tuple[FileContent, ...]:
    plugin_root = Path(__file__).resolve().parents[1]
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
    python, sources = await MultiGet(
        Get(PythonExecutable, StepPythonRequest(libraries.interpreter_constraints)),
        Get(Digest, CreateDigest(_sandboxed_sources())),
    )
    return ImageBuilder(python=python, sources=sources, python_path=(_MOUNT,))


@rule(desc="Preparing the image builder's libraries", level=LogLevel.DEBUG)
async def prepare_library_image_builder(
    builder: ImageBuilder, libraries: ImageBuilderLibraries
) -> LibraryImageBuilder:
    # Not `internal_only` (a PEX Pants runs itself): that would make Pants search for an
    # interpreter on every run; the libraries are only unpacked, never run as a PEX.
    libraries_request = dataclasses.replace(
        libraries.to_pex_request(interpreter_constraints=libraries.interpreter_constraints),
        layout=PexLayout.LOOSE,
        internal_only=False,
    )
    libraries_pex = await Get(Pex, PexRequest, libraries_request)
    directories = await _library_directories(libraries_pex)
    mounted = await Get(Digest, MergeDigests([builder.sources, libraries_pex.digest]))
    python_path = (
        *builder.python_path,
        *(f"{_MOUNT}/{libraries_pex.name}/{path}" for path in directories),
    )
    return LibraryImageBuilder(python=builder.python, sources=mounted, python_path=python_path)


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
