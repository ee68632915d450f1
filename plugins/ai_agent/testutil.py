"""The `RuleRunner` of the plugin's rule tests (`util_rules/*_test.py`, `goals/*_test.py`): the
plugin's rules and target types as `ai_agent.register` declares them, on top of the core and
Python backend rules that a real Pants run loads, with the options of the repo's `pants.toml` that
the rules read (resolves, interpreter constraints, source roots, the pex tool, the environment
pip and pex need here), and a query for everything the tests ask of it.

Rules run for real, processes included: building the image builder's libraries needs the pex tool
that the `./pants` launcher built (`AI_AGENT_PEX_TOOL`, which `./pants test` passes through) and
an interpreter the `[python-bootstrap]` search path finds.

One runner serves every test of a pytest run (the `rule_runner` fixture, which the conftest.py
of util_rules/ and goals/ hand out; their test targets share a batch, so that is all of them):
building its rule graph takes seconds, and what one test built (the Debian base, the builder) the
next finds in memory. Each test writes its targets into a directory of its own (`CaseDir`, the
`case` fixture), so that a broken target of one case never reaches another, and that directory's
BUILD is emptied afterwards, since rules such as `BaseTargets` read every target of the repo. A
test that changes options puts the repo's back.
"""

from __future__ import annotations

import json
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, List, Mapping, Type

import pytest
from pants.backend.python import register as python_backend
from pants.backend.python.util_rules.interpreter_constraints import InterpreterConstraints
from pants.backend.python.util_rules.pex import PythonExecutable
from pants.core import register as core_backend
from pants.core.goals.generate_lockfiles import KnownUserResolveNames, UserGenerateLockfiles
from pants.core.goals.package import BuiltPackage
from pants.engine.fs import Digest, Snapshot
from pants.engine.goal import Goal
from pants.engine.internals.scheduler import ExecutionError
from pants.engine.rules import QueryRule
from pants.testutil.rule_runner import PYTHON_BOOTSTRAP_ENV, GoalRuleResult, RuleRunner

from ai_agent import register
from ai_agent.goals.generate_lockfiles import (
    KnownBaseImageResolveNamesRequest,
    RequestedBaseImageResolveNames,
)
from ai_agent.goals.package import AgentPackageFieldSet, BaseImagePackageFieldSet
from ai_agent.util_rules.agent import Agent, AgentRequest
from ai_agent.util_rules.agent_image import AgentImage, AgentImageRequest
from ai_agent.util_rules.base_image import BaseImageRequest, BaseTargets
from ai_agent.util_rules.builder import ImageBuilder, LibraryImageBuilder
from ai_agent.util_rules.dist import ArchiveOutputPaths, LayoutNames
from ai_agent.util_rules.image import BaseImage
from ai_agent.util_rules.network import DownloadAccess
from ai_agent.util_rules.platform_base import CudaTable, PlatformBase, PlatformBaseRequest
from ai_agent.util_rules.step_python import StepPythonRequest

# `[python]`, `[source]` and friends as the repo's pants.toml sets them.
PANTS_TOML_ARGS = (
    "--source-root-patterns=['/plugins', '/tests', '/agents/*']",
    "--python-interpreter-constraints=['CPython==3.9.*']",
    "--python-enable-resolves",
    "--python-default-resolve=agents",
    "--python-resolves={'pants-plugins': 'lockfiles/pants-plugins.lock',"
    " 'agents': 'lockfiles/agents.lock', 'torch': 'lockfiles/torch.lock'}",
    "--python-resolves-to-interpreter-constraints="
    "{'agents': ['CPython==3.11.*'], 'torch': ['CPython==3.11.*']}",
    "--python-bootstrap-search-path=['<PYENV>', '<PATH>']",
    "--python-infer-use-rust-parser=false",
    "--subprocess-environment-env-vars=["
    "'PIP_CONFIG_FILE=/dev/null', 'PIP_CERT=/etc/ssl/certs/ca-certificates.crt']",
)
PEX_VERSION = "v2.1.163"
PEX_KNOWN_VERSION = (
    f"{PEX_VERSION}|linux_x86_64|36f7e64b3232819c6fafd8041f963c7c064dd53756f3ef6a6c05c6bb90bf455c"
    "|3677580"
)

# Resolves of the tests only: one whose lock pins a project without a wheel (written by
# agent_image_test.py), one whose lock does not exist.
TEST_ARGS = (
    "--python-resolves=+{'nowheel': 'lockfiles/nowheel.lock',"
    " 'unlocked': 'lockfiles/unlocked.lock'}",
    "--python-resolves-to-interpreter-constraints=+{'nowheel': ['CPython==3.11.*'],"
    " 'unlocked': ['CPython==3.11.*']}",
)

