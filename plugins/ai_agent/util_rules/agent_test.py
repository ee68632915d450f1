"""`AgentRequest` → `Agent`: an `ai_agent` target's inputs gathered and checked, and every bad
input refused with a message that names the target, the field (or agent.yaml line) and the fix,
before any process runs."""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path
from typing import Mapping

import pytest
from pants.engine.addresses import Address
from pants.engine.internals.scheduler import ExecutionError
from pants.engine.target import InvalidTargetException
from pants.testutil.rule_runner import RuleRunner

from ai_agent.testutil import (
    BASE_ADDRESS,
    CaseDir,
    failure,
    set_options,
)
from ai_agent.util_rules.agent import Agent, AgentRequest, InvalidAgent
from ai_agent.util_rules.layers import ImageFile

SOURCES = 'python_sources(name="src", sources=["app/*.py"])\n'
APP = {"app/__main__.py": 'print("agent")\n'}
SMALL = "small weights\n"
SMALL_SHA256 = hashlib.sha256(SMALL.encode()).hexdigest()
WEIGHTS = {
    "weights/BUILD": 'resource(name="small", source="w/small.bin")\n'
    'resource(name="big", source="w/big.bin")\n',
    "weights/w/small.bin": SMALL,
    "weights/w/big.bin": "big weights\n",
}


def _write(case: CaseDir, build: str, agent_yaml: str = "name: bad\n", **files: str) -> None:
    """The case's BUILD (its `ai_agent` is `agent`), agent.yaml, `app/` and `files`; the weights
    targets live in `weights/` beside it, a source root of their own (`w/*.bin` below it)."""
    case.write({"BUILD": build, "agent.yaml": agent_yaml, **APP, **files})
    case.rule_runner.write_files(
        {f"agents/{case.name}_{path}": text for path, text in WEIGHTS.items()}
    )


def _weights(case: CaseDir, name: str) -> str:
    return f"//agents/{case.name}_weights:{name}"


def _agent(case: CaseDir) -> Agent:
    return case.rule_runner.request(Agent, [AgentRequest(Address(case.path, target_name="agent"))])


def _fails(case: CaseDir, exception_type: type, *parts: str) -> str:
    return failure(
        exception_type,
        case.rule_runner,
        Agent,
        [AgentRequest(Address(case.path, target_name="agent"))],
        *parts,
    )


def test_an_agent_is_its_code_weights_requirements_lock_env_and_ports(case: CaseDir) -> None:
    _write(
        case,
        SOURCES
        + 'python_requirement(name="numpy", requirements=["numpy>=1.26"], resolve="agents")\n'
        + 'resource(name="data", source="app/data.txt")\n'
        + 'ai_agent(name="agent", entry_point="app", dependencies=[":src", ":numpy", ":data"],'
        f' weights=["{_weights(case, "small")}"], env={{"MODE": "fast"}},'
        ' ports=[9000, "53/udp"])\n',
        agent_yaml=(
            f"name: good\nmodels:\n  - name: w/small.bin\n    sha256: '{SMALL_SHA256}'\n"
            "env:\n  WORKERS: 4\nports: [8080]\n"
        ),
        **{"app/data.txt": "data\n"},
    )
    agent = _agent(case)
    assert agent.address == Address(case.path, target_name="agent")
    assert agent.config.name == "good"
    assert agent.config_path == f"{case.path}/agent.yaml"
    assert agent.base == Address("agents/base", target_name="bookworm-python")
    assert agent.base_from_field
    assert agent.resolve == "agents"
    assert agent.interpreter_constraints == ("CPython==3.11.*",)
    assert agent.lockfile_path == "lockfiles/agents.lock"
    lock = Path(case.rule_runner.build_root, "lockfiles/agents.lock").read_bytes()
    assert agent.lockfile_sha256 == hashlib.sha256(lock).hexdigest()
    assert agent.requirements == ("numpy>=1.26",)
    # Code, below its source root; the weights and the base are dependencies but not code.
    assert set(agent.code.files) == {"app/__main__.py", "app/data.txt"}
    assert agent.weight_files == (ImageFile(source="w/small.bin", image_path="models/w/small.bin"),)
    assert agent.env == (("MODE", "fast"), ("WORKERS", "4"))
    assert agent.ports == ("53/udp", "8080/tcp", "9000/tcp")


