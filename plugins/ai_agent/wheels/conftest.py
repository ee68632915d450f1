"""Fixtures of the wheel unit tests: real wheels from PyPI, downloaded by URL and checked
against pinned sha256s the way the build's `fetch` step does (cached in the test download
cache), and the build host's CPython 3.11 for compiling bytecode."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict

import pytest

from testkit.components import download_cache, host_interpreter, missing_component

from ..debian.download import DownloadError, download_verified

TESTDATA = Path(__file__).parent / "testdata"
_FILES = "https://files.pythonhosted.org/packages"


@dataclass(frozen=True)
class RealWheel:
    requirement: str
    url: str
    sha256: str

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[1]

    @property
    def path(self) -> Path:
        return download_cache("wheels") / self.filename


# Pure; a compiled extension; `.data/scripts` with `#!python`; a console_scripts entry point.
REAL_WHEELS = {
    "six": RealWheel(
        "six==1.16.0",
        f"{_FILES}/d9/5a/e7c31adbe875f2abbb91bd84cf2dc52d792b5a01506781dbcf25c91daf11/"
        "six-1.16.0-py2.py3-none-any.whl",
        "8abb2f1d86890a2dfb989f9a77cfcfd3e47c2a354b01111771326f8aa26e0254",
    ),
    "markupsafe": RealWheel(
        "markupsafe==2.1.5",
        f"{_FILES}/97/18/c30da5e7a0e7f4603abfc6780574131221d9148f323752c2755d48abad30/"
        "MarkupSafe-2.1.5-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        "b91c037585eba9095565a3556f611e3cbfaa42ca1e865f7b8015fe5c7336d5a5",
    ),
    "jsonpointer": RealWheel(
        "jsonpointer==2.4",
        f"{_FILES}/12/f6/0232cc0c617e195f06f810534d00b74d2f348fe71b2118009ad8ad31f878/"
        "jsonpointer-2.4-py2.py3-none-any.whl",
        "15d51bba20eea3165644553647711d150376234112651b4f1811022aecad7d7a",
    ),
    "pyflakes": RealWheel(
        "pyflakes==3.2.0",
        f"{_FILES}/d4/d7/f1b7db88d8e4417c5d47adad627a93547f44bdc9028372dbd2313f34a855/"
        "pyflakes-3.2.0-py2.py3-none-any.whl",
        "84b5be138a2dfbb40689ca07e2152deb896a65c3a3e24c251c5c62489568074a",
    ),
}


@pytest.fixture(scope="session")
def real_wheels() -> Dict[str, RealWheel]:
    """The REAL_WHEELS (for CPython 3.11 on manylinux x86_64), each downloaded once and kept
    only if its bytes match the pinned sha256."""
    for wheel in REAL_WHEELS.values():
        if not wheel.path.is_file():
            try:
                download_verified(wheel.url, wheel.path, wheel.sha256)
            except DownloadError as error:
                missing_component("wheels from PyPI", f"network access to PyPI ({error})")
    return REAL_WHEELS


@pytest.fixture(scope="session")
def host_python311() -> str:
    return host_interpreter("3.11")
