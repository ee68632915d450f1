"""`PlatformBaseRequest` → `PlatformBase`: an agent's base for one platform, that base's Python
checked against the agent's resolve, and a CUDA agent's CUDA chosen from its locked wheels (and
its base from the CUDA table where it has none), with real processes: the Debian base of the
repo's lock is built (its .debs fetched, or taken from Pants' cache) and the wheels are chosen by
the builder from the repo's `agents` lock. Each wrong setting is refused before any layer of the
agent's own is built, naming the target, the field and the fix."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Tuple

import pytest
from pants.engine.addresses import Address
from pants.testutil.rule_runner import RuleRunner

from ai_agent.cuda.table import DEFAULT_TABLE, known_versions
from ai_agent.testutil import (
    BASE_ADDRESS,
    DEBIAN_LOCK,
    CaseDir,
    copy_repo_files,
    failure,
    set_options,
)
from ai_agent.util_rules.agent import Agent, AgentRequest, InvalidAgent
from ai_agent.util_rules.base_image import BasePlatformProblem
from ai_agent.util_rules.platform_base import (
    CudaTable,
    InvalidCudaBases,
    PlatformBase,
    PlatformBaseRequest,
)

APP = {"app/__main__.py": 'print("agent")\n', "agent.yaml": "name: agent\n"}
SOURCES = 'python_sources(name="src", sources=["app/*.py"])\n'
# The CUDA runtime as a wheel (the agents lock pins it): the "pip ships CUDA" route.
CUDART = 'python_requirement(name="cudart", requirements=["nvidia-cuda-runtime-cu12"])\n'
# What the Debian base's lock pins (read here, so that a lock refresh needs no test edit).
DEBIAN_PACKAGES = {
    package["name"]: package["version"]
    for package in json.loads(Path(DEBIAN_LOCK).read_text())["packages"]["amd64"]
}


@pytest.fixture(scope="module", autouse=True)
def repo_locks(rule_runner: RuleRunner) -> None:
    copy_repo_files(rule_runner, DEBIAN_LOCK, "lockfiles/agents.lock")
    rule_runner.write_files({"agents/deps/BUILD": CUDART.replace(")", ', resolve="agents")')})


def _agent_build(fields: str, extra: str = "") -> str:
    dependencies = "" if "dependencies=" in fields else 'dependencies=[":src"], '
    return SOURCES + extra + f'ai_agent(name="agent", entry_point="app", {dependencies}{fields})\n'


def _platform_base(case: CaseDir, build: str, platform: str = "linux/amd64") -> PlatformBase:
    case.write({"BUILD": build, **APP})
    agent = case.rule_runner.request(Agent, [AgentRequest(Address(case.path, target_name="agent"))])
    return case.rule_runner.request(PlatformBase, [PlatformBaseRequest(agent, platform)])


def _fails(case: CaseDir, build: str, *parts: str) -> str:
    case.write({"BUILD": build, **APP})
    agent = case.rule_runner.request(Agent, [AgentRequest(Address(case.path, target_name="agent"))])
    return failure(
        InvalidAgent,
        case.rule_runner,
        PlatformBase,
        [PlatformBaseRequest(agent, "linux/amd64")],
        f"{case.address()}: ",
        *parts,
    )


def _base_python() -> str:
    """The version of the base's `python3.X-minimal` (3.11.2 of 3.11.2-6+deb12u6)."""
    return next(
        version.split("-")[0]
        for name, version in DEBIAN_PACKAGES.items()
        if name.startswith("python3.") and name.endswith("-minimal")
    )


def _python_minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def test_a_cpu_agent_runs_on_the_python_of_its_debian_base(case: CaseDir) -> None:
    chosen = _platform_base(case, _agent_build(""))
    python_version = _base_python()
    assert chosen.base_address == Address("agents/base", target_name="bookworm-python")
    assert chosen.base.platform == "linux/amd64"
    assert chosen.runtime.python_version == python_version
    assert chosen.runtime.interpreter == f"/usr/bin/python{_python_minor(python_version)}"
    assert chosen.runtime.glibc == _python_minor(DEBIAN_PACKAGES["libc6"].split("-")[0])
    assert chosen.cuda is None and not chosen.table_base
    # The wheels are to be chosen for that Python and glibc, from the agent's lock.
    target = chosen.plan_request.target
    assert (target.python_version, target.platform, target.glibc) == (
        python_version,
        "linux/amd64",
        chosen.runtime.glibc,
    )
    assert target.lock == "lockfiles/agents.lock"


def test_a_resolve_for_another_python_is_refused(case: CaseDir) -> None:
    build = (
        'python_sources(name="src", sources=["app/*.py"], resolve="pants-plugins",'
        ' interpreter_constraints=["CPython==3.9.*"])\n'
        'ai_agent(name="agent", entry_point="app", dependencies=[":src"],'
        ' resolve="pants-plugins")\n'
    )
    python_version = _base_python()
    _fails(
        case,
        build,
        f"field `resolve`: the resolve `pants-plugins` is for CPython==3.9.*, but the base"
        f" {BASE_ADDRESS} runs CPython {python_version}.",
        "Use a resolve whose `[python].resolves_to_interpreter_constraints` is"
        f" `CPython=={_python_minor(python_version)}.*`, or a base with a matching Python.",
    )


def test_a_debian_base_has_no_other_platform(case: CaseDir) -> None:
    case.write({"BUILD": _agent_build('platforms=["linux/amd64", "linux/arm64"]'), **APP})
    agent = case.rule_runner.request(Agent, [AgentRequest(Address(case.path, target_name="agent"))])
    failure(
        BasePlatformProblem,
        case.rule_runner,
        PlatformBase,
        [PlatformBaseRequest(agent, "linux/arm64")],
        f"{BASE_ADDRESS}: no `arm64` in field `architectures` ['amd64']",
    )


