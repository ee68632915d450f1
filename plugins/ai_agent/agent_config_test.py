from __future__ import annotations

import pathlib
import textwrap

import pytest

from ai_agent.agent_config import (
    SCHEMA_HELP,
    AgentConfig,
    AgentConfigError,
    Healthcheck,
    ModelFile,
    Resources,
    decode_agent_config,
    load_agent_config,
    parse_agent_config,
)

PATH = "agents/router/agent.yaml"
SHA = "0123456789abcdef" * 4

FULL = f"""\
name: router
description: Routes requests to the right specialist.
models:
  - router.npy
  - name: embeddings/table.npy
    sha256: {SHA}
env:
  WORKERS: 4
  DEBUG: false
  LOG_LEVEL: info
ports: [8080, 9090]
healthcheck:
  command: ["python3", "-c", "print('ok')"]
  interval_seconds: 10
  timeout_seconds: 2
  retries: 5
  start_period_seconds: 1
resources:
  cpu: 500m
  memory: 512Mi
  gpus: 1
"""


def parse(text: str) -> AgentConfig:
    return parse_agent_config(textwrap.dedent(text), PATH)


def error_of(text: str) -> str:
    with pytest.raises(AgentConfigError) as exc:
        parse(text)
    return str(exc.value)


def test_full_example() -> None:
    config = parse(FULL)
    assert config == AgentConfig(
        name="router",
        description="Routes requests to the right specialist.",
        models=(ModelFile("router.npy", None, 4), ModelFile("embeddings/table.npy", SHA, 5)),
        env=(("DEBUG", "false"), ("LOG_LEVEL", "info"), ("WORKERS", "4")),
        ports=(8080, 9090),
        healthcheck=Healthcheck(("python3", "-c", "print('ok')"), 10, 2, 5, 1),
        resources=Resources(cpu="500m", memory="512Mi", gpus=1),
    )
    assert config.labels() == {
        "org.opencontainers.image.title": "router",
        "org.opencontainers.image.description": "Routes requests to the right specialist.",
        "ai-agent.resources.cpu": "500m",
        "ai-agent.resources.memory": "512Mi",
        "ai-agent.resources.gpus": "1",
    }
    assert config.healthcheck is not None
    assert config.healthcheck.to_oci() == {
        "Test": ["CMD", "python3", "-c", "print('ok')"],
        "Interval": 10_000_000_000,
        "Timeout": 2_000_000_000,
        "Retries": 5,
        "StartPeriod": 1_000_000_000,
    }


def test_minimal_example_and_defaults() -> None:
    config = parse("name: tiny\n")
    assert config == AgentConfig(name="tiny")
    assert config.resources == Resources(cpu=None, memory=None, gpus=0)
    assert config.labels() == {"org.opencontainers.image.title": "tiny"}
    assert Healthcheck(("true",)).to_oci() == {
        "Test": ["CMD", "true"],
        "Interval": 30_000_000_000,
        "Timeout": 5_000_000_000,
        "Retries": 3,
        "StartPeriod": 0,
    }


def test_empty_values_mean_defaults() -> None:
    assert parse("name: tiny\nenv:\nmodels:\nresources: {cpu: }\n") == AgentConfig(name="tiny")