# A resolve whose lock pins a project that has only an sdist: no wheel can be installed.
NOWHEEL_REQUIREMENT = "fakepkg==1.0"
NOWHEEL_LOCK_METADATA = {
    "version": 3,
    "valid_for_interpreter_constraints": ["CPython==3.11.*"],
    "generated_with_requirements": [NOWHEEL_REQUIREMENT],
    "manylinux": "manylinux2014",
    "requirement_constraints": [],
    "only_binary": [],
    "no_binary": [],
}
NOWHEEL_LOCK_BODY = {
    "allow_builds": True,
    "allow_prereleases": False,
    "allow_wheels": True,
    "build_isolation": True,
    "constraints": [],
    "locked_resolves": [
        {
            "locked_requirements": [
                {
                    "artifacts": [
                        {
                            "algorithm": "sha256",
                            "hash": "1" * 64,
                            "url": "https://files.pythonhosted.org/packages/00/00/fakepkg-1.0.tar.gz",
                        }
                    ],
                    "project_name": "fakepkg",
                    "requires_dists": [],
                    "requires_python": ">=3.8",
                    "version": "1.0",
                }
            ],
            "platform_tag": None,
        }
    ],
    "only_builds": [],
    "only_wheels": [],
    "path_mappings": {},
    "pex_version": "2.1.163",
    "pip_version": "23.1.2",
    "prefer_older_binary": False,
    "requirements": [NOWHEEL_REQUIREMENT],
    "requires_python": ["==3.11.*"],
    "resolver_version": "pip-2020-resolver",
    "style": "universal",
    "target_systems": ["linux", "mac"],
    "transitive": True,
    "use_pep517": None,
}


def nowheel_lock() -> str:
    """The lock of the tests' `nowheel` resolve (`TEST_ARGS`)."""
    metadata = json.dumps(NOWHEEL_LOCK_METADATA, indent=2).splitlines()
    return (
        "// This lockfile was autogenerated by Pants. To regenerate, run:\n//\n"
        "//    pants generate-lockfiles --resolve=nowheel\n//\n"
        "// --- BEGIN PANTS LOCKFILE METADATA: DO NOT EDIT OR REMOVE ---\n"
        + "".join(f"// {line}\n" for line in metadata)
        + "// --- END PANTS LOCKFILE METADATA ---\n\n"
        + json.dumps(NOWHEEL_LOCK_BODY, indent=2, sort_keys=True)
        + "\n"
    )


# The skeleton the repo's agents live in (as tests/testkit's AGENTS_SKELETON): code and agents use
# the `agents` resolve, on the Debian base `//agents/base:bookworm-python`.
AGENTS_BUILD = """\
__defaults__(
    {
        (python_sources, python_source): dict(
            resolve="agents", interpreter_constraints=["CPython==3.11.*"]
        ),
        ai_agent: dict(resolve="agents", base="//agents/base:bookworm-python"),
    }
)
"""
BASE_ADDRESS = "agents/base:bookworm-python"
RESOLVES = ("pants-plugins", "agents", "torch")
SKELETON = {
    "agents/BUILD": AGENTS_BUILD,
    "agents/base/BUILD": 'debian_base(name="bookworm-python")\n',
    # Reading an agent reads its resolve's lock only to pin it (its sha256); tests of the rules
    # that choose wheels from it bring the real one (`copy_repo_files`).
    **{f"lockfiles/{resolve}.lock": "// a lock\n{}\n" for resolve in RESOLVES},
}
# The repo's base lock, for tests that build its Debian base.
DEBIAN_LOCK = "lockfiles/debian-bookworm-python.lock.json"


# What finding interpreters and the pex tool needs from the test's environment.
ENV_INHERIT = {*PYTHON_BOOTSTRAP_ENV, "AI_AGENT_PEX_TOOL"}


def pex_tool_args() -> List[str]:
    """The pex tool of the `./pants` launcher, as `[pex-cli]` of pants.toml pins it."""
    tool = os.environ.get("AI_AGENT_PEX_TOOL")
    if not tool or not os.path.isfile(tool):
        pytest.fail(
            "AI_AGENT_PEX_TOOL names no pex tool: run the tests through `./pants test`, whose"
            " launcher builds the tool and sets it"
        )
    directory = os.path.dirname(tool)
    return [
        f"--pex-cli-version={PEX_VERSION}",
        f"--pex-cli-known-versions=['{PEX_KNOWN_VERSION}']",
        f"--pex-cli-url-template=file://{directory}/pex-{{version}}.pex",
        "--ca-certs-path=/etc/ssl/certs/ca-certificates.crt",
    ]


# Everything the tests ask the runner for.
QUERIES = (
    QueryRule(Agent, [AgentRequest]),
    QueryRule(AgentImage, [AgentImageRequest]),
    QueryRule(ArchiveOutputPaths, []),
    QueryRule(LayoutNames, []),
    QueryRule(BaseImage, [BaseImageRequest]),
    QueryRule(BaseTargets, []),
    QueryRule(BuiltPackage, [AgentPackageFieldSet]),
    QueryRule(BuiltPackage, [BaseImagePackageFieldSet]),
    QueryRule(CudaTable, []),
    QueryRule(DownloadAccess, []),
    QueryRule(ImageBuilder, []),
    QueryRule(LibraryImageBuilder, []),
    QueryRule(KnownUserResolveNames, [KnownBaseImageResolveNamesRequest]),
    QueryRule(PlatformBase, [PlatformBaseRequest]),
    QueryRule(PythonExecutable, [InterpreterConstraints]),
    QueryRule(PythonExecutable, [StepPythonRequest]),
    QueryRule(Snapshot, [Digest]),
    QueryRule(UserGenerateLockfiles, [RequestedBaseImageResolveNames]),
)