def test_weights_land_under_weights_dir_and_need_not_be_listed_without_models(
    case: CaseDir,
) -> None:
    _write(
        case,
        SOURCES + 'ai_agent(name="agent", command=["python3.11", "-m", "app"],'
        f' dependencies=[":src"], weights=["{_weights(case, "small")}", "{_weights(case, "big")}"],'
        ' weights_dir="/srv/models/")\n',
    )
    agent = _agent(case)
    assert [(w.source, w.image_path) for w in agent.weight_files] == [
        ("w/big.bin", "srv/models/w/big.bin"),
        ("w/small.bin", "srv/models/w/small.bin"),
    ]
    assert agent.code.files == ("app/__main__.py",)


def test_without_base_field_the_default_base_is_used(
    rule_runner: RuleRunner, case: CaseDir
) -> None:
    _write(
        case,
        SOURCES + 'ai_agent(name="agent", entry_point="app", dependencies=[":src"],'
        " base=None)\n",
    )
    _fails(
        case,
        InvalidAgent,
        f"{case.address()}: no base image: set the `base` field",
        "or `[ai-agents].default_base`",
    )
    set_options(rule_runner, f"--ai-agents-default-base=//{BASE_ADDRESS}")
    try:
        agent = _agent(case)
    finally:
        set_options(rule_runner)
    assert agent.base == Address("agents/base", target_name="bookworm-python")
    assert not agent.base_from_field


def test_a_base_that_does_not_exist_is_named_with_the_field(case: CaseDir) -> None:
    _write(
        case,
        SOURCES + 'ai_agent(name="agent", entry_point="app", dependencies=[":src"],'
        ' base="//agents/nope:base")\n',
    )
    with pytest.raises(ExecutionError) as error:
        _agent(case)
    assert "agents/nope" in str(error.value)
    assert f"the `base` field of {case.address()}" in str(error.value)


def test_entry_point_module_must_be_among_the_sources(case: CaseDir) -> None:
    _write(
        case,
        SOURCES + 'ai_agent(name="agent", entry_point="nosuch.module",' ' dependencies=[":src"])\n',
    )
    _fails(
        case,
        InvalidAgent,
        f"{case.address()}: field `entry_point`: module `nosuch.module` is not among the agent's"
        " first-party sources (looked for nosuch/module.py or nosuch/module/__main__.py or"
        " nosuch/module/__init__.py below a source root)",
        "Add the `python_sources` target that holds it to `dependencies`, or fix the module name",
    )


def test_a_model_not_provided_by_weights_names_its_line(case: CaseDir) -> None:
    _write(
        case,
        SOURCES + 'ai_agent(name="agent", entry_point="app", dependencies=[":src"],'
        f' weights=["{_weights(case, "small")}"])\n',
        agent_yaml="name: bad\nmodels:\n  - w/small.bin\n  - w/missing.bin\n",
    )
    _fails(
        case,
        InvalidAgent,
        f"{case.address()}: {case.path}/agent.yaml:4: model file `w/missing.bin` is not provided"
        " by any target in the `weights` field (its files, below their source roots:"
        " w/small.bin)",
        "Add the target that owns it to `weights`, or fix the name",
    )


def test_weights_not_listed_under_models_are_refused(case: CaseDir) -> None:
    _write(
        case,
        SOURCES + 'ai_agent(name="agent", entry_point="app", dependencies=[":src"],'
        f' weights=["{_weights(case, "small")}", "{_weights(case, "big")}"])\n',
        agent_yaml="name: bad\nmodels:\n  - w/small.bin\n",
    )
    _fails(
        case,
        InvalidAgent,
        f"{case.address()}: the `weights` field provides w/big.bin, which {case.path}/agent.yaml"
        " does not list under `models`; list them there",
    )


