"""What an `ai_agent` target is made of, gathered and checked before any layer is built: its
`agent.yaml`, first-party code, weights, third-party requirements and the lock that pins them.

Every check here fails with a message that names the target, the field and the fix, so a bad
input stops the build before a single process runs.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Set, Tuple

from pants.backend.python.subsystems.setup import PythonSetup
from pants.backend.python.target_types import PythonRequirementsField
from pants.backend.python.util_rules.pex_from_targets import (
    ChosenPythonResolve,
    ChosenPythonResolveRequest,
)
from pants.backend.python.util_rules.pex_requirements import PexRequirements
from pants.backend.python.util_rules.python_sources import (
    PythonSourceFilesRequest,
    StrippedPythonSourceFiles,
)
from pants.base.glob_match_error_behavior import GlobMatchErrorBehavior
from pants.core.target_types import FileSourceField, ResourceSourceField
from pants.core.util_rules.source_files import SourceFiles, SourceFilesRequest
from pants.core.util_rules.stripped_source_files import StrippedSourceFiles
from pants.engine.addresses import Address, Addresses, UnparsedAddressInputs
from pants.engine.fs import Digest, DigestContents, DigestEntries, FileEntry, PathGlobs, Snapshot
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.engine.target import (
    DependenciesRequest,
    FieldSet,
    HydratedSources,
    HydrateSourcesRequest,
    InferDependenciesRequest,
    InferredDependencies,
    InvalidFieldException,
    SourcesField,
    Target,
    Targets,
    TransitiveTargets,
    TransitiveTargetsRequest,
    WrappedTarget,
    WrappedTargetRequest,
)
from pants.engine.unions import UnionRule
from pants.util.logging import LogLevel

from ai_agent.agent_config import AgentConfig, AgentConfigError, decode_agent_config
from ai_agent.subsystems import AiAgentSubsystem
from ai_agent.target_types import (
    AgentAcceleratorField,
    AgentBaseField,
    AgentCommandField,
    AgentConfigSourceField,
    AgentDependenciesField,
    AgentEntryPointField,
    AgentEnvField,
    AgentPortsField,
    AgentUserField,
    AgentWeightsDirField,
    AgentWeightsField,
    AiAgentTarget,
    exposed_port,
)
from ai_agent.util_rules.layers import ImageFile

logger = logging.getLogger(__name__)


class InvalidAgent(InvalidFieldException):
    """An `ai_agent` target cannot be built as written; the message names the field (or the
    `agent.yaml` entry) and the fix."""


@dataclass(frozen=True)
class AgentRequest:
    address: Address


@dataclass(frozen=True)
class Agent:
    """An `ai_agent` target's inputs, checked. Paths in digests are source-root relative."""

    target: AiAgentTarget
    config: AgentConfig
    config_file: Digest
    config_path: str
    # The `base` field, else `[ai-agents].default_base` (None if neither is set: then only a
    # CUDA agent builds, on the CUDA table's base).
    base: Optional[Address]
    # Whether `base` is the field's: a CUDA agent without one builds on the default base only
    # when its wheels carry CUDA, else on the CUDA table's base.
    base_from_field: bool
    resolve: str
    interpreter_constraints: Tuple[str, ...]
    lockfile_path: str
    lockfile: Digest
    lockfile_sha256: str
    requirements: Tuple[str, ...]
    code: Snapshot
    weights: Digest
    weight_files: Tuple[ImageFile, ...]
    env: Tuple[Tuple[str, str], ...]
    ports: Tuple[str, ...]

    @property
    def address(self) -> Address:
        return self.target.address


def base_spec(target: Target, subsystem: AiAgentSubsystem) -> Optional[str]:
    """The `base` field, else `[ai-agents].default_base`."""
    return target[AgentBaseField].value or subsystem.default_base


def entry_module_files(module: str) -> Tuple[str, ...]:
    """The files any one of which makes `module` runnable (`python -m` or importable)."""
    path = module.replace(".", "/")
    return (f"{path}.py", f"{path}/__main__.py", f"{path}/__init__.py")


def _merged_env(target: Target, config: AgentConfig, config_path: str) -> Dict[str, str]:
    env = dict(config.env)
    for name, value in (target[AgentEnvField].value or {}).items():
        if name in env:
            raise InvalidAgent(
                f"{target.address}: `{name}` is set both by the `env` field and by {config_path};"
                " set it in one place"
            )
        env[name] = value
    for reserved in ("PATH", "PYTHONPATH"):
        if reserved in env:
            raise InvalidAgent(
                f"{target.address}: `{reserved}` cannot be set (field `env` or {config_path}):"
                " the image sets it so that the agent's code and packages import; put extra"
                " code in the agent's `dependencies` instead"
            )
    return env