def new_rule_runner() -> RuleRunner:
    """A runner with every rule of the plugin and of the backends it builds on, the repo's
    options and the agents' skeleton written."""
    rule_runner = RuleRunner(
        rules=[*core_backend.rules(), *python_backend.rules(), *register.rules(), *QUERIES],
        target_types=[
            *core_backend.target_types(),
            *python_backend.target_types(),
            *register.target_types(),
        ],
    )
    set_options(rule_runner)
    rule_runner.write_files(SKELETON)
    return rule_runner


def copy_repo_files(rule_runner: RuleRunner, *paths: str) -> None:
    """Copy files of the repo (which the test's BUILD dependencies put in its sandbox, the
    working directory) to the same paths in the build root, e.g. the real agents lock."""
    rule_runner.write_files({path: Path(path).read_text() for path in paths})


def set_options(rule_runner: RuleRunner, *extra_args: str) -> None:
    """The repo's options, then `extra_args` (e.g. `--ai-agents-default-base=...`)."""
    rule_runner.set_options(
        [*PANTS_TOML_ARGS, *TEST_ARGS, *pex_tool_args(), *extra_args], env_inherit=ENV_INHERIT
    )


def run_goal(rule_runner: RuleRunner, goal: Type[Goal], *args: str) -> GoalRuleResult:
    """`./pants <goal> <args>` with the repo's options."""
    return rule_runner.run_goal_rule(
        goal,
        global_args=[*PANTS_TOML_ARGS, *TEST_ARGS, *pex_tool_args()],
        args=args,
        env_inherit=ENV_INHERIT,
    )


_SHARED: List[RuleRunner] = []


@pytest.fixture(scope="session")
def rule_runner() -> RuleRunner:
    """The runner of this pytest run (one, whichever conftest.py hands it out)."""
    if not _SHARED:
        _SHARED.append(new_rule_runner())
    return _SHARED[0]


@pytest.fixture
def case(rule_runner: RuleRunner, request: pytest.FixtureRequest) -> Iterator[CaseDir]:
    """The test's own directory for its targets (see `case_dir`)."""
    with case_dir(rule_runner, request) as directory:
        yield directory


@dataclass(frozen=True)
class CaseDir:
    """`agents/<name>/`: one test's targets, below the `/agents/*` source root of its own."""

    rule_runner: RuleRunner
    name: str

    @property
    def path(self) -> str:
        return f"agents/{self.name}"

    def address(self, target_name: str = "agent") -> str:
        return f"{self.path}:{target_name}"

    def write(self, files: Mapping[str, str]) -> None:
        self.rule_runner.write_files({f"{self.path}/{path}": text for path, text in files.items()})


@contextmanager
def case_dir(rule_runner: RuleRunner, request: Any) -> Iterator[CaseDir]:
    """A directory named after the test (`request` is pytest's) and its module, emptied of
    targets afterwards."""
    module = request.node.module.__name__.rsplit(".", 1)[-1]
    test = re.sub(r"[^A-Za-z0-9_]+", "_", request.node.name).strip("_").lower()
    name = f"{module}_{test[len('test_'):] if test.startswith('test_') else test}"
    case = CaseDir(rule_runner, name)
    try:
        yield case
    finally:
        case.write({"BUILD": ""})


def raised(
    exception_type: Type[BaseException], call: Any, *args: Any, **kwargs: Any
) -> BaseException:
    """The one exception of type `exception_type` that `call(*args, **kwargs)` (a rule request)
    fails with; anything else fails the test."""
    with pytest.raises(ExecutionError) as error:
        call(*args, **kwargs)
    wrapped: List[BaseException] = list(error.value.wrapped_exceptions)
    assert len(wrapped) == 1 and isinstance(wrapped[0], exception_type), str(error.value)
    return wrapped[0]


def assert_message(error: BaseException, *parts: str) -> str:
    """`error`'s message holds every one of `parts` (the target, the field, the fix)."""
    message = str(error)
    missing = [part for part in parts if part not in message]
    assert not missing, f"{missing} not in:\n{message}"
    return message


def failure(
    exception_type: Type[BaseException],
    rule_runner: RuleRunner,
    output_type: type,
    inputs: Iterable[Any],
    *parts: str,
) -> str:
    """Requesting `output_type` fails with an `exception_type` whose message holds `parts`."""
    error = raised(exception_type, rule_runner.request, output_type, list(inputs))
    return assert_message(error, *parts)
