"""Fixtures of the wheel unit tests: real wheels from PyPI (cached under
~/.cache/ai-agent-tests/wheels and checked against pinned sha256s), and the build host's
CPython 3.11 for compiling bytecode."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict

import pytest

from testkit.components import host_interpreter, missing_component

TESTDATA = Path(__file__).parent / "testdata"
WHEEL_CACHE = Path.home() / ".cache" / "ai-agent-tests" / "wheels"


@dataclass(frozen=True)
class RealWheel:
    requirement: str
    filename: str
    sha256: str

    @property
    def path(self) -> Path:
        return WHEEL_CACHE / self.filename


# Pure; a compiled extension; `.data/scripts` with `#!python`; a console_scripts entry point.
REAL_WHEELS = {
    "six": RealWheel(
        "six==1.16.0",
        "six-1.16.0-py2.py3-none-any.whl",
        "8abb2f1d86890a2dfb989f9a77cfcfd3e47c2a354b01111771326f8aa26e0254",
    ),
    "markupsafe": RealWheel(
        "markupsafe==2.1.5",
        "MarkupSafe-2.1.5-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        "b91c037585eba9095565a3556f611e3cbfaa42ca1e865f7b8015fe5c7336d5a5",
    ),
    "jsonpointer": RealWheel(
        "jsonpointer==2.4",
        "jsonpointer-2.4-py2.py3-none-any.whl",
        "15d51bba20eea3165644553647711d150376234112651b4f1811022aecad7d7a",
    ),
    "pyflakes": RealWheel(
        "pyflakes==3.2.0",
        "pyflakes-3.2.0-py2.py3-none-any.whl",
        "84b5be138a2dfbb40689ca07e2152deb896a65c3a3e24c251c5c62489568074a",
    ),
}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="session")
def real_wheels() -> Dict[str, RealWheel]:
    """The REAL_WHEELS, downloaded once by pip (for CPython 3.11 on manylinux x86_64)."""
    missing = [wheel for wheel in REAL_WHEELS.values() if not wheel.path.is_file()]
    if missing:
        WHEEL_CACHE.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
        command += ["--python-version", "3.11", "--implementation", "cp"]
        command += ["--platform", "manylinux_2_17_x86_64", "--dest", str(WHEEL_CACHE)]
        environment = {**os.environ, "PIP_CONFIG_FILE": os.devnull}
        result = subprocess.run(
            command + [wheel.requirement for wheel in missing],
            env=environment,
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            missing_component(
                "wheels from PyPI", f"network access to PyPI ({result.stderr[-500:]})"
            )
    for wheel in REAL_WHEELS.values():
        assert _sha256(wheel.path) == wheel.sha256, f"{wheel.path} is not the pinned wheel"
    return REAL_WHEELS


@pytest.fixture(scope="session")
def host_python311() -> str:
    return host_interpreter("3.11")