def test_weights_must_be_file_or_resource_targets(case: CaseDir) -> None:
    _write(
        case,
        SOURCES
        + 'python_source(name="tool", source="app/__main__.py")\n'
        + 'ai_agent(name="agent", entry_point="app", dependencies=[":src"], weights=[":tool"])\n',
    )
    _fails(
        case,
        InvalidAgent,
        f"{case.address()}: field `weights` names {case.address('tool')}, a `python_source`"
        " target; weights must be `file` or `resource` targets",
    )


def test_a_weights_target_without_its_file_is_pants_error_about_that_target(
    case: CaseDir,
) -> None:
    _write(
        case,
        SOURCES
        + 'resource(name="nope", source="nope.bin")\n'
        + 'ai_agent(name="agent", entry_point="app", dependencies=[":src"], weights=[":nope"])\n',
        agent_yaml="name: bad\nmodels:\n  - nope.bin\n",
    )
    with pytest.raises(ExecutionError) as error:
        _agent(case)
    assert (
        f"The 'source' field in target {case.address('nope')} must have 1 file, but it had 0"
        " files" in str(error.value)
    )


@pytest.mark.parametrize(
    "env, agent_yaml, expected",
    [
        (
            {"WORKERS": "2"},
            "name: bad\nenv:\n  WORKERS: 4\n",
            "{address}: `WORKERS` is set both by the `env` field and by {path}/agent.yaml; set it"
            " in one place",
        ),
        (
            {"PATH": "/bin"},
            "name: bad\n",
            "{address}: `PATH` cannot be set (field `env` or {path}/agent.yaml): the image sets it"
            " so that the agent's code and packages import; put extra code in the agent's"
            " `dependencies` instead",
        ),
        (
            {},
            "name: bad\nenv:\n  PYTHONPATH: /x\n",
            "{address}: `PYTHONPATH` cannot be set (field `env` or {path}/agent.yaml)",
        ),
    ],
    ids=["both", "path_field", "pythonpath_yaml"],
)
def test_env_names_are_set_once_and_not_the_images_own(
    case: CaseDir, env: Mapping[str, str], agent_yaml: str, expected: str
) -> None:
    _write(
        case,
        SOURCES + 'ai_agent(name="agent", entry_point="app", dependencies=[":src"],'
        f" env={dict(env)!r})\n",
        agent_yaml=agent_yaml,
    )
    _fails(case, InvalidAgent, expected.format(address=case.address(), path=case.path))


# agent.yaml's own checks are agent_config_test.py's; here, that the rule names the target and
# the field in front of the file's line.
@pytest.mark.parametrize(
    "agent_yaml, expected",
    [
        ("name: bad\nmodels: [a.bin, b.bin\n", "agent.yaml:3: not valid YAML"),
        ("name: bad\nport: 8080\n", "agent.yaml:2: unknown key `port` (did you mean `ports`?)"),
        ('name: bad\nports: "8080"\n', "agent.yaml:2: `ports` must be a list, got '8080'"),
        ("name: bad\nports: [0]\n", "agent.yaml:2: `ports[0]` must be an integer 1..65535, got 0"),
        (
            f"name: bad\nmodels:\n  - name: w/small.bin\n    sha256: {'1' * 64}\n",
            "agent.yaml:4: `models[0].sha256` was read by YAML as a number: put it in quotes,"
            f" `sha256: '{'1' * 64}'`",
        ),
        (
            "name: bad\n# " + "x" * (256 * 1024) + "\n",
            "agent.yaml: is 262157 bytes; an agent.yaml describes the agent and is at most 256 KiB",
        ),
    ],
    ids=["invalid", "unknown_key", "wrong_type", "port_zero", "sha256_a_number", "too_big"],
)
def test_a_bad_agent_yaml_names_the_target_field_and_line(
    case: CaseDir, agent_yaml: str, expected: str
) -> None:
    _write(
        case,
        SOURCES + 'ai_agent(name="agent", entry_point="app", dependencies=[":src"])\n',
        agent_yaml=agent_yaml,
    )
    _fails(case, InvalidAgent, f"{case.address()}: field `agent_config`: {case.path}/{expected}")