def test_load_agent_config(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(FULL)
    assert load_agent_config(path) == parse(FULL)
    path.write_text("name: x\nport: 1\n")
    with pytest.raises(AgentConfigError, match=r"^agents/x/agent\.yaml:2: unknown key `port`"):
        load_agent_config(str(path), display_path="agents/x/agent.yaml")
    with pytest.raises(AgentConfigError, match=rf"^{path}:2: "):
        load_agent_config(path)


@pytest.mark.parametrize(
    "value, expected",
    [
        ("info", "info"),
        ("'4'", "4"),
        ("4", "4"),
        ("1.10", "1.10"),  # as written, not float("1.10")
        ("010", "010"),
        ("true", "true"),
        ("False", "false"),
        ("yes", "true"),
        ("''", ""),
    ],
)
def test_env_values_are_rendered_as_strings(value: str, expected: str) -> None:
    assert parse(f"name: a\nenv:\n  V: {value}\n").env == (("V", expected),)


def test_env_is_sorted_by_name() -> None:
    assert parse("name: a\nenv: {b: 1, A: 2, _c: 3}\n").env == (("A", "2"), ("_c", "3"), ("b", "1"))


def test_ports_are_sorted() -> None:
    assert parse("name: a\nports: [9090, 80, 8080]\n").ports == (80, 8080, 9090)


@pytest.mark.parametrize(
    "cpu, memory",
    [("500m", "512Mi"), ("2", "2Gi"), ("0.5", "1G"), ("2", "1000000"), ("1.5", "1.5Ti")],
)
def test_resource_quantities(cpu: str, memory: str) -> None:
    assert parse(f"name: a\nresources: {{cpu: {cpu}, memory: {memory}}}\n").resources == Resources(
        cpu, memory
    )


@pytest.mark.parametrize("name", ["a", "router", "my-agent-2", "0", "a" * 63])
def test_good_names(name: str) -> None:
    assert parse(f"name: {name!r}\n").name == name


def test_empty_file() -> None:
    for text in ("", "\n", "# only a comment\n"):
        assert error_of(text) == f"{PATH}: is empty; it needs at least `name`"


def test_bad_yaml() -> None:
    message = error_of("name: a\nports: [1, 2\nenv: {}\n")
    assert message.startswith(f"{PATH}:3: not valid YAML: ")


def test_bad_yaml_names_problem() -> None:
    assert error_of("name: a\n  bad: indent\n").startswith(f"{PATH}:2: not valid YAML: mapping")


def test_multiple_documents() -> None:
    assert error_of("name: a\n---\nname: b\n") == (
        f"{PATH}:3: holds more than one YAML document (`---`)"
    )


@pytest.mark.parametrize("text, got", [("- name: a\n", "a list"), ("router\n", "'router'")])
def test_top_level_must_be_a_mapping(text: str, got: str) -> None:
    assert error_of(text) == (
        f"{PATH}:1: must be a mapping of keys (name, description, models, env, ports, "
        f"healthcheck, resources), got {got}"
    )


def test_unknown_top_level_key_with_suggestion() -> None:
    assert error_of("name: a\n\nport: 80\n") == (
        f"{PATH}:3: unknown key `port` (did you mean `ports`?); "
        "allowed: description, env, healthcheck, models, name, ports, resources"
    )


def test_unknown_key_without_suggestion() -> None:
    assert error_of("name: a\nzzz: 1\n") == (
        f"{PATH}:2: unknown key `zzz`; "
        "allowed: description, env, healthcheck, models, name, ports, resources"
    )


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "name: a\nhealthcheck:\n  command: [x]\n  retry: 3\n",
            "4: unknown key `healthcheck.retry` (did you mean `retries`?); allowed: command, "
            "interval_seconds, retries, start_period_seconds, timeout_seconds",
        ),
        (
            "name: a\nresources:\n  memroy: 1Gi\n",
            "3: unknown key `resources.memroy` (did you mean `memory`?); "
            "allowed: cpu, gpus, memory",
        ),
        (
            "name: a\nmodels:\n  - x.npy\n  - {name: y.npy, sha: abc}\n",
            "4: unknown key `models[1].sha` (did you mean `sha256`?); allowed: name, sha256",
        ),
    ],
)
def test_unknown_nested_key(text: str, message: str) -> None:
    assert error_of(text) == f"{PATH}:{message}"


@pytest.mark.parametrize(
    "text, message",
    [
        ("name: a\nports: [80, 70000]\n", "2: `ports[1]` must be an integer 1..65535, got 70000"),
        ("name: a\nports:\n  - 0\n", "3: `ports[0]` must be an integer 1..65535, got 0"),
        ("name: a\nports: [true]\n", "2: `ports[0]` must be an integer 1..65535, got true"),
        ("name: a\nports: ['80']\n", "2: `ports[0]` must be an integer 1..65535, got '80'"),
        ("name: a\nports: 80\n", "2: `ports` must be a list, got 80"),
        (
            "name: a\nhealthcheck:\n  command: [x]\n  retries: true\n",
            "4: `healthcheck.retries` must be an integer >= 1, got true",
        ),
        (
            "name: a\nhealthcheck:\n  command: [x]\n  interval_seconds: 1.5\n",
            "4: `healthcheck.interval_seconds` must be an integer >= 1, got 1.5",
        ),
        (
            "name: a\nhealthcheck:\n  command: [x]\n  start_period_seconds: -1\n",
            "4: `healthcheck.start_period_seconds` must be an integer >= 0, got -1",
        ),
        (
            "name: a\nhealthcheck:\n  command: curl -f localhost\n",
            "3: `healthcheck.command` must be a list of strings, got 'curl -f localhost'",
        ),
        (
            "name: a\nhealthcheck:\n  command: [curl, 1]\n",
            "3: `healthcheck.command[1]` must be a string, got 1",
        ),
        ("name: a\nhealthcheck:\n  command: []\n", "3: `healthcheck.command` must not be empty"),
        ("name: a\nhealthcheck: {}\n", "2: missing required key `command` in `healthcheck`"),
        ("name: a\nhealthcheck: [x]\n", "2: `healthcheck` must be a mapping, got a list"),
        ("name: a\nmodels: x.npy\n", "2: `models` must be a list, got 'x.npy'"),
        (
            "name: a\nmodels: [[x]]\n",
            "2: `models[0]` must be a path or a mapping {name, sha256}, got a list",
        ),
        ("name: a\nmodels: [{name: 1}]\n", "2: `models[0].name` must be a string, got 1"),
        ("name: a\nmodels:\n  - sha256: abc\n", "3: missing required key `name` in `models[0]`"),
        ("name: a\nenv: [A]\n", "2: `env` must be a mapping, got a list"),
        ("name: a\nenv:\n  A: [1]\n", "3: `env.A` must be a string, number or boolean, got a list"),
        ("name: a\nenv:\n  A:\n", "3: `env.A` must be a string, number or boolean, got null"),
        ("name: a\nenv:\n  1A: x\n", "3: `env` name '1A' must match [A-Za-z_][A-Za-z0-9_]*"),
        ("name: a\nenv:\n  A-B: x\n", "3: `env` name 'A-B' must match [A-Za-z_][A-Za-z0-9_]*"),
        ("name: a\nenv: {1: x}\n", "2: keys must be strings, got 1"),
        ("name: a\ndescription: [x]\n", "2: `description` must be a string, got a list"),
        ("name: a\nresources: {gpus: -1}\n", "2: `resources.gpus` must be an integer >= 0, got -1"),
        (
            "name: a\nresources: {cpu: 1.5 cores}\n",
            "2: `resources.cpu` must be a quantity like `500m` or `2`, got '1.5 cores'",
        ),
        (
            "name: a\nresources:\n  memory: 512MB\n",
            "3: `resources.memory` must be a quantity like `512Mi` or `2Gi`, got '512MB'",
        ),
        ("name: a\nresources: {cpu: true}\n", "2: `resources.cpu` must be a string, got true"),
        ("description: x\n", "1: missing required key `name`"),
        ("name:\n", "1: `name` must be a string, got null"),
        ("name: 12\n", "1: `name` must be a string, got 12"),
    ],
)
def test_wrong_values(text: str, message: str) -> None:
    assert error_of(text) == f"{PATH}:{message}"


