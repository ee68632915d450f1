"""`ImageBuilder` and `LibraryImageBuilder`: every build step gets the cores' sources; only the
`wheels` steps (plan, group, install, check) get the `[ai-agents-builder]` libraries, so that
the other steps neither wait for the libraries' PEX nor have it in their cache keys."""

from __future__ import annotations

import pytest
from pants.engine.fs import EMPTY_DIGEST, Snapshot
from pants.testutil.rule_runner import RuleRunner

from ai_agent.util_rules.builder import ImageBuilder, LibraryImageBuilder, WheelTarget
from ai_agent.util_rules.network import DownloadAccess


def _files(rule_runner: RuleRunner, builder: ImageBuilder) -> set:
    return set(rule_runner.request(Snapshot, [builder.sources]).files)


def test_only_the_library_builder_mounts_the_libraries(rule_runner: RuleRunner) -> None:
    builder = rule_runner.request(ImageBuilder, [])
    with_libraries = rule_runner.request(LibraryImageBuilder, [])

    cores = _files(rule_runner, builder)
    assert cores and all(path.startswith("ai_agent/") for path in cores)
    assert {"ai_agent/oci/__main__.py", "ai_agent/debian/__main__.py"} <= cores
    assert builder.python_path == ("__ai_agent_builder",)

    assert cores < _files(rule_runner, with_libraries)
    libraries = with_libraries.python_path[1:]
    assert with_libraries.python_path[0] == builder.python_path[0]
    assert {"installer", "packaging"} <= {
        path.split("/.deps/")[1].split("-")[0] for path in libraries
    }
    assert with_libraries.python == builder.python

    # An oci step's inputs are the cores alone; a wheels step's the cores and the libraries.
    layer = builder.oci_layer(spec="s.json", output_dir="out", inputs=EMPTY_DIGEST, description="d")
    assert layer.immutable_input_digests["__ai_agent_builder"] == builder.sources
    assert layer.env["PYTHONPATH"] == "__ai_agent_builder"
    target = WheelTarget("l.lock", ("x==1",), "3.11", "linux/amd64", "2.36")
    plan = with_libraries.wheels_plan(target=target, inputs=EMPTY_DIGEST, description="d")
    assert plan.immutable_input_digests["__ai_agent_builder"] == with_libraries.sources
    assert plan.env["PYTHONPATH"] == ":".join(with_libraries.python_path)


def test_a_wheels_step_from_the_builder_without_libraries_is_refused(
    rule_runner: RuleRunner,
) -> None:
    builder = rule_runner.request(ImageBuilder, [])
    target = WheelTarget("l.lock", ("x==1",), "3.11", "linux/amd64", "2.36")
    with pytest.raises(TypeError, match="needs a LibraryImageBuilder"):
        builder.wheels_plan(target=target, inputs=EMPTY_DIGEST, description="d")
    access = rule_runner.request(DownloadAccess, [])
    with pytest.raises(TypeError, match="needs a LibraryImageBuilder"):
        builder.wheels_check(access=access, lock="l.lock", inputs=EMPTY_DIGEST, description="d")
    with_libraries = rule_runner.request(LibraryImageBuilder, [])
    checked = with_libraries.wheels_check(
        access=access, lock="l.lock", inputs=EMPTY_DIGEST, description="d"
    )
    assert checked.immutable_input_digests["__ai_agent_builder"] == with_libraries.sources