# Fields that check themselves when the BUILD file is read.
@pytest.mark.parametrize(
    "fields, expected",
    [
        (
            "ports=[70000]",
            "The `ports` field of {address}: 70000 is not a port: use a number"
            " from 1 to 65535, optionally with /tcp or /udp",
        ),
        ('ports=["80/sctp"]', "The `ports` field of {address}: '80/sctp' is not a port"),
        ('ports="8080"', "The `ports` field of {address}: expected a list of ports, got '8080'"),
        (
            'command=[""]',
            "The `command` field of {address}: [''] names no program: its first"
            " element must be the program to run",
        ),
        (
            'entry_point="app:"',
            "The `entry_point` field of {address}: 'app:' is not `module` or"
            " `module:function`, e.g. `app.main:serve`",
        ),
        (
            'repository="UPPER/case"',
            "The `repository` field of {address}: 'UPPER/case': `UPPER`"
            " has capital letters, so only a registry host could be named so, but a host needs a"
            " `.` or a `:port`",
        ),
        (
            'repository="example.com/agent:1"',
            "The `repository` field of {address}: give the" " repository without a tag or digest",
        ),
        (
            'labels={"": "x"}',
            "The `labels` field of {address}: a label needs a name: remove the" " empty key",
        ),
        ('env={"1X": "y"}', "The `env` field of {address}: '1X' is not a valid variable name"),
        (
            'user="root"',
            "The `user` field of {address}: 'root' is not numeric `uid` or" " `uid:gid`",
        ),
        ('workdir="app"', "The `workdir` field of {address}: 'app' must be an absolute path"),
        (
            'weights_dir="/"',
            "The `weights_dir` field of {address}: '/' must be an absolute" " directory, not /",
        ),
        (
            'image_tags=["a tag"]',
            "The `image_tags` field of {address}: 'a tag' is not a valid" " tag",
        ),
        ("image_tags=[]", "The `image_tags` field of {address}: list at least one tag"),
        ('platforms=["linux"]', "The `platforms` field of {address}:"),
        ("platforms=[]", "The `platforms` field of {address} must list at least one platform"),
        (
            'command=["app"]',
            "{address}: set exactly one of `entry_point` (a module of the agent,"
            " e.g. `router_agent` or `router_agent.server:main`) and `command`",
        ),
    ],
    ids=lambda value: re.sub(r"\W+", "_", value)[:24],
)
def test_a_bad_field_names_the_field_and_target(case: CaseDir, fields: str, expected: str) -> None:
    entry_point = "" if "entry_point=" in fields else 'entry_point="app", '
    _write(
        case,
        SOURCES + f'ai_agent(name="agent", {entry_point}dependencies=[":src"], {fields})\n',
    )
    _fails(
        case,
        InvalidTargetException,
        f"{case.path}/BUILD:2: " + expected.format(address=case.address()),
    )


def test_accelerator_is_checked_when_read(case: CaseDir) -> None:
    _write(
        case,
        SOURCES + 'ai_agent(name="agent", entry_point="app", dependencies=[":src"],'
        ' accelerator="gpu")\n',
    )
    _fails(
        case,
        InvalidTargetException,
        f"{case.path}/BUILD:2: The `accelerator` field of {case.address()}: ",
    )


def test_running_as_root_builds_with_a_warning(
    case: CaseDir, caplog: pytest.LogCaptureFixture
) -> None:
    _write(
        case,
        SOURCES + 'ai_agent(name="agent", entry_point="app", dependencies=[":src"],'
        ' user="0:0")\n',
    )
    with caplog.at_level(logging.WARNING):
        agent = _agent(case)
    assert agent.target.address == Address(case.path, target_name="agent")
    assert (
        f"{case.address()}: field `user` is '0:0': the agent runs as root. Leave `user` unset"
        " (65532, the distroless `nonroot` user) unless it must." in caplog.text
    )