def _check_weights(
    target: Target, config: AgentConfig, config_path: str, files: Dict[str, str]
) -> Tuple[ImageFile, ...]:
    """Match `agent.yaml`'s `models` against the files of the `weights` targets, both ways."""
    weights_dir = target[AgentWeightsDirField].value.strip("/")
    declared = {model.name: model for model in config.models}
    missing = sorted(set(declared) - set(files))
    if missing:
        model = declared[missing[0]]
        known = ", ".join(sorted(files)) or "none"
        raise InvalidAgent(
            f"{target.address}: {config_path}:{model.line}: model file `{model.name}` is not"
            f" provided by any target in the `weights` field (its files, below their source"
            f" roots: {known}). Add the target that owns it to `weights`, or fix the name."
        )
    undeclared = sorted(set(files) - set(declared))
    if undeclared and config.models:
        raise InvalidAgent(
            f"{target.address}: the `weights` field provides {', '.join(undeclared)}, which"
            f" {config_path} does not list under `models`; list them there"
        )
    return tuple(
        ImageFile(source=files[name], image_path=f"{weights_dir}/{name}") for name in sorted(files)
    )


async def _check_pins(
    target: Target, config: AgentConfig, config_path: str, weights: Digest
) -> None:
    """Each `sha256` pin of `agent.yaml`'s `models` against the digest Pants took of the file
    when it read it: no weights byte is read or hashed again."""
    entries = await Get(DigestEntries, Digest, weights)
    actual = {
        entry.path: entry.file_digest.fingerprint
        for entry in entries
        if isinstance(entry, FileEntry)
    }
    for model in config.models:
        if model.sha256 is not None and actual.get(model.name) != model.sha256:
            raise InvalidAgent(
                f"{target.address}: {config_path}:{model.line}: model file `{model.name}` is"
                f" pinned to sha256 {model.sha256}, but the file in the `weights` field has"
                f" sha256 {actual.get(model.name)}: fix the file or the pin"
            )


async def _agent_config(target: Target) -> Tuple[AgentConfig, str, Digest]:
    """The parsed `agent.yaml`, its path and its digest."""
    sources = await Get(HydratedSources, HydrateSourcesRequest(target[AgentConfigSourceField]))
    (content,) = await Get(DigestContents, Digest, sources.snapshot.digest)
    try:
        config = decode_agent_config(content.content, content.path)
    except AgentConfigError as error:
        raise InvalidAgent(f"{target.address}: field `agent_config`: {error}") from None
    return config, content.path, sources.snapshot.digest


def _warn_if_root(target: Target) -> None:
    user = target[AgentUserField].value
    if user is not None and int(user.split(":")[0]) == 0:
        logger.warning(
            f"{target.address}: field `user` is {user!r}: the agent runs as root. Leave `user`"
            " unset (65532, the distroless `nonroot` user) unless it must."
        )


async def _base_and_weight_targets(
    target: Target, subsystem: AiAgentSubsystem
) -> Tuple[Addresses, Targets]:
    """The base's address (none: only a CUDA agent may build, on the CUDA table's base) and
    the `weights` targets, each checked to be what its field needs."""
    address = target.address
    spec = base_spec(target, subsystem)
    if not spec and target[AgentAcceleratorField].value == "cpu":
        raise InvalidAgent(
            f"{address}: no base image: set the `base` field (e.g."
            ' base="//agents/base:bookworm-python") or `[ai-agents].default_base`'
        )
    base, weight_targets = await MultiGet(
        Get(
            Addresses,
            UnparsedAddressInputs(
                [spec] if spec else [],
                owning_address=address,
                description_of_origin=f"the `base` field of {address}",
            ),
        ),
        Get(
            Targets,
            UnparsedAddressInputs(
                target[AgentWeightsField].value or (),
                owning_address=address,
                description_of_origin=f"the `weights` field of {address}",
            ),
        ),
    )
    for weight_target in weight_targets:
        if not (
            weight_target.has_field(FileSourceField) or weight_target.has_field(ResourceSourceField)
        ):
            raise InvalidAgent(
                f"{address}: field `weights` names {weight_target.address}, a"
                f" `{weight_target.alias}` target; weights must be `file` or `resource` targets"
            )
    return base, weight_targets


async def _code_closure(target: Target, excluded: Set[Address]) -> TransitiveTargets:
    """What the agent depends on, minus the base (and its lock) and the weights, which are
    dependencies only so that `--changed-since` sees them."""
    direct = await Get(Addresses, DependenciesRequest(target[AgentDependenciesField]))
    return await Get(
        TransitiveTargets,
        TransitiveTargetsRequest(
            [dependency for dependency in direct if dependency not in excluded]
        ),
    )


def _check_entry_point(target: Target, code: Snapshot) -> None:
    module = target[AgentEntryPointField].module()
    if module is not None and not set(entry_module_files(module)) & set(code.files):
        raise InvalidAgent(
            f"{target.address}: field `entry_point`: module `{module}` is not among the agent's"
            f" first-party sources (looked for {' or '.join(entry_module_files(module))} below a"
            " source root). Add the `python_sources` target that holds it to `dependencies`, or"
            " fix the module name."
        )
    if module is None and not target[AgentCommandField].value:
        raise InvalidAgent(f"{target.address}: field `command` is empty")


