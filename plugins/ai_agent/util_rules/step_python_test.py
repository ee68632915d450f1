"""`StepPythonRequest` → `PythonExecutable`: the interpreter Pants' own search would choose, found
by name and confirmed by running it, with Pants' search left for what no `pythonX.Y` name finds."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable, Iterator, Sequence

import pytest
from pants.backend.python.util_rules.interpreter_constraints import InterpreterConstraints
from pants.backend.python.util_rules.pex import PythonExecutable
from pants.testutil.rule_runner import RuleRunner

from ai_agent.testutil import set_options
from ai_agent.util_rules.step_python import StepPythonRequest

# The tests' own interpreter (the plugin's resolve: CPython 3.9), as a process would see it.
THIS_PYTHON = os.path.realpath(sys.executable)
THIS_VERSION = "{}.{}".format(*sys.version_info[:2])


SearchPath = Callable[[Sequence[str]], None]


@pytest.fixture
def search_path(rule_runner: RuleRunner) -> Iterator[SearchPath]:
    """Sets `[python-bootstrap].search_path` for one test, the repo's options after it."""

    def use(paths: Sequence[str]) -> None:
        listed = ", ".join(f'"{path}"' for path in paths)
        set_options(rule_runner, f"--python-bootstrap-search-path=[{listed}]")

    try:
        yield use
    finally:
        set_options(rule_runner)


def _found(rule_runner: RuleRunner, *constraints: str) -> str:
    request = StepPythonRequest(InterpreterConstraints(constraints))
    return rule_runner.request(PythonExecutable, [request]).path


def _pants_choice(rule_runner: RuleRunner, *constraints: str) -> str:
    return rule_runner.request(PythonExecutable, [InterpreterConstraints(constraints)]).path


@pytest.mark.parametrize("constraint", [f"CPython=={THIS_VERSION}.*", "CPython>=3.9,<3.12"])
def test_finds_the_interpreter_that_pants_own_search_finds(
    rule_runner: RuleRunner, constraint: str
) -> None:
    set_options(rule_runner)
    found = _found(rule_runner, constraint)
    assert found == _pants_choice(rule_runner, constraint)
    assert os.path.isabs(found) and os.path.realpath(found) == found


def _script(directory: Path, name: str, body: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    script = directory / name
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)


def test_skips_a_name_that_is_not_what_it_says(
    rule_runner: RuleRunner, search_path: SearchPath, tmp_path: Path
) -> None:
    """A shim that fails, and a `pythonX.Y` that is another implementation or version, come
    first on the search path; the real interpreter after them is the one."""
    name = f"python{THIS_VERSION}"
    _script(tmp_path / "failing", name, "exit 3")
    _script(tmp_path / "pypy", name, f"echo PyPy {THIS_VERSION}.0 /opt/pypy/bin/{name}")
    _script(tmp_path / "older", name, "echo CPython 2.7.18 /usr/bin/python2.7")
    real = tmp_path / "real"
    real.mkdir()
    (real / name).symlink_to(THIS_PYTHON)
    search_path([str(tmp_path / d) for d in ("failing", "pypy", "older", "real")])
    assert _found(rule_runner, f"CPython=={THIS_VERSION}.*") == THIS_PYTHON


def test_the_oldest_allowed_version_first(
    rule_runner: RuleRunner, search_path: SearchPath, tmp_path: Path
) -> None:
    """Two versions allowed, the newer first on the search path: the older is chosen, as pex
    chooses."""
    _script(tmp_path / "newer", "python3.11", "echo CPython 3.11.7 /opt/newer/python3.11")
    _script(tmp_path / "older", "python3.10", "echo CPython 3.10.13 /opt/older/python3.10")
    search_path([str(tmp_path / "newer"), str(tmp_path / "older")])
    assert _found(rule_runner, "CPython>=3.10,<3.12") == "/opt/older/python3.10"
    assert _found(rule_runner, "CPython==3.11.*") == "/opt/newer/python3.11"


def test_leaves_to_pants_what_no_versioned_name_finds(
    rule_runner: RuleRunner, search_path: SearchPath, tmp_path: Path
) -> None:
    """Only a `python3` on the search path: Pants' search (pex) finds it."""
    only = tmp_path / "only"
    only.mkdir()
    (only / "python3").symlink_to(THIS_PYTHON)
    search_path([str(only)])
    assert _found(rule_runner, f"CPython=={THIS_VERSION}.*") == THIS_PYTHON