def test_duplicate_port() -> None:
    assert error_of("name: a\nports:\n  - 80\n  - 8080\n  - 80\n") == (
        f"{PATH}:5: `ports[2]` 80 is listed twice (first on line 3)"
    )


@pytest.mark.parametrize(
    "text, message",
    [
        ("name: a\nports: [1]\nname: b\n", "3: duplicate key `name` (first on line 1)"),
        (
            "name: a\nhealthcheck:\n  command: [x]\n  retries: 1\n  retries: 2\n",
            "5: duplicate key `healthcheck.retries` (first on line 4)",
        ),
        ("name: a\nenv:\n  A: 1\n  A: 2\n", "4: duplicate key `env.A` (first on line 3)"),
    ],
)
def test_duplicate_key(text: str, message: str) -> None:
    assert error_of(text) == f"{PATH}:{message}"


@pytest.mark.parametrize("name", ["Router", "-router", "router-", "my_agent", "a.b", "a" * 64, ""])
def test_bad_name(name: str) -> None:
    assert error_of(f"name: {name!r}\n").startswith(
        f"{PATH}:1: `name` must be a DNS label: lowercase letters, digits and `-`,"
    )
    assert error_of(f"name: {name!r}\n").endswith(f"got {name!r}")


@pytest.mark.parametrize(
    "entry, key",
    [
        ("../x.npy", "models[0]"),
        ("/abs/x.npy", "models[0]"),
        ("a/../../x.npy", "models[0]"),
        ("a//x.npy", "models[0]"),
        ("a/", "models[0]"),
        ("./x.npy", "models[0]"),
        ("''", "models[0]"),
        ("{name: ../x}", "models[0].name"),
        ("{name: /abs}", "models[0].name"),
    ],
)
def test_bad_model_path(entry: str, key: str) -> None:
    message = error_of(f"name: a\nmodels:\n  - {entry}\n")
    assert message.startswith(
        f"{PATH}:3: `{key}` must be a relative path under the weights directory"
    )


def test_duplicate_model() -> None:
    assert error_of("name: a\nmodels:\n  - x.npy\n  - {name: x.npy}\n") == (
        f"{PATH}:4: `models[1].name` 'x.npy' is listed twice"
    )


@pytest.mark.parametrize("sha", ["abc", SHA.upper(), SHA + "0", "g" * 64])
def test_bad_sha256(sha: str) -> None:
    assert error_of(f"name: a\nmodels:\n  - name: x.npy\n    sha256: '{sha}'\n") == (
        f"{PATH}:4: `models[0].sha256` must be 64 lowercase hex digits, got {sha!r}"
    )


def test_schema_help_covers_every_key() -> None:
    lines = SCHEMA_HELP.splitlines()
    keys = ["name", "description", "models", "env", "ports", "healthcheck", "resources"]
    assert [line.split(":")[0].split()[1] for line in lines] == keys
    assert lines[0].startswith("* name (required): ")


def test_a_sha256_that_yaml_reads_as_a_number_says_to_quote_it() -> None:
    pin = "1" * 64  # 64 hex digits that happen to be decimal ones: a YAML integer
    assert error_of(f"name: a\nmodels:\n  - name: m.bin\n    sha256: {pin}\n") == (
        f"{PATH}:4: `models[0].sha256` was read by YAML as a number: put it in quotes,"
        f" `sha256: '{pin}'`"
    )


def test_an_agent_yaml_past_256_kib_is_refused_before_parsing() -> None:
    data = b"name: a\n# " + b"x" * (256 * 1024) + b"\n"
    with pytest.raises(AgentConfigError, match=rf"^{PATH}: is {len(data)} bytes; an agent.yaml"):
        decode_agent_config(data, PATH)
    assert decode_agent_config(b"name: a\n# " + b"x" * 1000 + b"\n", PATH).name == "a"