async def _lockfile(resolve: ChosenPythonResolve) -> Tuple[str, Snapshot, str]:
    """The resolve's lockfile: its path, snapshot and sha256."""
    path = resolve.lockfile.url
    snapshot = await Get(
        Snapshot,
        PathGlobs(
            [path],
            glob_match_error_behavior=GlobMatchErrorBehavior.error,
            description_of_origin=f"the lockfile of resolve `{resolve.name}`",
        ),
    )
    (content,) = await Get(DigestContents, Digest, snapshot.digest)
    return path, snapshot, hashlib.sha256(content.content).hexdigest()


async def _resolve_code_and_weights(
    target: Target, code_targets: Sequence[Target], weight_targets: Targets
) -> Tuple[ChosenPythonResolve, StrippedSourceFiles, StrippedSourceFiles]:
    """The agent's Python resolve, its code's files and its weights' files (source roots
    stripped), found together."""
    resolve, code, weight_sources = await MultiGet(
        Get(ChosenPythonResolve, ChosenPythonResolveRequest(Addresses([target.address]))),
        Get(
            StrippedPythonSourceFiles,
            PythonSourceFilesRequest(code_targets, include_resources=True, include_files=True),
        ),
        Get(
            SourceFiles,
            SourceFilesRequest(
                (weight_target.get(SourcesField) for weight_target in weight_targets),
                for_sources_types=(FileSourceField, ResourceSourceField),
                enable_codegen=True,
            ),
        ),
    )
    weights = await Get(StrippedSourceFiles, SourceFiles, weight_sources)
    return resolve, code.stripped_source_files, weights


@rule(desc="Reading an ai_agent target", level=LogLevel.DEBUG)
async def resolve_agent(
    request: AgentRequest, python_setup: PythonSetup, subsystem: AiAgentSubsystem
) -> Agent:
    wrapped = await Get(
        WrappedTarget,
        WrappedTargetRequest(request.address, description_of_origin="an ai_agent build"),
    )
    target = wrapped.target
    assert isinstance(target, AiAgentTarget)
    config, config_path, config_file = await _agent_config(target)
    _warn_if_root(target)
    base, weight_targets = await _base_and_weight_targets(target, subsystem)
    excluded = {*(weight.address for weight in weight_targets), *base}
    closure = await _code_closure(target, excluded)
    resolve, code, weights = await _resolve_code_and_weights(
        target,
        [dependency for dependency in closure.closure if dependency.address not in excluded],
        weight_targets,
    )
    code_snapshot = code.snapshot
    _check_entry_point(target, code_snapshot)
    weight_files = _check_weights(
        target, config, config_path, {path: path for path in weights.snapshot.files}
    )
    await _check_pins(target, config, config_path, weights.snapshot.digest)
    lockfile_path, lockfile, lockfile_sha256 = await _lockfile(resolve)
    requirements = PexRequirements.req_strings_from_requirement_fields(
        dependency[PythonRequirementsField]
        for dependency in closure.closure
        if dependency.has_field(PythonRequirementsField)
    )
    ports = {exposed_port(port, AgentPortsField, target.address) for port in config.ports}
    ports.update(target[AgentPortsField].value)
    return Agent(
        target=target,
        config=config,
        config_file=config_file,
        config_path=config_path,
        base=base[0] if base else None,
        base_from_field=bool(target[AgentBaseField].value),
        resolve=resolve.name,
        interpreter_constraints=tuple(
            python_setup.resolves_to_interpreter_constraints.get(
                resolve.name, python_setup.interpreter_constraints
            )
        ),
        lockfile_path=lockfile_path,
        lockfile=lockfile.digest,
        lockfile_sha256=lockfile_sha256,
        requirements=tuple(requirements),
        code=code_snapshot,
        weights=weights.snapshot.digest,
        weight_files=weight_files,
        env=tuple(sorted(_merged_env(target, config, config_path).items())),
        ports=tuple(sorted(ports)),
    )


@dataclass(frozen=True)
class AgentInferenceFieldSet(FieldSet):
    required_fields = (AgentDependenciesField, AgentConfigSourceField)

    base: AgentBaseField
    weights: AgentWeightsField


class InferAgentBaseAndWeights(InferDependenciesRequest):
    infer_from = AgentInferenceFieldSet


@rule(desc="Finding an agent's base and weights targets", level=LogLevel.DEBUG)
async def infer_agent_base_and_weights(
    request: InferAgentBaseAndWeights, subsystem: AiAgentSubsystem
) -> InferredDependencies:
    """The base and the weights are dependencies, so that `--changed-since` with dependents sees
    an edit of either (or of the base's lock) as a change of the agent."""
    field_set = request.field_set
    specs = [*(field_set.weights.value or ())]
    base = field_set.base.value or subsystem.default_base
    if base:
        specs.append(base)
    addresses = await Get(
        Addresses,
        UnparsedAddressInputs(
            specs,
            owning_address=field_set.address,
            description_of_origin=f"the `base` and `weights` fields of {field_set.address}",
        ),
    )
    return InferredDependencies(addresses)


def rules():
    return [*collect_rules(), UnionRule(InferDependenciesRequest, InferAgentBaseAndWeights)]