# CUDA -----------------------------------------------------------------------------------------


def _cuda_fields(chosen: PlatformBase) -> Dict[str, str]:
    assert chosen.cuda is not None
    return {**chosen.cuda.env, **chosen.cuda.labels}


def test_cuda_wheels_on_a_python_base_get_the_nvidia_settings(case: CaseDir) -> None:
    chosen = _platform_base(
        case,
        _agent_build('accelerator="cuda", dependencies=[":src", "//agents/deps:cudart"]'),
    )
    assert chosen.base_address == Address("agents/base", target_name="bookworm-python")
    assert not chosen.table_base
    fields = _cuda_fields(chosen)
    # The CUDA of the locked nvidia-cuda-runtime-cu12 (12.4.127 → 12.4), its `base` flavour:
    # CUDA's libraries come from the wheels, the base needs none.
    assert fields["NVIDIA_REQUIRE_CUDA"] == "cuda>=12.4"
    assert fields["NVIDIA_VISIBLE_DEVICES"] == "all"
    assert fields["ai-agent.cuda.version"] == "12.4"
    assert fields["ai-agent.cuda.flavour"] == "base"
    assert chosen.cuda is not None and any("nvidia" in path for path in chosen.cuda.library_dirs)


def test_cuda_wheels_without_base_build_on_the_default_base(
    rule_runner: RuleRunner, case: CaseDir
) -> None:
    build = _agent_build(
        'accelerator="cuda", base=None, dependencies=[":src", "//agents/deps:cudart"]'
    )
    _fails(
        case,
        build,
        "no base image: its lock ships CUDA's libraries as nvidia-* wheels, so it builds on a"
        " Python base with the NVIDIA settings: set the `base` field",
        "or `[ai-agents].default_base`.",
    )
    set_options(rule_runner, f"--ai-agents-default-base=//{BASE_ADDRESS}")
    try:
        chosen = _platform_base(case, build)
    finally:
        set_options(rule_runner)
    assert chosen.base_address == Address("agents/base", target_name="bookworm-python")
    assert _cuda_fields(chosen)["ai-agent.cuda.version"] == "12.4"


def test_cuda_without_wheels_or_table_base_says_how_to_get_one(case: CaseDir) -> None:
    reference = DEFAULT_TABLE["12.6"]["runtime"]
    _fails(
        case,
        _agent_build('accelerator="cuda12.6", base=None'),
        "no CUDA base: the agent needs CUDA 12.6's libraries (the `runtime` flavour, from"
        " accelerator='cuda12.6') and no locked wheel ships them.",
        "Either lock them as wheels (the hermetic route): add `nvidia-cuda-runtime-cu12`,"
        " `nvidia-cublas-cu12` to the resolve's requirements and regenerate the lockfile; or set"
        " `base` to an image with CUDA and the resolve's Python; or pin the CUDA table's image"
        f' with `oci_base(name="cuda", image="{reference}")`',
    )


def test_cuda_without_its_libraries_on_a_debian_base_is_refused(
    rule_runner: RuleRunner, case: CaseDir
) -> None:
    # The table's entry, as `[ai-agents].cuda_bases` overrides it, is named in the fix.
    mirror = "registry.example.com/mirror/cuda:12.4.1-runtime-ubuntu22.04"
    set_options(rule_runner, f"--ai-agents-cuda-bases={{'12.4/runtime': '{mirror}'}}")
    try:
        _fails(
            case,
            _agent_build(f'accelerator="cuda12.4", base="//{BASE_ADDRESS}"'),
            f"field `base`: {BASE_ADDRESS} has no CUDA libraries, but the agent needs the"
            " `runtime` flavour (nothing in the lock ships them as `nvidia-*` wheels).",
            "Lock the CUDA wheels (`nvidia-cuda-runtime-cu12`, `nvidia-cublas-cu12`), or remove"
            f" `base` so that the CUDA table's `{mirror}` is used.",
        )
    finally:
        set_options(rule_runner)


@pytest.mark.parametrize(
    "fields, expected",
    [
        (
            'accelerator="cuda9.0", base=None',
            (
                "CUDA 9.0 (from accelerator='cuda9.0') has no base image in the CUDA table"
                f" (known: {', '.join(known_versions(DEFAULT_TABLE))}).",
                "Either use a known version (set accelerator to one of those), or add CUDA 9.0's"
                " images to the table, one entry per flavour you use",
                '[ai-agents].cuda_bases = {"9.0/runtime":',
            ),
        ),
        (
            'accelerator="cuda12.4", gpu_archs=["sm_999"], base=None',
            (
                "gpu_archs has 'sm_999', which is not a known GPU architecture; known: sm_70"
                " (Volta, V100),",
                "sm_120 (Blackwell, RTX 50/RTX PRO). Fix gpu_archs, e.g. gpu_archs=['sm_90'] for"
                " H100",
            ),
        ),
    ],
    ids=["unknown_version", "unknown_gpu_arch"],
)
def test_wrong_cuda_settings_name_the_field_and_fix(
    case: CaseDir, fields: str, expected: Tuple[str, ...]
) -> None:
    _fails(case, _agent_build(fields), *expected)


def test_a_cuda_bases_entry_that_does_not_fit_the_table_is_refused(
    rule_runner: RuleRunner,
) -> None:
    set_options(rule_runner, "--ai-agents-cuda-bases={'12.4': 'mirror.example/cuda:12.4'}")
    try:
        failure(
            InvalidCudaBases,
            rule_runner,
            CudaTable,
            [],
            "`[ai-agents].cuda_bases`: ",
            'is not "X.Y/FLAVOUR" (e.g. "12.4/runtime")',
        )
    finally:
        set_options(rule_runner)
