"""`AgentImageRequest` → `AgentImage`: the agent's layers on its base, the image config that runs
it and the metadata that describes it, built with real processes on the Debian base of the
repo's lock (its .debs fetched, or taken from Pants' cache); and the problems found on the way
to the layers: a weight that is not what `agent.yaml` pins (against the digest Pants took of the
file, before any layer), two layers writing one path, a locked requirement without a wheel for
the base."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Dict

import pytest
from pants.engine.addresses import Address
from pants.testutil.rule_runner import RuleRunner

from ai_agent.testutil import (
    BASE_ADDRESS,
    DEBIAN_LOCK,
    NOWHEEL_REQUIREMENT,
    CaseDir,
    copy_repo_files,
    failure,
    nowheel_lock,
)
from ai_agent.util_rules.agent import InvalidAgent
from ai_agent.util_rules.agent_image import AgentImage, AgentImageRequest
from ai_agent.util_rules.builder import BuildStepFailed
from ai_agent.util_rules.frozen import thawed

SOURCES = 'python_sources(name="src", sources=["app/*.py"])\n'
APP = {"app/__main__.py": 'print("agent")\n', "app/server.py": "def main():\n    return 0\n"}
SMALL = "small weights\n"
SMALL_SHA256 = hashlib.sha256(SMALL.encode()).hexdigest()
ZEROS = "0" * 64
WEIGHTS = {
    "agents/weights/BUILD": 'resource(name="small", source="w/small.bin")\n'
    'resource(name="data", source="w/data.bin")\n',
    "agents/weights/w/small.bin": SMALL,
    "agents/weights/w/data.bin": "weights that land where the code is\n",
    # A code resource at the same path below its source root as `//agents/weights:data`.
    "agents/shared/BUILD": 'resource(name="data", source="w/data.bin")\n',
    "agents/shared/w/data.bin": "data the code reads\n",
}


@pytest.fixture(scope="module", autouse=True)
def repo_files(rule_runner: RuleRunner) -> None:
    rule_runner.write_files({**WEIGHTS, "lockfiles/nowheel.lock": nowheel_lock()})
    copy_repo_files(rule_runner, DEBIAN_LOCK, "lockfiles/agents.lock")


def _request(case: CaseDir) -> AgentImageRequest:
    return AgentImageRequest(Address(case.path, target_name="agent"), f"{case.name}.tar")


def _image(case: CaseDir, build: str, agent_yaml: str) -> AgentImage:
    case.write({"BUILD": build, "agent.yaml": agent_yaml, **APP})
    return case.rule_runner.request(AgentImage, [_request(case)])


def _fails(case: CaseDir, exception_type: type, build: str, agent_yaml: str, *parts: str) -> str:
    case.write({"BUILD": build, "agent.yaml": agent_yaml, **APP})
    return failure(exception_type, case.rule_runner, AgentImage, [_request(case)], *parts)


def _sha256_of(path: str, rule_runner: RuleRunner) -> str:
    return hashlib.sha256(Path(rule_runner.build_root, path).read_bytes()).hexdigest()


def test_the_image_config_runs_the_agent_as_its_fields_say(
    rule_runner: RuleRunner, case: CaseDir
) -> None:
    image = _image(
        case,
        SOURCES + 'ai_agent(name="agent", entry_point="app.server:main", dependencies=[":src"],'
        ' weights=["//agents/weights:small"], user="0:0", env={"MODE": "fast"}, ports=[9000],'
        ' labels={"team": "search"}, repository="registry.example.com/agents/router",'
        ' image_tags=["1.0", "stable"])\n',
        "name: router\ndescription: Routes.\nmodels:\n"
        f"  - name: w/small.bin\n    sha256: '{SMALL_SHA256}'\n"
        "env:\n  WORKERS: 4\nports: [8080]\n"
        "healthcheck:\n  command: [python3, -c, 'pass']\n",
    )
    [platform_image] = image.archive.images
    config: Dict[str, Any] = thawed(platform_image.config)
    python = config["Entrypoint"][0]
    assert python.startswith("/usr/bin/python3.")  # no requirements: the base's interpreter
    assert config["Entrypoint"] == [
        python,
        "-c",
        "import sys, app.server as entry; sys.exit(entry.main())",
    ]
    # uid 0 is an explicit choice: it builds (with a warning, see agent_test.py).
    assert config["User"] == "0:0"
    assert config["WorkingDir"] == "/opt/agent/app"
    env = config["Env"]
    assert env["PYTHONPATH"].startswith("/opt/agent/app:")
    assert (env["MODE"], env["WORKERS"]) == ("fast", "4")
    assert config["ExposedPorts"] == ["8080/tcp", "9000/tcp"]
    assert config["Healthcheck"]["Test"] == ["CMD", "python3", "-c", "pass"]
    labels = config["Labels"]
    assert labels["org.opencontainers.image.title"] == "router"
    assert labels["org.opencontainers.image.description"] == "Routes."
    assert labels["team"] == "search"
    assert labels["ai-agent.target"] == case.address()
    assert labels["ai-agent.resolve"] == "agents"
    assert labels["ai-agent.base"] == BASE_ADDRESS
    assert labels["ai-agent.lock.sha256"] == _sha256_of("lockfiles/agents.lock", rule_runner)

    metadata = thawed(image.metadata)
    assert metadata["target"] == case.address()
    assert metadata["repository"] == "registry.example.com/agents/router"
    assert metadata["tags"] == ["1.0", "stable"]
    assert image.archive.tags == (
        "registry.example.com/agents/router:1.0",
        "registry.example.com/agents/router:stable",
    )
    assert metadata["layout"] == {
        "directory": "oci",
        "refNames": [
            "registry.example.com/agents/router:1.0",
            "registry.example.com/agents/router:stable",
        ],
    }
    assert metadata["exposedPorts"] == ["8080/tcp", "9000/tcp"]
    assert metadata["locks"] == [
        {
            "path": "lockfiles/agents.lock",
            "sha256": _sha256_of("lockfiles/agents.lock", rule_runner),
        },
        {"path": DEBIAN_LOCK, "sha256": _sha256_of(DEBIAN_LOCK, rule_runner)},
    ]
    [described] = metadata["images"]
    assert described["platform"] == "linux/amd64"
    assert described["base"]["target"] == BASE_ADDRESS
    # Stacked by how often they change: base, weights, code, config.
    kinds = [layer["kind"] for layer in described["layers"]]
    assert kinds == ["base"] * len(described["base"]["layers"]) + ["weights", "code", "config"]
    assert metadata["digest"].startswith("sha256:") and len(metadata["digest"]) == 71


def test_a_command_runs_as_given_and_a_module_with_python_m(case: CaseDir) -> None:
    command = _image(
        case,
        SOURCES + 'ai_agent(name="agent", command=["python3.11", "-m", "app"],'
        ' dependencies=[":src"])\n',
        "name: command\n",
    )
    assert thawed(command.archive.images[0].config)["Entrypoint"] == ["python3.11", "-m", "app"]
    module = _image(
        case,
        SOURCES + 'ai_agent(name="agent", entry_point="app", dependencies=[":src"])\n',
        "name: module\n",
    )
    config = thawed(module.archive.images[0].config)
    assert config["Entrypoint"][1:] == ["-m", "app"]
    assert config["User"] == "65532"  # the distroless `nonroot` user, by default
    assert "ExposedPorts" not in config
    assert thawed(module.metadata)["tags"] == ["latest"]
    assert module.archive.tags == ("agent:latest",)


def test_a_weight_that_is_not_the_pinned_file_is_refused_before_any_layer_naming_the_pin(
    case: CaseDir,
) -> None:
    _fails(
        case,
        InvalidAgent,
        SOURCES + 'ai_agent(name="agent", entry_point="app", dependencies=[":src"],'
        ' weights=["//agents/weights:small"])\n',
        f"name: bad\nmodels:\n  - name: w/small.bin\n    sha256: '{ZEROS}'\n",
        f"{case.address()}: {case.path}/agent.yaml:3: model file `w/small.bin` is pinned to"
        f" sha256 {ZEROS}, but the file in the `weights` field has sha256 {SMALL_SHA256}: fix"
        " the file or the pin",
    )


def test_two_layers_writing_one_path_are_refused(case: CaseDir) -> None:
    _fails(
        case,
        InvalidAgent,
        SOURCES + 'ai_agent(name="agent", entry_point="app",'
        ' dependencies=[":src", "//agents/shared:data"], weights=["//agents/weights:data"],'
        ' weights_dir="/opt/agent/app")\n',
        "name: bad\nmodels:\n  - w/data.bin\n",
        f"{case.address()}: two layers write /opt/agent/app/w/data.bin: the weights layer",
        "and the code layer",
        "set `weights_dir` to a directory the code does not use",
    )


def test_a_locked_requirement_without_a_wheel_names_the_resolve_and_the_fix(
    case: CaseDir,
) -> None:
    _fails(
        case,
        BuildStepFailed,
        f'python_requirement(name="fakepkg", requirements=["{NOWHEEL_REQUIREMENT}"],'
        ' resolve="nowheel")\n'
        'python_sources(name="src", sources=["app/*.py"], resolve="nowheel")\n'
        'ai_agent(name="agent", entry_point="app", dependencies=[":src", ":fakepkg"],'
        ' resolve="nowheel")\n',
        "name: bad\n",
        f"{case.address()} (field `resolve`, lockfile lockfiles/nowheel.lock): Choosing the"
        f" locked wheels of {case.address()} for linux/amd64",
        "fakepkg 1.0 has no wheel for CPython 3.11.",
        "fakepkg-1.0.tar.gz",
        "Pin a version that publishes such a wheel",
    )
